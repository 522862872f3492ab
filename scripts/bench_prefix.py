"""Prefix-sharing benchmark on study-shaped rows, made without a download: synthetic source
files in the hub schemas of the study's 17 datasets, read by probegen's own builders (so
prompts are the real templates of probegen/datasets/{dlk,repe,got}.py), with passages of
realistic lengths.

Lengths (words, uniform in the range) follow the sources' typical sizes: imdb reviews
120-350, boolq passages 60-160, RACE articles 200-400, amazon 40-110, …; RepE questions
have their real 4 (5 for CommonsenseQA) choices, DLK examples 2 rows, GoT pairs 2.
`compare` is `scripts/bench_extract.py --prefix`: shared against unshared extraction
(docs/design.md §4) of these rows, tokens run and wall time.
"""

from __future__ import annotations

import csv
import json
import os
import random
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from probegen import datasets
from probegen.datasets import Limits, SourceReader
from probegen.forward import Extractor, decoder_layers, default_layers, plan_batches
from probegen.prefix import attention_weight, plan_packs, sharing_problem

_VOCABULARY = (
    "the of and to in is was for on that with as by at from his her it an were are which "
    "this be or had not but their has have its one all also new two after first been other "
    "who more into time when year city river school music film war state world team people "
    "game life family water season record group house story church line system power north "
    "during under while second government between party company village found known great "
    "three would south early several later named park area public series album small local "
    "national work since about students teacher morning market winter summer father mother "
    "children doctor garden animal island forest valley bridge station history language"
)
WORDS = _VOCABULARY.split()

# dataset -> (first, last) words of its long field
LONG_FIELD = {
    "imdb": (120, 350), "amazon_polarity": (40, 110), "ag_news": (25, 50),
    "dbpedia_14": (25, 65), "rte": (20, 70), "boolq": (60, 160), "race": (200, 400),
}  # fmt: skip


class Words:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def __call__(self, low: int, high: int | None = None) -> str:
        n = self.rng.randint(low, high or low)
        text = " ".join(self.rng.choice(WORDS) for _ in range(n))
        return text[:1].upper() + text[1:]

    def long(self, dataset: str) -> str:
        return ". ".join(self(8, 16) for _ in range(self.rng.randint(*LONG_FIELD[dataset]) // 12))


def _record(dataset: str, w: Words, i: int) -> dict:
    rng = w.rng
    if dataset == "imdb":
        return {"text": w.long(dataset), "label": rng.randint(0, 1)}
    if dataset == "amazon_polarity":
        return {"title": w(3, 6), "content": w.long(dataset), "label": rng.randint(0, 1)}
    if dataset == "ag_news":
        return {"text": w.long(dataset), "label": rng.randint(0, 3)}
    if dataset == "dbpedia_14":
        return {"title": w(2, 3), "content": w.long(dataset), "label": rng.randint(0, 13)}
    if dataset == "rte":
        return {"premise": w.long(dataset), "hypothesis": w(6, 12), "idx": i,
                "label": rng.randint(0, 1)}  # fmt: skip
    if dataset == "copa":
        return {"premise": w(5, 9), "choice1": w(4, 8), "choice2": w(4, 8),
                "question": rng.choice(["cause", "effect"]), "idx": i,
                "label": rng.randint(0, 1)}  # fmt: skip
    if dataset == "boolq":
        return {"question": w(6, 12).lower(), "passage": w.long(dataset), "idx": i,
                "label": rng.randint(0, 1)}  # fmt: skip
    if dataset == "race":
        return {"example_id": f"r{i}", "article": w.long(dataset), "question": w(8, 14) + "?",
                "options": [w(3, 9) for _ in range(4)], "answer": rng.choice("ABCD")}  # fmt: skip
    n, stem = (5, (10, 16)) if dataset == "common_sense_qa" else (4, (14, 30))
    key = "question_stem" if dataset == "open_book_qa" else "question"
    if dataset == "open_book_qa":
        stem = (6, 14)
    labels = list("ABCDE"[:n])
    return {"id": f"q{i}", key: w(*stem), "answerKey": rng.choice(labels),
            "choices": {"text": [w(1, 6) for _ in range(n)], "label": labels}}  # fmt: skip


SPLITS = {  # source splits probegen reads
    **{d: ("train", "test") for d in ("imdb", "amazon_polarity", "ag_news", "dbpedia_14")},
    **{d: ("train", "validation") for d in ("rte", "copa", "boolq")},
    **{d: ("train", "validation") for d in datasets.resolve("repe")},
}


def _city(w: Words) -> tuple[str, str]:
    return w(1).capitalize(), w(1, 2).title()


def _got_files(folder: Path, w: Words, n: int) -> None:
    """cities / sp_en_trans and their negations (paired by row, opposite labels), and the
    ungrouped conjunctions and disjunctions."""
    folder.mkdir(parents=True, exist_ok=True)
    tables: dict[str, list[tuple[str, int]]] = {k: [] for k in (
        "cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans", "cities_cities_conj",
        "cities_cities_disj")}  # fmt: skip
    for _ in range(n):
        (city, country), label = _city(w), w.rng.randint(0, 1)
        tables["cities"].append((f"The city of {city} is in {country}.", label))
        tables["neg_cities"].append((f"The city of {city} is not in {country}.", 1 - label))
        spanish, english = w(1), w(1)
        tables["sp_en_trans"].append((f"The Spanish word '{spanish}' means '{english}'.", label))
        tables["neg_sp_en_trans"].append(
            (f"The Spanish word '{spanish}' does not mean '{english}'.", 1 - label)
        )
        (a, b), (c, d) = _city(w), _city(w)
        tables["cities_cities_conj"].append(
            (f"It is the case both that the city of {a} is in {b} and that the city of {c} "
             f"is in {d}.", label))  # fmt: skip
        tables["cities_cities_disj"].append(
            (f"It is the case either that the city of {a} is in {b} or that the city of {c} "
             f"is in {d}.", label))  # fmt: skip
    for name, table in tables.items():
        with open(folder / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["statement", "label"])
            writer.writerows(table)


def write_sources(folder: Path, groups: int, seed: int = 0) -> None:
    """Source files for `groups` groups of each study dataset under `folder` (a data_dir)."""
    w = Words(seed)
    for dataset, splits in SPLITS.items():
        (folder / dataset).mkdir(parents=True, exist_ok=True)
        for k, split in enumerate(splits):  # the groups spread over both source splits
            count = (groups + 1 - k) // 2
            lines = [json.dumps(_record(dataset, w, i)) for i in range(count)]
            (folder / dataset / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    _got_files(folder / "got", w, groups)


def study_rows(folder: Path, groups: int, seed: int = 0) -> pd.DataFrame:
    """Rows of the 17 study datasets, `groups` groups each (got_larger_than: the first
    `groups` of every split as the limits keep them)."""
    write_sources(folder, groups, seed)
    reader = SourceReader(data_dir=folder)
    frames = []
    for dataset in datasets.resolve("study"):
        limits = Limits(None, None, None, dlk_source=None)
        if dataset == "got_larger_than":  # generated in full: keep a comparable share
            third = max(1, groups // 3)
            limits = Limits(third, third, third, dlk_source=None)
        frames.append(datasets.build_rows(dataset, reader, limits))
    return pd.concat(frames, ignore_index=True)


def _activations(extractor, token_ids, batches) -> tuple[dict, float]:
    """row -> layer -> activation, and the wall time of the run."""
    out, start = {}, time.perf_counter()
    for result in extractor.run(token_ids, batches):
        for j, row in enumerate(result.rows):
            out[row] = {i: t[j] for i, t in result.activations.items()}
    return out, time.perf_counter() - start


def _differences(a: dict, b: dict) -> tuple[float, float]:
    """Largest ||a - b|| / ||b|| of a row's activation at a layer, and largest |a - b|."""
    pairs = [(a[r][i].float(), b[r][i].float()) for r in b for i in b[r]]
    relative = max(float((x - y).norm() / y.norm()) for x, y in pairs)
    return relative, max(float((x - y).abs().max()) for x, y in pairs)


def compare(args, model, tokenizer, device: torch.device) -> dict:
    """Shared vs unshared extraction of the same study-shaped rows in one process: tokens
    run, wall time (best of --repeats, the modes alternating, after a warm-up batch each)
    and the largest relative difference of their activations. Prints and returns them."""
    if args.groups < 2:
        raise SystemExit("--groups must be at least 2: the groups spread over two source splits")
    with tempfile.TemporaryDirectory() as folder:
        rows = study_rows(Path(folder), args.groups, args.seed)
    vocab = model.get_input_embeddings().weight.shape[0]
    token_ids = [[min(t, vocab - 1) for t in s] for s in tokenizer(list(rows["text"]))["input_ids"]]
    groups = [None if pd.isna(g) else (d, g) for d, g in zip(rows["dataset"], rows["group_id"],
                                                             strict=True)]  # fmt: skip
    budget = args.batch_tokens
    problem = sharing_problem(model)
    if problem:
        raise SystemExit(f"this model cannot share prefixes: {problem}")
    packs = plan_packs(token_ids, groups, budget, attention_weight(model.config))
    plans = {
        "unshared": plan_batches([len(t) for t in token_ids], budget),
        "shared": [
            [packs[j] for j in b]
            for b in plan_batches([p.length(token_ids) for p in packs], budget)
        ],
    }
    layers = default_layers(len(decoder_layers(model)))
    extractor = Extractor(model, layers, pad_id=min(tokenizer.pad_token_id, vocab - 1),
                          token_budget=budget, input_device=device, progress=False)  # fmt: skip
    tokens = sum(len(t) for t in token_ids)
    tokens_run = sum(p.length(token_ids) for p in packs)
    load_before = os.getloadavg()
    seconds: dict[str, float] = {}
    outputs: dict[str, dict] = {}
    for plan in plans.values():
        _activations(extractor, token_ids, plan[:1])  # warm-up
    for _ in range(args.repeats):
        for mode, plan in plans.items():
            outputs[mode], took = _activations(extractor, token_ids, plan)
            seconds[mode] = min(seconds.get(mode, float("inf")), took)
    relative, absolute = _differences(outputs["shared"], outputs["unshared"])
    throughput = _throughput(model, layers, device, args.peak_tflops, tokens, tokens_run, seconds)
    figures = {
        "rows": len(rows),
        "groups": args.groups,
        "packs": len(packs),
        "tokens": tokens,
        "tokens_run": tokens_run,
        "tokens_ratio": tokens_run / tokens,
        "seconds_unshared": seconds["unshared"],
        "seconds_shared": seconds["shared"],
        "wall_ratio": seconds["shared"] / seconds["unshared"],
        "max_relative_diff": relative,
        "max_abs_diff": absolute,
        "load_before": load_before[0],
        "load_after": os.getloadavg()[0],
        **throughput,
    }
    f = figures
    print(f"rows {f['rows']} ({args.groups} groups per study dataset), packs {f['packs']}, "
          f"layers {layers[0]}..{layers[-1]}, budget {budget}")  # fmt: skip
    print(f"tokens  unshared {tokens}  shared {tokens_run}  "
          f"ratio {_verdict(f['tokens_ratio'], 0.55)}")  # fmt: skip
    print(f"seconds unshared {seconds['unshared']:.1f}  shared {seconds['shared']:.1f}  "
          f"ratio {_verdict(f['wall_ratio'], 0.6)}")  # fmt: skip
    print(f"activations differ by at most {relative:.2e} relative (row, layer), {absolute:.2e}"
          f" absolute")  # fmt: skip
    for mode in ("unshared", "shared"):
        mfu = f[f"mfu_{mode}"]
        print(f"{mode:<8} {f[f'tok_s_{mode}']:>8.0f} row tokens/s  "
              f"{f[f'gflop_s_{mode}']:>9.1f} GFLOP/s  MFU {'-' if mfu is None else f'{mfu:.1%}'}  "
              f"Qwen3-14B study projection {f[f'study_14b_minutes_{mode}']:.1f} min")  # fmt: skip
    print(f"load average (1 min): {f['load_before']:.2f} before, {f['load_after']:.2f} after")
    return figures


# Tokens of the study's rows at the default limits (SmolLM2's tokenizer, 16 of the 18
# datasets, counted on real copies when issue 15 was filed), whole and with each group's
# common prefix counted once.
STUDY_TOKENS = {"unshared": 6.24e6, "shared": 3.02e6}


def qwen3_14b_block_params() -> int:
    """Parameters of Qwen3-14B's 40 decoder blocks (all run for the default layers 1..39),
    counted on a meta-device model of its published shape."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=151936, hidden_size=5120, intermediate_size=17408,
                         num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=8,
                         head_dim=128, tie_word_embeddings=False)  # fmt: skip
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    return sum(p.numel() for p in decoder_layers(model).parameters())


def _throughput(model, layers, device, peak_tflops, tokens, tokens_run, seconds) -> dict:
    """Per mode: row tokens per second (what a user waits for), model FLOP/s and utilisation
    (2 x parameters of the blocks run per token run; attention scores left out) and the
    minutes Qwen3-14B would take on the study's tokens at this run's FLOP/s."""
    blocks = decoder_layers(model)
    params = sum(p.numel() for p in blocks[: max(layers) + 1].parameters())
    params_14b = qwen3_14b_block_params()
    study_flops = {mode: 2 * params_14b * n for mode, n in STUDY_TOKENS.items()}
    out: dict[str, float | None] = {}
    for mode, run in (("unshared", tokens), ("shared", tokens_run)):
        flops = 2 * params * run / seconds[mode]
        out[f"tok_s_{mode}"] = tokens / seconds[mode]
        out[f"gflop_s_{mode}"] = flops / 1e9
        out[f"mfu_{mode}"] = flops / (peak_tflops * 1e12) if device.type == "cuda" else None
        out[f"study_14b_minutes_{mode}"] = study_flops[mode] / flops / 60
    return out


def _verdict(value: float, bound: float) -> str:
    return f"{value:.3f}  {'PASS' if value <= bound else 'FAIL'} (target <= {bound})"
