r"""Slate off-policy estimators: SIPS, IIPS, RIPS, their self-normalized forms, cascade-DR, PI.

A logged slate ``i`` (context :math:`x_i`) shows items :math:`a_{i1}, \dots, a_{iK}` and
earns slot rewards :math:`r_{ik}`; the value of a slate policy is the expected sum
:math:`V(\pi) = E_{x}\, E_{s \sim \pi(\cdot|x)} \sum_k r_k`. Three importance weights,
from three kinds of propensity (logger :math:`\pi_b`, target :math:`\pi_e`):

.. math::

    w_i = \frac{\pi_e(s_i|x_i)}{\pi_b(s_i|x_i)} \;\text{(joint)}, \qquad
    w_{ik}^{\mathrm{item}} = \frac{\pi_e(a_{ik} \text{ at } k|x_i)}{\pi_b(a_{ik} \text{ at } k|x_i)},
    \qquad
    w_{ik}^{\mathrm{casc}} = \frac{\pi_e(a_{i,\le k}|x_i)}{\pi_b(a_{i,\le k}|x_i)}.

Every estimator is a function of per-slate columns (:class:`SlateTerms`), written as
:math:`\hat V = \bar A + \sum_t \bar B_t / \bar C_t` over slates (:class:`SlateParts`),
so the one interval engine (:mod:`offrec.ope.intervals`) and the mergeable
:class:`~offrec.ope.moments.Moments` serve them unchanged: a slate is the unit, and the
bootstrap resamples whole slates (hash buckets of the slate's key).

Inputs follow OBP's slate API (``obp.ope.estimators_slate``) one row per slot:
``slate_id, position, reward`` and the propensity pairs ``pscore`` /
``evaluation_policy_pscore`` (joint), ``pscore_item_position`` /
``evaluation_policy_pscore_item_position`` and ``pscore_cascade`` /
``evaluation_policy_pscore_cascade``, the probability that the slot's item is shown
anywhere in the slate ``pscore_item`` / ``evaluation_policy_pscore_item`` (offrec's, for
:class:`PI` with a uniform ranking logger), plus for cascade-DR ``action``, ``q_hat`` and
``evaluation_policy_action_dist`` (``(n_rows, n_actions)`` or OBP's flat
``(n_rows * n_actions,)``). Values equal OBP 0.5.7's on the same arrays (tested).

References: J. McInerney, B. Brost, P. Chandar, R. Mehrotra, B. Carterette,
"Counterfactual evaluation of slate recommendations with sequential reward
interactions", KDD 2020 (SIPS, RIPS). S. Li, Y. Abbasi-Yadkori, B. Kveton,
S. Muthukrishnan, V. Vinay, Z. Wen, "Offline evaluation of ranking policies with click
models", KDD 2018 (IIPS). H. Kiyohara, Y. Saito, T. Matsuhiro, Y. Narita, N. Shimizu,
Y. Yamamoto, "Doubly robust off-policy evaluation for ranking policies under the cascade
behavior model", WSDM 2022 (cascade-DR). A. Swaminathan, A. Krishnamurthy, A. Agarwal,
M. Dudik, J. Langford, D. Jose, I. Zitouni, "Off-policy evaluation for slate
recommendation", NeurIPS 2017 (PI).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys, seed_int
from offrec.core.validation import SeedLike, check_scalar, first_bad
from offrec.ope.intervals import Form, Interval, check_interval_options, interval
from offrec.ope.moments import Moments
from offrec.ope.terms import scan_rows
from offrec.ope.trust import READS, REWARD_MODEL, UNCONFOUNDED, WEIGHTS, EstimatorInfo

_PAIRS = {
    "joint": ("pscore", "evaluation_policy_pscore"),
    "item_position": ("pscore_item_position", "evaluation_policy_pscore_item_position"),
    "cascade": ("pscore_cascade", "evaluation_policy_pscore_cascade"),
    "item": ("pscore_item", "evaluation_policy_pscore_item"),
}
ARRAYS: tuple[str, ...] = (
    "slate_id",
    "position",
    "reward",
    "action",
    "q_hat",
    "evaluation_policy_action_dist",
    "session_id",
    "step",
    *(name for pair in _PAIRS.values() for name in pair),
)
"""The keyword arrays the slate estimators read (OBP's names, plus ``session_id`` and
``step`` for the bootstrap key of logged slates)."""

# what the slate estimators assume (their ``assumptions``; the README's "when to trust it")
SLATE_SUPPORT = (
    "slate support: the logger gives positive probability to every slate the target shows"
)
ITEM_POSITION_SUPPORT = (
    "item-position support: the logger puts every item the target shows at slot k at slot k "
    "with positive probability"
)
PREFIX_SUPPORT = (
    "prefix support: the logger shows every top-k prefix the target shows with positive probability"
)
ITEM_POSITION_MODEL = (
    "item-position click model: a slot's expected reward depends on its item and rank only "
    "(independent or position-based clicks; not cascade)"
)
CASCADE_MODEL = (
    "cascade (reward-interaction) model: a slot's expected reward depends on the items at "
    "and above it only"
)
ADDITIVE_REWARD = (
    "additive slate reward: the expected slate reward is a sum over (slot, item) pairs "
    "(independent or position-based clicks; not cascade)"
)
FACTORED_LOGGER = (
    "the logger draws its slots independently given the context (else the per-slot "
    "marginal form is an approximation, biased for loggers that rank without replacement)"
)
SLATE_DIAGNOSTICS: tuple[str, ...] = ("ess", "max_weight")
"""What :meth:`SlateEstimator.diagnostics` reports for every slate estimator."""
_MCINERNEY = (
    "McInerney, Brost, Chandar, Mehrotra, Carterette (2020), Counterfactual evaluation of "
    "slate recommendations with sequential reward interactions, KDD"
)
_LI = (
    "Li, Abbasi-Yadkori, Kveton, Muthukrishnan, Vinay, Wen (2018), Offline evaluation of "
    "ranking policies with click models, KDD"
)
_SN = "; self-normalized per position as OBP 0.5.7 (Saito, Aihara, Matsutani, Narita 2021, Open Bandit Dataset and Pipeline)"


@dataclass(frozen=True)
class SlateTerms:
    """Per-slate quantities, rows = slates in ``slate_id`` order, slots in position order.

    Attributes:
        reward: (n, K) slot rewards :math:`r_{ik}`.
        weights: kind (``"joint"``, ``"item_position"``, ``"cascade"``, ``"item"``) -> (n, K)
            importance weights, for the kinds whose two propensities were given.
        q_logged: (n, K) :math:`\\hat Q_k(x_i, a_{i,\\le k})` or None.
        q_target: (n, K) :math:`\\sum_a \\pi_e(a|x_i, a_{i,<k}) \\hat Q_k(x_i, a_{i,<k}, a)` or None.
        keys: (n,) uint64 stable slate keys for the bootstrap, or None when not asked for
            (point estimates need none).
    """

    reward: np.ndarray
    weights: dict[str, np.ndarray]
    q_logged: np.ndarray | None
    q_target: np.ndarray | None
    keys: np.ndarray | None

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    def weight(self, kind: str, estimator: str) -> np.ndarray:
        if kind not in self.weights:
            base, target = _PAIRS[kind]
            raise InputError(f"estimator {estimator!r} needs {base} and {target}; got None")
        return self.weights[kind]


def slate_terms(
    *,
    kinds: tuple[str, ...] | None = None,
    model: bool = True,
    keys: bool = True,
    **arrays: Any,
) -> SlateTerms:
    """Validate one-row-per-slot arrays (OBP's names, see :data:`ARRAYS`) and group them by
    slate into :class:`SlateTerms`.

    Rules (each failure an ``InputError`` naming the array, the rule and the first bad row
    or slate): equal lengths; integer ``position`` >= 0; every slate holds every position
    ``0..K-1`` exactly once (``K`` = the largest position + 1); rewards finite; logging
    propensities in (0, 1]; target propensities in [0, 1]; the joint propensities equal
    within a slate. ``kinds`` limits the weights computed (and checked) to those kinds
    (default: every pair given); ``model=False`` skips ``q_hat`` and its companions;
    ``keys=False`` skips the bootstrap keys (point estimates). Rows already ordered by
    slate and position (the usual case) are grouped without a sort. Each check is one
    reduction over the rows in the usual case (the estimators are memory-bound: the
    validation is most of their cost); the failing row is searched for only on failure.
    """
    unknown = [k for k in arrays if k not in ARRAYS]
    if unknown:
        raise InputError(f"unknown slate array {unknown[0]!r}; valid: {list(ARRAYS)}")
    for name in ("slate_id", "position", "reward"):
        if arrays.get(name) is None:
            raise InputError(f"{name} is required (one entry per slot); got None")
    reward = _vec(arrays["reward"], "reward", None, float)
    n_rows = reward.shape[0]
    if n_rows == 0:
        raise InputError("reward must have at least one row; got 0 rows")
    slate_id = _vec(arrays["slate_id"], "slate_id", n_rows, int)
    position = _vec(arrays["position"], "position", n_rows, int)
    if position.min() < 0:
        i = first_bad(position < 0)
        raise InputError(f"position must be >= 0; row {i} has {int(position[i])}")
    # a sum is finite when every entry is (one reduction); only then look for the bad row
    if not np.isfinite(reward.sum()) and not np.isfinite(reward).all():
        i = first_bad(~np.isfinite(reward))
        raise InputError(f"reward must be finite; row {i} has {float(reward[i])!r}")
    K = int(position.max()) + 1
    order: np.ndarray | None = None
    if _grouped(slate_id, position, K):  # the usual case: nothing to sort or check further
        sid, starts = slate_id, np.arange(0, n_rows, K)
    else:
        order = np.lexsort((position, slate_id))
        sid = slate_id[order]
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        sizes = np.diff(np.r_[starts, n_rows])
        pos_sorted = position[order]
        if (sizes != K).any() or (
            pos_sorted.reshape(-1, K) != np.arange(K)
        ).any():  # reshape is safe once every size is K
            bad = np.flatnonzero(sizes != K)
            j = (
                int(bad[0])
                if bad.size
                else int(np.flatnonzero((pos_sorted.reshape(-1, K) != np.arange(K)).any(axis=1))[0])
            )
            got = pos_sorted[starts[j] : starts[j] + sizes[j]].tolist()
            raise InputError(
                f"every slate must hold positions 0..{K - 1} exactly once; slate_id "
                f"{int(sid[starts[j]])} has positions {got}"
            )
    n = starts.shape[0]

    def grid(x: np.ndarray) -> np.ndarray:
        return (x if order is None else x[order]).reshape(n, K)

    weights = {}
    for kind, (base_name, target_name) in _PAIRS.items():
        if kinds is not None and kind not in kinds:
            continue
        base, target = arrays.get(base_name), arrays.get(target_name)
        if base is None and target is None:
            continue
        if base is None or target is None:
            missing = base_name if base is None else target_name
            raise InputError(
                f"{missing} is required with {base_name if base is not None else target_name}"
            )
        b = _vec(base, base_name, n_rows, float)
        t = _vec(target, target_name, n_rows, float)
        if not _in_unit(b, 1):
            i = first_bad(~((b > 0.0) & (b <= 1.0)))
            raise InputError(f"{base_name} must be in (0, 1]; row {i} has {float(b[i])!r}")
        if not _in_unit(t, 0):
            i = first_bad(~((t >= 0.0) & (t <= 1.0)))
            raise InputError(f"{target_name} must be in [0, 1]; row {i} has {float(t[i])!r}")
        bg, tg = grid(b), grid(t)
        if kind == "joint":
            for name, g in ((base_name, bg), (target_name, tg)):
                off = _unequal_in_slate(g)
                if off.any():
                    j = int(np.flatnonzero(off)[0])
                    raise InputError(
                        f"{name} (a joint slate propensity) must be equal in every slot of a "
                        f"slate; slate_id {int(sid[starts[j]])} has {g[j].tolist()}"
                    )
        weights[kind] = tg / bg
    q_logged = q_target = None
    if model and arrays.get("q_hat") is not None:
        q_logged, q_target = _model_terms(arrays, n_rows, grid, n, K)
    first_rows = starts if order is None else order[starts]
    key_arr = _slate_keys(arrays, first_rows, n_rows) if keys else None
    return SlateTerms(grid(reward), weights, q_logged, q_target, key_arr)


def _unequal_in_slate(g: np.ndarray) -> np.ndarray:
    """(n,) slates whose joint propensities ``g`` (n, K) differ from their first slot's by
    more than 1e-12 relative."""
    return np.abs(g - g[:, :1]).max(axis=1) > 1e-12 * np.maximum(np.abs(g[:, 0]), 1e-300)


_ONE_BITS = int(np.float64(1.0).view(np.int64))


def _in_unit(x: np.ndarray, low: int) -> bool:
    """All of ``x`` (float64) in ``(0, 1]`` (``low`` 1) or ``[0, 1]`` (``low`` 0), NaN out.
    The bits of a non-negative float, read as ``uint64``, grow with its value; a negative
    float's (sign bit set) and NaN's exceed 1.0's. So one reduction, the largest bit
    pattern at most 1.0's, checks ``[+0, 1]``, and ``(0, 1]`` adds a minimum, with no
    temporary array. -0.0 counts as out of range for ``[0, 1]``; the exact check then
    decides."""
    if bool(x.view(np.uint64).max() <= _ONE_BITS) and (not low or bool(x.min() > 0.0)):
        return True
    return low == 0 and bool(((x >= 0.0) & (x <= 1.0)).all())  # -0.0 is in [0, 1]


def _grouped(slate_id: np.ndarray, position: np.ndarray, K: int) -> bool:
    """Rows already hold whole slates in increasing ``slate_id``, slots in order
    (``position`` >= 0 already checked).

    Flat differences instead of an ``(n, K)`` broadcast (whose inner loop of ``K`` is
    slow): every slate starts at position 0 and exactly the ``n_rows - n`` in-slate steps
    raise the position by 1 (a step into a new slate goes to 0 from >= 0, never +1);
    ``slate_id`` increases at each of the ``n - 1`` slate boundaries and changes nowhere else.
    """
    n_rows = len(position)
    if n_rows % K:
        return False
    n = n_rows // K
    if (position[::K] != 0).any():
        return False
    if np.count_nonzero(np.diff(position) == 1) != n_rows - n:
        return False
    step = np.diff(slate_id)
    return bool((step[K - 1 :: K] > 0).all() and np.count_nonzero(step) == n - 1)


def _model_terms(
    arrays: dict[str, Any], n_rows: int, grid: Any, n: int, K: int
) -> tuple[np.ndarray, np.ndarray]:
    """``q_hat`` at the logged action and its expectation under the target's next-item
    distribution, both (n, K)."""
    if arrays.get("action") is None or arrays.get("evaluation_policy_action_dist") is None:
        raise InputError("q_hat needs action and evaluation_policy_action_dist; got None")
    action = _vec(arrays["action"], "action", n_rows, int)
    q = np.asarray(arrays["q_hat"], dtype=np.float64)
    dist = np.asarray(arrays["evaluation_policy_action_dist"], dtype=np.float64)
    if q.ndim == 1:  # OBP's flat layout (n_rows * n_actions,)
        if q.shape[0] % n_rows:
            raise InputError(
                f"q_hat must have shape (n_rows, n_actions) or (n_rows * n_actions,) with "
                f"n_rows = {n_rows}; got {q.shape}"
            )
        q = q.reshape(n_rows, -1)
        dist = dist.reshape(n_rows, -1) if dist.size == q.size else dist
    if q.ndim != 2 or q.shape[0] != n_rows or dist.shape != q.shape:
        raise InputError(
            f"q_hat and evaluation_policy_action_dist must both have shape (n_rows, n_actions) "
            f"with n_rows = {n_rows}; got {q.shape} and {dist.shape}"
        )
    if action.min() < 0 or action.max() >= q.shape[1]:
        i = first_bad((action < 0) | (action >= q.shape[1]))
        raise InputError(f"action must be in [0, {q.shape[1]}); row {i} has {int(action[i])}")
    # the bandit kernel's blocked scan: checks every row of dist and computes sum_a dist * q
    # in one cache-resident pass (a non-finite q makes its row's sum non-finite)
    try:
        expected = scan_rows(dist, q, None, True)
    except InputError as exc:  # the same rules, named with the slate arrays' names
        msg = (
            str(exc)
            .replace("estimated_rewards", "q_hat")
            .replace("sum_a pi * q", "sum_a dist * q_hat")
        )
        raise InputError(msg.replace("action_dist", "evaluation_policy_action_dist")) from None
    assert expected is not None
    if q.flags.c_contiguous:  # flat indices: half the time of the 2-D fancy index
        logged = np.take(q.reshape(-1), np.arange(0, q.size, q.shape[1]) + action)
    else:
        logged = q[np.arange(n_rows), action]
    return grid(logged), grid(expected)


def _slate_keys(arrays: dict[str, Any], first: np.ndarray, n_rows: int) -> np.ndarray:
    """The bootstrap key of each slate (``first``: a row of each slate): (session_id, step)
    when given, else slate_id."""
    if arrays.get("session_id") is not None and arrays.get("step") is not None:
        session = _vec(arrays["session_id"], "session_id", n_rows, int)
        step = _vec(arrays["step"], "step", n_rows, int)
        return row_keys(session[first], step[first])
    return row_keys(_vec(arrays["slate_id"], "slate_id", n_rows, int)[first])


def _vec(x: Any, name: str, n: int | None, kind: type) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D with one entry per slot; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name} must have the same length as reward ({n}); got {arr.shape[0]}")
    if kind is int:
        if arr.dtype.kind not in "iu":
            raise InputError(f"{name} must be integers; got dtype {arr.dtype}")
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{name} must be real numbers; got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


# -- the point-estimate fast path ---------------------------------------------------------------
_BLOCK_ROWS = 1 << 16
"""Rows per block of :func:`_fast_value` on large inputs. A block's temporaries (512 KB
each) stay in cache instead of being written to memory for the whole input; of 2^15 to
2^18 rows, 2^16 was fastest on 500,000 rows (1.7 ms against 3.5 ms in one block)."""
_ONE_BLOCK_ROWS = 1 << 17
"""Up to this many rows :func:`_fast_value` runs as one block (on 100,000 rows, blocks
were no faster: the per-block Python calls cost what the cache saves)."""
_TEMPLATE_ROWS = 1 << 12


@functools.lru_cache(maxsize=8)
def _positions_template(K: int) -> np.ndarray:
    """``0, 1, .., K-1`` repeated over about :data:`_TEMPLATE_ROWS` rows (read-only)."""
    t = np.tile(np.arange(K, dtype=np.int64), max(1, _TEMPLATE_ROWS // K))
    t.flags.writeable = False
    return t


def _is_template(position: np.ndarray, K: int) -> bool:
    """``position`` (length a multiple of ``K``) is ``0, 1, .., K-1`` repeated: one
    comparison against a cached template, broadcast over rows of its length."""
    t = _positions_template(K)
    full = len(position) // len(t) * len(t)
    if (position[:full].reshape(-1, len(t)) != t).any():
        return False
    return not (position[full:] != t[: len(position) - full]).any()


def _fast_value(est: SlateEstimator, arrays: dict[str, Any]) -> float | None:
    """:meth:`SlateEstimator.estimate_policy_value` for the usual input, in few passes; None
    when any cheap check fails (the caller then runs :func:`slate_terms`' validation, which
    names the array, the rule and the row, or finds the input valid).

    The usual input: 1-D ``int64`` ids and positions, ``float64`` rewards and
    propensities, rows holding whole slates in increasing ``slate_id`` with slots
    ``0..K-1`` in order. Rows are taken in blocks of whole slates (one block up to
    :data:`_ONE_BLOCK_ROWS` rows, else :data:`_BLOCK_ROWS`): each block is checked
    (positions equal a cached ``0..K-1`` template; ``slate_id`` constant within a slate
    and increasing across slates; every propensity in ``[0, 1]`` by :func:`_in_unit`'s
    one reduction; joint propensities equal within a slate), turned into :class:`SlateTerms` and
    :meth:`~SlateEstimator.parts`, whose column totals add up (:meth:`SlateParts.sums`).
    Two rules are left to the result: rewards finite and logging propensities non-zero.
    Every estimator's value sums each slot's reward times a finite weight, or a weight
    ``t / 0`` (inf or NaN) times something; ``0 * inf``, ``inf - inf`` and NaN are NaN,
    so a non-finite reward or a zero logging propensity makes the value non-finite, and a
    finite value proves both rules held. A non-finite value (or a zero weight mass of a
    self-normalized estimator) goes to the full validation, which names the bad row or
    returns the same value for valid input whose estimate overflows.
    """
    base_name, target_name = _PAIRS[est.kind]
    names = ("slate_id", "position", "reward", base_name, target_name)
    got = [x for x in (arrays.get(k) for k in names) if isinstance(x, np.ndarray)]
    if len(got) < len(names) or any(k not in ARRAYS for k in arrays):
        return None
    sid, pos, reward, b, t = got
    n_rows = reward.shape[0]
    if (
        n_rows == 0
        or any(x.ndim != 1 or x.shape[0] != n_rows for x in got)
        or sid.dtype != np.int64
        or pos.dtype != np.int64
        or any(x.dtype != np.float64 for x in (reward, b, t))
    ):
        return None
    K = int(pos[: 1 << 12].max()) + 1  # the template check below makes it the global max + 1
    if not 0 < K <= _TEMPLATE_ROWS or n_rows % K:
        return None
    q_logged = q_target = None
    if est.needs_model:
        if arrays.get("q_hat") is None or arrays.get("action") is None:
            return None
        try:  # the dense (rows, items) arrays: one blocked, cache-resident pass (threads if large)
            q_logged, q_target = _model_terms(arrays, n_rows, lambda x: x, n_rows, 1)
        except InputError:
            return None
    B = n_rows if n_rows <= _ONE_BLOCK_ROWS else K * max(1, _BLOCK_ROWS // K)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # decided on the result
        sums = _fast_sums(est, sid, pos, reward, b, t, q_logged, q_target, K, B)
    if sums is None:
        return None
    sa, sb, sc = sums
    mass = est.name if est.self_normalized else ""
    if mass and not (np.asarray(sc) > 0).all():
        return None
    v = value_of_sums(sa, sb if mass else None, sc if mass else None, n_rows // K, mass)
    return v if math.isfinite(v) else None


def _fast_sums(
    est: SlateEstimator,
    sid: np.ndarray,
    pos: np.ndarray,
    reward: np.ndarray,
    b: np.ndarray,
    t: np.ndarray,
    q_logged: np.ndarray | None,
    q_target: np.ndarray | None,
    K: int,
    B: int,
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """:func:`_fast_value`'s blocks: the column totals of :meth:`SlateParts.sums`, or None
    when a block fails a check."""
    n_rows = reward.shape[0]
    joint = est.kind == "joint"
    sa, sb, sc = 0.0, np.zeros(0), np.zeros(0)
    for lo in range(0, n_rows, B):
        hi = min(lo + B, n_rows)
        if not _is_template(pos[lo:hi], K):
            return None
        sb_ = sid[lo:hi]  # equal to the next row exactly within slates, larger across them
        same = sb_[1:] == sb_[:-1]
        if not (
            np.count_nonzero(same) == (hi - lo) - (hi - lo) // K
            and not same[K - 1 :: K].any()
            and (sb_[K::K] > sb_[K - 1 : -1 : K]).all()
            and (lo == 0 or sid[lo] > sid[lo - 1])
        ):
            return None
        bb, tb = b[lo:hi], t[lo:hi]
        if not (_in_unit(bb, 0) and _in_unit(tb, 0)):  # b > 0: decided on the result
            return None
        bg, tg = bb.reshape(-1, K), tb.reshape(-1, K)
        if joint and (_unequal_in_slate(bg).any() or _unequal_in_slate(tg).any()):
            return None
        ql = None if q_logged is None else q_logged[lo:hi].reshape(-1, K)
        qt = None if q_target is None else q_target[lo:hi].reshape(-1, K)
        terms = SlateTerms(reward[lo:hi].reshape(-1, K), {est.kind: tg / bg}, ql, qt, None)
        parts = est.parts(terms)
        a_sum, b_sum, c_sum = parts.sums()
        sa += a_sum
        if b_sum is not None and c_sum is not None:
            sb, sc = (b_sum, c_sum) if lo == 0 else (sb + b_sum, sc + c_sum)
    return sa, sb, sc


# -- estimates as per-slate columns ------------------------------------------------------------
@dataclass(frozen=True)
class SlateParts:
    r"""An estimate as per-slate columns: :math:`\hat V = \bar A + \sum_t \sum_i B_{it} / \sum_i C_{it}`.

    ``a`` (n,) or None, or (n, K) whose row sums are the per-slate values (summed only
    when per-slate columns are needed: a point estimate needs the total alone); ``b`` and
    ``c`` (n, T) or None (the self-normalized estimators: one ratio for SN-SIPS, one per
    position for SN-IIPS and SN-RIPS). ``mass`` names a
    self-normalized estimator, whose weight mass :math:`\sum_i C_{it}` must be positive
    at every ``t`` (else it is undefined); the rule is checked on the totals
    (:func:`value_of_sums`), so blocks of slates may each lack mass at a position.
    """

    a: np.ndarray | None
    b: np.ndarray | None = None
    c: np.ndarray | None = None
    mass: str = ""
    weight: np.ndarray | None = None
    """(n, K) weights multiplying a 2-D ``a`` slot by slot, or None: the per-slate values
    are then the row sums of ``a * weight``, and the total one dot product (no product
    array)."""

    @property
    def n(self) -> int:
        return len(self.a) if self.a is not None else len(self.b) if self.b is not None else 0

    def per_slate(self) -> np.ndarray | None:
        """``a`` as per-slate values (n,)."""
        if self.a is None or self.a.ndim == 1:
            return self.a
        return _row_sums(self.a if self.weight is None else self.a * self.weight)

    def columns(self) -> tuple[np.ndarray, Form]:
        """The columns (n, k) and the :class:`~offrec.ope.intervals.Form` over them."""
        a = self.per_slate()
        cols = [] if a is None else [a[:, None]]
        if self.b is None or self.c is None:
            return np.concatenate(cols, axis=1), Form(0)
        T = self.b.shape[1]
        first = len(cols)
        cols += [self.b, self.c]
        return np.concatenate(cols, axis=1), Form(
            None if self.a is None else 0,
            tuple(range(first, first + T)),
            tuple(range(first + T, first + 2 * T)),
        )

    def sums(self) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        r"""The column totals :math:`(\sum_i A_i, \sum_i B_{i\cdot}, \sum_i C_{i\cdot})`
        (None for absent columns): what :meth:`value` needs, additive over blocks of
        slates (:func:`_col_sums`)."""
        if self.a is None:
            sa = 0.0
        elif self.weight is None:
            sa = float(self.a.sum())
        else:
            sa = float(self.a.reshape(-1) @ self.weight.reshape(-1))
        if self.b is None or self.c is None:
            return sa, None, None
        return sa, _col_sums(self.b), _col_sums(self.c)

    def check_mass(self) -> None:
        """Raise when :attr:`mass` is set and the weights at some position sum to 0."""
        _, _, sc = self.sums()
        check_slate_mass(sc, self.mass)

    def value(self) -> float:
        r""":math:`\bar A + \sum_t \bar B_t / \bar C_t` (:func:`value_of_sums`)."""
        return value_of_sums(*self.sums(), self.n, self.mass)

    def round_rewards(self) -> np.ndarray:
        """Per-slate contributions (n,) whose mean is :meth:`value` (OBP's convention: the
        self-normalized terms divided by the mean of their weights)."""
        a = self.per_slate()
        out = np.zeros(self.n) if a is None else a.copy()
        if self.b is not None and self.c is not None:
            mean_c = self.c.mean(axis=0)
            check_slate_mass(mean_c, self.mass)
            safe = np.where(mean_c != 0, mean_c, 1.0)
            out = out + (np.where(mean_c != 0, self.b / safe, 0.0)).sum(axis=1)
        return out


def value_of_sums(
    sa: float, sb: np.ndarray | None, sc: np.ndarray | None, n: int, mass: str
) -> float:
    r"""The estimate from the column totals of :meth:`SlateParts.sums` over ``n`` slates:
    :math:`\hat V = \frac{1}{n} \sum_i A_i + \sum_t \sum_i B_{it} / \sum_i C_{it}`
    (a ratio whose denominator is 0 counts 0; with ``mass`` set that is an error)."""
    v = sa / n
    if sb is not None and sc is not None:
        check_slate_mass(sc, mass)
        v += sum(float(x) / float(y) for x, y in zip(sb, sc, strict=True) if y != 0)
    return v


def check_slate_mass(total: np.ndarray | None, name: str) -> None:
    """An ``InputError`` naming the self-normalized estimator ``name`` (if set) when its
    total weight ``total`` (one entry per position) is not positive at some position."""
    if name and total is not None and not (total > 0).all():
        raise InputError(
            f"{name} is undefined: every importance weight at some position is 0 "
            "(the target puts no mass on the logged slates)"
        )


@dataclass(frozen=True)
class SlateEstimator:
    """Base of the slate estimator classes: a name, the propensity ``kind`` it weighs by and
    a formula (:meth:`parts`). Methods take the keyword arrays of :func:`slate_terms`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "joint"
    """Which importance weight the estimator uses: ``joint``, ``item_position``, ``cascade``."""
    needs_model: ClassVar[bool] = False
    self_normalized: ClassVar[bool] = False
    assumption: ClassVar[str] = ""
    """When the estimator is unbiased, in a sentence (the README's "when to trust it")."""
    # the metadata of :class:`offrec.ope.trust.EstimatorMeta`, mirrored (not inherited: its
    # ``kind`` and ``diagnostics`` mean other things here); :meth:`info` is the one record
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS})
    """Inputs the estimator leans on, from :data:`offrec.ope.trust.READS`."""
    assumptions: ClassVar[tuple[str, ...]] = ()
    """What must hold for the estimator to be right (each a sentence)."""
    reference: ClassVar[str] = ""
    """Where its formula comes from."""
    reports: ClassVar[tuple[str, ...]] = SLATE_DIAGNOSTICS
    """The keys of :meth:`diagnostics` (``EstimatorMeta.diagnostics``)."""
    in_obp: ClassVar[bool] = True
    """Whether OBP 0.5.7 ships the estimator (the equality tests and the speed benchmark
    compare those)."""

    @classmethod
    def info(cls) -> EstimatorInfo:
        """The metadata as :class:`offrec.ope.trust.EstimatorInfo` (``kind`` ``"slate"``)."""
        return EstimatorInfo(
            name=cls.name,
            kind="slate",
            reads=tuple(r for r in READS if r in cls.reads),
            assumptions=cls.assumptions,
            reference=cls.reference,
            diagnostics=cls.reports,
        )

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def label(self) -> str:
        return self.name

    def parts(self, terms: SlateTerms) -> SlateParts:  # pragma: no cover - abstract
        raise NotImplementedError

    def weights(self, terms: SlateTerms) -> np.ndarray:
        """The importance weights the estimator uses, (n, K)."""
        return terms.weight(self.kind, self.name)

    def terms(self, keys: bool = True, **arrays: Any) -> SlateTerms:
        """:func:`slate_terms` of ``arrays``, limited to what this estimator reads."""
        return slate_terms(kinds=(self.kind,), model=self.needs_model, keys=keys, **arrays)

    def estimate_policy_value(self, **arrays: Any) -> float:
        """The point estimate: the fast path (:func:`_fast_value`) on the usual input, else
        (or when its cheap checks fail) :meth:`terms`' full validation and :meth:`parts`."""
        if type(self).terms is SlateEstimator.terms:  # PI's uniform-logger form checks more
            v = _fast_value(self, arrays)
            if v is not None:
                return v
        return self.parts(self.terms(keys=False, **arrays)).value()

    def estimate_round_rewards(self, **arrays: Any) -> np.ndarray:
        """Per-slate contributions (n_slates,), slates in ``slate_id`` order."""
        return self.parts(self.terms(keys=False, **arrays)).round_rewards()

    def estimate_interval(
        self,
        *,
        method: str = "bootstrap",
        n_bootstrap: int = 1000,
        alpha: float = 0.05,
        seed: SeedLike = None,
        bound: float | None = None,
        **arrays: Any,
    ) -> Interval:
        """The estimate with a ``1 - alpha`` interval; the bootstrap resamples whole slates
        (keyed by ``(session_id, step)`` when given, else by ``slate_id``)."""
        check_interval_options(method, n_bootstrap, alpha, bound)
        terms = self.terms(**arrays)
        assert terms.keys is not None  # asked for (keys=True)
        return slate_interval(
            self.parts(terms),
            terms.keys,
            method=method,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            seed=seed,
            bound=bound,
        )

    def diagnostics(self, terms: SlateTerms) -> dict[str, float]:
        """Effective sample size :math:`(\\sum w)^2 / \\sum w^2` (the smallest over positions
        for per-slot weights) and the largest weight."""
        w = self.weights(terms)
        sq = (w * w).sum(axis=0)
        ess = np.where(sq > 0, w.sum(axis=0) ** 2 / np.where(sq > 0, sq, 1.0), 0.0)
        return {"ess": float(ess.min()), "max_weight": float(w.max())}


def slate_interval(
    parts: SlateParts,
    keys: np.ndarray,
    *,
    method: str,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: SeedLike = None,
    bound: float | None = None,
) -> Interval:
    """:func:`~offrec.ope.intervals.interval` over the slates' columns (units = slates)."""
    parts.check_mass()
    x, form = parts.columns()
    boot = n_bootstrap if method == "bootstrap" else 0
    moments = Moments.of(x, keys=keys, n_bootstrap=boot, seed=seed_int(seed))
    return interval(moments, form, method=method, alpha=alpha, bound=bound)


def _col_sums(x: np.ndarray) -> np.ndarray:
    """Column sums (T,) of a narrow ``(n, T)`` array. numpy's ``sum(axis=0)`` and a BLAS
    product with a ones vector both loop ``T`` entries at a time (slow for ``T`` = 5); a
    C-contiguous array is summed as ``(n / L, L T)`` rows instead (one long vectorized
    row sum), then the ``L`` partial sums of each column."""
    n, T = x.shape
    L = max(1, 1024 // T)
    full = n // L * L
    if not x.flags.c_contiguous or full == 0:
        return np.ones(n) @ x
    out = x[:full].reshape(-1, L * T).sum(axis=0).reshape(L, T).sum(axis=0)
    return out + x[full:].sum(axis=0) if full < n else out


def _row_sums(x: np.ndarray) -> np.ndarray:
    """Row sums of a narrow ``(n, K)`` array as a matrix-vector product (numpy's
    ``sum(axis=1)`` loops ``K`` at a time: ~10x slower for ``K`` = 5)."""
    return x @ np.ones(x.shape[1])


@dataclass(frozen=True)
class SIPS(SlateEstimator):
    r"""Standard slate IPS: the joint slate weight times the slate's total reward.

    .. math::

        \hat V_{\mathrm{SIPS}} = \frac{1}{n} \sum_i w_i \sum_k r_{ik}, \qquad
        w_i = \frac{\pi_e(s_i|x_i)}{\pi_b(s_i|x_i)}

    Assumptions: support of the whole slate (:math:`\pi_e(s|x) > 0 \Rightarrow
    \pi_b(s|x) > 0`); no click model. Unbiased, with variance that grows with the number
    of slates (McInerney et al. 2020, eq. 1).

    >>> import numpy as np
    >>> SIPS().estimate_policy_value(
    ...     slate_id=np.array([0, 0, 1, 1]), position=np.array([0, 1, 0, 1]),
    ...     reward=np.array([1.0, 0.0, 0.0, 1.0]), pscore=np.array([0.5, 0.5, 0.25, 0.25]),
    ...     evaluation_policy_pscore=np.array([0.25, 0.25, 0.5, 0.5]))
    1.25
    """

    name: ClassVar[str] = "sips"
    kind: ClassVar[str] = "joint"
    assumption: ClassVar[str] = "none beyond slate support (unbiased; high variance)"
    assumptions: ClassVar[tuple[str, ...]] = (UNCONFOUNDED, SLATE_SUPPORT)
    reference: ClassVar[str] = _MCINERNEY + " (SIPS, eq. 1)"

    def parts(self, terms: SlateTerms) -> SlateParts:
        w = self.weights(terms)
        return SlateParts(w[:, 0] * _row_sums(terms.reward))


@dataclass(frozen=True)
class IIPS(SlateEstimator):
    r"""Independent IPS: each slot weighed by its item's marginal propensity at that slot.

    .. math::

        \hat V_{\mathrm{IIPS}} = \frac{1}{n} \sum_i \sum_k
            \frac{\pi_e(a_{ik} \text{ at } k|x_i)}{\pi_b(a_{ik} \text{ at } k|x_i)}\, r_{ik}

    Assumption: the item-position click model, :math:`E[r_k | x, s] = \theta(x, a_k, k)`
    (independent and position-based clicks); biased when a slot's reward depends on the
    other items (cascade). Lowest variance of the three (Li et al. 2018).

    >>> import numpy as np
    >>> IIPS().estimate_policy_value(
    ...     slate_id=np.array([0, 0]), position=np.array([0, 1]), reward=np.array([1.0, 1.0]),
    ...     pscore_item_position=np.array([0.5, 0.25]),
    ...     evaluation_policy_pscore_item_position=np.array([0.25, 0.5]))
    2.5
    """

    name: ClassVar[str] = "iips"
    kind: ClassVar[str] = "item_position"
    assumptions: ClassVar[tuple[str, ...]] = (
        UNCONFOUNDED,
        ITEM_POSITION_SUPPORT,
        ITEM_POSITION_MODEL,
    )
    reference: ClassVar[str] = _LI
    assumption: ClassVar[str] = (
        "item-position model: a slot's reward depends on its item and rank only"
    )

    def parts(self, terms: SlateTerms) -> SlateParts:
        return SlateParts(terms.reward, weight=self.weights(terms))


@dataclass(frozen=True)
class RIPS(SlateEstimator):
    r"""Reward-interaction IPS: each slot weighed by the prefix (cascade) weight.

    .. math::

        \hat V_{\mathrm{RIPS}} = \frac{1}{n} \sum_i \sum_k
            \frac{\pi_e(a_{i,\le k}|x_i)}{\pi_b(a_{i,\le k}|x_i)}\, r_{ik}

    Assumption: the cascade (reward-interaction) model, :math:`E[r_k | x, s] =
    \theta(x, a_{\le k}, k)`: a slot's reward depends on the items above it only;
    includes independent, position-based and cascade clicks. Variance between IIPS and
    SIPS (McInerney et al. 2020, eqs. 3-4).
    """

    name: ClassVar[str] = "rips"
    kind: ClassVar[str] = "cascade"
    assumptions: ClassVar[tuple[str, ...]] = (UNCONFOUNDED, PREFIX_SUPPORT, CASCADE_MODEL)
    reference: ClassVar[str] = _MCINERNEY + " (RIPS, eqs. 3-4)"
    assumption: ClassVar[str] = "cascade model: a slot's reward depends on the items above it only"

    def parts(self, terms: SlateTerms) -> SlateParts:
        return SlateParts(terms.reward, weight=self.weights(terms))


@dataclass(frozen=True)
class SNSIPS(SIPS):
    r"""Self-normalized SIPS: :math:`\sum_i w_i R_i / \sum_i w_i` with :math:`R_i = \sum_k r_{ik}`.

    Assumptions as :class:`SIPS`; consistent, biased in finite samples, lower variance.
    """

    name: ClassVar[str] = "snsips"
    self_normalized: ClassVar[bool] = True
    reference: ClassVar[str] = SIPS.reference + _SN

    def parts(self, terms: SlateTerms) -> SlateParts:
        w = self.weights(terms)
        return SlateParts(None, (w[:, 0] * _row_sums(terms.reward))[:, None], w[:, :1], self.name)


@dataclass(frozen=True)
class SNIIPS(IIPS):
    r"""Self-normalized IIPS, normalized per position (OBP's form):
    :math:`\sum_k \sum_i w^{\mathrm{item}}_{ik} r_{ik} / \sum_i w^{\mathrm{item}}_{ik}`.

    Assumptions as :class:`IIPS`.
    """

    name: ClassVar[str] = "sniips"
    self_normalized: ClassVar[bool] = True
    reference: ClassVar[str] = IIPS.reference + _SN

    def parts(self, terms: SlateTerms) -> SlateParts:
        w = self.weights(terms)
        return SlateParts(None, w * terms.reward, w, self.name)


@dataclass(frozen=True)
class SNRIPS(RIPS):
    r"""Self-normalized RIPS, normalized per position (OBP's form):
    :math:`\sum_k \sum_i w^{\mathrm{casc}}_{ik} r_{ik} / \sum_i w^{\mathrm{casc}}_{ik}`.

    Assumptions as :class:`RIPS`.
    """

    name: ClassVar[str] = "snrips"
    self_normalized: ClassVar[bool] = True
    reference: ClassVar[str] = RIPS.reference + _SN

    parts = SNIIPS.parts  # the same per-position normalization, on the cascade weights


@dataclass(frozen=True)
class CascadeDR(SlateEstimator):
    r"""Cascade doubly robust (Kiyohara et al. 2022): RIPS with a Q-function control variate.

    .. math::

        \hat V_{\mathrm{CDR}} = \frac{1}{n} \sum_i \sum_k \Big[
            w^{\mathrm{casc}}_{ik} \big(r_{ik} - \hat Q_k(x_i, a_{i,\le k})\big)
            + w^{\mathrm{casc}}_{i,k-1} \sum_a \pi_e(a|x_i, a_{i,<k})\, \hat Q_k(x_i, a_{i,<k}, a)
        \Big], \qquad w^{\mathrm{casc}}_{i,-1} = 1

    ``q_hat`` (n_rows, n_actions) holds :math:`\hat Q_k` for every candidate item at
    each logged slot (the expected reward from slot ``k`` to the end after the logged
    prefix); ``evaluation_policy_action_dist`` (n_rows, n_actions) the target's
    next-item distribution :math:`\pi_e(\cdot|x, a_{<k})`. Assumption: the cascade model
    and support of the prefixes; unbiased when the propensities are right, whatever
    ``q_hat``; lower variance than RIPS when ``q_hat`` is close.
    """

    name: ClassVar[str] = "cascade-dr"
    kind: ClassVar[str] = "cascade"
    needs_model: ClassVar[bool] = True
    assumption: ClassVar[str] = "cascade model (as RIPS); a good Q-model lowers the variance"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS, REWARD_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = (UNCONFOUNDED, PREFIX_SUPPORT, CASCADE_MODEL)
    reference: ClassVar[str] = (
        "Kiyohara, Saito, Matsuhiro, Narita, Shimizu, Yamamoto (2022), Doubly robust "
        "off-policy evaluation for ranking policies under the cascade behavior model, WSDM"
    )

    def parts(self, terms: SlateTerms) -> SlateParts:
        w = self.weights(terms)
        if terms.q_logged is None or terms.q_target is None:
            raise InputError(
                f"estimator {self.name!r} needs q_hat, action and evaluation_policy_action_dist; got None"
            )
        a = terms.reward - terms.q_logged
        a *= w  # w_k (r_k - q_k), then + w_{k-1} q_target_k (w_{-1} = 1)
        a[:, 0] += terms.q_target[:, 0]
        a[:, 1:] += w[:, :-1] * terms.q_target[:, 1:]
        return SlateParts(a)


@dataclass(frozen=True)
class PI(SlateEstimator):
    r"""Pseudo-inverse estimator (Swaminathan et al. 2017) in its per-slot-marginal form.

    With :math:`\mathbb 1_s \in \{0, 1\}^{K m}` the indicator of the (slot, item) pairs of
    slate :math:`s`, :math:`\Gamma_b(x) = E_{s \sim \pi_b}[\mathbb 1_s \mathbb 1_s^\top]` and
    :math:`q_e(x) = E_{s \sim \pi_e}[\mathbb 1_s]` (the target's marginals), PI is
    :math:`\frac1n \sum_i R_i\, q_e(x_i)^\top \Gamma_b(x_i)^\dagger \mathbb 1_{s_i}`,
    :math:`R_i = \sum_k r_{ik}`. When the logger draws the slots independently
    (:math:`\pi_b(s|x) = \prod_k \pi_b(a_k \text{ at } k|x)`, the paper's product case) the
    pseudo-inverse has the closed form used here, which needs only the per-slot marginals:

    .. math::

        \hat V_{\mathrm{PI}} = \frac{1}{n} \sum_i \Big(\sum_k r_{ik}\Big)
            \Big(\sum_{k=1}^{K} w^{\mathrm{item}}_{ik} - K + 1\Big), \qquad
        w^{\mathrm{item}}_{ik} = \frac{\pi_e(a_{ik} \text{ at } k|x_i)}
            {\pi_b(a_{ik} \text{ at } k|x_i)}

    Assumptions: the slate reward is additive over (slot, item) pairs,
    :math:`E[R | x, s] = \sum_k \phi_x(k, a_k)` (independent and position-based clicks;
    not cascade), and the logger's slots are independent given ``x`` (then it is
    unbiased). A logger that ranks without replacement (Plackett-Luce, top-k) makes the
    slots dependent: the formula is then the usual marginal approximation, and it is
    biased even under additive rewards (measured in ``tests/ope/test_slate.py``); the
    exact :math:`\Gamma_b^\dagger` would need the logger's pairwise (slot, item)
    marginals, which the log does not carry, so the streamed slate evaluation
    (:func:`offrec.ope.slate_log.evaluate_slates`, ``offrec evaluate``) refuses PI on a
    log whose logger ranks without replacement (every offrec slate logger), naming why,
    and leaves it out of its default set. The one ranking logger whose pseudo-inverse
    has a closed form in the slot marginals is the uniform one (every ordered list of
    ``K`` distinct items out of ``m`` equally likely; ``n_items=m``). Solving
    :math:`\Gamma_b h = q_e` there gives

    .. math::

        \hat V_{\mathrm{PI}} = \frac{1}{n} \sum_i R_i \Big((m - 1) \sum_k q_e(k, a_{ik})
            + \frac{m - 1}{m - K} \sum_k Q_e(a_{ik}) - \frac{(K - 1)\, m}{m - K}\Big),
        \qquad Q_e(a) = \sum_j q_e(j, a)

    (:math:`Q_e(a)`, the target's probability of showing ``a`` anywhere, is
    ``evaluation_policy_pscore_item``; ``pscore_item`` = K/m), unbiased under additive
    rewards (tested by enumeration; this closed form is derived here, not quoted).

    Reference: A. Swaminathan, A. Krishnamurthy, A. Agarwal, M. Dudik, J. Langford,
    D. Jose, I. Zitouni, "Off-policy evaluation for slate recommendation", NeurIPS 2017
    (the estimator, and its closed form for product logging policies).

    >>> import numpy as np
    >>> PI().estimate_policy_value(
    ...     slate_id=np.array([0, 0]), position=np.array([0, 1]), reward=np.array([1.0, 1.0]),
    ...     pscore_item_position=np.array([0.5, 0.25]),
    ...     evaluation_policy_pscore_item_position=np.array([0.25, 0.5]))
    3.0
    """

    n_items: int | None = None
    """None: the product-logging form above. An integer ``m``: the logger is uniform over
    the ordered lists of ``K`` distinct items out of ``m`` (``pscore_item_position`` =
    1/m, checked), and PI uses that logger's exact pseudo-inverse (below)."""

    name: ClassVar[str] = "pi"
    kind: ClassVar[str] = "item_position"
    in_obp: ClassVar[bool] = False
    assumption: ClassVar[str] = (
        "additive reward over (slot, item) pairs and a logger whose slots are independent"
    )
    assumptions: ClassVar[tuple[str, ...]] = (
        UNCONFOUNDED,
        ITEM_POSITION_SUPPORT,
        ADDITIVE_REWARD,
        FACTORED_LOGGER,
    )
    reference: ClassVar[str] = (
        "Swaminathan, Krishnamurthy, Agarwal, Dudik, Langford, Jose, Zitouni (2017), "
        "Off-policy evaluation for slate recommendation, NeurIPS"
    )

    def __post_init__(self) -> None:
        if self.n_items is not None:
            check_scalar(self.n_items, "n_items", int, min=2)

    def _check_n_items(self, K: int) -> int:
        m = int(self.n_items or 0)
        if m <= K:
            raise InputError(
                f"n_items must exceed the slate size ({K}) for PI with a uniform ranking "
                f"logger; got {m}"
            )
        return m

    def terms(self, keys: bool = True, **arrays: Any) -> SlateTerms:
        if self.n_items is None:
            return super().terms(keys, **arrays)
        b = arrays.get("pscore_item_position")
        if b is not None:
            b = _vec(b, "pscore_item_position", None, float)
            off = np.abs(b * self.n_items - 1.0) > 1e-9
            if off.any():
                i = first_bad(off)
                raise InputError(
                    f"pscore_item_position must be 1/n_items = {1.0 / self.n_items!r} for PI "
                    f"with a uniform ranking logger; row {i} has {float(b[i])!r}"
                )
        terms = slate_terms(kinds=("item_position", "item"), model=False, keys=keys, **arrays)
        b_in = arrays.get("pscore_item")
        K = terms.reward.shape[1]
        self._check_n_items(K)
        if b_in is not None:  # the weights assume the uniform logger's K/m
            off = np.abs(np.asarray(b_in, dtype=np.float64) * self.n_items / K - 1.0) > 1e-9
            if off.any():
                i = first_bad(off)
                raise InputError(
                    f"pscore_item must be slate_size/n_items = {K / self.n_items!r} for PI with "
                    f"a uniform ranking logger; row {i} has {float(b_in[i])!r}"
                )
        return terms

    def parts(self, terms: SlateTerms) -> SlateParts:
        w = self.weights(terms)
        K = w.shape[1]
        if self.n_items is None:
            g = _row_sums(w) - (K - 1)
        else:
            m = self._check_n_items(K)
            # q_k = w_k / m, Q_k = w_in_k K / m (the logger's marginals are 1/m and K/m)
            w_in = terms.weight("item", self.name)
            g = (m - 1) / m * _row_sums(w) + (m - 1) * K / (m * (m - K)) * _row_sums(w_in)
            g -= (K - 1) * m / (m - K)
        return SlateParts(g * _row_sums(terms.reward))


SLATE_ESTIMATORS: dict[str, type[SlateEstimator]] = {
    cls.name: cls for cls in (SIPS, IIPS, RIPS, SNSIPS, SNIIPS, SNRIPS, CascadeDR, PI)
}
"""The slate estimator registry: class by name (the CLI's and pipelines' names)."""


def make_slate_estimator(name: str) -> SlateEstimator:
    """The slate estimator called ``name``; the error lists the valid names."""
    if name not in SLATE_ESTIMATORS:
        raise InputError(f"slate estimator must be one of {list(SLATE_ESTIMATORS)}; got {name!r}")
    return SLATE_ESTIMATORS[name]()


def estimate_slate_policy_value(estimator: str, **arrays: Any) -> float:
    """:meth:`SlateEstimator.estimate_policy_value` of the estimator called ``estimator``."""
    return make_slate_estimator(estimator).estimate_policy_value(**arrays)


def estimate_slate_interval(estimator: str, **kwargs: Any) -> Interval:
    """:meth:`SlateEstimator.estimate_interval` of the estimator called ``estimator``."""
    return make_slate_estimator(estimator).estimate_interval(**kwargs)
