"""Source examples in hub schema: the "enumerate groups -> split -> limit -> fetch" step
that every hub dataset (DLK in `dlk.py`, RepE and TruthfulQA in `repe.py`) shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from probegen.datasets.base import Limits, hash_split, select_units
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


def kept_examples(
    dataset: str, source: Source, reader: SourceReader, limits: Limits
) -> list[Example]:
    """The source examples of `dataset` that survive the split limits, with their records.

    Group ids are `<source split>-<index>`: enumerating them needs only the split's length,
    never its records (amazon_polarity train has 3.6M rows), and unlike some hub ids
    (RACE's `example_id` names an article shared by several questions) they are unique.
    Limits are applied over (group, split) pairs before any record is fetched.
    """
    parts, units = [], []
    for source_split, shares in source.splits:
        part = reader.split(dataset, source.hub_id, source.config, source_split, source.required)
        if len(part) == 0:
            raise DataSourceError(f"{part.origin}: dataset {dataset!r} split has no rows")
        groups = [f"{source_split}-{i}" for i in range(len(part))]
        if len(shares) == 1:  # a split kept whole needs no hashing (400k rows for amazon)
            splits = [shares[0][0]] * len(groups)
        else:
            splits = [hash_split(dataset, g, shares) for g in groups]
        parts.append((source_split, part, groups, splits))
        units.extend(zip(groups, splits, strict=True))
    kept = {g for ids in select_units(dataset, units, limits).values() for g in ids}
    examples = []
    for source_split, part, groups, splits in parts:
        indices = [i for i, g in enumerate(groups) if g in kept]
        for i, record in zip(indices, part.records(indices), strict=True):
            examples.append(Example(source_split, i, groups[i], splits[i], record, part.origin))
    return examples
