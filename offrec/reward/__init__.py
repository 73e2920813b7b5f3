"""Reward models :math:`\\hat q(x, a)` (scikit-learn, cross-fitted), shared by OPE and the learners."""

from offrec.reward.bilinear import BILINEAR
from offrec.reward.model import KINDS, FittedRewardModel, RewardModel

#: every reward model a bandit evaluation can be given by name: the dense kinds of
#: :class:`RewardModel` and the large-catalog (context, item) model
#: :class:`~offrec.reward.bilinear.BilinearLogistic` (built from the log's item table)
ALL_KINDS: tuple[str, ...] = (*KINDS, BILINEAR)

__all__ = ["ALL_KINDS", "KINDS", "FittedRewardModel", "RewardModel"]
