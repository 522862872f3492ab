"""Figures about probes: accuracy by layer, recovered accuracy by algorithm / train dataset /
layer, and the best-generalising probes (r0, r1a–c, r2)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from probegen.aggregate import style
from probegen.aggregate.figures.common import boxes, layers_note, need, shade_early_layers
from probegen.aggregate.study import Study

TOP_PROBES = 20
NO_CROSS = (
    "no cross-dataset recovered accuracy at the later layers: train on at least two datasets "
    "that are also evaluated (train=… eval=…)"
)


def _lines_by_layer(ax, study: Study, rows, value: str) -> None:
    palette = style.colours(study.algorithms)
    for algorithm in study.algorithms:
        own = rows[rows["probe"] == algorithm]
        if own.empty:
            continue
        means = own.groupby("layer")[value].mean()
        baseline = algorithm == "random"
        ax.plot(
            means.index, means.to_numpy(), marker="o", ms=3, lw=1.4, label=algorithm,
            color=palette[algorithm], ls=":" if baseline else "-",
        )  # fmt: skip
    shade_early_layers(ax, study)
    ax.set_xlabel(f"layer (decoder block, 0-based, of {study.depth})")
    ax.legend(title="algorithm", loc="center left", bbox_to_anchor=(1.0, 0.5))


def r0_acc_by_layer(study: Study) -> Figure:
    rows = study.recovered[study.recovered["train_dataset"] == study.recovered["eval_dataset"]]
    need(not rows.empty, "no probe was scored on its own train dataset (add it to eval=)")
    fig, ax = style.new_figure()
    _lines_by_layer(ax, study, rows, "accuracy")
    style.percent_axis(ax, "y", (0.4, 1.02))
    ax.set_ylabel("validation accuracy on own dataset (%)")
    n = rows["train_dataset"].nunique()
    ax.set_title(f"{study.model}: in-distribution accuracy by layer (mean over {n} datasets)")
    return fig


def r1a_by_algorithms(study: Study) -> Figure:
    means = study.probe_means()
    need(not means.empty, NO_CROSS)
    palette = style.colours(study.algorithms)
    groups = [(a, means.loc[means["probe"] == a, "recovered"].to_numpy()) for a in study.algorithms]
    groups = [(a, v) for a, v in groups if len(v)]
    fig, ax = style.new_figure(7, 0.45 * len(groups) + 1.4)
    boxes(ax, groups, [palette[a] for a, _ in groups], "recovered accuracy on other datasets (%)")
    ax.set_title(
        f"{study.model}: generalisation by algorithm\n"
        f"one point per probe (train dataset × layer), {layers_note(study)}"
    )
    return fig


def r1b_by_train(study: Study) -> Figure:
    means = study.probe_means()
    need(not means.empty, NO_CROSS)
    groups = [
        (d, means.loc[means["train_dataset"] == d, "recovered"].to_numpy()) for d in study.datasets
    ]
    groups = [(d, v) for d, v in groups if len(v)]
    fig, ax = style.new_figure(7, 0.32 * len(groups) + 1.4)
    boxes(
        ax, groups, [style.OKABE_ITO[0]] * len(groups), "recovered accuracy on other datasets (%)"
    )
    ax.set_title(
        f"{study.model}: generalisation by train dataset\n"
        f"one point per probe (algorithm × layer), {layers_note(study)}"
    )
    return fig


def r1c_by_layer(study: Study) -> Figure:
    rows = study.recovered
    rows = rows[rows["train_dataset"] != rows["eval_dataset"]].dropna(subset=["recovered"])
    need(not rows.empty, NO_CROSS.replace(" at the later layers", ""))
    fig, ax = style.new_figure()
    _lines_by_layer(ax, study, rows, "recovered")
    style.percent_axis(ax, "y")
    ax.axhline(0.8, ls="--", c="#444444", lw=0.8)
    ax.set_ylabel("recovered accuracy on other datasets (%)")
    ax.set_title(f"{study.model}: generalisation by layer\n(mean over train × other eval datasets)")
    return fig


def r2_probes(study: Study) -> Figure:
    ranking = study.ranking
    need(len(ranking) > 0 and ranking["recovered_cross"].notna().any(), NO_CROSS)
    top = ranking.head(TOP_PROBES).iloc[::-1]
    palette = style.colours(study.algorithms)
    fig, ax = style.new_figure(7, 0.26 * len(top) + 1.5)
    y = np.arange(len(top))
    ax.barh(y, top["recovered_cross"], color=[palette[p] for p in top["probe"]], height=0.7)
    labels = [f"{p} · {t} · L{layer}" for p, t, layer in top[["probe", "train_dataset", "layer"]].
              itertuples(index=False)]  # fmt: skip
    ax.set_yticks(y, labels)
    for i, (value, score) in enumerate(zip(top["recovered_cross"], top["score"], strict=True)):
        ax.text(value + 0.01, i, f"{100 * value:.0f}%  (beats {100 * score:.0f}%)", va="center",
                size=7)  # fmt: skip
    handles = [Patch(color=palette[a], label=a) for a in study.algorithms if a in set(top["probe"])]
    baseline = study.baseline_cross()
    if baseline is not None:
        ax.axvline(baseline, ls=":", c="#555555", lw=1.5)
        handles.append(Line2D([], [], ls=":", c="#555555", lw=1.5, label="random direction"))
    style.percent_axis(ax, "x", (0, 1.18))
    ax.set_xlabel("mean recovered accuracy on other datasets (%)")
    ax.legend(handles=handles, title="algorithm", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(
        f"{study.model}: the {len(top)} best-generalising probes of {len(ranking)}\n"
        f"(pair-wise ranking, {layers_note(study)})"
    )
    return fig
