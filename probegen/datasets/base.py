"""Rows, deterministic splits and group limits shared by every dataset (docs/design.md §3.1–3.2).

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
    """How much of each dataset is kept: groups per split (an ungrouped row counts as one
    group) and two protocol choices of the original study that only some datasets read."""

    train: int | None = 400
    train_hparams: int | None = 2000
    validation: int | None = 2000
    # The original read at most 3,000 examples of each DLK source split (train and the
    # labelled eval split) before splitting train into train / train-hparams; None: all.
    dlk_source: int | None = 3000
    # The original extracted no train-hparams split of truthful_qa (train_hparams=0).
    truthful_qa_hparams: bool = False

    def __post_init__(self) -> None:
        for name in ("train", "train_hparams", "validation", "dlk_source"):
            value = getattr(self, name)
            # bool is an int subclass, but `limits.train=true` is surely a typo
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"limits.{name} must be a whole number or null, got {value!r}")
            if value is not None and value < 0:
                raise ValueError(f"limits.{name} must not be negative, got {value}")
        if not isinstance(self.truthful_qa_hparams, bool):
            raise ValueError(
                f"limits.truthful_qa_hparams must be true or false, "
                f"got {self.truthful_qa_hparams!r}"
            )

    def for_split(self, split: str) -> int | None:
        """The group limit of probegen split `split` (None: keep every group)."""
        return {
            "train": self.train,
            "train-hparams": self.train_hparams,
            "validation": self.validation,
        }[split]

    def record(self, reads: Iterable[str] = ()) -> dict:
        """The limits that shape one dataset's rows, as its cache manifest records them.

        `reads` names the optional fields that dataset's builder reads. Only those are
        recorded, so a field added for some datasets never changes the cache key of the
        others; and one holding the value that reproduces the rows from before it existed
        is left out too, so caches extracted then stay valid when that behaviour is chosen.
        """
        out: dict = {"train": self.train, "train_hparams": self.train_hparams}
        out["validation"] = self.validation
        for name in reads:
            value = getattr(self, name)
            if value != _OPTIONAL_LIMITS[name]:
                out[name] = value
        return out


# Optional Limits fields -> the value that reproduces the rows from before the field existed.
_OPTIONAL_LIMITS: dict[str, object] = {"dlk_source": None, "truthful_qa_hparams": True}


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


def keep_order(dataset: str, unit: str) -> tuple[float, str]:
    """Sort key of the fixed pseudo-random order in which the units of `dataset` are kept:
    the same on every machine, whatever order the source lists them in."""
    return stable_unit("keep", dataset, unit), unit


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
        ids = sorted(ids, key=lambda u: keep_order(dataset, u))
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
    reads: tuple[str, ...] = ()  # optional Limits fields `build` reads (see Limits.record)


REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> DatasetInfo:
    """Add `info` to the registry; an id registered twice is an error."""
    if info.id in REGISTRY:
        raise ValueError(f"dataset id {info.id!r} registered twice")
    unknown = [name for name in info.reads if name not in _OPTIONAL_LIMITS]
    if unknown:
        raise ValueError(
            f"dataset {info.id!r} reads unknown limits {unknown}; known: {sorted(_OPTIONAL_LIMITS)}"
        )
    REGISTRY[info.id] = info
    return info
