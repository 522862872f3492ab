"""Stage 1: `python -m probegen.extract model=14b dataset=all` -> cached activations
(docs/design.md §5).

Rows are built for every dataset first; the model is loaded only if some dataset is not
already cached with the same key, and each finished batch is saved at once, so re-runs do
no model work and interrupted runs resume where they stopped. The forward passes are
`probegen.forward`'s, the cache's files `probegen.cache_write`'s; this module joins them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from probegen import cache, datasets
from probegen.cache_write import DatasetWriter, reuse_cached
from probegen.datasets import Limits, SourceReader
from probegen.forward import Extractor, plan_batches, select_layers
from probegen.models import (
    TINY_LAYERS,
    LoadedModel,
    ModelSpec,
    gguf_block_count,
    gguf_path,
    load_model,
    load_tokenizer,
)
from probegen.prefix import Pack, attention_weight, plan_packs, sharing_problem

log = logging.getLogger(__name__)

TOKEN_POSITION = "last"


@dataclass(frozen=True)
class ExtractOptions:
    layers: str | int | tuple[int, ...] = "default"
    batch_tokens: int | None = None  # padded tokens per batch; None: 16384 on GPU, 4096 on CPU
    padding_side: str = "left"
    progress: bool = True
    # Run each group's common token prefix once for all its rows (probegen.prefix, §4);
    # False: every row whole, as before. Either gives the same activations within tolerance.
    share_prefix: bool = True


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
    layers = select_layers(options.layers, n_layers)
    todo: list[tuple[str, pd.DataFrame, dict]] = []
    status: dict[str, str] = {}
    for dataset in dataset_ids:
        rows = datasets.build_rows(dataset, reader, limits)
        manifest = dataset_manifest(spec, dataset, rows, limits, layers, depth=n_layers)
        directory = cache.dataset_dir(cache_dir, spec.name, dataset)
        # reuse_cached also records the depth in a cache written before it was, so the probe
        # stage can carry it into the results without the model being run again
        if reuse_cached(directory, manifest):
            log.info("%s/%s: cached with the same key; nothing to do", spec.name, dataset)
            status[dataset] = "cached"
        else:
            todo.append((dataset, rows, manifest))
    if not todo:
        return status
    loaded = load_model(spec, load_tokenizer(spec))
    problem = sharing_problem(loaded.model) if options.share_prefix else None
    if problem:
        log.warning("%s: prefix sharing off, every row runs whole (%s)", spec.name, problem)
        options = replace(options, share_prefix=False)
    for dataset, rows, manifest in todo:
        run_model(loaded, dataset, rows, manifest, cache_dir, layers, options)
        status[dataset] = "extracted"
    return status


def run_model(
    loaded: LoadedModel,
    dataset: str,
    rows: pd.DataFrame,
    manifest: dict,
    cache_dir: Path,
    layers: list[int],
    options: ExtractOptions,
) -> None:
    """Extract one dataset, resuming from any finished batches of an earlier run."""
    spec, tokenizer = loaded.spec, loaded.tokenizer
    token_ids = tokenizer(list(rows["text"]), add_special_tokens=True)["input_ids"]
    rows = rows.assign(n_tokens=[len(t) for t in token_ids])
    budget = options.batch_tokens or (16384 if loaded.device.type == "cuda" else 4096)
    plan = plan_packed_batches(loaded, rows, token_ids, budget, options.share_prefix)
    tokens = int(rows["n_tokens"].sum())
    tokens_run = sum(p.length(token_ids) for batch in plan for p in batch)
    # Outside the key, like depth: shared and unshared activations are interchangeable
    # (§5), so either mode resumes the other's parts. Figures of the whole plan.
    manifest = {
        **manifest,
        "share_prefix": options.share_prefix,
        "tokens_run": tokens_run,
        "tokens_saved": tokens - tokens_run,
    }
    extractor = Extractor(
        loaded.model,
        layers,
        pad_id=tokenizer.pad_token_id,
        token_budget=budget,
        padding_side=options.padding_side,
        input_device=loaded.device,
        progress=options.progress,
    )
    start = time.perf_counter()
    with DatasetWriter(cache.dataset_dir(cache_dir, spec.name, dataset), manifest) as writer:
        done = writer.done
        if done:
            log.info(
                "%s/%s: resuming, %d of %d rows done", spec.name, dataset, len(done), len(rows)
            )
        # Batches as an uninterrupted run makes them, less the rows already saved, so the
        # final files equal that run's.
        pending = [[q for p in batch if (q := p.without(done))] for batch in plan]
        pending = [batch for batch in pending if batch]
        names = rows["row_id"].tolist()
        for result in extractor.run(token_ids, pending, names, f"{spec.name}/{dataset}"):
            writer.add(result.rows, result.activations)
        writer.finish(rows)
    log.info(
        "%s/%s: %d rows, %d layers cached in %.1fs; %d of %d tokens run (prefix sharing %s)",
        spec.name,
        dataset,
        len(rows),
        len(layers),
        time.perf_counter() - start,
        tokens_run,
        tokens,
        "on" if options.share_prefix else "off",
    )


def plan_packed_batches(
    loaded: LoadedModel,
    rows: pd.DataFrame,
    token_ids: Sequence[Sequence[int]],
    budget: int,
    share_prefix: bool,
) -> list[list[Pack]]:
    """Batches of packs covering every row once: a group's rows in packs sharing their
    common prefix when `share_prefix`, else one row per pack; longest first, under `budget`."""
    if share_prefix:
        groups = [None if pd.isna(g) else g for g in rows["group_id"]]
        weight = attention_weight(loaded.model.config)
        packs = plan_packs(token_ids, groups, budget, weight)
    else:
        packs = [Pack((r,)) for r in range(len(token_ids))]
    batches = plan_batches([p.length(token_ids) for p in packs], budget)
    return [[packs[j] for j in batch] for batch in batches]


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
            share_prefix=bool(cfg.share_prefix),
        ),
    )
    for dataset, state in status.items():
        print(f"{spec.name}/{dataset}: {state}")


if __name__ == "__main__":
    main()
