"""The local launcher of probe sweeps (`hydra/launcher=local`): jobs run in parallel worker
processes, and jobs that differ only in `probe` share one pass over the activation cache.

Why: a probe job's time on a CPU is about half fitting and half scoring, and most of the
scoring is reading each eval set at each layer, converting it to float32 and multiplying it
by the job's directions — the same for every probe. Run together (`probegen.sweep.run_jobs`)
the probes of a sweep read and convert each eval set once and multiply it by all their
directions in one product. On the probe benchmark (8 probes, 2 workers on 2 cores) the grid
took 139-160 s this way against 203 s with one pass per job (README, "Probe stage").

The plan: jobs are grouped by everything but the probe; a group is split into as many
batches as it takes to give every worker one (balanced by each probe's fit time on the
benchmark, `BENCHMARK_SECONDS`), and each batch runs in one worker: its shared pass first
(`shared_pass`), then Hydra's usual `run_job` for each of its jobs, which takes its output
from the pass (`take_shared`), writes its folder and logs its W&B run. So every job still
has its own output folder, status file and W&B run; a failed shared pass only means its
jobs run one by one. Other stages' sweeps
(e.g. extraction) get one batch per job, as joblib's launcher gives them.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from probegen.sweep import CacheSource, JobOutput, JobSpec, run_jobs, shared_pass_key

log = logging.getLogger(__name__)


def shares_passes(
    job_spec: Callable[[DictConfig], JobSpec],
) -> Callable[[TaskFunction], TaskFunction]:
    """Marks a Hydra task function as a probe job whose sweep point `job_spec` gives: the
    launcher then runs its jobs that differ only in the probe in one shared pass."""

    def mark(task: TaskFunction) -> TaskFunction:
        task.job_spec = job_spec  # type: ignore[attr-defined]
        return task

    return mark


# Outputs of a worker's shared pass, waiting for their jobs: key -> output. Here, not in
# probegen.probe: run as `python -m probegen.probe`, that module is __main__, and a worker
# rebuilds the task function by value with globals of its own.
_SHARED: dict[str, JobOutput] = {}


def _shared_key(spec: JobSpec, cache_dir: Path) -> str:
    return json.dumps([str(cache_dir), asdict(spec)], sort_keys=True, default=list)


def take_shared(spec: JobSpec, cache_dir: Path) -> JobOutput | None:
    """This job's output from the running shared pass, if it has one (once)."""
    return _SHARED.pop(_shared_key(spec, Path(cache_dir)), None)


@contextmanager
def shared_pass(specs: Sequence[JobSpec], cache_dir: Path) -> Iterator[None]:
    """Within the block, each job of `specs` (jobs that differ only in the probe) can take
    its output (`take_shared`) from one `run_jobs` pass computed here instead of making its
    own pass over the cache. If the pass fails (e.g. a dataset missing from the cache), the
    jobs run, and report their errors, alone."""
    probes = ",".join(spec.probe for spec in specs)
    log.info("shared pass of %d jobs: %s on %s", len(specs), probes, specs[0].model)
    try:
        try:
            outputs = run_jobs(specs, CacheSource(cache_dir, specs[0].model))
        except Exception as err:
            log.warning("shared pass of %s failed (%s); each job runs alone", probes, err)
        else:
            for spec, output in zip(specs, outputs, strict=True):
                _SHARED.setdefault(_shared_key(spec, cache_dir), output)
        yield
    finally:
        _SHARED.clear()


# Seconds each probe's 306 fits take on the probe benchmark's grid, plus ~10 s of scoring
# that every probe costs: only to balance batches. Others count as the median. lda and ccs
# (the original's estimators) are single-fit timings on benchmark-shaped data times 306.
BENCHMARK_SECONDS = {"dim": 14, "lda": 68, "lda-lw": 29, "lr": 42, "lr-g": 43, "ccs": 90,
                     "ccs-sub": 51, "pca": 29, "pca-g": 48, "lat": 22, "random": 10}  # fmt: skip


def probe_weight(probe: str) -> float:
    """A probe job's relative cost, for balancing batches."""
    return BENCHMARK_SECONDS.get(probe, statistics.median(BENCHMARK_SECONDS.values()))


def plan_batches(
    keys: Sequence[Hashable | None], workers: int, weights: Sequence[float] | None = None
) -> list[list[int]]:
    """Job indices in batches: jobs with equal keys together (None: a job of its own), each
    group split into just enough batches to give every worker one. Within a group, the
    heaviest job goes first to the lightest batch (`weights`, default equal: round-robin in
    sweep order); each batch keeps its jobs in sweep order."""
    weights = [1.0] * len(keys) if weights is None else list(weights)
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(("alone", index) if key is None else ("key", key), []).append(index)
    per_group = max(1, math.ceil(workers / len(groups))) if groups else 1
    batches = []
    for members in groups.values():
        parts: list[list[int]] = [[] for _ in range(min(len(members), per_group))]
        load = [0.0] * len(parts)
        for index in sorted(members, key=lambda i: -weights[i]):  # stable: ties in sweep order
            lightest = load.index(min(load))
            parts[lightest].append(index)
            load[lightest] += weights[index]
        batches.extend(sorted(part) for part in parts)
    return batches


def sweep_config(hydra_context: HydraContext, config: DictConfig, overrides, index: int):
    """The config of job `index`, as Hydra's launchers build it."""
    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{index}"
        cfg.hydra.job.num = index
    return cfg


ProbeJob = tuple[JobSpec, Path]  # a probe job's sweep point and cache folder


def probe_job(cfg: DictConfig, task_function: TaskFunction) -> ProbeJob | None:
    """The sweep point and cache of a probe job; None for other tasks and for configs that
    do not build (such a job runs alone and reports the error itself)."""
    job_spec = getattr(task_function, "job_spec", None)
    if job_spec is None:
        return None
    HydraConfig.instance().set_config(cfg)  # for configs that interpolate ${hydra:...}
    try:
        return job_spec(cfg), Path(cfg.cache_dir)
    except Exception:
        return None


def run_batch(
    jobs: Sequence[tuple[int, Sequence[str]]],
    shared: list[ProbeJob] | None,
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> list[JobReturn]:
    """In a worker: the batch's shared pass (`shared`: its jobs' specs and cache, when they
    share one), then each job through Hydra's `run_job`."""
    setup_globals()
    Singleton.set_state(singleton_state)
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    configs = [sweep_config(hydra_context, config, overrides, index) for index, overrides in jobs]
    returns = []
    batch = nullcontext() if shared is None else shared_pass([s for s, _ in shared], shared[0][1])
    with batch:
        for cfg in configs:
            HydraConfig.instance().set_config(cfg)
            returns.append(
                run_job(
                    hydra_context=hydra_context,
                    config=cfg,
                    task_function=task_function,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            )
    return returns


def launch(
    config: DictConfig,
    hydra_context: HydraContext,
    task_function: TaskFunction,
    n_jobs: int,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[JobReturn]:
    """Run the sweep's jobs; returns their results in the order of `job_overrides`."""
    from joblib import Parallel, delayed, effective_n_jobs

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    indices = [initial_job_idx + i for i in range(len(job_overrides))]
    found = [
        probe_job(sweep_config(hydra_context, config, overrides, index), task_function)
        for index, overrides in zip(indices, job_overrides, strict=True)
    ]
    keys = [None if f is None else (str(f[1]), shared_pass_key(f[0])) for f in found]
    weights = [1.0 if f is None else probe_weight(f[0].probe) for f in found]
    workers = effective_n_jobs(n_jobs)
    batches = plan_batches(keys, workers, weights)
    log.info(
        "launching %d jobs in %d batches on %d workers; sweep output dir: %s",
        len(job_overrides), len(batches), workers, sweep_dir,
    )  # fmt: skip
    for batch in batches:
        listed = "; ".join(" ".join(filter_overrides(job_overrides[i])) for i in batch)
        log.info("\tbatch #%s: %s", ",".join(str(indices[i]) for i in batch), listed)
    state = Singleton.get_state()

    results = Parallel(n_jobs=min(workers, len(batches)), backend="loky")(
        delayed(run_batch)(
            [(indices[i], job_overrides[i]) for i in batch],
            # a batch of several jobs shares one key (keyless jobs get batches of their own)
            [found[i] for i in batch] if len(batch) > 1 else None,
            hydra_context,
            config,
            task_function,
            state,
        )
        for batch in batches
    )
    by_job = {}
    for batch, returns in zip(batches, results, strict=True):
        by_job.update(zip(batch, returns, strict=True))
    return [by_job[i] for i in range(len(job_overrides))]
