"""The simulated recommendation world: config, batch core, oracles and gymnasium envs."""

import gymnasium as _gym

from offrec.sim.config import WorldConfig
from offrec.sim.oracles import BestItemOracle, LookaheadOracle, MyopicOracle
from offrec.sim.world import SessionBatch, StepResult, Trajectories, ValueEstimate, World

ENV_ID = "offrec/Recommender-v0"
if ENV_ID not in _gym.registry:
    _gym.register(
        id=ENV_ID,
        entry_point="offrec.sim.env:RecommenderEnv",
        vector_entry_point="offrec.sim.env:RecommenderVectorEnv",
    )

__all__ = [
    "ENV_ID", "BestItemOracle", "LookaheadOracle", "MyopicOracle", "SessionBatch",
    "StepResult", "Trajectories", "ValueEstimate", "World", "WorldConfig",
]  # fmt: skip
