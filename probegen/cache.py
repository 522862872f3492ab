"""The activation cache (docs/design.md §5): layout, manifests, resumable parts and the read API.

Layout: <cache_dir>/activations/<model>/<dataset>/{activations.safetensors, rows.parquet,
manifest.json}. While a dataset is being extracted, each finished batch is a file in
`.parts/`; writes go to a temporary name and are renamed into place, so a killed run leaves
only whole files, and every file carries a digest that is checked before it is trusted.
The manifest is written last: a folder without a matching, verified manifest is not done.
"""

from __future__ import annotations

import fcntl
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

from probegen import __version__, blas

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
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
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


def record_depth(directory: Path, depth: int) -> None:
    """Set the model's depth in a finished dataset's manifest that lacks it (or has another):
    the field is outside the key, so the cache stays valid and no file is rewritten but the
    manifest (atomically). Call it while holding the folder's `ExtractionLock`."""
    manifest = read_manifest(directory)
    if not manifest or not manifest.get("complete") or manifest.get("depth") == depth:
        return
    manifest["depth"] = int(depth)
    _atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=2).encode())


class ExtractionLock:
    """An exclusive lock on one dataset folder while it is being extracted.

    flock is released by the kernel when the process dies, even by kill -9, so a crashed
    job never leaves a stale lock behind.
    """

    def __init__(self, directory: Path):
        self.path = directory / ".lock"
        self._file = None

    def __enter__(self) -> ExtractionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self._file.close()
            raise CacheError(
                f"another job is extracting into {self.path.parent}; wait for it to finish "
                f"(two jobs on the same model and dataset would duplicate the work)"
            ) from err
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def remove_leftovers_tmp(directory: Path) -> None:
    """Temporary files of writes that a killed run never finished."""
    for tmp in [*directory.glob("*.tmp.*"), *directory.glob(f"{PARTS}/*.tmp.*")]:
        tmp.unlink(missing_ok=True)


def remove_leftovers(directory: Path) -> None:
    """Temporary files, and the parts of an extraction that has finished."""
    remove_leftovers_tmp(directory)
    shutil.rmtree(directory / PARTS, ignore_errors=True)


class ActivationStore:
    """The activations of one dataset being assembled: one preallocated [n_rows, hidden]
    tensor per layer in the cache dtype, and which rows are filled."""

    def __init__(self, n_rows: int, layers: Sequence[int], dtype: torch.dtype):
        self.n_rows, self.layers, self.dtype = n_rows, list(layers), dtype
        self.tensors: dict[int, torch.Tensor] = {}
        self.filled = np.zeros(n_rows, dtype=bool)

    def put(self, rows: Sequence[int], activations: dict[int, torch.Tensor]) -> None:
        index = torch.as_tensor(list(rows), dtype=torch.long)
        for i in self.layers:
            batch = activations[i]
            if i not in self.tensors:
                self.tensors[i] = torch.zeros(self.n_rows, batch.shape[-1], dtype=self.dtype)
            self.tensors[i][index] = batch.to(self.dtype)
        self.filled[list(rows)] = True

    @property
    def done(self) -> set[int]:
        return set(np.flatnonzero(self.filled).tolist())


class PartStore:
    """Finished batches of an unfinished extraction, one safetensors file per batch.

    Every part carries the manifest key and a digest of its tensors, so parts of another
    configuration or damaged parts are never used.
    """

    def __init__(self, directory: Path, key: str):
        self.dir = directory / PARTS
        self.key = key
        self.dir.mkdir(parents=True, exist_ok=True)

    def write(self, rows: Sequence[int], activations: dict[int, torch.Tensor]) -> None:
        tensors = {f"layer.{i}": t for i, t in activations.items()}
        tensors["rows"] = torch.as_tensor(list(rows), dtype=torch.int64)
        name = f"part-{min(rows):08d}-{len(rows):05d}.safetensors"
        _save_tensors(self.dir / name, tensors, {"digest": tensor_digest(tensors), "key": self.key})

    def load_into(self, store: ActivationStore) -> None:
        """Fill `store` from every intact part of this key; other parts are deleted."""
        expected = {"rows"} | {f"layer.{i}" for i in store.layers}
        for path in sorted(self.dir.glob("part-*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as f:
                    metadata = f.metadata() or {}
                    if metadata.get("key") != self.key:
                        raise ValueError("written for another configuration")
                    tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
                if set(tensors) != expected or metadata.get("digest") != tensor_digest(tensors):
                    raise ValueError("digest or tensor names do not match")
            except Exception as err:  # any unusable part is simply recomputed
                log.warning("%s: unusable part (%s); recomputing its batch", path, err)
                path.unlink(missing_ok=True)
                continue
            store.put(tensors["rows"].tolist(), {i: tensors[f"layer.{i}"] for i in store.layers})


def write_dataset(
    directory: Path, rows: pd.DataFrame, store: ActivationStore, manifest: dict
) -> None:
    """Write the final files; the old manifest goes first and the new one last, so a crash
    in between leaves a folder that is visibly unfinished."""
    if not store.filled.all():
        raise RuntimeError(f"{directory}: {int((~store.filled).sum())} rows were never extracted")
    (directory / MANIFEST).unlink(missing_ok=True)
    tensors = {f"layer.{i}": store.tensors[i] for i in store.layers}
    _save_tensors(directory / ACTIVATIONS, tensors, {"format_version": str(FORMAT_VERSION)})
    tmp = directory / f"{ROWS}.tmp.{os.getpid()}"
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
        for name, recorded in self.manifest["files"].items():
            path = self.dir / name
            if not path.is_file() or path.stat().st_size != recorded["size"]:
                raise CacheError(
                    f"{path} is missing or truncated; re-run: python -m probegen.extract "
                    f"model={model} dataset={dataset} cache_dir={cache_dir}"
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
