"""LR and LR-G converge to scikit-learn's optimum on activations shaped like real ones, say
so (`converged_`, `n_iter_`), and a probe job carries a fit that did not converge into
that fit's rows and its summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_probe_job import ArraySource

from probegen.probes import make_probe
from probegen.probes.base import as_tensor, center_by, codes
from probegen.results import unconverged_fits
from probegen.sweep import JobSpec, convergence_note, run_job

sklearn = pytest.importorskip("sklearn.linear_model")


def like_real(n: int = 600, d: int = 576, k: int = 24, seed: int = 0):
    """Pairs of rows (one true, one false per question) with n ~ d, so the classes are
    nearly separable and most rows end up fitted confidently; k directions of huge and very
    different variances shared by all features (not axis-aligned), per-question offsets
    along them, a weak truth direction partly along the largest, and a mean offset: the
    shape of a model's residual stream, on which the bound-based preconditioner alone
    stopped at 200 iterations short of the optimum."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 2), 2)
    y = np.tile([True, False], n // 2)
    s = np.where(y, 1.0, -1.0)
    B = np.linalg.qr(rng.standard_normal((d, k + 1)))[0].T
    X = rng.standard_normal((n, d)) + np.outer(s, B[k])
    X += (rng.standard_normal((n, k)) * 30 * np.geomspace(1, 10, k)) @ B[:k]
    X += (rng.standard_normal((n // 2, k)) * 30)[groups] @ B[:k]
    X += 2 * np.outer(s, B[0]) + 5 * rng.standard_normal(d)
    return X.astype(np.float32), y, groups.astype(str).astype(object)


def optimum(X: np.ndarray, y: np.ndarray):
    """sklearn's exact optimum of the same objective. Newton-Cholesky, not lbfgs: on these
    activations sklearn's own lbfgs stops at its iteration limit well short of it."""
    ref = sklearn.LogisticRegression(C=1.0, tol=1e-10, max_iter=1000, solver="newton-cholesky")
    return ref.fit(X.astype(np.float64), y)


def loss(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    m = np.where(y, 1.0, -1.0) * (X.astype(np.float64) @ w + b)
    return float(0.5 * w @ w + np.logaddexp(0, -m).sum())


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["lr", "lr-g"])
def test_lr_reaches_sklearns_optimum_on_activations_like_real_ones(name, seed):
    X, y, groups = like_real(seed=seed)
    # LR-G is LR on group-centred rows: its reference is sklearn's fit of those rows
    A = center_by(as_tensor(X), codes(groups, len(X), "groups")).numpy() if name == "lr-g" else X
    ref = optimum(A, y)
    probe = make_probe(name).fit(X, y, groups=groups)
    assert probe.converged_ is True and 0 < probe.n_iter_ < probe.max_iter
    assert 1 - cos(probe.coef_, ref.coef_[0]) < 2e-5
    np.testing.assert_allclose(
        probe.coef_, ref.coef_[0], rtol=0, atol=0.01 * np.abs(ref.coef_).max()
    )
    # the objective at the probe's solution is the optimum's, up to the stopping rule
    b = probe.intercept_ if name == "lr" else ref.intercept_[0]  # LR-G: b is scored away
    at_probe = loss(A, y, probe.coef_.astype(np.float64), b)
    at_optimum = loss(A, y, ref.coef_[0], ref.intercept_[0])
    assert at_probe - at_optimum < 1e-4 * at_optimum
    if name == "lr":
        np.testing.assert_allclose(probe.intercept_, ref.intercept_[0], rtol=0.01)


def test_the_bound_alone_stops_short_on_these_activations():
    # What makes the test above worth having: diagonal preconditioning alone (the first
    # phase) does not converge on them within the default budget.
    X, y, _ = like_real()
    probe = make_probe("lr", precondition_rank=0).fit(X, y)
    assert probe.converged_ is False and probe.n_iter_ == probe.max_iter
    assert 1 - cos(probe.coef_, optimum(X, y).coef_[0]) > 1e-4


@pytest.mark.parametrize("name", ["lr", "lr-g"])
def test_a_fit_out_of_iterations_says_so(name):
    X, y, groups = like_real()
    probe = make_probe(name, max_iter=5).fit(X, y, groups=groups)
    assert probe.converged_ is False and probe.n_iter_ == 5
    assert np.isfinite(probe.coef_).all()  # the last iterate: still a usable direction
    assert probe.convergence_detail_.startswith("max|grad| ")
    assert probe.convergence_detail_.endswith(" of the start's, tol 1e-04")
    ratio = float(probe.convergence_detail_.split()[1])
    assert ratio > probe.tol
    note = convergence_note(probe)
    assert note == f"not converged after 5 iterations ({probe.convergence_detail_})"


def test_convergence_note_is_generic():
    class Plain:  # no convergence attributes: converged as far as anyone can tell
        pass

    class Bare:
        converged_ = False

    class Counted:
        converged_, n_iter_ = False, 7

    class Done:
        converged_, n_iter_, convergence_detail_ = True, 7, "fine"

    assert convergence_note(Plain()) == "" and convergence_note(Done()) == ""
    assert convergence_note(Bare()) == "not converged"
    assert convergence_note(Counted()) == "not converged after 7 iterations"


class OneHardFit(ArraySource):
    """ArraySource, except that layer 2 of "pairs" serves activations like real ones (what
    the probe's train split sees; every row is a train row there)."""

    def __init__(self):
        super().__init__()
        X, y, groups = like_real(n=240, d=16 * 36)
        self.hard = (X, y, groups)

    def load(self, dataset, layer, splits=None):
        acts = super().load(dataset, layer, splits)
        if dataset == "pairs" and layer == 2 and splits == ("train",):
            X, y, groups = self.hard
            acts.X, acts.labels, acts.groups = X, y, groups
            acts.splits = np.full(len(X), "train", dtype=object)
            acts.row_ids = np.arange(len(X)).astype(str).astype(object)
        elif acts.X is not None and acts.X.shape[1] != self.hard[0].shape[1]:
            acts.X = np.pad(acts.X, ((0, 0), (0, self.hard[0].shape[1] - acts.X.shape[1])))
        return acts


def test_job_writes_not_converged_on_that_fits_ok_rows_only(caplog):
    # 20 iterations: the easy fits converge within them, the hard one does not.
    spec = JobSpec("m", "lr", train=["pairs", "flat"], eval=["pairs", "flat"], layers=[0, 2],
                   probe_params={"max_iter": 20})  # fmt: skip
    with caplog.at_level("WARNING", logger="probegen.sweep"):
        results = run_job(spec, OneHardFit()).results
    assert (results["status"] == "ok").all()
    hard = (results["train_dataset"] == "pairs") & (results["layer"] == 2)
    assert hard.sum() == 4  # its 2 eval datasets x 2 splits
    assert (
        results.loc[hard, "reason"]
        .str.fullmatch(
            r"not converged after 20 iterations \(max\|grad\| \S+ of the start's, tol 1e-04\)"
        )
        .all()
    )
    assert (results.loc[~hard, "reason"] == "").all()
    assert results.loc[hard, "accuracy"].notna().all()  # still scored
    assert unconverged_fits(results) == 1
    warned = [r.getMessage() for r in caplog.records if "not converged" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("lr on pairs layer 2: not converged")


def test_unconverged_fits_counts_fits_not_rows():
    base = {"probe": "lr", "status": "ok", "reason": ""}
    rows = [
        base | {"train_dataset": "a", "layer": 1, "reason": "not converged after 9 iterations"},
        base | {"train_dataset": "a", "layer": 1, "reason": "not converged after 9 iterations"},
        base | {"train_dataset": "a", "layer": 2},
        base | {"train_dataset": "b", "layer": 1, "reason": "not converged"},
        base | {"train_dataset": "b", "layer": 2, "status": "failed", "reason": "not converged"},
    ]
    assert unconverged_fits(pd.DataFrame(rows)) == 2
    assert unconverged_fits(pd.DataFrame(rows[2:3])) == 0
