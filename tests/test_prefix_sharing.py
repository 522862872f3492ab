"""Prefix sharing (`probegen.prefix`, docs/design.md §4): a group's rows run as one pack —
their common token prefix once — and give the activations of an unshared run, within
FP32_TOL (BF16_TOL in bf16), for every group shape, padding side, attention implementation
and model type that shares; other models fall back to whole rows with one log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_extraction import OomAbove

from probegen import cache
from probegen.cache_write import DatasetWriter
from probegen.datasets import Limits, SourceReader, build_rows
from probegen.extract import ExtractOptions, extract
from probegen.forward import Extractor, plan_batches
from probegen.models import LoadedModel, ModelSpec, load_model, tiny_model
from probegen.prefix import Pack, attention_weight, common_prefix, plan_packs, sharing_problem

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"
ALL = Limits(None, None, None, dlk_source=None)
LAYERS = [0, 1, 3]
# Largest relative difference ||shared - unshared|| / ||unshared|| of a row's activation at
# a layer (docs/design.md §4). Measured in fp32: <= 3e-7 (tiny), 5.2e-6 (SmolLM2, study-
# shaped rows); bf16: 0.6% (tiny), 4.2% (SmolLM2) — as far as batching alone moves them
# (SmolLM2: batched vs one row at a time 3.6e-6 in fp32, 3.7% in bf16).
FP32_TOL = 1e-5
BF16_TOL = 5e-2
PASSAGE = " ".join(f"word{i % 37} and the river number {i}." for i in range(40))  # 1.3k


def run(model, token_ids, batches, layers=LAYERS, side="left", budget=10**6):
    """row -> layer -> activation, of running `batches` (rows or packs)."""
    extractor = Extractor(
        model, layers, pad_id=0, token_budget=budget, padding_side=side, progress=False
    )
    out = {}
    for result in extractor.run(token_ids, batches):
        for j, row in enumerate(result.rows):
            out[row] = {i: result.activations[i][j] for i in layers}
    return out


def shared_and_unshared(
    model, token_ids, groups, side="left", budget=10**6, layers=LAYERS, weight=None
):
    """(shared, unshared, packs): both modes batched as extraction batches them (`weight`:
    the cost rule's attention weight, None: the model's)."""
    unshared = run(model, token_ids, plan_batches([len(t) for t in token_ids], budget), layers,
                   side, budget)  # fmt: skip
    weight = attention_weight(model.config) if weight is None else weight
    packs = plan_packs(token_ids, groups, budget, weight)
    lengths = [p.length(token_ids) for p in packs]
    batches = [[packs[j] for j in b] for b in plan_batches(lengths, budget)]
    return run(model, token_ids, batches, layers, side, budget), unshared, packs


def worst_relative(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(
        float((a[r][i].float() - b[r][i].float()).norm() / b[r][i].float().norm())
        for r in a
        for i in a[r]
    )


def tokens_of(tiny, texts):
    return [tiny.tokenizer(t).input_ids for t in texts]


def fixture_rows(*names: str) -> tuple[pd.DataFrame, list]:
    """Rows of fixture datasets, and their groups (dataset, group id) as extract sees them."""
    rows = pd.concat([build_rows(d, SourceReader(data_dir=FIXTURES), ALL) for d in names])
    groups = [
        None if pd.isna(g) else (d, g)
        for d, g in zip(rows["dataset"], rows["group_id"], strict=True)
    ]
    return rows, groups


# --- planning ----------------------------------------------------------------------------


def test_common_prefix_keeps_every_rows_last_token():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # identical rows: the last token apart
    assert common_prefix([[1, 2], [1, 2, 3, 4]]) == 1  # a row that is another's prefix
    assert common_prefix([[7], [7, 8]]) == 0
    assert common_prefix([[1, 2], [3, 4]]) == 0


def test_plan_packs_covers_rows_once():
    ids = [[1, 2, 3, 4], [1, 2, 3, 5], [9, 9], [1, 2, 3, 6, 7], [5, 6], [8, 1], [8, 2]]
    groups = ["a", "a", None, "a", "b", "c", "c"]
    packs = plan_packs(ids, groups, token_budget=100)
    assert packs == [Pack((0, 1, 3), 3), Pack((2,)), Pack((4,)), Pack((5, 6), 1)]
    assert packs[0].length(ids) == 3 + 1 + 1 + 2
    # A pack never exceeds the budget: a large group makes several, each with the prefix.
    small = plan_packs(ids, groups, token_budget=5)
    assert Pack((0, 1), 3) in small and Pack((3,)) in small
    # A pack whose (masked) attention would cost more than its saved tokens is not made.
    assert plan_packs(ids[5:], ["c", "c"], 100, attention_weight=10.0) == [
        Pack((0,)),
        Pack((1,)),
    ]
    assert Pack((0, 1, 3), 3).without({1}) == Pack((0, 3), 3)
    assert Pack((0, 1), 3).without({1}) == Pack((0,))
    assert Pack((0, 1), 3).without({0, 1}) is None


def test_long_suffixes_are_not_packed():
    """A pack's masked attention computes every query-key pair, where rows alone skip the
    causal upper triangle: on a SmolLM2-shaped model two rows of 600 shared and 1,000 own
    tokens run slower packed, four of 1,500 and 300 faster (docs/benchmarks.md)."""
    from transformers import LlamaConfig

    smollm2 = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                          num_key_value_heads=3)  # fmt: skip
    weight = attention_weight(smollm2)

    def group(prefix: int, own: int, rows: int) -> list[list[int]]:
        return [list(range(prefix)) + [10**5 + 10**4 * r + t for t in range(own)]
                for r in range(rows)]  # fmt: skip

    assert plan_packs(group(600, 1000, 2), ["g"] * 2, 10**5, weight) == [Pack((0,)), Pack((1,))]
    assert plan_packs(group(1500, 300, 4), ["g"] * 4, 10**5, weight) == [Pack((0, 1, 2, 3), 1500)]


def test_sharing_problem(tiny):
    assert sharing_problem(tiny.model) is None  # Qwen3, sdpa
    assert "no transformers config" in sharing_problem(torch.nn.Linear(2, 2))
    eager = tiny_model(len(tiny.tokenizer))
    eager.config._attn_implementation = "flex_attention"
    assert "flex_attention" in sharing_problem(eager)
    assert "sliding-window" in sharing_problem(sliding_window_model(len(tiny.tokenizer)))


# --- shared == unshared -------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize(
    "dataset",
    ["imdb", "boolq", "race", "common_sense_qa", "got_cities", "got_cities_cities_conj"],
    ids=["dlk-imdb", "dlk-boolq", "repe-race", "repe-csqa", "got-pairs", "got-ungrouped"],
)
def test_shared_equals_unshared_on_study_rows(tiny, dataset, side):
    rows, groups = fixture_rows(dataset)
    token_ids = tokens_of(tiny, rows["text"])
    shared, unshared, packs = shared_and_unshared(tiny.model, token_ids, groups, side)
    assert worst_relative(shared, unshared) <= FP32_TOL
    if dataset == "got_cities_cities_conj":  # ungrouped: every row alone, as before
        assert all(len(p.rows) == 1 for p in packs)
    else:
        assert all(len(p.rows) > 1 and p.prefix > 0 for p in packs)


@pytest.mark.parametrize("side", ["left", "right"])
def test_repe_shaped_group_of_five_sharing_a_long_passage(tiny, side):
    texts = [
        f"Article: {PASSAGE}\n\nQuestion: What flows?\nAnswer: {answer}\nThe probability is"
        for answer in ("the river", "no", "a mountain and the sea in the evening", "x", "all")
    ]
    texts += ["Consider the short one: yes", "Consider the short one: no"]  # another group
    token_ids = tokens_of(tiny, texts)
    groups = ["q1"] * 5 + ["q2"] * 2
    shared, unshared, packs = shared_and_unshared(tiny.model, token_ids, groups, side)
    assert worst_relative(shared, unshared) <= FP32_TOL
    assert packs[0].rows == (0, 1, 2, 3, 4) and packs[0].prefix > len(PASSAGE)
    assert sum(p.length(token_ids) for p in packs) < 0.3 * sum(map(len, token_ids))


def test_group_of_one_runs_exactly_as_before(tiny):
    token_ids = tokens_of(tiny, ["Only one row in this group.", "Another lone row"])
    shared, unshared, packs = shared_and_unshared(tiny.model, token_ids, ["g", "h"])
    assert packs == [Pack((0,)), Pack((1,))]
    for r in unshared:
        for i in LAYERS:
            assert torch.equal(shared[r][i], unshared[r][i])


def test_rows_differing_only_in_the_last_token(tiny):
    token_ids = [[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9, 10, 12], [5, 6, 7, 8, 9, 10, 13]]
    shared, unshared, packs = shared_and_unshared(tiny.model, token_ids, ["g"] * 3)
    assert packs == [Pack((0, 1, 2), 6)]
    assert worst_relative(shared, unshared) <= FP32_TOL


@pytest.mark.parametrize("side", ["left", "right"])
def test_rows_of_very_different_lengths_in_one_group(tiny, side):
    stem = f"{PASSAGE[:300]}\nQuestion: which is right? Answer: "
    texts = [stem + "A", stem + PASSAGE[:600], stem + "B" * 3, stem + PASSAGE[:200]]
    texts.append("Unrelated short row")  # ungrouped, in the same batch
    token_ids = tokens_of(tiny, texts)
    # the tiny model's attention outweighs its blocks: packed here by weight 0, for the test
    groups = ["g"] * 4 + [None]
    shared, unshared, packs = shared_and_unshared(tiny.model, token_ids, groups, side, weight=0)
    assert worst_relative(shared, unshared) <= FP32_TOL
    assert packs[0].rows == (0, 1, 2, 3)


def test_group_larger_than_one_batch(tiny):
    texts = [f"{PASSAGE[:300]} The answer is {i}, {'because ' * 4}." for i in range(12)]
    token_ids = tokens_of(tiny, texts)
    budget = 400  # the prefix is ~330 tokens: a few rows per pack, one pack per batch
    shared, unshared, packs = shared_and_unshared(tiny.model, token_ids, ["g"] * 12, budget=budget)
    assert len(packs) > 2 and sorted(r for p in packs for r in p.rows) == list(range(12))
    assert all(p.length(token_ids) <= budget for p in packs)
    assert worst_relative(shared, unshared) <= FP32_TOL


def test_bf16(tiny):
    model = tiny_model(len(tiny.tokenizer)).to(torch.bfloat16).eval()
    rows, groups = fixture_rows("race", "imdb", "got_cities")
    token_ids = tokens_of(tiny, rows["text"])
    shared, unshared, packs = shared_and_unshared(model, token_ids, groups)
    assert all(len(p.rows) > 1 for p in packs)
    assert shared[0][1].dtype == torch.bfloat16
    assert worst_relative(shared, unshared) <= BF16_TOL


def test_eager_attention_takes_the_additive_mask(tiny):
    model = tiny_model(len(tiny.tokenizer))
    model.config._attn_implementation = "eager"
    rows, groups = fixture_rows("race", "boolq")
    keep = [*range(8), *range(24, 28)]
    token_ids = [tokens_of(tiny, rows["text"])[i] for i in keep]
    for side in ("left", "right"):
        shared, unshared, packs = shared_and_unshared(
            model, token_ids, [groups[i] for i in keep], side
        )
        assert len(packs) == 4  # two race questions, two boolq examples
        assert worst_relative(shared, unshared) <= FP32_TOL


def small_config(kind: str, vocab: int):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    sizes = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    if kind == "llama":  # SmolLM2's architecture
        return LlamaConfig(**sizes)
    if kind == "qwen2":
        return Qwen2Config(**sizes)
    return MistralConfig(**sizes, sliding_window=None)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_other_model_types_that_share(tiny, kind):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(small_config(kind, len(tiny.tokenizer))).eval()
    assert sharing_problem(model) is None
    rows, groups = fixture_rows("common_sense_qa", "copa")
    token_ids = tokens_of(tiny, rows["text"])
    shared, unshared, packs = shared_and_unshared(model, token_ids, groups, "right")
    assert all(len(p.rows) > 1 for p in packs)
    assert worst_relative(shared, unshared) <= FP32_TOL


def test_out_of_memory_splits_a_lone_pack(tiny):
    texts = [f"{PASSAGE[:100]} The answer is {i}: {'because ' * 3}" for i in range(6)]
    token_ids = tokens_of(tiny, texts)
    packs = plan_packs(token_ids, ["g"] * 6, 10**4)
    assert len(packs) == 1 and packs[0].length(token_ids) > 250
    wrapped = OomAbove(tiny.model, limit=180)  # a pack of half the rows is still too long
    got = run(wrapped, token_ids, [packs], budget=10**4)
    assert wrapped.ooms >= 1 and sorted(got) == list(range(6))
    expected = run(tiny.model, token_ids, [list(range(6))])
    assert worst_relative(got, expected) <= FP32_TOL


# --- through extract: resume, manifest, fallback ------------------------------------------

SPEC = ModelSpec.from_values("tiny", device="cpu")
LIMITS = Limits(train=20, train_hparams=10, validation=10)
OPTIONS = ExtractOptions(layers="all", batch_tokens=256, progress=False)


def extracted(cache_dir: Path, dataset: str, options=OPTIONS) -> tuple[dict, dict]:
    """(manifest, tensors) of one dataset extracted into `cache_dir`."""
    extract(SPEC, [dataset], cache_dir, LIMITS, SourceReader(), options)
    directory = cache.dataset_dir(cache_dir, "tiny", dataset)
    from safetensors.torch import load_file

    return json.loads((directory / cache.MANIFEST).read_text()), load_file(
        directory / cache.ACTIVATIONS
    )


def rows_of(tensors: dict) -> dict:
    n = next(iter(tensors.values())).shape[0]
    return {r: {k: t[r] for k, t in tensors.items()} for r in range(n)}


def test_manifest_records_the_mode_and_tokens_outside_the_key(tmp_path):
    on, shared = extracted(tmp_path / "on", "got_larger_than")
    off, unshared = extracted(
        tmp_path / "off",
        "got_larger_than",
        ExtractOptions(**{**vars(OPTIONS), "share_prefix": False}),
    )
    assert on["key"] == off["key"]  # interchangeable within tolerance: one key
    assert on["share_prefix"] is True and off["share_prefix"] is False
    assert off["tokens_saved"] == 0 and on["tokens_saved"] > 0
    assert on["tokens_run"] + on["tokens_saved"] == off["tokens_run"]
    # the cache is bf16 (dtype auto on CPU): the modes agree within bf16 rounding
    assert worst_relative(rows_of(shared), rows_of(unshared)) <= BF16_TOL / 3


@pytest.mark.parametrize(
    ("first", "then"),
    [(True, True), (True, False), (False, True)],
    ids=["shared-then-shared", "shared-then-whole", "whole-then-shared"],
)
def test_resume_after_a_crash_skips_rows_done_whichever_mode_wrote_them(
    tmp_path, monkeypatch, first, then
):
    _, reference = extracted(tmp_path / "reference", "got_larger_than")
    original, parts, seen = DatasetWriter.add, [], []

    def crash_after_three(self, rows, activations):
        if len(parts) == 3:
            raise KeyboardInterrupt  # as if the job were killed between batches
        parts.append(list(rows))
        original(self, rows, activations)

    def counting(self, rows, activations):
        seen.extend(rows)
        original(self, rows, activations)

    def options(share: bool) -> ExtractOptions:
        return ExtractOptions(**{**vars(OPTIONS), "share_prefix": share})

    monkeypatch.setattr(DatasetWriter, "add", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        extracted(tmp_path / "cache", "got_larger_than", options(first))
    written = [r for part in parts for r in part]
    monkeypatch.setattr(DatasetWriter, "add", counting)
    manifest, resumed = extracted(tmp_path / "cache", "got_larger_than", options(then))
    assert manifest["complete"] and manifest["share_prefix"] is then
    assert not set(seen) & set(written)  # the rows done are skipped, not recomputed
    assert sorted(seen + written) == list(range(manifest["n_rows"]))
    directory = cache.dataset_dir(tmp_path / "cache", "tiny", "got_larger_than")
    assert not (directory / cache.PARTS).exists()
    if first and then:  # the same batches as an uninterrupted run: the same bytes
        assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    else:
        assert worst_relative(rows_of(resumed), rows_of(reference)) <= BF16_TOL / 3


def sliding_window_model(vocab: int) -> torch.nn.Module:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, use_sliding_window=True, sliding_window=64,
                         max_window_layers=0)  # fmt: skip
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).eval()


def test_a_model_that_cannot_share_falls_back_with_one_log_line(tmp_path, monkeypatch, caplog):
    def load_sliding(spec, tokenizer=None):
        tiny = load_model(spec, tokenizer)
        model = sliding_window_model(len(tiny.tokenizer))
        return LoadedModel(spec, model, tiny.tokenizer, torch.device("cpu"))

    monkeypatch.setattr("probegen.extract.load_model", load_sliding)
    with caplog.at_level(logging.INFO, logger="probegen"):
        extract(SPEC, ["got_larger_than", "synthetic_capitals"], tmp_path, LIMITS,
                SourceReader(), OPTIONS)  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "sliding-window" in lines[0]
    for dataset in ("got_larger_than", "synthetic_capitals"):
        manifest = json.loads(
            (cache.dataset_dir(tmp_path, "tiny", dataset) / cache.MANIFEST).read_text()
        )
        assert manifest["share_prefix"] is False and manifest["tokens_saved"] == 0


def test_packs_on_a_model_that_cannot_share_are_refused(tiny):
    model = sliding_window_model(len(tiny.tokenizer))
    with pytest.raises(ValueError, match="sliding-window"):
        run(model, [[1, 2, 3], [1, 2, 4]], [[Pack((0, 1), 2)]])


# --- the embedded SmolLM2 -----------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_shared_equals_unshared_fp32_and_bf16():
    lm = load_model(ModelSpec.from_values("smollm2-135m", device="cpu", dtype="fp32"))
    rows, groups = fixture_rows("race", "boolq", "common_sense_qa", "got_cities")
    keep = [i for i, g in enumerate(groups) if g[1] in ("train-0", "0")]  # a group of each
    token_ids = [lm.tokenizer(rows["text"].iloc[i]).input_ids for i in keep]
    groups = [groups[i] for i in keep]
    layers = [1, 15, 29]
    shared, unshared, packs = shared_and_unshared(lm.model, token_ids, groups, "left",
                                                  layers=layers)  # fmt: skip
    assert worst_relative(shared, unshared) <= FP32_TOL
    assert all(len(p.rows) > 1 for p in packs)
    assert sum(p.length(token_ids) for p in packs) < 0.6 * sum(map(len, token_ids))
    lm.model.to(torch.bfloat16)
    shared, unshared, _ = shared_and_unshared(lm.model, token_ids, groups, "right", layers=layers)
    assert worst_relative(shared, unshared) <= BF16_TOL


@pytest.mark.parametrize("window", [None, 131072], ids=["window-null", "window-unused"])
def test_a_qwen3_checkpoint_loaded_from_disk_shares(tiny, tmp_path, window):
    """Qwen3-4B/8B/14B's config.json has use_sliding_window false; loaded the way the hub
    presets load (from_pretrained, default attention), such a checkpoint shares."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=len(tiny.tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, sliding_window=window, use_sliding_window=False,
                         max_window_layers=4)  # fmt: skip
    folder = tmp_path / "qwen3-like"
    Qwen3ForCausalLM(config).save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    loaded = load_model(ModelSpec.from_values("4b", path=str(folder), device="cpu"))
    assert loaded.model.config._attn_implementation == "sdpa"
    assert sharing_problem(loaded.model) is None
