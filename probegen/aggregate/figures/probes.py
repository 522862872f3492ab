"""The original's figures about probes: r0 (ECDF of probes' recovered accuracy by layer),
r1a–c (the best probe against other algorithms, train datasets, layers) and r2 (algorithms).
Each draws the table `probegen.aggregate.tables` computes."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from probegen.aggregate import style, tables
from probegen.aggregate.figures.common import table_heatmap
from probegen.aggregate.study import Study


@style.styled
def r0_acc_by_layer(study: Study) -> Figure:
    probes = tables.r0_table(study)
    layers = sorted(probes["layer"].unique())
    cmap = matplotlib.colormaps["viridis"]
    fig, ax = style.new_figure(7.5, 4.2)
    for i, layer in enumerate(layers):
        values = np.sort(probes.loc[probes["layer"] == layer, "recovered"].to_numpy())
        share = np.arange(1, len(values) + 1) / len(values)
        later = layer >= study.later_layer
        ax.step(np.r_[values[0], values], np.r_[0, share], where="post", lw=1.3,
                color=cmap(i / max(len(layers) - 1, 1)), ls="-" if later else ":",
                label=f"{layer}")  # fmt: skip
    ax.axvline(0.8, ls="--", c="#444444", lw=0.8)
    style.percent_axis(ax, "x", None)
    style.percent_axis(ax, "y", (0, 1.02))
    ax.set_xlabel("probe's mean recovered accuracy (own train dataset included)")
    ax.set_ylabel("share of probes at or below")
    ax.legend(title=f"layer\n(dotted: < {study.later_layer})", loc="center left",
              bbox_to_anchor=(1.0, 0.5), ncols=2 if len(layers) > 12 else 1)  # fmt: skip
    ax.set_title(f"{study.model}: ECDF of each probe's mean recovered accuracy, one curve per "
                 "layer")  # fmt: skip
    return fig


def _heatmap_figure(study: Study, table, mark, ylabel: str, title: str) -> Figure:
    fig, ax = style.new_figure(0.5 * len(table.columns) + 3.2, 0.36 * len(table) + 2.0)
    table_heatmap(ax, table, mark, label="recovered accuracy")
    ax.set_xlabel("evaluated on")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{study.model}: {title}")
    return fig


@style.styled
def r1a_by_algorithms(study: Study) -> Figure:
    best = tables.best_probe(study)
    return _heatmap_figure(
        study, tables.r1a_table(study), best.probe, "algorithm",
        f"probes trained on {best.train_dataset}, layer {best.layer}\n(the best probe's train "
        "dataset and layer; its own column left out)",
    )  # fmt: skip


@style.styled
def r1b_by_train(study: Study) -> Figure:
    best = tables.best_probe(study)
    table = tables.r1b_table(study)
    tables.need(not table.empty, f"no train dataset has every cell for {best.probe} at layer "
                f"{best.layer}")  # fmt: skip
    return _heatmap_figure(
        study, table, best.train_dataset, "trained on",
        f"{best.probe} probes at layer {best.layer} by train dataset\n(the best probe's "
        f"algorithm and layer;\ncolumn {best.train_dataset} left out)",
    )  # fmt: skip


@style.styled
def r1c_by_layer(study: Study) -> Figure:
    best = tables.best_probe(study)
    return _heatmap_figure(
        study, tables.r1c_table(study), best.layer, "layer",
        f"{best.probe} probes trained on {best.train_dataset} by layer\n(the best probe's "
        "algorithm and train dataset; its own column left out)",
    )  # fmt: skip


@style.styled
def r2_probes(study: Study) -> Figure:
    table = tables.r2_table(study)
    colours = {True: style.OKABE_ITO[0], False: style.OKABE_ITO[1]}
    fig, ax = style.new_figure(7.5, 4.0)
    x = np.arange(len(table))
    for xi, (_, row) in zip(x, table.iterrows(), strict=True):
        ax.bar(xi, row["recovered"], 0.7, color=colours[bool(row["supervised"])],
               hatch="///" if row["grouped"] else None, edgecolor="white")  # fmt: skip
        ax.text(xi, row["recovered"] + 0.01, f"{100 * row['recovered']:.0f}%", ha="center",
                size=7)  # fmt: skip
    handles = [Patch(color=colours[True], label="supervised"),
               Patch(color=colours[False], label="unsupervised"),
               Patch(facecolor="#cccccc", hatch="///", edgecolor="white", label="grouped"),
               Patch(facecolor="#cccccc", label="ungrouped")]  # fmt: skip
    baseline = study.baseline()
    if baseline is not None:  # our reference line, not in the original
        ax.axhline(baseline["mean_recovered"], ls=":", c="#555555", lw=1.3)
        handles.append(matplotlib.lines.Line2D([], [], ls=":", c="#555555",
                                               label="null: random directions,\nsign chosen "
                                               "on the eval set"))  # fmt: skip
    ax.set_xticks(x, table.index)
    style.percent_axis(ax, "y", (0, 1.08))
    ax.set_ylabel("mean recovered accuracy\n(all layers, own train dataset included)")
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"{study.model}: recovered accuracy by algorithm")
    return fig
