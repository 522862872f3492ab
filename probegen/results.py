"""The results schema every probe job writes and stage 3 reads (docs/design.md §7).

Torch-free on purpose: stage 3 and the W&B tracking read results tables without importing
the probe stage.
"""

from __future__ import annotations

import pandas as pd

RESULT_COLUMNS = [
    "model", "probe", "train_dataset", "layer", "eval_dataset", "eval_split",
    "accuracy", "n", "auroc", "is_flipped", "status", "reason", "fit_seconds",
    "depth",  # last, so the older columns keep their positions
]  # fmt: skip
EVAL_SPLITS = ("validation", "train-hparams")
# How the `reason` of a fit's ok rows starts when its solver stopped before converging.
NOT_CONVERGED = "not converged"


def unconverged_fits(results: pd.DataFrame) -> int:
    """How many fits (probe × train dataset × layer) of a results table stopped before
    converging: their ok rows' reason says so."""
    if results.empty:
        return 0
    rows = results[
        (results["status"] == "ok") & results["reason"].astype(str).str.startswith(NOT_CONVERGED)
    ]
    return len(rows.drop_duplicates(["probe", "train_dataset", "layer"]))
