"""Weights & Biases tracking: one W&B run per probe job (docs/design.md §2, §7), and one per
aggregation, in the sweep's group (job type `aggregate`, docs/design.md §8).

`tracked_run` opens a run, yields a `Tracker` that logs the results table (the whole table,
plus the summary metrics and train x eval heatmap of `probegen.job_summary`) or the
aggregation's report (headline numbers as the summary, every figure, the report page) and
always finishes the run, also when the job fails. `wandb.mode=offline` (default) needs no
account and no network; `disabled` makes every W&B call a no-op; `online` uses the user's
`wandb login`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from probegen.job_summary import draw_heatmap, plain, summarize

log = logging.getLogger(__name__)

MODES = ("offline", "online", "disabled")


@dataclass
class WandbSettings:
    """The `wandb.*` config keys (docs/design.md §2)."""

    mode: str = "offline"  # offline | online | disabled
    project: str = "probegen"
    entity: str | None = None
    dir: str | None = None  # parent of the wandb/ run folder; None: the Hydra job's output folder

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"wandb.mode must be one of {MODES}, got {self.mode!r}")


@dataclass
class Tracker:
    """Logs to one open run; `run` is the wandb Run (a no-op run when mode is disabled)."""

    run: Any
    mode: str

    @property
    def run_dir(self) -> Path | None:
        """Local run folder (holds the run-*.wandb file); None when disabled."""
        return None if self.mode == "disabled" else Path(self.run.settings.sync_dir)

    @property
    def url(self) -> str | None:
        # Offline runs have no URL, and asking for one makes wandb print a warning.
        return self.run.url if self.mode == "online" else None

    def log_results(
        self,
        results: pd.DataFrame,
        heatmap: Path | None = None,
        title: str | None = None,
        outcomes_file: Path | None = None,
    ) -> None:
        """Summary metrics, the whole table, the heatmap PNG (when given) and the job's
        outcomes file (when given) into the run.

        With `title`, the heatmap is first drawn to the `heatmap` path (`draw_heatmap`);
        without, `heatmap` is an existing PNG.
        """
        import wandb

        if heatmap is not None and title is not None:
            heatmap = draw_heatmap(results, heatmap, title)
        self.run.summary.update(summarize(results))
        logged: dict[str, Any] = {"results": to_wandb_table(results)}
        if heatmap is not None:
            logged["heatmap"] = wandb.Image(str(heatmap))
        if outcomes_file is not None and outcomes_file.is_file():
            # stage 3 pulls it from the run for its intervals (docs/design.md §7)
            self.run.save(str(outcomes_file), base_path=str(outcomes_file.parent), policy="now")
        # wandb cuts a run's table at Table.MAX_ROWS (10,000) rows; a 14B job has more, and
        # the aggregation stage reads this table, so it must be whole.
        default_max = wandb.Table.MAX_ROWS
        wandb.Table.MAX_ROWS = max(default_max, len(results))
        try:
            self.run.log(logged)
        finally:
            wandb.Table.MAX_ROWS = default_max

    def log_report(self, out_dir: Path, summary: dict) -> None:
        """An aggregation into the run: summary.json's headline numbers as the run summary
        (`flat_summary`), every PNG under `out_dir` as an image, report.html as HTML."""
        import wandb

        self.run.summary.update(flat_summary(summary))
        logged: dict[str, Any] = {}
        for png in sorted(Path(out_dir).rglob("*.png")):
            if "wandb" in png.relative_to(out_dir).parts:
                continue
            key = png.relative_to(out_dir).with_suffix("").as_posix()
            logged[f"figures/{key}"] = wandb.Image(str(png))
        page = Path(out_dir) / "report.html"
        if page.exists():
            logged["report"] = wandb.Html(page.read_text())
        self.run.log(logged)


def log_aggregation(
    settings: WandbSettings, groups: list[str], out_dir: Path, config: dict
) -> None:
    """One W&B run (job type `aggregate`) beside the sweep's probe runs: in the sweep's group
    when one sweep was read, else in group `aggregate`; headline numbers as its summary."""
    group = groups[0] if len(groups) == 1 else "aggregate"
    with tracked_run(settings, config=config, group=group, name="aggregate",
                     job_type="aggregate") as tracker:  # fmt: skip
        tracker.log_report(out_dir, json.loads((Path(out_dir) / "summary.json").read_text()))
    print(f"W&B: aggregate run in group {group} ({settings.mode})")


def flat_summary(summary: dict) -> dict[str, Any]:
    """summary.json's per-model headline numbers, null baseline and robust headline (its
    train-fixed and eval-sign policies) as flat W&B summary keys
    (`<model>/headline/best_probe/recovered`, ...): numbers, strings and booleans only;
    labels and the reference study's numbers are left out (they are the same in every run)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in ("labels", "reference"):
                    walk(f"{prefix}/{key}", inner)
        elif isinstance(value, bool | int | float | str):
            out[prefix] = value

    for model, numbers in summary.get("models", {}).items():
        for key in ("later_layer", "headline", "null_baseline", "problem"):
            walk(f"{model}/{key}", numbers.get(key))
        robust = numbers.get("robust") or {}
        walk(f"{model}/robust/available", robust.get("available"))
        for policy, headline in (robust.get("headlines") or {}).items():
            walk(f"{model}/robust/{policy}", headline)
    return out


def _default_dir() -> str | None:
    """The running Hydra job's output folder, so each job keeps its W&B run beside its results."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    except ImportError:
        return None


@contextmanager
def tracked_run(
    settings: WandbSettings,
    *,
    config: dict,
    group: str | None,
    name: str | None,
    job_type: str = "probe",
    tags: Sequence[str] = (),
) -> Iterator[Tracker]:
    """Start a W&B run, yield a Tracker, and finish the run however the body ends.

    A failing body marks the run failed (exit code 1) and its exception propagates.
    """
    import wandb

    run_dir = settings.dir or _default_dir()
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            mode=settings.mode,
            project=settings.project,
            entity=settings.entity,
            dir=run_dir,
            group=group,
            name=name,
            job_type=job_type,
            tags=list(tags),
            config=config,
            # Hydra's basic launcher runs every multirun job in one process: finish any run a
            # previous job left open, so each job gets its own run and `wandb.run` is this one.
            reinit="finish_previous",
            # silent: we log the run folder/URL ourselves; console off: Hydra already keeps the
            # job's log, and wrapping stdout twice garbles it; no code saving (the git commit,
            # which wandb records, says which code ran).
            settings=wandb.Settings(silent=True, console="off", save_code=False, disable_code=True),
        )
    except Exception as err:
        hint = " Run `wandb login`, or use wandb.mode=offline." if settings.mode == "online" else ""
        raise RuntimeError(f"wandb.init failed (mode={settings.mode}): {err}.{hint}") from err
    tracker = Tracker(run, settings.mode)
    if settings.mode == "offline":
        log.info("W&B offline run: %s (upload it later with `wandb sync`)", tracker.run_dir)
    elif settings.mode == "online":
        log.info("W&B run: %s", tracker.url)
    try:
        yield tracker
    except BaseException:
        try:
            run.finish(exit_code=1)
        except Exception:  # never hide the job's own error behind a tracking error
            log.exception("could not finish the failed W&B run")
        raise
    run.finish()


def to_wandb_table(results: pd.DataFrame) -> Any:
    """The results as a wandb.Table, same columns in the same order, missing values as None."""
    import wandb

    rows = [[plain(v) for v in row] for row in results.itertuples(index=False, name=None)]
    return wandb.Table(columns=[str(c) for c in results.columns], data=rows)


def sweep_group(hydra_sweep_dir: str | None) -> str:
    """W&B group for all jobs of one sweep, from its folder.

    ".../multirun/2026-11-28/10-00-00" -> "2026-11-28_10-00-00" (the parts after `multirun`,
    else the last two parts); no sweep folder -> "single".
    """
    if not hydra_sweep_dir:
        return "single"
    parts = [p for p in Path(hydra_sweep_dir).parts if p != "/"]
    if "multirun" in parts:  # everything after the last "multirun"
        parts = parts[len(parts) - parts[::-1].index("multirun") :]
    else:
        parts = parts[-2:]
    group = "_".join(parts) or "single"
    return re.sub(r"[^\w.=,-]+", "-", group)[-128:]  # W&B limits group names to 128 chars


def run_name(overrides: Sequence[str]) -> str:
    """W&B run name from a job's Hydra overrides: ["probe=lr", "layer=9"] -> "probe=lr,layer=9"."""
    return ",".join(overrides) or "default"
