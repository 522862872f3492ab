"""One probe job as Hydra runs it (docs/design.md §7): from its config to its folder —
results.parquet, probes.safetensors, heatmap.png, job_status.json — and its W&B run.

`run_configured_job` is the probe stage's task: `python -m probegen.probe` runs it for each
job. Under `hydra/launcher=local` the jobs of a sweep that differ only in `probe` are
computed in one shared pass (`shared_pass_tasks`), and each job is then run by the same
`run_configured_job`, handed its output by argument, so that it writes its own folder,
status and W&B run just as a lone job does.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from probegen import datasets, outcomes
from probegen.hydra_callbacks import write_status
from probegen.model_spec import ModelSpec
from probegen.results import unconverged_fits
from probegen.sources import CacheSource
from probegen.sweep import JobOutput, JobSpec, run_job, run_jobs
from probegen.tracking import WandbSettings, run_name, sweep_group, tracked_run

log = logging.getLogger(__name__)


def selection(value) -> list[str]:
    """Dataset ids of a config value: an id, a collection or a list (docs/design.md §2)."""
    return datasets.resolve(list(value) if OmegaConf.is_list(value) else str(value))


def layer_selection(value) -> list[int] | None:
    """Layers of a config value: `all` (None), an int or a list."""
    if OmegaConf.is_list(value):
        return [int(v) for v in value]
    return None if str(value) == "all" else [int(value)]


def job_spec(cfg: DictConfig) -> JobSpec:
    """The sweep point a job's config describes."""
    evaluation = cfg.eval if isinstance(cfg.eval, DictConfig) else {"datasets": cfg.eval}
    return JobSpec(
        model=ModelSpec.from_values(**OmegaConf.to_container(cfg.model, resolve=True)).name,
        probe=str(cfg.probe.name),
        train=selection(cfg.train),
        eval=selection(evaluation["datasets"]),
        layers=layer_selection(cfg.layer),
        probe_params=OmegaConf.to_container(cfg.probe.params, resolve=True),
        null_directions=int(evaluation.get("null_directions", JobSpec.null_directions)),
        seed=int(cfg.seed),
        device=str(cfg.device),
    )


def write_outputs(output: JobOutput, out_dir: Path, spec: JobSpec) -> tuple[Path, Path]:
    """results.parquet, probes.safetensors and outcomes.safetensors in the job's output
    folder (docs/design.md §7). probes.safetensors holds one direction per
    "<train dataset>/layer.<i>"; its metadata the model, probe, probe params and, as JSON
    under "intercepts", each direction's intercept (a probe's score is X @ direction +
    intercept). outcomes.safetensors is `probegen.outcomes`'s file."""
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
    if output.outcomes is not None:
        outcomes.write(out_dir / outcomes.FILE, output.outcomes)
    return results_path, probes_path


def run_probe_job(
    spec: JobSpec,
    cache_dir: Path,
    out_dir: Path,
    wandb: WandbSettings,
    config: dict,
    group: str | None,
    name: str,
    output: JobOutput | None = None,
) -> Path:
    """Run one job — or, given `output`, take what a shared pass computed for it — write
    its outputs to `out_dir` and log its W&B run; returns the results.parquet path."""
    with tracked_run(wandb, config=config, group=group, name=name) as tracker:
        if output is not None:
            log.info("%s %s: results from the shared pass", spec.model, spec.probe)
        else:
            output = run_job(spec, CacheSource(cache_dir, spec.model))
        results_path, _ = write_outputs(output, out_dir, spec)
        tracker.log_results(
            output.results, out_dir / "heatmap.png", title=f"{spec.model} {name}",
            outcomes_file=out_dir / outcomes.FILE,
        )  # fmt: skip
    counts = output.results["status"].value_counts().to_dict()
    # ok rows of a fit that stopped before converging are still ok: counted apart
    unconverged = unconverged_fits(output.results)
    print(f"{spec.model} {spec.probe}: {counts}, {unconverged} unconverged fits -> {results_path}")
    return results_path


def run_configured_job(cfg: DictConfig, output: JobOutput | None = None) -> None:
    """The probe stage's task: run the job `cfg` describes in Hydra's current job (its
    output folder, overrides and sweep) and record its end in job_status.json. In a
    multirun a failed job is recorded and the sweep goes on; a lone job raises.
    `output`: what a shared pass computed for this job, if one did."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        run_probe_job(
            job_spec(cfg),
            Path(cfg.cache_dir),
            out_dir,
            WandbSettings(**OmegaConf.to_container(cfg.wandb, resolve=True), dir=str(out_dir)),
            config=OmegaConf.to_container(cfg, resolve=True),
            group=sweep_group(hydra_cfg.sweep.dir if multirun else None),
            name=run_name([o for o in overrides if not o.startswith("hydra")]),
            output=output,
        )
    except Exception as err:
        write_status(out_dir, overrides, err)
        if not multirun:
            raise
        log.exception("job failed; the sweep goes on")
        return
    write_status(out_dir, overrides, None)


def probe_job_of(cfg: DictConfig) -> tuple[JobSpec, Path] | None:
    """The sweep point and cache folder of a probe job's config (with its `hydra` node);
    None for another stage's config, and for one that does not build (that job runs alone
    and reports the error itself)."""
    if not isinstance(cfg.get("probe"), DictConfig):
        return None
    HydraConfig.instance().set_config(cfg)  # for configs that interpolate ${hydra:...}
    try:
        return job_spec(cfg), Path(cfg.cache_dir)
    except Exception:
        return None


def shared_pass_tasks(
    specs: Sequence[JobSpec], cache_dir: Path
) -> list[Callable[[DictConfig], None]] | None:
    """Compute jobs that differ only in the probe in one pass (`run_jobs`); per job, in
    order, a task for Hydra's `run_job` that records the job with its output as
    `run_configured_job`. None when the pass fails (e.g. a dataset missing from the
    cache): the jobs then run, and report their errors, alone."""
    probes = ",".join(spec.probe for spec in specs)
    log.info("shared pass of %d jobs: %s on %s", len(specs), probes, specs[0].model)
    try:
        outputs = run_jobs(specs, CacheSource(cache_dir, specs[0].model))
    except Exception as err:
        log.warning("shared pass of %s failed (%s); each job runs alone", probes, err)
        return None
    return [functools.partial(run_configured_job, output=output) for output in outputs]
