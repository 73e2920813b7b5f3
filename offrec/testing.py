"""Conformance checkers shipped with offrec (the test suite runs them over every registered
policy kind and estimator).

>>> from offrec.policies import UniformPolicy
>>> check_policy(UniformPolicy(5), obs_dim=3)
>>> from offrec.ope import SNIPS
>>> check_estimator(SNIPS())
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
    ``action_dist`` (within 5 standard errors). A policy with ``action_dist_compact``
    must give exactly the numbers of ``action_dist`` through it (dense, or a
    ``GreedyDist``'s or ``SparseDist``'s ``dense()``); a ``SparseDist`` (or a
    ``GreedyDist`` through its ``sparse()`` form) must also agree with the dense rows on
    propensities (``at``), item-group probabilities (``group_probs``, ``group_at``) and
    expectations (``expect``), to 1e-12.
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
    compact = getattr(policy, "action_dist_compact", None)
    if callable(compact):
        c = compact(obs)
        same = np.asarray(c.dense() if hasattr(c, "dense") else c)
        _require(
            same.shape == dist.shape and bool(np.array_equal(same, dist)),
            "action_dist_compact must hold the numbers of action_dist",
        )
        _check_sparse(c.sparse() if hasattr(c, "sparse") else c, dist)

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


def _check_sparse(sparse: Any, dist: np.ndarray) -> None:
    """The operations of a :class:`~offrec.core.policy.SparseDist` against its dense rows."""
    from offrec.core.policy import SparseDist

    if not isinstance(sparse, SparseDist):
        return
    n, k = dist.shape
    rng = np.random.default_rng(5)
    _require(
        bool(np.allclose(sparse.dense(), dist, rtol=0, atol=1e-12)),
        "SparseDist.dense() must equal action_dist",
    )
    a = np.asarray(rng.integers(0, k, size=n))
    _require(
        bool(np.allclose(sparse.at(a), dist[np.arange(n), a], rtol=0, atol=1e-12)),
        "SparseDist.at must equal action_dist at the item",
    )
    n_groups = max(1, min(k, 4))
    groups = rng.integers(0, n_groups, size=k)
    by_group = np.stack([dist[:, groups == g].sum(axis=1) for g in range(n_groups)], axis=1)
    _require(
        bool(np.allclose(sparse.group_probs(groups, n_groups), by_group, atol=1e-12)),
        "SparseDist.group_probs must equal the dense rows summed by group",
    )
    g = rng.integers(0, n_groups, size=n)
    at_g = sparse.group_at(groups, g, sparse.group_sizes(groups, n_groups))
    _require(
        bool(np.allclose(at_g, by_group[np.arange(n), g], atol=1e-12)),
        "SparseDist.group_at must equal the dense group probability",
    )
    values = rng.random((n, k))
    allowed = np.ones(k, bool) if sparse.support is None else sparse.support
    mean = values[:, allowed].mean(axis=1)
    got = sparse.expect(np.take_along_axis(values, sparse.items, axis=1), mean)
    _require(
        bool(np.allclose(got, np.einsum("na,na->n", dist, values), atol=1e-12)),
        "SparseDist.expect must equal sum_a pi(a|x) v(x, a)",
    )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(f"check_policy: {message}")


def check_estimator(estimator: Any, *, seed: int = 0) -> None:
    """Check that a bandit estimator honours offrec's contract; raise ``AssertionError`` if not.

    On a small synthetic log with a known logger (``n = 2000``, 5 actions) it checks:

    - **on-policy**: with the target equal to the logger, every weight is 1, so IPS-type
      estimates equal the mean reward and model-based ones differ from it only by the
      model's correction (checked with a model equal to the true click probabilities:
      the estimate is then within 4 standard errors of the mean reward);
    - **one implementation**: :meth:`Estimator.estimate_policy_value` on the arrays
      equals :func:`offrec.ope.evaluate` on the same rows, in one batch and in batches
      of 97 rows (streamed partial sums), to 1e-9; the normal interval contains the value;
    - **self-normalized estimators** are shift-equivariant (``r + c`` -> ``V + c``);
    - **determinism**: the same inputs give the same value;
    - **bad input**: a ``pscore`` of 0 in row 3 is an error naming ``pscore`` and row 3.
    """
    from offrec.logs.data import LoggedData
    from offrec.ope import evaluate

    rng = np.random.default_rng(seed)
    n, k = 2000, 5
    context = rng.normal(size=(n, 3)).astype(np.float32)
    logits = context @ rng.normal(size=(3, k))
    logger = np.exp(logits - logits.max(axis=1, keepdims=True))
    logger /= logger.sum(axis=1, keepdims=True)
    action = (logger.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(0, k - 1)
    pscore = logger[np.arange(n), action]
    q = 1.0 / (1.0 + np.exp(-(context @ rng.normal(size=(3, k)))))
    reward = (rng.random(n) < q[np.arange(n), action]).astype(np.float64)
    model = q if estimator.needs_model else None
    arrays = dict(
        reward=reward, action=action, pscore=pscore, action_dist=logger, estimated_rewards=model
    )
    groups = np.array([0, 0, 1, 1, 2])  # item groups, for the estimators that read them
    if getattr(estimator, "needs_groups", False):
        by_group = np.stack([logger[:, groups == g].sum(axis=1) for g in range(3)], axis=1)
        arrays.update(item_groups=groups, pscore_group=by_group[np.arange(n), groups[action]])
    value = estimator.estimate_policy_value(**arrays)
    _require_est(value == estimator.estimate_policy_value(**arrays), "same inputs, same value")
    iv = estimator.estimate_interval(**arrays, method="normal")
    _require_est(iv.low <= value <= iv.high, f"normal interval {iv} must contain {value}")
    se = (iv.high - iv.low) / 2 / 1.96
    if estimator.needs_model:
        _require_est(
            abs(value - reward.mean()) < 4 * se + 1e-12,
            f"on-policy with the true model: {value} vs mean reward {reward.mean()}",
        )
    else:
        _require_est(
            abs(value - reward.mean()) < 1e-12,
            f"on-policy (weights 1): {value} must equal the mean reward {reward.mean()}",
        )
    if estimator.self_normalized:
        shifted = estimator.estimate_policy_value(
            **{
                **arrays,
                "reward": reward + 3.0,
                "estimated_rewards": None if model is None else model + 3.0,
            }
        )
        _require_est(abs(shifted - value - 3.0) < 1e-9, "self-normalized: r + 3 must give V + 3")

    from offrec.ope import FixedProbs

    data = LoggedData(
        context=context,
        action=action,
        reward=reward,
        pscore=pscore,
        session_id=np.arange(n),
        step=np.zeros(n, np.int64),
        position=np.zeros(n, np.int64),
        user_id=np.arange(n),
        terminated=np.ones(n, bool),
        truncated=np.zeros(n, bool),
        n_actions=k,
        logging_dist=logger,
        metadata={"item_topics": groups.tolist()},
    )
    if not estimator.needs_model:  # the streamed path fits its own model: compare model-free
        for batch_size in (n, 97):
            got = evaluate(
                data,
                {"t": FixedProbs(logger)},
                estimators=[estimator],
                interval="normal",
                batch_size=batch_size,
            ).table.iloc[0]
            _require_est(
                abs(got.value - value) <= 1e-9 * max(1.0, abs(value)),
                f"evaluate (batch {batch_size}) gives {got.value}, the arrays {value}",
            )
            _require_est(
                abs(got.low - iv.low) <= 1e-9 * max(1.0, abs(iv.low)),
                f"evaluate's normal interval {got.low} differs from {iv.low}",
            )
    bad = pscore.copy()
    bad[3] = 0.0
    try:
        estimator.estimate_policy_value(**{**arrays, "pscore": bad})
    except ValueError as err:
        _require_est("pscore" in str(err) and "row 3" in str(err), f"bad pscore message: {err}")
    else:
        raise AssertionError("check_estimator: a pscore of 0 must be an error")


def _require_est(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(f"check_estimator: {message}")
