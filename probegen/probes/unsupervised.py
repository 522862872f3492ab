"""Label-free probes: PCA, grouped PCA (CRC-TPC), LAT and the random baseline.

None of them uses the labels to find the direction. When y is given, the direction is
flipped so that true rows score higher on average on the training data (`base.orient`);
with y=None the sign is arbitrary (but deterministic). The intercept centres the training
scores at zero: `intercept_ = -mean(X) @ coef_`.
"""

from __future__ import annotations

import numpy as np
import torch

from probegen.probes.base import (
    BaseProbe,
    NeedsGroups,
    as_tensor,
    center_by,
    codes,
    on_device,
    orient,
    top_direction,
)


def _normalise(X: torch.Tensor, answer_types) -> torch.Tensor:
    """Centre X per answer type when types are given (else globally), as repeng does: an
    answer-type offset (e.g. "Positive" vs "Negative" prompts) is usually the largest
    direction of variation and has nothing to do with truth. Means only, no scaling
    (repeng's `normalize_by_group` subtracts the mean and does not divide by the std)."""
    if answer_types is None:
        return X - X.mean(0)
    return center_by(X, codes(answer_types, len(X), "answer_types"))


class _CentredDirection(BaseProbe):
    """Shared by the label-free probes: one hyperparameter, the seed of their randomised
    steps; and the ending: orient with labels, intercept from the training mean."""

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def _finish(self, w: torch.Tensor, X: torch.Tensor, y) -> BaseProbe:
        w = w.to(X.device)
        s = (X @ w.to(X.dtype)).double()  # one pass for both the sign and the intercept
        oriented = orient(w, X, y, s)
        mean = float(s.mean()) if oriented is w else -float(s.mean())
        self._set_direction(oriented, -mean)
        return self


class PCAProbe(_CentredDirection):
    """First principal component of the activations (normalised per answer type when
    answer types are given). Unsupervised baseline of "How well do truth probes
    generalise?" (mishajw 2024); cf. Burns et al. 2022 and Zou et al. 2023 (RepE)."""

    name = "pca"
    requires_groups = False

    def fit(self, X, y=None, groups=None, answer_types=None) -> PCAProbe:
        X = as_tensor(X)
        w = top_direction(_normalise(X, answer_types), seed=self.random_state)
        return self._finish(w, X, y)


class GroupedPCAProbe(_CentredDirection):
    """PCA on group-centred activations: CRC-TPC of Burns et al. 2022, "Discovering Latent
    Knowledge in Language Models Without Supervision". Subtracting each group's (question's)
    mean row removes what the answers of one question share, leaving what distinguishes
    them; then centre per answer type (as repeng) and take the first principal component."""

    name = "pca-g"
    requires_groups = True

    def fit(self, X, y=None, groups=None, answer_types=None) -> GroupedPCAProbe:
        if groups is None:
            raise NeedsGroups("pca-g needs grouped data (a group id per row); got groups=None")
        X = as_tensor(X)
        A = center_by(X, codes(groups, len(X), "groups"))
        if answer_types is not None:  # without types, A's column means are already 0
            A = _normalise(A, answer_types)
        w = top_direction(A, seed=self.random_state)
        return self._finish(w, X, y)


class LATProbe(_CentredDirection):
    """Linear Artificial Tomography, Zou et al. 2023, "Representation Engineering: A
    Top-Down Approach to AI Transparency" (appendix C.1): the first principal component of
    differences between random pairs of activations.

    As in repeng: normalise per answer type, shuffle the rows with a seeded generator, pair
    them off (row 2i with row 2i+1 of the shuffle, n // 2 pairs), centre the differences and
    take their first principal component. Random pairs mix true and false rows, so the
    differences vary most along directions where rows differ most, e.g. truth.
    """

    name = "lat"
    requires_groups = False

    def fit(self, X, y=None, groups=None, answer_types=None) -> LATProbe:
        X = as_tensor(X)
        if len(X) < 2:
            raise ValueError("lat needs at least two rows to form a pair")
        # Without answer types the normalisation subtracts one mean from every row, which
        # cancels in each difference: pair the raw rows.
        A = X if answer_types is None else _normalise(X, answer_types)
        order = np.random.default_rng(self.random_state).permutation(len(A))
        pairs = on_device(order[: len(order) // 2 * 2].reshape(-1, 2), A)
        diffs = A[pairs[:, 0]] - A[pairs[:, 1]]
        w = top_direction(diffs - diffs.mean(0), seed=self.random_state)
        return self._finish(w, X, y)


class RandomProbe(_CentredDirection):
    """Random baseline (as in mishajw 2024): a unit direction drawn uniformly from the
    sphere (a normalised standard-normal vector) with a seeded generator. Same seed and
    width give the same direction; labels only fix its sign (see module docstring)."""

    name = "random"
    requires_groups = False

    def fit(self, X, y=None, groups=None, answer_types=None) -> RandomProbe:
        X = as_tensor(X)
        w = np.random.default_rng(self.random_state).standard_normal(X.shape[1])
        w = torch.from_numpy(w / np.linalg.norm(w))
        return self._finish(w, X, y)
