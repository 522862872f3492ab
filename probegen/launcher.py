"""The local launcher of sweeps (`hydra/launcher=local`): jobs run in parallel worker
processes, and probe jobs that differ only in `probe` share one pass over the activation
cache.

Why: a probe job's time on a CPU is about half fitting and half scoring, and most of the
scoring is reading each eval set at each layer, converting it to float32 and multiplying it
by the job's directions — the same for every probe. Computed together
(`probegen.sweep.run_jobs`), the probes of a sweep read and convert each eval set once and
multiply it by all their directions in one product (the benchmark: docs/benchmarks.md).

The plan (`plan_worker_batches`): jobs are grouped by everything but the probe; a group is
split into as many batches as it takes to give every worker one (balanced by each probe's
cost on the benchmark, `BENCHMARK_SECONDS`), and each batch runs in one worker
(`run_batch`): its shared pass first (`probegen.probe_job.shared_pass_tasks`), then each
job through Hydra's usual `run_job`, with a task that is handed that job's output. So every
job still has its own output folder, config, log, status file and W&B run; a failed shared
pass only means its jobs run one by one, through the app's own task. Other stages' sweeps
(e.g. extraction) get one batch per job, as joblib's launcher gives them.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from probegen.probe_job import probe_job_of, shared_pass_tasks
from probegen.sweep import JobSpec, shared_pass_key

log = logging.getLogger(__name__)

# Each probe job's cost on scripts/bench_probe.py's grid (seconds of its fits plus the
# scoring every probe costs); only to balance batches. Other probes count as the median.
BENCHMARK_SECONDS = {"dim": 14, "lda": 100, "lda-lw": 29, "lr": 42, "lr-g": 43, "ccs": 92,
                     "ccs-sub": 51, "pca": 29, "pca-g": 48, "lat": 22, "random": 10}  # fmt: skip


def probe_weight(probe: str) -> float:
    """A probe job's relative cost, for balancing batches."""
    return BENCHMARK_SECONDS.get(probe, statistics.median(BENCHMARK_SECONDS.values()))


def plan_worker_batches(
    keys: Sequence[Hashable | None], workers: int, weights: Sequence[float] | None = None
) -> list[list[int]]:
    """Job indices in batches, one batch per worker task: jobs with equal keys together
    (None: a job of its own), each group split into just enough batches to give every
    worker one. Within a group, the heaviest job goes first to the lightest batch
    (`weights`, default equal: round-robin in sweep order); each batch keeps its jobs in
    sweep order."""
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


def sweep_config(
    hydra_context: HydraContext, config: DictConfig, overrides: Sequence[str], index: int
) -> DictConfig:
    """The config of job `index`, as Hydra's launchers build it."""
    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{index}"
        cfg.hydra.job.num = index
    return cfg


SharedPass = tuple[list[JobSpec], Path]  # a batch's probe jobs and their cache folder


def run_batch(
    jobs: Sequence[tuple[int, Sequence[str]]],
    shared: SharedPass | None,
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> list[JobReturn]:
    """In a worker: the batch's shared pass (`shared`, when its jobs share one), then each
    job (`jobs`: index and overrides) through Hydra's `run_job` — with the task the pass
    gave it, or the app's own `task_function` when there was no pass or it failed."""
    setup_globals()
    Singleton.set_state(singleton_state)
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    configs = [sweep_config(hydra_context, config, overrides, index) for index, overrides in jobs]
    tasks: Sequence[TaskFunction] = [task_function] * len(configs)
    if shared is not None:
        tasks = shared_pass_tasks(*shared) or tasks
    returns = []
    for cfg, task in zip(configs, tasks, strict=True):
        HydraConfig.instance().set_config(cfg)
        returns.append(
            run_job(
                hydra_context=hydra_context,
                config=cfg,
                task_function=task,
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
        probe_job_of(sweep_config(hydra_context, config, overrides, index))
        for index, overrides in zip(indices, job_overrides, strict=True)
    ]
    keys = [None if f is None else (str(f[1]), shared_pass_key(f[0])) for f in found]
    weights = [1.0 if f is None else probe_weight(f[0].probe) for f in found]
    workers = effective_n_jobs(n_jobs)
    batches = plan_worker_batches(keys, workers, weights)
    log.info(
        "launching %d jobs in %d batches on %d workers; sweep output dir: %s",
        len(job_overrides), len(batches), workers, sweep_dir,
    )  # fmt: skip
    for batch in batches:
        listed = "; ".join(" ".join(filter_overrides(job_overrides[i])) for i in batch)
        log.info("\tbatch #%s: %s", ",".join(str(indices[i]) for i in batch), listed)
    state = Singleton.get_state()

    def shared(batch: list[int]) -> SharedPass | None:
        # a batch of several jobs shares one key (keyless jobs get batches of their own)
        if len(batch) < 2:
            return None
        return [found[i][0] for i in batch], found[batch[0]][1]  # type: ignore[index]

    results = Parallel(n_jobs=min(workers, len(batches)), backend="loky")(
        delayed(run_batch)(
            [(indices[i], job_overrides[i]) for i in batch],
            shared(batch),
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
