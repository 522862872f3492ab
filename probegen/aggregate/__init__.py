"""Stage 3: pull sweep results, compute recovered accuracy and the headline numbers
(docs/design.md §8).

`pull` reads results (multirun/ folders or W&B runs); `metrics` turns them into thresholds,
recovered accuracy, the generalisation ranking of probes and the headline numbers.
"""

from probegen.aggregate.metrics import (
    REFERENCE,
    generalisation_ranking,
    headline,
    recovered,
    threshold_probes,
    thresholds,
)
from probegen.aggregate.pull import (
    Pulled,
    ResultsError,
    find_sweeps,
    newest_sweep,
    read_local,
    read_wandb,
)

__all__ = [
    "REFERENCE",
    "Pulled",
    "ResultsError",
    "find_sweeps",
    "generalisation_ranking",
    "headline",
    "newest_sweep",
    "read_local",
    "read_wandb",
    "recovered",
    "threshold_probes",
    "thresholds",
]
