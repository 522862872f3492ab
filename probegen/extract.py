"""Stage 1: `python -m probegen.extract model=14b dataset=all` -> cached activations
(docs/design.md §5).

Rows are built for every dataset first; the model is loaded only if some dataset is not
already cached with the same key, and each finished batch is saved at once, so re-runs do
no model work and interrupted runs resume where they stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from probegen import cache, datasets
from probegen.datasets import Limits, SourceReader
from probegen.extraction import Extractor, plan_batches, resolve_layers
from probegen.models import (
    TINY_LAYERS,
    LoadedModel,
    ModelSpec,
    gguf_block_count,
    gguf_path,
    load_model,
    load_tokenizer,
)

log = logging.getLogger(__name__)

TOKEN_POSITION = "last"


@dataclass(frozen=True)
class ExtractOptions:
    layers: str | int | tuple[int, ...] = "default"
    batch_tokens: int | None = None  # padded tokens per batch; None: 16384 on GPU, 4096 on CPU
    padding_side: str = "left"
    progress: bool = True


def count_layers(spec: ModelSpec) -> int:
    """Number of decoder blocks, from the config alone (no weights loaded)."""
    if spec.loader == "tiny":
        return TINY_LAYERS
    if spec.loader == "gguf":
        return gguf_block_count(gguf_path())
    from transformers import AutoConfig

    source = spec.path or spec.hf_id
    try:
        config = AutoConfig.from_pretrained(source, revision=spec.revision, trust_remote_code=False)
    except OSError as err:
        raise RuntimeError(
            f"model {spec.name!r}: cannot read the config of {source} ({err}). Check the hub "
            f"id / path and the network (HF_HUB_OFFLINE), or pass model.path=/local/dir."
        ) from err
    config = getattr(config, "text_config", config)
    return int(config.num_hidden_layers)


def dataset_manifest(
    spec: ModelSpec,
    dataset: str,
    rows: pd.DataFrame,
    limits: Limits,
    layers: list[int],
    depth: int | None = None,
) -> dict:
    """The manifest fields that identify one dataset's extraction, with their hash as "key",
    and, when given, the model's `depth` (number of decoder blocks) beside them.

    The limits recorded are only those that shape this dataset's rows (`Limits.record`):
    a limit some other dataset reads must not invalidate this one's cache.
    """
    manifest = {
        "format_version": cache.FORMAT_VERSION,
        "model": spec.identity(),
        "dataset": dataset,
        "fingerprint": cache.rows_fingerprint(rows),
        "cache_dtype": str(spec.cache_dtype()).removeprefix("torch."),
        "limits": limits.record(datasets.get(dataset).reads),
        "layers": layers,
        "token_position": TOKEN_POSITION,
        "n_rows": len(rows),
    }
    manifest["key"] = cache.manifest_key(manifest)
    if depth is not None:
        # Added after the key, outside it: the depth follows from the model already in the
        # key, and caches written before it was recorded must keep their keys (§5).
        manifest["depth"] = int(depth)
    return manifest


def extract(
    spec: ModelSpec,
    dataset_ids: Sequence[str],
    cache_dir: Path,
    limits: Limits,
    reader: SourceReader,
    options: ExtractOptions = ExtractOptions(),
) -> dict[str, str]:
    """Extract and cache every dataset; returns dataset -> "cached" | "extracted"."""
    n_layers = count_layers(spec)
    layers = resolve_layers(options.layers, n_layers)
    todo: list[tuple[str, object, dict]] = []
    status: dict[str, str] = {}
    for dataset in dataset_ids:
        rows = datasets.build_rows(dataset, reader, limits)
        manifest = dataset_manifest(spec, dataset, rows, limits, layers, depth=n_layers)
        directory = cache.dataset_dir(cache_dir, spec.name, dataset)
        if cache.is_complete(directory, manifest["key"]):
            log.info("%s/%s: cached with the same key; nothing to do", spec.name, dataset)
            with contextlib.suppress(cache.CacheError), cache.ExtractionLock(directory):
                cache.remove_leftovers(directory)  # only when no other job is writing here
                # a cache written before the depth was recorded gets it, so the probe stage
                # can carry it into the results without the model being run again
                cache.record_depth(directory, n_layers)
            status[dataset] = "cached"
        else:
            todo.append((dataset, rows, manifest))
    if not todo:
        return status
    loaded = load_model(spec, load_tokenizer(spec))
    for dataset, rows, manifest in todo:
        run_model(loaded, dataset, rows, manifest, cache_dir, layers, options)
        status[dataset] = "extracted"
    return status


def run_model(
    loaded: LoadedModel,
    dataset: str,
    rows,
    manifest: dict,
    cache_dir: Path,
    layers: list[int],
    options: ExtractOptions,
) -> None:
    """Extract one dataset, resuming from any finished batches of an earlier run."""
    directory = cache.dataset_dir(cache_dir, loaded.spec.name, dataset)
    with cache.ExtractionLock(directory):
        _run_model_locked(loaded, dataset, rows, manifest, directory, layers, options)


def _run_model_locked(loaded, dataset, rows, manifest, directory, layers, options) -> None:
    spec, tokenizer = loaded.spec, loaded.tokenizer
    cache.remove_leftovers_tmp(directory)
    token_ids = tokenizer(list(rows["text"]), add_special_tokens=True)["input_ids"]
    rows = rows.assign(n_tokens=[len(t) for t in token_ids])
    store = cache.ActivationStore(len(rows), layers, spec.cache_dtype())
    parts = cache.PartStore(directory, manifest["key"])
    parts.load_into(store)
    done = store.done
    budget = options.batch_tokens or (16384 if loaded.device.type == "cuda" else 4096)
    plan = plan_batches(rows["n_tokens"].tolist(), budget)
    pending = [[r for r in batch if r not in done] for batch in plan]
    pending = [b for b in pending if b]
    if done:
        log.info("%s/%s: resuming, %d of %d rows done", spec.name, dataset, len(done), len(rows))
    start = time.perf_counter()
    extractor = Extractor(
        loaded.model,
        layers,
        pad_id=tokenizer.pad_token_id,
        token_budget=budget,
        padding_side=options.padding_side,
        input_device=loaded.device,
        progress=options.progress,
    )
    names = rows["row_id"].tolist()
    for result in extractor.run(token_ids, pending, names, f"{spec.name}/{dataset}"):
        stored = {i: t.to(store.dtype) for i, t in result.activations.items()}
        parts.write(result.rows, stored)
        store.put(result.rows, stored)
    cache.write_dataset(directory, rows, store, manifest)
    cache.remove_leftovers(directory)
    log.info(
        "%s/%s: %d rows, %d layers cached in %.1fs",
        spec.name,
        dataset,
        len(rows),
        len(layers),
        time.perf_counter() - start,
    )


def _layers_value(value) -> str | int | tuple[int, ...]:
    if OmegaConf.is_list(value) or isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    return value


@hydra.main(version_base="1.3", config_path="../conf", config_name="extract")
def main(cfg: DictConfig) -> None:
    spec = ModelSpec.from_values(**OmegaConf.to_container(cfg.model, resolve=True))
    selection = cfg.dataset
    ids = datasets.resolve(list(selection) if OmegaConf.is_list(selection) else str(selection))
    status = extract(
        spec,
        ids,
        Path(cfg.cache_dir),
        Limits(**cfg.limits),
        SourceReader(cfg.data_dir),
        ExtractOptions(
            layers=_layers_value(cfg.layer),
            batch_tokens=cfg.batch_tokens,
            padding_side=cfg.padding_side,
            progress=cfg.progress,
        ),
    )
    for dataset, state in status.items():
        print(f"{spec.name}/{dataset}: {state}")


if __name__ == "__main__":
    main()
