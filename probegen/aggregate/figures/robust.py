"""The robust view's figure (report section "Robust view", issue 14): the train × eval matrix
of mean chance-corrected recovery, pairs whose probes do not beat the null greyed out.

It draws `tables.robust_matrix_table`. The axes hold two images, in this order: the grey
layer (1 where a pair is greyed out, else masked) and the coloured values (masked where
greyed out or missing), so a test reads what is greyed from the figure itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.ticker
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from probegen.aggregate import style, tables
from probegen.aggregate.figures.common import layers_note
from probegen.aggregate.study import Study

if TYPE_CHECKING:  # robust imports study: only for the annotations
    from probegen.aggregate.robust import RobustStudy

# A fixed colour range, so matrices of several models read alike: below 0 a pair does worse
# than random directions (clipped, its value still written), above 1 better than the
# in-distribution probe.
VMIN, VMAX = -0.25, 1.0
GREY, HATCH, GREY_TEXT = "#e4e4e4", "#bdbdbd", "#4d4d4d"

CAPTION = (
    "The robust view: mean chance-corrected recovery (CCR) of every train × eval pair of "
    "learned datasets, over the eight algorithms at the later layers ({later}). CCR = "
    "(accuracy − null mean) / (threshold − null mean), each probe's sign and threshold fixed "
    "on its train split: 0 = the mean of {null_many}, 1 = the eval dataset's in-distribution "
    "probe. Coloured: at least half of the pair's probes beat the null (one-sided test per "
    "probe, Benjamini–Hochberg FDR 5%); greyed and hatched: fewer, value still shown. "
    "Outlined: own dataset (in-distribution; not tested). {left_out}"
)


def caption_values(study: Study, robust: RobustStudy | None) -> dict[str, str]:
    """The caption's data-driven parts: the null's size and the datasets left out."""
    many = f"{study.null_directions} random directions" if study.null_directions else None
    values = {"null_many": many or "the random directions", "left_out": ""}
    if robust is None or robust.unavailable_reason is not None:
        return values
    view = robust.view
    parts = []
    if view.not_learned:
        named = "; ".join(f"{d}, {why}" for d, why in view.not_learned.items())
        parts.append(f"Not learned (in-distribution probe not told apart from the null), so "
                     f"absent: {named}.")  # fmt: skip
    else:
        parts.append("Every trained-on dataset was learned.")
    untrained = view.headline.get("no_threshold") or []
    if untrained:
        parts.append(f"Never trained on (no threshold), so absent: {', '.join(untrained)}.")
    values["left_out"] = " ".join(parts)
    return values


@style.styled
def robust_matrix(study: Study, robust: RobustStudy | None) -> Figure:
    """The heat map of `tables.robust_matrix_table`."""
    table = tables.robust_matrix_table(study, robust)
    names = list(table.ccr.index)
    ccr = table.ccr.to_numpy(dtype="float64")
    own = table.own.to_numpy(dtype=bool)
    greyed = greyed_cells(table)
    n = len(names)
    fig, ax = style.new_figure(0.62 * n + 3.6, 0.5 * n + 3.0)
    ax.imshow(np.ma.masked_array(np.ones_like(ccr), ~greyed), cmap=ListedColormap([GREY]),
              vmin=0, vmax=1, aspect="auto")  # fmt: skip
    image = ax.imshow(np.ma.masked_array(ccr, greyed | ~np.isfinite(ccr)), cmap=style.HEAT_CMAP,
                      vmin=VMIN, vmax=VMAX, aspect="auto")  # fmt: skip
    size = 7 if n <= 12 else 5.5
    for i, j in np.ndindex(ccr.shape):
        if greyed[i, j]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////",
                                   edgecolor=HATCH, lw=0, zorder=2))  # fmt: skip
        if own[i, j]:
            # above the hatching, which would otherwise cut its edges
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black",
                                   lw=1.6, zorder=3))  # fmt: skip
        if np.isfinite(ccr[i, j]):
            light = ccr[i, j] > (VMIN + VMAX) / 2  # viridis: light top, dark bottom
            colour = GREY_TEXT if greyed[i, j] else "black" if light else "white"
            text = f"{ccr[i, j]:.2f}".replace("-0.00", "0.00")  # no sign on a tiny negative
            ax.text(j, i, text, ha="center", va="center", size=size, c=colour,
                    fontweight="normal" if greyed[i, j] else "bold")  # fmt: skip
    ax.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, extend="both")
    bar.ax.yaxis.set_major_locator(matplotlib.ticker.MultipleLocator(0.25))
    bar.set_label("mean chance-corrected recovery\n(0 = random directions, 1 = in-distribution)")
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    handles = [
        Patch(facecolor=GREY, edgecolor=HATCH, hatch="////",
              label="fewer than half of the pair's probes beat the null (BH, FDR 5%)"),
        Patch(facecolor="none", edgecolor="black", lw=1.4, label="own dataset"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=2 if n > 8 else 1)
    ax.set_title(f"{study.model}: chance-corrected recovery, train × eval\n(eight algorithms, "
                 f"{layers_note(study)}; sign and threshold fixed on the train split)")  # fmt: skip
    return fig


def greyed_cells(table: tables.RobustMatrix) -> np.ndarray:
    """bool [train, eval]: pairs drawn greyed out: a value, not own, not significant."""
    ccr = table.ccr.to_numpy(dtype="float64")
    significant = table.significant.to_numpy(dtype="float64") == 1.0
    return np.isfinite(ccr) & ~table.own.to_numpy(dtype=bool) & ~significant
