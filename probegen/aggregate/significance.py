"""The robust view's statistics of one cell against its null (docs/design.md §8.1).

- `recovery`: chance-corrected recovery, (accuracy - null mean) / (threshold - null mean).
- `null_z`, `null_p_values`: the one-sided test of a probe's accuracy against the accuracies
  of its random directions, taken as Gaussian with their mean and sd.
- `bh_adjust`, `bh_reject`, `bh_reject_rows`: the Benjamini–Hochberg step-up procedure over
  a family of such tests (`bh_reject_rows`: one family per row, for every resample at once).

`probegen.aggregate.bootstrap` feeds them each resample; `probegen.aggregate.robust` makes
the choices and explains them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr, ndtri


def recovery(accuracy: ArrayLike, null_mean: ArrayLike, threshold: ArrayLike) -> np.ndarray:
    """(accuracy - null) / (threshold - null); NaN where threshold <= null (undefined)."""
    gap = threshold - null_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, (accuracy - null_mean) / gap, np.nan)


def null_z(accuracy: np.ndarray, null_mean: np.ndarray, null_sd: np.ndarray) -> np.ndarray:
    """(accuracy - null_mean) / null_sd, cells on the last axis (null_sd [c]), in the
    inputs' float dtype. sd 0: +inf above the mean, else -inf (so p = ndtr(-z) is 0 or 1).
    NaN in, NaN out."""
    diff = np.subtract(accuracy, null_mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / null_sd
    zero = null_sd == 0  # rare: patched alone, so resampled z stays one float32 pass
    if zero.any():
        d = diff[..., zero]
        z[..., zero] = np.where(np.isnan(d), np.nan, np.where(d > 0, np.inf, -np.inf))
    return z


def null_p_values(accuracy: ArrayLike, null_mean: ArrayLike, null_sd: ArrayLike) -> np.ndarray:
    """One-sided p-values of accuracy > null, the null's accuracies taken as Gaussian with
    the random directions' mean and sd. sd 0: p = 0 above the mean, else 1. NaN in, NaN out."""
    acc, mean, sd = (np.asarray(x, dtype=np.float64) for x in (accuracy, null_mean, null_sd))
    return ndtr(-null_z(acc, mean, sd))


def bh_adjust(p: ArrayLike) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (min over j >= i of m p_(j) / j, capped at 1);
    NaN p-values are not tests: they stay NaN and do not count in m."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if tested.size:
        order = tested[np.argsort(p[tested], kind="stable")]
        m = order.size
        scaled = p[order] * m / np.arange(1, m + 1)
        out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out


def bh_reject(p: ArrayLike, q: float) -> np.ndarray:
    """The step-up rule: reject the k smallest p-values, k the largest with
    p_(k) <= k q / m (NaN: not tested, never rejected)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.zeros(p.shape, dtype=bool)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    below = np.flatnonzero(p[order] <= q * np.arange(1, order.size + 1) / max(order.size, 1))
    if below.size:
        out[order[: below[-1] + 1]] = True
    return out


def bh_reject_rows(z: np.ndarray, q: float) -> np.ndarray:
    """`bh_reject` of p = ndtr(-z) on each row of z [n, m] at once (each row its own
    family; NaN: not tested), in z: p_(k) <= k q / m iff z_(k) >= -ndtri(k q / m), so no
    p-value is computed and the sort stays in z's dtype. Rejecting z >= the row's cutoff
    z_(k) equals rejecting the k largest: a tie past k would meet the rule at a larger k."""
    ranked = -np.sort(-z, axis=1)  # descending, NaN last
    tested = (~np.isnan(z)).sum(axis=1)
    below = np.zeros(z.shape, dtype=bool)
    k = np.arange(1, z.shape[1] + 1)
    for m in np.unique(tested):  # one m in every row when only null_sd can be NaN
        rows = tested == m
        below[rows] = ranked[rows] >= -ndtri(np.minimum(k * q / max(m, 1), 1.0))
    last = z.shape[1] - 1 - np.argmax(below[:, ::-1], axis=1)  # the largest such k, 0-based
    cutoff = np.where(below.any(axis=1), ranked[np.arange(z.shape[0]), last], np.inf)
    return z >= cutoff[:, None]
