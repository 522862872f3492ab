"""Pull the results of probe sweeps into one table (docs/design.md §7, issue 4 "Pull").

Two sources, one output (`Pulled`):

- `read_local`: every `<job>/results.parquet` of one or more sweep folders
  (multirun/<model>/<date>/<time>/), so sweeps and models can be combined.
- `read_wandb`: the runs of a W&B project (optionally one group = one sweep) through the
  public API. Each probe job logged its table with `run.log({"results": wandb.Table})`
  (probegen.tracking); W&B keeps that as the run file named by the run summary's
  `results.path` (`media/table/results_<step>_<hash>.table.json`, JSON
  `{"columns": [...], "data": [[...], ...]}`). We read that file through `run.file(path)`
  rather than the `run-<id>-results` artifact because the file exists for every run, also
  one logged offline and uploaded later with `wandb sync`, and needs no artifact API.
  Tested against W&B's own format, not a recording: an offline run logged through
  probegen.tracking writes the table file and summary entry, and a fake API (wandb's own
  public `Summary` class over that entry, `run.file` serving that file) hands them over;
  a recorded API response would freeze one wandb version's answer and need network to make.

Rows re-computed by a re-run job share a key (`KEY`); the newest (`written_at`) wins and
the dropped rows come back in `Pulled.duplicates` and are logged.
"""

from __future__ import annotations

import glob
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from probegen.results import RESULT_COLUMNS

log = logging.getLogger(__name__)

KEY = ["model", "probe", "train_dataset", "layer", "eval_dataset", "eval_split"]
TABLE_KEY = "results"  # the key probegen.tracking logs the table under
PROBE_COMMAND = (
    "python -m probegen.probe -m probe=dim,lda,lr,lr-g,ccs,pca,pca-g,lat,random model={model}"
)
_DTYPES = {"layer": "int64", "accuracy": "float64", "n": "int64", "auroc": "Float64"}
_DTYPES |= {"is_flipped": "bool", "fit_seconds": "float64", "depth": "Int64"}
_TEXT = ["model", "probe", "train_dataset", "eval_dataset", "eval_split", "status", "reason"]


class ResultsError(ValueError):
    """A results file or W&B run whose table does not follow probegen.results.RESULT_COLUMNS."""


@dataclass
class Pulled:
    """The pulled rows (RESULT_COLUMNS + `source`, `written_at`), the re-run rows that lost
    to a newer one, and the files read (for W&B: the downloaded table files)."""

    results: pd.DataFrame
    duplicates: pd.DataFrame
    files: list[Path] = field(default_factory=list)


# ---- local sweeps -------------------------------------------------------------------------


def find_sweeps(root: Path | str = "multirun", model: str | None = None) -> list[Path]:
    """Sweep folders `root/<model>/<date>/<time>` holding at least one job's results.parquet,
    newest first. Ordered by the date/time folder names Hydra gives them (copying a folder
    changes its mtime, not its name); mtime only breaks ties."""
    root = Path(root)
    pattern = f"{glob.escape(model)}/*/*" if model else "*/*/*"
    sweeps = [d for d in root.glob(pattern) if d.is_dir() and _job_files(d)]
    return sorted(sweeps, key=lambda d: (d.parent.name, d.name, d.stat().st_mtime), reverse=True)


def newest_sweep(root: Path | str = "multirun", model: str | None = None) -> Path:
    """The newest sweep (`find_sweeps`); a clear error saying what to run when there is none."""
    sweeps = find_sweeps(root, model)
    if not sweeps:
        where = Path(root) / model if model else Path(root)
        raise FileNotFoundError(
            f"no probe sweep with results under {where}/ (expected "
            f"{where}/<date>/<time>/<job>/results.parquet). Run the probe stage first: "
            f"`{PROBE_COMMAND.format(model=model or '<model>')}`, or pass sweep_dir=."
        )
    return sweeps[0]


def _job_files(sweep_dir: Path) -> list[Path]:
    """The results files of a sweep folder (or of a single job folder given directly)."""
    if (sweep_dir / "results.parquet").is_file():
        return [sweep_dir / "results.parquet"]
    # Job folders are numbers: order 2 before 10.
    return sorted(sweep_dir.glob("*/results.parquet"), key=lambda p: (len(p.parent.name), p))


def read_local(sweep_dirs: Sequence[Path | str]) -> Pulled:
    """Every job's results.parquet under each sweep folder, validated and de-duplicated.

    `source` is the job folder; `written_at` the file's mtime (UTC), so a re-run job's
    newer rows replace the older ones.
    """
    frames, files = [], []
    for sweep_dir in map(Path, sweep_dirs):
        found = _job_files(sweep_dir)
        if not found:
            raise FileNotFoundError(f"no <job>/results.parquet under {sweep_dir}")
        for path in found:
            try:
                raw = pd.read_parquet(path)
            except Exception as err:  # name the file: pyarrow's message does not
                raise ResultsError(f"{path}: not a readable parquet file ({err})") from err
            frame = conform(raw, where=str(path))
            frame["source"] = str(path.parent)
            frame["written_at"] = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC")
            frames.append(frame)
            files.append(path)
    results, duplicates = drop_duplicates(pd.concat(frames, ignore_index=True))
    return Pulled(results, duplicates, files)


# ---- shared -------------------------------------------------------------------------------


def conform(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The RESULT_COLUMNS of `frame`, in order and with the sweep's dtypes; ResultsError
    naming `where` when a column is missing or holds values of the wrong kind. A table
    without `depth` (written before it was recorded) gets it as null."""
    if "depth" not in frame.columns:
        # Tables written before the depth was recorded: unknown, and stage 3 then needs
        # depth= (docs/design.md §8). Every other column stays required.
        frame = frame.assign(depth=pd.NA)
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(
            f"{where}: missing columns {missing}; a results table needs {RESULT_COLUMNS} "
            "(probegen.results.RESULT_COLUMNS)"
        )
    frame = frame[RESULT_COLUMNS].copy()
    try:
        # JSON from W&B brings None for missing numbers: go through float so NA survives.
        frame["auroc"] = pd.to_numeric(frame["auroc"]).astype("Float64")
        frame["depth"] = pd.to_numeric(frame["depth"]).astype("Int64")
        frame["reason"] = frame["reason"].fillna("")
        frame = frame.astype(_DTYPES | dict.fromkeys(_TEXT, "str"))
    except (TypeError, ValueError) as err:
        raise ResultsError(f"{where}: values do not match the results schema: {err}") from err
    return frame


def drop_duplicates(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the newest row of each KEY; return (kept, dropped) and log what was dropped."""
    # Stable sort, newest first; equal times keep read order, so the later job wins ties.
    order = rows.iloc[::-1].sort_values("written_at", ascending=False, kind="stable")
    dropped_mask = order.duplicated(KEY, keep="first")
    kept = order[~dropped_mask].sort_index()
    dropped = order[dropped_mask].sort_index()
    if len(dropped):
        winners = order[~dropped_mask].set_index(KEY)["source"]
        pairs = dropped.join(winners.rename("kept_from"), on=KEY)
        for (old, new), part in pairs.groupby(["source", "kept_from"], sort=True):
            log.warning("%d rows of %s replaced by the newer %s", len(part), old, new)
        log.warning("%d duplicate rows from re-run jobs dropped (newest wins)", len(dropped))
    return kept.reset_index(drop=True), dropped.reset_index(drop=True)


# ---- W&B ----------------------------------------------------------------------------------


def read_wandb(
    project: str,
    entity: str | None = None,
    group: str | None = None,
    api: Any = None,
    download_dir: Path | str | None = None,
) -> Pulled:
    """The results tables of the runs of `entity/project` (only `group` when given).

    `api` is a `wandb.Api()` (made here when None; tests pass a fake). Calls used:
    `api.runs(path, filters=...)`, and per run `.id`, `.path`, `.summary`, `.created_at`,
    `.heartbeat_at`, `.file(name).download(root=..., replace=True)`. Runs without a results
    table (a failed job) are skipped with a warning. `written_at` is the run's last
    heartbeat (else its start), the time its results were logged.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    runs = list(api.runs(path, filters={"group": group} if group else None))
    where = f"W&B project {path}" + (f", group {group!r}" if group else "")
    if not runs:
        raise FileNotFoundError(f"no runs in {where}")
    root = Path(download_dir or tempfile.mkdtemp(prefix="probegen-wandb-"))
    frames, files = [], []
    for run in runs:
        run_path = "/".join(run.path)
        # The public API hands nested summary values over as SummarySubDict (dict-like,
        # not a dict): read them with .get only.
        entry = run.summary.get(TABLE_KEY)
        name = entry.get("path") if hasattr(entry, "get") else None
        if not name:
            log.warning("W&B run %s has no %r table; skipped", run_path, TABLE_KEY)
            continue
        target = root / run.id
        with run.file(name).download(root=str(target), replace=True) as handle:
            table = json.load(handle)
        files.append(target / name)
        frame = table_frame(table, where=f"W&B run {run_path} ({name})")
        nrows = entry.get("nrows")
        if nrows is not None and len(frame) < nrows:
            # wandb.Table.MAX_ROWS truncates tables logged to a run; partial rows would bias
            # thresholds without a trace, so refuse.
            raise ResultsError(
                f"W&B run {run_path}: its results table holds {len(frame)} of {nrows} rows "
                "(wandb truncated it); read the local results.parquet instead"
            )
        frame["source"] = f"wandb:{run_path}"
        frame["written_at"] = _utc(getattr(run, "heartbeat_at", None) or run.created_at)
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no run in {where} logged a {TABLE_KEY!r} table")
    results, duplicates = drop_duplicates(pd.concat(frames, ignore_index=True))
    return Pulled(results, duplicates, files)


def _utc(stamp: str) -> pd.Timestamp:
    """W&B's ISO timestamps, with or without a zone (the API gives them in UTC)."""
    ts = pd.Timestamp(stamp)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def table_frame(table: dict, where: str) -> pd.DataFrame:
    """A DataFrame from wandb's table JSON ({"columns": [...], "data": [[...], ...]})."""
    if not isinstance(table, dict) or "columns" not in table or "data" not in table:
        raise ResultsError(f"{where}: not a wandb table file (needs 'columns' and 'data')")
    return conform(pd.DataFrame(table["data"], columns=table["columns"]), where)
