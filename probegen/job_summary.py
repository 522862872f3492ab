"""What one probe job's results table says at a glance (docs/design.md §7): the run-level
numbers (`summarize`) and the train x eval heatmap (`draw_heatmap`, heatmap.png).

The W&B run logs both (`probegen.tracking`); neither needs W&B. matplotlib is imported when a
heatmap is drawn, so importing this module leaves matplotlib's global state alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from probegen.results import unconverged_fits

log = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """pandas/numpy scalars -> python values, missing (NA, NaN, None) -> None, for W&B."""
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _validation_ok(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[(results["status"] == "ok") & (results["eval_split"] == "validation")]
    return ok.dropna(subset=["accuracy"]).astype({"accuracy": float})


def summarize(results: pd.DataFrame) -> dict[str, Any]:
    """Run-level numbers: row counts by status, fits that stopped before converging
    (`unconverged_fits`: their rows are ok, their reason says so), and mean/best validation
    accuracy (ok rows)."""
    counts = results["status"].value_counts()
    summary: dict[str, Any] = {
        f"rows/{s}": int(counts.get(s, 0)) for s in ("ok", "skipped", "failed")
    }
    if summary["rows/ok"]:  # only a fit with ok rows can be an unconverged one
        summary["unconverged_fits"] = unconverged_fits(results)
    val = _validation_ok(results)
    in_dist = val[val["train_dataset"] == val["eval_dataset"]]
    cross = val[val["train_dataset"] != val["eval_dataset"]]
    for key, part in (("all", val), ("in_dist", in_dist), ("cross", cross)):
        if len(part):
            summary[f"val_accuracy/{key}"] = float(part["accuracy"].mean())
    if len(in_dist):
        best = in_dist.loc[in_dist["accuracy"].idxmax()]
        summary["best_in_dist/accuracy"] = float(best["accuracy"])
        for col in ("train_dataset", "layer", "probe"):
            if col in best:
                summary[f"best_in_dist/{col}"] = plain(best[col])
    return summary


def _choose_layers(val: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Keep, per train dataset, the rows of one layer; return them and the chosen layers.

    The layer is the one with the best in-distribution validation accuracy (train == eval);
    a train dataset that is never evaluated on itself falls back to its best mean validation
    accuracy over all eval datasets. Selecting on validation is fine for a per-job overview
    (the report's thresholds select on train-hparams, docs/design.md §8). Several probes in one
    table are averaged.
    """
    kept, layers = [], {}
    for train, rows in val.groupby("train_dataset", sort=False):
        in_dist = rows[rows["eval_dataset"] == train]
        by_layer = (in_dist if len(in_dist) else rows).groupby("layer")["accuracy"].mean()
        layers[train] = by_layer.idxmax()
        kept.append(rows[rows["layer"] == layers[train]])
    return pd.concat(kept), layers


def _dataset_order(val: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Rows: train datasets as they come. Columns: the same, so the diagonal is in-distribution
    (a train set never evaluated on gets a grey column), then eval-only sets like truthful_qa."""
    trains = list(dict.fromkeys(val["train_dataset"]))
    return trains, trains + [e for e in dict.fromkeys(val["eval_dataset"]) if e not in trains]


def draw_heatmap(results: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Train x eval heatmap of validation accuracy (%, ok rows) at each train set's best layer.

    Returns the PNG path, or None (logged) when there is no ok validation row to draw.
    """
    val = _validation_ok(results)
    if val.empty:
        log.warning("no heatmap for %s: no ok validation rows", title)
        return None
    # A bare Figure draws with Agg: no display, and no pyplot state or backend switch that
    # could leak into the caller.
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    chosen, layers = _choose_layers(val)
    trains, evals = _dataset_order(val)
    grid = chosen.pivot_table(
        index="train_dataset", columns="eval_dataset", values="accuracy", aggfunc="mean"
    ).reindex(index=trains, columns=evals)
    # Pairs with no ok row: light grey, no number.
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")  # colour-blind safe, sequential

    fig = Figure(figsize=(10, 9))
    ax = fig.subplots()
    # Fixed 0..1 scale so heatmaps of different jobs can be compared by eye.
    image = ax.imshow(grid.to_numpy(dtype=float), cmap=cmap, vmin=0.0, vmax=1.0)
    for (i, j), acc in pd.DataFrame(grid.to_numpy()).stack().dropna().items():
        # Dark text on the light (high) end of viridis, white on the dark end.
        colour = "black" if acc >= 0.6 else "white"
        ax.text(j, i, f"{100 * acc:.0f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(evals)), evals, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(trains)), [f"{t} (L{layers[t]})" for t in trains])
    ax.tick_params(labelsize=8)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on (layer shown)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="validation accuracy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path
