"""The table behind each of the original's fourteen figures, computed the original's way
(mishajw/repeng `experiments/comparison.py`), from one `Study` (docs/design.md §8).

One function per figure; the figure modules only draw these tables, so tests check numbers,
not pixels. Unless a docstring says otherwise, a mean is over all layers, the original eight
algorithms (never `random`) and all eval datasets with a threshold, the probe's own train
dataset included — as the original's `df`. The only choices made here that the original
hard-codes for Llama-2-13B-chat are the best probe (`Study.best`, the ranking's top) and the
later-layer cut (`Study.later_layer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from probegen import datasets as registry
from probegen.aggregate.metrics import PROBE, truthful_qa_pairs
from probegen.aggregate.study import Probe, Study

if TYPE_CHECKING:  # robust imports study: only for the annotation
    from probegen.aggregate.robust import RobustStudy


class Skip(Exception):
    """A figure whose inputs are not in the sweep; the message says which and how to add them."""


def need(condition: bool, reason: str) -> None:
    """Raise Skip(reason) unless `condition`."""
    if not condition:
        raise Skip(reason)


NO_CROSS = (
    "no cross-dataset recovered accuracy, so no ranking and no best probe: train on at least "
    "two datasets that are also evaluated (train=… eval=…)"
)
SUPERVISED = ("dim", "lda", "lr", "lr-g")  # repeng's SUPERVISED_PROBES
GROUPED = ("ccs", "lr-g", "pca-g")  # repeng's GROUPED_PROBES
GOT_CHECK = ("got_cities", "got_larger_than", "got_sp_en_trans")  # the original's v2
GOT_CHECK_ALGORITHMS = ("dim", "lda")
# LAT in-distribution accuracy of Llama-2-13B-chat in the RepE paper, the original's v3 lines
REPE_LAT = {"race": 0.459, "open_book_qa": 0.547, "arc_easy": 0.803, "arc_challenge": 0.532}
LDA_CHECK_TRAIN = "boolq"  # the original's v4, top panel


def family(dataset: str) -> str:
    """The dataset's collection: dlk, repe, got, synthetic (else 'other')."""
    for name in ("dlk", "repe", "got", "synthetic"):
        if dataset in registry.collections()[name]:
            return name
    return "other"


def best_probe(study: Study) -> Probe:
    """The ranking's top, or Skip when there is no ranking."""
    need(study.best is not None, NO_CROSS)
    return study.best


def _pivot(rows: pd.DataFrame, index: str, value: str = "recovered") -> pd.DataFrame:
    return rows.pivot_table(index=index, columns="eval_dataset", values=value, aggfunc="mean")


def r0_table(study: Study) -> pd.DataFrame:
    """Per probe: mean recovered accuracy (own train dataset included); the ECDF's points,
    one curve per layer."""
    rows = study.rows.dropna(subset=["recovered"])
    need(not rows.empty, "no recovered accuracy: no probe was scored on its own train dataset")
    return rows.groupby(PROBE, as_index=False)["recovered"].mean()


def r1a_table(study: Study) -> pd.DataFrame:
    """Algorithm × eval dataset: recovered accuracy of the probes trained on the best
    probe's train dataset at its layer; that dataset's own column left out."""
    best = best_probe(study)
    rows = study.rows
    rows = rows[(rows["train_dataset"] == best.train_dataset) & (rows["layer"] == best.layer)]
    rows = rows[rows["eval_dataset"] != best.train_dataset]
    columns = [d for d in study.datasets if d != best.train_dataset]
    return _pivot(rows, "probe").reindex(index=study.original, columns=columns)


def r1b_table(study: Study) -> pd.DataFrame:
    """Train dataset × eval dataset: recovered accuracy of the best probe's algorithm at its
    layer; the best train dataset's column left out, rows with a missing cell dropped."""
    best = best_probe(study)
    rows = study.rows
    rows = rows[(rows["probe"] == best.probe) & (rows["layer"] == best.layer)]
    columns = [d for d in study.datasets if d != best.train_dataset]
    return _pivot(rows, "train_dataset").reindex(index=study.datasets, columns=columns).dropna()


def r1c_table(study: Study) -> pd.DataFrame:
    """Layer × eval dataset: recovered accuracy of the best probe's algorithm trained on its
    train dataset; that dataset's column left out."""
    best = best_probe(study)
    rows = study.rows
    rows = rows[(rows["probe"] == best.probe) & (rows["train_dataset"] == best.train_dataset)]
    columns = [d for d in study.datasets if d != best.train_dataset]
    return _pivot(rows, "layer").sort_index().reindex(columns=columns)


def r2_table(study: Study) -> pd.DataFrame:
    """Per algorithm (best first): mean recovered accuracy, supervised, grouped."""
    means = study.rows.groupby("probe")["recovered"].mean().dropna()
    need(not means.empty, "no recovered accuracy")
    out = means.reindex([a for a in study.original if a in means.index]).to_frame()
    out["supervised"] = out.index.isin(SUPERVISED)
    out["grouped"] = out.index.isin(GROUPED)
    return out


def r3a_table(study: Study) -> pd.DataFrame:
    """Per train dataset (best first): mean recovered accuracy and its family."""
    means = study.rows.groupby("train_dataset")["recovered"].mean().dropna()
    need(not means.empty, "no recovered accuracy")
    out = means.reindex([d for d in study.datasets if d in means.index]).to_frame()
    out["family"] = [family(d) for d in out.index]
    return out


def r3b_table(study: Study) -> pd.DataFrame:
    """Train × eval dataset (both in train order): recovered accuracy averaged over the
    algorithms and the later layers, own column included."""
    rows = study.later.dropna(subset=["recovered"])
    need(not rows.empty, f"no recovered accuracy at layers ≥ {study.later_layer}")
    return _pivot(rows, "train_dataset").reindex(index=study.datasets, columns=study.datasets)


def r3c_table(study: Study) -> pd.DataFrame:
    """Per dataset: `generalizes_from` (mean recovered accuracy of the probes trained on it)
    and `generalizes_to` (mean recovered accuracy on it), both own rows included."""
    rows = study.rows
    out = pd.DataFrame(
        {
            "generalizes_from": rows.groupby("train_dataset")["recovered"].mean(),
            "generalizes_to": rows.groupby("eval_dataset")["recovered"].mean(),
        }
    ).reindex(study.datasets)
    out = out.dropna()
    need(not out.empty, "no dataset is both trained on and evaluated")
    out["family"] = [family(d) for d in out.index]
    return out


def r3d_table(study: Study) -> pd.DataFrame:
    """The distance the clustering joins: 1 − (M + Mᵀ) / 2 of r3b's matrix M, zero on the
    diagonal."""
    matrix = r3b_table(study)
    need(len(matrix) >= 3, "clustering needs at least three datasets both trained on and evaluated")
    values = matrix.to_numpy(dtype="float64")
    need(np.isfinite(values).all(), "clustering needs every train × eval pair of r3b")
    distance = 1.0 - (values + values.T) / 2
    np.fill_diagonal(distance, 0.0)
    return pd.DataFrame(distance, index=matrix.index, columns=matrix.columns)


def r4_table(study: Study) -> pd.DataFrame:
    """Per probe: mean recovered accuracy on the other datasets (own left out) and its
    TruthfulQA validation accuracy (probes without one are dropped)."""
    pairs = truthful_qa_pairs(study.rows).dropna(subset=["truthful_qa"])
    need(
        not pairs.empty,
        "truthful_qa was not evaluated: extract it (dataset=truthful_qa) and score the probes "
        "on it (eval=all)",
    )
    return pairs


def _in_distribution(study: Study) -> pd.DataFrame:
    rows = study.rows
    return rows[rows["train_dataset"] == rows["eval_dataset"]]


def v1_table(study: Study) -> pd.DataFrame:
    """arc_easy in-distribution validation accuracy: one row per (algorithm, layer)."""
    rows = _in_distribution(study)
    rows = rows[rows["eval_dataset"] == "arc_easy"]
    need(not rows.empty, "arc_easy was not both trained on and evaluated (train=… eval=…)")
    out = rows[["probe", "layer", "accuracy"]].sort_values(["probe", "layer"])
    out["supervised"] = out["probe"].isin(SUPERVISED)
    return out.reset_index(drop=True)


def v2_table(study: Study) -> pd.DataFrame:
    """In-distribution accuracy by layer of dim and lda on the three GoT datasets the
    original checks (got_cities, got_larger_than, got_sp_en_trans)."""
    rows = _in_distribution(study)
    rows = rows[rows["train_dataset"].isin(GOT_CHECK) & rows["probe"].isin(GOT_CHECK_ALGORITHMS)]
    need(not rows.empty, f"needs dim or lda trained and evaluated on one of {', '.join(GOT_CHECK)}")
    out = rows[["probe", "train_dataset", "layer", "accuracy"]]
    return out.sort_values(["train_dataset", "probe", "layer"]).reset_index(drop=True)


def v3_table(study: Study) -> pd.DataFrame:
    """LAT in-distribution accuracy by layer on race, open_book_qa, arc_easy, arc_challenge."""
    rows = _in_distribution(study)
    rows = rows[(rows["probe"] == "lat") & rows["train_dataset"].isin(REPE_LAT)]
    need(not rows.empty, f"needs lat trained and evaluated on one of {', '.join(REPE_LAT)}")
    out = rows[["train_dataset", "layer", "accuracy"]].rename(columns={"train_dataset": "dataset"})
    return out.sort_values(["dataset", "layer"]).reset_index(drop=True)


def v4_table(study: Study) -> pd.DataFrame:
    """Validation accuracy (not recovered) of dim and lda at the best probe's layer, per
    eval dataset: `panel` "trained on boolq" (every eval dataset) and "trained on the eval
    dataset" (in-distribution)."""
    layer = best_probe(study).layer
    rows = study.rows
    rows = rows[rows["probe"].isin(("dim", "lda")) & (rows["layer"] == layer)]
    rows = rows[rows["eval_dataset"].isin(study.datasets)]  # the original's df: trained-on sets
    need(not rows.empty, f"needs dim or lda probes at layer {layer} (the best probe's)")
    boolq = rows[rows["train_dataset"] == LDA_CHECK_TRAIN]
    boolq = boolq.assign(panel=f"trained on {LDA_CHECK_TRAIN}")
    own = rows[rows["train_dataset"] == rows["eval_dataset"]]
    own = own.assign(panel="trained on the eval dataset")
    out = pd.concat([boolq, own])[["panel", "eval_dataset", "probe", "accuracy"]]
    return out.reset_index(drop=True)


class RobustMatrix(NamedTuple):
    """The robust view's train × eval matrix, both axes the learned datasets in train order:
    `ccr` mean chance-corrected recovery, `significant` 1.0 / 0.0 (NaN on own cells and
    pairs without cells), `own` True on the diagonal."""

    ccr: pd.DataFrame
    significant: pd.DataFrame
    own: pd.DataFrame


def robust_matrix_table(study: Study, robust: RobustStudy | None) -> RobustMatrix:
    """The headline policy's matrix (`PolicyView.matrix`: original eight, later layers, own
    cells included) laid out for the heat map; datasets not learned are absent."""
    need(robust is not None, "the robust view was not computed")
    need(robust.unavailable_reason is None, str(robust.unavailable_reason))
    view = robust.view
    need(not view.matrix.empty, f"no pair of learned datasets has probes at layers ≥ "
         f"{robust.later_layer} (learned: {', '.join(view.learned) or 'none'})")  # fmt: skip
    names = set(view.matrix["train_dataset"]) | set(view.matrix["eval_dataset"])
    order = [d for d in study.datasets if d in names] + sorted(names - set(study.datasets))
    matrix = view.matrix.assign(significant=view.matrix["significant"].astype("Float64"))
    ccr, significant = (
        matrix.pivot(index="train_dataset", columns="eval_dataset", values=column)
        .reindex(index=order, columns=order).astype("float64")
        for column in ("ccr", "significant")
    )  # fmt: skip
    own = pd.DataFrame(np.equal.outer(order, order), index=order, columns=order)
    return RobustMatrix(ccr, significant, own)
