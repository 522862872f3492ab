"""The activation cache (DESIGN §5): layout, manifests, resumable parts and the read API.

Layout: <cache_dir>/activations/<model>/<dataset>/{activations.safetensors, rows.parquet,
manifest.json}. While a dataset is being extracted, each finished batch is a file in
`.parts/`; writes go to a temporary name and are renamed into place, so a killed run leaves
only whole files, and every file carries a digest that is checked before it is trusted.
The manifest is written last: a folder without a matching, verified manifest is not done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from probegen import __version__

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ACTIVATIONS = "activations.safetensors"
ROWS = "rows.parquet"
MANIFEST = "manifest.json"
PARTS = ".parts"


class CacheError(RuntimeError):
    """The cache is missing something or holds a damaged file; the message says what to run."""


def dataset_dir(cache_dir: str | Path, model: str, dataset: str) -> Path:
    return Path(cache_dir) / "activations" / model / dataset


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def rows_fingerprint(rows: pd.DataFrame) -> str:
    """Hash of every row column: changes when any prompt, label, group or split changes."""
    h = hashlib.sha256()
    for col in rows.columns:
        h.update(col.encode())
        h.update(
            json.dumps(rows[col].astype(object).where(rows[col].notna(), None).tolist()).encode()
        )
    return h.hexdigest()


def manifest_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_manifest(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_complete(directory: Path, key: str) -> bool:
    """True when the folder holds a finished extraction with this key and intact files."""
    manifest = read_manifest(directory)
    if not manifest or manifest.get("key") != key or not manifest.get("complete"):
        return False
    for name, digest in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != digest["size"]:
            log.warning("%s: size differs from its manifest; it will be redone", path)
            return False
        if file_digest(path) != digest["blake2b"]:
            log.warning("%s: digest differs from its manifest; it will be redone", path)
            return False
    return True


class PartStore:
    """Finished batches of an unfinished extraction, one safetensors file per batch."""

    def __init__(self, directory: Path, key: str):
        self.dir = directory / PARTS
        self.key = key
        stamp = self.dir / "key"
        if self.dir.exists() and (not stamp.is_file() or stamp.read_text() != key):
            log.info("%s: parts of an older configuration; discarding them", self.dir)
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not stamp.is_file():
            _atomic_write_bytes(stamp, key.encode())

    def write(self, rows: Sequence[int], activations: dict[int, torch.Tensor]) -> None:
        tensors = {f"layer.{i}": t for i, t in activations.items()}
        tensors["rows"] = torch.as_tensor(list(rows), dtype=torch.int64)
        name = f"part-{min(rows):08d}-{len(rows):05d}.safetensors"
        _save_tensors(self.dir / name, tensors, {"digest": tensor_digest(tensors)})

    def load(self, layers: Sequence[int]) -> dict[int, dict[int, torch.Tensor]]:
        """row -> layer -> activation for every intact part; damaged parts are deleted."""
        done: dict[int, dict[int, torch.Tensor]] = {}
        for path in sorted(self.dir.glob("part-*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as f:
                    tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
                    digest = (f.metadata() or {}).get("digest")
                if digest != tensor_digest(tensors) or set(tensors) != {"rows"} | {
                    f"layer.{i}" for i in layers
                }:
                    raise ValueError("digest or tensor names do not match")
            except Exception as err:  # any unreadable part is simply recomputed
                log.warning("%s: damaged part (%s); recomputing its batch", path, err)
                path.unlink(missing_ok=True)
                continue
            for j, row in enumerate(tensors["rows"].tolist()):
                done[row] = {i: tensors[f"layer.{i}"][j] for i in layers}
        return done

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def write_dataset(
    directory: Path,
    rows: pd.DataFrame,
    per_row: dict[int, dict[int, torch.Tensor]],
    layers: Sequence[int],
    manifest: dict,
) -> None:
    """Assemble the final files from per-row activations; the manifest goes last."""
    tensors = {f"layer.{i}": torch.stack([per_row[r][i] for r in range(len(rows))]) for i in layers}
    _save_tensors(directory / ACTIVATIONS, tensors, {"format_version": str(FORMAT_VERSION)})
    tmp = directory / (ROWS + ".tmp")
    rows.to_parquet(tmp, index=False)
    os.replace(tmp, directory / ROWS)
    files = {
        name: {"size": (directory / name).stat().st_size, "blake2b": file_digest(directory / name)}
        for name in (ACTIVATIONS, ROWS)
    }
    full = {**manifest, "files": files, "complete": True, "probegen_version": __version__}
    _atomic_write_bytes(directory / MANIFEST, json.dumps(full, indent=2).encode())


@dataclass
class Activations:
    """One (model, dataset, layer) from the cache, ready for a probe. X is float32."""

    X: np.ndarray  # [n_rows, hidden] float32
    labels: np.ndarray  # bool
    groups: np.ndarray | None  # object array of group ids, None when the dataset is ungrouped
    answer_types: np.ndarray | None
    splits: np.ndarray  # "train" | "train-hparams" | "validation"
    row_ids: np.ndarray

    def split(self, name: str) -> Activations:
        """The rows of one split."""
        keep = self.splits == name
        return Activations(
            self.X[keep],
            self.labels[keep],
            None if self.groups is None else self.groups[keep],
            None if self.answer_types is None else self.answer_types[keep],
            self.splits[keep],
            self.row_ids[keep],
        )


class CachedDataset:
    """Read access to one cached (model, dataset): rows, layers, one layer at a time."""

    def __init__(self, cache_dir: str | Path, model: str, dataset: str):
        self.dir = dataset_dir(cache_dir, model, dataset)
        self.manifest = read_manifest(self.dir)
        if not self.manifest or not self.manifest.get("complete"):
            raise CacheError(
                f"no finished activations for model {model!r}, dataset {dataset!r} in "
                f"{self.dir}; run: python -m probegen.extract model={model} dataset={dataset} "
                f"cache_dir={cache_dir}"
            )
        expected = self.manifest["files"][ACTIVATIONS]["size"]
        if (self.dir / ACTIVATIONS).stat().st_size != expected:
            raise CacheError(f"{self.dir / ACTIVATIONS} is truncated; re-run the extract command")
        self.layers: list[int] = list(self.manifest["layers"])
        self.rows = pd.read_parquet(self.dir / ROWS)

    def layer(self, layer: int) -> np.ndarray:
        """Activations of one layer as float32 [n_rows, hidden], read from a memory map."""
        if layer not in self.layers:
            raise CacheError(f"{self.dir}: layer {layer} not cached; cached: {self.layers}")
        with safe_open(str(self.dir / ACTIVATIONS), framework="pt") as f:
            return f.get_tensor(f"layer.{layer}").to(torch.float32).numpy()

    def load(self, layer: int) -> Activations:
        rows = self.rows
        grouped = rows["group_id"].notna().any()
        typed = rows["answer_type"].notna().any()
        return Activations(
            X=self.layer(layer),
            labels=rows["label"].to_numpy(dtype=bool),
            groups=rows["group_id"].to_numpy(dtype=object) if grouped else None,
            answer_types=rows["answer_type"].to_numpy(dtype=object) if typed else None,
            splits=rows["split"].to_numpy(dtype=object),
            row_ids=rows["row_id"].to_numpy(dtype=object),
        )


def load_activations(cache_dir: str | Path, model: str, dataset: str, layer: int) -> Activations:
    """Shortcut: one (model, dataset, layer) with labels, groups, answer types and splits."""
    return CachedDataset(cache_dir, model, dataset).load(layer)


def cached_datasets(cache_dir: str | Path, model: str) -> list[str]:
    """Datasets with a finished extraction for `model`."""
    root = Path(cache_dir) / "activations" / model
    return sorted(p.name for p in root.glob("*") if (read_manifest(p) or {}).get("complete"))
