"""The null distribution and the per-unit outcomes a probe job writes (docs/design.md §6–7)."""

from __future__ import annotations

import numpy as np
import pytest
from test_probe_job import ArraySource

from probegen import outcomes
from probegen.evaluation import EvalSet, roc_thresholds
from probegen.null import null_directions, train_fixing
from probegen.sweep import JobSpec, run_job


def test_null_directions_are_seeded_unit_vectors_per_layer():
    a = null_directions(32, 50, seed=0, layer=3)
    assert a.shape == (32, 50) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=0), 1, atol=1e-6)
    np.testing.assert_array_equal(a, null_directions(32, 50, seed=0, layer=3))
    assert not np.allclose(a, null_directions(32, 50, seed=0, layer=5))
    assert not np.allclose(a, null_directions(32, 50, seed=1, layer=3))


@pytest.mark.parametrize("grouped", [True, False])
def test_outcomes_average_to_the_accuracy_of_both_policies(grouped):
    rng = np.random.default_rng(1)
    n, k = 120, 9
    labels = rng.random(n) < 0.5
    groups = np.repeat(np.arange(n // 4), 4).astype(str).astype(object) if grouped else None
    S = rng.normal(size=(n, k)) + labels[:, None] * rng.normal(size=k)
    eval_set = EvalSet(labels, groups, seed=0)
    original = eval_set.outcomes(S)
    assert original.correct.shape == (eval_set.units, k)
    np.testing.assert_allclose(original.correct.mean(0), original.accuracy)
    np.testing.assert_allclose(original.accuracy, eval_set.score(S).accuracy)
    signs = np.where(rng.random(k) < 0.5, -1.0, 1.0)
    thresholds = rng.normal(size=k)
    fixed = eval_set.outcomes(S, signs, thresholds)
    np.testing.assert_allclose(fixed.correct.mean(0), fixed.accuracy)
    if not grouped:  # cut exactly at the given thresholds, after the sign
        expected = ((S * signs) >= thresholds) == labels[:, None]
        np.testing.assert_array_equal(fixed.correct, expected)
    assert (fixed.is_flipped == (signs < 0)).all()


def test_train_fixing_picks_the_better_sign_and_its_roc_cut():
    labels = np.array([True, False] * 20)
    S = np.where(labels, -1.0, 1.0)[:, None] + np.linspace(0, 0.1, 40)[:, None]
    signs, thresholds = train_fixing(S, labels, None)
    assert signs.tolist() == [-1.0]
    accuracy, expected = roc_thresholds(-S, labels)
    assert accuracy[0] == 1.0 and thresholds[0] == expected[0]


def _flipped_eval_source() -> ArraySource:
    source = ArraySource()
    # eval splits carry the opposite truth of the train split
    source.labels = np.where(source.splits == "train", source.labels, ~source.labels)
    return source


def test_a_job_writes_outcomes_that_match_its_rows(tmp_path):
    source = ArraySource()
    spec = JobSpec("m", "dim", ["pairs", "flat"], ["pairs", "flat"], layers=[0, 2])
    output = run_job(spec, source)
    path = tmp_path / outcomes.FILE
    outcomes.write(path, output.outcomes)
    read = outcomes.read(path)
    assert read.probe == "dim" and read.null_directions == 200
    assert read.train_datasets == ["pairs", "flat"]
    rows = output.results.set_index(["train_dataset", "layer", "eval_dataset", "eval_split"])
    for (dataset, split), e in read.eval_sets.items():
        assert e.grouped == (dataset == "pairs") and e.correct["eval"].shape[1] == e.units
        for i, (t, layer) in enumerate(zip(e.train, e.layer, strict=True)):
            row = rows.loc[(read.train_datasets[t], int(layer), dataset, split)]
            assert e.correct["eval"][i].mean() == pytest.approx(row["accuracy"])
            assert e.correct["fixed"][i].mean() == pytest.approx(row["accuracy_fixed"])
            for policy, column in (("eval", "null_mean"), ("fixed", "null_mean_fixed")):
                mean = e.null_counts(policy)[i].mean() / read.null_directions
                assert mean == pytest.approx(row[column], abs=1e-9)
    assert len(read.eval_sets) == 4  # 2 eval sets x 2 splits


class WideSource(ArraySource):
    """Truth along one axis of 400, so a random direction carries little of it."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(2)
        self.X = rng.normal(size=(len(self.labels), 400)).astype(np.float32)
        self.X[:, 0] += np.where(self.labels, 3.0, -3.0)


def test_the_null_is_near_chance_with_fixed_signs_and_above_it_with_eval_signs():
    output = run_job(JobSpec("m", "dim", ["pairs"], ["pairs", "flat"], layers=[0]), WideSource())
    rows = output.results
    # eval-sign flips every random direction to its better side: above chance on average
    assert (rows["null_mean"] > rows["null_mean_fixed"]).all()
    assert rows["null_mean_fixed"].between(0.4, 0.6).all()
    assert (rows["null_p95"] >= rows["null_mean"]).all() and (rows["null_sd"] > 0).all()
    # the planted direction is far above the null under both policies
    assert (rows["accuracy_fixed"] > rows["null_p95_fixed"]).all()


def test_null_directions_zero_turns_the_null_off():
    spec = JobSpec("m", "dim", ["pairs"], ["pairs"], layers=[0], null_directions=0)
    output = run_job(spec, ArraySource())
    assert output.results["null_mean"].isna().all()
    e = output.outcomes.eval_sets["pairs", "validation"]
    assert output.outcomes.null_directions == 0 and e.null_eval.shape[0] == 0


def test_a_damaged_outcomes_file_names_itself(tmp_path):
    path = tmp_path / outcomes.FILE
    path.write_bytes(b"not safetensors")
    with pytest.raises(outcomes.OutcomesError, match=str(path)):
        outcomes.read(path)
