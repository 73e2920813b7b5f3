"""The shared-parameter (bilinear) learner: conformance, exact retrieval argmax, learning."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
from offrec.policies.loggers import logging_policy
from offrec.policies.registry import make_learner
from offrec.sim import World, WorldConfig
from offrec.testing import check_policy


@pytest.fixture(scope="module")
def small() -> tuple[World, object]:
    w = World(WorldConfig(n_items=80, n_users=200), seed=0)
    traj = w.run_sessions(logging_policy(w, "uniform"), 3000, np.random.default_rng(0))
    return w, traj


@pytest.mark.parametrize("head", ["greedy", "ucb", "ts"])
def test_conforms(small, head) -> None:
    w, traj = small
    h = HybridLinear(
        catalog_features(w), w.context_dim, head=head, candidates=10, epsilon=0.1, floor=0.05
    )
    h.partial_fit(traj.obs, traj.action, traj.reward)
    check_policy(h, np.asarray(traj.obs[:64]))


def test_greedy_is_the_catalog_argmax_of_the_ridge_fit(small) -> None:
    w, traj = small
    h = HybridLinear(catalog_features(w), w.context_dim, candidates=5, l2=2.0)
    h.partial_fit(traj.obs[:1000], traj.action[:1000], traj.reward[:1000])
    h.partial_fit(traj.obs[1000:], traj.action[1000:], traj.reward[1000:])  # in two parts
    # the ridge solution from scratch on the outer-product design
    x = np.hstack([traj.obs.astype(np.float64), np.ones((len(traj.action), 1))])
    e = np.hstack([catalog_features(w), np.ones((w.n_actions, 1))])
    phi = np.einsum("ni,nj->nij", x, e[traj.action]).reshape(len(x), -1)
    theta = np.linalg.solve(phi.T @ phi + 2.0 * np.eye(phi.shape[1]), phi.T @ traj.reward)
    assert np.allclose(h.theta, theta, atol=1e-8)
    obs = np.asarray(traj.obs[:50])
    scores = (x[:50] @ theta.reshape(x.shape[1], -1)) @ e.T
    assert np.array_equal(np.argmax(h.action_dist(obs), axis=1), np.argmax(scores, axis=1))
    assert np.allclose(h.predict_mean(obs), scores.mean(axis=1))


def test_shared_parameters_beat_logger_and_per_item_linucb() -> None:
    # 2,000 items, 20,000 logged rows: ~10 rows per item, too few for a model per item
    w = World(WorldConfig(n_items=2000, n_users=2000), seed=1)
    logger = logging_policy(w, "softmax", candidates=100, floor=0.1)
    traj = w.run_sessions(logger, 20_000, np.random.default_rng(2))
    hybrid = HybridLinear(catalog_features(w), w.context_dim, candidates=20)
    hybrid.partial_fit(traj.obs, traj.action, traj.reward)
    per_item = make_learner("linucb", w.n_actions, w.context_dim, explore=False)
    per_item.partial_fit(traj.obs, traj.action, traj.reward)
    v_h, v_l = w.true_value(hybrid).value, w.true_value(logger).value
    v_p = w.true_value(per_item).value
    # exact values: the margins are far beyond any rounding
    assert v_h > 1.2 * v_l and v_h > 1.2 * v_p, (v_h, v_l, v_p)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="head must be one of"):
        HybridLinear(np.zeros((5, 2)), 3, head="best")
    with pytest.raises(InputError, match=r"candidates must be in \[1, 5\]; got 6"):
        HybridLinear(np.zeros((5, 2)), 3, candidates=6)
    h = HybridLinear(np.zeros((5, 2)), 3, candidates=2)
    with pytest.raises(InputError, match=r"action must be in \[0, 5\); row 1 has 5"):
        h.partial_fit(np.zeros((2, 3)), np.array([0, 5]), np.zeros(2))
