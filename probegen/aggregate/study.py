"""One model's sweep, analysed once for every figure and the report (docs/design.md §8).

`Study.build(results, depth)` computes thresholds, recovered accuracy and the original's
pair-wise ranking of probes (all layers), and fixes the orders every figure shares, as the
original does: train datasets and algorithms by mean recovered accuracy over all their rows
(all layers, all eval datasets, own train set included), best first.

The baseline is the null: per cell, the mean accuracy of the random directions every probe
job scores beside its probe (`null_mean`, docs/design.md §6), under the original's sign
policy (each direction's sign chosen on the eval set, as every probe's is). It enters as
a pseudo-algorithm `null`, so every figure and table computes its numbers the way it does a
probe's. The single `random` probe is a probe like probegen's variants: run, listed, left
out of the original analysis.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import pandas as pd

from probegen.aggregate import metrics

log = logging.getLogger(__name__)

# The original study's eight algorithms: only they set thresholds and enter the original
# analysis. Other probes probegen runs (random, lda-lw, ccs-sub, ...) are listed, kept out.
ORIGINAL_ALGORITHMS = ("dim", "lda", "lr", "lr-g", "ccs", "pca", "pca-g", "lat")
NULL = "null"  # the pseudo-algorithm of the random directions' mean (`null_rows`)
BASELINES = (NULL,)  # a separate baseline: never a threshold, never in the ranking


class Probe(NamedTuple):
    """One fitted probe: algorithm, train dataset, layer."""

    probe: str
    train_dataset: str
    layer: int

    def __str__(self) -> str:
        return f"{self.probe} / {self.train_dataset} / layer {self.layer}"


def model_order(model: str) -> tuple:
    """Sort key putting 4b before 8b before 14b (numbers compared as numbers)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", model))


def model_depth(model: str, results: pd.DataFrame, depth: int | None = None) -> int:
    """Number of decoder layers of `model`: `depth` when given (it overrides), else the
    depth its results rows carry (recorded at extraction, docs/design.md §5, §7). Rows
    that carry one must agree; rows without one (results or caches from before it was
    recorded) add nothing. ValueError naming the model on a conflict, and when no row
    knows the depth and `depth` is not given: it is never guessed."""
    column = results["depth"] if "depth" in results.columns else pd.Series(dtype="Int64")
    recorded = sorted(int(d) for d in column.dropna().unique())
    if depth is not None:
        if recorded and recorded != [int(depth)]:
            log.warning("model %s: depth=%d given; its results record %s", model, depth, recorded)
        return int(depth)
    if len(recorded) > 1:
        raise ValueError(
            f"model {model}: its results disagree on the model's depth ({recorded}); "
            "were they made from caches of different models under one name? Pass depth=N "
            "to choose"
        )
    if not recorded:
        raise ValueError(
            f"model {model}: its results do not record the model's depth (written before it "
            "was, or from a cache extracted before it was); pass depth=N (its number of "
            "decoder layers), or re-run python -m probegen.extract and the probe jobs"
        )
    return recorded[0]


@dataclass
class Study:
    """Everything the figures and the report read, for one model."""

    model: str
    depth: int
    later_layer: int  # "later layers" = layer >= this (default ceil(13/40 x depth))
    results: pd.DataFrame  # pulled rows of this model (all splits and statuses)
    recovered: pd.DataFrame  # metrics.recovered: ok validation rows, original eight + null
    thresholds: pd.DataFrame  # metrics.threshold_probes, indexed by eval dataset
    ranking: pd.DataFrame  # the original's pair-wise ranking, all layers, original eight
    algorithms: list[str]  # the original eight present, best first; baselines last
    datasets: list[str]  # trained-on datasets, best first (the original's train_order)
    eval_only: list[str]  # evaluated, never trained on (e.g. truthful_qa)
    variants: list[str] = field(default_factory=list)  # probes run but not the original's
    truthful_qa_chance: float | None = None  # mean 1/choices of TruthfulQA, from the cache
    null_directions: int | None = None  # random directions behind the null (from outcomes)

    @cached_property
    def rows(self) -> pd.DataFrame:
        """The original analysis' table: recovered rows of the original eight algorithms."""
        return self.recovered[~self.recovered["probe"].isin(BASELINES)]

    @cached_property
    def baseline_rows(self) -> pd.DataFrame:
        """Recovered rows of the null baseline (empty when the results carry no null)."""
        return self.recovered[self.recovered["probe"].isin(BASELINES)]

    @cached_property
    def later(self) -> pd.DataFrame:
        """Analysis rows at the later layers."""
        return self.rows[self.rows["layer"] >= self.later_layer]

    @property
    def original(self) -> list[str]:
        """The algorithms of the original analysis present here, in the shared order."""
        return [a for a in self.algorithms if a not in BASELINES]

    @cached_property
    def best(self) -> Probe | None:
        """The top of the ranking: the original's "best probe", which it then hard-codes
        (Llama-2-13B-chat: dim / dbpedia_14 / layer 21). None without cross-dataset scores,
        where the ranking compares nothing."""
        if self.ranking.empty or self.ranking["recovered_cross"].isna().all():
            return None
        top = self.ranking.iloc[0]
        return Probe(str(top["probe"]), str(top["train_dataset"]), int(top["layer"]))

    def headline(self) -> dict:
        """metrics.headline over the original eight (ValueError without cross scores)."""
        return metrics.headline(self.rows, later_layer=self.later_layer, ranking=self.ranking)

    def baseline(self) -> dict | None:
        """The null's numbers, computed as the headline's with each (train dataset, layer)
        as a probe: what random directions reach with the eval-set sign choice alone. None
        when the results carry no null."""
        rows = self.baseline_rows
        if rows.dropna(subset=["recovered"]).empty:
            return None
        share, n = metrics.share_later_above_80(rows, self.later_layer)
        cross = rows.loc[rows["train_dataset"] != rows["eval_dataset"], "recovered"]
        return {
            "share_later_probes_above_80": share,
            "n_later_probes": n,
            "mean_recovered": float(rows["recovered"].mean()),
            "mean_recovered_cross": float(cross.mean()),
            "truthful_qa": metrics.truthful_qa_share(rows),
        }

    def choices(self) -> dict[str, str]:
        """The data-driven choices the figures make, as caption text."""
        best = self.best
        chance = self.truthful_qa_chance
        return {
            "model": self.model,
            "depth": str(self.depth),
            "later_layer": str(self.later_layer),
            "later": f"layers ≥ {self.later_layer} of {self.depth}: the original's cut, 13 of "
            "40, scaled to this depth",
            "best": f"{best}, the top of the pair-wise ranking" if best else "none",
            "best_probe": best.probe if best else "–",
            "best_train": best.train_dataset if best else "–",
            "best_layer": str(best.layer) if best else "–",
            "null": null_text(self.null_directions),
            "chance": f"TruthfulQA chance level {100 * chance:.1f}% (mean of 1/choices over its "
            "validation questions, from the activation cache)"
            if chance is not None
            else "no chance line: TruthfulQA's rows were not found in the activation cache "
            "(pass cache_dir=)",
        }

    @classmethod
    def build(
        cls,
        results: pd.DataFrame,
        depth: int | None = None,
        later_layer: int | None = None,
        truthful_qa_chance: float | None = None,
        null_directions: int | None = None,
    ) -> Study:
        """Analyse one model's results (RESULT_COLUMNS rows, duplicates already resolved).
        `depth` None: the results' own (`model_depth`); `later_layer` None: ceil(13/40 x
        depth). `null_directions`: how many random directions the null averages (for the
        captions; None: not known)."""
        models = sorted(results["model"].unique())
        if len(models) != 1:
            raise ValueError(f"a Study is one model, got {models}: split by model first")
        model = models[0]
        ok = results[results["status"] == "ok"]
        if ok.empty:
            counts = results["status"].value_counts().to_dict()
            raise ValueError(f"model {model}: no probe was scored ({counts}); see `reason`")
        depth = model_depth(model, results, depth)
        later_layer = metrics.later_layer(depth) if later_layer is None else int(later_layer)
        original = results[results["probe"].isin(ORIGINAL_ALGORITHMS)]
        variants = sorted(set(results["probe"]) - set(ORIGINAL_ALGORITHMS))
        if variants:
            log.info("model %s: %s are not the original study's algorithms; left out of "
                     "its analysis", model, ", ".join(variants))  # fmt: skip
        probes = metrics.threshold_probes(original)
        rec = metrics.recovered(pd.concat([original, null_rows(results)], ignore_index=True),
                                probes["threshold"])  # fmt: skip
        rows = rec[~rec["probe"].isin(BASELINES)]
        ranking = metrics.generalisation_ranking(rows) if not rows.empty else rows
        algorithms = _order(rows, "probe", sorted(rows["probe"].unique()))
        algorithms += sorted(set(rec["probe"]) & set(BASELINES))
        trained = sorted(rec["train_dataset"].unique())
        datasets = _order(rows, "train_dataset", trained)
        eval_only = sorted(set(rec["eval_dataset"]) - set(trained))
        return cls(model, depth, later_layer, results, rec, probes, ranking, algorithms,
                   datasets, eval_only, variants, truthful_qa_chance,
                   null_directions)  # fmt: skip


def null_text(directions: int | None) -> str:
    """What the null is, for captions and labels."""
    many = f"{directions} random directions" if directions else "random directions"
    return f"null (mean of {many}, each direction's sign chosen on the eval set)"


def null_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The null as result rows of the pseudo-algorithm `null`: one ok row per (train
    dataset, layer, eval dataset, split) cell any probe was scored on, accuracy = the cell's
    `null_mean` (eval-sign policy, the original metric's). Every job of a cell scores the
    same random directions, so any one job's value serves; the newest is taken. Empty, with
    a log line, when the results carry no null (written before jobs recorded it, or with
    eval.null_directions=0)."""
    if "null_mean" in results.columns:
        rows = results[(results["status"] == "ok") & results["null_mean"].notna()]
    else:
        rows = results.iloc[:0]
    if rows.empty:
        models = ", ".join(sorted(results["model"].unique()))
        log.info("model %s: the results carry no null (null_mean: written before probe jobs "
                 "recorded it, or eval.null_directions=0): no null baseline", models)  # fmt: skip
        return rows.iloc[:0]
    if "written_at" in rows.columns:
        rows = rows.sort_values("written_at", kind="stable")
    cell = ["model", "train_dataset", "layer", "eval_dataset", "eval_split"]
    rows = rows.drop_duplicates(cell, keep="last")
    return rows.assign(probe=NULL, accuracy=rows["null_mean"].astype("float64"),
                       auroc=pd.Series(pd.NA, rows.index, "Float64"), is_flipped=False,
                       fit_seconds=float("nan"))  # fmt: skip


def _order(rows: pd.DataFrame, column: str, names: list[str]) -> list[str]:
    """`names` by mean recovered accuracy over `rows`, best first; names without a value
    go last, alphabetically."""
    means = rows.dropna(subset=["recovered"]).groupby(column)["recovered"].mean()
    known = sorted((n for n in names if n in means.index), key=lambda n: (-means[n], n))
    return known + sorted(n for n in names if n not in means.index)
