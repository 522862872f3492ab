"""What the figure modules share: the skip signal and small layout helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probegen.aggregate import style
from probegen.aggregate.study import Study
from probegen.aggregate.tables import Skip, need  # noqa: F401  (re-exported for the figures)


def layers_note(study: Study) -> str:
    return f"layers ≥ {study.later_layer} of {study.depth}"


FAMILY_COLOURS = {"dlk": style.OKABE_ITO[0], "repe": style.OKABE_ITO[1],
                  "got": style.OKABE_ITO[2], "synthetic": style.OKABE_ITO[3],
                  "other": style.BASELINE_GREY}  # fmt: skip


def table_heatmap(ax, table: pd.DataFrame, mark: object = None, label: str = "") -> None:
    """A heat map of a recovered-accuracy table (rows × columns as given, cells in %),
    the row `mark` labelled "(best)" in bold, as the original marks the best probe's row."""
    rows = [f"{i} (best)" if i == mark else str(i) for i in table.index]
    style.heatmap(ax, table.to_numpy(dtype="float64"), rows, [str(c) for c in table.columns],
                  label=label)  # fmt: skip
    for tick, name in zip(ax.get_yticklabels(), table.index, strict=True):
        if name == mark:
            tick.set_fontweight("bold")


def shade_early_layers(ax, study: Study) -> None:
    """Grey out the layers before the later-layer cut (first headline number)."""
    edge = study.later_layer - 0.5  # between the last left-out and first kept layer
    ax.axvspan(-0.5, edge, color="#e3e3e3", zorder=0, lw=0)
    ax.text(
        edge / 2,
        0.02,
        "before the\nlater layers",
        ha="center",
        va="bottom",
        size=7,
        color="#555555",
        transform=ax.get_xaxis_transform(),
    )


def boxes(ax, groups: list[tuple[str, np.ndarray]], colours: list[str], xlabel: str) -> None:
    """Horizontal box plots, first group on top, means as white diamonds, n on the right."""
    data = [values for _, values in groups][::-1]
    labels = [name for name, _ in groups][::-1]
    parts = ax.boxplot(
        data,
        vert=False,
        widths=0.6,
        patch_artist=True,
        showfliers=True,
        showmeans=True,
        meanprops={
            "marker": "D",
            "markerfacecolor": "white",
            "markeredgecolor": "black",
            "markersize": 4,
        },
        medianprops={"color": "black"},
        flierprops={"markersize": 2, "alpha": 0.5},
    )
    for patch, colour in zip(parts["boxes"], colours[::-1], strict=True):
        patch.set_facecolor(colour)
        patch.set_alpha(0.8)
    ax.set_yticks(range(1, len(labels) + 1), labels)
    ax.axvline(0.8, ls="--", c="#444444", lw=0.8)
    ax.text(0.8, 0.0, " 80%", transform=ax.get_xaxis_transform(), size=7, va="bottom")
    style.percent_axis(ax, "x")
    ax.set_xlabel(xlabel)
    for y, values in enumerate(data, start=1):
        ax.text(
            1.03,
            y,
            f"n={len(values)}",
            va="center",
            size=7,
            color="#555555",
            transform=ax.get_yaxis_transform(),
        )
