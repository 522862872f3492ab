"""The original's checks against the papers the probes come from (v1–v4): arc_easy by layer
(does a probe reach 80%?), the Geometry-of-Truth datasets by layer, LAT on the RepE datasets
beside the RepE paper's Llama-2-13B-chat numbers, and LDA against DIM. Each draws the table
`probegen.aggregate.tables` computes."""

from __future__ import annotations

import itertools

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from probegen.aggregate import style, tables
from probegen.aggregate.study import Study

REPE_COLOURS = {"race": "red", "open_book_qa": "blue", "arc_easy": "green",
                "arc_challenge": "orange"}  # the original's  # fmt: skip


def _layer_axis(ax, study: Study) -> None:
    ax.set_xlabel(f"layer (decoder block, 0-based, of {study.depth})")
    style.percent_axis(ax, "y", (0, 1.02))


@style.styled
def v1_arc_easy(study: Study) -> Figure:
    table = tables.v1_table(study)
    palette = style.colours(study.algorithms)
    fig, ax = style.new_figure()
    for algorithm in [a for a in study.original if a in set(table["probe"])]:
        rows = table[table["probe"] == algorithm]
        line = "-" if rows["supervised"].iloc[0] else "--"
        ax.plot(rows["layer"], rows["accuracy"], marker="o", ms=3, label=algorithm,
                color=palette[algorithm], ls=line)  # fmt: skip
    ax.axhline(0.8, ls=":", c="#444444", lw=1)
    ax.text(ax.get_xlim()[0], 0.805, " 80%", size=7, va="bottom")
    _layer_axis(ax, study)
    ax.set_ylabel("arc_easy validation accuracy\n(trained on arc_easy)")
    ax.legend(title="algorithm\n(dashed: unsupervised)", loc="center left",
              bbox_to_anchor=(1.0, 0.5))  # fmt: skip
    ax.set_title(f"{study.model}: in-distribution accuracy on arc_easy by layer")
    return fig


@style.styled
def v2_got(study: Study) -> Figure:
    table = tables.v2_table(study)
    algorithms = tables.GOT_CHECK_ALGORITHMS
    trains = [t for t in tables.GOT_CHECK if t in set(table["train_dataset"])]
    missing = [t for t in tables.GOT_CHECK if t not in trains]
    fig, axes = style.new_figure(7.5, 2.0 * len(trains) + 1.0, nrows=len(trains),
                                 ncols=len(algorithms), sharex=True, sharey=True,
                                 squeeze=False)  # fmt: skip
    for (i, train), (j, algorithm) in itertools.product(enumerate(trains), enumerate(algorithms)):
        ax = axes[i, j]
        rows = table[(table["train_dataset"] == train) & (table["probe"] == algorithm)]
        if rows.empty:
            ax.text(0.5, 0.5, "not in this sweep", transform=ax.transAxes, ha="center",
                    color="#777777", size=8)  # fmt: skip
        else:
            ax.plot(rows["layer"], rows["accuracy"], marker="o", ms=3, color=style.OKABE_ITO[0])
        _layer_axis(ax, study)
        ax.set_title(f"{algorithm} · {train}", size=8)
        if i < len(trains) - 1:
            ax.set_xlabel("")
    fig.supylabel("validation accuracy (trained and scored on it)", size=8)
    note = f"\n(not in this sweep: {', '.join(missing)})" if missing else ""
    fig.suptitle(f"{study.model}: in-distribution accuracy on the Geometry-of-Truth datasets{note}")
    return fig


@style.styled
def v3_repe(study: Study) -> Figure:
    table = tables.v3_table(study)
    fig, ax = style.new_figure()
    handles = []
    for name, reference in tables.REPE_LAT.items():
        colour = REPE_COLOURS[name]
        rows = table[table["dataset"] == name]
        if not rows.empty:
            ax.plot(rows["layer"], rows["accuracy"], marker="o", ms=3, color=colour)
        ax.axhline(reference, ls=":", c=colour, lw=1.2)
        handles.append(Line2D([], [], color=colour, marker="o", ms=3, label=name
                              + ("" if not rows.empty else " (not in sweep)")))  # fmt: skip
    handles.append(Line2D([], [], ls=":", c="#555555", label="dotted: Llama-2-13B-chat LAT\n"
                          "(RepE paper)"))  # fmt: skip
    _layer_axis(ax, study)
    ax.set_ylabel("LAT validation accuracy\n(trained on the same dataset)")
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"{study.model}: LAT in-distribution accuracy on the RepE datasets by layer")
    return fig


@style.styled
def v4_lda(study: Study) -> Figure:
    table = tables.v4_table(study)
    layer = tables.best_probe(study).layer
    panels = [f"trained on {tables.LDA_CHECK_TRAIN}", "trained on the eval dataset"]
    palette = {"dim": style.OKABE_ITO[0], "lda": style.OKABE_ITO[1]}
    names = [d for d in study.datasets if d in set(table["eval_dataset"])]
    fig, axes = style.new_figure(max(6.0, 0.45 * len(names) + 3.0), 6.0, nrows=2, sharex=True)
    for ax, panel in zip(axes, panels, strict=True):
        rows = table[table["panel"] == panel]
        for k, algorithm in enumerate(("dim", "lda")):
            values = rows[rows["probe"] == algorithm].set_index("eval_dataset")["accuracy"]
            x = np.arange(len(names)) + (k - 0.5) * 0.38
            ax.bar(x, values.reindex(names), 0.38, color=palette[algorithm], label=algorithm)
        if rows.empty:
            ax.text(0.5, 0.5, f"no dim / lda probe {panel} at layer {layer} in this sweep",
                    transform=ax.transAxes, ha="center", color="#777777", size=8)  # fmt: skip
        style.percent_axis(ax, "y", (0, 1.05))
        ax.set_ylabel("validation accuracy")
        ax.set_title(panel, size=9)
    axes[-1].set_xticks(range(len(names)), names, rotation=45, ha="right", rotation_mode="anchor")
    axes[-1].set_xlabel("evaluated on")
    axes[0].legend(title="algorithm", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{study.model}: DIM and LDA at layer {layer} (the best probe's layer)")
    return fig
