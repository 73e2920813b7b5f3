r"""The one OPE entry point: :func:`evaluate` a log and target policies, at any size.

The CLI (``offrec evaluate``), the pipelines and the estimator study all call
:func:`evaluate`. It streams the log through a kernel in batches (bounded memory), on
the engine asked for (``"local"`` or ``"ray"``), and returns an :class:`OPEResult`:
estimates, intervals, diagnostics and warnings per (policy, estimator), plus the
estimator offrec recommends for this kind of log.

How it works (DESIGN.md, "Engines: one kernel, any size"):

1. **Look** at the log's footers (:func:`~offrec.logs.scan.open_log`): rows, columns,
   longest session. A log whose sessions have several steps is scored with the session
   (sequential) estimators, a one-step log with the bandit ones; ``mode`` overrides
   (``"bandit"`` on a session log scores every decision as a bandit round).
2. **Fit** the models the estimators need on a bounded, seeded sample of at most
   ``fit_rows`` rows (bandit: a reward model per cross-fitting fold; sessions: a
   Q-model per target, on whole sessions). Rows are sampled and assigned to folds by a
   hash of their key (session id, step, position) and the seed, so the sample and the
   folds do not depend on batch size, file layout or engine. Trade-off: past
   ``fit_rows`` more data no longer improves the models, only the averages; raise it
   when the reward model is the bottleneck (DR's bias is the model's error times the
   weights' error).
3. **Map** the kernel over batches: the target's distribution for that batch only, the
   per-row (or per-session) terms, and :class:`~offrec.ope.stats.Moments` of every
   column every estimator needs, with bootstrap sums from hashed resample weights.
4. **Merge** the partials by addition and **finish**: estimates, intervals from one
   engine (:mod:`offrec.ope.intervals`), diagnostics and warnings.

The in-memory functional API (:func:`~offrec.ope.estimators.estimate_policy_value`,
:func:`~offrec.ope.estimators.estimate_interval`) applies the same formulas to one
array; it is tested equal to this streamed path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.hashing import hash_uniform, row_keys
from offrec.core.policy import GreedyDist, SparseDist
from offrec.core.validation import check_scalar
from offrec.engines.sample import draw_sample
from offrec.logs.data import LoggedData
from offrec.logs.scan import Batch, LogSource, open_log
from offrec.ope.estimators import ESTIMATORS, Estimator, make_estimator
from offrec.ope.intervals import Contrast, Form, Interval, check_interval_options, interval
from offrec.ope.sequential import LEARNED_SEQUENTIAL, SEQUENTIAL_ESTIMATORS
from offrec.ope.stats import Moments
from offrec.ope.terms import round_terms
from offrec.reward.model import FittedRewardModel, RewardModel, predict_by_fold

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("auto", "bandit", "session")
SESSION_ESTIMATORS: tuple[str, ...] = SEQUENTIAL_ESTIMATORS
"""Session (sequential) estimators by name (:mod:`offrec.ope.sequential` owns them); ``dr``
on a session log is sequential DR."""
SESSION_NEEDS_MODEL = frozenset({"dr", "fqe"})
RECOMMENDED = {"bandit": "dr", "session": "mb"}
"""The estimator offrec recommends per kind of log, and the reason:

- bandit logs: ``dr`` with a cross-fitted logistic reward model; unbiased when either
  the propensities or the model are right, and in the README's accuracy study its error
  is the lowest or within noise of the lowest for targets near and far from the logger
  (``snips`` when no reward model is wanted).
- session logs: ``mb``, the model-based estimator (see
  :data:`offrec.ope.sequential.RECOMMENDED_SEQUENTIAL` for the study's figures).
"""

LOW_ESS_SHARE = 0.01
"""Warn when the effective sample size is below 1% of the rows (or sessions): the
estimate then rests on a handful of rows and its interval is itself unreliable."""
LOW_ESS = 100.0
"""Warn when the effective sample size is below 100 whatever the share (an interval
from fewer effective rows than that is not trustworthy)."""
MAX_WEIGHT_SHARE = 0.05
"""Warn when one row carries more than 5% of the total importance weight."""
SUPPORT_MASS = 0.01
"""Warn when the target puts more than 1% of its mass on actions the logger never takes
(importance weighting cannot see that mass)."""

COLUMNS: tuple[str, ...] = (
    "policy", "estimator", "value", "low", "high", "interval_method", "stderr", "ess",
    "ess_share", "max_weight", "support_violation", "warnings",
)  # fmt: skip
"""Columns of :attr:`OPEResult.table`, in order."""

_FOLD_SALT = 0xF01D


@dataclass(frozen=True)
class FixedProbs:
    """A target given as its probabilities on the log's rows, ``(n_rows, n_actions)``
    (e.g. from a file), instead of a policy to call on the contexts."""

    probs: np.ndarray

    @property
    def n_actions(self) -> int:
        return int(self.probs.shape[1])


@dataclass
class OPEResult:
    """What :func:`evaluate` found.

    Attributes:
        table: one row per (policy, estimator), columns :data:`COLUMNS`: ``stderr`` the
            delta-method standard error, ``ess`` the effective sample size of the
            importance weights (per session: of the whole-session weights) and
            ``ess_share`` its share of the rows (sessions), ``max_weight`` the largest
            weight, ``support_violation`` the target's mean mass on actions the logger
            never takes (nan without ``logging_dist``), ``warnings`` "; "-joined, "" if
            none.
        recommended: the estimator offrec recommends for this log (see
            :data:`RECOMMENDED`); it is among the table's estimators when it was asked for.
        mode: ``"bandit"`` or ``"session"``. n_rows: rows read. n_units: rows (bandit)
            or sessions (session mode).
        value_range: the feasible range of the value (clicks in [0, 1] per decision;
            [0, horizon] per session).
    """

    table: pd.DataFrame
    recommended: str
    mode: str
    n_rows: int
    n_units: int
    value_range: tuple[float, float]
    moments: Moments = field(repr=False)
    forms: dict[tuple[str, str], Form] = field(repr=False)
    method: str | None = None
    alpha: float = 0.05

    def warnings(self) -> list[str]:
        """Every warning, prefixed by its policy and estimator."""
        t = self.table
        return [
            f"{p} / {e}: {w}"
            for p, e, ws in zip(t["policy"], t["estimator"], t["warnings"], strict=True)
            for w in (ws.split("; ") if ws else [])
        ]

    def compare(
        self, policy: str, baseline: str, estimator: str | None = None, method: str | None = None
    ) -> Interval:
        """The paired difference ``V(policy) - V(baseline)`` by ``estimator`` (default the
        recommended one), with an interval: both estimates come from the same rows, so
        the difference's variance counts their covariance (usually far narrower than
        the two intervals suggest)."""
        est = estimator or self.recommended
        if est in LEARNED_SEQUENTIAL:  # fitted on the whole log: no per-session sums to pair
            t = self.table
            v = [float(t[(t["policy"] == p) & (t["estimator"] == est)]["value"].iloc[0])
                 for p in (policy, baseline)]  # fmt: skip
            return Interval(v[0] - v[1], math.nan, math.nan, "none", self.alpha)
        for key in ((policy, est), (baseline, est)):
            if key not in self.forms:
                raise InputError(f"no estimate for policy {key[0]!r} by {key[1]!r} in this result")
        contrast = Contrast(((self.forms[policy, est], 1.0), (self.forms[baseline, est], -1.0)))
        m = method or self.method or "normal"
        return interval(self.moments, contrast, method=m, alpha=self.alpha)


def evaluate(
    logs: str | Path | LoggedData,
    targets: Mapping[str, Any] | Any,
    *,
    estimators: Sequence[str | Estimator] | None = None,
    reward_model: RewardModel | None = None,
    interval: str | None = "bootstrap",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    mode: str = "auto",
    gamma: float = 1.0,
    engine: str = "local",
    batch_size: int = 65_536,
    workers: int = 2,
    ray_address: str | None = None,
    fit_rows: int = 200_000,
    progress: Callable[[int], None] | None = None,
) -> OPEResult:
    """Estimate the value of ``targets`` from ``logs`` (module docstring: how).

    Args:
        logs: a Parquet log (file or dataset directory) or a ``LoggedData`` in memory.
        targets: ``{name: policy}`` (or one policy); a policy has ``n_actions`` and
            ``action_dist(obs) -> (n, n_actions)``; :class:`FixedProbs` gives
            probabilities aligned with the log's rows.
        estimators: names (bandit: ``ips, snips, dm, dr, sndr, switch-dr, dr-os``;
            session: :data:`SESSION_ESTIMATORS`, e.g. ``mb, pdis, wpdis, dr, mis``) or bandit
            estimator instances
            (``IPS(lambda_=10)``). Default: ``ips, snips, dr`` (bandit) or
            ``mb, pdis, wpdis, dr, fqe`` (session; ``mb`` and the other whole-log estimators
            are fitted on the log, or on a sample of whole sessions above ``fit_rows``).
        reward_model: the reward model DM/DR-type bandit estimators use (default a
            cross-fitted logistic model). Large catalogs: an already fitted model of
            (context, item) pairs with ``predict_pairs(context, items (n, M))`` and
            ``predict_mean(context)`` (e.g. :class:`~offrec.policies.bandits.hybrid.HybridLinear`,
            fitted on other rows than the evaluated ones), read at the logged items and
            the target's candidates only (no ``(n, n_items)`` table, no cross-fitting).
        interval: ``"bootstrap"``, ``"normal"``, ``"bernstein"`` or None (no interval).
        n_bootstrap, alpha, seed: resamples, 1 - coverage, and the seed of everything
            random (bootstrap, folds, fitting sample).
        mode: ``"auto"``, ``"bandit"`` or ``"session"`` (see the module docstring).
        gamma: discount per step (session mode).
        engine: ``"local"`` or ``"ray"``; ``batch_size``, ``workers`` (local threads),
            ``ray_address`` (a Ray cluster; default ``RAY_ADDRESS`` or a local Ray).
        fit_rows: the bounded sample the models are fitted on.
        progress: called with the rows done so far (per pass over the log).

    Returns:
        :class:`OPEResult`.
    """
    check_scalar(seed, "seed", int, min=0)
    check_scalar(fit_rows, "fit_rows", int, min=10)
    check_scalar(gamma, "gamma", float, min=0.0, max=1.0)
    if interval is not None:
        check_interval_options(interval, n_bootstrap, alpha)
    if mode not in MODES:
        raise InputError(f"mode must be one of {list(MODES)}; got {mode!r}")
    from offrec.engines import make_engine

    options: dict[str, Any] = {"batch_size": batch_size}
    if engine == "local":
        options["workers"] = workers
    elif ray_address is not None:
        options["address"] = ray_address
    eng = make_engine(engine, **options)
    source: LogSource | LoggedData = logs if isinstance(logs, LoggedData) else open_log(logs)
    n_actions, session_log = _shape(source)
    named = _named_targets(targets, n_actions)
    if engine == "ray" and any(isinstance(t, FixedProbs) for t in named.values()):
        raise InputError(
            "fixed probabilities are aligned with row numbers, which the ray engine does not "
            "track; use engine='local' or pass a policy"
        )
    session = _pick_mode(mode, session_log, estimators)
    n_boot = n_bootstrap if interval == "bootstrap" else 0
    if session:
        return _evaluate_session(
            source, eng, named, estimators, interval, n_boot, alpha, seed, gamma, fit_rows, progress
        )
    return _evaluate_bandit(
        source, eng, named, estimators, reward_model, interval, n_boot, alpha, seed, fit_rows,
        progress,
    )  # fmt: skip


# ------------------------------------------------------------------------------ setup
def _shape(source: LogSource | LoggedData) -> tuple[int, bool]:
    if isinstance(source, LoggedData):
        return source.n_actions, bool(source.n_rows and source.step.max() > 0)
    n = source.n_actions
    if n is None:
        raise InputError(f"log {source.path} does not record n_actions in its metadata")
    return n, source.is_session_log


def _named_targets(targets: Mapping[str, Any] | Any, n_actions: int) -> dict[str, Any]:
    named = dict(targets) if isinstance(targets, Mapping) else {_name(targets): targets}
    if not named:
        raise InputError("targets must name at least one policy; got none")
    for name, t in named.items():
        if isinstance(t, np.ndarray):
            named[name] = t = FixedProbs(t)
        if not isinstance(t, FixedProbs) and not callable(getattr(t, "action_dist", None)):
            raise InputError(f"target {name!r} must have an action_dist(obs) method")
        if getattr(t, "n_actions", None) != n_actions:
            raise InputError(
                f"target {name!r} must have n_actions == the log's n_actions ({n_actions}); "
                f"got {getattr(t, 'n_actions', None)!r}"
            )
    return named


def _name(policy: Any) -> str:
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) else type(policy).__name__


def _pick_mode(mode: str, session_log: bool, estimators: Sequence[Any] | None) -> bool:
    names = [e if isinstance(e, str) else e.name for e in estimators or ()]
    if mode == "bandit" or (mode == "auto" and not session_log):
        bad = [n for n in names if n not in ESTIMATORS]
        if bad:
            raise InputError(
                f"estimator(s) {bad} are not bandit estimators; valid: {list(ESTIMATORS)}"
                + ("" if session_log else " (this log has one step per session)")
            )
        return False
    if (
        mode == "auto"
        and names
        and all(n in ESTIMATORS for n in names)
        and not all(n in SESSION_ESTIMATORS for n in names)
    ):
        return False  # only bandit estimators named: score each decision as a bandit round
    bad = [n for n in names if not isinstance(n, str) or n not in SESSION_ESTIMATORS]
    if bad:
        raise InputError(
            f"estimator(s) {bad} are not session estimators; valid: {list(SESSION_ESTIMATORS)} "
            "(pass mode='bandit' to score every decision as a bandit round)"
        )
    return True


def _dist(target: Any, batch: Batch, name: str, compact: bool = False) -> Any:
    """The target's distribution on the batch's contexts, ``(n, n_actions)``: dense, or
    with ``compact`` in the factored form of a greedy head when the target offers
    ``action_dist_compact`` (:class:`~offrec.core.policy.GreedyDist`, the same numbers
    without the dense array; :func:`~offrec.ope.terms.round_terms` reads either)."""
    data = batch.data
    if isinstance(target, FixedProbs):
        stop = batch.row + data.n_rows
        if target.probs.shape[0] < stop:
            raise InputError(
                f"target {name!r}: its probabilities have {target.probs.shape[0]} rows; "
                f"the log has more (row {stop - 1})"
            )
        return np.asarray(target.probs[batch.row : stop])
    method = getattr(target, "action_dist_compact", None) if compact else None
    dist = method(data.context) if callable(method) else target.action_dist(data.context)
    if not isinstance(dist, GreedyDist | SparseDist):
        dist = np.asarray(dist)
    if dist.shape != (data.n_rows, data.n_actions):
        raise InputError(
            f"policy {name!r}: action_dist must return shape (n, {data.n_actions}); "
            f"got {dist.shape}"
        )
    return dist


def _keys(data: LoggedData) -> np.ndarray:
    return row_keys(data.session_id, data.step, data.position)


def _relocate(err: InputError, batch: Batch, name: str) -> InputError:
    from offrec.logs.scan import locate

    if batch.file == "<memory>":
        return InputError(f"policy {name!r}: " + locate(str(err), "", batch.row, 0))
    where = f"log file {Path(batch.file).name}"
    msg = locate(str(err), where, batch.file_row, batch.row - batch.file_row)
    return InputError(f"policy {name!r}: {msg}")


@dataclass
class FoldModels:
    """Cross-fitted reward models: row ``i`` is predicted by the model of its fold
    (a hash of its key and the seed), fitted on the sampled rows of the other folds."""

    models: list[FittedRewardModel]
    seed: int
    n_positions: int

    def folds(self, keys: np.ndarray) -> np.ndarray:
        k = len(self.models)
        return np.minimum((hash_uniform(keys, self.seed, _FOLD_SALT) * k).astype(np.int64), k - 1)

    def predict(self, data: LoggedData) -> np.ndarray:
        """:math:`\\hat q(x_i, a)` at each row's own position, ``(n, n_actions)``
        (:func:`~offrec.reward.model.predict_by_fold`)."""
        position = data.position if self.n_positions > 1 else None
        return predict_by_fold(self.models, self.folds(_keys(data)), data.context, position)


def fit_fold_models(sample: LoggedData, rm: RewardModel, seed: int, n_positions: int) -> FoldModels:
    """Fit one reward model per fold on ``sample`` (rows of the other folds)."""
    keys = _keys(sample)
    shell = FoldModels([], seed, n_positions)
    shell.models = [None] * rm.n_folds  # type: ignore[list-item]
    fold = shell.folds(keys)
    position = sample.position if n_positions > 1 else None
    models = []
    for k in range(rm.n_folds):
        rows = np.flatnonzero(fold != k)
        if rows.size < 2:
            raise InputError(f"reward-model fold {k} has {rows.size} training rows; raise fit_rows")
        models.append(
            rm.fit(
                sample.context[rows],
                sample.action[rows],
                sample.reward[rows],
                sample.pscore[rows],
                None if position is None else position[rows],
                n_actions=sample.n_actions,
            )  # fmt: skip
        )
        if n_positions > 1 and models[-1].n_positions < n_positions:
            models[-1].n_positions = n_positions  # constant models: broadcast positions
    return FoldModels(models, seed, n_positions)


# ---------------------------------------------------------------------------- bandit
@dataclass(frozen=True)
class _Layout:
    """Which column of the kernel's matrix holds what, per policy."""

    policies: tuple[str, ...]
    estimators: tuple[Estimator, ...]
    weight: dict[str, int]
    support: dict[str, int]
    forms: dict[tuple[str, str], Form]
    width: int


def _bandit_layout(names: Sequence[str], ests: Sequence[Estimator], support: bool) -> _Layout:
    col = 0
    weight, supp, forms = {}, {}, {}
    for p in names:
        weight[p] = col
        col += 1
        if support:
            supp[p] = col
            col += 1
        for e in ests:
            a = col if not e.self_normalized or e.needs_model else None
            if e.self_normalized:
                first = col + (1 if a is not None else 0)
                forms[p, e.label] = Form(a, (first,), (first + 1,))
                col = first + 2
            else:
                forms[p, e.label] = Form(a)
                col += 1
    return _Layout(tuple(names), tuple(ests), weight, supp, forms, col)


def _evaluate_bandit(
    source: Any, eng: Any, named: dict[str, Any], estimators: Any, reward_model: Any,
    method: str | None, n_boot: int, alpha: float, seed: int, fit_rows: int, progress: Any,
) -> OPEResult:  # fmt: skip
    ests = [
        e if isinstance(e, Estimator) else make_estimator(e)
        for e in estimators or ("ips", "snips", "dr")
    ]
    if not ests:
        raise InputError("estimators must name at least one estimator; got none")
    models = None
    pair_model = reward_model if hasattr(reward_model, "predict_pairs") else None
    if any(e.needs_model for e in ests) and pair_model is None:
        rm = reward_model or RewardModel(kind="logistic", seed=seed)
        log.info("fitting the reward model on a sample of at most %d rows", fit_rows)
        sample = draw_sample(source, eng, fit_rows, seed, progress=progress)
        models = fit_fold_models(sample.data, rm, seed, sample.max_position + 1)  # type: ignore[arg-type]
    has_support = _has_logging_dist(source)
    layout = _bandit_layout(list(named), ests, has_support)
    groups = None
    if any(e.needs_groups for e in ests):  # MIPS & co: the logger's group propensities
        from offrec.ope.embedding import LoggerGroups

        groups = LoggerGroups(source.metadata, has_support)

    def kernel(batch: Batch) -> Moments:
        data = batch.data
        q = None if models is None else models.predict(data)
        marginal: dict[str, Any] = {}
        if groups is not None:
            try:
                pg = groups.pscore_group(data.context, data.action, data.pscore,
                                         data.logging_dist)  # fmt: skip
            except InputError as err:
                raise _relocate(err, batch, "logger") from None
            marginal = {"item_groups": groups.item_groups, "pscore_group": pg}
        x = np.empty((data.n_rows, layout.width))
        for p, target in named.items():
            dist = _dist(target, batch, p, compact=True)
            if pair_model is not None:
                q = _pair_rewards(pair_model, data, dist)
            try:
                terms = round_terms(
                    reward=data.reward, action=data.action, pscore=data.pscore,
                    action_dist=dist, estimated_rewards=q, **marginal,
                )  # fmt: skip
            except InputError as err:
                raise _relocate(err, batch, p) from None
            x[:, layout.weight[p]] = terms.weight
            if has_support:  # the target's mass on actions the logger never takes
                outside = np.asarray(data.logging_dist) <= 0
                x[:, layout.support[p]] = (
                    dist.expect(outside)
                    if isinstance(dist, GreedyDist)
                    else np.einsum(
                        "na,na->n", dist.dense() if isinstance(dist, SparseDist) else dist, outside
                    )
                )
            for e in ests:
                parts = e.parts(terms) if not e.self_normalized else _sn_parts(e, terms)
                form = layout.forms[p, e.label]
                cols = [c for c in (parts.a, parts.b, parts.c) if c is not None]
                idx = [i for i in (form.a, *form.b, *form.c) if i is not None]
                for i, c in zip(idx, cols, strict=True):
                    x[:, i] = c
        return Moments.of(x, keys=_keys(data), n_bootstrap=n_boot, seed=seed)

    moments = eng.map_reduce(source, kernel, progress=progress)
    return _finish(
        moments, layout.forms, layout.weight, layout.support, ests, "bandit", method, alpha,
        _reward_range(source), moments.n,
    )  # fmt: skip


def _pair_rewards(model: Any, data: LoggedData, dist: Any) -> Any:
    """A fitted (context, item) reward model's predictions for one batch and target: at the
    logged items, at the target's candidates and its catalog mean
    (:class:`~offrec.ope.terms.PairRewards`; a dense target gets the dense table)."""
    from offrec.ope.terms import PairRewards

    x = data.context
    if isinstance(dist, GreedyDist):
        dist = dist.sparse()
    if not isinstance(dist, SparseDist):
        rows = np.broadcast_to(np.arange(data.n_actions), (data.n_rows, data.n_actions))
        return model.predict_pairs(x, rows)
    mean = model.predict_mean(x) if dist.support is None else model.predict_pairs(
        x, np.broadcast_to(np.flatnonzero(dist.support), (data.n_rows, dist.n_support))
    ).mean(axis=1)  # fmt: skip
    return PairRewards(
        logged=model.predict_pairs(x, data.action[:, None])[:, 0],
        at_items=model.predict_pairs(x, dist.items),
        support_mean=mean,
    )


def _sn_parts(e: Estimator, terms: Any) -> Any:
    """Parts of a self-normalized estimator without the all-zero-weights check (a batch
    may legitimately have no weight; the check runs on the merged sums)."""
    from offrec.ope.estimators import Parts

    w = e.weights(terms)
    if e.needs_model:
        return Parts(terms.q_target, w * (terms.reward - terms.q_logged), w)
    return Parts(None, w * terms.reward, w)


def _reward_range(source: Any) -> tuple[float, float]:
    """The feasible range of one reward: [0, 1] for clicks, the declared bounds of a
    continuous reward (the log's ``reward_domain``)."""
    dom = (
        source.reward_domain
        if isinstance(source, LoggedData)
        else source.metadata.get("reward_domain") or {"kind": "binary"}
    )
    if dom.get("kind", "binary") == "binary":
        return (0.0, 1.0)
    return (float(dom["low"]), float(dom["high"]))


def _per_session(reward_range: tuple[float, float], horizon: int) -> tuple[float, float]:
    """Feasible clicks (rewards) per session: at most ``horizon`` rewards."""
    low, high = reward_range
    return (min(0.0, horizon * low), horizon * high)


def _has_logging_dist(source: Any) -> bool:
    if isinstance(source, LoggedData):
        return source.logging_dist is not None
    return "logging_dist" in source.columns


# --------------------------------------------------------------------------- session
def _evaluate_session(
    source: Any, eng: Any, named: dict[str, Any], estimators: Any, method: str | None,
    n_boot: int, alpha: float, seed: int, gamma: float, fit_rows: int, progress: Any,
) -> OPEResult:  # fmt: skip
    from offrec.ope import sequential as seq

    asked = [
        e if isinstance(e, str) else e.name
        for e in estimators or ("mb", "pdis", "wpdis", "dr", "fqe")
    ]
    learned = [e for e in asked if e in seq.LEARNED_SEQUENTIAL]
    names = [e for e in asked if e not in seq.LEARNED_SEQUENTIAL] or ["pdis"]  # weights, ESS
    only_learned = len(learned) == len(asked)
    for name, t in named.items():
        if hasattr(t, "action_dist_state"):
            raise InputError(
                f"target {name!r} is an oracle: it needs the hidden session state, so it "
                "cannot be scored off-policy in session mode"
            )
    horizon = _horizon(source)
    q_models: dict[str, Any] = {}
    if SESSION_NEEDS_MODEL & set(names):
        sample = draw_sample(source, eng, fit_rows, seed, sessions=True, progress=progress).data
        assert sample is not None
        order = np.lexsort((sample.step, sample.session_id))
        sample = sample.subset(order)
        for p, t in named.items():
            probs = _sample_probs(t, sample, source)
            q_models[p] = seq.fit_fqe(sample, probs, gamma=gamma)
    # layout: per policy, a whole-session weight column, then each estimator's columns
    col = 0
    weight: dict[str, int] = {}
    forms: dict[tuple[str, str], Form] = {}
    for p in named:
        weight[p] = col
        col += 1
        for e in names:
            if e in ("wpdis", "wtis"):
                k = horizon if e == "wpdis" else 1
                forms[p, e] = Form(
                    None, tuple(range(col, col + k)), tuple(range(col + k, col + 2 * k))
                )
                col += 2 * k
            else:
                forms[p, e] = Form(col)
                col += 1
    width = col

    def kernel(batch: Batch) -> Moments:
        data = batch.data
        sids = np.unique(data.session_id)
        x = np.empty((sids.size, width))
        for p, t in named.items():
            dist = _dist(t, batch, p)
            q_hat = q_models[p].predict(data.context) if p in q_models else None
            try:
                terms = {e: seq._terms(e, data, dist, q_hat, gamma, horizon) for e in names}
            except InputError as err:
                raise _relocate(err, batch, p) from None
            x[:, weight[p]] = _trajectory_weight(data, dist, horizon)
            for e in names:
                t_e, form = terms[e], forms[p, e]
                if form.a is not None:
                    x[:, form.a] = t_e.a
                if form.b:
                    x[:, list(form.b)] = t_e.b
                    x[:, list(form.c)] = t_e.c
        return Moments.of(x, keys=row_keys(sids), n_bootstrap=n_boot, seed=seed)

    moments = eng.map_reduce(source, kernel, sessions=True, progress=progress)
    ests = [_SessionName(e) for e in names]
    result = _finish(
        moments, forms, weight, {}, ests, "session", method, alpha,
        _per_session(_reward_range(source), horizon), moments.n,
    )  # fmt: skip
    if learned:  # whole-log estimators: fitted on the log in memory, then added as rows
        import pandas as pd

        # fitted on the log itself when it has at most fit_rows rows, else on a seeded
        # sample of whole sessions of about that size (bounded memory)
        if isinstance(source, LoggedData) and source.n_rows <= fit_rows:
            data = source
        else:
            drawn = draw_sample(source, eng, fit_rows, seed, sessions=True, progress=progress)
            assert drawn.data is not None
            data = drawn.data.subset(np.lexsort((drawn.data.step, drawn.data.session_id)))
        policies = {p: (t.probs if isinstance(t, FixedProbs) else t) for p, t in named.items()}
        extra = seq.evaluate_sequential(
            data, policies, learned, method=method or "normal", n_bootstrap=max(n_boot, 1),
            alpha=alpha, seed=seed, gamma=gamma,
        )  # fmt: skip
        extra["warnings"] = extra["warnings"].map(
            lambda ws: "; ".join(w for w in ws if "disagree" not in w)  # re-flagged below
        )
        base = (
            result.table[~result.table["estimator"].isin(["pdis"])]
            if only_learned
            else result.table
        )
        table = pd.concat([base, extra], ignore_index=True).reindex(columns=list(COLUMNS))
        rank = {p: i for i, p in enumerate(named)}
        table = table.sort_values("policy", key=lambda c: c.map(rank), kind="stable")
        result.table = table.reset_index(drop=True)
        if seq.RECOMMENDED_SEQUENTIAL in learned:
            result.recommended = seq.RECOMMENDED_SEQUENTIAL
        _flag_disagreement(result.table, result.recommended)
    return result


@dataclass(frozen=True)
class _SessionName:
    name: str

    @property
    def label(self) -> str:
        return self.name

    @property
    def needs_model(self) -> bool:
        return self.name in SESSION_NEEDS_MODEL

    @property
    def uses_weights(self) -> bool:
        return self.name != "fqe"


def _trajectory_weight(data: LoggedData, dist: np.ndarray, horizon: int) -> np.ndarray:
    """Whole-session importance weight :math:`\\prod_t w_t` per session, (m,)."""
    from offrec.ope.sequential import episode_index

    idx = episode_index(data.session_id, data.step, horizon)
    w = dist[np.arange(data.n_rows), data.action] / data.pscore
    logw = idx.pad(np.log(np.maximum(w, 1e-300)), 0.0).sum(axis=1)
    zero = idx.pad((w <= 0).astype(float), 0.0).sum(axis=1) > 0
    return np.where(zero, 0.0, np.exp(logw))


def _horizon(source: Any) -> int:
    if isinstance(source, LoggedData):
        return int(source.step.max()) + 1
    if source.max_step >= 1 << 30:
        raise InputError(f"log {source.path}: its step column has no statistics; rewrite it")
    return source.max_step + 1


def _sample_probs(target: Any, sample: LoggedData, source: Any) -> Any:
    if isinstance(target, FixedProbs):
        raise InputError(
            "estimators that fit a Q-model (dr, fqe) need a policy, not fixed probabilities"
        )
    return target.action_dist


# ---------------------------------------------------------------------------- finish
def _finish(
    moments: Moments, forms: dict[tuple[str, str], Form], weight: dict[str, int],
    support: dict[str, int], ests: Sequence[Any], mode: str, method: str | None, alpha: float,
    value_range: tuple[float, float], n_units: int,
) -> OPEResult:  # fmt: skip
    import pandas as pd

    from offrec.ope.intervals import standard_error

    rows = []
    recommended = RECOMMENDED[mode]
    labels = [e.label for e in ests]
    if recommended not in labels:
        recommended = "snips" if mode == "bandit" and "snips" in labels else labels[0]
    for p, wcol in weight.items():
        w_sum = moments.mean[wcol] * moments.n
        w_sq = moments.m2[wcol, wcol] + moments.n * moments.mean[wcol] ** 2
        ess = w_sum**2 / w_sq if w_sq > 0 else 0.0
        max_w = float(moments.high[wcol])
        sv = float(moments.mean[support[p]]) if p in support else math.nan
        for e in ests:
            form = forms[p, e.label]
            if getattr(e, "self_normalized", False) and not w_sum > 0:
                raise InputError(
                    f"{e.label} is undefined for policy {p!r}: every importance weight is 0 "
                    "(the target puts no mass on any logged action)"
                )
            if method is None:
                iv = Interval(form.value(moments.mean), math.nan, math.nan, "none", alpha)
            else:
                iv = interval(moments, form, method=method, alpha=alpha)
            warn = _warnings(e, iv, ess, moments.n, max_w, w_sum, sv, value_range)
            rows.append({
                "policy": p, "estimator": e.label, "value": iv.value, "low": iv.low,
                "high": iv.high, "interval_method": iv.method,
                "stderr": standard_error(moments, form), "ess": ess,
                "ess_share": ess / max(moments.n, 1), "max_weight": max_w,
                "support_violation": sv, "warnings": warn,
            })  # fmt: skip
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    _flag_disagreement(table, recommended)
    return OPEResult(
        table, recommended, mode, moments.n if mode == "bandit" else -1, n_units, value_range,
        moments, forms, method, alpha,
    )  # fmt: skip


def _uses_weights(e: Any) -> bool:
    if hasattr(e, "uses_weights"):
        return bool(e.uses_weights)
    return e.name != "dm"


def _warnings(
    e: Any, iv: Interval, ess: float, n: int, max_w: float, w_sum: float, sv: float,
    value_range: tuple[float, float],
) -> str:  # fmt: skip
    out = []
    if _uses_weights(e):
        if ess < LOW_ESS or ess < LOW_ESS_SHARE * n:
            out.append(
                f"low effective sample size {ess:.0f} ({100 * ess / max(n, 1):.2g}% of {n:,})"
            )
        if w_sum > 0 and max_w / w_sum > MAX_WEIGHT_SHARE:
            out.append(f"one unit carries {100 * max_w / w_sum:.0f}% of the importance weight")
    if sv == sv and sv > SUPPORT_MASS:
        out.append(f"{100 * sv:.1f}% of the target's mass is outside the logger's support")
    low, high = value_range
    if not low - 1e-9 <= iv.value <= high + 1e-9:
        out.append(f"value {iv.value:.4g} is outside the feasible range [{low:g}, {high:g}]")
    return "; ".join(out)


def _flag_disagreement(table: Any, recommended: str) -> None:
    """Estimators whose interval does not overlap the recommended estimator's."""
    for p, sub in table.groupby("policy", sort=False):
        ref = sub[sub["estimator"] == recommended]
        if ref.empty or not np.isfinite(ref["low"].iloc[0]):
            continue
        lo, hi = float(ref["low"].iloc[0]), float(ref["high"].iloc[0])
        for i, row in sub.iterrows():
            if row["estimator"] == recommended:
                continue
            if row["high"] < lo or row["low"] > hi:
                msg = f"disagrees with {recommended} beyond both intervals"
                table.at[i, "warnings"] = "; ".join(x for x in (row["warnings"], msg) if x)
        del p
