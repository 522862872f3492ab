"""`python -m probegen.demo`: the whole study in minutes, offline, on a laptop CPU.

1. extract: the embedded SmolLM2-135M over the datasets that need no download;
2. probe: a Hydra multirun of every probe algorithm (`python -m probegen.probe -m …`, the
   same command a user types), each job an offline W&B run;
3. aggregate: recovered accuracy, the figures and the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from probegen import datasets
from probegen.aggregate import read_local
from probegen.aggregate.run import aggregate
from probegen.datasets import Limits, SourceReader
from probegen.extract import ExtractOptions, extract
from probegen.model_spec import ModelSpec
from probegen.tracking import WandbSettings, log_aggregation, sweep_group


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs and where it writes."""

    model: ModelSpec
    model_overrides: list[str]  # how stage 2 selects the same model
    datasets: list[str]
    selection: str  # the same datasets as stage 2 reads them: a collection name or [a,b]
    probes: list[str]
    limits: Limits
    cache_dir: Path
    sweep_dir: Path
    out_dir: Path
    wandb_mode: str = "offline"
    batch_tokens: int | None = None
    progress: bool = True
    share_prefix: bool = True


def _say(step: str, started: float) -> None:
    print(f"\n=== {step}  (+{time.perf_counter() - started:.0f}s)", flush=True)


def probe_command(plan: DemoPlan) -> list[str]:
    """Stage 2 exactly as a user would run it, on the demo's cache and datasets."""
    selection = plan.selection
    return [
        sys.executable, "-m", "probegen.probe", "-m", f"probe={','.join(plan.probes)}",
        *plan.model_overrides, f"cache_dir={plan.cache_dir}", f"train={selection}",
        f"eval.datasets={selection}", f"wandb.mode={plan.wandb_mode}",
        f"hydra.sweep.dir={plan.sweep_dir}",
        # one line per job (its result), not one per layer
        "hydra.job_logging.root.level=WARNING",
    ]  # fmt: skip


def run_demo(plan: DemoPlan) -> Path:
    """Run the three stages; returns the report.html path."""
    started = time.perf_counter()
    _say(f"1/3 extract: {plan.model.name} on {len(plan.datasets)} datasets", started)
    status = extract(
        plan.model,
        plan.datasets,
        plan.cache_dir,
        plan.limits,
        SourceReader(),
        ExtractOptions(
            batch_tokens=plan.batch_tokens, progress=plan.progress, share_prefix=plan.share_prefix
        ),
    )
    for dataset, state in status.items():
        print(f"  {dataset}: {state}")
    _say(f"2/3 probe: {len(plan.probes)} algorithms, one job each", started)
    command = probe_command(plan)
    print("  " + " ".join(command[1:]), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    done = subprocess.run(command, env=env)
    if done.returncode != 0:
        # a failed job leaves the others' results: aggregate what there is, but say so
        print(f"  some probe jobs failed (exit {done.returncode}); see {plan.sweep_dir}")
    _say("3/3 aggregate: recovered accuracy, figures, report", started)
    page = aggregate(read_local([plan.sweep_dir]), plan.out_dir, cache_dir=plan.cache_dir)
    if plan.wandb_mode != "disabled":  # the study's figures beside the sweep's runs
        settings = WandbSettings(mode=plan.wandb_mode, dir=str(plan.out_dir))
        log_aggregation(settings, [sweep_group(str(plan.sweep_dir))], plan.out_dir,
                        {"demo": True, "sweep_dir": str(plan.sweep_dir)})  # fmt: skip
    _say(f"done in {time.perf_counter() - started:.0f}s", started)
    print(f"report: {page}\nsummary: {plan.out_dir / 'summary.md'}")
    print(f"re-aggregate: python scripts/aggregate.py sweep_dir={plan.sweep_dir}")
    return page


def _model_overrides(cfg: DictConfig, chosen: Sequence[str]) -> list[str]:
    """The demo's own model overrides, passed on to the probe job."""
    return [o for o in chosen if o.startswith("model")] or [f"model={cfg.model.name}"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task)
    selection = list(cfg.dataset) if OmegaConf.is_list(cfg.dataset) else str(cfg.dataset)
    plan = DemoPlan(
        model=ModelSpec.from_values(**OmegaConf.to_container(cfg.model, resolve=True)),
        model_overrides=_model_overrides(cfg, overrides),
        datasets=datasets.resolve(selection),
        selection=selection if isinstance(selection, str) else "[" + ",".join(selection) + "]",
        probes=[str(p) for p in cfg.probes],
        limits=Limits(**cfg.limits),
        cache_dir=Path(cfg.cache_dir),
        sweep_dir=Path(cfg.sweep_dir),
        out_dir=Path(cfg.out_dir),
        wandb_mode=str(cfg.wandb_mode),
        batch_tokens=cfg.batch_tokens,
        progress=bool(cfg.progress),
        share_prefix=bool(cfg.share_prefix),
    )
    run_demo(plan)


if __name__ == "__main__":
    main()
