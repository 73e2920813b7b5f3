r"""Slate worlds: ranked lists of ``slate_size`` items, click models, slate policies, truth.

A slate is an ordered list :math:`s = (a_1, \dots, a_K)` of distinct items shown to one
user at once (bandit mode: one slate per user visit). The users, items and their
state-free click probability :math:`q(u, i)` are the :class:`~offrec.sim.world.World`'s
(:meth:`~offrec.sim.world.World.pair_click_probs`); a :class:`ClickModel` says how the
user turns the list into clicks. The reward of a slate is its number of clicks
:math:`\sum_k r_k`.

Click models (:math:`q_k = q(u, a_k)` the attractiveness of the item in slot ``k``, from 0):

- ``independent``: :math:`r_k \sim \mathrm{Bernoulli}(q_k)`, slots independent;
- ``pbm`` (position-based, Craswell et al. 2008): :math:`r_k \sim \mathrm{Bernoulli}(e_k q_k)`
  with examination :math:`e_k = (k + 1)^{-\eta}`;
- ``cascade`` (Craswell et al. 2008, with an abandonment probability): the user scans
  from the top, clicks slot ``k`` with probability :math:`q_k` if she examines it, stops
  after a click, and otherwise goes on with probability :math:`1 - \text{stop}`:
  :math:`P(\text{examine } k) = \prod_{j<k} (1 - q_j)(1 - \text{stop})`.

Independent and ``pbm`` clicks satisfy the item-position model (the reward of slot ``k``
depends on its item and ``k`` only; IIPS's assumption); ``cascade`` clicks depend on
the items above (RIPS's and cascade-DR's assumption); SIPS assumes nothing.

Slate policies (:class:`PlackettLuce`, :class:`TopKEpsilon`) map observations ``(n, d)``
to slate distributions the estimators read without enumerating every permutation:
sampled slates, the per-slot conditional probability :math:`\pi(a_k | x, a_{<k})` (whose
running product is the prefix, or cascade, propensity, and whose product over all slots
is the joint slate propensity), the marginal probability :math:`\pi(a \text{ at } k | x)`
(exact where feasible, else a Rao-Blackwellized Monte-Carlo estimate, flagged as such)
and the conditional distribution over the next item after a prefix (for cascade-DR).

References: N. Craswell, O. Zoeter, M. Taylor, B. Ramsey, "An experimental comparison of
click position-bias models", WSDM 2008. R. L. Plackett, "The analysis of permutations",
Applied Statistics 1975.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys
from offrec.core.validation import SeedLike, as_generator, check_scalar
from offrec.sim.world import World

CLICK_MODELS: tuple[str, ...] = ("independent", "pbm", "cascade")
"""Click model names, as the CLI and pipelines spell them."""

MAX_ENUMERATED = 20_000
"""Slates per context up to which marginals and truth are computed by enumeration."""

MARGINAL_SAMPLES = 2_000
"""Default Monte-Carlo prefix samples per context for Plackett-Luce marginals."""


# -- click models -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClickModel:
    """How a user turns a slate into clicks (see the module docstring for the formulas).

    Attributes:
        kind: one of :data:`CLICK_MODELS`.
        eta: ``pbm`` examination decay, :math:`e_k = (k + 1)^{-\\eta}`, >= 0.
        stop: ``cascade`` probability of leaving after an examined slot without a click,
            in [0, 1).
    """

    kind: str = "cascade"
    eta: float = 1.0
    stop: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in CLICK_MODELS:
            raise InputError(f"click model must be one of {list(CLICK_MODELS)}; got {self.kind!r}")
        check_scalar(self.eta, "click model eta", float, min=0.0)
        check_scalar(self.stop, "click model stop", float, min=0.0, max=1.0, max_inclusive=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "eta": self.eta, "stop": self.stop}

    def examination(self, attractiveness: np.ndarray) -> np.ndarray:
        """Probability that each slot is examined given the slate, (n, K)."""
        q = np.asarray(attractiveness, dtype=np.float64)
        n, k = q.shape
        if self.kind == "independent":
            return np.ones((n, k))
        if self.kind == "pbm":
            return np.broadcast_to((np.arange(k) + 1.0) ** -self.eta, (n, k)).copy()
        go_on = (1.0 - q) * (1.0 - self.stop)  # pass slot j without clicking, keep scanning
        exam = np.ones((n, k))
        exam[:, 1:] = np.cumprod(go_on[:, :-1], axis=1)
        return exam

    def slot_click_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """Exact :math:`P(r_k = 1 | \\text{slate})` of each slot, (n, K); its row sums are
        the expected clicks of the slates."""
        q = np.asarray(attractiveness, dtype=np.float64)
        return self.examination(q) * q

    def sample_clicks(self, attractiveness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clicks (n, K) float64 in {0, 1}, drawn with the model's law (two uniforms per slot
        for ``cascade``: the click and the stop; one otherwise)."""
        q = np.asarray(attractiveness, dtype=np.float64)
        if self.kind != "cascade":
            return (rng.random(q.shape) < self.slot_click_probs(q)).astype(np.float64)
        u = rng.random((2,) + q.shape)
        attracted = u[0] < q
        passes = ~attracted & (u[1] >= self.stop)  # examined, not clicked, keeps scanning
        reached = np.ones(q.shape, bool)
        reached[:, 1:] = np.cumprod(passes[:, :-1], axis=1).astype(bool)
        return (reached & attracted).astype(np.float64)


# -- slate policies ---------------------------------------------------------------------------
class SlatePolicy(Protocol):
    """A distribution over slates of ``slate_size`` distinct items out of ``n_items``."""

    n_items: int
    slate_size: int

    @property
    def exact_marginals(self) -> bool: ...

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def sample_repeated(
        self, obs: np.ndarray, n_samples: int, rng: np.random.Generator
    ) -> np.ndarray: ...

    def conditional(self, obs: np.ndarray, slates: np.ndarray) -> np.ndarray: ...

    def next_item_dist(self, obs: np.ndarray, slates: np.ndarray) -> np.ndarray: ...

    def marginals(
        self, obs: np.ndarray, *, n_samples: int = ..., seed: SeedLike = ...
    ) -> tuple[np.ndarray, bool]: ...

    def spec(self) -> dict[str, Any]: ...


def _check_size(slate_size: int, n_items: int) -> None:
    check_scalar(slate_size, "slate_size", int, min=1)
    if slate_size > n_items:
        raise InputError(f"slate_size must be <= n_items ({n_items}); got {slate_size}")


def _prefix_mask(slates: np.ndarray, n_items: int) -> np.ndarray:
    """``taken[i, k, a]``: item ``a`` is among the first ``k`` items of slate ``i``, (n, K, m)."""
    n, k = slates.shape
    taken = np.zeros((n, k, n_items), bool)
    rows = np.arange(n)
    for j in range(k - 1):  # a loop over slots (K is small), vectorized over slates
        taken[rows, j + 1 :, slates[:, j]] = True
    return taken


class PlackettLuce:
    r"""Plackett-Luce ranking over a base policy: sampling without replacement with item
    weights :math:`v_a = \pi_0(a|x)^{1/T}` (``base`` any :class:`~offrec.core.policy.Policy`,
    ``temperature`` T > 0; T = 1 ranks by the base policy's own probabilities).

    .. math::

        \pi(a_k | x, a_{<k}) = \frac{v_{a_k}}{\sum_a v_a - \sum_{j<k} v_{a_j}},
        \qquad \pi(s | x) = \prod_{k} \pi(a_k | x, a_{<k})

    Sampling is the Gumbel top-k trick (Yellott 1977): the ``K`` largest of
    :math:`\log v_a + G_a`, :math:`G_a` i.i.d. Gumbel, in order. Marginals
    :math:`\pi(a \text{ at } k | x)` are exact by enumeration when at most
    :data:`MAX_ENUMERATED` ordered prefixes exist, else the Rao-Blackwellized estimate
    :math:`\frac{1}{S}\sum_{s=1}^S [a \notin p_s]\, v_a / (\sum_b v_b - \sum_{b \in p_s} v_b)`
    over ``S`` sampled prefixes :math:`p_s` of length ``k`` (unbiased; each prefix
    contributes the exact next-item distribution). Items with weight 0 are never shown;
    a context needs at least ``slate_size`` items of positive weight.
    """

    def __init__(self, base: Any, slate_size: int, temperature: float = 1.0) -> None:
        self.base = base
        self.n_items = int(base.n_actions)
        _check_size(slate_size, self.n_items)
        check_scalar(temperature, "temperature", float, min=0.0, min_inclusive=False)
        self.slate_size = slate_size
        self.temperature = float(temperature)

    def spec(self) -> dict[str, Any]:
        base = (
            self.base.spec() if hasattr(self.base, "spec") else {"type": type(self.base).__name__}
        )
        return {
            "type": "plackett-luce",
            "slate_size": self.slate_size,
            "temperature": self.temperature,
            "base": base,
        }

    def weights(self, obs: np.ndarray) -> np.ndarray:
        """Item weights :math:`v` (n, n_items), each row scaled to sum to 1."""
        p = np.asarray(self.base.action_dist(np.asarray(obs)), dtype=np.float64)
        if self.temperature != 1.0:
            with np.errstate(divide="ignore"):
                logp = np.log(p) / self.temperature
            logp -= logp.max(axis=1, keepdims=True)
            p = np.exp(logp)
        v = p / p.sum(axis=1, keepdims=True)
        short = (v > 0).sum(axis=1) < self.slate_size
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise InputError(
                f"a Plackett-Luce slate of {self.slate_size} needs as many items of positive "
                f"probability; row {i} has {int((v[i] > 0).sum())}"
            )
        return v

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Slates (n, K) int64, by the Gumbel top-k trick."""
        return _gumbel_top_k(self.weights(obs), self.slate_size, rng)

    def conditional(self, obs: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """:math:`\\pi(a_k | x, a_{<k})` of the given slates, (n, K)."""
        v = self.weights(obs)
        vs = np.take_along_axis(v, slates, axis=1)
        left = 1.0 - np.concatenate([np.zeros((len(v), 1)), np.cumsum(vs, axis=1)[:, :-1]], 1)
        return vs / np.maximum(left, 1e-300)

    def next_item_dist(self, obs: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """:math:`\\pi(a | x, a_{<k})` for every item ``a`` and slot ``k``, (n, K, n_items)."""
        v = self.weights(obs)
        taken = _prefix_mask(slates, self.n_items)
        dist = np.where(taken, 0.0, v[:, None, :])
        return dist / dist.sum(axis=2, keepdims=True)

    @property
    def exact_marginals(self) -> bool:
        """Whether :meth:`marginals` is exact (few enough prefixes to enumerate)."""
        return math.perm(self.n_items, self.slate_size - 1) <= MAX_ENUMERATED

    def sample_repeated(
        self, obs: np.ndarray, n_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        """``n_samples`` slates per row of ``obs``, (n * n_samples, K), rows grouped by
        context; the weights are computed once per context."""
        v = np.repeat(self.weights(obs), n_samples, axis=0)
        return _gumbel_top_k(v, self.slate_size, rng)

    def marginals(
        self, obs: np.ndarray, *, n_samples: int = MARGINAL_SAMPLES, seed: SeedLike = 0
    ) -> tuple[np.ndarray, bool]:
        """:math:`\\pi(a \\text{ at } k | x)`, (n, K, n_items), and whether it is exact."""
        v = self.weights(obs)
        K = self.slate_size
        if self.exact_marginals:
            return _pl_marginals_exact(v, K), True
        check_scalar(n_samples, "n_samples", int, min=1)
        return _pl_marginals_mc(v, K, n_samples, as_generator(seed)), False


def _gumbel_top_k(v: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    with np.errstate(divide="ignore"):
        keys = np.log(v) + rng.gumbel(size=v.shape)
    top = (
        np.argpartition(-keys, k - 1, axis=1)[:, :k]
        if k < v.shape[1]
        else np.tile(np.arange(v.shape[1]), (len(v), 1))
    )
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def _pl_marginals_exact(v: np.ndarray, K: int) -> np.ndarray:
    """Exact PL marginals by enumerating the ordered prefixes (tiny catalogs only)."""
    n, m = v.shape
    out = np.zeros((n, K, m))
    out[:, 0] = v
    for k in range(1, K):
        prefixes = np.array(list(itertools.permutations(range(m), k)), dtype=np.int64)  # (P, k)
        vp = v[:, prefixes]  # (n, P, k)
        left = 1.0 - np.concatenate([np.zeros(vp.shape[:2] + (1,)), np.cumsum(vp, 2)], 2)
        prob = np.prod(vp / np.maximum(left[:, :, :-1], 1e-300), axis=2)  # (n, P)
        free = np.ones((len(prefixes), m), bool)
        free[np.arange(len(prefixes))[:, None], prefixes] = False
        # P(a at k) = sum_p P(p) [a not in p] v_a / (1 - sum_p v)
        out[:, k] = v * np.einsum("np,pm->nm", prob / np.maximum(left[:, :, -1], 1e-300), free)
    return out


def _pl_marginals_mc(v: np.ndarray, K: int, S: int, rng: np.random.Generator) -> np.ndarray:
    """Rao-Blackwellized Monte-Carlo PL marginals (see :class:`PlackettLuce`), in blocks of
    contexts so memory stays near 8 MB whatever ``n``."""
    n, m = v.shape
    out = np.empty((n, K, m))
    out[:, 0] = v
    if K == 1:
        return out
    block = max(1, (1 << 20) // (S * m))
    for lo in range(0, n, block):
        vb = v[lo : lo + block]
        b = len(vb)
        rep = np.repeat(vb, S, axis=0)  # (b*S, m)
        pre = _gumbel_top_k(rep, K - 1, rng)  # (b*S, K-1) prefixes
        vp = np.take_along_axis(rep, pre, axis=1)
        left = 1.0 - np.cumsum(vp, axis=1)  # mass left after each prefix length
        inv = 1.0 / np.maximum(left, 1e-300)  # (b*S, K-1)
        ctx = np.repeat(np.arange(b), S)
        for k in range(1, K):
            base = inv[:, k - 1].reshape(b, S).mean(axis=1)  # mean_s 1/(1 - v(p_s))
            flat = (ctx[:, None] * m + pre[:, :k]).ravel()
            hit = np.bincount(flat, weights=np.repeat(inv[:, k - 1], k), minlength=b * m)
            # >= 0 up to rounding (the hits are a part of the base sum): clip the -1e-17s
            out[lo : lo + b, k] = vb * np.maximum(base[:, None] - hit.reshape(b, m) / S, 0.0)
    return out


def ranking_scores(policy: Any, obs: np.ndarray) -> np.ndarray:
    """What a policy ranks items by, (n, n_items) float64: its own scores when it has them
    (``q_values``: Q-values; ``predict``: a learner's predicted rewards), else its action
    probabilities. A greedy policy's probabilities are one-hot, so ranking them would put
    items 0, 1, ... after the best one: a ranker reads the scores."""
    for attr in ("q_values", "predict"):
        if hasattr(policy, attr):
            return np.asarray(getattr(policy, attr)(obs), dtype=np.float64)
    return np.asarray(policy.action_dist(obs), dtype=np.float64)


class TopKEpsilon:
    r"""Top-``K`` of a base policy's scores (:func:`ranking_scores`) with probability :math:`1 - \epsilon`,
    a uniformly random slate otherwise (the slate form of epsilon-greedy).

    With :math:`t(x)` the top-``K`` list (ties to the lower item index) and
    :math:`U_k = \prod_{j<k} 1/(m - j)` the uniform probability of a prefix of length ``k``:

    .. math::

        \pi(a_{\le k} | x) = (1 - \epsilon)\,[a_{\le k} = t_{\le k}(x)] + \epsilon\, U_{k+1},
        \qquad \pi(a \text{ at } k | x) = (1 - \epsilon)[a = t_k(x)] + \epsilon / m

    Everything is exact (no enumeration).
    """

    def __init__(self, base: Any, slate_size: int, epsilon: float = 0.1) -> None:
        self.base = base
        self.n_items = int(base.n_actions)
        _check_size(slate_size, self.n_items)
        check_scalar(epsilon, "epsilon", float, min=0.0, max=1.0)
        self.slate_size = slate_size
        self.epsilon = float(epsilon)

    def spec(self) -> dict[str, Any]:
        base = (
            self.base.spec() if hasattr(self.base, "spec") else {"type": type(self.base).__name__}
        )
        return {
            "type": "top-k-epsilon",
            "slate_size": self.slate_size,
            "epsilon": self.epsilon,
            "base": base,
        }

    def top(self, obs: np.ndarray) -> np.ndarray:
        """The top-``K`` list (n, K) of the base's :func:`ranking_scores`, ties to the lower
        index."""
        p = ranking_scores(self.base, np.asarray(obs))
        return np.argsort(-p, axis=1, kind="stable")[:, : self.slate_size].astype(np.int64)

    def _uniform_prefix(self) -> np.ndarray:
        """:math:`U_{k+1}` for k = 0..K-1, (K,)."""
        return np.cumprod(1.0 / (self.n_items - np.arange(self.slate_size)))

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        top = self.top(obs)
        n = len(top)
        explore = rng.random(n) < self.epsilon
        uniform = _gumbel_top_k(np.ones((int(explore.sum()), self.n_items)), self.slate_size, rng)
        top[explore] = uniform
        return top

    def _prefix_probs(self, top: np.ndarray, slates: np.ndarray) -> np.ndarray:
        same = np.cumprod(top == slates, axis=1).astype(bool)
        return (1.0 - self.epsilon) * same + self.epsilon * self._uniform_prefix()

    def conditional(self, obs: np.ndarray, slates: np.ndarray) -> np.ndarray:
        pre = self._prefix_probs(self.top(obs), slates)
        prev = np.concatenate([np.ones((len(pre), 1)), pre[:, :-1]], axis=1)
        return np.divide(pre, prev, out=np.zeros_like(pre), where=prev > 0)

    def next_item_dist(self, obs: np.ndarray, slates: np.ndarray) -> np.ndarray:
        top = self.top(obs)
        n, K, m = len(top), self.slate_size, self.n_items
        pre = self._prefix_probs(top, slates)
        prev = np.concatenate([np.ones((n, 1)), pre[:, :-1]], axis=1)  # P(a_{<k})
        same_before = np.ones((n, K), bool)
        same_before[:, 1:] = np.cumprod(top == slates, axis=1)[:, :-1].astype(bool)
        taken = _prefix_mask(slates, m)
        u = self.epsilon * self._uniform_prefix()  # (K,) uniform mass of prefix + next item
        joint = np.where(taken, 0.0, u[None, :, None])
        rows = np.arange(n)[:, None]
        joint[rows, np.arange(K)[None, :], top] += (1.0 - self.epsilon) * same_before
        den = np.broadcast_to(prev[:, :, None], joint.shape)
        return np.divide(joint, den, out=np.zeros_like(joint), where=den > 0)

    exact_marginals: bool = True
    """:meth:`marginals` is always exact."""

    def sample_repeated(
        self, obs: np.ndarray, n_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        """``n_samples`` slates per row of ``obs``, (n * n_samples, K), rows grouped by context."""
        return self.sample(np.repeat(np.asarray(obs), n_samples, axis=0), rng)

    def marginals(
        self, obs: np.ndarray, *, n_samples: int = MARGINAL_SAMPLES, seed: SeedLike = 0
    ) -> tuple[np.ndarray, bool]:
        top = self.top(obs)
        n, K, m = len(top), self.slate_size, self.n_items
        out = np.full((n, K, m), self.epsilon / m)
        out[np.arange(n)[:, None], np.arange(K)[None, :], top] += 1.0 - self.epsilon
        return out, True


class MarginalCache:
    """A target's per-context marginals :math:`\\pi(a \\text{ at } k|x)` (n_ctx, K, m),
    computed once per distinct context in order of first appearance (see the module
    docstring); contexts are matched by a 64-bit hash of their float32 bits."""

    def __init__(
        self, policy: SlatePolicy, n_samples: int = MARGINAL_SAMPLES, seed: int = 0
    ) -> None:
        self.policy, self.n_samples = policy, n_samples
        self.rng = np.random.default_rng(seed)
        self.keys = np.zeros(0, np.uint64)  # sorted
        self.slot = np.zeros(0, np.int64)  # row of self.table for each sorted key
        self.table = np.zeros((0, policy.slate_size, policy.n_items))
        self.exact = True

    def get(self, obs: np.ndarray) -> np.ndarray:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        h = row_keys(*obs.view(np.int32).T) if obs.shape[1] else np.zeros(len(obs), np.uint64)
        pos = np.searchsorted(self.keys, h)
        if len(self.keys):
            known = (pos < len(self.keys)) & (self.keys[np.minimum(pos, len(self.keys) - 1)] == h)
        else:
            known = np.zeros(len(h), bool)
        if not known.all():
            new_h, first = np.unique(h[~known], return_index=True)
            rows = np.flatnonzero(~known)[first]
            order = np.argsort(rows, kind="stable")  # first appearance order
            new_h, rows = new_h[order], rows[order]
            marg, exact = self.policy.marginals(obs[rows], n_samples=self.n_samples, seed=self.rng)
            self.exact &= exact
            base = len(self.table)
            self.table = np.concatenate([self.table, marg])
            keys = np.concatenate([self.keys, new_h])
            slot = np.concatenate([self.slot, base + np.arange(len(new_h))])
            o = np.argsort(keys, kind="stable")
            self.keys, self.slot = keys[o], slot[o]
            pos = np.searchsorted(self.keys, h)
        return self.table[self.slot[pos]]


# -- propensities of logged slates ------------------------------------------------------------
@dataclass(frozen=True)
class SlatePropensities:
    """A policy's propensities of given slates, all (n, K) float64.

    Attributes:
        joint: :math:`\\pi(s | x)` repeated in every slot.
        item_position: :math:`\\pi(a_k \\text{ at } k | x)` (exact, or estimated: ``exact``).
        cascade: :math:`\\pi(a_{\\le k} | x)`, the prefix propensity.
        exact: whether ``item_position`` is exact. n_samples: Monte-Carlo prefixes per
            context behind ``item_position`` when it is not.
    """

    joint: np.ndarray
    item_position: np.ndarray
    cascade: np.ndarray
    exact: bool
    n_samples: int


def slate_propensities(
    policy: SlatePolicy,
    obs: np.ndarray,
    slates: np.ndarray,
    *,
    n_samples: int = MARGINAL_SAMPLES,
    seed: SeedLike = 0,
    marginals: MarginalCache | None = None,
) -> SlatePropensities:
    """The joint, per-slot marginal and prefix propensities of ``slates`` (n, K) under
    ``policy``. Marginals are computed once per distinct observation row (in bandit mode,
    once per user), so their cost grows with the users, not the slates; ``marginals``, a
    :class:`MarginalCache` of ``policy``, reuses them across calls."""
    obs = np.asarray(obs)
    slates = np.asarray(slates, dtype=np.int64)
    cascade = np.cumprod(policy.conditional(obs, slates), axis=1)
    joint = np.repeat(cascade[:, -1:], slates.shape[1], axis=1)
    K = slates.shape[1]
    if marginals is not None:
        if marginals.policy is not policy:
            raise InputError("marginals must be a MarginalCache of the same policy")
        m = marginals.get(obs)
        item = m[np.arange(len(slates))[:, None], np.arange(K)[None, :], slates]
        return SlatePropensities(
            joint, item, cascade, marginals.exact, 0 if marginals.exact else marginals.n_samples
        )
    uniq, inverse = np.unique(obs.reshape(len(obs), -1), axis=0, return_inverse=True)
    marg, exact = policy.marginals(
        uniq.reshape((-1,) + obs.shape[1:]), n_samples=n_samples, seed=seed
    )
    inverse = inverse.reshape(-1)
    item = marg[inverse[:, None], np.arange(K)[None, :], slates]
    return SlatePropensities(joint, item, cascade, exact, 0 if exact else n_samples)


# -- the slate world --------------------------------------------------------------------------
@dataclass
class SlateRounds:
    """Logged slates in bandit mode: ``n`` slates of ``K`` slots.

    user (n,), obs (n, d) float32, slates (n, K) int64, clicks (n, K) float64,
    click_prob (n, K) float64 (exact :math:`P(r_k = 1 | \\text{slate})`), and the logger's
    :class:`SlatePropensities`.
    """

    user: np.ndarray
    obs: np.ndarray
    slates: np.ndarray
    clicks: np.ndarray
    click_prob: np.ndarray
    propensities: SlatePropensities

    def rows(self) -> dict[str, np.ndarray]:
        """One row per slot (the log layout): arrays of length ``n * K`` in OBP's names:
        ``slate_id, position, action, reward, pscore`` (joint), ``pscore_item_position``,
        ``pscore_cascade``, ``user_id``, ``true_ctr``."""
        n, K = self.slates.shape
        p = self.propensities
        return {
            "slate_id": np.repeat(np.arange(n, dtype=np.int64), K),
            "position": np.tile(np.arange(K, dtype=np.int64), n),
            "action": self.slates.ravel(),
            "reward": self.clicks.ravel(),
            "pscore": p.joint.ravel(),
            "pscore_item_position": p.item_position.ravel(),
            "pscore_cascade": p.cascade.ravel(),
            "user_id": np.repeat(self.user, K),
            "true_ctr": self.click_prob.ravel(),
        }


class SlateWorld:
    """A :class:`~offrec.sim.world.World` showing slates of ``slate_size`` items under a
    :class:`ClickModel` (bandit mode: ``world.config.horizon`` must be 1).

    >>> from offrec.sim.config import WorldConfig
    >>> from offrec.core.policy import UniformPolicy
    >>> sw = SlateWorld(World(WorldConfig(n_items=6, n_users=50), seed=0), 3, ClickModel("pbm"))
    >>> logger = PlackettLuce(UniformPolicy(6), 3)
    >>> sw.true_value(logger).exact
    True
    """

    def __init__(self, world: World, slate_size: int, click_model: ClickModel) -> None:
        if world.config.horizon != 1:
            raise InputError(
                f"slate worlds run in bandit mode: world horizon must be 1; got {world.config.horizon}"
            )
        _check_size(slate_size, world.n_actions)
        self.world = world
        self.slate_size = slate_size
        self.click_model = click_model

    @property
    def n_items(self) -> int:
        return self.world.n_actions

    def users_obs(self, users: np.ndarray) -> np.ndarray:
        """Observations (n, obs_dim) of ``users`` at the start of a session."""
        batch = self.world.new_sessions(0, np.random.default_rng(0), users)
        return self.world.observe(batch)

    def expected_clicks(self, users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """Exact :math:`P(r_k = 1 | u, s)` (n, K) for each user's slate."""
        q = self.world.pair_click_probs(users, slates)
        return self.click_model.slot_click_probs(q)

    def _check(self, policy: SlatePolicy) -> None:
        if policy.slate_size != self.slate_size or policy.n_items != self.n_items:
            raise InputError(
                f"policy slates must be {self.slate_size} of {self.n_items} items; got "
                f"{policy.slate_size} of {policy.n_items}"
            )

    def log(
        self,
        policy: SlatePolicy,
        n_slates: int,
        seed: SeedLike = 0,
        *,
        marginal_samples: int = MARGINAL_SAMPLES,
        marginals: MarginalCache | None = None,
    ) -> SlateRounds:
        """Show ``n_slates`` slates drawn from ``policy`` to users drawn uniformly; clicks from
        the click model. ``seed`` fixes users, slates, clicks and (when estimated) marginals;
        ``marginals`` (a :class:`MarginalCache` of ``policy``) reuses marginals across calls."""
        self._check(policy)
        check_scalar(n_slates, "n_slates", int, min=1)
        users_rng, slate_rng, click_rng, marg_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(_seed_entropy(seed)).spawn(4)
        )
        users = users_rng.integers(0, self.world.config.n_users, size=n_slates)
        obs = self.users_obs(users)
        slates = policy.sample(obs, slate_rng)
        q = self.world.pair_click_probs(users, slates)
        clicks = self.click_model.sample_clicks(q, click_rng)
        props = slate_propensities(
            policy, obs, slates, n_samples=marginal_samples, seed=marg_rng, marginals=marginals
        )
        return SlateRounds(users, obs, slates, clicks, self.click_model.slot_click_probs(q), props)

    def true_value(
        self, policy: SlatePolicy, *, n_samples: int = 200, seed: SeedLike = 0, chunk: int = 2_000
    ) -> Any:
        """Expected clicks per slate :math:`V(\\pi) = \\frac{1}{|U|}\\sum_u E_{s \\sim \\pi(\\cdot|x_u)}
        \\sum_k P(r_k = 1 | u, s)` over the whole user population.

        Exact when the slates of a context can be enumerated (at most
        :data:`MAX_ENUMERATED`) or when the click model is ``independent`` / ``pbm`` and
        the policy's marginals are exact (:math:`V = \\text{mean}_u \\sum_{k,a} e_k\\,
        \\pi(a \\text{ at } k|x_u)\\, q(u, a)`); otherwise a Monte-Carlo mean over
        ``n_samples`` slates per user (given a slate, clicks are replaced by their exact
        probabilities) with its standard error. Returns a
        :class:`~offrec.sim.world.ValueEstimate`.
        """
        from offrec.sim.world import ValueEstimate

        self._check(policy)
        n_users, K, m = self.world.config.n_users, self.slate_size, self.n_items
        enumerable = math.perm(m, K) <= MAX_ENUMERATED
        rng = as_generator(seed)
        total, var = 0.0, 0.0
        exact = True
        for lo in range(0, n_users, chunk):
            users = np.arange(lo, min(lo + chunk, n_users))
            obs = self.users_obs(users)
            if enumerable:
                slates = np.array(list(itertools.permutations(range(m), K)), dtype=np.int64)
                for s in slates:  # a loop over slates (tiny catalogs only), vectorized over users
                    tile = np.broadcast_to(s, (len(users), K))
                    prob = np.prod(policy.conditional(obs, tile), axis=1)
                    total += float(prob @ self.expected_clicks(users, tile).sum(axis=1))
                continue
            if self.click_model.kind != "cascade" and policy.exact_marginals:
                marg, _ = policy.marginals(obs, seed=rng)
                q_all = self.world.pair_click_probs(users, np.tile(np.arange(m), (len(users), 1)))
                exam = self.click_model.examination(np.zeros((1, K)))[0]
                total += float(np.einsum("k,nkm,nm->", exam, marg, q_all))
                continue
            exact = False
            rep_users = np.repeat(users, n_samples)
            slates = policy.sample_repeated(obs, n_samples, rng)
            clicks = self.expected_clicks(rep_users, slates).sum(axis=1).reshape(-1, n_samples)
            total += float(clicks.mean(axis=1).sum())
            var += float((clicks.var(axis=1, ddof=1) / n_samples).sum())
        value = total / n_users
        stderr = math.sqrt(var) / n_users
        return ValueEstimate(value, stderr, exact, n_users if exact else n_users * n_samples)


def _seed_entropy(seed: SeedLike) -> int:
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        return int(seed)
    return int(as_generator(seed).integers(0, 2**63 - 1))
