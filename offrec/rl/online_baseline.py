"""Online RL reference: stable-baselines3 PPO / DQN trained by interacting with the world.

"What could RL do with unlimited interaction?" The agents learn in the gymnasium env
(:class:`offrec.sim.env.RecommenderEnv`, the same dynamics core as the world), with a
learning curve of the true clicks per session measured every ``eval_every`` timesteps.
Optional dependency: ``pip install 'offrec[sb3]'``; the rest of offrec works without it.

>>> result = train_online(World(WorldConfig(horizon=10), seed=0), OnlineConfig("ppo"))  # doctest: +SKIP
>>> result.policy.action_dist(obs)                                                      # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from offrec.core.codec import ConfigCodec
from offrec.core.errors import InputError
from offrec.core.policy import BasePolicy, Head
from offrec.core.validation import check_scalar
from offrec.rl.config import threads

__all__ = ["OnlineConfig", "OnlineResult", "SB3Policy", "require_sb3", "train_online"]

ONLINE_ALGOS = ("ppo", "dqn")


def require_sb3() -> Any:
    """Import stable-baselines3, or raise ``ImportError`` saying how to install it."""
    try:
        import stable_baselines3
    except ImportError:
        raise ImportError(
            "the online RL baseline needs stable-baselines3, an optional dependency: "
            "pip install 'offrec[sb3]'"
        ) from None
    return stable_baselines3


@dataclass(frozen=True)
class OnlineConfig(ConfigCodec):
    """Hyper-parameters of an online run (JSON round-trip; unknown keys rejected).

    ``algo`` is ``"ppo"`` or ``"dqn"``; ``total_timesteps`` counts environment steps
    (decisions); ``n_envs`` parallel envs feed PPO's rollouts (DQN uses one);
    ``eval_every`` timesteps between online evaluations (``eval_sessions`` sessions,
    seed ``eval_seed``); ``n_threads`` torch threads (1: see :mod:`offrec.rl.train`).
    """

    CODEC_NAME = "online config"

    algo: str = "ppo"
    total_timesteps: int = 200_000
    learning_rate: float = 3e-4
    gamma: float = 0.9
    hidden_units: tuple[int, ...] = (128, 128)
    n_envs: int = 8
    seed: int = 0
    n_threads: int = 1
    eval_every: int = 20_000
    eval_sessions: int = 2_000
    eval_seed: int = 2024

    def __post_init__(self) -> None:
        if isinstance(self.hidden_units, list):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        if self.algo not in ONLINE_ALGOS:
            raise InputError(
                f"OnlineConfig.algo must be one of {list(ONLINE_ALGOS)}; got {self.algo!r}"
            )
        for name, low in {
            "total_timesteps": 1, "n_envs": 1, "seed": 0, "n_threads": 1, "eval_every": 1,
            "eval_sessions": 2, "eval_seed": 0,
        }.items():  # fmt: skip
            check_scalar(getattr(self, name), f"OnlineConfig.{name}", int, min=low)
        check_scalar(
            self.learning_rate, "OnlineConfig.learning_rate", float, min=0.0, min_inclusive=False
        )
        check_scalar(self.gamma, "OnlineConfig.gamma", float, min=0.0, max=1.0)
        if not isinstance(self.hidden_units, tuple) or not self.hidden_units:
            raise InputError(
                f"OnlineConfig.hidden_units must be a non-empty list of ints; got {self.hidden_units!r}"
            )
        for i, h in enumerate(self.hidden_units):
            check_scalar(h, f"OnlineConfig.hidden_units[{i}]", int, min=1)


class SB3Policy(BasePolicy):
    """A trained SB3 model as an offrec policy, one forward pass per batch.

    PPO: its own action probabilities (``head=None``) or a head over its logits. DQN: a
    head over its Q-values (default greedy).
    """

    def __init__(self, model: Any, n_actions: int, head: Head | None = None) -> None:
        self.model = model
        self.n_actions = n_actions
        self.is_dqn = hasattr(model.policy, "q_net")
        self.head = head if head is not None or not self.is_dqn else Head()

    def scores(self, obs: np.ndarray) -> np.ndarray:
        """(n, n_actions): Q-values (DQN) or action logits (PPO)."""
        policy = self.model.policy
        policy.set_training_mode(False)
        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(obs, np.float32), device=policy.device)
            out = policy.q_net(x) if self.is_dqn else policy.get_distribution(x).distribution.logits
        return out.cpu().numpy().astype(np.float64)

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        s = self.scores(obs)
        if self.head is None:  # PPO's own stochastic policy
            return Head("softmax").apply(s)
        return self.head.apply(s)

    def spec(self) -> dict[str, Any]:
        algo = "dqn" if self.is_dqn else "ppo"
        return {
            "type": "sb3",
            "algo": algo,
            "head": None if self.head is None else self.head.to_dict(),
        }


@dataclass
class OnlineResult:
    """Policy, config, learning curve (timesteps, true value, stderr) and wall time
    (``seconds``, evaluations included)."""

    policy: SB3Policy
    config: OnlineConfig
    timesteps: np.ndarray
    value: np.ndarray
    stderr: np.ndarray
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "timesteps": self.timesteps.tolist(),
            "value": self.value.tolist(),
            "stderr": self.stderr.tolist(),
            "seconds": self.seconds,
        }


def train_online(
    world: Any, config: OnlineConfig | None = None, progress: Callable[[int], None] | None = None
) -> OnlineResult:
    """Train ``config.algo`` online in ``world``'s env; evaluate it every ``eval_every`` steps.

    ``world`` must have an int seed (the env rebuilds the same world from its config and
    seed). ``progress`` is called with the number of timesteps done at each evaluation.
    """
    sb3 = require_sb3()
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from offrec.sim.env import RecommenderEnv

    config = config or OnlineConfig()
    if not isinstance(world.seed, int):
        raise InputError("world must be built with an int seed so the env can rebuild it")
    n_envs = config.n_envs if config.algo == "ppo" else 1
    env = make_vec_env(
        RecommenderEnv, n_envs=n_envs, seed=config.seed,
        env_kwargs={"config": world.config, "world_seed": world.seed},
    )  # fmt: skip
    arch = list(config.hidden_units)
    common: dict[str, Any] = {
        "learning_rate": config.learning_rate, "gamma": config.gamma, "seed": config.seed,
        "verbose": 0, "device": "cpu",
    }  # fmt: skip
    steps: list[int] = []
    values: list[float] = []
    ses: list[float] = []
    with threads(config.n_threads):
        if config.algo == "ppo":
            model = sb3.PPO(
                "MlpPolicy", env, n_steps=max(8, 2048 // n_envs), batch_size=256,
                policy_kwargs={"net_arch": arch}, **common,
            )  # fmt: skip
        else:
            model = sb3.DQN(
                "MlpPolicy", env, buffer_size=100_000, learning_starts=1_000, batch_size=256,
                target_update_interval=1_000, exploration_fraction=0.3,
                policy_kwargs={"net_arch": arch}, **common,
            )  # fmt: skip
        policy = SB3Policy(model, world.n_actions)
        every = config.eval_every
        next_eval = [every]

        def evaluate(t: int) -> None:
            est = world.true_value(policy, n_sessions=config.eval_sessions, seed=config.eval_seed)
            steps.append(t)
            values.append(est.value)
            ses.append(est.stderr)
            if progress is not None:
                progress(t)

        class _Eval(BaseCallback):
            def _on_step(self) -> bool:
                if self.num_timesteps >= next_eval[0]:
                    evaluate(self.num_timesteps)
                    next_eval[0] += every
                return True

        tic = time.perf_counter()
        model.learn(total_timesteps=config.total_timesteps, callback=_Eval())
        seconds = time.perf_counter() - tic
        if not steps or steps[-1] != model.num_timesteps:
            evaluate(model.num_timesteps)
    env.close()
    return OnlineResult(
        policy, config, np.asarray(steps), np.asarray(values), np.asarray(ses), seconds
    )
