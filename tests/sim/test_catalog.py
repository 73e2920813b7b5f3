"""Large catalogs in the world: q for (user, item) pairs, exact truth from sparse targets,
and the two-stage logger (retrieval top-M, ranker, uniform floor) with exact propensities."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import Head
from offrec.policies.loggers import (
    ProductionModel,
    TwoStagePolicy,
    logging_policy,
    logging_policy_from_spec,
)
from offrec.sim import World, WorldConfig
from offrec.testing import check_policy


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(n_items=300, n_users=400), seed=0)


class _Dense:
    """A policy seen only through its dense rows (the reference path of true_value)."""

    def __init__(self, policy) -> None:
        self.policy, self.n_actions = policy, policy.n_actions

    def action_dist(self, obs):
        return self.policy.action_dist(obs)


@pytest.mark.parametrize("horizon", [1, 4])
def test_click_probs_at_equals_dense(horizon) -> None:
    w = World(WorldConfig(n_items=50, n_users=30, horizon=horizon), seed=1)
    rng = np.random.default_rng(0)
    batch = w.new_sessions(20, rng)
    for _ in range(2 if horizon > 1 else 0):  # some fatigue and repeat history
        w.step(batch, rng.integers(0, 50, size=20), rng)
    items = rng.integers(0, 50, size=(20, 7))
    dense = w.click_probs(batch)
    assert np.allclose(w.click_probs_at(batch, items), np.take_along_axis(dense, items, 1))


def test_click_probs_at_without_logit_table() -> None:
    w = World(WorldConfig(n_items=40_000, n_users=1_000), seed=2)  # 4e7 cells: no table
    assert w._logit_table is None
    batch = w.new_sessions(5, np.random.default_rng(0))
    items = np.arange(5 * 3).reshape(5, 3) * 997
    assert np.allclose(
        w.click_probs_at(batch, items), np.take_along_axis(w.click_probs(batch), items, 1)
    )


def test_mean_click_prob_exact(world) -> None:
    users = np.arange(world.config.n_users)
    batch = world.new_sessions(0, np.random.default_rng(0), users)
    q = world.click_probs(batch)
    assert np.allclose(world.mean_click_prob(users), q.mean(axis=1), rtol=1e-12)
    support = np.arange(300) % 4 == 1
    assert np.allclose(world.mean_click_prob(users[:7], support), q[:7, support].mean(1))


@pytest.mark.parametrize("kind", ["softmax", "epsilon_greedy"])
@pytest.mark.parametrize("support", [None, "mask"])
def test_two_stage_logger_conforms_and_truth_is_exact(world, kind, support) -> None:
    sup = None if support is None else [i for i in range(300) if i % 3]
    pi = logging_policy(world, kind, candidates=12, floor=0.1, support=sup)
    obs = world.observe(world.new_sessions(64, np.random.default_rng(0)))
    check_policy(pi, obs)  # dense == sparse (at, groups, expect), sampling frequencies
    sparse = world.true_value(pi)
    dense = world.true_value(_Dense(pi))
    assert sparse.exact and sparse.value == pytest.approx(dense.value, rel=1e-12)


def _enumerate(world: World, policy: TwoStagePolicy, obs: np.ndarray) -> np.ndarray:
    """The two-stage distribution built from scratch: every item scored by the production
    model's weights in float64, the top M kept by a full sort, softmax over them, floor."""
    t = world.config.n_topics
    w = policy.model._weights.astype(np.float64)
    b = policy.model._bias.astype(np.float64)
    x = obs.astype(np.float64)
    retrieval = x[:, :t] @ w[:t] + b
    full = retrieval + x[:, t : 2 * t] @ w[t:]
    n, k, m = obs.shape[0], world.n_actions, policy.candidates
    top = np.argsort(-retrieval, axis=1, kind="stable")[:, :m]
    s = np.take_along_axis(full, top, axis=1) / policy.head.temperature
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dist = np.full((n, k), policy.floor / k)
    np.put_along_axis(dist, top, np.take_along_axis(dist, top, 1) + (1 - policy.floor) * p, 1)
    return dist


@pytest.mark.parametrize("horizon", [1, 3])
def test_two_stage_propensities_exact_against_enumeration(horizon) -> None:
    w = World(WorldConfig(n_items=200, n_users=50, horizon=horizon), seed=4)
    pi = logging_policy(w, "softmax", beta=2.0, candidates=15, floor=0.05)
    rng = np.random.default_rng(0)
    batch = w.new_sessions(40, rng)
    if horizon > 1:  # fatigue enters the ranker's scores
        w.step(batch, rng.integers(0, 200, size=40), rng)
    obs = w.observe(batch)
    actions, pscores = pi.sample(obs, np.random.default_rng(1))
    ref = _enumerate(w, pi, obs)
    assert np.allclose(pscores, ref[np.arange(40), actions], rtol=1e-5, atol=0)
    assert np.allclose(pi.action_dist(obs), ref, rtol=1e-5, atol=1e-12)


def test_retrieval_exact_and_independent_of_grouping() -> None:
    w = World(WorldConfig(n_items=20_000, n_users=100), seed=5)
    pi = logging_policy(w, "softmax", candidates=64)
    obs = w.observe(w.new_sessions(100, np.random.default_rng(0), users=np.arange(100)))
    items, scores = pi.retrieve(obs)
    t = w.config.n_topics
    full = obs[:, :t].astype(np.float32) @ pi._w_ret + pi._bias
    ref = np.sort(np.argsort(-full, axis=1, kind="stable")[:, :64], axis=1)
    assert np.array_equal(items, ref)
    alone = logging_policy(w, "softmax", candidates=64).retrieve(obs[7:8])[0]
    assert np.array_equal(alone[0], items[7])
    again, _ = pi.retrieve(obs[::-1])  # from the cache
    assert np.array_equal(again, items[::-1])


def test_spec_round_trip(world) -> None:
    pi = logging_policy(world, "epsilon_greedy", epsilon=0.2, candidates=10, floor=0.3)
    back = logging_policy_from_spec(world, pi.spec())
    obs = world.observe(world.new_sessions(16, np.random.default_rng(0)))
    assert isinstance(back, TwoStagePolicy)
    assert np.array_equal(back.action_dist(obs), pi.action_dist(obs))


def test_bad_two_stage_options(world) -> None:
    with pytest.raises(InputError, match="candidates must be <= n_items=300; got 301"):
        logging_policy(world, "softmax", candidates=301)
    with pytest.raises(InputError, match="floor applies to the two-stage logger"):
        logging_policy(world, "softmax", floor=0.1)
    with pytest.raises(InputError, match="floor"):
        logging_policy(world, "softmax", candidates=5, floor=1.5)
    with pytest.raises(InputError, match="candidates must be <= the 3 items of support"):
        logging_policy(world, "softmax", candidates=5, support=[0, 1, 2])


def test_million_item_world_logs_without_dense_arrays(tmp_path) -> None:
    from offrec.logs import collect, read_logs

    w = World(WorldConfig(n_items=1_000_000, n_users=40), seed=0)  # no logit table
    pi = logging_policy(w, "softmax", candidates=200, floor=0.05)
    with pytest.raises(InputError, match="use action_dist_compact"):
        pi.action_dist(np.zeros((1000, w.context_dim), np.float32))
    res = collect(w, pi, out=tmp_path / "log", n_decisions=500, seed=0)
    data = read_logs(tmp_path / "log")
    assert res.n_rows == 500 and data.n_actions == 1_000_000
    obs = np.asarray(data.context)
    assert np.array_equal(pi.action_dist_compact(obs).at(data.action), data.pscore)
    assert (data.pscore >= 0.05 / 1_000_000 * (1 - 1e-12)).all()


def test_head_over_candidates_is_the_head() -> None:
    # a greedy ranker puts 1 - floor on the best candidate by the full score
    w = World(WorldConfig(n_items=100, n_users=10), seed=0)
    model = ProductionModel(w, noise=0.5, seed=0)
    pi = TwoStagePolicy(model, 10, Head("greedy"), floor=0.0)
    obs = w.observe(w.new_sessions(10, np.random.default_rng(0), users=np.arange(10)))
    d = pi.action_dist(obs)
    assert np.allclose(d.max(axis=1), 1.0)
    best = np.argmax(np.asarray(pi.model(obs), np.float64), axis=1)  # the best overall item
    assert np.array_equal(np.argmax(d, axis=1), best)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--n-items", "1000000000000", "--candidates", "200"],
            "n_items=1,000,000,000,000 is too large",
        ),
        (
            ["--n-items", "1000", "--candidates", "2000"],
            "candidates must be <= n_items=1000; got 2000",
        ),
        (["--n-items", "1000", "--floor", "0.1"], "floor applies to the two-stage logger"),
        (
            ["--n-items", "1000", "--policy", "uniform", "--candidates", "5"],
            "do not apply to the uniform",
        ),
    ],
)
def test_cli_refuses_bad_catalog_options(tmp_path, capsys, argv, message) -> None:
    from offrec.cli import main

    out = tmp_path / "log"
    assert main(["simulate", "--out", str(out), "--n-decisions", "10", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_cli_simulates_a_million_items(tmp_path, capsys) -> None:
    from offrec.cli import main
    from offrec.logs import read_logs

    out = tmp_path / "log"
    argv = [
        "simulate",
        "--out",
        str(out),
        "--n-items",
        "1000000",
        "--n-users",
        "50",
        "--candidates",
        "200",
        "--floor",
        "0.05",
        "--n-decisions",
        "300",
    ]
    assert main(argv) == 0
    data = read_logs(out)
    assert data.n_rows == 300 and data.n_actions == 1_000_000
    assert data.metadata["logging_policy"]["candidates"] == 200


def test_retriever_is_consistent_across_threads_and_pickles() -> None:
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from offrec.policies.retrieval import Retriever

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 5000)).astype(np.float32)
    queries = rng.normal(size=(400, 4)).astype(np.float32)
    ref = Retriever(w, np.zeros(5000, np.float32), 8, cache_rows=0).top_m(queries)[0]
    r = Retriever(w, np.zeros(5000, np.float32), 8)
    parts = [queries[(np.arange(400) * 7 + k) % 400][:150] for k in range(8)]  # overlapping
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: r.retrieve(q)[0], parts))
    for q, items in zip(parts, got, strict=True):
        rows = [int(np.flatnonzero((queries == row).all(axis=1))[0]) for row in q]
        assert np.array_equal(items, ref[rows])
    again = pickle.loads(pickle.dumps(r))
    assert np.array_equal(again.retrieve(queries)[0], ref)
