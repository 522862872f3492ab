"""Stage 3: `python scripts/aggregate.py [model=14b] [sweep_dir=…] [source=wandb]`
(docs/design.md §8).

Pulls a probe sweep's results and outcomes, computes the robust view (chance-corrected
recovery against the random directions' null, with bootstrap intervals) and the original's
recovered accuracy, draws the robust matrix, the original analysis' fourteen figures and
probegen's own views, and writes summary.json, summary.md and report.html (default:
reports/<model>/).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from probegen.aggregate import newest_sweep, read_local, read_wandb
from probegen.aggregate.run import aggregate, default_out_dir
from probegen.model_spec import model_name
from probegen.tracking import WandbSettings, log_aggregation, sweep_group

log = logging.getLogger("aggregate")


def _list(value) -> list[str] | None:
    if value is None:
        return None
    return [str(v) for v in value] if OmegaConf.is_list(value) else [str(value)]


def sweep_dirs(
    sweep_dir: list[str] | None, models: list[str] | None, model: str, root: Path
) -> list[Path]:
    """The sweep folders to read: as given, else the newest of each model."""
    if sweep_dir:
        return [Path(d) for d in sweep_dir]
    return [newest_sweep(root, m) for m in (models or [model])]


@hydra.main(version_base="1.3", config_path="../conf", config_name="aggregate")
def main(cfg: DictConfig) -> None:
    # the name conf/probe.yaml's sweep folder and the jobs' results use (probegen.model_spec)
    model = model_name(cfg.model)
    if cfg.source == "wandb":
        pulled = read_wandb(cfg.wandb.project, cfg.wandb.entity, cfg.wandb_group)
        groups = [str(cfg.wandb_group)] if cfg.wandb_group else []
    elif cfg.source == "local":
        dirs = sweep_dirs(_list(cfg.sweep_dir), _list(cfg.models), model, Path(cfg.multirun_dir))
        log.info("reading %s", ", ".join(map(str, dirs)))
        pulled = read_local(dirs)
        groups = sorted({sweep_group(str(d)) for d in dirs})
    else:
        raise ValueError(f"source={cfg.source!r}: choose source=local or source=wandb")
    models = sorted(pulled.results["model"].unique())
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(models)
    page = aggregate(pulled, out_dir, cfg.depth, _list(cfg.figures), cfg.later_layer,
                     cfg.cache_dir, resamples=int(cfg.robust.resamples),
                     seed=int(cfg.robust.seed))  # fmt: skip
    print(f"report: {page}\nsummary: {out_dir / 'summary.md'}")
    settings = WandbSettings(**OmegaConf.to_container(cfg.wandb, resolve=True), dir=str(out_dir))
    if settings.mode != "disabled":
        log_aggregation(settings, groups, out_dir, OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
