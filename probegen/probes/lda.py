"""Fisher linear discriminants: `lda`, the original study's estimator, and `lda-lw`, a
shrunk variant of ours.

Both give coef_ ~ Sigma^-1 (mean_true - mean_false) with Sigma the pooled within-class
covariance; they differ in how they invert Sigma when it is singular (fewer train rows than
dimensions: 800 rows against 2,560-5,120 dimensions for Qwen3).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from probegen.blas import gram, matvecs
from probegen.probes.base import (
    BaseProbe,
    FitFailed,
    as_tensor,
    both_classes,
    class_means,
    labels,
    on_device,
    sq_norms,
)


class LDAProbe(BaseProbe):
    """Fisher linear discriminant (Fisher 1936) exactly as "How well do truth probes
    generalise?" (mishajw 2024) fits it: scikit-learn's `LinearDiscriminantAnalysis()` with
    its default SVD solver, no shrinkage.

    That solver scales the within-class residuals W (each row minus its class mean) per
    feature by their standard deviation s (0 -> 1), Z = W / s / sqrt(n), and keeps the
    singular directions of Z whose singular value exceeds `tol` (absolute, 1e-4 as
    scikit-learn's). For two classes its coefficients reduce to
        coef_ = D^-1 pinv_tol(Z^T Z) D^-1 (mean_true - mean_false),   D = diag(s),
    a pseudo-inverse of the scaled within-class covariance. With fewer rows than dimensions
    that covariance has rank n - 2, and the direction fits the train set's noise: on held-out
    data it can fall well below difference-in-means or `lda-lw`. (Older
    scikit-learn releases scaled by 1 / sqrt(n - 2): the same direction, a coef_ n / (n - 2)
    times smaller.) The intercept is scikit-learn's:
    -(mean_true + mean_false) @ coef_ / 2 + log(n_true / n_false).

    Computed from the Gram matrix of the smaller side of Z in float64 (n x n when n <= d), not
    an SVD of Z: the same singular values and directions, a few times cheaper. When n <= d
    and the Gram matrix's only (near-)null directions are the two that every such matrix has,
    a Cholesky factorisation replaces its eigendecomposition (3x cheaper again; see
    `_solve_regular`); otherwise the eigendecomposition decides what to drop. scikit-learn
    keeps float32 input in float32; here the solve is float64 whatever the cache stores, so
    directions with singular values near `tol` are resolved more exactly.
    """

    name = "lda"
    requires_groups = False

    def __init__(self, tol: float = 1e-4):
        self.tol = tol

    def fit(self, X, y, groups=None, answer_types=None) -> LDAProbe:
        X = as_tensor(X)
        y = labels(y, len(X))
        both_classes(y, self.name)
        n, d = X.shape
        m1, m0 = class_means(X, y)
        means = torch.stack([m0, m1]).to(X.device, torch.float64)
        Z = X.double() - torch.index_select(means, 0, on_device(y.astype(np.int64), X))
        scale = Z.std(0, correction=0)
        scale = torch.where(scale == 0, 1.0, scale)
        Z = Z.div_(scale * math.sqrt(n))
        b = (m1 - m0).to(X.device) / scale
        if n <= d:  # through G = Z Z^T: Z^T Z = V S^2 V^T with V = Z^T U S^-1, G = U S^2 U^T
            G, rhs = gram(Z), Z @ b
            v, rank = _solve_regular(G, rhs, y, self.tol) or _solve_eigh(G, rhs, self.tol)
            w = Z.T @ v
        else:
            values, V = torch.linalg.eigh(gram(Z.T.contiguous()))
            keep = values.clamp_min(0).sqrt() > self.tol
            V, values = V[:, keep], values[keep]
            w, rank = V @ ((V.T @ b) / values), int(keep.sum())
        if rank == 0:
            raise FitFailed(
                f"lda: no singular value of the scaled within-class scatter exceeds tol={self.tol}"
            )
        self.rank_ = rank
        w = (w / scale).cpu()
        self._set_direction(w, -float(0.5 * (m1 + m0) @ w) + math.log(y.sum() / (~y).sum()))
        return self


# The Cholesky path is taken only when its estimate of the smallest eigenvalue it keeps is
# this many times tol^2 (1e-8 by default, where G's eigenvalues average d / n): inverse
# iteration approaches that eigenvalue from above, and the margin absorbs its error.
_REGULAR_MARGIN = 1e4
_INVERSE_ITERATIONS = 8


def _solve_eigh(G: torch.Tensor, rhs: torch.Tensor, tol: float) -> tuple[torch.Tensor, int]:
    """(pinv_tol(G)^2 rhs, rank): G's eigenvalues below tol^2 (singular values of Z below
    tol) dropped, as scikit-learn's SVD solver drops them."""
    values, U = torch.linalg.eigh(G)
    keep = values.clamp_min(0).sqrt() > tol
    U, values = U[:, keep], values[keep]
    return U @ ((U.T @ rhs) / values**2), int(keep.sum())


def _solve_regular(
    G: torch.Tensor, rhs: torch.Tensor, y: np.ndarray, tol: float
) -> tuple[torch.Tensor, int] | None:
    """What `_solve_eigh` returns, by a Cholesky factorisation (a few times cheaper), or
    None where that cannot tell which eigenvalues to drop.

    G = Z Z^T of within-class residuals always has each class's indicator vector in its null
    space (a class's residuals sum to zero), and rhs = Z b is orthogonal to both. When those
    two are G's only eigenvalues below tol^2, pinv_tol(G) is the inverse of G + c Q Q^T (Q
    the normalised indicators, c > 0) on their complement, and the rank is n - 2. Another
    null direction (duplicate rows, say), an eigenvalue near tol^2 or a failed factorisation
    returns None.
    """
    n = G.shape[0]
    indicators = torch.from_numpy(np.stack([y, ~y], 1).astype(np.float64)).to(G.device)
    Q = indicators / indicators.sum(0).sqrt()

    def off_indicators(x: torch.Tensor) -> torch.Tensor:
        return x - Q @ (Q.T @ x)

    shift = float(G.diagonal().sum()) / n
    factor, info = torch.linalg.cholesky_ex(G + shift * (Q @ Q.T))
    if int(info) != 0:
        return None
    generator = torch.Generator(G.device).manual_seed(0)
    x = torch.randn(n, 1, dtype=G.dtype, device=G.device, generator=generator)
    for _ in range(_INVERSE_ITERATIONS):  # toward the smallest eigenvalue off the indicators
        x = torch.cholesky_solve(off_indicators(x), factor)
        x = x / x.norm()
    x = off_indicators(x)
    smallest = float(x.T @ (G @ x)) / float(x.T @ x)
    if not smallest > _REGULAR_MARGIN * tol**2:
        return None
    v = torch.cholesky_solve(off_indicators(rhs[:, None]), factor)
    return torch.cholesky_solve(v, factor)[:, 0], n - 2


def _ledoit_wolf(
    W: torch.Tensor, max_rows: int, seed: int, sq: torch.Tensor | None = None
) -> float:
    """Ledoit & Wolf (2004) shrinkage intensity for the covariance of the (centred) rows of W,
    the same formula as sklearn.covariance.ledoit_wolf_shrinkage.

    Everything is cheap except ||W W^T||_F^2 (an n x n Gram matrix, O(n^2 d)). Its diagonal
    part is exact; when n > max_rows the off-diagonal sum is estimated without bias from
    the Gram matrix of a seeded random subset of max_rows rows (~(max_rows / n)^2 of the cost).
    """
    n, d = W.shape
    sq = sq_norms(W, 1) if sq is None else sq  # squared row norms
    trace = sq.sum() / n  # trace of the empirical covariance
    mu = trace / d
    diag4 = (sq**2).sum()
    if n <= max_rows:
        G = gram(W).double()
        off = (G**2).sum() - (G.diagonal() ** 2).sum()
    else:
        rows = on_device(np.random.default_rng(seed).choice(n, max_rows, replace=False), W)
        G = gram(W[rows]).double()
        off = (
            ((G**2).sum() - (G.diagonal() ** 2).sum()) * (n * (n - 1)) / (max_rows * (max_rows - 1))
        )
    frob = (diag4 + off) / n**2  # ||S||_F^2
    beta = (diag4 / n - frob) / (d * n)
    delta = (frob - 2 * mu * trace + d * mu**2) / d  # ||S - mu I||_F^2 / d
    beta = min(float(beta), float(delta))
    return 0.0 if beta <= 0 else min(1.0, beta / float(delta))


def _conjugate_gradient(matvec, b: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """Solve A x = b for symmetric positive definite A given as a function."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = r @ r
    stop = tol**2 * rr
    for _ in range(max_iter):
        if rr <= stop:
            break
        Ap = matvec(p)
        a = rr / (p @ Ap)
        x += a * p
        r -= a * Ap
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
    return x


class ShrunkLDAProbe(BaseProbe):
    """Shrunk Fisher linear discriminant (probegen's variant of the `lda` probe; Fisher 1936,
    shrinkage after Ledoit & Wolf 2004): coef_ = Sigma^-1 (mean_true - mean_false) with the
    pooled within-class covariance shrunk towards a scaled identity,
    Sigma = (1 - a) S + a (tr S / d) I.

    How it differs from `lda` (the original study's): where the train set has fewer rows than
    dimensions, `lda` takes a pseudo-inverse of the singular covariance and fits the train
    set's noise; shrinkage keeps Sigma invertible and well conditioned instead. By default
    a is the Ledoit-Wolf intensity (shrinkage="auto"): data-driven, no hyperparameter to tune
    (sklearn's LinearDiscriminantAnalysis(shrinkage="auto") uses it too, per class and on
    standardised features; here it is pooled and on raw features, which keeps the Euclidean
    geometry the other probes use). A float `shrinkage` in [0, 1] fixes a instead.

    Sigma w = dmu is solved by conjugate gradients with Sigma as an operator (two passes over
    X per step; shrinkage keeps Sigma well conditioned), never forming the d x d matrix.
    The intercept is sklearn's: -(mean_true + mean_false) @ w / 2 + log(n_true / n_false).
    """

    name = "lda-lw"
    requires_groups = False

    def __init__(
        self,
        shrinkage: float | str = "auto",
        tol: float = 1e-4,
        max_iter: int = 500,
        max_rows: int = 512,
        random_state: int = 0,
    ):
        self.shrinkage = shrinkage
        self.tol = tol
        self.max_iter = max_iter
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X, y, groups=None, answer_types=None) -> ShrunkLDAProbe:
        X = as_tensor(X)
        y = labels(y, len(X))
        both_classes(y, self.name)
        m1, m0 = class_means(X, y)
        means = torch.stack([m0, m1]).to(X.device, X.dtype)
        W = torch.index_select(means, 0, on_device(y.astype(np.int64), X))
        W = torch.sub(X, W, out=W)  # within-class residuals (one buffer; see center_by)
        n, d = W.shape
        sq = sq_norms(W, 1)
        if self.shrinkage == "auto":
            a = _ledoit_wolf(W, self.max_rows, self.random_state, sq)
        else:
            a = float(self.shrinkage)
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"lda: shrinkage must be 'auto' or in [0, 1], got {a}")
        self.shrinkage_ = a
        mu = float(sq.sum()) / (n * d)
        # A tiny floor keeps Sigma positive definite when a == 0 and n < d.
        ridge = max(a * mu, 1e-10 * mu)

        forward, backward = matvecs(W)

        def sigma(v: torch.Tensor) -> torch.Tensor:
            return (1 - a) / n * torch.from_numpy(backward(forward(v.numpy()))) + ridge * v

        w = _conjugate_gradient(sigma, m1 - m0, self.tol, self.max_iter)
        self._set_direction(w, -float(0.5 * (m1 + m0) @ w) + math.log(y.sum() / (~y).sum()))
        return self
