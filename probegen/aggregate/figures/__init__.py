"""The study's fourteen figures (DESIGN §8), drawn from one `Study`.

`FIGURES` maps each file name to its drawing function and the caption the report prints
under it (what to look at). A figure whose inputs the sweep lacks raises `Skip`; `draw_all`
logs the reason and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from probegen.aggregate import style
from probegen.aggregate.figures import datasets as d
from probegen.aggregate.figures import probes as p
from probegen.aggregate.figures import validation as v
from probegen.aggregate.figures.common import Skip
from probegen.aggregate.study import Study

log = logging.getLogger(__name__)

FIGURES: dict[str, tuple[Callable[[Study], Figure], str]] = {
    "r0_acc_by_layer": (
        p.r0_acc_by_layer,
        "Validation accuracy of probes scored on the dataset they were trained on, by layer. "
        "Look for the layers where truth becomes linearly readable; the grey band is left out "
        "of the headline numbers.",
    ),
    "r1a_by_algorithms": (
        p.r1a_by_algorithms,
        "Each point is one probe's mean recovered accuracy on the datasets it was not trained "
        "on. Algorithms whose whole box sits right of 80% generalise reliably.",
    ),
    "r1b_by_train": (
        p.r1b_by_train,
        "The same probes grouped by train dataset: which datasets teach a direction that "
        "carries over to the others.",
    ),
    "r1c_by_layer": (
        p.r1c_by_layer,
        "Mean recovered accuracy on other datasets by layer, per algorithm. Where it peaks is "
        "where a general truth direction is most present.",
    ),
    "r2_probes": (
        p.r2_probes,
        "The probes that win the most pair-wise comparisons against other probes on datasets "
        "neither was trained on (the study's ranking); bars show their mean recovered accuracy.",
    ),
    "r3a_datasets": (
        d.r3a_datasets,
        "Each dataset's threshold — the best accuracy any probe trained on it reaches, the "
        "denominator of recovered accuracy — beside the mean accuracy of probes from other "
        "datasets. A low threshold makes recovered accuracy easy to reach.",
    ),
    "r3b_matrix": (
        d.r3b_matrix,
        "Recovered accuracy for every train × eval pair, for the best algorithm and layer. "
        "Rows that stay bright generalise; dark columns are datasets other probes cannot solve.",
    ),
    "r3c_to_and_from": (
        d.r3c_to_and_from,
        "'From': how well a dataset's probes do elsewhere. 'To': how well other datasets' "
        "probes do on it. Good teachers are not always easy targets.",
    ),
    "r3d_clustering": (
        d.r3d_clustering,
        "Datasets clustered by how well probes transfer between them (both directions). "
        "Blocks along the diagonal are families of datasets that share a truth direction.",
    ),
    "r4_truthful_qa": (
        d.r4_truthful_qa,
        "TruthfulQA accuracy of probes trained on the other datasets (it is never trained on). "
        "Compare with chance (one over the number of answer choices, about 20-25%).",
    ),
    "v1_arc_easy": (
        v.v1_arc_easy,
        "Check against RepE (Zou et al. 2023): probes trained and scored on ARC-Easy, by layer.",
    ),
    "v2_got": (
        v.v2_got,
        "Check against Geometry of Truth (Marks & Tegmark 2023): mass-mean (dim) and logistic "
        "probes transfer among the GoT datasets.",
    ),
    "v3_repe": (
        v.v3_repe,
        "In-distribution accuracy on the RepE question-answering datasets, per algorithm.",
    ),
    "v4_lda": (
        v.v4_lda,
        "LDA against DIM (and LR) on their own dataset and on others: a gap that is larger for "
        "LDA means it fits its train set at the cost of generalisation.",
    ),
}


@dataclass
class Drawn:
    """One figure's outcome: its file, or why it was skipped."""

    name: str
    caption: str
    path: Path | None = None
    skipped: str | None = None


def draw_all(study: Study, out_dir: Path, only: list[str] | None = None) -> list[Drawn]:
    """Draw every figure (or `only` these) into `out_dir`/<name>.png."""
    drawn = []
    for name, (draw, caption) in FIGURES.items():
        if only is not None and name not in only:
            continue
        try:
            figure = draw(study)
        except Skip as reason:
            log.info("%s: %s skipped: %s", study.model, name, reason)
            drawn.append(Drawn(name, caption, skipped=str(reason)))
            continue
        drawn.append(Drawn(name, caption, path=style.save(figure, out_dir / f"{name}.png")))
    return drawn


__all__ = ["FIGURES", "Drawn", "Skip", "draw_all"]
