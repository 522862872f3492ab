"""The null distribution: seeded random unit directions scored exactly like probes
(docs/design.md §6).

At each layer a job draws `R` random unit directions (`null_directions`; the same for every
train and eval dataset at that layer, so the null of a cell does not depend on which job
computed it). Under the eval-sign policy each is negated where that scores higher on the
eval split, as a probe is; under the train-fixed policy each gets the sign and the ROC
threshold it would have had as a probe of the train dataset (`fit_null`). The null of a
cell is the spread of their accuracies on it (`NullStats`) and, per unit, how many of them
got it right (what stage 3 resamples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probegen.cache import Activations
from probegen.evaluation import EvalSet, Outcomes, roc_thresholds, train_signs


def null_directions(hidden: int, count: int, seed: int, layer: int) -> np.ndarray:
    """`count` random unit directions in R^hidden, float32 [hidden, count], from a
    generator seeded by (seed, layer): uniform on the sphere (normalised Gaussians)."""
    rng = np.random.default_rng([seed, layer, 0x6E756C6C])  # "null": apart from probe seeds
    W = rng.standard_normal((hidden, count))
    return (W / np.linalg.norm(W, axis=0, keepdims=True)).astype(np.float32)


@dataclass
class NullFit:
    """The null's directions as probes of one train dataset: their signs (±1) and, for
    ungrouped eval sets, thresholds on the signed scores, fixed on its train split."""

    signs: np.ndarray  # [R] float
    thresholds: np.ndarray  # [R] float64


def fit_null(train: Activations, directions: np.ndarray) -> NullFit:
    """Signs and thresholds of `directions` fixed on `train` (a train split), by the same
    rules as a probe's (`train_fixing`)."""
    signs, thresholds = train_fixing(train.X @ directions, train.labels, train.groups)
    return NullFit(signs, thresholds)


def train_fixing(
    S: np.ndarray, labels: np.ndarray, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The train-fixed policy's sign and threshold per column of train-split scores S: the
    sign the eval-sign rule would pick on these rows, and the ROC point (closest to (0, 1))
    of the signed scores on these rows, as a threshold (ungrouped eval sets cut there)."""
    S = np.asarray(S).reshape(len(labels), -1)
    signs = train_signs(S, labels, groups)
    return signs, roc_thresholds(S * signs[None, :], labels)[1]


@dataclass
class LayerNull:
    """The null at one layer: its directions [hidden, R] and their fixing per train set."""

    directions: np.ndarray
    fits: dict[str, NullFit]


@dataclass
class NullStats:
    """Accuracies of the null's directions on one cell: mean, standard deviation, 95th
    percentile, and per unit how many directions got it right (uint16 [units])."""

    mean: float
    sd: float
    p95: float
    counts: np.ndarray

    @classmethod
    def of(cls, outcomes: Outcomes) -> NullStats:
        acc = outcomes.accuracy[np.isfinite(outcomes.accuracy)]
        counts = outcomes.correct.sum(axis=1).astype(np.uint16)
        if not len(acc):
            return cls(float("nan"), float("nan"), float("nan"), counts)
        p95 = float(np.quantile(acc, 0.95))
        return cls(float(acc.mean()), float(acc.std()), p95, counts)


def score_null(
    eval_set: EvalSet, S: np.ndarray, fits: dict[str, NullFit]
) -> tuple[NullStats, dict[str, NullStats]]:
    """The null on one eval split (S: its rows' scores on the null's directions): under
    the eval-sign policy, and under the train-fixed one for each train dataset of `fits`."""
    if eval_set.grouped:
        # One walk gives every direction's and its negation's outcomes; each policy and
        # train dataset then only picks one of the two per direction.
        return _score_null_grouped(eval_set, S, fits)
    eval_stats = NullStats.of(eval_set.outcomes(S, with_auroc=False))
    fixed = {
        name: NullStats.of(eval_set.outcomes(S, fit.signs, fit.thresholds, with_auroc=False))
        for name, fit in fits.items()
    }
    return eval_stats, fixed


def _score_null_grouped(
    eval_set: EvalSet, S: np.ndarray, fits: dict[str, NullFit]
) -> tuple[NullStats, dict[str, NullStats]]:
    top, bottom = eval_set.grouped_outcomes(np.asarray(S))

    def stats(correct: np.ndarray) -> NullStats:
        accuracy = correct.mean(axis=0) if len(correct) else np.full(correct.shape[1], np.nan)
        return NullStats.of(Outcomes(accuracy, accuracy, len(correct), accuracy < 0, correct))

    if not eval_set.units:
        return stats(top), {name: stats(top) for name in fits}
    flip = bottom.mean(axis=0) > top.mean(axis=0)
    eval_stats = stats(np.where(flip[None, :], bottom, top))
    fixed = {name: stats(np.where(f.signs[None, :] < 0, bottom, top)) for name, f in fits.items()}
    return eval_stats, fixed
