"""One look for every figure: colour-blind-safe colours, percentage heat maps, print DPI.

The look is local: `RC` applies only inside `context()`, which the figure functions
(`styled`) and `save` enter, so importing the aggregation stage leaves matplotlib's global
rcParams and backend as the user (or a notebook, or another library) set them. Figures are
bare `matplotlib.figure.Figure`s, never pyplot's: they need no backend switch and are not
kept in pyplot's figure list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

DPI = 300  # print resolution
# Okabe & Ito (2008), safe for the common colour-vision deficiencies; grey last for baselines
# (its yellow, too pale for lines on white, swapped for Tol's wine)
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#882255"]
OKABE_ITO += ["#000000"]
BASELINE_GREY = "#999999"
HEAT_CMAP = "viridis"  # perceptually uniform, readable in grey scale and by colour-blind readers

# The settings every figure is drawn with (on top of matplotlib's defaults or the user's).
RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def context() -> Iterator[None]:
    """Within the block, matplotlib draws with `RC`; the global rcParams come back after.

    Most of these settings are read when an artist is made (a text's size, an axes' spines,
    a legend's frame), but tick labels are made lazily, as late as `savefig`: so the drawing
    and the saving of a figure both run inside this block."""
    with matplotlib.rc_context(RC):
        yield


def styled(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a function that draws a figure so that it draws inside `context()`."""

    @functools.wraps(draw)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with context():
            return draw(*args, **kwargs)

    return wrapper


def colours(algorithms: list[str], baselines: tuple[str, ...] = ("random",)) -> dict[str, str]:
    """A fixed colour per algorithm, in the shared order (baselines grey)."""
    out, palette = {}, iter(OKABE_ITO * 2)
    for name in algorithms:
        out[name] = BASELINE_GREY if name in baselines else next(palette)
    return out


def percent_axis(
    ax, axis: str = "y", limits: tuple[float, float] | None = (0, 1.02), decimals: int = 0
) -> None:
    """Label an axis holding fractions as percentages."""
    formatter = matplotlib.ticker.PercentFormatter(xmax=1.0, decimals=decimals)
    getattr(ax, f"{axis}axis").set_major_formatter(formatter)
    if limits is not None:
        getattr(ax, f"set_{axis}lim")(*limits)


def heatmap(
    ax,
    values: np.ndarray,
    rows: list[str],
    columns: list[str],
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
    label: str = "",
    annotate: bool = True,
) -> None:
    """A heat map of fractions with each cell written as a percentage (blank where NaN)."""
    image = ax.imshow(values, cmap=HEAT_CMAP, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1.0, decimals=0))
    bar.set_label(label)
    if not annotate:
        return
    size = 7 if max(len(rows), len(columns)) <= 12 else 5.5
    middle = (vmin + vmax) / 2
    for i, j in np.ndindex(values.shape):
        value = values[i, j]
        if np.isfinite(value):
            colour = "black" if value > middle else "white"  # viridis: light top, dark bottom
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", size=size, c=colour)


def new_figure(width: float = 7.0, height: float = 4.2, **kwargs) -> tuple[Figure, object]:
    """A figure and axes (inches; 7 in fits a page width); `kwargs` go to `Figure.subplots`
    (nrows, sharex, ...). Call it within `context()` (a `styled` function) for the look."""
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(**kwargs)


def save(figure: Figure, path: Path) -> Path:
    """Write `figure` as a PNG at print resolution (within `context()`: see there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with context():
        figure.savefig(path, dpi=DPI, facecolor="white")
    return path
