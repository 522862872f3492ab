"""Hydra's entry to probegen's local launcher (`probegen.launcher`): Hydra finds launchers
only in the `hydra_plugins` namespace. Registered as `hydra/launcher=shared_pass`; the
project's `hydra/launcher=local` config uses it. Imports stay light: Hydra imports every
plugin at the start of every app. No `from __future__ import annotations`: Hydra runs this
module outside sys.modules, where dataclasses cannot resolve string annotations."""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class SharedPassLauncherConf:
    _target_: str = "hydra_plugins.probegen_launcher.shared_pass_launcher.SharedPassLauncher"
    n_jobs: int = -1  # worker processes; -1: one per core


ConfigStore.instance().store(
    group="hydra/launcher", name="shared_pass", node=SharedPassLauncherConf, provider="probegen"
)


class SharedPassLauncher(Launcher):
    """Parallel local jobs; probe jobs that differ only in `probe` share one pass."""

    def __init__(self, n_jobs: int = -1) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from probegen import launcher

        assert self.config and self.hydra_context and self.task_function, "setup() first"
        return launcher.launch(
            self.config,
            self.hydra_context,
            self.task_function,
            self.n_jobs,
            job_overrides,
            initial_job_idx,
        )
