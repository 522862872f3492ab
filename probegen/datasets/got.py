"""Geometry-of-Truth datasets (Marks & Tegmark 2023; docs/design.md §3.2-3.4), collection "got".

Statements are fed as given. cities, sp_en_trans and larger_than are paired with their
negated twin (neg_cities, neg_sp_en_trans, smaller_than) by row index: row i of both files
forms group i, answer_type "pos" (original file) / "neg" (twin). The conjunction and
disjunction datasets are ungrouped. GoT has no source split, so every group (or row) goes
to train / train-hparams / validation 60/20/20 by hash (GOT_SHARES).

got_larger_than is generated in code (it is fully programmatic), so it needs no network
and no data_dir; its generator reproduces the published larger_than.csv / smaller_than.csv
statements, labels and row order exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from probegen.datasets.base import (
    GOT_SHARES,
    DatasetInfo,
    Limits,
    finalize_rows,
    hash_split,
    register,
    select_units,
)
from probegen.datasets.sources import DataSourceError, SourceReader, SourceSplit

_ONES = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """English words for 0 <= n < 1000, hyphenated as in GoT: 51 -> "fifty-one"."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words supports 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


def sentence(text: str) -> str:
    """Capitalise the first letter only (keeps "Fifty-one is larger than fifty-two.")."""
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Statement:
    """One row of a group before its split is known."""

    row_id: str
    text: str
    label: bool
    answer_type: str | None = None


def assemble(
    dataset: str,
    units: Iterable[tuple[str, str, list[Statement]]],
    limits: Limits,
    grouped: bool = True,
) -> pd.DataFrame:
    """Rows from (unit id, split key, statements) units: hash split, limits, canonical order.

    A unit is a group (grouped) or a single row (ungrouped, group_id null). The split key
    is what the split hash sees: normally the unit id, but generated datasets may pass a
    coarser key (e.g. the subject) so related groups never straddle train and validation.
    """
    units = list(units)
    split_of: dict[str, str] = {}
    for unit, key, _ in units:
        if unit in split_of:
            raise ValueError(f"dataset {dataset!r}: unit {unit!r} generated twice")
        split_of[unit] = hash_split(dataset, key, GOT_SHARES)
    kept = select_units(dataset, split_of.items(), limits)
    keep = {unit: split for split, ids in kept.items() for unit in ids}
    rows = [
        {
            "row_id": st.row_id,
            "dataset": dataset,
            "split": keep[unit],
            "group_id": unit if grouped else None,
            "answer_type": st.answer_type,
            "label": st.label,
            "text": st.text,
        }
        for unit, _, statements in units
        if unit in keep
        for st in statements
    ]
    return finalize_rows(rows, dataset)


def _statements(split: SourceSplit) -> tuple[list[str], list[bool]]:
    """statement and label columns, checked: text present, label exactly 0/1."""
    texts, labels = split.column("statement"), split.column("label")
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise DataSourceError(f"{split.origin}: row {i} has an empty statement")
        # bool is an int subclass, so True/False pass too; "1"/"yes" do not.
        if label not in (0, 1):
            raise DataSourceError(f"{split.origin}: row {i} has label {label!r}; expected 0 or 1")
    return texts, [bool(v) for v in labels]


def _pair_units(
    dataset: str, pos: tuple[str, list[str], list[bool]], neg: tuple[str, list[str], list[bool]]
) -> list[tuple[str, str, list[Statement]]]:
    """Group i = (row i of the positive file, row i of its negated twin)."""
    (pos_name, pos_texts, pos_labels), (neg_name, neg_texts, neg_labels) = pos, neg
    units = []
    for i in range(len(pos_texts)):
        group = str(i)
        units.append(
            (
                group,
                group,
                [
                    Statement(f"{dataset}/{pos_name}/{i}", pos_texts[i], pos_labels[i], "pos"),
                    Statement(f"{dataset}/{neg_name}/{i}", neg_texts[i], neg_labels[i], "neg"),
                ],
            )
        )
    return units


def _paired_csv(dataset: str, pos_name: str, neg_name: str):
    def build(source: SourceReader, limits: Limits) -> pd.DataFrame:
        pos = source.got_csv(dataset, pos_name, ["statement", "label"])
        neg = source.got_csv(dataset, neg_name, ["statement", "label"])
        if len(pos) != len(neg):
            raise DataSourceError(
                f"dataset {dataset!r}: {pos.origin} has {len(pos)} rows but {neg.origin} has "
                f"{len(neg)}; the files are paired by row index and must have equal length."
            )
        pos_texts, pos_labels = _statements(pos)
        neg_texts, neg_labels = _statements(neg)
        # A statement and its negation always have opposite truth values; equal labels
        # mean the two files are misaligned (e.g. one was filtered or re-sorted).
        same = [i for i in range(len(pos)) if pos_labels[i] == neg_labels[i]]
        if same:
            raise DataSourceError(
                f"dataset {dataset!r}: row {same[0]} of {pos.origin} and {neg.origin} has the "
                f"same label in both files ({len(same)} such rows); paired rows must be a "
                f"statement and its negation."
            )
        units = _pair_units(
            dataset, (pos_name, pos_texts, pos_labels), (neg_name, neg_texts, neg_labels)
        )
        return assemble(dataset, units, limits)

    return build


def _ungrouped_csv(dataset: str, name: str):
    def build(source: SourceReader, limits: Limits) -> pd.DataFrame:
        texts, labels = _statements(source.got_csv(dataset, name, ["statement", "label"]))
        units = [
            (str(i), str(i), [Statement(f"{dataset}/{name}/{i}", text, label)])
            for i, (text, label) in enumerate(zip(texts, labels, strict=True))
        ]
        return assemble(dataset, units, limits, grouped=False)

    return build


# 51..99 without multiples of ten: 45 numbers, 45 * 44 = 1980 ordered pairs.
LARGER_THAN_NUMBERS = tuple(n for n in range(51, 100) if n % 10)


def larger_than_statements() -> list[tuple[int, int, str, bool, str, bool]]:
    """(a, b, larger text, its label, smaller text, its label), in the GoT files' row order.

    The published files list ordered pairs with the first number in the outer loop:
    "Fifty-one is larger than fifty-two." (0), ..., "Ninety-nine is larger than ninety-eight." (1).
    """
    out = []
    for a in LARGER_THAN_NUMBERS:
        for b in LARGER_THAN_NUMBERS:
            if a == b:
                continue
            wa, wb = sentence(number_words(a)), number_words(b)
            out.append(
                (a, b, f"{wa} is larger than {wb}.", a > b, f"{wa} is smaller than {wb}.", a < b)
            )
    return out


def build_larger_than(source: SourceReader | None, limits: Limits) -> pd.DataFrame:
    """got_larger_than, generated: never reads `source` (no network, no data_dir)."""
    dataset = "got_larger_than"
    items = larger_than_statements()
    units = _pair_units(
        dataset,
        ("larger_than", [it[2] for it in items], [it[3] for it in items]),
        ("smaller_than", [it[4] for it in items], [it[5] for it in items]),
    )
    return assemble(dataset, units, limits)


register(DatasetInfo("got_cities", _paired_csv("got_cities", "cities", "neg_cities"), "got", True))
register(
    DatasetInfo(
        "got_sp_en_trans",
        _paired_csv("got_sp_en_trans", "sp_en_trans", "neg_sp_en_trans"),
        "got",
        True,
    )
)
register(DatasetInfo("got_larger_than", build_larger_than, "got", True))
register(
    DatasetInfo(
        "got_cities_cities_conj",
        _ungrouped_csv("got_cities_cities_conj", "cities_cities_conj"),
        "got",
        False,
    )
)
register(
    DatasetInfo(
        "got_cities_cities_disj",
        _ungrouped_csv("got_cities_cities_disj", "cities_cities_disj"),
        "got",
        False,
    )
)
