"""Model loading (docs/design.md §4): the hub loader, the embedded GGUF, `tiny`.

Which model a config means (presets, custom models, cache names) is `probegen.model_spec`,
which needs no torch; this module is the torch side, imported only by stages 1 and 2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# ModelSpec and gguf_path are defined in model_spec; the extract stage and the benchmarks
# import them from here too, beside the loaders they go with.
from probegen.model_spec import DTYPE_NAMES, ModelSpec, gguf_path

log = logging.getLogger(__name__)

TINY_LAYERS = 4  # decoder layers of the `tiny` preset's model (tiny_model builds it)
DTYPES = {key: getattr(torch, name) for key, name in DTYPE_NAMES.items()}


def gguf_block_count(path: Path) -> int:
    """Number of decoder blocks, read from the GGUF header (no tensors loaded)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    arch_field = fields["general.architecture"]
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    count = fields[f"{arch}.block_count"]
    return int(count.parts[count.data[0]][0])


@dataclass
class LoadedModel:
    """A model ready for extraction, with the tokenizer it was loaded with."""

    spec: ModelSpec
    model: nn.Module
    tokenizer: object
    device: torch.device  # where inputs go (the embedding's device under device_map)


def load_tokenizer(spec: ModelSpec):
    """The tokenizer of `spec`, with a pad token (the EOS token when the model has none)."""
    from transformers import AutoTokenizer

    if spec.loader == "tiny":
        tok = tiny_tokenizer()
    elif spec.loader == "gguf":
        path = gguf_path()
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
        tok = AutoTokenizer.from_pretrained(
            spec.path or spec.hf_id, revision=spec.revision, trust_remote_code=False
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: ModelSpec, tokenizer=None) -> LoadedModel:
    """Load weights in eval mode on the configured device and dtype."""
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or load_tokenizer(spec)
    device, dtype = spec.resolved_device(), spec.resolved_dtype()
    if spec.loader == "tiny":
        model = tiny_model(vocab_size=len(tokenizer))
    else:
        kwargs: dict = {"dtype": dtype, "trust_remote_code": False}
        if spec.loader == "gguf":
            path = gguf_path()
            source, kwargs["gguf_file"] = str(path.parent), path.name
        else:
            source, kwargs["revision"] = spec.path or spec.hf_id, spec.revision
        if spec.loader == "hub":
            # Load straight onto the device (no full copy in CPU RAM first); with several
            # GPUs and model.device=auto, accelerate spreads the blocks over all of them.
            multi = device == "cuda" and spec.device == "auto" and torch.cuda.device_count() > 1
            kwargs["device_map"] = "auto" if multi else {"": device}
        try:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as err:
            raise RuntimeError(
                f"model {spec.name!r}: cannot load {source} ({err}). Check the hub id / path, "
                f"the network (HF_HUB_OFFLINE) or pass model.path=/local/dir."
            ) from err
    if spec.loader != "hub":  # GGUF de-quantises to its own dtype; tiny is built on CPU
        model = model.to(device=device, dtype=dtype)
    model.eval()
    input_device = model.get_input_embeddings().weight.device
    log.info("loaded %s (%s) on %s as %s", spec.name, spec.hf_id or spec.path, device, dtype)
    return LoadedModel(spec, model, tokenizer, input_device)


def tiny_tokenizer():
    """A byte-level tokenizer built in code (one token per UTF-8 byte): no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<|endoftext|>"] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def tiny_model(vocab_size: int, seed: int = 0) -> nn.Module:
    """A random-weight 4-layer Qwen3 (hidden 64), identical on every machine for a seed."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Qwen3ForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return model
