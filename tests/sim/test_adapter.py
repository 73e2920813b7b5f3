"""The gymnasium world adapter against a tiny MDP whose value is known exactly (DP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import BasePolicy
from offrec.logs import read_logs
from offrec.logs.env_collect import collect_env
from offrec.sim.adapter import GymWorld, mc_value, rollout

# Two states, two items, horizon 3. In state s, showing item a gives a click with
# probability R[s, a]; then the user leaves (terminated) with probability L[s, a], else
# moves to s' ~ P[s, a]. The observation is the one-hot state.
MU = np.array([0.6, 0.4])
R = np.array([[0.2, 0.7], [0.5, 0.1]])
L = np.array([[0.1, 0.4], [0.2, 0.05]])
P = np.array([[[0.8, 0.2], [0.3, 0.7]], [[0.5, 0.5], [0.1, 0.9]]])
H = 3


class TinyRec(gym.Env[np.ndarray, np.int64]):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2, start=10)  # items 10 and 11
        self.s = 0

    def _obs(self) -> np.ndarray:
        return np.eye(2, dtype=np.float32)[self.s]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.s = int(self.np_random.random() >= MU[0])
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action) - 10
        u = self.np_random.random(3)
        r = float(u[0] < R[self.s, a])
        leave = bool(u[1] < L[self.s, a])
        self.s = int(u[2] >= P[self.s, a, 0])
        return self._obs(), r, leave, False, {}


class StatePolicy(BasePolicy):
    """pi(a | s) = table[s, a] on one-hot observations."""

    def __init__(self, table: list[list[float]]) -> None:
        self.table = np.asarray(table, dtype=np.float64)
        self.n_actions = 2

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, np.float64) @ self.table


def dp_value(pi: np.ndarray) -> float:
    """Exact expected clicks per session: V_t(s) = sum_a pi(a|s) [R + (1-L) P V_{t+1}]."""
    v = np.zeros(2)
    for _ in range(H):
        q = R + (1 - L) * (P @ v)
        v = (pi * q).sum(axis=1)
    return float(MU @ v)


LOGGER = StatePolicy([[0.5, 0.5], [0.3, 0.7]])
TARGET = StatePolicy([[0.2, 0.8], [0.9, 0.1]])


def world(n_envs: int = 16) -> GymWorld:
    return GymWorld(TinyRec, max_steps=H, name="tiny", n_envs=n_envs)


def test_dp_value_by_hand() -> None:
    # horizon 1 check of the DP by hand: 0.6 * (0.5*0.2 + 0.5*0.7) + 0.4 * (0.3*0.5 + 0.7*0.1)
    v1 = float(MU @ (LOGGER.table * R).sum(axis=1))
    assert v1 == pytest.approx(0.6 * 0.45 + 0.4 * 0.22)
    assert dp_value(LOGGER.table) > v1


@pytest.mark.parametrize("policy", [LOGGER, TARGET])
def test_mc_value_matches_dp(policy: StatePolicy) -> None:
    mc = mc_value(world(), policy, 4000, seed=3)
    truth = dp_value(policy.table)
    assert mc.se > 0
    assert abs(mc.value - truth) <= 4 * mc.se, (mc, truth)


def test_rollout_shapes_items_and_ends() -> None:
    ro = rollout(world(), LOGGER, 300, seed=1)
    assert ro.context.dtype == np.float32 and ro.context.shape[1] == 2
    assert set(np.unique(ro.action)) <= {0, 1}  # env items 10, 11 -> action indices
    np.testing.assert_array_equal(
        ro.pscore, LOGGER.action_dist(ro.context)[np.arange(ro.action.size), ro.action]
    )
    last = np.r_[ro.session_id[1:] != ro.session_id[:-1], True]
    ends = ro.terminated | ro.truncated
    np.testing.assert_array_equal(ends, last)
    assert not (ro.terminated & ro.truncated).any()
    assert (ro.step[ro.truncated] == H - 1).all()  # truncated only by the horizon
    assert ro.terminated.any() and ro.truncated.any()
    assert np.unique(ro.session_id).size == 300


def test_same_seed_same_rollout_whatever_n_envs() -> None:
    a = rollout(world(n_envs=1), LOGGER, 40, seed=7)
    b = rollout(world(n_envs=16), LOGGER, 40, seed=7)
    c = rollout(world(n_envs=16), LOGGER, 40, seed=8)
    for name in ("context", "action", "reward", "pscore", "session_id", "step", "terminated"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.reward, c.reward) or not np.array_equal(a.action, c.action)


def test_collect_env_log_passes_summary_and_ope_recovers_dp(tmp_path: Path) -> None:
    from offrec.cli import main
    from offrec.ope import evaluate

    out = collect_env(world(), LOGGER, out=tmp_path / "log", n_sessions=4000, seed=12)
    data = read_logs(out)
    assert data.metadata["external_world"]["name"] == "tiny"
    assert main(["summary", str(out)]) == 0
    res = evaluate(out, {"target": TARGET}, estimators=["pdis", "tis"], seed=0, n_bootstrap=400)
    truth = dp_value(TARGET.table)
    assert res.mode == "session"
    for est in res.estimates:
        assert est.low <= truth <= est.high, (est, truth)
    # the target differs from the logger by much more than the interval, so the check bites
    assert abs(truth - dp_value(LOGGER.table)) > max(e.high - e.low for e in res.estimates) / 2


def test_horizon_one_is_a_bandit_log_and_ips_covers_exact(tmp_path: Path) -> None:
    from offrec.ope import evaluate

    w = GymWorld(TinyRec, max_steps=1, name="tiny-bandit")
    out = collect_env(w, LOGGER, out=tmp_path / "b", n_sessions=6000, seed=21)
    res = evaluate(out, {"target": TARGET}, estimators=["ips", "snips"], seed=0, n_bootstrap=400)
    truth = float(MU @ (TARGET.table * R).sum(axis=1))  # V = sum_s mu(s) sum_a pi(a|s) R[s, a]
    assert res.mode == "bandit"
    for est in res.estimates:
        assert est.low <= truth <= est.high, (est, truth)
    assert abs(truth - float(MU @ (LOGGER.table * R).sum(axis=1))) > 0.1


def test_same_seed_same_log(tmp_path: Path) -> None:
    a = collect_env(world(), LOGGER, out=tmp_path / "a", n_sessions=50, seed=5)
    b = collect_env(world(n_envs=3), LOGGER, out=tmp_path / "b", n_sessions=50, seed=5)
    ta = pq.read_table(a).to_pydict()
    tb = pq.read_table(b).to_pydict()
    assert ta == tb


def test_bad_inputs_name_the_field() -> None:
    class Cont(TinyRec):
        def __init__(self) -> None:
            super().__init__()
            self.action_space = gym.spaces.Box(0.0, 1.0, (1,))  # type: ignore[assignment]

    with pytest.raises(InputError, match="action_space must be Discrete"):
        GymWorld(Cont, max_steps=3)
    with pytest.raises(InputError, match="max_steps must be given"):
        GymWorld(TinyRec)
    three = StatePolicy([[1, 0], [0, 1]])
    three.n_actions = 3
    with pytest.raises(InputError, match="n_actions must equal"):
        rollout(world(), three, 2)

    class Bad(StatePolicy):
        def action_dist(self, obs: np.ndarray) -> np.ndarray:
            return np.full((obs.shape[0], 2), 0.7)

    with pytest.raises(InputError, match="summing to 1; row 0"):
        rollout(world(), Bad([[1, 0], [0, 1]]), 2)
    with pytest.raises(InputError, match="n_envs must be"):
        GymWorld(TinyRec, max_steps=3, n_envs=0)


# --- SCOPE-RL's RECEnv (optional: recgym from the scope-rl wheel) --------------------


class ItemPolicy(BasePolicy):
    """Always item ``item`` of ``n_actions``."""

    def __init__(self, item: int, n_actions: int) -> None:
        self.item, self.n_actions = item, n_actions

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return np.tile(np.eye(self.n_actions)[self.item], (obs.shape[0], 1))


class UniformPolicy(BasePolicy):
    def __init__(self, n_actions: int) -> None:
        self.n_actions = n_actions

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return np.full((obs.shape[0], self.n_actions), 1.0 / self.n_actions)


def recenv_exact_value(world: GymWorld, item: int, binary: bool) -> float:
    """Exact value of always showing ``item`` in RECEnv (noise-free state): users uniform,
    ``r_t = <s_t, v>`` (or its sigmoid, the click probability), ``s_{t+1} =
    normalize(s_t + <s_t, v> v)``; all users at once."""
    env = world.make_env().env
    s = np.asarray(env.user_feature_vector, np.float64)
    v = np.asarray(env.item_feature_vector, np.float64)[item]
    total = np.zeros(s.shape[0])
    for _ in range(int(world.max_steps or 0)):
        logit = s @ v
        total += 1 / (1 + np.exp(-logit)) if binary else logit
        s = s + logit[:, None] * v
        s /= np.linalg.norm(s, axis=1, keepdims=True)
    return float(total.mean())


@pytest.mark.parametrize("reward_type", ["continuous", "binary"])
def test_recenv_mc_value_matches_exact(reward_type: str) -> None:
    pytest.importorskip("recgym", reason="recgym (pip install scope-rl==0.2.1 --no-deps) absent")
    from offrec.sim.recgym_world import recgym_world

    w = recgym_world(step_per_episode=5, n_items=10, n_users=30, reward_type=reward_type)
    binary = reward_type == "binary"
    for item in (0, 7):
        mc = mc_value(w, ItemPolicy(item, 10), 1500, seed=4)
        truth = recenv_exact_value(w, item, binary)
        assert mc.se > 0
        assert abs(mc.value - truth) <= 4 * mc.se, (item, mc, truth)


def test_recenv_log_ends_truncated_seeded_and_ope_covers_exact(tmp_path: Path) -> None:
    pytest.importorskip("recgym", reason="recgym (pip install scope-rl==0.2.1 --no-deps) absent")
    from offrec.ope import evaluate
    from offrec.sim.recgym_world import recgym_world

    w = recgym_world(step_per_episode=3, n_items=3, n_users=20, reward_type="binary")
    a = rollout(w, UniformPolicy(3), 30, seed=2)
    b = rollout(
        recgym_world(step_per_episode=3, n_items=3, n_users=20, reward_type="binary", n_envs=1),
        UniformPolicy(3),
        30,
        seed=2,
    )
    np.testing.assert_array_equal(a.reward, b.reward)
    np.testing.assert_array_equal(a.context, b.context)
    assert not a.terminated.any() and a.truncated.sum() == 30
    assert (a.step[a.truncated] == 2).all()
    out = collect_env(w, UniformPolicy(3), out=tmp_path / "rec", n_sessions=3000, seed=9)
    assert read_logs(out).n_rows == 9000
    res = evaluate(out, {"item1": ItemPolicy(1, 3)}, estimators=["pdis"], seed=0, n_bootstrap=400)
    truth = recenv_exact_value(w, 1, binary=True)
    (est,) = res.estimates
    assert est.low <= truth <= est.high, (est, truth)


def test_recenv_continuous_log_and_bounds(tmp_path: Path) -> None:
    pytest.importorskip("recgym", reason="recgym (pip install scope-rl==0.2.1 --no-deps) absent")
    from offrec.sim.recgym_world import recgym_world

    with pytest.raises(InputError, match="reward_bounds must be given"):
        recgym_world(reward_std=0.5)
    w = recgym_world(step_per_episode=4, n_items=5, n_users=10)
    data = read_logs(collect_env(w, UniformPolicy(5), out=tmp_path / "c", n_sessions=20, seed=0))
    assert data.reward_domain == {"kind": "continuous", "low": -1.0, "high": 1.0}
    assert data.n_rows == 80 and len(np.unique(data.reward)) > 2
