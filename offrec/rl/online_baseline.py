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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrec.core.codec import ConfigCodec
from offrec.core.errors import InputError, MissingInputError, OffrecError
from offrec.core.policy import BasePolicy, Head
from offrec.core.validation import check_scalar
from offrec.policies.online import LearningCurve, ValueCurve, run_online
from offrec.policies.registry import BANDIT_LEARNERS, make_learner
from offrec.rl.algos import learner_name
from offrec.rl.config import threads

__all__ = [
    "ONLINE_LEARNERS",
    "MissingDependencyError",
    "OnlineConfig",
    "OnlineResult",
    "OnlineRun",
    "SB3Policy",
    "compare_online",
    "learn_online",
    "load_sb3_policy",
    "online_references",
    "require_sb3",
    "train_online",
]

ONLINE_ALGOS = ("ppo", "dqn")
#: everything that learns by interacting with the world: bandit learners and SB3 agents
ONLINE_LEARNERS = (*BANDIT_LEARNERS, *ONLINE_ALGOS)


class MissingDependencyError(OffrecError, ImportError):
    """An optional dependency is not installed; the message says how to install it (the CLI
    prints it on one line, exit code 2)."""


def require_sb3() -> Any:
    """Import stable-baselines3, or raise :class:`MissingDependencyError` (an ``ImportError``)
    saying how to install it."""
    try:
        import stable_baselines3
    except ImportError:
        raise MissingDependencyError(
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
    seed ``eval_seed``); ``n_threads`` torch threads (1: see :mod:`offrec.rl.q_learning`).
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
            "total_timesteps": 1,
            "n_envs": 1,
            "seed": 0,
            "n_threads": 1,
            "eval_every": 1,
            "eval_sessions": 2,
            "eval_seed": 0,
        }.items():
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

    def save(self, path: str | Path) -> Path:
        """Write the SB3 model (its own zip format) to ``path``; load with :func:`load_sb3_policy`."""
        path = Path(path)
        self.model.save(path)
        return path if path.suffix == ".zip" else path.with_name(path.name + ".zip")

    def spec(self) -> dict[str, Any]:
        algo = "dqn" if self.is_dqn else "ppo"
        return {
            "type": "sb3",
            "algo": algo,
            "head": None if self.head is None else self.head.to_dict(),
        }


def load_sb3_policy(
    path: str | Path, n_actions: int | None = None, head: Head | None = None
) -> SB3Policy:
    """Load a model written by :meth:`SB3Policy.save` (PPO or DQN, told apart by the file).

    Raises ``MissingInputError`` for a missing file and ``InputError`` when its action
    count differs from ``n_actions`` (when given; else the file's count is used).
    """
    sb3 = require_sb3()
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no SB3 model at {path}")
    from stable_baselines3.common.save_util import load_from_zip_file

    data, _, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
    algo = sb3.DQN if "exploration_rate" in (data or {}) else sb3.PPO
    model = algo.load(path, device="cpu")
    n = int(model.action_space.n)
    if n_actions is not None and n != n_actions:
        raise InputError(f"SB3 model at {path} has {n} actions; expected n_actions={n_actions}")
    return SB3Policy(model, n, head)


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
        RecommenderEnv,
        n_envs=n_envs,
        seed=config.seed,
        env_kwargs={"config": world.config, "world_seed": world.seed},
    )
    arch = list(config.hidden_units)
    common: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "seed": config.seed,
        "verbose": 0,
        "device": "cpu",
    }
    steps: list[int] = []
    values: list[float] = []
    ses: list[float] = []
    with threads(config.n_threads):
        if config.algo == "ppo":
            model = sb3.PPO(
                "MlpPolicy",
                env,
                n_steps=max(8, 2048 // n_envs),
                batch_size=256,
                policy_kwargs={"net_arch": arch},
                **common,
            )
        else:
            model = sb3.DQN(
                "MlpPolicy",
                env,
                buffer_size=100_000,
                learning_starts=1_000,
                batch_size=256,
                target_update_interval=1_000,
                exploration_fraction=0.3,
                policy_kwargs={"net_arch": arch},
                **common,
            )
        # a logger with no outputs: SB3's default makes an "SB3-<date>" folder in the
        # system temp directory on every run (quiet library: nothing written unasked)
        from stable_baselines3.common.logger import Logger

        model.set_logger(Logger(folder=None, output_formats=[]))
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


# -- one entry point for every online learner ------------------------------------------------
@dataclass
class OnlineRun:
    """A learner trained online: the policy it would deploy, and how it got there.

    ``curve`` is the true value of the deployable policy against live interactions
    (the same for bandits and RL agents); ``bandit_curve`` (bandit learners only) is the
    in-run record of :func:`offrec.policies.online.run_online` (windowed CTR, regret).
    """

    learner: str
    policy: Any
    curve: ValueCurve
    bandit_curve: LearningCurve | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"learner": self.learner, "value_curve": self.curve.to_dict()}
        if self.bandit_curve is not None:
            out["bandit_curve"] = self.bandit_curve.to_dict()
        return out


def _checkpoints(n_steps: int, eval_every: int | None) -> int:
    every = eval_every if eval_every is not None else max(1, n_steps // 10)
    check_scalar(every, "eval_every", int, min=1)
    return every


def learn_online(
    world: Any,
    learner: str,
    n_steps: int,
    *,
    params: dict[str, Any] | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    eval_every: int | None = None,
    eval_sessions: int = 2_000,
    eval_seed: int = 2024,
    progress: Callable[[int], None] | None = None,
) -> OnlineRun:
    """Let ``learner`` interact with ``world`` for ``n_steps`` decisions; measure it as it learns.

    ``learner`` is a bandit learner name (:data:`offrec.policies.bandits.LEARNERS`,
    updated every ``batch_size`` decisions by :func:`~offrec.policies.online.run_online`)
    or ``"ppo"`` / ``"dqn"`` (stable-baselines3, :func:`train_online`; ``batch_size`` is
    not used, their own batching is in ``params``, the :class:`OnlineConfig` fields).
    Every ``eval_every`` decisions (default a tenth of ``n_steps``) the deployable policy
    is measured with :meth:`World.true_value` (``eval_sessions`` sessions, seed
    ``eval_seed``; exact in bandit mode): bandits' greedy :meth:`exploit` copy, DQN's
    greedy head, PPO's own stochastic policy.

    Raises:
        ValueError: an unknown ``learner`` (the message lists the valid ones) or bad sizes.
        MissingDependencyError: ``"ppo"`` / ``"dqn"`` without stable-baselines3.
    """
    learner = learner_name(learner)  # a deprecated name, e.g. "thompson": warns
    if learner not in ONLINE_LEARNERS:
        raise InputError(f"online learner must be one of {list(ONLINE_LEARNERS)}; got {learner!r}")
    check_scalar(n_steps, "n_steps", int, min=1)
    check_scalar(eval_sessions, "eval_sessions", int, min=2)
    every = _checkpoints(n_steps, eval_every)
    params = dict(params or {})
    metric = "CTR" if world.config.horizon == 1 else "clicks per session"
    if learner in ONLINE_ALGOS:
        require_sb3()
        cfg = OnlineConfig.from_dict(
            {
                "seed": seed,
                "eval_every": every,
                "eval_sessions": eval_sessions,
                "eval_seed": eval_seed,
                **params,
                "algo": learner,
                "total_timesteps": n_steps,
            }
        )
        res = train_online(world, cfg, progress)
        curve = ValueCurve(
            res.timesteps,
            res.value,
            res.stderr,
            metric,
            res.seconds,
            {"type": "sb3", **cfg.to_dict()},
        )
        return OnlineRun(learner, res.policy, curve)

    bandit = make_learner(learner, world.n_actions, world.context_dim, **params)
    steps: list[int] = []
    values: list[float] = []
    ses: list[float] = []
    next_eval = [every]

    def measure(done: int) -> None:
        if done < next_eval[0] and done < n_steps:
            return
        est = world.true_value(bandit.exploit(), n_sessions=eval_sessions, seed=eval_seed)
        steps.append(done)
        values.append(est.value)
        ses.append(est.stderr)
        next_eval[0] = (done // every + 1) * every
        if progress is not None:
            progress(done)

    tic = time.perf_counter()
    run = run_online(world, bandit, n_steps, batch_size, seed=seed, on_round=measure)
    seconds = time.perf_counter() - tic
    curve = ValueCurve(
        np.asarray(steps), np.asarray(values), np.asarray(ses), metric, seconds, bandit.spec()
    )
    return OnlineRun(learner, bandit.exploit(), curve, run)


def compare_online(
    world: Any,
    learners: list[str],
    n_steps: int,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str, int], None] | None = None,
    **kwargs: Any,
) -> dict[str, OnlineRun]:
    """:func:`learn_online` for each name in ``learners`` (same world, budget and seed).

    ``params`` maps a learner name to its parameters; ``kwargs`` go to every run
    (``batch_size``, ``seed``, ``eval_every``, ``eval_sessions``, ``eval_seed``).
    ``progress(name, decisions)`` is called at each measurement.
    """
    if not learners:
        raise InputError("learners must name at least one online learner; got none")
    dup = sorted({n for n in learners if learners.count(n) > 1})
    if dup:
        raise InputError(f"learners must be distinct; repeated: {dup}")
    params = params or {}
    stray = sorted(set(params) - set(learners))
    if stray:
        raise InputError(f"params given for {stray}, which are not among the learners {learners}")
    runs = {}
    for name in learners:
        tick = None if progress is None else (lambda t, n=name: progress(n, t))
        runs[name] = learn_online(
            world, name, n_steps, params=params.get(name), progress=tick, **kwargs
        )
    return runs


def online_references(world: Any, *, n_sessions: int = 5_000, seed: int = 2024) -> dict[str, float]:
    """Oracle values to draw beside online curves: the best single item (bandit mode) or the
    lookahead oracle (session mode), and the myopic oracle."""
    from offrec.sim import BestItemOracle, LookaheadOracle, MyopicOracle

    refs = {
        "myopic oracle": world.true_value(
            MyopicOracle(world), n_sessions=n_sessions, seed=seed
        ).value
    }
    if world.config.horizon == 1:
        refs["best single item"] = world.true_value(BestItemOracle(world)).value
    else:
        refs["lookahead oracle"] = world.true_value(
            LookaheadOracle(world), n_sessions=n_sessions, seed=seed
        ).value
    return refs
