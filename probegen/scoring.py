"""Scoring a layer's fitted directions (docs/design.md §6–7) into result rows: every eval
set is read once per layer and multiplied once by the directions of every job of the pass
(`score_layer`; `probegen.evaluation` is vectorised over directions). What depends only on
an eval set's rows (split indices, group codes, tie-break priorities) is prepared at the
first layer and reused at the others (`EvalRows`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from probegen.cache import Activations, rows_of
from probegen.evaluation import EvalSet
from probegen.fitting import Fit
from probegen.results import EVAL_SPLITS
from probegen.sources import ActivationSource


@dataclass
class JobRows:
    """One job's result rows (`RESULT_COLUMNS`), in the order they are found."""

    model: str
    probe: str
    sign: str = "eval"  # the job's sign policy: eval | train (docs/design.md §6)
    rows: list[dict] = field(default_factory=list)

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
    """One eval dataset's rows, prepared for scoring: per split, its row index and EvalSet.
    Rows do not change with the layer; `matches` checks that before they are reused."""

    def __init__(self, scored: Activations, seed: int):
        self.labels, self.groups, self.splits = scored.labels, scored.groups, scored.splits
        self.parts: dict[str, tuple[np.ndarray | slice, EvalSet]] = {}
        for split in EVAL_SPLITS:
            index = rows_of(self.splits, (split,))
            groups = None if self.groups is None else self.groups[index]
            self.parts[split] = (index, EvalSet(self.labels[index], groups, seed))

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
) -> None:
    """Score each job's fits at `layer` (`fits`: per job, train dataset -> fit) on each
    eval set of `evals` and split, adding the jobs' rows: one product per eval set for all
    directions, one scoring call per sign policy. `eval_rows` carries the prepared rows of
    each eval set from one layer to the next; `seed` breaks ties (docs/design.md §6)."""
    parts, offset = [], 0
    for job, job_fits in zip(jobs, fits, strict=True):
        if job_fits:
            parts.append(_Part(job, job_fits, slice(offset, offset + len(job_fits))))
            offset += len(job_fits)
    if not parts:
        return
    W = torch.from_numpy(np.stack([fit.coef for p in parts for fit in p.fits.values()], 1))
    by_policy = {policy: [p for p in parts if p.job.sign == policy] for policy in ("eval", "train")}
    for eval_name in evals:
        scored = source.project(eval_name, layer, W, EVAL_SPLITS)  # [rows, all directions]
        prepared = eval_rows.get(eval_name)
        if prepared is None or not prepared.matches(scored):
            prepared = eval_rows[eval_name] = EvalRows(scored, seed)
        for split in EVAL_SPLITS:
            index, eval_set = prepared.parts[split]
            if eval_set.n_rows == 0:
                reason = f"{eval_name} has no {split} rows"
                for p in parts:
                    for name in p.fits:
                        row = empty_row(eval_name, split, "skipped", reason)
                        p.job.rows.append(p.job.fit_columns(name, layer) | row)
                continue
            S = scored.X[index]
            for policy, mine in by_policy.items():
                if not mine:
                    continue
                if len(mine) < len(parts):  # a copy of just these columns, contiguous
                    S_mine = S[:, np.r_[tuple(p.columns for p in mine)]]
                else:
                    S_mine = S
                signs = None
                if policy == "train":
                    signs = np.array([fit.sign for p in mine for fit in p.fits.values()])
                result = eval_set.score(S_mine, signs)
                start = 0
                for p in mine:
                    take = slice(start, start + len(p.fits))
                    start = take.stop
                    _add_scored(p, layer, eval_name, split, result, take)


def _add_scored(part: _Part, layer: int, eval_name: str, split: str, result, take: slice) -> None:
    """The ok rows of one job's directions (`take`: their columns in `result`)."""
    # tolist(): plain Python numbers in one call each, not one numpy scalar per cell
    columns = zip(
        part.fits,
        result.accuracy[take].tolist(),
        result.auroc[take].tolist(),
        result.is_flipped[take].tolist(),
        strict=True,
    )
    for name, accuracy, auroc, flipped in columns:
        fit = part.fits[name]
        part.job.rows.append(
            part.job.fit_columns(name, layer)
            | {
                "eval_dataset": eval_name,
                "eval_split": split,
                "accuracy": accuracy,
                "n": int(result.n),
                "auroc": None if math.isnan(auroc) else auroc,
                "is_flipped": flipped,
                "status": "ok",
                "reason": fit.note,
                "fit_seconds": fit.seconds,
            }
        )
