"""The world's one-session path (``World._step_one``) is the batch path, bit for bit."""

import numpy as np
import pytest

from offrec.sim import World, WorldConfig
from offrec.sim.env import RecommenderEnv


@pytest.mark.parametrize("repeat_window", [3, 1])
def test_one_session_path_equals_the_array_path_bitwise(repeat_window):
    cfg = WorldConfig(horizon=12, repeat_window=repeat_window)
    fast, slow = RecommenderEnv(cfg), RecommenderEnv(cfg)
    slow.world.small_batch_path = False
    actions = np.random.default_rng(0).integers(0, 100, 3000)
    actions[1::3] = actions[::3]  # repeats, so the repeat penalty is exercised
    out = {id(fast): [], id(slow): []}
    for env in (fast, slow):
        env.reset(seed=4)
        ends = 0
        for a in actions:
            obs, reward, term, trunc, info = env.step(int(a))
            out[id(env)].append((obs.tobytes(), reward, term, trunc, info["click_prob"]))
            if term or trunc:
                ends += 1
                env.reset()
        assert ends > 100  # many sessions, both ways of ending
    assert out[id(fast)] == out[id(slow)]
    rewards = [r for _, r, *_ in out[id(fast)]]
    assert 0 < sum(rewards) < len(rewards)


def test_one_session_path_matches_a_batch_of_one_of_the_core():
    w = World(WorldConfig(horizon=5), seed=1)
    ref = World(WorldConfig(horizon=5), seed=1)
    ref.small_batch_path = False
    for world in (w, ref):
        rng = np.random.default_rng(3)
        batch = world.new_sessions(1, rng)
        results = []
        for a in (4, 4, 7, 4, 9):
            res = world.step(batch, np.array([a]), rng)
            results.append((res.reward[0], res.click_prob[0], res.terminated[0], res.truncated[0]))
            results.append((batch.fatigue.tobytes(), batch.recent.tobytes(), int(batch.step[0])))
            if res.terminated[0] or res.truncated[0]:
                break
        world.results = results  # type: ignore[attr-defined]
    assert w.results == ref.results  # type: ignore[attr-defined]
    assert w.results[-2][3] or w.results[-2][2]  # the session ended (here: the horizon)
