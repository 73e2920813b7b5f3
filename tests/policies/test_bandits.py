"""Bandit learners: convergence on a 3-arm Bernoulli problem, conformance, batching, bad input."""

import numpy as np
import pytest

from offrec.core.policy import SparseDist
from offrec.policies import Head
from offrec.policies.bandits import (
    UCB1,
    BernoulliTS,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    LogisticEpsilonGreedy,
)
from offrec.reward.newton import MAX_NEWTON_STEP, ArmGroups
from offrec.testing import check_policy

PROBS = np.array([0.2, 0.5, 0.7])


def run_bernoulli(learner, n_steps, seed, batch_size=1):
    """A tiny simulator (no World): each step the learner picks arms, clicks ~ Bernoulli(PROBS)."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((batch_size, 1))
    pulls = []
    for _ in range(n_steps):
        actions, _ = learner.sample(obs, rng)
        rewards = (rng.random(batch_size) < PROBS[actions]).astype(float)
        learner.partial_fit(obs, actions, rewards)
        pulls.append(actions)
    return np.concatenate(pulls)


def all_learners(n_actions=5, context_dim=4):
    """Every registered bandit learner (the registry, not a hand-written list: a new
    learner cannot escape the conformance tests), seeded where it draws."""
    import inspect

    from offrec.policies.registry import BANDIT_LEARNERS, LEARNERS, make_learner

    out = {}
    for name in BANDIT_LEARNERS:
        seeded = "seed" in inspect.signature(LEARNERS[name]).parameters
        out[name] = make_learner(name, n_actions, context_dim, **({"seed": 1} if seeded else {}))
    return out


def feedback(n, n_actions=5, context_dim=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, context_dim))
    a = rng.integers(0, n_actions, n)
    p = 1 / (1 + np.exp(-(2 * x[:, 0] - 1 + 0.3 * a - 1)))
    r = (rng.random(n) < p).astype(float)
    return x, a, r


# -- the 3-arm example -----------------------------------------------------------------------
def test_epsilon_greedy_learns_values_within_4_se_and_settles_on_best():
    learner = EpsilonGreedy(3, epsilon=0.1)
    pulls = run_bernoulli(learner, 4000, seed=0)
    n = learner.counts
    se = np.sqrt(PROBS * (1 - PROBS) / n)
    assert n.min() >= 50  # exploration reached every arm
    assert np.all(np.abs(learner.values - PROBS) <= 4 * se), (learner.values, se)
    # the incremental means are the plain sample means
    np.testing.assert_allclose(learner.values, learner.sums / learner.counts)
    # settles: greedy choice is the best arm, and the last 1000 pulls are mostly it
    assert learner.exploit().action_dist(np.zeros((1, 1)))[0].argmax() == 2
    share = np.mean(pulls[-1000:] == 2)
    expected = 1 - 0.1 + 0.1 / 3
    assert share >= expected - 4 * np.sqrt(expected * (1 - expected) / 1000)


def test_epsilon_greedy_batches_equal_sequential_incremental_means():
    x, a, r = feedback(300, n_actions=3)
    one = EpsilonGreedy(3, initial_value=0.5)
    for i in range(300):
        one.partial_fit(x[i : i + 1], a[i : i + 1], r[i : i + 1])
    batched = EpsilonGreedy(3, initial_value=0.5)
    for lo in range(0, 300, 64):
        batched.partial_fit(x[lo : lo + 64], a[lo : lo + 64], r[lo : lo + 64])
    # textbook sequential update Q <- Q + (r - Q) / n, by hand
    q, cnt = np.full(3, 0.5), np.zeros(3)
    for ai, ri in zip(a, r, strict=True):
        cnt[ai] += 1
        q[ai] += (ri - q[ai]) / cnt[ai]
    np.testing.assert_allclose(one.values, q)
    np.testing.assert_allclose(batched.values, q)


@pytest.mark.parametrize(
    "make", [lambda: UCB1(3), lambda: BernoulliTS(3, n_draws=200, seed=0)], ids=["ucb1", "ts"]
)
def test_ucb1_and_thompson_settle_on_best_arm(make):
    learner = make()
    pulls = run_bernoulli(learner, 5000, seed=1)
    # UCB1 pulls arm 1 (gap 0.2) about 2 ln(t) / 0.04 times in all, ~11 times in the last 1000
    assert np.mean(pulls[-1000:] == 2) >= 0.9
    assert learner.predict(np.zeros((1, 1)))[0].argmax() == 2
    counts = np.bincount(pulls, minlength=3)
    n = counts[2]
    assert abs(learner.predict(np.zeros((1, 1)))[0, 2] - 0.7) <= 4 * np.sqrt(0.21 / n) + 1 / n


def test_ucb1_tries_every_arm_first_and_index_formula():
    learner = UCB1(4, c=2.0)
    assert np.allclose(learner.action_dist(np.zeros((2, 1))), 0.25)  # all untried: tie
    learner.partial_fit(None, np.array([0, 0, 1]), np.array([1.0, 0.0, 1.0]))
    dist = learner.action_dist(np.zeros((1, 1)))[0]
    np.testing.assert_allclose(dist, [0, 0, 0.5, 0.5])  # untried arms first
    learner.partial_fit(None, np.array([2, 3]), np.array([0.0, 0.0]))
    t = 5
    expected = np.array([0.5, 1.0, 0, 0]) + np.sqrt(2 * np.log(t) / np.array([2, 1, 1, 1]))
    np.testing.assert_allclose(learner.indices(), expected)


def test_bernoulli_ts_posterior_and_win_probabilities():
    learner = BernoulliTS(2, n_draws=20_000, seed=3)
    learner.partial_fit(
        None, np.array([0] * 10 + [1] * 10), np.array([1.0] * 8 + [0.0] * 2 + [1.0] * 2 + [0.0] * 8)
    )
    np.testing.assert_allclose(learner.predict(np.zeros((1, 1)))[0], [9 / 12, 3 / 12])
    # exact P(Beta(9,3) > Beta(3,9)) = int f_{9,3}(x) F_{3,9}(x) dx, by quadrature
    from scipy import integrate, stats

    exact, _ = integrate.quad(lambda x: stats.beta(9, 3).pdf(x) * stats.beta(3, 9).cdf(x), 0, 1)
    p = learner.action_dist(np.zeros((1, 1)))[0]
    # a Monte-Carlo frequency over n_draws draws: 4 standard errors
    se = np.sqrt(exact * (1 - exact) / learner.n_draws)
    assert abs(p[0] - exact) < 4 * se, (p[0], exact, se)
    assert p[0] + p[1] == 1.0


# -- contextual learners -----------------------------------------------------------------------
def test_linucb_matches_textbook_formulas():
    x, a, r = feedback(200, n_actions=3, context_dim=2)
    learner = LinUCB(3, 2, alpha=0.7, reg=2.0)
    learner.partial_fit(x[:120], a[:120], r[:120])
    learner.partial_fit(x[120:], a[120:], r[120:])
    phi = np.c_[np.ones(len(x)), x]
    q = np.array([[0.3, 0.9], [0.5, 0.1]])
    phq = np.c_[np.ones(2), q]
    expected = np.empty((2, 3))
    for arm in range(3):
        m = a == arm
        A = 2.0 * np.eye(3) + phi[m].T @ phi[m]
        b = phi[m].T @ r[m]
        theta = np.linalg.solve(A, b)
        bonus = np.sqrt(np.einsum("nd,de,ne->n", phq, np.linalg.inv(A), phq))
        expected[:, arm] = phq @ theta + 0.7 * bonus
    np.testing.assert_allclose(learner.ucb(q), expected, rtol=1e-10)
    assert np.array_equal(learner.action_dist(q).argmax(axis=1), expected.argmax(axis=1))


def test_grouped_gram_paths_agree_with_naive_sums():
    rng = np.random.default_rng(0)
    for n, k in ((50, 10), (5000, 3)):  # few rows per arm (outer products), many (BLAS per arm)
        x, a, w = rng.random((n, 4)), rng.integers(0, k, n), rng.random(n)
        g = ArmGroups(a)
        xs, ws = g.sort(x, w)
        got = g.gram(xs, ws, block=16)
        for j, arm in enumerate(g.arms):
            m = a == arm
            np.testing.assert_allclose(got[j], (x[m] * w[m, None]).T @ x[m])


def test_weights_act_as_repeated_rows():
    x, a, r = feedback(100)
    twice = LinUCB(5, 4).partial_fit(np.r_[x, x], np.r_[a, a], np.r_[r, r])
    weighted = LinUCB(5, 4).partial_fit(x, a, r, weight=np.full(100, 2.0))
    np.testing.assert_allclose(weighted.A, twice.A)
    np.testing.assert_allclose(weighted.b, twice.b)


def test_logistic_fit_matches_sklearn_per_arm():
    from sklearn.linear_model import LogisticRegression

    x, a, r = feedback(3000, n_actions=3, context_dim=2)
    learner = LogisticEpsilonGreedy(3, 2, reg=1.0).fit(x, a, r)
    for arm in range(3):
        m = a == arm
        # our prior penalizes the intercept too: emulate with an explicit constant column
        clf = LogisticRegression(C=1.0, fit_intercept=False, tol=1e-10, max_iter=1000)
        clf.fit(np.c_[np.ones(m.sum()), x[m]], r[m])
        np.testing.assert_allclose(learner.mean[arm], clf.coef_[0], atol=1e-5)


def test_logistic_online_updates_approach_full_fit():
    x, a, r = feedback(20_000, n_actions=3, context_dim=2, seed=4)
    full = LogisticEpsilonGreedy(3, 2).fit(x, a, r)
    online = LogisticEpsilonGreedy(3, 2)
    for lo in range(0, len(a), 1000):
        online.partial_fit(x[lo : lo + 1000], a[lo : lo + 1000], r[lo : lo + 1000])
    grid = np.random.default_rng(1).random((200, 2))
    assert np.abs(online.predict(grid) - full.predict(grid)).max() < 0.02


def test_lints_action_dist_is_probability_of_winning_draws():
    x, a, r = feedback(500)
    learner = LinTS(5, 4, n_draws=256, seed=5).partial_fit(x, a, r)
    q = x[:7]
    draws = learner.posterior_draws()  # (m, k, d)
    phi = np.c_[np.ones(7), q]
    winners = np.einsum("nd,mkd->nmk", phi, draws).argmax(axis=2)
    expected = np.stack([np.bincount(w, minlength=5) / 256 for w in winners])
    np.testing.assert_allclose(learner.action_dist(q), expected)
    # deterministic given the state; a new update gives new draws
    np.testing.assert_array_equal(learner.action_dist(q), learner.action_dist(q))
    before = learner.action_dist(q)
    learner.partial_fit(x[:10], a[:10], r[:10])
    assert not np.array_equal(before, learner.action_dist(q))


# -- conformance -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(all_learners()))
def test_every_learner_passes_check_policy_fresh_and_fitted(name):
    learner = all_learners()[name]
    check_policy(learner, obs_dim=4)
    x, a, r = feedback(400)
    learner.partial_fit(x, a, r)
    check_policy(learner, obs_dim=4)
    check_policy(learner.exploit(), obs_dim=4)
    check_policy(learner.exploit(Head("softmax", temperature=0.1)), obs_dim=4)
    spec = learner.spec()
    assert spec["type"] == type(learner).kind and spec["n_actions"] == 5


@pytest.mark.parametrize("name", list(all_learners()))
def test_same_seed_same_learning(name):
    runs = []
    for _ in range(2):
        learner = all_learners()[name]
        rng = np.random.default_rng(11)
        x = rng.random((64, 4))
        for _ in range(5):
            actions, pscores = learner.sample(x, rng)
            learner.partial_fit(x, actions, (rng.random(64) < 0.3).astype(float))
        runs.append((actions, pscores, learner.action_dist(x)))
    for got, ref in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(got, ref)


def test_predict_is_point_estimate_and_exploit_uses_it():
    x, a, r = feedback(600)
    learner = LinUCB(5, 4, alpha=5.0).partial_fit(x, a, r)
    greedy = learner.exploit()
    est = learner.predict(x[:20])
    np.testing.assert_array_equal(greedy.action_dist(x[:20]).argmax(axis=1), est.argmax(axis=1))
    assert learner.explore and not greedy.explore  # the original is untouched


@pytest.mark.parametrize("name", list(all_learners()))
@pytest.mark.parametrize("explore", [True, False])
def test_compact_distribution_is_the_dense_one(name, explore):
    """action_dist_compact: the head's factored form when exploiting (float32 scores for the
    linear learners, checked against the float64 dense distribution), the dense array when
    exploring; either way the numbers of action_dist, bit for bit."""
    x, a, r = feedback(3000, seed=2)
    learner = all_learners()[name]
    learner.partial_fit(None if not learner.contextual else x, a, r)
    for head in (Head(), Head("epsilon_greedy", epsilon=0.2), Head("softmax", temperature=0.5)):
        policy = learner if explore else learner.exploit(head)
        obs = np.vstack([x, np.repeat(x[:3], 2, axis=0)])  # repeated rows: identical scores
        got = policy.action_dist_compact(obs)
        dense = got if isinstance(got, np.ndarray) else got.dense()
        np.testing.assert_array_equal(dense, policy.action_dist(obs))
        if getattr(policy, "sparse_form", False):  # candidates + floor, never dense
            assert isinstance(got, SparseDist)
        else:
            assert isinstance(got, np.ndarray) == (explore or head.kind == "softmax")


# -- bad input ---------------------------------------------------------------------------------
BAD_FEEDBACK = [
    (
        "action out of range",
        {"action": np.array([0, 5, 1])},
        r"action must be in \[0, 5\); row 1 has 5",
    ),
    (
        "negative action",
        {"action": np.array([0, -1, 1])},
        r"action must be in \[0, 5\); row 1 has -1",
    ),
    (
        "float actions",
        {"action": np.array([0.0, 1.0, 1.0])},
        r"action must be integers; got dtype float64",
    ),
    (
        "2-D action",
        {"action": np.zeros((3, 1), int)},
        r"action must be a 1-D array \(n,\); got shape \(3, 1\)",
    ),
    (
        "nan reward",
        {"reward": np.array([0.0, np.nan, 1.0])},
        r"reward must be finite; row 1 has nan",
    ),
    (
        "short reward",
        {"reward": np.array([0.0, 1.0])},
        r"reward must have shape \(3,\) like action; got \(2,\)",
    ),
    (
        "wrong context width",
        {"context": np.zeros((3, 7))},
        r"context must have 4 columns \(the model's context_dim\); got 7",
    ),
    ("context rows", {"context": np.zeros((2, 4))}, r"context must have 3 rows like action; got 2"),
    (
        "nan context",
        {"context": np.array([[0, 0, 0, 0], [0, np.inf, 0, 0], [0, 0, 0, 0]])},
        r"context must be finite; row 1 has",
    ),
    (
        "1-D context",
        {"context": np.zeros(3)},
        r"context must be a 2-D array \(n, d\); got shape \(3,\)",
    ),
    (
        "negative weight",
        {"weight": np.array([1.0, -1.0, 1.0])},
        r"weight must be finite and >= 0; row 1 has -1.0",
    ),
    (
        "nan weight",
        {"weight": np.array([1.0, 1.0, np.nan])},
        r"weight must be finite and >= 0; row 2 has nan",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), BAD_FEEDBACK, ids=[c[0] for c in BAD_FEEDBACK]
)
def test_bad_feedback_is_a_clear_value_error(case, change, message):
    args = {
        "context": np.zeros((3, 4)),
        "action": np.array([0, 1, 2]),
        "reward": np.array([0.0, 1.0, 0.0]),
        "weight": None,
    }
    args.update(change)
    learner = LinUCB(5, 4)
    before = learner.get_state()
    with pytest.raises(ValueError, match=message):
        learner.partial_fit(**args)
    for key, value in before.items():  # nothing was half-applied
        np.testing.assert_array_equal(learner.get_state()[key], value)


def test_bernoulli_and_logistic_need_rewards_in_unit_interval():
    with pytest.raises(
        ValueError, match=r"reward must be in \[0, 1\] for BernoulliTS; row 0 has 2.0"
    ):
        BernoulliTS(3).partial_fit(None, np.array([0]), np.array([2.0]))
    with pytest.raises(
        ValueError, match=r"reward must be in \[0, 1\] for LogisticEpsilonGreedy; row 1 has -1.0"
    ):
        LogisticEpsilonGreedy(3, 2).partial_fit(
            np.zeros((2, 2)), np.array([0, 1]), np.array([0.0, -1.0])
        )


def test_bad_obs_and_parameters():
    with pytest.raises(
        ValueError, match=r"obs must have 4 columns \(the model's context_dim\); got 3"
    ):
        LinUCB(5, 4).action_dist(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"obs must be finite; row 0 has"):
        LinTS(5, 4).action_dist(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match=r"obs must be a 2-D array \(n, d\); got shape \(4,\)"):
        EpsilonGreedy(5).action_dist(np.zeros(4))
    with pytest.raises(ValueError, match=r"epsilon must be <= 1.0; got 1.5"):
        EpsilonGreedy(5, epsilon=1.5)
    with pytest.raises(ValueError, match=r"n_actions must be >= 1; got 0"):
        UCB1(0)
    with pytest.raises(ValueError, match=r"reg must be > 0.0; got 0.0"):
        LinUCB(5, 4, reg=0.0)
    with pytest.raises(ValueError, match=r"context is required by a contextual learner; got None"):
        LinUCB(5, 4).partial_fit(None, np.array([0]), np.array([1.0]))


def _scalar_newton(b, m, prec, r, n_iter):
    """Newton on the intercept of a 1-parameter ridge logistic model with all x = 0, written
    from the textbook formulas with Python floats: an independent check of the batched solver.
    Returns the iterates and the uncapped steps."""
    import math

    iterates, raw = [b], []
    for _ in range(n_iter):
        p = 1.0 / (1.0 + math.exp(-b))
        grad = prec * (b - m) - sum(ri - p for ri in r)
        hess = prec + len(r) * p * (1.0 - p)
        step = grad / hess
        raw.append(step)
        b -= max(-MAX_NEWTON_STEP, min(MAX_NEWTON_STEP, step))
        iterates.append(b)
    return iterates, raw


def test_logistic_newton_steps_are_capped_far_from_the_optimum():
    # a start far out on the flat part of the sigmoid: a plain Newton step would jump far away
    learner = LogisticEpsilonGreedy(2, 1, reg=1e-4)
    learner.mean[0] = [10.0, 0.0]
    learner.precision[0] = 1e-4 * np.eye(2)
    x, a, r = np.zeros((200, 1)), np.zeros(200, int), (np.arange(200) % 2).astype(float)
    iterates, raw = _scalar_newton(10.0, 10.0, 1e-4, r.tolist(), n_iter=2)
    assert min(abs(s) for s in raw) > MAX_NEWTON_STEP  # both steps hit the cap
    learner.partial_fit(x, a, r)  # n_newton=2 capped steps towards the optimum near 0
    np.testing.assert_allclose(learner.mean[0], [iterates[-1], 0.0], rtol=1e-12)
    learner.fit(x, a, r)  # from the prior N(0, 1e4 I): converges to logit(0.5) = 0
    np.testing.assert_allclose(learner.mean[0], [0.0, 0.0], atol=1e-8)


def test_logistic_newton_uncapped_steps_are_plain_newton():
    # near the optimum no step is capped: each is exactly gradient / Hessian
    learner = LogisticEpsilonGreedy(1, 1, reg=0.5, n_newton=3)
    learner.mean[0] = [1.5, 0.0]
    x, a = np.zeros((50, 1)), np.zeros(50, int)
    r = (np.arange(50) % 5 == 0).astype(float)  # 10 clicks in 50
    # the prior is the learner's state (mean 1.5, precision 0.5 I) before the batch
    iterates, raw = _scalar_newton(1.5, 1.5, 0.5, r.tolist(), n_iter=3)
    assert max(abs(s) for s in raw) < MAX_NEWTON_STEP
    learner.partial_fit(x, a, r)
    np.testing.assert_allclose(learner.mean[0], [iterates[-1], 0.0], rtol=1e-10)
    # the new precision is the Hessian at the new mode: prior + sum p (1 - p)
    p = 1 / (1 + np.exp(-iterates[-1]))
    np.testing.assert_allclose(learner.precision[0][0, 0], 0.5 + 50 * p * (1 - p), rtol=1e-10)


def test_check_policy_rejects_a_compact_form_that_disagrees():
    """The conformance checker holds action_dist_compact to action_dist's numbers."""

    class Wrong(LinUCB):
        def _exploit_compact(self, x):
            return Head("epsilon_greedy", epsilon=0.3).greedy(self._predict(x))  # not its head

    x, a, r = feedback(500)
    policy = Wrong(5, 4).partial_fit(x, a, r).exploit(Head("epsilon_greedy", epsilon=0.1))
    with pytest.raises(AssertionError, match="action_dist_compact must hold the numbers"):
        check_policy(policy, obs_dim=4)
