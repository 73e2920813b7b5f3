"""Drawing slates with exact propensities from a sparse (large-catalog) distribution."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import Head, SparseDist, UniformPolicy
from offrec.logs.reader import read_logs
from offrec.logs.writer import collect
from offrec.policies.logged import fit_logged
from offrec.policies.persist import save_policy
from offrec.policies.registry import make_learner
from offrec.recommend import write_world
from offrec.serve.model import decide, load_served, plackett_luce_sparse
from offrec.sim import World, WorldConfig


def pl_probability(pi: np.ndarray, seq: tuple[int, ...]) -> float:
    """The Plackett-Luce probability of the ordered items ``seq`` under ``pi`` (by hand)."""
    out, used = 1.0, 0.0
    for a in seq:
        out *= pi[a] / (1.0 - used)
        used += pi[a]
    return out


def test_sparse_plackett_luce_matches_the_exact_slate_probabilities() -> None:
    # candidates 3 (twice: masses add) and 1, floor 0.4 over S = {0, 1, 3, 4} (0.1 each)
    support = np.array([True, True, False, True, True])
    dist = SparseDist(np.array([[3, 3, 1]]), np.array([[0.3, 0.2, 0.1]]), 5, 0.4, support)
    pi = np.array([0.1, 0.2, 0.0, 0.6, 0.1])
    np.testing.assert_allclose(dist.dense()[0], pi)
    n, k = 200_000, 3
    rows = SparseDist(np.tile(dist.items, (n, 1)), np.tile(dist.probs, (n, 1)), 5, 0.4, support)
    items, p = plackett_luce_sparse(rows, k, np.random.default_rng(1))
    # distinct items, never item 2 (probability 0), pscores the exact conditionals
    assert (np.sort(items, axis=1)[:, 1:] != np.sort(items, axis=1)[:, :-1]).all()
    assert not (items == 2).any()
    before = np.cumsum(pi[items], axis=1) - pi[items]
    np.testing.assert_allclose(p, pi[items] / (1.0 - before), rtol=1e-12)
    # frequencies of the ordered triples match Plackett-Luce (4 sigma)
    seqs = list(itertools.permutations([0, 1, 3, 4], k))
    exact = np.array([pl_probability(pi, s) for s in seqs])
    assert abs(exact.sum() - 1.0) < 1e-12
    code = (items * np.array([25, 5, 1])).sum(axis=1)
    freq = np.array([(code == s[0] * 25 + s[1] * 5 + s[2]).mean() for s in seqs])
    assert np.all(np.abs(freq - exact) <= 4 * np.sqrt(exact * (1 - exact) / n))
    # the product of the pscores is the slate's probability
    by_seq = dict(zip(seqs, exact, strict=True))
    np.testing.assert_allclose(p[:50].prod(axis=1), [by_seq[tuple(s)] for s in items[:50]])


def test_sparse_plackett_luce_refuses_too_few_items_and_needs_no_dense_table() -> None:
    no_floor = SparseDist(np.array([[4, 4, 7]]), np.array([[0.5, 0.2, 0.3]]), 10)
    with pytest.raises(InputError, match="k=3 but row 0 has 2"):
        plackett_luce_sparse(no_floor, 3, np.random.default_rng(0))
    items, p = plackett_luce_sparse(no_floor, 2, np.random.default_rng(0))
    assert sorted(items[0].tolist()) == [4, 7] and p[0, 1] == 1.0
    # 10^8 items: a dense (n, n_items) table would need 80 GB
    n, big = 1000, 100_000_000
    rng = np.random.default_rng(2)
    huge = SparseDist(rng.integers(0, big, (n, 50)), np.full((n, 50), 0.9 / 50), big, 0.1)
    items, p = plackett_luce_sparse(huge, 10, rng)
    assert items.shape == (n, 10) and (items < big).all() and (p > 0).all()
    np.testing.assert_allclose(p[:, 0], huge.at(items[:, 0]))


def test_a_large_catalog_hybrid_model_is_served_sparse(tmp_path: Path) -> None:
    world = World(WorldConfig(n_items=20_000, n_users=300), seed=0)
    collect(world, UniformPolicy(world.n_actions), out=tmp_path / "log", n_sessions=1000, seed=1)
    learner = make_learner("hybrid", world.n_actions, world.context_dim, world=world, floor=0.05)
    fit_logged(learner, read_logs(tmp_path / "log"))
    save_policy(learner.exploit(Head("epsilon_greedy", epsilon=0.2)), tmp_path / "model")
    write_world(tmp_path / "model", world)
    model = load_served(tmp_path / "model")
    obs = world.observe(world.new_sessions(64, np.random.default_rng(3)))
    items, p = decide(model, obs, 10, np.random.default_rng(4))
    dist = model.policy.action_dist_compact(obs)
    np.testing.assert_allclose(p[:, 0], dist.at(items[:, 0]))
    pi = np.stack([dist.at(items[:, j]) for j in range(10)], axis=1)
    np.testing.assert_allclose(p, pi / (1.0 - (np.cumsum(pi, axis=1) - pi)), rtol=1e-9)
