"""Contrast-Consistent Search, Burns et al. 2022, "Discovering Latent Knowledge in Language
Models Without Supervision" (arXiv:2212.03827), as the original generalisation study
(mishajw 2024) fits it: `ccs`. Its pairing and loss are shared with probegen's variant
`ccs-sub` (`probegen.probes.ccs_subspace`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from probegen.probes.base import (
    BaseProbe,
    FitFailed,
    NeedsGroups,
    as_tensor,
    center_by,
    codes,
    on_device,
    orient,
)


def contrast_pairs(groups, y, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (first, second) of one contrast pair per group.

    A group of exactly one true and one false row is that pair. Otherwise (multiple choice)
    the pair is the group's first true row and its first false row in row order, as repeng
    does; groups without both a true and a false row are dropped. With y=None only groups of
    exactly two rows are used. Within a pair the rows keep their row order (not true-first):
    the two "sides" x+ / x- must not encode the label, or per-side normalisation would
    subtract the truth direction itself. For DLK data the first row is answer_type "0".
    """
    code = codes(groups, n, "groups").numpy()
    first_true: dict[int, int] = {}
    first_false: dict[int, int] = {}
    rows: dict[int, list[int]] = {}
    for i, g in enumerate(code.tolist()):
        rows.setdefault(g, []).append(i)
        if y is not None:
            (first_true if y[i] else first_false).setdefault(g, i)
    pairs = []
    for g, members in rows.items():
        if y is None:
            if len(members) == 2:
                pairs.append(members)
        elif g in first_true and g in first_false:
            pairs.append(sorted((first_true[g], first_false[g])))
    if not pairs:
        raise NeedsGroups("ccs needs grouped data with a true and a false row in some group")
    pairs = np.array(pairs)
    return pairs[:, 0], pairs[:, 1]


def ccs_loss(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Burns et al. eq. 1-2 per column: consistency (p - (1 - q))^2 + confidence min(p, q)^2."""
    return ((p - (1 - q)) ** 2).mean(0) + (torch.minimum(p, q) ** 2).mean(0)


def ccs_objective(
    w: torch.Tensor, b: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weight_decay: float
) -> torch.Tensor:
    """The original study's CCS loss for one linear probe (w [d], b scalar) on the pairs
    (A[i], B[i]): consistency + confidence (`ccs_loss`) + weight_decay * (|w|^2 + b^2)."""
    p, q = torch.sigmoid(A @ w + b), torch.sigmoid(B @ w + b)
    return ccs_loss(p, q) + weight_decay * ((w**2).sum() + b**2)


class CCSProbe(BaseProbe):
    """CCS (Burns et al. 2022) exactly as "How well do truth probes generalise?" (mishajw 2024)
    trains it: label-free, except that labels pick each multiple-choice group's pair.

    1. Centre the activations per answer type (each row minus the mean of its answer type's
       rows) when answer types are given.
    2. From each group take its first true and its first false row, in row order, as the
       pair (`contrast_pairs`); groups without both are dropped.
    3. Fit p(x) = sigmoid(w.x + b), initialised as torch.nn.Linear(d, 1) is (uniform in
       +-1/sqrt(d)), by torch's L-BFGS with a fixed step (lr=0.1, max_iter=100, no line
       search, torch's other defaults) on consistency + confidence + 0.01 (|w|^2 + b^2)
       (`ccs_objective`), in float32 as the original.
    4. If the final loss is above `max_loss` (0.2), start again from a new random
       initialisation, at most `retries` (2) times; then the fit fails (FitFailed, with the
       loss) and the job records a `failed` row. The criterion is weak: p = 1/2 everywhere
       scores 0.25, but a constant p = 0.4 already scores 0.2, so only a start that stays
       near p = 1/2 fails it.

    Scores are the logit w.x + b of the raw activations, not the probability the original
    returns: the same order, without the ties float32 sigmoids saturate into (the original
    breaks those at random). When labels are given, w and b are negated if that makes true
    train rows score higher on average (probegen's sign convention; the eval stage flips
    signs anyway). Initialisations come from a generator seeded with `random_state`, so a
    fit is repeatable; `loss_` is the accepted loss and `attempts_` how many starts it took.
    """

    name = "ccs"
    requires_groups = True

    def __init__(
        self,
        lr: float = 0.1,
        max_iter: int = 100,
        weight_decay: float = 0.01,
        max_loss: float = 0.2,
        retries: int = 2,
        random_state: int = 0,
    ):
        self.lr = lr
        self.max_iter = max_iter
        self.weight_decay = weight_decay
        self.max_loss = max_loss
        self.retries = retries
        self.random_state = random_state

    def fit(self, X, y=None, groups=None, answer_types=None) -> CCSProbe:
        if groups is None:
            raise NeedsGroups("ccs needs grouped data (contrast pairs); got groups=None")
        X = as_tensor(X)
        if y is not None:
            y = np.asarray(y).astype(bool).reshape(-1)
        first, second = contrast_pairs(groups, y, len(X))
        if answer_types is not None:
            X = center_by(X, codes(answer_types, len(X), "answer_types"))
        A = X[on_device(first, X)].float()
        B = X[on_device(second, X)].float()
        d = A.shape[1]
        bound = 1 / math.sqrt(d)
        g = torch.Generator().manual_seed(self.random_state)
        attempts = 0
        while True:
            attempts += 1
            # drawn on the CPU: the same starts on every device
            w = (torch.rand(d, generator=g) * 2 - 1) * bound
            b = (torch.rand((), generator=g) * 2 - 1) * bound
            w = w.to(A.device).requires_grad_()
            b = b.to(A.device).requires_grad_()
            loss = self._optimise(w, b, A, B)
            if math.isfinite(loss) and loss <= self.max_loss:
                break
            if attempts > self.retries:
                raise FitFailed(
                    f"ccs did not converge: loss {loss:.4g} > {self.max_loss} after "
                    f"{attempts} attempts"
                )
        self.loss_, self.attempts_ = loss, attempts
        w, b = w.detach().double(), float(b.detach())
        oriented = orient(w, X, y)  # probegen's sign convention; the intercept follows w
        self._set_direction(oriented, b if oriented is w else -b)
        return self

    def _optimise(
        self, w: torch.Tensor, b: torch.Tensor, A: torch.Tensor, B: torch.Tensor
    ) -> float:
        """Run the original's L-BFGS from (w, b) in place; the final loss."""
        if self.max_iter > 0:
            opt = torch.optim.LBFGS([w, b], lr=self.lr, max_iter=self.max_iter)

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = ccs_objective(w, b, A, B, self.weight_decay)
                loss.backward()
                return loss

            opt.step(closure)
        with torch.no_grad():
            return float(ccs_objective(w, b, A, B, self.weight_decay))
