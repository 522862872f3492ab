"""Hydra callbacks: a sweep goes on past a failed job and reports every failure at the end."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

STATUS_FILE = "job_status.json"


class SweepReport(Callback):
    """After a multirun, list the jobs that failed (read from each job's status file) and
    exit non-zero if any did; the other jobs' results are already on disk.

    Each job is marked "running" when it starts, so a job killed before it could record
    its end (a Slurm timeout, an out-of-memory kill) is reported too.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN":
            output_dir = Path(hydra_cfg.runtime.output_dir)
            write_status(output_dir, list(hydra_cfg.overrides.task), None, state="running")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        statuses = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{STATUS_FILE}"))]
        failed = [s for s in statuses if s["status"] != "ok"]
        print(f"\nsweep {sweep_dir}: {len(statuses) - len(failed)} of {len(statuses)} jobs ok")
        for s in failed:
            error = s["error"] or "ended without recording a result (killed?)"
            print(f"  FAILED {' '.join(s['overrides']) or '(no overrides)'}: {error}")
            print(f"         log: {s['output_dir']}")
        if failed:
            sys.exit(1)


def write_status(
    output_dir: Path, overrides: list[str], error: BaseException | None, state: str | None = None
) -> None:
    """Record a job's state in its output folder: ok, failed (with the error) or running."""
    status = {
        "status": state or ("ok" if error is None else "failed"),
        "error": "" if error is None else f"{type(error).__name__}: {error}",
        "overrides": overrides,
        "output_dir": str(output_dir),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / STATUS_FILE).write_text(json.dumps(status, indent=2))
