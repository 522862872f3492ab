"""Checks against the papers the probes come from (v1–v4): do our numbers look like theirs?

v1: accuracy on ARC-Easy by layer (RepE, Zou et al. 2023, reports LAT on ARC-Easy);
v2: train × eval accuracy among the Geometry-of-Truth datasets (Marks & Tegmark 2023);
v3: in-distribution accuracy on the RepE datasets; v4: LDA against DIM in and out of
distribution (the study found LDA fits its own dataset and generalises worse).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from probegen import datasets
from probegen.aggregate import style
from probegen.aggregate.figures.common import (
    layers_note,
    matrix,
    need,
    shade_early_layers,
    train_eval_heatmap,
)
from probegen.aggregate.study import Study

ARC_EASY = "arc_easy"


def _own(study: Study) -> pd.DataFrame:
    rows = study.recovered
    return rows[rows["train_dataset"] == rows["eval_dataset"]]


def _best_layer_rows(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per `by` group, the rows of the layer with the best mean train-hparams accuracy."""
    means = rows.groupby([*by, "layer"], as_index=False)["accuracy_hparams"].mean()
    means = means.sort_values("accuracy_hparams", ascending=False, kind="stable")
    best = means.drop_duplicates(by)[[*by, "layer"]]
    return rows.merge(best, on=[*by, "layer"])


def v1_arc_easy(study: Study) -> Figure:
    rows = _own(study)
    rows = rows[rows["eval_dataset"] == ARC_EASY]
    need(not rows.empty, f"{ARC_EASY} was not both trained on and evaluated (train=… eval=…)")
    palette = style.colours(study.algorithms)
    fig, ax = style.new_figure()
    for algorithm in study.algorithms:
        own = rows[rows["probe"] == algorithm].sort_values("layer")
        if not own.empty:
            ax.plot(own["layer"], own["accuracy"], marker="o", ms=3, label=algorithm,
                    color=palette[algorithm], ls=":" if algorithm == "random" else "-")  # fmt: skip
    shade_early_layers(ax, study)
    style.percent_axis(ax, "y")
    ax.set_xlabel(f"layer (decoder block, 0-based, of {study.depth})")
    ax.set_ylabel("ARC-Easy validation accuracy (%)")
    ax.legend(title="algorithm", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"{study.model}: probes trained and scored on ARC-Easy, by layer (RepE's check)")
    return fig


def v2_got(study: Study) -> Figure:
    names = [d for d in datasets.collections()["got"] if d in study.datasets]
    own = study.recovered[study.recovered["train_dataset"].isin(names)]
    own = own[own["eval_dataset"].isin(names)]
    need(len(names) >= 2, "needs at least two Geometry-of-Truth datasets trained and evaluated")
    algorithms = [a for a in ("dim", "lr", "lda") if a in set(own["probe"])][:2]
    need(bool(algorithms), "needs dim (mass-mean), lr or lda probes on the GoT datasets")
    size = 0.45 * len(names) + 2.4
    fig, axes = style.new_figure(size * len(algorithms) + 1.5, size, ncols=len(algorithms))
    for ax, algorithm in zip(np.atleast_1d(axes), algorithms, strict=True):
        rows = own[own["probe"] == algorithm]
        # the layer with the best mean train-hparams accuracy over the GoT pairs
        by_layer = rows.groupby("layer")["accuracy_hparams"].mean()
        layer = int(by_layer.sort_values(ascending=False, kind="stable").index[0])
        rows = rows[rows["layer"] == layer]
        values = matrix(rows, "train_dataset", "eval_dataset", "accuracy", names, names)
        train_eval_heatmap(ax, values, names, "validation accuracy")
        ax.set_title(f"{algorithm}, layer {layer}")
    fig.suptitle(
        f"{study.model}: validation accuracy among the Geometry-of-Truth datasets\n"
        f"(Marks & Tegmark's check; layer chosen on train-hparams)"
    )
    return fig


def v3_repe(study: Study) -> Figure:
    names = [d for d in datasets.collections()["repe"] if d in study.datasets]
    rows = _own(study)
    rows = rows[rows["eval_dataset"].isin(names)]
    need(not rows.empty, "no RepE dataset (repe collection) was both trained on and evaluated")
    rows = _best_layer_rows(rows, ["probe", "eval_dataset"])
    algorithms = [a for a in study.algorithms if a in set(rows["probe"])]
    palette = style.colours(study.algorithms)
    names = [d for d in names if d in set(rows["eval_dataset"])]
    fig, ax = style.new_figure(max(7.0, 1.3 * len(names) + 2.5), 4.2)
    width = 0.8 / len(algorithms)
    for i, algorithm in enumerate(algorithms):
        values = rows[rows["probe"] == algorithm].set_index("eval_dataset")["accuracy"]
        x = np.arange(len(names)) + (i - (len(algorithms) - 1) / 2) * width
        values = values.reindex(names)
        ax.bar(x, values, width, label=algorithm, color=palette[algorithm])
        for xi, value in zip(x, values, strict=True):
            if np.isfinite(value):
                ax.text(xi, value + 0.01, f"{100 * value:.0f}", ha="center", size=6.5)
    ax.set_xticks(range(len(names)), names)
    style.percent_axis(ax, "y", (0, 1.08))
    ax.set_ylabel("validation accuracy on own dataset (%)")
    ax.legend(title="algorithm", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(
        f"{study.model}: in-distribution accuracy on the RepE datasets\n"
        f"(each bar at its layer chosen on train-hparams)"
    )
    return fig


def v4_lda(study: Study) -> Figure:
    present = set(study.later["probe"])
    need({"lda", "dim"} <= present, "needs both lda and dim probes at the later layers")
    algorithms = [a for a in study.algorithms if a in {"dim", "lda", "lr"} & present]
    later = study.later.dropna(subset=["recovered"])
    own = later["train_dataset"] == later["eval_dataset"]
    values = {
        "own dataset": later[own].groupby("probe")["recovered"].mean(),
        "other datasets": later[~own].groupby("probe")["recovered"].mean(),
    }
    need(values["other datasets"].reindex(algorithms).notna().any(), "no cross-dataset scores")
    palette = style.colours(study.algorithms)
    fig, ax = style.new_figure(6, 3.8)
    for j, algorithm in enumerate(algorithms):
        for i, series in enumerate(values.values()):
            value = series.get(algorithm, np.nan)
            x = i + (j - (len(algorithms) - 1) / 2) * 0.25
            ax.bar(x, value, 0.25, color=palette[algorithm], label=algorithm if i == 0 else None)
            if np.isfinite(value):
                ax.text(x, value + 0.01, f"{100 * value:.0f}", ha="center", size=7)
    ax.set_xticks(range(len(values)), [f"scored on {k}" for k in values])
    style.percent_axis(ax, "y", (0, 1.1))
    ax.set_ylabel("mean recovered accuracy (%)")
    ax.legend(title="algorithm", loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(f"{study.model}: does LDA overfit its train dataset? ({layers_note(study)})")
    return fig
