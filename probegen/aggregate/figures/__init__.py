"""The robust view's figure, the original analysis' fourteen and probegen's own views
(docs/design.md §8).

`ROBUST` maps the robust view's file names to a drawing function of (Study, RobustStudy)
and a caption template; `FIGURES` does the same for the original's file names and `EXTRA`
for probegen's views (x_*.png), functions of the Study alone. Captions are formatted with
`Study.choices()` (and the robust view's own values), so each names the choices it made
from the data (the best probe, the later-layer cut, the chance level, the datasets left
out). A figure whose inputs the sweep lacks raises `Skip`; `draw_all` logs the reason and
goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from probegen.aggregate import style
from probegen.aggregate.figures import datasets as d
from probegen.aggregate.figures import extra as x
from probegen.aggregate.figures import probes as p
from probegen.aggregate.figures import robust as r
from probegen.aggregate.figures import validation as v
from probegen.aggregate.study import Study
from probegen.aggregate.tables import Skip

if TYPE_CHECKING:  # robust imports study: only for the annotations
    from probegen.aggregate.robust import RobustStudy

log = logging.getLogger(__name__)

ROBUST: dict[str, tuple[Callable[[Study, RobustStudy | None], Figure], str]] = {
    "robust_matrix": (r.robust_matrix, r.CAPTION),
}

ALL = "all layers, the eight algorithms and every eval dataset, own train dataset included"
FIGURES: dict[str, tuple[Callable[[Study], Figure], str]] = {
    "r0_acc_by_layer": (
        p.r0_acc_by_layer,
        "ECDF of each probe's mean recovered accuracy (own train dataset included), one curve "
        "per layer; dotted curves are before the later layers ({later}). The headline's first "
        "number is the share of later-layer probes right of the dashed 80% line.",
    ),
    "r1a_by_algorithms": (
        p.r1a_by_algorithms,
        "Recovered accuracy of every algorithm trained on {best_train} at layer {best_layer}, "
        "on each other dataset ({best_train}'s own column left out). Data-driven choice: train "
        "dataset and layer of the best probe, {best}.",
    ),
    "r1b_by_train": (
        p.r1b_by_train,
        "Recovered accuracy of {best_probe} at layer {best_layer} by train dataset (rows, own "
        "cell included) and eval dataset; column {best_train} left out, rows with a missing "
        "cell dropped. Data-driven choice: algorithm and layer of the best probe, {best}.",
    ),
    "r1c_by_layer": (
        p.r1c_by_layer,
        "Recovered accuracy of {best_probe} trained on {best_train}, by layer and eval dataset "
        "(its own column left out). Data-driven choice: algorithm and train dataset of the "
        "best probe, {best}.",
    ),
    "r2_probes": (
        p.r2_probes,
        "Mean recovered accuracy per algorithm (" + ALL + "); colour: supervised or not, "
        "hatch: grouped (uses question groups). The dotted line, probegen's addition, is the "
        "baseline: the {null}.",
    ),
    "r3a_datasets": (
        d.r3a_datasets,
        "Mean recovered accuracy of the probes trained on each dataset (" + ALL + "), "
        "coloured by family.",
    ),
    "r3b_matrix": (
        d.r3b_matrix,
        "Recovered accuracy for every train × eval pair, averaged over the eight algorithms "
        "and the later layers ({later}); diagonal = in-distribution.",
    ),
    "r3c_to_and_from": (
        d.r3c_to_and_from,
        "Per dataset: mean recovered accuracy of its probes (generalises from) against the "
        "mean recovered accuracy of all probes on it (generalises to), own rows included. "
        "Data-driven choice: both axis ranges follow the data (the original fixes x to "
        "66–76%).",
    ),
    "r3d_clustering": (
        d.r3d_clustering,
        "Average-linkage clustering of datasets by 1 − recovered accuracy, r3b's matrix made "
        "symmetric (mean of both directions; {later}). Labels coloured by family.",
    ),
    "r4_truthful_qa": (
        d.r4_truthful_qa,
        "One point per probe (all layers): mean recovered accuracy on the other datasets "
        "(own left out) against its TruthfulQA accuracy. Dotted lines: Llama-2-13B-chat's "
        "TruthfulQA MC1 in the RepE paper's table 1 (35.9%, 50.3%), not this model's. "
        "{chance}.",
    ),
    "v1_arc_easy": (
        v.v1_arc_easy,
        "In-distribution validation accuracy on arc_easy by layer, one line per algorithm, "
        "dashed = unsupervised; the dotted line is the 80% the original's check asks about.",
    ),
    "v2_got": (
        v.v2_got,
        "In-distribution validation accuracy by layer of dim and lda on got_cities, "
        "got_larger_than and got_sp_en_trans (Geometry of Truth).",
    ),
    "v3_repe": (
        v.v3_repe,
        "LAT in-distribution validation accuracy by layer on race, open_book_qa, arc_easy and "
        "arc_challenge; dotted lines: Llama-2-13B-chat's LAT results in the RepE paper "
        "(45.9%, 54.7%, 80.3%, 53.2%), not this model's.",
    ),
    "v4_lda": (
        v.v4_lda,
        "Validation accuracy (not recovered) of dim and lda at layer {best_layer}, trained on "
        "boolq (top) and on the eval dataset itself (bottom). Data-driven choice: layer "
        "{best_layer} is the best probe's ({best}); the original used 21.",
    ),
}

EXTRA: dict[str, tuple[Callable[[Study], Figure], str]] = {
    "x_in_dist_by_layer": (
        x.x_in_dist_by_layer,
        "probegen's view: mean in-distribution validation accuracy by layer per algorithm, "
        "dotted: the {null}; where truth becomes linearly readable. Grey: before the later "
        "layers ({later}).",
    ),
    "x_cross_by_algorithm": (
        x.x_cross_by_algorithm,
        "probegen's view: the spread behind r2 — each probe's mean recovered accuracy on the "
        "other datasets (own left out), {later}, per algorithm, and, one point per train "
        "dataset × layer, of the {null}.",
    ),
    "x_thresholds": (
        x.x_thresholds,
        "probegen's view: each dataset's threshold (the denominator of recovered accuracy) "
        "and the probe that sets it, beside the mean raw accuracy of probes trained "
        "elsewhere. A low threshold makes recovered accuracy easy to reach.",
    ),
}


@dataclass
class Drawn:
    """One figure's outcome: its file, or why it was skipped."""

    name: str
    caption: str
    path: Path | None = None
    skipped: str | None = None
    # "robust" (the robust view), "original" (the fourteen) or "extra" (probegen's views)
    section: str = "original"


def draw_all(
    study: Study,
    out_dir: Path,
    only: list[str] | None = None,
    robust: RobustStudy | None = None,
) -> list[Drawn]:
    """Draw the robust view's figure (from `robust`; skipped, saying why, without one), the
    fourteen figures, then probegen's views (or `only` these names) into
    `out_dir`/<name>.png, each with its caption filled in from the study's choices."""
    drawn = []
    choices = study.choices()
    sections = (("robust", ROBUST, choices | r.caption_values(study, robust)),
                ("original", FIGURES, choices), ("extra", EXTRA, choices))  # fmt: skip
    for section, figures, values in sections:
        for name, (draw, caption) in figures.items():
            if only is not None and name not in only:
                continue
            caption = caption.format_map(values)
            try:
                figure = draw(study, robust) if section == "robust" else draw(study)
            except Skip as reason:
                log.info("%s: %s skipped: %s", study.model, name, reason)
                drawn.append(Drawn(name, caption, skipped=str(reason), section=section))
                continue
            path = style.save(figure, out_dir / f"{name}.png")
            drawn.append(Drawn(name, caption, path=path, section=section))
    return drawn


__all__ = ["EXTRA", "FIGURES", "ROBUST", "Drawn", "Skip", "draw_all"]
