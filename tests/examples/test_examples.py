"""Every tutorial step runs on a small budget and shows what docs/tutorial.md says it shows.

The scripts are imported (not run in a subprocess) so they share one interpreter's
imports; each exposes ``main(small, seed, verbose)`` returning what it printed. Checks
compare with the simulator's truth, with tolerances derived from the sample sizes.
Default-budget runs, whose claims need the full budget, are marked slow.
"""

import importlib.util
import math

import numpy as np
import pytest

from tests.examples.conftest import EXAMPLES, load_example

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_example_is_tested_and_has_a_small_budget():
    scripts = sorted(p.stem for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert len(scripts) == 9
    tested = {name.split("_", 1)[1] for name in globals() if name.startswith("test_0")}
    for stem in scripts:
        text = (EXAMPLES / f"{stem}.py").read_text()
        assert "--small" in text and "OFFREC_SMALL" in text, stem
        assert any(t.startswith(stem[:2]) for t in tested), f"{stem} has no test"


def test_01_env_random_play_matches_the_uniform_truth():
    r = load_example("01_env").main(small=True, verbose=False)
    assert r["obs_shape"] == (18,)
    clicks, truth = r["clicks"], r["truth"]
    se = math.hypot(clicks.std(ddof=1) / math.sqrt(clicks.size), truth.stderr)
    assert abs(clicks.mean() - truth.value) < 4 * se
    assert 1 < r["lengths"].mean() <= 10  # sessions, not single decisions


def test_02_epsilon_greedy_learns_the_values_within_their_standard_errors():
    ex = load_example("02_epsilon_greedy")
    agent = ex.learn(n_steps=1_000, epsilon=0.1, seed=0)
    p = np.asarray(ex.TRUE_PROBS)
    n = agent.counts
    assert n.sum() == 1_000 and np.all(n > 0)
    # incremental means are the sample means of each item's clicks
    assert np.allclose(agent.values, agent.sums / n, atol=1e-12)
    # |Q_a - p_a| within 3 binomial standard errors sqrt(p (1 - p) / n_a)
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(agent.values - p) <= 3 * se), (agent.values, se)
    assert int(np.argmax(agent.values)) == 2


def test_02_example_reports_exact_values_of_what_it_learned():
    r = load_example("02_epsilon_greedy").main(small=True, verbose=False)
    p = np.array([0.2, 0.5, 0.7])
    assert r["pick"] == int(np.argmax(r["values"])) == 2
    assert r["greedy_value"] == pytest.approx(p[r["pick"]], abs=1e-12)
    # acting: greedy with probability 1 - eps, uniform with eps (no ties in the values)
    assert r["acting_value"] == pytest.approx(0.9 * p[r["pick"]] + 0.1 * p.mean(), abs=1e-12)
    assert 0.0 <= r["share_best"] <= 1.0


def test_03_sb3_agents_small_budget():
    pytest.importorskip("stable_baselines3")
    r = load_example("03_sb3_agents").main(small=True, verbose=False)
    for algo in ("ppo", "dqn"):
        truth = r[algo]["truth"]
        assert r[algo]["steps"] >= 2_000 and 0 < truth.value < 10
        # the reported value is the simulator's truth for the returned policy
        world = r[algo]["policy"].model.get_env().envs[0].unwrapped.world
        again = world.true_value(r[algo]["policy"], n_sessions=1_000, seed=0)
        assert again.value == truth.value
    assert r["myopic"].value > r["uniform"].value + 5 * math.hypot(
        r["myopic"].stderr, r["uniform"].stderr
    )


@pytest.mark.slow
def test_03_sb3_agents_default_budget_beat_random_play():
    pytest.importorskip("stable_baselines3")
    r = load_example("03_sb3_agents").main(small=False, verbose=False)
    for algo in ("ppo", "dqn"):
        t, u = r[algo]["truth"], r["uniform"]
        assert t.value > u.value + 5 * math.hypot(t.stderr, u.stderr), algo


def test_04_bandit_vs_rl_small_budget(tmp_path):
    pytest.importorskip("stable_baselines3")
    r = load_example("04_bandit_vs_rl").main(small=True, verbose=False, out=tmp_path / "o")
    table = r["table"].set_index("learner")
    assert set(table.index) == {"epsilon-greedy", "linucb", "ppo"}
    assert (table["interactions"] >= 6_000).all()
    # the contextual bandit beats the context-free one clearly, even on a small budget
    lin, eps = table.loc["linucb"], table.loc["epsilon-greedy"]
    assert lin["clicks/episode"] > eps["clicks/episode"] + 4 * math.hypot(
        lin["±clicks"], eps["±clicks"]
    )
    assert (tmp_path / "o" / "value_curves.png").is_file()
    assert (tmp_path / "o" / "models" / "ppo.zip").is_file()


def test_05_contextual_bandits_use_the_profile():
    r = load_example("05_contextual_bandits").main(small=True, verbose=False)
    two = r["two_types"]
    # each type's best item is worth 0.7; LinUCB finds it for both types (exact truth)
    assert two["LinUCB (contextual)"] == pytest.approx(0.7, abs=1e-12)
    assert two["best item per user (oracle)"] == pytest.approx(0.7, abs=1e-12)
    assert two["best single item (oracle)"] == pytest.approx(0.5, abs=1e-12)
    # no context-free policy can beat the best single item
    assert two["epsilon-greedy (context-free)"] <= two["best single item (oracle)"] + 1e-12
    big = r["default"]
    assert big["epsilon-greedy (context-free)"] <= big["best single item (oracle)"] + 1e-12
    assert big["LinUCB (contextual)"] > 0.8 * big["best item per user (oracle)"]


def test_06_boredom_makes_lookahead_beat_myopic():
    r = load_example("06_sessions_boredom").main(small=True, verbose=False)
    assert np.all(np.diff(r["repeat_probs"]) < 0)  # showing the same item again and again
    t = r["table"].set_index("policy")
    my, la = t.loc["myopic oracle"], t.loc["lookahead oracle"]
    for col in ("clicks_per_session", "session_length"):
        se = math.hypot(my[col + "_se"], la[col + "_se"])
        assert la[col] > my[col] + 4 * se, col


def test_07_saved_models_act_like_the_originals(tmp_path):
    r = load_example("07_save_load").main(small=True, verbose=False, out=tmp_path)
    assert r["same_bandit"] is True
    if importlib.util.find_spec("stable_baselines3") is not None:
        assert r["same_sb3"] is True


def test_08_recommendation_is_good_for_a_real_user():
    r = load_example("08_recommend").main(small=True, verbose=False)
    table = r["table"]
    assert list(table["rank"]) == [1, 2, 3, 4, 5]
    assert np.all(np.diff(table["score"].to_numpy()) <= 0)
    # a random pick would be the user's #50 of 100 on average
    assert r["rank"] <= 10 and r["q_top"] > 3 * r["q_mean"]


def test_09_offline_small_budget_on_policy_estimate_matches_truth(tmp_path):
    pytest.importorskip("d3rlpy")
    r = load_example("09_offline").main(small=True, verbose=False, out=tmp_path)
    est = r["estimates"].set_index(["policy", "estimator"])
    row = est.loc[("logger", "pdis")]
    # on the logger itself PDIS is the plain mean of clicks per held-out session
    half_se = (row["high"] - row["low"]) / (2 * 1.96)
    assert abs(row["value"] - row["truth"]) < 4 * math.hypot(half_se, row["truth_se"])
    assert set(est.index.get_level_values("policy")) == {"logger", "CQL"}


@pytest.mark.slow
def test_09_offline_default_budget_cql_beats_the_logger(tmp_path):
    pytest.importorskip("d3rlpy")
    r = load_example("09_offline").main(small=False, verbose=False, out=tmp_path)
    assert r["gain"] > 4 * r["gain_se"]
