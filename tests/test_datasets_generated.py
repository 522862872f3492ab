"""Geometry-of-Truth and synthetic datasets: pairing, generation, splits, limits, errors.

Offline and fast: GoT CSV datasets read the small fixtures under tests/fixtures/data/got;
got_larger_than and the synthetic collection are generated in code.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from probegen.datasets import build_rows, collections, get
from probegen.datasets.base import ROW_COLUMNS, Limits
from probegen.datasets.got import larger_than_statements, number_words
from probegen.datasets.sources import DataSourceError, SourceReader
from probegen.datasets.synthetic import GENERATED_IDS, GENERATORS

FIXTURES = Path(__file__).parent / "fixtures" / "data"
NO_LIMITS = Limits(train=None, train_hparams=None, validation=None)
SYNTHETIC = sorted(GENERATORS)


@pytest.fixture
def reader() -> SourceReader:
    return SourceReader(data_dir=FIXTURES)


def fixture_csv(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "got" / f"{name}.csv")


def check_pairs(frame: pd.DataFrame) -> None:
    """Every group is one "pos" and one "neg" row with opposite labels, in one split."""
    for _, g in frame.groupby("group_id"):
        assert sorted(g["answer_type"]) == ["neg", "pos"]
        assert g["label"].sum() == 1
        assert g["split"].nunique() == 1


def test_registry_collections():
    known = collections()
    assert known["got"] == [
        "got_cities",
        "got_sp_en_trans",
        "got_larger_than",
        "got_cities_cities_conj",
        "got_cities_cities_disj",
    ]
    assert len(known["synthetic"]) >= 5 and set(known["synthetic"]) == set(GENERATORS)
    assert not set(known["synthetic"]) & set(known["all"])  # synthetic is opt-in
    assert get("got_cities").grouped and not get("got_cities_cities_conj").grouped
    assert all(get(d).grouped and get(d).collection == "synthetic" for d in GENERATORS)


@pytest.mark.parametrize(
    "dataset, pos_name, neg_name",
    [("got_cities", "cities", "neg_cities"), ("got_sp_en_trans", "sp_en_trans", "neg_sp_en_trans")],
)
def test_got_pairs_rows_by_index(reader, dataset, pos_name, neg_name):
    frame = build_rows(dataset, reader, NO_LIMITS)
    assert list(frame.columns) == ROW_COLUMNS
    pos, neg = fixture_csv(pos_name), fixture_csv(neg_name)
    assert len(frame) == 2 * len(pos)
    check_pairs(frame)
    for i in range(len(pos)):
        g = frame[frame["group_id"] == str(i)].set_index("answer_type")
        assert g.loc["pos", "text"] == pos["statement"][i]
        assert g.loc["neg", "text"] == neg["statement"][i]
        assert g.loc["pos", "label"] == bool(pos["label"][i])
        assert g.loc["neg", "label"] == bool(neg["label"][i])
        assert g.loc["pos", "row_id"] == f"{dataset}/{pos_name}/{i}"
        assert g.loc["neg", "row_id"] == f"{dataset}/{neg_name}/{i}"
    assert (frame["dataset"] == dataset).all()


def test_got_quoted_statement_kept_whole(reader):
    frame = build_rows("got_cities", reader, NO_LIMITS)
    assert "The city of Mianzhu, Deyang, Sichuan is in China." in set(frame["text"])


@pytest.mark.parametrize(
    "dataset, name",
    [
        ("got_cities_cities_conj", "cities_cities_conj"),
        ("got_cities_cities_disj", "cities_cities_disj"),
    ],
)
def test_got_ungrouped(reader, dataset, name):
    frame = build_rows(dataset, reader, NO_LIMITS)
    source = fixture_csv(name)
    assert frame["group_id"].isna().all() and frame["answer_type"].isna().all()
    by_id = frame.set_index("row_id")
    for i, (text, label) in enumerate(zip(source["statement"], source["label"], strict=True)):
        assert by_id.loc[f"{dataset}/{name}/{i}", "text"] == text
        assert by_id.loc[f"{dataset}/{name}/{i}", "label"] == bool(label)


# Copied from the published larger_than.csv / smaller_than.csv (row index, statement, label).
LARGER_THAN_ROWS = [
    (0, "Fifty-one is larger than fifty-two.", False, "Fifty-one is smaller than fifty-two.", True),
    (8, "Fifty-one is larger than sixty-one.", False, "Fifty-one is smaller than sixty-one.", True),
    (
        44,
        "Fifty-two is larger than fifty-one.",
        True,
        "Fifty-two is smaller than fifty-one.",
        False,
    ),
    (
        1000,
        "Seventy-five is larger than eighty-seven.",
        False,
        "Seventy-five is smaller than eighty-seven.",
        True,
    ),
    (
        1234,
        "Eighty-two is larger than fifty-three.",
        True,
        "Eighty-two is smaller than fifty-three.",
        False,
    ),
    (
        1979,
        "Ninety-nine is larger than ninety-eight.",
        True,
        "Ninety-nine is smaller than ninety-eight.",
        False,
    ),
]


def test_got_larger_than_matches_published_files():
    items = larger_than_statements()
    assert len(items) == 1980
    assert sum(it[3] for it in items) == 990 and sum(it[5] for it in items) == 990
    for i, larger, larger_label, smaller, smaller_label in LARGER_THAN_ROWS:
        assert items[i][2:] == (larger, larger_label, smaller, smaller_label)
    numbers = {it[0] for it in items}
    assert numbers == set(range(51, 100)) - {60, 70, 80, 90}
    assert all(it[0] != it[1] for it in items)


def test_got_larger_than_rows_need_no_data_dir():
    frame = build_rows("got_larger_than", SourceReader(), NO_LIMITS)
    assert len(frame) == 3960 and frame["group_id"].nunique() == 1980
    check_pairs(frame)
    by_id = frame.set_index("row_id")
    for i, larger, larger_label, smaller, smaller_label in LARGER_THAN_ROWS:
        assert by_id.loc[f"got_larger_than/larger_than/{i}", "text"] == larger
        assert by_id.loc[f"got_larger_than/larger_than/{i}", "label"] == larger_label
        assert by_id.loc[f"got_larger_than/smaller_than/{i}", "text"] == smaller
        assert by_id.loc[f"got_larger_than/smaller_than/{i}", "label"] == smaller_label
        assert by_id.loc[f"got_larger_than/larger_than/{i}", "answer_type"] == "pos"


class NoSource:
    """A reader stand-in that fails on any use: generated datasets must not read sources."""

    def __getattr__(self, name):
        raise AssertionError(f"generated dataset used SourceReader.{name}")


@pytest.mark.parametrize("dataset", GENERATED_IDS)
def test_generated_datasets_never_touch_sources(dataset):
    frame = build_rows(dataset, NoSource(), Limits())
    assert len(frame) > 0


@pytest.mark.parametrize("dataset", SYNTHETIC)
def test_synthetic_dataset_shape(dataset):
    frame = build_rows(dataset, NoSource(), NO_LIMITS)
    assert list(frame.columns) == ROW_COLUMNS
    assert frame["group_id"].nunique() >= 200, "too few groups for the default limits to matter"
    check_pairs(frame)
    pos = frame[frame["answer_type"] == "pos"]
    assert 0.4 <= pos["label"].mean() <= 0.6
    assert not frame["text"].duplicated().any() and not frame["row_id"].duplicated().any()
    assert frame["text"].str.match(r"^[A-Z].*\.$").all()
    assert set(frame["split"]) == {"train", "train-hparams", "validation"}


@pytest.mark.parametrize("dataset", [*SYNTHETIC, "got_larger_than"])
def test_generated_is_deterministic(dataset):
    first = build_rows(dataset, NoSource(), Limits())
    second = build_rows(dataset, NoSource(), Limits())
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("dataset", [*SYNTHETIC, "got_larger_than", "got_cities"])
def test_dlk_and_truthful_qa_limits_leave_these_rows_alone(reader, dataset):
    # limits that would shrink every split if these datasets read them
    narrow = Limits(dlk_source=1, truthful_qa_hparams=False)
    wide = Limits(dlk_source=None, truthful_qa_hparams=True)
    first, second = build_rows(dataset, reader, narrow), build_rows(dataset, reader, wide)
    assert first["group_id"].nunique() > 3
    pd.testing.assert_frame_equal(first, second)
    assert get(dataset).reads == ()  # so their cache keys do not record these limits


@pytest.mark.parametrize(
    "dataset, text, label",
    [
        ("synthetic_arithmetic", "Twelve plus seven equals nineteen.", True),
        ("synthetic_arithmetic", "Twelve plus seven does not equal nineteen.", False),
        ("synthetic_alphabet", "The letter D comes before the letter K in the alphabet.", True),
        ("synthetic_alphabet", "The letter D comes after the letter K in the alphabet.", False),
        ("synthetic_parity", "Thirty-seven is an odd number.", True),
        ("synthetic_parity", "Two hundred fifty-six is an even number.", True),
        ("synthetic_elements", "The chemical symbol for gold is Au.", True),
        ("synthetic_elements", "The chemical symbol for iron is not Fe.", False),
        ("synthetic_capitals", "The capital of France is Paris.", True),
        ("synthetic_capitals", "The capital of the United Kingdom is not London.", False),
        ("synthetic_animals", "Dolphins are mammals.", True),
        ("synthetic_animals", "Penguins are not birds.", False),
    ],
)
def test_synthetic_known_facts(dataset, text, label):
    frame = build_rows(dataset, NoSource(), NO_LIMITS)
    assert frame.loc[frame["text"] == text, "label"].tolist() == [label]


def test_synthetic_subject_never_straddles_splits():
    frame = build_rows("synthetic_capitals", NoSource(), NO_LIMITS)
    subject = frame["group_id"].str.split("=").str[0]
    assert (frame.groupby(subject)["split"].nunique() == 1).all()


@pytest.mark.parametrize("dataset", ["synthetic_arithmetic", "got_larger_than"])
def test_split_shares_follow_got_shares(dataset):
    frame = build_rows(dataset, NoSource(), NO_LIMITS)
    shares = frame.drop_duplicates("group_id")["split"].value_counts(normalize=True)
    for split, expected in [("train", 0.6), ("train-hparams", 0.2), ("validation", 0.2)]:
        assert abs(shares[split] - expected) < 0.05, shares


@pytest.mark.parametrize(
    "dataset", ["got_cities", "got_cities_cities_conj", "got_larger_than", "synthetic_parity"]
)
def test_limits_respected_and_subset(reader, dataset):
    limits = Limits(train=2, train_hparams=1, validation=1)
    small = build_rows(dataset, reader, limits)
    full = build_rows(dataset, reader, NO_LIMITS)
    units = small["group_id"].fillna(small["row_id"])
    per_split = units.groupby(small["split"]).nunique()
    assert per_split.get("train", 0) <= 2
    assert per_split.get("train-hparams", 0) <= 1 and per_split.get("validation", 0) <= 1
    merged = small.merge(full, on="row_id", suffixes=("", "_full"))
    assert len(merged) == len(small)
    assert (merged["split"] == merged["split_full"]).all()
    assert (merged["text"] == merged["text_full"]).all()
    if dataset in ("got_larger_than", "synthetic_parity"):  # big enough to fill every limit
        assert per_split.to_dict() == {"train": 2, "train-hparams": 1, "validation": 1}


def test_default_limits_cap_train_groups():
    full = build_rows("got_larger_than", NoSource(), NO_LIMITS)
    kept = build_rows("got_larger_than", NoSource(), Limits())
    groups = kept.groupby("split")["group_id"].nunique()
    full_groups = full.groupby("split")["group_id"].nunique()
    assert groups["train"] == 400 < full_groups["train"]
    assert groups["validation"] == full_groups["validation"]  # under the 2000 cap


def copy_got(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "got", tmp_path / "got")
    return tmp_path / "got"


def test_paired_row_count_mismatch_names_both_files(tmp_path):
    got_dir = copy_got(tmp_path)
    lines = (got_dir / "neg_cities.csv").read_text().splitlines()
    (got_dir / "neg_cities.csv").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(DataSourceError, match=r"cities\.csv.*neg_cities\.csv"):
        build_rows("got_cities", SourceReader(data_dir=tmp_path), NO_LIMITS)


def test_misaligned_pair_labels_rejected(tmp_path):
    got_dir = copy_got(tmp_path)
    lines = (got_dir / "neg_sp_en_trans.csv").read_text().splitlines()
    lines[1:3] = [lines[2], lines[1]]  # swap two rows: their labels now match the positives
    (got_dir / "neg_sp_en_trans.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataSourceError, match="same label"):
        build_rows("got_sp_en_trans", SourceReader(data_dir=tmp_path), NO_LIMITS)


def test_bad_label_rejected(tmp_path):
    got_dir = copy_got(tmp_path)
    text = (got_dir / "cities_cities_conj.csv").read_text()
    head, first, *rest = text.splitlines()
    statement_end = first.index(".,") + 2
    first = first[:statement_end] + "2" + first[statement_end + 1 :]
    (got_dir / "cities_cities_conj.csv").write_text("\n".join([head, first, *rest]) + "\n")
    with pytest.raises(DataSourceError, match="label 2"):
        build_rows("got_cities_cities_conj", SourceReader(data_dir=tmp_path), NO_LIMITS)


@pytest.mark.parametrize("missing", ["neg_cities", "cities_cities_disj"])
def test_missing_got_csv_names_path(tmp_path, missing):
    got_dir = copy_got(tmp_path)
    (got_dir / f"{missing}.csv").unlink()
    dataset = "got_cities" if missing == "neg_cities" else "got_cities_cities_disj"
    with pytest.raises(DataSourceError, match=re.escape(str(got_dir / f"{missing}.csv"))):
        build_rows(dataset, SourceReader(data_dir=tmp_path), NO_LIMITS)


def test_number_words():
    assert [number_words(n) for n in (0, 7, 13, 40, 51, 99, 100, 256, 999)] == [
        "zero",
        "seven",
        "thirteen",
        "forty",
        "fifty-one",
        "ninety-nine",
        "one hundred",
        "two hundred fifty-six",
        "nine hundred ninety-nine",
    ]
    with pytest.raises(ValueError):
        number_words(1000)
