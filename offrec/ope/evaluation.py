"""Deprecated name of :mod:`offrec.ope.accuracy` (how accurate the estimators are against
the simulator's truth; not :mod:`offrec.ope.evaluate`, the OPE entry point). Kept so that
existing imports keep working; import from :mod:`offrec.ope.accuracy`."""

from offrec.ope.accuracy import EstimatorEvaluation, evaluate_estimators, simulate_logged_data

__all__ = ["EstimatorEvaluation", "evaluate_estimators", "simulate_logged_data"]
