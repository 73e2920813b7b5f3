"""OffPolicyEvaluation: the table matches the functional core, diagnostics, positions, errors."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.logs.data import LoggedData
from offrec.ope import (
    IPS,
    OffPolicyEvaluation,
    effective_sample_size,
    estimate_interval,
    estimate_policy_value,
)
from offrec.ope.runner import COLUMNS
from offrec.reward import RewardModel

from .test_estimators import Bandit, _softmax, make_bandit


class LinearSoftmax:
    """A target policy: softmax(context @ weights / temperature)."""

    def __init__(self, weights: np.ndarray, temperature: float = 1.0) -> None:
        self.weights, self.temperature = weights, temperature
        self.n_actions = weights.shape[1]

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return _softmax(obs @ self.weights / self.temperature)

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def logged(b: Bandit, position: np.ndarray | None = None, logging_dist: bool = True) -> LoggedData:
    n = b.action.shape[0]
    ints = np.arange(n)
    return LoggedData(
        context=b.context.astype(np.float32),
        action=b.action,
        reward=b.reward,
        pscore=b.pscore,
        session_id=ints,
        step=np.zeros(n, np.int64),
        position=np.zeros(n, np.int64) if position is None else position,
        user_id=ints,
        terminated=np.ones(n, bool),
        truncated=np.zeros(n, bool),
        n_actions=b.logging_dist.shape[1],
        logging_dist=b.logging_dist.astype(np.float32) if logging_dist else None,
    )


W = np.random.default_rng(0).normal(size=(3, 4))
POLICIES = {"soft": LinearSoftmax(W), "sharp": LinearSoftmax(W, temperature=0.3)}


def test_table_matches_the_functional_core() -> None:
    b = make_bandit(3000, seed=1)
    data = logged(b)
    ope = OffPolicyEvaluation(data, POLICIES, estimators=("ips", "snips", IPS(lambda_=5.0)), seed=3)
    table = ope.run()
    assert list(table.columns) == list(COLUMNS)
    assert table[["policy", "estimator"]].values.tolist() == [
        [p, e] for p in ("soft", "sharp") for e in ("ips", "snips", "ips(lambda_=5.0)")
    ]
    for row in table.itertuples():
        dist = POLICIES[row.policy].action_dist(data.context)
        arrays = dict(reward=b.reward, action=b.action, pscore=b.pscore, action_dist=dist)
        params = {"lambda_": 5.0} if row.estimator.startswith("ips(") else {}
        name = row.estimator.split("(")[0]
        assert row.value == pytest.approx(estimate_policy_value(name, **arrays, **params))
        assert row.low < row.value < row.high and row.interval_method == "bootstrap"
        w = dist[np.arange(3000), b.action] / b.pscore
        assert row.ess == pytest.approx(effective_sample_size(w))
        assert row.max_weight == pytest.approx(w.max())
        assert row.support_violation == 0.0 and row.support_violation_rows == 0.0
    assert table.equals(
        OffPolicyEvaluation(data, POLICIES, ["ips", "snips", IPS(lambda_=5.0)], seed=3).run()
    )


def test_intervals_use_the_requested_method() -> None:
    b = make_bandit(2000, seed=2)
    table = OffPolicyEvaluation(logged(b), [LinearSoftmax(W)], ["snips"], interval="normal").run()
    dist = LinearSoftmax(W).action_dist(b.context.astype(np.float32))
    iv = estimate_interval(
        "snips", reward=b.reward, action=b.action, pscore=b.pscore, action_dist=dist,
        method="normal",
    )  # fmt: skip
    row = table.iloc[0]
    assert row.policy == "LinearSoftmax" and row.interval_method == "normal"
    assert (row.low, row.high) == pytest.approx((iv.low, iv.high))


def test_reward_model_estimators_and_default_list() -> None:
    b = make_bandit(3000, seed=3)
    ope = OffPolicyEvaluation(logged(b), POLICIES, reward_model=RewardModel(seed=0), seed=0)
    table = ope.run()
    assert table.estimator.tolist()[:5] == ["ips", "snips", "dm", "dr", "sndr"]
    assert ope.estimated_rewards_ is not None and ope.estimated_rewards_.shape == (3000, 4)
    dr = table[(table.policy == "soft") & (table.estimator == "dr")].value.item()
    dist = POLICIES["soft"].action_dist(logged(b).context)
    truth_on_sample = float((dist * b.q).sum(axis=1).mean())
    assert abs(dr - truth_on_sample) < 0.05
    assert OffPolicyEvaluation(logged(b), POLICIES).estimators[-1].name == "snips"  # no model


def test_support_violations_are_reported() -> None:
    """The logger never shows action 3 (a deficient-support logger); the target does."""
    b = make_bandit(2000, seed=4)
    logging = b.logging_dist.copy()
    logging[:, 3] = 0.0
    logging /= logging.sum(axis=1, keepdims=True)
    keep = b.action != 3
    b.action, b.reward, b.context = b.action[keep], b.reward[keep], b.context[keep]
    b.pscore = logging[keep][np.arange(keep.sum()), b.action]
    b.logging_dist = logging[keep]
    data = logged(b)
    table = OffPolicyEvaluation(data, POLICIES, ["ips"]).run()
    for row in table.itertuples():
        dist = POLICIES[row.policy].action_dist(data.context)
        assert row.support_violation == pytest.approx(dist[:, 3].mean())
        assert row.support_violation_rows == 1.0  # softmax: every row puts mass on action 3
    no_logging = OffPolicyEvaluation(logged(b, logging_dist=False), POLICIES, ["ips"]).run()
    assert no_logging.support_violation.isna().all()


def test_positions_broadcast_the_policy_over_positions() -> None:
    b = make_bandit(2000, seed=5)
    position = np.random.default_rng(0).integers(0, 3, 2000)
    data = logged(b, position=position)
    table = OffPolicyEvaluation(data, POLICIES, ["ips", "snips"], interval="normal").run()
    for row in table.itertuples():
        dist = POLICIES[row.policy].action_dist(data.context)
        dist3 = np.repeat(dist[:, :, None], 3, axis=2)
        expected = estimate_policy_value(
            row.estimator, reward=b.reward, action=b.action, pscore=b.pscore,
            action_dist=dist3, position=position,
        )  # fmt: skip
        assert row.value == pytest.approx(expected, rel=1e-12)
        # the same distribution at every position: the same value as without positions
        flat = estimate_policy_value(
            row.estimator, reward=b.reward, action=b.action, pscore=b.pscore, action_dist=dist
        )
        assert row.value == pytest.approx(flat, rel=1e-12)


def test_errors() -> None:
    b = make_bandit(500, seed=6)
    data = logged(b)
    with pytest.raises(ValueError, match=r"estimators \['dm', 'dr'\] need a reward model"):
        OffPolicyEvaluation(data, POLICIES, ["ips", "dm", "dr"])
    with pytest.raises(ValueError, match=r"estimator must be one of .*; got 'ipw'"):
        OffPolicyEvaluation(data, POLICIES, ["ipw"])
    with pytest.raises(ValueError, match=r"policy 'x' must have n_actions == data.n_actions \(4\)"):
        OffPolicyEvaluation(data, {"x": LinearSoftmax(np.ones((3, 5)))})
    with pytest.raises(ValueError, match=r"policies must contain at least one policy"):
        OffPolicyEvaluation(data, {})
    with pytest.raises(ValueError, match=r"method must be one of"):
        OffPolicyEvaluation(data, POLICIES, interval="exact")

    class Broken(LinearSoftmax):
        def action_dist(self, obs: np.ndarray) -> np.ndarray:
            return super().action_dist(obs) * 1.1

    with pytest.raises(ValueError, match=r"policy 'bad': action_dist rows must sum to 1 .* row 0"):
        OffPolicyEvaluation(data, {"bad": Broken(W)}, ["ips"]).run()
