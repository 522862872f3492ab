"""Figures about datasets: thresholds, the cross-dataset matrix, generalisation to and from
each dataset, a clustering of datasets, and TruthfulQA (r3a–d, r4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from probegen.aggregate import style
from probegen.aggregate.figures.common import layers_note, matrix, need, train_eval_heatmap
from probegen.aggregate.figures.probes import NO_CROSS
from probegen.aggregate.study import BASELINES, Study

TRUTHFUL_QA = "truthful_qa"


def best_algorithm_layer(study: Study) -> tuple[str, int]:
    """The (algorithm, layer) whose probes generalise best on average, chosen on the
    train-hparams split (mean cross-dataset recovered_hparams, later layers, no baselines)."""
    rows = study.cross[~study.cross["probe"].isin(BASELINES)]
    means = rows.groupby(["probe", "layer"])["recovered_hparams"].mean().dropna()
    need(not means.empty, NO_CROSS)
    best = means.sort_values(ascending=False, kind="stable").index[0]
    return str(best[0]), int(best[1])


def r3a_datasets(study: Study) -> Figure:
    thresholds = study.thresholds.reindex(study.datasets).dropna(subset=["threshold"])
    need(not thresholds.empty, "no probe was scored on its own train dataset (add it to eval=)")
    cross = study.later[study.later["train_dataset"] != study.later["eval_dataset"]]
    cross = cross[~cross["probe"].isin(BASELINES)]
    incoming = cross.groupby("eval_dataset")["accuracy"].mean().reindex(thresholds.index)
    fig, ax = style.new_figure(7, 0.34 * len(thresholds) + 1.5)
    y = np.arange(len(thresholds))[::-1]
    ax.barh(y + 0.2, thresholds["threshold"], height=0.4, color=style.OKABE_ITO[0],
            label="threshold: best probe trained on it")  # fmt: skip
    ax.barh(y - 0.2, incoming, height=0.4, color=style.OKABE_ITO[1],
            label="mean of probes trained on other datasets")  # fmt: skip
    for yi, (_, row) in zip(y, thresholds.iterrows(), strict=True):
        ax.text(row["threshold"] + 0.01, yi + 0.2, f"{100 * row['threshold']:.0f}%  "
                f"({row['probe']}, L{int(row['layer'])})", va="center", size=6.5)  # fmt: skip
    ax.set_yticks(y, thresholds.index)
    style.percent_axis(ax, "x", (0, 1.22))
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("validation accuracy (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    ax.set_title(
        f"{study.model}: each dataset's threshold (the denominator of recovered accuracy)\n"
        f"and the mean accuracy of other datasets' probes on it, {layers_note(study)}"
    )
    return fig


def r3b_matrix(study: Study) -> Figure:
    algorithm, layer = best_algorithm_layer(study)
    rows = study.recovered[(study.recovered["probe"] == algorithm)]
    rows = rows[rows["layer"] == layer]
    values = matrix(rows, "train_dataset", "eval_dataset", "recovered", study.datasets,
                    study.datasets)  # fmt: skip
    size = 0.42 * len(study.datasets) + 2.2
    fig, ax = style.new_figure(size + 1.2, size)
    train_eval_heatmap(ax, values, study.datasets, "recovered accuracy")
    ax.set_title(
        f"{study.model}: recovered accuracy of {algorithm} at layer {layer}\n"
        f"(the best algorithm × layer, chosen on train-hparams)"
    )
    return fig


def r3c_to_and_from(study: Study) -> Figure:
    cross = study.cross[~study.cross["probe"].isin(BASELINES)]
    need(not cross.empty, NO_CROSS)
    out = cross.groupby("train_dataset")["recovered"].mean().reindex(study.datasets)
    into = cross.groupby("eval_dataset")["recovered"].mean().reindex(study.datasets)
    fig, ax = style.new_figure(7, 0.34 * len(study.datasets) + 1.5)
    y = np.arange(len(study.datasets))[::-1]
    ax.barh(y + 0.2, out, height=0.4, color=style.OKABE_ITO[0],
            label="from: its probes, scored on other datasets")  # fmt: skip
    ax.barh(y - 0.2, into, height=0.4, color=style.OKABE_ITO[2],
            label="to: other datasets' probes, scored on it")  # fmt: skip
    ax.set_yticks(y, study.datasets)
    style.percent_axis(ax, "x")
    ax.set_xlabel("mean recovered accuracy (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    ax.set_title(f"{study.model}: generalisation from and to each dataset, {layers_note(study)}")
    return fig


def r3d_clustering(study: Study) -> Figure:
    cross = study.later[~study.later["probe"].isin(BASELINES)]
    names = [d for d in study.datasets if d in set(cross["eval_dataset"])]
    need(len(names) >= 3, "clustering needs at least three datasets both trained on and evaluated")
    values = matrix(cross, "train_dataset", "eval_dataset", "recovered", names, names)
    need(np.isfinite(values).all(), "clustering needs every train × eval pair of the datasets")
    # similarity of two datasets: how well probes carry over, both ways
    distance = 1.0 - (values + values.T) / 2
    np.fill_diagonal(distance, 0.0)
    tree = hierarchy.linkage(squareform(distance.clip(0, None), checks=False), "average")
    fig, (left, right) = style.new_figure(
        10, 0.38 * len(names) + 2.4, ncols=2, gridspec_kw={"width_ratios": [1, 2.4]}
    )
    leaves = hierarchy.dendrogram(
        tree, orientation="left", labels=names, ax=left, color_threshold=0,
        above_threshold_color="#333333", no_labels=True,
    )["leaves"]  # fmt: skip
    left.set_ylim(10 * len(names), 0)  # scipy puts leaf i at 10 i + 5: align with row i
    left.set_xlabel("distance = 1 − recovered accuracy\n(mean of both directions)")
    left.set_yticks([])
    left.spines["left"].set_visible(False)
    order = [names[i] for i in leaves]
    index = [names.index(n) for n in order]
    train_eval_heatmap(right, values[np.ix_(index, index)], order, "recovered accuracy")
    fig.suptitle(
        f"{study.model}: datasets clustered by how well probes transfer between them\n"
        f"(mean over algorithms and {layers_note(study)})"
    )
    return fig


def r4_truthful_qa(study: Study) -> Figure:
    rows = study.later[study.later["eval_dataset"] == TRUTHFUL_QA]
    need(
        not rows.empty,
        f"{TRUTHFUL_QA} was not evaluated: extract it (dataset={TRUTHFUL_QA}) and score the "
        f"probes on it (eval=all)",
    )
    algorithms = [a for a in study.algorithms if a in set(rows["probe"])]
    trains = [d for d in study.datasets if d in set(rows["train_dataset"])]
    values = matrix(rows, "train_dataset", "probe", "accuracy", trains, algorithms)
    fig, ax = style.new_figure(0.6 * len(algorithms) + 3.5, 0.36 * len(trains) + 1.8)
    style.heatmap(ax, values, trains, algorithms, label="TruthfulQA mc1 accuracy")
    ax.set_xlabel("algorithm")
    ax.set_ylabel("trained on")
    ax.set_title(
        f"{study.model}: TruthfulQA (mc1) validation accuracy of probes trained elsewhere\n"
        f"(mean over {layers_note(study)})"
    )
    return fig


def dataset_frame(study: Study) -> pd.DataFrame:
    """Per dataset: threshold, its probe and layer, mean recovered from and to it (report)."""
    cross = study.cross[~study.cross["probe"].isin(BASELINES)]
    frame = study.thresholds.reindex(study.datasets)[["threshold", "probe", "layer"]]
    frame["from"] = cross.groupby("train_dataset")["recovered"].mean()
    frame["to"] = cross.groupby("eval_dataset")["recovered"].mean()
    return frame
