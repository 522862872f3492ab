"""Weights & Biases tracking: one W&B run per probe job (docs/design.md §2, §7), and one per
aggregation, in the sweep's group (job type `aggregate`, docs/design.md §8).

`tracked_run` opens a run, yields a `Tracker` that logs the results table (summary metrics,
the whole table, a train x eval heatmap) or the aggregation's report (headline numbers as
the summary, every figure, the report page) and always finishes the run, also when the job
fails. `wandb.mode=offline` (default) needs no account and no network; `disabled` makes
every W&B call a no-op; `online` uses the user's `wandb login`.
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

from probegen.results import unconverged_fits

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
        self, results: pd.DataFrame, heatmap: Path | None = None, title: str | None = None
    ) -> None:
        """Summary metrics, the whole table, and the heatmap PNG (when given) into the run.

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
    """summary.json's per-model headline numbers and random baseline as flat W&B summary keys
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
        for key in ("later_layer", "headline", "random_baseline", "problem"):
            walk(f"{model}/{key}", numbers.get(key))
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


def _plain(value: Any) -> Any:
    """pandas/numpy scalars -> python values, missing (NA, NaN, None) -> None, for wandb."""
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def to_wandb_table(results: pd.DataFrame) -> Any:
    """The results as a wandb.Table, same columns in the same order, missing values as None."""
    import wandb

    rows = [[_plain(v) for v in row] for row in results.itertuples(index=False, name=None)]
    return wandb.Table(columns=[str(c) for c in results.columns], data=rows)


def _validation_ok(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[(results["status"] == "ok") & (results["eval_split"] == "validation")]
    return ok.dropna(subset=["accuracy"]).astype({"accuracy": float})


def summarize(results: pd.DataFrame) -> dict[str, Any]:
    """Run-level numbers: row counts by status, fits that stopped before converging
    (`unconverged_fits`: their rows are ok, their reason says so), and mean/best validation
    accuracy (ok rows)."""
    counts = results["status"].value_counts()
    summary: dict[str, Any] = {
        f"rows/{s}": int(counts.get(s, 0)) for s in ("ok", "skipped", "failed")
    }
    if summary["rows/ok"]:  # only a fit with ok rows can be an unconverged one
        summary["unconverged_fits"] = unconverged_fits(results)
    val = _validation_ok(results)
    in_dist = val[val["train_dataset"] == val["eval_dataset"]]
    cross = val[val["train_dataset"] != val["eval_dataset"]]
    for key, part in (("all", val), ("in_dist", in_dist), ("cross", cross)):
        if len(part):
            summary[f"val_accuracy/{key}"] = float(part["accuracy"].mean())
    if len(in_dist):
        best = in_dist.loc[in_dist["accuracy"].idxmax()]
        summary["best_in_dist/accuracy"] = float(best["accuracy"])
        for col in ("train_dataset", "layer", "probe"):
            if col in best:
                summary[f"best_in_dist/{col}"] = _plain(best[col])
    return summary


def _choose_layers(val: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Keep, per train dataset, the rows of one layer; return them and the chosen layers.

    The layer is the one with the best in-distribution validation accuracy (train == eval);
    a train dataset that is never evaluated on itself falls back to its best mean validation
    accuracy over all eval datasets. Selecting on validation is fine for a per-job overview
    (the report's thresholds select on train-hparams, docs/design.md §8). Several probes in one
    table are averaged.
    """
    kept, layers = [], {}
    for train, rows in val.groupby("train_dataset", sort=False):
        in_dist = rows[rows["eval_dataset"] == train]
        by_layer = (in_dist if len(in_dist) else rows).groupby("layer")["accuracy"].mean()
        layers[train] = by_layer.idxmax()
        kept.append(rows[rows["layer"] == layers[train]])
    return pd.concat(kept), layers


def _dataset_order(val: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Rows: train datasets as they come. Columns: the same, so the diagonal is in-distribution
    (a train set never evaluated on gets a grey column), then eval-only sets like truthful_qa."""
    trains = list(dict.fromkeys(val["train_dataset"]))
    return trains, trains + [e for e in dict.fromkeys(val["eval_dataset"]) if e not in trains]


def draw_heatmap(results: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Train x eval heatmap of validation accuracy (%, ok rows) at each train set's best layer.

    Returns the PNG path, or None (logged) when there is no ok validation row to draw.
    """
    val = _validation_ok(results)
    if val.empty:
        log.warning("no heatmap for %s: no ok validation rows", title)
        return None
    # A bare Figure draws with Agg: no display, and no pyplot state or backend switch that
    # could leak into the caller.
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    chosen, layers = _choose_layers(val)
    trains, evals = _dataset_order(val)
    grid = chosen.pivot_table(
        index="train_dataset", columns="eval_dataset", values="accuracy", aggfunc="mean"
    ).reindex(index=trains, columns=evals)
    # Pairs with no ok row: light grey, no number.
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")  # colour-blind safe, sequential

    fig = Figure(figsize=(10, 9))
    ax = fig.subplots()
    # Fixed 0..1 scale so heatmaps of different jobs can be compared by eye.
    image = ax.imshow(grid.to_numpy(dtype=float), cmap=cmap, vmin=0.0, vmax=1.0)
    for (i, j), acc in pd.DataFrame(grid.to_numpy()).stack().dropna().items():
        # Dark text on the light (high) end of viridis, white on the dark end.
        colour = "black" if acc >= 0.6 else "white"
        ax.text(j, i, f"{100 * acc:.0f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(evals)), evals, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(trains)), [f"{t} (L{layers[t]})" for t in trains])
    ax.tick_params(labelsize=8)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on (layer shown)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="validation accuracy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


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
