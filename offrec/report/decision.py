"""The decision and the trust table as the report shows them.

The decision itself (which policy to ship, or why the log cannot tell) is made by the
gate in :mod:`offrec.ope.gate`, and every warning by the evaluation
(:mod:`offrec.ope.trust`); this module re-exports the gate's names for callers of the
report package and lays the OPE's diagnostics out for people (:func:`trust_table`). It
derives nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from offrec.ope.gate import (
    DEPLOYABLE,
    INDEPENDENT,
    PAIRED,
    ROLES,
    Comparison,
    Decision,
    Paired,
    compare,
    decide,
    disagreements,
    recommended_estimator,
)

__all__ = [
    "DEPLOYABLE",
    "INDEPENDENT",
    "PAIRED",
    "ROLES",
    "Comparison",
    "Decision",
    "Paired",
    "compare",
    "decide",
    "disagreements",
    "recommended_estimator",
    "trust_table",
]


def trust_table(table: pd.DataFrame, roles: Mapping[str, str]) -> pd.DataFrame:
    """Per policy and estimator: the estimate, its interval, ESS (count and share of the
    rows), max importance weight, support coverage (``1 - support_violation``: the share
    of the target's mass on actions the logger can take) and the evaluation's warnings,
    as the OPE reported them (columns it did not report are left out)."""
    t = table.copy()
    t.insert(1, "role", t["policy"].map(lambda p: roles.get(str(p), "oracle")))
    if "support_violation" in t.columns:
        t["support"] = 1.0 - t["support_violation"]
    if "warnings" not in t.columns:
        t["warnings"] = ""
    t["warnings"] = t["warnings"].fillna("").astype(str)
    cols = [
        "policy",
        "role",
        "estimator",
        "value",
        "low",
        "high",
        "ess",
        "ess_share",
        "max_weight",
        "support",
        "warnings",
    ]
    return t[[c for c in cols if c in t.columns]].reset_index(drop=True)
