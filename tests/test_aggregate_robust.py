"""The robust view (probegen.aggregate.robust, .bootstrap) on synthetic outcomes.

Every sweep here is built in memory: per cell, each unit is right with a planted
probability, and each random direction right on a unit with probability NULL_P, so the
truth every statistic estimates is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri

from probegen import outcomes as oc
from probegen.aggregate import bootstrap, significance
from probegen.aggregate.robust import ROBUST_COLUMNS, robust_analysis
from probegen.results import conform

R = 200  # random directions
NULL_P = 0.5
SPLITS = ("validation", "train-hparams")


def sweep(truth, datasets, probes=("dim", "lda"), layers=(2, 3), units=400, seed=0,
          digests=None, same_bits=False):  # fmt: skip
    """(results, jobs): every probe trained on every dataset at every layer, scored on every
    dataset and split; unit outcomes Bernoulli(truth(probe, train, layer, eval)).
    `same_bits`: every probe gets the first probe's bits (identical cells)."""
    rng = np.random.default_rng(seed)
    cells = [(t, layer) for t in range(len(datasets)) for layer in layers]
    train = np.array([t for t, _ in cells], dtype=np.int32)
    layer = np.array([v for _, v in cells], dtype=np.int32)
    sd = np.sqrt(NULL_P * (1 - NULL_P) / units)
    rows, jobs, drawn = [], [], {}
    for probe in probes:
        eval_sets = {}
        for e in datasets:
            for split in SPLITS:
                key = (e, split) if same_bits else (probe, e, split)
                if key not in drawn:
                    p = np.array([truth(probe, datasets[t], v, e) for t, v in cells])
                    bits = rng.random((len(cells), units)) < p[:, None]
                    null = rng.binomial(R, NULL_P, (len(cells), units)).astype(np.uint16)
                    null_eval = rng.binomial(R, NULL_P, (len(layers), units)).astype(np.uint16)
                    drawn[key] = bits, null, null_eval
                bits, null, null_eval = drawn[key]
                digest = (digests or {}).get((probe, e), oc.unit_digest(range(units)))
                eval_sets[e, split] = oc.EvalOutcomes(
                    e, split, units, True, digest, train, layer,
                    {"eval": bits, "fixed": bits}, null, np.array(layers, dtype=np.int32),
                    null_eval,
                )  # fmt: skip
                nulls = {"": null_eval[[list(layers).index(v) for v in layer]], "_fixed": null}
                for i, (t, v) in enumerate(cells):
                    row = {"model": "m", "probe": probe, "train_dataset": datasets[t],
                           "layer": v, "eval_dataset": e, "eval_split": split,
                           "accuracy": bits[i].mean(), "accuracy_fixed": bits[i].mean(),
                           "auroc_fixed": np.nan, "train_sign": 1}  # fmt: skip
                    for suffix, counts in nulls.items():
                        mean = counts[i].mean() / R
                        row |= {f"null_mean{suffix}": mean, f"null_sd{suffix}": sd,
                                f"null_p95{suffix}": mean + 1.645 * sd}  # fmt: skip
                    rows.append(row)
        jobs.append(oc.JobOutcomes("m", probe, R, list(datasets), eval_sets))
    results = pd.DataFrame(rows).assign(n=units, auroc=np.nan, is_flipped=False, status="ok",
                                        reason="", fit_seconds=0.0, depth=4)  # fmt: skip
    return conform(results), jobs


DATASETS = ["a", "b", "c", "d"]


def shared(probe, train, layer, e):
    """A direction of truth every dataset shares."""
    return 0.9


def local(probe, train, layer, e):
    """Learned in distribution, null level elsewhere."""
    return 0.9 if train == e else NULL_P


def test_coverage_of_a_cells_accuracy_interval():
    """Over 300 simulated eval sets the 95% interval covers the true accuracy 92-98% of
    the time."""
    rng = np.random.default_rng(1)
    units, hits, n = 300, 0, 300
    one = np.zeros(1, dtype=np.int32)
    for k in range(n):
        p = rng.uniform(0.55, 0.9)
        bits = rng.random((1, units)) < p
        e = oc.EvalOutcomes(f"e{k}", "validation", units, False, "x", one, one,
                            {"eval": bits, "fixed": bits}, np.zeros((1, units), np.uint16),
                            one, np.zeros((1, units), np.uint16))  # fmt: skip
        job = oc.JobOutcomes("m", "dim", R, ["t"], {(f"e{k}", "validation"): e})
        sample = bootstrap.stack([job], f"e{k}", "validation")
        counts = bootstrap.resample_counts(units, 1000, 0, f"e{k}", "validation")
        lo, hi = bootstrap.interval(sample.accuracy(counts, "fixed")[:, 0], 0.05)
        hits += lo <= p <= hi
    assert 0.92 <= hits / n <= 0.98


def test_resamples_are_seeded_by_seed_dataset_and_split():
    one = bootstrap.resample_counts(50, 20, 0, "a", "validation")
    assert one.dtype == np.float32 and one.shape == (20, 50)
    assert (one.sum(axis=1) == 50).all()
    assert np.array_equal(one, bootstrap.resample_counts(50, 20, 0, "a", "validation"))
    for other in [(1, "a", "validation"), (0, "b", "validation"), (0, "a", "train-hparams")]:
        assert not np.array_equal(one, bootstrap.resample_counts(50, 20, *other))


def test_pairing_identical_cells_get_identical_resamples():
    results, jobs = sweep(shared, DATASETS, same_bits=True)
    sample = bootstrap.stack(jobs, "b", "validation")
    counts = bootstrap.resample_counts(sample.units, 1000, 0, "b", "validation")
    acc = sample.accuracy(counts, "fixed")
    dim = sample.cells.index[(sample.cells["probe"] == "dim") & (sample.cells["layer"] == 3)]
    lda = sample.cells.index[(sample.cells["probe"] == "lda") & (sample.cells["layer"] == 3)]
    assert np.array_equal(acc[:, dim], acc[:, lda])
    null = sample.null_mean(counts, "fixed")
    assert np.array_equal(null[:, dim], null[:, lda])
    assert len(sample.null_rows["fixed"]) == len(sample.cells) // 2  # shared nulls kept once
    study = robust_analysis(results, jobs, depth=4, later_layer=2)
    probes = study.view.probes.set_index(["train_dataset", "layer", "probe"]).sort_index()
    columns = ["ccr_cross", "ccr_lo", "ccr_hi", "n_transfer"]
    assert np.array_equal(probes.xs("dim", level="probe")[columns].to_numpy(),
                          probes.xs("lda", level="probe")[columns].to_numpy())  # fmt: skip


def contains(estimate: dict) -> bool:
    """The headline number's interval holds its point value."""
    return estimate["lo"] <= estimate["value"] <= estimate["hi"]


def test_planted_shared_truth_transfers():
    results, jobs = sweep(shared, DATASETS, probes=("dim", "lda", "random"))
    study = robust_analysis(results, jobs, depth=4, later_layer=2)
    assert study.unavailable_reason is None
    head = study.summary()["headline"]
    assert head["learned"] == DATASETS and head["not_learned"] == {}
    assert head["share_transfer_half"] == {"value": 1.0, "lo": 1.0, "hi": 1.0}
    assert contains(head["recovered_mean"]) and contains(head["null_recovered_mean"])
    assert head["recovered_mean"]["lo"] > 0.95  # 0.9 / 0.9, clipped at 1
    assert head["mean_ccr"]["lo"] > 0.5 and abs(head["mean_ccr"]["value"] - 1) < 0.05
    assert head["n_probes"] == 2 * 4 * 2  # the baseline is tested, never in the headline
    assert not study.view.probes.set_index("probe").loc["random", "original"].any()
    assert head["best_probe"]["ccr_lo"] > 0
    assert head["n_transfers"] == head["n_tests"] == 3 * 4 * 3 * 2  # probes x T x E!=T x layers
    matrix = study.view.matrix
    assert matrix.loc[~matrix["own"], "significant"].all()
    assert matrix.loc[matrix["own"], "significant"].isna().all()
    # the original policy's view is there too, side by side
    assert study.summary()["headlines"]["eval"]["share_transfer_half"]["value"] == 1.0


def test_null_level_cross_dataset_does_not_transfer():
    # a 95% interval: it misses 0 for 1 seed in 20 (seed 0 is one), so seed 1
    results, jobs = sweep(local, DATASETS, seed=1)
    study = robust_analysis(results, jobs, depth=4, later_layer=2)
    head = study.summary()["headline"]
    assert head["learned"] == DATASETS
    share = head["share_transfer_half"]
    assert share["value"] == share["lo"] == 0.0 and share["hi"] <= 0.1
    assert head["n_transfers"] < 3  # FDR 5%: no more than a stray false discovery
    assert head["mean_ccr"]["lo"] < 0 < head["mean_ccr"]["hi"]
    # original RA is near its null's: the sign-free null recovers ~ as much
    ra, null_ra = head["recovered_mean"], head["null_recovered_mean"]
    assert contains(ra) and contains(null_ra) and abs(ra["value"] - null_ra["value"]) < 0.05
    assert ra["lo"] < null_ra["hi"] and null_ra["lo"] < ra["hi"]  # the intervals overlap
    assert not study.view.matrix["significant"].fillna(False).any()


def test_borderline_transfer_gives_a_wide_share_interval():
    def truth(probe, train, layer, e):
        return 0.9 if train == e else NULL_P + 0.05  # 2 null sds: p-values near BH's line

    results, jobs = sweep(truth, DATASETS)
    share = robust_analysis(results, jobs, depth=4, later_layer=2).summary()["headline"][
        "share_transfer_half"
    ]
    assert contains(share) and 0 < share["lo"] < share["hi"] < 1
    assert share["hi"] - share["lo"] >= 0.25  # 16 probes: several flip across resamples


def test_identity_resamples_reproduce_every_point_value(monkeypatch):
    """With every resample the original sample, each interval collapses onto its point
    value: the per-resample share, RA and CCR are the point estimates' formulas."""

    def identity(units, resamples, seed, dataset, split):
        return np.ones((resamples, units), dtype=np.float32)

    def truth(probe, train, layer, e):
        return 0.9 if train == e else NULL_P + 0.05

    monkeypatch.setattr(bootstrap, "resample_counts", identity)
    results, jobs = sweep(truth, DATASETS)
    head = robust_analysis(results, jobs, depth=4, later_layer=2, resamples=20).view.headline
    for key in ("share_transfer_half", "mean_ccr", "recovered_mean", "null_recovered_mean"):
        estimate = head[key]
        assert estimate["lo"] == pytest.approx(estimate["value"], abs=1e-6), key
        assert estimate["hi"] == pytest.approx(estimate["value"], abs=1e-6), key
    assert 0 < head["share_transfer_half"]["value"] < 1  # not a trivial case


def test_threshold_near_the_null_is_not_learned():
    def truth(probe, train, layer, e):
        if train == e:
            return 0.52 if e == "weak" else 0.85
        return 0.8

    results, jobs = sweep(truth, ["a", "b", "weak"])
    view = robust_analysis(results, jobs, depth=4, later_layer=2).view
    assert view.learned == ["a", "b"]
    reason = view.not_learned["weak"]
    assert "≤ null 95th percentile" in reason and reason.startswith("threshold 5")
    assert not view.cells.loc[view.cells["eval_dataset"] == "weak", "in_scope"].any()
    assert set(view.probes["train_dataset"]) == {"a", "b"}  # trained on weak: left out
    assert set(view.matrix["eval_dataset"]) | set(view.matrix["train_dataset"]) == {"a", "b"}
    assert view.thresholds.loc["a", "lo"] > view.thresholds.loc["a", "null_p95"]


def test_benjamini_hochberg_by_hand():
    p = np.array([0.01, 0.039, 0.032, 0.005, 0.2, np.nan])
    # sorted .005 .01 .032 .039 .2 against k q / 5 = .01 .02 .03 .04 .05: the largest k
    # with p_(k) <= k q / m is 4, so .032 is rejected although above its own line
    assert significance.bh_reject(p, 0.05).tolist() == [True, True, True, True, False, False]
    adjusted = significance.bh_adjust(p)
    np.testing.assert_allclose(adjusted[:5], [0.025, 0.04875, 0.04875, 0.025, 0.2])
    assert np.isnan(adjusted[5])
    assert not significance.bh_reject([0.3, 0.04, 0.5], 0.05).any()
    assert not significance.bh_reject([], 0.05).any()


def test_benjamini_hochberg_per_row_matches_the_single_family_rule():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.08, (200, 30)) ** rng.uniform(0.5, 3, (200, 1))
    p[rng.random(p.shape) < 0.1] = np.nan
    p[:, 5] = p[:, 6]  # ties
    p[0] = np.nan  # nothing tested
    p[1] = 1.0  # nothing rejected
    rows = significance.bh_reject_rows(-ndtri(p), 0.05)  # z with p = ndtr(-z)
    expected = np.array([significance.bh_reject(row, 0.05) for row in p])
    assert np.array_equal(rows, expected) and 0 < expected.mean() < 1


def test_null_p_values():
    p = significance.null_p_values([0.6, 0.6, 0.4, 0.5, np.nan], [0.5, 0.5, 0.5, 0.5, 0.5],
                                [0.05, 0.0, 0.0, 0.0, 0.1])  # fmt: skip
    np.testing.assert_allclose(p[:4], [0.0227501, 0.0, 1.0, 1.0], atol=1e-6)
    assert np.isnan(p[4])


def test_units_that_differ_are_refused():
    digests = {("lda", "c"): "other"}
    results, jobs = sweep(shared, DATASETS, digests=digests)
    with pytest.raises(ValueError, match=r"eval set c/validation.*dim \(job 0.*lda \(job 1"):
        robust_analysis(results, jobs, depth=4)


def test_old_results_and_missing_outcomes_degrade():
    results, jobs = sweep(shared, DATASETS, probes=("dim", "lda", "random"))
    old = robust_analysis(results.drop(columns=list(ROBUST_COLUMNS)), jobs, depth=4)
    assert old.views == {} and "lack accuracy_fixed" in old.unavailable_reason
    assert old.summary()["available"] is False and old.summary()["headline"] is None
    read_back = conform(results.drop(columns=list(ROBUST_COLUMNS)))  # what pull gives
    reason = robust_analysis(read_back, jobs, depth=4).unavailable_reason
    assert "dim: its results lack the null columns" in reason and "lda:" in reason
    blank = results.assign(accuracy_fixed=np.where(results["probe"] == "dim", np.nan, 0.9))
    assert "dim: its results lack" in robust_analysis(blank, jobs, depth=4).unavailable_reason
    no_dim = robust_analysis(results, jobs[1:], depth=4)
    assert "dim: no outcomes.safetensors" in no_dim.unavailable_reason
    # a baseline without outcomes is left out; the analysis goes on
    study = robust_analysis(results, jobs[:2], depth=4)
    assert study.unavailable_reason is None and "random" in study.left_out
    assert set(study.view.cells["probe"]) == {"dim", "lda"}


def test_outcomes_files_round_trip(tmp_path):
    results, jobs = sweep(shared, DATASETS[:3], probes=("dim",))
    oc.write(tmp_path / oc.FILE, jobs[0])
    again = robust_analysis(results, [oc.read(tmp_path / oc.FILE)], depth=4, resamples=200)
    first = robust_analysis(results, jobs, depth=4, resamples=200)
    assert again.summary() == first.summary()
    assert again.summary()["notes"] == []  # results and outcomes agree
