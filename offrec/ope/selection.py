"""Off-policy selection: would a user who trusts the estimates pick the right policy?"""

from __future__ import annotations

import numpy as np
from scipy import stats

from offrec.core.errors import InputError


def spearman(estimates: np.ndarray, truths: np.ndarray) -> float:
    """Spearman rank correlation of estimated and true values (nan for fewer than 2
    policies or constant inputs)."""
    est, tru = np.asarray(estimates, float), np.asarray(truths, float)
    if est.shape != tru.shape or est.ndim != 1:
        raise InputError(
            f"estimates and truths must be 1-D of one length; got {est.shape}, {tru.shape}"
        )
    if est.size < 2 or np.ptp(est) == 0 or np.ptp(tru) == 0:
        return float("nan")
    return float(stats.spearmanr(est, tru).statistic)


def selection_regret(estimates: np.ndarray, truths: np.ndarray) -> float:
    """``max(truths) - truths[argmax(estimates)]``: value lost by picking the policy with
    the best estimate instead of the truly best one (0 = perfect pick)."""
    est, tru = np.asarray(estimates, float), np.asarray(truths, float)
    if est.shape != tru.shape or est.size == 0:
        raise InputError(
            f"estimates and truths must be non-empty and of one shape; got {est.shape}, {tru.shape}"
        )
    return float(tru.max() - tru[int(np.argmax(est))])


def ranks(values: np.ndarray) -> np.ndarray:
    """Rank 1 = largest value (ties share the smallest rank)."""
    v = np.asarray(values, float)
    return stats.rankdata(-v, method="min").astype(int)
