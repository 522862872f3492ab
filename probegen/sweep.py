"""The probe job engine (docs/design.md §6–7): one job (`run_job`) trains one algorithm on
every train dataset × layer and scores it on every eval dataset × split; several jobs that
differ only in the probe run in one shared pass (`run_jobs`).

Layer-major order keeps memory flat: for a layer, each train set is loaded, fitted by every
job and dropped (`probegen.fitting`); then each eval set is loaded once and scored by every
direction of that layer, of every job, with a single matmul (`probegen.scoring`). Writing a
job's folder is `probegen.probe_job`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from probegen import cache
from probegen.fitting import ProbeFitter, convergence_note, fit_device, fit_layer
from probegen.outcomes import JobOutcomes
from probegen.results import frame
from probegen.scoring import EvalRows, JobRows, NullLog, job_outcomes, score_layer
from probegen.sources import ActivationSource, CacheSource

# Read from here by scripts and tests that predate the split into modules.
__all__ = ["CacheSource", "JobOutput", "JobSpec", "convergence_note", "run_job", "run_jobs"]

log = logging.getLogger(__name__)


@dataclass
class JobSpec:
    """What one sweep point computes."""

    model: str
    probe: str
    train: Sequence[str]
    eval: Sequence[str]
    layers: Sequence[int] | None = None  # None: every layer cached for all datasets
    probe_params: dict = field(default_factory=dict)
    seed: int = 0
    null_directions: int = 200  # random directions per layer for the null (design §6); 0: none
    device: str = "cpu"  # where probes are fitted: cpu | cuda | cuda:N | auto (`fit_device`)


@dataclass
class JobOutput:
    """What a job computed: its result rows, fitted directions and per-unit outcomes."""

    results: pd.DataFrame
    directions: dict[str, np.ndarray]  # "<train dataset>/layer.<i>" -> [hidden] float32
    intercepts: dict[str, float] = field(default_factory=dict)  # same keys -> intercept_
    outcomes: JobOutcomes | None = None


def job_layers(spec: JobSpec, source: ActivationSource) -> list[int]:
    """The layers to sweep; every dataset must have them (opening each checks it is cached)."""
    per_dataset = {d: set(source.layers(d)) for d in dict.fromkeys([*spec.train, *spec.eval])}
    common = set.intersection(*per_dataset.values())
    if spec.layers is None:
        return sorted(common)
    missing = {d: sorted(set(spec.layers) - got) for d, got in per_dataset.items()}
    missing = {d: m for d, m in missing.items() if m}
    if missing:
        raise cache.CacheError(f"layers not cached for model {spec.model!r}: {missing}")
    return sorted(spec.layers)


def model_depth(spec: JobSpec, source: ActivationSource) -> int | None:
    """The model's depth as the job's datasets record it, for every results row; None when
    none records it (caches extracted before it was). Datasets that know it must agree."""
    recorded = {d: source.depth(d) for d in dict.fromkeys([*spec.train, *spec.eval])}
    known = {d: depth for d, depth in recorded.items() if depth is not None}
    if len(set(known.values())) > 1:
        raise cache.CacheError(
            f"the cached datasets of model {spec.model!r} disagree on its depth: {known}; "
            "re-extract them with one model"
        )
    return next(iter(known.values()), None)


def shared_pass_key(spec: JobSpec) -> tuple:
    """What jobs must have in common to run in one pass (`run_jobs`): all but the probe."""
    return (
        spec.model,
        tuple(spec.train),
        tuple(spec.eval),
        None if spec.layers is None else tuple(spec.layers),
        spec.seed,
        spec.null_directions,
        spec.device,
    )


def run_job(spec: JobSpec, source: ActivationSource) -> JobOutput:
    """Train `spec.probe` on each train dataset × layer; score on each eval dataset × split."""
    return run_jobs([spec], source)[0]


def run_jobs(specs: Sequence[JobSpec], source: ActivationSource) -> list[JobOutput]:
    """Several jobs that differ only in their probe (algorithm and params) in one
    pass: each train set is loaded once per layer for all of them, and each eval set is
    read, converted and multiplied once per layer by the directions of every job (one
    [hidden, jobs × train sets] matrix). Each job's output is what `run_job` alone gives,
    up to float32 rounding of the scores (the products are blocked differently)."""
    if not specs:
        return []
    for spec in specs:
        if not 0 <= spec.null_directions <= np.iinfo(np.uint16).max:
            raise ValueError(f"eval.null_directions={spec.null_directions}: use 0 … 65535")
        if shared_pass_key(spec) != shared_pass_key(specs[0]):
            raise ValueError(
                f"jobs {specs[0].probe!r} and {spec.probe!r} differ in more than the probe "
                "(model, train, eval, layer, seed, null and device must match to share a pass)"
            )
    first = specs[0]
    device = fit_device(first.device)
    layers = job_layers(first, source)
    depth = model_depth(first, source)
    fitters = [ProbeFitter(spec.probe, spec.probe_params) for spec in specs]
    rows = [JobRows(spec.model, spec.probe) for spec in specs]
    null_log = NullLog(first.null_directions)
    directions: list[dict[str, np.ndarray]] = [{} for _ in specs]
    intercepts: list[dict[str, float]] = [{} for _ in specs]
    eval_rows: dict[str, EvalRows] = {}
    probes = ",".join(spec.probe for spec in specs)
    if device.type != "cpu":
        log.info("%s %s: probes fitted on %s", first.model, probes, device)
    null_spec = (first.null_directions, first.seed)
    for layer in layers:
        fitted, null = fit_layer(fitters, first.train, source, layer, device, null_spec)
        for job, layer_fits in enumerate(fitted):
            for name, (status, reason) in layer_fits.unfit.items():
                rows[job].add_unscored(name, layer, first.eval, status, reason)
            for name, fit in layer_fits.fits.items():
                directions[job][f"{name}/layer.{layer}"] = fit.coef
                intercepts[job][f"{name}/layer.{layer}"] = fit.intercept
        fits = [layer_fits.fits for layer_fits in fitted]
        score_layer(rows, fits, source, layer, first.eval, first.seed, eval_rows, null, null_log)
        log.info("%s %s layer %d: %d probes fitted", first.model, probes, layer,
                 sum(map(len, fits)))  # fmt: skip
    outputs = []
    for job_rows, job_directions, job_intercepts in zip(rows, directions, intercepts, strict=True):
        # One depth for the whole job, so stage 3 knows it without the model code.
        results = frame(job_rows.rows, depth)
        outcomes = job_outcomes(job_rows, first.train, null_log)
        outputs.append(JobOutput(results, job_directions, job_intercepts, outcomes))
    return outputs
