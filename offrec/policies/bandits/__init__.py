"""Bandit learners that learn online (``partial_fit`` on batches) and act as policies.

- :mod:`~offrec.policies.bandits.base`: :class:`BanditLearner` (validation, heads,
  exploit copies, state for persistence), :func:`check_feedback`, :func:`check_context`;
- :mod:`~offrec.policies.bandits.context_free`: :class:`EpsilonGreedy`, :class:`UCB1`,
  :class:`BernoulliTS`;
- :mod:`~offrec.policies.bandits.linear`: :class:`LinUCB`, :class:`LinTS` (per-arm ridge);
- :mod:`~offrec.policies.bandits.logistic`: :class:`LogisticEpsilonGreedy` (per-arm
  Bayesian logistic regression, Newton solver in :mod:`offrec.reward.newton`).

The names pipelines, the CLI and saved models use for them are in
:data:`offrec.policies.registry.LEARNERS`.
"""

from offrec.policies.bandits.base import BanditLearner, check_context, check_feedback
from offrec.policies.bandits.context_free import UCB1, UNTRIED_SCORE, BernoulliTS, EpsilonGreedy
from offrec.policies.bandits.linear import LinTS, LinUCB
from offrec.policies.bandits.logistic import LogisticEpsilonGreedy

__all__ = [
    "UCB1",
    "UNTRIED_SCORE",
    "BanditLearner",
    "BernoulliTS",
    "EpsilonGreedy",
    "LinTS",
    "LinUCB",
    "LogisticEpsilonGreedy",
    "check_context",
    "check_feedback",
]
