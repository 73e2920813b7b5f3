"""The model-based session estimators (`mb`, `mb-dr`) on a bounded continuous reward
(issue 26): a tiny gymnasium world inside their model class, its value known exactly by
dynamic programming, logged through the world adapter."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from scipy.special import expit

from offrec.core.policy import BasePolicy
from offrec.logs.env_collect import env_log
from offrec.ope import evaluate
from offrec.sim.adapter import GymWorld

# Users of two types u in {-1, +1}; three items; horizon 5. Showing item a gives the
# unit-scale mean reward q = sigmoid(B[a] + C[a] u - REP [a == previous item]); the reward
# is r = -1 + 2 r' with r' = q + (Bern(q) - q) / 2 (mean q, bounded, not 0/1); then the
# user leaves with probability sigmoid(-1.5 - 2 r'). The observation is (u, t / H).
B = np.array([0.2, -0.1, 0.4])
C = np.array([1.0, -1.0, 0.1])
REP = 1.2
H = 5
DOMAIN = {"kind": "continuous", "low": -1.0, "high": 1.0}


def _leave(r_unit: float | np.ndarray) -> Any:
    return expit(-1.5 - 2.0 * np.asarray(r_unit))


class ContRec(gym.Env[np.ndarray, np.int64]):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.u, self.t, self.prev = 1.0, 0, -1

    def _obs(self) -> np.ndarray:
        return np.array([self.u, self.t / H], np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.u, self.t, self.prev = float(self.np_random.choice([-1.0, 1.0])), 0, -1
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        q = float(expit(B[a] + C[a] * self.u - REP * (a == self.prev)))
        u = self.np_random.random(2)
        r_unit = q + ((u[0] < q) - q) / 2
        leave = bool(u[1] < _leave(r_unit))
        self.prev, self.t = a, self.t + 1
        return self._obs(), -1.0 + 2.0 * r_unit, leave, False, {}


class TypeStepPolicy(BasePolicy):
    """pi(a | u, t) = table[type, t mod 2, a], type 0 for u < 0."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = np.asarray(table, np.float64)  # (2, 2, 3)
        self.n_actions = 3

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float64)
        k = (obs[:, 0] > 0).astype(int)
        t = np.rint(obs[:, 1] * H).astype(int) % 2
        return self.table[k, t]


def dp_value(pol: TypeStepPolicy) -> float:
    """Exact expected return: V_t(u, prev) = sum_a pi(a|u,t) [E r + E_{r'} (1 - leave(r'))
    V_{t+1}(u, a)], over both reward outcomes r' = q + (b - q)/2, b in {0, 1}."""
    total = 0.0
    for k, u in enumerate((-1.0, 1.0)):
        v_next = np.zeros(4)  # indexed by prev + 1 (prev = -1 at the start)
        for t in range(H - 1, -1, -1):
            v = np.zeros(4)
            for prev in range(-1, 3):
                pi = pol.table[k, t % 2]
                for a in range(3):
                    q = expit(B[a] + C[a] * u - REP * (a == prev))
                    cont = sum(p * (1 - _leave(q + (b - q) / 2)) for b, p in ((0, 1 - q), (1, q)))
                    v[prev + 1] += pi[a] * (-1.0 + 2.0 * q + cont * v_next[a + 1])
            v_next = v
        total += 0.5 * v_next[0]
    return float(total)


# the logger mostly repeats the type's favourite item (paying the repeat penalty); the
# target alternates the type's best two items (item 1 or 0, then item 2)
LOGGER = TypeStepPolicy(0.5 / 3 + 0.5 * np.eye(3)[[[1, 1], [0, 0]]])
TARGET = TypeStepPolicy(np.eye(3)[[[1, 2], [0, 2]]])


def world() -> GymWorld:
    return GymWorld(ContRec, max_steps=H, name="cont-tiny", n_envs=32, reward_domain=DOMAIN)


def test_dp_by_hand_for_horizon_one() -> None:
    # one step, deterministic target: V = 0.5 sum_u (-1 + 2 q(u, a))
    q = [expit(B[2] + C[2] * -1.0), expit(B[0] + C[0] * 1.0)]
    v1 = 0.5 * sum(-1.0 + 2.0 * qq for qq in q)
    assert dp_value(TARGET) > v1  # more steps add (positive) rewards


def test_mb_and_mb_dr_recover_the_exact_value_of_a_continuous_reward_world() -> None:
    data = env_log(world(), LOGGER, n_sessions=2000, seed=4)
    assert not ((data.reward == -1) | (data.reward == 1)).all()  # not clicks
    targets = {"target": TARGET, "logger": LOGGER}
    res = evaluate(data, targets, estimators=["mb", "mb-dr", "pdis"], seed=0)
    assert res.skipped == {}
    truth = {"target": dp_value(TARGET), "logger": dp_value(LOGGER)}
    gap = truth["target"] - truth["logger"]
    for e in res.estimates:
        half = (e.high - e.low) / 2
        assert half > 0, e
        # within 3 standard errors (1.96 se = half) of the exact value ...
        assert abs(e.value - truth[e.policy]) < 1.6 * half, (e, truth[e.policy])
        # ... and far more precise than the difference between the two policies
        assert half < abs(gap) / 3, (e, gap)


def test_the_learned_reward_model_keeps_the_domain_and_the_dispersion() -> None:
    """The fitted dispersion is this world's phi = Var(r' | q) / (q (1 - q)) = 1/4 (to the
    sampling error of 2,000 sessions); rollouts draw r' with mean q inside [0, 1]; the
    value is reported in the log's units (a horizon-1 start adds low + scale * q)."""
    from offrec.ope.model_based import fit_session_model, rollout_values

    data = env_log(world(), LOGGER, n_sessions=2000, seed=9)
    model = fit_session_model(data)
    assert (model.r_low, model.r_scale) == (-1.0, 2.0)
    assert model.dispersion == pytest.approx(0.25, abs=0.03)
    q = np.linspace(0.05, 0.95, 7)
    u = np.random.default_rng(0).random((20000, 7))
    draws = model.draw_reward(np.broadcast_to(q, u.shape), u)
    assert (draws >= 0).all() and (draws <= 1).all()
    np.testing.assert_allclose(draws.mean(axis=0), q, atol=4 * 0.5 / np.sqrt(20000))
    np.testing.assert_allclose(draws.var(axis=0), model.dispersion * q * (1 - q), rtol=0.05)
    # one step from the last step: the expected reward of the fixed first action, in units
    x = np.array([[1.0, (H - 1) / H]])
    start = (x, np.full((1, 4), -1), np.array([H - 1]))
    rng = np.random.default_rng(0)
    v = rollout_values(
        model, LOGGER.action_dist, *start, first_action=np.array([0]), n_rollouts=1, rng=rng
    )
    q0 = expit(model.click_logit(x, np.array([0]), np.full((1, 4), -1)))
    assert v[0] == pytest.approx(-1.0 + 2.0 * q0[0])
    assert v[0] == pytest.approx(-1.0 + 2.0 * expit(B[0] + C[0]), abs=0.1)


def test_a_binary_log_keeps_clicks_and_a_reward_outside_the_domain_is_refused() -> None:
    from offrec.ope.model_based import fit_session_model, unit_rewards

    data = env_log(world(), LOGGER, n_sessions=300, seed=2)
    data.reward = data.reward * 1.5  # outside [-1, 1] wherever |r| > 2/3
    with pytest.raises(ValueError, match=r"reward must be in the declared domain \[-1.0, 1.0\]"):
        unit_rewards(data)
    data.reward = (data.reward > 0).astype(np.float32)
    data.reward_domain = {"kind": "binary"}
    model = fit_session_model(data)
    assert (model.r_low, model.r_scale, model.dispersion) == (0.0, 1.0, 1.0)
    assert model.draw_reward(np.array([0.3, 0.3]), np.array([0.29, 0.31])).tolist() == [1, 0]
