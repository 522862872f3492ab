"""Probe-stage benchmark: the whole probe grid of a Qwen3-4B-sized run, on synthetic data.

Shapes as in a Qwen3-4B run: hidden 2560; 17 train datasets whose train split has 400 groups
of 2–5 rows; 18 eval datasets with 2000 validation + 2000 train-hparams groups; 18 layers.
Every probe of the study (8, the random baseline aside) is trained on every train dataset ×
layer and scored on every eval dataset × both splits — 8 × 17 × 18 fits, each scored 36
times — through `probegen.sweep.run_jobs`, the code the probe jobs run. Activations are held
in bf16, like the cache, and converted to float32 on every load, as the cache reader does.

Targets on the 2-core development CPU: the grid in < 3 minutes with peak memory < 4 GB.

`--workers N` runs the jobs in N processes with cores // N torch threads each, as the local
launcher does (`hydra/launcher=local`: joblib workers whose OpenMP/BLAS threads are limited
to cores // n_jobs). By default the jobs are batched as that launcher batches a sweep over
probes (`probegen.launcher.plan_worker_batches`: N batches balanced by probe cost) and each
batch is one shared pass (`run_jobs`); `--alone` runs each job on its own pass instead, one
job per worker at a time, as Hydra's joblib launcher (and Slurm) do. Workers are forked
after the data is generated, so they share it as jobs share the page-cached activation
cache. Peak memory is the peak of the summed proportional set size (PSS: shared pages split
between the processes sharing them) of the benchmark and its workers, sampled every 0.2 s.

  python scripts/bench_probe.py                          # the full grid, one process
  python scripts/bench_probe.py --workers 2              # the full grid on two workers
  python scripts/bench_probe.py --workers 2 --alone      # ... each job on its own pass
  python scripts/bench_probe.py --layers 2 --probes lr,dim   # a quick look
  python scripts/bench_probe.py --probes lr,lr-g             # LR's grid (unconv: fits that
                                                             # did not converge)
  python scripts/bench_probe.py --device cuda            # probes fitted on the GPU
  python scripts/bench_probe.py --workers 2 --null-overhead  # the grid without the null
                                                 # (eval.null_directions=0), then with it

Every job also scores the null (`--null-directions`, default 200 as in `eval.null_directions`)
and collects the per-unit outcomes it writes; `--null-overhead` times the grid first with
no null, then with it, in the same run, and prints the ratio.

`--device` is the probe job's `device=`: where the probes are fitted (each train set is
moved there once per layer). Scoring stays on the CPU, as in the job.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from probegen.cache import Activations, project_rows, rows_of
from probegen.launcher import plan_worker_batches, probe_weight
from probegen.results import unconverged_fits
from probegen.sweep import JobSpec, run_jobs

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

    def depth(self, dataset: str) -> int | None:
        """No model behind the arrays: the results' depth stays null."""
        return None

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


class PeakMemory:
    """Peak of the summed PSS of this process and its children, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        self.peak, self._interval = 0, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration):
            return 0  # a worker that just exited

    def _total(self) -> int:
        pids = [os.getpid(), *(p.pid for p in multiprocessing.active_children())]
        return sum(self._pss(pid) for pid in pids)

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._total())

    def __enter__(self) -> PeakMemory:
        self.peak = self._total()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


# Set before the workers fork: they inherit the generated activations instead of copying them.
_SOURCE: SyntheticSource | None = None
_NAMES: tuple[list[str], list[str]] = ([], [])
_DEVICE = "cpu"
_NULL = JobSpec.null_directions


def _limit_threads(threads: int) -> None:
    """What joblib's workers get from OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, ...: set here
    because a forked worker has loaded its libraries already."""
    threadpool_limits(threads)
    torch.set_num_threads(threads)


def run_batch(probes: list[str]) -> list[tuple]:
    """Jobs of the grid in one shared pass, as a worker of the local launcher runs them: per
    probe (probe, batch seconds, fit seconds, fits, fits that did not converge, ok rows,
    mean validation accuracy)."""
    start = time.perf_counter()
    train, evals = _NAMES
    specs = [
        JobSpec("bench", p, train=train, eval=evals, device=_DEVICE, null_directions=_NULL)
        for p in probes
    ]
    outputs = run_jobs(specs, _SOURCE)
    seconds = time.perf_counter() - start
    summary = []
    for probe, output in zip(probes, outputs, strict=True):
        out = output.results
        fits = out.drop_duplicates(["train_dataset", "layer"])
        ok = out[(out.status == "ok") & (out.eval_split == "validation")]
        summary.append((probe, seconds, fits["fit_seconds"].sum(), len(fits),
                        unconverged_fits(out), (out["status"] == "ok").sum(),
                        ok["accuracy"].mean()))  # fmt: skip
    return summary


def run_grid(batches: list[list[str]], workers: int, threads: int):
    """The grid's batches on `workers` processes: (per-batch summaries, wall s, peak GB)."""
    with PeakMemory() as memory:
        total = time.perf_counter()
        if workers == 1:
            per_batch = [run_batch(b) for b in batches]
        else:
            # fork: workers share the parent's activations; chunksize 1 hands each free
            # worker the next batch in order, as joblib does
            context = multiprocessing.get_context("fork")
            with context.Pool(workers, _limit_threads, (threads,)) as pool:
                per_batch = list(pool.imap(run_batch, batches, chunksize=1))
        wall = time.perf_counter() - total
    return per_batch, wall, memory.peak / 2**30


def main() -> None:
    global _SOURCE, _NAMES, _DEVICE, _NULL
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", default=",".join(STUDY_PROBES))
    parser.add_argument("--train", type=int, default=17, help="train datasets")
    parser.add_argument("--eval", type=int, default=18, help="eval datasets (train ones first)")
    parser.add_argument("--layers", type=int, default=18)
    parser.add_argument("--hidden", type=int, default=2560)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--alone", action="store_true", help="each job on its own pass")
    parser.add_argument("--device", default="cpu", help="where probes are fitted (job's device=)")
    parser.add_argument("--null-directions", type=int, default=JobSpec.null_directions)
    parser.add_argument(
        "--null-overhead", action="store_true", help="time the grid without the null first"
    )
    args = parser.parse_args()
    _DEVICE = args.device

    start = time.perf_counter()
    groups = {"train": 400, "train-hparams": 2000, "validation": 2000}
    _SOURCE = SyntheticSource(max(args.train, args.eval), args.hidden, groups, args.layers)
    setup = time.perf_counter() - start
    names = sorted(_SOURCE.data)
    _NAMES = (names[: args.train], names[: args.eval])
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads() if args.workers == 1 else max(1, cores // args.workers)
    print(
        f"torch {torch.__version__}; {args.workers} worker(s), {threads} thread(s) each, "
        f"{'each job on its own pass' if args.alone else 'jobs batched in shared passes'}, "
        f"probes fitted on {args.device}; "
        f"hidden {args.hidden}, {args.train} train × {args.layers} layers, {args.eval} eval "
        f"datasets × 2 splits; data generated in {setup:.1f}s"
    )
    probes = args.probes.split(",")
    if args.alone:
        batches = [[p] for p in probes]
    else:
        weights = [probe_weight(p) for p in probes]
        plan = plan_worker_batches(["grid"] * len(probes), args.workers, weights)
        batches = [[probes[i] for i in batch] for batch in plan]
    baseline = None
    if args.null_overhead:
        _NULL = 0
        _, baseline, _ = run_grid(batches, args.workers, threads)
        print(f"grid without the null (null_directions=0): {baseline:.1f}s")
    _NULL = args.null_directions
    per_batch, wall, peak_gb = run_grid(batches, args.workers, threads)
    print(
        f"\n{'probe':8} {'batch s':>8} {'fit s':>7} {'fits':>5} {'unconv':>6} {'ok rows':>8} "
        f"{'mean val acc':>12}"
    )
    for batch in per_batch:
        for probe, batch_s, fit_s, n_fits, unconverged, ok, acc in batch:
            print(f"{probe:8} {batch_s:8.1f} {fit_s:7.1f} {n_fits:5d} {unconverged:6d} {ok:8d} "
                  f"{acc:12.3f}")  # fmt: skip
    print(
        f"\ngrid wall time {wall:.1f}s (target < 180s: {'PASS' if wall < 180 else 'FAIL'}); "
        f"peak memory {peak_gb:.2f} GB (target < 4 GB: {'PASS' if peak_gb < 4 else 'FAIL'})"
    )
    if baseline is not None:
        added = wall / baseline - 1
        print(
            f"the null ({_NULL} directions) and the outcomes add {100 * added:.1f}% to the grid "
            f"time (target < 25%: {'PASS' if added < 0.25 else 'FAIL'})"
        )


if __name__ == "__main__":
    main()
