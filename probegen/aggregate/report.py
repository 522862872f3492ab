"""summary.json, summary.md and a self-contained report.html for one or more models.

Sections: 1. the robust view (`report_robust`), 2. the original analysis, for comparison
with the post, 3. probegen's own views.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from probegen.aggregate import report_robust
from probegen.aggregate.figures import Drawn
from probegen.aggregate.metrics import LABELS, REFERENCE
from probegen.aggregate.report_robust import figure_lines, figures_html, html_table, md_table
from probegen.aggregate.report_robust import image as _image
from probegen.aggregate.report_robust import pct as _pct
from probegen.aggregate.robust import RobustStudy
from probegen.aggregate.study import Study

TOP = 20  # probes listed, as the original's ranking table


@dataclass
class ModelReport:
    """One model's analysis, figures and headline numbers (None with `problem` if none)."""

    study: Study
    drawn: list[Drawn]
    headline: dict | None = None
    problem: str | None = None
    figure_dir: Path = field(default_factory=Path)
    robust: RobustStudy | None = None  # the robust view (None: not computed)


def _json_ready(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values (NaN -> null)."""
    return json.loads(frame.to_json(orient="records"))


def dataset_frame(study: Study) -> pd.DataFrame:
    """Per trained-on dataset: its threshold and the probe setting it, and the original's
    generalises-from / -to (r3c: mean recovered accuracy, all layers, own rows included)."""
    frame = study.thresholds.reindex(study.datasets)[["threshold", "probe", "layer"]]
    rows = study.rows
    frame["from"] = rows.groupby("train_dataset")["recovered"].mean()
    frame["to"] = rows.groupby("eval_dataset")["recovered"].mean()
    return frame


def summary(reports: list[ModelReport], sources: list[str], duplicates: int) -> dict:
    """Everything the report states, as JSON-ready data."""
    models = {}
    for r in reports:
        s = r.study
        models[s.model] = {
            "depth": s.depth,
            "later_layer": s.later_layer,
            "headline": r.headline,
            "problem": r.problem,
            "robust": report_robust.summary(r),
            "null_baseline": s.baseline(),
            "null_directions": s.null_directions,
            "choices": s.choices(),
            "algorithms": s.algorithms,
            "datasets": s.datasets,
            "eval_only": s.eval_only,
            "variants_left_out": s.variants,
            "truthful_qa_chance": s.truthful_qa_chance,
            "datasets_table": _json_ready(dataset_frame(s).reset_index(names="dataset")),
            "ranking_top": _json_ready(s.ranking.head(TOP)),
            "status_counts": s.results["status"].value_counts().to_dict(),
            "figures": {
                d.name: {
                    "file": d.path.name if d.path else None,
                    "skipped": d.skipped,
                    "section": d.section,
                    "caption": d.caption,
                }
                for d in r.drawn
            },  # fmt: skip
        }
    return {
        "reference": REFERENCE,
        "labels": LABELS,
        "sources": sources,
        "duplicate_rows_dropped": int(duplicates),
        "models": models,
    }


def _tqa(value: dict | None) -> str:
    if value is None:
        return "– (truthful_qa not scored)"
    if value["share"] is None:
        return "– (no probe > 80% on the other datasets)"
    return f"{_pct(value['share'])} of {value['n_probes_above_80_cross']}"


def headline_table(reports: list[ModelReport]) -> tuple[list[str], list[list[str]]]:
    """The headline numbers as rows (each labelled with what it counts) × columns: each
    model, its null baseline, and the original's Llama-2-13B-chat numbers."""
    ref = REFERENCE
    rb = ref["best_probe"]
    labels = [
        "later layers",
        LABELS["share_later_probes_above_80"],
        LABELS["best_probe"],
        LABELS["best_probe_recovered"],
        LABELS["best_probe_recovered_cross"],
        LABELS["truthful_qa_share"],
        LABELS["mean_recovered"],
    ]
    columns = [["number"] + labels]
    for r in reports:
        s = r.study
        cut = f"≥ {s.later_layer} of {s.depth}"
        h = r.headline
        if h is None:
            columns.append([s.model, cut] + ["–"] * (len(labels) - 2) + [r.problem or "–"])
        else:
            b = h["best_probe"]
            columns.append([
                s.model, cut, f"{_pct(h['share_later_probes_above_80'])} of {h['n_later_probes']}",
                f"{b['probe']} / {b['train_dataset']} / layer {b['layer']}",
                _pct(b["recovered"]), _pct(b["recovered_cross"]), _tqa(h["truthful_qa"]),
                _pct(h["mean_recovered"]),
            ])  # fmt: skip
        base = s.baseline()
        if base is not None:
            columns.append([
                f"{s.model}: null, random directions (baseline)", cut,
                f"{_pct(base['share_later_probes_above_80'])} of {base['n_later_probes']}",
                "–", "–", "–", _tqa(base["truthful_qa"]), _pct(base["mean_recovered"]),
            ])  # fmt: skip
    columns.append([
        f"{ref['model']} (original study)", f"≥ {ref['later_layer']} of {ref['depth']}",
        _pct(ref["share_later_probes_above_80"]),
        f"{rb['probe']} / {rb['train_dataset']} / layer {rb['layer']}",
        _pct(ref["best_probe_recovered"]), "–", _pct(ref["truthful_qa_share"]), "–",
    ])  # fmt: skip
    header = [c[0] for c in columns]
    rows = [[c[i] for c in columns] for i in range(1, len(labels) + 1)]
    return header, rows


RANKING_COLUMNS = [
    "rank", "algorithm", "train dataset", "layer", "score: share of other probes beaten",
    "mean recovered (own dataset included)", "mean recovered on train-hparams (own included)",
    "mean recovered on other datasets (own left out)",
]  # fmt: skip


def ranking_rows(study: Study) -> list[list[str]]:
    """The original's top-20 table (plus the cross-only mean, labelled)."""
    return [
        [str(p["rank"]), p["probe"], p["train_dataset"], str(p["layer"]), _pct(p["score"]),
         _pct(p["recovered"]), _pct(p["recovered_hparams"]), _pct(p["recovered_cross"])]
        for _, p in study.ranking.head(TOP).iterrows()
    ]  # fmt: skip


ORIGINAL_TITLE = "2. The original analysis, for comparison with the post"
VIEWS_TITLE = "3. probegen's own views"
NULL_NOTE = (
    "The baseline column is the null: per cell, the mean accuracy of {many}, each "
    "direction's sign chosen on the eval set as every probe's is. It is what the original "
    "metric credits to that sign choice alone, and what a probe must beat to show a shared "
    "truth direction; it never sets a threshold and is never ranked."
)


def _null_note(reports: list[ModelReport]) -> str:
    many = next((f"{r.study.null_directions} random directions" for r in reports
                 if r.study.null_directions), "the random directions")  # fmt: skip
    return NULL_NOTE.format(many=many)


def markdown(reports: list[ModelReport], sources: list[str], duplicates: int) -> str:
    """summary.md: the robust view, the original analysis (headline beside the reference,
    the ranking, the fourteen figures), then probegen's own views."""
    lines = ["# probegen report", ""]
    lines += [f"Results from: {', '.join(sources)}.", ""]
    if duplicates:
        lines += [f"{duplicates} duplicate result rows from re-run jobs were dropped (newest "
                  "kept).", ""]  # fmt: skip
    lines += report_robust.markdown(reports)
    lines += [f"## {ORIGINAL_TITLE}", "", "### Headline numbers", ""]
    lines += md_table(*headline_table(reports))
    lines += ["", f"Reference: {REFERENCE['source']} (Llama-2-13b-chat, layers ≥ 13 of 40).",
              _null_note(reports), ""]  # fmt: skip
    for r in reports:
        s = r.study
        lines += [f"### {s.model}: the {TOP} best probes (pair-wise ranking, all layers)", ""]
        lines += md_table(RANKING_COLUMNS, ranking_rows(s))
        if s.variants:
            lines += ["", "Run but left out of the original analysis (not its eight "
                      f"algorithms): {', '.join(s.variants)}."]  # fmt: skip
        lines += ["", f"### {s.model}: figures", ""]
        lines += figure_lines(r, "original")
        lines += [""]
    lines += [f"## {VIEWS_TITLE}", ""]
    for r in reports:
        s = r.study
        lines += [f"### {s.model}: datasets", ""]
        header = ["dataset", "threshold", "set by", "generalises from (own included)",
                  "generalises to (own included)"]  # fmt: skip
        rows = []
        for name, d in dataset_frame(s).iterrows():
            by = f"{d['probe']}, layer {int(d['layer'])}" if isinstance(d["probe"], str) else "–"
            rows.append([name, _pct(d["threshold"]), by, _pct(d["from"]), _pct(d["to"])])
        lines += md_table(header, rows) + ["", f"### {s.model}: figures", ""]
        lines += figure_lines(r, "extra") + [""]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}img{max-width:100%;border:1px solid #ddd}figure{margin:2em 0}
figcaption{color:#444;font-size:.95em;margin-top:.4em}table{border-collapse:collapse;
margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}
.skipped{color:#777}"""


def html_report(
    reports: list[ModelReport],
    sources: list[str],
    duplicates: int,
    comparison: Path | None = None,
) -> str:
    """report.html: 1. the robust view, 2. the original analysis (headline beside the
    reference, the ranking, the fourteen figures with captions), 3. probegen's own views;
    images embedded."""
    dropped = f" {duplicates} duplicate rows of re-run jobs dropped (newest kept)."
    dropped = dropped if duplicates else ""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>probegen report</title>",
        f"<style>{CSS}</style></head><body><h1>probegen report</h1>",
        f"<p>Results from: {html.escape(', '.join(sources))}.{dropped}</p>",
        *report_robust.html_section(reports),
        f"<h2>{ORIGINAL_TITLE}</h2><p>As mishajw's comparison.py computes it. "
        "Recovered accuracy = accuracy on a dataset ÷ its threshold (the validation accuracy "
        "of the in-distribution probe best on train-hparams), capped at 100%. Means are over "
        "all layers, the eight algorithms and every eval dataset, own train dataset "
        "included, unless a label says otherwise.</p>",
        "<h3>Headline numbers</h3>",
        html_table(*headline_table(reports)),
        f"<p>{html.escape(_null_note(reports))}</p>",
    ]
    if comparison is not None:
        parts += [f"<figure>{_image(comparison)}<figcaption>Headline numbers per model beside "
                  "the original study's Llama-2-13B-chat.</figcaption></figure>"]  # fmt: skip
    for r in reports:
        s = r.study
        parts += [f"<h3>{html.escape(s.model)}: the {TOP} best probes (pair-wise ranking, all "
                  "layers)</h3>", html_table(RANKING_COLUMNS, ranking_rows(s))]  # fmt: skip
        parts += [f"<h3>{html.escape(s.model)}: the fourteen figures</h3>"]
        parts += figures_html(r, "original")
    parts += [f"<h2>{VIEWS_TITLE}</h2><p>Not in the original analysis.</p>"]
    for r in reports:
        parts += [f"<h3>{html.escape(r.study.model)}</h3>"] + figures_html(r, "extra")
    parts += ["</body></html>"]
    return "\n".join(parts)
