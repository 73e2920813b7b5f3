r"""Off-policy evaluation on session logs: the expected (discounted) clicks per session.

Rows are grouped into episodes by ``session_id`` and ordered by ``step``; everything
is computed on padded ``(m, H)`` matrices (m episodes, H = longest episode), with no
Python loop over rows or episodes. With :math:`w_{i,t} = \pi_e(a_{i,t}|x_{i,t}) / p_{i,t}`
and the cumulative weight :math:`\rho_{i,t} = \prod_{k \le t} w_{i,k}`:

- ``"pdis"`` per-decision IS: :math:`\frac1m \sum_i \sum_t \gamma^t \rho_{i,t} r_{i,t}`;
- ``"tis"`` trajectory-wise IS: :math:`\frac1m \sum_i \rho_{i,T_i} \sum_t \gamma^t r_{i,t}`;
- ``"wpdis"`` self-normalized PDIS:
  :math:`\sum_t \gamma^t \frac{\sum_i \rho_{i,t} r_{i,t}}{\sum_i \rho_{i,t}}`, an ended
  episode keeping its last :math:`\rho` (it sits in an absorbing state with reward 0);
- ``"wtis"`` self-normalized TIS: :math:`\frac{\sum_i \rho_{i,T_i} G_i}{\sum_i \rho_{i,T_i}}`;
- ``"dr"`` sequential doubly robust (Jiang & Li, 2016), per-decision form:
  :math:`\frac1m \sum_i \sum_t \gamma^t \big[\rho_{i,t}(r_{i,t} - \hat Q(x_{i,t}, a_{i,t}))
  + \rho_{i,t-1} \hat V(x_{i,t})\big]`, :math:`\rho_{i,-1} = 1`,
  :math:`\hat V(x) = \sum_a \pi_e(a|x) \hat Q(x, a)`;
- ``"fqe"`` fitted-Q evaluation: :math:`\frac1m \sum_i \hat V(x_{i,0})` with
  :math:`\hat Q` from :func:`fit_fqe` (any target policy, stochastic or greedy);

learned session models (fitted once per log and shared, :class:`SessionFits`):

- ``"fqe-nn"`` neural FQE (:mod:`offrec.ope.fqe`), :math:`\frac1m \sum_i \hat V(x_{i,0})`
  with :math:`\hat Q` cross-fitted over ``n_folds`` session folds;
- ``"dr-nn"`` the DR above on that cross-fitted neural :math:`\hat Q`;
- ``"wdr-nn"`` weighted DR (Thomas & Brunskill, 2016, *Data-efficient off-policy policy
  evaluation for RL*, ICML): :math:`\sum_t \gamma^t \big[\frac{\sum_i \rho_{i,t}(r_{i,t} -
  \hat Q_{i,t})}{\sum_i \rho_{i,t}} + \frac{\sum_i \rho_{i,t-1} \hat V_{i,t}}{\sum_i
  \rho_{i,t-1}}\big]`, ended episodes keeping their last :math:`\rho`;
- ``"sndr-nn"`` self-normalised DR: DR with :math:`\rho` replaced by the product of the
  per-step self-normalised ratios :math:`\tilde w_{i,k} = w_{i,k} / \bar w_k`
  (:math:`\bar w_k` the mean ratio over the rows at step :math:`k`); with one step it is
  the bandit SNDR;
- ``"mb"`` model-based: roll the target out in a model of the log's observable dynamics
  (:mod:`offrec.ope.model_based`); ``"mb-dr"`` the DR above with the model's
  cross-fitted :math:`\hat Q, \hat V`, computed by rollouts from every logged row;
- ``"mis"`` marginalized IS with horizon-indexed state-marginal ratios
  (:mod:`offrec.ope.marginal`).

Intervals: ``"normal"`` (t), ``"bernstein"`` (empirical Bernstein) or ``"bootstrap"``
(sessions resampled) on the per-session contributions, for every estimator that has
them; these treat fitted models as fixed (cross-fitting keeps the DR forms honest, the
study measures the rest). ``"mb"`` has its own refit bootstrap (:class:`SessionFits`).

Warnings: every result carries a list of strings (:func:`evaluate_sequential`).

Assumptions: the logger's propensities are right and cover the target's actions
(IS, DR), the session ends are logged (``terminated`` or ``truncated``) and the
observation is (close to) Markov (FQE, DR). ``dr`` and ``fqe`` use the Q-model fitted
by :func:`fit_fqe` unless ``q_hat`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys, seed_int
from offrec.core.validation import SeedLike, as_generator, check_scalar
from offrec.logs.data import LoggedData
from offrec.ope.intervals import Form, Interval, check_interval_options, interval
from offrec.ope.marginal import mis_contributions
from offrec.ope.session_data import (  # episode_index: re-exported (evaluate.py, tests)
    SessionStructure,
    episode_index,
    session_folds,
    session_structure,
    session_weights,
)
from offrec.ope.stats import Moments
from offrec.ope.trust import (
    MARKOV,
    MIN_STEP_ESS,
    MODEL_RIGHT,
    Q_MODEL,
    RECOMMENDED,
    STATE_RATIOS,
    SUPPORT,
    SUPPORT_ESS_FRACTION,
    UNCONFOUNDED,
    WEIGHTS,
    WORLD_MODEL,
    Estimate,
    EstimatorMeta,
    disagreement_warnings,
)

if TYPE_CHECKING:
    import pandas as pd

    from offrec.ope.model_based import SessionModel

# offrec.ope.fqe and offrec.ope.model_based (torch, about 1.5 s to import) are imported
# where they are used, so bandit OPE (which imports this module for its registry) does
# not pay for them


class SessionEstimator(EstimatorMeta):
    """Metadata of a session (sequential) estimator (:class:`~offrec.ope.trust.EstimatorMeta`);
    its formula is in the module docstring and :func:`estimate_sequential_full`.

    ``fitted_on_log``: the estimator fits models on the whole log (or a bounded sample of
    whole sessions) before averaging, so it is not a per-batch sum.
    """

    kind: ClassVar[str] = "session"
    fitted_on_log: ClassVar[bool] = False


_PD_REF = "Precup, Sutton & Singh (2000), Eligibility traces for off-policy policy evaluation, ICML"
_DR_REF = "Jiang & Li (2016), Doubly robust off-policy value evaluation for RL, ICML"
_FQE_REF = "Le, Voloshin & Yue (2019), Batch policy learning under constraints, ICML"
_SEQ_IS = (UNCONFOUNDED, SUPPORT)
_SEQ_DR = (UNCONFOUNDED, SUPPORT, MARKOV)


def _session(
    name: str,
    reads: frozenset[str],
    reference: str,
    assumptions: tuple[str, ...],
    fitted: bool = False,
) -> type[SessionEstimator]:
    cls = type(
        name.upper().replace("-", "_"),
        (SessionEstimator,),
        {
            "name": name,
            "reads": reads,
            "reference": reference,
            "assumptions": assumptions,
            "fitted_on_log": fitted,
            "needs_model": bool(reads - {WEIGHTS}),
        },
    )
    return cls


_W, _WQ = frozenset({WEIGHTS}), frozenset({WEIGHTS, Q_MODEL})
_FIT_ASSUMES = (MARKOV, MODEL_RIGHT)
SESSION_CLASSES: dict[str, type[SessionEstimator]] = {
    c.name: c
    for c in (
        _session("pdis", _W, _PD_REF, _SEQ_IS),
        _session("tis", _W, _PD_REF, _SEQ_IS),
        _session("wpdis", _W, _PD_REF, _SEQ_IS),
        _session("wtis", _W, _PD_REF, _SEQ_IS),
        _session("dr", _WQ, _DR_REF, _SEQ_DR),
        _session("fqe", frozenset({Q_MODEL}), _FQE_REF, _FIT_ASSUMES),
        _session("fqe-nn", frozenset({Q_MODEL}), _FQE_REF, _FIT_ASSUMES, True),
        _session("dr-nn", _WQ, _DR_REF, _SEQ_DR, True),
        _session(
            "wdr-nn",
            _WQ,
            "Thomas & Brunskill (2016), Data-efficient off-policy policy evaluation for RL, ICML",
            _SEQ_DR,
            True,
        ),
        _session("sndr-nn", _WQ, _DR_REF + "; self-normalised per step", _SEQ_DR, True),
        _session(
            "mb",
            frozenset({WORLD_MODEL}),
            "model-based OPE, e.g. Paduraru (2013); Voloshin et al. (2021), Empirical study of "
            "off-policy policy evaluation for RL, NeurIPS Datasets",
            (MARKOV, "the click, leave and observation-update models are right"),
            True,
        ),
        _session("mb-dr", frozenset({WEIGHTS, WORLD_MODEL}), _DR_REF, _SEQ_DR, True),
        _session(
            "mis",
            frozenset({WEIGHTS, STATE_RATIOS}),
            "Xie, Ma & Wang (2019), Towards optimal off-policy evaluation for RL with "
            "marginalized importance sampling, NeurIPS",
            _SEQ_DR,
            True,
        ),
    )
}
"""The session estimator registry: metadata class by name. A new session estimator
registers its class here (its formula lives in :func:`estimate_sequential_full`)."""
SEQUENTIAL_ESTIMATORS: tuple[str, ...] = tuple(SESSION_CLASSES)
NEURAL = frozenset({"fqe-nn", "dr-nn", "wdr-nn", "sndr-nn"})
LEARNED_SEQUENTIAL = frozenset(n for n, c in SESSION_CLASSES.items() if c.fitted_on_log)
"""Estimators that fit models on the whole log (neural Q, session model, marginal ratios)
before averaging: :func:`evaluate_sequential` / :func:`estimate_sequential_full` run them;
they are not per-batch sums."""
NEEDS_CLICKS: frozenset[str] = frozenset()  # mb, mb-dr take bounded rewards (issue 26)
"""Estimators whose session model has a logistic click model: they need a log whose
declared reward domain is binary (:mod:`offrec.core.domain`)."""
_DR_FORMS = frozenset({"wdr-nn", "sndr-nn"})
IS_BASED = frozenset(n for n, c in SESSION_CLASSES.items() if c.uses_weights())
"""Session estimators that use importance weights (:meth:`EstimatorMeta.uses_weights`)."""
INTERVAL_METHODS: tuple[str, ...] = ("normal", "bootstrap", "bernstein")
RECOMMENDED_SEQUENTIAL = RECOMMENDED["session"]
"""Deprecated alias: :data:`offrec.ope.trust.RECOMMENDED` ``["session"]``."""

REFIT_ITERS = 40  # L-BFGS iterations of a warm-started bootstrap refit


# ------------------------------------------------------------------------------ FQE
@dataclass
class LinearQ:
    """A Q-model linear per action in the features ``[1, x, x^2]``: ``Q(x, a) = psi(x) . beta_a``."""

    beta: np.ndarray  # (n_actions, p)

    @staticmethod
    def features(context: np.ndarray) -> np.ndarray:
        x = np.asarray(context, dtype=np.float64)
        return np.hstack([np.ones((x.shape[0], 1)), x, x * x])

    def predict(self, context: np.ndarray) -> np.ndarray:
        """Q values (n, n_actions)."""
        return self.features(context) @ self.beta.T


def _ridge_per_action(
    psi: np.ndarray, action: np.ndarray, y: np.ndarray, n_actions: int, l2: float
) -> np.ndarray:
    """Solve ``(X_a^T X_a + l2 I) beta_a = X_a^T y_a`` for every action (one loop over actions)."""
    p = psi.shape[1]
    order = np.argsort(action, kind="stable")
    bounds = np.searchsorted(action[order], np.arange(n_actions + 1))
    X_sorted, y_sorted = psi[order], y[order]
    gram = np.empty((n_actions, p, p))
    rhs = np.empty((n_actions, p))
    # many small products: one BLAS thread avoids thread start-up costs dominating
    with threadpool_limits(1):
        for a in range(n_actions):
            X = X_sorted[bounds[a] : bounds[a + 1]]
            gram[a] = X.T @ X
            rhs[a] = X.T @ y_sorted[bounds[a] : bounds[a + 1]]
    gram += l2 * np.eye(p)
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]


def fit_fqe(
    data: LoggedData,
    target_dist: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    *,
    gamma: float = 1.0,
    n_iterations: int | None = None,
    l2: float = 1.0,
) -> LinearQ:
    r"""Fitted-Q evaluation of a (stochastic or greedy) target policy.

    Iterates :math:`Q_{k+1} \leftarrow \arg\min_Q \sum_i (Q(x_i, a_i) - r_i -
    \gamma (1 - d_i) \sum_a \pi_e(a|x'_i) Q_k(x'_i, a))^2` with a ridge regression
    per action on :math:`[1, x, x^2]`, where :math:`x'_i` is the next row's context
    in the same session and :math:`d_i` marks the session's last row (the user left or
    the horizon was reached). ``n_iterations`` defaults to the longest session, enough
    for values to propagate from the last step to the first.

    ``target_dist`` is the target's ``action_dist`` function or its (n, n_actions)
    probabilities on ``data.context``.
    """
    check_scalar(gamma, "gamma", float, min=0.0, max=1.0)
    idx = episode_index(data.session_id, data.step)
    dist = target_dist(data.context) if callable(target_dist) else np.asarray(target_dist)
    n = data.n_rows
    # next row of the same session, for every row that has one
    row_of = np.full((idx.n_episodes, idx.horizon + 1), -1, np.int64)
    row_of[idx.episode, idx.step] = np.arange(n)
    nxt = row_of[idx.episode, idx.step + 1]
    has_next = nxt >= 0
    psi = LinearQ.features(data.context)
    q = LinearQ(np.zeros((data.n_actions, psi.shape[1])))
    v_next = np.zeros(n)
    for _ in range(n_iterations or idx.horizon):
        v_all = np.einsum("na,na->n", dist, q.predict(data.context))
        v_next[:] = 0.0
        v_next[has_next] = v_all[nxt[has_next]]
        y = data.reward + gamma * v_next
        q = LinearQ(_ridge_per_action(psi, data.action, y, data.n_actions, l2))
    return q


# ------------------------------------------------------------------------ estimators
@dataclass(frozen=True)
class _EpisodeTerms:
    """Per-episode numerators/denominators: V = mean(a) + sum_t sum_i b / sum_i c."""

    a: np.ndarray  # (m,) plain-mean part
    b: np.ndarray | None  # (m, H) self-normalized numerators
    c: np.ndarray | None  # (m, H) self-normalized denominators

    def columns(self) -> tuple[np.ndarray, Form]:
        """Per-episode columns ``(m, k)`` and the :class:`~offrec.ope.intervals.Form` over them."""
        if self.b is None or self.c is None:
            return self.a[:, None], Form(0)
        h = self.b.shape[1]
        cols = np.column_stack([self.a, self.b, self.c])
        return cols, Form(0, tuple(range(1, 1 + h)), tuple(range(1 + h, 1 + 2 * h)))

    def value(self) -> float:
        v = float(self.a.mean())
        if self.b is not None and self.c is not None:
            den = self.c.sum(axis=0)
            v += float(
                np.sum(np.divide(self.b.sum(axis=0), den, out=np.zeros_like(den), where=den > 0))
            )
        return v


def episode_terms(
    estimator: str,
    data: LoggedData,
    dist: np.ndarray,
    q_hat: np.ndarray | None,
    gamma: float,
    horizon: int | None = None,
    *,
    q_logged: np.ndarray | None = None,
    v_hat_rows: np.ndarray | None = None,
) -> _EpisodeTerms:
    r"""Per-episode terms of the IS/DR family. The Q-model comes as ``q_hat`` (n, A) or as
    its values at the logged actions ``q_logged`` (n,) and ``v_hat_rows`` (n,)
    :math:`\hat V(x) = \sum_a \pi(a|x) \hat Q(x, a)`."""
    base = estimator.split("-")[0] if estimator in _DR_FORMS else estimator
    if estimator not in SEQUENTIAL_ESTIMATORS:
        raise ValueError(
            f"sequential estimator must be one of {list(SEQUENTIAL_ESTIMATORS)}; got {estimator!r}"
        )
    idx = episode_index(data.session_id, data.step, horizon)
    n = data.n_rows
    if dist.shape != (n, data.n_actions):
        raise ValueError(f"action_dist must have shape ({n}, {data.n_actions}); got {dist.shape}")
    rows = np.arange(n)
    w_rows = dist[rows, data.action] / data.pscore
    w = idx.pad(w_rows, fill=1.0)
    r = idx.pad(data.reward)
    mask = idx.mask
    disc = gamma ** np.arange(idx.horizon)
    rho = np.cumprod(w, axis=1)  # padding weights are 1: an ended episode keeps its last rho
    zeros = np.zeros(idx.n_episodes)
    if base == "pdis":
        return _EpisodeTerms((rho * r) @ disc, None, None)
    if base == "tis":
        return _EpisodeTerms(rho[:, -1] * (r @ disc), None, None)
    if base == "wpdis":
        return _EpisodeTerms(zeros, rho * r * disc, rho)
    if base == "wtis":
        return _EpisodeTerms(zeros, (rho[:, -1] * (r @ disc))[:, None], rho[:, -1:])
    if q_logged is None or v_hat_rows is None:
        if q_hat is None:
            raise ValueError(
                f"estimator {estimator!r} needs q_hat (n, n_actions) or a fitted FQE model"
            )
        q_logged = q_hat[rows, data.action]
        v_hat_rows = np.einsum("na,na->n", dist, q_hat)
    v_hat = idx.pad(v_hat_rows)
    if base == "fqe":
        return _EpisodeTerms(v_hat[:, 0], None, None)
    q_log = idx.pad(q_logged)
    if base == "sndr":
        # per-step self-normalised single-step ratios, then their product
        counts = mask.sum(axis=0)
        w_bar = np.divide(
            (w * mask).sum(axis=0), counts, out=np.ones(idx.horizon), where=counts > 0
        )
        rho = np.cumprod(np.where(mask, w / w_bar, 1.0), axis=1)
    rho_prev = np.hstack([np.ones((idx.n_episodes, 1)), rho[:, :-1]])
    if base == "wdr":
        # Thomas & Brunskill (2016): both weights normalised per step over all episodes
        b = np.hstack([rho * (r - q_log) * mask * disc, rho_prev * v_hat * mask * disc])
        return _EpisodeTerms(zeros, b, np.hstack([rho, rho_prev]))
    contrib = (rho * (r - q_log) + rho_prev * v_hat) * mask
    return _EpisodeTerms(contrib @ disc, None, None)


def estimate_sequential(
    estimator: str,
    data: LoggedData,
    policy: Any,
    *,
    gamma: float = 1.0,
    q_hat: np.ndarray | None = None,
    method: str = "bootstrap",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: SeedLike = 0,
) -> Interval:
    """Estimate ``policy``'s expected discounted clicks per session from session logs.

    Args:
        estimator: one of :data:`SEQUENTIAL_ESTIMATORS` (module docstring has the formulas).
        data: a session log; ``policy``: anything with ``action_dist(obs)`` (or an
            (n, n_actions) array of its probabilities on ``data.context``).
        q_hat: (n, n_actions) Q estimates on ``data.context`` for ``dr``/``fqe``; by
            default :func:`fit_fqe` is run for the policy.
        method: ``"bootstrap"``, ``"normal"`` or ``"bernstein"``, by the one interval
            engine (:mod:`offrec.ope.intervals`) on per-session columns; the bootstrap
            resamples whole sessions (keyed by ``session_id``).

    Returns:
        :class:`~offrec.ope.intervals.Interval`.
    """
    check_scalar(gamma, "gamma", float, min=0.0, max=1.0)
    check_scalar(alpha, "alpha", float, min=0.0, max=1.0, min_inclusive=False, max_inclusive=False)
    check_interval_options(method, n_bootstrap, alpha)
    if estimator in LEARNED_SEQUENTIAL:
        return estimate_sequential_full(
            estimator,
            data,
            policy,
            gamma=gamma,
            method=method,
            n_bootstrap=n_bootstrap,
            alpha=alpha,
            seed=seed,
        ).interval
    dist = np.asarray(
        policy if isinstance(policy, np.ndarray) else policy.action_dist(data.context)
    )
    if estimator in ("dr", "fqe") and q_hat is None:
        q_hat = fit_fqe(data, dist, gamma=gamma).predict(data.context)
    t = episode_terms(estimator, data, dist, q_hat, gamma)
    cols, form = t.columns()
    n_boot = n_bootstrap if method == "bootstrap" else 0
    moments = Moments.of(
        cols, keys=row_keys(np.unique(data.session_id)), n_bootstrap=n_boot, seed=seed_int(seed)
    )
    return interval(moments, form, method=method, alpha=alpha)


# ------------------------------------------------------------- fitted session models
@dataclass
class SessionFits:
    r"""Models shared by the learned estimators of one log, fitted lazily and cached: the
    session index, the model-based :class:`~offrec.ope.model_based.SessionModel` (all
    sessions, per cross-fitting fold, per bootstrap replicate).

    ``n_folds`` folds of sessions (a seeded hash of ``session_id``) cross-fit the Q-models
    of the DR estimators; ``n_rollouts`` rollouts per start.

    The ``"mb"`` interval (a documented cheaper scheme than refitting from scratch on
    resampled logs, whose coverage the study measures) adds two variances:

    - the start states: :math:`s^2_{v}/m` from the per-session rolled-out values;
    - the model: ``n_refits`` refits of the session model on Poisson-bootstrap session
      weights (warm-started from the full fit, ``REFIT_ITERS`` L-BFGS iterations each),
      each rolled out from one fixed seeded subset of ``n_model_starts`` starts with the
      same random numbers as the full model, so the differences
      :math:`D_b = \hat V_b - \hat V` carry the model's uncertainty and little Monte-Carlo
      noise; its variance is :math:`\frac1B\sum_b D_b^2`.

    The interval is :math:`\hat V \pm t_{B} \sqrt{s^2_v/m + \frac1B\sum_b D_b^2}`.
    """

    data: LoggedData
    seed: int = 0
    n_folds: int = 2
    n_refits: int = 20
    n_rollouts: int = 4
    n_model_starts: int = 2000
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def structure(self) -> SessionStructure:
        if "st" not in self._cache:
            self._cache["st"] = session_structure(self.data)
        return self._cache["st"]

    @property
    def folds(self) -> np.ndarray:
        """(n,) fold of each row (its session's)."""
        if "folds" not in self._cache:
            self._cache["folds"] = session_folds(self.data.session_id, self.n_folds, self.seed)
        return self._cache["folds"]

    def session_model(self) -> SessionModel:
        from offrec.ope.model_based import fit_session_model

        if "mb" not in self._cache:
            self._cache["mb"] = fit_session_model(
                self.data, structure=self.structure, seed=self.seed
            )
        return self._cache["mb"]

    def fold_models(self) -> list[SessionModel]:
        from offrec.ope.model_based import fit_session_model

        if "mb_folds" not in self._cache:
            st, lam = self.structure, self.session_model().click_l2
            sess_fold = session_folds(st.sessions, self.n_folds, self.seed)
            self._cache["mb_folds"] = [
                fit_session_model(
                    self.data, weights=(sess_fold != k).astype(float), structure=st, click_l2=lam
                )
                for k in range(self.n_folds)
            ]
        return self._cache["mb_folds"]

    def refit_models(self) -> tuple[np.ndarray, list[SessionModel]]:
        """Poisson bootstrap weights (B, m) and the session model refitted on each."""
        from offrec.ope.model_based import fit_session_model

        if "mb_boot" not in self._cache:
            st, lam = self.structure, self.session_model().click_l2
            W = session_weights(st.n_sessions, self.n_refits, self.seed)
            models = [
                fit_session_model(self.data, weights=w, structure=st, click_l2=lam) for w in W
            ]
            self._cache["mb_boot"] = (W, models)
        return self._cache["mb_boot"]

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, *key]))


def _check_binary(data: LoggedData) -> None:
    from offrec.core.domain import require_binary

    require_binary(data.reward_domain, "the model-based estimators (mb, mb-dr: a logistic click "
                   "model)", "pdis, wpdis, dr or fqe")  # fmt: skip
    r = np.asarray(data.reward)
    bad = (r != 0) & (r != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"reward must be 0/1 clicks for the model-based estimators (logistic click model); "
            f"row {i} has {r[i]}"
        )


def _dist_fn(policy: Any) -> Callable[[np.ndarray], np.ndarray]:
    if isinstance(policy, np.ndarray):
        raise InputError(
            "the model-based estimators roll the target out in a learned model, so they need "
            "the policy itself (an object with action_dist), not its probabilities on the log"
        )
    return policy.action_dist


@dataclass(frozen=True)
class SequentialResult:
    """One estimate: the interval, per-session contributions where they exist, and the
    warnings (plain strings) a caller should print beside the number.

    ``replicates`` (``"mb"`` only): the refitted models' value differences :math:`D_b`
    (:class:`SessionFits`), in the same refit order for every target of one log, so two
    targets' estimates can be compared paired (:func:`paired_difference`).
    """

    interval: Interval
    warnings: tuple[str, ...]
    contributions: np.ndarray | None = None
    replicates: np.ndarray | None = None


def paired_difference(
    a: SequentialResult, b: SequentialResult, alpha: float = 0.05
) -> Interval | None:
    r"""``a - b`` for two targets scored by one fitted estimator on one log, paired: their
    per-session contributions share the sessions (and, for ``"mb"``, the start states and
    random numbers), and their refits the bootstrap weights, so

    .. math::

        \widehat{se}^2 = rac{s^2(\psi_a - \psi_b)}{m} + rac1B \sum_b (D_{a,b} - D_{b,b})^2

    (the second term for ``"mb"`` only), with a t quantile on :math:`B` (else
    :math:`m - 1`) degrees of freedom. None when the two cannot be paired."""
    ca, cb = a.contributions, b.contributions
    if ca is None or cb is None or ca.shape != cb.shape or ca.size < 2:
        return None
    if (a.replicates is None) != (b.replicates is None):
        return None
    d = np.asarray(ca, np.float64) - np.asarray(cb, np.float64)
    var = float(d.var(ddof=1)) / d.size
    df = d.size - 1
    if a.replicates is not None and b.replicates is not None:
        if a.replicates.shape != b.replicates.shape:
            return None
        var += float(np.mean((a.replicates - b.replicates) ** 2))
        df = a.replicates.size
    diff = a.interval.value - b.interval.value
    half = float(stats.t.ppf(1 - alpha / 2, df)) * float(np.sqrt(var))
    return Interval(diff, diff - half, diff + half, "paired", alpha)


def _interval_from_contributions(
    value: float,
    psi: np.ndarray,
    method: str,
    alpha: float,
    n_bootstrap: int,
    seed: SeedLike,
    label: str = "",
) -> Interval:
    """t, empirical-Bernstein or bootstrap interval from per-session contributions (m,),
    by the one interval engine (:mod:`offrec.ope.intervals`), centred on ``value`` (the
    normalised forms' estimate differs from the contributions' mean by a constant)."""
    m = psi.shape[0]
    if m < 2:
        return Interval(value, -np.inf, np.inf, method + label, alpha)
    n_boot = n_bootstrap if method == "bootstrap" else 0
    moments = Moments.of(
        psi[:, None], keys=row_keys(np.arange(m)), n_bootstrap=n_boot, seed=seed_int(seed)
    )
    iv = interval(moments, Form(0), method=method, alpha=alpha)
    shift = value - iv.value
    return Interval(
        value, iv.low + shift, iv.high + shift, iv.method + label, alpha, iv.n_bootstrap
    )


def _ess_warnings(data: LoggedData, dist: np.ndarray, st: SessionStructure) -> list[str]:
    """Support and effective-sample-size warnings for the IS-based estimators."""
    out = []
    w = dist[np.arange(data.n_rows), data.action] / data.pscore
    ess1 = w.sum() ** 2 / max(float((w * w).sum()), 1e-300)
    if ess1 < SUPPORT_ESS_FRACTION * data.n_rows:
        out.append(
            f"target far from the logger's support: single-step weight ESS is {ess1:.0f} of "
            f"{data.n_rows} rows ({100 * ess1 / data.n_rows:.1f}%)"
        )
    idx = episode_index(data.session_id, data.step)
    rho = np.cumprod(idx.pad(w, 1.0), axis=1)
    ess = rho.sum(axis=0) ** 2 / np.maximum((rho * rho).sum(axis=0), 1e-300)
    low = np.flatnonzero(ess < MIN_STEP_ESS)
    if low.size:
        out.append(
            f"tiny ESS: cumulative-weight ESS is {ess[low[0]]:.1f} of {idx.n_episodes} sessions "
            f"at step {int(low[0])} (min {ess.min():.1f}); IS/DR terms from that step on rest on "
            "a handful of sessions"
        )
    return out


def _range_warning(what: str, values: np.ndarray, value_max: float) -> list[str]:
    from offrec.ope.fqe import range_report

    frac, lo, hi = range_report(values, value_max)
    if frac == 0:
        return []
    if np.size(values) == 1:
        return [f"{what} {lo:.3g} outside the feasible range [0, {value_max:g}]"]
    return [
        f"{what} outside the feasible range [0, {value_max:g}] on {100 * frac:.1f}% of rows "
        f"(min {lo:.3g}, max {hi:.3g})"
    ]


def _value_max(data: LoggedData, st: SessionStructure) -> float:
    return float(st.horizon * max(float(np.max(data.reward, initial=0.0)), 0.0))


def _neural_q(
    fits: SessionFits, key: str, dist: np.ndarray, gamma: float
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cross-fitted neural FQE: (q_logged, v_hat) at every row and range warnings."""
    from offrec.ope.fqe import fit_neural_fqe

    ck = f"nq:{key}"
    if ck not in fits._cache:
        data, st = fits.data, fits.structure
        q = np.zeros((data.n_rows, data.n_actions))
        for k in range(fits.n_folds):
            model = fit_neural_fqe(
                data, dist, structure=st, rows=fits.folds != k, gamma=gamma, seed=fits.seed + 97 * k
            )
            te = fits.folds == k
            q[te] = model.predict(data.context[te], st.recent[te])
        rows = np.arange(data.n_rows)
        warn = _range_warning("neural FQE Q-values", q, _value_max(data, st))
        fits._cache[ck] = (q[rows, data.action], np.einsum("na,na->n", dist, q), warn)
    return fits._cache[ck]


def _mb_q(fits: SessionFits, key: str, policy: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted model-based Q(x_t, a_t) and V(x_t) at every logged row, by rollouts."""
    from offrec.ope.model_based import rollout_values

    ck = f"mbq:{key}"
    if ck not in fits._cache:
        data, st = fits.data, fits.structure
        fn = _dist_fn(policy)
        q_log, v = np.zeros(data.n_rows), np.zeros(data.n_rows)
        for k, model in enumerate(fits.fold_models()):
            te = np.flatnonzero(fits.folds == k)
            args = (data.context[te], st.recent[te], st.step[te])
            q_log[te] = rollout_values(
                model, fn, *args, first_action=data.action[te], n_rollouts=2, rng=fits.rng(1, k)
            )
            v[te] = rollout_values(model, fn, *args, n_rollouts=2, rng=fits.rng(2, k))
        fits._cache[ck] = (q_log, v)
    return fits._cache[ck]


def estimate_sequential_full(
    estimator: str,
    data: LoggedData,
    policy: Any,
    *,
    gamma: float = 1.0,
    q_hat: np.ndarray | None = None,
    method: str = "normal",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: SeedLike = 0,
    fits: SessionFits | None = None,
    key: str = "target",
    dist: np.ndarray | None = None,
) -> SequentialResult:
    """:func:`estimate_sequential` with its warnings and per-session contributions.

    ``fits`` shares fitted models across estimators and targets of one log (``key`` names
    the target in its cache); ``dist`` (n, A) is the target's probabilities on the log
    when already computed.
    """
    from offrec.ope.model_based import rollout_values

    check_scalar(gamma, "gamma", float, min=0.0, max=1.0)
    check_scalar(alpha, "alpha", float, min=0.0, max=1.0, min_inclusive=False, max_inclusive=False)
    if method not in INTERVAL_METHODS:
        raise InputError(f"method must be one of {list(INTERVAL_METHODS)}; got {method!r}")
    if estimator not in SEQUENTIAL_ESTIMATORS:
        raise InputError(
            f"sequential estimator must be one of {list(SEQUENTIAL_ESTIMATORS)}; got {estimator!r}"
        )
    if dist is None:
        dist = np.asarray(
            policy if isinstance(policy, np.ndarray) else policy.action_dist(data.context)
        )
    if fits is None:
        fits = SessionFits(data, seed=int(seed) if isinstance(seed, int | np.integer) else 0)
    st = fits.structure
    vmax = _value_max(data, st)
    warnings: list[str] = []
    if estimator in IS_BASED:
        warnings += _ess_warnings(data, dist, st)
    q_log = v_rows = None
    if estimator == "mb":
        model = fits.session_model()
        fn = _dist_fn(policy)
        f0 = st.first_row
        start = (data.context[f0], st.recent[f0], st.step[f0])
        v0 = rollout_values(model, fn, *start, n_rollouts=fits.n_rollouts, rng=fits.rng(3))
        value = float(v0.mean())
        # model part: refits on Poisson-bootstrap weights, each rolled out from one fixed
        # subset of starts with common random numbers, minus the full model on the same
        sub = fits.rng(5).permutation(f0.size)[: fits.n_model_starts]
        s_start = tuple(v[sub] for v in start)
        base = rollout_values(model, fn, *s_start, n_rollouts=1, rng=fits.rng(4)).mean()
        _, models = fits.refit_models()
        diffs = np.array(
            [
                rollout_values(mb, fn, *s_start, n_rollouts=1, rng=fits.rng(4)).mean() - base
                for mb in models
            ]
        )
        m = v0.size
        se = float(np.sqrt(v0.var(ddof=1) / m + np.mean(diffs**2)))
        half = float(stats.t.ppf(1 - alpha / 2, diffs.size)) * se
        iv = Interval(
            value, value - half, value + half, f"refit-bootstrap({diffs.size})", alpha, diffs.size
        )
        warnings += _range_warning("model-based value", np.array([value]), vmax)
        return SequentialResult(iv, tuple(warnings), v0, diffs)
    if estimator == "mis":
        w = dist[np.arange(data.n_rows), data.action] / data.pscore
        psi, _ = mis_contributions(data, w, dist, structure=st, gamma=gamma)
    else:
        if estimator in NEURAL:
            q_log, v_rows, rw = _neural_q(fits, key, dist, gamma)
            warnings += rw
        elif estimator == "mb-dr":
            q_log, v_rows = _mb_q(fits, key, policy)
        elif estimator in ("dr", "fqe") and q_hat is None:
            q_hat = fit_fqe(data, dist, gamma=gamma).predict(data.context)
            warnings += _range_warning("linear FQE Q-values", q_hat, vmax)
        name = {"fqe-nn": "fqe", "dr-nn": "dr", "mb-dr": "dr"}.get(estimator, estimator)
        t = episode_terms(name, data, dist, q_hat, gamma, q_logged=q_log, v_hat_rows=v_rows)
        value = t.value()
        psi = t.a.copy()
        if t.b is not None and t.c is not None:  # delta-method linearisation
            den = t.c.mean(axis=0)
            ratio = np.divide(t.b.mean(axis=0), den, out=np.zeros_like(den), where=den > 0)
            psi += np.sum(
                np.divide(t.b - ratio * t.c, den, out=np.zeros_like(t.b), where=den > 0), axis=1
            )
            psi += value - psi.mean()
            if method == "bootstrap":  # resample the ratio form itself
                iv = _ratio_bootstrap(t, value, alpha, n_bootstrap, seed)
                warnings += _range_warning("estimate", np.array([value]), vmax)
                return SequentialResult(iv, tuple(warnings), psi)
    value = float(psi.mean()) if estimator == "mis" else value
    iv = _interval_from_contributions(value, psi, method, alpha, n_bootstrap, seed)
    warnings += _range_warning("estimate", np.array([value]), vmax)
    return SequentialResult(iv, tuple(warnings), psi)


def _ratio_bootstrap(
    t: _EpisodeTerms, value: float, alpha: float, n_bootstrap: int, seed: SeedLike
) -> Interval:
    check_scalar(n_bootstrap, "n_bootstrap", int, min=1)
    rng = as_generator(seed)
    m = t.a.shape[0]
    values = np.zeros(n_bootstrap)
    chunk = max(1, (1 << 22) // max(m, 1))  # resamples per block: bounded memory
    for s in range(0, n_bootstrap, chunk):
        k = min(chunk, n_bootstrap - s)
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=k).astype(np.float64)  # (k, m)
        v = counts @ t.a / m
        if t.b is not None and t.c is not None:
            num, den = counts @ t.b, counts @ t.c  # (k, H)
            v += np.sum(np.divide(num, den, out=np.zeros_like(num), where=den > 0), axis=1)
        values[s : s + k] = v
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return Interval(value, float(low), float(high), "bootstrap", alpha, n_bootstrap)


def evaluate_sequential(
    data: LoggedData,
    targets: dict[str, Any],
    estimators: Sequence[str],
    *,
    method: str = "normal",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: SeedLike = 0,
    fits: SessionFits | None = None,
    gamma: float = 1.0,
    flag_disagreement: bool = True,
    keep: dict[tuple[str, str], SequentialResult] | None = None,
) -> pd.DataFrame:
    """Every target (a policy or its (n, n_actions) probabilities) x every estimator, as a
    table: policy, estimator, value, low, high, interval_method, recommended (bool: the
    row of :data:`RECOMMENDED_SEQUENTIAL`), warnings (a list of strings per row, empty when
    nothing is doubtful). Models are fitted once per log and shared (:class:`SessionFits`).
    Oracles (which need the hidden session state) are refused.

    Warnings: tiny ESS / far from support (IS-based rows), Q-values or values outside
    :math:`[0, H r_{max}]`, and *disagreement*: a row whose interval does not overlap the
    recommended estimator's interval says so, and the recommended row lists them.

    ``keep``: filled with each (policy, estimator)'s :class:`SequentialResult` (for
    :func:`paired_difference`).
    """
    import pandas as pd

    if fits is None:
        fits = SessionFits(data, seed=int(seed) if isinstance(seed, int | np.integer) else 0)
    rows = []
    for name, target in targets.items():
        if hasattr(target, "action_dist_state"):
            raise InputError(
                f"target {name!r} is an oracle: it needs the hidden session state, so it "
                "cannot be scored off-policy in session mode"
            )
        dist = np.asarray(
            target if isinstance(target, np.ndarray) else target.action_dist(data.context)
        )
        q_hat = (
            fit_fqe(data, dist, gamma=gamma).predict(data.context)
            if {"dr", "fqe"} & set(estimators)
            else None
        )
        block: list[dict[str, Any]] = []
        for est in estimators:
            res = estimate_sequential_full(
                est,
                data,
                target,
                q_hat=q_hat,
                method=method,
                gamma=gamma,
                n_bootstrap=n_bootstrap,
                alpha=alpha,
                seed=seed,
                fits=fits,
                key=name,
                dist=dist,
            )
            if est in ("dr", "fqe"):
                res = SequentialResult(
                    res.interval,
                    res.warnings
                    + tuple(
                        _range_warning(
                            "linear FQE Q-values", q_hat, _value_max(data, fits.structure)
                        )
                        if q_hat is not None
                        else ()
                    ),
                    res.contributions,
                )
            if keep is not None:
                keep[name, est] = res
            iv = res.interval
            block.append(
                {
                    "policy": name,
                    "estimator": est,
                    "value": iv.value,
                    "low": iv.low,
                    "high": iv.high,
                    "interval_method": iv.method,
                    "recommended": est == RECOMMENDED_SEQUENTIAL,
                    "warnings": list(res.warnings),
                }
            )
        flagged = [tuple(r["warnings"]) for r in block]
        flagged = (
            flagged
            if not flag_disagreement
            else disagreement_warnings(
                [
                    Estimate(
                        r["policy"],
                        r["estimator"],
                        r["value"],
                        r["low"],
                        r["high"],
                        warnings=tuple(r["warnings"]),
                    )
                    for r in block
                ],
                RECOMMENDED_SEQUENTIAL,
            )
        )
        for r, ws in zip(block, flagged, strict=True):
            r["warnings"] = list(ws)
        rows += block
    return pd.DataFrame(rows)


def select_policy(
    table: pd.DataFrame, estimator: str = RECOMMENDED_SEQUENTIAL, *, by: str = "low"
) -> str:
    """Off-policy selection from an :func:`evaluate_sequential` table: the policy with the
    best lower confidence bound (``by="low"``, safe selection: deploy what is good with
    high confidence) or the best point estimate (``by="value"``) under ``estimator``."""
    if by not in ("low", "value"):
        raise InputError(f"by must be 'low' or 'value'; got {by!r}")
    sub = table[table["estimator"] == estimator]
    if sub.empty:
        raise InputError(
            f"estimator {estimator!r} is not in the table; it has {sorted(set(table['estimator']))}"
        )
    return str(sub["policy"].iloc[int(np.argmax(sub[by].to_numpy()))])
