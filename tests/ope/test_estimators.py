"""Estimators: hand-computed values, properties, unbiasedness against exact truth, bad inputs."""

from __future__ import annotations

import doctest
import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import offrec.ope.estimators as estimators_module
from offrec.ope import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    DRos,
    SwitchDR,
    effective_sample_size,
    estimate_policy_value,
    estimate_round_rewards,
    importance_weights,
    weight_stats,
)
from offrec.ope.embedding import logging_group_pscore

# ----------------------------------------------------------------------------- a synthetic bandit


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Bandit:
    """Logged rows from a known world: q(x, a) = sigmoid(x @ theta + bias), softmax logger."""

    context: np.ndarray  # (n, d)
    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    logging_dist: np.ndarray  # (n, K)
    target_dist: np.ndarray  # (n, K)
    q: np.ndarray  # (n, K) true expected reward
    truth: float  # exact V(target) over the context population

    def arrays(self, **extra: object) -> dict[str, object]:
        return dict(
            reward=self.reward,
            action=self.action,
            pscore=self.pscore,
            action_dist=self.target_dist,
            **extra,
        )

    def groups_for(self, name: str) -> dict[str, object]:
        """Item groups (items 0, 2, ... and 1, 3, ...) and the logger's group propensities,
        for the estimators that read them (MIPS & co); nothing for the others."""
        if not ESTIMATORS[name].needs_groups:
            return {}
        groups = np.arange(self.logging_dist.shape[1]) % 2
        return {
            "item_groups": groups,
            "pscore_group": logging_group_pscore(self.logging_dist, groups, self.action),
        }


def make_bandit(n: int, seed: int, n_actions: int = 4, d: int = 3, pool: int = 400) -> Bandit:
    """A fixed world (contexts drawn uniformly from a pool, so the truth is exact) and n logged rows.

    truth = mean over the pool of sum_a target(a|x) q(x, a).
    """
    world = np.random.default_rng(2024)
    xs = world.normal(size=(pool, d))
    q_pool = 1 / (1 + np.exp(-(xs @ world.normal(size=(d, n_actions)) - 1.0)))
    # the logger explores (30% uniform), so weights stay below 1 / (0.3 / n_actions)
    logger_pool = 0.7 * _softmax(xs @ world.normal(size=(d, n_actions))) + 0.3 / n_actions
    target_pool = _softmax(xs @ world.normal(size=(d, n_actions)))
    truth = float((target_pool * q_pool).sum(axis=1).mean())

    rng = np.random.default_rng(seed)
    rows = rng.integers(0, pool, n)
    logging = logger_pool[rows]
    cdf = logging.cumsum(axis=1)
    action = np.minimum((cdf < rng.random(n)[:, None]).sum(axis=1), n_actions - 1)
    q = q_pool[rows]
    reward = (rng.random(n) < q[np.arange(n), action]).astype(np.float64)
    return Bandit(
        context=xs[rows],
        action=action,
        reward=reward,
        pscore=logging[np.arange(n), action],
        logging_dist=logging,
        target_dist=target_pool[rows],
        q=q,
        truth=truth,
    )


# ----------------------------------------------------------------------------- hand-computed values

# 5 rows, 3 actions. Target probability of the logged action / pscore:
#   w = [0.5/0.5, 0.5/0.25, 1/0.5, 1/0.25, 0/0.5] = [1, 2, 2, 4, 0]
REWARD = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
ACTION = np.array([0, 1, 2, 0, 1])
PSCORE = np.array([0.5, 0.25, 0.5, 0.25, 0.5])
DIST = np.array(
    [
        [0.5, 0.25, 0.25],
        [0.25, 0.5, 0.25],
        [0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0],
        [0.5, 0.0, 0.5],
    ]
)
QHAT = np.array(
    [
        [0.5, 0.25, 0.75],
        [0.25, 0.5, 0.5],
        [0.5, 0.5, 0.25],
        [0.75, 0.25, 0.25],
        [0.25, 0.25, 0.5],
    ]
)
# w * r = [1, 0, 2, 4, 0], sum 7; sum w = 9
# DM terms sum_a pi * qhat: [0.25+0.0625+0.1875, 0.0625+0.25+0.125, 0.25, 0.75, 0.125+0.25]
#                        = [0.5, 0.4375, 0.25, 0.75, 0.375], sum 2.3125 -> DM = 0.4625
# qhat(x, a_logged) = [0.5, 0.5, 0.25, 0.75, 0.25]; residual r - qhat = [0.5, -0.5, 0.75, 0.25, -0.25]
# w * residual = [0.5, -1, 1.5, 1, 0], sum 2
HAND = [
    ("ips", {}, 7 / 5),
    ("ips", {"lambda_": 1.5}, (1 + 0 + 1.5 + 1.5 + 0) / 5),  # min(w, 1.5) * r
    ("snips", {}, 7 / 9),
    ("dm", {}, 2.3125 / 5),
    ("dr", {}, 0.4625 + 2 / 5),
    ("dr", {"lambda_": 1.5}, 0.4625 + (0.5 - 0.75 + 1.125 + 0.375 + 0) / 5),  # min(w,1.5)*res
    ("sndr", {}, 0.4625 + 2 / 9),
    ("switch-dr", {"lambda_": 1.5}, 0.4625 + 0.5 / 5),  # only rows with w <= 1.5: rows 0, 4
    ("switch-dr", {"lambda_": 2.0}, 0.4625 + (0.5 - 1 + 1.5) / 5),  # rows 0, 1, 2, 4
    # shrunk weights 2w/(w^2+2): w=1 -> 2/3, w=2 -> 2/3, w=4 -> 4/9, w=0 -> 0
    ("dr-os", {"lambda_": 2.0}, 0.4625 + (2 / 3 * (0.5 - 0.5 + 0.75) + 4 / 9 * 0.25) / 5),
]


@pytest.mark.parametrize(("name", "params", "expected"), HAND)
def test_hand_computed_values(name: str, params: dict[str, float], expected: float) -> None:
    value = estimate_policy_value(
        name,
        reward=REWARD,
        action=ACTION,
        pscore=PSCORE,
        action_dist=DIST,
        estimated_rewards=QHAT,
        **params,
    )
    assert value == pytest.approx(expected, rel=1e-12)


def test_hand_computed_round_rewards() -> None:
    arrays = dict(reward=REWARD, action=ACTION, pscore=PSCORE, action_dist=DIST)
    np.testing.assert_allclose(estimate_round_rewards("ips", **arrays), [1, 0, 2, 4, 0])
    # self-normalized: divided by mean(w) = 9/5, as OBP does
    np.testing.assert_allclose(
        estimate_round_rewards("snips", **arrays), np.array([1, 0, 2, 4, 0]) / 1.8
    )
    np.testing.assert_allclose(
        estimate_round_rewards("dr", estimated_rewards=QHAT, **arrays),
        [0.5 + 0.5, 0.4375 - 1, 0.25 + 1.5, 0.75 + 1, 0.375 + 0],
    )


# 4 rows, 2 actions, 2 positions; action_dist[i, a, k]
P0 = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0], [0.5, 0.5]])  # position 0
P1 = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.75, 0.25]])  # position 1
Q0 = np.array([[0.5, 0.25], [0.5, 0.5], [0.25, 0.75], [0.5, 0.5]])
Q1 = np.array([[0.25, 0.5], [0.25, 0.25], [0.5, 0.25], [0.75, 0.25]])
POS = dict(
    reward=np.array([1.0, 1.0, 0.0, 1.0]),
    action=np.array([0, 1, 1, 0]),
    position=np.array([1, 0, 1, 0]),
    pscore=np.array([0.5, 0.5, 0.25, 0.5]),
    action_dist=np.stack([P0, P1], axis=2),
    estimated_rewards=np.stack([Q0, Q1], axis=2),
)
# w = [P1[0,0]/.5, P0[1,1]/.5, P1[2,1]/.25, P0[3,0]/.5] = [2, 1.5, 4, 1]; w*r = [2, 1.5, 0, 1]
# DM terms at each row's position: [1*.25, .25*.5+.75*.5, 1*.25, .5*.5+.5*.5] = [.25, .5, .25, .5]
# qhat logged = [Q1[0,0], Q0[1,1], Q1[2,1], Q0[3,0]] = [.25, .5, .25, .5]
# residual = [.75, .5, -.25, .5]; w * residual = [1.5, .75, -1, .5], sum 1.75
HAND_POSITIONS = [
    ("ips", 4.5 / 4),
    ("snips", 4.5 / 8.5),
    ("dm", 1.5 / 4),
    ("dr", 1.5 / 4 + 1.75 / 4),
    ("sndr", 1.5 / 4 + 1.75 / 8.5),
]


@pytest.mark.parametrize(("name", "expected"), HAND_POSITIONS)
def test_hand_computed_with_positions(name: str, expected: float) -> None:
    assert estimate_policy_value(name, **POS) == pytest.approx(expected, rel=1e-12)


def test_positions_broadcast_view_matches_copy() -> None:
    """A non-contiguous (broadcast) action_dist takes the fancy-index path: same result."""
    dist = np.broadcast_to(DIST[:, :, None], (5, 3, 2))
    q = np.ascontiguousarray(np.broadcast_to(QHAT[:, :, None], (5, 3, 2)))
    arrays = dict(reward=REWARD, action=ACTION, pscore=PSCORE, estimated_rewards=q)
    position = np.array([1, 0, 1, 1, 0])
    for name in ("ips", "dr"):
        a = estimate_policy_value(name, action_dist=dist, position=position, **arrays)
        b = estimate_policy_value(name, action_dist=dist.copy(), position=position, **arrays)
        c = estimate_policy_value(name, **{**arrays, "estimated_rewards": QHAT}, action_dist=DIST)
        assert a == pytest.approx(b, rel=1e-14) and a == pytest.approx(c, rel=1e-14)


def test_classes_call_the_core_and_run_their_examples() -> None:
    """Each class against its formula written out here in numpy (an implementation
    independent of offrec's), through the class and through the functional core."""
    arrays = dict(
        reward=REWARD, action=ACTION, pscore=PSCORE, action_dist=DIST, estimated_rewards=QHAT
    )
    rows = np.arange(REWARD.size)
    w = DIST[rows, ACTION] / PSCORE
    q_log, q_pi, r = QHAT[rows, ACTION], (DIST * QHAT).sum(axis=1), REWARD
    by_hand = {
        ("ips", 1.5): np.mean(np.minimum(w, 1.5) * r),
        ("snips", None): np.sum(w * r) / np.sum(w),
        ("dm", None): np.mean(q_pi),
        ("dr", None): np.mean(q_pi + w * (r - q_log)),
        ("sndr", None): np.mean(q_pi) + np.sum(w * (r - q_log)) / np.sum(w),
        ("switch-dr", 2.0): np.mean(q_pi + np.where(w <= 2.0, w, 0.0) * (r - q_log)),
        ("dr-os", 2.0): np.mean(q_pi + 2.0 * w / (w * w + 2.0) * (r - q_log)),
    }
    classes = {
        "ips": IPS,
        "snips": SNIPS,
        "dm": DM,
        "dr": DR,
        "sndr": SNDR,
        "switch-dr": SwitchDR,
        "dr-os": DRos,
    }
    assert len(set(by_hand.values())) == len(by_hand)  # the formulas tell them apart here
    for (name, lam), expected in by_hand.items():
        params = {} if lam is None else {"lambda_": lam}
        est = classes[name](**params)
        assert est.name == name and ESTIMATORS[name] is classes[name]
        assert est.estimate_policy_value(**arrays) == pytest.approx(expected, rel=1e-12)
        assert estimate_policy_value(name, **arrays, **params) == pytest.approx(expected, rel=1e-12)
    assert IPS(lambda_=10).label == "ips(lambda_=10)" and DR().label == "dr"
    iv = SwitchDR(lambda_=2.0).estimate_interval(**arrays, method="normal")
    assert iv.value == estimate_policy_value("switch-dr", **arrays, lambda_=2.0)
    assert iv.method == "normal" and iv.low < iv.value < iv.high
    result = doctest.testmod(estimators_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 7 and result.failed == 0


def test_round_rewards_average_to_the_value_and_check_dist_off_agrees() -> None:
    b = make_bandit(3000, seed=1)
    arrays = b.arrays(estimated_rewards=np.clip(b.q + 0.1, 0, 1))
    for name in ESTIMATORS:
        kw = {**arrays, **b.groups_for(name)}
        value = estimate_policy_value(name, **kw)
        assert estimate_round_rewards(name, **kw).mean() == pytest.approx(value, rel=1e-12)
        assert estimate_policy_value(name, check_dist=False, **kw) == value


# ----------------------------------------------------------------------------- properties


def test_ips_is_the_on_policy_mean_when_target_equals_logger() -> None:
    b = make_bandit(5000, seed=2)
    arrays = dict(reward=b.reward, action=b.action, pscore=b.pscore, action_dist=b.logging_dist)
    assert estimate_policy_value("ips", **arrays) == b.reward.mean()  # w == 1 exactly
    assert estimate_policy_value("snips", **arrays) == pytest.approx(b.reward.mean(), rel=1e-14)


@settings(max_examples=40, deadline=None)
@given(shift=st.floats(-5, 5), seed=st.integers(0, 10_000))
def test_snips_and_sndr_are_shift_equivariant(shift: float, seed: int) -> None:
    b = make_bandit(200, seed=seed)
    qhat = np.full_like(b.q, 0.3)
    base = b.arrays(estimated_rewards=qhat)
    shifted = {**base, "reward": b.reward + shift, "estimated_rewards": qhat + shift}
    for name in ("snips", "sndr", "dm", "dr"):  # DM/DR shift with a shifted model too
        v0 = estimate_policy_value(name, **base)
        assert estimate_policy_value(name, **shifted) == pytest.approx(v0 + shift, abs=1e-9)


def test_ips_is_not_shift_equivariant() -> None:
    """Control for the test above: IPS moves by shift * mean(w), not by shift."""
    b = make_bandit(200, seed=3)
    w = importance_weights(action=b.action, pscore=b.pscore, action_dist=b.target_dist)
    v0 = estimate_policy_value("ips", **b.arrays())
    v1 = estimate_policy_value("ips", **{**b.arrays(), "reward": b.reward + 1.0})
    assert v1 - v0 == pytest.approx(w.mean(), rel=1e-12)
    assert abs(w.mean() - 1) > 0.01


def test_dr_family_equals_dm_when_residuals_are_zero() -> None:
    b = make_bandit(2000, seed=4)
    qhat = np.clip(b.q + 0.2, 0, 1)
    reward = qhat[np.arange(2000), b.action]  # r = qhat(x, a): zero residuals
    arrays = {**b.arrays(estimated_rewards=qhat), "reward": reward}
    dm = estimate_policy_value("dm", **arrays)
    for name, params in [
        ("dr", {}),
        ("sndr", {}),
        ("switch-dr", {"lambda_": 2.0}),
        ("dr-os", {"lambda_": 1.0}),
    ]:
        assert estimate_policy_value(name, **arrays, **params) == pytest.approx(dm, abs=1e-12)


def test_limits_of_clipping_switch_and_shrinkage() -> None:
    b = make_bandit(2000, seed=5)
    arrays = b.arrays(estimated_rewards=np.full_like(b.q, 0.4))
    w = importance_weights(action=b.action, pscore=b.pscore, action_dist=b.target_dist)
    ips = estimate_policy_value("ips", **arrays)
    dr = estimate_policy_value("dr", **arrays)
    dm = estimate_policy_value("dm", **arrays)
    assert estimate_policy_value("ips", lambda_=float(w.max()), **arrays) == ips
    assert estimate_policy_value("ips", lambda_=1.0, **arrays) < ips  # clipping binds
    assert estimate_policy_value("dr", lambda_=1e12, **arrays) == dr
    assert estimate_policy_value("switch-dr", lambda_=1e12, **arrays) == dr
    assert estimate_policy_value("switch-dr", lambda_=0.0, **arrays) == pytest.approx(dm, abs=1e-15)
    assert estimate_policy_value("dr-os", lambda_=1e12, **arrays) == pytest.approx(dr, rel=1e-6)
    assert estimate_policy_value("dr-os", lambda_=0.0, **arrays) == pytest.approx(dm, abs=1e-15)
    assert estimate_policy_value("dr-os", **arrays) == dr  # default lambda_ = inf


# ----------------------------------------------------------------------------- unbiasedness


def _value_and_se(name: str, **arrays: object) -> tuple[float, float]:
    rr = estimate_round_rewards(name, **arrays)  # type: ignore[arg-type]
    return float(rr.mean()), float(rr.std(ddof=1) / math.sqrt(rr.shape[0]))


def test_dr_is_unbiased_with_exact_propensities_and_a_wrong_model() -> None:
    b = make_bandit(40_000, seed=6)
    wrong = np.clip(b.q + 0.25, 0, 1)  # biased model
    dr, se = _value_and_se("dr", **b.arrays(estimated_rewards=wrong))
    assert abs(dr - b.truth) < 4 * se
    dm = estimate_policy_value("dm", **b.arrays(estimated_rewards=wrong))
    assert abs(dm - b.truth) > 10 * se  # the model alone is far off: the check has power


def test_dr_is_unbiased_with_an_exact_model_and_wrong_propensities() -> None:
    b = make_bandit(40_000, seed=7)
    wrong = {**b.arrays(estimated_rewards=b.q), "pscore": np.full(b.pscore.shape, 0.25)}
    dr, se = _value_and_se("dr", **wrong)
    assert abs(dr - b.truth) < 4 * se
    ips, ips_se = _value_and_se("ips", **wrong)
    assert abs(ips - b.truth) > 4 * ips_se  # IPS with the wrong propensities is biased
    ips_ok, ips_ok_se = _value_and_se("ips", **b.arrays())
    assert abs(ips_ok - b.truth) < 4 * ips_ok_se


# ----------------------------------------------------------------------------- diagnostics


def test_weight_diagnostics_by_hand() -> None:
    w = importance_weights(action=ACTION, pscore=PSCORE, action_dist=DIST)
    np.testing.assert_array_equal(w, [1, 2, 2, 4, 0])
    assert effective_sample_size(w) == pytest.approx(81 / 25)  # (sum w)^2 / sum w^2 = 9^2 / 25
    stats = weight_stats(w)
    assert (stats.n, stats.mean, stats.max) == (5, 1.8, 4.0)
    assert stats.quantiles[0.5] == 2.0
    assert effective_sample_size(np.ones(7)) == 7.0


# ----------------------------------------------------------------------------- bad inputs


def _bad(**override: object) -> dict[str, object]:
    return {
        "reward": REWARD,
        "action": ACTION,
        "pscore": PSCORE,
        "action_dist": DIST,
        "estimated_rewards": QHAT,
        **override,
    }


_ROWS_OFF = DIST.copy()
_ROWS_OFF[2] = [0.0, 0.5, 0.4]
_NEGATIVE = DIST.copy()
_NEGATIVE[1] = [-0.25, 0.75, 0.5]
_NAN_DIST = DIST.copy()
_NAN_DIST[3, 1] = np.nan
_QNAN = QHAT.copy()
_QNAN[4, 2] = np.inf

BAD_INPUTS = [
    (
        "ips",
        _bad(pscore=np.array([0.5, 0.25, 0.5, 0.0, 0.5])),
        r"pscore must be in \(0, 1\]; row 3 has 0.0",
    ),
    (
        "ips",
        _bad(pscore=np.array([0.5, 1.5, 0.5, 0.2, 0.5])),
        r"pscore must be in \(0, 1\]; row 1 has 1.5",
    ),
    (
        "ips",
        _bad(pscore=np.array([0.5, 0.5, np.nan, 0.2, 0.5])),
        r"pscore must be in \(0, 1\]; row 2 has nan",
    ),
    (
        "ips",
        _bad(reward=np.array([1.0, np.nan, 1.0, 1.0, 0.0])),
        r"reward must be finite; row 1 has nan",
    ),
    ("ips", _bad(pscore=PSCORE[:4]), r"pscore must have the same length as reward \(5\); got 4"),
    ("ips", _bad(action=ACTION[:3]), r"action must have the same length as reward \(5\); got 3"),
    (
        "ips",
        _bad(reward=REWARD[:, None]),
        r"reward must be 1-D with shape \(n,\); got shape \(5, 1\)",
    ),
    ("ips", _bad(action=np.array([0, 1, 3, 0, 1])), r"action must be in \[0, 3\); row 2 has 3"),
    ("ips", _bad(action=np.array([0, -1, 2, 0, 1])), r"action must be in \[0, 3\); row 1 has -1"),
    ("ips", _bad(action=ACTION.astype(float)), r"action must be integers; got dtype float64"),
    (
        "ips",
        _bad(action_dist=_ROWS_OFF),
        r"action_dist rows must sum to 1 \(tolerance 1e-06\); row 2 sums to 0.9",
    ),
    ("ips", _bad(action_dist=_NEGATIVE), r"action_dist must be non-negative; row 1 has -0.25"),
    ("ips", _bad(action_dist=_NAN_DIST), r"action_dist must be finite; row 3 has nan"),
    (
        "ips",
        _bad(action_dist=DIST[:4]),
        r"action_dist must have shape \(n, n_actions\) or \(n, n_actions, n_positions\) with n = 5; got \(4, 3\)",
    ),
    ("ips", _bad(action_dist=DIST[:, 0]), r"action_dist must have shape .* with n = 5; got \(5,\)"),
    (
        "dr",
        _bad(estimated_rewards=QHAT[:, :2]),
        r"estimated_rewards must have the same shape as action_dist \(5, 3\); got \(5, 2\)",
    ),
    ("dr", _bad(estimated_rewards=_QNAN), r"estimated_rewards must be finite; row 4 has inf"),
    (
        "dr",
        _bad(estimated_rewards=None),
        r"estimator 'dr' needs estimated_rewards with the shape of action_dist",
    ),
    (
        "ips",
        _bad(position=np.array([0, 1, 0, 0, 0])),
        r"position must be in \[0, 1\) \(positions are axis 2 of action_dist\); row 1 has 1",
    ),
    (
        "ips",
        _bad(reward=np.zeros(0), action=ACTION[:0], pscore=PSCORE[:0], action_dist=DIST[:0]),
        r"reward must have at least one row; got 0 rows",
    ),
    (
        "ipw",
        _bad(),
        r"estimator must be one of \['ips', 'snips', 'dm', 'dr', 'sndr', 'switch-dr', 'dr-os', 'mips', 'snmips', 'offcem', 'multi-balanced-ips', 'multi-balanced-dr', 'multi-weighted-ips', 'multi-weighted-dr'\]; got 'ipw'",
    ),
    (
        "ips",
        _bad(clip=3.0),
        r"unknown parameter 'clip' for estimator 'ips'; valid parameters: \['lambda_'\]",
    ),
    (
        "snips",
        _bad(lambda_=3.0),
        r"unknown parameter 'lambda_' for estimator 'snips'; valid parameters: none",
    ),
    ("dr", _bad(lambda_=-1.0), r"lambda_ must be >= 0.0; got -1.0"),
    (
        "snips",
        _bad(action_dist=np.tile([[0.0, 0.0, 1.0]], (5, 1)), action=np.zeros(5, int)),
        r"snips is undefined: every importance weight is 0",
    ),
]


@pytest.mark.parametrize(("name", "arrays", "message"), BAD_INPUTS)
def test_bad_inputs_get_exact_errors(name: str, arrays: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_policy_value(name, **arrays)  # type: ignore[arg-type]


def test_error_names_the_row_in_a_later_block() -> None:
    """action_dist is scanned in blocks; the reported row is global, not block-relative."""
    b = make_bandit(5000, seed=8, n_actions=100, pool=50)
    dist = b.target_dist.copy()
    dist[4321] *= 0.5
    with pytest.raises(ValueError, match=r"row 4321 sums to 0.5"):
        estimate_policy_value("ips", **{**b.arrays(), "action_dist": dist})


def test_threaded_scan_names_the_first_bad_row() -> None:
    """An action_dist of >= 4M entries is scanned by threads over row ranges; with bad
    rows in several ranges, the error still names the first one."""
    from offrec.core.threads import PARALLEL_ELEMS

    n = PARALLEL_ELEMS // 100 + 1000
    b = make_bandit(n, seed=9, n_actions=100, pool=50)
    dist = b.target_dist.copy()
    dist[n - 10] = -dist[n - 10]  # last range
    dist[n // 3] *= 0.5  # an earlier range
    with pytest.raises(ValueError, match=rf"row {n // 3} sums to 0.5"):
        estimate_policy_value("ips", **{**b.arrays(), "action_dist": dist})
    arrays = b.arrays(estimated_rewards=np.clip(b.q + 0.1, 0, 1))
    q_target = np.einsum("na,na->n", b.target_dist, arrays["estimated_rewards"])
    dm = estimate_policy_value("dm", **arrays)
    assert dm == pytest.approx(q_target.mean(), rel=1e-12)


def test_class_params_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match=r"lambda_ must be >= 0.0; got -2.0"):
        SwitchDR(lambda_=-2.0)
    with pytest.raises(TypeError, match=r"lambda_ must be float"):
        IPS(lambda_="big")  # type: ignore[arg-type]


# ------------------------------------------------- greedy targets in factored form (GreedyDist)
def _eps_greedy_dense(scores: np.ndarray, eps: float, allowed: np.ndarray) -> np.ndarray:
    """The epsilon-greedy distribution written out: (1 - eps) [a = argmax] + eps [a allowed]
    / |allowed| (scores without ties)."""
    s = np.where(allowed[None, :], scores, -np.inf)
    onehot = (s == s.max(axis=1, keepdims=True)).astype(float)
    return (1.0 - eps) * onehot + eps * (allowed / allowed.sum())[None, :]


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("with_support", [False, True])
def test_greedy_targets_in_factored_form_equal_the_dense_distribution(
    eps: float, with_support: bool
) -> None:
    """Every estimator on a Head's GreedyDist equals the same estimator on the explicitly
    built dense array: weights bit for bit, values to rounding."""
    from offrec.core.policy import Head

    b = make_bandit(3000, seed=4, n_actions=6)
    scores = b.context @ np.random.default_rng(5).normal(size=(3, 6))
    allowed = np.array([1, 1, 0, 1, 1, 1], bool) if with_support else np.ones(6, bool)
    head = Head("epsilon_greedy", epsilon=eps)
    compact = head.greedy(scores, allowed if with_support else None)
    truth = _eps_greedy_dense(scores, eps, allowed)
    arrays = dict(reward=b.reward, action=b.action, pscore=b.pscore, estimated_rewards=b.q)
    np.testing.assert_array_equal(
        importance_weights(action=b.action, pscore=b.pscore, action_dist=compact),
        importance_weights(action=b.action, pscore=b.pscore, action_dist=truth),
    )
    for name in ESTIMATORS:
        kw = {**arrays, **b.groups_for(name)}
        got = estimate_policy_value(name, **kw, action_dist=compact)
        assert got == pytest.approx(
            estimate_policy_value(name, **kw, action_dist=truth), rel=1e-12
        ), name
    got = estimate_round_rewards("dm", **arrays, action_dist=compact)
    np.testing.assert_allclose(got, (truth * b.q).sum(axis=1), rtol=1e-13)


def _greedy_bad(**override: object) -> dict[str, object]:
    from offrec.core.policy import Head

    scores = np.array(
        [[0.0, 1.0, 2.0], [3.0, 1.0, 2.0], [0.0, 5.0, 2.0], [0.0, 1.0, 2.0], [1.0, 1.0, 0.0]]
    )
    head = Head("epsilon_greedy", epsilon=override.pop("eps", 0.3))  # type: ignore[arg-type]
    if "scores" in override:
        scores = override.pop("scores")  # type: ignore[assignment]
    return {
        "reward": REWARD,
        "action": ACTION,
        "pscore": PSCORE,
        "estimated_rewards": QHAT,
        "action_dist": head.greedy(scores),
        **override,
    }


_NAN_ROW = np.array(
    [[0.0, 1.0, 2.0], [3.0, 1.0, 2.0], [0.0, 5.0, 2.0], [0.0, np.nan, 2.0], [1.0, 1.0, 0.0]]
)
_QINF = QHAT.copy()
_QINF[3, 0] = -np.inf

GREEDY_BAD = [
    (
        "ips",
        _greedy_bad(scores=_NAN_ROW),
        r"action_dist rows must sum to 1 \(tolerance 1e-06\); row 3 sums to 0.3",
    ),
    (
        "ips",
        _greedy_bad(scores=_NAN_ROW, eps=0.0),
        r"action_dist rows must sum to 1 \(tolerance 1e-06\); row 3 sums to 0.0",
    ),
    (
        "dr",
        _greedy_bad(estimated_rewards=_QINF),
        r"estimated_rewards must be finite; row 3 has -inf",
    ),
    (
        "dr",
        _greedy_bad(estimated_rewards=_QINF, eps=0.0),
        r"estimated_rewards must be finite; row 3 has -inf",
    ),
    (
        "dr",
        _greedy_bad(estimated_rewards=QHAT[:, :2]),
        r"estimated_rewards must have the same shape as action_dist \(5, 3\); got \(5, 2\)",
    ),
    (
        "ips",
        _greedy_bad(
            reward=REWARD[:4], action=ACTION[:4], pscore=PSCORE[:4], estimated_rewards=None
        ),
        r"action_dist must have shape .* with n = 4; got \(5, 3\)",
    ),
    (
        "ips",
        _greedy_bad(action=np.array([0, 1, 3, 0, 1])),
        r"action must be in \[0, 3\); row 2 has 3",
    ),
    (
        "ips",
        _greedy_bad(position=np.array([0, 1, 0, 0, 0])),
        r"position must be in \[0, 1\) \(positions are axis 2 of action_dist\); row 1 has 1",
    ),
]


@pytest.mark.parametrize(("name", "arrays", "message"), GREEDY_BAD)
def test_greedy_targets_get_the_dense_errors(
    name: str, arrays: dict[str, object], message: str
) -> None:
    """The factored form is checked like the dense one, with the same messages (the dense
    array of each case gets the same error: checked alongside)."""
    with pytest.raises(ValueError, match=message):
        estimate_policy_value(name, **arrays)  # type: ignore[arg-type]
    dense = {**arrays, "action_dist": arrays["action_dist"].dense()}  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=message):
        estimate_policy_value(name, **dense)  # type: ignore[arg-type]
