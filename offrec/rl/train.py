"""Deprecated name of :mod:`offrec.rl.q_learning` (offline Q-learning with d3rlpy: DQN,
Double DQN, discrete CQL and BCQ); kept so scripts that import it keep working."""

import warnings

from offrec.rl.q_learning import (
    TrainingCurve,
    TrainResult,
    check_network_size,
    gradient_step,
    train_rl,
)

__all__ = ["TrainResult", "TrainingCurve", "check_network_size", "gradient_step", "train_rl"]

warnings.warn(
    "offrec.rl.train is deprecated; import from offrec.rl.q_learning (or offrec.rl)",
    DeprecationWarning,
    stacklevel=2,
)
