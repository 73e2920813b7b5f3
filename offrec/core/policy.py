"""The ``Policy`` protocol, sampling with propensities, and heads that turn scores into policies.

Every policy in offrec, hand-made or learned, maps a batch of observations to a
probability distribution over items::

    action_dist(obs: (n, d)) -> (n, n_actions), rows summing to 1
    sample(obs: (n, d), rng) -> actions (n,) int64, pscores (n,) float64

where ``pscore[i] == action_dist(obs)[i, actions[i]]`` exactly, so a policy can
log its own propensities and be scored by off-policy estimators.

A policy whose distribution comes from a greedy or epsilon-greedy :class:`Head` may also
offer ``action_dist_compact(obs) -> GreedyDist | ndarray``: the same distribution in the
factored form :class:`GreedyDist` (two numbers per row instead of ``n_actions``), which
off-policy evaluation reads without ever building the dense ``(n, n_actions)`` array.

Large catalogs (10^5 to 10^6 items) use the general factored form :class:`SparseDist`:
per row ``M`` candidate items with their probabilities, plus a uniform floor over the
catalog (or a support mask). ``action_dist_compact`` may return it; sampling, the
propensity of an item, the probability of an item group and expected rewards are read
from it in ``O(n M)``. A :class:`GreedyDist` converts to it exactly (:meth:`GreedyDist.sparse`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from offrec.core.errors import InputError
from offrec.core.threads import over_row_ranges
from offrec.core.validation import check_scalar


@runtime_checkable
class Policy(Protocol):
    """Anything with ``n_actions``, ``action_dist`` and ``sample`` is an offrec policy."""

    n_actions: int

    def action_dist(self, obs: np.ndarray) -> np.ndarray: ...

    def sample(
        self, obs: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]: ...


def sample_from_dist(dist: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one action per row of ``dist`` (n, n_actions) by inverse CDF, vectorized.

    Returns ``(actions (n,) int64, pscores (n,) float64)`` with
    ``pscores[i] = dist[i, actions[i]]``. Actions with zero probability are never drawn.
    """
    n = dist.shape[0]
    cdf = np.cumsum(dist, axis=1)
    threshold = rng.random(n) * cdf[:, -1]
    # first index whose cumulative mass exceeds the threshold (argmax stops at the first True)
    actions = np.argmax(cdf > threshold[:, None], axis=1).astype(np.int64)
    pscores = dist[np.arange(n), actions].astype(np.float64)
    return actions, pscores


class BasePolicy:
    """Mixin giving ``sample`` from ``action_dist``; subclasses set ``n_actions``."""

    n_actions: int

    def action_dist(self, obs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_from_dist(self.action_dist(obs), rng)


@dataclass(frozen=True)
class Head:
    """How scores (n, n_actions) become a distribution.

    - ``greedy``: mass split evenly over the argmax set;
    - ``epsilon_greedy``: ``(1 - epsilon) * greedy + epsilon / |support|``;
    - ``softmax``: ``exp(s / temperature)`` normalised (``temperature > 0``).

    ``support`` (optional boolean mask over actions) gives zero probability to
    the items outside it: a deficient-support policy, as real loggers often are.
    """

    kind: str = "greedy"
    epsilon: float = 0.0
    temperature: float = 1.0

    KINDS = ("greedy", "epsilon_greedy", "softmax")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise InputError(f"head kind must be one of {list(self.KINDS)}; got {self.kind!r}")
        check_scalar(self.epsilon, "epsilon", float, min=0.0, max=1.0)
        check_scalar(self.temperature, "temperature", float, min=0.0, min_inclusive=False)

    def apply(self, scores: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
        """Distribution (n, n_actions) float64 from ``scores`` (n, n_actions).

        float32 ``softmax`` scores take the fused path of :meth:`sample` (float32
        weights ``exp((s - max s) / temperature)``, float64 normaliser), so a policy's
        ``action_dist`` and the pscores its ``sample`` logs are the same numbers.
        ``greedy`` / ``epsilon_greedy``: :meth:`GreedyDist.dense` of :meth:`greedy`.
        """
        if self.kind != "softmax":
            return self.greedy(scores, support).dense()
        if np.asarray(scores).dtype == np.float32:
            return _softmax_weights(np.asarray(scores), self.temperature, support).dense()
        s = np.asarray(scores, dtype=np.float64)
        if support is not None:
            s = np.where(support[None, :], s, -np.inf)
        z = s - s.max(axis=1, keepdims=True)  # a fresh array: safe to work in place
        z *= 1.0 / self.temperature
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def compact(
        self, scores: np.ndarray, support: np.ndarray | None = None
    ) -> GreedyDist | np.ndarray:
        """The distribution of :meth:`apply` in its cheapest exact form: :meth:`greedy`
        for the greedy heads, the dense ``(n, n_actions)`` array for ``softmax``."""
        if self.kind == "softmax":
            return self.apply(scores, support)
        return self.greedy(scores, support)

    def greedy(self, scores: np.ndarray, support: np.ndarray | None = None) -> GreedyDist:
        """The ``greedy`` / ``epsilon_greedy`` distribution of ``scores`` (n, n_actions) in
        factored form (:class:`GreedyDist`), without an ``(n, n_actions)`` float array.

        The argmax set of row ``i`` is ``{a : s_ia == max_a s_ia}`` (after ``support``
        masks the other items to ``-inf``), as in the dense formula; rows where it is not
        the single first argmax (ties, or a nan maximum, whose set is empty) keep their
        argmax set as a boolean row. A row has a tie when its second-largest score (the
        maximum once the first argmax is set to ``-inf``, in a cache-sized copy of a
        block of rows) equals its maximum.
        """
        if self.kind == "softmax":
            raise InputError("greedy() needs a greedy or epsilon_greedy head; got softmax")
        s = np.asarray(scores)
        if s.dtype not in (np.float32, np.float64):  # widening is exact: same maxima, ties
            s = s.astype(np.float64)
        if support is not None:
            s = np.where(support[None, :], s, -np.inf)
        best, top, second = _top_two(s)
        odd = np.flatnonzero((second == top) | (top != top))  # ties; nan: an empty set
        return self._greedy_dist(best, odd, s[odd] == top[odd, None], s.shape[1], support)

    def greedy_linear(self, phi: np.ndarray, weights: np.ndarray) -> GreedyDist:
        r"""``self.greedy(phi @ weights)`` for linear scores (``phi`` (n, p) and ``weights``
        (p, n_actions), float64), mostly from float32 scores: half the bytes and a faster
        product, with provably the same argmax sets.

        Float32 scores are within
        :math:`B_i = ((p + 3) u + (p + 1) 2^{-53}) \sum_j |\phi_{ij}| \max_a |w_{ja}|`
        (:math:`u = 2^{-24}`) of the float64 ones, whatever the summation order (the
        rounding of the inputs and of the ``p``-term sums, both ways). A row whose two
        largest float32 scores differ by more than :math:`2 B_i` (the bound doubled again
        as a margin) therefore has a unique float64 argmax, the float32 one. The other
        rows (ties, near-ties, non-finite scores) are scored in float64 as usual and go
        through :meth:`greedy` (padded to at least 16 rows, so the product is the same
        matrix-matrix kernel as for a whole batch).
        """
        if self.kind == "softmax":
            raise InputError("greedy_linear() needs a greedy or epsilon_greedy head; got softmax")
        phi, weights = np.asarray(phi, np.float64), np.asarray(weights, np.float64)
        if not np.isfinite(weights).all():
            return self.greedy(phi @ weights)
        p = phi.shape[1]
        s32 = phi.astype(np.float32) @ weights.astype(np.float32)
        best, top, second = _top_two(s32)
        margin = 2.0 * ((p + 3) * 2.0**-24 + (p + 1) * 2.0**-53)
        bound = np.abs(phi) @ (np.abs(weights).max(axis=1) * margin)
        with np.errstate(invalid="ignore"):  # inf - inf for overflowed rows: unsure
            sure = np.isfinite(top) & (top.astype(np.float64) - second > 2.0 * bound)
        unsure = np.flatnonzero(~sure)
        if not unsure.size:
            return self._greedy_dist(best, unsure, np.zeros((0, s32.shape[1]), bool), s32.shape[1])
        rows = np.concatenate([unsure, np.full(max(0, 16 - unsure.size), unsure[0])])
        g = self.greedy(phi[rows] @ weights).subset(np.arange(unsure.size))
        best[unsure] = g.best
        return self._greedy_dist(best, unsure[g.odd], g.odd_top, s32.shape[1])

    def _greedy_dist(
        self,
        best: np.ndarray,
        odd: np.ndarray,
        odd_top: np.ndarray,
        k: int,
        support: np.ndarray | None = None,
    ) -> GreedyDist:
        eps = 0.0 if self.kind == "greedy" else self.epsilon
        allowed = np.ones(k, bool) if support is None else support
        floor = eps * (allowed / allowed.sum()) if eps > 0.0 else np.zeros(k)
        return GreedyDist(best, eps, floor, odd, odd_top)

    def sample(
        self,
        scores: np.ndarray,
        rng: np.random.Generator,
        support: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one action per row of ``scores`` (n, n_actions) without the dense distribution.

        Returns ``(actions (n,) int64, pscores (n,) float64)``, with
        ``pscores[i] == self.apply(scores, support)[i, actions[i]]``:

        - ``softmax`` with float32 scores (float64 scores take the dense float64
          distribution of :meth:`apply` and :func:`sample_from_dist`): weights
          ``e_ij = exp((s_ij - max_j s_ij) / temperature)`` in float32, one pass over the
          scores; float32 sums ``B_ib`` over blocks of ``sqrt(n_actions)`` items and their
          float64 total ``Z_i``. A two-level inverse CDF draws block ``b`` with probability
          ``B_ib / Z_i``, then item ``a`` in it with probability ``e_ia / S_ib`` (``S_ib``:
          the block's weights summed in float64), reading ``n_blocks + block size``
          numbers per row instead of a full cumsum. The pscore is that draw's probability,
          ``(e_ia / S_ib) (B_ib / Z_i)`` in float64, which is also what :meth:`apply`
          returns for float32 scores. It equals the float64 softmax of the same scores up
          to float32 rounding (relative ``~1e-7 (1 + |s_ij - max s| / temperature)``),
          uniformly over items: a rare item's propensity is as accurate as a common one's.
        - ``greedy`` / ``epsilon_greedy``: argmax (ties: uniform among them, found only for
          the rows that have ties) with probability ``1 - epsilon``, else uniform over the
          support; ``pscore = (1 - epsilon) [a in argmax] / |argmax| + epsilon / |support|``.
        """
        s = np.asarray(scores)
        n = s.shape[0]
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        if self.kind == "softmax":
            if s.dtype != np.float32:  # the dense float64 distribution, as apply() gives
                return sample_from_dist(self.apply(s, support), rng)
            return _sample_softmax(s, self.temperature, support, rng)
        return self._sample_greedy(s, rng, support)

    def _sample_greedy(
        self, s: np.ndarray, rng: np.random.Generator, support: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n, k = s.shape
        if support is not None:
            s = np.where(support[None, :], s, -np.inf)
        rows = np.arange(n)
        best, top_val, second = _top_two(s)
        # the argmax sets' sizes: 1, except where the second-largest score ties (or nan: 0)
        odd = np.flatnonzero((second == top_val) | (top_val != top_val))
        is_max = s[odd] == top_val[odd, None]
        ties = np.ones(n, np.intp)
        ties[odd] = np.count_nonzero(is_max, axis=1)
        actions = best.astype(np.int64)
        several = ties[odd] > 1
        tied = odd[several]
        if tied.size:  # uniform among the tied maxima, for those rows only
            pick = (rng.random(tied.size) * ties[tied]).astype(np.int64)
            is_max = is_max[several]
            rank = np.cumsum(is_max, axis=1) - 1
            actions[tied] = np.argmax(is_max & (rank == pick[:, None]), axis=1)
        eps = 0.0 if self.kind == "greedy" else self.epsilon
        allowed = np.arange(k) if support is None else np.flatnonzero(support)
        if eps > 0.0:
            explore = rng.random(n) < eps
            m = int(np.count_nonzero(explore))
            actions[explore] = allowed[rng.integers(0, allowed.size, size=m)]
        is_top = (s[rows, actions] == top_val).astype(np.float64)
        greedy = is_top / ties
        if eps == 0.0:
            return actions, greedy
        return actions, (1.0 - eps) * greedy + eps * (1.0 / allowed.size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d


@dataclass(frozen=True)
class GreedyDist:
    r"""A greedy / epsilon-greedy distribution in factored form (what :meth:`Head.greedy`
    returns): for row :math:`i` with argmax set :math:`T_i`,

    .. math::

        \pi(a|x_i) = f_a + (1 - \epsilon) [a \in T_i] / |T_i|,
        \qquad f_a = \epsilon [a \text{ allowed}] / |\text{allowed}|

    (``epsilon`` is 0 for a greedy head). Most rows have ``T_i = {best_i}``; the rows
    ``odd`` do not (ties, or an empty set when the row's maximum is nan) and keep ``T_i``
    as a boolean row. Memory: ``n`` indices instead of ``n * n_actions`` floats.

    Every number is the one :meth:`dense` (= :meth:`Head.apply`) holds, bit for bit, so
    :meth:`at` gives the same importance weights as reading the dense array.

    Attributes:
        best: (n,) intp, the first argmax of each row.
        epsilon: the exploration share (0 for ``greedy``).
        floor: (n_actions,) float64, :math:`f_a`.
        odd: (m,) intp, the rows whose argmax set is not ``{best}``, ascending.
        odd_top: (m, n_actions) bool, their argmax sets.
    """

    best: np.ndarray
    epsilon: float
    floor: np.ndarray
    odd: np.ndarray
    odd_top: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, n_actions)``, the shape of :meth:`dense`."""
        return (int(self.best.shape[0]), int(self.floor.shape[0]))

    def _odd_share(self) -> np.ndarray:
        """(m,) ``1 / |T_i|`` of the odd rows (inf for an empty set: never read)."""
        with np.errstate(divide="ignore"):
            return 1.0 / self.odd_top.sum(axis=1)

    def at(self, action: np.ndarray) -> np.ndarray:
        """:math:`\\pi(a_i|x_i)` (n,) float64 for ``action`` (n,) in ``[0, n_actions)``."""
        head = 1.0 - self.epsilon
        f = self.floor[action]
        p = np.where(action == self.best, head + f, f)
        if self.odd.size:
            a = action[self.odd]
            hit = self.odd_top[np.arange(self.odd.size), a]
            p[self.odd] = np.where(hit, head * self._odd_share() + f[self.odd], f[self.odd])
        return p

    def expect(self, values: np.ndarray) -> np.ndarray:
        """:math:`\\sum_a \\pi(a|x_i) v_{ia}` (n,) float64 for ``values`` (n, n_actions):
        ``v @ f + (1 - epsilon) v[i, best_i]``, one matrix-vector product and no
        ``(n, n_actions)`` temporary (the odd rows: their :meth:`dense` rows times ``v``)."""
        n = self.shape[0]
        v = np.asarray(values)
        out = v @ self.floor if self.epsilon > 0.0 else np.zeros(n)
        out += (1.0 - self.epsilon) * v[np.arange(n), self.best]
        if self.odd.size:
            out[self.odd] = np.einsum("ma,ma->m", self.dense(self.odd), v[self.odd])
        return out

    def subset(self, rows: np.ndarray) -> GreedyDist:
        """The distribution of ``rows`` (m,) (ascending indices), as a ``GreedyDist``."""
        keep = np.isin(self.odd, rows)
        return GreedyDist(
            self.best[rows],
            self.epsilon,
            self.floor,
            np.searchsorted(rows, self.odd[keep]),
            self.odd_top[keep],
        )

    def sparse(self) -> SparseDist:
        """The same distribution as a :class:`SparseDist`: candidates ``best_i`` with mass
        ``1 - epsilon`` (the odd rows: their argmax sets, ``(1 - epsilon) / |T_i|`` each;
        rows padded with repeats of mass 0), floor ``epsilon`` over the allowed items."""
        n, k = self.shape
        width = 1 if not self.odd.size else max(1, int(self.odd_top.sum(axis=1).max()))
        items = np.repeat(self.best[:, None], width, axis=1).astype(np.intp)
        probs = np.zeros((n, width))
        probs[:, 0] = 1.0 - self.epsilon
        if self.odd.size:
            share = (1.0 - self.epsilon) * self._odd_share()
            r, c = np.nonzero(self.odd_top)
            rank = np.arange(r.size) - np.searchsorted(r, r)  # position within its row
            probs[self.odd] = 0.0
            items[self.odd] = self.best[self.odd, None]
            items[self.odd[r], rank] = c
            probs[self.odd[r], rank] = share[r]
        support = None
        if self.epsilon > 0.0 and not (self.floor > 0).all():
            support = self.floor > 0
        return SparseDist(items, probs, k, self.epsilon, support)

    def dense(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The distribution (m, n_actions) float64 of ``rows``, as :meth:`Head.apply` has
        always built it: the floor everywhere, ``(1 - epsilon) / |T_i| + f_a`` on
        :math:`T_i` (``1 / |T_i|`` alone for a greedy head)."""
        idx = np.arange(self.shape[0])[rows]
        out = np.empty((idx.size, self.shape[1]))
        out[:] = self.floor[None, :]
        head = 1.0 - self.epsilon
        best = self.best[idx]
        out[np.arange(idx.size), best] = head + self.floor[best]
        mark = np.zeros(self.shape[0], bool)
        mark[self.odd] = True
        is_odd = mark[idx]
        if is_odd.any():
            j = np.searchsorted(self.odd, idx[is_odd])  # their places in ``odd``
            sub = np.broadcast_to(self.floor, (j.size, self.shape[1])).copy()
            r, c = np.nonzero(self.odd_top[j])
            sub[r, c] = head * self._odd_share()[j][r] + self.floor[c]
            out[is_odd] = sub
        return out


@dataclass(frozen=True)
class SparseDist:
    r"""A distribution over a (possibly huge) catalog in factored form: per row ``i``,
    ``M`` candidate items :math:`c_{i1..iM}` with masses :math:`p_{im}`, plus a uniform
    floor of total mass :math:`\epsilon` over the allowed items :math:`S` (the whole
    catalog, or ``support``):

    .. math::

        \pi(a|x_i) = \sum_m p_{im} [c_{im} = a] + \epsilon [a \in S] / |S|,
        \qquad \sum_m p_{im} + \epsilon = 1.

    A candidate may repeat within a row (its masses add; padding uses mass 0). Memory:
    ``2 n M`` numbers instead of ``n * n_actions``; every operation below costs
    ``O(n M)`` (plus ``O(n_actions)`` once for the support), never ``O(n * n_actions)``.

    Operations (all exact): :meth:`at` (the propensity of a given item), :meth:`sample`,
    :meth:`group_probs` / :meth:`group_at` (the probability of an item group, e.g. a
    topic: what MIPS weights by), :meth:`expect` (the expected value of a function of
    the item, from its values at the candidates and its mean over ``S``), and
    :meth:`dense` for small catalogs (tests, ``check_policy``).

    Attributes:
        items: (n, M) intp, candidate items in ``[0, n_actions)``.
        probs: (n, M) float64, their masses (the floor excluded), non-negative.
        n_actions: catalog size.
        floor: :math:`\epsilon` in [0, 1], the total uniform mass.
        support: None (all items) or (n_actions,) bool, the items the floor covers.

    >>> d = SparseDist(np.array([[2, 0]]), np.array([[0.6, 0.2]]), 4, floor=0.2)
    >>> d.dense()
    array([[0.25, 0.05, 0.65, 0.05]])
    >>> d.at(np.array([1])), d.group_probs(np.array([0, 0, 1, 1]), 2)
    (array([0.05]), array([[0.3, 0.7]]))
    """

    items: np.ndarray
    probs: np.ndarray
    n_actions: int
    floor: float = 0.0
    support: np.ndarray | None = None

    def __post_init__(self) -> None:
        items, probs = np.asarray(self.items), np.asarray(self.probs, np.float64)
        if items.ndim != 2 or probs.shape != items.shape:
            raise InputError(
                f"SparseDist items and probs must be (n, M) arrays of one shape; got "
                f"{items.shape} and {probs.shape}"
            )
        if items.dtype.kind not in "iu":
            raise InputError(f"SparseDist items must be integers; got dtype {items.dtype}")
        if not 0.0 <= self.floor <= 1.0:
            raise InputError(f"SparseDist floor must be in [0, 1]; got {self.floor!r}")
        if items.size and (items.min() < 0 or items.max() >= self.n_actions):
            i = int(np.flatnonzero(((items < 0) | (items >= self.n_actions)).any(axis=1))[0])
            raise InputError(
                f"SparseDist items must be in [0, {self.n_actions}); row {i} has "
                f"{items[i].tolist()}"
            )
        if self.support is not None:
            object.__setattr__(self, "support", _check_support(self.support, self.n_actions))
        object.__setattr__(self, "items", items.astype(np.intp, copy=False))
        object.__setattr__(self, "probs", probs)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, n_actions)``, the shape of :meth:`dense`."""
        return (int(self.items.shape[0]), int(self.n_actions))

    @property
    def n_support(self) -> int:
        """:math:`|S|`, the number of items the floor covers."""
        return self.n_actions if self.support is None else int(self.support.sum())

    @property
    def floor_share(self) -> float:
        """:math:`\\epsilon / |S|`, the floor's mass on each allowed item."""
        return self.floor * (1.0 / self.n_support) if self.floor > 0.0 else 0.0

    def floor_at(self, action: np.ndarray) -> np.ndarray:
        """The floor's mass (n,) float64 on ``action`` (n,)."""
        a = np.asarray(action)
        if self.support is None:
            return np.full(a.shape, self.floor_share)
        return np.where(self.support[a], self.floor_share, 0.0)

    def at(self, action: np.ndarray) -> np.ndarray:
        """:math:`\\pi(a_i|x_i)` (n,) float64 for ``action`` (n,) in ``[0, n_actions)``."""
        a = np.asarray(action)
        hit = self.items == a[:, None]
        return np.einsum("nm,nm->n", self.probs, hit) + self.floor_at(a)

    def group_sizes(self, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """(n_groups,) number of allowed items in each group (``groups`` (n_actions,))."""
        g = np.asarray(groups)
        allowed = None if self.support is None else self.support.astype(np.float64)
        return np.bincount(g, weights=allowed, minlength=n_groups)

    def group_probs(self, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """:math:`\\pi(g|x_i) = \\sum_{a: g_a = g} \\pi(a|x_i)` (n, n_groups) float64, for
        item groups ``groups`` (n_actions,) in ``[0, n_groups)``: the candidates' masses
        added into their groups, plus the floor times each group's share of ``S``."""
        n = self.shape[0]
        g = np.asarray(groups)[self.items]  # (n, M)
        flat = g + (np.arange(n) * n_groups)[:, None]
        out: np.ndarray = np.bincount(
            flat.ravel(), weights=self.probs.ravel(), minlength=n * n_groups
        ).reshape(n, n_groups)
        if self.floor > 0.0:
            out += self.floor_share * self.group_sizes(groups, n_groups)[None, :]
        return out

    def group_at(self, groups: np.ndarray, group: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """:math:`\\pi(g_i|x_i)` (n,) for the groups ``group`` (n,), with ``sizes`` from
        :meth:`group_sizes`: ``O(n M)``, without the ``(n, n_groups)`` table."""
        g = np.asarray(group)
        same = np.asarray(groups)[self.items] == g[:, None]
        out = np.einsum("nm,nm->n", self.probs, same)
        if self.floor > 0.0:
            out += self.floor_share * np.asarray(sizes, np.float64)[g]
        return out

    def expect(self, at_items: np.ndarray, support_mean: np.ndarray | float = 0.0) -> np.ndarray:
        """:math:`\\sum_a \\pi(a|x_i) v_{ia}` (n,) float64 from ``at_items`` (n, M), the
        values at the candidates, and ``support_mean`` (n,) (or a scalar),
        :math:`\\frac{1}{|S|} \\sum_{a \\in S} v_{ia}` (an unbiased estimate of it makes an
        unbiased estimate of the expectation): ``sum_m p v + epsilon * mean_S v``."""
        out = np.einsum("nm,nm->n", self.probs, np.asarray(at_items, np.float64))
        if self.floor > 0.0:
            out += self.floor * np.asarray(support_mean, np.float64)
        return out

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One item per row: ``(actions (n,) int64, pscores (n,) float64)`` with
        ``pscores == at(actions)``.

        One uniform ``u_i`` per row picks the candidate by inverse CDF over
        ``probs[i]`` when ``u_i (sum_m p_im + epsilon) < sum_m p_im``, else the floor; the
        floor's rows then draw a uniform item of ``S`` (a second draw for those rows only).
        """
        n, m = self.items.shape
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        cdf = np.cumsum(self.probs, axis=1) if m else np.zeros((n, 0))
        head = cdf[:, -1] if m else np.zeros(n)
        t = rng.random(n) * (head + self.floor)
        cand = t < head
        pick = np.minimum((cdf <= t[:, None]).sum(axis=1), max(m - 1, 0))
        actions = np.zeros(n, np.int64)
        rows = np.flatnonzero(cand)
        actions[rows] = self.items[rows, pick[rows]]
        rest = np.flatnonzero(~cand)
        if rest.size:
            allowed = self.n_support
            draw = rng.integers(0, allowed, size=rest.size)
            actions[rest] = draw if self.support is None else np.flatnonzero(self.support)[draw]
        return actions, self.at(actions)

    def subset(self, rows: np.ndarray | slice) -> SparseDist:
        """The distribution of ``rows`` only."""
        return SparseDist(
            self.items[rows], self.probs[rows], self.n_actions, self.floor, self.support
        )

    def dense(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The distribution (m, n_actions) float64 of ``rows`` (small catalogs only)."""
        items, probs = self.items[rows], self.probs[rows]
        out = np.zeros((items.shape[0], self.n_actions))
        if self.floor > 0.0:
            out[:] = self.floor_at(np.arange(self.n_actions))[None, :]
        r = np.repeat(np.arange(items.shape[0]), items.shape[1])
        np.add.at(out, (r, items.ravel()), probs.ravel())
        return out

    def check(self) -> None:
        """Masses non-negative and finite, each row summing to 1 (within 1e-6); the
        error names the first bad row."""
        total = self.probs.sum(axis=1) + self.floor
        bad = ~((self.probs >= 0).all(axis=1) & (np.abs(total - 1.0) <= 1e-6))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"SparseDist rows must hold non-negative masses summing to 1 with the floor; "
                f"row {i} has probs {self.probs[i].tolist()} and floor {self.floor!r}"
            )


class UniformPolicy(BasePolicy):
    """Uniform random over all items, or over ``support`` (boolean mask) when given."""

    def __init__(self, n_actions: int, support: np.ndarray | None = None) -> None:
        check_scalar(n_actions, "n_actions", int, min=1)
        self.n_actions = n_actions
        self.support = None if support is None else _check_support(support, n_actions)

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        row = np.full(self.n_actions, 1.0 / self.n_actions)
        if self.support is not None:
            row = self.support / self.support.sum()
        return np.broadcast_to(row, (obs.shape[0], self.n_actions)).copy()

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = np.asarray(obs).shape[0]
        if self.support is None:
            actions = np.asarray(rng.integers(0, self.n_actions, size=n), dtype=np.int64)
            return actions, np.full(n, 1.0 / self.n_actions)
        allowed = np.flatnonzero(self.support)
        return allowed[rng.integers(0, allowed.size, size=n)], np.full(n, 1.0 / allowed.size)

    def spec(self) -> dict[str, Any]:
        support = None if self.support is None else np.flatnonzero(self.support).tolist()
        return {"type": "uniform", "n_actions": self.n_actions, "support": support}


class ScorePolicy(BasePolicy):
    """A scorer ``obs (n, d) -> scores (n, n_actions)`` followed by a :class:`Head`."""

    def __init__(
        self,
        scorer: Callable[[np.ndarray], np.ndarray],
        n_actions: int,
        head: Head | None = None,
        support: np.ndarray | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        check_scalar(n_actions, "n_actions", int, min=1)
        self.scorer = scorer
        self.n_actions = n_actions
        self.head = head or Head()
        self.support = None if support is None else _check_support(support, n_actions)
        self._spec = spec or {"type": "score"}

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        scores = self.scorer(np.asarray(obs))
        if scores.shape != (len(obs), self.n_actions):
            raise InputError(f"scorer must return shape (n, {self.n_actions}); got {scores.shape}")
        return self.head.apply(scores, self.support)

    def action_dist_compact(self, obs: np.ndarray) -> GreedyDist | np.ndarray:
        """:meth:`action_dist` in the head's cheapest exact form (:meth:`Head.compact`)."""
        scores = self.scorer(np.asarray(obs))
        if scores.shape != (len(obs), self.n_actions):
            raise InputError(f"scorer must return shape (n, {self.n_actions}); got {scores.shape}")
        return self.head.compact(scores, self.support)

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Actions and pscores straight from the scores (:meth:`Head.sample`): no dense
        distribution is built, and ``pscore == action_dist(obs)[i, action]``."""
        scores = self.scorer(np.asarray(obs))
        if scores.shape != (len(obs), self.n_actions):
            raise InputError(f"scorer must return shape (n, {self.n_actions}); got {scores.shape}")
        return self.head.sample(scores, rng, self.support)

    def spec(self) -> dict[str, Any]:
        support = None if self.support is None else np.flatnonzero(self.support).tolist()
        return {**self._spec, "head": self.head.to_dict(), "support": support}


_BLOCK_ELEMS = 1 << 17  # Head.greedy scans scores in blocks of ~1 MB (cache-resident)


def _top_two(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``s`` (n, k): the first argmax (n,) intp, the maximum and the second-largest
    score (the maximum once the first argmax is set to ``-inf``; ``-inf`` when k = 1),
    both (n,) of ``s``'s dtype. Rows are read in cache-sized copies of blocks, over row
    ranges on several threads for a large ``s`` (:func:`over_row_ranges`)."""
    n, k = s.shape
    best = np.empty(n, np.intp)
    top = np.empty(n, s.dtype)
    second = np.empty(n, s.dtype)
    step = max(1, _BLOCK_ELEMS // max(k, 1))

    def scan(lo: int, hi: int) -> None:
        buf = np.empty((min(step, hi - lo), k), s.dtype)
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            rest = buf[: b - a]
            rest[...] = s[a:b]
            rows = np.arange(b - a)
            first = rest.argmax(axis=1)
            best[a:b] = first
            top[a:b] = rest[rows, first]
            rest[rows, first] = -np.inf
            second[a:b] = rest[rows, rest.argmax(axis=1)]

    over_row_ranges(scan, n, s.size)
    return best, top, second


def _block_size(k: int) -> int:
    return max(1, int(round(np.sqrt(k))))


@dataclass
class _SoftmaxParts:
    """The numbers a softmax head's distribution is made of (see :meth:`Head.sample`).

    e: (n, n_blocks * block_size) float32 weights, the ``k`` items then zero padding;
    blocks: (n, n_blocks) float32 block sums; z: (n,) float64 sum of the block sums,
    accumulated block by block; k: the number of items.
    """

    e: np.ndarray
    blocks: np.ndarray
    z: np.ndarray
    k: int

    def within_sums(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(m, n_blocks) float64 sums of each block's weights, item by item in order (the
        order :func:`_draw_softmax` adds them in, so the pscores it draws are these numbers)."""
        e = self.e[rows]
        nb = self.blocks.shape[1]
        out = np.empty((e.shape[0], nb))
        for lo in range(0, e.shape[0], self._chunk):
            _within(e[lo : lo + self._chunk], nb, out[lo : lo + self._chunk])
        return out

    def dense(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The distribution (m, k) float64: ``(e_a / S_b) * (B_b / Z)`` for ``a`` in block
        ``b`` (0 in an empty block, whose ``S_b`` is 0). Rows are done in cache-sized chunks
        (the block sums, the division and the product on one chunk while it is in cache);
        every number is computed as in the one-pass formula."""
        e, blocks, z = self.e[rows], self.blocks[rows], self.z[rows]
        m, nb = blocks.shape
        bs = e.shape[1] // nb
        out = np.zeros((m, nb, bs))
        within = np.empty((min(self._chunk, m), nb))
        for lo in range(0, m, self._chunk):
            hi = min(lo + self._chunk, m)
            w = within[: hi - lo]
            _within(e[lo:hi], nb, w)
            o = out[lo:hi]
            np.divide(
                e[lo:hi].reshape(hi - lo, nb, bs), w[:, :, None], out=o, where=w[:, :, None] > 0
            )
            o *= (blocks[lo:hi].astype(np.float64) / z[lo:hi, None])[:, :, None]
        return out.reshape(m, -1)[:, : self.k]

    @property
    def _chunk(self) -> int:
        """Rows per chunk: about 512 KB of float32 weights."""
        return max(1, _BLOCK_ELEMS // max(self.e.shape[1], 1))


def _within(e: np.ndarray, nb: int, out: np.ndarray) -> None:
    """``out`` (m, nb) float64 = each block's sum of the float32 weights ``e`` (m, nb * bs),
    item by item in order (a left-to-right float64 sum)."""
    e3 = e.reshape(e.shape[0], nb, -1)
    out[:] = e3[:, :, 0]
    for j in range(1, e3.shape[2]):
        out += e3[:, :, j]


def _softmax_weights(
    scores: np.ndarray, temperature: float, support: np.ndarray | None
) -> _SoftmaxParts:
    """Softmax weights of float32 ``scores`` (n, k): ``e = exp((s - max s) / temperature)``
    (0 outside ``support`` and in the padding up to whole blocks of :func:`_block_size`
    items), float32 block sums and their float64 total. One copy of the scores is made."""
    n, k = scores.shape
    bs = _block_size(k)
    nb = -(-k // bs)
    s = np.empty((n, nb * bs), np.float32)
    s[:, :k] = scores
    s[:, k:] = -np.inf
    if support is not None:
        s[:, :k][:, ~support] = -np.inf
    top = s[np.arange(n), s.argmax(axis=1)]
    s -= top[:, None]
    if temperature != 1.0:
        s *= np.float32(1.0 / temperature)
    np.exp(s, out=s)
    blocks = np.einsum("nbj->nb", s.reshape(n, nb, bs))
    z = blocks[:, 0].astype(np.float64)
    for b in range(1, nb):
        z += blocks[:, b]
    return _SoftmaxParts(s, blocks, z, k)


def _sample_softmax(
    scores: np.ndarray, temperature: float, support: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Actions and pscores of the softmax of float32 ``scores`` (n, k) (:meth:`Head.sample`):
    one uniform per row from ``rng``, then :func:`_softmax_weights` and :func:`_draw_softmax`
    over row ranges, on several threads for a large ``scores``
    (:func:`~offrec.core.threads.over_row_ranges`: each row's numbers are the same either
    way). Rows that float64 rounding would land on a zero weight (a measure-zero edge) are
    then redrawn from their dense distribution, in row order."""
    n = scores.shape[0]
    u = rng.random((n,))
    actions, pscores = np.empty(n, np.int64), np.empty(n)

    def draw(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        parts = _softmax_weights(scores[lo:hi], temperature, support)
        actions[lo:hi], pscores[lo:hi], bad = _draw_softmax(parts, u[lo:hi])
        return lo + bad, parts.dense(bad) if bad.size else np.zeros((0, parts.k))

    redraw = over_row_ranges(draw, n, scores.size)
    bad = np.concatenate([rows for rows, _ in redraw])
    if bad.size:
        dist = np.concatenate([d for _, d in redraw])
        actions[bad], pscores[bad] = sample_from_dist(dist, rng)
    return actions, pscores


def _draw_softmax(parts: _SoftmaxParts, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-level inverse CDF with uniforms ``u`` (n,): block ``b`` with probability
    ``B_b / Z`` (float64 running sums of the float32 block sums), then item ``a`` of that
    block with probability ``e_a / S_b`` (float64 running sums of its weights). Returns
    actions, their exact draw probabilities ``(e_a / S_b) * (B_b / Z)``, and the rows
    that landed on a zero weight (to redraw).

    Loops run over the blocks and over the items of one block, each step a vector
    operation over all rows; the chosen blocks are read with one ``take`` of contiguous
    runs.
    """
    e, blocks, z = parts.e, parts.blocks, parts.z
    n, nb = blocks.shape
    bs = e.shape[1] // nb
    rows = np.arange(n)
    t = u * z
    acc = np.zeros(n)
    before = np.zeros(n)  # mass of the blocks before the chosen one
    block = np.zeros(n, np.int64)
    for b in range(nb - 1):
        acc += blocks[:, b]
        passed = acc <= t
        block += passed
        np.copyto(before, acc, where=passed)
    chosen = blocks[rows, block].astype(np.float64)
    # the chosen block's weights, (bs, n) float64
    vals = np.take(e.reshape(n * nb, bs), rows * nb + block, axis=0).T.astype(np.float64)
    within_sum = np.zeros(n)
    for j in range(bs):
        within_sum += vals[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (t - before) / chosen * within_sum
    acc[:] = 0.0
    item = np.zeros(n, np.int64)
    for j in range(bs - 1):
        acc += vals[j]
        item += acc <= r
    actions = block * bs + item
    weight = vals[item, rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        pscores = (weight / within_sum) * (chosen / z)
    return actions, pscores, np.flatnonzero(~(weight > 0))


def _check_support(support: np.ndarray, n_actions: int) -> np.ndarray:
    mask = np.asarray(support)
    if mask.dtype != bool:
        idx = mask.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n_actions):
            raise InputError(f"support items must be in [0, {n_actions}); got {idx.tolist()}")
        mask = np.zeros(n_actions, bool)
        mask[idx] = True
    if mask.shape != (n_actions,):
        raise InputError(f"support must have shape ({n_actions},); got {mask.shape}")
    if not mask.any():
        raise InputError("support must allow at least one item; got an empty support")
    return mask
