"""Worlds offrec did not write: a gymnasium recommender environment as an offrec world.

:class:`GymWorld` wraps a factory of environments with a ``Discrete`` action space and a
``Box`` observation space (the gymnasium API, or ``gym`` >= 0.26, whose ``reset`` returns
``(obs, info)`` and ``step`` the 5-tuple ``(obs, reward, terminated, truncated, info)``):

- observation ``o_t`` (any shape) -> context ``x_t = float32(o_t).ravel()``, shape ``(d,)``;
- action index ``a`` in ``[0, n_actions)`` -> item ``start + a`` of ``Discrete(n, start)``;
- an episode is a session; it ends ``terminated`` (by the env) or ``truncated`` (by the
  env's time limit or by ``max_steps``), and the two are kept apart.

:func:`rollout` runs any offrec :class:`~offrec.core.policy.Policy` in the world and
returns the decisions as arrays (with the policy's propensities); :func:`mc_value` is the
Monte-Carlo truth of a policy,

.. math::

    \\hat V(\\pi) = \\frac{1}{N} \\sum_{e=1}^{N} G_e, \\quad
    G_e = \\sum_t \\gamma^t r_{e,t}, \\quad
    \\mathrm{SE} = \\mathrm{sd}(G) / \\sqrt{N},

and :func:`offrec.logs.env_collect.collect_env` writes a rollout as an offrec log.

Randomness: episode ``e`` draws its reset seed and its action uniforms from child ``e``
of ``SeedSequence(seed)``, so the same seed gives the same episodes whatever ``n_envs``
(the number of env copies stepped in lockstep so the policy sees a batch of contexts).
The env loop is Python (one ``env.step`` per decision is the env's API); the policy's
``action_dist`` and sampling are vectorized over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.validation import SeedLike, as_seed_sequence, check_scalar


@dataclass(frozen=True)
class MCValue:
    """A Monte-Carlo value: mean episode return ``value``, its standard error ``se``."""

    value: float
    se: float
    n_episodes: int


@dataclass(frozen=True)
class Rollout:
    """Decisions of a policy in a :class:`GymWorld`, session-contiguous and in step order.

    Shapes: ``context`` (n, d) float32; ``action``, ``session_id``, ``step`` (n,) int64;
    ``reward``, ``pscore`` (n,) float64; ``terminated``, ``truncated`` (n,) bool (True
    only on a session's last row; never both); ``logging_dist`` (n, n_actions) float64.
    """

    context: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    session_id: np.ndarray
    step: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    logging_dist: np.ndarray
    n_episodes: int

    def returns(self, gamma: float = 1.0) -> np.ndarray:
        """Per-episode return ``G_e = sum_t gamma^t r_{e,t}``, shape ``(n_episodes,)``."""
        w = self.reward * np.power(gamma, self.step.astype(np.float64))
        return np.bincount(self.session_id, weights=w, minlength=self.n_episodes)


@dataclass
class GymWorld:
    """A gymnasium (or gym >= 0.26) recommender env as an offrec world.

    Args:
        make_env: a callable returning a fresh env (called once per env copy).
        max_steps: sessions longer than this are cut and marked ``truncated``; default
            the env's ``spec.max_episode_steps`` (one of the two must exist).
        name: how the world is named in log metadata (default the env's spec id).
        n_envs: env copies stepped in lockstep (a batch for the policy); results do not
            depend on it.
        reward_domain: the reward's declared domain (``{"kind": "binary"}`` clicks by
            default, or ``{"kind": "continuous", "low": a, "high": b}``), see
            :func:`offrec.logs.schema.reward_domain`.

    >>> import gymnasium as gym
    >>> world = GymWorld(lambda: gym.make("CartPole-v1"), max_steps=5,
    ...                  reward_domain={"kind": "continuous", "low": 0.0, "high": 1.0})
    >>> world.n_actions, world.context_dim
    (2, 4)
    """

    make_env: Callable[[], Any]
    max_steps: int | None = None
    name: str | None = None
    n_envs: int = 16
    reward_domain: dict[str, Any] = field(default_factory=lambda: {"kind": "binary"})

    def __post_init__(self) -> None:
        check_scalar(self.n_envs, "n_envs", int, min=1)
        env = self.make_env()
        try:
            act, obs = env.action_space, env.observation_space
            n = getattr(act, "n", None)
            if n is None or not hasattr(act, "sample") or np.ndim(n) != 0:
                raise InputError(
                    f"action_space must be Discrete(n) (one item per action); got {act!r}"
                )
            shape = getattr(obs, "shape", None)
            if shape is None or getattr(obs, "dtype", None) is None or not hasattr(obs, "low"):
                raise InputError(f"observation_space must be a Box; got {obs!r}")
            self.n_actions = int(n)
            self.action_start = int(getattr(act, "start", 0))
            self.context_dim = int(np.prod(shape)) if len(shape) else 1
            spec = getattr(env, "spec", None)
            if self.max_steps is None:
                self.max_steps = getattr(spec, "max_episode_steps", None)
            if self.max_steps is None:
                raise InputError(
                    "max_steps must be given: the env has no spec.max_episode_steps, "
                    "and sessions need a bound"
                )
            check_scalar(self.max_steps, "max_steps", int, min=1)
            if self.name is None:
                self.name = str(getattr(spec, "id", None) or type(env.unwrapped).__name__)
        finally:
            env.close()

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the world, stored in log metadata."""
        return {
            "kind": "gym",
            "name": self.name,
            "n_actions": self.n_actions,
            "context_dim": self.context_dim,
            "action_start": self.action_start,
            "max_steps": self.max_steps,
        }

    def context(self, obs: Any) -> np.ndarray:
        """Observation -> context, ``float32`` of shape ``(context_dim,)``."""
        x = np.asarray(obs, dtype=np.float32).reshape(-1)
        if x.shape != (self.context_dim,):
            raise InputError(
                f"observation must have {self.context_dim} values (observation_space); "
                f"got shape {np.shape(obs)}"
            )
        return x


def _checked_dist(policy: Any, x: np.ndarray, n_actions: int) -> np.ndarray:
    dist = np.asarray(policy.action_dist(x), dtype=np.float64)
    if dist.shape != (x.shape[0], n_actions):
        raise InputError(
            f"policy.action_dist must return shape ({x.shape[0]}, {n_actions}) for the "
            f"world's n_actions; got {dist.shape}"
        )
    bad = ~np.isfinite(dist).all(axis=1) | (dist < 0).any(axis=1)
    bad |= np.abs(dist.sum(axis=1) - 1.0) > 1e-6
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"policy.action_dist rows must be probabilities summing to 1; row {row} is "
            f"{dist[row].tolist()}"
        )
    return dist


def rollout(world: GymWorld, policy: Any, n_episodes: int, seed: SeedLike = 0) -> Rollout:
    """Run ``policy`` for ``n_episodes`` sessions in ``world`` (module docstring: seeds).

    Each decision samples ``a ~ policy.action_dist(x)`` by inverse CDF of one uniform from
    the episode's own stream, so ``pscore = action_dist(x)[a]`` exactly. Returns a
    :class:`Rollout` with ``session_id`` = episode index.
    """
    check_scalar(n_episodes, "n_episodes", int, min=1)
    if getattr(policy, "n_actions", world.n_actions) != world.n_actions:
        raise InputError(
            f"policy.n_actions must equal the world's n_actions={world.n_actions}; "
            f"got {policy.n_actions}"
        )
    children = as_seed_sequence(seed).spawn(n_episodes)
    max_steps = int(world.max_steps or 0)
    n_envs = min(world.n_envs, n_episodes)
    envs = [world.make_env() for _ in range(n_envs)]
    parts: list[tuple[np.ndarray, ...]] = []
    try:
        for start in range(0, n_episodes, n_envs):
            ids = np.arange(start, min(start + n_envs, n_episodes))
            states = [children[e].generate_state(2) for e in ids]
            rngs = [np.random.default_rng(int(s[1])) for s in states]
            obs = np.stack(
                [world.context(envs[j].reset(seed=int(states[j][0]))[0]) for j in range(ids.size)]
            )
            live = np.arange(ids.size)
            for t in range(max_steps):
                x = obs[live]
                dist = _checked_dist(policy, x, world.n_actions)
                u = np.array([rngs[j].random() for j in live])
                cdf = np.cumsum(dist, axis=1)
                a = np.minimum(
                    np.argmax(cdf > (u * cdf[:, -1])[:, None], axis=1), world.n_actions - 1
                )
                p = dist[np.arange(live.size), a]
                r = np.empty(live.size)
                term = np.empty(live.size, bool)
                trunc = np.empty(live.size, bool)
                for k, j in enumerate(live):
                    o, rew, te, tr, _ = envs[j].step(int(a[k]) + world.action_start)
                    obs[j] = world.context(o)
                    r[k], term[k], trunc[k] = float(rew), bool(te), bool(tr)
                trunc = (trunc | (t + 1 == max_steps)) & ~term
                step = np.full(live.size, t, np.int64)
                parts.append((x, a, r, p, ids[live], step, term, trunc, dist))
                live = live[~(term | trunc)]
                if live.size == 0:
                    break
    finally:
        for env in envs:
            env.close()
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.lexsort((cols[5], cols[4]))
    x, a, r, p, sid, step, term, trunc, dist = (c[order] for c in cols)
    return Rollout(
        context=x.astype(np.float32),
        action=a.astype(np.int64),
        reward=r,
        pscore=p,
        session_id=sid.astype(np.int64),
        step=step,
        terminated=term,
        truncated=trunc,
        logging_dist=dist,
        n_episodes=n_episodes,
    )


def mc_value(
    world: GymWorld, policy: Any, n_episodes: int, seed: SeedLike = 0, gamma: float = 1.0
) -> MCValue:
    """Monte-Carlo value of ``policy`` in ``world``: mean of ``n_episodes`` returns
    ``G = sum_t gamma^t r_t`` with standard error ``sd(G) / sqrt(n)`` (``ddof=1``).

    The truth offrec's estimators are checked against in a world it did not write; its
    uncertainty is ``se``, so compare with a tolerance of a few ``se``.
    """
    check_scalar(gamma, "gamma", float, min=0.0, max=1.0)
    check_scalar(n_episodes, "n_episodes", int, min=2)
    g = rollout(world, policy, n_episodes, seed).returns(gamma)
    return MCValue(float(g.mean()), float(g.std(ddof=1) / np.sqrt(n_episodes)), n_episodes)
