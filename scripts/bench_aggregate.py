"""Stage 3 robust-view benchmark: `robust_analysis` on a Qwen3-14B-shaped synthetic grid.

The grid: the original eight probes × 17 train datasets × 20 layers, scored on 18 eval
datasets × {validation, train-hparams}, 2,000 units per eval set, R = 200 random
directions; a results table (97,920 rows) and one outcomes file per probe job. A child
process generates each job's outcomes, writes them with `probegen.outcomes.write` to
`--dir` and prints their size; the parent reads them back (`probegen.outcomes.read`, as the
report will) and runs `robust_analysis` with 1,000 resamples. The parent's peak RSS (getrusage
ru_maxrss) therefore counts reading and the analysis, not the generation.

Targets on the 2-core development CPU: the analysis in < 2 minutes, peak RSS < 4 GB.

  python scripts/bench_aggregate.py
  python scripts/bench_aggregate.py --shared-nulls   # nulls seeded alike in every job
  python scripts/bench_aggregate.py --layers 4 --resamples 200   # a quick look

`--shared-nulls` gives every probe job the same train-fixed null counts per (train
dataset, layer), as jobs whose random directions are seeded by layer would write; the
analysis then resamples each distinct null row once. By default every job's nulls differ,
the worst case.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from probegen import outcomes as oc
from probegen.aggregate.robust import robust_analysis
from probegen.aggregate.study import ORIGINAL_ALGORITHMS
from probegen.results import conform

TARGET_SECONDS, TARGET_BYTES = 120.0, 4 * 2**30
SPLITS = ("validation", "train-hparams")
MODEL, DEPTH = "qwen3-14b", 40


def truth(n_train: int, n_eval: int, layers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[train, layer, eval] planted accuracy: high in distribution, mixed elsewhere, some
    cells below chance under the train-fixed sign (flipped by the eval-sign policy)."""
    base = rng.uniform(0.35, 0.8, size=(n_train, 1, n_eval))
    depth = np.clip(layers / DEPTH * 1.6, 0.2, 1.0)[None, :, None]
    p = 0.5 + (base - 0.5) * depth
    own = np.arange(min(n_train, n_eval))
    p[own, :, own] = 0.6 + 0.3 * depth[0, :, 0]
    return p


def generate(args: argparse.Namespace) -> None:
    """Write every job's outcomes file and the results table to args.dir (child process)."""
    rng = np.random.default_rng(0)
    trains = [f"train_{i:02d}" for i in range(args.train)]
    evals = trains[: args.eval] + [f"eval_{i:02d}" for i in range(args.eval - args.train)]
    layers = np.linspace(1, DEPTH - 1, args.layers).round().astype(np.int32)
    cells_t, cells_l = np.meshgrid(np.arange(len(trains)), np.arange(len(layers)), indexing="ij")
    train, layer = cells_t.ravel().astype(np.int32), layers[cells_l.ravel()]
    u, r, c = args.units, args.nulls, train.size
    sd = np.sqrt(0.25 / u)
    shared = {}
    frames = []
    for probe in ORIGINAL_ALGORITHMS[: args.probes]:
        p = truth(len(trains), len(evals), layers, rng) + rng.normal(0, 0.02, (1, 1, 1))
        eval_sets = {}
        for e, dataset in enumerate(evals):
            for split in SPLITS:
                pe = np.clip(p[cells_t.ravel(), cells_l.ravel(), e], 0.05, 0.95)
                fixed = rng.random((c, u), dtype=np.float32) < pe[:, None]
                flip = fixed.mean(axis=1) < 0.5  # the eval-sign policy negates these
                correct_eval = np.where(flip[:, None], ~fixed, fixed)
                key = (dataset, split)
                if not args.shared_nulls or key not in shared:
                    # flipping where it helps lifts the eval-sign null by E|acc - 0.5|
                    shared[key] = (rng.binomial(r, 0.5, (c, u)).astype(np.uint16),
                                   rng.binomial(r, 0.5 + 0.8 * sd, (len(layers), u))
                                   .astype(np.uint16))  # fmt: skip
                null_fixed, null_eval = shared[key]
                eval_sets[key] = oc.EvalOutcomes(
                    dataset,
                    split,
                    u,
                    True,
                    oc.unit_digest(range(u)),
                    train,
                    layer,
                    {"eval": correct_eval, "fixed": fixed},
                    null_fixed,
                    layers,
                    null_eval,
                )
                mean_fixed = null_fixed.mean(axis=1) / r
                mean_eval = (null_eval.mean(axis=1) / r)[np.searchsorted(layers, layer)]
                frames.append(
                    pd.DataFrame(
                        {
                            "model": MODEL,
                            "probe": probe,
                            "train_dataset": np.array(trains)[train],
                            "layer": layer,
                            "eval_dataset": dataset,
                            "eval_split": split,
                            "accuracy": correct_eval.mean(axis=1),
                            "n": u,
                            "auroc": np.nan,
                            "is_flipped": flip,
                            "status": "ok",
                            "reason": "",
                            "fit_seconds": 0.1,
                            "depth": DEPTH,
                            "accuracy_fixed": fixed.mean(axis=1),
                            "auroc_fixed": np.nan,
                            "train_sign": 1,
                            "null_mean": mean_eval,
                            "null_sd": sd,
                            "null_p95": mean_eval + 1.645 * sd,
                            "null_mean_fixed": mean_fixed,
                            "null_sd_fixed": sd,
                            "null_p95_fixed": mean_fixed + 1.645 * sd,
                        }
                    )
                )
        job = oc.JobOutcomes(MODEL, probe, r, trains, eval_sets)
        folder = args.dir / probe
        folder.mkdir(parents=True, exist_ok=True)
        oc.write(folder / oc.FILE, job)
        size = (folder / oc.FILE).stat().st_size
        print(f"  {probe:6s} {oc.FILE}: {size / 2**20:6.1f} MiB", flush=True)
    conform(pd.concat(frames, ignore_index=True)).to_parquet(args.dir / "results.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--train", type=int, default=17)
    parser.add_argument("--eval", type=int, default=18)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--nulls", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--shared-nulls", action="store_true")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench_aggregate"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    print(f"grid: {args.probes} probes x {args.train} train x {args.layers} layers x "
          f"{args.eval} eval x 2 splits, {args.units} units, R = {args.nulls}")  # fmt: skip
    start = time.perf_counter()
    child = multiprocessing.get_context("fork").Process(target=generate, args=(args,))
    child.start()
    child.join()
    if child.exitcode:
        sys.exit(f"generation failed ({child.exitcode})")
    print(f"generated and written in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    results = pd.read_parquet(args.dir / "results.parquet")
    jobs = [oc.read(path) for path in sorted(args.dir.glob(f"*/{oc.FILE}"))]
    read = time.perf_counter() - start
    start = time.perf_counter()
    study = robust_analysis(results, jobs, DEPTH, resamples=args.resamples)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    summary = study.summary()
    assert summary["available"], summary["unavailable_reason"]
    for policy, head in summary["headlines"].items():
        shown = {
            k: "{value:.3f} [{lo:.3f}, {hi:.3f}]".format(**head[k])
            for k in ("share_transfer_half", "mean_ccr", "recovered_mean", "null_recovered_mean")
        }
        print(f"  {policy:5s}: learned {len(head['learned'])}, share transferring "
              f"{shown['share_transfer_half']}, mean CCR {shown['mean_ccr']}, RA "
              f"{shown['recovered_mean']} vs null {shown['null_recovered_mean']}")  # fmt: skip
    print(f"read {len(results)} rows and {len(jobs)} outcomes files: {read:.1f} s")
    print(
        f"robust_analysis ({args.resamples} resamples): {wall:.1f} s "
        f"({wall / TARGET_SECONDS:.2f} of the {TARGET_SECONDS:.0f} s target)"
    )
    print(
        f"peak RSS (reading + analysis): {peak / 2**30:.2f} GiB "
        f"({peak / TARGET_BYTES:.2f} of the 4 GiB target)"
    )
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
