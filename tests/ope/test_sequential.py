import numpy as np
import pytest

from offrec.logs.data import LoggedData
from offrec.ope.accuracy import trajectory_data
from offrec.ope.sequential import episode_index, estimate_sequential, fit_fqe
from offrec.policies.loggers import logging_policy
from offrec.sim import World, WorldConfig


def _log(session, step, action, reward, pscore, n_actions=2, context=None):
    n = len(session)
    ctx = np.zeros((n, 1), np.float32) if context is None else np.asarray(context, np.float32)
    last = np.r_[np.diff(session) != 0, True]
    return LoggedData(
        context=ctx,
        action=np.array(action),
        reward=np.array(reward, float),
        pscore=np.array(pscore, float),
        session_id=np.array(session),
        step=np.array(step),
        position=np.zeros(n, np.int64),
        user_id=np.zeros(n, np.int64),
        terminated=last,
        truncated=np.zeros(n, bool),
        n_actions=n_actions,
    )


# two sessions: (a=0 r=1, a=1 r=0, a=0 r=1) and (a=1 r=1); logger pscore 0.5 everywhere
DATA = _log([0, 0, 0, 1], [0, 1, 2, 0], [0, 1, 0, 1], [1, 0, 1, 1], [0.5] * 4)
# target always plays 0 with prob 0.8: w = 1.6 for a=0, 0.4 for a=1
DIST = np.tile([0.8, 0.2], (4, 1))


def test_hand_computed_values():
    # session 0: rho = 1.6, 0.64, 1.024 ; rewards 1, 0, 1 -> PDIS 1.6 + 1.024 = 2.624 ; G = 2
    # session 1: rho = 0.4 ; reward 1 -> PDIS 0.4 ; G = 1
    expect = {
        "pdis": (2.624 + 0.4) / 2,
        "tis": (1.024 * 2 + 0.4 * 1) / 2,
        # t=0: (1.6*1 + 0.4*1)/(1.6+0.4) = 1 ; t=1: 0/(0.64+0.4) ; t=2: 1.024/(1.024+0.4)
        "wpdis": 1.0 + 0.0 + 1.024 / 1.424,
        "wtis": (1.024 * 2 + 0.4) / (1.024 + 0.4),
    }
    for est, value in expect.items():
        assert estimate_sequential(est, DATA, DIST, method="normal").value == pytest.approx(
            value
        ), est


def test_dr_with_hand_q_and_discount():
    q = np.tile([0.5, 0.25], (4, 1))  # V_hat = 0.8*0.5 + 0.2*0.25 = 0.45
    g = 0.9
    s0 = (
        (1.6 * (1 - 0.5) + 0.45)
        + g * (0.64 * (0 - 0.25) + 1.6 * 0.45)
        + g**2 * (1.024 * (1 - 0.5) + 0.64 * 0.45)
    )
    s1 = 0.4 * (1 - 0.25) + 0.45
    got = estimate_sequential("dr", DATA, DIST, q_hat=q, gamma=g, method="normal").value
    assert got == pytest.approx((s0 + s1) / 2)
    assert estimate_sequential("fqe", DATA, DIST, q_hat=q, method="normal").value == pytest.approx(
        0.45
    )


def test_is_estimators_equal_on_policy_mean_when_target_is_logger():
    dist = np.full((4, 2), 0.5)
    on_policy = DATA.reward.sum() / 2  # clicks per session
    for est in ("pdis", "tis", "wpdis", "wtis"):
        assert estimate_sequential(est, DATA, dist, method="normal").value == pytest.approx(
            on_policy
        )


def test_dr_is_on_policy_return_when_target_is_logger_and_q_ignores_action():
    """w = 1 and Q(x, a) = c(x) for all a: the control variates cancel exactly."""
    dist = np.full((4, 2), 0.5)
    c = np.random.default_rng(0).normal(size=4)
    q = np.repeat(c[:, None], 2, axis=1)
    dr = estimate_sequential("dr", DATA, dist, q_hat=q, method="normal").value
    assert dr == pytest.approx(DATA.reward.sum() / 2)


def test_bad_episodes_are_named():
    with pytest.raises(ValueError, match=r"row 1 \(session 0\) has step 2 in a session of 2 rows"):
        episode_index(np.array([0, 0]), np.array([0, 2]))
    with pytest.raises(ValueError, match="must not repeat"):
        episode_index(np.array([0, 0, 0]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="sequential estimator must be one of"):
        estimate_sequential("ipw", DATA, DIST)
    with pytest.raises(ValueError, match=r"action_dist must have shape \(4, 2\)"):
        estimate_sequential("pdis", DATA, np.ones((4, 3)) / 3)


@pytest.fixture(scope="module")
def session_log():
    world = World(WorldConfig(horizon=5, n_users=3000), seed=0)
    logger = logging_policy(world, "softmax", beta=0.5)
    traj = world.run_sessions(logger, 20_000, np.random.default_rng(0))
    last = traj.terminated | traj.truncated
    data = trajectory_data(traj, world.n_actions, true_ctr=False)
    assert last.sum() == 20_000
    return world, logger, data


def test_sequential_estimates_cover_monte_carlo_truth(session_log):
    """A nearby target (softmax beta 0.8 vs logger 0.5): the unbiased estimators' 99%
    intervals contain the truth (whose own MC error is tiny in comparison)."""
    world, _, data = session_log
    target = logging_policy(world, "softmax", beta=0.8)
    truth = world.true_value(target, n_sessions=20_000, seed=3)
    for est in ("pdis", "wpdis", "dr"):
        iv = estimate_sequential(est, data, target, method="normal", alpha=0.01)
        slack = 4 * truth.stderr
        assert iv.low - slack <= truth.value <= iv.high + slack, (est, iv, truth)


def test_fqe_recovers_logger_value(session_log):
    world, logger, data = session_log
    truth = world.true_value(logger, n_sessions=20_000, seed=3)
    q = fit_fqe(data, logger.action_dist)
    v = estimate_sequential(
        "fqe", data, logger, q_hat=q.predict(data.context), method="normal"
    ).value
    assert abs(v - truth.value) / truth.value < 0.05, (v, truth)


def test_bootstrap_interval_is_seeded_and_contains_estimate(session_log):
    _, logger, data = session_log
    a = estimate_sequential("pdis", data, logger, n_bootstrap=200, seed=1)
    b = estimate_sequential("pdis", data, logger, n_bootstrap=200, seed=1)
    assert a == b and a.low <= a.value <= a.high and a.method == "bootstrap"
