"""Probes on constructed data with known answers (docs/design.md §6). Fast, offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probegen.blas import matvecs
from probegen.probes import PROBES, FitFailed, NeedsGroups, OneClass, make_probe
from probegen.probes.base import top_direction, top_subspace
from probegen.probes.lda import _ledoit_wolf, _solve_eigh, _solve_regular

ALL = ["dim", "lda", "lda-lw", "lr", "lr-g", "ccs", "ccs-sub", "pca", "pca-g", "lat", "random"]
GROUPED = {"ccs", "ccs-sub", "lr-g", "pca-g"}
SUPERVISED = ["dim", "lda", "lda-lw", "lr", "lr-g"]


def unit(v):
    return v / np.linalg.norm(v)


def cos(a, b):
    return abs(float(unit(a) @ unit(b)))


def paired(n_groups=300, d=40, signal=3.0, offset=0.0, seed=0, flip=False):
    """Groups of two rows (pos, neg twin) with opposite labels: x = group offset
    + s * signal * truth + noise, s = +1 for the true row. pos is true in half the groups."""
    rng = np.random.default_rng(seed)
    truth = unit(rng.standard_normal(d))
    groups = np.repeat(np.arange(n_groups), 2)
    y = np.zeros(2 * n_groups, bool)
    y[0::2] = rng.random(n_groups) < 0.5
    y[1::2] = ~y[0::2]
    s = np.where(y, 1.0, -1.0) * (-1 if flip else 1)
    X = rng.standard_normal((2 * n_groups, d)) + np.outer(s, truth) * signal
    X += offset * rng.standard_normal((n_groups, d))[groups]
    return X.astype(np.float32), y, groups, truth


@pytest.fixture(scope="module")
def data():
    return paired(n_groups=150, d=30, offset=2.0)


# ---- the contract every probe keeps -------------------------------------------------------


def test_registry_and_unknown_name():
    assert sorted(PROBES) == sorted(ALL)
    assert {n for n, c in PROBES.items() if c.requires_groups} == GROUPED
    assert all(PROBES[n].name == n and PROBES[n].__doc__ for n in ALL)
    with pytest.raises(KeyError, match="known probes: dim"):
        make_probe("svm")


@pytest.mark.parametrize("name", ALL)
def test_contract(name, data):
    X, y, groups, _ = data
    probe = make_probe(name)
    params = probe.get_params()
    assert type(probe)(**params).get_params() == params
    assert probe.fit(X, y, groups=groups) is probe
    assert probe.get_params() == params  # fit leaves hyperparameters alone
    assert probe.coef_.dtype == np.float32 and probe.coef_.shape == (X.shape[1],)
    assert isinstance(probe.intercept_, float)
    scores = probe.decision_function(X)
    assert scores.shape == (len(X),)
    np.testing.assert_allclose(scores, X @ probe.coef_ + probe.intercept_, rtol=1e-5, atol=1e-4)
    # Every probe finds this easy direction with true rows scoring higher.
    assert scores[y].mean() > scores[~y].mean() or name == "random"


@pytest.mark.parametrize("name", ALL)
def test_input_dtypes(name, data):
    X, y, groups, _ = data
    bf16 = torch.from_numpy(X).to(torch.bfloat16).to(torch.float32).numpy()
    a = make_probe(name).fit(bf16, y, groups=groups).coef_
    b = make_probe(name).fit(X.astype(np.float64), y.tolist(), groups=list(groups)).coef_
    assert a.dtype == b.dtype == np.float32
    assert cos(a, b) > 0.99 or name == "random"


@pytest.mark.parametrize("name", sorted(GROUPED))
def test_grouped_probes_need_groups(name, data):
    X, y, _, _ = data
    with pytest.raises(NeedsGroups, match="needs grouped data"):
        make_probe(name).fit(X, y)
    assert issubclass(NeedsGroups, ValueError)


@pytest.mark.parametrize("name", SUPERVISED)
def test_supervised_one_class(name, data):
    X, _, groups, _ = data
    with pytest.raises(OneClass):
        make_probe(name).fit(X, np.ones(len(X), bool), groups=groups)
    assert issubclass(OneClass, ValueError)


@pytest.mark.parametrize("name", ALL)
def test_string_groups_and_answer_types(name, data):
    """String group ids and answer types (as the cache stores them, with nulls) describe a
    grouping; the fit depends on that grouping only, so integer codes of the same grouping
    give exactly the same direction. The strings are a shuffled relabelling ("q10" sorts
    before "q2"), so a fit that ordered groups by their ids would differ."""
    X, y, groups, _ = data
    relabel = np.random.default_rng(3).permutation(groups.max() + 1)
    g = np.array([f"q{relabel[i]}" for i in groups], dtype=object)
    types = np.array(["pos", None] * (len(X) // 2), dtype=object)
    type_codes = np.tile([0, 1], len(X) // 2)
    by_strings = make_probe(name).fit(X, y, groups=g, answer_types=types)
    by_codes = make_probe(name).fit(X, y, groups=groups, answer_types=type_codes)
    np.testing.assert_array_equal(by_strings.coef_, by_codes.coef_)
    assert by_strings.intercept_ == by_codes.intercept_
    assert np.isfinite(by_strings.coef_).all() and np.abs(by_strings.coef_).max() > 0


# ---- supervised ---------------------------------------------------------------------------


def test_dim_is_mean_difference(data):
    X, y, _, _ = data
    probe = make_probe("dim").fit(X, y)
    expected = X[y].astype(np.float64).mean(0) - X[~y].astype(np.float64).mean(0)
    np.testing.assert_allclose(probe.coef_, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(300, 20), (60, 200), (400, 3000)])
def test_lr_matches_sklearn(shape):
    sklearn = pytest.importorskip("sklearn.linear_model")
    n, d = shape
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((n, d)) * rng.uniform(0.2, 3, d) + rng.standard_normal(d)).astype(
        np.float32
    )
    y = X @ rng.standard_normal(d) + rng.standard_normal(n) * 2 > 0
    ref = sklearn.LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(X.astype(float), y)
    probe = make_probe("lr", tol=1e-9, max_iter=2000).fit(X, y)
    np.testing.assert_allclose(
        probe.coef_, ref.coef_[0], rtol=1e-3, atol=1e-3 * np.abs(ref.coef_).max()
    )
    assert probe.intercept_ == pytest.approx(ref.intercept_[0], rel=1e-3, abs=1e-3)


def test_lda_beats_dim_on_correlated_gaussians():
    # Shared covariance I + 25 u u^T; the class means differ along v + u (v orthogonal to u).
    # DIM follows v + u and picks up the big u variance; LDA whitens it: w ~ v + u / 26.
    rng = np.random.default_rng(2)
    d = 50
    u, v = np.linalg.qr(rng.standard_normal((d, 2)))[0].T

    def sample(m):
        y = rng.random(m) < 0.5
        X = rng.standard_normal((m, d)) + np.outer(rng.standard_normal(m) * 5, u)
        return (X + np.outer(y, u + v)).astype(np.float32), y

    (Xtr, ytr), (Xte, yte) = sample(400), sample(4000)
    acc = {}
    for name in ("dim", "lda", "lda-lw"):
        s = make_probe(name).fit(Xtr, ytr).decision_function(Xte)
        acc[name] = ((s > np.median(s)) == yte).mean()
    assert min(acc["lda"], acc["lda-lw"]) > acc["dim"] + 0.05, acc


@pytest.mark.parametrize("n, d", [(400, 60), (150, 400)])
def test_lda_is_sklearns_default_lda(n, d):
    """`lda` is the original study's estimator, scikit-learn's LinearDiscriminantAnalysis()
    (SVD solver, no shrinkage), with more rows than dimensions and with fewer (where the
    within-class scatter is rank-deficient and both take a pseudo-inverse)."""
    discriminant = pytest.importorskip("sklearn.discriminant_analysis")
    rng = np.random.default_rng(n)
    mixing = rng.standard_normal((d, d)) * rng.uniform(0.2, 3, d)  # correlated, uneven scales
    y = rng.random(n) < 0.4
    X = rng.standard_normal((n, d)) @ mixing + np.outer(y, rng.standard_normal(d))
    X[:, 0] = 1.5  # a constant feature: zero within-class std, which sklearn sets to 1
    X = X.astype(np.float32)
    reference = discriminant.LinearDiscriminantAnalysis().fit(X.astype(np.float64), y)
    probe = make_probe("lda").fit(X, y)
    assert cos(probe.coef_, reference.coef_[0]) >= 0.9999
    assert float(probe.coef_ @ reference.coef_[0]) > 0  # same sign: true rows score higher
    np.testing.assert_allclose(
        probe.coef_, reference.coef_[0], rtol=1e-3, atol=1e-4 * np.abs(reference.coef_).max()
    )
    assert probe.intercept_ == pytest.approx(reference.intercept_[0], rel=1e-4, abs=1e-4)
    X_new = (rng.standard_normal((500, d)) @ mixing).astype(np.float32)
    for data in (X, X_new):
        predicted = probe.decision_function(data) > 0
        assert np.array_equal(predicted, reference.predict(data.astype(np.float64)))
    assert probe.rank_ == min(n - 2, d - 1)  # the constant feature adds no variance


def lda_system(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """G = Z Z^T and Z b of `LDAProbe.fit` (Z: scaled within-class residuals)."""
    X = torch.from_numpy(X).double()
    mask = torch.from_numpy(y)
    m1, m0 = X[mask].mean(0), X[~mask].mean(0)
    Z = X - torch.where(mask[:, None], m1, m0)
    scale = Z.std(0, correction=0)
    Z = Z / scale / np.sqrt(len(X))
    return Z @ Z.T, Z @ ((m1 - m0) / scale)


def test_lda_cholesky_path_equals_the_eigendecomposition():
    rng = np.random.default_rng(5)
    n, d = 120, 300
    X = rng.standard_normal((n, d)) @ (rng.standard_normal((d, d)) * rng.uniform(0.1, 3, d))
    y = rng.random(n) < 0.3
    G, rhs = lda_system(X + np.outer(y, rng.standard_normal(d)), y)
    fast, rank = _solve_regular(G, rhs, y, 1e-4)
    slow, rank_eigh = _solve_eigh(G, rhs, 1e-4)
    assert rank == rank_eigh == n - 2
    assert float((fast - slow).norm() / slow.norm()) < 1e-9


def test_lda_cholesky_path_defers_where_more_directions_vanish():
    # A row repeated within its class, or one nearly so, adds a null (or near-null)
    # direction besides the two class indicators: the eigendecomposition must decide.
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((80, 200)), rng.random(80) < 0.5
    first = np.flatnonzero(y)[:2]
    for nudge in (0.0, 1e-7):
        Xd = X.copy()
        Xd[first[1]] = Xd[first[0]] + nudge * rng.standard_normal(200)
        G, rhs = lda_system(Xd, y)
        assert _solve_regular(G, rhs, y, 1e-4) is None
        assert _solve_eigh(G, rhs, 1e-4)[1] == 80 - 3
        assert make_probe("lda").fit(Xd.astype(np.float32), y).rank_ == 80 - 3


def test_lda_and_lda_lw_differ_where_rows_are_few():
    # With fewer rows than dimensions the pseudo-inverse of the within-class scatter fits
    # the train set's noise: `lda` finds a worse direction than the shrunk `lda-lw`.
    X, y, _, truth = paired(n_groups=60, d=300, signal=1.0, seed=2)
    X_new, y_new, _, _ = paired(n_groups=500, d=300, signal=1.0, seed=2)
    plain, shrunk = make_probe("lda").fit(X, y), make_probe("lda-lw").fit(X, y)
    assert cos(shrunk.coef_, truth) > cos(plain.coef_, truth) + 0.2
    accuracy = {p.name: ((p.decision_function(X_new) > 0) == y_new).mean() for p in (plain, shrunk)}
    assert accuracy["lda-lw"] > accuracy["lda"] + 0.05, accuracy


def test_lda_lw_matches_dense_formula_and_ledoit_wolf():
    covariance = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(3)
    n, d = 120, 300
    X = (rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)).astype(np.float64)
    y = rng.random(n) < 0.4
    X[y] += 0.5
    W = X.copy()
    W[y] -= X[y].mean(0)
    W[~y] -= X[~y].mean(0)
    probe = make_probe("lda-lw").fit(X, y)
    a = covariance.ledoit_wolf_shrinkage(W)
    assert probe.shrinkage_ == pytest.approx(a, rel=1e-6)
    S = W.T @ W / n
    sigma = (1 - a) * S + a * np.trace(S) / d * np.eye(d)
    expected = np.linalg.solve(sigma, X[y].mean(0) - X[~y].mean(0))
    np.testing.assert_allclose(probe.coef_, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # The subsampled estimate of the Gram term stays close to the exact intensity.
    assert _ledoit_wolf(torch.from_numpy(W), 60, 0) == pytest.approx(a, rel=0.15)


def test_grouped_probes_ignore_group_offsets():
    # Huge per-group offsets dominate the variance; within a group only truth differs.
    X, y, groups, truth = paired(n_groups=200, d=30, signal=2.0, offset=20.0)
    assert cos(make_probe("pca").fit(X, y).coef_, truth) < 0.5
    assert cos(make_probe("pca-g").fit(X, y, groups=groups).coef_, truth) > 0.95
    assert cos(make_probe("lr-g").fit(X, y, groups=groups).coef_, truth) > 0.9
    assert cos(make_probe("lr-g").fit(X, y, groups=groups).coef_, truth) > cos(
        make_probe("lr").fit(X, y).coef_, truth
    )


# ---- unsupervised -------------------------------------------------------------------------


def test_pca_recovers_planted_direction():
    rng = np.random.default_rng(4)
    d = 100
    v = unit(rng.standard_normal(d))
    X = rng.standard_normal((500, d)) + np.outer(rng.standard_normal(500) * 5, v) + 7.0
    probe = make_probe("pca").fit(X.astype(np.float32), None)
    assert cos(probe.coef_, v) > 0.99
    assert abs(probe.decision_function(X).mean()) < 1e-3  # intercept centres training scores


def test_pca_answer_types_remove_offset():
    rng = np.random.default_rng(5)
    d, n = 60, 400
    v, offset = unit(rng.standard_normal(d)), unit(rng.standard_normal(d)) * 10
    types = np.array(["0", "1"] * (n // 2))
    X = rng.standard_normal((n, d)) + np.outer(rng.standard_normal(n) * 3, v)
    X[types == "1"] += offset
    assert cos(make_probe("pca").fit(X, None).coef_, offset) > 0.9
    assert cos(make_probe("pca").fit(X, None, answer_types=types).coef_, v) > 0.98


def test_matvecs_backends_agree_with_float64(threads):
    rng = np.random.default_rng(5)
    A = torch.from_numpy(rng.standard_normal((300, 200)).astype(np.float32))
    v, u = rng.standard_normal(200), rng.standard_normal(300)
    forward, backward = matvecs(A)
    exact = A.double().numpy()
    np.testing.assert_allclose(forward(v), exact @ v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(backward(u), u @ exact, rtol=1e-4, atol=1e-4)
    assert forward(v).dtype == backward(u).dtype == np.float64


@pytest.mark.parametrize("gap", ["wide", "narrow"])
def test_top_direction_matches_svd(threads, gap):
    """Lanczos stops on its residual, so it also finds the leading direction when the second
    eigenvalue is within ~1% of the first (isotropic noise plus a weak direction, like
    group-centred activations), where a fixed number of block steps does not."""
    rng = np.random.default_rng(6)
    n, d = 1200, 900
    A = rng.standard_normal((n, d))
    strength = 0.3 if gap == "wide" else 0.03
    A += np.outer(rng.standard_normal(n), unit(rng.standard_normal(d))) * strength * np.sqrt(d)
    A = torch.from_numpy(A - A.mean(0))
    values = torch.linalg.svdvals(A) ** 2
    relative_gap = float(1 - values[1] / values[0])
    assert (relative_gap > 0.5) if gap == "wide" else (0.005 < relative_gap < 0.05)
    exact = torch.linalg.svd(A, full_matrices=False)[2][0].numpy()
    found = top_direction(A.float()).numpy()
    assert abs(np.linalg.norm(found) - 1) < 1e-12
    assert 1 - cos(found, exact) < 1e-6
    # deterministic for a seed
    np.testing.assert_array_equal(top_direction(A.float()).numpy(), found)


@pytest.mark.parametrize(
    "shape",
    [(300, 700), (700, 300), (1040, 1100), (1100, 1040)],
    ids=["wide", "tall", "wide-over-1024", "tall-over-1024"],
)
def test_top_subspace_is_the_exact_principal_subspace(threads, shape):
    """CCS's subspace: exact through the Gram matrix of the smaller side, so it matches the
    SVD even for a slowly decaying spectrum (where a few randomized block steps do not) —
    also where both sides exceed 1024, which once took such a randomized path."""
    rng = np.random.default_rng(9)
    n, d = shape
    A = rng.standard_normal((n, d)) * np.linspace(3, 0.5, d)
    A = torch.from_numpy(A @ np.linalg.qr(rng.standard_normal((d, d)))[0])
    exact = torch.linalg.svd(A, full_matrices=False)[2][:32].T
    V = top_subspace(A.float(), 32)
    assert V.shape == (d, 32) and V.dtype == torch.float64
    np.testing.assert_allclose((V.T @ V).numpy(), np.eye(32), atol=1e-10)
    assert torch.linalg.svdvals(exact.T @ V).min() > 1 - 1e-6  # same span


def test_top_direction_small_problem_is_exact_svd():
    rng = np.random.default_rng(8)
    A = torch.from_numpy(rng.standard_normal((50, 30)))
    exact = torch.linalg.svd(A, full_matrices=False)[2][0].numpy()
    assert 1 - cos(top_direction(A).numpy(), exact) < 1e-12


def test_lat_finds_direction_of_pair_differences():
    rng = np.random.default_rng(7)
    d, n = 80, 600
    v = unit(rng.standard_normal(d))
    y = rng.random(n) < 0.5
    X = rng.standard_normal((n, d)) + np.outer(np.where(y, 4.0, -4.0), v)
    probe = make_probe("lat").fit(X, y)
    assert cos(probe.coef_, v) > 0.95
    s = probe.decision_function(X)
    assert s[y].mean() > s[~y].mean()  # oriented by labels
    assert np.array_equal(probe.coef_, make_probe("lat").fit(X, y).coef_)  # seeded


def test_random_is_seeded_unit():
    X = np.zeros((5, 64), np.float32)
    a = make_probe("random", random_state=3).fit(X, None).coef_
    assert np.array_equal(a, make_probe("random", random_state=3).fit(X, None).coef_)
    assert not np.allclose(a, make_probe("random", random_state=4).fit(X, None).coef_)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-6)


# ---- CCS ----------------------------------------------------------------------------------


def test_ccs_sub_finds_planted_direction_and_is_sign_agnostic():
    X, y, groups, truth = paired(n_groups=300, d=40, signal=3.0, offset=1.0)
    probe = make_probe("ccs-sub").fit(X, None, groups=groups)
    assert probe.loss_ < 0.1
    assert cos(probe.coef_, truth) > 0.9
    Xf, yf, gf, tf = paired(n_groups=300, d=40, signal=3.0, offset=1.0, flip=True)
    assert np.array_equal(tf, truth)  # same planted direction, truth sign flipped
    flipped = make_probe("ccs-sub").fit(Xf, None, groups=gf)
    assert flipped.loss_ < 0.1 and cos(flipped.coef_, truth) > 0.9
    # With labels, the sign follows the convention: true rows score higher.
    s = make_probe("ccs-sub").fit(X, y, groups=groups).decision_function(X)
    assert s[y].mean() > s[~y].mean()


def test_ccs_sub_multiple_choice_groups():
    rng = np.random.default_rng(8)
    d, n_groups = 30, 200
    truth = unit(rng.standard_normal(d))
    sizes = rng.integers(2, 6, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    y = np.zeros(len(groups), bool)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    y[starts + (rng.random(n_groups) * sizes).astype(int)] = True
    X = rng.standard_normal((len(y), d)) + np.outer(np.where(y, 3.0, -3.0), truth)
    # Lower bar than for pairs: the first row of a (first true, first false) pair is more
    # often false, so per-side centring removes part of the truth signal.
    assert cos(make_probe("ccs-sub").fit(X, y, groups=groups).coef_, truth) > 0.8


@pytest.mark.parametrize("case", ["max_iter=0", "nan"])
def test_ccs_sub_fit_failed(case, data):
    X, y, groups, _ = data
    if case == "nan":
        X = X.copy()
        X[0, 0] = np.nan
        probe = make_probe("ccs-sub")
    else:
        probe = make_probe("ccs-sub", max_iter=0)
    with pytest.raises(FitFailed, match="did not converge|non-finite"):
        probe.fit(X, y, groups=groups)
    assert issubclass(FitFailed, RuntimeError)


def test_ccs_gradient_written_out_matches_autograd():
    from probegen.probes.ccs import ccs_loss
    from probegen.probes.ccs_subspace import objective_and_grad

    rng = np.random.default_rng(4)
    a, b = (torch.from_numpy(rng.standard_normal((50, 6))) for _ in range(2))
    b[:5] = a[:5]  # identical sides: p == q, torch.minimum's tie rule applies
    W = torch.from_numpy(rng.standard_normal((6, 3))).requires_grad_()
    bias = torch.from_numpy(rng.standard_normal(3)).requires_grad_()
    auto = (
        ccs_loss(torch.sigmoid(a @ W + bias), torch.sigmoid(b @ W + bias)) + 0.01 * (W**2).sum(0)
    ).sum()
    auto.backward()
    auto = auto.detach()
    total, gW, gb = objective_and_grad(a, b, W.detach(), bias.detach(), 0.01)
    assert float(total) == pytest.approx(auto.item(), rel=1e-14)
    torch.testing.assert_close(gW, W.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gb, bias.grad, rtol=1e-12, atol=1e-14)


# ---- CCS as the original fits it -----------------------------------------------------------


def direct_ccs_loss(w, b, A, B, weight_decay=0.01):
    """The original study's loss, written out in numpy."""
    p = 1 / (1 + np.exp(-(A @ w + b)))
    q = 1 / (1 + np.exp(-(B @ w + b)))
    consistency = np.mean((p - (1 - q)) ** 2)
    confidence = np.mean(np.minimum(p, q) ** 2)
    return consistency + confidence + weight_decay * (w @ w + b * b)


def test_ccs_objective_is_the_originals_loss():
    from probegen.probes.ccs import ccs_objective

    rng = np.random.default_rng(11)
    A, B = rng.standard_normal((80, 7)), rng.standard_normal((80, 7))
    for scale in (0.1, 3.0):
        w, b = rng.standard_normal(7) * scale, float(rng.standard_normal())
        ours = ccs_objective(*(torch.from_numpy(v) for v in (w, np.array(b), A, B)), 0.01)
        assert float(ours) == pytest.approx(direct_ccs_loss(w, b, A, B), rel=1e-12)


def test_ccs_converges_on_separable_pairs_and_scores_the_logit():
    X, y, groups, truth = paired(n_groups=300, d=40, signal=3.0, offset=1.0)
    probe = make_probe("ccs").fit(X, None, groups=groups)
    assert probe.loss_ <= 0.2 and probe.attempts_ == 1  # the original's criterion
    assert cos(probe.coef_, truth) > 0.9
    # No labels, no answer types: the probe is the optimised (w, b) itself, and its score
    # is the logit of the original's probability on the pairs it was trained on.
    A, B = X[0::2].astype(np.float64), X[1::2].astype(np.float64)
    w, b = probe.coef_.astype(np.float64), probe.intercept_
    assert direct_ccs_loss(w, b, A, B) == pytest.approx(probe.loss_, rel=1e-4)
    np.testing.assert_allclose(probe.decision_function(X), X @ probe.coef_ + b, rtol=1e-5)
    # With labels the sign follows probegen's convention: true rows score higher.
    s = make_probe("ccs").fit(X, y, groups=groups).decision_function(X)
    assert s[y].mean() > s[~y].mean()


def test_ccs_centres_per_answer_type_and_pairs_first_true_first_false():
    # Multiple-choice groups with an answer-type offset far larger than the truth signal:
    # without per-type centring the offset would dominate the pairs.
    rng = np.random.default_rng(8)
    d, n_groups, size = 20, 200, 4
    truth = unit(rng.standard_normal(d))
    groups = np.repeat(np.arange(n_groups), size)
    answer_types = np.tile(np.arange(size), n_groups)
    y = np.zeros(len(groups), bool)
    y[np.arange(n_groups) * size + rng.integers(0, size, n_groups)] = True
    offsets = rng.standard_normal((size, d)) * 20
    X = rng.standard_normal((len(y), d)) + np.outer(np.where(y, 2.0, -2.0), truth)
    X = (X + offsets[answer_types]).astype(np.float32)
    probe = make_probe("ccs").fit(X, y, groups=groups, answer_types=answer_types)
    assert cos(probe.coef_, truth) > 0.8


def test_ccs_retries_twice_then_fails_with_its_loss(monkeypatch):
    from probegen.probes.ccs import CCSProbe

    calls = []
    original = CCSProbe._optimise

    def counting(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(CCSProbe, "_optimise", counting)
    # No optimisation, tiny activations and a wide layer (init in +-1/sqrt(d)): every start
    # stays at p ~ 1/2, loss ~ 0.25 > 0.2.
    X, y, groups, _ = paired(n_groups=100, d=400)
    X = X * 0.01
    with pytest.raises(FitFailed, match=r"loss 0\.2[4-6]\d* > 0\.2 after 3 attempts"):
        make_probe("ccs", max_iter=0).fit(X, y, groups=groups)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(FitFailed, match="after 1 attempts"):
        make_probe("ccs", max_iter=0, retries=0).fit(X, y, groups=groups)
    assert len(calls) == 1
    calls.clear()
    X, y, groups, _ = paired(n_groups=100, d=10)
    assert make_probe("ccs").fit(X, y, groups=groups).attempts_ == 1  # no retry needed
    assert len(calls) == 1


def test_ccs_is_seeded():
    X, y, groups, _ = paired(n_groups=100, d=30, signal=0.5, seed=3)
    a = make_probe("ccs", random_state=1).fit(X, y, groups=groups).coef_
    assert np.array_equal(a, make_probe("ccs", random_state=1).fit(X, y, groups=groups).coef_)
    assert not np.allclose(a, make_probe("ccs", random_state=2).fit(X, y, groups=groups).coef_)


@pytest.mark.parametrize("name", ["lr", "lr-g"])
def test_lr_warm_start_reaches_the_cold_optimum(name):
    # The sweep refits a train dataset layer after layer from the previous solution. LR is
    # strictly convex: a warm start must reach the same optimum as a cold start (checked at
    # a tight tolerance), in fewer iterations when the data moved little; and a start worse
    # than w = 0 (here: a huge, unrelated direction) must be dropped for the cold one.
    X, y, groups, _ = paired(n_groups=200, d=60, signal=1.0, offset=1.0, seed=5)
    rng = np.random.default_rng(6)
    X2 = (X + 0.2 * rng.standard_normal(X.shape)).astype(np.float32)  # the "next layer"
    # Diagonal preconditioning only: the low-rank phase restarts L-BFGS's history, which
    # would blur the iteration counts compared below.
    opts = {"tol": 1e-9, "max_iter": 2000, "precondition_rank": 0}
    cold = make_probe(name, **opts).fit(X2, y, groups=groups)
    warm = make_probe(name, **opts, warm_start=True).fit(X, y, groups=groups)
    warm.fit(X2, y, groups=groups)
    np.testing.assert_allclose(warm.coef_, cold.coef_, rtol=1e-4, atol=1e-5)
    assert warm.intercept_ == pytest.approx(cold.intercept_, abs=1e-4)
    assert warm.n_iter_ < cold.n_iter_
    bad = make_probe(name, **opts, warm_start=True)
    bad.coef_, bad.intercept_ = 1e3 * rng.standard_normal(X.shape[1]).astype(np.float32), 5.0
    bad.fit(X2, y, groups=groups)
    np.testing.assert_allclose(bad.coef_, cold.coef_, rtol=1e-4, atol=1e-5)
    # warm_start=False (the default) ignores a previous solution
    again = make_probe(name, **opts).fit(X, y, groups=groups).fit(X2, y, groups)
    assert again.n_iter_ == cold.n_iter_


@pytest.fixture(scope="module")
def wide():
    """Big enough (n * d > SMALL_PROBLEM) that fits stream X in float32, as on real data."""
    X, y, groups, truth = paired(n_groups=300, d=2000, signal=4.0, offset=1.0, seed=11)
    return X, y, groups, truth


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("name", ALL)
def test_torch_path_matches_numpy_path(name, device, wide):
    """On a GPU every product of a fit is torch's, on the tensor's device. The same torch
    code runs on the CPU when torch has more than one thread (blas.numpy_blas is False), so
    fitting a CPU tensor there tests it: it must find the direction the one-thread numpy
    path finds, up to float32 rounding and the solvers' tolerances. Where torch sees a GPU,
    the fit on a CUDA tensor is checked the same way."""
    from probegen.blas import one_thread_each

    X, y, groups, truth = wide
    with one_thread_each():
        host = make_probe(name).fit(X, y, groups=groups)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        X_device = torch.from_numpy(X).to(device)
        tensor = make_probe(name).fit(X_device, y, groups=groups)
        scores = tensor.decision_function(X_device)
    finally:
        torch.set_num_threads(before)
    assert tensor.coef_.dtype == np.float32 and isinstance(scores, np.ndarray)
    assert 1 - cos(tensor.coef_, host.coef_) < 1e-5
    assert float(unit(tensor.coef_) @ unit(host.coef_)) > 0  # same sign convention
    np.testing.assert_allclose(scores, host.decision_function(X), rtol=2e-3, atol=2e-3)
    # `lda` (a pseudo-inverse) and `ccs` (full-space L-BFGS), the original's, fit the noise
    # of these 600 rows in 2000 dimensions: mostly noise, but the same on both paths.
    if name not in ("random", "lda", "ccs"):
        assert cos(host.coef_, truth) > 0.5  # a real direction, not noise both paths share


def test_bf16_tensor_input(data):
    X, y, groups, _ = data
    bf16 = torch.from_numpy(X).to(torch.bfloat16)
    coef = make_probe("dim").fit(bf16, y).coef_
    rounded = bf16.double().numpy()  # what the bf16 tensor holds, exactly
    expected = rounded[y].mean(0) - rounded[~y].mean(0)
    np.testing.assert_allclose(coef, expected, rtol=1e-6, atol=1e-7)
    assert np.abs(coef - (X[y].mean(0) - X[~y].mean(0))).max() > 1e-4  # bf16 rounding shows


def ill_conditioned(n=500, d=300, k=8, scale=30.0, seed=0):
    """Isotropic noise, a weak truth direction, and k directions of huge variance shared by
    all features (not axis-aligned: a diagonal preconditioner cannot catch them), as in the
    residual stream of real models."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    s = np.where(y, 1.0, -1.0)
    B = np.linalg.qr(rng.standard_normal((d, k)))[0].T
    X = rng.standard_normal((n, d)) + np.outer(s, unit(rng.standard_normal(d)))
    X += (rng.standard_normal((n, k)) * scale * np.linspace(1, 3, k)) @ B + 5 * np.outer(s, B[0])
    return X.astype(np.float32), y


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_lr_low_rank_preconditioner_converges_where_the_diagonal_does_not(threads, device):
    # threads: numpy's products (one thread) and torch's (two: the GPU path), see conftest
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, y = ill_conditioned()
    ref = sklearn.LogisticRegression(C=1.0, tol=1e-10, max_iter=20_000).fit(X.astype(float), y)
    X_device = torch.from_numpy(X).to(device)
    diagonal = make_probe("lr", precondition_rank=0).fit(X_device, y)
    low_rank = make_probe("lr").fit(X_device, y)
    assert diagonal.n_iter_ == 200 and 1 - cos(diagonal.coef_, ref.coef_[0]) > 1e-3
    assert low_rank.n_iter_ < 200 and 1 - cos(low_rank.coef_, ref.coef_[0]) < 1e-4
    assert float(unit(low_rank.coef_) @ unit(ref.coef_[0])) > 0
    np.testing.assert_allclose(low_rank.intercept_, ref.intercept_[0], rtol=0.02, atol=0.02)


def test_low_rank_preconditioner_and_its_inverse():
    from probegen.probes.supervised import low_rank_preconditioner

    X, _ = ill_conditioned()
    Xs = torch.from_numpy(X - X.mean(0)).double()
    T = low_rank_preconditioner(Xs, C=1.0, rank=16)
    assert T.V.shape == (X.shape[1], 16) and T.V.device.type == "cpu"
    np.testing.assert_allclose((T.V.T @ T.V).numpy(), np.eye(16), atol=1e-10)
    u = torch.from_numpy(np.random.default_rng(1).standard_normal(X.shape[1]))
    torch.testing.assert_close(T.apply(T.inverse(u)), u, rtol=1e-10, atol=1e-10)
    # on the leading direction T is (1 + C/4 lambda)^(-1/2), lambda its eigenvalue
    values, vectors = torch.linalg.eigh(Xs.T @ Xs)
    top = vectors[:, -1]
    assert abs(float(T.V[:, 0] @ top)) > 1 - 1e-8
    torch.testing.assert_close(T.apply(top), top * (1 + values[-1] / 4) ** -0.5, rtol=1e-6,
                               atol=1e-8)  # fmt: skip
    # outside V's span it is the identity
    rest = u - T.V @ (T.V.T @ u)
    torch.testing.assert_close(T.apply(rest), rest, rtol=1e-10, atol=1e-10)


def test_lr_turns_to_the_low_rank_step_only_when_it_has_not_converged(monkeypatch, data):
    from probegen.probes import supervised

    calls = []
    build = supervised.low_rank_preconditioner

    class Spy(supervised.LowRank):
        def inverse(self, u):
            calls.append("restart")
            return super().inverse(u)

    def spy(*args, **kwargs):
        calls.append("build")
        return Spy(*build(*args, **kwargs))

    monkeypatch.setattr(supervised, "low_rank_preconditioner", spy)
    X, y, _, _ = data  # easy: converges well within 20 iterations
    easy = make_probe("lr").fit(X, y)
    assert easy.n_iter_ < 20 and calls == []
    X, y = ill_conditioned()
    hard = make_probe("lr").fit(X, y)
    # Phase 2 builds the preconditioner where phase 1 stopped and goes on from there; it is
    # rebuilt at the point reached every `refresh_every` iterations until it converges.
    assert hard.n_iter_ > 20 and hard.converged_ and calls[:2] == ["build", "restart"]
    assert calls == ["build", "restart"] * (len(calls) // 2)
    assert len(calls) // 2 == 1 + (hard.n_iter_ - 20 - 1) // 40
    calls.clear()
    make_probe("lr", precondition_rank=0).fit(X, y)
    assert calls == []
