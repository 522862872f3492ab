"""The robust view's matrix, the original's fourteen figures and probegen's views from a
synthetic sweep: every PNG drawn and read back, captions naming the data-driven choices,
pairs that do not beat the null greyed out, clean skips when inputs are missing. (The
numbers behind each figure are checked in test_aggregate_tables.py.)"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from study_results import study_results, study_sweep

from probegen.aggregate import style, tables
from probegen.aggregate.chance import truthful_qa_chance
from probegen.aggregate.figures import EXTRA, FIGURES, ROBUST, draw_all
from probegen.aggregate.figures.robust import greyed_cells
from probegen.aggregate.robust import RobustStudy, robust_analysis
from probegen.aggregate.study import Study, model_depth

ORIGINAL = [
    "r0_acc_by_layer", "r1a_by_algorithms", "r1b_by_train", "r1c_by_layer", "r2_probes",
    "r3a_datasets", "r3b_matrix", "r3c_to_and_from", "r3d_clustering", "r4_truthful_qa",
    "v1_arc_easy", "v2_got", "v3_repe", "v4_lda",
]  # fmt: skip


@pytest.fixture(scope="module")
def full_study() -> Study:
    return Study.build(study_results(), truthful_qa_chance=0.2351)


@pytest.fixture(scope="module")
def full_robust(full_study) -> RobustStudy:
    _, jobs = study_sweep()  # the outcomes of study_results()' sweep
    return robust_analysis(full_study.results, jobs, full_study.depth, resamples=100)


@pytest.fixture(scope="module")
def planted() -> tuple[Study, RobustStudy]:
    """got_larger_than's probes do not transfer; open_book_qa is not learned."""
    results, jobs = study_sweep(local=("got_larger_than",), unlearned=("open_book_qa",))
    study = Study.build(results, null_directions=200)
    return study, robust_analysis(results, jobs, study.depth, resamples=100)


def test_every_figure_is_drawn_read_back_and_captioned(full_study, full_robust, tmp_path):
    drawn = draw_all(full_study, tmp_path, robust=full_robust)
    assert list(FIGURES) == ORIGINAL and list(ROBUST) == ["robust_matrix"]
    assert [d.name for d in drawn] == ["robust_matrix"] + ORIGINAL + list(EXTRA)
    assert {d.section for d in drawn if d.name in FIGURES} == {"original"}
    assert drawn[0].section == "robust"
    assert all(name.startswith("x_") for name in EXTRA)
    best = str(full_study.best)
    for d in drawn:
        assert d.skipped is None, f"{d.name}: {d.skipped}"
        assert d.path == tmp_path / f"{d.name}.png"
        pixels = matplotlib.image.imread(d.path)  # the whole file decodes
        height, width = pixels.shape[:2]
        # print resolution (300 dpi) of a 3–12 inch figure, with something drawn on it
        assert 900 <= width <= 4000 and 600 <= height <= 4000, (d.name, width, height)
        assert pixels[..., :3].std() > 0.05, d.name
        assert "{" not in d.caption and len(d.caption) > 60, d.name
    captions = {d.name: d.caption for d in drawn}
    for name in ("r1a_by_algorithms", "r1b_by_train", "r1c_by_layer", "v4_lda"):
        assert best in captions[name], name  # names the best probe it was drawn for
    assert f"layer {full_study.best.layer}" in captions["v4_lda"]
    for name in ("r0_acc_by_layer", "r3b_matrix", "r3d_clustering"):
        assert "layers ≥ 12 of 36" in captions[name], name
    assert (
        "23.5%" in captions["r4_truthful_qa"] and "Llama-2-13B-chat" in captions["r4_truthful_qa"]
    )
    assert "Llama-2-13B-chat" in captions["v3_repe"]
    # the null replaces the single random direction as the baseline
    for name in ("r2_probes", "x_in_dist_by_layer", "x_cross_by_algorithm"):
        assert (
            "null (mean of random directions, each direction's sign chosen on the eval "
            "set)" in captions[name]
        ), name
    assert "Every trained-on dataset was learned" in captions["robust_matrix"]
    assert "truthful_qa" in captions["robust_matrix"]  # never trained on: absent, named


def test_robust_matrix_greys_the_pairs_that_do_not_beat_the_null(planted, tmp_path):
    study, robust = planted
    table = tables.robust_matrix_table(study, robust)
    names = list(table.ccr.index)
    # open_book_qa is not learned and truthful_qa never trained on: both absent
    assert "open_book_qa" not in names and "truthful_qa" not in names and len(names) == 6
    assert names == [d for d in study.datasets if d in names]  # the study's train order
    expected = np.zeros((6, 6), dtype=bool)
    expected[names.index("got_larger_than")] = True  # its probes stay at the null elsewhere
    np.fill_diagonal(expected, False)  # own cells are not tested, never greyed
    assert (greyed_cells(table) == expected).all()

    figure = ROBUST["robust_matrix"][0](study, robust)
    ax = figure.axes[0]
    grey, values = ax.images  # the grey layer under the coloured values
    assert (~np.ma.getmaskarray(grey.get_array()) == expected).all()
    assert (np.ma.getmaskarray(values.get_array()) == expected).all()
    assert np.allclose(values.get_array().compressed(), table.ccr.to_numpy()[~expected])
    # every value written, greyed ones too, still legible (dark grey on light grey)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(texts) == 36
    row = names.index("got_larger_than")
    other = (row + 1) % 6
    assert float(texts[row, other].get_text()) == pytest.approx(table.ccr.iloc[row, other],
                                                                abs=0.005)  # fmt: skip
    assert texts[row, other].get_color() == "#4d4d4d"
    hatched = [p for p in ax.patches if p.get_hatch()]
    outlined = [p for p in ax.patches if not p.get_hatch()]
    assert len(hatched) == 5 and len(outlined) == 6  # five greyed pairs, six own cells
    assert [t.get_text() for t in ax.get_yticklabels()] == names

    (drawn,) = draw_all(study, tmp_path, only=["robust_matrix"], robust=robust)
    assert drawn.path is not None and drawn.section == "robust"
    assert "open_book_qa, threshold" in drawn.caption and "200 random directions" in drawn.caption
    assert "Never trained on (no threshold), so absent: truthful_qa" in drawn.caption


def test_robust_matrix_without_a_robust_view_is_skipped_saying_why(full_study, tmp_path):
    (drawn,) = draw_all(full_study, tmp_path, only=["robust_matrix"])
    assert drawn.path is None and "not computed" in drawn.skipped
    old = study_results(null=False)
    study = Study.build(old)
    robust = robust_analysis(old, [], study.depth)
    (drawn,) = draw_all(study, tmp_path, only=["robust_matrix"], robust=robust)
    assert drawn.path is None and "lack the null columns" in drawn.skipped


def test_r4_without_a_cached_chance_level_says_so(tmp_path):
    study = Study.build(study_results(train=["imdb", "boolq"], probes=["dim", "lr"]))
    (drawn,) = draw_all(study, tmp_path, only=["r4_truthful_qa"])
    assert drawn.path is not None and "no chance line" in drawn.caption


def test_truthful_qa_chance_is_read_from_the_cache(tmp_path):
    from probegen.cache import dataset_dir

    folder = tmp_path / "activations" / "4b" / "truthful_qa"
    # chance.py spells the layout out (probegen.cache imports torch): the same folder
    assert folder == dataset_dir(tmp_path, "4b", "truthful_qa")
    folder.mkdir(parents=True)
    rows = pd.DataFrame(
        {
            "split": ["validation"] * 6 + ["train-hparams"] * 3,
            "group_id": ["q1"] * 4 + ["q2"] * 2 + ["q3"] * 3,
        }
    )
    rows.to_parquet(folder / "rows.parquet")
    assert truthful_qa_chance(tmp_path, "4b") is None  # no manifest: unfinished folder
    (folder / "manifest.json").write_text(json.dumps({"complete": True}))
    # q1 has 4 choices, q2 has 2; q3 is train-hparams: mean(1/4, 1/2)
    assert truthful_qa_chance(tmp_path, "4b") == pytest.approx(0.375)
    assert truthful_qa_chance(tmp_path, "8b") is None and truthful_qa_chance(None, "4b") is None


def test_figures_without_their_inputs_are_skipped_with_a_reason(tmp_path, caplog):
    # no truthful_qa, no arc_easy, no RepE dataset, no lat / dim / lda
    train = ["imdb", "boolq", "got_cities"]
    results = study_results(train=train, evals=train, probes=["lr", "ccs"])
    with caplog.at_level(logging.INFO):
        drawn = {d.name: d for d in draw_all(Study.build(results), tmp_path)}
    skipped = {name: d.skipped for name, d in drawn.items() if d.skipped}
    assert set(skipped) == {"robust_matrix", "r4_truthful_qa", "v1_arc_easy", "v2_got",
                            "v3_repe", "v4_lda"}  # fmt: skip
    assert "truthful_qa" in skipped["r4_truthful_qa"]
    assert "arc_easy" in skipped["v1_arc_easy"]
    assert "lda" in skipped["v4_lda"] and "lat" in skipped["v3_repe"]
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(
        (set(FIGURES) | set(EXTRA)) - set(skipped)
    )
    assert "r4_truthful_qa skipped" in caplog.text


def test_one_train_dataset_has_no_best_probe(tmp_path):
    results = study_results(train=["imdb"], evals=["imdb"], probes=["lr", "dim"])
    study = Study.build(results)
    assert study.best is None
    drawn = {d.name: d for d in draw_all(study, tmp_path)}
    made = {name for name, d in drawn.items() if d.path is not None}
    # the means over all rows still exist; everything about the best probe does not
    assert made == {"r0_acc_by_layer", "r2_probes", "r3a_datasets", "r3b_matrix",
                    "r3c_to_and_from", "x_in_dist_by_layer", "x_thresholds"}  # fmt: skip
    assert "at least two datasets" in drawn["r1a_by_algorithms"].skipped
    assert "best probe, none" in drawn["r1a_by_algorithms"].caption


def test_orders_follow_mean_recovered_accuracy_over_all_rows():
    results = study_results(probes=["dim", "lr", "random"], seed=3)
    # make lr clearly the best algorithm and imdb the best train dataset, own rows included
    results.loc[results["probe"] == "lr", "accuracy"] *= 1.3
    results.loc[results["train_dataset"] == "imdb", "accuracy"] *= 1.2
    results.loc[results["probe"] == "random", "accuracy"] = 1.0  # not in the analysis at all
    results["null_mean"] = 1.0  # the null: never ordered first either
    results["accuracy"] = results["accuracy"].clip(0, 1)
    study = Study.build(results)
    assert study.algorithms == ["lr", "dim", "null"]  # the baseline always last
    assert study.variants == ["random"]  # a listed probe, not the baseline
    assert study.datasets[0] == "imdb"
    assert study.eval_only == ["truthful_qa"]
    assert not {"random", "null"} & set(study.ranking["probe"])


def test_later_layers_are_13_40_of_the_depth_the_results_record(caplog):
    # a model no preset knows: the depth can only come from its results rows
    results = study_results(model="someone--model", layers=[1, 11, 12, 35], depth=36)
    study = Study.build(results)
    assert study.depth == 36 and study.later_layer == 12
    assert sorted(study.later["layer"].unique()) == [12, 35]
    assert Study.build(results, later_layer=30).later_layer == 30  # the config key
    # not max layer + 1 (36): the recorded depth wins
    assert (
        Study.build(results.assign(depth=pd.array([40] * len(results), dtype="Int64"))).depth == 40
    )
    with caplog.at_level(logging.WARNING):
        assert model_depth("someone--model", results, depth=40) == 40  # depth= overrides
    assert "depth=40 given; its results record [36]" in caplog.text


def test_a_depth_conflict_within_a_model_is_an_error():
    results = study_results(model="someone--model", layers=[1, 3])
    results.loc[results["layer"] == 3, "depth"] = 40
    with pytest.raises(ValueError, match=r"model someone--model: .*disagree.*\[36, 40\]"):
        Study.build(results)
    assert Study.build(results, depth=40).depth == 40  # depth= settles it


def test_an_unknown_depth_is_never_guessed():
    unknown = study_results(model="4b", layers=[1, 35], depth=None)  # a preset name, even
    old = unknown.drop(columns=["depth"])  # results written before the column existed
    for results in (unknown, old):
        with pytest.raises(ValueError, match="model 4b: .*pass depth=N"):
            Study.build(results)
        assert Study.build(results, depth=30).later_layer == 10
    # rows without a depth add nothing to those that have one
    mixed = pd.concat(
        [study_results(model="4b", layers=[1]), study_results(model="4b", layers=[35], depth=None)]
    )
    assert Study.build(mixed).depth == 36


def test_heatmap_cells_show_percentages(full_study):
    figure = FIGURES["r3b_matrix"][0](full_study)
    texts = [t.get_text() for t in figure.axes[0].texts]
    n = len(full_study.datasets)
    assert len(texts) == n * n and all(t.isdigit() and 0 <= int(t) <= 100 for t in texts)
    figure = FIGURES["r1a_by_algorithms"][0](full_study)
    marked = [t.get_text() for t in figure.axes[0].get_yticklabels() if "(best)" in t.get_text()]
    assert marked == [f"{full_study.best.probe} (best)"]


def _rc_snapshot() -> dict:
    """The stored rcParams (dict's own view: reading `backend` through rcParams would
    resolve, i.e. change, it)."""
    return dict(dict.items(matplotlib.rcParams))


def test_importing_the_aggregation_leaves_matplotlib_alone():
    """A fresh interpreter (this one imported the figures long ago): importing stage 3
    changes no rcParams (backend included) and does not load pyplot."""
    script = (
        "import json, sys, matplotlib\n"
        "before = dict(dict.items(matplotlib.rcParams))\n"
        "import probegen.aggregate, probegen.aggregate.style, probegen.aggregate.figures\n"
        "import probegen.aggregate.report, probegen.aggregate.run\n"
        "after = dict(dict.items(matplotlib.rcParams))\n"
        "changed = sorted(k for k in before.keys() | after.keys()"
        " if before.get(k) != after.get(k))\n"
        "print(json.dumps([changed, 'matplotlib.pyplot' in sys.modules]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    changed, pyplot = json.loads(run.stdout.splitlines()[-1])
    assert changed == [] and pyplot is False


def test_figures_keep_their_look_whatever_the_global_rcparams(full_study, tmp_path):
    """The look (style.RC) is applied where a figure is drawn and saved, not globally: under
    someone else's settings a figure still has 10 pt titles, 9 pt labels and ticks, 8 pt
    frameless legends and no top/right spines, and those settings are left as they were."""
    theirs = {"font.size": 14, "axes.titlesize": 20, "axes.labelsize": 16,
              "legend.fontsize": 13, "legend.frameon": True, "axes.spines.top": True,
              "axes.spines.right": True}  # fmt: skip
    with matplotlib.rc_context(theirs):
        before = _rc_snapshot()
        figure = FIGURES["r2_probes"][0](full_study)
        style.save(figure, tmp_path / "r2_probes.png")
        assert _rc_snapshot() == before
    ax = figure.axes[0]
    assert ax.title.get_fontsize() == 10 and ax.yaxis.label.get_fontsize() == 9
    # tick labels are made lazily, some only while saving: all drawn at 9 pt
    ticks = ax.get_xticklabels() + ax.get_yticklabels()
    assert ticks and {t.get_fontsize() for t in ticks} == {9}
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    assert ax.spines["left"].get_visible()
    legend = ax.get_legend()
    assert not legend.get_frame_on() and {t.get_fontsize() for t in legend.get_texts()} == {8}


def test_study_refuses_several_models_and_unscored_sweeps():
    two = pd.concat([study_results(model="4b"), study_results(model="8b")])
    with pytest.raises(ValueError, match="one model"):
        Study.build(two)
    failed = study_results().assign(status="failed", accuracy=np.nan)
    with pytest.raises(ValueError, match="no probe was scored"):
        Study.build(failed)


def test_png_files_are_real_images(full_study, tmp_path):
    (drawn,) = draw_all(full_study, tmp_path, only=["r2_probes"])
    assert Path(drawn.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
