"""The interval of the robust headline's share of transferring probes (docs/design.md §8.1).

Mechanics only: `probegen.aggregate.robust` (choice 6) explains the method. Per resample,
every family cell's p-value comes from its resampled accuracy and null mean (the z that
`bootstrap.Accumulator` kept, null_sd from the results as for the point value), the
Benjamini–Hochberg rule runs over the whole family of that resample, and each headline
probe transfers when at least half of its cells are rejected. The family spans every eval
set, so resamples are taken a chunk at a time: a [chunk, cells] matrix, not [B, cells].
"""

from __future__ import annotations

import numpy as np

from probegen.aggregate.bootstrap import Accumulator, interval
from probegen.aggregate.significance import bh_reject_rows

CHUNK = 100  # resamples tested at a time: ~70k cells x 100 x 4 B = 28 MB of z


def share_interval(
    acc: Accumulator, family: np.ndarray, ids: np.ndarray, q: float, chunk: int = CHUNK
) -> tuple[float, float]:
    """The percentile interval of the share of probes `ids` (columns of `acc.sums`) whose
    cells transfer on at least half of their family cells. `family`: bool per row of
    `acc.rows`, the cells the point value's BH runs over. (NaN, NaN) without probes."""
    if len(ids) == 0:
        return np.nan, np.nan
    if not acc.z:  # no learned eval set: no probe has a family cell
        return 0.0, 0.0
    keep = [family[rows] for rows in acc.z_rows]
    pid = acc.rows["pid"].to_numpy()
    column_pid = np.concatenate([pid[rows[k]] for rows, k in zip(acc.z_rows, keep, strict=True)])
    # the headline probes' columns, grouped by probe, for one reduceat per chunk
    mine = np.flatnonzero(np.isin(column_pid, ids))
    mine = mine[np.argsort(column_pid[mine], kind="stable")]
    if mine.size == 0:  # no headline probe has a family cell: none transfers
        return 0.0, 0.0
    grouped = column_pid[mine]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    n_eval = np.diff(np.r_[starts, grouped.size])
    resamples = acc.z[0].shape[0]
    shares = np.empty(resamples)
    for first in range(0, resamples, chunk):
        z = np.concatenate([block[first : first + chunk][:, k]
                            for block, k in zip(acc.z, keep, strict=True)], axis=1)  # fmt: skip
        rejected = bh_reject_rows(z, q)
        hits = np.add.reduceat(rejected[:, mine], starts, axis=1, dtype=np.int32)
        shares[first : first + chunk] = (hits >= n_eval / 2).sum(axis=1) / len(ids)
    lo, hi = interval(shares, acc.alpha)
    return float(lo), float(hi)
