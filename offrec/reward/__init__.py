"""Reward models :math:`\\hat q(x, a)` (scikit-learn, cross-fitted), shared by OPE and the learners."""

from offrec.reward.model import KINDS, FittedRewardModel, RewardModel

__all__ = ["KINDS", "FittedRewardModel", "RewardModel"]
