"""Fitting a probe job's probes (docs/design.md §6): where they fit (`fit_device`), one
job's probe from layer to layer (`ProbeFitter`), and one layer's fits for every job of a
pass (`fit_layer`). Scoring the fitted directions is `probegen.scoring`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from probegen import blas
from probegen.cache import Activations
from probegen.null import LayerNull, fit_null, null_directions, train_fixing
from probegen.probes import BaseProbe, FitFailed, NeedsGroups, OneClass, make_probe
from probegen.results import NOT_CONVERGED
from probegen.sources import ActivationSource

log = logging.getLogger(__name__)


def fit_device(name: str) -> torch.device:
    """The torch device that `device=name` asks for; `auto` is the first GPU torch sees,
    else the CPU. A GPU that is not there is an error now, before any work is done."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"device={name!r} is not a torch device: use cpu, cuda, cuda:N or auto"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={name!r}, but torch {torch.__version__} sees no CUDA GPU "
                "(torch.cuda.is_available() is False): run with device=cpu or device=auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={name!r}, but torch sees {torch.cuda.device_count()} CUDA GPU(s)"
            )
    elif device.type != "cpu":
        raise ValueError(f"device={name!r}: probes fit on cpu or cuda (or auto)")
    return device


class Fit(NamedTuple):
    """One fitted probe: its direction and intercept; its sign and threshold fixed on its
    train split (the train-fixed policy, `null.train_fixing`); its fit time; and the
    `reason` its ok rows carry ("" for a clean fit; see `convergence_note`)."""

    coef: np.ndarray
    intercept: float
    sign: float
    threshold: float
    seconds: float
    note: str = ""


def convergence_note(probe: BaseProbe) -> str:
    """Empty for a probe that converged or does not say; for one whose iterative solver stopped
    before its stopping rule was met (`converged_` False) the reason its ok rows carry:
    "not converged after <n_iter_> iterations (<convergence_detail_>)", each part as far as
    the probe exposes it. Its direction is still scored: it is the solver's last iterate,
    usually close to the optimum, and the rows say how far it got."""
    if getattr(probe, "converged_", True):
        return ""
    note = NOT_CONVERGED
    n_iter = getattr(probe, "n_iter_", None)
    if n_iter is not None:
        note += f" after {n_iter} iterations"
    detail = getattr(probe, "convergence_detail_", "")
    return f"{note} ({detail})" if detail else note


@dataclass
class ProbeFitter:
    """One job's probe algorithm (`probe` and its `params`), fitted on train set after
    train set, layer after layer."""

    probe: str
    params: dict = field(default_factory=dict)
    warm: dict[str, BaseProbe] = field(default_factory=dict)  # train dataset -> kept probe

    def new_probe(self) -> BaseProbe:
        """A fresh probe. One with `warm_start=True` in the params (LR, LR-G) is kept per
        train dataset from one layer to the next (`fit`), so each layer's fit starts from the
        previous layer's solution. Off by default: on real activations consecutive cached
        layers' LR directions are far apart, so the previous solution is mostly worse than
        w = 0 and dropped, and it saves no iterations (docs/benchmarks.md)."""
        return make_probe(self.probe, **self.params)

    def fit(self, train: Activations, name: str, X: torch.Tensor) -> Fit:
        """Fit on one train dataset's train split (`X`: train.X as a tensor on the fit
        device); `seconds` counts the fit alone."""
        start = time.perf_counter()
        if len(train.labels) == 0:
            raise OneClass(f"dataset {name!r} has no train rows")
        probe = self.warm.get(name)
        if probe is None:
            probe = self.new_probe()
            if getattr(probe, "warm_start", False):
                self.warm[name] = probe
        probe.fit(X, train.labels, groups=train.groups, answer_types=train.answer_types)
        coef = np.asarray(probe.coef_, dtype=np.float32)
        if not np.isfinite(coef).all():
            raise FitFailed("direction is not finite")
        signs, thresholds = train_fixing(train.X @ coef, train.labels, train.groups)
        seconds = time.perf_counter() - start
        return Fit(
            coef, float(probe.intercept_), float(signs[0]), float(thresholds[0]), seconds,
            convergence_note(probe),
        )  # fmt: skip


@dataclass
class LayerFits:
    """One job's fits at one layer: per train dataset its `Fit`, or (status, reason) when
    it has none — `skipped` (the probe does not apply) or `failed`."""

    fits: dict[str, Fit] = field(default_factory=dict)
    unfit: dict[str, tuple[str, str]] = field(default_factory=dict)


def fit_layer(
    fitters: Sequence[ProbeFitter],
    train_sets: Sequence[str],
    source: ActivationSource,
    layer: int,
    device: torch.device = torch.device("cpu"),
    null: tuple[int, int] = (0, 0),
) -> tuple[list[LayerFits], LayerNull | None]:
    """Fit each job's probe on each train dataset at `layer`: each train set is loaded once
    for all jobs, and moved to `device` once (probes fit where their X lives). With `null` =
    (R, seed), R > 0, the layer's R null directions are drawn (`null.null_directions`) and
    their train-fixed signs and thresholds fixed on each train set too (`null.fit_null`),
    once for all jobs. A train set
    that cannot be loaded, a probe that does not apply and a fit that raises are recorded
    in `unfit`, never raised: one bad fit must not stop a sweep.

    Fits run with one torch thread and one BLAS thread (`blas.one_thread_each`), so a fit
    takes the same path, and gives the same numbers, under every launcher. Not side by side
    in threads: the solvers' many small steps hold the GIL, so two fits at a time in two
    threads are slower than one after the other."""
    fitted = [LayerFits() for _ in fitters]
    count, seed = null
    layer_null = None
    with blas.one_thread_each():
        for name in train_sets:
            try:
                train = source.load(name, layer, ("train",))
                X = torch.from_numpy(train.X).to(device)  # on the CPU: no copy
            except Exception as err:  # unreadable, or e.g. the GPU out of memory
                log.warning("train set %s layer %d not loaded to %s: %s", name, layer, device, err)
                for layer_fits in fitted:
                    layer_fits.unfit[name] = ("failed", f"{type(err).__name__}: {err}")
                continue
            if count:
                if layer_null is None:
                    directions = null_directions(train.X.shape[1], count, seed, layer)
                    layer_null = LayerNull(directions, {})
                layer_null.fits[name] = fit_null(train, layer_null.directions)
            for fitter, layer_fits in zip(fitters, fitted, strict=True):
                try:
                    fit = layer_fits.fits[name] = fitter.fit(train, name, X)
                except (NeedsGroups, OneClass) as err:
                    layer_fits.unfit[name] = ("skipped", str(err))
                    continue
                except Exception as err:  # a failed fit is a result row, never a crashed sweep
                    log.warning("%s on %s layer %d failed: %s", fitter.probe, name, layer, err)
                    layer_fits.unfit[name] = ("failed", f"{type(err).__name__}: {err}")
                    continue
                if fit.note:
                    log.warning("%s on %s layer %d: %s", fitter.probe, name, layer, fit.note)
    return fitted, layer_null
