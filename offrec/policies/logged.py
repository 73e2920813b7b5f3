"""Logged bandit feedback as training data: arrays out of a log, per-arm inverse-propensity
weights, and :func:`fit_logged`, which fits any bandit learner of
:mod:`offrec.policies.bandits` on logged rows.

Where IPW correction matters (and where it does not)
----------------------------------------------------
Logged rows of arm ``a`` are users the logger chose to show ``a``: their contexts follow
``p(x) pi_0(a|x) / P(a)``, not the population ``p(x)``.

- *Non-contextual* learners estimate one value per arm. The plain mean of the logged
  rewards of ``a`` is ``E[q(x, a) | logger showed a]``, confounded by the logger's
  targeting (a logger that shows sports to sports fans makes sports look great). The
  self-normalized IPW mean ``sum_i w_i r_i / sum_i w_i`` over those rows with
  ``w_i = 1 / pscore_i`` estimates the population value ``E_x[q(x, a)]``. IPW is on by
  default for them.
- *Per-arm regression models* (LinUCB, LinTS, logistic) estimate ``E[r | x, a]`` given
  ``x``: if the model is well specified the logged covariate shift does not bias it, and
  weights only add variance. If it is misspecified (a linear model of a sigmoid click
  model), weights ``1 / pscore`` move the fit from the best approximation on the
  logger's users to the best on all users. Off by default; ``ipw=True`` turns it on.
- With a uniform logger all weights are equal and IPW changes nothing.

Weights are normalized within each arm to mean 1, so each arm keeps its number of rows
as its evidence (UCB / Thompson confidence widths stay calibrated to the sample size),
and can be clipped (``clip``) to trade a little bias for variance.

>>> import numpy as np
>>> ipw_weights(np.array([0, 0, 1]), np.array([0.5, 0.25, 1.0]), n_actions=2).tolist()
[0.6666666666666666, 1.3333333333333333, 1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from offrec.core.errors import InputError, InputTypeError
from offrec.core.validation import check_scalar, first_bad
from offrec.policies.bandits.base import BanditLearner, check_feedback

__all__ = ["check_pscore", "domain_rewards", "fit_logged", "ipw_weights", "logged_arrays"]


def domain_rewards(learner: Any, reward: ArrayLike, domain: dict[str, Any] | None) -> Any:
    """The rewards ``learner`` (an instance or class) learns from a log with the declared
    reward ``domain`` (None: not declared, the rewards as given), by its
    ``reward_support`` (:mod:`offrec.core.domain`):

    - ``"any"``: the rewards as logged;
    - ``"unit"``: :math:`(r - low) / (high - low)` in [0, 1] (clicks unchanged), so
      confidence widths, logistic links and non-negative weights keep their meaning;
    - ``"binary"``: the rewards, if the log declares clicks; else ``InputError`` naming
      the learner and ``fits_instead``.

    >>> from offrec.policies.bandits import UCB1, BernoulliTS
    >>> domain_rewards(UCB1, [-1.0, 1.0], {"kind": "continuous", "low": -1, "high": 1}).tolist()
    [0.0, 1.0]
    >>> domain_rewards(BernoulliTS, [0.5], {"kind": "continuous", "low": 0, "high": 1})
    Traceback (most recent call last):
    ...
    offrec.core.errors.InputError: bernoulli-ts needs a binary (0/1 click) reward; this log's reward is continuous in [0.0, 1.0]; use ucb1 or epsilon-greedy (linucb or lints with contexts)
    """
    from offrec.core.domain import require_binary, to_unit

    if domain is None:
        return reward
    support = getattr(learner, "reward_support", "any")
    if support == "binary":
        require_binary(
            domain, str(learner.kind), getattr(learner, "fits_instead", "") or "another learner"
        )
        return reward
    if support == "unit":
        return to_unit(reward, domain)
    return reward


def logged_arrays(
    data: Any,
    action: ArrayLike | None = None,
    reward: ArrayLike | None = None,
    pscore: ArrayLike | None = None,
) -> tuple[Any, Any, Any, Any]:
    """``(context, action, reward, pscore)`` from a ``LoggedData``, ``Trajectories`` or arrays.

    ``data`` is a :class:`~offrec.logs.data.LoggedData` (``context``), a
    :class:`~offrec.sim.Trajectories` (``obs``), or the context array itself with
    ``action``, ``reward`` (and ``pscore`` where needed) passed separately.
    """
    if hasattr(data, "action") and hasattr(data, "reward"):
        if action is not None or reward is not None:
            raise InputError("pass either a LoggedData / Trajectories or arrays, not both")
        context = data.context if hasattr(data, "context") else data.obs
        return context, data.action, data.reward, getattr(data, "pscore", None)
    if action is None or reward is None:
        raise InputError("action and reward are required when data is a context array")
    return data, action, reward, pscore


def check_pscore(pscore: ArrayLike, n: int) -> np.ndarray:
    """``pscore`` as float64 (n,), every value in (0, 1]; errors name the first bad row."""
    if pscore is None:
        raise InputError("pscore is required for importance weighting; got None")
    p = np.asarray(pscore, dtype=np.float64)
    if p.shape != (n,):
        raise InputError(f"pscore must have shape ({n},) like action; got {p.shape}")
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        i = first_bad(bad)
        raise InputError(f"pscore must be in (0, 1]; row {i} has {p[i]}")
    return p


def ipw_weights(
    action: np.ndarray, pscore: np.ndarray, n_actions: int, clip: float | None = None
) -> np.ndarray:
    """Per-row weights ``min(1 / pscore, clip)`` normalized to mean 1 within each arm, (n,)."""
    a = np.asarray(action, dtype=np.int64)
    p = check_pscore(pscore, a.shape[0])
    w = 1.0 / p
    if clip is not None:
        check_scalar(clip, "clip", float, min=0.0, min_inclusive=False)
        np.minimum(w, clip, out=w)
    count = np.bincount(a, minlength=n_actions)
    total = np.bincount(a, weights=w, minlength=n_actions)
    mean = np.divide(total, count, out=np.ones(n_actions), where=count > 0)
    return w / mean[a]


def fit_logged(
    learner: BanditLearner,
    data: Any,
    action: ArrayLike | None = None,
    reward: ArrayLike | None = None,
    pscore: ArrayLike | None = None,
    *,
    ipw: bool | None = None,
    clip: float | None = None,
    batch_size: int | None = None,
) -> BanditLearner:
    """Fit a bandit learner on logged rows; returns the learner (fitted in place).

    Args:
        learner: a learner from :mod:`offrec.policies.bandits` sized for the log.
        data: a ``LoggedData`` / ``Trajectories``, or the context array (then pass
            ``action``, ``reward`` and, for IPW, ``pscore``). A ``LoggedData``'s declared
            reward domain is honoured (:func:`domain_rewards`).
        ipw: weight rows by ``1 / pscore`` (normalized within each arm, see the module
            docstring). ``None`` = on for non-contextual learners, off for contextual ones.
        clip: cap on ``1 / pscore`` before normalizing (``None`` = no cap).
        batch_size: ``None`` fits all rows at once (``learner.fit``: for the logistic
            model, Newton to convergence); an int replays the log in that many rows per
            ``partial_fit``, as if it had been learned online.
    """
    if not isinstance(learner, BanditLearner):
        raise InputTypeError(
            f"learner must be an offrec bandit learner; got {type(learner).__name__}"
        )
    context, a, r, p = logged_arrays(data, action, reward, pscore)
    r = domain_rewards(learner, r, getattr(data, "reward_domain", None))
    if getattr(data, "item_map", None) is not None:  # a LoggedData: its items travel along
        learner.item_map = data.item_map
    if ipw is None:
        ipw = not learner.contextual
    a_arr = np.asarray(a)
    weight = None
    if ipw:
        x, a_arr, _, _ = check_feedback(
            context,
            a,
            r,
            None,
            n_actions=learner.n_actions,
            context_dim=learner.context_dim if learner.contextual else None,
        )
        weight = ipw_weights(a_arr, p, learner.n_actions, clip)
    if batch_size is None:
        return learner.fit(context, a_arr, r, weight)
    check_scalar(batch_size, "batch_size", int, min=1)
    learner.reset()
    learner.n_updates = 0
    n = a_arr.shape[0]
    ctx = None if context is None else np.asarray(context)
    r_arr = np.asarray(r)
    for lo in range(0, n, batch_size):
        sl = slice(lo, lo + batch_size)
        learner.partial_fit(
            None if ctx is None else ctx[sl],
            a_arr[sl],
            r_arr[sl],
            None if weight is None else weight[sl],
        )
    return learner
