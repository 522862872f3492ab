"""Stage 3 end to end: pulled results -> per-model analysis (the original's and the robust
view), figures, summary and report."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from probegen.aggregate import report
from probegen.aggregate.chance import truthful_qa_chance
from probegen.aggregate.figures import draw_all
from probegen.aggregate.figures.comparison import comparison_figure
from probegen.aggregate.pull import PROBE_COMMAND, Pulled
from probegen.aggregate.robust import RobustStudy, robust_analysis
from probegen.aggregate.study import Study, model_order
from probegen.outcomes import JobOutcomes

log = logging.getLogger(__name__)


def default_out_dir(models: list[str], root: Path | str = "reports") -> Path:
    """reports/<model>, or reports/4b+8b+14b when several models are compared."""
    return Path(root) / "+".join(sorted(models, key=model_order))


def aggregate(
    pulled: Pulled,
    out_dir: Path,
    depth: int | None = None,
    only: list[str] | None = None,
    later_layer: int | None = None,
    cache_dir: Path | str | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> Path:
    """Analyse every model in `pulled`, draw its figures and write summary.json,
    summary.md and report.html into `out_dir` (one model) or `out_dir/<model>/` (figures of
    several, compared at the top level). Returns the report.html path.

    `depth` (decoder layers) and `later_layer` (first "later" layer; None: ceil(13/40 x
    depth)) apply when there is one model; without `depth`, each model's results carry
    theirs (recorded at extraction; older results need `depth`). `cache_dir`, when it
    holds the model's truthful_qa rows, gives r4 its chance line. `resamples` and `seed`
    set the robust view's bootstrap (`robust_analysis`), which reads `pulled.outcomes`.
    """
    results = pulled.results
    models = sorted(results["model"].unique(), key=model_order)
    if not models:
        raise ValueError("no result rows to aggregate")
    if (depth is not None or later_layer is not None) and len(models) > 1:
        raise ValueError(f"depth= and later_layer= are for one model; got {models}")
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for model in models:
        jobs = [job for job in pulled.outcomes if job.model == model]
        study = Study.build(results[results["model"] == model], depth, later_layer,
                            truthful_qa_chance(cache_dir, model),
                            _null_directions(jobs))  # fmt: skip
        robust = robust_view(study, jobs, resamples, seed)
        figure_dir = out_dir if len(models) == 1 else out_dir / model
        drawn = draw_all(study, figure_dir, only, robust)
        entry = report.ModelReport(study, drawn, figure_dir=figure_dir.relative_to(out_dir),
                                   robust=robust)  # fmt: skip
        try:
            entry.headline = study.headline()
        except ValueError as err:  # e.g. no cross-dataset numbers: nothing to rank
            entry.problem = str(err)
            log.warning("%s: no headline numbers: %s", model, err)
        made = sum(d.path is not None for d in drawn)
        log.info("%s: %d figures drawn, %d skipped", model, made, len(drawn) - made)
        reports.append(entry)
    sources = sorted({str(s) for s in results.get("source", [])}) or ["(given table)"]
    sources = _compact(sources)
    comparison = comparison_figure(reports, out_dir / "comparison.png")
    data = report.summary(reports, sources, len(pulled.duplicates))
    text = json.dumps(_no_nan(data), indent=2, default=str, allow_nan=False)
    (out_dir / "summary.json").write_text(text + "\n")
    (out_dir / "summary.md").write_text(report.markdown(reports, sources, len(pulled.duplicates)))
    page = out_dir / "report.html"
    page.write_text(report.html_report(reports, sources, len(pulled.duplicates), comparison))
    return page


def robust_view(study: Study, jobs: list[JobOutcomes], resamples: int, seed: int) -> RobustStudy:
    """The robust view of the study's model at the study's depth and later-layer cut. Inputs
    it cannot use (outcomes that do not pair up) give a view whose `unavailable_reason`
    says why and what to run, never a failed aggregation: the original analysis stands
    without it."""
    try:
        return robust_analysis(study.results, jobs, study.depth, later_layer=study.later_layer,
                               resamples=resamples, seed=seed)  # fmt: skip
    except ValueError as err:  # OutcomesError too: units of jobs that differ
        log.warning("%s: no robust view: %s", study.model, err)
        command = PROBE_COMMAND.format(model=study.model)
        return RobustStudy(study.model, "fixed", study.later_layer, resamples, seed, 0.05, 0.05,
                           unavailable_reason=f"no robust view: {err}. Re-run the probe jobs "
                           f"(`{command}`) to write them again")  # fmt: skip


def _null_directions(jobs: list[JobOutcomes]) -> int | None:
    """The random directions behind the model's null, when its jobs agree on it."""
    counts = {job.null_directions for job in jobs}
    return counts.pop() if len(counts) == 1 else None


def _no_nan(value):
    """NaN -> null, so summary.json is valid JSON for every reader."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _compact(sources: list[str]) -> list[str]:
    """Job folders collapsed to their sweep folders (multirun/<model>/<date>/<time>), W&B
    runs (wandb:<entity>/<project>/<run id>) to their project."""
    out = []
    for source in sources:
        sweep = source.rsplit("/", 1)[0]
        if sweep not in out:
            out.append(sweep)
    return out
