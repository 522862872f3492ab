"""The multi-model figure at the top of a report comparing several models: the original's
headline numbers per model beside Llama-2-13B-chat's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probegen.aggregate import style
from probegen.aggregate.metrics import REFERENCE

if TYPE_CHECKING:  # report imports the figures: only for the annotation
    from probegen.aggregate.report import ModelReport


@style.styled
def comparison_figure(reports: list[ModelReport], path: Path) -> Path | None:
    """Grouped bars of the headline numbers per model, with the reference's as lines."""
    usable = [r for r in reports if r.headline is not None]
    if len(usable) < 2:
        return None
    metrics = {  # label -> (value from a headline, the reference's)
        "later-layer probes\n> 80% (own incl.)": (
            lambda h: h["share_later_probes_above_80"], REFERENCE["share_later_probes_above_80"]),
        "best probe recovered\n(own incl.)": (
            lambda h: h["best_probe"]["recovered"], REFERENCE["best_probe_recovered"]),
        "> 80% probes with\nTruthfulQA > 35.9%": (
            lambda h: (h["truthful_qa"] or {}).get("share"), REFERENCE["truthful_qa_share"]),
    }  # fmt: skip
    fig, ax = style.new_figure(7, 3.8)
    width = 0.8 / len(usable)
    for i, r in enumerate(usable):
        values = [get(r.headline) for get, _ in metrics.values()]
        values = [np.nan if v is None else v for v in values]
        x = np.arange(len(metrics)) + (i - (len(usable) - 1) / 2) * width
        ax.bar(x, values, width, label=r.study.model, color=style.OKABE_ITO[i % 8])
        for xi, value in zip(x, values, strict=True):
            if np.isfinite(value):
                ax.text(xi, value + 0.01, f"{100 * value:.0f}", ha="center", size=7)
    for j, (_, value) in enumerate(metrics.values()):
        ax.hlines(value, j - 0.45, j + 0.45, colors="black", linestyles="--", lw=1)
    ax.plot([], [], "k--", lw=1, label=f"{REFERENCE['model']} (original)")
    ax.set_xticks(range(len(metrics)), list(metrics))
    style.percent_axis(ax, "y", (0, 1.1))
    ax.set_ylabel("share / recovered accuracy (%)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("The original's headline numbers by model")
    return style.save(fig, path)
