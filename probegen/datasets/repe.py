"""Multiple-choice datasets with RepE LAT prompts: the `repe` collection and truthful_qa.

Prompts are the LAT templates of Zou et al. 2023, "Representation Engineering: A Top-Down
Approach to AI Transparency" (arXiv:2310.01405, appendix D.1), worded exactly as the original
generalisation study used them (github.com/mishajw/repeng, repeng/datasets/elk/{arc,
open_book_qa,common_sense_qa,race,truthful_qa}.py). Each question gives one row per answer
choice, grouped by question, exactly one of them true; answer_type is null (docs/design.md §3.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import pandas as pd

from probegen.datasets.base import (
    TRAIN_SHARES,
    TRUTHFUL_QA_SHARES,
    DatasetInfo,
    Limits,
    finalize_rows,
    register,
)
from probegen.datasets.examples import EVAL_SHARES, Example, Source, kept_examples
from probegen.datasets.sources import SourceReader

# A question's choices: (template arguments, is this choice the true one) per choice.
Choices = list[tuple[dict[str, str], bool]]

_QA = "Question: {question}\nAnswer: {answer}\n"
_TEMPLATES = {  # keyed by the appendix section they come from
    "D.1.1": (  # TruthfulQA
        "Consider the amount of truthfulness in the following answer:\n"
        + _QA
        + "The amount of truthfulness in the answer is"
    ),
    "D.1.4": (  # ARC
        "Consider the correctness of the answer to the following question:\n\n"
        + _QA
        + "The probability of the answer being correct is"
    ),
    "D.1.5": (  # OpenBookQA: the choice completes the question stem into a "fact"
        "Consider the correctness of the following fact:\n"
        "Fact: {question_stem} {choice}\n"
        "The probability of the fact being correct is"
    ),
    "D.1.6": (  # CommonsenseQA (the line break after "the" is in the paper's template)
        "Based on commonsense reasoning, consider the plausibility of the\n"
        "answer to the following question:\n"
        + _QA
        + "The probability of the answer being plausible is"
    ),
    "D.1.7": (  # RACE
        "Consider the correctness of the answer to the following question based on the "
        "article:\n\nArticle: {article}\n\n"
        + _QA
        + "The probability of the answer being correct is"
    ),
}


def _text(example: Example, column: str) -> str:
    value = example.record[column]
    if not isinstance(value, str):
        raise example.error(f"column {column!r} should be text, got {value!r}")
    return value


def _lists(example: Example, column: str, keys: tuple[str, str]) -> tuple[list, list]:
    """Two parallel lists of a struct column (e.g. choices.text and choices.label)."""
    value = example.record[column]
    if not isinstance(value, dict) or not all(isinstance(value.get(k), list) for k in keys):
        raise example.error(f"column {column!r} should hold lists {list(keys)}, got {value!r}")
    first, second = value[keys[0]], value[keys[1]]
    if len(first) != len(second):
        raise example.error(f"{column}.{keys[0]} and {column}.{keys[1]} differ in length")
    return first, second


def _keyed_choices(example: Example, question: str, answer: str) -> Choices:
    """ARC / OpenBookQA / CommonsenseQA: `answerKey` names one of `choices.label`, which
    are letters or, for some ARC questions, "1".."4"."""
    texts, labels = _lists(example, "choices", ("text", "label"))
    key = str(example.record["answerKey"])
    asked = _text(example, question)
    return [
        ({question: asked, answer: t}, str(label) == key)
        for t, label in zip(texts, labels, strict=True)
    ]


def _race_choices(example: Example) -> Choices:
    """RACE: `options` is a list, `answer` the letter of the right option (A = first)."""
    options, answer = example.record["options"], example.record["answer"]
    if not isinstance(options, list) or not isinstance(answer, str) or len(answer) != 1:
        raise example.error(f"need a list of options and an answer letter, got {answer!r}")
    article, question = _text(example, "article"), _text(example, "question")
    right = ord(answer) - ord("A")
    return [
        ({"article": article, "question": question, "answer": o}, i == right)
        for i, o in enumerate(options)
    ]


def _mc1_choices(example: Example) -> Choices:
    """TruthfulQA: mc1_targets holds the choices with labels 1 (true) / 0, one of them 1."""
    choices, labels = _lists(example, "mc1_targets", ("choices", "labels"))
    question = _text(example, "question")
    return [
        ({"question": question, "answer": c}, lab == 1)
        for c, lab in zip(choices, labels, strict=True)
    ]


@dataclass(frozen=True)
class LatSpec:
    """A multiple-choice dataset: its source, LAT template and how to read its choices."""

    source: Source
    template: str
    choices: Callable[[Example], Choices]


# Source train is split by hash into train / train-hparams; the labelled validation split
# is held out whole, as in the original study.
_SPLITS = (("train", TRAIN_SHARES), ("validation", EVAL_SHARES))


def _arc(config: str) -> LatSpec:
    source = Source("allenai/ai2_arc", config, _SPLITS, ("question", "choices", "answerKey"))
    return LatSpec(
        source, _TEMPLATES["D.1.4"], partial(_keyed_choices, question="question", answer="answer")
    )


_SPECS: dict[str, LatSpec] = {
    "open_book_qa": LatSpec(
        Source("allenai/openbookqa", "main", _SPLITS, ("question_stem", "choices", "answerKey")),
        _TEMPLATES["D.1.5"],
        partial(_keyed_choices, question="question_stem", answer="choice"),
    ),
    "common_sense_qa": LatSpec(
        Source("tau/commonsense_qa", None, _SPLITS, ("question", "choices", "answerKey")),
        _TEMPLATES["D.1.6"],
        partial(_keyed_choices, question="question", answer="answer"),
    ),
    "race": LatSpec(
        Source("ehovy/race", "all", _SPLITS, ("article", "question", "options", "answer")),
        _TEMPLATES["D.1.7"],
        _race_choices,
    ),
    "arc_easy": _arc("ARC-Easy"),
    "arc_challenge": _arc("ARC-Challenge"),
    # Eval only: the hub's one split is divided into validation / train-hparams by hash;
    # train-hparams is then dropped unless limits.truthful_qa_hparams (see build_lat).
    "truthful_qa": LatSpec(
        Source(
            "truthfulqa/truthful_qa",
            "multiple_choice",
            (("validation", TRUTHFUL_QA_SHARES),),
            ("question", "mc1_targets"),
        ),
        _TEMPLATES["D.1.1"],
        _mc1_choices,
    ),
}


def build_lat(dataset: str, reader: SourceReader, limits: Limits) -> pd.DataFrame:
    """Rows of multiple-choice dataset `dataset`: one per answer choice, grouped by question."""
    spec = _SPECS[dataset]
    if dataset == "truthful_qa" and not limits.truthful_qa_hparams:
        # The original extracted truthful_qa with train_hparams=0. Dropping the split after
        # the hash split, not re-splitting, leaves validation the same questions either way.
        limits = replace(limits, train_hparams=0)
    rows = []
    for example in kept_examples(dataset, spec.source, reader, limits):
        choices = spec.choices(example)
        # A group without exactly one true answer would silently break grouped accuracy.
        n_true = sum(is_true for _, is_true in choices)
        if n_true != 1:
            raise example.error(f"expected exactly one correct choice, found {n_true}")
        for position, (args, is_true) in enumerate(choices):
            rows.append(
                {
                    "row_id": example.row_id(dataset, position),
                    "dataset": dataset,
                    "split": example.split,
                    "group_id": example.group_id,
                    "answer_type": None,
                    "label": is_true,
                    "text": spec.template.format(**args),
                }
            )
    return finalize_rows(rows, dataset)


for _id in _SPECS:
    register(
        DatasetInfo(
            id=_id,
            build=partial(build_lat, _id),
            collection="eval" if _id == "truthful_qa" else "repe",
            grouped=True,
            eval_only=_id == "truthful_qa",
            reads=("truthful_qa_hparams",) if _id == "truthful_qa" else (),
        )
    )
