"""The seven DLK datasets: imdb, amazon_polarity, ag_news, dbpedia_14, rte, copa, boolq.

Prompts are the templates of Burns et al. 2022, "Discovering Latent Knowledge in Language
Models Without Supervision" (arXiv:2212.03827, appendix), worded exactly as the original
generalisation study used them (github.com/mishajw/repeng, repeng/datasets/elk/dlk.py).
Each source example gives two rows, its true label and one false label, grouped by example
(docs/design.md §3.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pandas as pd

from probegen.datasets.base import (
    TRAIN_SHARES,
    DatasetInfo,
    Limits,
    finalize_rows,
    register,
)
from probegen.datasets.examples import EVAL_SHARES, Example, Source, kept_examples
from probegen.datasets.sources import SourceReader


@dataclass(frozen=True)
class DlkTemplate:
    """A DLK prompt: `{label}` is this row's answer; `{label1}`/`{label2}` the pair's two."""

    text: str
    labels: tuple[str, ...]  # answer wording, indexed by the hub's label
    fields: tuple[str, ...]  # record columns the template reads
    label_options: bool = True  # whether the prompt names both labels of the pair

    def render(self, example: Example, label: int, pair: Sequence[int]) -> str:
        args = {"label": self.labels[label]}
        if self.label_options:
            args["label1"], args["label2"] = (self.labels[i] for i in pair)
        for field in self.fields:
            value = example.record[field]
            if not isinstance(value, str):
                raise example.error(f"column {field!r} should be text, got {value!r}")
            args[field] = value
        return self.text.format(**args)


# Shared wording of the classification templates (sentiment / topic choice between two).
_CHOICE = (
    'Consider the following example: "{{{field}}}"\n'
    "Choice 1: {{label1}}\n"
    "Choice 2: {{label2}}\n"
    "Between choice 1 and choice 2, the {kind} of this example is {{label}}"
)
_DBPEDIA_LABELS = (
    "Company",
    "EducationalInstitution",
    "Artist",
    "Athlete",
    "OfficeHolder",
    "MeanOfTransportation",
    "Building",
    "NaturalPlace",
    "Village",
    "Animal",
    "Plant",
    "Album",
    "Film",
    "WrittenWork",
)

# dataset id -> (hub id, config, labelled eval split, template). Label wording follows the
# hub's label order, e.g. rte 0 = entailment -> "yes", boolq 1 = true -> "True".
_SPECS: dict[str, tuple[str, str | None, str, DlkTemplate]] = {
    "imdb": (
        "stanfordnlp/imdb",
        None,
        "test",
        DlkTemplate(
            'Consider the following example: "{text}"\n'
            "Between {label1} and {label2}, the sentiment of this example is {label}",
            ("Negative", "Positive"),
            ("text",),
        ),
    ),
    "amazon_polarity": (
        "fancyzhx/amazon_polarity",
        None,
        "test",
        DlkTemplate(
            _CHOICE.format(field="content", kind="sentiment"),
            ("Negative", "Positive"),
            ("content",),
        ),
    ),
    "ag_news": (
        "fancyzhx/ag_news",
        None,
        "test",
        DlkTemplate(
            _CHOICE.format(field="text", kind="topic"),
            ("World", "Sports", "Business", "Sci/Tech"),
            ("text",),
        ),
    ),
    "dbpedia_14": (
        "fancyzhx/dbpedia_14",
        None,
        "test",
        DlkTemplate(_CHOICE.format(field="content", kind="topic"), _DBPEDIA_LABELS, ("content",)),
    ),
    "rte": (
        "aps/super_glue",
        "rte",
        "validation",
        DlkTemplate(
            '{premise}\nQuestion: Does this imply that "{hypothesis}", yes or no?\n{label}',
            ("yes", "no"),
            ("premise", "hypothesis"),
            label_options=False,
        ),
    ),
    "copa": (
        "aps/super_glue",
        "copa",
        "validation",
        DlkTemplate(
            'Consider the following premise: "{premise}"\n'
            "Choice 1: {choice1}\n"
            "Choice 2: {choice2}\n"
            "Q: Which one is more likely to be the {question}, choice 1 or choice 2?\n"
            "{label}",
            ("Choice 1", "Choice 2"),
            ("premise", "question", "choice1", "choice2"),
            label_options=False,
        ),
    ),
    "boolq": (
        "aps/super_glue",
        "boolq",
        "validation",
        DlkTemplate(
            "Passage: {passage}\n"
            "After reading this passage, I have a question: {question}? True or False?\n"
            "{label}",
            ("False", "True"),
            ("passage", "question"),
            label_options=False,
        ),
    ),
}


def false_label(true_label: int, index: int, n_labels: int) -> int:
    """The false label paired with `true_label`: as in the original study, the
    `index mod (n - 1)`-th of the other labels (for binary datasets, simply the other one)."""
    others = [label for label in range(n_labels) if label != true_label]
    return others[index % len(others)]


def build_dlk(dataset: str, reader: SourceReader, limits: Limits) -> pd.DataFrame:
    """Rows of DLK dataset `dataset`: two per kept example, answer_type = position in pair.

    At most `limits.dlk_source` examples of each source split are read, as in the original
    study, before source train is split into train / train-hparams.
    """
    hub_id, config, eval_split, template = _SPECS[dataset]
    source = Source(
        hub_id,
        config,
        (("train", TRAIN_SHARES), (eval_split, EVAL_SHARES)),
        (*template.fields, "label"),
    )
    rows = []
    for example in kept_examples(dataset, source, reader, limits, limits.dlk_source):
        true = example.record["label"]
        if (
            isinstance(true, bool)
            or not isinstance(true, int)
            or not 0 <= true < len(template.labels)
        ):
            raise example.error(f"label {true!r} is not one of 0..{len(template.labels) - 1}")
        # Sorting the pair by label index gives answer_type a fixed meaning across groups
        # (binary sets: "0" is always e.g. "Negative"), which per-answer-type normalisation
        # relies on.
        pair = sorted((true, false_label(true, example.index, len(template.labels))))
        for position, label in enumerate(pair):
            rows.append(
                {
                    "row_id": example.row_id(dataset, position),
                    "dataset": dataset,
                    "split": example.split,
                    "group_id": example.group_id,
                    "answer_type": str(position),
                    "label": label == true,
                    "text": template.render(example, label, pair),
                }
            )
    return finalize_rows(rows, dataset)


for _id in _SPECS:
    register(
        DatasetInfo(
            id=_id,
            build=partial(build_dlk, _id),
            collection="dlk",
            grouped=True,
            reads=("dlk_source",),
        )
    )
