"""The simulated recommendation world: config, batch core, oracles and gymnasium envs.

Importing this package is light (the gymnasium registration only); the world, its config
and the oracles load on first use, so ``offrec --help`` does not import scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gymnasium as _gym

if TYPE_CHECKING:
    from offrec.sim.config import WorldConfig
    from offrec.sim.oracles import BestItemOracle, LookaheadOracle, MyopicOracle
    from offrec.sim.world import SessionBatch, StepResult, Trajectories, ValueEstimate, World

_LAZY = {
    "WorldConfig": "offrec.sim.config",
    "BestItemOracle": "offrec.sim.oracles",
    "LookaheadOracle": "offrec.sim.oracles",
    "MyopicOracle": "offrec.sim.oracles",
    "SessionBatch": "offrec.sim.world",
    "StepResult": "offrec.sim.world",
    "Trajectories": "offrec.sim.world",
    "ValueEstimate": "offrec.sim.world",
    "World": "offrec.sim.world",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'offrec.sim' has no attribute {name!r}")


ENV_ID = "offrec/Recommender-v0"


def register_envs() -> None:
    """Register ``offrec/Recommender-v0`` with gymnasium (idempotent).

    Declared as the ``gymnasium.envs`` entry point in pyproject.toml. gymnasium 1.0 no
    longer loads plugin entry points by itself; without importing offrec,
    ``gymnasium.make("offrec.sim:offrec/Recommender-v0")`` imports this module first.
    """
    if ENV_ID not in _gym.registry:
        _gym.register(
            id=ENV_ID,
            entry_point="offrec.sim.env:RecommenderEnv",
            vector_entry_point="offrec.sim.env:RecommenderVectorEnv",
        )


register_envs()

__all__ = [
    "ENV_ID",
    "BestItemOracle",
    "LookaheadOracle",
    "MyopicOracle",
    "SessionBatch",
    "StepResult",
    "Trajectories",
    "ValueEstimate",
    "World",
    "WorldConfig",
    "register_envs",
]
