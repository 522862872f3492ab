"""The paired unit bootstrap and the tests behind stage 3's robust view (docs/design.md §8).

Mechanics only: `probegen.aggregate.robust` makes the choices and explains them.

- `stack` gathers every job's cells on one eval set (dataset, split) from the outcomes
  files (`probegen.outcomes`) into one array per policy, refusing jobs whose units differ.
- `resample_counts` draws B resamples of an eval set's units as a multinomial counts matrix
  [B, u], seeded by (seed, dataset, split) alone, so every cell on that eval set, of every
  job and both policies, sees the same resamples (paired comparisons).
- `EvalSample.accuracy` / `null_mean`: per resample and cell, one float32 matrix product
  for all cells at once.
- `Accumulator`: one policy's resampled statistics, eval set by eval set: the threshold's
  interval and the learned test, every cell's intervals, per probe the per-resample sums
  of chance-corrected recovery, RA and the null's RA over the other eval sets, per (train,
  eval) pair the interval of the matrix's mean, and every off-diagonal cell's per-resample
  z (float32 [B, cells] per eval set) for the transfer test on each resample
  (`probegen.aggregate.transfer`).

The statistics each resample feeds (chance-corrected recovery, the test against the null,
Benjamini–Hochberg) are `probegen.aggregate.significance`.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from probegen.aggregate.significance import null_z, recovery
from probegen.outcomes import POLICIES, EvalOutcomes, JobOutcomes

KEY = ["probe", "train_dataset", "layer"]  # a cell on a given eval set
_CHUNK = 1024  # cells converted to float32 at a time: bounds the copy at 4 KiB x units
SUMMED = ("ccr", "recovered", "null_recovered")  # per-probe sums the Accumulator keeps
# SUMMED -> its count: RA and the null's RA are defined together (threshold > 0)
COUNTED = {"ccr": "ccr", "recovered": "recovered", "null_recovered": "recovered"}


@dataclass
class EvalSample:
    """Every job's cells on one eval set: cell i is `cells.iloc[i]` in every array."""

    dataset: str
    split: str
    units: int
    cells: pd.DataFrame  # KEY columns, RangeIndex
    correct: dict[str, np.ndarray]  # policy -> bool [c, u]
    null_rows: dict[str, np.ndarray]  # policy -> uint16 [k, u], distinct rows only
    null_row: dict[str, np.ndarray]  # policy -> int64 [c]: the cell's row of null_rows
    null_scale: dict[str, np.ndarray]  # policy -> float32 [k]: 1 / (u x null directions)

    def accuracy(self, counts: np.ndarray, policy: str) -> np.ndarray:
        """float32 [B, c]: each cell's accuracy on each resample (`counts` [B, u])."""
        return _product(counts, self.correct[policy]) * np.float32(1.0 / self.units)

    def null_mean(self, counts: np.ndarray, policy: str) -> np.ndarray:
        """float32 [B, c]: each cell's null mean (mean accuracy of its random directions)
        on each resample."""
        means = _product(counts, self.null_rows[policy]) * self.null_scale[policy]
        return means[:, self.null_row[policy]]


def _product(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """counts [B, u] float32 @ values [k, u]ᵀ as float32, converting `values` a chunk at a
    time. Exact: the sums are integers below 2**24 for u x null directions < 16.7M."""
    out = np.empty((counts.shape[0], values.shape[0]), dtype=np.float32)
    for start in range(0, values.shape[0], _CHUNK):
        block = values[start : start + _CHUNK].astype(np.float32)
        np.matmul(counts, block.T, out=out[:, start : start + _CHUNK])
    return out


def resample_counts(units: int, resamples: int, seed: int, dataset: str, split: str) -> np.ndarray:
    """float32 [resamples, units]: how often each unit is drawn in each resample (each row
    sums to `units`), from a generator seeded by (seed, dataset, split) only."""
    if units < 1:
        raise ValueError(f"{dataset}/{split}: no units to resample")
    rng = np.random.default_rng([seed, zlib.crc32(dataset.encode()), zlib.crc32(split.encode())])
    # u uniform draws per resample, counted: multinomial(u, 1/u), ~8x faster than
    # rng.multinomial with u categories
    draws = rng.integers(0, units, size=(resamples, units))
    draws += np.arange(resamples)[:, None] * units
    counts = np.bincount(draws.ravel(), minlength=resamples * units)
    return counts.reshape(resamples, units).astype(np.float32)


def interval(samples: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The (1 - alpha) percentile interval over axis 0 (float64; NaN where any resample is
    NaN: such an interval is undefined, not narrower)."""
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2], axis=0)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def covered(outcomes: list[JobOutcomes], split: str) -> pd.DataFrame:
    """KEY + eval_dataset of every cell the outcomes hold on `split` (no arrays copied)."""
    frames = [
        _cells(job, e).assign(eval_dataset=dataset)
        for job in outcomes
        for (dataset, s), e in job.eval_sets.items()
        if s == split
    ]
    columns = [*KEY, "eval_dataset"]
    return pd.concat(frames)[columns] if frames else pd.DataFrame(columns=columns)


def stack(outcomes: list[JobOutcomes], dataset: str, split: str) -> EvalSample | None:
    """Every job's cells on (dataset, split), None when no job has any. A cell that several
    jobs hold is taken from the last of them (pass re-runs newest last). ValueError naming
    the jobs when those that contribute cells disagree on the units (`unit_digest`)."""
    parts = [(j, job, job.eval_sets[dataset, split]) for j, job in enumerate(outcomes)
             if (dataset, split) in job.eval_sets]  # fmt: skip
    if not parts:
        return None
    cells = [_cells(job, e) for _, job, e in parts]
    everything = pd.concat(cells, ignore_index=True)
    keep = ~everything.duplicated(KEY, keep="last").to_numpy()
    masks, start = [], 0
    for frame in cells:
        masks.append(keep[start : start + len(frame)])
        start += len(frame)
    used = [(j, job, e, m) for (j, job, e), m in zip(parts, masks, strict=True) if m.any()]
    units = {(e.unit_digest, int(e.units)) for _, _, e, _ in used}
    if len(units) > 1:
        named = ", ".join(f"{job.probe} (job {j}: {e.units} units, digest {e.unit_digest})"
                          for j, job, e, _ in used)  # fmt: skip
        raise ValueError(
            f"eval set {dataset}/{split}: the outcomes of {named} describe different units, "
            "so they cannot be resampled together; re-run those probe jobs on the same "
            "activation cache and limits"
        )
    u = int(used[0][2].units)
    correct = {p: np.concatenate([e.correct[p][m] for _, _, e, m in used]) for p in POLICIES}
    rows: dict[str, np.ndarray] = {}
    row: dict[str, np.ndarray] = {}
    scale: dict[str, np.ndarray] = {}
    for policy in POLICIES:
        blocks = [_null_block(e, m, policy) for _, _, e, m in used]
        directions = [job.null_directions for _, job, _, _ in used]
        rows[policy], row[policy], scale[policy] = _distinct(blocks, directions, u)
    return EvalSample(dataset, split, u, everything[keep].reset_index(drop=True), correct,
                      rows, row, scale)  # fmt: skip


def _cells(job: JobOutcomes, e: EvalOutcomes) -> pd.DataFrame:
    trains = np.asarray(job.train_datasets, dtype=object)
    return pd.DataFrame({"probe": job.probe, "train_dataset": trains[e.train],
                         "layer": e.layer.astype(np.int64)})  # fmt: skip


def _null_block(e: EvalOutcomes, mask: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(null count rows, each kept cell's row among them). The eval-sign null depends on the
    layer only: one row per layer, not per cell."""
    if policy == "fixed":
        rows = e.null_fixed[mask]
        return rows, np.arange(len(rows))
    position = {int(v): i for i, v in enumerate(e.null_layers)}
    return e.null_eval, np.array([position[int(v)] for v in e.layer[mask]], dtype=np.int64)


def _distinct(blocks, directions: list[int], units: int):
    """Concatenate null count rows keeping each distinct (row, directions) once: jobs that
    seed their random directions alike share them, and each distinct row costs a product."""
    seen: dict[tuple[bytes, int], int] = {}
    picks: list[tuple[int, int]] = []
    index = []
    for b, ((rows, which), r) in enumerate(zip(blocks, directions, strict=True)):
        local = np.empty(len(rows), dtype=np.int64)
        for i in range(len(rows)):
            key = (hashlib.blake2b(rows[i].tobytes(), digest_size=16).digest(), int(r))
            if key not in seen:
                seen[key] = len(picks)
                picks.append((b, i))
            local[i] = seen[key]
        index.append(local[which])
    out = np.stack([blocks[b][0][i] for b, i in picks]).astype(np.uint16, copy=False)
    scale = np.array([1.0 / (units * directions[b]) for b, _ in picks], dtype=np.float32)
    return out, np.concatenate(index), scale


class Accumulator:
    """One sign policy's bootstrap statistics, filled eval set by eval set (`add`).

    `rows`: the policy's ok validation rows (KEY, eval_dataset, accuracy, null_mean,
    null_sd, null_p95, `pid` = the probe's column in `sums`, `in_matrix`; a RangeIndex);
    `best`: `metrics.threshold_probes` on the policy's accuracy (index eval dataset).
    """

    def __init__(self, policy: str, rows: pd.DataFrame, best: pd.DataFrame, n_probes: int,
                 resamples: int, alpha: float):  # fmt: skip
        self.policy, self.rows, self.best, self.alpha = policy, rows, best, alpha
        # per resample and probe, over the other eval sets: sums of CCR, RA and the null's RA
        self.sums = {s: np.zeros((resamples, n_probes)) for s in SUMMED}
        # defined values summed (RA and the null's RA are defined together)
        self.n = {s: np.zeros((resamples, n_probes), dtype=np.int32)
                  for s in set(COUNTED.values())}  # fmt: skip
        self.z: list[np.ndarray] = []  # per eval set float32 [B, c]: off-diagonal cells' z
        self.z_rows: list[np.ndarray] = []  # per eval set: those cells' positions in `rows`
        self.thresholds: list[dict] = []
        self.parts: list[pd.DataFrame] = []  # per-cell intervals
        self.matrix: list[pd.DataFrame] = []  # per (train, eval) interval of the mean CCR
        self.undefined = 0  # resampled CCR values with threshold <= null
        self.mismatched = 0  # cells whose results accuracy differs from their outcomes'

    def add(self, dataset: str, sample: EvalSample, counts: np.ndarray) -> None:
        """Resample every cell on `dataset`'s validation split at once."""
        at = np.flatnonzero(self.rows["eval_dataset"] == dataset)  # positions in self.rows
        rows = self.rows.iloc[at].reset_index(drop=True)
        if dataset not in self.best.index or rows.empty:
            return
        position = pd.MultiIndex.from_frame(sample.cells).get_indexer(
            pd.MultiIndex.from_frame(rows[KEY])
        )
        found = position >= 0
        rows, position, at = rows[found].reset_index(drop=True), position[found], at[found]
        whole = sample.correct[self.policy][position].mean(axis=1)
        self.mismatched += int((np.abs(whole - rows["accuracy"].to_numpy()) > 1e-6).sum())
        acc = sample.accuracy(counts, self.policy)[:, position]
        best = self.best.loc[dataset]
        name = f"{best['probe']} / layer {int(best['layer'])}"
        hit = np.flatnonzero((rows["probe"] == best["probe"]) & (rows["layer"] == best["layer"])
                             & (rows["train_dataset"] == dataset))  # fmt: skip
        j = int(hit[0]) if len(hit) else -1
        lo, hi = interval(acc[:, j], self.alpha) if len(hit) else (np.nan, np.nan)
        p95 = float(rows.at[j, "null_p95"]) if len(hit) else np.nan
        learned = bool(lo > p95)  # NaN: not learned
        reason = "" if learned else (
            f"threshold {100 * best['threshold']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ≤ null "
            f"95th percentile {100 * p95:.1f}% ({name})" if np.isfinite(p95)
            else f"its threshold cell ({name}) has no null or no outcomes"
        )  # fmt: skip
        self.thresholds.append({
            "eval_dataset": dataset, "probe": best["probe"], "layer": int(best["layer"]),
            "threshold": float(best["threshold"]), "lo": float(lo), "hi": float(hi),
            "threshold_hparams": float(best["accuracy_hparams"]),
            "null_mean": float(rows.at[j, "null_mean"]) if len(hit) else np.nan,
            "null_p95": p95, "learned": learned, "reason": reason,
        })  # fmt: skip
        part = rows[[*KEY, "eval_dataset"]].copy()
        part["acc_lo"], part["acc_hi"] = interval(acc, self.alpha)
        self.parts.append(part)
        if not learned:
            return
        null, threshold = sample.null_mean(counts, self.policy)[:, position], acc[:, [j]]
        ccr = recovery(acc, null, threshold)
        part["ccr_lo"], part["ccr_hi"] = interval(ccr, self.alpha)
        finite = np.isfinite(ccr)
        self.undefined += int((~finite).sum())
        ccr = np.where(finite, ccr, np.float32(0))
        off = (rows["train_dataset"] != dataset).to_numpy()
        pid = rows.loc[off, "pid"].to_numpy()  # one cell per probe here: no repeated column
        self.sums["ccr"][:, pid] += ccr[:, off]
        self.n["ccr"][:, pid] += finite[:, off]
        defined = np.broadcast_to(threshold > 0, acc.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, value in (("recovered", acc), ("null_recovered", null)):
                ra = np.where(defined, np.clip(value / threshold, 0, 1), np.float32(0))
                self.sums[name][:, pid] += ra[:, off]
        self.n["recovered"][:, pid] += defined[:, off]
        # the transfer test per resample needs the whole family at once: keep z, not p
        sd = rows.loc[off, "null_sd"].to_numpy(dtype=np.float32)
        self.z.append(null_z(acc[:, off], null[:, off], sd))
        self.z_rows.append(at[off])
        chosen = rows["in_matrix"].to_numpy()
        trains, group = np.unique(rows.loc[chosen, "train_dataset"], return_inverse=True)
        onehot = np.eye(len(trains), dtype=np.float32)[group]
        with np.errstate(divide="ignore", invalid="ignore"):
            means = (ccr[:, chosen] @ onehot) / (finite[:, chosen].astype(np.float32) @ onehot)
        lo, hi = interval(means, self.alpha)
        self.matrix.append(pd.DataFrame({"train_dataset": trains, "eval_dataset": dataset,
                                         "ccr_lo": lo, "ccr_hi": hi}))  # fmt: skip

    def mean_interval(self, name: str, ids: np.ndarray) -> tuple[float, float]:
        """The interval of `name` (one of SUMMED) averaged over the probes `ids`' cells on
        the other eval sets, the mean recomputed per resample (NaN: none defined)."""
        n = self.n[COUNTED[name]][:, ids].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo, hi = interval(self.sums[name][:, ids].sum(axis=1) / n, self.alpha)
        return float(lo), float(hi)
