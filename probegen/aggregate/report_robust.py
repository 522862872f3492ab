"""The report's first section, the robust view (issue 14; `probegen.aggregate.robust`), and
the table, image and figure rendering both of the report's sections share.

The section says in plain words what the view is, then per model a headline table (the
train-fixed sign policy, the robust headline, beside the same numbers under the original's
eval-set sign policy, each with its own null), the original metric's mean next to the
null's, and the matrix figure. Where the view could not be made, it says why and what to run.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from probegen.aggregate.pull import PROBE_COMMAND

if TYPE_CHECKING:  # report imports this module: only for the annotations
    from probegen.aggregate.report import ModelReport
    from probegen.aggregate.robust import RobustStudy

SECTION = "robust"  # the figures' section (`Drawn.section`) shown here

# ---- rendering shared with report.py --------------------------------------------------------


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal; "–" when missing."""
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def html_table(columns: list[str], rows: list[list[str]]) -> str:
    """An HTML table, every value escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(path: Path) -> str:
    """An <img> with the PNG embedded, so the page is self-contained."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def drawn_in(r: ModelReport, section: str) -> list:
    """The figures (drawn or skipped) of one report section, in drawing order."""
    return [d for d in r.drawn if d.section == section]


def figure_lines(r: ModelReport, section: str) -> list[str]:
    """summary.md's list of one section's figures: file and caption, or why skipped."""
    out = []
    for d in drawn_in(r, section):
        if d.path is None:
            out += [f"- {d.name}: skipped — {d.skipped}"]
        else:
            out += [f"- {d.name}: `{(r.figure_dir / d.path.name).as_posix()}` — {d.caption}"]
    return out


def figures_html(r: ModelReport, section: str) -> list[str]:
    """report.html's figures of one section, embedded with their captions."""
    parts = []
    for d in drawn_in(r, section):
        if d.path is None:
            parts += [f"<p class='skipped'><b>{d.name}</b> skipped: "
                      f"{html.escape(d.skipped or '')}</p>"]  # fmt: skip
            continue
        parts += [f"<figure id='{r.study.model}-{d.name}'>{image(d.path)}<figcaption><b>"
                  f"{d.name}</b> — {html.escape(d.caption)}</figcaption></figure>"]  # fmt: skip
    return parts


# ---- the robust view ------------------------------------------------------------------------

TITLE = "1. Robust view"


def intro(reports: list[ModelReport]) -> str:
    """What the robust view is, in plain words (markdown emphasis only)."""
    settings = next((r.robust for r in reports if r.robust is not None), None)
    boot = (f"{settings.resamples} resamples, seed {settings.seed}"
            if settings is not None else "resamples set by robust.resamples")  # fmt: skip
    many = next((f"{r.study.null_directions} random directions" for r in reports
                 if r.study.null_directions), "random directions")  # fmt: skip
    return (
        "The original metric chooses each probe's sign on the eval set itself, and a random "
        "direction gains from that choice as much as a trained probe does. The robust view "
        "fixes each probe's sign — and, on eval sets without question groups, its decision "
        "threshold — on the probe's own train split, and compares every probe with the "
        f"**null**: {many} scored the same way on the same cell. **Chance-corrected "
        "recovery** = (accuracy − null mean) / (threshold − null mean): 0 = what random "
        "directions reach, 1 = the eval dataset's in-distribution probe (the original's "
        "threshold). A dataset is **learned** when the lower end of its threshold's interval "
        "is above the null's 95th percentile; the others are left out of every number, since "
        "recovering a threshold at chance level means nothing. Intervals are 95% bootstrap "
        "intervals, resampling the eval sets' questions or rows, every probe on the same "
        f"resamples ({boot}). A probe **transfers** to a dataset when it beats the null "
        "there (one-sided test per probe and dataset, Benjamini–Hochberg false discovery "
        "rate 5% over all of them). Numbers are over the eight original algorithms at the "
        "later layers, on the other learned datasets (own dataset left out). The last column "
        "is the same analysis under the original's eval-set sign policy, with its own null."
    )


def _interval(value: float | None, lo: float | None, hi: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    ends = [_fraction(v) if v is not None and math.isfinite(v) else "?" for v in (lo, hi)]
    return f"{_fraction(value)} [{ends[0]}, {ends[1]}]"


def _pct_interval(estimate: dict) -> str:
    """A headline fraction as "12.3% [10.1, 14.6]" (the interval in percent)."""
    value, lo, hi = estimate["value"], estimate["lo"], estimate["hi"]
    if value is None or not math.isfinite(value):
        return "–"
    ends = [f"{100 * v:.1f}" if v is not None and math.isfinite(v) else "?" for v in (lo, hi)]
    return f"{pct(value)} [{ends[0]}, {ends[1]}]"


def _fraction(value: float) -> str:
    """Two decimals, without the "-0.00" of a tiny negative."""
    return f"{value:.2f}".replace("-0.00", "0.00")


def _column(h: dict) -> list[str]:
    """One policy's headline (`PolicyView.headline`) as the table's cells."""
    learned, not_learned = h["learned"], h["not_learned"]
    total = len(learned) + len(not_learned)
    left = "; ".join(f"{d}: {why}" for d, why in not_learned.items()) or "none"
    best = h["best_probe"]
    if best is None:
        best_name, best_value = "–", "–"
    else:
        best_name = f"{best['probe']} / {best['train_dataset']} / layer {best['layer']}"
        best_value = (f"{_interval(best['ccr_cross'], best['ccr_lo'], best['ccr_hi'])}; beats "
                      f"the null on {best['n_transfer']} of {best['n_eval']}")  # fmt: skip
    mean = h["mean_ccr"]
    share = h["share_transfer_half"]
    return [
        f"{len(learned)} of {total}: {', '.join(learned) or 'none'}",
        left,
        f"{_pct_interval(share)} of {h['n_probes']}",
        _interval(mean["value"], mean["lo"], mean["hi"]),
        best_name,
        best_value,
        f"{h['n_transfers']:,} of {h['n_tests']:,}",
        f"{_pct_interval(h['recovered_mean'])} / {_pct_interval(h['null_recovered_mean'])}",
    ]


ROW_LABELS = [
    "datasets learned (threshold's interval above the null's 95th percentile)",
    "not learned (left out of every number below), with the reason",
    "later-layer probes transferring to at least half of the other learned datasets [95% interval]",
    "mean chance-corrected recovery on the other learned datasets [95% interval]",
    "best probe (highest mean chance-corrected recovery on train-hparams)",
    "best probe's mean chance-corrected recovery on the other learned datasets [95% interval]",
    "probe × dataset cells beating the null (Benjamini–Hochberg, FDR 5%), all layers",
    "mean recovered accuracy (the original metric) of the same cells: probes / the null "
    "[95% intervals]",
]


def headline_table(robust: RobustStudy) -> tuple[list[str], list[list[str]]]:
    """The robust headline (train-fixed sign) beside the eval-set sign policy's."""
    header = ["number", "train-fixed sign (robust)", "eval-set sign (the original's policy)"]
    columns = [_column(robust.views[p].headline) for p in ("fixed", "eval")]
    return header, [[label, *cells] for label, *cells in zip(ROW_LABELS, *columns, strict=True)]


def original_vs_null(r: ModelReport) -> str:
    """The original metric's mean over its whole table next to the null's."""
    base = r.study.baseline()
    mean = r.headline["mean_recovered"] if r.headline else None
    null = f"the null's: {pct(base['mean_recovered'])}" if base else "no null in the results"
    return (f"The original metric over its whole table (all layers, the eight algorithms, own "
            f"dataset included): mean recovered accuracy {pct(mean)}; {null}.")  # fmt: skip


def _unavailable(r: ModelReport) -> str:
    reason = r.robust.unavailable_reason if r.robust else "the robust view was not computed"
    command = PROBE_COMMAND.format(model=r.study.model)
    return (f"No robust view: {reason.removeprefix('no robust view: ')}. It needs results "
            "with the null columns (accuracy_fixed, null_mean, …) and each probe job's "
            f"outcomes.safetensors, which probe jobs of this version write: run `{command}` "
            "and aggregate again.")  # fmt: skip


def _notes(r: ModelReport) -> list[str]:
    robust = r.robust
    h = robust.view.headline
    out = [f"Later layers: ≥ {robust.later_layer} of {r.study.depth}."]
    if h["no_threshold"]:
        out.append(f"Never trained on (no threshold), left out: {', '.join(h['no_threshold'])}.")
    if robust.left_out:
        named = "; ".join(f"{p}: {why}" for p, why in robust.left_out.items())
        out.append(f"Probes left out of the robust view: {named}.")
    return out + list(robust.notes)


def _available(r: ModelReport) -> bool:
    return r.robust is not None and r.robust.unavailable_reason is None


def markdown(reports: list[ModelReport]) -> list[str]:
    """summary.md's robust section."""
    lines = [f"## {TITLE}", "", intro(reports), ""]
    for r in reports:
        lines += [f"### {r.study.model}: robust headline", ""]
        if not _available(r):
            lines += [_unavailable(r), "", original_vs_null(r), ""]
            continue
        lines += md_table(*headline_table(r.robust))
        lines += ["", original_vs_null(r), ""] + [" ".join(_notes(r)), ""]
        lines += [f"### {r.study.model}: robust figure", ""] + figure_lines(r, SECTION) + [""]
    return lines


def html_section(reports: list[ModelReport]) -> list[str]:
    """report.html's robust section."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(intro(reports)))
    parts = [f"<h2>{TITLE}</h2><p>{text}</p>"]
    for r in reports:
        model = html.escape(r.study.model)
        parts += [f"<h3>{model}: robust headline</h3>"]
        if not _available(r):
            parts += [f"<p>{html.escape(_unavailable(r))}</p>",
                      f"<p>{html.escape(original_vs_null(r))}</p>"]  # fmt: skip
            continue
        parts += [html_table(*headline_table(r.robust)),
                  f"<p>{html.escape(original_vs_null(r))}</p>",
                  f"<p>{html.escape(' '.join(_notes(r)))}</p>"]  # fmt: skip
        parts += figures_html(r, SECTION)
    return parts


def summary(r: ModelReport) -> dict:
    """summary.json's `robust` entry of one model (`RobustStudy.summary()`)."""
    if r.robust is None:
        return {"available": False, "unavailable_reason": "the robust view was not computed"}
    return r.robust.summary()
