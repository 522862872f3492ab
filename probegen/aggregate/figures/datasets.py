"""The original's figures about datasets: r3a (train datasets), r3b (train × eval matrix),
r3c (generalises from / to), r3d (clustering) and r4 (TruthfulQA). Each draws the table
`probegen.aggregate.tables` computes."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from probegen.aggregate import style, tables
from probegen.aggregate.figures.common import FAMILY_COLOURS, layers_note, table_heatmap
from probegen.aggregate.metrics import TRUTHFUL_QA_LINES
from probegen.aggregate.study import Study


def _family_legend(ax, families) -> None:
    handles = [Patch(color=FAMILY_COLOURS[f], label=f) for f in dict.fromkeys(families)]
    ax.legend(handles=handles, title="family", loc="center left", bbox_to_anchor=(1.0, 0.5))


@style.styled
def r3a_datasets(study: Study) -> Figure:
    table = tables.r3a_table(study)
    fig, ax = style.new_figure(max(6.0, 0.5 * len(table) + 3.0), 4.2)
    x = np.arange(len(table))
    ax.bar(x, table["recovered"], 0.7, color=[FAMILY_COLOURS[f] for f in table["family"]])
    for xi, value in zip(x, table["recovered"], strict=True):
        ax.text(xi, value + 0.01, f"{100 * value:.0f}%", ha="center", size=7)
    ax.set_xticks(x, table.index, rotation=45, ha="right", rotation_mode="anchor")
    style.percent_axis(ax, "y", (0, 1.08))
    ax.set_ylabel("mean recovered accuracy of its probes\n(all layers, own dataset included)")
    _family_legend(ax, table["family"])
    ax.set_title(f"{study.model}: recovered accuracy by train dataset")
    return fig


@style.styled
def r3b_matrix(study: Study) -> Figure:
    table = tables.r3b_table(study)
    size = 0.42 * len(table) + 2.4
    fig, ax = style.new_figure(size + 1.2, size)
    table_heatmap(ax, table, label="recovered accuracy")
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    ax.set_title(f"{study.model}: recovered accuracy, train × eval dataset\n(mean over the "
                 f"algorithms and {layers_note(study)})")  # fmt: skip
    return fig


@style.styled
def r3c_to_and_from(study: Study) -> Figure:
    table = tables.r3c_table(study)
    fig, ax = style.new_figure(7.5, 5.0)
    ax.scatter(table["generalizes_from"], table["generalizes_to"], s=30, zorder=3,
               c=[FAMILY_COLOURS[f] for f in table["family"]])  # fmt: skip
    for name, row in table.iterrows():
        ax.annotate(name, (row["generalizes_from"], row["generalizes_to"]), textcoords="offset "
                    "points", xytext=(0, -9), ha="center", va="top", size=7)  # fmt: skip
    for axis, column in (("x", "generalizes_from"), ("y", "generalizes_to")):
        low, high = table[column].min(), table[column].max()
        pad = max(0.1 * (high - low), 0.01)  # the range follows the data (original: x fixed)
        # whole percents repeat on a range of a few points: one decimal there
        style.percent_axis(ax, axis, (low - pad, high + pad), decimals=int(high - low < 0.08))
    ax.set_xlabel("generalises from: mean recovered accuracy of the probes trained on it")
    ax.set_ylabel("generalises to: mean recovered\naccuracy of all probes on it")
    _family_legend(ax, table["family"])
    ax.set_title(f"{study.model}: how well each dataset generalises to and from the others\n"
                 "(all layers and algorithms, own rows included)")  # fmt: skip
    return fig


@style.styled
def r3d_clustering(study: Study) -> Figure:
    distance = tables.r3d_table(study)
    names = list(distance.index)
    tree = hierarchy.linkage(squareform(distance.to_numpy().clip(0, None), checks=False),
                             "average")  # fmt: skip
    fig, ax = style.new_figure(7.0, 0.32 * len(names) + 1.6)
    hierarchy.dendrogram(tree, orientation="left", labels=names, ax=ax, color_threshold=0,
                         above_threshold_color="#333333")  # fmt: skip
    for tick in ax.get_yticklabels():
        tick.set_color(FAMILY_COLOURS[tables.family(tick.get_text())])
    ax.set_xlabel("distance = 1 − recovered accuracy (mean of both directions)")
    ax.set_title(f"{study.model}: datasets clustered by r3b's matrix (average linkage)")
    return fig


@style.styled
def r4_truthful_qa(study: Study) -> Figure:
    table = tables.r4_table(study)
    fig, ax = style.new_figure(7.5, 4.6)
    ax.scatter(table["recovered_cross"], table["truthful_qa"], s=8, alpha=0.6,
               color=style.OKABE_ITO[0], lw=0)  # fmt: skip
    green, grey = TRUTHFUL_QA_LINES
    ax.axhline(green, ls=":", c="green", lw=1.3)
    ax.axhline(grey, ls=":", c="grey", lw=1.3)
    source = "Llama-2-13B-chat (RepE table 1)"
    handles = [
        Line2D([], [], ls=":", c="green", label=f"{100 * green:.1f}%: {source}"),
        Line2D([], [], ls=":", c="grey", label=f"{100 * grey:.1f}%: {source}"),
    ]
    chance = study.truthful_qa_chance
    if chance is not None:
        ax.axhline(chance, ls="--", c="black", lw=0.9)
        label = f"chance ({100 * chance:.1f}%, mean 1/choices)"
        handles.append(Line2D([], [], ls="--", c="black", label=label))
    style.percent_axis(ax, "x", None)
    style.percent_axis(ax, "y", None)
    ax.set_xlabel("probe's mean recovered accuracy on the other datasets (own left out)")
    ax.set_ylabel("TruthfulQA (mc1) validation accuracy")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    ax.set_title(f"{study.model}: TruthfulQA accuracy against generalisation, one point per "
                 "probe (all layers)")  # fmt: skip
    return fig
