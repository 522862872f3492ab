"""The activation cache: skip on a matching key, resume, damage detection, the one integrity
rule, the writer and the read API."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from probegen import cache, cache_write
from probegen.cache_write import DatasetWriter
from probegen.datasets import Limits, SourceReader, build_rows
from probegen.extract import ExtractOptions, extract
from probegen.forward import LayerTap
from probegen.models import ModelSpec

REPO = Path(__file__).resolve().parents[1]

SPEC = ModelSpec.from_values("tiny", device="cpu")
LIMITS = Limits(train=40, train_hparams=20, validation=20)
DATASETS = ["synthetic_capitals", "got_larger_than"]
# A small budget makes many batches, so interruption and resumption have something to skip.
OPTIONS = ExtractOptions(layers="all", batch_tokens=256, progress=False, share_prefix=False)


def run(cache_dir: Path, datasets=DATASETS, options=OPTIONS) -> dict[str, str]:
    return extract(SPEC, datasets, cache_dir, LIMITS, SourceReader(), options)


def tensors(cache_dir: Path, dataset: str) -> dict[str, torch.Tensor]:
    return load_file(cache.dataset_dir(cache_dir, "tiny", dataset) / cache.ACTIVATIONS)


@pytest.fixture
def counted_forwards(monkeypatch):
    calls = []
    original = LayerTap.run

    def spy(self, model, ids, mask):
        calls.append(ids.shape[0])
        return original(self, model, ids, mask)

    monkeypatch.setattr(LayerTap, "run", spy)
    return calls


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run to compare against."""
    root = tmp_path_factory.mktemp("reference")
    assert run(root) == {d: "extracted" for d in DATASETS}
    return root


def test_layout_and_read_api(reference):
    directory = cache.dataset_dir(reference, "tiny", "got_larger_than")
    names = {p.name for p in directory.iterdir()}
    assert names == {cache.ACTIVATIONS, cache.ROWS, cache.MANIFEST, ".lock"}  # .lock: empty
    manifest = json.loads((directory / cache.MANIFEST).read_text())
    assert manifest["complete"] and manifest["layers"] == [0, 1, 2, 3]
    assert manifest["model"]["source"] == "tiny-qwen3-v1" and manifest["token_position"] == "last"
    rows = build_rows("got_larger_than", SourceReader(), LIMITS)
    assert manifest["n_rows"] == len(rows)
    acts = cache.load_activations(reference, "tiny", "got_larger_than", 3)
    assert acts.X.dtype == np.float32 and acts.X.shape == (len(rows), 64)
    np.testing.assert_array_equal(acts.row_ids, rows["row_id"].to_numpy(dtype=object))
    np.testing.assert_array_equal(acts.labels, rows["label"].to_numpy())
    np.testing.assert_array_equal(acts.groups, rows["group_id"].to_numpy(dtype=object))
    train = acts.split("train")
    assert set(train.splits) == {"train"} and len(train.X) == (rows["split"] == "train").sum()
    assert cache.cached_datasets(reference, "tiny") == sorted(DATASETS)
    with pytest.raises(cache.CacheError, match="layer 7 not cached"):
        cache.CachedDataset(reference, "tiny", "got_larger_than").layer(7)


def test_missing_dataset_names_the_extract_command(tmp_path):
    with pytest.raises(cache.CacheError, match=r"probegen.extract model=tiny dataset=imdb"):
        cache.load_activations(tmp_path, "tiny", "imdb", 1)


def test_same_key_does_no_model_work(reference, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded for a cached dataset")

    monkeypatch.setattr("probegen.extract.load_model", no_model)
    monkeypatch.setattr("probegen.extract.load_tokenizer", no_model)
    assert run(reference) == {d: "cached" for d in DATASETS}


def test_manifest_records_the_depth_and_older_caches_get_it_without_model_work(
    reference, tmp_path, monkeypatch
):
    directory = cache.dataset_dir(reference, "tiny", "got_larger_than")
    manifest = json.loads((directory / cache.MANIFEST).read_text())
    assert manifest["depth"] == 4  # the tiny model's decoder blocks, outside the key
    assert cache.CachedDataset(reference, "tiny", "got_larger_than").depth == 4

    # a cache written before the field existed: readers get None ...
    old = tmp_path / "old"
    shutil.copytree(reference, old)
    old_dir = cache.dataset_dir(old, "tiny", "got_larger_than")
    before = {k: v for k, v in manifest.items() if k != "depth"}
    (old_dir / cache.MANIFEST).write_text(json.dumps(before))
    assert cache.CachedDataset(old, "tiny", "got_larger_than").depth is None

    # ... and extract, finding its key unchanged, only records the depth in the manifest
    def no_model(*args, **kwargs):
        raise AssertionError("the model must not be loaded for a cached dataset")

    monkeypatch.setattr("probegen.extract.load_model", no_model)
    assert run(old, ["got_larger_than"]) == {"got_larger_than": "cached"}
    assert json.loads((old_dir / cache.MANIFEST).read_text()) == manifest
    assert cache.CachedDataset(old, "tiny", "got_larger_than").depth == 4


def test_changed_limits_change_the_key(reference, tmp_path):
    other = extract(SPEC, ["got_larger_than"], tmp_path, Limits(5, 5, 5), SourceReader(), OPTIONS)
    assert other == {"got_larger_than": "extracted"}
    a = json.loads(
        (cache.dataset_dir(tmp_path, "tiny", "got_larger_than") / "manifest.json").read_text()
    )
    b = json.loads(
        (cache.dataset_dir(reference, "tiny", "got_larger_than") / "manifest.json").read_text()
    )
    assert a["key"] != b["key"]


def test_default_cache_is_bf16_read_as_float32(tmp_path):
    spec = ModelSpec.from_values("tiny", device="cpu")  # dtype=auto: fp32 compute, bf16 cache
    extract(spec, ["synthetic_capitals"], tmp_path, Limits(5, 5, 5), SourceReader(), OPTIONS)
    stored = tensors(tmp_path, "synthetic_capitals")["layer.1"]
    assert stored.dtype == torch.bfloat16
    assert cache.load_activations(tmp_path, "tiny", "synthetic_capitals", 1).X.dtype == np.float32


def test_resume_after_interruption_recomputes_nothing_finished(
    reference, tmp_path, monkeypatch, counted_forwards
):
    original = DatasetWriter.add
    written = []

    def crash_after_three(self, rows, activations):
        if len(written) == 3:
            raise KeyboardInterrupt  # as if the job were killed between batches
        written.append(list(rows))
        original(self, rows, activations)

    monkeypatch.setattr(DatasetWriter, "add", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, ["got_larger_than"])
    first_run_batches = len(counted_forwards)
    assert first_run_batches == 4  # three saved, the fourth computed but lost
    monkeypatch.setattr(DatasetWriter, "add", original)
    counted_forwards.clear()
    run(tmp_path, ["got_larger_than"])
    full = [len(b) for b in plan_for(tmp_path)]
    assert len(counted_forwards) == len(full) - 3
    assert_same(tmp_path, reference, "got_larger_than")
    directory = cache.dataset_dir(tmp_path, "tiny", "got_larger_than")
    assert not (directory / cache.PARTS).exists()


def plan_for(cache_dir):
    from probegen.forward import plan_batches
    from probegen.models import tiny_tokenizer

    rows = build_rows("got_larger_than", SourceReader(), LIMITS)
    lengths = [len(t) for t in tiny_tokenizer()(list(rows["text"]))["input_ids"]]
    return plan_batches(lengths, OPTIONS.batch_tokens)


def assert_same(a: Path, b: Path, dataset: str) -> None:
    ta, tb = tensors(a, dataset), tensors(b, dataset)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_final_file_is_detected_and_redone(reference, tmp_path, damage, counted_forwards):
    run(tmp_path, ["synthetic_capitals"])
    path = cache.dataset_dir(tmp_path, "tiny", "synthetic_capitals") / cache.ACTIVATIONS
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(cache.CacheError, match="truncated"):
            cache.load_activations(tmp_path, "tiny", "synthetic_capitals", 1)
    else:
        data[-100] ^= 0xFF  # a flipped bit inside the tensor data: same size, other bytes
        path.write_bytes(bytes(data))
    counted_forwards.clear()
    assert run(tmp_path, ["synthetic_capitals"]) == {"synthetic_capitals": "extracted"}
    assert counted_forwards  # the model ran again
    assert_same(tmp_path, reference, "synthetic_capitals")


def test_damaged_part_is_recomputed(reference, tmp_path, monkeypatch, counted_forwards):
    original = DatasetWriter.add
    written = []

    def crash_after_five(self, rows, activations):
        if len(written) == 5:
            raise KeyboardInterrupt
        written.append(list(rows))
        original(self, rows, activations)

    monkeypatch.setattr(DatasetWriter, "add", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, ["got_larger_than"])
    monkeypatch.setattr(DatasetWriter, "add", original)
    parts = sorted(
        (cache.dataset_dir(tmp_path, "tiny", "got_larger_than") / cache.PARTS).glob(
            "part-*.safetensors"
        )
    )
    assert len(parts) == 5
    blob = bytearray(parts[0].read_bytes())
    blob[-8] ^= 0xFF
    parts[0].write_bytes(bytes(blob))
    parts[1].write_bytes(parts[1].read_bytes()[:50])  # truncated
    counted_forwards.clear()
    run(tmp_path, ["got_larger_than"])
    assert len(counted_forwards) == len(plan_for(tmp_path)) - 3
    assert_same(tmp_path, reference, "got_larger_than")


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted(tmp_path):
    """A real SIGKILL in the middle of extraction; the second run finishes the rest."""

    def cmd(cache_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "probegen.extract",
            "model=tiny",
            "dataset=synthetic_arithmetic",
            f"cache_dir={cache_dir}",
            f"hydra.run.dir={tmp_path / 'out'}",
            "batch_tokens=40",
            "layer=all",
            "progress=false",
            "limits.train=120",
            "limits.train_hparams=40",
            "limits.validation=40",
        ]

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    parts_dir = cache.dataset_dir(tmp_path / "cache", "tiny", "synthetic_arithmetic") / cache.PARTS
    proc = subprocess.Popen(
        cmd(tmp_path / "cache"),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts_dir.glob("part-*"))) < 5:
        assert proc.poll() is None, "extraction finished before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts_dir.glob("part-*.safetensors")))
    assert done_before >= 5
    subprocess.run(cmd(tmp_path / "cache"), cwd=REPO, env=env, check=True, capture_output=True)
    assert not parts_dir.exists()
    subprocess.run(cmd(tmp_path / "again"), cwd=REPO, env=env, check=True, capture_output=True)
    assert_same(tmp_path / "cache", tmp_path / "again", "synthetic_arithmetic")


def test_part_of_another_configuration_is_never_used(tmp_path, counted_forwards):
    directory = cache.dataset_dir(tmp_path, "tiny", "synthetic_capitals")
    foreign = {"key": "some-other-key", "layers": [0, 1, 2, 3], "n_rows": 2}
    with DatasetWriter(directory, foreign | {"cache_dtype": "bfloat16"}) as writer:
        writer.add([0, 1], {i: torch.full((2, 64), 7.0) for i in range(4)})
    run(tmp_path, ["synthetic_capitals"])
    X = cache.load_activations(tmp_path, "tiny", "synthetic_capitals", 0).X
    assert not (X[:2] == 7.0).all()
    assert counted_forwards  # row 0 and 1 were computed, not taken from the foreign part


def test_second_job_on_the_same_dataset_is_refused(tmp_path):
    directory = cache.dataset_dir(tmp_path, "tiny", "synthetic_capitals")
    holder = {"key": "k", "layers": [0], "n_rows": 1, "cache_dtype": "float32"}
    with (
        DatasetWriter(directory, holder),
        pytest.raises(cache.CacheError, match="another job is extracting"),
    ):
        run(tmp_path, ["synthetic_capitals"])
    assert run(tmp_path, ["synthetic_capitals"]) == {"synthetic_capitals": "extracted"}


def test_crash_before_the_manifest_leaves_no_finished_dataset(reference, tmp_path, monkeypatch):
    run(tmp_path, ["synthetic_capitals"])
    original = cache_write._atomic_write_bytes

    def fail_on_manifest(path, data):
        if path.name == cache.MANIFEST:
            raise KeyboardInterrupt
        original(path, data)

    monkeypatch.setattr(cache_write, "_atomic_write_bytes", fail_on_manifest)
    with pytest.raises(KeyboardInterrupt):  # re-extraction under another key dies at the end
        extract(SPEC, ["synthetic_capitals"], tmp_path, Limits(5, 5, 5), SourceReader(), OPTIONS)
    with pytest.raises(cache.CacheError, match="no finished activations"):
        cache.load_activations(tmp_path, "tiny", "synthetic_capitals", 1)
    monkeypatch.setattr(cache_write, "_atomic_write_bytes", original)
    assert run(tmp_path, ["synthetic_capitals"]) == {"synthetic_capitals": "extracted"}
    assert_same(tmp_path, reference, "synthetic_capitals")


def test_reader_refuses_a_file_of_the_right_size_with_other_bytes(reference, tmp_path):
    shutil.copytree(reference, tmp_path / "copy")
    path = cache.dataset_dir(tmp_path / "copy", "tiny", "got_larger_than") / cache.ACTIVATIONS
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the tensor data: the size still matches the manifest
    path.write_bytes(bytes(data))
    expected = rf"{re.escape(str(path))} is damaged: its blake2b digest differs.*re-run: "
    expected += r"python -m probegen.extract model=tiny dataset=got_larger_than"
    with pytest.raises(cache.CacheError, match=expected):
        cache.CachedDataset(tmp_path / "copy", "tiny", "got_larger_than")


def test_a_verified_file_is_hashed_once_per_process_until_it_is_rewritten(
    reference, tmp_path, monkeypatch
):
    root = tmp_path / "copy"
    shutil.copytree(reference, root)
    directory = cache.dataset_dir(root, "tiny", "got_larger_than")
    activations, rows = directory / cache.ACTIVATIONS, directory / cache.ROWS
    hashed = []
    original = cache.file_digest

    def counted(path):
        hashed.append(path.name)
        return original(path)

    def open_times(n: int) -> None:
        for _ in range(n):
            cache.CachedDataset(root, "tiny", "got_larger_than")

    def set_mtime(path: Path, seconds_ago: float) -> None:
        os.utime(path, (time.time() - seconds_ago,) * 2)

    monkeypatch.setattr(cache, "file_digest", counted)
    # just written: could still change within its mtime's clock tick, so never remembered
    set_mtime(activations, 0)
    set_mtime(rows, 0)
    open_times(2)
    assert hashed == [cache.ACTIVATIONS, cache.ROWS] * 2
    hashed.clear()
    set_mtime(activations, 3600)
    set_mtime(rows, 3600)
    open_times(3)
    assert hashed == [cache.ACTIVATIONS, cache.ROWS]  # the first open only

    # rewritten with other bytes of the same size: hashed again, and refused
    data = bytearray(activations.read_bytes())
    data[-100] ^= 0xFF
    activations.write_bytes(bytes(data))
    set_mtime(activations, 3000)
    hashed.clear()
    with pytest.raises(cache.CacheError, match="digest differs"):
        open_times(1)
    assert hashed == [cache.ACTIVATIONS]
    # failures are not remembered; restored, it is verified afresh, then remembered again
    data[-100] ^= 0xFF
    activations.write_bytes(bytes(data))
    set_mtime(activations, 2000)
    hashed.clear()
    open_times(2)
    assert hashed == [cache.ACTIVATIONS]


def test_writer_resumes_from_its_parts_and_finishes_a_readable_dataset(tmp_path):
    directory = cache.dataset_dir(tmp_path, "m", "d")
    manifest = {"key": "k1", "layers": [0, 2], "n_rows": 5, "cache_dtype": "float32", "depth": 3}
    acts = {i: torch.randn(5, 8) for i in (0, 2)}

    def batch(rows: list[int]) -> dict[int, torch.Tensor]:
        return {i: a[rows] for i, a in acts.items()}

    rows = pd.DataFrame(
        {
            "row_id": [f"d/{i}" for i in range(5)],
            "label": [True, False, True, False, True],
            "group_id": ["a", "a", "b", "b", None],
            "answer_type": [None] * 5,
            "split": ["train", "train", "train-hparams", "validation", "validation"],
        }
    )
    with DatasetWriter(directory, manifest) as writer:
        assert writer.done == set()
        writer.add([3, 1], batch([3, 1]))
        with pytest.raises(RuntimeError, match="3 rows were never extracted"):
            writer.finish(rows)
    assert not (directory / cache.MANIFEST).exists()
    with pytest.raises(RuntimeError, match="`with` block"):
        writer.add([0], batch([0]))
    with DatasetWriter(directory, manifest | {"key": "k2"}) as other:
        assert other.done == set()  # another key's parts are never used ...
    with DatasetWriter(directory, manifest) as writer:
        assert writer.done == set()  # ... and are deleted, so this one starts afresh too
        writer.add([3, 1], batch([3, 1]))
    with DatasetWriter(directory, manifest) as writer:
        assert writer.done == {1, 3}  # restored from the parts
        writer.add([0, 2, 4], batch([0, 2, 4]))
        writer.finish(rows)
    assert {p.name for p in directory.iterdir()} == {
        cache.ACTIVATIONS, cache.ROWS, cache.MANIFEST, ".lock"
    }  # fmt: skip
    data = cache.CachedDataset(tmp_path, "m", "d")
    assert data.layers == [0, 2] and data.depth == 3 and data.manifest["key"] == "k1"
    for i in (0, 2):
        np.testing.assert_array_equal(data.layer(i), acts[i].numpy())
    assert cache.check_files(directory, data.manifest) is None
    np.testing.assert_array_equal(data.load(0).row_ids, rows["row_id"].to_numpy(dtype=object))

    # the "already cached" path: same key -> kept, leftovers of killed runs removed
    (directory / cache.PARTS).mkdir()
    (directory / f"{cache.ROWS}.tmp.123").write_bytes(b"half")
    assert cache_write.reuse_cached(directory, manifest)
    assert not (directory / cache.PARTS).exists()
    assert not (directory / f"{cache.ROWS}.tmp.123").exists()
    assert not cache_write.reuse_cached(directory, manifest | {"key": "k2"})


def test_bf16_cache_is_close_to_fp32(tmp_path):
    fp32 = ModelSpec.from_values("tiny", dtype="fp32", device="cpu")
    extract(fp32, ["synthetic_capitals"], tmp_path / "a", Limits(5, 5, 5), SourceReader(), OPTIONS)
    extract(SPEC, ["synthetic_capitals"], tmp_path / "b", Limits(5, 5, 5), SourceReader(), OPTIONS)
    assert tensors(tmp_path / "a", "synthetic_capitals")["layer.2"].dtype == torch.float32
    a = cache.load_activations(tmp_path / "a", "tiny", "synthetic_capitals", 2).X
    b = cache.load_activations(tmp_path / "b", "tiny", "synthetic_capitals", 2).X
    np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-2 * np.abs(a).max())


def test_project_equals_load_then_matmul(reference, threads):
    data = cache.CachedDataset(reference, "tiny", "got_larger_than")
    W = torch.randn(64, 3)
    for splits in (None, ("train",), ("validation", "train-hparams"), ("validation", "train")):
        loaded = data.load(2, splits)
        projected = data.project(2, W, splits)
        np.testing.assert_allclose(projected.X, loaded.X @ W.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(projected.row_ids, loaded.row_ids)
        np.testing.assert_array_equal(projected.labels, loaded.labels)
    assert data.project(2, W, ("train",)).X.shape == (len(data.load(2, ("train",)).X), 3)
