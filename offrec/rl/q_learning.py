"""Train d3rlpy DQN / DoubleDQN / DiscreteCQL / DiscreteBCQ on a log, with a training curve.

Not run as a doctest: it needs a log on disk and trains for minutes
(``tests/rl/test_train.py`` trains on a two-step analytic MDP instead).

>>> from offrec.rl import RLConfig, train_rl
>>> result = train_rl(read_logs("logs/softmax"), RLConfig(algo="cql"), world=world)  # doctest: +SKIP
>>> result.policy.action_dist(obs)                                                    # doctest: +SKIP
>>> result.save("models/cql")                                                         # doctest: +SKIP

The loop takes one gradient step at a time (:func:`gradient_step`): on tensor batches
from :class:`~offrec.rl.sampler.VectorizedReplayBuffer` (``sampler="vectorized"``), the
step ``algo.update`` takes after its numpy-to-torch conversion (``algo.impl.update``,
then the step counter), or ``algo.update(batch)`` itself on batches from d3rlpy's own
``ReplayBuffer`` (``sampler="default"``). It does not go through
``algo.fit``, which writes ``d3rlpy_logs/`` unless told otherwise and prints its
dataset info and hyper-parameters through structlog: here nothing is written and
nothing printed. Progress is reported through the optional ``progress`` callback.

Randomness: ``d3rlpy.seed(config.seed)`` (network initialisation, and the default
sampler, which draws from numpy's global generator) and the vectorized sampler's own
generator seeded from ``config.seed``: same data + same config -> same weights. The
global ``random`` / ``numpy.random`` / ``torch`` states are saved before and restored
after training (:func:`offrec.rl.config.seeded`): the caller's global state is unchanged.

Threads: torch runs the updates with ``config.n_threads`` intra-op threads (restored
afterwards); default 1, chosen by measurement (``benchmarks/bench_rl.py --threads``, DQN
and CQL with the default network, batch 256, on this 2-core machine while other jobs ran,
load ~3.5): 1 thread 7.1 ms (DQN) / 9.1 ms (CQL) median per step, p99 17-23 ms; 2 threads
224 ms / 360 ms median (the two OpenMP threads wait for each other whenever another
process holds one core). In lighter load 2 threads ranged from slightly faster to 10x
slower than 1 from batch to batch; 1 thread stayed steady.

Default hyper-parameters (tuned on the session world with a 200k-decision softmax log,
``benchmarks/rl_study.py``): the softmax logger covers every item and its most likely
action is a poor policy (it keeps showing the same item, which the repeat penalty
punishes), so strong conservatism hurts: true clicks per session of CQL after 10k steps
were 0.66 / 1.00 / 1.20 / 1.28 / 1.32 / 1.31 for ``alpha`` = 2 / 0.5 / 0.2 / 0.1 / 0.05 /
0.02 (logger 0.91). ``gamma`` 0.8-0.95, ``learning_rate`` 1e-4 or 3e-4, (128, 128) or
(256, 256) units and 1 or 2 critics all gave 1.30-1.41; values peak around 5k-7.5k steps
and then drift by ~0.05 as the Q-values' overestimation grows, hence 10k steps.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.atomic import atomic_dir
from offrec.core.errors import InputError, InputTypeError
from offrec.core.policy import Head
from offrec.logs.data import LoggedData
from offrec.rl.config import (
    QLearningConfig,
    RLConfig,
    RuntimeConfig,
    build_algo,
    deterministic,
    matmul_precision,
    seeded,
    threads,
)
from offrec.rl.dataset import Transitions, to_replay_buffer, to_transitions
from offrec.rl.policy import QPolicy
from offrec.rl.sampler import VectorizedReplayBuffer

__all__ = ["TrainResult", "TrainingCurve", "check_network_size", "gradient_step", "train_rl"]

log = logging.getLogger(__name__)


@dataclass
class TrainingCurve:
    """What happened during training, as arrays (``k`` loss points, ``m`` evaluations).

    Attributes:
        steps: (k,) step at the end of each chunk of ``log_every`` steps.
        losses: name -> (k,) mean of each loss d3rlpy reports over the chunk
            (``loss``; CQL adds ``td_loss`` and ``conservative_loss``; BCQ ``td_loss``
            and ``imitator_loss``).
        q_start: (k,) mean greedy Q-value, ``max_a Q(s0, a)``, over the logged first
            observations of (up to 1024) sessions: the model's own value estimate.
        seconds: (k,) wall time since the start of training.
        eval_steps, eval_value, eval_stderr: (m,) true online value (clicks per
            session) of the greedy policy in the world, with its Monte-Carlo stderr.
    """

    steps: np.ndarray
    losses: dict[str, np.ndarray]
    q_start: np.ndarray
    seconds: np.ndarray
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eval_value: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eval_stderr: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps.tolist(),
            "losses": {k: v.tolist() for k, v in self.losses.items()},
            "q_start": self.q_start.tolist(),
            "seconds": self.seconds.tolist(),
            "eval_steps": self.eval_steps.tolist(),
            "eval_value": self.eval_value.tolist(),
            "eval_stderr": self.eval_stderr.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingCurve:
        return cls(
            steps=np.asarray(d["steps"], np.int64),
            losses={k: np.asarray(v, np.float64) for k, v in d["losses"].items()},
            q_start=np.asarray(d["q_start"], np.float64),
            seconds=np.asarray(d["seconds"], np.float64),
            eval_steps=np.asarray(d["eval_steps"], np.int64),
            eval_value=np.asarray(d["eval_value"], np.float64),
            eval_stderr=np.asarray(d["eval_stderr"], np.float64),
        )


@dataclass
class TrainResult:
    """A trained policy, the config that made it, and its training curve.

    Attributes:
        policy: greedy :class:`~offrec.rl.policy.QPolicy` (``policy.with_head(...)`` for
            epsilon-greedy / softmax).
        config: the :class:`RLConfig`.
        curve: the :class:`TrainingCurve`.
        seconds: wall time of the gradient steps (evaluations excluded).
        data: counts of the converted log (:meth:`Transitions.summary`).
    """

    policy: QPolicy
    config: RLConfig
    curve: TrainingCurve
    seconds: float
    data: dict[str, Any]

    @property
    def steps_per_second(self) -> float:
        return self.config.n_steps / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: config, curve, timing, data counts."""
        return {
            "config": self.config.to_dict(),
            "curve": self.curve.to_dict(),
            "seconds": self.seconds,
            "steps_per_second": self.steps_per_second,
            "data": self.data,
        }

    def save(
        self,
        folder: str | Path,
        *,
        overwrite: bool = False,
        plot: Callable[[TrainResult, Path], Any] | None = None,
    ) -> Path:
        """Write the model (see :func:`~offrec.rl.policy.load_q_policy`) and ``training.json``
        into ``folder``, atomically; with ``plot`` (e.g.
        :func:`offrec.report.learning_curves.plot_training_curve`) also ``training_curve.png``,
        drawn by ``plot(self, path)`` (plotting lives in :mod:`offrec.report`)."""
        self.policy._check_saveable()
        folder = Path(folder)
        with atomic_dir(folder, overwrite=overwrite) as tmp:
            self.policy.write_to(tmp)
            (tmp / "training.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
            if plot is not None:
                plot(self, tmp / "training_curve.png")
        return folder


def gradient_step(algo: Any, batch: Any) -> dict[str, float]:
    """One gradient step of the d3rlpy ``algo`` on ``batch``; returns its losses.

    ``batch`` is d3rlpy's numpy ``TransitionMiniBatch`` (then this is ``algo.update``),
    or a ``TorchMiniBatch`` from
    :meth:`~offrec.rl.sampler.VectorizedReplayBuffer.sample_torch_batch`: then the step
    is what ``algo.update`` does after converting, ``algo.impl.update(batch,
    algo.grad_step)`` and the step counter moved on (``algo.set_grad_step``), without
    d3rlpy's per-step numpy-to-torch conversion (``TorchMiniBatch.from_batch``): 0.02-0.04
    ms, about 2% of a DQN or CQL step in ``benchmarks/bench_rl.py`` (median step, three
    paired runs). Same tensors, same update, bit for bit (tested). A torch batch needs an
    algorithm without observation / action / reward scaler and returns-to-go, as
    ``train_rl`` builds them.
    """
    from d3rlpy.torch_utility import TorchMiniBatch

    if not isinstance(batch, TorchMiniBatch):
        return dict(algo.update(batch))
    cfg = algo.config
    if algo.need_returns_to_go or any(
        getattr(cfg, name) is not None
        for name in ("observation_scaler", "action_scaler", "reward_scaler")
    ):
        raise InputError(
            "a TorchMiniBatch skips d3rlpy's scalers and returns-to-go; this algorithm "
            "uses them: pass the numpy batch (sample_transition_batch) instead"
        )
    losses = algo.impl.update(batch, algo.grad_step)
    algo.set_grad_step(algo.grad_step + 1)
    return dict(losses)


def check_network_size(
    cfg: RLConfig, obs_dim: int, n_actions: int, limit: int | None = None
) -> None:
    """Raise ``InputError`` before d3rlpy allocates a Q-network that cannot fit.

    The MLP ``obs_dim -> hidden_units... -> n_actions`` has
    :math:`\\sum_i (w_i w_{i+1} + w_{i+1})` parameters, held as float32 four times per
    critic (weights, target copy, two Adam moments), plus one batch of activations
    (``batch_size * sum(w_i)`` floats). ``limit`` defaults to
    :data:`offrec.sim.limits.MEMORY_SHARE` of the physical memory. :func:`train_rl` calls
    it first, so every caller of the RL trainer gets the guard.
    """
    from offrec.sim.limits import check_memory

    widths = [int(obs_dim), *map(int, cfg.hidden_units), int(n_actions)]
    weights = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    need = 4 * (4 * weights * int(cfg.n_critics) + int(cfg.batch_size) * sum(widths))
    check_memory(
        need,
        f"hidden_units={list(cfg.hidden_units)} is too large: the Q-network",
        "use smaller hidden_units",
        limit,
    )


def train_rl(
    data: LoggedData | Transitions,
    config: RLConfig | QLearningConfig | None = None,
    world: Any = None,
    progress: Callable[[int], None] | None = None,
    *,
    runtime: RuntimeConfig | None = None,
) -> TrainResult:
    """Train ``config.algo`` offline on ``data``; return the greedy policy and its curve.

    Args:
        data: the log (or its :class:`~offrec.rl.dataset.Transitions`).
        config: hyper-parameters: a per-algorithm config (:class:`~offrec.rl.config.DQNConfig`,
            :class:`~offrec.rl.config.CQLConfig`, ...) with the ``runtime`` knobs
            (:class:`~offrec.rl.config.RuntimeConfig`), or the flat :class:`RLConfig`
            (default ``RLConfig()``, discrete CQL).
        world: optional :class:`~offrec.sim.World` of the log; then the greedy policy's
            true clicks per session are measured every ``config.eval_every`` steps and at
            the end (``world.true_value(policy, n_sessions=config.eval_sessions,
            seed=config.eval_seed)``). Its items and observation width must match ``data``.
        progress: called with the number of steps done (every 100 steps and at the end).
    """
    config = config or RLConfig()
    if isinstance(config, QLearningConfig):
        config = config.to_rl_config(runtime)
    elif runtime is not None:
        raise InputError("runtime goes with a per-algorithm config (DQNConfig, CQLConfig, ...)")
    if not isinstance(config, RLConfig):
        raise InputTypeError(
            f"config must be an RLConfig or a per-algorithm config (DQNConfig, CQLConfig, ...); "
            f"got {type(config).__name__}"
        )
    tr = data if isinstance(data, Transitions) else to_transitions(data)
    if world is not None and (
        world.n_actions != tr.n_actions or world.context_dim != tr.observation_dim
    ):
        raise InputError(
            f"world has {world.n_actions} items and observations of width {world.context_dim}; "
            f"the log has {tr.n_actions} and {tr.observation_dim}"
        )
    check_network_size(config, tr.observation_dim, tr.n_actions)  # before d3rlpy allocates
    probe = tr.observations[tr.episode_starts[:-1][:1024]]
    with threads(config.n_threads), seeded(config.seed), deterministic():
        algo = build_algo(config)
        algo.create_impl((tr.observation_dim,), tr.n_actions)
        sample: Callable[[int], Any]
        if config.sampler == "vectorized":  # torch batches, no per-step conversion
            vec = VectorizedReplayBuffer(tr, seed=np.random.SeedSequence(config.seed))
            sample = vec.sample_torch_batch
        else:
            sample = to_replay_buffer(tr).sample_transition_batch
        policy = QPolicy(algo, tr.n_actions, Head("greedy"), config=config)
        sums: dict[str, float] = {}
        rows: dict[str, list[float]] = {}
        steps: list[int] = []
        ev_steps: list[int] = []
        q_start: list[float] = []
        seconds: list[float] = []
        ev_value: list[float] = []
        ev_se: list[float] = []
        train_time = 0.0
        tic = time.perf_counter()
        for step in range(1, config.n_steps + 1):
            batch = sample(config.batch_size)
            with matmul_precision(config.matmul_precision):  # this update only
                losses = gradient_step(algo, batch)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            if progress is not None and (step % 100 == 0 or step == config.n_steps):
                progress(step)
            chunk_end = step % config.log_every == 0 or step == config.n_steps
            eval_now = world is not None and (
                step == config.n_steps or (config.eval_every and step % config.eval_every == 0)
            )
            if not (chunk_end or eval_now):
                continue
            train_time += time.perf_counter() - tic
            if chunk_end:
                size = step - (steps[-1] if steps else 0)
                for name, total in sums.items():
                    rows.setdefault(name, []).append(total / size)
                sums = {}
                steps.append(step)
                seconds.append(train_time)
                q_start.append(float(policy.q_values(probe).max(axis=1).mean()))
            if eval_now:
                est = world.true_value(
                    policy, n_sessions=config.eval_sessions, seed=config.eval_seed
                )
                ev_steps.append(step)
                ev_value.append(est.value)
                ev_se.append(est.stderr)
                log.info("step %d: true value %.4f +- %.4f", step, est.value, est.stderr)
            tic = time.perf_counter()
    curve = TrainingCurve(
        steps=np.asarray(steps, np.int64),
        losses={k: np.asarray(v) for k, v in rows.items()},
        q_start=np.asarray(q_start),
        seconds=np.asarray(seconds),
        eval_steps=np.asarray(ev_steps, np.int64),
        eval_value=np.asarray(ev_value),
        eval_stderr=np.asarray(ev_se),
    )
    return TrainResult(policy, config, curve, train_time, tr.summary())
