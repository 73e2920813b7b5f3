"""Stable hashes of row keys: randomness that depends on a row's identity, not on its order.

Bootstrap weights, cross-fitting folds and fitting samples are functions of
``(seed, salt, key)`` where a row's key comes from its stable columns (session id, step,
position), so they do not change with batch size, file layout, engine or workers.
The mixer is splitmix64's finaliser (Steele, Lea & Flood, 2014).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def row_keys(*columns: np.ndarray) -> np.ndarray:
    """One uint64 key per row from integer columns (e.g. session_id, step, position), (n,)."""
    with np.errstate(over="ignore"):
        key = np.zeros(len(columns[0]), np.uint64)
        for col in columns:
            key = mix(key ^ (np.asarray(col).astype(np.int64).view(np.uint64) + GOLDEN))
    return key


def seed_int(seed: Any) -> int:
    """An int seed for the hashes: ``seed`` itself when it is an int >= 0, else one drawn
    from it (a Generator, a SeedSequence, or None for a fresh one)."""
    from offrec.core.validation import as_generator

    if isinstance(seed, int | np.integer) and not isinstance(seed, bool) and seed >= 0:
        return int(seed)
    return int(as_generator(seed).integers(0, 2**63 - 1))


@functools.lru_cache(maxsize=256)
def seed_key(seed: int, salt: int) -> np.uint64:
    """A uint64 from ``(seed, salt)``: salts keep bootstrap, folds and sampling independent."""
    state = np.random.SeedSequence([int(seed), int(salt)]).generate_state(2, np.uint64)
    return np.uint64(state[0])


def hash_keys(keys: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A uint64 hash per key, a pure function of ``(seed, salt, key)``, (n,)."""
    with np.errstate(over="ignore"):
        return mix(keys ^ seed_key(seed, salt))


def hash_uniform(keys: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A uniform in [0, 1) per key, a pure function of ``(seed, salt, key)``, (n,)."""
    return (hash_keys(keys, seed, salt) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class DistinctRows(NamedTuple):
    """The distinct rows of an array (:func:`distinct_rows`)."""

    first: np.ndarray
    """(u,) intp: one row index per distinct row."""
    inverse: np.ndarray
    """(n,) intp: row ``i`` equals row ``first[inverse[i]]``, bit for bit."""
    keys: np.ndarray
    """(u,) uint64: the hash of each distinct row (:func:`row_keys` over its bytes)."""


def distinct_rows(x: np.ndarray) -> DistinctRows:
    """The distinct rows of ``x`` (n, ...), compared bit for bit, by a hash of each row's
    bytes (``O(n p)`` to hash, then one sort of the ``n`` keys, not of the rows). A hash collision cannot merge two different
    rows: every row is checked against its representative, and a row that differs becomes
    its own (so ``first`` may then hold two rows of one key).

    Where a function of a row is costly (a policy's distribution at a context, a reward
    model at it), compute it on ``x[first]`` and gather with ``inverse``.

    >>> d = distinct_rows(np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]))
    >>> len(d.first), bool(d.inverse[0] == d.inverse[2]), bool(d.inverse[0] == d.inverse[1])
    (2, True, False)
    """
    a = np.ascontiguousarray(x)
    n = a.shape[0]
    if n == 0:
        empty = np.zeros(0, np.intp)
        return DistinctRows(empty, empty, np.zeros(0, np.uint64))
    raw = a.reshape(n, -1).view(np.uint8)
    pad = -raw.shape[1] % 8
    if pad:
        raw = np.hstack([raw, np.zeros((n, pad), np.uint8)])
    words = np.ascontiguousarray(raw).view(np.uint64)  # (n, ceil(bytes / 8))
    keys = row_keys(*words.T)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    bad = np.flatnonzero((words != words[first[inverse]]).any(axis=1))
    if bad.size:  # a 64-bit collision: those rows stand alone
        inverse = inverse.copy()
        inverse[bad] = uniq.size + np.arange(bad.size)
        first = np.concatenate([first, bad])
        uniq = np.concatenate([uniq, keys[bad]])
    return DistinctRows(first.astype(np.intp), inverse.astype(np.intp).reshape(n), uniq)
