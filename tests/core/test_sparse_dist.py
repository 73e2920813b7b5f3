"""SparseDist: the factored form of a distribution over a large catalog, against its dense rows."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.core.policy import Head, SparseDist
from offrec.testing import _check_sparse


def _random_sparse(n: int = 40, k: int = 30, m: int = 5, floor: float = 0.2, support=None):
    rng = np.random.default_rng(3)
    items = np.stack([rng.choice(k, size=m, replace=False) for _ in range(n)])
    raw = rng.random((n, m))
    probs = (1.0 - floor) * raw / raw.sum(axis=1, keepdims=True)
    return SparseDist(items, probs, k, floor, support)


def test_hand_computed_row() -> None:
    # candidates 2 (0.6) and 0 (0.2), floor 0.2 over 4 items: 0.05 each
    d = SparseDist(np.array([[2, 0]]), np.array([[0.6, 0.2]]), 4, floor=0.2)
    assert d.dense().tolist() == [[0.25, 0.05, 0.65, 0.05]]
    assert d.at(np.array([2])).tolist() == [0.65]
    assert np.allclose(d.group_probs(np.array([0, 0, 1, 1]), 2), [[0.3, 0.7]])
    # expect: 0.6 * 10 + 0.2 * 1 + 0.2 * mean(v) with v = (1, 2, 10, 3): 6.2 + 0.2 * 4
    v = np.array([[1.0, 2.0, 10.0, 3.0]])
    assert d.expect(v[:, [2, 0]], v.mean(axis=1))[0] == pytest.approx(7.0)


@pytest.mark.parametrize("support", [None, np.arange(30) % 3 != 0])
def test_operations_equal_dense(support) -> None:
    d = _random_sparse(support=support)
    dense = d.dense()
    assert np.allclose(dense.sum(axis=1), 1.0)
    if support is not None:
        assert (dense[:, ~support] == d.dense()[:, ~support]).all()
    _check_sparse(d, dense)  # at, group_probs, group_at, expect against the dense rows


def test_repeated_candidates_add_up() -> None:
    d = SparseDist(np.array([[1, 1, 0]]), np.array([[0.5, 0.25, 0.25]]), 3)
    assert d.dense().tolist() == [[0.25, 0.75, 0.0]]
    assert d.at(np.array([1]))[0] == 0.75


@pytest.mark.parametrize("support", [None, np.arange(30) % 3 != 0])
def test_sample_frequencies_match(support) -> None:
    d = _random_sparse(n=1, support=support)
    m = 200_000
    many = SparseDist(np.repeat(d.items, m, 0), np.repeat(d.probs, m, 0), 30, d.floor, support)
    actions, pscores = many.sample(np.random.default_rng(0))
    p = d.dense()[0]
    assert np.array_equal(pscores, many.at(actions))
    freq = np.bincount(actions, minlength=30) / m
    tol = 5 * np.sqrt(p * (1 - p) / m) + 1e-9
    assert (np.abs(freq - p) <= tol).all()
    assert (freq[p == 0] == 0).all()


def test_sample_is_seeded() -> None:
    d = _random_sparse()
    a1, _ = d.sample(np.random.default_rng(1))
    a2, _ = d.sample(np.random.default_rng(1))
    assert np.array_equal(a1, a2)


@pytest.mark.parametrize(
    "head", [Head("greedy"), Head("epsilon_greedy", epsilon=0.3)], ids=["greedy", "eps"]
)
@pytest.mark.parametrize("with_support", [False, True])
def test_greedy_dist_sparse_form_is_exact(head, with_support) -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=(60, 9))
    s[3, 2] = s[3].max()  # a tie
    s[5] = 1.0  # all tied
    support = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1], bool) if with_support else None
    g = head.greedy(s, support)
    sp = g.sparse()
    assert np.array_equal(sp.dense(), g.dense())
    a = rng.integers(0, 9, size=60)
    assert np.array_equal(sp.at(a), g.at(a))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(items=np.array([[0, 5]]), probs=np.array([[0.5, 0.5]]), n_actions=5),
            r"items must be in \[0, 5\); row 0 has \[0, 5\]",
        ),
        (
            dict(items=np.array([[0, 1]]), probs=np.array([[0.5]]), n_actions=5),
            "must be \\(n, M\\) arrays of one shape",
        ),
        (
            dict(items=np.array([[0.0]]), probs=np.array([[1.0]]), n_actions=5),
            "items must be integers",
        ),
        (
            dict(items=np.array([[0]]), probs=np.array([[1.0]]), n_actions=5, floor=1.5),
            r"floor must be in \[0, 1\]; got 1.5",
        ),
    ],
)
def test_bad_input(kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        SparseDist(**kwargs)


def test_check_names_the_row() -> None:
    d = SparseDist(np.array([[0, 1], [1, 2]]), np.array([[0.5, 0.5], [0.5, 0.4]]), 3)
    with pytest.raises(InputError, match="row 1 has probs"):
        d.check()
