"""LR's and LR-G's solver on real activations: convergence, iterations, time, exactness.

For every cached layer of each dataset (`--every 2`: every other), fits LR and LR-G (C=1,
one thread, the probes' defaults unless given) and compares each direction with
scikit-learn's LogisticRegression(C=1) of the same rows (LR-G: the group-centred rows)
solved by Newton-Cholesky to tol=1e-10, the exact optimum (its lbfgs solver does not reach
it on every layer of real activations). Prints per dataset and probe the iterations per
layer (* marks a fit that did not converge), the smallest cosine to the optimum and the fit
seconds; then per probe the converged fits out of all, the iterations (min/median/max), the
total fit seconds and the smallest cosine.

  python scripts/bench_lr.py                     # the demo's cache (python -m probegen.demo)
  python scripts/bench_lr.py --max-iter 200 --rank 0      # diagonal preconditioning alone
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
from probegen.probes.base import as_tensor, center_by, codes
from probegen.sweep import CacheSource

PROBES = ("lr", "lr-g")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def optimum(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sklearn's exact optimum of the probes' objective: its direction."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exact = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000, solver="newton-cholesky")
        return exact.fit(X.astype(np.float64), y).coef_[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", default="cache/demo")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--datasets", default="offline", help="an id, a collection or a,b,c")
    parser.add_argument("--every", type=int, default=1, help="every n-th cached layer")
    parser.add_argument("--probes", default=",".join(PROBES))
    parser.add_argument("--max-iter", type=int, help="the probes' max_iter (default: theirs)")
    parser.add_argument("--rank", type=int, help="precondition_rank (default: the probes')")
    args = parser.parse_args()
    names = resolve(args.datasets.split(",") if "," in args.datasets else args.datasets)
    probes = args.probes.split(",")
    params = {"max_iter": args.max_iter, "precondition_rank": args.rank}
    params = {k: v for k, v in params.items() if v is not None}
    source = CacheSource(args.cache_dir, args.model)
    # per probe, per fit: (iterations, converged, seconds, cosine to the optimum)
    fits: dict[str, list[tuple[int, bool, float, float]]] = {p: [] for p in probes}
    print(f"{'dataset':22} {'probe':5} {'iterations per layer (*: not converged)':60} "
          f"{'min cos':>8} {'fit s':>6}")  # fmt: skip
    with one_thread_each():
        make_probe("lr").fit(np.eye(4, 3, dtype=np.float32), [1, 0, 1, 0])  # warm up BLAS
        for name in names:
            mine: dict[str, list[tuple[int, bool, float, float]]] = {p: [] for p in probes}
            for layer in source.layers(name)[:: args.every]:
                train = source.load(name, layer, ("train",))
                centred = None
                for probe_name in probes:
                    X = train.X
                    if probe_name == "lr-g":
                        if centred is None:
                            groups = codes(train.groups, len(X), "groups")
                            centred = center_by(as_tensor(X), groups).numpy()
                        X = centred
                    exact = optimum(X, train.labels)
                    probe = make_probe(probe_name, **params)
                    start = time.perf_counter()
                    probe.fit(train.X, train.labels, groups=train.groups)
                    seconds = time.perf_counter() - start
                    fit = (probe.n_iter_, probe.converged_, seconds, cosine(probe.coef_, exact))
                    mine[probe_name].append(fit)
            for probe_name, rows in mine.items():
                shown = ",".join(f"{i}{'' if ok else '*'}" for i, ok, _, _ in rows)
                worst = min(r[3] for r in rows)
                seconds = sum(r[2] for r in rows)
                print(f"{name:22} {probe_name:5} {shown:60} {worst:8.5f} {seconds:6.2f}")
                fits[probe_name] += rows
    print()
    for probe_name, rows in fits.items():
        iterations = np.array([r[0] for r in rows])
        converged = sum(r[1] for r in rows)
        print(
            f"{probe_name} {params or 'defaults'}: {converged} of {len(rows)} fits converged; "
            f"iterations min/median/max {iterations.min()}/{np.median(iterations):.0f}/"
            f"{iterations.max()}; fits {sum(r[2] for r in rows):.1f} s; smallest cosine to "
            f"the optimum {min(r[3] for r in rows):.6f}"
        )


if __name__ == "__main__":
    main()
