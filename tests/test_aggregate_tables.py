"""The table behind each of the original's fourteen figures, and the headline numbers, on a
hand-built sweep whose expected cells are worked out by hand below.

The sweep (model "m", depth 6 -> later layers = layer >= ceil(13/40 x 6) = 2): dim and lda
trained on boolq, arc_easy, got_cities at layers 1 and 2, scored on those three and
truthful_qa. Validation accuracy = train-hparams accuracy, except each dataset's dim layer-2
in-distribution cell (validation 1.0, train-hparams .99): it has the best train-hparams
accuracy among the eight algorithms, so every threshold is 1.0 and recovered accuracy (RA)
equals validation accuracy. `random` scores .5 everywhere but 1.0 on its own train-hparams
split: were it allowed to set thresholds, they would all be .5. The null (random
directions) is .5 on every cell, but .45 on boolq's validation split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probegen.aggregate import tables
from probegen.aggregate.metrics import later_layer
from probegen.aggregate.study import Probe, Study
from probegen.results import RESULT_COLUMNS, conform

B, A, G, T = "boolq", "arc_easy", "got_cities", "truthful_qa"
EVALS = [B, A, G, T]
# (algorithm, train, layer): validation accuracy on boolq, arc_easy, got_cities, truthful_qa
CELLS = {
    ("dim", B, 1): (0.90, 0.60, 0.50, 0.30),
    ("dim", B, 2): (1.00, 0.90, 0.80, 0.40),
    ("lda", B, 1): (0.80, 0.50, 0.60, 0.20),
    ("lda", B, 2): (0.90, 0.70, 0.70, 0.50),
    ("dim", A, 1): (0.50, 0.90, 0.60, 0.30),
    ("dim", A, 2): (0.60, 1.00, 0.70, 0.35),
    ("lda", A, 1): (0.40, 0.80, 0.50, 0.25),
    ("lda", A, 2): (0.88, 0.90, 0.78, 0.45),
    ("dim", G, 1): (0.85, 0.85, 0.90, 0.30),
    ("dim", G, 2): (0.70, 0.80, 1.00, 0.40),
    ("lda", G, 1): (0.50, 0.60, 0.80, 0.20),
    ("lda", G, 2): (0.80, 0.70, 0.84, 0.30),
}


def hand_results() -> pd.DataFrame:
    rows = []
    probes = {**CELLS, **{("random", t, layer): (0.5,) * 4 for t in (B, A, G) for layer in (1, 2)}}
    for (probe, train, layer), values in probes.items():
        for evald, value in zip(EVALS, values, strict=True):
            for split in ("validation", "train-hparams"):
                accuracy = value
                if split == "train-hparams" and train == evald:
                    accuracy = 1.0 if probe == "random" else 0.99 if value == 1.0 else value
                if split == "train-hparams" and evald == T:
                    continue  # truthful_qa has no train-hparams split (skipped row)
                null = 0.45 if (evald, split) == (B, "validation") else 0.5
                rows.append(["m", probe, train, layer, evald, split, accuracy, 100, None,
                             False, "ok", "", 0.1, 6, null])  # fmt: skip
    # the original columns, `depth` and the null's mean; conform adds the others as nulls
    frame = pd.DataFrame(rows, columns=[*RESULT_COLUMNS[:14], "null_mean"])
    return conform(frame)


@pytest.fixture(scope="module")
def study() -> Study:
    return Study.build(hand_results(), depth=6)


def mean(*values: float) -> float:
    return sum(values) / len(values)


def test_the_later_layer_cut_is_13_of_40_scaled():
    assert later_layer(40) == 13  # the original's Llama-2-13B
    assert later_layer(36) == 12  # Qwen3-4B / 8B
    assert later_layer(30) == 10 and later_layer(6) == 2


def test_study_thresholds_orders_and_best_probe(study):
    assert study.later_layer == 2
    # random's 1.0 on its own train-hparams split would win every threshold; it may not
    assert set(study.thresholds["probe"]) == {"dim"} and set(study.thresholds["layer"]) == {2}
    assert study.thresholds["threshold"].tolist() == [1.0, 1.0, 1.0]
    # train order by mean RA over all 12 cells of its probes (truthful_qa has no RA):
    # got (2.6 + 2.5 + 1.9 + 2.34) / 12 = .778 > boolq 8.9 / 12 = .742 > arc 8.56 / 12 = .713
    assert study.datasets == [G, B, A]
    assert study.algorithms == ["dim", "lda", "null"]  # dim 14.1/18 > lda 12.7/18
    assert study.variants == ["random"]  # run, listed, left out
    # dim/boolq/2 has the best cross train-hparams RA on arc_easy (.90) and got_cities (.80)
    # among all probes not trained there, so it beats all 11 others (score 1.0)
    assert study.best == Probe("dim", B, 2)
    assert study.ranking.iloc[0]["score"] == 1.0
    assert len(study.ranking) == 12 and "random" not in set(study.ranking["probe"])
    assert 1 in set(study.ranking["layer"])  # ranked over all layers, not the later ones


def test_headline_numbers_match_an_independent_count(study):
    ra = {probe: dict(zip(EVALS[:3], values[:3], strict=True)) for probe, values in CELLS.items()}
    own = {p: mean(*v.values()) for p, v in ra.items()}
    cross = {p: mean(*(x for e, x in v.items() if e != p[1])) for p, v in ra.items()}
    later = [p for p in CELLS if p[2] >= 2]
    share_later = sum(own[p] > 0.8 for p in later) / len(later)
    above = [p for p in CELLS if cross[p] > 0.8]
    share_tqa = sum(CELLS[p][3] > 0.359 for p in above) / len(above)
    # by hand: later-layer probes > .8: dim/B/2 .90, lda/A/2 .853, dim/G/2 .833 -> 3 of 6;
    # cross > .8: dim/B/2 .85 (TQA .40), lda/A/2 .83 (.45), dim/G/1 .85 (.30) -> 2 of 3
    assert share_later == 0.5 and share_tqa == pytest.approx(2 / 3)
    numbers = study.headline()
    assert numbers["share_later_probes_above_80"] == pytest.approx(share_later)
    assert numbers["n_later_probes"] == 6 and numbers["later_layer"] == 2
    best = numbers["best_probe"]
    assert (best["probe"], best["train_dataset"], best["layer"]) == ("dim", B, 2)
    assert best["recovered"] == pytest.approx(own[("dim", B, 2)]) == pytest.approx(0.9)
    assert best["recovered_cross"] == pytest.approx(0.85)
    assert numbers["truthful_qa"]["share"] == pytest.approx(share_tqa)
    assert numbers["truthful_qa"]["n_probes_above_80_cross"] == 3
    assert "included" in numbers["labels"]["best_probe_recovered"]
    assert "left out" in numbers["labels"]["best_probe_recovered_cross"]


def test_the_null_is_the_baseline(study):
    null = study.baseline_rows
    assert set(null["probe"]) == {"null"} and not study.recovered["probe"].eq("random").any()
    # one row per (train, layer, eval) cell, whichever probes' jobs carried it
    assert len(null) == 3 * 2 * 4 and not null.duplicated(["train_dataset", "layer",
                                                           "eval_dataset"]).any()  # fmt: skip
    on_boolq = null["eval_dataset"] == B
    assert (null.loc[on_boolq, "accuracy"] == 0.45).all()
    assert (null.loc[~on_boolq, "accuracy"] == 0.5).all()
    assert (null.loc[on_boolq, "accuracy_hparams"] == 0.5).all()  # its train-hparams cell
    base = study.baseline()
    # RA = null / threshold 1.0 on the three trained-on datasets (truthful_qa: none)
    assert base["mean_recovered"] == pytest.approx(mean(0.45, 0.5, 0.5))
    assert base["share_later_probes_above_80"] == 0.0 and base["n_later_probes"] == 3
    assert "null" not in set(study.ranking["probe"])


def test_results_without_the_null_have_no_baseline(caplog):
    old = hand_results().assign(null_mean=pd.NA)  # written before jobs recorded the null
    with caplog.at_level("INFO"):
        study = Study.build(old, depth=6)
    assert study.baseline() is None and study.baseline_rows.empty
    assert study.algorithms == ["dim", "lda"] and study.headline()["n_probes"] == 12
    assert "carry no null" in caplog.text


def test_r0_one_point_per_probe_own_included(study):
    table = tables.r0_table(study).set_index(["probe", "train_dataset", "layer"])
    assert len(table) == 12
    assert table.loc[("dim", G, 1), "recovered"] == pytest.approx(mean(0.85, 0.85, 0.90))


def test_r1a_uses_the_top_probe_and_drops_its_train_column(study):
    table = tables.r1a_table(study)
    assert list(table.index) == ["dim", "lda"] and list(table.columns) == [G, A]
    assert table.to_numpy().tolist() == [[0.80, 0.90], [0.70, 0.70]]


def test_r1b_is_the_best_algorithm_and_layer_by_train(study):
    table = tables.r1b_table(study)
    assert list(table.index) == [G, B, A] and list(table.columns) == [G, A]
    assert table.to_numpy().tolist() == [[1.0, 0.80], [0.80, 0.90], [0.70, 1.0]]


def test_r1c_is_the_best_algorithm_and_train_dataset_by_layer(study):
    table = tables.r1c_table(study)
    assert list(table.index) == [1, 2] and list(table.columns) == [G, A]
    assert table.to_numpy().tolist() == [[0.50, 0.60], [0.80, 0.90]]


def test_r2_and_r3a_means_over_all_rows(study):
    r2 = tables.r2_table(study)
    assert list(r2.index) == ["dim", "lda"]
    assert r2["recovered"].tolist() == pytest.approx([14.1 / 18, 12.7 / 18])
    assert r2["supervised"].all() and not r2["grouped"].any()
    assert set(tables.GROUPED) == {"ccs", "lr-g", "pca-g"}
    r3a = tables.r3a_table(study)
    assert list(r3a.index) == [G, B, A]
    assert r3a["recovered"].tolist() == pytest.approx([9.34 / 12, 8.9 / 12, 8.56 / 12])
    assert r3a["family"].tolist() == ["got", "dlk", "repe"]


def test_r3b_is_the_mean_over_algorithms_at_the_later_layers(study):
    table = tables.r3b_table(study)
    assert list(table.index) == [G, B, A] == list(table.columns)
    assert table.loc[B, A] == pytest.approx(mean(0.90, 0.70))  # dim/B/2, lda/B/2
    assert table.loc[A, A] == pytest.approx(mean(1.0, 0.90))  # own column included
    assert table.loc[G, B] == pytest.approx(mean(0.70, 0.80))  # random (.5) left out


def test_r3c_from_and_to(study):
    table = tables.r3c_table(study)
    assert table.loc[B, "generalizes_from"] == pytest.approx(8.9 / 12)
    into_boolq = [0.90, 1.0, 0.80, 0.90, 0.50, 0.60, 0.40, 0.88, 0.85, 0.70, 0.50, 0.80]
    assert table.loc[B, "generalizes_to"] == pytest.approx(mean(*into_boolq))


def test_r3d_distance_is_the_symmetrised_r3b(study):
    table = tables.r3d_table(study)
    # r3b: (boolq -> arc) .80, (arc -> boolq) mean(.60, .88) = .74 -> 1 - .77
    assert table.loc[B, A] == pytest.approx(0.23) == pytest.approx(table.loc[A, B])
    assert np.diag(table.to_numpy()).tolist() == [0.0, 0.0, 0.0]


def test_r4_pairs_cross_recovered_with_truthful_qa(study):
    table = tables.r4_table(study).set_index(["probe", "train_dataset", "layer"])
    assert len(table) == 12
    assert table.loc[("dim", B, 2)].tolist() == pytest.approx([0.85, 0.40])
    assert table.loc[("lda", A, 1)].tolist() == pytest.approx([mean(0.40, 0.50), 0.25])


def test_v1_v2_in_distribution_by_layer(study):
    v1 = tables.v1_table(study)
    assert v1[["probe", "layer", "accuracy"]].values.tolist() == [
        ["dim", 1, 0.90], ["dim", 2, 1.0], ["lda", 1, 0.80], ["lda", 2, 0.90],
    ]  # fmt: skip
    v2 = tables.v2_table(study)
    assert set(v2["train_dataset"]) == {G}  # got_larger_than, got_sp_en_trans not run
    assert v2["accuracy"].tolist() == [0.90, 1.0, 0.80, 0.84]


def test_v3_needs_lat_on_the_repe_datasets(study):
    with pytest.raises(tables.Skip, match="lat"):
        tables.v3_table(study)
    lat = hand_results()
    lat = lat[lat["probe"] == "dim"].assign(probe="lat")  # the same numbers, named lat
    table = tables.v3_table(Study.build(lat, depth=6))
    assert table.values.tolist() == [[A, 1, 0.90], [A, 2, 1.0]]  # arc_easy only


def test_v4_uses_the_best_probes_layer(study):
    table = tables.v4_table(study)
    boolq = table[table["panel"] == "trained on boolq"]
    # layer 2 (the best probe's), raw accuracy, eval datasets that are trained on
    assert boolq[boolq["probe"] == "dim"].set_index("eval_dataset")["accuracy"].to_dict() == {
        B: 1.0, A: 0.90, G: 0.80}  # fmt: skip
    own = table[table["panel"] == "trained on the eval dataset"]
    assert own[own["probe"] == "lda"].set_index("eval_dataset")["accuracy"].to_dict() == {
        B: 0.90, A: 0.90, G: 0.84}  # fmt: skip
