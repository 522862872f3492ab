"""LR's solver on real activations: diagonal preconditioning alone against the low-rank step.

For every other cached layer of each dataset, fits LR (C=1, max_iter=200, one thread) with
`precondition_rank=0` and with the default (64), and compares both with sklearn's
LogisticRegression(C=1) solved to tol=1e-8 (the exact optimum). Prints per dataset the
iterations, the smallest cosine to the optimum and the fit time, then the totals.

  python scripts/bench_lr.py                     # the demo's cache (python -m probegen.demo)
  python scripts/bench_lr.py --cache-dir cache --model 4b --datasets got
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from probegen.blas import one_thread_each
from probegen.datasets import resolve
from probegen.probes import make_probe
from probegen.sweep import CacheSource


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", default="cache/demo")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--datasets", default="offline", help="an id, a collection or a,b,c")
    parser.add_argument("--max-iter", type=int, default=200)
    args = parser.parse_args()
    names = resolve(args.datasets.split(",") if "," in args.datasets else args.datasets)
    source = CacheSource(args.cache_dir, args.model)
    ranks = (0, 64)
    totals = {r: {"fits": 0, "converged": 0, "seconds": 0.0, "cos": 1.0} for r in ranks}
    print(f"{'dataset':24} {'rank':>4} {'iterations per layer':40} {'min cos':>8} {'fit s':>6}")
    with one_thread_each():
        make_probe("lr").fit(np.eye(4, 3, dtype=np.float32), [1, 0, 1, 0])  # warm up BLAS
        for name in names:
            fits = []
            for layer in source.layers(name)[::2]:
                train = source.load(name, layer, ("train",))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    exact = LogisticRegression(C=1.0, tol=1e-8, max_iter=20_000)
                    exact.fit(train.X.astype(np.float64), train.labels)
                fits.append((train, exact.coef_[0]))
            for rank in ranks:
                iterations, cosines, seconds = [], [], 0.0
                for train, optimum in fits:
                    probe = make_probe("lr", max_iter=args.max_iter, precondition_rank=rank)
                    start = time.perf_counter()
                    probe.fit(train.X, train.labels)
                    seconds += time.perf_counter() - start
                    iterations.append(probe.n_iter_)
                    cosines.append(cosine(probe.coef_, optimum))
                t = totals[rank]
                t["fits"] += len(fits)
                t["converged"] += sum(i < args.max_iter for i in iterations)
                t["seconds"] += seconds
                t["cos"] = min(t["cos"], *cosines)
                shown = ",".join(map(str, iterations))
                print(f"{name:24} {rank:4d} {shown:40} {min(cosines):8.5f} {seconds:6.2f}")
    print()
    for rank, t in totals.items():
        print(
            f"precondition_rank={rank}: {t['converged']} of {t['fits']} fits converged within "
            f"{args.max_iter} iterations; smallest cosine to the optimum {t['cos']:.5f}; "
            f"fits {t['seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()
