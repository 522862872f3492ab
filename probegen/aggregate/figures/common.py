"""What the figure modules share: the skip signal and small layout helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probegen.aggregate import style
from probegen.aggregate.study import Study


class Skip(Exception):
    """A figure whose inputs are not in the sweep; the message says which and how to add them."""


def need(condition: bool, reason: str) -> None:
    if not condition:
        raise Skip(reason)


def layers_note(study: Study) -> str:
    return f"layers ≥ {study.first_later_layer} of {study.depth}"


def shade_early_layers(ax, study: Study) -> None:
    """Grey out the layers the headline numbers leave out (layer < depth / 3)."""
    edge = study.first_later_layer - 0.5  # between the last left-out and first kept layer
    ax.axvspan(-0.5, edge, color="#e3e3e3", zorder=0, lw=0)
    ax.text(
        edge / 2,
        0.02,
        "early layers\n(not in headline)",
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


def train_eval_heatmap(ax, values: np.ndarray, names: list[str], label: str) -> None:
    """A square train (rows) × eval (columns) heat map over the same datasets."""
    style.heatmap(ax, values, names, names, label=label)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")


def matrix(
    rows: pd.DataFrame,
    index: str,
    columns: str,
    values: str,
    row_order: list[str],
    column_order: list[str],
) -> np.ndarray:
    """Mean of `values` per (index, columns) cell, laid out in the given orders (NaN if none)."""
    table = rows.pivot_table(index=index, columns=columns, values=values, aggfunc="mean")
    return table.reindex(index=row_order, columns=column_order).to_numpy(dtype="float64")
