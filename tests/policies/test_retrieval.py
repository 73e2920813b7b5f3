"""Retrieval backends (offrec.policies.retrieval): faiss exact equals the numpy reference,
IVF recall is measured and the IVF policy is a fixed function of the query, ties keep the
smaller-id rule, threads compute a query once, and the per-row dedup helper is exact."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from offrec.core.errors import InputError
from offrec.core.hashing import distinct_rows
from offrec.policies.retrieval import Retriever, exact_backend

pytest.importorskip("faiss")  # offrec[catalog]; make test installs it


def _catalog(n: int = 30_000, p: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, p))
    w = (centres[rng.integers(0, 8, n)] + 0.4 * rng.normal(size=(n, p))).T
    q = rng.normal(size=(300, p))
    return w.astype(np.float32), q.astype(np.float32)


def _brute(w: np.ndarray, bias: np.ndarray, q: np.ndarray, m: int) -> np.ndarray:
    s = q.astype(np.float64) @ w.astype(np.float64) + bias
    order = np.lexsort((np.broadcast_to(np.arange(w.shape[1]), s.shape), -s), axis=1)
    return np.sort(order[:, :m], axis=1)


@pytest.mark.parametrize("with_bias", [False, True])
def test_faiss_exact_equals_numpy_reference_and_brute_force(with_bias) -> None:
    w, q = _catalog()
    bias = (
        np.random.default_rng(1).normal(size=w.shape[1]).astype(np.float32)
        if with_bias
        else np.zeros(w.shape[1], np.float32)
    )
    ref_i, ref_s = Retriever(w, bias, 25).top_m(q)
    fast = Retriever(w, bias, 25, backend="faiss")
    scanned: list[int] = []
    reference = fast.top_m_numpy
    fast.top_m_numpy = lambda x: (scanned.append(len(x)), reference(x))[1]  # type: ignore[method-assign]
    got_i, got_s = fast.top_m(q)
    assert sum(scanned) <= 0.1 * len(q)  # the bound's certificate answers the others
    assert np.array_equal(got_i, ref_i)
    assert np.array_equal(got_i, _brute(w, bias, q, 25))
    assert np.allclose(got_s, ref_s, rtol=1e-5, atol=1e-5)
    # a row's answer does not depend on the rows it is asked with
    alone = Retriever(w, bias, 25, backend="faiss").top_m(q[17:18])[0]
    assert np.array_equal(alone[0], got_i[17])


def test_faiss_keeps_the_smaller_id_rule_on_ties() -> None:
    n = 5000
    w = np.zeros((3, n), np.float32)
    w[0, 100:200] = 1.0  # 100 items tie for the top; the 10 smallest ids win
    q = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)  # the second: all tie
    got = Retriever(w, np.zeros(n, np.float32), 10, backend="faiss").top_m(q)[0]
    assert np.array_equal(got[0], np.arange(100, 110))
    assert np.array_equal(got[1], np.arange(10))


def test_ivf_recall_is_measured_and_the_policy_is_fixed_by_its_index() -> None:
    w, q = _catalog()
    z = np.zeros(w.shape[1], np.float32)
    exact = Retriever(w, z, 20).top_m(q)[0]
    few = Retriever(w, z, 20, backend="ivf", nlist=64, nprobe=1)
    many = Retriever(w, z, 20, backend="ivf", nlist=64, nprobe=64)  # every cell: exact
    got = few.top_m(q)[0]
    by_hand = (got[:, :, None] == exact[:, None, :]).any(axis=2).sum(axis=1).mean() / 20
    assert few.recall(q) == pytest.approx(by_hand)
    assert few.recall(q) < 1.0  # one cell of 64 misses some of the exact top 20
    assert many.recall(q) == 1.0
    assert np.array_equal(many.top_m(q)[0], exact)
    # the same query gets the same items whatever it is asked with, and after a pickle
    assert np.array_equal(few.top_m(q[40:41])[0][0], got[40])
    again = pickle.loads(pickle.dumps(few))
    assert np.array_equal(again.top_m(q)[0], got)
    rebuilt = Retriever(w, z, 20, backend="ivf", nlist=64, nprobe=1)  # same seed: same index
    assert np.array_equal(rebuilt.top_m(q)[0], got)
    assert Retriever(w, z, 20).recall(q) == 1.0


def test_retrieve_computes_each_distinct_query_once_across_threads() -> None:
    w, q = _catalog(n=5000)
    r = Retriever(w, np.zeros(5000, np.float32), 8, backend="faiss")
    calls: list[int] = []
    inner = r.top_m

    def counted(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(queries))
        return inner(queries)

    r.top_m = counted  # type: ignore[method-assign]
    ref = Retriever(w, np.zeros(5000, np.float32), 8).top_m(q)[0]
    parts = [np.concatenate([q, q[::-1]])[k * 20 : k * 20 + 400] for k in range(6)]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda x: r.retrieve(x)[0], parts))
    for x, items in zip(parts, got, strict=True):
        rows = [int(np.flatnonzero((q == row).all(axis=1))[0]) for row in x]
        assert np.array_equal(items, ref[rows])
    assert sum(calls) == len(q)  # every distinct query scanned exactly once


def test_bad_backends() -> None:
    w, _ = _catalog(n=1000)
    z = np.zeros(1000, np.float32)
    with pytest.raises(InputError, match="retrieval must be one of"):
        Retriever(w, z, 5, backend="annoy")
    bias = z.copy()
    bias[3] = -np.inf
    with pytest.raises(InputError, match="needs a finite bias"):
        Retriever(w, bias, 5, backend="faiss")
    with pytest.raises(InputError, match="nprobe"):
        Retriever(w, z, 5, backend="ivf", nlist=10, nprobe=11)
    assert (exact_backend(50_000), exact_backend(49_999)) == ("faiss", "numpy")


def test_distinct_rows_is_exact_and_survives_collisions(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 5)).astype(np.float32)
    x = base[rng.integers(0, 50, 1000)]
    d = distinct_rows(x)
    assert len(d.first) == len(np.unique(x, axis=0))
    assert np.array_equal(x[d.first][d.inverse], x)
    # every key equal (a forced collision): rows still never merge unless identical
    import offrec.core.hashing as hashing

    monkeypatch.setattr(hashing, "row_keys", lambda *cols: np.zeros(len(cols[0]), np.uint64))
    d = hashing.distinct_rows(x)
    assert np.array_equal(x[d.first][d.inverse], x)
    assert distinct_rows(np.zeros((0, 3))).first.size == 0
