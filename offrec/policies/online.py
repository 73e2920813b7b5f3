"""Online learning in the simulated world: learning curves and their plots.

:func:`run_online` runs a learner in the world's batch core. Each round::

    obs = world.observe(batch)
    actions, pscores = learner.sample(obs, rng)
    result = world.step(batch, actions, rng)
    learner.partial_fit(obs, actions, result.reward)

and records, per round, the clicks, the *expected* clicks (true click probability
``q`` of the shown items) and the myopic oracle's expected clicks (``max_i q`` in the
same state). Regret is expected-reward regret against the myopic oracle,
``sum_t (max_i q_t(i) - q_t(a_t))``: it has no click noise, so curves are smooth and
differences between learners show early. In session mode (``horizon > 1``) the
oracle is evaluated in the learner's own states (per-step, myopic regret).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offrec.core.errors import InputError, InputTypeError
from offrec.core.validation import SeedLike, as_seed_sequence, check_scalar

__all__ = ["LearningCurve", "ValueCurve", "run_online", "session_stats"]


@dataclass(eq=False)
class LearningCurve:
    """A learner's online run, one entry per round (shape ``(n_rounds,)``).

    Attributes:
        decisions: int64, cumulative number of decisions at the end of each round.
        clicks: float64, clicks in the round.
        expected_clicks: float64, sum of the true click probabilities of the shown items.
        oracle_clicks: float64, sum over the round's decisions of ``max_i q(i)`` (myopic oracle).
        window: number of decisions in the trailing window of the ``windowed_*`` curves.
        batch_size: decisions per round (the last round may be smaller).
        seed: the run's seed (None when a Generator was passed).
        learner: the learner's ``spec()`` (after the run).
        seconds: wall time of the run (learner + world).
        learner_seconds: the part of ``seconds`` spent in ``learner.sample`` and
            ``learner.partial_fit``.
    """

    decisions: np.ndarray
    clicks: np.ndarray
    expected_clicks: np.ndarray
    oracle_clicks: np.ndarray
    window: int
    batch_size: int
    seed: int | None = None
    learner: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    learner_seconds: float = 0.0

    # -- derived curves ---------------------------------------------------------------------
    def _windowed(self, values: np.ndarray) -> np.ndarray:
        """Mean per decision over the fewest last rounds holding >= ``window`` decisions."""
        cum_n = self.decisions.astype(np.float64)
        cum_v = np.cumsum(values)
        # k: last round ending at or before cum_n - window (the window starts after it)
        k = np.searchsorted(cum_n, cum_n - self.window, side="right") - 1
        prev_n = np.where(k >= 0, cum_n[np.maximum(k, 0)], 0.0)
        prev_v = np.where(k >= 0, cum_v[np.maximum(k, 0)], 0.0)
        return (cum_v - prev_v) / (cum_n - prev_n)

    @property
    def windowed_ctr(self) -> np.ndarray:
        """Clicks per decision over the trailing window (realized, noisy), (n_rounds,)."""
        return self._windowed(self.clicks)

    @property
    def windowed_expected_ctr(self) -> np.ndarray:
        """Expected clicks per decision over the trailing window, (n_rounds,)."""
        return self._windowed(self.expected_clicks)

    @property
    def windowed_oracle_ctr(self) -> np.ndarray:
        """The myopic oracle's expected CTR on the same decisions' states, (n_rounds,)."""
        return self._windowed(self.oracle_clicks)

    @property
    def cumulative_regret(self) -> np.ndarray:
        """Expected-reward regret against the myopic oracle, summed so far, (n_rounds,)."""
        return np.cumsum(self.oracle_clicks - self.expected_clicks)

    @property
    def n_decisions(self) -> int:
        return int(self.decisions[-1]) if self.decisions.size else 0

    @property
    def final_ctr(self) -> float:
        return float(self.windowed_ctr[-1])

    @property
    def final_expected_ctr(self) -> float:
        return float(self.windowed_expected_ctr[-1])

    @property
    def final_oracle_ctr(self) -> float:
        return float(self.windowed_oracle_ctr[-1])

    @property
    def decisions_per_second(self) -> float:
        """Decisions per second of the whole loop (learner and world)."""
        return self.n_decisions / self.seconds if self.seconds > 0 else float("nan")

    @property
    def learner_decisions_per_second(self) -> float:
        """Decisions per second of the learner alone (``sample`` + ``partial_fit``)."""
        return self.n_decisions / self.learner_seconds if self.learner_seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the raw per-round arrays as lists, plus summary figures)."""
        return {
            "decisions": self.decisions.tolist(),
            "clicks": self.clicks.tolist(),
            "expected_clicks": self.expected_clicks.tolist(),
            "oracle_clicks": self.oracle_clicks.tolist(),
            "window": self.window,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "learner": self.learner,
            "seconds": self.seconds,
            "learner_seconds": self.learner_seconds,
            "summary": {
                "n_decisions": self.n_decisions,
                "final_ctr": self.final_ctr,
                "final_expected_ctr": self.final_expected_ctr,
                "final_oracle_ctr": self.final_oracle_ctr,
                "cumulative_regret": float(self.cumulative_regret[-1]),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearningCurve:
        """Inverse of :meth:`to_dict` (the summary is recomputed, not read)."""
        return cls(
            decisions=np.asarray(data["decisions"], np.int64),
            clicks=np.asarray(data["clicks"], np.float64),
            expected_clicks=np.asarray(data["expected_clicks"], np.float64),
            oracle_clicks=np.asarray(data["oracle_clicks"], np.float64),
            window=int(data["window"]),
            batch_size=int(data["batch_size"]),
            seed=data.get("seed"),
            learner=dict(data.get("learner", {})),
            seconds=float(data.get("seconds", 0.0)),
            learner_seconds=float(data.get("learner_seconds", 0.0)),
        )


def run_online(
    world: Any,
    learner: Any,
    n_steps: int,
    batch_size: int = 1000,
    seed: SeedLike = 0,
    *,
    window: int | None = None,
    on_round: Callable[[int], None] | None = None,
) -> LearningCurve:
    """Run ``learner`` online in ``world`` for ``n_steps`` decisions, ``batch_size`` per round.

    Args:
        world: an :class:`offrec.sim.World` (bandit or session mode).
        learner: anything with ``n_actions == world.n_actions``, ``sample(obs, rng)`` and
            ``partial_fit(context, action, reward)``; it is updated in place.
        n_steps: total number of decisions (the last round is cut to fit).
        batch_size: decisions per round; the learner updates once per round. In session
            mode it is the number of concurrent sessions (finished ones are replaced).
        seed: seeds the users, clicks and the learner's sampling (two spawned streams).
        window: decisions in the trailing window of the ``windowed_*`` curves
            (default ``max(batch_size, n_steps // 20)``).
        on_round: called after each round's update with the number of decisions so far
            (e.g. to measure the learner's current policy; its time counts in ``seconds``).

    Returns:
        a :class:`LearningCurve`.
    """
    from offrec.sim.world import SessionBatch, World

    if not isinstance(world, World):
        raise InputTypeError(f"world must be an offrec.sim.World; got {type(world).__name__}")
    for attr in ("sample", "partial_fit"):
        if not callable(getattr(learner, attr, None)):
            raise InputTypeError(
                f"learner must have a {attr}() method; {type(learner).__name__} has not"
            )
    if getattr(learner, "n_actions", None) != world.n_actions:
        raise InputError(
            f"learner.n_actions must equal the world's n_items={world.n_actions}; "
            f"got {getattr(learner, 'n_actions', None)}"
        )
    check_scalar(n_steps, "n_steps", int, min=1)
    check_scalar(batch_size, "batch_size", int, min=1)
    if window is None:
        window = max(batch_size, n_steps // 20)
    check_scalar(window, "window", int, min=1)
    seed_int = int(seed) if isinstance(seed, int | np.integer) else None
    world_rng, policy_rng = (np.random.default_rng(s) for s in as_seed_sequence(seed).spawn(2))

    n_rounds = -(-n_steps // batch_size)
    decisions = np.zeros(n_rounds, np.int64)
    clicks, expected, oracle = (np.zeros(n_rounds) for _ in range(3))
    batch = world.new_sessions(min(batch_size, n_steps), world_rng)
    done = 0
    learner_time = 0.0
    start = time.perf_counter()
    for t in range(n_rounds):
        m = min(batch_size, n_steps - done)
        if len(batch) > m:
            batch = batch.take(np.arange(m))
        obs = world.observe(batch)
        best = world.click_probs(batch).max(axis=1)
        t0 = time.perf_counter()
        actions, _ = learner.sample(obs, policy_rng)
        t1 = time.perf_counter()
        res = world.step(batch, actions, world_rng)
        t2 = time.perf_counter()
        learner.partial_fit(obs, np.asarray(actions), res.reward)
        learner_time += (t1 - t0) + (time.perf_counter() - t2)
        done += m
        decisions[t], clicks[t] = done, res.reward.sum()
        expected[t], oracle[t] = res.click_prob.sum(), best.sum()
        if on_round is not None:
            on_round(done)
        keep = ~(res.terminated | res.truncated)
        need = min(batch_size, n_steps - done) - int(keep.sum())
        if keep.all() and need <= 0:
            continue
        batch = batch.take(keep)
        if need > 0:
            fresh = world.new_sessions(need, world_rng)
            batch = SessionBatch(
                *(np.concatenate([getattr(batch, f), getattr(fresh, f)]) for f in _BATCH_FIELDS)
            )
    seconds = time.perf_counter() - start
    spec = learner.spec() if callable(getattr(learner, "spec", None)) else {}
    return LearningCurve(
        decisions=decisions,
        clicks=clicks,
        expected_clicks=expected,
        oracle_clicks=oracle,
        window=window,
        batch_size=batch_size,
        seed=seed_int,
        learner=spec,
        seconds=seconds,
        learner_seconds=learner_time,
    )


_BATCH_FIELDS = ("user", "step", "fatigue", "recent", "last_click")


# -- the true value of a learner's policy against its interactions ---------------------------
@dataclass(eq=False)
class ValueCurve:
    """A learner's *deployable* policy, measured in the world as it learns (shape ``(k,)``).

    One point per measurement: after ``interactions[j]`` live decisions with users, the
    policy the learner would ship at that moment has true value ``value[j]`` (standard
    error ``stderr[j]``): the CTR in bandit mode (exact, ``stderr == 0``), expected clicks
    per session in session mode (Monte-Carlo over held-apart simulated sessions, which
    are measurement, not interaction). Bandit learners and RL agents share this type so
    they plot on one axis; :func:`offrec.report.learning_curves.plot_value_curves` draws them.

    Attributes:
        interactions: int64, decisions taken in the world when each value was measured.
        value, stderr: float64, the true value and its standard error.
        metric: ``"CTR"`` or ``"clicks per session"``.
        seconds: wall time of the whole run (training and measurements).
        learner: the learner's description (``spec()`` or its config).
    """

    interactions: np.ndarray
    value: np.ndarray
    stderr: np.ndarray
    metric: str
    seconds: float = 0.0
    learner: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.interactions = np.asarray(self.interactions, np.int64)
        self.value = np.asarray(self.value, np.float64)
        self.stderr = np.asarray(self.stderr, np.float64)
        shapes = {a.shape for a in (self.interactions, self.value, self.stderr)}
        if len(shapes) != 1 or self.interactions.ndim != 1:
            raise InputError(
                "ValueCurve.interactions, value and stderr must be 1-D of one length; got "
                f"shapes {self.interactions.shape}, {self.value.shape}, {self.stderr.shape}"
            )

    @property
    def final(self) -> tuple[float, float]:
        """``(value, stderr)`` at the last measurement."""
        return float(self.value[-1]), float(self.stderr[-1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "interactions": self.interactions.tolist(),
            "value": self.value.tolist(),
            "stderr": self.stderr.tolist(),
            "metric": self.metric,
            "seconds": self.seconds,
            "learner": self.learner,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValueCurve:
        return cls(
            data["interactions"],
            data["value"],
            data["stderr"],
            str(data["metric"]),
            float(data.get("seconds", 0.0)),
            dict(data.get("learner", {})),
        )


def session_stats(
    world: Any,
    policy: Any,
    *,
    n_sessions: int = 20_000,
    seed: SeedLike = 0,
    chunk_size: int = 10_000,
) -> dict[str, float]:
    """CTR, clicks per session and session length of ``policy`` in ``world``, with standard errors.

    Session mode: Monte-Carlo over ``n_sessions`` sessions, drawn exactly as
    :meth:`World.true_value` draws them (same ``seed``, same chunks), so
    ``clicks_per_session`` *is* ``true_value(policy).value``. Per session ``j``: expected
    clicks ``C_j = sum_t q_t`` and length ``L_j``; ``CTR = mean(C) / mean(L)`` with the
    delta-method standard error ``sd(C - CTR * L) / (mean(L) sqrt(n))``.
    Bandit mode: the exact CTR, one decision per session, standard errors 0.

    Returns keys ``ctr``, ``clicks_per_session``, ``session_length`` (each with a ``_se``
    twin), ``n_sessions`` and ``exact``.
    """
    from offrec.core.validation import as_generator

    if world.config.horizon == 1:
        v = world.true_value(policy).value
        return {
            "ctr": v,
            "ctr_se": 0.0,
            "clicks_per_session": v,
            "clicks_per_session_se": 0.0,
            "session_length": 1.0,
            "session_length_se": 0.0,
            "n_sessions": world.config.n_users,
            "exact": True,
        }
    check_scalar(n_sessions, "n_sessions", int, min=2)
    rng = as_generator(seed)
    clicks, lengths = [], []
    for start in range(0, n_sessions, chunk_size):
        n = min(chunk_size, n_sessions - start)
        traj = world.run_sessions(policy, n, rng)
        clicks.append(np.bincount(traj.session, weights=traj.click_prob, minlength=n))
        lengths.append(np.bincount(traj.session, minlength=n).astype(np.float64))
    c, length = np.concatenate(clicks), np.concatenate(lengths)
    n = c.size
    ctr = float(c.mean() / length.mean())
    return {
        "ctr": ctr,
        "ctr_se": float((c - ctr * length).std(ddof=1) / (length.mean() * np.sqrt(n))),
        "clicks_per_session": float(c.mean()),
        "clicks_per_session_se": float(c.std(ddof=1) / np.sqrt(n)),
        "session_length": float(length.mean()),
        "session_length_se": float(length.std(ddof=1) / np.sqrt(n)),
        "n_sessions": n,
        "exact": False,
    }
