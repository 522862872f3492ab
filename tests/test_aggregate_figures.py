"""The study's fourteen figures from a synthetic sweep; skipped cleanly when inputs are missing."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_results import study_results

from probegen.aggregate.figures import FIGURES, draw_all
from probegen.aggregate.figures.datasets import best_algorithm_layer
from probegen.aggregate.study import Study, model_depth


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def full_study() -> Study:
    return Study.build(study_results())


def test_every_figure_is_drawn_from_a_full_sweep(full_study, tmp_path):
    drawn = draw_all(full_study, tmp_path)
    assert [d.name for d in drawn] == list(FIGURES) and len(FIGURES) == 14
    for d in drawn:
        assert d.skipped is None, f"{d.name}: {d.skipped}"
        assert d.path == tmp_path / f"{d.name}.png"
        width, height = png_size(d.path)
        # print resolution (300 dpi) of a 3–12 inch figure, and real content in the file
        assert 900 <= width <= 4000 and 600 <= height <= 4000, (d.name, width, height)
        assert d.path.stat().st_size > 30_000, d.name
        assert len(d.caption) > 40


def test_figures_without_their_inputs_are_skipped_with_a_reason(tmp_path, caplog):
    # no truthful_qa, no arc_easy, one GoT dataset, no RepE dataset
    train = ["imdb", "boolq", "got_cities"]
    results = study_results(train=train, evals=train, probes=["lr", "ccs"])
    with caplog.at_level(logging.INFO):
        drawn = {d.name: d for d in draw_all(Study.build(results), tmp_path)}
    skipped = {name: d.skipped for name, d in drawn.items() if d.skipped}
    assert set(skipped) == {"r4_truthful_qa", "v1_arc_easy", "v2_got", "v3_repe", "v4_lda"}
    assert "truthful_qa" in skipped["r4_truthful_qa"]
    assert "arc_easy" in skipped["v1_arc_easy"]
    assert "lda" in skipped["v4_lda"]
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(set(FIGURES) - set(skipped))
    assert "r4_truthful_qa skipped" in caplog.text


def test_one_train_dataset_leaves_only_in_distribution_figures(tmp_path):
    results = study_results(train=["imdb"], evals=["imdb"], probes=["lr", "dim"])
    drawn = {d.name: d for d in draw_all(Study.build(results), tmp_path)}
    made = {name for name, d in drawn.items() if d.path is not None}
    assert made == {"r0_acc_by_layer", "r3a_datasets"}
    assert "at least two datasets" in drawn["r1a_by_algorithms"].skipped


def test_orders_follow_mean_cross_dataset_recovered_accuracy():
    results = study_results(probes=["dim", "lr", "random"], seed=3)
    cross = results["train_dataset"] != results["eval_dataset"]
    # make lr clearly the best generaliser and imdb the best train dataset
    results.loc[cross & (results["probe"] == "lr"), "accuracy"] *= 1.3
    results.loc[cross & (results["train_dataset"] == "imdb"), "accuracy"] *= 1.2
    results["accuracy"] = results["accuracy"].clip(0, 1)
    study = Study.build(results)
    assert study.algorithms == ["lr", "dim", "random"]  # the baseline always last
    assert study.datasets[0] == "imdb"
    assert study.eval_only == ["truthful_qa"]
    assert "random" not in set(study.ranking["probe"])


def test_best_algorithm_layer_is_chosen_on_train_hparams():
    results = study_results(probes=["dim", "lr"], seed=1)
    pick = (
        (results["probe"] == "dim")
        & (results["layer"] == 13)
        & (results["train_dataset"] != results["eval_dataset"])
    )
    hparams = results["eval_split"] == "train-hparams"
    results.loc[pick & hparams, "accuracy"] = 1.0  # only the selection split says dim@13
    assert best_algorithm_layer(Study.build(results)) == ("dim", 13)


def test_later_layers_are_a_third_of_the_depth_and_depth_is_known_or_assumed(caplog):
    results = study_results(model="4b", layers=[1, 11, 13, 35])
    study = Study.build(results)
    assert study.depth == 36 and study.min_layer == 12
    assert sorted(study.later["layer"].unique()) == [13, 35]
    with caplog.at_level(logging.WARNING):
        assert model_depth("someone--model", results) == 36  # max layer 35 + 1
    assert "depth=" in caplog.text
    assert model_depth("someone--model", results, depth=40) == 40


def test_heatmap_cells_show_percentages(full_study):
    import matplotlib.pyplot as plt

    figure = FIGURES["r3b_matrix"][0](full_study)
    texts = [t.get_text() for t in figure.axes[0].texts]
    n = len(full_study.datasets)
    assert len(texts) == n * n and all(t.isdigit() and 0 <= int(t) <= 100 for t in texts)
    plt.close(figure)


def test_study_refuses_several_models_and_unscored_sweeps():
    two = pd.concat([study_results(model="4b"), study_results(model="8b")])
    with pytest.raises(ValueError, match="one model"):
        Study.build(two)
    failed = study_results().assign(status="failed", accuracy=np.nan)
    with pytest.raises(ValueError, match="no probe was scored"):
        Study.build(failed)
