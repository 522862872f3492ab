"""W&B tracking and the heatmap: offline runs on disk, disabled runs leave nothing, no network."""

from __future__ import annotations

import struct
import time

import numpy as np
import pandas as pd
import pytest
import wandb

from probegen.job_summary import draw_heatmap, summarize
from probegen.tracking import (
    Tracker,
    WandbSettings,
    run_name,
    sweep_group,
    to_wandb_table,
    tracked_run,
)

COLUMNS = ["model", "probe", "train_dataset", "layer", "eval_dataset", "eval_split"]


def synthetic_results(n_datasets: int = 4, layers=(1, 3), seed: int = 0) -> pd.DataFrame:
    """A results table in the docs/design.md §7 shape: in-distribution pairs score highest, and one
    eval-only dataset (like truthful_qa), one skipped and one failed row."""
    rng = np.random.default_rng(seed)
    names = [f"ds{i:02d}" for i in range(n_datasets)]
    rows = []
    for train in names:
        for layer in layers:
            for ev in [*names, "truthful_qa"]:
                for split in ("validation", "train-hparams"):
                    acc = (0.9 if ev == train else 0.6) + 0.05 * layer / max(layers)
                    acc = float(np.clip(acc + rng.normal(0, 0.05), 0, 1))
                    auroc = None if ev == "truthful_qa" else acc
                    rows.append(
                        (
                            "tiny",
                            "lr",
                            train,
                            layer,
                            ev,
                            split,
                            acc,
                            100,
                            auroc,
                            False,
                            "ok",
                            "",
                            0.1,
                        )
                    )
    rows.append(("tiny", "lr", names[0], 99, names[1], "validation", None, 0, None, None, "skipped",
                 "no groups", 0.0))  # fmt: skip
    rows.append(("tiny", "lr", names[1], 99, names[0], "validation", None, 0, None, None, "failed",
                 "boom", 0.0))  # fmt: skip
    cols = [*COLUMNS, "accuracy", "n", "auroc", "is_flipped", "status", "reason", "fit_seconds"]
    df = pd.DataFrame(rows, columns=cols)
    # The nullable dtypes the probe stage writes.
    return df.astype({"accuracy": "Float64", "auroc": "Float64", "is_flipped": "boolean"})


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything (wandb included) opens an internet socket from this process."""
    import socket

    real = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def offline(tmp_path) -> WandbSettings:
    return WandbSettings(mode="offline", project="probegen-test", dir=str(tmp_path))


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_offline_run_writes_run_folder_with_summary_table_and_heatmap(tmp_path, no_network):
    results = synthetic_results()
    heatmap = draw_heatmap(results, tmp_path / "heatmap.png", "tiny / lr")
    with tracked_run(offline(tmp_path), config={"probe": "lr"}, group="g", name="probe=lr") as t:
        assert isinstance(t, Tracker) and wandb.run is t.run
        assert t.url is None
        t.log_results(results, heatmap)
        summary = dict(t.run.summary)
        run_dir = t.run_dir
    assert wandb.run is None  # finished
    assert summary["rows/ok"] == len(results) - 2
    assert summary["rows/skipped"] == 1 and summary["rows/failed"] == 1
    assert summary["val_accuracy/in_dist"] > summary["val_accuracy/cross"]
    assert summary["best_in_dist/train_dataset"].startswith("ds")
    assert summary["best_in_dist/layer"] in (1, 3)
    assert run_dir.parent == tmp_path / "wandb" and run_dir.name.startswith("offline-run-")
    (record_file,) = run_dir.glob("run-*.wandb")
    # The run log is protobuf records in a LevelDB-style log; for a run this small, names and
    # keys appear as plain bytes, which is enough to see that the summary reached the disk.
    # wandb's service process writes it asynchronously: on a busy machine the records can
    # land a moment after finish() returns, so wait for them (a bounded wait).
    deadline = time.monotonic() + 30
    records = record_file.read_bytes()
    while not (b"probe=lr" in records and b"val_accuracy/in_dist" in records):
        assert time.monotonic() < deadline, f"run records never reached {record_file}"
        time.sleep(0.2)
        records = record_file.read_bytes()
    media = run_dir / "files" / "media"
    assert list(media.glob("table/results_*.table.json"))
    assert list(media.glob("images/heatmap_*.png"))


def test_the_outcomes_file_is_saved_with_the_run(tmp_path, no_network):
    outcomes_file = tmp_path / "job" / "outcomes.safetensors"
    outcomes_file.parent.mkdir()
    outcomes_file.write_bytes(b"bits")
    with tracked_run(offline(tmp_path), config={}, group=None, name=None) as t:
        t.log_results(synthetic_results(2), outcomes_file=outcomes_file)
        run_dir = t.run_dir
    saved = run_dir / "files" / "outcomes.safetensors"
    assert saved.read_bytes() == b"bits"  # under its own name, where stage 3 asks for it


def test_log_results_can_draw_the_heatmap_itself(tmp_path, no_network):
    with tracked_run(offline(tmp_path), config={}, group=None, name=None) as t:
        t.log_results(synthetic_results(2), tmp_path / "out" / "heatmap.png", title="tiny lr")
        run_dir = t.run_dir
    assert (tmp_path / "out" / "heatmap.png").stat().st_size > 10_000
    assert list((run_dir / "files" / "media").glob("images/heatmap_*.png"))


def test_run_is_finished_as_failed_when_the_body_raises(tmp_path, no_network):
    with (
        pytest.raises(ValueError, match="probe blew up"),
        tracked_run(offline(tmp_path), config={}, group=None, name=None) as t,
    ):
        run_dir = t.run_dir
        raise ValueError("probe blew up")
    assert wandb.run is None
    assert list(run_dir.glob("run-*.wandb"))


def test_two_runs_in_one_process_get_two_folders(tmp_path, no_network):
    dirs = []
    for i in range(2):
        with tracked_run(offline(tmp_path), config={"i": i}, group="g", name=f"job{i}") as t:
            t.run.summary["i"] = i
            dirs.append(t.run_dir)
    assert dirs[0] != dirs[1]
    assert sorted(p.name for p in (tmp_path / "wandb").glob("offline-run-*")) == sorted(
        d.name for d in dirs
    )


def test_disabled_mode_writes_nothing(tmp_path, no_network):
    results = synthetic_results(2)
    settings = WandbSettings(mode="disabled", dir=str(tmp_path))
    with tracked_run(settings, config={"a": 1}, group="g", name="n") as t:
        t.log_results(results, None)
        assert t.run_dir is None and t.url is None
    assert not (tmp_path / "wandb").exists()


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="wandb.mode"):
        WandbSettings(mode="offlne")


def test_table_keeps_column_order_and_turns_missing_values_into_none():
    results = synthetic_results(2)
    table = to_wandb_table(results)
    assert table.columns == list(results.columns)
    skipped = table.data[-2]
    assert skipped[results.columns.get_loc("status")] == "skipped"
    assert skipped[results.columns.get_loc("accuracy")] is None
    assert skipped[results.columns.get_loc("is_flipped")] is None
    assert all(type(v) in (str, int, float, bool, type(None)) for row in table.data for v in row)


def test_summary_of_a_table_with_no_ok_rows_has_only_counts():
    results = synthetic_results(2)
    summary = summarize(results[results["status"] != "ok"])
    assert summary == {"rows/ok": 0, "rows/skipped": 1, "rows/failed": 1}


def test_summary_counts_fits_that_did_not_converge(tmp_path, no_network):
    results = synthetic_results(2)
    assert summarize(results)["unconverged_fits"] == 0
    # one fit (train dataset x layer): all its ok rows carry the reason
    fit = (results["train_dataset"] == "ds01") & (results["layer"] == 3)
    results.loc[fit, "reason"] = "not converged after 200 iterations (max|grad| 3e-04 ...)"
    summary = summarize(results)
    assert summary["unconverged_fits"] == 1 and summary["rows/ok"] == len(results) - 2
    with tracked_run(offline(tmp_path), config={}, group="g", name="n") as t:
        t.log_results(results)
        assert dict(t.run.summary)["unconverged_fits"] == 1


def test_heatmap_of_18_datasets_is_a_readable_png(tmp_path):
    path = draw_heatmap(synthetic_results(18, layers=(1, 9, 17)), tmp_path / "h.png", "tiny / lr")
    assert path == tmp_path / "h.png"
    width, height = png_size(path)
    assert width >= 1000 and height >= 900
    assert path.stat().st_size > 10_000


def test_heatmap_without_ok_validation_rows_is_none(tmp_path):
    results = synthetic_results(2)
    assert draw_heatmap(results.iloc[0:0], tmp_path / "a.png", "t") is None
    assert draw_heatmap(results[results["status"] != "ok"], tmp_path / "b.png", "t") is None
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("sweep_dir", "group"),
    [
        ("multirun/2026-11-28/10-00-00", "2026-11-28_10-00-00"),
        ("/abs/repo/multirun/2026-11-28/10-00-00/", "2026-11-28_10-00-00"),
        ("multirun/14b/2026-11-28/10-00-00", "14b_2026-11-28_10-00-00"),
        ("/scratch/sweeps/lr sweep/7", "lr-sweep_7"),
        (None, "single"),
        ("", "single"),
    ],
)
def test_sweep_group(sweep_dir, group):
    assert sweep_group(sweep_dir) == group


def test_run_name():
    assert run_name(["probe=lr", "layer=9"]) == "probe=lr,layer=9"
    assert run_name([]) == "default"


def test_tables_over_wandbs_row_limit_are_logged_whole(tmp_path, no_network):
    import json

    results = synthetic_results()
    big = pd.concat([results] * (wandb.Table.MAX_ROWS // len(results) + 1), ignore_index=True)
    with tracked_run(offline(tmp_path), config={}, group=None, name=None) as t:
        t.log_results(big)
        run_dir = t.run_dir
    (table,) = (run_dir / "files" / "media").glob("table/results_*.table.json")
    assert len(json.loads(table.read_text())["data"]) == len(big) > wandb.Table.MAX_ROWS
    assert wandb.Table.MAX_ROWS == 10_000  # restored


def test_aggregation_run_logs_headline_figures_and_report(tmp_path, no_network):
    from matplotlib.figure import Figure

    from probegen.tracking import flat_summary

    out = tmp_path / "report"
    (out / "4b").mkdir(parents=True)
    for path in (out / "r3b_matrix.png", out / "4b" / "r0_acc_by_layer.png"):
        Figure(figsize=(1, 1)).savefig(path)
    (out / "report.html").write_text("<html><body>report</body></html>")
    summary = {
        "reference": {"share_later_probes_above_80": 0.36},
        "models": {
            "4b": {
                "later_layer": 12,
                "headline": {
                    "share_later_probes_above_80": 0.25,
                    "best_probe": {"probe": "dim", "layer": 21, "recovered": 0.9},
                    "truthful_qa": None,
                    "labels": {"share_later_probes_above_80": "a label"},
                    "reference": {"best_probe_recovered": 0.928},
                },
                "null_baseline": {"mean_recovered": 0.66},
                "robust": {
                    "available": True,
                    "headline": {"share_transfer_half": 0.1},  # the same as headlines/fixed
                    "headlines": {
                        "fixed": {"share_transfer_half": 0.1, "mean_ccr": {"lo": -0.01}},
                        "eval": {"share_transfer_half": 0.3, "learned": ["a", "b"]},
                    },
                },
                "problem": None,
                "ranking_top": [{"rank": 1}],
            }
        },
    }
    flat = flat_summary(summary)
    assert flat == {
        "4b/later_layer": 12,
        "4b/headline/share_later_probes_above_80": 0.25,
        "4b/headline/best_probe/probe": "dim",
        "4b/headline/best_probe/layer": 21,
        "4b/headline/best_probe/recovered": 0.9,
        "4b/null_baseline/mean_recovered": 0.66,
        "4b/robust/available": True,
        "4b/robust/fixed/share_transfer_half": 0.1,
        "4b/robust/fixed/mean_ccr/lo": -0.01,
        "4b/robust/eval/share_transfer_half": 0.3,
    }
    settings = offline(tmp_path)
    with tracked_run(settings, config={}, group="g", name="aggregate", job_type="aggregate") as t:
        t.log_report(out, summary)
        assert dict(t.run.summary)["4b/headline/best_probe/recovered"] == 0.9
        logged = {k for k in dict(t.run.summary) if k.startswith("figures/") or k == "report"}
        assert logged == {"figures/r3b_matrix", "figures/4b/r0_acc_by_layer", "report"}
        assert t.run.job_type == "aggregate" and t.run.group == "g"
