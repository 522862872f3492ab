"""Where a probe job reads activations (`ActivationSource`): the activation cache
(`CacheSource`, docs/design.md §5), or in-memory arrays in tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from probegen import cache
from probegen.cache import Activations


class ActivationSource(Protocol):
    """Activations by dataset and layer, as a probe job reads them."""

    def layers(self, dataset: str) -> list[int]: ...

    def depth(self, dataset: str) -> int | None:
        """The model's number of decoder blocks, as recorded with `dataset`; None if unknown."""

    def load(self, dataset: str, layer: int, splits: Sequence[str] | None = None) -> Activations:
        """One layer of one dataset, float32, only the rows of `splits` when given."""

    def project(
        self, dataset: str, layer: int, W: torch.Tensor, splits: Sequence[str] | None = None
    ) -> Activations:
        """Like `load`, with X replaced by the scores X @ W ([rows, k] float32)."""


class CacheSource:
    """Activations of one model from the activation cache (docs/design.md §5)."""

    def __init__(self, cache_dir: str | Path, model: str):
        self.cache_dir, self.model = cache_dir, model
        self._open: dict[str, cache.CachedDataset] = {}

    def dataset(self, name: str) -> cache.CachedDataset:
        """The cached dataset `name`, opened once (opening checks that it is cached)."""
        if name not in self._open:
            self._open[name] = cache.CachedDataset(self.cache_dir, self.model, name)
        return self._open[name]

    def layers(self, dataset: str) -> list[int]:
        return self.dataset(dataset).layers

    def depth(self, dataset: str) -> int | None:
        """The depth in the dataset's manifest (docs/design.md §5); None for older caches."""
        return self.dataset(dataset).depth

    def load(self, dataset: str, layer: int, splits: Sequence[str] | None = None) -> Activations:
        return self.dataset(dataset).load(layer, splits)

    def project(
        self, dataset: str, layer: int, W: torch.Tensor, splits: Sequence[str] | None = None
    ) -> Activations:
        return self.dataset(dataset).project(layer, W, splits)
