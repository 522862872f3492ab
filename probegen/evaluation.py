"""Scoring probes on an eval set (DESIGN §6), vectorised over rows, groups and probes.

Every function takes a score matrix S [n_rows, k] (one column per probe direction) so that
all probes of a layer are scored on an eval set with one matmul and a few array passes.

- Grouped sets: accuracy = share of groups whose top-scoring row is true; ties between
  top rows are broken at random with a fixed seed. Groups whose rows are all true or all
  false say nothing about ranking and are left out (`n` counts the groups used).
- Ungrouped sets: accuracy at the ROC point closest to (0, 1), and AUROC (ties averaged).
- Sign: with policy "eval" a column is negated when that scores higher on this set
  (grouped: accuracy, ungrouped: AUROC), as in the original study; with "train" the
  caller passes the signs fixed on the training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass
class Scores:
    """Per-column results: accuracy [k], auroc [k] (NaN when one class only), n, is_flipped [k]."""

    accuracy: np.ndarray
    auroc: np.ndarray
    n: int
    is_flipped: np.ndarray


def _group_codes(groups: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1]


def grouped_accuracy(
    S: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Share of informative groups whose top-scoring row is true, per column of S."""
    S = np.asarray(S, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=bool)
    codes = _group_codes(groups)
    n_true = np.bincount(codes, weights=labels)
    size = np.bincount(codes)
    informative = (n_true > 0) & (n_true < size)
    keep = informative[codes]
    if not keep.any():
        return np.full(S.shape[1], np.nan), 0
    S, labels, codes = S[keep], labels[keep], codes[keep]
    order = np.argsort(codes, kind="stable")
    S, labels, codes = S[order], labels[order], codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    group_of_row = np.cumsum(np.r_[False, codes[1:] != codes[:-1]])
    top = np.maximum.reduceat(S, starts, axis=0)  # [G, k]
    is_top = S == top[group_of_row]
    # A distinct random priority per row picks one of several tied top rows, reproducibly.
    priority = np.random.default_rng(seed).permutation(len(labels)).astype(np.float64)
    chosen_priority = np.where(is_top, priority[:, None], -1.0)
    winner = chosen_priority == np.maximum.reduceat(chosen_priority, starts, axis=0)[group_of_row]
    correct = np.add.reduceat(winner & labels[:, None], starts, axis=0)  # [G, k], 0 or 1
    return correct.mean(axis=0), len(starts)


def auroc(S: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Area under the ROC curve per column (Mann-Whitney, ties averaged); NaN if one class."""
    S = np.asarray(S, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return np.full(S.shape[1], np.nan)
    ranks = rankdata(S, axis=0)
    return (ranks[labels].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def roc_threshold_accuracy(S: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Accuracy when thresholding at the ROC point closest to (0, 1), per column."""
    S = np.asarray(S, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=bool)
    n = len(labels)
    n_pos, n_neg = labels.sum(), n - labels.sum()
    if n_pos == 0 or n_neg == 0:
        return np.full(S.shape[1], np.nan)
    order = np.argsort(-S, axis=0, kind="stable")
    s_sorted = np.take_along_axis(S, order, axis=0)
    pos_sorted = labels[order]
    tp = np.cumsum(pos_sorted, axis=0)  # predicting the top i+1 rows as true
    fp = np.arange(1, n + 1)[:, None] - tp
    # A threshold can only fall between distinct scores: tied rows go together.
    cut_ok = np.vstack([s_sorted[1:] != s_sorted[:-1], np.ones((1, S.shape[1]), bool)])
    dist = (fp / n_neg) ** 2 + (1 - tp / n_pos) ** 2
    dist = np.where(cut_ok, dist, np.inf)
    best = dist.argmin(axis=0)
    cols = np.arange(S.shape[1])
    accuracy = (tp[best, cols] + n_neg - fp[best, cols]) / n
    # Predicting nothing as true is the ROC point (0, 0), at distance 1.
    return np.where(dist[best, cols] <= 1.0, accuracy, n_neg / n)


def score(
    S: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    *,
    signs: np.ndarray | None = None,
    seed: int = 0,
) -> Scores:
    """Accuracy, AUROC and flips of each column of S on one eval set.

    `signs=None` applies the "eval" policy (flip where the negated column scores higher);
    otherwise each column is multiplied by its given sign (+1/-1) first ("train" policy).
    """
    S = np.asarray(S, dtype=np.float64).reshape(len(labels), -1)
    k = S.shape[1]
    if signs is not None:
        S = S * np.asarray(signs, dtype=np.float64)[None, :]
        both = S
    else:
        both = np.hstack([S, -S])
    au = auroc(S, labels)
    if signs is None:
        au = np.concatenate([au, 1 - au])  # negating every score mirrors the ROC curve
    if groups is not None:
        acc, n = grouped_accuracy(both, labels, groups, seed)
        chooser = acc
    else:
        acc, n = roc_threshold_accuracy(both, labels), len(labels)
        chooser = au
    if signs is not None:
        return Scores(acc, au, n, np.asarray(signs) < 0)
    flip = np.nan_to_num(chooser[k:], nan=-1) > np.nan_to_num(chooser[:k], nan=-1)
    pick = lambda v: np.where(flip, v[k:], v[:k])  # noqa: E731
    return Scores(pick(acc), pick(au), n, flip)


def train_signs(S: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """The "train" sign policy: +1/-1 per column, whichever scores higher on the train split."""
    result = score(S, labels, groups)
    return np.where(result.is_flipped, -1.0, 1.0)
