"""Scoring probes on an eval set (docs/design.md §6), vectorised over rows, groups and probes.

Every function takes a score matrix S [n_rows, k] (one column per probe direction) so that
all probes of a layer are scored on an eval set with one matmul and a few array passes.

- Grouped sets: accuracy = share of groups whose top-scoring row is true; ties between
  top rows are broken at random with a fixed seed. Groups whose rows are all true or all
  false say nothing about ranking and are left out (`n` counts the groups used).
- Ungrouped sets: accuracy at the ROC point closest to (0, 1), and AUROC (ties averaged).
- Sign: with policy "eval" a column is negated when that scores higher on this set
  (grouped: accuracy, ungrouped: AUROC), as in the original study; with "train" the
  caller passes the signs fixed on the training split.

What depends only on the rows (group codes, tie-break priorities) is derived once per eval
set in an `EvalSet`; the sweep keeps one per eval set and split for all layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Scores:
    """Per-column results: accuracy [k], auroc [k] (NaN when one class only), n, is_flipped [k]."""

    accuracy: np.ndarray
    auroc: np.ndarray
    n: int
    is_flipped: np.ndarray


def _as_scores(S: np.ndarray, n: int) -> np.ndarray:
    """S as [n, k]. float32 stays float32: ranking and comparing scores is exact in either
    width (widening keeps order and ties), and float32 halves the memory traffic."""
    S = np.asarray(S)
    if S.dtype not in (np.float32, np.float64):
        S = S.astype(np.float64)
    return S.reshape(n, -1)


class EvalSet:
    """The row structure of one eval set (labels; groups and their tie-break priorities),
    derived once and reused for every score matrix on these rows.

    Grouped accuracy: each group's rows are put in descending tie-break priority and the
    groups in descending size; slot s then holds the s-th row of the first `counts[s]`
    groups. One pass over the slots keeps, per group, the best score so far and whether its
    row is true; a later slot wins only with a strictly better score, so among tied top rows
    the one of highest priority wins. Scores with a NaN are undefined: their column gets
    accuracy and AUROC NaN.
    """

    def __init__(self, labels: np.ndarray, groups: np.ndarray | None, seed: int = 0):
        self.labels = np.asarray(labels, dtype=bool).reshape(-1)
        self.n_rows = len(self.labels)
        self.n_pos = int(self.labels.sum())
        self.grouped = groups is not None
        self.n_groups = 0
        if self.grouped:
            self._prepare_groups(np.asarray(groups, dtype=object).reshape(-1), seed)

    def _prepare_groups(self, groups: np.ndarray, seed: int) -> None:
        codes = np.unique(groups.astype(str), return_inverse=True)[1].reshape(-1)
        n_true = np.bincount(codes, weights=self.labels)
        size = np.bincount(codes)
        informative = (n_true > 0) & (n_true < size)
        kept = np.flatnonzero(informative[codes])
        self.n_groups = int(informative.sum())
        if not len(kept):
            return
        kept = kept[np.argsort(codes[kept], kind="stable")]
        # A distinct random priority per row picks one of several tied top rows,
        # reproducibly: a seeded permutation over the kept rows in (stable) group order.
        priority = np.random.default_rng(seed).permutation(len(kept))
        # Groups by size (largest first), then rows by priority (highest first).
        group = codes[kept]
        order = np.lexsort((-priority, group, -size[group]))
        rows, group = kept[order], group[order]
        new_group = np.r_[True, group[1:] != group[:-1]]
        slot = np.arange(len(rows)) - np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
        by_slot = np.argsort(slot, kind="stable")  # slot-major, groups in the same order
        self._slots = np.split(rows[by_slot], np.cumsum(np.bincount(slot))[:-1])

    def grouped_accuracy(self, S: np.ndarray, negated: bool = False) -> np.ndarray:
        """Share of informative groups whose top-scoring row is true, per column of S
        (of -S when `negated`); NaN when no group is informative."""
        S = _as_scores(S, self.n_rows)
        if negated:
            return self._grouped_both(S)[S.shape[1] :]
        return self._grouped_both(S, negated_too=False)

    def _grouped_both(self, S: np.ndarray, negated_too: bool = True) -> np.ndarray:
        """Grouped accuracy of the columns of S, then (`negated_too`) of those of -S, from one
        walk over the slots: -S's top row is S's bottom row, with the same tie-break."""
        k = S.shape[1]
        if not self.n_groups:
            return np.full(2 * k if negated_too else k, np.nan)
        top = S[self._slots[0]]  # [groups, k]: the best score so far
        top_true = np.repeat(self.labels[self._slots[0]][:, None], k, axis=1)
        if negated_too:
            bottom, bottom_true = top.copy(), top_true.copy()
        for rows in self._slots[1:]:
            c = len(rows)  # only the first c groups have this many rows
            score, true = S[rows], self.labels[rows][:, None]
            wins = score > top[:c]  # strictly: ties keep the earlier, higher-priority row
            np.maximum(top[:c], score, out=top[:c])
            np.copyto(top_true[:c], true, where=wins)
            if negated_too:
                wins = score < bottom[:c]
                np.minimum(bottom[:c], score, out=bottom[:c])
                np.copyto(bottom_true[:c], true, where=wins)
        accuracy = top_true.mean(axis=0)
        if negated_too:
            accuracy = np.concatenate([accuracy, bottom_true.mean(axis=0)])
        nan = np.isnan(S).any(axis=0)
        return np.where(np.tile(nan, 2) if negated_too else nan, np.nan, accuracy)

    def auroc(self, S: np.ndarray) -> np.ndarray:
        """Area under the ROC curve per column: Mann-Whitney U of the true rows against the
        false rows (a tie counts one half) / (n_true n_false); NaN with one class only.
        The counts are exact half-integers, so this equals the tie-averaged rank-sum form."""
        S = _as_scores(S, self.n_rows)
        n_pos, n_neg = self.n_pos, self.n_rows - self.n_pos
        if n_pos == 0 or n_neg == 0:
            return np.full(S.shape[1], np.nan)
        # Sorted needles make searchsorted a merge (each search starts where the last ended).
        pos = np.sort(S[self.labels].T, axis=1)
        neg = np.sort(S[~self.labels].T, axis=1)
        u = np.empty(S.shape[1])
        for j in range(S.shape[1]):
            below = np.searchsorted(neg[j], pos[j], side="left")
            tied = neg[j][np.minimum(below, n_neg - 1)] == pos[j]  # only where a tie is possible
            upto = np.searchsorted(neg[j], pos[j][tied], side="right") if tied.any() else below[:0]
            u[j] = below.sum() + 0.5 * (upto - below[tied]).sum()
        return np.where(np.isnan(S).any(axis=0), np.nan, u / (n_pos * n_neg))

    def score(self, S: np.ndarray, signs: np.ndarray | None = None) -> Scores:
        """Accuracy, AUROC and flips of each column of S on these rows.

        `signs=None` applies the "eval" policy (flip where the negated column scores higher);
        otherwise each column is multiplied by its given sign (+1/-1) first ("train" policy).
        """
        S = _as_scores(S, self.n_rows)
        k = S.shape[1]
        if signs is not None:
            S = S * np.asarray(signs, dtype=S.dtype)[None, :]
        au = self.auroc(S)
        if self.grouped:
            n, acc = self.n_groups, self._grouped_both(S, negated_too=signs is None)
        else:
            both = S if signs is not None else np.hstack([S, -S])
            n, acc = self.n_rows, roc_threshold_accuracy(both, self.labels)
        if signs is not None:
            return Scores(acc, au, n, np.asarray(signs) < 0)
        au = np.concatenate([au, 1 - au])  # negating every score mirrors the ROC curve
        chooser = acc if self.grouped else au
        flip = np.nan_to_num(chooser[k:], nan=-1) > np.nan_to_num(chooser[:k], nan=-1)
        pick = lambda v: np.where(flip, v[k:], v[:k])  # noqa: E731
        return Scores(pick(acc), pick(au), n, flip)


def grouped_accuracy(
    S: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Share of informative groups whose top-scoring row is true, per column of S."""
    rows = EvalSet(labels, groups, seed)
    return rows.grouped_accuracy(S), rows.n_groups


def auroc(S: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Area under the ROC curve per column (Mann-Whitney, ties averaged); NaN if one class."""
    return EvalSet(labels, None).auroc(S)


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
    """Accuracy, AUROC and flips of each column of S on one eval set (`EvalSet.score`;
    to score many matrices on the same rows, make one `EvalSet` and reuse it)."""
    return EvalSet(labels, groups, seed).score(S, signs)


def train_signs(S: np.ndarray, labels: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """The "train" sign policy: +1/-1 per column, whichever scores higher on the train split."""
    result = score(S, labels, groups)
    return np.where(result.is_flipped, -1.0, 1.0)
