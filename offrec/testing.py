"""Conformance checkers shipped with offrec (run by the test suite over every policy).

>>> from offrec.policies import UniformPolicy
>>> check_policy(UniformPolicy(5), obs_dim=3)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrec.core.errors import InputError


def check_policy(policy: Any, obs: np.ndarray | None = None, *, obs_dim: int | None = None) -> None:
    """Check that ``policy`` honours the ``Policy`` protocol; raise ``AssertionError`` if not.

    Checks: ``n_actions`` is a positive int; ``action_dist(obs)`` has shape
    (n, n_actions), is finite, non-negative, rows sum to 1 and it does not modify
    ``obs``; ``sample(obs, rng)`` returns int actions in range and float pscores equal
    to ``action_dist(obs)[i, action_i]`` (up to 1e-6), positive; the same seed gives
    the same sample; and over many draws the empirical action frequencies agree with
    ``action_dist`` (within 5 standard errors).
    """
    n_actions: Any = getattr(policy, "n_actions", None)
    _require(
        isinstance(n_actions, int) and n_actions >= 1,
        f"n_actions must be a positive int; got {n_actions!r}",
    )
    if obs is None:
        if obs_dim is None:
            raise InputError("check_policy needs obs or obs_dim")
        obs = np.random.default_rng(0).normal(size=(64, obs_dim)).astype(np.float32)
    obs = np.asarray(obs)
    before = obs.copy()
    dist = np.asarray(policy.action_dist(obs))
    n = obs.shape[0]
    _require(
        dist.shape == (n, n_actions),
        f"action_dist shape must be {(n, n_actions)}; got {dist.shape}",
    )
    _require(bool(np.isfinite(dist).all()), "action_dist must be finite")
    _require(bool((dist >= 0).all()), "action_dist must be non-negative")
    _require(bool(np.allclose(dist.sum(axis=1), 1.0, atol=1e-6)), "action_dist rows must sum to 1")
    _require(bool(np.array_equal(obs, before)), "action_dist must not modify obs")

    actions, pscores = policy.sample(obs, np.random.default_rng(123))
    actions, pscores = np.asarray(actions), np.asarray(pscores)
    _require(actions.shape == (n,) and pscores.shape == (n,), "sample must return two (n,) arrays")
    _require(
        np.issubdtype(actions.dtype, np.integer), f"actions must be integers; got {actions.dtype}"
    )
    _require(bool(((actions >= 0) & (actions < n_actions)).all()), "sampled actions out of range")
    _require(
        bool((pscores > 0).all()), "pscores must be > 0 (an action with probability 0 was drawn)"
    )
    _require(
        bool(np.allclose(pscores, dist[np.arange(n), actions], atol=1e-6)),
        "pscore must equal action_dist at the sampled action",
    )
    again, _ = policy.sample(obs, np.random.default_rng(123))
    _require(bool(np.array_equal(actions, again)), "same seed must give the same actions")

    # empirical frequencies on one row repeated: |freq - p| <= 5 sqrt(p (1 - p) / m) + 1e-3
    m = 4000
    row = np.repeat(obs[:1], m, axis=0)
    draws, _ = policy.sample(row, np.random.default_rng(7))
    freq = np.bincount(draws, minlength=int(n_actions)) / m
    p = np.asarray(policy.action_dist(row[:1]))[0]
    tol = 5 * np.sqrt(p * (1 - p) / m) + 1e-3
    worst = int(np.argmax(np.abs(freq - p) - tol))
    _require(
        bool((np.abs(freq - p) <= tol).all()),
        f"sampled frequency of action {worst} is {freq[worst]:.4f}, action_dist says {p[worst]:.4f}",
    )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(f"check_policy: {message}")
