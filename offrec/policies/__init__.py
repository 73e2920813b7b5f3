"""Policies: the protocol, heads, logging policies and learners."""

from offrec.core.policy import (
    BasePolicy,
    Head,
    Policy,
    ScorePolicy,
    UniformPolicy,
    sample_from_dist,
)
from offrec.policies.bandits import (
    UCB1,
    BanditLearner,
    BernoulliTS,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    LogisticEpsilonGreedy,
)
from offrec.policies.logged import fit_logged
from offrec.policies.offline import IPWLearner, RewardModelGreedy
from offrec.policies.online import LearningCurve, run_online
from offrec.policies.persist import load_policy, save_policy

__all__ = ["BasePolicy", "Head", "Policy", "ScorePolicy", "UniformPolicy", "sample_from_dist"]
__all__ += [
    "UCB1",
    "BanditLearner",
    "BernoulliTS",
    "EpsilonGreedy",
    "IPWLearner",
    "LearningCurve",
    "LinTS",
    "LinUCB",
    "LogisticEpsilonGreedy",
    "RewardModelGreedy",
    "fit_logged",
    "load_policy",
    "run_online",
    "save_policy",
]
