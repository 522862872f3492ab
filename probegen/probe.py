"""Stage 2: `python -m probegen.probe -m probe=lr,lda,ccs model=14b` (docs/design.md §6–7).

Each job trains one probe algorithm on every train dataset × layer, scores it on every eval
dataset × split, writes results.parquet and probes.safetensors to its Hydra output folder,
and logs itself as one W&B run. In a multirun a failed job is recorded and the sweep goes on.

Under `hydra/launcher=local` the jobs of a sweep that differ only in `probe` are computed
in one shared pass over the cache first (`probegen.launcher`); each job then takes its
output from there and writes and logs it as above.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from probegen import datasets, launcher
from probegen.hydra_callbacks import write_status
from probegen.models import ModelSpec
from probegen.results import unconverged_fits
from probegen.sweep import CacheSource, JobSpec, run_job, write_outputs
from probegen.tracking import WandbSettings, run_name, sweep_group, tracked_run

log = logging.getLogger(__name__)


def selection(value) -> list[str]:
    return datasets.resolve(list(value) if OmegaConf.is_list(value) else str(value))


def layer_selection(value) -> list[int] | None:
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
        sign=str(evaluation.get("sign", "eval")),
        seed=int(cfg.seed),
        device=str(cfg.device),
    )


def run_probe_job(
    spec: JobSpec,
    cache_dir: Path,
    out_dir: Path,
    wandb: WandbSettings,
    config: dict,
    group: str | None,
    name: str,
) -> Path:
    """Run one job (or take its output from a shared pass) and log it; returns the
    results.parquet path."""
    with tracked_run(wandb, config=config, group=group, name=name) as tracker:
        output = launcher.take_shared(spec, cache_dir)
        if output is not None:
            log.info("%s %s: results from the shared pass", spec.model, spec.probe)
        else:
            output = run_job(spec, CacheSource(cache_dir, spec.model))
        results_path, _ = write_outputs(output, out_dir, spec)
        tracker.log_results(output.results, out_dir / "heatmap.png", title=f"{spec.model} {name}")
    counts = output.results["status"].value_counts().to_dict()
    # ok rows of a fit that stopped before converging are still ok: counted apart
    unconverged = unconverged_fits(output.results)
    print(f"{spec.model} {spec.probe}: {counts}, {unconverged} unconverged fits -> {results_path}")
    return results_path


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe")
@launcher.shares_passes(job_spec)
def main(cfg: DictConfig) -> None:
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
        )
    except Exception as err:
        write_status(out_dir, overrides, err)
        if not multirun:
            raise
        log.exception("job failed; the sweep goes on")
        return
    write_status(out_dir, overrides, None)


if __name__ == "__main__":
    main()
