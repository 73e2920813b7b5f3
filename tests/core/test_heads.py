"""Greedy and epsilon-greedy heads: the sparse construction equals the dense formula
(1 - eps) * [a in argmax set] / |argmax set| + eps * [a allowed] / |allowed|, bit for bit,
with ties and deficient supports."""

from __future__ import annotations

import numpy as np
import pytest

from offrec.core.policy import Head


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
