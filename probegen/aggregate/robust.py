"""Conclusions that survive review: the robust view of the generalisation study (issue 14).

The original's recovered accuracy (RA) is dominated by the eval-label sign flip: a random
direction, flipped where that scores higher on the eval set, "recovers" about as much as a
trained probe. This view compares every probe with R seeded random directions scored on the
same cell, and puts an interval on every number. `robust_analysis(results, outcomes, depth)`
returns a `RobustStudy`; its `views` hold the same analysis under the train-fixed sign
policy ("fixed", the headline) and the original eval-sign policy ("eval", each with its own
null) for side-by-side reporting. Inputs: the results columns `accuracy_fixed`,
`null_{mean,sd,p95}[_fixed]` and the jobs' `outcomes.safetensors` (`probegen.outcomes`).

Choices:
1. Paired unit bootstrap. A unit is what accuracy averages over (an informative group of a
   grouped eval set, a row of an ungrouped one). Per eval set, B resamples (default 1000)
   of its u units with replacement, a multinomial counts matrix [B, u] seeded by (seed,
   dataset, split) alone: every probe on that eval set, and both policies, see the same
   resamples, so differences and ratios between cells are paired. Jobs whose units differ
   (`unit_digest`) are refused. Only the validation split is resampled: train-hparams
   only selects. Intervals are percentile intervals at 1 - alpha (95%).
2. threshold(E): the original's choice (original eight, train == eval, best train-hparams
   accuracy, ties by probe name then lowest layer; `metrics.threshold_probes`) on the
   policy's accuracy column, reported on validation, with its cell's bootstrap interval.
3. Not learned: E is left out of every robust number, as an eval set and as a train set,
   when its threshold's lower bound <= its threshold cell's null 95th percentile: the best
   in-distribution probe is not told apart from a random direction, so "recovering" it
   means nothing. Listed with the reason. Eval-only sets (no threshold) are left out too.
4. Chance-corrected recovery (CCR) of cell T→E: (acc - null) / (threshold(E) - null), the
   cell's own null mean in both places, so 0 = a random direction's accuracy and 1 = the
   in-distribution probe's. Per resample with the threshold cell's accuracy on the same
   resample. Not clipped: clipping at 0 and 1 piles resamples on the bounds and biases
   means and intervals (a null-level probe would show a mean above 0). Undefined (NaN,
   counted) where threshold <= null on a resample; means skip those. RA (clip(acc/thr, 0,
   1)) and the null's RA (clip(null/thr, 0, 1)) are kept beside it.
5. Transfer: one-sided p-value of acc > null per off-diagonal validation cell, the null's
   accuracies taken as Gaussian (z = (acc - null_mean) / null_sd; sd 0: p = 0 above the
   mean, else 1); Benjamini–Hochberg at q (0.05) over every off-diagonal validation cell
   on learned eval sets with a learned train set (all algorithms, train sets, layers: the
   cells any robust number uses). A cell transfers when BH rejects.
6. Headline, over the original eight at later layers (layer >= later_layer) trained on a
   learned set, each number {value, lo, hi}: share of probes transferring to at least half
   of the other learned sets; mean CCR over those probes × other learned sets; the mean RA
   and the null's mean RA of the same cells; the best probe = highest mean CCR on
   train-hparams (threshold = the threshold cell's train-hparams accuracy, so selection
   never sees validation), with its validation mean and interval. Means: point over cells,
   interval from the same mean per resample (RA with the threshold cell's resampled
   accuracy). Share: per resample, every cell of choice 5's family gets z from its
   resampled accuracy and null mean (null_sd from the results, as the point's), BH at q
   runs over that resample's family, and each probe's "at least half" is recounted
   (`probegen.aggregate.transfer`; resamples a chunk at a time, so memory stays at the
   family's float32 z, cells × B × 4 bytes). The interval thus holds the test's own noise:
   a probe whose cells sit near BH's line flips between resamples.
7. Matrix (train × eval, original eight, later layers, own cells included): mean CCR with
   an interval, and `significant` = at least half of the pair's cells transfer. The cells
   already passed an FDR-controlled test; the majority rule matches the headline's "at
   least half" and says a typical probe of the pair beats random directions. (An interval
   of the mean CCR clear of 0 was rejected: it tests "above the null mean", which probes
   within the null's spread also pass. "Any cell transfers" was rejected: with ~200 cells
   a pair, the FDR's expected false discoveries would light up pairs.) Own cells: NA.
8. Missing inputs degrade: results without the columns, or an original probe without
   outcomes for its cells, give `unavailable_reason`; other probes (random, variants)
   without them are dropped and named in `left_out`.

Caveats: a cell's sign (and, for ungrouped sets under the eval policy, its threshold) is
held fixed across resamples, not re-chosen, so eval-policy intervals are slightly narrow;
the null's per-direction spread (null_sd) comes from the results, not the resamples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from probegen.aggregate import bootstrap, metrics
from probegen.aggregate import study as _study
from probegen.aggregate.bootstrap import KEY
from probegen.aggregate.robust_tables import PolicyView, json_ready, policy_view
from probegen.outcomes import POLICIES, JobOutcomes
from probegen.results import LATER_COLUMNS

log = logging.getLogger(__name__)

VALIDATION, HPARAMS = metrics.VALIDATION, metrics.HPARAMS
# The columns this view reads, which tables written before they existed hold as nulls
ROBUST_COLUMNS = tuple(c for c in LATER_COLUMNS if c != "depth")
VALUES = ["accuracy", "null_mean", "null_sd", "null_p95"]
POLICY_COLUMNS = {  # policy -> results column -> name in this module's tables
    "fixed": dict(zip([f"{v}_fixed" for v in VALUES], VALUES, strict=True)),
    "eval": dict(zip(VALUES, VALUES, strict=True)),
}


@dataclass
class RobustStudy:
    """One model's robust analysis; `views[policy]` for each sign policy, `policy` the
    headline's. `unavailable_reason` set (and `views` empty) when it could not be made."""

    model: str
    policy: str
    later_layer: int
    resamples: int
    seed: int
    alpha: float
    q: float
    views: dict[str, PolicyView] = field(default_factory=dict)
    unavailable_reason: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)  # probe -> why
    notes: list[str] = field(default_factory=list)

    @property
    def view(self) -> PolicyView:
        """The headline policy's view (KeyError when unavailable)."""
        return self.views[self.policy]

    def summary(self) -> dict:
        """JSON-ready: settings, reasons, and each policy's headline."""
        out = {
            "available": self.unavailable_reason is None,
            "unavailable_reason": self.unavailable_reason,
            "model": self.model, "policy": self.policy, "later_layer": self.later_layer,
            "resamples": self.resamples, "seed": self.seed, "alpha": self.alpha, "q": self.q,
            "left_out": dict(self.left_out), "notes": list(self.notes),
            "headline": self.views[self.policy].headline if self.views else None,
            "headlines": {p: v.headline for p, v in self.views.items()},
        }  # fmt: skip
        return json_ready(out)


def robust_analysis(
    results: pd.DataFrame,
    outcomes: list[JobOutcomes],
    depth: int,
    *,
    later_layer: int | None = None,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    q: float = 0.05,
    policy: str = "fixed",
) -> RobustStudy:
    """The robust analysis of one model's results (RESULT_COLUMNS + ROBUST_COLUMNS rows,
    duplicates resolved) with its jobs' outcomes (others' models ignored; for a cell held
    by several, the last wins). `later_layer` None: ceil(13/40 x depth). ValueError on
    several models, an unknown policy, or outcomes whose units do not pair up."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: expected one of {POLICIES}")
    models = sorted(results["model"].unique())
    if len(models) != 1:
        raise ValueError(f"the robust view is per model, got {models}: split by model first")
    later = metrics.later_layer(depth) if later_layer is None else int(later_layer)
    out = RobustStudy(models[0], policy, later, int(resamples), int(seed), alpha, q)
    jobs = [job for job in outcomes if job.model == out.model]
    reason, kept = _usable(results, jobs, out.left_out)
    if reason is not None:
        log.warning("model %s: %s", out.model, reason)
        out.unavailable_reason = reason
        return out
    results = results[results["probe"].isin(kept)]
    jobs = [job for job in jobs if job.probe in kept]
    prepared = {p: _prepare(results, p, later, resamples, alpha) for p in POLICIES}
    for dataset in sorted(set().union(*(acc.best.index for acc, _, _ in prepared.values()))):
        sample = bootstrap.stack(jobs, dataset, VALIDATION)
        if sample is None:
            continue
        counts = bootstrap.resample_counts(sample.units, resamples, seed, dataset, VALIDATION)
        for acc, _, _ in prepared.values():
            acc.add(dataset, sample, counts)
    out.views = {p: policy_view(acc, hp, probes, later, q, out.notes)
                 for p, (acc, hp, probes) in prepared.items()}  # fmt: skip
    return out


def _usable(results: pd.DataFrame, jobs: list[JobOutcomes], left_out: dict[str, str]):
    """(reason the view cannot be made or None, probes kept); fills `left_out`."""
    missing = [c for c in ROBUST_COLUMNS if c not in results.columns]
    if missing:
        reason = (
            f"no robust view: the results lack {', '.join(missing)} (written before "
            "probe jobs recorded their random-direction nulls); re-run the probe jobs"
        )
        return reason, []
    ok = results[(results["status"] == "ok") & results["accuracy"].notna()]
    have = bootstrap.covered(jobs, VALIDATION)
    have = have.assign(layer=have["layer"].astype("int64")).drop_duplicates()
    trained = ok["train_dataset"].unique()
    needed = ok[(ok["eval_split"] == VALIDATION) & ok["eval_dataset"].isin(trained)]
    blocking: dict[str, str] = {}
    for probe in sorted(ok["probe"].unique()):
        rows = ok[ok["probe"] == probe]
        why = None
        if rows["accuracy_fixed"].isna().all() or rows["null_mean_fixed"].isna().all():
            why = "its results lack the null columns (written before they were recorded)"
        elif probe not in {job.probe for job in jobs}:
            why = "no outcomes.safetensors for its job"
        else:
            cells = needed.loc[needed["probe"] == probe, [*KEY, "eval_dataset"]]
            cells = cells.astype({"layer": "int64"}).merge(have, how="left", indicator=True)
            lacking = cells[cells["_merge"] == "left_only"]
            if len(lacking):
                first = lacking.iloc[0]
                why = (f"its outcomes lack {len(lacking)} of its {len(cells)} validation cells "
                       f"(e.g. {first['train_dataset']} / layer {first['layer']} on "
                       f"{first['eval_dataset']})")  # fmt: skip
        if why:
            (blocking if probe in _study.ORIGINAL_ALGORITHMS else left_out)[probe] = why
    if blocking:
        named = "; ".join(f"{p}: {w}" for p, w in blocking.items())
        return f"no robust view: {named}. Re-run those probe jobs", []
    kept = [p for p in ok["probe"].unique() if p not in left_out]
    if not set(kept) & set(_study.ORIGINAL_ALGORITHMS):
        return "no robust view: no probe of the original eight algorithms was scored", []
    return None, kept


def _rows(results: pd.DataFrame, policy: str, split: str) -> pd.DataFrame:
    """ok rows of `split` with the policy's columns under the VALUES names (float64)."""
    columns = POLICY_COLUMNS[policy]
    rows = results[(results["status"] == "ok") & (results["eval_split"] == split)]
    rows = rows[[*KEY, "eval_dataset", *columns]].rename(columns=columns)
    rows = rows.astype({c: "float64" for c in VALUES}).astype({"layer": "int64"})
    return rows.dropna(subset=["accuracy", "null_mean"]).reset_index(drop=True)


def _prepare(results: pd.DataFrame, policy: str, later: int, resamples: int, alpha: float):
    """(accumulator, train-hparams rows, probe list) of one policy, before any resampling."""
    original = results[results["probe"].isin(_study.ORIGINAL_ALGORITHMS)]
    column = {v: k for k, v in POLICY_COLUMNS[policy].items()}["accuracy"]
    best = metrics.threshold_probes(original.assign(accuracy=original[column]))
    val, hp = _rows(results, policy, VALIDATION), _rows(results, policy, HPARAMS)
    probes = val[KEY].drop_duplicates().sort_values(KEY).reset_index(drop=True)
    index = pd.MultiIndex.from_frame(probes)
    for rows in (val, hp):
        rows["pid"] = index.get_indexer(pd.MultiIndex.from_frame(rows[KEY]))
    val["in_matrix"] = val["probe"].isin(_study.ORIGINAL_ALGORITHMS) & (val["layer"] >= later)
    acc = bootstrap.Accumulator(policy, val, best, len(probes), resamples, alpha)
    return acc, hp, probes
