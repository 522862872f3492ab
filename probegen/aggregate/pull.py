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

Each job's `outcomes.safetensors` (per-unit outcomes, `probegen.outcomes`; the robust view
resamples them) comes along in `Pulled.outcomes`, oldest job first, so that where re-run
jobs hold the same cell the newest wins, as for the results rows. A job without one (written
before jobs kept them) is noted in `Pulled.outcomes_missing`, not an error: the original
analysis needs only the results.
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

from probegen import outcomes as outcomes_file
from probegen.outcomes import JobOutcomes, OutcomesError
from probegen.results import RESULT_COLUMNS, RESULT_DTYPES
from probegen.results import conform as conform_schema

log = logging.getLogger(__name__)

KEY = ["model", "probe", "train_dataset", "layer", "eval_dataset", "eval_split"]
TABLE_KEY = "results"  # the key probegen.tracking logs the table under
PROBE_COMMAND = (
    "python -m probegen.probe -m probe=dim,lda,lr,lr-g,ccs,pca,pca-g,lat,random model={model}"
)


class ResultsError(ValueError):
    """A results file or W&B run whose table does not follow probegen.results.RESULT_COLUMNS."""


@dataclass
class Pulled:
    """The pulled rows (RESULT_COLUMNS + `source`, `written_at`), the re-run rows that lost
    to a newer one, the files read (for W&B: the downloaded table files), the jobs' outcomes
    (oldest job first) and the jobs without an outcomes file (source -> why)."""

    results: pd.DataFrame
    duplicates: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    outcomes: list[JobOutcomes] = field(default_factory=list)
    outcomes_missing: dict[str, str] = field(default_factory=dict)


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
    newer rows replace the older ones. Each job folder's outcomes.safetensors is read too
    (`Pulled.outcomes`, oldest results first; jobs without one in `outcomes_missing`).
    """
    frames, files, jobs = [], [], []
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
            jobs.append((path.stat().st_mtime, len(jobs), path.parent))
    results, duplicates = drop_duplicates(pd.concat(frames, ignore_index=True))
    pulled = Pulled(results, duplicates, files)
    # Oldest first (ties: read order), so the newest job's cells win, as its rows do.
    for _, _, job in sorted(jobs):
        _add_outcomes(pulled, job / outcomes_file.FILE, str(job))
    _log_missing(pulled)
    return pulled


def _add_outcomes(pulled: Pulled, path: Path, source: str) -> None:
    """Read one job's outcomes file into `pulled`, or note why there is none: a job
    written before jobs kept them, or an unreadable file, costs the robust view (which names
    the probes it lacks), not the original analysis."""
    if not path.is_file():
        pulled.outcomes_missing[source] = f"no {outcomes_file.FILE}"
        return
    try:
        pulled.outcomes.append(outcomes_file.read(path))
    except OutcomesError as err:
        log.warning("%s", err)
        pulled.outcomes_missing[source] = str(err)


def _log_missing(pulled: Pulled) -> None:
    if pulled.outcomes_missing:
        log.info(
            "%d of %d jobs have no outcomes file (%s): the robust view covers only probes "
            "with one", len(pulled.outcomes_missing),
            len(pulled.outcomes) + len(pulled.outcomes_missing),
            ", ".join(sorted(pulled.outcomes_missing)),
        )  # fmt: skip


# ---- shared -------------------------------------------------------------------------------


def conform(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The RESULT_COLUMNS of `frame`, in order and with the schema's dtypes
    (`probegen.results.conform`; columns added after a table was written, such as `depth` or
    the null's, come as nulls); ResultsError naming `where` when a column is missing or
    holds values of the wrong kind."""
    try:
        return conform_schema(frame)
    except KeyError as err:  # the schema names the missing columns
        raise ResultsError(
            f"{where}: {err.args[0]}; a results table needs {RESULT_COLUMNS} "
            "(probegen.results.RESULT_COLUMNS)"
        ) from err
    except (TypeError, ValueError) as err:
        expected = ", ".join(f"{c}: {t}" for c, t in RESULT_DTYPES.items())
        raise ResultsError(
            f"{where}: values do not match the results schema ({expected}): {err}"
        ) from err


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
    heartbeat (else its start), the time its results were logged. A run's file
    `outcomes.safetensors`, where it has one, is downloaded and read (`Pulled.outcomes`,
    oldest run first); runs without one are noted in `outcomes_missing`.
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
    frames, files, jobs = [], [], []
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
        jobs.append((frame["written_at"].iloc[0], len(jobs), run, target))
    if not frames:
        raise FileNotFoundError(f"no run in {where} logged a {TABLE_KEY!r} table")
    results, duplicates = drop_duplicates(pd.concat(frames, ignore_index=True))
    pulled = Pulled(results, duplicates, files)
    for _, _, run, target in sorted(jobs, key=lambda job: job[:2]):  # oldest first
        source = f"wandb:{'/'.join(run.path)}"
        local = _fetch_outcomes(run, target)
        if local is None:
            pulled.outcomes_missing[source] = f"no {outcomes_file.FILE} among the run's files"
        else:
            _add_outcomes(pulled, local, source)
    _log_missing(pulled)
    return pulled


def _fetch_outcomes(run: Any, target: Path) -> Path | None:
    """Download a run's outcomes file into `target`; None when the run has none."""
    try:
        remote = run.file(outcomes_file.FILE)
    except IndexError:  # the public API's lookup by name found no such file in the run
        return None
    if not getattr(remote, "size", 1):  # older API versions hand back an empty stub instead
        return None
    remote.download(root=str(target), replace=True).close()
    return target / outcomes_file.FILE


def _utc(stamp: str) -> pd.Timestamp:
    """W&B's ISO timestamps, with or without a zone (the API gives them in UTC)."""
    ts = pd.Timestamp(stamp)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def table_frame(table: dict, where: str) -> pd.DataFrame:
    """A DataFrame from wandb's table JSON ({"columns": [...], "data": [[...], ...]})."""
    if not isinstance(table, dict) or "columns" not in table or "data" not in table:
        raise ResultsError(f"{where}: not a wandb table file (needs 'columns' and 'data')")
    return conform(pd.DataFrame(table["data"], columns=table["columns"]), where)
