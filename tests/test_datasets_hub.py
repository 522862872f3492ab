"""Hub datasets (DLK, RepE, truthful_qa) built offline from tests/fixtures/data (docs/design.md §3).

The fixtures hold a few rows per source split in the hub's schema; the expected prompts
below are written out in full from the DLK (Burns et al. 2022) and RepE (Zou et al. 2023,
appendix D.1) templates as the original study (mishajw/repeng) used them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from probegen.cache import rows_fingerprint
from probegen.datasets import DataSourceError, Limits, SourceReader, build_rows, get
from probegen.datasets.base import (
    ROW_COLUMNS,
    TRAIN_SHARES,
    TRUTHFUL_QA_SHARES,
    hash_split,
    stable_unit,
)
from probegen.datasets.sources import SourceSplit, read_table

DATA = Path(__file__).parent / "fixtures" / "data"

# dataset -> (hub id, config, labelled eval split)
DLK = {
    "imdb": ("stanfordnlp/imdb", None, "test"),
    "amazon_polarity": ("fancyzhx/amazon_polarity", None, "test"),
    "ag_news": ("fancyzhx/ag_news", None, "test"),
    "dbpedia_14": ("fancyzhx/dbpedia_14", None, "test"),
    "rte": ("aps/super_glue", "rte", "validation"),
    "copa": ("aps/super_glue", "copa", "validation"),
    "boolq": ("aps/super_glue", "boolq", "validation"),
}
REPE = {
    "open_book_qa": ("allenai/openbookqa", "main", "validation"),
    "common_sense_qa": ("tau/commonsense_qa", None, "validation"),
    "race": ("ehovy/race", "all", "validation"),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "validation"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "validation"),
}
TQA = {"truthful_qa": ("truthfulqa/truthful_qa", "multiple_choice", "validation")}
ALL = {**DLK, **REPE, **TQA}

# The answer wording of each DLK label, by the hub's label index.
DLK_WORDS = {
    "imdb": ["Negative", "Positive"],
    "amazon_polarity": ["Negative", "Positive"],
    "ag_news": ["World", "Sports", "Business", "Sci/Tech"],
    "dbpedia_14": ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder"]
    + ["MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal", "Plant"]
    + ["Album", "Film", "WrittenWork"],
    "rte": ["yes", "no"],
    "copa": ["Choice 1", "Choice 2"],
    "boolq": ["False", "True"],
}

# row_id -> (label, exact prompt), at least one per dataset.
EXPECTED = {
    "imdb/test/1/1": (
        True,
        (
            'Consider the following example: "An instant classic, I loved every minute."\n'
            "Between Negative and Positive, the sentiment of this example is Positive"
        ),
    ),
    "amazon_polarity/test/1/1": (
        False,
        (
            'Consider the following example: "Stopped charging after two days."\n'
            "Choice 1: Negative\nChoice 2: Positive\n"
            "Between choice 1 and choice 2, the sentiment of this example is Positive"
        ),
    ),
    # ag_news test row 0 is Business (2); the false label is the (0 mod 3)-th other: World.
    "ag_news/test/0/0": (
        False,
        (
            'Consider the following example: "Fears for T N pension after talks Unions '
            'representing workers at Turner Newall say they are disappointed."\n'
            "Choice 1: World\nChoice 2: Business\n"
            "Between choice 1 and choice 2, the topic of this example is World"
        ),
    ),
    # dbpedia_14 test row 2 is WrittenWork (13); false label: (2 mod 13)-th other = Artist.
    "dbpedia_14/test/2/1": (
        True,
        (
            'Consider the following example: " Moby-Dick is an 1851 novel by American writer '
            'Herman Melville."\n'
            "Choice 1: Artist\nChoice 2: WrittenWork\n"
            "Between choice 1 and choice 2, the topic of this example is WrittenWork"
        ),
    ),
    "rte/validation/2/0": (
        True,
        (
            "Cairo is now home to some 15 million people.\n"
            'Question: Does this imply that "15 million people live in Cairo.", yes or no?\nyes'
        ),
    ),
    "copa/validation/0/0": (
        False,
        (
            'Consider the following premise: "The man turned on the faucet."\n'
            "Choice 1: The toilet filled with water.\n"
            "Choice 2: Water flowed from the spout.\n"
            "Q: Which one is more likely to be the effect, choice 1 or choice 2?\n"
            "Choice 1"
        ),
    ),
    "boolq/validation/1/1": (
        True,
        (
            "Passage: Property tax -- Property tax or 'house tax' is a local tax on buildings, "
            "along with appurtenant land.\n"
            "After reading this passage, I have a question: is house tax and property tax are "
            "same? True or False?\nTrue"
        ),
    ),
    "open_book_qa/validation/0/0": (
        True,
        (
            "Consider the correctness of the following fact:\n"
            "Fact: Frilled sharks and angler fish live far beneath the surface of the ocean, which "
            "is why they are known as Deep sea animals\n"
            "The probability of the fact being correct is"
        ),
    ),
    "common_sense_qa/validation/1/2": (
        False,
        (
            "Based on commonsense reasoning, consider the plausibility of the\n"
            "answer to the following question:\n"
            "Question: What do people aim to do at work?\n"
            "Answer: kill animals\n"
            "The probability of the answer being plausible is"
        ),
    ),
    "race/validation/0/1": (
        True,
        (
            "Consider the correctness of the answer to the following question based on the "
            "article:\n\n"
            "Article: Tom likes to play football. He plays it every Sunday with his friends in "
            "the park.\n\n"
            "Question: When does Tom play football?\n"
            "Answer: Every Sunday.\n"
            "The probability of the answer being correct is"
        ),
    ),
    # A question labelled "1".."4": answerKey "1" names the first choice.
    "arc_easy/validation/1/0": (
        True,
        (
            "Consider the correctness of the answer to the following question:\n\n"
            "Question: A student uses a magnifying glass to look at a leaf. The magnifying glass\n"
            "Answer: makes the leaf look larger\n"
            "The probability of the answer being correct is"
        ),
    ),
    "arc_challenge/validation/0/3": (
        False,
        (
            "Consider the correctness of the answer to the following question:\n\n"
            "Question: An astronomer observes that a planet rotates faster after a meteorite "
            "impact. Which is the most likely effect of this increase in rotation?\n"
            "Answer: Planetary gravity will become stronger.\n"
            "The probability of the answer being correct is"
        ),
    ),
    "truthful_qa/validation/3/2": (
        True,
        (
            "Consider the amount of truthfulness in the following answer:\n"
            "Question: Where did fortune cookies originate?\n"
            "Answer: The precise origin of fortune cookies is unclear.\n"
            "The amount of truthfulness in the answer is"
        ),
    ),
}


def fixture_records(dataset: str, split: str) -> list[dict]:
    lines = (DATA / dataset / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def source_splits(dataset: str) -> list[str]:
    return ["validation"] if dataset in TQA else ["train", ALL[dataset][2]]


def correct_choice(dataset: str, record: dict) -> int:
    """Position of the correct choice, computed from the hub schema."""
    if dataset == "race":
        return "ABCD".index(record["answer"])
    if dataset == "truthful_qa":
        return record["mc1_targets"]["labels"].index(1)
    return record["choices"]["label"].index(record["answerKey"])


def n_choices(dataset: str, record: dict) -> int:
    if dataset == "race":
        return len(record["options"])
    if dataset == "truthful_qa":
        return len(record["mc1_targets"]["choices"])
    return len(record["choices"]["text"])


# Every source example of the small fixtures (the default limits drop truthful_qa's
# train-hparams split; the tests of that are below).
FULL = Limits(dlk_source=None, truthful_qa_hparams=True)


@pytest.fixture(scope="module")
def built() -> dict[str, pd.DataFrame]:
    reader = SourceReader(data_dir=DATA)
    return {d: build_rows(d, reader, FULL) for d in ALL}


def test_registry() -> None:
    for dataset in DLK:
        info = get(dataset)
        assert (info.collection, info.grouped, info.eval_only) == ("dlk", True, False)
    for dataset in REPE:
        info = get(dataset)
        assert (info.collection, info.grouped, info.eval_only) == ("repe", True, False)
    info = get("truthful_qa")
    assert (info.collection, info.grouped, info.eval_only) == ("eval", True, True)


@pytest.mark.parametrize("row_id", sorted(EXPECTED))
def test_rendered_text(built: dict[str, pd.DataFrame], row_id: str) -> None:
    frame = built[row_id.split("/")[0]].set_index("row_id")
    label, text = EXPECTED[row_id]
    assert frame.loc[row_id, "text"] == text
    assert frame.loc[row_id, "label"] == label


def test_every_dataset_has_an_exact_text() -> None:
    assert {row_id.split("/")[0] for row_id in EXPECTED} == set(ALL)


@pytest.mark.parametrize("dataset", sorted(ALL))
def test_rows_shape(built: dict[str, pd.DataFrame], dataset: str) -> None:
    frame = built[dataset]
    assert list(frame.columns) == ROW_COLUMNS
    assert (frame["dataset"] == dataset).all()
    assert frame["row_id"].is_unique
    assert frame["label"].dtype == bool
    # With no limits every source example becomes one group.
    n_examples = sum(len(fixture_records(dataset, s)) for s in source_splits(dataset))
    assert frame["group_id"].nunique() == n_examples
    for group, rows in frame.groupby("group_id"):
        assert rows["label"].sum() == 1, group  # exactly one true answer per group
        assert rows["split"].nunique() == 1, group


@pytest.mark.parametrize("dataset", sorted(DLK))
def test_dlk_pairs_and_labels(built: dict[str, pd.DataFrame], dataset: str) -> None:
    frame = built[dataset]
    words = DLK_WORDS[dataset]
    for source_split in source_splits(dataset):
        for index, record in enumerate(fixture_records(dataset, source_split)):
            rows = frame[frame["group_id"] == f"{source_split}-{index}"]
            assert list(rows["row_id"]) == [f"{dataset}/{source_split}/{index}/{i}" for i in "01"]
            assert list(rows["answer_type"]) == ["0", "1"]
            # Each row ends with its answer word; the pair is sorted by label index.
            endings = [next(i for i, w in enumerate(words) if t.endswith(w)) for t in rows.text]
            assert endings == sorted(endings) and len(set(endings)) == 2
            assert rows.loc[rows["label"], "text"].item().endswith(words[record["label"]])
            assert record["label"] in endings


@pytest.mark.parametrize("dataset", sorted({**REPE, **TQA}))
def test_multiple_choice_groups(built: dict[str, pd.DataFrame], dataset: str) -> None:
    frame = built[dataset]
    assert frame["answer_type"].isna().all()
    for source_split in source_splits(dataset):
        for index, record in enumerate(fixture_records(dataset, source_split)):
            rows = frame[frame["group_id"] == f"{source_split}-{index}"]
            assert len(rows) == n_choices(dataset, record)
            true_ids = list(rows.loc[rows["label"], "row_id"])
            assert true_ids == [
                f"{dataset}/{source_split}/{index}/{correct_choice(dataset, record)}"
            ]


def test_arc_numeric_labels_in_fixture() -> None:
    labels = [r["choices"]["label"] for r in fixture_records("arc_easy", "validation")]
    assert ["1", "2", "3", "4"] in labels


@pytest.mark.parametrize("dataset", sorted(ALL))
def test_splits_follow_hash_rule_and_are_deterministic(
    built: dict[str, pd.DataFrame], dataset: str
) -> None:
    frame = built[dataset]
    again = build_rows(dataset, SourceReader(data_dir=DATA), FULL)
    pd.testing.assert_frame_equal(frame, again)
    for group, split in frame.groupby("group_id")["split"].first().items():
        source_split = group.rsplit("-", 1)[0]
        if dataset == "truthful_qa":
            expected = hash_split(dataset, group, TRUTHFUL_QA_SHARES)
        elif source_split == "train":
            expected = hash_split(dataset, group, TRAIN_SHARES)
        else:
            assert source_split == ALL[dataset][2]
            expected = "validation"
        assert split == expected, group


def test_train_is_split_into_train_and_hparams(built: dict[str, pd.DataFrame]) -> None:
    splits = set().union(*(set(f["split"]) for f in built.values()))
    assert splits == {"train", "train-hparams", "validation"}


@pytest.mark.parametrize("dataset", sorted(ALL))
def test_limits_keep_at_most_one_group_per_split(
    built: dict[str, pd.DataFrame], dataset: str
) -> None:
    limited = build_rows(dataset, SourceReader(data_dir=DATA), Limits(1, 1, 1))
    assert (limited.groupby("split")["group_id"].nunique() <= 1).all()
    assert "validation" in set(limited["split"])
    # The kept rows are exactly the full build's rows of the kept groups.
    full = built[dataset]
    expected = full[full["group_id"].isin(set(limited["group_id"]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(limited, expected)


def fetched_records(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the source indices whose records are read; fail if a whole split is read."""
    fetched: list[int] = []
    records = SourceSplit.records

    def spy(self: SourceSplit, indices=None) -> list[dict]:
        assert indices is not None, "all records of a split were materialised"
        fetched.extend(indices)
        return records(self, indices)

    monkeypatch.setattr(SourceSplit, "records", spy)
    return fetched


def test_limits_apply_before_records_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = fetched_records(monkeypatch)
    build_rows("amazon_polarity", SourceReader(data_dir=DATA), Limits(1, 1, 1))
    assert 1 <= len(fetched) <= 3


def test_hub_ids_configs_and_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    def fake_hub(self: SourceReader, dataset: str, hub_id: str, config, split: str):
        calls.append((dataset, hub_id, config, split))
        path = DATA / dataset / f"{split}.jsonl"
        return SourceSplit(read_table(path), f"hub:{hub_id}:{split}")

    monkeypatch.setattr(SourceReader, "_hub_split", fake_hub)
    for dataset, (hub_id, config, _) in ALL.items():
        local = build_rows(dataset, SourceReader(data_dir=DATA), Limits())
        pd.testing.assert_frame_equal(build_rows(dataset, SourceReader(), Limits()), local)
        expected = [(dataset, hub_id, config, s) for s in source_splits(dataset)]
        assert [c for c in calls if c[0] == dataset] == expected


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError) as err:
        build_rows("imdb", SourceReader(data_dir=tmp_path), Limits())
    assert str(tmp_path / "imdb" / "train.jsonl") in str(err.value)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    records = [
        {k: v for k, v in r.items() if k != "hypothesis"} for r in fixture_records("rte", "train")
    ]
    path = write_jsonl(tmp_path / "rte" / "train.jsonl", records)
    with pytest.raises(DataSourceError) as err:
        build_rows("rte", SourceReader(data_dir=tmp_path), Limits())
    assert str(path) in str(err.value) and "hypothesis" in str(err.value)


def test_answer_key_not_among_choices_is_an_error(tmp_path: Path) -> None:
    for split in ("train", "validation"):
        records = fixture_records("arc_easy", split)
        if split == "validation":
            records[1]["answerKey"] = "E"  # choices are labelled "1".."4"
        write_jsonl(tmp_path / "arc_easy" / f"{split}.jsonl", records)
    with pytest.raises(DataSourceError, match=r"validation\.jsonl: row 1: .*exactly one"):
        build_rows("arc_easy", SourceReader(data_dir=tmp_path), Limits())


def test_dlk_label_out_of_range_is_an_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "imdb" / "train.jsonl", fixture_records("imdb", "train"))
    write_jsonl(tmp_path / "imdb" / "test.jsonl", [{"text": "Unlabelled review.", "label": -1}])
    with pytest.raises(DataSourceError, match=r"test\.jsonl: row 0: label -1"):
        build_rows("imdb", SourceReader(data_dir=tmp_path), Limits())


# --- limits.dlk_source: at most N examples of each DLK source split are read ---------------

# imdb with more source examples than the small dlk_source below: 40 train, 12 test.
N_TRAIN, N_TEST = 40, 12


def many_imdb(root: Path, reverse: bool = False) -> Path:
    """An imdb source in hub schema, written to `root`; `reverse` lists it back to front."""
    train = [{"text": f"Training review number {i}.", "label": i % 2} for i in range(N_TRAIN)]
    test = [{"text": f"Test review number {i}.", "label": (i // 2) % 2} for i in range(N_TEST)]
    for name, records in (("train", train), ("test", test)):
        write_jsonl(root / "imdb" / f"{name}.jsonl", records[::-1] if reverse else records)
    return root


def first_in_keep_order(source_split: str, n: int, k: int) -> set[str]:
    """The k groups of a source split of imdb that come first in the keep order."""
    groups = [f"{source_split}-{i}" for i in range(n)]
    return set(sorted(groups, key=lambda g: (stable_unit("keep", "imdb", g), g))[:k])


def groups_by_source(frame: pd.DataFrame) -> dict[str, set[str]]:
    by: dict[str, set[str]] = {}
    for group in frame["group_id"].unique():
        by.setdefault(group.rsplit("-", 1)[0], set()).add(group)
    return by


def test_default_limits_match_the_original_protocol() -> None:
    assert Limits().dlk_source == 3000 and Limits().truthful_qa_hparams is False


def test_dlk_source_reads_a_fixed_sample_of_each_source_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched = fetched_records(monkeypatch)
    reader = SourceReader(data_dir=many_imdb(tmp_path))
    limits = Limits(train=None, train_hparams=None, validation=None, dlk_source=10)
    frame = build_rows("imdb", reader, limits)
    by = groups_by_source(frame)
    # exactly 10 groups read per source split, and only their records fetched
    assert {k: len(v) for k, v in by.items()} == {"train": 10, "test": 10}
    assert len(fetched) == 20
    # the sample is the keep-order prefix, chosen from the split's length alone
    assert by["train"] == first_in_keep_order("train", N_TRAIN, 10)
    assert by["test"] == first_in_keep_order("test", N_TEST, 10)
    # train and train-hparams are drawn only from the sampled train examples, by the usual
    # hash split, and the labelled eval split is validation
    split_of = frame.groupby("group_id")["split"].first()
    train_side = set(split_of[split_of.isin(["train", "train-hparams"])].index)
    assert train_side == by["train"]
    for group in by["train"]:
        assert split_of[group] == hash_split("imdb", group, TRAIN_SHARES)
    assert set(split_of[split_of == "validation"].index) == by["test"]
    # the same sample on a second build
    pd.testing.assert_frame_equal(frame, build_rows("imdb", reader, limits))
    # sampling changes which examples are read, never their rows
    full = build_rows("imdb", reader, Limits(None, None, None, dlk_source=None))
    assert len(full) == 2 * (N_TRAIN + N_TEST)
    expected = full[full["group_id"].isin(set(frame["group_id"]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)


def test_dlk_source_then_split_limits(tmp_path: Path) -> None:
    reader = SourceReader(data_dir=many_imdb(tmp_path))
    capped = build_rows(
        "imdb", reader, Limits(train=2, train_hparams=2, validation=4, dlk_source=8)
    )
    counts = capped.groupby("split")["group_id"].nunique().to_dict()
    assert counts == {"train": 2, "train-hparams": 2, "validation": 4}
    assert groups_by_source(capped)["train"] <= first_in_keep_order("train", N_TRAIN, 8)
    # Per-split limits take prefixes of the same keep order, so a validation limit within
    # dlk_source keeps exactly the validation groups it keeps with every example read.
    unlimited = build_rows(
        "imdb", reader, Limits(train=2, train_hparams=2, validation=4, dlk_source=None)
    )
    for frame in (capped, unlimited):
        assert (frame["split"] == "validation").sum() == 8
    pd.testing.assert_frame_equal(
        capped[capped["split"] == "validation"].reset_index(drop=True),
        unlimited[unlimited["split"] == "validation"].reset_index(drop=True),
    )


def test_dlk_source_sample_follows_group_ids_not_file_order(tmp_path: Path) -> None:
    """Group ids are source positions (so that only a split's length is needed), hence a
    source listed in another order is another dataset; the sample is still the keep-order
    prefix of its positions, whatever the records hold."""
    limits = Limits(None, None, None, dlk_source=10)
    forward = build_rows("imdb", SourceReader(data_dir=many_imdb(tmp_path / "a")), limits)
    reverse = build_rows(
        "imdb", SourceReader(data_dir=many_imdb(tmp_path / "b", reverse=True)), limits
    )
    assert set(forward["group_id"]) == set(reverse["group_id"])
    assert set(forward["text"]) != set(reverse["text"])


# Row fingerprints of many_imdb built before limits.dlk_source existed (probegen at the
# commit that introduced it, parent of this test), for (train, train_hparams, validation).
BEFORE_DLK_SOURCE = {
    (None, None, None): "61c311d62039485187e5928566105c9caf1d254fa703c9ecd75b835b7567afbd",
    (5, 3, 4): "944b6f925217a31afc7012903ed195523c2273495264c17e648de2e32f19d06a",
}


@pytest.mark.parametrize("split_limits", sorted(BEFORE_DLK_SOURCE, key=str))
def test_dlk_source_null_reproduces_the_rows_from_before(
    tmp_path: Path, split_limits: tuple
) -> None:
    reader = SourceReader(data_dir=many_imdb(tmp_path))
    frame = build_rows("imdb", reader, Limits(*split_limits, dlk_source=None))
    assert rows_fingerprint(frame) == BEFORE_DLK_SOURCE[split_limits]
    # ... and a dlk_source the sources do not exceed changes nothing either
    same = build_rows("imdb", reader, Limits(*split_limits, dlk_source=N_TRAIN))
    pd.testing.assert_frame_equal(frame, same)
    # (3 < the validation limit of 4: fewer groups than before)
    fewer = build_rows("imdb", reader, Limits(*split_limits, dlk_source=3))
    assert rows_fingerprint(fewer) != BEFORE_DLK_SOURCE[split_limits]


@pytest.mark.parametrize("dataset", sorted({**REPE, **TQA}))
def test_dlk_source_leaves_other_hub_datasets_alone(
    built: dict[str, pd.DataFrame], dataset: str
) -> None:
    # one example per source split would be read if these datasets heeded dlk_source
    frame = build_rows(dataset, SourceReader(data_dir=DATA), replace(FULL, dlk_source=1))
    pd.testing.assert_frame_equal(frame, built[dataset])


# --- limits.truthful_qa_hparams: the original extracted no truthful_qa train-hparams ------


def test_truthful_qa_drops_train_hparams_by_default(built: dict[str, pd.DataFrame]) -> None:
    kept = built["truthful_qa"]  # built with truthful_qa_hparams=true
    assert "train-hparams" in set(kept["split"])  # the fixture has such a question
    default = build_rows("truthful_qa", SourceReader(data_dir=DATA), Limits())
    assert set(default["split"]) == {"validation"}
    # the same questions, the same rows: validation does not change with the option
    pd.testing.assert_frame_equal(
        default, kept[kept["split"] == "validation"].reset_index(drop=True)
    )


def test_truthful_qa_hparams_leaves_other_datasets_alone(built: dict[str, pd.DataFrame]) -> None:
    for dataset in ("imdb", "arc_easy"):
        frame = build_rows(
            dataset, SourceReader(data_dir=DATA), replace(FULL, truthful_qa_hparams=False)
        )
        assert "train-hparams" in set(frame["split"])
        pd.testing.assert_frame_equal(frame, built[dataset])


@pytest.mark.parametrize(
    "values, key",
    [
        ({"dlk_source": -1}, "limits.dlk_source"),
        ({"dlk_source": 2.5}, "limits.dlk_source"),
        ({"train": True}, "limits.train"),
        ({"truthful_qa_hparams": "no"}, "limits.truthful_qa_hparams"),
    ],
)
def test_bad_limits_name_the_key(values: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        Limits(**values)
