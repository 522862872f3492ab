"""Dataset registry and collections (docs/design.md §2–3).

`resolve("dlk")` -> ids; `build_rows("imdb", SourceReader(...), Limits())` -> rows frame.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from probegen.datasets import dlk, got, repe, synthetic  # noqa: F401  (they register)
from probegen.datasets.base import REGISTRY, ROW_COLUMNS, DatasetInfo, Limits
from probegen.datasets.sources import DataSourceError, SourceReader

STUDY_COLLECTIONS = ("dlk", "repe", "got")


def collections() -> dict[str, list[str]]:
    """Collection name -> dataset ids, in registry order."""
    by: dict[str, list[str]] = {}
    for info in REGISTRY.values():
        by.setdefault(info.collection, []).append(info.id)
    study = [i for c in STUDY_COLLECTIONS for i in by.get(c, [])]
    return {
        "dlk": by.get("dlk", []),
        "repe": by.get("repe", []),
        "got": by.get("got", []),
        "synthetic": by.get("synthetic", []),
        # what builds with no download (docs/design.md §3.4): the demo's datasets
        "offline": ["got_larger_than", *by.get("synthetic", [])],
        "study": study,
        "all": study + by.get("eval", []),
    }


def resolve(selection: str | Iterable[str]) -> list[str]:
    """Expand a selection (an id, a collection name, or a list of either) into dataset ids."""
    items = [selection] if isinstance(selection, str) else list(selection)
    known = collections()
    out: list[str] = []
    for item in items:
        item = str(item)
        ids = known.get(item, [item] if item in REGISTRY else None)
        if ids is None:
            raise KeyError(
                f"unknown dataset {item!r}. Collections: {sorted(known)}; ids: {sorted(REGISTRY)}"
            )
        out.extend(i for i in ids if i not in out)
    return out


def get(dataset: str) -> DatasetInfo:
    """The registered dataset `dataset`, or a KeyError listing the known ids."""
    if dataset not in REGISTRY:
        raise KeyError(f"unknown dataset {dataset!r}; known ids: {sorted(REGISTRY)}")
    return REGISTRY[dataset]


def build_rows(dataset: str, reader: SourceReader, limits: Limits) -> pd.DataFrame:
    """Rows of `dataset` (docs/design.md §3.1), deterministic for the same sources and limits."""
    frame = get(dataset).build(reader, limits)
    assert list(frame.columns) == ROW_COLUMNS, frame.columns
    return frame


__all__ = [
    "DataSourceError",
    "DatasetInfo",
    "Limits",
    "SourceReader",
    "build_rows",
    "collections",
    "get",
    "resolve",
]
