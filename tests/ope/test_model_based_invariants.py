"""`mb`'s observation update recognises a norm invariant of the next contexts (issue 26:
SCOPE-RL's RECEnv re-normalises its state, which a linear update cannot follow): a tiny
gymnasium world with RECEnv's dynamics, the invariant checked exactly and the value
against Monte-Carlo truth."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from scipy.special import expit

from offrec.core.policy import BasePolicy
from offrec.logs.env_collect import env_log
from offrec.ope.model_based import fit_session_model
from offrec.sim.adapter import GymWorld, mc_value

# Three item vectors in R^3; the state s is a unit vector; showing item a gives a click
# with probability sigmoid(3 <s, v_a>) and moves s to normalize(s + <s, v_a> v_a)
# (RECEnv's preference dynamics, Dean & Morgenstern 2022). The first observation is s_0
# scaled by 0.3 (as RECEnv's first observation is not a unit vector); the later ones
# are unit vectors. Horizon 6.
V = np.array([[0.9, 0.3, 0.0], [-0.5, 0.8, 0.2], [0.1, -0.4, 0.9]])
H = 6


class Sphere(gym.Env[np.ndarray, np.int64]):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.s = np.ones(3) / np.sqrt(3)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        s = self.np_random.normal(size=3)
        self.s = s / np.linalg.norm(s)
        return (0.3 * self.s).astype(np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        v = V[int(action)]
        click = float(self.np_random.random() < expit(3.0 * self.s @ v))
        s = self.s + (self.s @ v) * v
        self.s = s / np.linalg.norm(s)
        return self.s.astype(np.float32), click, False, False, {}


class Uniform(BasePolicy):
    n_actions = 3

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return np.full((len(obs), 3), 1 / 3)


class Greedy(BasePolicy):
    """The item most aligned with the (observed) state."""

    n_actions = 3

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return np.eye(3)[np.argmax(np.asarray(obs, np.float64) @ V.T, axis=1)]


def _world() -> GymWorld:
    return GymWorld(Sphere, max_steps=H, name="sphere", n_envs=32)


def test_the_norm_invariant_is_recognised_and_kept_by_the_rollouts() -> None:
    data = env_log(_world(), Uniform(), n_sessions=600, seed=2)
    model = fit_session_model(data)
    assert abs(model.next_norm - 1.0) < 1e-6
    rng = np.random.default_rng(0)
    x = np.asarray(data.context[:200], np.float64)
    nxt = model.next_context(x, np.asarray(data.action[:200]), np.ones(200), rng)
    np.testing.assert_allclose(np.linalg.norm(nxt, axis=1), 1.0, atol=1e-6)
    # the residual spread is measured after the projection: well under the linear one's
    assert model.noise_std.max() < 0.5 * x.std(axis=0).max()
    # no invariant when the next contexts' norms vary (scaled by a random factor)
    scaled = data.subset(np.arange(data.n_rows))
    scaled.context[:] = scaled.context * np.random.default_rng(1).uniform(
        0.5, 1.0, (data.n_rows, 1)
    ).astype(np.float32)
    assert fit_session_model(scaled).next_norm == 0.0


def test_the_projection_halves_mb_s_error_on_the_sphere() -> None:
    """The greedy target against Monte-Carlo truth (8,000 episodes, se about 0.014), rolled
    out in the model fitted on a 1,500-session uniform log with and without the
    projection: a linear update without it drifts off the sphere, where the click model
    extrapolates (4.19 against the truth 5.17 when measured); with it the error is under
    half as large (4.84) and under 10% of the value. What is left is the update's
    per-action linear map :math:`(I + v_a v_a^T)`, outside the linear model class (the
    uniform logger's own value, 3.00 on-policy, is recovered either way)."""
    import dataclasses

    from offrec.ope.model_based import rollout_values
    from offrec.ope.selection import session_returns
    from offrec.ope.session_data import session_structure

    data = env_log(_world(), Uniform(), n_sessions=1500, seed=3)
    truth = mc_value(_world(), Greedy(), 8000, seed=9)
    model = fit_session_model(data)
    st = session_structure(data)
    start = (data.context[st.first_row], st.recent[st.first_row], st.step[st.first_row])
    err = {}
    for norm in (model.next_norm, 0.0):
        m = dataclasses.replace(model, next_norm=norm)
        v = rollout_values(m, Greedy().action_dist, *start, rng=np.random.default_rng(0)).mean()
        u = rollout_values(m, Uniform().action_dist, *start, rng=np.random.default_rng(0)).mean()
        on = session_returns(data)[1]
        assert abs(u - on.mean()) < 3 * on.std() / np.sqrt(on.size)
        err[norm > 0] = abs(v - truth.value)
    assert err[True] < 0.5 * err[False]
    assert err[True] < 0.1 * truth.value
