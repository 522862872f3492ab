"""Stage 2: `python -m probegen.probe -m probe=lr,lda,ccs model=14b` (docs/design.md §6–7).

Each job trains one probe algorithm on every train dataset × layer, scores it on every eval
dataset × split, writes results.parquet and probes.safetensors to its Hydra output folder,
and logs itself as one W&B run (`probegen.probe_job`). In a multirun a failed job is
recorded and the sweep goes on.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from probegen.probe_job import run_configured_job


@hydra.main(version_base="1.3", config_path="../conf", config_name="probe")
def main(cfg: DictConfig) -> None:
    run_configured_job(cfg)


if __name__ == "__main__":
    main()
