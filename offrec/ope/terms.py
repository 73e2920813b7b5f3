r"""Per-row OPE terms: one validating pass over the inputs of a bandit estimator.

For logged rows :math:`i = 1..n` with context :math:`x_i`, action :math:`a_i`, position
:math:`k_i`, reward :math:`r_i` and logging propensity :math:`p_i = \pi_b(a_i|x_i)`:

.. math::

    w_i = \pi_e(a_i|x_i, k_i) / p_i, \qquad
    \hat q_i = \hat q(x_i, a_i, k_i), \qquad
    \hat q_i^{\pi} = \sum_a \pi_e(a|x_i, k_i)\, \hat q(x_i, a, k_i).

Every bandit estimator (:mod:`offrec.ope.estimators`) is a function of these four
per-row quantities (:class:`RoundTerms`).

Shapes: ``reward``, ``action``, ``pscore``, ``position`` are ``(n,)``;
``action_dist`` and ``estimated_rewards`` are ``(n, n_actions)`` or
``(n, n_actions, n_positions)``. ``action_dist`` may also be a greedy / epsilon-greedy
distribution in factored form (:class:`~offrec.core.policy.GreedyDist`, shape
``(n, n_actions)``): then :math:`w_i` is read at the logged action and
:math:`\hat q_i^{\pi} = \sum_a f_a \hat q(x_i, a) + (1 - \epsilon) \hat q(x_i, \arg\max_i)`,
one matrix-vector product instead of a pass over a dense ``(n, n_actions)`` array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from offrec.core.errors import InputError
from offrec.core.policy import GreedyDist, SparseDist
from offrec.core.threads import over_row_ranges
from offrec.core.validation import first_bad
from offrec.logs.schema import MIN_PSCORE, PSCORE_FLOOR_RULE

DistLike: TypeAlias = "npt.ArrayLike | GreedyDist | SparseDist"
"""A target's distribution over actions, ``(n, n_actions)``: an array (dense, or
``(n, n_actions, n_positions)``) or the factored form of a greedy / sparse head."""
RewardsLike: TypeAlias = "npt.ArrayLike | PairRewards | None"
"""A reward model's predictions: ``(n, n_actions)`` (per position), or read at the logged
items and the target's candidates only (:class:`PairRewards`); None without a model."""

SUM_TOL = 1e-6
"""Tolerance on ``|sum_a action_dist[i, a] - 1|``."""

_CHUNK_ELEMS = 1 << 17  # rows of action_dist are scanned in ~1 MB blocks (cache-resident)


@dataclass(frozen=True)
class RoundTerms:
    """The per-row quantities every estimator is built from (all ``(n,)`` float64).

    Attributes:
        reward: :math:`r_i`.
        weight: :math:`w_i = \\pi_e(a_i|x_i,k_i) / p_i` (unclipped).
        q_logged: :math:`\\hat q(x_i, a_i, k_i)`, or None without a reward model.
        q_target: :math:`\\sum_a \\pi_e(a|x_i,k_i) \\hat q(x_i, a, k_i)`, or None without one.
    """

    reward: np.ndarray
    weight: np.ndarray
    q_logged: np.ndarray | None = None
    q_target: np.ndarray | None = None
    group_weight: np.ndarray | None = None
    r""":math:`\pi_e(g_i|x_i) / \pi_b(g_i|x_i)`, the marginal weight of the logged item's group
    (MIPS, :mod:`offrec.ope.embedding`), when ``item_groups`` and ``pscore_group`` are given."""

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])


def round_terms(
    *,
    reward: npt.ArrayLike,
    action: npt.ArrayLike,
    pscore: npt.ArrayLike,
    action_dist: DistLike,
    position: npt.ArrayLike | None = None,
    estimated_rewards: RewardsLike = None,
    check_dist: bool = True,
    item_groups: npt.ArrayLike | None = None,
    pscore_group: npt.ArrayLike | None = None,
) -> RoundTerms:
    r"""Validate the inputs and compute :class:`RoundTerms` in one pass over ``action_dist``.

    Args:
        reward: (n,) observed rewards, finite.
        action: (n,) integer actions in ``[0, n_actions)``.
        pscore: (n,) logging propensities of ``action``, in (0, 1].
        action_dist: (n, n_actions) or (n, n_actions, n_positions), the target
            policy's probabilities; non-negative, summing to 1 over actions. Or a
            :class:`~offrec.core.policy.GreedyDist` of shape (n, n_actions).
        position: (n,) integer positions in ``[0, n_positions)``; None means 0.
        estimated_rewards: None or the same shape as ``action_dist``, finite.
        check_dist: check every entry of ``action_dist`` (non-negative, finite, rows
            summing to 1 within :data:`SUM_TOL`) and of ``estimated_rewards``
            (finite). These checks read the whole ``(n, n_actions)`` arrays, which
            costs more than IPS itself (about 150 ms for 1M x 100 float64);
            ``False`` skips them for arrays already checked once (the runner checks
            each policy once). Shapes and the per-row arrays are always checked.
            A ``GreedyDist`` is checked by :func:`check_greedy` (its rows hold
            non-negative finite numbers summing to 1 by construction, except the rows
            whose argmax set is empty) and its ``estimated_rewards`` are checked finite.

        item_groups: None or (n_actions,) integers >= 0, the group (topic, cluster) of
            each item; with ``pscore_group`` it adds the marginal weights
            :attr:`RoundTerms.group_weight` (:func:`group_probability`).
        pscore_group: (n,) the logger's probability of the logged item's group,
            :math:`\pi_b(g(a_i)|x_i)`, in (0, 1].

    Raises:
        ValueError: naming the argument, the rule and the first offending row,
            e.g. ``"pscore must be in (0, 1]; row 3 has 0.0"``.
    """
    terms = _round_terms(
        reward, action, pscore, action_dist, position, estimated_rewards, check_dist
    )
    if item_groups is None and pscore_group is None:
        return terms
    if item_groups is None or pscore_group is None:
        raise InputError("item_groups and pscore_group go together (marginal weights); got one")
    n = terms.n
    pg = _as_1d(pscore_group, "pscore_group", n)
    if not (pg.min() > 0.0 and pg.max() <= 1.0 + 1e-12):
        i = first_bad(~((pg > 0.0) & (pg <= 1.0 + 1e-12)))
        raise InputError(f"pscore_group must be in (0, 1]; row {i} has {float(pg[i])!r}")
    groups = np.asarray(item_groups)
    if groups.dtype.kind not in "iu" or groups.ndim != 1 or (groups.size and groups.min() < 0):
        raise InputError(
            f"item_groups must be (n_actions,) integers >= 0; got shape {groups.shape}, "
            f"dtype {groups.dtype}"
        )
    act = _as_index(action, "action", n)
    g = groups[act]
    gw = group_probability(action_dist, groups, g) / pg
    return RoundTerms(terms.reward, terms.weight, terms.q_logged, terms.q_target, gw)


def group_probability(
    action_dist: DistLike, item_groups: np.ndarray, group: np.ndarray
) -> np.ndarray:
    r""":math:`\pi(g_i|x_i) = \sum_{a: g(a) = g_i} \pi(a|x_i)` (n,) float64, the probability
    of group ``group`` (n,) under ``action_dist``: a dense ``(n, n_actions)`` array (blocks of
    rows; ``O(n n_actions)``), a :class:`~offrec.core.policy.GreedyDist` or a
    :class:`~offrec.core.policy.SparseDist` (``O(n M)``)."""
    groups = np.asarray(item_groups)
    g = np.asarray(group)
    if isinstance(action_dist, GreedyDist):
        action_dist = action_dist.sparse()
    if isinstance(action_dist, SparseDist):
        if groups.shape != (action_dist.n_actions,):
            raise InputError(
                f"item_groups must have shape ({action_dist.n_actions},); got {groups.shape}"
            )
        sizes = action_dist.group_sizes(groups, int(groups.max()) + 1)
        return action_dist.group_at(groups, g, sizes)
    dist = np.asarray(action_dist)
    if dist.ndim != 2:
        raise InputError(f"group weights need a 2-D action_dist (one position); got {dist.shape}")
    if groups.shape != (dist.shape[1],):
        raise InputError(f"item_groups must have shape ({dist.shape[1]},); got {groups.shape}")
    out = np.empty(dist.shape[0])
    step = max(1, _CHUNK_ELEMS // max(1, dist.shape[1]))
    for lo in range(0, dist.shape[0], step):
        hi = min(lo + step, dist.shape[0])
        same = groups[None, :] == g[lo:hi, None]
        out[lo:hi] = np.einsum("na,na->n", dist[lo:hi], same)
    return out


def _round_terms(
    reward: npt.ArrayLike,
    action: npt.ArrayLike,
    pscore: npt.ArrayLike,
    action_dist: DistLike,
    position: npt.ArrayLike | None,
    estimated_rewards: RewardsLike,
    check_dist: bool,
) -> RoundTerms:
    reward = _as_1d(reward, "reward")
    n = reward.shape[0]
    if n == 0:
        raise InputError("reward must have at least one row; got 0 rows")
    pscore = _as_1d(pscore, "pscore", n)
    action = _as_index(action, "action", n)
    if isinstance(action_dist, SparseDist):
        return sparse_terms(
            reward, action, pscore, action_dist, position, estimated_rewards, check_dist
        )
    if isinstance(action_dist, GreedyDist):
        return _greedy_terms(
            reward, action, pscore, action_dist, position, estimated_rewards, check_dist
        )
    dist = as_action_dist(action_dist, "action_dist", n)
    n_actions = dist.shape[1]
    n_positions = 1 if dist.ndim == 2 else dist.shape[2]
    pos = None if position is None else _as_index(position, "position", n)
    q = _as_estimates(estimated_rewards, dist.shape)
    _check_rows(reward, pscore, action, n_actions)
    if pos is not None:
        _check_range(pos, "position", n_positions, " (positions are axis 2 of action_dist)")
    if dist.ndim == 2 and pos is not None:
        pos = None  # all zeros (checked above): a 2-D action_dist has one position

    weight = _gather(dist, action, pos)
    weight /= pscore
    q_logged = None if q is None else _gather(q, action, pos)
    q_target = scan_rows(dist, q, pos, check_dist)
    return RoundTerms(reward=reward, weight=weight, q_logged=q_logged, q_target=q_target)


def _as_estimates(estimated_rewards: RewardsLike, shape: tuple[int, ...]) -> np.ndarray | None:
    """``estimated_rewards`` as an array of ``action_dist``'s shape, or None."""
    if estimated_rewards is None:
        return None
    q = np.asarray(estimated_rewards)
    if q.shape != shape:
        raise InputError(
            f"estimated_rewards must have the same shape as action_dist {shape}; got {q.shape}"
        )
    return q


def _check_rows(reward: np.ndarray, pscore: np.ndarray, action: np.ndarray, k: int) -> None:
    """Finite rewards, pscores in [MIN_PSCORE, 1], actions in ``[0, k)``; errors name the
    first bad row."""
    _check_finite(reward, "reward")
    low = pscore.min()
    if not (low > 0.0 and pscore.max() <= 1.0):  # two reductions; nan fails both
        i = first_bad(~((pscore > 0.0) & (pscore <= 1.0)))
        raise InputError(f"pscore must be in (0, 1]; row {i} has {float(pscore[i])!r}")
    if low < MIN_PSCORE:  # the log readers' floor: weights above 1 / MIN_PSCORE
        i = first_bad(pscore < MIN_PSCORE)
        raise InputError(f"pscore {PSCORE_FLOOR_RULE}; row {i} has {float(pscore[i])!r}")
    _check_range(action, "action", k, "")


def _greedy_terms(
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    dist: GreedyDist,
    position: npt.ArrayLike | None,
    estimated_rewards: RewardsLike,
    check: bool,
) -> RoundTerms:
    """:func:`round_terms` for a :class:`~offrec.core.policy.GreedyDist` (one position):
    ``w_i = dist.at(a_i) / p_i``, ``q_logged = q[i, a_i]``, ``q_target = dist.expect(q)``."""
    n, n_actions = dist.shape
    if n != reward.shape[0]:
        raise InputError(
            f"action_dist must have shape (n, n_actions) or (n, n_actions, n_positions) "
            f"with n = {reward.shape[0]}; got {dist.shape}"
        )
    q = _as_estimates(estimated_rewards, dist.shape)
    pos = None if position is None else _as_index(position, "position", n)
    _check_rows(reward, pscore, action, n_actions)
    if pos is not None:
        _check_range(pos, "position", 1, " (positions are axis 2 of action_dist)")
    if check:
        check_greedy(dist)
    weight = dist.at(action)
    weight /= pscore
    if q is None:
        return RoundTerms(reward=reward, weight=weight)
    # every entry of q must be finite, as in the dense scan (which sees them all through
    # 0 * inf = nan): with a positive floor on every action, q @ floor is non-finite
    # exactly when a row of q has a non-finite entry (or overflows); else a pass over q
    if check and not (dist.epsilon > 0.0 and dist.floor.min() > 0.0):
        _check_finite_2d(q)
    q_target = dist.expect(q)
    if check and not np.isfinite(q_target).all():
        _raise_non_finite(q, q_target, 0)
    return RoundTerms(
        reward=reward, weight=weight, q_logged=_gather(q, action, None), q_target=q_target
    )


def greedy_q_target(
    dist: GreedyDist, floor_sum: np.ndarray, at_best: np.ndarray, odd_q: np.ndarray
) -> np.ndarray:
    r""":math:`\hat q_i^{\pi} = \sum_a \pi(a|x_i) \hat q(x_i, a)` of a greedy /
    epsilon-greedy ``dist`` from reductions of :math:`\hat q` (what
    :func:`~offrec.reward.model.predict_reduced_by_fold` gives without the dense array):
    ``floor_sum`` (n,) :math:`\sum_a f_a \hat q(x_i, a)`, ``at_best`` (n,)
    :math:`\hat q(x_i, b_i)`, and ``odd_q`` (m, n_actions), the dense rows of ``dist.odd``.

    The same arithmetic as :meth:`GreedyDist.expect <offrec.core.policy.GreedyDist.expect>`:
    ``floor_sum + (1 - epsilon) * at_best``, the odd rows (ties) from their dense rows.
    """
    n = dist.shape[0]
    out = np.array(floor_sum, dtype=np.float64) if dist.epsilon > 0.0 else np.zeros(n)
    out += (1.0 - dist.epsilon) * at_best
    if dist.odd.size:
        out[dist.odd] = np.einsum("ma,ma->m", dist.dense(dist.odd), odd_q)
    return out


def sparse_terms(
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    dist: SparseDist,
    position: npt.ArrayLike | None,
    estimated_rewards: RewardsLike,
    check: bool,
) -> RoundTerms:
    r""":func:`round_terms` for a :class:`~offrec.core.policy.SparseDist` (one position):
    :math:`w_i = \pi_e(a_i|x_i) / p_i` from the candidates and the floor (``dist.at``),
    in ``O(n M)``.

    ``estimated_rewards`` is None, a dense ``(n, n_actions)`` array (small catalogs), or
    a :class:`PairRewards`: :math:`\hat q` at the logged items and at the candidates,
    plus the mean of :math:`\hat q` over the floor's items (exact, or an unbiased
    estimate from a sample of the catalog, whose noise then enters each row's term and
    hence the interval). :math:`\hat q^{\pi}_i = \sum_m p_{im} \hat q(x_i, c_{im}) +
    \epsilon\, \overline{\hat q}_S(x_i)` (``dist.expect``).
    """
    n, n_actions = dist.shape
    if n != reward.shape[0]:
        raise InputError(
            f"action_dist must have shape (n, n_actions) with n = {reward.shape[0]}; "
            f"got {dist.shape}"
        )
    pos = None if position is None else _as_index(position, "position", n)
    _check_rows(reward, pscore, action, n_actions)
    if pos is not None:
        _check_range(pos, "position", 1, " (positions are axis 2 of action_dist)")
    if check:
        dist.check()
    weight = dist.at(action)
    weight /= pscore
    if estimated_rewards is None:
        return RoundTerms(reward=reward, weight=weight)
    if isinstance(estimated_rewards, PairRewards):
        pr = estimated_rewards
        if pr.at_items.shape != dist.items.shape or pr.logged.shape != (n,):
            raise InputError(
                f"estimated_rewards (PairRewards) must hold (n,) logged and {dist.items.shape} "
                f"candidate values; got {pr.logged.shape} and {pr.at_items.shape}"
            )
        q_logged, at_items, mean = pr.logged, pr.at_items, pr.support_mean
    else:
        q = _as_estimates(estimated_rewards, dist.shape)
        assert q is not None
        q_logged = _gather(q, action, None)
        at_items = np.take_along_axis(q, dist.items, axis=1)
        allowed = slice(None) if dist.support is None else dist.support
        mean = q[:, allowed].mean(axis=1) if dist.floor > 0 else 0.0
    q_target = dist.expect(at_items, mean)
    if check and not (np.isfinite(q_target).all() and np.isfinite(q_logged).all()):
        i = first_bad(~(np.isfinite(q_target) & np.isfinite(q_logged)))
        raise InputError(f"estimated_rewards must be finite; row {i} has a non-finite value")
    return RoundTerms(
        reward=reward, weight=weight, q_logged=np.asarray(q_logged, np.float64), q_target=q_target
    )


@dataclass(frozen=True)
class PairRewards:
    r"""A reward model's predictions for a sparse target without the ``(n, n_actions)``
    table: ``logged`` (n,) :math:`\hat q(x_i, a_i)`, ``at_items`` (n, M)
    :math:`\hat q(x_i, c_{im})` at the target's candidates, ``support_mean`` (n,) the mean
    of :math:`\hat q(x_i, \cdot)` over the target's floor items (or an unbiased estimate)."""

    logged: np.ndarray
    at_items: np.ndarray
    support_mean: np.ndarray | float = 0.0


def check_greedy(dist: GreedyDist) -> None:
    """The dense checks of ``action_dist`` (non-negative, finite, rows summing to 1), run on
    the rows that can fail them, with the same errors.

    A row whose argmax set is ``{best}`` holds ``f_a >= 0`` and ``(1 - epsilon) + f_best``,
    finite, summing to ``sum_a f_a + 1 - epsilon = 1`` (``f`` sums to ``epsilon``) up to
    rounding, so it passes by construction; only the ``odd`` rows (ties, or a nan
    maximum whose argmax set is empty) are built densely and scanned.
    """
    if not dist.odd.size:
        return
    block = dist.dense(dist.odd)
    bad = ~(np.abs(block.sum(axis=1) - 1.0) <= SUM_TOL) | ~(block >= 0).all(axis=1)
    if bad.any():
        j = first_bad(bad)
        _check_dist_block(block[j : j + 1], int(dist.odd[j]))


def _check_finite_2d(q: np.ndarray) -> None:
    """``q`` (n, k) finite; the error names the first row with a non-finite entry."""
    if not np.isfinite(q.sum()) and not np.isfinite(q).all():
        bad = ~np.isfinite(q)
        i = first_bad(bad)
        raise InputError(
            f"estimated_rewards must be finite; row {i} has {float(q[i][bad[i]][0])!r}"
        )


def _as_1d(x: npt.ArrayLike, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D with shape (n,); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name} must have the same length as reward ({n}); got {arr.shape[0]}")
    return arr


def _as_index(x: npt.ArrayLike, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D with shape (n,); got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InputError(f"{name} must have the same length as reward ({n}); got {arr.shape[0]}")
    if arr.dtype.kind not in "iu":
        raise InputError(f"{name} must be integers; got dtype {arr.dtype}")
    return arr.astype(np.intp, copy=False)


def as_action_dist(x: npt.ArrayLike, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim not in (2, 3) or arr.shape[0] != n or 0 in arr.shape:
        raise InputError(
            f"{name} must have shape (n, n_actions) or (n, n_actions, n_positions) "
            f"with n = {n}; got {arr.shape}"
        )
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a real-valued array; got dtype {arr.dtype}")
    return arr


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.isfinite(x.sum()) and not np.isfinite(x).all():
        i = first_bad(~np.isfinite(x))
        raise InputError(f"{name} must be finite; row {i} has {float(x[i])!r}")


def _check_range(x: np.ndarray, name: str, size: int, where: str) -> None:
    if x.min() < 0 or x.max() >= size:
        i = first_bad((x < 0) | (x >= size))
        raise InputError(f"{name} must be in [0, {size}){where}; row {i} has {int(x[i])}")


def _gather(x: np.ndarray, action: np.ndarray, position: np.ndarray | None) -> np.ndarray:
    """``x[i, action[i](, position[i])]`` as float64 (n,); one flat ``take`` when contiguous."""
    n = x.shape[0]
    if x.flags.c_contiguous:  # flat indices; actions and positions are range-checked
        idx = np.arange(0, x.size, x.size // n, dtype=np.intp)
        if x.ndim == 2:
            idx += action
        else:
            idx += action * x.shape[2]
            if position is not None:
                idx += position
        return np.take(x.reshape(-1), idx, mode="clip").astype(np.float64, copy=False)
    rows = np.arange(n)
    if x.ndim == 2:
        return x[rows, action].astype(np.float64, copy=False)
    return x[rows, action, 0 if position is None else position].astype(np.float64, copy=False)


def scan_rows(
    dist: np.ndarray, q: np.ndarray | None, position: np.ndarray | None, check: bool
) -> np.ndarray | None:
    """One blocked pass over the rows: check ``dist`` and compute ``sum_a dist * q``.

    Blocks of ~1 MB stay in cache, so validation and the DM term share one read of
    ``dist`` from memory. Non-finite entries of ``dist`` make a row sum non-finite,
    and non-finite entries of ``q`` (at the row's position) make the DM term
    non-finite (``0 * inf`` is nan), so finiteness needs no separate pass. Large arrays
    are scanned in row ranges on several threads (:func:`~offrec.core.threads.over_row_ranges`);
    the first failing range's error is raised, so the first bad row is named.
    """
    if not check and q is None:
        return None
    q_target = None if q is None else np.empty(dist.shape[0])

    def scan(lo: int, hi: int) -> None:
        _scan_range(dist, q, position, check, q_target, lo, hi)

    over_row_ranges(scan, dist.shape[0], dist.size)
    return q_target


def _scan_range(
    dist: np.ndarray,
    q: np.ndarray | None,
    position: np.ndarray | None,
    check: bool,
    q_target: np.ndarray | None,
    lo: int,
    hi: int,
) -> None:
    """:func:`scan_rows` over rows ``[lo, hi)``, writing ``q_target[lo:hi]``."""
    step = max(1, _CHUNK_ELEMS // (dist.size // dist.shape[0]))
    for start in range(lo, hi, step):
        stop = min(start + step, hi)
        block = dist[start:stop]
        if check:
            _check_dist_block(block, start)
        if q is None or q_target is None:
            continue
        qb = q[start:stop]
        if dist.ndim == 3:  # the slice at each row's position, (m, n_actions)
            rows = np.arange(stop - start)
            k = 0 if position is None else position[start:stop]
            block, qb = block[rows, :, k], qb[rows, :, k]
        out = np.einsum("ij,ij->i", block, qb)
        if check and not np.isfinite(out).all():
            _raise_non_finite(qb, out, start)
        q_target[start:stop] = out


def _raise_non_finite(qb: np.ndarray, out: np.ndarray, start: int) -> None:
    bad = ~np.isfinite(qb)
    if bad.any():
        i = first_bad(bad)
        value = float(qb[i][bad[i]][0])
        raise InputError(f"estimated_rewards must be finite; row {start + i} has {value!r}")
    i = first_bad(~np.isfinite(out))  # finite entries, but sum_a pi * q overflows
    raise InputError(f"estimated_rewards are too large: sum_a pi * q overflows in row {start + i}")


def _check_dist_block(block: np.ndarray, start: int) -> None:
    # (m,) or (m, n_positions); a 2-D block's row sums as a BLAS product (~2x numpy's sum)
    sums = block @ np.ones(block.shape[1]) if block.ndim == 2 else block.sum(axis=1)
    bad_sum = ~(np.abs(sums - 1.0) <= SUM_TOL)
    if not bad_sum.any() and block.min() >= 0:
        return
    bad_row = ~np.isfinite(block) | (block < 0)
    bad_row = bad_row.reshape(len(block), -1).any(axis=1) | bad_sum.reshape(len(block), -1).any(1)
    i = first_bad(bad_row)
    row = block[i]
    if not np.isfinite(row).all():
        value = float(row[~np.isfinite(row)][0])
        raise InputError(f"action_dist must be finite; row {start + i} has {value!r}")
    if (row < 0).any():
        value = float(row[row < 0][0])
        raise InputError(f"action_dist must be non-negative; row {start + i} has {value!r}")
    if block.ndim == 2:
        where, total = f"row {start + i}", float(sums[i])
    else:
        k = int(np.flatnonzero(bad_sum[i])[0])
        where, total = f"row {start + i}, position {k}", float(sums[i, k])
    raise InputError(
        f"action_dist rows must sum to 1 (tolerance {SUM_TOL:g}); {where} sums to {total!r}"
    )
