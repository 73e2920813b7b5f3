"""The fused samplers of ``Head.sample``: exact propensities and the right frequencies."""

import numpy as np
import pytest

from offrec.core.policy import Head

EPS32 = float(np.finfo(np.float32).eps)


def _dense_softmax64(scores: np.ndarray, temperature: float, support=None) -> np.ndarray:
    s = scores.astype(np.float64)
    if support is not None:
        s = np.where(support[None, :], s, -np.inf)
    z = (s - s.max(axis=1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [100, 37, 1, 2])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_softmax_pscores_are_apply_exactly_and_dense_float64_to_float32_rounding(k, temperature):
    rng = np.random.default_rng(k)
    scores = (3 * rng.normal(size=(5000, k))).astype(np.float32)
    head = Head("softmax", temperature=temperature)
    actions, pscores = head.sample(scores, np.random.default_rng(1))
    rows = np.arange(len(scores))
    assert actions.dtype == np.int64 and pscores.dtype == np.float64
    dist = head.apply(scores)
    np.testing.assert_array_equal(pscores, dist[rows, actions])  # the same numbers, bitwise
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=0, atol=k * 1e-15)
    # vs the float64 softmax of the same float32 scores: float32 rounding of (s - max) / T
    # (one ulp of that magnitude), of exp (one ulp) and of the block sums (k ulps at most)
    dense = _dense_softmax64(scores, temperature)
    x = np.abs((scores.astype(np.float64) - scores.max(axis=1, keepdims=True)) / temperature)
    bound = EPS32 * (2 + x + 2 * k)
    rel = np.abs(dist - dense) / dense
    assert np.all(rel <= bound), float((rel / bound).max())


def _assert_frequencies(actions, p, n):
    """Every item's count within 4.5 standard deviations of n p (Bonferroni over <= 100
    items at a 1e-5 two-sided level each); items with p = 0 never drawn."""
    counts = np.bincount(actions, minlength=p.size)
    assert np.all(counts[p == 0] == 0)
    sd = np.sqrt(n * p * (1 - p))
    live = p > 0
    assert np.all(np.abs(counts[live] - n * p[live]) <= 4.5 * sd[live] + 1e-9), (
        counts,
        n * p,
    )


def test_softmax_draws_follow_the_stated_distribution_with_rare_items_and_support():
    k = 23  # not a multiple of the block size (5): a partial last block
    base = np.linspace(0.0, 4.0, k).astype(np.float32)
    base[[4, 5, 19]] = -6.0  # rare items at a block's end and start (p ~ 1e-5)
    support = np.ones(k, bool)
    support[[0, 13, 22]] = False  # excluded, including the whole-row last item
    n = 1_000_000
    scores = np.repeat(base[None, :], n, axis=0)
    head = Head("softmax", temperature=0.8)
    actions, pscores = head.sample(scores, np.random.default_rng(7), support)
    p = head.apply(base[None, :], support)[0]
    assert p[4] < 1e-4 and np.all(p[~support] == 0)
    _assert_frequencies(actions, p, n)
    np.testing.assert_array_equal(pscores, p[actions])


def test_softmax_with_underflowing_weights_never_draws_them():
    scores = np.array([[0.0, -200.0, 1.0, -300.0]], np.float32).repeat(1000, axis=0)
    actions, pscores = Head("softmax").sample(scores, np.random.default_rng(0))
    assert set(np.unique(actions)) <= {0, 2} and np.all(pscores > 0)


@pytest.mark.parametrize("kind,epsilon", [("greedy", 0.0), ("epsilon_greedy", 0.2)])
def test_greedy_heads_split_ties_and_explore_over_the_support(kind, epsilon):
    k = 6
    row = np.array([1.0, 3.0, 3.0, 0.5, 3.0, 2.0], np.float32)  # three tied maxima
    support = np.array([True, True, True, True, False, True])  # one tie outside support
    n = 400_000
    head = Head(kind, epsilon=epsilon)
    actions, pscores = head.sample(
        np.repeat(row[None, :], n, axis=0), np.random.default_rng(3), support
    )
    p = head.apply(row[None, :], support)[0]
    np.testing.assert_allclose(p[[1, 2]], (1 - epsilon) / 2 + epsilon / 5)
    _assert_frequencies(actions, p, n)
    np.testing.assert_array_equal(pscores, p[actions])
    scores = np.random.default_rng(4).normal(size=(3000, k)).astype(np.float32)
    a, ps = head.sample(scores, np.random.default_rng(5))
    np.testing.assert_array_equal(ps, head.apply(scores)[np.arange(3000), a])


def test_float64_scores_keep_the_dense_float64_softmax():
    scores = np.random.default_rng(0).normal(size=(2000, 30))
    head = Head("softmax", temperature=0.5)
    actions, pscores = head.sample(scores, np.random.default_rng(1))
    dense = _dense_softmax64(scores, 0.5)
    np.testing.assert_allclose(pscores, dense[np.arange(2000), actions], rtol=1e-12)


def test_same_seed_same_draws_and_empty_input():
    scores = np.random.default_rng(0).normal(size=(4000, 100)).astype(np.float32)
    for head in (Head("softmax"), Head("epsilon_greedy", epsilon=0.1)):
        a1, p1 = head.sample(scores, np.random.default_rng(9))
        a2, p2 = head.sample(scores, np.random.default_rng(9))
        assert np.array_equal(a1, a2) and np.array_equal(p1, p2)
        a0, p0 = head.sample(scores[:0], np.random.default_rng(9))
        assert a0.shape == p0.shape == (0,)


def test_chunked_dense_is_the_one_pass_formula_bitwise():
    """``_SoftmaxParts.dense`` works on cache-sized chunks of rows; every number must be
    the one-pass formula's, ``(e_a / S_b) * (B_b / Z)`` with ``S_b`` summed item by item,
    including empty blocks (a support that removes a whole block: 0, not nan)."""
    from offrec.core.policy import _softmax_weights

    k = 1000  # blocks of 32: 32 blocks, the last one partial
    rng = np.random.default_rng(3)
    scores = (2 * rng.normal(size=(300, k))).astype(np.float32)
    support = np.ones(k, bool)
    support[32:64] = False  # block 1 empty
    parts = _softmax_weights(scores, 0.7, support)
    assert parts._chunk < 300  # several chunks
    nb = parts.blocks.shape[1]
    e3 = parts.e.reshape(300, nb, -1).astype(np.float64)
    within = np.zeros((300, nb))
    for j in range(e3.shape[2]):
        within += e3[:, :, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = e3 / within[:, :, None]
    ref[~np.isfinite(ref)] = 0.0
    ref *= (parts.blocks.astype(np.float64) / parts.z[:, None])[:, :, None]
    ref = ref.reshape(300, -1)[:, :k]
    np.testing.assert_array_equal(parts.within_sums(), within)
    np.testing.assert_array_equal(parts.dense(), ref)
    assert np.all(parts.dense()[:, 32:64] == 0)
    rows = np.array([299, 0, 150])
    np.testing.assert_array_equal(parts.dense(rows), ref[rows])
