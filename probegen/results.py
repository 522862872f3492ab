"""The results schema every probe job writes and stage 3 reads (docs/design.md §7).

Torch-free on purpose: stage 3 and the W&B tracking read results tables without importing
the probe stage.
"""

from __future__ import annotations

import pandas as pd

RESULT_COLUMNS = [
    "model", "probe", "train_dataset", "layer", "eval_dataset", "eval_split",
    "accuracy", "n", "auroc", "is_flipped", "status", "reason", "fit_seconds",
    "depth",  # after the original columns, so those keep their positions
    # The train-fixed policy and the null (docs/design.md §6), after `depth`:
    "accuracy_fixed", "auroc_fixed", "train_sign",
    "null_mean", "null_sd", "null_p95", "null_mean_fixed", "null_sd_fixed", "null_p95_fixed",
]  # fmt: skip
# Columns a table written before they existed lacks; a reader fills them with nulls.
LATER_COLUMNS = RESULT_COLUMNS[RESULT_COLUMNS.index("depth") :]
NULL_COLUMNS = [c for c in LATER_COLUMNS if c.startswith("null_")]
# pandas dtypes of every non-text column; nullable numbers where a row may have none.
RESULT_DTYPES = {
    "layer": "int64", "accuracy": "float64", "n": "int64", "auroc": "Float64",
    "is_flipped": "bool", "fit_seconds": "float64", "depth": "Int64",
    "accuracy_fixed": "Float64", "auroc_fixed": "Float64", "train_sign": "Int8",
    **dict.fromkeys(NULL_COLUMNS, "Float64"),
}  # fmt: skip
TEXT_COLUMNS = ["model", "probe", "train_dataset", "eval_dataset", "eval_split", "status", "reason"]
EVAL_SPLITS = ("validation", "train-hparams")
# How the `reason` of a fit's ok rows starts when its solver stopped before converging.
NOT_CONVERGED = "not converged"


def frame(rows: list[dict], depth: int | None = None) -> pd.DataFrame:
    """Result rows (dicts with the columns of RESULT_COLUMNS but `depth`) as a table with
    the schema's dtypes, `depth` on every row."""
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table["depth"] = depth
    return conform(table)


def conform(table: pd.DataFrame) -> pd.DataFrame:
    """`table`'s RESULT_COLUMNS in order with the schema's dtypes; columns added after a
    table was written (LATER_COLUMNS) come as nulls. KeyError naming the missing columns;
    TypeError / ValueError when values do not fit the dtypes."""
    table = table.assign(**{c: pd.NA for c in LATER_COLUMNS if c not in table.columns})
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"missing columns {missing}")
    table = table[RESULT_COLUMNS].copy()
    for column, dtype in RESULT_DTYPES.items():
        if dtype[0].isupper():  # nullable: None / NaN from JSON or pandas become NA
            table[column] = pd.to_numeric(table[column].astype(object)).astype(dtype)
    table["reason"] = table["reason"].fillna("")
    return table.astype(RESULT_DTYPES | dict.fromkeys(TEXT_COLUMNS, "str"))


def unconverged_fits(results: pd.DataFrame) -> int:
    """How many fits (probe × train dataset × layer) of a results table stopped before
    converging: their ok rows' reason says so."""
    if results.empty:
        return 0
    rows = results[
        (results["status"] == "ok") & results["reason"].astype(str).str.startswith(NOT_CONVERGED)
    ]
    return len(rows.drop_duplicates(["probe", "train_dataset", "layer"]))
