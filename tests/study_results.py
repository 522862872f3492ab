"""A synthetic probe sweep with the study's dataset names, for the figure and report tests.

Accuracies follow a plausible pattern (in-distribution high, cross-dataset lower, later
layers better, random near chance) with seeded noise; the numbers mean nothing, the shapes
and names are those of a real `results.parquet` sweep. Every row carries the columns probe
jobs add beside the original ones (the train-fixed policy, the random directions' null),
and `study_sweep` also returns the jobs' outcomes (`probegen.outcomes`) they agree with:
each cell's accuracy is the share of its units drawn right, each null mean the share of
the null's random directions right.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probegen import outcomes as oc
from probegen.results import RESULT_COLUMNS, conform

STUDY = ["imdb", "boolq", "arc_easy", "open_book_qa", "got_cities", "got_sp_en_trans",
         "got_larger_than"]  # fmt: skip
PROBES = ["dim", "lda", "lr", "ccs", "lat", "random"]
R = 200  # random directions of the null
UNITS = 400  # units (questions) of every eval split
NULL_P = {"eval": 0.53, "fixed": 0.5}  # a random direction's accuracy: the eval sign helps
NULL_SD = 0.025  # spread of the random directions' accuracies


def study_results(**options) -> pd.DataFrame:
    """The results of `study_sweep(**options)`: both eval splits of every probe × train ×
    layer × eval, all `ok`; every row carries `depth` (None: unknown, as in results written
    before it was recorded). `null=False`: the later columns are null, as in results
    written before jobs recorded them."""
    return study_sweep(**options)[0]


def study_sweep(
    model: str = "4b",
    train: list[str] = STUDY,
    evals: list[str] | None = None,
    probes: list[str] = PROBES,
    layers: list[int] = (1, 5, 13, 21, 29, 35),
    seed: int = 0,
    depth: int | None = 36,
    *,
    null: bool = True,
    local: tuple[str, ...] = (),
    unlearned: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, list[oc.JobOutcomes]]:
    """(results, the jobs' outcomes). Probes trained on a `local` dataset score at the null's
    level on every other one (they do not transfer); an `unlearned` dataset's own probes
    score at the null's level on it (not learned)."""
    rng = np.random.default_rng(seed)
    evals = [*train, "truthful_qa"] if evals is None else evals
    skill = {p: 0.1 + 0.3 * rng.random() for p in probes} | {"random": 0.0}
    accuracy = {}
    for probe in probes:
        for t in train:
            for layer in layers:
                depth_gain = min(layer / 20, 1.0)
                for e in evals:
                    own = 0.35 if t == e else 0.1 * rng.random()
                    base = 0.5 + depth_gain * (skill[probe] + own)
                    for split in ("validation", "train-hparams"):
                        value = float(np.clip(base + rng.normal(0, 0.03), 0.0, 1.0))
                        if (t != e and t in local) or (t == e and t in unlearned):
                            value = NULL_P["fixed"] + rng.normal(0, 0.005)
                        accuracy[probe, t, layer, e, split] = value
    draw = np.random.default_rng([seed, 1])  # units: apart, so the accuracies stay as before
    cells = [(t, layer) for t in train for layer in layers]
    nulls = {}  # the same random directions for every job, as probe jobs score them
    for e in evals:
        for split in ("validation", "train-hparams"):
            nulls[e, split] = (draw.binomial(R, NULL_P["eval"], (len(layers), UNITS)),
                               draw.binomial(R, NULL_P["fixed"], (len(cells), UNITS)))  # fmt: skip
    rows, jobs = [], []
    for probe in probes:
        eval_sets = {}
        for e in evals:
            for split in ("validation", "train-hparams"):
                right = np.array([round(accuracy[probe, t, v, e, split] * UNITS) for t, v in cells])
                # exactly `right` units of each cell drawn right
                bits = draw.random((len(cells), UNITS)).argsort(axis=1) < right[:, None]
                null_eval, null_fixed = nulls[e, split]
                eval_sets[e, split] = oc.EvalOutcomes(
                    e, split, UNITS, True, oc.unit_digest(range(UNITS)),
                    np.array([train.index(t) for t, _ in cells], dtype=np.int32),
                    np.array([v for _, v in cells], dtype=np.int32),
                    {"eval": bits, "fixed": bits}, null_fixed.astype(np.uint16),
                    np.array(layers, dtype=np.int32), null_eval.astype(np.uint16),
                )  # fmt: skip
                for i, (t, layer) in enumerate(cells):
                    row = {"model": model, "probe": probe, "train_dataset": t, "layer": layer,
                           "eval_dataset": e, "eval_split": split, "accuracy": right[i] / UNITS,
                           "n": UNITS, "auroc": None, "is_flipped": False, "status": "ok",
                           "reason": "", "fit_seconds": 0.1, "depth": depth}  # fmt: skip
                    if null:
                        means = {"": null_eval[list(layers).index(layer)].mean() / R,
                                 "_fixed": null_fixed[i].mean() / R}  # fmt: skip
                        row |= {"accuracy_fixed": right[i] / UNITS, "train_sign": 1}
                        for suffix, mean in means.items():
                            row |= {f"null_mean{suffix}": mean, f"null_sd{suffix}": NULL_SD,
                                    f"null_p95{suffix}": mean + 1.645 * NULL_SD}  # fmt: skip
                    rows.append(row)
        jobs.append(oc.JobOutcomes(model, probe, R, list(train), eval_sets))
    return conform(pd.DataFrame(rows, columns=RESULT_COLUMNS)), jobs
