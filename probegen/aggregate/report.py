"""summary.json, summary.md and a self-contained report.html for one or more models."""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from probegen.aggregate import style
from probegen.aggregate.figures import Drawn
from probegen.aggregate.metrics import LABELS, REFERENCE
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


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


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
            "random_baseline": s.baseline(),
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
    model, its random-direction baseline, and the original's Llama-2-13B-chat numbers."""
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
                f"{s.model}: random direction (baseline)", cut,
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


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def markdown(reports: list[ModelReport], sources: list[str], duplicates: int) -> str:
    """summary.md: the original analysis (headline beside the reference, the ranking, the
    fourteen figures), then probegen's own views."""
    lines = ["# probegen report", ""]
    lines += [f"Results from: {', '.join(sources)}.", ""]
    if duplicates:
        lines += [f"{duplicates} duplicate result rows from re-run jobs were dropped (newest "
                  "kept).", ""]  # fmt: skip
    lines += ["## 1. The original analysis", "", "### Headline numbers", ""]
    lines += _md_table(*headline_table(reports))
    lines += ["", f"Reference: {REFERENCE['source']} (Llama-2-13b-chat, layers ≥ 13 of 40).",
              "The random-direction baseline (scores negated where that scores higher, as "
              "every probe's are) is what a probe must beat to show a shared truth "
              "direction; it never sets a threshold and is never ranked.", ""]  # fmt: skip
    for r in reports:
        s = r.study
        lines += [f"### {s.model}: the {TOP} best probes (pair-wise ranking, all layers)", ""]
        lines += _md_table(RANKING_COLUMNS, ranking_rows(s))
        if s.variants:
            lines += ["", f"Run but left out of the original analysis (probegen's variants): "
                      f"{', '.join(s.variants)}."]  # fmt: skip
        lines += ["", f"### {s.model}: figures", ""]
        lines += _figure_lines(r, "original")
        lines += [""]
    lines += ["## 2. probegen's own views", ""]
    for r in reports:
        s = r.study
        lines += [f"### {s.model}: datasets", ""]
        header = ["dataset", "threshold", "set by", "generalises from (own included)",
                  "generalises to (own included)"]  # fmt: skip
        rows = []
        for name, d in dataset_frame(s).iterrows():
            by = f"{d['probe']}, layer {int(d['layer'])}" if isinstance(d["probe"], str) else "–"
            rows.append([name, _pct(d["threshold"]), by, _pct(d["from"]), _pct(d["to"])])
        lines += _md_table(header, rows) + ["", f"### {s.model}: figures", ""]
        lines += _figure_lines(r, "extra") + [""]
    return "\n".join(lines)


def _figure_lines(r: ModelReport, section: str) -> list[str]:
    out = []
    for d in r.drawn:
        if d.section != section:
            continue
        if d.path is None:
            out += [f"- {d.name}: skipped — {d.skipped}"]
        else:
            out += [f"- {d.name}: `{(r.figure_dir / d.path.name).as_posix()}` — {d.caption}"]
    return out


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}img{max-width:100%;border:1px solid #ddd}figure{margin:2em 0}
figcaption{color:#444;font-size:.95em;margin-top:.4em}table{border-collapse:collapse;
margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}
.skipped{color:#777}"""


def _figures_html(r: ModelReport, section: str) -> list[str]:
    parts = []
    for d in r.drawn:
        if d.section != section:
            continue
        if d.path is None:
            parts += [f"<p class='skipped'><b>{d.name}</b> skipped: "
                      f"{html.escape(d.skipped or '')}</p>"]  # fmt: skip
            continue
        parts += [f"<figure id='{r.study.model}-{d.name}'>{_image(d.path)}<figcaption><b>"
                  f"{d.name}</b> — {html.escape(d.caption)}</figcaption></figure>"]  # fmt: skip
    return parts


def html_report(
    reports: list[ModelReport],
    sources: list[str],
    duplicates: int,
    comparison: Path | None = None,
) -> str:
    """report.html: 1. the original analysis (headline beside the reference, the ranking,
    the fourteen figures with captions), 2. probegen's own views; images embedded."""
    dropped = f" {duplicates} duplicate rows of re-run jobs dropped (newest kept)."
    dropped = dropped if duplicates else ""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>probegen report</title>",
        f"<style>{CSS}</style></head><body><h1>probegen report</h1>",
        f"<p>Results from: {html.escape(', '.join(sources))}.{dropped}</p>",
        "<h2>1. The original analysis</h2><p>As mishajw's comparison.py computes it. "
        "Recovered accuracy = accuracy on a dataset ÷ its threshold (the validation accuracy "
        "of the in-distribution probe best on train-hparams), capped at 100%. Means are over "
        "all layers, the eight algorithms and every eval dataset, own train dataset "
        "included, unless a label says otherwise.</p>",
        "<h3>Headline numbers</h3>",
        _table(*headline_table(reports)),
        "<p>The random-direction baseline (scores negated where that scores higher, as every "
        "probe's are) is what a probe must beat to show a shared truth direction; it never "
        "sets a threshold and is never ranked.</p>",
    ]
    if comparison is not None:
        parts += [f"<figure>{_image(comparison)}<figcaption>Headline numbers per model beside "
                  "the original study's Llama-2-13B-chat.</figcaption></figure>"]  # fmt: skip
    for r in reports:
        s = r.study
        parts += [f"<h3>{html.escape(s.model)}: the {TOP} best probes (pair-wise ranking, all "
                  "layers)</h3>", _table(RANKING_COLUMNS, ranking_rows(s))]  # fmt: skip
        parts += [f"<h3>{html.escape(s.model)}: the fourteen figures</h3>"]
        parts += _figures_html(r, "original")
    parts += ["<h2>2. probegen's own views</h2><p>Not in the original analysis.</p>"]
    for r in reports:
        parts += [f"<h3>{html.escape(r.study.model)}</h3>"] + _figures_html(r, "extra")
    parts += ["</body></html>"]
    return "\n".join(parts)


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
