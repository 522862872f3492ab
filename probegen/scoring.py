"""Scoring a layer's fitted directions (docs/design.md §6–7) into result rows: every eval
set is read once per layer and multiplied once by the directions of every job of the pass
(`score_layer`; `probegen.evaluation` is vectorised over directions). What depends only on
an eval set's rows (split indices, group codes, tie-break priorities) is prepared at the
first layer and reused at the others (`EvalRows`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from probegen.cache import Activations, rows_of
from probegen.evaluation import EvalSet, Outcomes
from probegen.fitting import Fit
from probegen.null import LayerNull, NullStats, score_null
from probegen.outcomes import EvalOutcomes, JobOutcomes, unit_digest
from probegen.results import EVAL_SPLITS
from probegen.sources import ActivationSource

log = logging.getLogger(__name__)


@dataclass
class CellLog:
    """One job's per-unit outcomes on one eval split, cell after cell (`probegen.outcomes`)."""

    train: list[str] = field(default_factory=list)
    layer: list[int] = field(default_factory=list)
    digests: set[str] = field(default_factory=set)  # of the units: one, unless rows changed
    correct_eval: list[np.ndarray] = field(default_factory=list)
    correct_fixed: list[np.ndarray] = field(default_factory=list)


@dataclass
class NullLog:
    """What the null left on each eval split, shared by every job of a pass: per split its
    units (count, grouped, digest), and per unit how many null directions were right —
    under the eval-sign policy per layer, under the train-fixed one per train set too."""

    directions: int
    units: dict[tuple[str, str], tuple[int, bool, str]] = field(default_factory=dict)
    eval_counts: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict)
    fixed_counts: dict[tuple[str, str, str, int], np.ndarray] = field(default_factory=dict)


@dataclass
class JobRows:
    """One job's result rows (`RESULT_COLUMNS` but `depth`), in the order they are found,
    and its per-unit outcomes per eval split."""

    model: str
    probe: str
    rows: list[dict] = field(default_factory=list)
    cells: dict[tuple[str, str], CellLog] = field(default_factory=dict)

    def fit_columns(self, train: str, layer: int) -> dict:
        """The columns that name a fit."""
        return {"model": self.model, "probe": self.probe, "train_dataset": train, "layer": layer}

    def add_unscored(
        self, train: str, layer: int, evals: Sequence[str], status: str, reason: str
    ) -> None:
        """Rows for every eval set and split of a fit that did not happen."""
        for eval_name in evals:
            for split in EVAL_SPLITS:
                self.rows.append(
                    self.fit_columns(train, layer) | empty_row(eval_name, split, status, reason)
                )


def empty_row(eval_name: str, split: str, status: str, reason: str) -> dict:
    """The result columns of an eval that could not be scored."""
    return {
        "eval_dataset": eval_name,
        "eval_split": split,
        "accuracy": None,
        "n": 0,
        "auroc": None,
        "is_flipped": False,
        "status": status,
        "reason": reason,
        "fit_seconds": None,
    }


class EvalRows:
    """One eval dataset's rows, prepared for scoring: per split, its row index, EvalSet and
    the digest of its units (`outcomes.unit_digest`). Rows do not change with the layer;
    `matches` checks that before they are reused."""

    def __init__(self, scored: Activations, seed: int):
        self.labels, self.groups, self.splits = scored.labels, scored.groups, scored.splits
        self.parts: dict[str, tuple[np.ndarray | slice, EvalSet, str]] = {}
        for split in EVAL_SPLITS:
            index = rows_of(self.splits, (split,))
            groups = None if self.groups is None else self.groups[index]
            eval_set = EvalSet(self.labels[index], groups, seed)
            ids = scored.row_ids[index] if groups is None else groups
            digest = unit_digest(np.asarray(ids)[eval_set.unit_rows()])
            self.parts[split] = (index, eval_set, digest)

    def matches(self, scored: Activations) -> bool:
        """Whether `scored` has these rows (labels, groups and splits)."""

        def same(a, b) -> bool:
            if a is None or b is None:
                return a is b
            return a is b or (a.shape == b.shape and np.array_equal(a, b))

        return all(
            same(mine, theirs)
            for mine, theirs in [
                (self.labels, scored.labels),
                (self.groups, scored.groups),
                (self.splits, scored.splits),
            ]
        )


@dataclass
class _Part:
    """One job's fitted directions within a layer's score matrix: columns `columns`."""

    job: JobRows
    fits: dict[str, Fit]
    columns: slice


def score_layer(
    jobs: Sequence[JobRows],
    fits: Sequence[dict[str, Fit]],
    source: ActivationSource,
    layer: int,
    evals: Sequence[str],
    seed: int,
    eval_rows: dict[str, EvalRows],
    null: LayerNull | None = None,
    null_log: NullLog | None = None,
) -> None:
    """Score each job's fits at `layer` (`fits`: per job, train dataset -> fit) on each
    eval set of `evals` and split under both sign policies, adding the jobs' rows and
    outcomes: one product per eval set for all directions (and the `null`'s, whose results
    go to `null_log` and into the rows). `eval_rows` carries the prepared rows of each eval
    set from one layer to the next; `seed` breaks ties (docs/design.md §6)."""
    parts, offset = [], 0
    for job, job_fits in zip(jobs, fits, strict=True):
        if job_fits:
            parts.append(_Part(job, job_fits, slice(offset, offset + len(job_fits))))
            offset += len(job_fits)
    if not parts:
        return
    all_fits = [fit for p in parts for fit in p.fits.values()]
    columns = [np.stack([fit.coef for fit in all_fits], 1)]
    if null is not None:
        columns.append(null.directions)
    W = torch.from_numpy(np.ascontiguousarray(np.hstack(columns), dtype=np.float32))
    signs = np.array([fit.sign for fit in all_fits])
    thresholds = np.array([fit.threshold for fit in all_fits])
    for eval_name in evals:
        scored = source.project(eval_name, layer, W, EVAL_SPLITS)  # [rows, all directions]
        prepared = eval_rows.get(eval_name)
        if prepared is None or not prepared.matches(scored):
            prepared = eval_rows[eval_name] = EvalRows(scored, seed)
        for split in EVAL_SPLITS:
            index, eval_set, digest = prepared.parts[split]
            if eval_set.n_rows == 0:
                reason = f"{eval_name} has no {split} rows"
                for p in parts:
                    for name in p.fits:
                        row = empty_row(eval_name, split, "skipped", reason)
                        p.job.rows.append(p.job.fit_columns(name, layer) | row)
                continue
            S = scored.X[index]
            S_fits = S[:, :offset]
            both = (eval_set.outcomes(S_fits), eval_set.outcomes(S_fits, signs, thresholds))
            nulls = None if null is None else score_null(eval_set, S[:, offset:], null.fits)
            if null_log is not None:
                _log_null(null_log, eval_name, split, layer, eval_set, digest, nulls)
            for p in parts:
                _add_scored(p, layer, eval_name, split, both, nulls)
                p.job.cells[eval_name, split].digests.add(digest)


def _log_null(log, eval_name, split, layer, eval_set, digest, nulls) -> None:
    log.units[eval_name, split] = (eval_set.units, eval_set.grouped, digest)
    if nulls is None:
        return
    log.eval_counts[eval_name, split, layer] = nulls[0].counts
    for train, stats in nulls[1].items():
        log.fixed_counts[eval_name, split, train, layer] = stats.counts


def _add_scored(
    part: _Part,
    layer: int,
    eval_name: str,
    split: str,
    both: tuple[Outcomes, Outcomes],
    nulls: tuple[NullStats, dict[str, NullStats]] | None,
) -> None:
    """The ok rows and outcomes of one job's directions (its columns of `both`: the eval-sign
    policy's outcomes and the train-fixed one's)."""
    original, fixed = both
    take = part.columns
    # tolist(): plain Python numbers in one call each, not one numpy scalar per cell
    columns = zip(
        part.fits,
        original.accuracy[take].tolist(),
        original.auroc[take].tolist(),
        original.is_flipped[take].tolist(),
        fixed.accuracy[take].tolist(),
        fixed.auroc[take].tolist(),
        strict=True,
    )
    cells = part.job.cells.setdefault((eval_name, split), CellLog())
    for j, (name, accuracy, auroc, flipped, accuracy_fixed, auroc_fixed) in enumerate(columns):
        fit = part.fits[name]
        row = part.job.fit_columns(name, layer) | {
            "eval_dataset": eval_name,
            "eval_split": split,
            "accuracy": accuracy,
            "n": int(original.n),
            "auroc": _number(auroc),
            "is_flipped": flipped,
            "status": "ok",
            "reason": fit.note,
            "fit_seconds": fit.seconds,
            "accuracy_fixed": _number(accuracy_fixed),
            "auroc_fixed": _number(auroc_fixed),
            "train_sign": int(fit.sign),
        }
        if nulls is not None:
            eval_null, fixed_nulls = nulls
            row |= {"null_mean": eval_null.mean, "null_sd": eval_null.sd, "null_p95": eval_null.p95}
            if name in fixed_nulls:
                f = fixed_nulls[name]
                row |= {"null_mean_fixed": f.mean, "null_sd_fixed": f.sd, "null_p95_fixed": f.p95}
        part.job.rows.append(row)
        cells.train.append(name)
        cells.layer.append(layer)
        cells.correct_eval.append(original.correct[:, take.start + j])
        cells.correct_fixed.append(fixed.correct[:, take.start + j])


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def job_outcomes(job: JobRows, train: Sequence[str], null_log: NullLog) -> JobOutcomes:
    """One job's `probegen.outcomes` content: its cells' outcomes with the null's counts."""
    index = {name: i for i, name in enumerate(train)}
    eval_sets = {}
    for (eval_name, split), cells in job.cells.items():
        if len(cells.digests) > 1:
            # Only a source whose rows change from layer to layer does this; outcomes of
            # different units cannot be resampled together.
            log.warning("%s/%s: rows differ between layers; no outcomes kept", eval_name, split)
            continue
        # every scored split logs its units (`_log_null`), with or without the null
        units, grouped, digest = null_log.units[eval_name, split]
        layers = sorted(
            {layer for e, s, layer in null_log.eval_counts if (e, s) == (eval_name, split)}
        )
        zeros = np.zeros(units, dtype=np.uint16)
        null_fixed = [
            null_log.fixed_counts.get((eval_name, split, t, layer), zeros)
            for t, layer in zip(cells.train, cells.layer, strict=True)
        ]
        eval_sets[eval_name, split] = EvalOutcomes(
            dataset=eval_name, split=split, units=units, grouped=grouped,
            unit_digest=digest, train=np.array([index[t] for t in cells.train], np.int32),
            layer=np.array(cells.layer, np.int32),
            correct={"eval": np.stack(cells.correct_eval), "fixed": np.stack(cells.correct_fixed)},
            null_fixed=np.stack(null_fixed), null_layers=np.array(layers, np.int32),
            null_eval=np.array(
                [null_log.eval_counts[eval_name, split, layer] for layer in layers], np.uint16
            ).reshape(len(layers), units),
        )  # fmt: skip
    return JobOutcomes(job.model, job.probe, null_log.directions, list(train), eval_sets)
