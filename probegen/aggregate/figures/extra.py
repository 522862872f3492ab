"""probegen's own views, which the original analysis does not draw (x_*.png, the report's
second section): in-distribution accuracy by layer per algorithm, the spread of probes'
cross-dataset recovered accuracy per algorithm, and each dataset's threshold. The first two
draw the null baseline (random directions, `Study` pseudo-algorithm `null`) beside the
algorithms."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from probegen.aggregate import style
from probegen.aggregate.figures.common import boxes, layers_note, shade_early_layers
from probegen.aggregate.study import BASELINES, Study
from probegen.aggregate.tables import NO_CROSS, need


@style.styled
def x_in_dist_by_layer(study: Study) -> Figure:
    rows = study.recovered[study.recovered["train_dataset"] == study.recovered["eval_dataset"]]
    need(not rows.empty, "no probe was scored on its own train dataset (add it to eval=)")
    palette = style.colours(study.algorithms, BASELINES)
    fig, ax = style.new_figure()
    for algorithm in study.algorithms:
        means = rows[rows["probe"] == algorithm].groupby("layer")["accuracy"].mean()
        if not means.empty:
            line = ":" if algorithm in BASELINES else "-"
            ax.plot(means.index, means.to_numpy(), marker="o", ms=3, lw=1.4, label=algorithm,
                    color=palette[algorithm], ls=line)  # fmt: skip
    shade_early_layers(ax, study)
    style.percent_axis(ax, "y", (0.4, 1.02))
    ax.set_xlabel(f"layer (decoder block, 0-based, of {study.depth})")
    ax.set_ylabel("validation accuracy on own dataset")
    ax.legend(title="algorithm", loc="center left", bbox_to_anchor=(1.0, 0.5))
    n = rows["train_dataset"].nunique()
    ax.set_title(f"{study.model}: in-distribution accuracy by layer (mean over {n} datasets)")
    return fig


@style.styled
def x_cross_by_algorithm(study: Study) -> Figure:
    rows = study.recovered[study.recovered["layer"] >= study.later_layer]
    rows = rows[rows["train_dataset"] != rows["eval_dataset"]].dropna(subset=["recovered"])
    need(not rows.empty, NO_CROSS)
    means = rows.groupby(["probe", "train_dataset", "layer"])["recovered"].mean().reset_index()
    palette = style.colours(study.algorithms, BASELINES)
    groups = [(a, means.loc[means["probe"] == a, "recovered"].to_numpy()) for a in study.algorithms]
    groups = [(a, v) for a, v in groups if len(v)]
    fig, ax = style.new_figure(7, 0.45 * len(groups) + 1.4)
    boxes(ax, groups, [palette[a] for a, _ in groups],
          "probe's mean recovered accuracy on the other datasets (own left out)")  # fmt: skip
    ax.set_title(f"{study.model}: spread of probes' cross-dataset recovered accuracy\n"
                 f"one point per probe (train dataset × layer), {layers_note(study)}")  # fmt: skip
    return fig


@style.styled
def x_thresholds(study: Study) -> Figure:
    thresholds = study.thresholds.reindex(study.datasets).dropna(subset=["threshold"])
    need(not thresholds.empty, "no probe was scored on its own train dataset (add it to eval=)")
    cross = study.rows[study.rows["train_dataset"] != study.rows["eval_dataset"]]
    incoming = cross.groupby("eval_dataset")["accuracy"].mean().reindex(thresholds.index)
    fig, ax = style.new_figure(7, 0.34 * len(thresholds) + 1.5)
    y = np.arange(len(thresholds))[::-1]
    ax.barh(y + 0.2, thresholds["threshold"], height=0.4, color=style.OKABE_ITO[0],
            label="threshold: validation accuracy of the in-distribution probe best on "
            "train-hparams")  # fmt: skip
    ax.barh(y - 0.2, incoming, height=0.4, color=style.OKABE_ITO[1],
            label="mean accuracy of probes trained on other datasets (all layers)")  # fmt: skip
    for yi, (_, row) in zip(y, thresholds.iterrows(), strict=True):
        ax.text(row["threshold"] + 0.01, yi + 0.2, f"{100 * row['threshold']:.0f}%  "
                f"({row['probe']}, L{int(row['layer'])})", va="center", size=6.5)  # fmt: skip
    ax.set_yticks(y, thresholds.index)
    style.percent_axis(ax, "x", (0, 1.22))
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("validation accuracy")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=1)
    ax.set_title(f"{study.model}: each dataset's threshold\n(the denominator of recovered "
                 "accuracy)")  # fmt: skip
    return fig
