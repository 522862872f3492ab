"""`ccs-sub`: probegen's variant of Contrast-Consistent Search (Burns et al. 2022), restarts
in a principal subspace. The original study's procedure is `ccs` (`probegen.probes.ccs`)."""

from __future__ import annotations

import numpy as np
import torch

from probegen.probes.base import (
    BaseProbe,
    FitFailed,
    NeedsGroups,
    as_tensor,
    on_device,
    orient,
    top_subspace,
)
from probegen.probes.ccs import ccs_loss, contrast_pairs


def objective_and_grad(
    a: torch.Tensor, b: torch.Tensor, W: torch.Tensor, bias: torch.Tensor, weight_decay: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sum over restarts (columns of W) of ccs_loss + weight_decay |w|^2, and its gradient in
    W and bias, written out: the graph is a few [pairs, restarts] elementwise ops, for which
    autograd's bookkeeping costs more than the arithmetic. Same formulas as autograd's
    (torch.minimum's tie rule included), so L-BFGS follows the autograd path up to rounding.

    The L2 penalty bounds the scale of w: without it the loss keeps falling as |w| grows and
    saturated sigmoids let noise directions in.
    """
    with torch.no_grad():
        p, q = torch.sigmoid(a @ W + bias), torch.sigmoid(b @ W + bias)
        total = (ccs_loss(p, q) + weight_decay * (W**2).sum(0)).sum()
        m = len(p)
        g_gap = 2 * (p - (1 - q)) / m  # d consistency / dp, and / dq
        g_low = 2 * torch.minimum(p, q) * torch.where(p == q, 0.5, 1.0) / m  # ties split
        gp = (g_gap + torch.where(p <= q, g_low, 0.0)) * (p * (1 - p))  # through the sigmoid
        gq = (g_gap + torch.where(q <= p, g_low, 0.0)) * (q * (1 - q))
        return total, a.T @ gp + b.T @ gq + 2 * weight_decay * W, gp.sum(0) + gq.sum(0)


class SubspaceCCSProbe(BaseProbe):
    """CCS in a principal subspace with restarts: probegen's variant of CCS (Burns et al.
    2022, "Discovering Latent Knowledge in Language Models Without Supervision"), beside
    the original study's `ccs`. A probe sigmoid(w.x + b) trained without labels so that the
    two sides of each contrast pair get complementary probabilities (consistency) that are
    far from 1/2 (confidence). Only y's use: picking the (true, false) pair of multiple-choice
    groups (as repeng; see `contrast_pairs`) and the sign convention of `base.orient`.

    Steps: each side is mean-centred separately (the paper's normalisation, which removes
    what all x+ (resp. x-) share, e.g. the answer token); the problem is restricted to the
    top `n_components` principal directions of the pair differences x+ - x-; then
    `n_restarts` random initialisations are optimised at once (one [k, R] matrix) with
    L-BFGS and the lowest-loss one is kept (`loss_`: consistency + confidence). Coordinates
    are variance-normalised and the objective adds weight_decay * |w|^2 (0.01, the weight
    decay of Burns et al.'s code) so that |w| cannot grow without bound.

    Why the restriction: with fewer pairs than dimensions (400 pairs, d = 2560) the loss is
    degenerate: some direction satisfies every consistency constraint exactly, so L-BFGS
    drives the loss to ~0 along directions unrelated to truth. Burns et al. relied on
    early-stopped Adam (1000 epochs from a small init) as implicit regularisation; a
    principal subspace is an explicit, ~100x cheaper substitute. n_components=None optimises
    in the full space (the degenerate setting, for comparison).

    A restart counts as converged if its loss is finite and at most `max_loss` (repeng used
    0.2; an uninformative probe, p = 1/2 everywhere, has loss 0.25). If none converges,
    fit raises FitFailed.

    How it differs from `ccs`: the original optimises one random start in the full space
    with fixed-step L-BFGS and retries twice; this searches `n_restarts` starts at once in a
    `n_components`-dimensional principal subspace with a line search, centres each side of
    the pairs rather than each answer type, and variance-normalises the coordinates.
    """

    name = "ccs-sub"
    requires_groups = True

    def __init__(
        self,
        n_restarts: int = 10,
        max_iter: int = 100,
        lr: float = 1.0,
        weight_decay: float = 0.01,
        n_components: int | None = 32,
        max_loss: float = 0.2,
        random_state: int = 0,
    ):
        self.n_restarts = n_restarts
        self.max_iter = max_iter
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_components = n_components
        self.max_loss = max_loss
        self.random_state = random_state

    def fit(self, X, y=None, groups=None, answer_types=None) -> SubspaceCCSProbe:
        if groups is None:
            raise NeedsGroups("ccs-sub needs grouped data (contrast pairs); got groups=None")
        X = as_tensor(X)
        if y is not None:
            y = np.asarray(y).astype(bool).reshape(-1)
        first, second = contrast_pairs(groups, y, len(X))
        A, B = X[on_device(first, X)], X[on_device(second, X)]
        centre = 0.5 * (A.mean(0) + B.mean(0)).double()
        A, B = A - A.mean(0), B - B.mean(0)
        if self.n_components is None:
            Q = None
            a, b = A.double(), B.double()
        else:
            Q = top_subspace(A - B, min(self.n_components, *A.shape))
            basis = Q.to(A.dtype)
            a, b = (A @ basis).double(), (B @ basis).double()
        # Burns et al.'s variance normalisation, per coordinate: makes the L2 penalty
        # scale-free. (In the principal basis this whitens the pair data.)
        scale = torch.cat([a, b]).std(0).clamp_min(1e-12)
        a, b = a / scale, b / scale

        # Random starts in the span of the data, scaled so the initial logits are small
        # (p ~ 1/2): the starting loss is ~0.25, so an unoptimised start never "converges".
        g = torch.Generator().manual_seed(self.random_state)
        both = torch.cat([a, b])
        start = torch.randn(len(both), self.n_restarts, generator=g, dtype=both.dtype)
        W = both.T @ start.to(both.device)  # drawn on the CPU: the same starts everywhere
        W = (0.01 * W / (both @ W).std(0).clamp_min(1e-12)).requires_grad_()
        bias = torch.zeros(
            self.n_restarts, dtype=both.dtype, device=both.device, requires_grad=True
        )

        def losses() -> torch.Tensor:
            return ccs_loss(torch.sigmoid(a @ W + bias), torch.sigmoid(b @ W + bias))

        if self.max_iter > 0:
            opt = torch.optim.LBFGS(
                [W, bias],
                lr=self.lr,
                max_iter=self.max_iter,
                history_size=10,
                line_search_fn="strong_wolfe",
            )

            def closure():
                # restarts are independent: summing their objectives decouples them
                total, W.grad, bias.grad = objective_and_grad(a, b, W, bias, self.weight_decay)
                return total

            opt.step(closure)
        with torch.no_grad():
            final = losses()
        final = torch.where(torch.isfinite(final), final, torch.inf)
        best = int(final.argmin())
        self.loss_ = float(final[best])
        if not self.loss_ <= self.max_loss:
            raise FitFailed(
                f"ccs-sub did not converge: best loss {self.loss_:.4g} over {self.n_restarts} "
                f"restarts (needs <= {self.max_loss})"
            )
        w = W.detach()[:, best] / scale
        w = w if Q is None else Q @ w
        intercept = float(bias.detach()[best]) - float(centre @ w)
        oriented = orient(w, X, y)  # probegen's sign convention; the intercept follows w
        self._set_direction(oriented, intercept if oriented is w else -intercept)
        return self
