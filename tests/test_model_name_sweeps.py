"""A sweep of a custom model (`model.path=` / `model.hf_id=`) and its aggregation find each
other: the sweep folder is named after the model's cache name (docs/design.md §2, §7), the
name its results carry and `scripts/aggregate.py` looks under — not the preset's name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from probegen.aggregate import find_sweeps
from probegen.datasets import Limits, SourceReader
from probegen.extract import ExtractOptions, extract
from probegen.model_spec import ModelSpec
from probegen.models import load_model

REPO = Path(__file__).resolve().parents[1]
DATASET = "synthetic_capitals"
LOCAL = "my-local-lm"  # the folder name = the derived cache name
PRESET = "smollm2-135m"  # conf/probe.yaml's and conf/aggregate.yaml's default model


def run(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    """A stage as a user runs it, from `cwd` (so its relative multirun/ and reports/ land in
    the test's folder)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model saved with save_pretrained to a folder, and a cache of one dataset at
    one layer extracted from it under its derived name."""
    root = tmp_path_factory.mktemp("local")
    tiny = load_model(ModelSpec.from_values("tiny", device="cpu"))
    folder = root / LOCAL
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    spec = ModelSpec.from_values(PRESET, path=str(folder), device="cpu")
    assert spec.name == LOCAL
    cache_dir = root / "cache"
    options = ExtractOptions(layers=(3,), progress=False)
    extract(spec, [DATASET], cache_dir, Limits(40, 20, 20), SourceReader(), options)
    return folder, cache_dir


def test_sweep_of_a_local_model_and_its_aggregation_find_each_other(local_model, tmp_path):
    folder, cache_dir = local_model
    probe = run(
        tmp_path, "-m", "probegen.probe", "-m", "probe=dim", f"model.path={folder}",
        f"train={DATASET}", f"eval.datasets={DATASET}", "layer=3", f"cache_dir={cache_dir}",
        "wandb.mode=disabled",
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    multirun = tmp_path / "multirun"
    # the sweep lands under the derived name, nothing under the preset's
    assert sorted(p.name for p in multirun.iterdir()) == [LOCAL]
    (sweep,) = find_sweeps(multirun, LOCAL)
    ours = pd.read_parquet(sweep / "0" / "results.parquet")
    assert set(ours["model"]) == {LOCAL} and (ours["status"] == "ok").all()

    # A newer sweep of the preset itself: what `aggregate` of the preset would read.
    decoy = multirun / PRESET / "2999-12-31" / "23-59-59" / "0"
    decoy.mkdir(parents=True)
    ours.assign(model=PRESET).to_parquet(decoy / "results.parquet")

    aggregate = run(
        tmp_path, str(REPO / "scripts" / "aggregate.py"), f"model.path={folder}",
        f"multirun_dir={multirun}", "figures=[r2_probes]", "wandb.mode=disabled",
        f"hydra.run.dir={tmp_path / 'outputs'}",
    )  # fmt: skip
    assert aggregate.returncode == 0, aggregate.stderr
    summary = json.loads((tmp_path / "reports" / LOCAL / "summary.json").read_text())
    assert list(summary["models"]) == [LOCAL]
    assert summary["sources"] == [str(sweep)]  # our sweep's jobs, not the preset's
    assert not (tmp_path / "reports" / PRESET).exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], PRESET),
        (["model=14b"], "14b"),
        (["model=14b", "model.hf_id=Qwen/Qwen3-14B"], "14b"),  # the preset's own id
        (["model=4b", "model.hf_id=meta-llama/Llama-2-13b-hf"], "meta-llama--Llama-2-13b-hf"),
        (["model=tiny", "model.path=/models/My LM"], "My--LM"),
    ],
)
def test_sweep_dir_names_the_model_as_the_job_does(overrides, expected):
    """conf/probe.yaml's sweep folder, resolved by Hydra, uses the name the job uses."""
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("probe", overrides=overrides, return_hydra_config=True)
    job_name = ModelSpec.from_values(**OmegaConf.to_container(cfg.model, resolve=True)).name
    assert job_name == expected
    assert Path(cfg.hydra.sweep.dir).parts[:2] == ("multirun", expected)
