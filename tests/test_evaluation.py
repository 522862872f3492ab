"""Evaluation metrics on hand-computed cases and against straightforward reference loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from probegen.evaluation import (
    EvalSet,
    auroc,
    grouped_accuracy,
    roc_threshold_accuracy,
    score,
    train_signs,
)


def test_grouped_accuracy_by_hand():
    # group a: top row (0.9) true -> right; group b: top row (0.7) false -> wrong;
    # group c: three rows, top (0.5) true -> right.
    s = np.array([0.9, 0.1, 0.2, 0.7, 0.5, 0.4, -1.0])
    y = np.array([True, False, True, False, True, False, False])
    g = np.array(["a", "a", "b", "b", "c", "c", "c"])
    acc, n = grouped_accuracy(s, y, g)
    assert n == 3 and acc[0] == pytest.approx(2 / 3)


def test_one_class_groups_are_left_out():
    s = np.array([0.9, 0.1, 0.5, 0.6, 0.3, 0.2])
    y = np.array([True, False, False, False, True, True])
    g = np.array(["a", "a", "b", "b", "c", "c"])  # b: no true row; c: all true
    acc, n = grouped_accuracy(s, y, g)
    assert n == 1 and acc[0] == 1.0
    acc, n = grouped_accuracy(s[2:], y[2:], g[2:])
    assert n == 0 and np.isnan(acc[0])


def test_ties_broken_at_random_with_a_fixed_seed():
    # 200 groups, each a tie between a true and a false row: expected accuracy 0.5.
    s = np.zeros(400)
    y = np.tile([True, False], 200)
    g = np.repeat(np.arange(200), 2)
    acc, _ = grouped_accuracy(s, y, g, seed=3)
    again, _ = grouped_accuracy(s, y, g, seed=3)
    assert acc[0] == again[0]  # reproducible
    assert 0.4 < acc[0] < 0.6  # and not always the first (or last) row
    other, _ = grouped_accuracy(s, y, g, seed=4)
    assert other[0] != acc[0]


def test_flipped_sign_on_eval_policy():
    s = np.array([0.1, 0.9, 0.2, 0.8])  # false rows score higher in both groups
    y = np.array([True, False, True, False])
    g = np.array([0, 0, 1, 1])
    result = score(s, y, g)
    assert result.accuracy[0] == 1.0 and result.is_flipped[0]
    fixed = score(s, y, g, signs=np.array([1.0]))
    assert fixed.accuracy[0] == 0.0 and not fixed.is_flipped[0]
    assert train_signs(s, y, g).tolist() == [-1.0]


def test_roc_threshold_accuracy_by_hand():
    s = np.array([0.9, 0.8, 0.3, 0.1])
    y = np.array([True, False, True, False])
    # Cut after row 1: tpr .5, fpr 0 (distance .25): accuracy (1 + 2) / 4.
    assert roc_threshold_accuracy(s, y)[0] == pytest.approx(0.75)
    # Tied scores cannot be split: the only cuts are after both 1s or after all rows.
    tied = roc_threshold_accuracy(np.array([1.0, 1.0, 0.0, 0.0]), y)
    assert tied[0] == pytest.approx(0.5)
    perfect = roc_threshold_accuracy(np.array([3.0, 1.0, 2.0, 0.0]), y)
    assert perfect[0] == 1.0


def test_ungrouped_flip_uses_auroc():
    s = np.array([0.1, 0.9, 0.2, 0.8, 0.5])
    y = np.array([True, False, True, False, True])
    result = score(s, y, None)
    assert result.is_flipped[0] and result.auroc[0] == 1.0 and result.accuracy[0] == 1.0
    assert result.n == 5


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    S = np.round(rng.normal(size=(300, 5)) + y[:, None] * np.arange(5), 1)  # many ties
    ours = auroc(S, y)
    for j in range(5):
        assert ours[j] == pytest.approx(roc_auc_score(y, S[:, j]))
    assert np.isnan(auroc(S, np.ones(300, bool))).all()


def reference_grouped(s, y, g, rng_priority):
    correct, n = 0, 0
    for group in np.unique(g):
        idx = np.flatnonzero(g == group)
        if y[idx].all() or not y[idx].any():
            continue
        top = idx[s[idx] == s[idx].max()]
        winner = top[np.argmax(rng_priority[top])]
        correct += y[winner]
        n += 1
    return correct / n, n


def reference_priority(y, g, seed):
    """The tie-break priority, reproduced: a seeded permutation over the informative rows in
    (stable) group order; -1 for rows of groups that are left out."""
    codes = np.unique(np.asarray(g).astype(str), return_inverse=True)[1]
    n_true, size = np.bincount(codes, weights=y), np.bincount(codes)
    kept = np.flatnonzero(((n_true > 0) & (n_true < size))[codes])
    kept = kept[np.argsort(codes[kept], kind="stable")]
    priority = np.full(len(y), -1.0)
    priority[kept] = np.random.default_rng(seed).permutation(len(kept))
    return priority


def reference_roc_accuracy(s, y):
    best, best_acc = np.inf, None
    for t in np.r_[np.inf, np.unique(s)[::-1]]:
        pred = s >= t
        tpr = (pred & y).sum() / y.sum()
        fpr = (pred & ~y).sum() / (~y).sum()
        d = fpr**2 + (1 - tpr) ** 2
        if d < best:
            best, best_acc = d, (pred == y).mean()
    return best_acc


def test_vectorised_equals_reference_loops():
    rng = np.random.default_rng(1)
    n, k = 240, 6
    g = rng.integers(0, 70, size=n)
    y = rng.random(n) < 0.35
    S = np.round(rng.normal(size=(n, k)) + y[:, None] * 0.7, 1)
    acc, n_groups = grouped_accuracy(S, y, g, seed=9)  # S has many ties (rounded)
    priority = reference_priority(y, g, seed=9)
    for j in range(k):
        ref, _ = reference_grouped(S[:, j], y, g, priority)
        assert acc[j] == pytest.approx(ref)
    S_unique = S + rng.normal(scale=1e-6, size=S.shape)
    acc_u, _ = grouped_accuracy(S_unique, y, g, seed=9)
    for j in range(k):
        ref, ref_n = reference_grouped(S_unique[:, j], y, g, np.zeros(n))
        assert acc_u[j] == pytest.approx(ref) and n_groups == ref_n
    roc = roc_threshold_accuracy(S, y)
    for j in range(k):
        assert roc[j] == pytest.approx(reference_roc_accuracy(S[:, j], y))
    one = score(S[:, :1], y, g)
    many = score(S, y, g)
    assert many.accuracy[0] == one.accuracy[0] and many.is_flipped[0] == one.is_flipped[0]


def test_eval_set_matches_reference_on_both_signs_float32_and_nan():
    # One EvalSet scores many matrices (as the sweep does for every layer); results must be
    # those of the reference loops for the scores and their negation, with heavy ties.
    rng = np.random.default_rng(5)
    n, k = 600, 7
    g = np.array([f"q{i}" for i in rng.integers(0, 150, size=n)], dtype=object)
    y = rng.random(n) < 0.4
    rows = EvalSet(y, g, seed=2)
    priority = reference_priority(y, g, seed=2)
    for trial in range(3):
        S = np.round(rng.normal(size=(n, k)) + y[:, None] * 0.3, trial).astype(np.float32)
        result = rows.score(S)
        assert result.n == len(np.unique(g[priority >= 0]))  # informative groups
        for j in range(k):
            up, _ = reference_grouped(S[:, j], y, g, priority)
            down, _ = reference_grouped(-S[:, j], y, g, priority)
            assert result.is_flipped[j] == (down > up)
            assert result.accuracy[j] == pytest.approx(max(up, down))
            au = roc_auc_score(y, S[:, j])
            assert result.auroc[j] == pytest.approx(1 - au if down > up else au, abs=1e-12)
        wide = rows.score(S.astype(np.float64))
        np.testing.assert_array_equal(wide.accuracy, result.accuracy)
        np.testing.assert_array_equal(wide.auroc, result.auroc)
        signs = np.where(rng.random(k) < 0.5, -1.0, 1.0)
        fixed = rows.score(S, signs=signs)
        for j in range(k):
            ref, _ = reference_grouped(S[:, j] * signs[j], y, g, priority)
            assert fixed.accuracy[j] == pytest.approx(ref)
    S[3, 1] = np.nan  # an undefined score makes its column undefined, not a crash
    result = rows.score(S)
    assert np.isnan(result.accuracy[1]) and np.isnan(result.auroc[1])
    assert not np.isnan(result.accuracy[[0, 2]]).any()
