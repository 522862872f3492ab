"""One model's sweep, analysed once for every figure and the report (DESIGN §8).

`Study.build(results, depth)` computes thresholds, recovered accuracy and the
generalisation ranking, and fixes the orders every figure shares: algorithms and datasets
ordered by mean cross-dataset recovered accuracy at the later layers (best first), so a
dataset or algorithm sits in the same place in every figure.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from probegen.aggregate import metrics
from probegen.models import PRESET_DEPTHS

log = logging.getLogger(__name__)

# The original study's eight algorithms: only they set thresholds and enter the original
# analysis. Other probes probegen runs are its own variants (lda-lw, ccs-sub, ...), kept out.
ORIGINAL_ALGORITHMS = ("dim", "lda", "lr", "lr-g", "ccs", "pca", "pca-g", "lat")
BASELINES = ("random",)  # drawn for reference, left out of rankings and headline numbers


def model_order(model: str) -> tuple:
    """Sort key putting 4b before 8b before 14b (numbers compared as numbers)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", model))


def model_depth(model: str, results: pd.DataFrame, depth: int | None = None) -> int:
    """Number of decoder layers of `model`: `depth` when given, else the preset's, else
    (max layer in the results) + 1 — right for the default layers 1, 3, …, depth-1 of an
    even-depth model, so it is logged as an assumption."""
    if depth is not None:
        return int(depth)
    if model in PRESET_DEPTHS:
        return PRESET_DEPTHS[model]
    guess = int(results["layer"].max()) + 1
    log.warning(
        "model %s: depth not known, assuming %d layers (max layer + 1); pass depth=N to set it",
        model,
        guess,
    )
    return guess


@dataclass
class Study:
    """Everything the figures and the report read, for one model."""

    model: str
    depth: int
    results: pd.DataFrame  # pulled rows of this model (all splits and statuses)
    recovered: pd.DataFrame  # metrics.recovered: ok validation rows + threshold/recovered
    thresholds: pd.DataFrame  # metrics.threshold_probes, indexed by eval dataset
    ranking: pd.DataFrame  # generalisation ranking at the later layers, baselines left out
    algorithms: list[str]  # best first; baselines last
    datasets: list[str]  # trained-on datasets, best first
    eval_only: list[str]  # evaluated, never trained on (e.g. truthful_qa)
    variants: list[str] = field(default_factory=list)  # probes run but not the original's

    @property
    def min_layer(self) -> float:
        """'Later layers' start here: layer >= depth / 3 (DESIGN §8)."""
        return self.depth / 3

    @property
    def first_later_layer(self) -> int:
        """The lowest layer index that counts as 'later' (for labels)."""
        return math.ceil(self.min_layer)

    @cached_property
    def later(self) -> pd.DataFrame:
        """Recovered rows at the later layers."""
        return self.recovered[self.recovered["layer"] >= self.min_layer]

    @cached_property
    def cross(self) -> pd.DataFrame:
        """Later-layer rows scored on another dataset than the probe's train set, with a
        recovered value (eval-only datasets have no threshold)."""
        rows = self.later
        rows = rows[rows["train_dataset"] != rows["eval_dataset"]]
        return rows.dropna(subset=["recovered"])

    def probe_means(self, rows: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per probe (algorithm, train dataset, layer): mean cross-dataset recovered accuracy."""
        rows = self.cross if rows is None else rows
        return rows.groupby(metrics.PROBE, as_index=False)["recovered"].mean()

    def baseline_cross(self) -> float | None:
        """Mean cross-dataset recovered accuracy of the random-direction baseline (later
        layers), or None when it was not run: what sign-flipping alone reaches."""
        rows = self.cross[self.cross["probe"].isin(BASELINES)]
        return float(rows["recovered"].mean()) if not rows.empty else None

    def headline(self) -> dict:
        """metrics.headline over the non-baseline probes at the later layers."""
        if self.cross[~self.cross["probe"].isin(BASELINES)].empty:
            raise ValueError(
                f"no cross-dataset recovered accuracy at layers >= {self.first_later_layer}: train "
                "on at least two datasets that are also evaluated"
            )
        rows = self.recovered[~self.recovered["probe"].isin(BASELINES)]
        return metrics.headline(rows, depth=self.depth)

    @classmethod
    def build(cls, results: pd.DataFrame, depth: int | None = None) -> Study:
        """Analyse one model's results (RESULT_COLUMNS rows, duplicates already resolved)."""
        models = sorted(results["model"].unique())
        if len(models) != 1:
            raise ValueError(f"a Study is one model, got {models}: split by model first")
        model = models[0]
        ok = results[results["status"] == "ok"]
        if ok.empty:
            counts = results["status"].value_counts().to_dict()
            raise ValueError(f"model {model}: no probe was scored ({counts}); see `reason`")
        depth = model_depth(model, results, depth)
        original = results["probe"].isin(ORIGINAL_ALGORITHMS)
        variants = sorted(set(results["probe"]) - set(ORIGINAL_ALGORITHMS) - set(BASELINES))
        if variants:
            log.info("model %s: %s are not the original study's algorithms; left out of "
                     "its analysis", model, ", ".join(variants))  # fmt: skip
        probes = metrics.threshold_probes(results[original])
        rec = metrics.recovered(results[original | results["probe"].isin(BASELINES)],
                                probes["threshold"])  # fmt: skip
        later = rec[(rec["layer"] >= depth / 3) & ~rec["probe"].isin(BASELINES)]
        ranking = metrics.generalisation_ranking(later) if not later.empty else later
        cross = rec[(rec["layer"] >= depth / 3) & (rec["train_dataset"] != rec["eval_dataset"])]
        algorithms = _order(cross, "probe", sorted(rec["probe"].unique()))
        algorithms = [a for a in algorithms if a not in BASELINES] + [
            a for a in algorithms if a in BASELINES
        ]
        trained = sorted(rec["train_dataset"].unique())
        datasets = _order(cross, "train_dataset", trained)
        eval_only = sorted(set(rec["eval_dataset"]) - set(trained))
        return cls(
            model, depth, results, rec, probes, ranking, algorithms, datasets, eval_only, variants
        )


def _order(rows: pd.DataFrame, column: str, names: list[str]) -> list[str]:
    """`names` by mean recovered accuracy over `rows`, best first; names without a value
    go last, alphabetically."""
    means = rows.dropna(subset=["recovered"]).groupby(column)["recovered"].mean()
    known = sorted((n for n in names if n in means.index), key=lambda n: (-means[n], n))
    return known + sorted(n for n in names if n not in means.index)
