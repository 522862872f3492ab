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


@dataclass
class Outcomes(Scores):
    """`Scores`, with whether each column got each unit right: `correct` bool [units, k]
    (units: informative groups in `EvalSet.unit_rows` order, or rows)."""

    correct: np.ndarray


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

    @property
    def units(self) -> int:
        """What accuracy averages over: informative groups (grouped) or rows."""
        return self.n_groups if self.grouped else self.n_rows

    def unit_rows(self) -> np.ndarray:
        """One row per unit, in unit order (the order of `Outcomes.correct`): for grouped
        sets the first row of each informative group, else every row."""
        if not self.grouped:
            return np.arange(self.n_rows)
        return self._slots[0] if self.n_groups else np.zeros(0, dtype=np.int64)

    def grouped_accuracy(self, S: np.ndarray, negated: bool = False) -> np.ndarray:
        """Share of informative groups whose top-scoring row is true, per column of S
        (of -S when `negated`); NaN when no group is informative."""
        S = _as_scores(S, self.n_rows)
        top, bottom = self.grouped_outcomes(S, negated_too=negated)
        return _mean_or_nan(bottom if negated else top, S)

    def grouped_outcomes(
        self, S: np.ndarray, negated_too: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per informative group and column: is the top row of S true, and (`negated_too`)
        is the top row of -S true — from one walk over the slots: -S's top row is S's
        bottom row, with the same tie-break. bool [groups, k] each (None when not asked)."""
        k = S.shape[1]
        if not self.n_groups:
            empty = np.zeros((0, k), dtype=bool)
            return empty, (empty if negated_too else None)
        top = S[self._slots[0]]  # [groups, k]: the best score so far
        top_true = np.repeat(self.labels[self._slots[0]][:, None], k, axis=1)
        bottom_true = None
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
        return top_true, bottom_true

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

    def outcomes(
        self,
        S: np.ndarray,
        signs: np.ndarray | None = None,
        thresholds: np.ndarray | None = None,
        with_auroc: bool = True,
    ) -> Outcomes:
        """Per unit and column of S, whether the column gets the unit right, with the
        accuracy (their mean), AUROC and flips.

        `signs=None` is the "eval" policy: a column is negated where that scores higher on
        these rows (grouped: accuracy, ungrouped: AUROC); ungrouped rows are then cut at
        their own ROC point (`roc_thresholds`). With `signs`, each column is multiplied by its
        sign; ungrouped rows are cut at `thresholds` (fixed elsewhere, on the scores after
        the sign) when given, else at their own ROC point. `with_auroc=False` leaves AUROC
        NaN where no rule needs it (it is the costly part for many columns).
        """
        S = _as_scores(S, self.n_rows)
        k = S.shape[1]
        if signs is not None:
            S = S * np.asarray(signs, dtype=S.dtype)[None, :]
        needed = with_auroc or (signs is None and not self.grouped)
        au = self.auroc(S) if needed else np.full(k, np.nan)
        if signs is None:
            flip = np.zeros(k, dtype=bool)
            if self.grouped:
                top, bottom = self.grouped_outcomes(S)
                flip = _mean_or_nan(bottom, S, -1) > _mean_or_nan(top, S, -1)
                correct = np.where(flip[None, :], bottom, top)
            else:
                flip = np.nan_to_num(1 - au, nan=-1) > np.nan_to_num(au, nan=-1)
                S = np.where(flip[None, :], -S, S)
                correct = self._cut(S, roc_thresholds(S, self.labels)[1])
            au = np.where(flip, 1 - au, au)
        else:
            flip = np.asarray(signs) < 0
            if self.grouped:
                correct = self.grouped_outcomes(S, negated_too=False)[0]
            else:
                cut = roc_thresholds(S, self.labels)[1] if thresholds is None else thresholds
                correct = self._cut(S, np.asarray(cut, dtype=np.float64))
        return Outcomes(_mean_or_nan(correct, S), au, self.units, flip, correct)

    def _cut(self, S: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """Whether "score >= threshold" says each row's label, per column."""
        return (S >= thresholds[None, :]) == self.labels[:, None]

    def score(
        self, S: np.ndarray, signs: np.ndarray | None = None, with_auroc: bool = True
    ) -> Scores:
        """Accuracy, AUROC and flips of each column of S on these rows (`outcomes` without
        the per-unit outcomes): `signs=None` is the "eval" policy, else each column is
        multiplied by its sign and ungrouped rows are cut at their own ROC point."""
        result = self.outcomes(S, signs, with_auroc=with_auroc)
        return Scores(result.accuracy, result.auroc, result.n, result.is_flipped)


def _mean_or_nan(correct: np.ndarray, S: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Accuracy per column: the mean over units; `fill` for a column with a NaN score or
    when there is no unit."""
    if not len(correct):
        return np.full(S.shape[1], fill)
    return np.where(np.isnan(S).any(axis=0), fill, correct.mean(axis=0))


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
    return roc_thresholds(S, labels)[0]


def roc_thresholds(S: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the cut at the ROC point closest to (0, 1): its accuracy, and the
    threshold t such that "score >= t" is that prediction (+inf: predict nothing true)."""
    S = np.asarray(S, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels, dtype=bool)
    n = len(labels)
    n_pos, n_neg = labels.sum(), n - labels.sum()
    if n_pos == 0 or n_neg == 0:
        return np.full(S.shape[1], np.nan), np.full(S.shape[1], np.inf)
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
    nothing = dist[best, cols] > 1.0
    threshold = np.where(nothing, np.inf, s_sorted[best, cols])
    return np.where(nothing, n_neg / n, accuracy), threshold


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
    flipped = EvalSet(labels, groups).score(S, with_auroc=False).is_flipped
    return np.where(flipped, -1.0, 1.0)
