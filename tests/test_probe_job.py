"""The probe job (`python -m probegen.probe`) on the tiny model's cache, as a user runs it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open

from probegen.cache import Activations, rows_of
from probegen.datasets import Limits, SourceReader
from probegen.extract import ExtractOptions, extract
from probegen.model_spec import ModelSpec
from probegen.results import NULL_COLUMNS, RESULT_COLUMNS
from probegen.sweep import JobSpec, run_job, run_jobs

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["synthetic_capitals", "synthetic_animals", "got_larger_than"]


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    spec = ModelSpec.from_values("tiny", device="cpu")
    extract(
        spec, DATASETS, root, Limits(60, 40, 40), SourceReader(), ExtractOptions(progress=False)
    )
    return root


def probe(tmp_path: Path, cache_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    flags = [o for o in overrides if o.startswith("-")]
    cmd = [
        sys.executable, "-m", "probegen.probe", *flags, "model=tiny", f"cache_dir={cache_dir}",
        f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *(o for o in overrides if not o.startswith("-")),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_multirun_writes_results_probes_and_offline_wandb_runs(tiny_cache, tmp_path):
    run = probe(
        tmp_path,
        tiny_cache,
        "-m",
        "probe=lr,dim,pca-g",
        "train=[synthetic_capitals,got_larger_than]",
        f"eval.datasets=[{','.join(DATASETS)}]",
    )
    assert run.returncode == 0, run.stderr
    assert "3 of 3 jobs ok" in run.stdout
    for job, name in enumerate(["lr", "dim", "pca-g"]):
        folder = tmp_path / "sweep" / str(job)
        results = pd.read_parquet(folder / "results.parquet")
        assert list(results.columns) == RESULT_COLUMNS
        assert (results["depth"] == 4).all()  # the tiny model's 4 blocks, from the cache
        # 2 train datasets × 2 layers (1, 3) × 3 eval datasets × 2 splits
        assert len(results) == 24 and set(results["probe"]) == {name}
        assert (results["status"] == "ok").all() and results["accuracy"].between(0, 1).all()
        assert set(results["eval_split"]) == {"validation", "train-hparams"}
        with safe_open(str(folder / "probes.safetensors"), framework="np") as f:
            assert sorted(f.keys()) == sorted(
                f"{d}/layer.{i}" for d in ("synthetic_capitals", "got_larger_than") for i in (1, 3)
            )
            assert f.get_tensor("got_larger_than/layer.3").shape == (64,)
            intercepts = json.loads(f.metadata()["intercepts"])
            assert sorted(intercepts) == sorted(f.keys())
        assert list((folder / "wandb").glob("offline-run-*/run-*.wandb"))
        assert (folder / "heatmap.png").stat().st_size > 10_000


def test_failed_job_does_not_stop_the_sweep(tiny_cache, tmp_path):
    run = probe(
        tmp_path,
        tiny_cache,
        "-m",
        "probe=dim",
        "train=synthetic_capitals,imdb",
        "eval.datasets=synthetic_capitals",
    )
    assert run.returncode == 1
    assert "1 of 2 jobs ok" in run.stdout and "FAILED" in run.stdout
    assert "python -m probegen.extract model=tiny dataset=imdb" in run.stdout
    assert (tmp_path / "sweep" / "0" / "results.parquet").is_file()
    status = json.loads((tmp_path / "sweep" / "1" / "job_status.json").read_text())
    assert status["status"] == "failed" and "CacheError" in status["error"]


def test_missing_dataset_names_the_extract_command(tiny_cache, tmp_path):
    run = probe(
        tmp_path, tiny_cache, "probe=lr", "train=boolq", "eval=boolq", "wandb.mode=disabled"
    )
    assert run.returncode != 0
    assert "python -m probegen.extract model=tiny dataset=boolq" in run.stderr


def test_non_converging_ccs_is_a_failed_row(tiny_cache, tmp_path):
    run = probe(
        tmp_path,
        tiny_cache,
        "probe=ccs",
        "++probe.params.max_iter=0",  # ++: conf/probe/ccs.yaml may list max_iter already
        "train=synthetic_capitals",
        "eval=synthetic_capitals",
        "layer=3",
    )
    assert run.returncode == 0, run.stderr
    results = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert (results["status"] == "failed").all() and results["accuracy"].isna().all()
    assert results["reason"].str.contains("FitFailed").all()


class ArraySource:
    """In-memory activations: one grouped and one ungrouped dataset."""

    def __init__(self):
        rng = np.random.default_rng(0)
        n, d = 240, 16
        self.labels = np.tile([True, False], n // 2)
        direction = rng.normal(size=d)
        self.X = (rng.normal(size=(n, d)) + np.outer(self.labels - 0.5, direction) * 3).astype(
            np.float32
        )
        self.splits = np.resize(np.array(["train", "validation", "train-hparams"]), n // 2)
        self.splits = np.repeat(self.splits, 2).astype(object)
        self.groups = np.repeat(np.arange(n // 2), 2).astype(str).astype(object)

    depth_value: int | None = None  # no model behind these arrays

    def layers(self, dataset):
        return [0, 2]

    def depth(self, dataset):
        return self.depth_value

    def load(self, dataset, layer, splits=None):
        grouped = dataset == "pairs"
        acts = Activations(
            self.X,
            self.labels,
            self.groups if grouped else None,
            None,
            self.splits,
            np.arange(len(self.X)).astype(str).astype(object),
        )
        return acts if splits is None else acts.take(rows_of(self.splits, splits))

    def project(self, dataset, layer, W, splits=None):
        acts = self.load(dataset, layer, splits)
        acts.X = (torch.from_numpy(acts.X) @ W).numpy()
        return acts


def test_grouped_probe_on_ungrouped_data_is_skipped_with_a_reason():
    spec = JobSpec("m", "lr-g", train=["pairs", "flat"], eval=["pairs", "flat"], layers=[2])
    results = run_job(spec, ArraySource()).results
    flat = results[results["train_dataset"] == "flat"]
    assert (flat["status"] == "skipped").all() and flat["reason"].str.contains("group").all()
    pairs = results[results["train_dataset"] == "pairs"]
    assert (pairs["status"] == "ok").all()
    # trained on its own pairs with a strong planted direction: near perfect, either metric
    assert pairs["accuracy"].min() > 0.9


@pytest.mark.parametrize("eval_set", ["pairs", "flat"])
def test_both_sign_policies_score_every_cell(eval_set):
    source = ArraySource()
    # Eval splits carry the opposite truth: the train-fixed sign must score them badly,
    # the eval-sign policy flips and scores them well.
    source.labels = np.where(source.splits == "train", source.labels, ~source.labels)
    spec = JobSpec("m", "dim", train=["pairs"], eval=[eval_set], layers=[0])
    results = run_job(spec, source).results
    assert (results["accuracy"] > 0.9).all() and results["is_flipped"].all()
    assert (results["accuracy_fixed"] < 0.1).all() and (results["train_sign"] == 1).all()
    assert (results["auroc_fixed"] < 0.1).all() and (results["auroc"] > 0.9).all()


def test_eval_rows_prepared_once_are_rebuilt_when_rows_differ():
    # Eval rows are prepared at the first layer and reused; a source whose rows differ
    # between layers must get them prepared again. Either way each layer's results must be
    # those of a job over that layer alone.
    class Shifting(ArraySource):
        def load(self, dataset, layer, splits=None):
            acts = super().load(dataset, layer, splits)
            if layer == 2:
                acts.labels = acts.labels.copy()
                acts.labels[::3] = ~acts.labels[::3]
            return acts

    for source in (ArraySource(), Shifting()):
        spec = JobSpec("m", "dim", train=["pairs"], eval=["pairs", "flat"], layers=[0, 2])
        both = run_job(spec, source).results
        for layer in (0, 2):
            spec.layers = [layer]
            alone = run_job(spec, source).results
            mine = both[both["layer"] == layer].reset_index(drop=True)
            pd.testing.assert_frame_equal(
                mine.drop(columns="fit_seconds"), alone.drop(columns="fit_seconds")
            )


def test_lr_warm_starts_across_layers_only_when_the_job_says_so(monkeypatch):
    from probegen.probes import supervised

    starts = []  # per fit: did it start from a previous solution?
    solve = supervised._logistic

    def spy(X, y, C, max_iter, tol, init=None, *args):
        starts.append(init is not None)
        return solve(X, y, C, max_iter, tol, init, *args)

    monkeypatch.setattr(supervised, "_logistic", spy)
    source = ArraySource()
    spec = JobSpec("m", "lr", train=["pairs", "flat"], eval=["pairs"], layers=[0, 2])
    cold = run_job(spec, source)
    assert starts == [False] * 4
    starts.clear()
    spec.probe_params = {"warm_start": True}
    warm = run_job(spec, source)
    assert starts == [False, False, True, True]  # layer 2 of each train set from layer 0's
    for key, direction in cold.directions.items():  # the same optimum (convex loss)
        np.testing.assert_allclose(warm.directions[key], direction, rtol=1e-2, atol=1e-3)
    cols = ["layer", "eval_split", "accuracy", "n", "is_flipped", "status"]
    pd.testing.assert_frame_equal(warm.results[cols], cold.results[cols])


def test_local_parallel_launcher_runs_the_sweep(tiny_cache, tmp_path):
    run = probe(tmp_path, tiny_cache, "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2",
                "probe=dim,random", "train=synthetic_capitals", "eval=synthetic_capitals",
                "wandb.mode=disabled")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "2 of 2 jobs ok" in run.stdout
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "results.parquet").is_file()


@pytest.mark.parametrize("launcher", ["slurm_gpu", "slurm_cpu"])
def test_slurm_launcher_configs_compose(tmp_path, launcher):
    cmd = [
        sys.executable,
        "-m",
        "probegen.probe",
        f"hydra/launcher={launcher}",
        "hydra.launcher.partition=gpu",
        "--cfg",
        "hydra",
        "--package",
        "hydra.launcher",
    ]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "SlurmLauncher" in run.stdout and "partition: gpu" in run.stdout


def test_eval_split_without_rows_is_a_skipped_row():
    source = ArraySource()
    source.splits = np.where(source.splits == "train-hparams", "validation", source.splits)
    spec = JobSpec("m", "dim", train=["pairs"], eval=["pairs"], layers=[0])
    results = run_job(spec, source).results
    empty = results[results["eval_split"] == "train-hparams"]
    assert len(empty) == 1 and empty["status"].iloc[0] == "skipped"
    assert "no train-hparams rows" in empty["reason"].iloc[0]


def test_unreadable_train_set_is_a_failed_row_not_a_crash():
    class Broken(ArraySource):
        def load(self, dataset, layer, splits=None):
            if dataset == "flat" and splits == ("train",):
                raise OSError("disk on fire")
            return super().load(dataset, layer, splits)

    spec = JobSpec("m", "dim", train=["pairs", "flat"], eval=["pairs"], layers=[0])
    results = run_job(spec, Broken()).results
    flat = results[results["train_dataset"] == "flat"]
    assert (flat["status"] == "failed").all() and flat["reason"].str.contains("disk on fire").all()
    assert (results[results["train_dataset"] == "pairs"]["status"] == "ok").all()


def test_results_carry_the_depth_the_cache_records(tiny_cache, tmp_path):
    import shutil

    from probegen import cache
    from probegen.sources import CacheSource

    spec = JobSpec("tiny", "dim", train=["synthetic_capitals"], eval=DATASETS[:2], layers=[1])
    results = run_job(spec, CacheSource(tiny_cache, "tiny")).results
    assert results["depth"].dtype == "Int64" and results["depth"].tolist() == [4] * len(results)

    copy = tmp_path / "cache"
    shutil.copytree(tiny_cache, copy)

    def set_depth(dataset: str, depth: int | None) -> None:
        path = cache.dataset_dir(copy, "tiny", dataset) / cache.MANIFEST
        manifest = json.loads(path.read_text())
        manifest.pop("depth", None)
        path.write_text(json.dumps(manifest if depth is None else manifest | {"depth": depth}))

    # a dataset cached before the depth was recorded adds nothing; the others still know it
    set_depth("synthetic_animals", None)
    results = run_job(spec, CacheSource(copy, "tiny")).results
    assert results["depth"].tolist() == [4] * len(results)
    set_depth("synthetic_capitals", None)  # no dataset knows it: null, not a guess
    results = run_job(spec, CacheSource(copy, "tiny")).results
    assert results["depth"].isna().all() and len(results) == 4
    set_depth("synthetic_animals", 6)
    set_depth("synthetic_capitals", 4)
    with pytest.raises(cache.CacheError, match="disagree on its depth"):
        run_job(spec, CacheSource(copy, "tiny"))


def test_in_memory_results_carry_the_source_depth():
    source = ArraySource()
    spec = JobSpec("m", "dim", train=["pairs"], eval=["pairs"], layers=[0])
    assert run_job(spec, source).results["depth"].isna().all()
    source.depth_value = 12
    assert (run_job(spec, source).results["depth"] == 12).all()


def test_sweep_report_counts_jobs_killed_while_running(tmp_path, capsys):
    from omegaconf import OmegaConf

    from probegen.hydra_callbacks import SweepReport, write_status

    write_status(tmp_path / "0", ["probe=lr"], None)
    write_status(tmp_path / "1", ["probe=ccs"], None, state="running")  # never finished
    with pytest.raises(SystemExit) as exit_info:
        SweepReport().on_multirun_end(
            OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
        )
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "1 of 2 jobs ok" in out and "FAILED probe=ccs" in out and "killed?" in out


@pytest.mark.parametrize("probe_name", ["lr", "pca-g", "ccs"])
def test_fits_are_the_same_whatever_the_thread_count(probe_name):
    """Fits run single-threaded whatever the job's thread count: a job gives the same
    directions under the basic launcher (all threads) and the local one (one per job)."""

    class Varied(ArraySource):  # train datasets that differ, so a mix-up would show
        def load(self, dataset, layer, splits=None):
            acts = super().load(dataset.rstrip("0123456789"), layer, splits)
            shift = len(dataset) - len("pairs")  # 0, 1, 2, 3
            acts.X = np.roll(acts.X, shift, axis=1) * (1 + shift / 10)
            return acts

    names = ["pairs", "pairs1", "pairs22", "pairs333"]
    spec = JobSpec("m", probe_name, train=names, eval=["pairs"], layers=[0, 2])
    before, runs = torch.get_num_threads(), {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs[threads] = run_job(spec, Varied())
            assert torch.get_num_threads() == threads  # restored after the fits
    finally:
        torch.set_num_threads(before)
    one, two = runs[1], runs[2]
    assert one.directions.keys() == two.directions.keys() and len(one.directions) == 8
    for key in one.directions:
        np.testing.assert_array_equal(one.directions[key], two.directions[key])
    layer_0 = [one.directions[f"{name}/layer.0"].tobytes() for name in names]
    assert len(set(layer_0)) == 4  # each train dataset got its own fit
    cols = ["train_dataset", "layer", "eval_split", "accuracy", "status"]
    pd.testing.assert_frame_equal(one.results[cols], two.results[cols])


def test_jobs_sharing_a_pass_give_what_each_job_gives_alone():
    # A probe skipped on ungrouped data (fewer columns than train sets) and a
    # warm-starting probe, in one pass.
    specs = [
        JobSpec("m", "lr", train=["pairs", "flat"], eval=["pairs", "flat"], layers=[0, 2]),
        JobSpec("m", "lr-g", train=["pairs", "flat"], eval=["pairs", "flat"], layers=[0, 2]),
        JobSpec("m", "dim", train=["pairs", "flat"], eval=["pairs", "flat"], layers=[0, 2]),
        JobSpec("m", "pca", train=["pairs", "flat"], eval=["pairs", "flat"], layers=[0, 2]),
    ]
    shared = run_jobs(specs, ArraySource())
    for spec, together in zip(specs, shared, strict=True):
        alone = run_job(spec, ArraySource())
        assert set(together.results["probe"]) == {spec.probe}
        assert together.directions.keys() == alone.directions.keys()
        for key, direction in alone.directions.items():
            np.testing.assert_array_equal(together.directions[key], direction)
        numbers = ["accuracy", "auroc", "accuracy_fixed", "auroc_fixed", *NULL_COLUMNS]
        pd.testing.assert_frame_equal(
            together.results.drop(columns=["fit_seconds", *numbers]),
            alone.results.drop(columns=["fit_seconds", *numbers]),
        )
        for column in numbers:  # scores differ by float32 rounding at most
            np.testing.assert_allclose(
                together.results[column].astype(float), alone.results[column].astype(float),
                atol=1e-6,
            )  # fmt: skip
    flat_lr_g = shared[1].results.query("train_dataset == 'flat'")
    assert (flat_lr_g["status"] == "skipped").all()


def test_only_jobs_that_differ_in_the_probe_share_a_pass():
    a = JobSpec("m", "lr", train=["pairs"], eval=["pairs"], layers=[0])
    b = JobSpec("m", "dim", train=["pairs"], eval=["pairs"], layers=[2])
    with pytest.raises(ValueError, match="differ in more than the probe"):
        run_jobs([a, b], ArraySource())


@pytest.mark.parametrize(
    "keys, workers, weights, expected",
    [
        (["k"] * 8, 2, None, [[0, 2, 4, 6], [1, 3, 5, 7]]),  # equal weights: round-robin
        (["k"] * 4, 2, [1, 5, 1, 5], [[0, 1], [2, 3]]),  # the heavy ones apart
        (["k"] * 4, 2, [6, 1, 2, 3], [[0], [1, 2, 3]]),  # 6 against 1 + 2 + 3
        (["k"] * 3, 1, None, [[0, 1, 2]]),  # one worker: one shared pass
        (["a", "b", "a", "b"], 2, None, [[0, 2], [1, 3]]),  # a group per worker already
        (["a", None, "a", None], 2, None, [[0, 2], [1], [3]]),  # None: a job of its own
        (["k"] * 2, 4, None, [[0], [1]]),  # never more batches than jobs
    ],
)
def test_launcher_plans_worker_batches(keys, workers, weights, expected):
    from probegen.launcher import plan_worker_batches

    assert plan_worker_batches(keys, workers, weights) == expected


def test_local_launcher_shares_a_pass_between_probe_jobs(tiny_cache, tmp_path):
    common = ["train=[synthetic_capitals,got_larger_than]", "eval.datasets=[synthetic_animals]",
              "wandb.mode=offline"]  # fmt: skip
    run = probe(tmp_path, tiny_cache, "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=1",
                "probe=lr,dim,ccs-sub", *common)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "3 of 3 jobs ok" in run.stdout
    log = run.stdout + run.stderr
    assert "shared pass of 3 jobs: lr,dim,ccs-sub on tiny" in log
    assert log.count("results from the shared pass") == 3
    for job, name in enumerate(["lr", "dim", "ccs-sub"]):
        folder = tmp_path / "sweep" / str(job)
        shared = pd.read_parquet(folder / "results.parquet")
        assert list((folder / "wandb").glob("offline-run-*/run-*.wandb"))
        alone = probe(tmp_path / name, tiny_cache, f"probe={name}", *common[:2],
                      "wandb.mode=disabled")  # fmt: skip
        assert alone.returncode == 0, alone.stderr
        expected = pd.read_parquet(tmp_path / name / "run" / "results.parquet")
        assert len(shared) == len(expected) == 8 and set(shared["probe"]) == {name}
        cols = ["train_dataset", "layer", "eval_split", "n", "is_flipped", "status"]
        pd.testing.assert_frame_equal(shared[cols], expected[cols])
        assert (shared["status"] == "ok").all()  # scored, so the accuracies below compare
        np.testing.assert_allclose(shared["accuracy"], expected["accuracy"], atol=1e-6)


def test_local_launcher_runs_jobs_alone_when_the_shared_pass_fails(tiny_cache, tmp_path):
    run = probe(tmp_path, tiny_cache, "-m", "hydra/launcher=local", "hydra.launcher.n_jobs=1",
                "probe=lr,dim", "train=synthetic_capitals", "eval.datasets=[boolq]",
                "wandb.mode=disabled")  # fmt: skip
    assert run.returncode == 1
    assert "0 of 2 jobs ok" in run.stdout and "each job runs alone" in run.stdout + run.stderr
    for job in ("0", "1"):  # each job ran alone and recorded its own error
        status = json.loads((tmp_path / "sweep" / job / "job_status.json").read_text())
        assert status["status"] == "failed" and "CacheError" in status["error"]
        assert "python -m probegen.extract model=tiny dataset=boolq" in status["error"]


def test_probe_entry_point_imports_no_launcher():
    # Jobs get their shared-pass output by argument from the launcher's worker, never
    # through state the entry point would share with a launcher module.
    check = "import probegen.probe, sys; assert 'probegen.launcher' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_fit_device_auto_runs_and_a_missing_gpu_is_a_clear_error(monkeypatch):
    spec = JobSpec("m", "lr", train=["pairs", "flat"], eval=["pairs"], layers=[0, 2])
    cpu = run_job(spec, ArraySource())
    auto = run_job(dataclasses.replace(spec, device="auto"), ArraySource())
    assert auto.directions.keys() == cpu.directions.keys()
    for key, direction in cpu.directions.items():  # the CPU here; a GPU: float32 rounding
        np.testing.assert_allclose(auto.directions[key], direction, rtol=1e-3, atol=1e-5)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in [
        ("cuda", "sees no CUDA GPU.*device=cpu"),
        ("cuda:1", "sees no CUDA GPU"),
        ("gpu", "not a torch device"),
        ("meta", "probes fit on cpu or cuda"),
    ]:
        with pytest.raises(ValueError, match=message):
            run_job(dataclasses.replace(spec, device=device), ArraySource())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device='cuda:1', but torch sees 1 CUDA GPU\(s\)"):
        run_job(dataclasses.replace(spec, device="cuda:1"), ArraySource())


def test_device_is_a_probe_config_key_and_part_of_the_shared_pass_key():
    from hydra import compose, initialize_config_dir

    from probegen.probe_job import job_spec
    from probegen.sweep import shared_pass_key

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        default = job_spec(compose("probe", overrides=["train=synthetic_capitals"]))
        gpu = job_spec(compose("probe", overrides=["train=synthetic_capitals", "device=cuda:1"]))
    assert default.device == "cpu" and gpu.device == "cuda:1"
    assert shared_pass_key(default) != shared_pass_key(gpu)


def test_saved_intercepts_are_the_probes_own():
    from probegen.probes import make_probe

    source = ArraySource()
    spec = JobSpec("m", "dim", train=["pairs"], eval=["pairs"], layers=[0])
    output = run_job(spec, source)
    train = source.load("pairs", 0, ("train",))
    probe = make_probe("dim").fit(train.X, train.labels)
    np.testing.assert_array_equal(output.directions["pairs/layer.0"], probe.coef_)
    assert output.intercepts == {"pairs/layer.0": probe.intercept_}
    assert probe.intercept_ != 0  # DIM's threshold sits between the class means


def test_job_summary_line_counts_unconverged_fits(tiny_cache, tmp_path, capsys):
    from probegen.probe_job import run_probe_job
    from probegen.tracking import WandbSettings

    train = ["synthetic_capitals", "got_larger_than"]
    spec = JobSpec("tiny", "lr", train, ["synthetic_capitals"], [3], {"max_iter": 1})
    disabled = WandbSettings(mode="disabled")
    path = run_probe_job(spec, tiny_cache, tmp_path, disabled, {}, None, "unconverged")
    printed = capsys.readouterr().out
    assert "tiny lr: {'ok': 4}, 2 unconverged fits -> " in printed
    results = pd.read_parquet(path)
    assert results["reason"].str.startswith("not converged after 1 iterations (").all()
    spec.probe_params = {}
    run_probe_job(spec, tiny_cache, tmp_path, disabled, {}, None, "converged")
    assert "tiny lr: {'ok': 4}, 0 unconverged fits -> " in capsys.readouterr().out
