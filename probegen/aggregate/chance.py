"""TruthfulQA's chance level, read from the activation cache (docs/design.md §5, §8).

results.parquet holds accuracies, not question sizes; the chance level of a multiple-choice
question is 1 / its number of choices, so the mean over TruthfulQA's validation questions
comes from the cached rows (`rows.parquet`: one row per choice, `group_id` = question).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def _dataset_dir(cache_dir: Path | str, model: str, dataset: str) -> Path:
    """The cache folder of (model, dataset), the layout of docs/design.md §5. Spelt out
    rather than taken from probegen.cache, which imports torch: stage 3 does not."""
    return Path(cache_dir) / "activations" / model / dataset


def truthful_qa_chance(cache_dir: Path | str | None, model: str) -> float | None:
    """Mean over TruthfulQA's cached validation questions of 1 / (number of choices), or
    None (with a log line) when the cache has no finished truthful_qa folder for `model`."""
    if cache_dir is None:
        return None
    folder = _dataset_dir(cache_dir, model, "truthful_qa")
    rows_file = folder / "rows.parquet"
    if not (folder / "manifest.json").is_file() or not rows_file.is_file():
        log.info("%s: no cached truthful_qa rows under %s; r4 gets no chance line", model, folder)
        return None
    rows = pd.read_parquet(rows_file, columns=["split", "group_id"])
    rows = rows[rows["split"] == "validation"]
    if rows.empty or rows["group_id"].isna().any():
        return None
    return float((1.0 / rows.groupby("group_id").size()).mean())
