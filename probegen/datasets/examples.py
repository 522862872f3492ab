"""The kept examples of a source-backed dataset: the "enumerate groups -> sample -> split ->
limit -> fetch" step that every dataset read from sources in the hub's schema (DLK in
`dlk.py`, RepE and TruthfulQA in `repe.py`) shares. It reads through a `SourceReader`
(local files or the hub) and never talks to the hub itself."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from probegen.datasets.base import Limits, hash_split, keep_order, select_units
from probegen.datasets.sources import DataSourceError, SourceReader

Shares = Sequence[tuple[str, float]]
EVAL_SHARES: Shares = (("validation", 1.0),)  # a labelled eval split stays whole


@dataclass(frozen=True)
class Source:
    """A hub dataset and how each of its source splits maps onto probegen splits."""

    hub_id: str
    config: str | None
    splits: tuple[tuple[str, Shares], ...]  # (source split, shares for hash_split)
    required: tuple[str, ...]  # columns the template and labels read


@dataclass(frozen=True)
class Example:
    """One kept source example, with the probegen split and group it belongs to."""

    source_split: str
    index: int  # position in the source split
    group_id: str
    split: str
    record: dict
    origin: str  # file or hub split it came from, for error messages

    def row_id(self, dataset: str, choice: int) -> str:
        return f"{dataset}/{self.source_split}/{self.index}/{choice}"

    def error(self, what: str) -> DataSourceError:
        return DataSourceError(f"{self.origin}: row {self.index}: {what}")


def read_indices(dataset: str, source_split: str, n: int, source_limit: int | None) -> list[int]:
    """Positions of the examples of a source split of `dataset` that are read at all.

    With `source_limit` set and exceeded, these are the `source_limit` groups first in
    `keep_order`, the order `select_units` keeps groups in: a fixed pseudo-random sample
    chosen from the split's length alone, and since the later per-split limits take prefixes
    of the same order, a limited eval split keeps exactly the groups it kept unlimited.
    """
    if source_limit is None or n <= source_limit:
        return list(range(n))
    chosen = heapq.nsmallest(
        source_limit, range(n), key=lambda i: keep_order(dataset, f"{source_split}-{i}")
    )
    return sorted(chosen)


def kept_examples(
    dataset: str,
    source: Source,
    reader: SourceReader,
    limits: Limits,
    source_limit: int | None = None,
) -> list[Example]:
    """The source examples of `dataset` that survive the split limits, with their records.

    Group ids are `<source split>-<index>`: enumerating them needs only the split's length,
    never its records (amazon_polarity train has 3.6M rows), and unlike some hub ids
    (RACE's `example_id` names an article shared by several questions) they are unique.
    At most `source_limit` groups of each source split are read (`read_indices`), before
    any hash split; limits are then applied over (group, split) pairs, and only then are
    records fetched.
    """
    parts, units = [], []
    for source_split, shares in source.splits:
        part = reader.split(dataset, source.hub_id, source.config, source_split, source.required)
        if len(part) == 0:
            raise DataSourceError(f"{part.origin}: dataset {dataset!r} split has no rows")
        indices = read_indices(dataset, source_split, len(part), source_limit)
        groups = [f"{source_split}-{i}" for i in indices]
        if len(shares) == 1:  # a split kept whole needs no hashing (400k rows for amazon)
            splits = [shares[0][0]] * len(groups)
        else:
            splits = [hash_split(dataset, g, shares) for g in groups]
        parts.append((source_split, part, indices, groups, splits))
        units.extend(zip(groups, splits, strict=True))
    kept = {g for ids in select_units(dataset, units, limits).values() for g in ids}
    examples = []
    for source_split, part, indices, groups, splits in parts:
        chosen = [j for j, g in enumerate(groups) if g in kept]
        records = part.records([indices[j] for j in chosen])
        for j, record in zip(chosen, records, strict=True):
            examples.append(
                Example(source_split, indices[j], groups[j], splits[j], record, part.origin)
            )
    return examples
