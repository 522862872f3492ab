"""One sign policy's tables and headline of the robust view (docs/design.md §8.1), made
from its bootstrap accumulator once every eval set is resampled: the thresholds and the
learned test, every cell's recovery and test against the null, per-probe transfer, the
train x eval matrix and the headline numbers with their intervals.

`probegen.aggregate.robust` runs the analysis and states its statistical choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from probegen.aggregate import bootstrap, significance, transfer
from probegen.aggregate import study as _study
from probegen.aggregate.bootstrap import KEY, interval
from probegen.aggregate.significance import recovery


@dataclass
class PolicyView:
    """The robust analysis under one sign policy. Tables (accuracies are fractions):

    - thresholds: per eval dataset with a threshold: probe, layer, threshold, lo, hi,
      threshold_hparams, null_mean, null_p95, learned, reason (why not learned)
    - cells: ok validation cells: KEY, eval_dataset, accuracy, null_mean, null_sd,
      null_p95, acc_lo/hi, threshold, own, in_scope (eval and train sets learned),
      recovered (RA), null_recovered, ccr, ccr_lo/hi, p_value, p_adjusted, transfers
    - probes: per probe trained on a learned set: ccr_cross (mean over the other learned
      sets), ccr_lo/hi, ccr_cross_hparams, n_eval, n_transfer, transfers_half,
      recovered_cross, null_recovered_cross, original, later
    - matrix: per (train, eval) of learned sets, original eight at later layers: ccr,
      ccr_lo/hi, n_cells, n_transfer, share_transfer, own, significant (NA on own cells)
    """

    policy: str
    thresholds: pd.DataFrame
    cells: pd.DataFrame
    probes: pd.DataFrame
    matrix: pd.DataFrame
    headline: dict

    @property
    def learned(self) -> list[str]:
        """Eval datasets that enter the robust numbers."""
        return sorted(self.thresholds.index[self.thresholds["learned"]])

    @property
    def not_learned(self) -> dict[str, str]:
        """Datasets left out, each with the reason."""
        t = self.thresholds[~self.thresholds["learned"]]
        return {str(e): str(r) for e, r in t["reason"].items()}


def policy_view(acc: bootstrap.Accumulator, hp: pd.DataFrame, probes: pd.DataFrame, later: int,
            q: float, notes: list[str]) -> PolicyView:  # fmt: skip
    """One policy's tables and headline, once every eval set is resampled."""
    policy = acc.policy
    thresholds = pd.DataFrame(acc.thresholds, columns=[
        "eval_dataset", "probe", "layer", "threshold", "lo", "hi", "threshold_hparams",
        "null_mean", "null_p95", "learned", "reason"]).set_index("eval_dataset")  # fmt: skip
    learned = set(thresholds.index[thresholds["learned"]])
    parts = pd.concat(acc.parts) if acc.parts else pd.DataFrame(columns=[*KEY, "eval_dataset"])
    cells = acc.rows.merge(parts, on=[*KEY, "eval_dataset"], how="left")
    for c in ("acc_lo", "acc_hi", "ccr_lo", "ccr_hi"):
        cells[c] = cells[c].astype("float64") if c in cells else np.nan
    cells["threshold"] = cells["eval_dataset"].map(thresholds["threshold"]).astype("float64")
    cells["own"] = cells["train_dataset"] == cells["eval_dataset"]
    cells["in_scope"] = cells["eval_dataset"].isin(learned) & cells["train_dataset"].isin(learned)
    cells["recovered"] = (cells["accuracy"] / cells["threshold"]).clip(0.0, 1.0)
    cells["null_recovered"] = (cells["null_mean"] / cells["threshold"]).clip(0.0, 1.0)
    ccr = recovery(cells["accuracy"], cells["null_mean"], cells["threshold"])
    cells["ccr"] = np.where(cells["in_scope"], ccr, np.nan)
    family = (cells["in_scope"] & ~cells["own"]).to_numpy()
    p = significance.null_p_values(cells["accuracy"], cells["null_mean"], cells["null_sd"])
    cells["p_value"] = np.where(family, p, np.nan)
    cells["p_adjusted"] = significance.bh_adjust(cells["p_value"])
    cells["transfers"] = significance.bh_reject(cells["p_value"], q)

    cross = cells[family].groupby("pid")
    table = probes.assign(
        ccr_cross=cross["ccr"].mean(), n_eval=cross["ccr"].size(),
        n_transfer=cross["transfers"].sum(), recovered_cross=cross["recovered"].mean(),
        null_recovered_cross=cross["null_recovered"].mean(),
    ).fillna({"n_eval": 0, "n_transfer": 0})  # fmt: skip
    hp = hp.assign(threshold=hp["eval_dataset"].map(thresholds["threshold_hparams"]))
    hp = hp[hp["eval_dataset"].isin(learned) & (hp["train_dataset"] != hp["eval_dataset"])]
    hp_ccr = pd.Series(recovery(hp["accuracy"], hp["null_mean"], hp["threshold"]), hp.index)
    table["ccr_cross_hparams"] = hp_ccr.groupby(hp["pid"]).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        table["ccr_lo"], table["ccr_hi"] = interval(acc.sums["ccr"] / acc.n["ccr"], acc.alpha)
    table["transfers_half"] = (table["n_eval"] > 0) & (table["n_transfer"] >= table["n_eval"] / 2)
    table["original"] = table["probe"].isin(_study.ORIGINAL_ALGORITHMS)
    table["later"] = table["layer"] >= later
    table = table[table["train_dataset"].isin(learned)].astype(
        {"n_eval": "int64", "n_transfer": "int64"}
    )

    chosen = cells[cells["in_scope"] & cells["in_matrix"]]
    pairs = chosen.groupby(["train_dataset", "eval_dataset"])
    matrix = pairs.agg(ccr=("ccr", "mean"), n_cells=("ccr", "size"),
                       n_transfer=("transfers", "sum")).reset_index()  # fmt: skip
    if acc.matrix:
        matrix = matrix.merge(pd.concat(acc.matrix), on=["train_dataset", "eval_dataset"],
                              how="left")  # fmt: skip
    matrix["own"] = matrix["train_dataset"] == matrix["eval_dataset"]
    matrix["share_transfer"] = (matrix["n_transfer"] / matrix["n_cells"]).where(~matrix["own"])
    matrix["significant"] = (matrix["share_transfer"] >= 0.5).astype("boolean")
    matrix.loc[matrix["own"], "significant"] = pd.NA

    head = table[table["original"] & table["later"]]
    ids = head.index.to_numpy()
    used = cells[family & cells["pid"].isin(ids).to_numpy()]
    share = transfer.share_interval(acc, family, ids, q)
    ranked = head.sort_values(["ccr_cross_hparams", *KEY], ascending=[False, True, True, True],
                              na_position="last")  # fmt: skip
    best = None
    if len(ranked) and ranked["ccr_cross_hparams"].notna().any():
        top = ranked.iloc[0]
        best = {k: top[k] for k in (*KEY, "ccr_cross_hparams", "ccr_cross", "ccr_lo", "ccr_hi",
                                    "n_transfer", "n_eval")}  # fmt: skip
    trained = set(acc.rows["train_dataset"])
    headline = {
        "policy": policy, "learned": sorted(learned),
        "not_learned": {str(e): r for e, r in thresholds.loc[~thresholds["learned"], "reason"]
                        .items()},
        "no_threshold": sorted(set(acc.rows["eval_dataset"]) - set(thresholds.index)),
        "n_probes": len(head),
        "share_transfer_half": _estimate(head["transfers_half"].mean(), share),
        "mean_ccr": _estimate(used["ccr"].mean(), acc.mean_interval("ccr", ids)),
        "best_probe": best, "n_cells": len(used),
        **{f"{name}_mean": _estimate(used[name].mean(), acc.mean_interval(name, ids))
           for name in ("recovered", "null_recovered")},
        "n_tests": int(family.sum()), "n_transfers": int(cells["transfers"].sum()),
        "undefined_ccr_resamples": acc.undefined,
        "untrained_eval_sets": sorted(set(acc.rows["eval_dataset"]) - trained),
    }  # fmt: skip
    if acc.mismatched:
        notes.append(f"{policy}: {acc.mismatched} validation cells' accuracy in the results "
                     "differs from their outcomes' (mixed runs?)")  # fmt: skip
    cells = cells.drop(columns="pid")
    return PolicyView(policy, thresholds, cells, table, matrix, json_ready(headline))


def _estimate(value: float, bounds: tuple[float, float]) -> dict:
    return {"value": value, "lo": bounds[0], "hi": bounds[1]}


def json_ready(value) -> object:
    """numpy scalars to Python, NaN to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
