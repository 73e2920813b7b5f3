"""Greedy and epsilon-greedy heads: the sparse construction equals the dense formula
(1 - eps) * [a in argmax set] / |argmax set| + eps * [a allowed] / |allowed|, bit for bit,
with ties and deficient supports."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.core.policy import GreedyDist, Head


def dense(head: Head, scores: np.ndarray, support: np.ndarray | None) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    allowed = np.ones(s.shape[1], bool) if support is None else support
    s = np.where(allowed[None, :], s, -np.inf)
    top = s == s.max(axis=1, keepdims=True)
    greedy = top / top.sum(axis=1, keepdims=True)
    eps = 0.0 if head.kind == "greedy" else head.epsilon
    return (1.0 - eps) * greedy + eps * (allowed / allowed.sum())[None, :]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "head", [Head(), Head("epsilon_greedy", epsilon=0.1), Head("epsilon_greedy", epsilon=1.0)]
)
@pytest.mark.parametrize("with_support", [False, True])
def test_sparse_heads_equal_the_dense_formula(dtype: type, head: Head, with_support: bool) -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(3000, 25)).astype(dtype)  # ties in most rows
    support = (rng.random(25) < 0.5) | (np.arange(25) == 0) if with_support else None
    got = head.apply(scores, support)
    np.testing.assert_array_equal(got, dense(head, scores, support))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


HEADS = [
    Head(),
    Head("greedy", epsilon=0.3),  # a greedy head ignores epsilon
    Head("epsilon_greedy", epsilon=0.0),
    Head("epsilon_greedy", epsilon=0.1),
    Head("epsilon_greedy", epsilon=1.0),
]


def _scores(dtype: type, rng: np.random.Generator, support: np.ndarray | None) -> np.ndarray:
    """Continuous scores; every 7th row has a tie for the maximum (over the support), row 5
    is all tied."""
    s = rng.normal(size=(400, 25)).astype(dtype)
    allowed = np.ones(25, bool) if support is None else support
    s[::7, 3] = s[::7][:, allowed].max(axis=1)
    s[5] = 1.0
    return s


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("with_support", [False, True])
def test_greedy_form_reads_like_the_dense_formula(
    dtype: type, head: Head, with_support: bool
) -> None:
    """GreedyDist.at / expect / dense against the dense formula: the importance weights
    bit for bit, sum_a pi(a|x) v(x, a) to rounding."""
    rng = np.random.default_rng(1)
    support = (rng.random(25) < 0.5) | (np.arange(25) == 3) if with_support else None
    scores = _scores(dtype, rng, support)
    truth = dense(head, scores, support)
    g = head.greedy(scores, support)
    assert g.shape == truth.shape
    assert {0, 5, 7} <= set(g.odd.tolist())  # tied rows keep their argmax set
    np.testing.assert_array_equal(g.dense(), truth)
    rows = np.array([5, 6, 7, 399])
    np.testing.assert_array_equal(g.dense(rows), truth[rows])
    for _ in range(3):
        action = rng.integers(0, 25, size=400)
        action[::3] = truth.argmax(axis=1)[::3]  # often the greedy action
        np.testing.assert_array_equal(g.at(action), truth[np.arange(400), action])
    v = rng.random((400, 25))
    np.testing.assert_allclose(g.expect(v), (truth * v).sum(axis=1), rtol=1e-13)
    outside = rng.random((400, 25)) < 0.2  # a boolean mask, as the support diagnostic uses
    np.testing.assert_allclose(g.expect(outside), (truth * outside).sum(axis=1), rtol=1e-13)


def test_a_nan_score_leaves_an_empty_argmax_set() -> None:
    """A row whose maximum is nan has no argmax (nan == nan is false): only the floor, which
    the distribution checks then reject (its row sums to epsilon)."""
    s = np.array([[0.0, np.nan, 1.0], [0.0, 2.0, 1.0]])
    for head in (Head(), Head("epsilon_greedy", epsilon=0.3)):
        g = head.greedy(s)
        eps = 0.0 if head.kind == "greedy" else 0.3
        f = eps / 3
        np.testing.assert_array_equal(g.dense(), [[f, f, f], [f, 1 - eps + f, f]])
        assert g.odd.tolist() == [0] and not g.odd_top.any()
        np.testing.assert_array_equal(g.at(np.array([2, 1])), [eps / 3, 1 - eps + eps / 3])
        np.testing.assert_allclose(g.expect(np.ones((2, 3))), [eps, 1.0])


def test_compact_is_greedy_or_dense() -> None:
    s = np.random.default_rng(0).normal(size=(5, 4))
    assert isinstance(Head("epsilon_greedy", epsilon=0.2).compact(s), GreedyDist)
    soft = Head("softmax", temperature=0.5)
    np.testing.assert_array_equal(soft.compact(s), soft.apply(s))
    with pytest.raises(ValueError, match="greedy or epsilon_greedy head; got softmax"):
        soft.greedy(s)


@pytest.mark.parametrize("head", [Head(), Head("epsilon_greedy", epsilon=0.2)])
def test_linear_scores_from_float32_keep_the_float64_argmax_sets(
    head: Head, monkeypatch: pytest.MonkeyPatch
) -> None:
    """greedy_linear(phi, w) against greedy(phi @ w) in float64: the same GreedyDist, with
    exact ties (equal columns), near-ties below float32 resolution, integer features that
    tie exactly, and scores far from 1; most rows are settled in float32, the near-ties
    in float64."""
    rng = np.random.default_rng(3)
    n, p, k = 5000, 7, 30
    phi = np.concatenate([np.ones((n, 1)), rng.normal(size=(n, p - 1))], axis=1)
    phi[:200, 1:] = rng.integers(-2, 3, size=(200, p - 1))  # small integers: exact sums
    w = rng.normal(size=(p, k))
    w[:, 5] = w[:, 9]  # an exact tie wherever they lead
    w[:, 11] = w[:, 12] * (1 + 1e-12)  # near-ties float32 cannot resolve
    w[:, 0] = w[:, 1] + 1e-7  # near-ties of about the float32 bound
    w[0, [0, 1, 5, 9, 11, 12]] += 1.5  # the special columns lead often
    fallback: list[int] = []
    greedy = Head.greedy

    def spy(self: Head, s: np.ndarray, support: np.ndarray | None = None) -> GreedyDist:
        fallback.append(s.shape[0])
        return greedy(self, s, support)

    for weights in (w, 1e30 * w, 1e-30 * w):
        truth = head.greedy(phi @ weights)
        assert truth.odd.size > 0  # ties are exercised
        monkeypatch.setattr(Head, "greedy", spy)
        got = head.greedy_linear(phi, weights)
        monkeypatch.setattr(Head, "greedy", greedy)
        np.testing.assert_array_equal(got.best, truth.best)
        np.testing.assert_array_equal(got.odd, truth.odd)
        np.testing.assert_array_equal(got.odd_top, truth.odd_top)
        np.testing.assert_array_equal(got.dense(), truth.dense())
        assert truth.odd.size <= fallback[-1] < n / 2  # the ties and near-ties only
    bad = w.copy()
    bad[2, 3] = np.nan  # non-finite weights: the float64 path, nan rows and all
    np.testing.assert_array_equal(
        head.greedy_linear(phi, bad).dense(), head.greedy(phi @ bad).dense()
    )
    one = head.greedy_linear(phi, w[:, :1])  # one action: always it
    assert (one.best == 0).all() and one.odd.size == 0


@pytest.mark.parametrize("kind", ["softmax", "epsilon_greedy", "greedy"])
def test_row_ranges_on_threads_give_the_numbers_of_one_range(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Large score arrays are sampled over row ranges on threads: the actions, pscores,
    distributions and the generator's state after are those of a single range."""
    from offrec.core import threads

    rng = np.random.default_rng(0)
    s = rng.normal(size=(20_000, 100)).astype(np.float32)
    s[::7] = np.round(s[::7], 1)  # ties in every 7th row
    head = Head(kind, epsilon=0.2 if kind == "epsilon_greedy" else 0.0, temperature=0.7)
    runs = []
    for n_threads, min_elems in ((1, 1 << 62), (3, 1)):
        monkeypatch.setattr(threads, "ROW_THREADS", n_threads)
        monkeypatch.setattr(threads, "PARALLEL_ELEMS", min_elems)
        r = np.random.default_rng(9)
        a, p = head.sample(s, r)
        runs.append((a, p, r.random(2), head.apply(s)))
    for one, split in zip(*runs, strict=True):
        np.testing.assert_array_equal(split, one)
    a, p, _, dist = runs[0]
    np.testing.assert_array_equal(p, dist[np.arange(len(a)), a])
