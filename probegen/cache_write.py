"""Writing the activation cache (docs/design.md §5): one writer per dataset folder.

`DatasetWriter` is the only code that puts activations into a dataset folder. Entered, it
holds the folder's lock, removes what a killed run left half-written and loads the finished
batches (`.parts/`) of the same key, so `done` tells the caller which rows to skip; `add`
saves each new batch as a part at once, and `finish` writes the final files, manifest last.
`reuse_cached` is the other path: a folder that already holds the extraction is kept.

Every write goes to a temporary name and is renamed into place, so a killed run leaves only
whole files; a part carries its key and a tensor digest and is used only when both match.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from probegen import __version__, cache
from probegen.cache import ACTIVATIONS, FORMAT_VERSION, MANIFEST, PARTS, ROWS, CacheError

log = logging.getLogger(__name__)


def reuse_cached(directory: Path, manifest: dict) -> bool:
    """True when `directory` already holds the extraction `manifest` describes: the same key,
    complete, and files intact by `cache.check_files`.

    The folder is then kept as it is but for leftovers of killed runs, which are removed,
    and the manifest's `depth`, which is recorded when the cached manifest lacks it (it lies
    outside the key, §5). Both happen only when no other job holds the folder's lock.
    """
    found = cache.read_manifest(directory)
    if not found or found.get("key") != manifest["key"] or not found.get("complete"):
        return False
    problem = cache.check_files(directory, found)
    if problem:
        log.warning("%s; it will be redone", problem)
        return False
    with contextlib.suppress(CacheError), _FolderLock(directory):
        _remove_leftovers(directory)
        if manifest.get("depth") is not None:
            _record_depth(directory, int(manifest["depth"]))
    return True


class DatasetWriter:
    """The writer of one dataset folder, for the extraction `manifest` describes (its "key",
    "layers", "n_rows" and "cache_dtype"):

        with DatasetWriter(directory, manifest) as writer:
            for rows, activations in batches_of_rows_not_in(writer.done):
                writer.add(rows, activations)
            writer.finish(rows_frame)

    Leaving without `finish` (an error, a kill) keeps the parts: the next writer of the same
    key resumes from them. Entering raises `CacheError` when another job holds the folder.
    """

    def __init__(self, directory: Path, manifest: dict):
        self.directory = Path(directory)
        self.manifest = manifest
        self.key: str = manifest["key"]
        self.layers: list[int] = list(manifest["layers"])
        self.n_rows = int(manifest["n_rows"])
        self.dtype: torch.dtype = getattr(torch, manifest["cache_dtype"])
        # One preallocated [n_rows, hidden] tensor per layer (hidden is known at the first
        # batch) and which rows hold activations.
        self.tensors: dict[int, torch.Tensor] = {}
        self.filled = np.zeros(self.n_rows, dtype=bool)
        self._lock = _FolderLock(self.directory)

    def __enter__(self) -> DatasetWriter:
        self._lock.__enter__()
        try:
            _remove_temporary(self.directory)
            (self.directory / PARTS).mkdir(exist_ok=True)
            self._load_parts()
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._lock.__exit__()

    @property
    def done(self) -> set[int]:
        """Rows whose activations are held (from parts of an earlier run, or added)."""
        return set(np.flatnonzero(self.filled).tolist())

    def add(self, rows: Sequence[int], activations: dict[int, torch.Tensor]) -> None:
        """Save one finished batch as a part and keep it for `finish`; `activations` maps
        each layer to [len(rows), hidden] in row order, in any dtype."""
        self._require_lock()
        stored = {i: activations[i].to(self.dtype) for i in self.layers}
        tensors = {f"layer.{i}": t for i, t in stored.items()}
        tensors["rows"] = torch.as_tensor(list(rows), dtype=torch.int64)
        name = f"part-{min(rows):08d}-{len(rows):05d}.safetensors"
        metadata = {"digest": cache.tensor_digest(tensors), "key": self.key}
        _save_tensors(self.directory / PARTS / name, tensors, metadata)
        self._put(rows, stored)

    def finish(self, rows: pd.DataFrame) -> None:
        """Write activations.safetensors, rows.parquet (`rows`, in tensor row order) and the
        manifest, then remove the parts. The old manifest goes first and the new one last,
        so a crash in between leaves a folder that is visibly unfinished."""
        self._require_lock()
        if len(rows) != self.n_rows:
            raise ValueError(f"{self.directory}: {len(rows)} rows given, {self.n_rows} expected")
        if not self.filled.all():
            missing = int((~self.filled).sum())
            raise RuntimeError(f"{self.directory}: {missing} rows were never extracted")
        (self.directory / MANIFEST).unlink(missing_ok=True)
        tensors = {f"layer.{i}": self.tensors[i] for i in self.layers}
        metadata = {"format_version": str(FORMAT_VERSION)}
        _save_tensors(self.directory / ACTIVATIONS, tensors, metadata)
        tmp = self.directory / f"{ROWS}.tmp.{os.getpid()}"
        rows.to_parquet(tmp, index=False)
        os.replace(tmp, self.directory / ROWS)
        files = {}
        for name in (ACTIVATIONS, ROWS):
            path = self.directory / name
            files[name] = {"size": path.stat().st_size, "blake2b": cache.file_digest(path)}
        full = {**self.manifest, "files": files, "complete": True, "probegen_version": __version__}
        _atomic_write_bytes(self.directory / MANIFEST, json.dumps(full, indent=2).encode())
        _remove_leftovers(self.directory)

    def _put(self, rows: Sequence[int], activations: dict[int, torch.Tensor]) -> None:
        index = torch.as_tensor(list(rows), dtype=torch.long)
        for i in self.layers:
            batch = activations[i]
            if i not in self.tensors:
                self.tensors[i] = torch.zeros(self.n_rows, batch.shape[-1], dtype=self.dtype)
            self.tensors[i][index] = batch.to(self.dtype)
        self.filled[list(rows)] = True

    def _load_parts(self) -> None:
        """Take every intact part of this key; other parts are deleted."""
        expected = {"rows"} | {f"layer.{i}" for i in self.layers}
        for path in sorted((self.directory / PARTS).glob("part-*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as f:
                    metadata = f.metadata() or {}
                    if metadata.get("key") != self.key:
                        raise ValueError("written for another configuration")
                    tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
                digest = cache.tensor_digest(tensors)
                if set(tensors) != expected or metadata.get("digest") != digest:
                    raise ValueError("digest or tensor names do not match")
            except Exception as err:  # any unusable part is simply recomputed
                log.warning("%s: unusable part (%s); recomputing its batch", path, err)
                path.unlink(missing_ok=True)
                continue
            self._put(tensors["rows"].tolist(), {i: tensors[f"layer.{i}"] for i in self.layers})

    def _require_lock(self) -> None:
        if not self._lock.held:
            raise RuntimeError(f"{self.directory}: use DatasetWriter in a `with` block")


class _FolderLock:
    """An exclusive, non-blocking lock on a dataset folder (its `.lock` file).

    flock is released by the kernel when the process dies, even by kill -9, so a crashed
    job never leaves a stale lock behind.
    """

    def __init__(self, directory: Path):
        self.path = directory / ".lock"
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> _FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "w")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            file.close()
            raise CacheError(
                f"another job is extracting into {self.path.parent}; wait for it to finish "
                f"(two jobs on the same model and dataset would duplicate the work)"
            ) from err
        self._file = file
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _record_depth(directory: Path, depth: int) -> None:
    """Set the model's depth in a finished manifest that lacks it (or has another): the
    field is outside the key, so only the manifest is rewritten. Hold the folder's lock."""
    manifest = cache.read_manifest(directory)
    if not manifest or not manifest.get("complete") or manifest.get("depth") == depth:
        return
    manifest["depth"] = depth
    _atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=2).encode())


def _remove_temporary(directory: Path) -> None:
    """Temporary files of writes that a killed run never finished."""
    for tmp in [*directory.glob("*.tmp.*"), *directory.glob(f"{PARTS}/*.tmp.*")]:
        tmp.unlink(missing_ok=True)


def _remove_leftovers(directory: Path) -> None:
    """Temporary files, and the parts of an extraction that has finished."""
    _remove_temporary(directory)
    shutil.rmtree(directory / PARTS, ignore_errors=True)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
