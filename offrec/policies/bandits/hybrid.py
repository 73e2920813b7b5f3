r"""A shared-parameter (bilinear) linear bandit for large catalogs.

Per-item models cannot learn 10^6 arms from 10^7 rows. This learner shares its parameters
across items through item features :math:`e_a` (a catalog's embedding and topic):

.. math::

    \hat q(x, a) = \tilde x^\top \Theta\, \tilde e_a = \phi(x, a)^\top \theta,
    \qquad \phi(x, a) = \tilde x \otimes \tilde e_a,\quad
    \tilde x = [x, 1],\ \tilde e_a = [e_a, 1],

fitted by ridge regression (:math:`A = \lambda I + \sum_i \phi_i \phi_i^\top`,
:math:`\theta = A^{-1} \sum_i \phi_i r_i`; ``p = (d + 1)(d_e + 1)`` parameters whatever
the catalog's size; Li, Chu, Langford & Schapire 2010 call the shared part of their
"hybrid" LinUCB the same way). Because the score is linear in :math:`\tilde e_a`, the
query :math:`\tilde x^\top \Theta` retrieves the exact top-``candidates`` items of the
catalog (:class:`~offrec.policies.retrieval.Retriever`, cached per query; ``retrieval``
picks its backend: ``"exact"``, faiss's IVF cells searched by branch and bound where
installed and the catalog is large, else the numpy scan, or ``"ivf"``, an approximate
index whose recall@M :meth:`HybridLinear.retrieval_recall` measures: the policy is then
the one its index defines, and its propensities are exact for that policy), and a head
ranks them:

- ``greedy``: the best candidate (the exact catalog argmax of :math:`\hat q`);
- ``ucb``: the best candidate by :math:`\hat q + \alpha \sqrt{\phi^\top A^{-1} \phi}`
  (the bonus among the ``candidates`` best by mean; an approximation of catalog-wide UCB
  that is exact when the bonus cannot lift an item past the top ``candidates``);
- ``softmax``: :math:`\\propto \\exp(\\hat q / T)` over the candidates;
- ``ts``: the share of ``n_draws`` posterior draws :math:`\theta \sim N(\hat\theta, s^2 A^{-1})`
  (shared by all rows, seeded by ``(seed, n_updates)``) in which each candidate is best.

then ``epsilon`` spreads mass uniformly over the candidates and ``floor`` over the whole
catalog. The distribution is a :class:`~offrec.core.policy.SparseDist`; memory is
``O(n_items d_e)`` for the catalog and ``O(p^2)`` for the model, never ``O(n n_items)``.
The distribution depends only on the context: it is computed once per distinct context of
a batch (:func:`~offrec.core.hashing.distinct_rows`) and gathered, so a log of 10^4
users x 10^6 rows costs 10^4 retrievals and head evaluations per batch at most (the
retrieval itself once per user, through the retriever's cache).

It is the registered learner ``"hybrid"`` (:mod:`offrec.policies.registry`): built by
:func:`~offrec.policies.registry.make_learner` from the world's item table
(:func:`catalog_features`) when trained on a simulated log, or from one-hot items (a
model per item, small catalogs only) when no item table is given; saved by
:func:`~offrec.policies.persist.save_policy` with its item features, so a saved model
scores and recommends without the world, and with its retrieval index when its backend has
one (:meth:`HybridLinear.export_index`: built once, at save; a loaded model takes it when
its key matches the item table, so evaluating or recommending does not rebuild it: about
2 s at 10^6 items). ``exploit(head)`` deploys the greedy head
(``epsilon_greedy`` sets ``epsilon``; ``softmax`` is not offered).
"""

from __future__ import annotations

import copy
import threading
from typing import Any, ClassVar

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import distinct_rows
from offrec.core.policy import Head, SparseDist
from offrec.core.threads import one_blas_thread
from offrec.core.validation import check_scalar
from offrec.policies.bandits.base import BanditLearner
from offrec.policies.retrieval import BACKENDS, Retriever, exact_backend

_BUILD_LOCK = threading.Lock()

HEADS = ("greedy", "ucb", "ts", "softmax")
RETRIEVALS = ("exact", *BACKENDS)


#: the most parameters ``p`` the one-hot default item features may give (A is p x p)
MAX_ONEHOT_PARAMS = 4096


class HybridLinear(BanditLearner):
    """The shared-parameter linear learner of the module docstring.

    Args:
        item_features: (n_items, d_e) item features (embedding, topic one-hot, ...).
        context_dim: ``d``, the width of the observations.
        head: ``"greedy"``, ``"ucb"`` or ``"ts"``.
        alpha: UCB width; scale: TS posterior scale ``s``; n_draws: TS draws;
            temperature: ``softmax`` over the candidates' :math:`\\hat q / T`.
        l2: ridge penalty :math:`\\lambda`.
        candidates: items retrieved per row before the head (None: ``min(50, n_items)``).
        epsilon: uniform mass over the candidates; floor: uniform mass over the catalog.
        seed: seeds the TS draws (and the ``"ivf"`` index's k-means).
        retrieval: ``"exact"`` (``"faiss"`` where installed and the catalog is large,
            else ``"numpy"``: the same items, ties aside), ``"numpy"``, ``"faiss"`` or
            ``"ivf"`` (approximate; :mod:`offrec.policies.retrieval`).
        nlist, nprobe: ``"ivf"`` cells and cells searched per query (None: defaults).
    """

    kind: ClassVar[str] = "hybrid"
    contextual: ClassVar[bool] = True
    sparse_form = True
    context_dim: int
    head: str  # type: ignore[assignment]  # a head of HEADS (over candidates), not a Head

    def __init__(
        self,
        item_features: np.ndarray,
        context_dim: int,
        *,
        head: str = "greedy",
        alpha: float = 1.0,
        scale: float = 0.1,
        n_draws: int = 16,
        temperature: float = 1.0,
        l2: float = 1.0,
        candidates: int | None = None,
        epsilon: float = 0.0,
        floor: float = 0.0,
        seed: int = 0,
        retrieval: str = "exact",
        nlist: int | None = None,
        nprobe: int | None = None,
    ) -> None:
        e = np.asarray(item_features, np.float64)
        if e.ndim != 2 or not np.isfinite(e[:1] if _constant(e) else e).all():
            raise InputError(f"item_features must be a finite (n_items, d_e) array; got {e.shape}")
        if head not in HEADS:
            raise InputError(f"head must be one of {list(HEADS)}; got {head!r}")
        check_scalar(context_dim, "context_dim", int, min=1)
        for name, v in (("alpha", alpha), ("scale", scale), ("l2", l2)):
            check_scalar(v, name, float, min=0.0)
        check_scalar(n_draws, "n_draws", int, min=1)
        check_scalar(temperature, "temperature", float, min=0.0, min_inclusive=False)
        self.temperature = float(temperature)
        check_scalar(epsilon, "epsilon", float, min=0.0, max=1.0)
        check_scalar(floor, "floor", float, min=0.0, max=1.0)
        if candidates is None:
            candidates = min(50, e.shape[0])
        if not 1 <= candidates <= e.shape[0]:
            raise InputError(f"candidates must be in [1, {e.shape[0]}]; got {candidates}")
        if retrieval not in RETRIEVALS:
            raise InputError(f"retrieval must be one of {list(RETRIEVALS)}; got {retrieval!r}")
        self.retrieval, self.nlist, self.nprobe = retrieval, nlist, nprobe
        self.n_actions, self.context_dim = int(e.shape[0]), int(context_dim)
        self.explore, self.item_map = False, None
        self.items = _with_ones(e)  # (n_items, d_e + 1)
        self.head, self.alpha, self.scale, self.n_draws = head, alpha, scale, n_draws
        self.l2, self.candidates, self.epsilon, self.floor = l2, candidates, epsilon, floor
        self.seed = seed
        self._set_items(self.items)
        self.reset()
        self.n_updates = 0

    @classmethod
    def from_sizes(
        cls, n_actions: int, context_dim: int, item_features: Any = None, **params: Any
    ) -> HybridLinear:
        """The learner for ``n_actions`` items: on ``item_features`` (n_actions, d_e), or
        on one-hot items when None (refused when ``p`` would exceed
        :data:`MAX_ONEHOT_PARAMS`: a large catalog must bring its item table)."""
        check_scalar(n_actions, "n_actions", int, min=1)
        check_scalar(context_dim, "context_dim", int, min=1)
        if item_features is None:
            p = (context_dim + 1) * (n_actions + 1)
            if p > MAX_ONEHOT_PARAMS:
                raise InputError(
                    f"item_features is required by the hybrid learner at n_actions={n_actions} "
                    f"(one-hot items would need {p} parameters > {MAX_ONEHOT_PARAMS}); train it "
                    "on a simulated log (its world's item table) or pass item_features"
                )
            item_features = np.eye(n_actions)
        e = np.asarray(item_features)
        if e.ndim != 2 or e.shape[0] != n_actions:
            raise InputError(
                f"item_features must have one row per item ({n_actions}); got shape {e.shape}"
            )
        return cls(e, context_dim, **params)

    # -- BanditLearner hooks ----------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {
            "context_dim": self.context_dim,
            "head": self.head,
            "alpha": self.alpha,
            "scale": self.scale,
            "n_draws": self.n_draws,
            "temperature": self.temperature,
            "l2": self.l2,
            "candidates": self.candidates,
            "epsilon": self.epsilon,
            "floor": self.floor,
            "seed": self.seed,
            "retrieval": self.retrieval,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "n_actions": self.n_actions,
            "item_dim": self.items.shape[1] - 1,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> HybridLinear:
        """An unfitted learner from :meth:`get_params` (zero item features of the stored
        shape, a read-only view of one row: nothing of the catalog's size is written until
        :meth:`set_state` brings the table)."""
        params = dict(params)
        try:
            n, k = int(params.pop("n_actions")), int(params.pop("item_dim"))
        except (KeyError, TypeError, ValueError):
            raise InputError("hybrid params must hold integers n_actions and item_dim") from None
        if n < 1 or k < 0:
            raise InputError(
                f"hybrid params n_actions and item_dim must be >= 1, >= 0; got {n}, {k}"
            )
        return cls(np.broadcast_to(np.zeros(1), (n, k)), **params)

    def reset(self) -> None:
        p = (self.context_dim + 1) * self.items.shape[1]
        self.A = self.l2 * np.eye(p)
        self.b = np.zeros(p)
        self._refresh()

    def _state(self) -> dict[str, np.ndarray]:
        return {"A": self.A, "b": self.b, "item_features": self.items[:, :-1]}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        e = state["item_features"]
        if not np.isfinite(e).all():
            raise InputError("hybrid state array 'item_features' must be finite")
        self._set_items(_with_ones(e))
        self.A, self.b = state["A"], state["b"]
        self._refresh()

    def _update(self, x: Any, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        self._accumulate(x, a, r, w)
        self._refresh()

    def _predict(self, x: np.ndarray) -> np.ndarray:
        """Dense :math:`\\hat q` (n, n_items) (small catalogs only)."""
        self._check_dense(len(x))
        q = x @ self.Theta[:-1] + self.Theta[-1]
        return np.asarray(q @ self.items.T)

    def _check_dense(self, n: int) -> None:
        if 8 * n * self.n_actions > 1 << 30:
            raise InputError(
                f"a dense action_dist of {n} rows x {self.n_actions} items would need "
                f"{8 * n * self.n_actions / 2**30:.1f} GiB; use action_dist_compact (sparse)"
            )

    def exploit(self, head: Head | None = None) -> HybridLinear:
        """A copy that acts on :math:`\\hat q` with ``head`` over the candidates: greedy,
        ``epsilon_greedy`` (sets ``epsilon``) or ``softmax`` (sets ``temperature``). The item table is shared
        with ``self`` (read-only), the ridge statistics are copied."""
        h = head or Head()
        other = copy.copy(self)
        other.A, other.b = self.A.copy(), self.b.copy()
        other.head = "softmax" if h.kind == "softmax" else "greedy"
        other.temperature = h.temperature
        if h.kind == "epsilon_greedy":
            other.epsilon = h.epsilon
        other._refresh()
        return other

    # -- learning ------------------------------------------------------------------------
    def features(self, context: np.ndarray, items: np.ndarray) -> np.ndarray:
        """:math:`\\phi(x_i, a_{ij})` (n, M, p) for items (n, M)."""
        x = np.hstack([np.asarray(context, np.float64), np.ones((len(context), 1))])
        e = self.items[items]  # (n, M, d_e + 1)
        return (x[:, None, :, None] * e[:, :, None, :]).reshape(e.shape[0], e.shape[1], -1)

    def _accumulate(self, x: Any, a: np.ndarray, r: np.ndarray, w: np.ndarray) -> None:
        """Add validated rows to the ridge statistics, in blocks of 8192 rows (BLAS on one
        thread: on 2 loaded cores two threads made a 1M-row fit 3-4x slower, measured)."""
        step = 8192
        with one_blas_thread():
            for lo in range(0, len(a), step):
                xt = np.hstack(
                    [
                        np.asarray(x[lo : lo + step], np.float64),
                        np.ones((len(a[lo : lo + step]), 1)),
                    ]
                )
                e = self.items[a[lo : lo + step]]
                phi = (xt[:, :, None] * e[:, None, :]).reshape(len(e), -1)
                ww = w[lo : lo + step]
                self.A += (phi * ww[:, None]).T @ phi
                self.b += phi.T @ (ww * r[lo : lo + step])

    def _set_items(self, items: np.ndarray) -> None:
        """The item table (n_items, d_e + 1); its float32 transpose, mean and retriever are
        built at the first use (:attr:`retriever`), the retriever's index at the first
        retrieval: once per table."""
        self.items = items
        self._catalog: tuple[np.ndarray, Retriever] | None = None
        self._saved_index: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None

    @property
    def retriever(self) -> Retriever:
        """The retriever over the item table (built once, at the first use)."""
        return self._catalog_parts()[1]

    def _catalog_parts(self) -> tuple[np.ndarray, Retriever]:
        """The item table's mean (d_e + 1,) and its retriever, built at the first call."""
        if self._catalog is None:
            with _BUILD_LOCK:  # the engine's threads share a target: build it once
                if self._catalog is None:
                    retriever = Retriever(
                        np.ascontiguousarray(
                            self.items.astype(np.float32).T
                        ),  # cast, then transpose: faster
                        np.zeros(self.n_actions, np.float32),
                        self.candidates,
                        backend=exact_backend(self.n_actions)
                        if self.retrieval == "exact"
                        else self.retrieval,
                        nlist=self.nlist,
                        nprobe=self.nprobe,
                        seed=self.seed,
                    )
                    if self._saved_index is not None:
                        retriever.import_index(*self._saved_index)
                        self._saved_index = None
                    self._catalog = (self.items.mean(axis=0), retriever)
        return self._catalog

    # -- the retrieval index, kept with the model (offrec.policies.persist) -----------------
    def export_index(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The retriever's IVF index (built now if it was not) and its key, for
        :func:`~offrec.policies.persist.save_policy`; None when the retrieval backend is the
        numpy scan (small catalogs, or no faiss), which has no index."""
        if self.retriever.backend == "numpy":
            return None
        return self.retriever.export_index()

    def import_index(self, arrays: dict[str, np.ndarray], key: dict[str, Any]) -> None:
        """Keep a saved index for the retriever, which takes it when it is built (at the
        first retrieval) if its key matches this item table (else it builds its own)."""
        if self._catalog is not None:
            self._catalog[1].import_index(arrays, key)
        else:
            self._saved_index = (arrays, key)

    def _refresh(self) -> None:
        with one_blas_thread():
            self.A_inv = np.linalg.inv(self.A)
        self.theta = self.A_inv @ self.b
        self.Theta = self.theta.reshape(self.context_dim + 1, -1)  # (d + 1, d_e + 1)
        if self._catalog is not None:  # new queries: old results would only fill the cache
            self._catalog[1].clear()

    # -- prediction ----------------------------------------------------------------------
    def query(self, context: np.ndarray) -> np.ndarray:
        """:math:`\\tilde x^\\top \\Theta` (n, d_e + 1), float32 (the retrieval query)."""
        x = np.asarray(context, np.float64)
        return (x @ self.Theta[:-1] + self.Theta[-1]).astype(np.float32)

    def predict_pairs(self, context: np.ndarray, items: np.ndarray) -> np.ndarray:
        """:math:`\\hat q(x_i, a_{ij})` (n, M) float64 for items (n, M)."""
        q = np.asarray(context, np.float64) @ self.Theta[:-1] + self.Theta[-1]
        return np.einsum("nj,nmj->nm", q, self.items[np.asarray(items)])

    def predict_mean(self, context: np.ndarray) -> np.ndarray:
        """The catalog mean of :math:`\\hat q(x_i, \\cdot)` (n,), exact: the model is linear in
        :math:`\\tilde e`, so it is the score of the mean item."""
        q = np.asarray(context, np.float64) @ self.Theta[:-1] + self.Theta[-1]
        return q @ self._catalog_parts()[0]

    def retrieval_recall(self, context: np.ndarray) -> float:
        """Recall@``candidates`` of the retrieval against the exact top ``candidates`` over
        the distinct rows of ``context`` (1.0 for an exact backend)."""
        return self.retriever.recall(self.query(self._check_obs(context)))

    def action_dist_compact(self, obs: np.ndarray) -> SparseDist:  # type: ignore[override]
        """The policy over the catalog as a :class:`~offrec.core.policy.SparseDist`,
        computed once per distinct context and gathered."""
        x = self._check_obs(obs)
        d = distinct_rows(x)
        dist = self._dist_distinct(x[d.first])
        return SparseDist(dist.items[d.inverse], dist.probs[d.inverse], self.n_actions, self.floor)

    def _dist_distinct(self, x: np.ndarray) -> SparseDist:
        items, _ = self.retriever.retrieve(self.query(x))
        n, m = items.shape
        mean = self.predict_pairs(x, items)
        if self.head == "ts":
            probs = self._ts_probs(x, items)
        elif self.head == "softmax":
            z = np.exp((mean - mean.max(axis=1, keepdims=True)) / self.temperature)
            probs = z / z.sum(axis=1, keepdims=True)
        else:
            score = mean if self.head == "greedy" else mean + self.alpha * self._bonus(x, items)
            probs = np.zeros((n, m))
            probs[np.arange(n), np.argmax(score, axis=1)] = 1.0
        probs = (1.0 - self.epsilon) * probs + self.epsilon / m
        probs *= 1.0 - self.floor
        return SparseDist(items, probs, self.n_actions, self.floor)

    def _bonus(self, x: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.empty(items.shape)
        step = max(1, (1 << 20) // max(1, items.shape[1] * self.A.shape[0]))
        for lo in range(0, len(x), step):
            phi = self.features(x[lo : lo + step], items[lo : lo + step])
            flat = phi.reshape(-1, phi.shape[2])
            quad = np.einsum("kp,kp->k", flat @ self.A_inv, flat).reshape(phi.shape[:2])
            out[lo : lo + step] = np.sqrt(np.maximum(quad, 0.0))
        return out

    def _ts_probs(self, x: np.ndarray, items: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.n_updates])
        chol = np.linalg.cholesky(self.A_inv)
        draws = (
            self.theta[None]
            + self.scale * rng.standard_normal((self.n_draws, len(self.theta))) @ chol.T
        )
        n, m = items.shape
        counts = np.zeros((n, m))
        xt = np.hstack([np.asarray(x, np.float64), np.ones((n, 1))])
        e = self.items[items]  # (n, m, d_e + 1)
        for d in draws:  # a loop over the draws, vectorized over rows
            q = xt @ d.reshape(self.context_dim + 1, -1)
            best = np.argmax(np.einsum("nj,nmj->nm", q, e), axis=1)
            counts[np.arange(n), best] += 1.0
        return counts / self.n_draws

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        """Dense (n, n_items) rows (small catalogs; a large one: :meth:`action_dist_compact`)."""
        self._check_dense(np.asarray(obs).shape[0])
        return self.action_dist_compact(obs).dense()

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.action_dist_compact(obs).sample(rng)


def _constant(e: np.ndarray) -> bool:
    """True for a read-only broadcast of one row (every row the same memory)."""
    return e.ndim == 2 and e.strides[0] == 0


def _with_ones(e: np.ndarray) -> np.ndarray:
    """The item table ``[e, 1]`` (n_items, d_e + 1) float64; for a broadcast placeholder, a
    broadcast of its one row (no copy of the catalog's size)."""
    if _constant(e):
        return np.broadcast_to(np.append(e[0], 1.0), (e.shape[0], e.shape[1] + 1))
    return np.hstack([e, np.ones((e.shape[0], 1))])


def catalog_features(world: Any) -> np.ndarray:
    """The item features a catalog export holds: embedding, topic one-hot and quality,
    (n_items, k + T + 1)."""
    onehot = np.zeros((world.n_actions, world.config.n_topics))
    onehot[np.arange(world.n_actions), world.item_topic] = 1.0
    return np.hstack([world.item_vec, onehot, world.item_quality[:, None]])


__all__ = ["HEADS", "MAX_ONEHOT_PARAMS", "RETRIEVALS", "HybridLinear", "catalog_features"]
