"""The activation cache (docs/design.md §5): layout, manifests, the integrity rule and the
read API. Writing is `probegen.cache_write`'s.

Layout: <cache_dir>/activations/<model>/<dataset>/{activations.safetensors, rows.parquet,
manifest.json}. The manifest is written last and records every file's size and blake2b
digest; `check_files` holds a folder to them, for the writer and the readers alike, so a
folder without a complete manifest and intact files is never read nor skipped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open

from probegen import blas

FORMAT_VERSION = 1
ACTIVATIONS = "activations.safetensors"
ROWS = "rows.parquet"
MANIFEST = "manifest.json"
PARTS = ".parts"


class CacheError(RuntimeError):
    """The cache is missing something or holds a damaged file; the message says what to run."""


def dataset_dir(cache_dir: str | Path, model: str, dataset: str) -> Path:
    """The folder of one (model, dataset) in the cache."""
    return Path(cache_dir) / "activations" / model / dataset


def file_digest(path: Path) -> str:
    """20-byte BLAKE2b of a file's bytes, as hex (the manifest's `blake2b`)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """20-byte BLAKE2b of named tensors' names and bytes, as hex (a part's `digest`)."""
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
    """The key of an extraction: a hash of the manifest fields that identify it."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def read_manifest(directory: Path) -> dict | None:
    """The folder's manifest, or None when it is missing or unreadable."""
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


# Files verified by this process, keyed by what changes when a file is rewritten: a
# process that opens one dataset many times (one open per probe job) hashes it once.
_verified: set[tuple] = set()
# A file written within a clock tick of its verification could be rewritten in place without
# its mtime changing; such recent files are re-hashed until they are older than this.
_RECENT_NS = 2_000_000_000


def check_files(directory: Path, manifest: dict) -> str | None:
    """What is wrong with the files the manifest lists (missing, another size, another
    blake2b digest), or None when every one is intact. The one integrity rule of the cache:
    the writer applies it before skipping a dataset, `CachedDataset` before reading one."""
    files = manifest.get("files")
    if not files:
        return f"{directory / MANIFEST} lists no files"
    for name, recorded in files.items():
        path = directory / name
        try:
            stat = path.stat()
        except OSError:
            return f"{path} is missing"
        if stat.st_size != recorded["size"]:
            return (
                f"{path} is truncated or overwritten: {stat.st_size} bytes where its manifest "
                f"records {recorded['size']}"
            )
        memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        memo += (recorded["blake2b"],)
        if memo in _verified:
            continue
        started = time.time_ns()
        if file_digest(path) != recorded["blake2b"]:
            return f"{path} is damaged: its blake2b digest differs from its manifest's"
        if stat.st_mtime_ns < started - _RECENT_NS:
            _verified.add(memo)
    return None


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
        """The rows of one split (views, without copying, when they are contiguous)."""
        return self.take(rows_of(self.splits, (name,)))

    def take(self, index: np.ndarray | slice) -> Activations:
        def pick(a):
            return None if a is None else a[index]

        return Activations(
            self.X[index], self.labels[index], pick(self.groups), pick(self.answer_types),
            self.splits[index], self.row_ids[index],
        )  # fmt: skip


def rows_of(splits: np.ndarray, wanted: Sequence[str]) -> np.ndarray | slice:
    """Indices of the rows in `wanted` splits: a slice when contiguous (rows are stored
    sorted by split, so they are), which lets readers touch only those rows."""
    index = np.flatnonzero(np.isin(splits, list(wanted)))
    if len(index) and index[-1] - index[0] + 1 == len(index):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


class CachedDataset:
    """Read access to one cached (model, dataset): rows, layers, one layer at a time.

    Opening it holds the folder to `check_files` (hashed once per process and file) and
    raises `CacheError`, naming the extract command to run, when anything is amiss."""

    def __init__(self, cache_dir: str | Path, model: str, dataset: str):
        self.dir = dataset_dir(cache_dir, model, dataset)
        self.manifest = read_manifest(self.dir)
        if not self.manifest or not self.manifest.get("complete"):
            raise CacheError(
                f"no finished activations for model {model!r}, dataset {dataset!r} in "
                f"{self.dir}; run: python -m probegen.extract model={model} dataset={dataset} "
                f"cache_dir={cache_dir}"
            )
        problem = check_files(self.dir, self.manifest)
        if problem:
            raise CacheError(
                f"{problem}; re-run: python -m probegen.extract model={model} dataset={dataset} "
                f"cache_dir={cache_dir}"
            )
        self.layers: list[int] = list(self.manifest["layers"])
        # The model's decoder blocks, recorded since the field existed; None for older caches.
        depth = self.manifest.get("depth")
        self.depth: int | None = None if depth is None else int(depth)
        self.rows = pd.read_parquet(self.dir / ROWS)
        # The row columns as arrays, converted once: every layer read hands out slices of them.
        rows = self.rows
        grouped = rows["group_id"].notna().any()
        typed = rows["answer_type"].notna().any()
        self._columns = {
            "labels": rows["label"].to_numpy(dtype=bool),
            "groups": rows["group_id"].to_numpy(dtype=object) if grouped else None,
            "answer_types": rows["answer_type"].to_numpy(dtype=object) if typed else None,
            "splits": rows["split"].to_numpy(dtype=object),
            "row_ids": rows["row_id"].to_numpy(dtype=object),
        }
        for column in self._columns.values():
            if column is not None:
                column.setflags(write=False)  # shared by every Activations handed out
        self._indices: dict[tuple[str, ...], np.ndarray | slice] = {}

    def layer(self, layer: int, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Activations of one layer as float32 [rows, hidden], read from a memory map; only
        the rows of `index` are read and converted."""
        if layer not in self.layers:
            raise CacheError(f"{self.dir}: layer {layer} not cached; cached: {self.layers}")
        with safe_open(str(self.dir / ACTIVATIONS), framework="pt") as f:
            if isinstance(index, slice):
                tensor = f.get_slice(f"layer.{layer}")[index]
            else:
                tensor = f.get_tensor(f"layer.{layer}")[torch.from_numpy(index)]
            return tensor.to(torch.float32).numpy()

    def load(self, layer: int, splits: Sequence[str] | None = None) -> Activations:
        """One layer with labels, groups, answer types and splits; `splits` limits the rows."""
        index = self._index(splits)
        return self._with_rows(self.layer(layer, index), index)

    def project(self, layer: int, W: torch.Tensor, splits: Sequence[str] | None = None):
        """Like `load`, but X is the rows' scores X @ W ([rows, k] float32).

        The scores are computed chunk by chunk straight from the stored tensor, so the
        float32 copy of the whole layer (the costly part of scoring on a CPU) never exists.
        """
        if layer not in self.layers:
            raise CacheError(f"{self.dir}: layer {layer} not cached; cached: {self.layers}")
        index = self._index(splits)
        with safe_open(str(self.dir / ACTIVATIONS), framework="pt") as f:
            if isinstance(index, slice):
                start, stop, _ = index.indices(len(self.rows))
                stored = f.get_slice(f"layer.{layer}")
            else:
                start, stop = 0, len(index)
                stored = f.get_tensor(f"layer.{layer}")[torch.from_numpy(index)]
            scores = project_rows(stored, start, stop - start, W)
        return self._with_rows(scores, index)

    def _index(self, splits: Sequence[str] | None) -> np.ndarray | slice:
        if splits is None:
            return slice(None)
        key = tuple(splits)
        if key not in self._indices:
            self._indices[key] = rows_of(self._columns["splits"], key)
        return self._indices[key]

    def _with_rows(self, X: np.ndarray, index: np.ndarray | slice) -> Activations:
        def pick(column: np.ndarray | None) -> np.ndarray | None:
            return None if column is None else column[index]

        return Activations(X=X, **{name: pick(c) for name, c in self._columns.items()})


def project_rows(stored, start: int, n: int, W: torch.Tensor, chunk: int = 256) -> np.ndarray:
    """stored[start:start+n] @ W in float32, `chunk` rows at a time: each chunk is converted
    into one reused float32 buffer (a fresh tensor per chunk costs page faults) and multiplied
    while it is still in the CPU cache. `stored` is a tensor or a safetensors slice (both
    index by row ranges).

    numpy's or torch's BLAS multiplies, whichever is faster here (`probegen.blas`)."""
    out = np.empty((n, W.shape[1]), dtype=np.float32)
    buffer = torch.empty(min(chunk, n), W.shape[0], dtype=torch.float32)
    W = W.to(torch.float32)
    use_numpy = blas.numpy_blas()
    W_numpy = np.asfortranarray(W.numpy()) if use_numpy else None
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        rows = buffer[: b - a]
        rows.copy_(stored[start + a : start + b])
        if use_numpy:
            np.matmul(rows.numpy(), W_numpy, out=out[a:b])
        else:
            torch.mm(rows, W, out=torch.from_numpy(out[a:b]))
    return out


def load_activations(cache_dir: str | Path, model: str, dataset: str, layer: int) -> Activations:
    """Shortcut: one (model, dataset, layer) with labels, groups, answer types and splits."""
    return CachedDataset(cache_dir, model, dataset).load(layer)


def cached_datasets(cache_dir: str | Path, model: str) -> list[str]:
    """Datasets with a finished extraction for `model`."""
    root = Path(cache_dir) / "activations" / model
    return sorted(p.name for p in root.glob("*") if (read_manifest(p) or {}).get("complete"))
