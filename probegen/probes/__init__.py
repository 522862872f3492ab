"""Linear truth probes (docs/design.md §6): scikit-learn style estimators with
`fit(X, y, groups=None, answer_types=None)`, `decision_function(X)` = X @ coef_ +
intercept_, and a registry.

    from probegen.probes import PROBES, make_probe
    probe = make_probe("lr", C=1.0).fit(X, y, groups=groups)
"""

from __future__ import annotations

from probegen.probes.base import BaseProbe, FitFailed, NeedsGroups, OneClass
from probegen.probes.ccs import CCSProbe
from probegen.probes.ccs_subspace import SubspaceCCSProbe
from probegen.probes.lda import LDAProbe, ShrunkLDAProbe
from probegen.probes.supervised import DIMProbe, GroupedLRProbe, LRProbe
from probegen.probes.unsupervised import GroupedPCAProbe, LATProbe, PCAProbe, RandomProbe

PROBES: dict[str, type[BaseProbe]] = {
    cls.name: cls
    for cls in (
        DIMProbe,
        LDAProbe,
        LRProbe,
        GroupedLRProbe,
        CCSProbe,
        PCAProbe,
        GroupedPCAProbe,
        LATProbe,
        RandomProbe,
        ShrunkLDAProbe,
        SubspaceCCSProbe,
    )
}


def make_probe(name: str, **params) -> BaseProbe:
    """A new, unfitted probe of method `name` with hyperparameters `params`."""
    if name not in PROBES:
        raise KeyError(f"unknown probe {name!r}; known probes: {', '.join(PROBES)}")
    return PROBES[name](**params)


__all__ = [
    "PROBES",
    "BaseProbe",
    "FitFailed",
    "NeedsGroups",
    "OneClass",
    "make_probe",
]
