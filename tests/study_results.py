"""A synthetic probe sweep with the study's dataset names, for the figure and report tests.

Accuracies follow a plausible pattern (in-distribution high, cross-dataset lower, later
layers better, random near chance) with seeded noise; the numbers mean nothing, the shapes
and names are those of a real `results.parquet` sweep.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from probegen.results import RESULT_COLUMNS

STUDY = ["imdb", "boolq", "arc_easy", "open_book_qa", "got_cities", "got_sp_en_trans",
         "got_larger_than"]  # fmt: skip
PROBES = ["dim", "lda", "lr", "ccs", "lat", "random"]


def study_results(
    model: str = "4b",
    train: list[str] = STUDY,
    evals: list[str] | None = None,
    probes: list[str] = PROBES,
    layers: list[int] = (1, 5, 13, 21, 29, 35),
    seed: int = 0,
    depth: int | None = 36,
) -> pd.DataFrame:
    """Both eval splits of every probe × train × layer × eval, all `ok`; every row carries
    `depth` (None: unknown, as in results written before it was recorded)."""
    rng = np.random.default_rng(seed)
    evals = [*train, "truthful_qa"] if evals is None else evals
    skill = {p: 0.1 + 0.3 * rng.random() for p in probes} | {"random": 0.0}
    rows = []
    for probe in probes:
        for t in train:
            for layer in layers:
                depth_gain = min(layer / 20, 1.0)
                for e in evals:
                    own = 0.35 if t == e else 0.1 * rng.random()
                    base = 0.5 + depth_gain * (skill[probe] + own)
                    for split in ("validation", "train-hparams"):
                        accuracy = float(np.clip(base + rng.normal(0, 0.03), 0.0, 1.0))
                        rows.append([model, probe, t, layer, e, split, accuracy, 400, None,
                                     False, "ok", "", 0.1, depth])  # fmt: skip
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return frame.astype({"auroc": "Float64", "depth": "Int64"})
