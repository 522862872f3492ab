"""probegen.aggregate.metrics on a hand-built results table, every number worked out by hand.

The sweep: model "m", probes p and q, layers 1 and 2, trained on A and B, scored on A, B, C.
C is an eval set whose in-distribution probes all failed or were skipped: it has no
threshold (like truthful_qa, which is never trained on).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from probegen.aggregate.metrics import (
    REFERENCE,
    generalisation_ranking,
    headline,
    recovered,
    threshold_probes,
    thresholds,
)
from probegen.results import RESULT_COLUMNS, conform

# probe train layer eval split status accuracy   ("hp" = train-hparams, "-" = no accuracy)
ROWS = """
p A 1 A val ok .60
p A 1 A hp  ok .70
p A 1 B val ok .54
p A 1 B hp  ok .54
p A 1 C val ok .70
p A 2 A val ok .80
p A 2 A hp  ok .90
p A 2 B val ok .81
p A 2 B hp  ok .72
p A 2 C val ok .66
q A 1 A val ok .88
q A 1 A hp  ok .90
q A 1 B val ok .45
q A 1 B hp  ok .63
q A 1 C val ok .50
q A 2 A val ok .76
q A 2 A hp  ok .85
q A 2 B val ok .63
q A 2 B hp  ok .81
q A 2 C val ok .90
p B 1 B val ok .81
p B 1 B hp  ok .80
p B 1 A val ok .40
p B 1 A hp  ok .48
p B 1 C val ok .55
p B 2 B val ok .90
p B 2 B hp  ok .95
p B 2 A val ok .68
p B 2 A hp  ok .64
p B 2 C val ok .60
q B 1 B val ok .99
q B 1 B hp  ok .85
q B 1 A val ok .56
q B 1 A hp  ok .72
q B 1 C val ok .65
q B 2 B val ok .63
q B 2 B hp  ok .70
q B 2 A val ok .80
q B 2 A hp  ok .80
q B 2 C val ok .75
p C 1 C val failed -
p C 1 C hp  failed -
q C 2 C val skipped .99
q C 2 C hp  skipped .99
q C 2 A val skipped .99
"""
# The skipped rows carry a stale accuracy of .99 on purpose: were they counted, C would get
# a threshold of .99 and probe (q, C, 2) would enter every mean.


def make_results(text: str = ROWS) -> pd.DataFrame:
    """The table above as a results.parquet-shaped frame (RESULT_COLUMNS, sweep dtypes)."""
    cols = ["probe", "train_dataset", "layer", "eval_dataset", "eval_split", "status", "accuracy"]
    rows = pd.read_csv(io.StringIO(text), sep=r"\s+", names=cols, na_values="-")
    rows["eval_split"] = rows["eval_split"].map({"val": "validation", "hp": "train-hparams"})
    rows = rows.assign(model="m", n=100, auroc=pd.NA, is_flipped=False, reason="", fit_seconds=0.1,
                       depth=4)  # fmt: skip
    # the original columns and `depth`; conform adds the later ones as nulls
    return conform(rows[RESULT_COLUMNS[: RESULT_COLUMNS.index("depth") + 1]])


@pytest.fixture
def results() -> pd.DataFrame:
    return make_results()


@pytest.fixture
def rec(results) -> pd.DataFrame:
    return recovered(results, thresholds(results))


def cell(frame: pd.DataFrame, probe: str, train: str, layer: int, evald: str) -> pd.Series:
    hit = frame.query(
        "probe == @probe and train_dataset == @train and layer == @layer and eval_dataset == @evald"
    )
    assert len(hit) == 1
    return hit.iloc[0]


def test_thresholds(results):
    chosen = threshold_probes(results)
    # A: train-hparams accuracy on A of the A-trained probes: p1 .70, p2 .90, q1 .90, q2 .85.
    #    p2 and q1 tie at .90 -> the first probe name wins: (p, layer 2); threshold = its
    #    validation accuracy on A = .80 (q1 scores .88 on validation, but was not chosen).
    # B: p1 .80, p2 .95, q1 .85, q2 .70 -> (p, 2); its validation accuracy on B = .90.
    # C: no ok in-distribution rows (failed / skipped) -> no threshold.
    assert list(chosen.index) == ["A", "B"]
    assert chosen.loc["A", ["probe", "layer"]].tolist() == ["p", 2]
    assert chosen.loc["B", ["probe", "layer"]].tolist() == ["p", 2]
    series = thresholds(results)
    assert series.dtype == np.float64
    assert series.to_dict() == pytest.approx({"A": 0.80, "B": 0.90})


def test_threshold_tie_breaks_by_layer_within_a_probe(results):
    # Make q1 and q2 tie at the top on A (.95): same probe, so the lower layer wins.
    hp = (results["train_dataset"] == "A") & (results["eval_dataset"] == "A")
    hp &= (results["eval_split"] == "train-hparams") & (results["probe"] == "q")
    results.loc[hp, "accuracy"] = 0.95
    chosen = threshold_probes(results)
    assert chosen.loc["A", ["probe", "layer"]].tolist() == ["q", 1]
    assert thresholds(results)["A"] == pytest.approx(0.88)  # q1's validation accuracy on A


def test_recovered_values_clipping_and_missing_thresholds(rec):
    # Only ok validation rows: 8 probes x 3 eval sets (the skipped (q, C, 2) row is gone).
    assert len(rec) == 24
    assert set(rec["eval_split"]) == {"validation"} and set(rec["status"]) == {"ok"}
    assert rec["recovered"].dtype == np.float64
    # recovered = validation accuracy / threshold(eval):
    assert cell(rec, "p", "A", 1, "A")["recovered"] == pytest.approx(0.60 / 0.80)  # .75
    assert cell(rec, "p", "A", 1, "B")["recovered"] == pytest.approx(0.54 / 0.90)  # .60
    assert cell(rec, "q", "B", 2, "A")["recovered"] == pytest.approx(0.80 / 0.80)  # 1.0
    # Clipped at 1: q1 on A scores .88 > threshold .80 (1.1); q1 on B .99 > .90 (1.1).
    assert cell(rec, "q", "A", 1, "A")["recovered"] == 1.0
    assert cell(rec, "q", "B", 1, "B")["recovered"] == 1.0
    # train-hparams side: .81 / .90 = .90; unclipped .70/.80 = .875 for p1 on A.
    assert cell(rec, "q", "A", 2, "B")["recovered_hparams"] == pytest.approx(0.90)
    assert cell(rec, "p", "A", 1, "A")["recovered_hparams"] == pytest.approx(0.875)
    # C has no threshold: recovered NaN, raw accuracy kept; C has no train-hparams rows.
    c = rec[rec["eval_dataset"] == "C"]
    assert c["threshold"].isna().all() and c["recovered"].isna().all()
    assert c["accuracy_hparams"].isna().all()
    assert cell(rec, "q", "A", 2, "C")["accuracy"] == pytest.approx(0.90)


# Recovered accuracy of each probe (validation; own train set, then the other; C is NaN):
#   probe  own   cross  mean (own incl.)      recovered_hparams on the other set (ranking)
#   pA1   .75    .60    .675                  .54/.9 = .60
#   pA2   1.0    .90    .95                   .72/.9 = .80
#   qA1   1.0c   .50    .75                   .63/.9 = .70
#   qA2   .95    .70    .825                  .81/.9 = .90
#   pB1   .90    .50    .70                   .48/.8 = .60
#   pB2   1.0    .85    .925                  .64/.8 = .80
#   qB1   1.0c   .70    .85                   .72/.8 = .90
#   qB2   .70    1.0    .85                   .80/.8 = 1.0
# Pair-wise: A-trained vs A-trained probes can only be compared on B (C has no threshold);
# B vs B on A; an A- and a B-trained probe share no eval set neither trained on (only C):
# nobody wins. Within A on B: qA2 .9 > pA2 .8 > qA1 .7 > pA1 .6 -> beats 3, 2, 1, 0 others;
# within B on A: qB2 1.0 > qB1 .9 > pB2 .8 > pB1 .6 -> 3, 2, 1, 0. score = beaten / 7.
# Ties on score go to the higher mean recovered: qB2 (.85) > qA2 (.825); pA2 (.95) > qB1
# (.85); pB2 (.925) > qA1 (.75); pB1 (.70) > pA1 (.675).
RANKING = [
    ("q", "B", 2, 3, 0.85, 1.00),
    ("q", "A", 2, 3, 0.825, 0.70),
    ("p", "A", 2, 2, 0.95, 0.90),
    ("q", "B", 1, 2, 0.85, 0.70),
    ("p", "B", 2, 1, 0.925, 0.85),
    ("q", "A", 1, 1, 0.75, 0.50),
    ("p", "B", 1, 0, 0.70, 0.50),
    ("p", "A", 1, 0, 0.675, 0.60),
]


def test_generalisation_ranking(rec):
    ranking = generalisation_ranking(rec)
    assert ranking["rank"].tolist() == list(range(1, 9))
    got = list(ranking[["probe", "train_dataset", "layer", "wins"]].itertuples(index=False))
    assert [tuple(g) for g in got] == [r[:4] for r in RANKING]
    assert ranking["score"].tolist() == pytest.approx([r[3] / 7 for r in RANKING])
    assert ranking["recovered"].tolist() == pytest.approx([r[4] for r in RANKING])
    assert ranking["recovered_cross"].tolist() == pytest.approx([r[5] for r in RANKING])


def test_headline_every_layer_later(rec):
    numbers = headline(rec, later_layer=1)
    # Mean recovered, own included, > .8: pA2 .95, qA2 .825, pB2 .925, qB1 .85, qB2 .85.
    assert numbers["share_later_probes_above_80"] == pytest.approx(5 / 8)
    assert numbers["n_later_probes"] == 8 and numbers["n_probes"] == 8
    best = numbers["best_probe"]
    assert (best["probe"], best["train_dataset"], best["layer"]) == ("q", "B", 2)
    assert best["recovered"] == pytest.approx(0.85)
    assert best["recovered_cross"] == pytest.approx(1.0)
    assert best["score"] == pytest.approx(3 / 7)
    # every recovered cell: own .75 1 1 .95 .9 1 1 .7 (7.3) + cross 5.75 over 16 cells
    assert numbers["mean_recovered"] == pytest.approx(13.05 / 16)
    assert numbers["truthful_qa"] is None  # never scored on truthful_qa
    assert numbers["reference"] == REFERENCE
    assert REFERENCE["share_later_probes_above_80"] == 0.36
    assert REFERENCE["best_probe_recovered"] == 0.928
    assert REFERENCE["truthful_qa_share"] == 0.946


def test_headline_later_layers_but_ranking_over_all(rec):
    # later layers = layer >= 2: pA2, qA2, pB2, qB2, means .95 .825 .925 .85 all > .8
    numbers = headline(rec, later_layer=2)
    assert numbers["share_later_probes_above_80"] == 1.0 and numbers["n_later_probes"] == 4
    # the best probe is still ranked against all 8 probes (the original ranks all layers)
    assert numbers["n_probes"] == 8 and numbers["best_probe"]["score"] == pytest.approx(3 / 7)


def test_headline_without_any_cross_dataset_value(rec):
    own = rec[rec["train_dataset"] == rec["eval_dataset"]]
    with pytest.raises(ValueError, match="no cross-dataset"):
        headline(own, later_layer=1)


def test_several_models_are_refused(results):
    other = results.assign(model="m2")
    with pytest.raises(ValueError, match="per model"):
        thresholds(pd.concat([results, other]))


def test_duplicate_rows_are_refused(results):
    with pytest.raises(ValueError, match="duplicate"):
        recovered(pd.concat([results, results.head(1)]), thresholds(results))


def test_study_uses_the_original_eight_only():
    """Thresholds come from the original study's eight algorithms: never from `random`
    or from probegen's variants, even where they score best in-distribution; both are
    listed and left out of the analysis; the null (random directions) is the baseline."""
    from study_results import study_results

    from probegen.aggregate.study import Study

    train = ["imdb", "boolq", "got_cities"]
    results = study_results(train=train, evals=train, probes=["dim", "lr", "random", "lda-lw"])
    own = results["train_dataset"] == results["eval_dataset"]
    results.loc[own, "accuracy"] = results.loc[own, "accuracy"].clip(upper=0.9)
    results.loc[own & results["probe"].isin(["random", "lda-lw"]), "accuracy"] = 1.0
    study = Study.build(results)
    assert set(study.thresholds["probe"]) <= {"dim", "lr"}
    assert (study.thresholds["threshold"] <= 0.9).all()
    assert study.variants == ["lda-lw", "random"]
    assert set(study.recovered["probe"]) == {"dim", "lr", "null"}
    assert not {"lda-lw", "random", "null"} & set(study.ranking["probe"])
    assert sorted(study.algorithms[:-1]) == ["dim", "lr"] and study.algorithms[-1] == "null"
