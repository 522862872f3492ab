"""Per-unit outcomes of every scored cell, the file stage 3 bootstraps from (docs/design.md §7).

A *cell* is one fitted direction (train dataset, layer) scored on one eval set (dataset,
split). A *unit* is what accuracy averages over: an informative group of a grouped eval
set, a row of an ungrouped one. For every cell the job keeps, per sign policy, whether
each unit was right (one bit), and how many of the null's random directions were right on
each unit under the same policy. Resampling units then gives the accuracy, the null mean
and everything built from them on the same resample, for every probe at once.

`outcomes.safetensors` (numpy tensors, no torch, so stage 3 stays torch-free), per eval set
`<E>/<split>/`:

- `train` int32 [c]: index of the cell's train dataset in the metadata's `train_datasets`
- `layer` int32 [c]
- `correct_eval`, `correct_fixed` uint8 [c, ceil(u / 8)]: `numpy.packbits` of the units'
  outcomes (big bit order) under the eval-sign policy (the original's) and the train-fixed one
- `null_fixed` uint16 [c, u]: of the `null_directions` random directions, how many were
  right on each unit with sign and threshold fixed on the cell's train split
- `null_layers` int32 [L], `null_eval` uint16 [L, u]: the same under the eval-sign policy,
  which does not depend on the train dataset: one row per layer

Metadata (all strings): `format`, `model`, `probe`, `null_directions`, `train_datasets`
(JSON list), `eval_sets` (JSON list of {dataset, split, units, grouped, unit_digest}: the
digest names the units and their order, so outcomes of several jobs pair up only when it
matches).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

FILE = "outcomes.safetensors"
FORMAT = "probegen-outcomes/1"
POLICIES = ("eval", "fixed")


class OutcomesError(ValueError):
    """An outcomes file is unreadable or does not pair with the others."""


def unit_digest(unit_ids: Iterable) -> str:
    """A short digest of the units' ids in their order (group ids or row ids)."""
    h = hashlib.blake2b(digest_size=12)
    for unit in unit_ids:
        h.update(str(unit).encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class EvalOutcomes:
    """One eval set's outcomes in one job: cell i is (train_datasets[train[i]], layer[i])."""

    dataset: str
    split: str
    units: int
    grouped: bool
    unit_digest: str
    train: np.ndarray  # int32 [c]
    layer: np.ndarray  # int32 [c]
    correct: dict[str, np.ndarray]  # policy -> bool [c, u]
    null_fixed: np.ndarray  # uint16 [c, u]
    null_layers: np.ndarray  # int32 [L]
    null_eval: np.ndarray  # uint16 [L, u]

    def null_counts(self, policy: str) -> np.ndarray:
        """uint16 [c, u]: null directions right on each unit of each cell under `policy`."""
        if policy == "fixed":
            return self.null_fixed
        position = {int(v): i for i, v in enumerate(self.null_layers)}
        return self.null_eval[[position[int(v)] for v in self.layer]]


@dataclass
class JobOutcomes:
    """A job's outcomes file, read back."""

    model: str
    probe: str
    null_directions: int
    train_datasets: list[str]
    eval_sets: dict[tuple[str, str], EvalOutcomes]


def write(path: Path, outcomes: JobOutcomes) -> None:
    """Write `outcomes` to `path` (safetensors, numpy)."""
    tensors: dict[str, np.ndarray] = {}
    described = []
    for (dataset, split), e in outcomes.eval_sets.items():
        prefix = f"{dataset}/{split}/"
        tensors[prefix + "train"] = np.ascontiguousarray(e.train, dtype=np.int32)
        tensors[prefix + "layer"] = np.ascontiguousarray(e.layer, dtype=np.int32)
        for policy in POLICIES:
            bits = np.packbits(np.asarray(e.correct[policy], dtype=bool), axis=1)
            tensors[prefix + f"correct_{policy}"] = np.ascontiguousarray(bits)
        tensors[prefix + "null_fixed"] = np.ascontiguousarray(e.null_fixed, dtype=np.uint16)
        tensors[prefix + "null_layers"] = np.ascontiguousarray(e.null_layers, dtype=np.int32)
        tensors[prefix + "null_eval"] = np.ascontiguousarray(e.null_eval, dtype=np.uint16)
        described.append(
            {"dataset": dataset, "split": split, "units": int(e.units),
             "grouped": bool(e.grouped), "unit_digest": e.unit_digest}
        )  # fmt: skip
    metadata = {
        "format": FORMAT,
        "model": outcomes.model,
        "probe": outcomes.probe,
        "null_directions": str(int(outcomes.null_directions)),
        "train_datasets": json.dumps(list(outcomes.train_datasets)),
        "eval_sets": json.dumps(described),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def read(path: Path) -> JobOutcomes:
    """Read an outcomes file; `OutcomesError` naming the file when it is not one."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:  # one open: metadata and tensors
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}, expected {FORMAT!r}")
        described = json.loads(metadata["eval_sets"])
        eval_sets = {}
        for d in described:
            prefix = f"{d['dataset']}/{d['split']}/"
            units = int(d["units"])
            correct = {
                policy: np.unpackbits(
                    tensors[prefix + f"correct_{policy}"], axis=1, count=units
                ).astype(bool)
                for policy in POLICIES
            }
            eval_sets[d["dataset"], d["split"]] = EvalOutcomes(
                dataset=d["dataset"], split=d["split"], units=units, grouped=bool(d["grouped"]),
                unit_digest=d["unit_digest"], train=tensors[prefix + "train"],
                layer=tensors[prefix + "layer"], correct=correct,
                null_fixed=tensors[prefix + "null_fixed"],
                null_layers=tensors[prefix + "null_layers"],
                null_eval=tensors[prefix + "null_eval"],
            )  # fmt: skip
        return JobOutcomes(
            model=metadata["model"],
            probe=metadata["probe"],
            null_directions=int(metadata["null_directions"]),
            train_datasets=json.loads(metadata["train_datasets"]),
            eval_sets=eval_sets,
        )
    except Exception as err:
        raise OutcomesError(
            f"{path}: not a readable outcomes file ({type(err).__name__}: {err}); re-run its "
            "probe job to write it again"
        ) from err
