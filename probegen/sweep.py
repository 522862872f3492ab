"""One probe job (docs/design.md §6–7): train one algorithm on every train dataset × layer and score
it on every eval dataset × split, layer by layer — or several jobs that differ only in the
probe, in one shared pass (`run_jobs`; the local launcher batches a sweep that way).

Layer-major order keeps memory flat: for a layer, each train set is loaded, fitted by every
job and dropped (fits run single-threaded: `fit_layer`; `fit_seconds` counts the fit, not
the load); then each eval set is loaded once and scored by every direction of that layer,
of every job, with a single matmul (`probegen.evaluation` is
vectorised over directions). What depends only on an eval set's rows (split indices, group
codes, tie-break priorities) is derived at the first layer and reused at the others.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from probegen import blas, cache
from probegen.cache import Activations, rows_of
from probegen.evaluation import EvalSet, train_signs
from probegen.probes import BaseProbe, FitFailed, NeedsGroups, OneClass, make_probe
from probegen.results import EVAL_SPLITS, NOT_CONVERGED, RESULT_COLUMNS

log = logging.getLogger(__name__)


class ActivationSource(Protocol):
    """Where a job reads activations: the cache, or in-memory arrays in benchmarks."""

    def layers(self, dataset: str) -> list[int]: ...

    def load(self, dataset: str, layer: int, splits: Sequence[str] | None = None) -> Activations:
        """One layer of one dataset, float32, only the rows of `splits` when given."""

    def project(
        self, dataset: str, layer: int, W: torch.Tensor, splits: Sequence[str] | None = None
    ) -> Activations:
        """Like `load`, with X replaced by the scores X @ W ([rows, k] float32)."""


class CacheSource:
    """Activations of one model from the activation cache (docs/design.md §5)."""

    def __init__(self, cache_dir: str | Path, model: str):
        self.cache_dir, self.model = cache_dir, model
        self._open: dict[str, cache.CachedDataset] = {}

    def dataset(self, name: str) -> cache.CachedDataset:
        if name not in self._open:
            self._open[name] = cache.CachedDataset(self.cache_dir, self.model, name)
        return self._open[name]

    def layers(self, dataset: str) -> list[int]:
        return self.dataset(dataset).layers

    def load(self, dataset: str, layer: int, splits: Sequence[str] | None = None) -> Activations:
        return self.dataset(dataset).load(layer, splits)

    def project(
        self, dataset: str, layer: int, W: torch.Tensor, splits: Sequence[str] | None = None
    ) -> Activations:
        return self.dataset(dataset).project(layer, W, splits)


@dataclass
class JobSpec:
    """What one sweep point computes."""

    model: str
    probe: str
    train: Sequence[str]
    eval: Sequence[str]
    layers: Sequence[int] | None = None  # None: every layer cached for all datasets
    probe_params: dict = field(default_factory=dict)
    sign: str = "eval"  # eval | train (docs/design.md §6)
    seed: int = 0
    device: str = "cpu"  # where probes are fitted: cpu | cuda | cuda:N | auto (`fit_device`)


@dataclass
class JobOutput:
    results: pd.DataFrame
    directions: dict[str, np.ndarray]  # "<train dataset>/layer.<i>" -> [hidden] float32
    intercepts: dict[str, float] = field(default_factory=dict)  # same keys -> intercept_


def resolve_layers(spec: JobSpec, source: ActivationSource) -> list[int]:
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


def shared_pass_key(spec: JobSpec) -> tuple:
    """What jobs must have in common to run in one pass (`run_jobs`): all but the probe."""
    return (
        spec.model,
        tuple(spec.train),
        tuple(spec.eval),
        None if spec.layers is None else tuple(spec.layers),
        spec.seed,
        spec.device,
    )


@dataclass
class _JobState:
    spec: JobSpec
    rows: list[dict] = field(default_factory=list)
    directions: dict[str, np.ndarray] = field(default_factory=dict)
    intercepts: dict[str, float] = field(default_factory=dict)
    warm: dict[str, BaseProbe] = field(default_factory=dict)


def run_job(spec: JobSpec, source: ActivationSource) -> JobOutput:
    """Train `spec.probe` on each train dataset × layer; score on each eval dataset × split."""
    return run_jobs([spec], source)[0]


def run_jobs(specs: Sequence[JobSpec], source: ActivationSource) -> list[JobOutput]:
    """Several jobs that differ only in their probe (algorithm, params, sign policy) in one
    pass: each train set is loaded once per layer for all of them, and each eval set is
    read, converted and multiplied once per layer by the directions of every job (one
    [hidden, jobs × train sets] matrix). Each job's output is what `run_job` alone gives,
    up to float32 rounding of the scores (the products are blocked differently)."""
    if not specs:
        return []
    for spec in specs:
        if spec.sign not in ("eval", "train"):
            raise ValueError(f"eval.sign={spec.sign!r}: use eval or train")
        if shared_pass_key(spec) != shared_pass_key(specs[0]):
            raise ValueError(
                f"jobs {specs[0].probe!r} and {spec.probe!r} differ in more than the probe "
                "(model, train, eval, layer, seed and device must match to share a pass)"
            )
    device = fit_device(specs[0].device)
    layers = resolve_layers(specs[0], source)
    jobs = [_JobState(spec) for spec in specs]
    eval_rows: dict[str, EvalRows] = {}
    probes = ",".join(spec.probe for spec in specs)
    if device.type != "cpu":
        log.info("%s %s: probes fitted on %s", specs[0].model, probes, device)
    for layer in layers:
        fitted = fit_layer(jobs, source, layer, device)
        for job, fits in zip(jobs, fitted, strict=True):
            for name, fit in fits.items():
                job.directions[f"{name}/layer.{layer}"] = fit.coef
                job.intercepts[f"{name}/layer.{layer}"] = fit.intercept
        score_layer(jobs, fitted, source, layer, eval_rows)
        log.info("%s %s layer %d: %d probes fitted", specs[0].model, probes, layer,
                 sum(map(len, fitted)))  # fmt: skip
    outputs = []
    for job in jobs:
        results = pd.DataFrame(job.rows, columns=RESULT_COLUMNS)
        results["auroc"] = results["auroc"].astype("Float64")
        outputs.append(JobOutput(results, job.directions, job.intercepts))
    return outputs


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


def new_probe(spec: JobSpec) -> BaseProbe:
    """The job's probe. A probe with `warm_start=True` in the job's params (LR, LR-G) is kept
    per train dataset from one layer to the next (`fit_one`), so each layer's fit starts from
    the previous layer's solution. Off by default: on the demo's real activations, where
    consecutive cached layers' LR directions have cosines of 0.1-0.7, it saved no
    iterations at all (the previous solution is mostly worse than w = 0 and dropped)."""
    return make_probe(spec.probe, **spec.probe_params)


class Fit(NamedTuple):
    """One fitted probe: its direction and intercept, its train-split sign, its fit time,
    and the `reason` its ok rows carry ("" for a clean fit; see `convergence_note`)."""

    coef: np.ndarray
    intercept: float
    sign: float
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


Fitted = dict[str, Fit]  # train dataset -> its fit


def fit_layer(
    jobs: Sequence[_JobState],
    source: ActivationSource,
    layer: int,
    device: torch.device = torch.device("cpu"),
) -> list[Fitted]:
    """Fit each job's probe on each train dataset (loaded once for all jobs, and moved to
    `device` once for all of them: probes fit where their X lives); per job,
    train set -> its `Fit`. Records skipped/failed rows for every
    eval set of a train set that could not be fitted. Each job's `warm` keeps, per train
    dataset, a warm-starting probe from one layer to the next.

    Fits run with one torch thread and one BLAS thread (`blas.one_thread_each`), so a fit
    takes the same path, and gives the same numbers, under every launcher. Not side by side
    in threads: the solvers' many small steps hold the GIL, and the demo's probe jobs took
    1.7x longer with two fits at a time in two threads than one after the other."""
    fitted: list[Fitted] = [{} for _ in jobs]
    with blas.one_thread_each():
        for name in jobs[0].spec.train:
            try:
                train = source.load(name, layer, ("train",))
                X = torch.from_numpy(train.X).to(device)  # on the CPU: no copy
            except Exception as err:  # unreadable, or e.g. the GPU out of memory
                log.warning("train set %s layer %d not loaded to %s: %s", name, layer, device, err)
                for job in jobs:
                    record_all(job, name, layer, "failed", f"{type(err).__name__}: {err}")
                continue
            for job, fits in zip(jobs, fitted, strict=True):
                start = time.perf_counter()
                try:
                    coef, intercept, sign, note = fit_one(job, train, name, X)
                except (NeedsGroups, OneClass) as err:
                    record_all(job, name, layer, "skipped", str(err))
                    continue
                except Exception as err:  # a failed fit is a result row, never a crashed sweep
                    log.warning("%s on %s layer %d failed: %s", job.spec.probe, name, layer, err)
                    record_all(job, name, layer, "failed", f"{type(err).__name__}: {err}")
                    continue
                fits[name] = Fit(coef, intercept, sign, time.perf_counter() - start, note)
                if note:
                    log.warning("%s on %s layer %d: %s", job.spec.probe, name, layer, note)
    return fitted


def fit_one(
    job: _JobState, train: Activations, name: str, X: torch.Tensor
) -> tuple[np.ndarray, float, float, str]:
    """Fit the job's probe on one train dataset's train split: (coef, intercept, train
    sign, the reason its ok rows carry: `convergence_note`). `X`: train.X as a tensor on
    the fit device."""
    if len(train.labels) == 0:
        raise OneClass(f"dataset {name!r} has no train rows")
    probe = job.warm.get(name)
    if probe is None:
        probe = new_probe(job.spec)
        if getattr(probe, "warm_start", False):
            job.warm[name] = probe
    probe.fit(X, train.labels, groups=train.groups, answer_types=train.answer_types)
    coef = np.asarray(probe.coef_, dtype=np.float32)
    if not np.isfinite(coef).all():
        raise FitFailed("direction is not finite")
    sign = 1.0
    if job.spec.sign == "train":
        sign = float(train_signs(train.X @ coef, train.labels, train.groups)[0])
    return coef, float(probe.intercept_), sign, convergence_note(probe)


class EvalRows:
    """One eval dataset's rows, prepared for scoring: per split, its row index and EvalSet.
    Rows do not change with the layer; `matches` checks that before they are reused."""

    def __init__(self, scored: Activations, seed: int):
        self.labels, self.groups, self.splits = scored.labels, scored.groups, scored.splits
        self.parts: dict[str, tuple[np.ndarray | slice, EvalSet]] = {}
        for split in EVAL_SPLITS:
            index = rows_of(self.splits, (split,))
            groups = None if self.groups is None else self.groups[index]
            self.parts[split] = (index, EvalSet(self.labels[index], groups, seed))

    def matches(self, scored: Activations) -> bool:
        def same(a, b) -> bool:
            if a is None or b is None:
                return a is b
            return a is b or (a.shape == b.shape and np.array_equal(a, b))

        return all(
            same(mine, theirs)
            for mine, theirs in [
                (self.labels, scored.labels),
                (self.groups, scored.groups),
                (self.splits, scored.splits),
            ]
        )


@dataclass
class _Part:
    """One job's fitted directions within a layer's score matrix: columns `columns`."""

    job: _JobState
    fits: Fitted
    columns: slice

    @property
    def names(self) -> list[str]:
        return list(self.fits)


def score_layer(
    jobs: Sequence[_JobState],
    fitted: Sequence[Fitted],
    source: ActivationSource,
    layer: int,
    eval_rows: dict[str, EvalRows],
) -> None:
    """Score every fitted direction of every job on each eval set and split: one product
    per eval set for all of them, and one scoring call per sign policy. `eval_rows`
    carries the prepared rows of each eval set from one layer to the next."""
    parts, offset = [], 0
    for job, fits in zip(jobs, fitted, strict=True):
        if fits:
            parts.append(_Part(job, fits, slice(offset, offset + len(fits))))
            offset += len(fits)
    if not parts:
        return
    W = torch.from_numpy(np.stack([fit.coef for p in parts for fit in p.fits.values()], 1))
    by_policy = {
        policy: [p for p in parts if p.job.spec.sign == policy] for policy in ("eval", "train")
    }
    for eval_name in jobs[0].spec.eval:
        scored = source.project(eval_name, layer, W, EVAL_SPLITS)  # [rows, all directions]
        prepared = eval_rows.get(eval_name)
        if prepared is None or not prepared.matches(scored):
            prepared = eval_rows[eval_name] = EvalRows(scored, jobs[0].spec.seed)
        for split in EVAL_SPLITS:
            index, eval_set = prepared.parts[split]
            if eval_set.n_rows == 0:
                reason = f"{eval_name} has no {split} rows"
                for p in parts:
                    for name in p.names:
                        row = empty_row(eval_name, split, "skipped", reason)
                        p.job.rows.append(base_row(p.job.spec, name, layer) | row)
                continue
            S = scored.X[index]
            for policy, mine in by_policy.items():
                if not mine:
                    continue
                if len(mine) < len(parts):  # a copy of just these columns, contiguous
                    S_mine = S[:, np.r_[tuple(p.columns for p in mine)]]
                else:
                    S_mine = S
                signs = None
                if policy == "train":
                    signs = np.array([fit.sign for p in mine for fit in p.fits.values()])
                result = eval_set.score(S_mine, signs)
                start = 0
                for p in mine:
                    take = slice(start, start + len(p.fits))
                    start = take.stop
                    add_rows(p, layer, eval_name, split, result, take)


def add_rows(part: _Part, layer: int, eval_name: str, split: str, result, take: slice) -> None:
    """The ok rows of one job's directions (`take`: their columns in `result`)."""
    job, fits, names = part.job, part.fits, part.names
    # tolist(): plain Python numbers in one call each, not one numpy scalar per cell
    columns = zip(
        names,
        result.accuracy[take].tolist(),
        result.auroc[take].tolist(),
        result.is_flipped[take].tolist(),
        strict=True,
    )
    for name, accuracy, auroc, flipped in columns:
        job.rows.append(
            base_row(job.spec, name, layer)
            | {
                "eval_dataset": eval_name,
                "eval_split": split,
                "accuracy": accuracy,
                "n": int(result.n),
                "auroc": None if math.isnan(auroc) else auroc,
                "is_flipped": flipped,
                "status": "ok",
                "reason": fits[name].note,
                "fit_seconds": fits[name].seconds,
            }
        )


def base_row(spec: JobSpec, train: str, layer: int) -> dict:
    return {"model": spec.model, "probe": spec.probe, "train_dataset": train, "layer": layer}


def empty_row(eval_name: str, split: str, status: str, reason: str) -> dict:
    """The result columns of an eval that could not be scored."""
    return {
        "eval_dataset": eval_name,
        "eval_split": split,
        "accuracy": None,
        "n": 0,
        "auroc": None,
        "is_flipped": False,
        "status": status,
        "reason": reason,
        "fit_seconds": None,
    }


def record_all(job: _JobState, train: str, layer: int, status: str, reason: str) -> None:
    for eval_name in job.spec.eval:
        for split in EVAL_SPLITS:
            job.rows.append(
                base_row(job.spec, train, layer) | empty_row(eval_name, split, status, reason)
            )


def write_outputs(output: JobOutput, out_dir: Path, spec: JobSpec) -> tuple[Path, Path]:
    """results.parquet and probes.safetensors in the job's output folder (docs/design.md §7). The
    safetensors file holds one direction per "<train dataset>/layer.<i>"; its metadata the
    model, probe, probe params and, as JSON under "intercepts", each direction's intercept
    (a probe's score is X @ direction + intercept)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path, probes_path = out_dir / "results.parquet", out_dir / "probes.safetensors"
    output.results.to_parquet(results_path, index=False)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in output.directions.items()}
    metadata = {
        "model": spec.model,
        "probe": spec.probe,
        "probe_params": json.dumps(spec.probe_params, sort_keys=True),
        "intercepts": json.dumps(output.intercepts, sort_keys=True),
    }
    save_file(tensors, str(probes_path), metadata=metadata)
    return results_path, probes_path
