"""Recovered accuracy, the generalisation ranking and the headline numbers (DESIGN §8).

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
REFERENCE = {  # the original study, Llama-2-13b-chat, layers >= 13 of 40
    "model": "Llama-2-13b-chat",
    "share_probes_above_80": 0.36,
    "best_probe_recovered": 0.92,
    "best_probe": {"probe": "dim", "train_dataset": "dbpedia_14", "layer": 21},
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


def headline(recovered: pd.DataFrame, later_layers_only: bool = True, *, depth: int) -> dict:
    """The headline numbers beside the study's Llama-2-13B reference (JSON-ready).

    `depth` is the model's number of layers; with `later_layers_only` only probes at
    layer >= depth / 3 count (DESIGN §8; the study used layers >= 13 of 40).
    - mean_cross_recovered: mean recovered over all train != eval cells;
    - share_probes_above_80: share of probes whose recovered accuracy (mean over eval
      datasets, own included, as the study) is > 0.8; `_cross`: own train set excluded;
    - best_probe: rank 1 of `generalisation_ranking` over the same probes.
    Probes without any recovered value (no thresholds) are left out of the shares.
    """
    min_layer = depth / 3 if later_layers_only else 0.0
    rows = recovered[recovered["layer"] >= min_layer]
    if rows["recovered"].notna().sum() == 0:
        raise ValueError(f"no recovered accuracy at layers >= {min_layer:g}: nothing to report")
    ranking = generalisation_ranking(rows)
    cross = rows.loc[rows["train_dataset"] != rows["eval_dataset"], "recovered"]
    best = ranking.iloc[0]
    models = rows["model"].unique()
    return {
        "model": str(models[0]) if len(models) == 1 else None,
        "depth": int(depth),
        "later_layers_only": bool(later_layers_only),
        "min_layer": float(min_layer),
        "n_probes": int(ranking["recovered"].notna().sum()),
        "mean_cross_recovered": float(cross.mean()),
        "share_probes_above_80": float((ranking["recovered"].dropna() > 0.8).mean()),
        "share_probes_above_80_cross": float((ranking["recovered_cross"].dropna() > 0.8).mean()),
        "best_probe": {
            "probe": str(best["probe"]),
            "train_dataset": str(best["train_dataset"]),
            "layer": int(best["layer"]),
            "recovered": float(best["recovered"]),
            "recovered_cross": float(best["recovered_cross"]),
            "score": float(best["score"]),
        },
        "reference": REFERENCE,
    }
