"""Recovered accuracy, the generalisation ranking and the headline numbers (docs/design.md §8).

The definitions follow the original study's analysis script, mishajw/repeng
`experiments/comparison.py` (the version that writes r0_acc_by_layer.png ... v4_lda.png):

- threshold(E): among probes trained on E (any algorithm, any layer), the one with the best
  accuracy on E's train-hparams split; the threshold is its accuracy on E's validation split.
  (repeng: `df.query("train == eval").groupby("eval")["accuracy_hparams"].idxmax()`.)
- recovered = clip(accuracy / threshold(eval), 0, 1) on the validation split;
  recovered_hparams the same on the train-hparams split (used only to rank, so that picking
  the best probe never looks at the validation numbers it reports).
- Eval datasets that are never trained on (truthful_qa) have no threshold: their recovered
  value is NaN, so every mean below skips them. The study kept truthful_qa out of this table
  altogether and plotted its raw accuracy (r4_truthful_qa); the rows stay here, with their
  `accuracy`, for that figure.
- A probe is (algorithm, train dataset, layer). Its recovered accuracy is the mean over eval
  datasets, its own train set included, as in the study's ">80%" count
  (`groupby(["algorithm", "train", "layer"])["recovered_accuracy"].mean() > 0.8`);
  `recovered_cross` is the same mean without its own train set.
- The ranking compares every pair of probes over all layers, as the original; "later
  layers" (layer >= ceil(13/40 x depth), the original's 13 of 40) only enter the first
  headline number.

Metrics are per model: a results table with several models is refused (split it with
`results.groupby("model")`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PROBE = ["probe", "train_dataset", "layer"]  # one fitted probe
CELL = ["model", *PROBE, "eval_dataset"]  # one probe scored on one eval dataset
VALIDATION, HPARAMS = "validation", "train-hparams"
SOURCE_URL = "https://www.lesswrong.com/posts/cmicXAAEuPGqcs9jw/how-well-do-truth-probes-generalise"
LATER_LAYER_FRACTION = (13, 40)  # the original's "later layers": layer >= 13 of Llama-2-13B's 40
TRUTHFUL_QA = "truthful_qa"
# Llama-2-13B-chat's TruthfulQA MC1 in the RepE paper's table 1 (arXiv 2310.01405), the two
# dotted lines of the original's r4; the headline counts probes above the first.
TRUTHFUL_QA_LINES = (0.359, 0.503)
REFERENCE = {  # the original study's numbers, Llama-2-13b-chat, 40 layers
    "model": "Llama-2-13b-chat",
    "depth": 40,
    "later_layer": 13,
    "share_later_probes_above_80": 0.36,
    "best_probe": {"probe": "dim", "train_dataset": "dbpedia_14", "layer": 21},
    "best_probe_recovered": 0.928,
    "truthful_qa_share": 0.946,
    "source": SOURCE_URL,
}


def _ok(results: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one eval split that were scored (skipped/failed rows carry no accuracy)."""
    rows = results[(results["status"] == "ok") & (results["eval_split"] == split)]
    return rows.dropna(subset=["accuracy"]).astype({"accuracy": "float64"})


def _one_model(results: pd.DataFrame) -> None:
    models = sorted(results["model"].unique())
    if len(models) > 1:
        raise ValueError(f"metrics are per model, got {models}: split by model first")


def threshold_probes(results: pd.DataFrame) -> pd.DataFrame:
    """Per eval dataset E (index): the in-distribution probe that sets E's threshold, its
    train-hparams accuracy and its validation accuracy (`threshold`).

    Only (probe, layer) pairs scored ok on both splits of E compete. Ties on train-hparams
    accuracy go to the first probe name, then the lowest layer, so the choice is stable.
    """
    _one_model(results)
    keys = [*PROBE, "eval_dataset"]
    both = _ok(results, HPARAMS)[[*keys, "accuracy"]].merge(
        _ok(results, VALIDATION)[[*keys, "accuracy"]], on=keys, suffixes=("_hparams", "")
    )
    own = both[both["train_dataset"] == both["eval_dataset"]]
    best = own.sort_values(
        ["accuracy_hparams", "probe", "layer"], ascending=[False, True, True], kind="stable"
    ).drop_duplicates("eval_dataset")
    best = best.rename(columns={"accuracy": "threshold"}).set_index("eval_dataset")
    return best[["probe", "layer", "accuracy_hparams", "threshold"]].sort_index()


def thresholds(results: pd.DataFrame) -> pd.Series:
    """threshold(E) for every eval dataset E that some ok probe was trained on (float64)."""
    return threshold_probes(results)["threshold"].astype("float64")


def recovered(results: pd.DataFrame, thresholds: pd.Series) -> pd.DataFrame:
    """The ok validation rows with `threshold`, `recovered`, `accuracy_hparams` (the same
    cell on train-hparams, NaN when not scored) and `recovered_hparams`."""
    _one_model(results)
    hparams = _ok(results, HPARAMS)[[*CELL, "accuracy"]]
    try:
        out = _ok(results, VALIDATION).merge(
            hparams.rename(columns={"accuracy": "accuracy_hparams"}),
            on=CELL,
            how="left",
            validate="one_to_one",
        )
    except pd.errors.MergeError as err:
        raise ValueError(f"duplicate result rows; de-duplicate them first (pull): {err}") from err
    out["threshold"] = out["eval_dataset"].map(thresholds).astype("float64")
    out["recovered"] = (out["accuracy"] / out["threshold"]).clip(0.0, 1.0)
    out["recovered_hparams"] = (out["accuracy_hparams"] / out["threshold"]).clip(0.0, 1.0)
    return out


def generalisation_ranking(recovered: pd.DataFrame) -> pd.DataFrame:
    """Probes ranked by the study's pair-wise score, best first (one row per probe).

    For a pair (A, B), compare their train-hparams recovered accuracy on every eval dataset
    that neither was trained on (and both were scored on); A beats B when it is higher on
    more of them than B is. `score` = share of the other probes A beats. (The study divided
    by all probes, A included, which it can never beat: same order, slightly lower values.)
    Ties: higher mean `recovered`, then probe, train dataset, layer in ascending order.
    Also returns each probe's mean validation `recovered` (own train set included, as the
    study), `recovered_cross` (excluded) and `wins` (number of probes beaten).
    """
    grid = recovered.pivot(index=PROBE, columns="eval_dataset", values="recovered_hparams")
    values = grid.to_numpy(dtype="float64", copy=True)
    trains = grid.index.get_level_values("train_dataset").to_numpy()
    values[trains[:, None] == grid.columns.to_numpy()[None, :]] = np.nan  # own train set
    n = len(grid)
    # wins[a, b] = eval datasets where a > b; NaN compares False, so a cell missing for
    # either probe (incl. its own train set) counts for neither. One pass per eval dataset
    # keeps memory at n x n.
    wins = np.zeros((n, n), dtype=np.int32)
    for column in values.T:
        wins += column[:, None] > column[None, :]
    beats = wins > wins.T
    cross = recovered[recovered["train_dataset"] != recovered["eval_dataset"]]
    out = pd.DataFrame(
        {
            "wins": beats.sum(axis=1),
            "score": beats.sum(axis=1) / max(n - 1, 1),
        },
        index=grid.index,
    )
    out["recovered"] = recovered.groupby(PROBE)["recovered"].mean()
    out["recovered_cross"] = cross.groupby(PROBE)["recovered"].mean()
    out["recovered_hparams"] = recovered.groupby(PROBE)["recovered_hparams"].mean()
    out = out.reset_index().sort_values(
        ["score", "recovered", *PROBE], ascending=[False, False, True, True, True]
    )
    out.insert(0, "rank", np.arange(1, n + 1))
    return out.reset_index(drop=True).astype({"score": "float64", "wins": "int64"})


def later_layer(depth: int) -> int:
    """The first "later" layer: ceil(13/40 x depth), the original's cut (layer >= 13 of 40)
    carried over to other depths (36 layers -> 12, 30 -> 10)."""
    num, den = LATER_LAYER_FRACTION
    return -(-num * int(depth) // den)


def probe_recovered(recovered: pd.DataFrame) -> pd.DataFrame:
    """Per probe: mean `recovered` over its eval datasets, own train set included (as the
    original's ">80%" count), and `recovered_cross` without it (NaN when it has none)."""
    own = recovered["train_dataset"] == recovered["eval_dataset"]
    out = recovered.groupby(PROBE)["recovered"].mean().to_frame()
    out["recovered_cross"] = recovered[~own].groupby(PROBE)["recovered"].mean()
    return out.dropna(subset=["recovered"]).reset_index()


def share_later_above_80(recovered: pd.DataFrame, later_layer: int) -> tuple[float, int]:
    """(share, n): of the probes at layer >= `later_layer` with a recovered accuracy, the
    share whose mean recovered accuracy, own train set included, exceeds 0.8 (the original's
    `perc_above_80`). NaN share when there are none."""
    probes = probe_recovered(recovered[recovered["layer"] >= later_layer])
    share = float((probes["recovered"] > 0.8).mean()) if len(probes) else float("nan")
    return share, len(probes)


def truthful_qa_pairs(recovered: pd.DataFrame) -> pd.DataFrame:
    """Per probe with a cross-dataset recovered accuracy: `recovered_cross` (mean over the
    other datasets, all of them but its own) and `truthful_qa`, its TruthfulQA validation
    accuracy (NaN where not scored). The original's r4 table (`df_truthful_qa`)."""
    rows = recovered[recovered["train_dataset"] != recovered["eval_dataset"]]
    cross = rows.groupby(PROBE)["recovered"].mean().rename("recovered_cross").dropna()
    tqa = recovered[recovered["eval_dataset"] == TRUTHFUL_QA].groupby(PROBE)["accuracy"].mean()
    return cross.to_frame().join(tqa.rename(TRUTHFUL_QA)).reset_index()


def truthful_qa_share(recovered: pd.DataFrame, line: float = TRUTHFUL_QA_LINES[0]) -> dict | None:
    """The original's `perc_measuring_truth`: of the probes (all layers) whose recovered
    accuracy on the other datasets exceeds 0.8, the share whose TruthfulQA accuracy exceeds
    `line`. None when no probe was scored on TruthfulQA or none exceeds 0.8."""
    pairs = truthful_qa_pairs(recovered)
    if pairs[TRUTHFUL_QA].isna().all():
        return None
    above = pairs["recovered_cross"] > 0.8
    if not above.any():
        return {"share": None, "n_probes_above_80_cross": 0, "line": line}
    share = float((above & (pairs[TRUTHFUL_QA] > line)).sum() / above.sum())
    return {"share": share, "n_probes_above_80_cross": int(above.sum()), "line": line}


LABELS = {  # what each headline number counts; every label says if the own dataset is in
    "share_later_probes_above_80": "probes at the later layers whose mean recovered accuracy "
    "(own train dataset included) is > 80%",
    "best_probe": "best probe: top of the pair-wise generalisation ranking (all layers)",
    "best_probe_recovered": "best probe's mean recovered accuracy (own train dataset included)",
    "best_probe_recovered_cross": "best probe's mean recovered accuracy on the other datasets "
    "(own train dataset left out)",
    "truthful_qa_share": "probes (all layers) with > 80% recovered accuracy on the other "
    "datasets (own left out) whose TruthfulQA accuracy is > 35.9%",
    "mean_recovered": "mean recovered accuracy of all probes, all layers (own train dataset "
    "included)",
}


def headline(
    recovered: pd.DataFrame, *, later_layer: int, ranking: pd.DataFrame | None = None
) -> dict:
    """The original's headline numbers (JSON-ready), for the probes in `recovered` (pass the
    original eight algorithms only), beside the Llama-2-13B-chat reference.

    - share_later_probes_above_80: `share_later_above_80` at layer >= `later_layer`;
    - best_probe: rank 1 of `generalisation_ranking` over all layers (`ranking`, computed
      when not given), with its mean recovered accuracy own dataset included (the original's
      92.8%) and left out;
    - truthful_qa: `truthful_qa_share` (None without TruthfulQA scores);
    - mean_recovered: over every probe and eval dataset, own included.
    Raises ValueError when no probe has a recovered accuracy on another dataset: the
    ranking, and so the best probe, needs two datasets both trained on and evaluated.
    """
    cross = recovered.loc[recovered["train_dataset"] != recovered["eval_dataset"], "recovered"]
    if cross.notna().sum() == 0:
        raise ValueError(
            "no cross-dataset recovered accuracy: train on at least two datasets that are "
            "also evaluated, so probes can be ranked"
        )
    ranking = generalisation_ranking(recovered) if ranking is None else ranking
    best = ranking.iloc[0]
    share, n_later = share_later_above_80(recovered, later_layer)
    models = recovered["model"].unique()
    return {
        "model": str(models[0]) if len(models) == 1 else None,
        "later_layer": int(later_layer),
        "n_probes": int(len(ranking)),
        "n_later_probes": int(n_later),
        "share_later_probes_above_80": share,
        "best_probe": {
            "probe": str(best["probe"]),
            "train_dataset": str(best["train_dataset"]),
            "layer": int(best["layer"]),
            "recovered": float(best["recovered"]),
            "recovered_cross": float(best["recovered_cross"]),
            "score": float(best["score"]),
        },
        "truthful_qa": truthful_qa_share(recovered),
        "mean_recovered": float(recovered["recovered"].mean()),
        "labels": LABELS,
        "reference": REFERENCE,
    }
