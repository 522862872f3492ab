"""summary.json / summary.md / report.html (the robust view first, then the original
analysis), the multi-model comparison, and the stage-3 and demo entry points on the tiny
model (real extract -> real probe multirun -> aggregate)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from study_results import study_results, study_sweep

from probegen.aggregate.pull import Pulled
from probegen.aggregate.run import aggregate, default_out_dir
from probegen.aggregate.study import Study
from probegen.tracking import sweep_group

REPO = Path(__file__).resolve().parents[1]
FEW = ["robust_matrix", "r3b_matrix", "r4_truthful_qa", "v2_got"]  # the figure tests draw all
ROBUST, ORIGINAL, VIEWS = (
    "1. Robust view", "2. The original analysis, for comparison with the post",
    "3. probegen's own views",
)  # fmt: skip


def pulled(*frames: pd.DataFrame, duplicates: int = 0, outcomes=()) -> Pulled:
    results = pd.concat(frames, ignore_index=True)
    return Pulled(results, results.head(duplicates), [], list(outcomes))


def test_two_models_get_their_own_figures_a_comparison_and_one_report(tmp_path):
    # 4b with its jobs' outcomes (the robust view), 8b without (the view says why)
    four, jobs = study_sweep(model="4b", seed=1, local=("got_larger_than",))
    eight = study_results(model="8b", seed=2)
    page = aggregate(pulled(four, eight, duplicates=3, outcomes=jobs), tmp_path, only=FEW,
                     resamples=100)  # fmt: skip
    assert page == tmp_path / "report.html"
    assert sorted(p.name for p in (tmp_path / "4b").glob("*.png")) == [
        "r3b_matrix.png", "r4_truthful_qa.png", "robust_matrix.png", "v2_got.png",
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "8b").glob("*.png")) == [
        "r3b_matrix.png", "r4_truthful_qa.png", "v2_got.png",
    ]  # fmt: skip
    assert (tmp_path / "comparison.png").stat().st_size > 20_000

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary["models"]) == ["4b", "8b"]
    assert summary["duplicate_rows_dropped"] == 3
    for model, frame in (("4b", four), ("8b", eight)):
        study = Study.build(frame)
        expected = study.headline()
        got = summary["models"][model]["headline"]
        share = expected["share_later_probes_above_80"]
        assert got["share_later_probes_above_80"] == pytest.approx(share)
        assert got["truthful_qa"]["share"] == pytest.approx(expected["truthful_qa"]["share"])
        assert got["best_probe"] == expected["best_probe"]
        assert got["best_probe"]["probe"] != "random"  # not one of the original eight
        assert summary["models"][model]["depth"] == 36
        assert summary["models"][model]["later_layer"] == 12
        assert len(summary["models"][model]["ranking_top"]) == 20
        assert summary["models"][model]["figures"]["r3b_matrix"]["file"] == "r3b_matrix.png"

    robust = summary["models"]["4b"]["robust"]
    assert robust["available"] and robust["resamples"] == 100 and robust["later_layer"] == 12
    head = robust["headline"]
    assert head["policy"] == "fixed" and robust["headlines"]["eval"]["policy"] == "eval"
    assert head["mean_ccr"]["lo"] < head["mean_ccr"]["value"] < head["mean_ccr"]["hi"]
    best = head["best_probe"]
    assert best["ccr_lo"] < best["ccr_cross"] < best["ccr_hi"]
    assert best["train_dataset"] != "got_larger_than"  # its probes do not transfer
    no_view = summary["models"]["8b"]["robust"]
    assert not no_view["available"] and no_view["headline"] is None
    assert "no outcomes.safetensors" in no_view["unavailable_reason"]

    text = (tmp_path / "summary.md").read_text()
    assert text.index(f"## {ROBUST}") < text.index(f"## {ORIGINAL}") < text.index(f"## {VIEWS}")
    robust_part = text[: text.index(f"## {ORIGINAL}")]
    assert "| number | train-fixed sign (robust) | eval-set sign (the original's policy) |" in (
        robust_part
    )
    mean = head["mean_ccr"]
    interval = f"{mean['value']:.2f} [{mean['lo']:.2f}, {mean['hi']:.2f}]"
    assert (
        f"| mean chance-corrected recovery on the other learned datasets [95% interval] | "
        f"{interval} |" in robust_part
    )
    assert f"{best['probe']} / {best['train_dataset']} / layer {best['layer']}" in robust_part
    assert "robust_matrix: `4b/robust_matrix.png`" in robust_part
    # the original RA mean next to the null's
    null = summary["models"]["4b"]["null_baseline"]["mean_recovered"]
    original = summary["models"]["4b"]["headline"]["mean_recovered"]
    assert f"mean recovered accuracy {100 * original:.1f}%; the null's: {100 * null:.1f}%" in (
        robust_part
    )
    assert "No robust view: ccs: no outcomes.safetensors for its job; dim:" in robust_part
    assert "python -m probegen.probe -m probe=" in robust_part  # what to run
    header = (
        "| number | 4b | 4b: null, random directions (baseline) | 8b | 8b: null, random "
        "directions (baseline) |"
    )
    assert header + " Llama-2-13b-chat (original study) |" in text
    assert (
        "| later layers | ≥ 12 of 36 | ≥ 12 of 36 | ≥ 12 of 36 | ≥ 12 of 36 | ≥ 13 of 40 |" in text
    )
    best = summary["models"]["4b"]["headline"]["best_probe"]
    row = "| best probe's mean recovered accuracy (own train dataset included) | "
    assert f"{row}{100 * best['recovered']:.1f}% | – |" in text and text.count(row) == 1
    assert "| 92.8% |" in text and "| 94.6% |" in text  # the reference column
    baseline = summary["models"]["4b"]["null_baseline"]["mean_recovered"]
    assert 0 < baseline < 1 and f"| {100 * baseline:.1f}% |" in text
    assert "random_baseline" not in summary["models"]["4b"]  # the null replaced it
    assert "3 duplicate result rows" in text
    assert "Run but left out of the original analysis (not its eight algorithms): random." in text

    report = (tmp_path / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]{0,40})', report)
    assert len(sources) == 4 + 3 + 1  # 4b's four figures, 8b's three, the comparison
    assert all(s.startswith("data:image/png;base64,") for s in sources)  # self-contained
    assert report.count("averaged over the eight algorithms and the later layers") == 2
    assert report.count("<h3>4b: the 20 best probes") == 1
    assert report.index(ROBUST) < report.index("id='4b-robust_matrix'") < report.index(ORIGINAL)
    assert report.index(ORIGINAL) < report.index(VIEWS)
    assert "<b>Chance-corrected recovery</b>" in report and "**" not in report


def test_results_without_the_new_columns_get_a_report_saying_what_to_run(tmp_path):
    old = study_results(model="4b", null=False)  # written before jobs recorded the null
    aggregate(pulled(old), tmp_path, only=["robust_matrix", "r2_probes"], resamples=50)
    summary = json.loads((tmp_path / "summary.json").read_text())
    entry = summary["models"]["4b"]
    assert not entry["robust"]["available"] and "null columns" in entry["robust"][
        "unavailable_reason"
    ]  # fmt: skip
    assert entry["null_baseline"] is None and entry["headline"] is not None
    assert entry["figures"]["robust_matrix"]["skipped"]
    text = (tmp_path / "summary.md").read_text()
    robust_part = text[text.index(f"## {ROBUST}") : text.index(f"## {ORIGINAL}")]
    assert "No robust view:" in robust_part and "python -m probegen.probe -m" in robust_part
    assert "no null in the results" in robust_part
    assert (tmp_path / "r2_probes.png").exists() and not (tmp_path / "robust_matrix.png").exists()


def test_a_model_without_cross_dataset_results_still_gets_a_report(tmp_path):
    alone = study_results(model="4b", train=["imdb"], evals=["imdb"], probes=["lr"])
    aggregate(pulled(alone), tmp_path, only=["r0_acc_by_layer", "r1a_by_algorithms"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    entry = summary["models"]["4b"]
    assert entry["headline"] is None and "no cross-dataset" in entry["problem"]
    assert entry["figures"]["r1a_by_algorithms"]["skipped"]  # no ranking, no best probe
    assert (tmp_path / "r0_acc_by_layer.png").exists()


def test_default_out_dir_names_the_models():
    assert default_out_dir(["4b"]) == Path("reports/4b")
    assert default_out_dir(["8b", "14b", "4b"]) == Path("reports/4b+8b+14b")


def test_stage_3_imports_neither_torch_nor_the_model_or_probe_code():
    # Stage 3 reads the depth from the results (docs/design.md §8), so it needs none of them.
    heavy = ["torch", "probegen.models", "probegen.probes", "probegen.sweep", "probegen.cache"]
    check = (
        "import sys, probegen.aggregate.run\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    # the check can fail: the same subprocess sees them once the probe stage is imported
    run = subprocess.run([sys.executable, "-c", check.replace("run\n", "run, probegen.sweep\n")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "'torch'" in run.stdout and "'probegen.sweep'" in run.stdout


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_demo_and_aggregate_entry_points_on_the_tiny_model(tmp_path):
    sweep, report = tmp_path / "sweep", tmp_path / "report"
    demo = run(
        [
            sys.executable,
            "-m",
            "probegen.demo",
            "model=tiny",
            "probes=[lr,dim,ccs,random]",
            "limits.train=40",
            "limits.train_hparams=30",
            "limits.validation=30",
            f"cache_dir={tmp_path / 'cache'}",
            f"sweep_dir={sweep}",
            f"out_dir={report}",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],  # fmt: skip
        REPO,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert f"report: {report / 'report.html'}" in demo.stdout
    assert "4 of 4 jobs ok" in demo.stdout  # stage 2 ran as a real Hydra multirun
    # the second stage's own folders: one per job, with results and an offline W&B run
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    assert list((sweep / "0" / "wandb").glob("offline-run-*"))
    assert len(list((report / "wandb").glob("offline-run-*/run-*.wandb"))) == 1  # aggregation
    summary = json.loads((report / "summary.json").read_text())
    tiny = summary["models"]["tiny"]
    assert tiny["datasets"] and sorted(tiny["datasets"]) == sorted(
        ["got_larger_than", "synthetic_arithmetic", "synthetic_alphabet", "synthetic_parity",
         "synthetic_elements", "synthetic_capitals", "synthetic_animals"]
    )  # fmt: skip
    assert tiny["depth"] == 4 and tiny["headline"]["n_probes"] > 0
    assert (report / "r3b_matrix.png").exists() and (report / "report.html").exists()
    assert tiny["figures"]["r4_truthful_qa"]["skipped"]  # no truthful_qa offline

    # stage 3's own entry point on the folder stage 2 wrote
    again = tmp_path / "again"
    agg = run(
        [
            sys.executable,
            "scripts/aggregate.py",
            f"sweep_dir={sweep}",
            f"out_dir={again}",
            "figures=[r1a_by_algorithms]",
            f"hydra.run.dir={tmp_path / 'run2'}",
        ],  # fmt: skip
        REPO,
    )
    assert agg.returncode == 0, agg.stderr[-3000:]
    assert sorted(p.name for p in again.glob("*.png")) == ["r1a_by_algorithms.png"]
    # its W&B run (offline by default) sits in the sweep's group, beside the probe runs
    assert len(list((again / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    assert f"aggregate run in group {sweep_group(str(sweep))}" in agg.stdout
    redo = json.loads((again / "summary.json").read_text())
    assert redo["models"]["tiny"]["headline"] == tiny["headline"]
