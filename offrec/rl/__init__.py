"""Offline RL on logged sessions with d3rlpy: logs -> transitions, training, Q-policies.

- :mod:`offrec.rl.dataset`: ``LoggedData`` -> :class:`Transitions` / d3rlpy ``ReplayBuffer``
  (every logged decision and reward kept; terminated vs truncated recorded);
- :mod:`offrec.rl.sampler`: :class:`VectorizedReplayBuffer`, a d3rlpy replay buffer that
  samples a mini-batch with a few numpy gathers;
- :mod:`offrec.rl.train`: :class:`RLConfig`, :func:`train_rl`, training curves;
- :mod:`offrec.rl.policy`: :class:`QPolicy` (Q-network + head = an offrec ``Policy``),
  save / :func:`load_q_policy`;
- :mod:`offrec.rl.online_baseline` (optional, needs ``offrec[sb3]``; not imported here):
  stable-baselines3 PPO / DQN trained online in the world, with learning curves.

d3rlpy (and torch) are imported only here, in ``offrec.rl``. Importing d3rlpy imports the
legacy ``gym`` package, which prints a deprecation notice to stderr; offrec imports it
with that notice silenced (quiet by default), leaving d3rlpy itself untouched.
"""

from __future__ import annotations

import contextlib
import io
import sys


def _quiet_import_d3rlpy() -> None:
    if "d3rlpy" in sys.modules:
        return
    with contextlib.redirect_stderr(io.StringIO()):
        import d3rlpy  # noqa: F401


_quiet_import_d3rlpy()

from offrec.rl.config import RLConfig  # noqa: E402
from offrec.rl.dataset import Transitions, to_replay_buffer, to_transitions  # noqa: E402
from offrec.rl.policy import QPolicy, load_q_policy  # noqa: E402
from offrec.rl.sampler import VectorizedReplayBuffer  # noqa: E402
from offrec.rl.train import (  # noqa: E402
    TrainResult,
    plot_training_curve,
    train_rl,
)

__all__ = [
    "QPolicy",
    "RLConfig",
    "TrainResult",
    "Transitions",
    "VectorizedReplayBuffer",
    "load_q_policy",
    "plot_training_curve",
    "to_replay_buffer",
    "to_transitions",
    "train_rl",
]
