"""Shared pieces of the probes: errors, the estimator base class and linear-algebra helpers.

Every probe is a linear score `X @ coef_ + intercept_` (docs/design.md §6), so the job can batch
many fitted probes into one matrix product. Fitting happens in torch, where X lives: a
numpy array or CPU tensor on the CPU, with the matrix-vector products of the iterative
solvers done by whichever BLAS is faster (`probegen.blas`); a CUDA tensor on its GPU, with
the small bookkeeping of the solvers (L-BFGS's history, Lanczos's tridiagonal matrix) on
the CPU. Most probes are a few dozen passes over X (n ~ 1e3 rows, d ~ 2.5e3 features),
never a d x d matrix. `coef_` is a float32 numpy array wherever the fit ran.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import scipy.linalg
import torch

from probegen.blas import gram, matvecs, numpy_blas, top_eigh


class NeedsGroups(ValueError):
    """A grouped probe (ccs, lr-g, pca-g) was given ungrouped data; the job skips the fit."""


class OneClass(ValueError):
    """A supervised probe got a training set whose labels are all equal; the job skips it."""


class FitFailed(RuntimeError):
    """The optimisation found no usable solution (e.g. CCS never converged); job: failed."""


# Problems at most this big (n * d) use float64 throughout: cheap, and exact enough to
# compare against reference implementations. Bigger ones stream X in float32, which halves
# the memory traffic of every pass over X (the cost that dominates every fit).
SMALL_PROBLEM = 1 << 20


class BaseProbe:
    """scikit-learn style estimator: hyperparameters are the `__init__` keyword arguments,
    stored unchanged; `fit` sets `coef_` (float32 [d]) and `intercept_` (float)."""

    name: str = ""
    requires_groups: bool = False

    def get_params(self, deep: bool = True) -> dict:
        del deep  # no nested estimators
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {p: getattr(self, p) for p in names}

    def set_params(self, **params) -> BaseProbe:
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"{self.name}: unknown hyperparameter {key!r}; has {sorted(valid)}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def fit(self, X, y, groups=None, answer_types=None) -> BaseProbe:
        raise NotImplementedError

    def decision_function(self, X, groups=None) -> np.ndarray:
        """Linear scores. `groups` is accepted for API symmetry and ignored: within a group,
        centring shifts all scores equally, so it cannot change a ranking (docs/design.md §6)."""
        del groups
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{self.name} probe is not fitted")
        if isinstance(X, torch.Tensor):  # scored where it lives, returned as numpy
            X = X.detach()
            dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
            coef = torch.from_numpy(self.coef_).to(X.device, dtype)
            return (X.to(dtype) @ coef + self.intercept_).cpu().numpy()
        X = np.asarray(X)
        dtype = np.float64 if X.dtype == np.float64 else np.float32
        return X.astype(dtype, copy=False) @ self.coef_.astype(dtype) + dtype(self.intercept_)

    # ---- helpers for subclasses -------------------------------------------------------------

    def _set_direction(self, w, intercept: float = 0.0) -> None:
        w = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        if not np.all(np.isfinite(w)) or not np.isfinite(intercept):
            raise FitFailed(f"{self.name}: fit produced a non-finite direction")
        self.coef_ = w.astype(np.float32)
        self.intercept_ = float(intercept)


def as_tensor(X) -> torch.Tensor:
    """X as a 2-d tensor in the compute dtype (see SMALL_PROBLEM); rejects NaN/inf. A numpy
    array becomes a CPU tensor; a tensor stays on its device (the fit runs there)."""
    if isinstance(X, torch.Tensor):
        X = X.detach()
        if X.device.type == "cpu":  # numpy's checks below (bf16 has no numpy type)
            X = (X if X.dtype in (torch.float32, torch.float64) else X.float()).numpy()
    else:
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d [n, d], got shape {tuple(X.shape)}")
    small = math.prod(X.shape) <= SMALL_PROBLEM
    if isinstance(X, torch.Tensor):
        X = X.to(torch.float64 if small else torch.float32).contiguous()
        finite = bool(torch.isfinite(X).all())
    else:
        X = np.ascontiguousarray(X, dtype=np.float64 if small else np.float32)
        finite = bool(np.isfinite(X).all())  # numpy: ~8x faster than torch.isfinite here
    if not finite:
        raise FitFailed("activations contain NaN or inf: the fit did not converge")
    return torch.from_numpy(X) if isinstance(X, np.ndarray) else X


def on_device(values, like: torch.Tensor) -> torch.Tensor:
    """A numpy array (indices, labels, a direction) as a tensor on `like`'s device."""
    return torch.from_numpy(np.ascontiguousarray(values)).to(like.device)


def class_means(X: torch.Tensor, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Means of the true and the false rows, float64 CPU tensors. On one CPU thread numpy
    accumulates float32 rows in float64 without the float64 copy of X that torch makes
    (4x faster at n ~ 1e3, d ~ 2.5e3)."""
    if numpy_blas(X):
        Xn = X.numpy()
        return tuple(torch.from_numpy(Xn[rows].mean(0, dtype=np.float64)) for rows in (y, ~y))
    mask = on_device(y, X)
    return tuple(X[rows].double().mean(0).cpu() for rows in (mask, ~mask))


def sq_norms(W: torch.Tensor, dim: int) -> torch.Tensor:
    """Squared norms of W's rows (dim=1) or columns (dim=0), accumulated in float64 (on one
    CPU thread without a float64 copy of W), on W's device."""
    if numpy_blas(W):
        Wn = W.numpy()
        spec = "ij,ij->j" if dim == 0 else "ij,ij->i"
        return torch.from_numpy(np.einsum(spec, Wn, Wn, dtype=np.float64))
    return torch.linalg.vector_norm(W, dim=dim, dtype=torch.float64) ** 2


def labels(y, n: int) -> np.ndarray:
    if y is None:
        raise ValueError("this probe needs labels y")
    y = np.asarray(y).astype(bool).reshape(-1)
    if len(y) != n:
        raise ValueError(f"y has {len(y)} entries for {n} rows")
    return y


def both_classes(y: np.ndarray, name: str) -> None:
    if y.all() or not y.any():
        raise OneClass(f"{name}: training labels are all {bool(y[0])}; needs true and false rows")


def codes(ids, n: int, what: str) -> torch.Tensor:
    """Integer codes 0..k-1 for hashable ids (group ids, answer types); missing = own code."""
    ids = np.asarray(ids, dtype=object).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"{what} has {len(ids)} entries for {n} rows")
    return torch.from_numpy(pd.factorize(ids, use_na_sentinel=False)[0].astype(np.int64))


def center_by(X: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Subtract from each row the mean of the rows sharing its code (a new tensor)."""
    code = code.to(X.device)
    k = int(code.max()) + 1
    sums = torch.zeros(k, X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, code, X)
    counts = torch.bincount(code, minlength=k).to(X.dtype)
    # index_select + subtract in place into its output: one [n, d] buffer instead of two,
    # and index_select is ~2x faster than advanced indexing here (same values).
    out = torch.index_select(sums.div_(counts[:, None]), 0, code)
    return torch.sub(X, out, out=out)


def orient(w: torch.Tensor, X: torch.Tensor, y, s: torch.Tensor | None = None) -> torch.Tensor:
    """Sign convention for label-free probes: when labels are given (and both classes occur),
    flip w so that true rows score at least as high as false rows on average. The original
    study also calibrates sign with labels, and the eval stage can flip again (docs/design.md §6).
    `s`: the scores X @ w when the caller has them already."""
    if y is None:
        return w
    y = np.asarray(y).astype(bool).reshape(-1)
    if y.all() or not y.any():
        return w
    s = X @ w.to(X.dtype) if s is None else s
    y = on_device(y, s)
    return -w if s[y].mean() < s[~y].mean() else w


def top_subspace(A: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k right singular vectors of A (n x d) as a float64 [d, k] matrix with orthonormal
    columns, i.e. the first k principal components of the rows of A if A is centred.

    Exact at every size, from the top-k eigenvectors of the Gram matrix of the smaller side:
    A A^T when n <= d (u_i gives v_i = A^T u_i / s_i), else A^T A. That matrix is at most
    min(n, d)^2 (n = contrast pairs for CCS-sub: ~400 by default). A randomized method with a
    fixed number of steps was faster on large problems but far off on slowly decaying
    spectra, so there is none (timings: docs/benchmarks.md).
    """
    n, d = A.shape
    if min(n, d) <= 64:
        return torch.linalg.svd(A.double(), full_matrices=False)[2][:k].T
    # The Gram matrix is float32 like A (its rounding is A's); eigenvectors in float64.
    if n <= d:
        values, U = top_eigh(gram(A).double(), k)
        V = (A.T @ U.to(A.dtype)).double() / values.clamp_min(1e-300).sqrt()
    else:
        V = top_eigh(gram(A.T.contiguous()).double(), k)[1]
    return torch.linalg.qr(V)[0]  # orthonormal to float64 rounding


def top_direction(
    A: torch.Tensor, seed: int = 0, tol: float = 1e-5, max_iter: int = 300
) -> torch.Tensor:
    """First principal direction of the rows of (centred) A: unit norm, float64 [d], on A's
    device.

    Lanczos on A^T A (Golub & Van Loan, ch. 10) with full reorthogonalisation, from a seeded
    random start: one pass over A for A v and one for A^T u per step, no d x d or n x n
    matrix. It stops when the Ritz pair's residual |A^T A v - theta v| is at most
    tol * theta; the angle to the exact direction is then at most that residual over the
    gap to the second eigenvalue. A well-separated leading direction takes ~20 steps, one
    within 1-2% of the second ~40 (the benchmark's PCA and PCA-G data); each pass over A is
    a memory-bound matrix-vector product.
    """
    n, d = A.shape
    if min(n, d) <= 64:  # small: the exact SVD is cheaper than iterating
        w = torch.linalg.svd(A.double(), full_matrices=False)[2][0]
        return w / w.norm()
    forward, backward = matvecs(A)
    steps = min(max_iter, d)
    Q = np.zeros((steps + 1, d))
    q = np.random.default_rng(seed).standard_normal(d)
    Q[0] = q / np.linalg.norm(q)
    alpha, beta = np.zeros(steps), np.zeros(steps)
    for j in range(steps):
        w = backward(forward(Q[j]))
        alpha[j] = w @ Q[j]
        # Full reorthogonalisation by classical Gram-Schmidt, repeated when it cancelled
        # most of w (Daniel et al. 1976): keeps Q orthonormal to rounding.
        before = np.linalg.norm(w)
        w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        beta[j] = np.linalg.norm(w)
        if beta[j] < 0.7 * before:
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
            beta[j] = np.linalg.norm(w)
        values, vectors = scipy.linalg.eigh_tridiagonal(
            alpha[: j + 1], beta[:j], select="i", select_range=(j, j)
        )
        theta, y = values[0], vectors[:, 0]
        if beta[j] * abs(y[-1]) <= tol * theta or beta[j] <= 1e-12 * max(theta, 1e-300):
            break
        Q[j + 1] = w / beta[j]
    v = torch.from_numpy(Q[: j + 1].T @ y)
    return (v / v.norm()).to(A.device)
