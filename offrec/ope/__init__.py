"""Off-policy evaluation of bandit policies: estimators, intervals, reward models, diagnostics.

Functional core (OBP argument names)::

    estimate_policy_value("dr", reward=..., action=..., pscore=..., action_dist=...,
                          estimated_rewards=...)
    estimate_interval("snips", ..., method="bootstrap", n_bootstrap=1000, seed=0)

Estimator classes (``IPS(lambda_=10).estimate_policy_value(**arrays)``) and the
:class:`OffPolicyEvaluation` runner are built on it.
"""

from offrec.ope.diagnostics import (
    SupportViolation,
    WeightStats,
    effective_sample_size,
    importance_weights,
    support_violation,
    weight_stats,
)
from offrec.ope.estimators import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    DRos,
    Estimator,
    RoundTerms,
    SwitchDR,
    estimate_policy_value,
    estimate_round_rewards,
    round_terms,
)
from offrec.ope.intervals import METHODS, Interval, estimate_interval
from offrec.ope.runner import OffPolicyEvaluation

__all__ = [
    "DM",
    "DR",
    "ESTIMATORS",
    "IPS",
    "METHODS",
    "SNDR",
    "SNIPS",
    "DRos",
    "Estimator",
    "Interval",
    "OffPolicyEvaluation",
    "RoundTerms",
    "SupportViolation",
    "SwitchDR",
    "WeightStats",
    "effective_sample_size",
    "estimate_interval",
    "estimate_policy_value",
    "estimate_round_rewards",
    "importance_weights",
    "round_terms",
    "support_violation",
    "weight_stats",
]
