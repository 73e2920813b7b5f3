"""``OffPolicyEvaluation``: several target policies x several estimators on one log, as a table."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from offrec.core.errors import InputError, InputTypeError
from offrec.core.policy import Policy
from offrec.core.validation import SeedLike, as_seed_sequence
from offrec.logs.data import LoggedData
from offrec.ope.diagnostics import support_violation, weight_stats
from offrec.ope.estimators import (
    ESTIMATOR_CLASSES,
    ESTIMATORS,
    NEEDS_MODEL,
    Estimator,
    RoundTerms,
    round_terms,
)
from offrec.ope.intervals import check_interval_options, interval_from_terms
from offrec.reward.model import RewardModel

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "policy",
    "estimator",
    "value",
    "low",
    "high",
    "interval_method",
    "ess",
    "max_weight",
    "support_violation",
    "support_violation_rows",
)
"""Columns of :meth:`OffPolicyEvaluation.run`, in order."""


class OffPolicyEvaluation:
    """Estimate the value of target policies from one log with several estimators.

    Args:
        data: the log (context, action, reward, pscore, position, optional logging_dist).
        policies: ``{name: policy}``, or a list of policies (named by their ``name``
            attribute if they have one, else by class name, made unique with ``#i``).
            Each must have ``n_actions == data.n_actions`` and
            ``action_dist(context) -> (n, n_actions)``.
        estimators: names from :data:`~offrec.ope.estimators.ESTIMATORS` or estimator
            instances (``IPS(lambda_=10)``). Default: ``ips, snips`` plus ``dm, dr, sndr``
            when a reward model is given. Asking for a model-based estimator
            (dm, dr, sndr, switch-dr, dr-os) without ``reward_model`` is an error.
        reward_model: cross-fitted once on the whole log (one model for all policies).
        interval: ``"bootstrap"``, ``"normal"`` or ``"bernstein"``.
        n_bootstrap, alpha: see :func:`~offrec.ope.intervals.estimate_interval`.
        seed: seeds the bootstrap (each policy x estimator gets its own spawned stream).

    Positions: when the log has several positions (``data.n_positions > 1``), a policy's
    ``(n, n_actions)`` distribution is broadcast (a read-only view, no copy) to
    ``(n, n_actions, n_positions)``: the same distribution at every position, and
    row ``i`` is scored at its logged position.

    Each policy's distribution is validated once (rows sum to 1, non-negative, finite);
    the estimators then share the per-row terms.
    """

    def __init__(
        self,
        data: LoggedData,
        policies: Mapping[str, Policy] | Sequence[Policy],
        estimators: Sequence[str | Estimator] | None = None,
        reward_model: RewardModel | None = None,
        interval: str = "bootstrap",
        n_bootstrap: int = 1000,
        alpha: float = 0.05,
        seed: SeedLike = None,
    ) -> None:
        if not isinstance(data, LoggedData):
            raise InputTypeError(f"data must be a LoggedData; got {type(data).__name__}")
        self.data = data
        self.policies = _named(policies)
        for name, policy in self.policies.items():
            if getattr(policy, "n_actions", None) != data.n_actions:
                raise InputError(
                    f"policy {name!r} must have n_actions == data.n_actions ({data.n_actions}); "
                    f"got {getattr(policy, 'n_actions', None)!r}"
                )
        if estimators is None:
            estimators = ("ips", "snips") + (("dm", "dr", "sndr") if reward_model else ())
        self.estimators = [_as_estimator(e) for e in estimators]
        if not self.estimators:
            raise InputError("estimators must name at least one estimator; got none")
        need = [e.label for e in self.estimators if e.name in NEEDS_MODEL]
        if need and reward_model is None:
            raise InputError(
                f"estimators {need} need a reward model; pass reward_model=RewardModel(...) "
                "or leave them out"
            )
        check_interval_options(interval, n_bootstrap, alpha)
        self.reward_model = reward_model
        self.interval = interval
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.seed = seed
        self.estimated_rewards_: np.ndarray | None = None

    def run(self) -> pd.DataFrame:
        """One row per (policy, estimator), columns :data:`COLUMNS`.

        ``ess`` and ``max_weight`` describe the policy's unclipped importance weights;
        ``support_violation`` (mean target mass on actions the logger never takes) and
        ``support_violation_rows`` (fraction of rows with such mass) are nan when the
        log has no ``logging_dist``.
        """
        import pandas as pd  # imported when used: slow to import

        data = self.data
        multi = data.n_positions > 1
        position = data.position if multi else None
        if self.reward_model is not None and any(e.name in NEEDS_MODEL for e in self.estimators):
            logger.info("cross-fitting the reward model on %d rows", data.n_rows)
            self.estimated_rewards_ = self.reward_model.fit_predict(
                data.context, data.action, data.reward, data.pscore, position,
                n_actions=data.n_actions,
            )  # fmt: skip
        streams = iter(as_seed_sequence(self.seed).spawn(len(self.policies) * len(self.estimators)))
        rows: list[dict[str, Any]] = []
        for name, policy in self.policies.items():
            dist = np.asarray(policy.action_dist(data.context))
            if dist.shape != (data.n_rows, data.n_actions):
                raise InputError(
                    f"policy {name!r}: action_dist must return shape "
                    f"{(data.n_rows, data.n_actions)}; got {dist.shape}"
                )
            if multi:
                dist = np.broadcast_to(dist[:, :, None], (*dist.shape, data.n_positions))
            terms = self._terms(name, dist, position)
            stats = weight_stats(terms.weight, quantiles=())
            violation = (np.nan, np.nan)
            if data.logging_dist is not None:
                sv = support_violation(
                    action_dist=dist, logging_dist=data.logging_dist, position=position
                )
                violation = (sv.mass, sv.rows)
            for est in self.estimators:
                iv = interval_from_terms(
                    est.name,
                    terms,
                    method=self.interval,
                    n_bootstrap=self.n_bootstrap,
                    alpha=self.alpha,
                    seed=next(streams),
                    **est.params(),
                )
                row = (name, est.label, iv.value, iv.low, iv.high, iv.method, stats.ess, stats.max)
                rows.append(dict(zip(COLUMNS, (*row, *violation), strict=True)))
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def _terms(self, name: str, dist: np.ndarray, position: np.ndarray | None) -> RoundTerms:
        try:
            return round_terms(
                reward=self.data.reward,
                action=self.data.action,
                pscore=self.data.pscore,
                action_dist=dist,
                position=position,
                estimated_rewards=self.estimated_rewards_,
            )
        except ValueError as err:
            raise InputError(f"policy {name!r}: {err}") from err


def _as_estimator(e: str | Estimator) -> Estimator:
    if isinstance(e, Estimator):
        return e
    if e not in ESTIMATOR_CLASSES:
        raise InputError(f"estimator must be one of {list(ESTIMATORS)}; got {e!r}")
    return ESTIMATOR_CLASSES[e]()


def _named(policies: Mapping[str, Policy] | Sequence[Policy]) -> dict[str, Policy]:
    if isinstance(policies, Mapping):
        named = dict(policies)
    else:
        named = {}
        for i, policy in enumerate(policies):
            base = getattr(policy, "name", None)
            base = base if isinstance(base, str) else type(policy).__name__
            named[base if base not in named else f"{base}#{i}"] = policy
    if not named:
        raise InputError("policies must contain at least one policy; got none")
    for name, policy in named.items():
        if not callable(getattr(policy, "action_dist", None)):
            raise InputTypeError(f"policy {name!r} must have an action_dist(obs) method")
    return named
