"""probegen.aggregate.pull: multirun/ folders and W&B runs into one de-duplicated table.

The W&B pull is tested against W&B's own files: an offline run logged through
probegen.tracking writes the results table exactly as W&B stores it
(files/media/table/results_*.table.json), and the run's summary entry for "results" names
that file. A small fake of the public API (`wandb.Api().runs(...)`, `Run.summary`,
`Run.file(name).download(root=..., replace=True)`) serves those real files, since the
tests cannot reach W&B.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probegen import outcomes as oc
from probegen.aggregate.pull import (
    ResultsError,
    find_sweeps,
    newest_sweep,
    read_local,
    read_wandb,
    table_frame,
)
from probegen.results import LATER_COLUMNS, RESULT_COLUMNS


def job_results(probe: str, accuracy: float, model: str = "m") -> pd.DataFrame:
    """One probe job's rows: trained on A and B at layer 3, scored on A (both splits)."""
    rows = [
        {
            "model": model,
            "probe": probe,
            "train_dataset": train,
            "layer": 3,
            "eval_dataset": "A",
            "eval_split": split,
            "accuracy": accuracy,
            "n": 10,
            "auroc": None if train == "B" else 0.7,
            "is_flipped": False,
            "status": "ok",
            "reason": "",
            "fit_seconds": 0.5,
            "depth": 36,
        }
        for train in ("A", "B")
        for split in ("validation", "train-hparams")
    ]
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return frame.astype({"auroc": "Float64", "depth": "Int64"})


def write_job(sweep: Path, job: str, frame: pd.DataFrame, mtime: float) -> Path:
    path = sweep / job / "results.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path, index=False)
    os.utime(path, (mtime, mtime))
    return path


T0 = 1_800_000_000.0  # a fixed mtime; later writes add seconds


def job_outcomes(probe: str, directions: int = 200, model: str = "m") -> oc.JobOutcomes:
    """A job's outcomes matching job_results: cells (A, 3) and (B, 3) on A's validation
    split, 8 units; `directions` tells versions of a job apart."""
    units, cells = 8, 2
    bits = np.arange(cells * units).reshape(cells, units) % 3 == 0
    counts = np.full((cells, units), directions // 2, dtype=np.uint16)
    e = oc.EvalOutcomes("A", "validation", units, True, oc.unit_digest(range(units)),
                        np.array([0, 1], np.int32), np.array([3, 3], np.int32),
                        {"eval": bits, "fixed": ~bits}, counts, np.array([3], np.int32),
                        counts[:1])  # fmt: skip
    return oc.JobOutcomes(model, probe, directions, ["A", "B"], {("A", "validation"): e})


def write_outcomes(results_path: Path, outcomes: oc.JobOutcomes) -> Path:
    path = results_path.parent / oc.FILE
    oc.write(path, outcomes)
    return path


def test_read_local_newest_rerun_wins(tmp_path, caplog):
    sweep = tmp_path / "multirun" / "m" / "2026-01-01" / "10-00-00"
    write_job(sweep, "0", job_results("lr", 0.6), T0)
    write_job(sweep, "1", job_results("dim", 0.7), T0 + 1)
    write_job(sweep, "2", job_results("lr", 0.9), T0 + 2)  # job 0 re-run: newer rows
    other = tmp_path / "multirun" / "m2" / "2026-01-02" / "09-00-00"  # a second model
    write_job(other, "0", job_results("lr", 0.8, model="m2"), T0)

    with caplog.at_level(logging.WARNING, logger="probegen.aggregate.pull"):
        pulled = read_local([sweep, other])

    assert len(pulled.files) == 4
    results = pulled.results
    assert list(results.columns) == [*RESULT_COLUMNS, "source", "written_at"]
    assert len(results) == 12  # 3 unique jobs x 4 rows
    lr = results[(results["model"] == "m") & (results["probe"] == "lr")]
    assert set(lr["accuracy"]) == {0.9} and set(lr["source"]) == {str(sweep / "2")}
    assert set(results.loc[results["model"] == "m2", "accuracy"]) == {0.8}
    # The dropped rows are job 0's, returned and reported.
    assert len(pulled.duplicates) == 4
    assert set(pulled.duplicates["source"]) == {str(sweep / "0")}
    assert set(pulled.duplicates["accuracy"]) == {0.6}
    assert f"4 rows of {sweep / '0'} replaced by the newer {sweep / '2'}" in caplog.text
    # Dtypes as written by the sweep, NA auroc kept.
    assert results["layer"].dtype == "int64" and results["accuracy"].dtype == "float64"
    assert results["auroc"].isna().sum() == 6
    assert str(results["written_at"].dt.tz) == "UTC"


def test_read_local_malformed_file_is_named(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", job_results("lr", 0.6), T0)
    bad = write_job(sweep, "1", job_results("dim", 0.6).drop(columns=["accuracy"]), T0)
    with pytest.raises(ResultsError, match="accuracy") as err:
        read_local([sweep])
    assert str(bad) in str(err.value)

    bad.write_bytes(b"not a parquet file")
    with pytest.raises(ResultsError, match="not a readable parquet") as err:
        read_local([sweep])
    assert str(bad) in str(err.value)


def test_results_from_before_the_depth_column_get_a_null_depth(tmp_path):
    sweep = tmp_path / "sweep"
    write_job(sweep, "0", job_results("lr", 0.6).drop(columns=["depth"]), T0)
    write_job(sweep, "1", job_results("dim", 0.6), T0)
    results = read_local([sweep]).results
    assert list(results.columns) == [*RESULT_COLUMNS, "source", "written_at"]
    depth = results.set_index("probe")["depth"]
    assert depth.dtype == "Int64" and depth["lr"].isna().all() and (depth["dim"] == 36).all()

    # W&B tables of older runs: the same, with null depths as JSON gives them
    old = job_results("lr", 0.6).drop(columns=LATER_COLUMNS)  # the original columns only
    table = {"columns": list(old.columns), "data": old.astype(object).values.tolist()}
    frame = table_frame(table, where="W&B run old")
    assert frame["depth"].dtype == "Int64" and frame["depth"].isna().all()
    nulls = [None] * len(LATER_COLUMNS)
    new = {"columns": RESULT_COLUMNS, "data": [row + nulls for row in table["data"]]}
    assert table_frame(new, where="W&B run new")["depth"].isna().all()
    # the null's columns, added later still, come as nulls too, with the schema's dtypes
    frame = table_frame(table, where="W&B run old")
    assert frame["null_mean"].dtype == "Float64" and frame["null_mean"].isna().all()
    assert frame["train_sign"].dtype == "Int8"
    # any other column is still required
    short = {"columns": [c for c in old.columns if c != "n"],
             "data": [row[:7] + row[8:] for row in table["data"]]}  # fmt: skip
    with pytest.raises(ResultsError, match=r"W&B run short: missing columns \['n'\]"):
        table_frame(short, where="W&B run short")


def test_wrong_values_are_a_results_error_naming_the_file(tmp_path):
    sweep = tmp_path / "sweep"
    bad = write_job(sweep, "0", job_results("lr", 0.6).assign(null_mean="high"), T0)
    with pytest.raises(ResultsError, match="values do not match the results schema") as err:
        read_local([sweep])
    assert str(bad) in str(err.value)


def test_read_local_brings_each_jobs_outcomes_newest_last(tmp_path, caplog):
    sweep = tmp_path / "sweep"
    first = write_job(sweep, "0", job_results("lr", 0.6), T0 + 2)  # the re-run: newest
    write_outcomes(first, job_outcomes("lr", directions=300))
    second = write_job(sweep, "1", job_results("dim", 0.7), T0)
    write_outcomes(second, job_outcomes("dim"))
    write_job(sweep, "2", job_results("lda", 0.7), T0 + 1)  # written before outcomes existed
    third = write_job(sweep, "3", job_results("lr", 0.5), T0 + 1)
    write_outcomes(third, job_outcomes("lr", directions=100))

    with caplog.at_level(logging.INFO, logger="probegen.aggregate.pull"):
        pulled = read_local([sweep])
    # oldest results first, so the robust view's "last wins" picks the newest job's cells
    assert [(j.probe, j.null_directions) for j in pulled.outcomes] == [
        ("dim", 200), ("lr", 100), ("lr", 300)
    ]  # fmt: skip
    read_back = pulled.outcomes[0].eval_sets["A", "validation"]
    expected = job_outcomes("dim").eval_sets["A", "validation"]
    assert np.array_equal(read_back.correct["fixed"], expected.correct["fixed"])
    # a job without one is noted, not an error: the original analysis needs none
    assert pulled.outcomes_missing == {str(sweep / "2"): "no outcomes.safetensors"}
    assert "1 of 4 jobs have no outcomes file" in caplog.text

    (sweep / "2" / oc.FILE).write_bytes(b"not safetensors")  # unreadable: noted, named
    pulled = read_local([sweep])
    assert len(pulled.outcomes) == 3 and str(sweep / "2" / oc.FILE) in pulled.outcomes_missing[
        str(sweep / "2")
    ]  # fmt: skip


def test_read_local_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_local([tmp_path])


def test_newest_sweep_by_folder_names(tmp_path):
    root = tmp_path / "multirun"
    old = root / "m" / "2026-01-01" / "23-59-59"
    new = root / "m" / "2026-01-02" / "00-00-01"
    other_model = root / "m2" / "2026-01-03" / "00-00-00"
    for sweep, mtime in ((new, T0), (old, T0 + 100), (other_model, T0)):
        write_job(sweep, "0", job_results("lr", 0.6), mtime)
    (root / "m" / "2026-01-04" / "00-00-00" / "0").mkdir(parents=True)  # no results yet
    # Newest by name, although `old` was touched later.
    assert find_sweeps(root, "m") == [new, old]
    assert newest_sweep(root, "m") == new
    assert newest_sweep(root) == other_model  # any model


def test_newest_sweep_none_says_what_to_run(tmp_path):
    root = tmp_path / "multirun"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        newest_sweep(root, "smollm2-135m")
    message = str(err.value)
    assert str(root / "smollm2-135m") in message
    assert "python -m probegen.probe -m" in message and "model=smollm2-135m" in message


# ---- W&B ----------------------------------------------------------------------------------


class FakeFile:
    """`wandb.apis.public.File`: download(root, replace) writes root/<name>, returns it open."""

    def __init__(self, name: str, files_dir: Path):
        self.name, self._src = name, files_dir / name
        self.size = self._src.stat().st_size

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False):
        target = Path(root) / self.name
        if target.exists() and not (replace or exist_ok):
            raise ValueError("File already exists, pass replace=True to overwrite")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._src, target)
        return open(target)


class FakeRun:
    """The `wandb.apis.public.Run` attributes read_wandb uses. `summary` is wandb's own
    public-API Summary over the summary JSON, as `Run.summary` returns it (nested values
    come back as SummarySubDict, not dict)."""

    def __init__(self, run_id, summary, files_dir, created_at, heartbeat_at=None):
        from wandb.apis.public.summary import Summary

        self.id, self.entity, self.project = run_id, "ent", "proj"
        self.dir = str(files_dir)  # Summary keeps its (lazy) h5 path under run.dir
        self.summary, self._files_dir = Summary(self, summary=summary), files_dir
        self.created_at, self.heartbeat_at = created_at, heartbeat_at

    @property
    def path(self) -> list[str]:
        return [self.entity, self.project, self.id]

    def file(self, name: str) -> FakeFile:
        if not (self._files_dir / name).is_file():
            # wandb's Run.file looks the name up among the run's files: `Files(...)[0]`
            raise IndexError("list index out of range")
        return FakeFile(name, self._files_dir)


class FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path=None, filters=None, order="+created_at", per_page=50, **kwargs):
        self.calls.append((path, filters))
        return iter(self._runs)


def log_offline_run(results: pd.DataFrame, parent: Path) -> tuple[str, dict, Path]:
    """Log `results` like a probe job does (offline); return run id, the summary entry W&B
    keeps for the table, and the run's files folder."""
    from probegen.tracking import WandbSettings, tracked_run

    settings = WandbSettings(mode="offline", project="proj", dir=str(parent))
    with tracked_run(settings, config={"probe": "lr"}, group="g", name="probe=lr") as tracker:
        tracker.log_results(results)
        entry = json.loads(json.dumps(dict(tracker.run.summary["results"])))
        run_id, files_dir = tracker.run.id, Path(tracker.run.settings.files_dir)
    return run_id, entry, files_dir


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory):
    """Two real offline runs: a probe job and its re-run with other accuracies."""
    first = job_results("lr", 0.6)
    first.loc[0, ["status", "reason", "accuracy", "n"]] = ["failed", "LinAlgError: x", None, 0]
    parent = tmp_path_factory.mktemp("wandb")
    return [log_offline_run(first, parent), log_offline_run(job_results("lr", 0.9), parent)]


def test_offline_run_wrote_the_table_file(offline_runs):
    _, entry, files_dir = offline_runs[0]
    assert entry["_type"] == "table-file" and entry["path"].startswith("media/table/results_")
    table = json.loads((files_dir / entry["path"]).read_text())
    assert table["columns"] == RESULT_COLUMNS and len(table["data"]) == 4


def test_read_wandb_from_wandb_table_files(offline_runs, tmp_path):
    (id1, entry1, dir1), (id2, entry2, dir2) = offline_runs
    runs = [
        FakeRun(id1, {"results": entry1}, dir1, "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z"),
        FakeRun(id2, {"results": entry2}, dir2, "2026-01-01T11:00:00"),  # no zone, no beat
        FakeRun("crashed", {"rows/ok": 0}, dir1, "2026-01-01T12:00:00Z"),  # no table
    ]
    api = FakeApi(runs)
    pulled = read_wandb("proj", entity="ent", group="g", api=api, download_dir=tmp_path)

    assert api.calls == [("ent/proj", {"group": "g"})]
    assert pulled.files == [tmp_path / id1 / entry1["path"], tmp_path / id2 / entry2["path"]]
    results = pulled.results
    assert list(results.columns) == [*RESULT_COLUMNS, "source", "written_at"]
    # The re-run (newer) wins every key, including the row that failed the first time.
    assert len(results) == 4 and set(results["accuracy"]) == {0.9}
    assert set(results["source"]) == {f"wandb:ent/proj/{id2}"}
    assert len(pulled.duplicates) == 4
    failed = pulled.duplicates[pulled.duplicates["status"] == "failed"]
    assert len(failed) == 1 and failed["accuracy"].isna().all()
    assert failed["reason"].tolist() == ["LinAlgError: x"]
    # Same dtypes as the local pull (None from JSON -> NA).
    assert results["auroc"].dtype == "Float64" and results["auroc"].isna().sum() == 2
    assert results["layer"].dtype == "int64" and results["n"].dtype == "int64"
    stamps = pulled.duplicates["written_at"].iloc[0], results["written_at"].iloc[0]
    assert stamps == (pd.Timestamp("2026-01-01T10:05:00Z"), pd.Timestamp("2026-01-01T11:00Z"))


def test_read_wandb_downloads_each_runs_outcomes(offline_runs, tmp_path):
    (id1, entry1, dir1), (id2, entry2, dir2) = offline_runs
    with_file = tmp_path / "files"
    shutil.copytree(dir2, with_file)  # the second run also saved its outcomes file
    write_outcomes(with_file / "results.parquet", job_outcomes("lr", directions=50))
    runs = [
        FakeRun(id2, {"results": entry2}, with_file, "2026-01-01T11:00:00Z"),
        FakeRun(id1, {"results": entry1}, dir1, "2026-01-01T10:00:00Z"),  # none: noted
    ]
    pulled = read_wandb("proj", api=FakeApi(runs), download_dir=tmp_path / "down")
    assert [(j.probe, j.null_directions) for j in pulled.outcomes] == [("lr", 50)]
    assert (tmp_path / "down" / id2 / oc.FILE).is_file()
    assert list(pulled.outcomes_missing) == [f"wandb:ent/proj/{id1}"]


def test_read_wandb_refuses_a_truncated_table(offline_runs, tmp_path):
    run_id, entry, files_dir = offline_runs[0]
    entry = entry | {"nrows": 20_000}  # wandb keeps at most wandb.Table.MAX_ROWS in the file
    api = FakeApi([FakeRun(run_id, {"results": entry}, files_dir, "2026-01-01T10:00:00Z")])
    with pytest.raises(ResultsError, match="truncated"):
        read_wandb("proj", api=api, download_dir=tmp_path)


def test_read_wandb_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="group 'nope'"):
        read_wandb("proj", group="nope", api=FakeApi([]), download_dir=tmp_path)
