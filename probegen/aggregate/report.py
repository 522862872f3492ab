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
from probegen.aggregate.figures.datasets import dataset_frame
from probegen.aggregate.metrics import REFERENCE
from probegen.aggregate.study import Study

TOP = 10  # probes listed in the report


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


def summary(reports: list[ModelReport], sources: list[str], duplicates: int) -> dict:
    """Everything the report states, as JSON-ready data."""
    models = {}
    for r in reports:
        s = r.study
        models[s.model] = {
            "depth": s.depth,
            "headline": r.headline,
            "problem": r.problem,
            "random_baseline_cross_recovered": s.baseline_cross(),
            "algorithms": s.algorithms,
            "datasets": s.datasets,
            "eval_only": s.eval_only,
            "variants_left_out": s.variants,
            "datasets_table": _json_ready(dataset_frame(s).reset_index(names="dataset")),
            "top_probes": _json_ready(s.ranking.head(TOP)),
            "status_counts": s.results["status"].value_counts().to_dict(),
            "figures": {
                d.name: {"file": d.path.name if d.path else None, "skipped": d.skipped}
                for d in r.drawn
            },
        }
    return {
        "reference": REFERENCE,
        "sources": sources,
        "duplicate_rows_dropped": int(duplicates),
        "models": models,
    }


def _headline_rows(reports: list[ModelReport]) -> list[list[str]]:
    rows = []
    for r in reports:
        h = r.headline
        if h is None:
            rows.append([r.study.model, "–", "–", "–", r.problem or "no headline", "–"])
            continue
        b = h["best_probe"]
        rows.append([
            r.study.model, _pct(h["mean_cross_recovered"]), _pct(h["share_probes_above_80"]),
            _pct(b["recovered"]), f"{b['probe']} on {b['train_dataset']}, layer {b['layer']}",
            _pct(r.study.baseline_cross()),
        ])  # fmt: skip
    ref = REFERENCE
    best = ref["best_probe"]
    rows.append([
        f"{ref['model']} (original study)", "–", _pct(ref["share_probes_above_80"]),
        _pct(ref["best_probe_recovered"]),
        f"{best['probe']} on {best['train_dataset']}, layer {best['layer']}", "–",
    ])  # fmt: skip
    return rows


HEADLINE_COLUMNS = [
    "model", "mean cross-dataset recovered", "probes > 80% recovered", "best probe recovered",
    "best probe", "random direction, cross-dataset recovered",
]  # fmt: skip


def markdown(reports: list[ModelReport], sources: list[str], duplicates: int) -> str:
    """summary.md: the headline table beside the reference, then per-model details."""
    lines = ["# probegen report", ""]
    lines += [f"Results from: {', '.join(sources)}.", ""]
    if duplicates:
        lines += [f"{duplicates} duplicate result rows from re-run jobs were dropped (newest "
                  "kept).", ""]  # fmt: skip
    lines += ["## Headline numbers (later layers: layer ≥ depth / 3)", ""]
    lines += ["| " + " | ".join(HEADLINE_COLUMNS) + " |"]
    lines += ["|" + "---|" * len(HEADLINE_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in _headline_rows(reports)]
    lines += ["", f"Reference: {REFERENCE['source']}", ""]
    lines += ["The last column is the random-direction baseline (scores negated where that "
              "scores higher, as every probe's are): what a probe must beat to show a shared "
              "truth direction.", ""]  # fmt: skip
    for r in reports:
        s = r.study
        lines += [f"## {s.model} ({s.depth} layers; later layers ≥ {s.first_later_layer})", ""]
        if r.headline is not None:
            h = r.headline
            lines += [
                f"- {h['n_probes']} probes (algorithm × train dataset × layer) at the later "
                f"layers; {_pct(h['share_probes_above_80_cross'])} of them exceed 80% "
                f"recovered accuracy when their own train set is left out.",
                "",
            ]
        if s.variants:
            left_out = ", ".join(s.variants)
            lines += [f"- Run but left out of the original study's analysis (probegen's own "
                      f"variants, not its eight algorithms): {left_out}.", ""]  # fmt: skip
        lines += ["### Best-generalising probes", ""]
        lines += ["| rank | probe | train dataset | layer | beats | recovered (others) |"]
        lines += ["|---|---|---|---|---|---|"]
        for _, p in s.ranking.head(TOP).iterrows():
            lines += [f"| {p['rank']} | {p['probe']} | {p['train_dataset']} | {p['layer']} | "
                      f"{_pct(p['score'])} | {_pct(p['recovered_cross'])} |"]  # fmt: skip
        lines += ["", "### Datasets", ""]
        lines += ["| dataset | threshold | set by | from (its probes elsewhere) | to (others' "
                  "probes on it) |", "|---|---|---|---|---|"]  # fmt: skip
        for name, d in dataset_frame(s).iterrows():
            by = f"{d['probe']}, layer {int(d['layer'])}" if isinstance(d["probe"], str) else "–"
            lines += [f"| {name} | {_pct(d['threshold'])} | {by} | {_pct(d['from'])} | "
                      f"{_pct(d['to'])} |"]  # fmt: skip
        lines += ["", "### Figures", ""]
        for d in r.drawn:
            where = (r.figure_dir / d.path.name).as_posix() if d.path else None
            lines += [f"- {d.name}: " + (f"`{where}`" if where else f"skipped — {d.skipped}")]
        lines += [""]
    return "\n".join(lines)


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


def html_report(
    reports: list[ModelReport],
    sources: list[str],
    duplicates: int,
    comparison: Path | None = None,
) -> str:
    """report.html: headline tables and every figure embedded, each with its caption."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>probegen report</title>",
        f"<style>{CSS}</style></head><body><h1>probegen report</h1>",
        f"<p>Results from: {html.escape(', '.join(sources))}."
        + (
            f" {duplicates} duplicate rows of re-run jobs dropped (newest kept)."
            if duplicates
            else ""
        )
        + "</p>",  # fmt: skip
        "<h2>Headline numbers</h2><p>Probes at the later layers (layer ≥ depth / 3). "
        "Recovered accuracy = accuracy on a dataset ÷ the best accuracy any probe trained on "
        "that dataset reaches (its threshold), capped at 100%.</p>",
        _table(HEADLINE_COLUMNS, _headline_rows(reports)),
        "<p>The last column is the random-direction baseline (its scores are negated where "
        "that scores higher, as every probe's are): what a probe must beat to show a shared "
        "truth direction.</p>",
    ]
    if comparison is not None:
        parts += [f"<figure>{_image(comparison)}<figcaption>Headline numbers per model beside "
                  "the original study's Llama-2-13B.</figcaption></figure>"]  # fmt: skip
    for r in reports:
        s = r.study
        parts += [f"<h2>{html.escape(s.model)}</h2>"]
        ranking = s.ranking.head(TOP)
        parts += [
            "<h3>Best-generalising probes</h3>",
            _table(
                ["rank", "probe", "train dataset", "layer", "beats", "recovered (others)"],
                [[p["rank"], p["probe"], p["train_dataset"], p["layer"], _pct(p["score"]),
                  _pct(p["recovered_cross"])] for _, p in ranking.iterrows()],
            ),
        ]  # fmt: skip
        for d in r.drawn:
            if d.path is None:
                parts += [f"<p class='skipped'><b>{d.name}</b> skipped: "
                          f"{html.escape(d.skipped or '')}</p>"]  # fmt: skip
                continue
            parts += [f"<figure id='{s.model}-{d.name}'>{_image(d.path)}<figcaption><b>{d.name}"
                      f"</b> — {html.escape(d.caption)}</figcaption></figure>"]  # fmt: skip
    parts += ["</body></html>"]
    return "\n".join(parts)


def comparison_figure(reports: list[ModelReport], path: Path) -> Path | None:
    """Grouped bars of the headline numbers per model, with the reference's as lines."""
    usable = [r for r in reports if r.headline is not None]
    if len(usable) < 2:
        return None
    metrics = {
        "mean cross-dataset\nrecovered": "mean_cross_recovered",
        "probes > 80%\nrecovered": "share_probes_above_80",
        "best probe\nrecovered": None,
    }
    fig, ax = style.new_figure(7, 3.8)
    width = 0.8 / len(usable)
    for i, r in enumerate(usable):
        values = [
            r.headline[key] if key else r.headline["best_probe"]["recovered"]
            for key in metrics.values()
        ]
        x = np.arange(len(metrics)) + (i - (len(usable) - 1) / 2) * width
        ax.bar(x, values, width, label=r.study.model, color=style.OKABE_ITO[i % 8])
        for xi, value in zip(x, values, strict=True):
            ax.text(xi, value + 0.01, f"{100 * value:.0f}", ha="center", size=7)
    for j, value in (
        (1, REFERENCE["share_probes_above_80"]),
        (2, REFERENCE["best_probe_recovered"]),
    ):
        ax.hlines(value, j - 0.45, j + 0.45, colors="black", linestyles="--", lw=1)
    ax.plot([], [], "k--", lw=1, label=f"{REFERENCE['model']} (study)")
    ax.set_xticks(range(len(metrics)), list(metrics))
    style.percent_axis(ax, "y", (0, 1.1))
    ax.set_ylabel("share / recovered accuracy (%)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("Headline numbers by model (later layers)")
    return style.save(fig, path)
