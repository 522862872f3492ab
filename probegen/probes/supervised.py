"""Supervised probes: difference in means and logistic regression (plain and grouped); LDA
lives in `probegen.probes.lda`.

All of them are fitted so that true rows score higher than false rows on the training data.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from probegen.blas import gram, matvecs, top_eigh
from probegen.probes.base import (
    BaseProbe,
    NeedsGroups,
    as_tensor,
    both_classes,
    center_by,
    class_means,
    codes,
    labels,
    on_device,
    sq_norms,
)


class DIMProbe(BaseProbe):
    """Difference in means ("mass-mean probe"), Marks & Tegmark 2023, "The Geometry of
    Truth": coef_ = mean(true rows) - mean(false rows); the intercept puts the threshold
    halfway between the two class means."""

    name = "dim"
    requires_groups = False

    def __init__(self):
        pass

    def fit(self, X, y, groups=None, answer_types=None) -> DIMProbe:
        X = as_tensor(X)
        y = labels(y, len(X))
        both_classes(y, self.name)
        m1, m0 = class_means(X, y)
        w = m1 - m0
        self._set_direction(w, -float(0.5 * (m1 + m0) @ w))
        return self


class LowRank(NamedTuple):
    """T = I + V diag(g) V^T (V: orthonormal columns, float64 CPU tensors) and its inverse."""

    V: torch.Tensor
    g: torch.Tensor

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.V @ (self.g * (self.V.T @ u))

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.V @ ((1 / (1 + self.g) - 1) * (self.V.T @ u))


def low_rank_preconditioner(
    Xs: torch.Tensor,
    C: float,
    rank: int,
    max_rows: int = 512,
    seed: int = 0,
    weights: torch.Tensor | None = None,
) -> LowRank:
    """T ~ (I + C Xs^T diag(weights) Xs)^(-1/2) on the top `rank` principal directions V of
    the weighted rows of Xs, the identity elsewhere: g = (1 + C lambda)^(-1/2) - 1 for their
    eigenvalues lambda. `weights` (float64 [n]): the rows' logistic curvatures at the current
    point, which makes T ~ H^(-1/2) for the Hessian H of the L2-penalised logistic loss
    there; None: all 1/4, the Boehning bound (logistic'' <= 1/4), which holds everywhere.
    From the Gram matrix of at most `max_rows` rows (a seeded subset, its eigenvalues scaled
    by n / max_rows): a preconditioner only has to catch the few directions of huge
    variance."""
    n, d = Xs.shape
    rows = Xs
    if weights is None:
        weights = torch.full((n,), 0.25, dtype=torch.float64)
    if n > max_rows:
        subset = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
        rows, weights = Xs[on_device(subset, Xs)], weights[subset]
    rows = rows * on_device(weights.sqrt().numpy(), rows).to(rows.dtype)[:, None]
    k = min(rank, len(rows) - 1, d)
    values, U = top_eigh(gram(rows).double(), k)
    values = values.clamp_min(0)
    V = (rows.T @ U.to(rows.dtype)).double() / values.clamp_min(1e-300).sqrt()
    V = torch.linalg.qr(V)[0].cpu()
    return LowRank(V, (1 + C * values.cpu() * (n / len(rows))).rsqrt() - 1)


class Solution(NamedTuple):
    """What `_logistic` found: w (float64 [d]) and b; the L-BFGS iterations used; whether
    the stopping rule was met; and max|grad| / max|grad at 0| where it stopped."""

    w: torch.Tensor
    b: float
    n_iter: int
    converged: bool
    grad_ratio: float


def _logistic(
    X: torch.Tensor,
    y: np.ndarray,
    C: float,
    max_iter: int,
    tol: float,
    init: tuple[np.ndarray, float] | None = None,
    centred: bool = False,
    rank: int = 128,
    precondition_after: int = 20,
    refresh_every: int = 40,
) -> Solution:
    """min_w,b 0.5 |w|^2 + C sum_i log(1 + exp(-s_i (x_i.w + b))), s_i = +-1: the objective of
    sklearn's LogisticRegression(C=C) (L2 penalty, unpenalised intercept).

    Solved by L-BFGS with tricks that change the path, not the optimum:
    - X is centred (b absorbs mean @ w), which decouples b from w;
    - diagonal preconditioning by the Boehning curvature bound (logistic'' <= 1/4),
      w_j = u_j / sqrt(1 + C/4 sum_i x_ij^2), against features of very different scales;
    - if that has not converged after `precondition_after` iterations, L-BFGS restarts from
      where it is, preconditioned by T ~ H^(-1/2) for the Hessian H = I + C X^T D X at that
      point (D: the rows' logistic curvatures) on its top `rank` directions
      (`low_rank_preconditioner`; rank=0: never), and refreshes T at the point reached
      every `refresh_every` iterations until it converges. Real activations have a few
      directions of huge variance shared by many features, which a diagonal cannot catch;
      and once most rows are fitted confidently their curvature is far below the bound's
      1/4, so the Hessian at the point, not the bound, is what has to be undone. Easy
      problems (the benchmark's) stop in the first phase and pay nothing.
    Stops when max|grad| <= tol * max|grad at w = 0, b = 0| (both in the coordinates of the
    phase) or after max_iter iterations in all; `Solution.converged` says which.
    `init` = (w, b) starts there instead of at 0 (warm start; the objective is strictly
    convex, so the optimum is the same), unless its objective is worse than at 0.
    `centred`: X's column means are 0 already (group-centred rows); skips that copy of X.
    """
    mean = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device) if centred else X.mean(0)
    Xc = X if centred else X - mean
    mean = mean.double().cpu()  # w, b and the optimiser live on the CPU; Xc maybe not
    n, d = Xc.shape
    s = torch.from_numpy(np.where(y, 1.0, -1.0))
    forward, backward = matvecs(Xc)

    def margins(w: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
        return s * (torch.from_numpy(forward(w.numpy())) + b)

    def objective(w: torch.Tensor, b: torch.Tensor):
        """Loss and its gradient in (w, b)."""
        m = margins(w, b)
        r = -C * s * torch.sigmoid(-m)  # d loss / d score
        loss = 0.5 * (w @ w) + C * torch.nn.functional.softplus(-m).sum()
        return loss, w + torch.from_numpy(backward(r.numpy())), r.sum()

    def solve(pw, T, pb: float, start: torch.Tensor | None, budget: int):
        """L-BFGS in u, w = pw * T(u[:d]), b = pb * u[d] (pw: a diagonal, T symmetric), from
        u = start where that is better than u = 0. Returns (w, b, iterations, max|grad| /
        max|grad at u = 0|)."""

        def value_and_grad(u: torch.Tensor):
            loss, gw, gb = objective(pw * T(u[:d]), pb * u[d])
            return loss, torch.cat([T(pw * gw), (pb * gb).reshape(1)])

        u = torch.zeros(d + 1, dtype=torch.float64)
        first = value_and_grad(u)  # L-BFGS starts by evaluating its start point: reuse this
        g0 = first[1].abs().max().item()
        if start is not None:
            warm = value_and_grad(start)
            if torch.isfinite(warm[0]) and warm[0] < first[0]:
                u, first = start.clone(), warm
        u.requires_grad_()
        opt = torch.optim.LBFGS(
            [u],
            lr=1,
            max_iter=budget,
            history_size=10,
            tolerance_grad=tol * g0,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )
        cached, last = [first], [(u.detach().clone(), first[1])]

        def closure():
            loss, grad = cached.pop() if cached else value_and_grad(u.detach())
            u.grad = grad
            last[0] = (u.detach().clone(), grad)
            return loss

        if budget > 0:
            opt.step(closure)
        used = int(opt.state[u].get("n_iter", 0))
        u = u.detach()
        # Usually the line search evaluated the accepted point last; not when its zoom gave
        # up and fell back to an earlier point: then the gradient is taken again.
        at, grad = last[0]
        if not torch.equal(at, u):
            grad = value_and_grad(u)[1]
        ratio = grad.abs().max().item() / g0 if g0 > 0 else 0.0
        return pw * T(u[:d]), pb * u[d], used, ratio

    pw = (1 + C / 4 * sq_norms(Xc, 0).cpu()).rsqrt()
    pb = (1 + C * n / 4) ** -0.5
    start = None
    if init is not None:
        w0 = torch.as_tensor(init[0], dtype=torch.float64)
        start = torch.cat([w0 / pw, ((init[1] + mean @ w0) / pb).reshape(1)])
    budget = max_iter if rank <= 0 else min(max_iter, precondition_after)
    w, b, used, ratio = solve(pw, lambda u: u, pb, start, budget)
    while ratio > tol and used < max_iter and rank > 0:  # precondition at this point, go on
        p = torch.sigmoid(margins(w, b))
        curvature = p * (1 - p)
        T = low_rank_preconditioner(Xc, C, rank, weights=curvature)
        # b's own curvature; the 1 keeps it finite when every row is fitted confidently
        pb = (1 + C * float(curvature.sum())) ** -0.5
        u = torch.cat([T.inverse(w), (b / pb).reshape(1)])  # on from the current point
        budget = min(max_iter - used, refresh_every)
        w, b, more, ratio = solve(1.0, T.apply, pb, u, budget)
        used += more
        if more == 0:  # L-BFGS made no step from here: a fresh T would not make it move
            break
    return Solution(w, float(b - mean @ w), used, ratio <= tol, ratio)


class LRProbe(BaseProbe):
    """Logistic regression with an L2 penalty, C = 1 (the LR probe of mishajw 2024; cf.
    Alain & Bengio 2016, "Understanding intermediate layers using linear classifier
    probes"). Same objective as sklearn LogisticRegression(C=1.0); see `_logistic`.

    warm_start=True (as in sklearn): a refit starts from the previous solution. A job that
    sets it keeps one probe per train dataset across layers (off by default; see
    `fitting.ProbeFitter.new_probe`); the objective is strictly convex, so only the path
    changes, and the stopping rule stays relative to the gradient at w = 0.
    precondition_rank: the rank of the low-rank preconditioner a fit turns to when it has
    not converged after 20 iterations (0: diagonal preconditioning only); see `_logistic`.

    After `fit`: `n_iter_` (L-BFGS iterations used), `converged_` (whether the stopping
    rule was met within `max_iter`; if not, the direction is the last iterate, and the job
    says so on its rows) and `convergence_detail_` (where it stopped, for that message)."""

    name = "lr"
    requires_groups = False

    def __init__(
        self,
        C: float = 1.0,
        max_iter: int = 200,
        tol: float = 1e-4,
        warm_start: bool = False,
        precondition_rank: int = 128,
    ):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.precondition_rank = precondition_rank

    def _fit_rows(self, X: torch.Tensor, y: np.ndarray, centred: bool = False) -> None:
        both_classes(y, self.name)
        init = None
        if self.warm_start and getattr(self, "coef_", np.empty(0)).shape == (X.shape[1],):
            init = (self.coef_, self.intercept_)  # as sklearn's warm_start: the last solution
        found = _logistic(
            X, y, self.C, self.max_iter, self.tol, init, centred, self.precondition_rank
        )
        self.n_iter_, self.converged_ = found.n_iter, found.converged
        self.convergence_detail_ = (
            f"max|grad| {found.grad_ratio:.1e} of the start's, tol {self.tol:.0e}"
        )
        self._set_direction(found.w, found.b)

    def fit(self, X, y, groups=None, answer_types=None) -> LRProbe:
        X = as_tensor(X)
        self._fit_rows(X, labels(y, len(X)))
        return self


class GroupedLRProbe(LRProbe):
    """Logistic regression on group-centred activations (LR-G of mishajw 2024): each row
    minus its group's (question's) mean row, so only within-question differences are
    learned, as in CRC-TPC (Burns et al. 2022). Scores stay linear in the raw activations;
    within a group the centring shifts all scores equally (docs/design.md §6)."""

    name = "lr-g"
    requires_groups = True

    def fit(self, X, y, groups=None, answer_types=None) -> GroupedLRProbe:
        if groups is None:
            raise NeedsGroups("lr-g needs grouped data (a group id per row); got groups=None")
        X = as_tensor(X)
        y = labels(y, len(X))
        self._fit_rows(center_by(X, codes(groups, len(X), "groups")), y, centred=True)
        return self
