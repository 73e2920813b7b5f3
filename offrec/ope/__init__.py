"""Off-policy evaluation: one entry point, estimators that own their formulas, one interval engine.

The entry point, for logs of any size (streamed in batches, local or on Ray)::

    from offrec.ope import evaluate
    result = evaluate("logs/demo", {"linucb": policy}, estimators=["ips", "snips", "dr"])
    result.table          # value, interval, ESS, max weight, warnings per (policy, estimator)
    result.recommended    # the estimator offrec recommends for this log
    result.compare("linucb", "logger")   # paired difference with its interval

The in-memory functional core, with OBP's argument names (``reward, action, pscore,
action_dist, position, estimated_rewards``), for arrays already in memory::

    estimate_policy_value("dr", reward=..., action=..., pscore=..., action_dist=...,
                          estimated_rewards=...)
    estimate_interval("snips", ..., method="bootstrap", n_bootstrap=1000, seed=0)

Both apply the same estimator classes (``IPS(lambda_=10)``, ...) and interval engine.
"""

from offrec.ope.diagnostics import (
    SupportViolation,
    WeightStats,
    effective_sample_size,
    importance_weights,
    support_violation,
    weight_stats,
)
from offrec.ope.embedding import MIPS, SNMIPS, OffCEM
from offrec.ope.estimators import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    DRos,
    Estimator,
    Parts,
    SwitchDR,
    estimate_interval,
    estimate_policy_value,
    estimate_round_rewards,
    make_estimator,
)
from offrec.ope.evaluate import (
    SESSION_ESTIMATORS,
    FixedProbs,
    OPEResult,
    evaluate,
    evaluate_sequential,
)
from offrec.ope.intervals import METHODS, Interval
from offrec.ope.multi_logger import MULTI_LOGGER_ESTIMATORS
from offrec.ope.sequential import (
    SESSION_CLASSES,
    SequentialResult,
    SessionEstimator,
    estimate_sequential,
)
from offrec.ope.terms import RoundTerms, round_terms
from offrec.ope.trust import RECOMMENDED, Estimate, EstimatorInfo

ESTIMATORS.update(MULTI_LOGGER_ESTIMATORS)  # one registry: the multiple-logger forms too

__all__ = [
    "MIPS",
    "SNMIPS",
    "OffCEM",
    "DM",
    "DR",
    "ESTIMATORS",
    "IPS",
    "METHODS",
    "RECOMMENDED",
    "SESSION_CLASSES",
    "SESSION_ESTIMATORS",
    "SNDR",
    "SequentialResult",
    "SessionEstimator",
    "SNIPS",
    "DRos",
    "Estimate",
    "Estimator",
    "EstimatorInfo",
    "FixedProbs",
    "Interval",
    "OPEResult",
    "Parts",
    "RoundTerms",
    "SupportViolation",
    "SwitchDR",
    "WeightStats",
    "effective_sample_size",
    "estimate_interval",
    "estimate_policy_value",
    "estimate_round_rewards",
    "estimate_sequential",
    "evaluate",
    "evaluate_sequential",
    "importance_weights",
    "make_estimator",
    "round_terms",
    "support_violation",
    "weight_stats",
]
