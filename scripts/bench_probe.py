"""Probe-stage benchmark: the whole probe grid of a Qwen3-4B-sized run, on synthetic data.

Shapes as in a Qwen3-4B run: hidden 2560; 17 train datasets whose train split has 400 groups
of 2–5 rows; 18 eval datasets with 2000 validation + 2000 train-hparams groups; 18 layers.
Every probe of the study (8, the random baseline aside) is trained on every train dataset ×
layer and scored on every eval dataset × both splits — 8 × 17 × 18 fits, each scored 36
times — through `probegen.sweep.run_job`, the code the probe job runs. Activations are held
in bf16, like the cache, and converted to float32 on every load, as the cache reader does.

Targets on the 2-core development CPU: the grid in < 3 minutes with peak memory < 4 GB.

  python scripts/bench_probe.py                          # the full grid
  python scripts/bench_probe.py --layers 2 --probes lr,dim   # a quick look
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from probegen.cache import Activations, project_rows, rows_of
from probegen.sweep import JobSpec, run_job

STUDY_PROBES = ["dim", "lda", "lr", "lr-g", "ccs", "pca", "pca-g", "lat"]


class SyntheticSource:
    """In-memory bf16 activations with a shared truth direction, one array per dataset.

    Every layer serves the same array (generating 18 × 18 of them would dominate the run);
    the job still loads and converts it afresh for every (dataset, layer), as from the cache.
    """

    def __init__(self, n_datasets: int, hidden: int, groups: dict[str, int], layers: int, seed=0):
        rng = np.random.default_rng(seed)
        self._layers = list(range(1, 2 * layers, 2))
        truth = rng.standard_normal(hidden).astype(np.float32)
        truth /= np.linalg.norm(truth)
        self.data: dict[str, tuple[torch.Tensor, dict]] = {}
        self._indices: dict[tuple, slice | np.ndarray] = {}
        for d in range(n_datasets):
            own = rng.standard_normal(hidden).astype(np.float32)
            direction = truth + 0.7 * own / np.linalg.norm(own)
            sizes = {s: rng.integers(2, 6, size=n) for s, n in groups.items()}
            n_rows = sum(int(v.sum()) for v in sizes.values())
            splits = np.concatenate([np.repeat(s, v.sum()) for s, v in sizes.items()])
            group_ids = np.concatenate(
                [np.repeat([f"{s}-{g}" for g in range(len(v))], v) for s, v in sizes.items()]
            )
            # one true row per group: the first
            labels = np.concatenate(
                [np.r_[True, np.zeros(k - 1, bool)] for v in sizes.values() for k in v]
            )
            X = rng.standard_normal((n_rows, hidden), dtype=np.float32)
            X += np.where(labels, 1.5, -0.5)[:, None] * direction[None, :]
            offsets = rng.standard_normal((len(np.unique(group_ids)), 8), dtype=np.float32)
            _, codes = np.unique(group_ids, return_inverse=True)
            X[:, :8] += 3 * offsets[codes]  # per-group offsets, as prompts of one question share
            # Row columns built once, as the cache reader holds them (layer reads slice them).
            meta = {
                "labels": labels,
                "groups": group_ids.astype(object),
                "splits": splits.astype(object),
                "row_ids": np.arange(n_rows).astype(str).astype(object),
            }
            self.data[f"ds{d:02d}"] = (torch.from_numpy(X).to(torch.bfloat16), meta)

    def layers(self, dataset: str) -> list[int]:
        return self._layers

    def _index(self, dataset: str, splits) -> slice | np.ndarray:
        """Rows of `splits`, memoised as the cache reader does."""
        key = (dataset, None if splits is None else tuple(splits))
        if key not in self._indices:
            splits_of = self.data[dataset][1]["splits"]
            self._indices[key] = slice(None) if splits is None else rows_of(splits_of, splits)
        return self._indices[key]

    def project(self, dataset: str, layer: int, W: torch.Tensor, splits=None) -> Activations:
        X, meta = self.data[dataset]
        index = self._index(dataset, splits)
        start, stop, _ = index.indices(len(X))
        scores = project_rows(X, start, stop - start, W)
        acts = self.load(dataset, layer, splits, with_x=False)
        acts.X = scores
        return acts

    def load(self, dataset: str, layer: int, splits=None, with_x=True) -> Activations:
        X, meta = self.data[dataset]
        index = self._index(dataset, splits)
        return Activations(
            X=X[index].to(torch.float32).numpy() if with_x else None,
            labels=meta["labels"][index],
            groups=meta["groups"][index],
            answer_types=None,
            splits=meta["splits"][index],
            row_ids=meta["row_ids"][index],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", default=",".join(STUDY_PROBES))
    parser.add_argument("--train", type=int, default=17, help="train datasets")
    parser.add_argument("--eval", type=int, default=18, help="eval datasets (train ones first)")
    parser.add_argument("--layers", type=int, default=18)
    parser.add_argument("--hidden", type=int, default=2560)
    args = parser.parse_args()

    start = time.perf_counter()
    groups = {"train": 400, "train-hparams": 2000, "validation": 2000}
    source = SyntheticSource(max(args.train, args.eval), args.hidden, groups, args.layers)
    setup = time.perf_counter() - start
    names = sorted(source.data)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; hidden {args.hidden}, "
        f"{args.train} train × {args.layers} layers, {args.eval} eval datasets × 2 splits; "
        f"data generated in {setup:.1f}s"
    )
    total, per_probe = time.perf_counter(), {}
    for probe in args.probes.split(","):
        t = time.perf_counter()
        spec = JobSpec("bench", probe, train=names[: args.train], eval=names[: args.eval])
        out = run_job(spec, source).results
        fits = out.drop_duplicates(["train_dataset", "layer"])
        per_probe[probe] = (
            time.perf_counter() - t,
            fits["fit_seconds"].sum(),
            len(fits),
            (out["status"] == "ok").sum(),
            out.loc[(out.status == "ok") & (out.eval_split == "validation"), "accuracy"].mean(),
        )
    wall = time.perf_counter() - total
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"\n{'probe':8} {'job s':>7} {'fit s':>7} {'fits':>5} {'ok rows':>8} {'mean val acc':>12}"
    )
    for probe, (job_s, fit_s, n_fits, ok, acc) in per_probe.items():
        print(f"{probe:8} {job_s:7.1f} {fit_s:7.1f} {n_fits:5d} {ok:8d} {acc:12.3f}")
    print(
        f"\ngrid wall time {wall:.1f}s (target < 180s: {'PASS' if wall < 180 else 'FAIL'}); "
        f"peak memory {peak_gb:.2f} GB (target < 4 GB: {'PASS' if peak_gb < 4 else 'FAIL'})"
    )


if __name__ == "__main__":
    main()
