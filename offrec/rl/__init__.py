"""Offline RL on logged sessions with d3rlpy: logs -> transitions, training, Q-policies.

- :mod:`offrec.rl.dataset`: ``LoggedData`` -> :class:`Transitions` / d3rlpy ``ReplayBuffer``
  (every logged decision and reward kept; terminated vs truncated recorded);
- :mod:`offrec.rl.sampler`: :class:`VectorizedReplayBuffer`, a d3rlpy replay buffer that
  samples a mini-batch with a few numpy gathers;
- :mod:`offrec.rl.q_learning`: :func:`train_rl` (DQN, Double DQN, CQL, BCQ), training
  curves, the memory guard; :mod:`offrec.rl.config`: :class:`RLConfig`;
- :mod:`offrec.rl.policy`: :class:`QPolicy` (Q-network + head = an offrec ``Policy``),
  save / :func:`load_q_policy`;
- :mod:`offrec.rl.online_baseline` (optional, needs ``offrec[sb3]``; not imported here):
  stable-baselines3 PPO / DQN trained online in the world, with learning curves.

- :mod:`offrec.rl.algos`: the algorithm names (``ALGOS``), importable without d3rlpy.

d3rlpy (and torch) are imported only in ``offrec.rl``, and only when used: the names
below load their module on first access, so ``import offrec.rl.algos`` stays cheap.
d3rlpy imports the legacy ``gym`` package, which prints a deprecation notice to stderr;
offrec imports it with that notice silenced (:mod:`offrec.rl._d3rlpy`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offrec.rl.config import (
        BCQConfig,
        CQLConfig,
        DoubleDQNConfig,
        DQNConfig,
        RLConfig,
        RuntimeConfig,
    )
    from offrec.rl.dataset import Transitions, to_replay_buffer, to_transitions
    from offrec.rl.policy import QPolicy, load_q_policy
    from offrec.rl.q_learning import TrainResult, train_rl
    from offrec.rl.sampler import VectorizedReplayBuffer

_WHERE = {
    "BCQConfig": "config",
    "CQLConfig": "config",
    "DQNConfig": "config",
    "DoubleDQNConfig": "config",
    "RuntimeConfig": "config",
    "QPolicy": "policy",
    "RLConfig": "config",
    "TrainResult": "q_learning",
    "Transitions": "dataset",
    "VectorizedReplayBuffer": "sampler",
    "load_q_policy": "policy",
    "to_replay_buffer": "dataset",
    "to_transitions": "dataset",
    "train_rl": "q_learning",
}
__all__ = [
    "BCQConfig",
    "CQLConfig",
    "DQNConfig",
    "DoubleDQNConfig",
    "RuntimeConfig",
    "QPolicy",
    "RLConfig",
    "TrainResult",
    "Transitions",
    "VectorizedReplayBuffer",
    "load_q_policy",
    "to_replay_buffer",
    "to_transitions",
    "train_rl",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'offrec.rl' has no attribute {name!r}")
    from offrec.rl._d3rlpy import d3rlpy_module

    d3rlpy_module()
    return getattr(importlib.import_module(f"offrec.rl.{_WHERE[name]}"), name)
