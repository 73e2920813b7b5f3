"""Online learning in the default bandit world: learning curves against the oracles."""

import numpy as np
import pytest

from offrec.policies.bandits import (
    UCB1,
    BernoulliTS,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    LogisticEpsilonGreedy,
)
from offrec.policies.online import LearningCurve, run_online
from offrec.report.learning_curves import plot_learning_curves
from offrec.sim import BestItemOracle, MyopicOracle, World, WorldConfig


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig(), seed=0)


@pytest.fixture(scope="module")
def values(world):
    return {
        "oracle": world.true_value(MyopicOracle(world)).value,
        "best_item": world.true_value(BestItemOracle(world)).value,
    }


def _se(p, n):
    return float(np.sqrt(p * (1 - p) / n))


def test_linucb_reaches_90_percent_of_oracle_after_100k_decisions(world, values):
    # measured (seed 0): expected windowed CTR 0.398 = 91.3% of the oracle's 0.436 on the
    # same users; realized 0.412; greedy policy after learning 0.403 (92% of 0.437)
    learner = LinUCB(100, world.context_dim)
    curve = run_online(world, learner, 100_000, batch_size=1000, seed=0)
    assert curve.n_decisions == 100_000 and curve.window == 5000
    assert curve.final_expected_ctr >= 0.90 * curve.final_oracle_ctr
    # realized clicks over the 5000-decision window: same bar, up to 3 standard errors
    bar = 0.90 * curve.final_oracle_ctr
    assert curve.final_ctr >= bar - 3 * _se(bar, curve.window)
    assert world.true_value(learner.exploit()).value >= 0.90 * values["oracle"]


def test_epsilon_greedy_converges_within_5_percent_of_best_item(world, values):
    # measured (seed 0): greedy value 0.2173 (99.6% of the best item's 0.2181); expected
    # windowed CTR 0.210 (96.3%); exploring 3% of the time costs about 0.03 * (0.218 - 0.088)
    learner = EpsilonGreedy(100, epsilon=0.03)
    curve = run_online(world, learner, 100_000, batch_size=1000, seed=0)
    best = values["best_item"]
    assert world.true_value(learner.exploit()).value >= 0.95 * best
    assert curve.final_expected_ctr >= 0.95 * best


def test_contextual_learners_clearly_beat_the_best_single_item(world, values):
    # no context-free policy can beat the best single item (0.218); after only 30k decisions
    # LinTS / logistic are at ~0.37 (measured 0.377 / 0.364), the oracle at 0.437
    best = values["best_item"]
    for learner in (
        LinTS(100, world.context_dim),
        LogisticEpsilonGreedy(100, world.context_dim, 0.05),
    ):
        curve = run_online(world, learner, 30_000, batch_size=1000, seed=1)
        assert curve.final_expected_ctr >= 1.5 * best, type(learner).__name__


@pytest.mark.slow
def test_all_learners_100k_contextual_beat_non_contextual(world, values):
    finals = {}
    for name, learner in {
        "eps": EpsilonGreedy(100, 0.05),
        "ts": BernoulliTS(100),
        "ucb1": UCB1(100),
        "linucb": LinUCB(100, 18),
        "lints": LinTS(100, 18),
        "logistic": LogisticEpsilonGreedy(100, 18, 0.05),
    }.items():
        curve = run_online(world, learner, 100_000, batch_size=1000, seed=0)
        finals[name] = curve.final_expected_ctr
    worst_contextual = min(finals[k] for k in ("linucb", "lints", "logistic"))
    best_plain = max(finals[k] for k in ("eps", "ts", "ucb1"))
    assert best_plain <= values["best_item"] + 1e-9
    assert worst_contextual >= 1.5 * best_plain, finals


def test_learning_curve_bookkeeping(world):
    learner = EpsilonGreedy(100, 0.1)
    curve = run_online(world, learner, 2500, batch_size=1000, seed=3, window=1500)
    np.testing.assert_array_equal(curve.decisions, [1000, 2000, 2500])  # last round cut
    assert np.all(curve.oracle_clicks >= curve.expected_clicks)  # the oracle is the max
    assert np.all(np.diff(curve.cumulative_regret) >= 0)
    # the learner saw every decision
    assert learner.counts.sum() == 2500
    # windows: fewest last rounds holding >= 1500 decisions
    c = curve.clicks
    np.testing.assert_allclose(
        curve.windowed_ctr, [c[0] / 1000, c[:2].sum() / 2000, c[1:].sum() / 1500]
    )
    d = curve.to_dict()
    again = LearningCurve.from_dict(d)
    np.testing.assert_array_equal(again.windowed_expected_ctr, curve.windowed_expected_ctr)
    assert d["summary"]["n_decisions"] == 2500 and d["learner"]["type"] == "epsilon-greedy"


def test_run_online_is_deterministic_by_seed(world):
    curves = [run_online(world, LinTS(100, 18, seed=2), 3000, 500, seed=5) for _ in range(2)]
    other = run_online(world, LinTS(100, 18, seed=2), 3000, 500, seed=6)
    np.testing.assert_array_equal(curves[0].clicks, curves[1].clicks)
    np.testing.assert_array_equal(curves[0].expected_clicks, curves[1].expected_clicks)
    assert not np.array_equal(curves[0].expected_clicks, other.expected_clicks)


def test_run_online_in_session_mode_refills_finished_sessions():
    world = World(WorldConfig(horizon=5, n_users=500), seed=1)
    learner = LinUCB(100, world.context_dim)
    curve = run_online(world, learner, 2000, batch_size=100, seed=0)
    assert curve.n_decisions == 2000 and len(curve.decisions) == 20
    assert np.all(curve.oracle_clicks >= curve.expected_clicks - 1e-12)
    # fatigue features reached the learner: some observations had non-zero fatigue
    assert learner.A[:, 9:17, 9:17].any()


def test_plot_learning_curves_writes_a_png(tmp_path, world, values):
    curves = {
        name: run_online(world, learner, 4000, 1000, seed=0)
        for name, learner in {
            "epsilon-greedy": EpsilonGreedy(100),
            "LinUCB": LinUCB(100, 18),
        }.items()
    }
    path = plot_learning_curves(
        curves,
        tmp_path / "plots" / "curves.png",
        title="test",
        references={"best single item": values["best_item"]},
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no temp files left


def test_run_online_bad_input(world):
    with pytest.raises(
        ValueError, match=r"learner.n_actions must equal the world's n_items=100; got 5"
    ):
        run_online(world, LinUCB(5, 18), 10, 5)
    with pytest.raises(ValueError, match=r"n_steps must be >= 1; got 0"):
        run_online(world, LinUCB(100, 18), 0, 5)
    with pytest.raises(
        ValueError, match=r"obs must have 4 columns \(the model's context_dim\); got 18"
    ):
        run_online(world, LinUCB(100, 4), 10, 5)
    with pytest.raises(ValueError, match=r"curves must hold at least one LearningCurve"):
        plot_learning_curves({}, "unused.png")
