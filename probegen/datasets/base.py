"""Rows, deterministic splits and group limits shared by every dataset (DESIGN §3.1–3.2).

A dataset builder turns source examples into rows; this module decides which split each
group lands in and which groups survive the per-split limits, identically on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

ROW_COLUMNS = ["row_id", "dataset", "split", "group_id", "answer_type", "label", "text"]
SPLITS = ("train", "train-hparams", "validation")


@dataclass(frozen=True)
class Limits:
    """Maximum number of groups kept per split (an ungrouped row counts as one group)."""

    train: int | None = 400
    train_hparams: int | None = 2000
    validation: int | None = 2000

    def for_split(self, split: str) -> int | None:
        return {
            "train": self.train,
            "train-hparams": self.train_hparams,
            "validation": self.validation,
        }[split]


def stable_unit(*parts: object) -> float:
    """A number in [0, 1) from a hash of `parts`: the same on every machine and Python run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(dataset: str, group: str, shares: Sequence[tuple[str, float]]) -> str:
    """Assign `group` of `dataset` to a split by hash; `shares` are (split, fraction) pairs."""
    u = stable_unit("split", dataset, group)
    edge = 0.0
    for split, share in shares:
        edge += share
        if u < edge:
            return split
    return shares[-1][0]


TRAIN_SHARES = (("train", 0.75), ("train-hparams", 0.25))
GOT_SHARES = (("train", 0.6), ("train-hparams", 0.2), ("validation", 0.2))
TRUTHFUL_QA_SHARES = (("validation", 0.8), ("train-hparams", 0.2))


def select_units(
    dataset: str, units: Iterable[tuple[str, str]], limits: Limits
) -> dict[str, list[str]]:
    """Choose which units (groups, or rows when ungrouped) to keep in each split.

    `units` are (unit_id, split) pairs. Within a split, units are ordered by a hash of
    (dataset, unit) and the first `limits.for_split(split)` are kept, so the kept subset is
    a fixed pseudo-random sample that does not depend on source order. Returns the kept
    unit ids per split, in that hash order.
    """
    by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for unit, split in units:
        by_split[split].append(unit)
    kept = {}
    for split, ids in by_split.items():
        ids = sorted(ids, key=lambda u: (stable_unit("keep", dataset, u), u))
        limit = limits.for_split(split)
        kept[split] = ids if limit is None else ids[:limit]
    return kept


def finalize_rows(rows: list[dict], dataset: str) -> pd.DataFrame:
    """Validate rows and return them as a frame in canonical order: split, then row_id."""
    if not rows:
        raise ValueError(f"dataset {dataset!r} produced no rows: check its source files and limits")
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    if frame["row_id"].duplicated().any():
        dup = frame.loc[frame["row_id"].duplicated(), "row_id"].iloc[0]
        raise ValueError(f"dataset {dataset!r} has duplicate row_id {dup!r}")
    bad = set(frame["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"dataset {dataset!r} has unknown splits {sorted(bad)}")
    frame["label"] = frame["label"].astype(bool)
    frame["group_id"] = frame["group_id"].astype("string")
    frame["answer_type"] = frame["answer_type"].astype("string")
    order = {s: i for i, s in enumerate(SPLITS)}
    frame = frame.sort_values(
        ["split", "row_id"], key=lambda c: c.map(order) if c.name == "split" else c, kind="stable"
    )
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: how to build its rows, and facts the later stages need."""

    id: str
    build: Callable[..., pd.DataFrame]  # build(source: SourceReader, limits: Limits) -> rows
    collection: str  # dlk | repe | got | synthetic | eval
    grouped: bool
    eval_only: bool = False


REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    if info.id in REGISTRY:
        raise ValueError(f"dataset id {info.id!r} registered twice")
    REGISTRY[info.id] = info
    return info
