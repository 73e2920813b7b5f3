r"""Off-policy evaluation on session logs: the expected (discounted) clicks per session.

Every session estimator is a class (:class:`SessionEstimator`) registered in
:data:`SESSION_CLASSES`, on the same protocol as the bandit ones
(:mod:`offrec.ope.estimators`): its :meth:`~SessionEstimator.parts` writes the estimate as
per-session columns (:class:`~offrec.ope.estimators.Parts`)

.. math:: \hat V = \bar A + \sum_k \frac{\sum_i B_{ik}}{\sum_i C_{ik}},

so one kernel serves a batch in memory, a stream of batches and a cluster
(:func:`offrec.ope.evaluate.evaluate`), and the one interval engine
(:mod:`offrec.ope.intervals`) serves them all. Rows are grouped into sessions by
``session_id`` and ordered by ``step`` into padded ``(m, H)`` matrices
(:class:`SessionTerms`: m sessions, H the log's horizon), with no Python loop over rows
or sessions. With :math:`w_{i,t} = \pi_e(a_{i,t}|x_{i,t}) / p_{i,t}` and the cumulative
weight :math:`\rho_{i,t} = \prod_{k \le t} w_{i,k}`:

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
- ``"fqe-nn"``, ``"dr-nn"``: the same on a neural :math:`\hat Q` (:mod:`offrec.ope.fqe`)
  cross-fitted over ``n_folds`` session folds;
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

**Fitted estimators.** An estimator that reads a fitted model (``q_model``: a linear or
neural Q, or the world model) is *fitted* first on a bounded sample of whole sessions
(:class:`SessionFits`: the models are fitted once per log and target and shared by the
estimators), then:

- ``streamed`` ones (every estimator above except ``sndr-nn``, ``mb``, ``mb-dr``, ``mis``)
  carry the fitted model (:class:`RowQ`: :math:`\hat Q(x_t, a_t)` and :math:`\hat V(x_t)` of
  any row of any batch, cross-fitting folds by a seeded hash of the session id) to the
  kernel, which streams over the whole log;
- the others need the whole sample at once (a per-step normaliser over all sessions,
  rollouts from every row, state-marginal ratios) and are computed on the sample
  (:meth:`SessionEstimator.estimate_on_sample`).

Intervals: ``"normal"`` (t), ``"bernstein"`` (empirical Bernstein) or ``"bootstrap"``
(sessions resampled by their hashed id) by the one interval engine on the per-session
columns; these treat fitted models as fixed (cross-fitting keeps the DR forms honest, the
study measures the rest). ``"mb"`` has its own refit bootstrap (:class:`SessionFits`).

Assumptions: the logger's propensities are right and cover the target's actions
(IS, DR), the session ends are logged (``terminated`` or ``truncated``) and the
observation is (close to) Markov (FQE, DR); each class lists its own (``assumptions``).
"""

from __future__ import annotations

import math
import warnings as _warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys, seed_int
from offrec.core.validation import SeedLike, check_scalar
from offrec.logs.data import LoggedData
from offrec.ope.estimators import Parts
from offrec.ope.intervals import Interval, check_interval_options, interval
from offrec.ope.marginal import mis_contributions
from offrec.ope.moments import Moments
from offrec.ope.session_data import (  # episode_index: re-exported (evaluate.py, tests)
    SessionStructure,
    episode_index,
    session_folds,
    session_structure,
    session_weights,
)
from offrec.ope.trust import (
    MARKOV,
    MIN_STEP_ESS,
    MODEL_RIGHT,
    Q_MODEL,
    RECOMMENDED_SEQUENTIAL,
    STATE_RATIOS,
    SUPPORT,
    SUPPORT_ESS_FRACTION,
    UNCONFOUNDED,
    WEIGHTS,
    WORLD_MODEL,
    EstimatorMeta,
    range_warning,
)

if TYPE_CHECKING:
    import pandas as pd

    from offrec.ope.model_based import SessionModel

# offrec.ope.fqe and offrec.ope.model_based (torch, about 1.5 s to import) are imported
# where they are used, so bandit OPE (which imports this module for its registry) does
# not pay for them

__all__ = [
    "RECOMMENDED_SEQUENTIAL",
    "SESSION_CLASSES",
    "SEQUENTIAL_ESTIMATORS",
    "LinearQ",
    "RowQ",
    "SequentialResult",
    "SessionEstimator",
    "SessionFits",
    "SessionTerms",
    "episode_index",
    "estimate_sequential",
    "fit_fqe",
    "paired_difference",
    "select_policy",
]


class Policy(Protocol):
    """A target as the session estimators read it: its distribution ``(n, n_actions)``
    over actions on contexts ``(n, d)``."""

    def action_dist(self, obs: np.ndarray) -> Any: ...


Target = Policy | np.ndarray
"""A target policy, or its ``(n, n_actions)`` probabilities on the log's rows."""


# ---------------------------------------------------------------------------- terms
@dataclass(frozen=True)
class SessionTerms:
    r"""One target's per-step quantities on a batch of whole sessions, as padded ``(m, H)``
    matrices (m sessions in sorted ``session_id`` order, H the log's horizon; a session
    that ended is padded with weight 1 and reward 0: an absorbing state).

    Attributes:
        w: the single-step ratios :math:`w_{i,t} = \pi_e(a_{i,t}|x_{i,t}) / p_{i,t}`.
        reward: :math:`r_{i,t}`. mask: the real (not padded) steps. disc: :math:`\gamma^t`, (H,).
        q_logged, v_hat: :math:`\hat Q(x_{i,t}, a_{i,t})` and :math:`\hat V(x_{i,t})` of the
            fitted model the estimator reads (None for the pure IS forms).
    """

    w: np.ndarray
    reward: np.ndarray
    mask: np.ndarray
    disc: np.ndarray
    q_logged: np.ndarray | None = None
    v_hat: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        data: LoggedData,
        dist: np.ndarray,
        gamma: float,
        horizon: int | None = None,
        q_logged: np.ndarray | None = None,
        v_hat: np.ndarray | None = None,
    ) -> SessionTerms:
        """The terms of ``data`` (whole sessions) for a target with probabilities ``dist``
        (n, n_actions) on its rows; ``q_logged``, ``v_hat`` (n,) per row when a model is read."""
        idx = episode_index(data.session_id, data.step, horizon)
        n = data.n_rows
        if dist.shape != (n, data.n_actions):
            raise ValueError(
                f"action_dist must have shape ({n}, {data.n_actions}); got {dist.shape}"
            )
        w = dist[np.arange(n), data.action] / data.pscore
        return cls(
            idx.pad(w, fill=1.0),
            idx.pad(data.reward),
            idx.mask,
            gamma ** np.arange(idx.horizon),
            None if q_logged is None else idx.pad(q_logged),
            None if v_hat is None else idx.pad(v_hat),
        )

    @property
    def rho(self) -> np.ndarray:
        """Cumulative weights :math:`\\rho_{i,t}` (m, H); an ended session keeps its last."""
        return np.cumprod(self.w, axis=1)

    def model(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(q_logged, v_hat)``, or an error naming the estimator that needs them."""
        if self.q_logged is None or self.v_hat is None:
            raise ValueError(f"estimator {name!r} needs q_hat (n, n_actions) or a fitted model")
        return self.q_logged, self.v_hat


# ----------------------------------------------------------------------- estimators
class SessionEstimator(EstimatorMeta):
    """A session (sequential) estimator: metadata (:class:`~offrec.ope.trust.EstimatorMeta`)
    and its formula, :meth:`parts` (module docstring).

    Class attributes beyond the metadata:

    - ``q_model``: the fitted model it reads: ``""`` (none), ``"linear"`` (:func:`fit_fqe`),
      ``"neural"`` (:func:`offrec.ope.fqe.fit_neural_fqe`, cross-fitted) or ``"world"``
      (:mod:`offrec.ope.model_based`);
    - ``streamed``: its :meth:`parts` are per-session sums that merge across batches, so it
      streams over the whole log; else it runs on the fitting sample
      (:meth:`estimate_on_sample`);
    - ``trajectory``: it weights whole trajectories (its diagnostics use the whole-session
      weight; the others the per-decision weights);
    - ``needs_clicks``: its model can only read 0/1 clicks, so the log's reward must be
      binary (:mod:`offrec.core.domain`); none today (``mb``, ``mb-dr`` take bounded
      rewards).

    A new session estimator is a subclass with these and ``name``, ``reads``,
    ``assumptions``, ``reference``, registered in :data:`SESSION_CLASSES`.
    """

    kind: ClassVar[str] = "session"
    q_model: ClassVar[str] = ""
    streamed: ClassVar[bool] = True
    trajectory: ClassVar[bool] = False
    needs_clicks: ClassVar[bool] = False

    @classmethod
    def ratio_pairs(cls, horizon: int) -> int:
        """How many ratio pairs :math:`(B_k, C_k)` its :meth:`parts` have on a log of
        ``horizon`` steps (0: a plain mean)."""
        return 0

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:  # pragma: no cover - abstract
        """The estimate on ``t`` as per-session :class:`~offrec.ope.estimators.Parts`."""
        raise NotImplementedError

    @classmethod
    def estimate_on_sample(cls, ctx: SampleContext) -> SequentialResult:
        """The estimate computed on the whole fitting sample at once (the estimators that
        are not ``streamed``): by default :meth:`parts` on the sample as one batch, the
        interval by the one engine on its per-session columns."""
        q_log = v_hat = None
        if cls.q_model:
            q_log, v_hat = ctx.row_q(cls.q_model).rows(ctx.fits.data, ctx.dist)
        t = SessionTerms.of(ctx.fits.data, ctx.dist, ctx.gamma, None, q_log, v_hat)
        return ctx.result(cls.parts(t))


_PD_REF = "Precup, Sutton & Singh (2000), Eligibility traces for off-policy policy evaluation, ICML"
_DR_REF = "Jiang & Li (2016), Doubly robust off-policy value evaluation for RL, ICML"
_FQE_REF = "Le, Voloshin & Yue (2019), Batch policy learning under constraints, ICML"
_SEQ_IS = (UNCONFOUNDED, SUPPORT)
_SEQ_DR = (UNCONFOUNDED, SUPPORT, MARKOV)
_FIT_ASSUMES = (MARKOV, MODEL_RIGHT)
_W, _WQ = frozenset({WEIGHTS}), frozenset({WEIGHTS, Q_MODEL})


class PDIS(SessionEstimator):
    """Per-decision importance sampling (module docstring)."""

    name: ClassVar[str] = "pdis"
    reads: ClassVar[frozenset[str]] = _W
    assumptions: ClassVar[tuple[str, ...]] = _SEQ_IS
    reference: ClassVar[str] = _PD_REF

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        return Parts((t.rho * t.reward) @ t.disc)


class TIS(PDIS):
    """Trajectory-wise importance sampling."""

    name: ClassVar[str] = "tis"
    trajectory: ClassVar[bool] = True

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        return Parts(t.rho[:, -1] * (t.reward @ t.disc))


class WPDIS(PDIS):
    """Self-normalized per-decision IS: one ratio pair per step."""

    name: ClassVar[str] = "wpdis"

    @classmethod
    def ratio_pairs(cls, horizon: int) -> int:
        return horizon

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        rho = t.rho
        return Parts(None, rho * t.reward * t.disc, rho)


class WTIS(PDIS):
    """Self-normalized trajectory-wise IS: one ratio pair."""

    name: ClassVar[str] = "wtis"
    trajectory: ClassVar[bool] = True

    @classmethod
    def ratio_pairs(cls, horizon: int) -> int:
        return 1

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        rho_end = t.rho[:, -1]
        return Parts(None, (rho_end * (t.reward @ t.disc))[:, None], rho_end[:, None])


def _dr_contributions(t: SessionTerms, rho: np.ndarray, name: str) -> np.ndarray:
    q_log, v_hat = t.model(name)
    rho_prev = np.hstack([np.ones((rho.shape[0], 1)), rho[:, :-1]])
    return ((rho * (t.reward - q_log) + rho_prev * v_hat) * t.mask) @ t.disc


class DR(SessionEstimator):
    """Sequential doubly robust, per-decision form, on the linear FQE Q-model."""

    name: ClassVar[str] = "dr"
    reads: ClassVar[frozenset[str]] = _WQ
    assumptions: ClassVar[tuple[str, ...]] = _SEQ_DR
    reference: ClassVar[str] = _DR_REF
    q_model: ClassVar[str] = "linear"

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        return Parts(_dr_contributions(t, t.rho, cls.name))


class FQE(SessionEstimator):
    r"""Fitted-Q evaluation: :math:`\frac1m \sum_i \hat V(x_{i,0})` (linear Q-model)."""

    name: ClassVar[str] = "fqe"
    reads: ClassVar[frozenset[str]] = frozenset({Q_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = _FIT_ASSUMES
    reference: ClassVar[str] = _FQE_REF
    q_model: ClassVar[str] = "linear"

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        return Parts(t.model(cls.name)[1][:, 0])


class FQE_NN(FQE):  # noqa: N801 - the estimator's name, fqe-nn
    """FQE on a cross-fitted neural Q-model."""

    name: ClassVar[str] = "fqe-nn"
    q_model: ClassVar[str] = "neural"


class DR_NN(DR):  # noqa: N801
    """Sequential DR on a cross-fitted neural Q-model."""

    name: ClassVar[str] = "dr-nn"
    q_model: ClassVar[str] = "neural"


class WDR_NN(DR_NN):  # noqa: N801
    """Weighted DR: both weights normalised per step over all sessions (2H ratio pairs)."""

    name: ClassVar[str] = "wdr-nn"
    reference: ClassVar[str] = (
        "Thomas & Brunskill (2016), Data-efficient off-policy policy evaluation for RL, ICML"
    )

    @classmethod
    def ratio_pairs(cls, horizon: int) -> int:
        return 2 * horizon

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        q_log, v_hat = t.model(cls.name)
        rho = t.rho
        rho_prev = np.hstack([np.ones((rho.shape[0], 1)), rho[:, :-1]])
        b = np.hstack(
            [rho * (t.reward - q_log) * t.mask * t.disc, rho_prev * v_hat * t.mask * t.disc]
        )
        return Parts(None, b, np.hstack([rho, rho_prev]))


class SNDR_NN(DR_NN):  # noqa: N801
    """Self-normalised DR: the per-step normaliser is a mean over all sessions, so it runs
    on the fitting sample at once."""

    name: ClassVar[str] = "sndr-nn"
    reference: ClassVar[str] = _DR_REF + "; self-normalised per step"
    streamed: ClassVar[bool] = False

    @classmethod
    def parts(cls, t: SessionTerms) -> Parts:
        counts = t.mask.sum(axis=0)
        w_bar = np.divide(
            (t.w * t.mask).sum(axis=0), counts, out=np.ones(t.w.shape[1]), where=counts > 0
        )
        rho = np.cumprod(np.where(t.mask, t.w / w_bar, 1.0), axis=1)
        return Parts(_dr_contributions(t, rho, cls.name))


class MB_DR(DR):  # noqa: N801
    r"""Sequential DR with the world model's cross-fitted :math:`\hat Q, \hat V`, by
    rollouts from every logged row of the sample."""

    name: ClassVar[str] = "mb-dr"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS, WORLD_MODEL})
    q_model: ClassVar[str] = "world"
    streamed: ClassVar[bool] = False


class MIS(SessionEstimator):
    """Marginalized IS with state-marginal ratios fitted on the whole sample."""

    name: ClassVar[str] = "mis"
    reads: ClassVar[frozenset[str]] = frozenset({WEIGHTS, STATE_RATIOS})
    assumptions: ClassVar[tuple[str, ...]] = _SEQ_DR
    reference: ClassVar[str] = (
        "Xie, Ma & Wang (2019), Towards optimal off-policy evaluation for RL with "
        "marginalized importance sampling, NeurIPS"
    )
    streamed: ClassVar[bool] = False

    @classmethod
    def estimate_on_sample(cls, ctx: SampleContext) -> SequentialResult:
        data = ctx.fits.data
        w = ctx.dist[np.arange(data.n_rows), data.action] / data.pscore
        psi, _ = mis_contributions(data, w, ctx.dist, structure=ctx.fits.structure, gamma=ctx.gamma)
        return ctx.result(Parts(psi))


class MB(SessionEstimator):
    r"""Model-based: the mean over the sample's start states of the target's rolled-out
    return in the fitted world model; the interval adds the start states' variance and the
    model's (refits on Poisson-bootstrap weights, :class:`SessionFits`):
    :math:`\hat V \pm t_{B} \sqrt{s^2_v/m + \frac1B\sum_b D_b^2}`."""

    name: ClassVar[str] = "mb"
    reads: ClassVar[frozenset[str]] = frozenset({WORLD_MODEL})
    assumptions: ClassVar[tuple[str, ...]] = (
        MARKOV,
        "the click, leave and observation-update models are right",
    )
    reference: ClassVar[str] = (
        "model-based OPE, e.g. Paduraru (2013); Voloshin et al. (2021), Empirical study of "
        "off-policy policy evaluation for RL, NeurIPS Datasets"
    )
    q_model: ClassVar[str] = "world"
    streamed: ClassVar[bool] = False

    @classmethod
    def estimate_on_sample(cls, ctx: SampleContext) -> SequentialResult:
        from offrec.ope.model_based import RolloutTally, extrapolation_warnings, rollout_values

        fits, data = ctx.fits, ctx.fits.data
        st = fits.structure
        model = fits.session_model()
        fn = _dist_fn(ctx.policy)
        f0 = st.first_row
        start = (data.context[f0], st.recent[f0], st.step[f0])
        tally = RolloutTally()
        v0 = rollout_values(
            model, fn, *start, n_rollouts=fits.n_rollouts, rng=fits.rng(3), tally=tally
        )
        warns = extrapolation_warnings(tally, np.asarray(data.action), st.recent)
        value = float(v0.mean())
        # model part: refits on Poisson-bootstrap weights, each rolled out from one fixed
        # subset of starts with common random numbers, minus the full model on the same
        sub = fits.rng(5).permutation(f0.size)[: fits.n_model_starts]
        s_start = tuple(v[sub] for v in start)
        fn_s = FirstCallMemo(fn)  # every rollout below starts on the same contexts
        base = rollout_values(model, fn_s, *s_start, n_rollouts=1, rng=fits.rng(4)).mean()
        _, models = fits.refit_models()
        diffs = np.array(
            [
                rollout_values(mb, fn_s, *s_start, n_rollouts=1, rng=fits.rng(4)).mean() - base
                for mb in models
            ]
        )
        se = float(np.sqrt(v0.var(ddof=1) / v0.size + np.mean(diffs**2)))
        half = float(stats.t.ppf(1 - ctx.alpha / 2, diffs.size)) * se
        iv = Interval(
            value,
            value - half,
            value + half,
            f"refit-bootstrap({diffs.size})",
            ctx.alpha,
            diffs.size,
        )
        return SequentialResult(iv, tuple(warns), v0, diffs)


SESSION_CLASSES: dict[str, type[SessionEstimator]] = {
    c.name: c
    for c in (PDIS, TIS, WPDIS, WTIS, DR, FQE, FQE_NN, DR_NN, WDR_NN, SNDR_NN, MB, MB_DR, MIS)
}
"""The session estimator registry: class by name. A new session estimator registers its
class here; everything below is derived from the classes' metadata."""
SEQUENTIAL_ESTIMATORS: tuple[str, ...] = tuple(SESSION_CLASSES)
NEURAL = frozenset(n for n, c in SESSION_CLASSES.items() if c.q_model == "neural")
"""Estimators on the cross-fitted neural Q-model."""
LEARNED_SEQUENTIAL = frozenset(n for n, c in SESSION_CLASSES.items() if not c.streamed)
"""Estimators computed on the whole fitting sample at once (not per-batch sums):
:meth:`SessionEstimator.estimate_on_sample`."""
NEEDS_CLICKS = frozenset(n for n, c in SESSION_CLASSES.items() if c.needs_clicks)
"""Estimators that can only read 0/1 clicks: they need a log whose declared reward domain
is binary (:mod:`offrec.core.domain`). Empty today: ``mb`` and ``mb-dr`` fit a bounded
regression of the reward (:mod:`offrec.ope.model_based`)."""
IS_BASED = frozenset(n for n, c in SESSION_CLASSES.items() if c.uses_weights())
"""Session estimators that use importance weights (:meth:`EstimatorMeta.uses_weights`)."""
TRAJECTORY_ESTIMATORS = frozenset(n for n, c in SESSION_CLASSES.items() if c.trajectory)
"""Session estimators that weight whole trajectories (their diagnostics use the
trajectory weight; the others the per-decision weights)."""

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


# ------------------------------------------------------------- fitted session models
@dataclass
class SessionFits:
    r"""Models shared by the fitted estimators of one log (or of its bounded sample of
    whole sessions, :attr:`data`), fitted lazily and cached: the session index, the
    Q-models per target (:meth:`row_q`), the model-based
    :class:`~offrec.ope.model_based.SessionModel` (all sessions, per cross-fitting fold,
    per bootstrap replicate).

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
            st, ch = self.structure, self.session_model().choices
            sess_fold = session_folds(st.sessions, self.n_folds, self.seed)
            self._cache["mb_folds"] = [
                fit_session_model(
                    self.data, weights=(sess_fold != k).astype(float), structure=st, **ch
                )
                for k in range(self.n_folds)
            ]
        return self._cache["mb_folds"]

    def refit_models(self) -> tuple[np.ndarray, list[SessionModel]]:
        """Poisson bootstrap weights (B, m) and the session model refitted on each."""
        from offrec.ope.model_based import fit_session_model

        if "mb_boot" not in self._cache:
            st, ch = self.structure, self.session_model().choices
            W = session_weights(st.n_sessions, self.n_refits, self.seed)
            models = [fit_session_model(self.data, weights=w, structure=st, **ch) for w in W]
            self._cache["mb_boot"] = (W, models)
        return self._cache["mb_boot"]

    def row_q(self, kind: str, key: str, policy: Target, dist: np.ndarray, gamma: float) -> RowQ:
        """The fitted model of ``kind`` (``"linear"``, ``"neural"``, ``"world"``) for the
        target ``key`` (``policy``, with probabilities ``dist`` on :attr:`data`), fitted
        once and cached."""
        ck = f"{kind}:{key}"
        if ck not in self._cache:
            self._cache[ck] = _fit_row_q(self, kind, key, policy, dist, gamma)
        return self._cache[ck]

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, *key]))


class FirstCallMemo:
    """A target's ``action_dist`` that remembers its first call: a later call on equal
    contexts (same shape, equal values) returns that first distribution (read-only) instead
    of calling the policy again; other calls pass through. The rollouts of one target from
    one set of starts in the refitted session models (:meth:`SessionFits.refit_models`)
    all begin on the same contexts, so the policy is called on them once, not once per
    refit (a deterministic ``action_dist``, as every offrec policy's, gives the same
    numbers either way). Holds one ``(n, n_actions)`` array."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn
        self.obs: np.ndarray | None = None
        self.dist: np.ndarray | None = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if (
            self.obs is not None
            and self.dist is not None
            and obs.shape == self.obs.shape
            and np.array_equal(obs, self.obs)
        ):
            return self.dist
        dist = np.asarray(self.fn(obs))
        if self.obs is None:
            self.obs = np.array(obs, copy=True)
            self.dist = dist.view()
            self.dist.flags.writeable = False
            return self.dist
        return dist


def _dist_fn(policy: Target) -> Callable[[np.ndarray], np.ndarray]:
    fn = getattr(policy, "action_dist", None)
    if not callable(fn):
        raise InputError(
            "the model-based estimators roll the target out in a learned model, so they need "
            "the policy itself (an object with action_dist), not its probabilities on the log"
        )
    return fn


@dataclass(frozen=True, eq=False)
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

    def __eq__(self, other: object) -> bool:
        """Equal intervals, warnings and (array-equal) contributions and replicates."""
        if not isinstance(other, SequentialResult):
            return NotImplemented
        same = self.interval == other.interval and self.warnings == other.warnings
        return same and all(
            (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
            for x, y in (
                (self.contributions, other.contributions),
                (self.replicates, other.replicates),
            )
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def value(self) -> float:
        return self.interval.value

    @property
    def low(self) -> float:
        return self.interval.low

    @property
    def high(self) -> float:
        return self.interval.high

    @property
    def method(self) -> str:
        return self.interval.method


def paired_difference(
    a: SequentialResult, b: SequentialResult, alpha: float = 0.05
) -> Interval | None:
    r"""``a - b`` for two targets scored by one fitted estimator on one log, paired: their
    per-session contributions share the sessions (and, for ``"mb"``, the start states and
    random numbers), and their refits the bootstrap weights, so

    .. math::

        \widehat{se}^2 = \frac{s^2(\psi_a - \psi_b)}{m} + \frac1B \sum_b (D_{a,b} - D_{b,b})^2

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
            f"at step {int(low[0])} (min {ess.min():.1f}): IS/DR terms from that step on rest on "
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


# ------------------------------------------------------------------- fitted models
class RowQ(Protocol):
    r"""A fitted model as the kernel reads it: :math:`\hat Q(x_t, a_t)` and
    :math:`\hat V(x_t) = \sum_a \pi_e(a|x_t) \hat Q(x_t, a)` at every row of a batch of whole
    sessions, and the warnings its fit raised (Q-values outside the feasible range)."""

    @property
    def warnings(self) -> tuple[str, ...]: ...

    def rows(self, data: LoggedData, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(q_logged, v_hat)``, each (n,), for the target with probabilities ``dist``."""
        ...


def _q_rows(q: np.ndarray, data: LoggedData, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return q[np.arange(data.n_rows), data.action], np.einsum("na,na->n", dist, q)


@dataclass(frozen=True)
class TableQ:
    """A Q-table given on the rows of one log, ``(n, n_actions)`` (e.g. ``q_hat``)."""

    q: np.ndarray
    warnings: tuple[str, ...] = ()

    def rows(self, data: LoggedData, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.q.shape != dist.shape:
            raise ValueError(f"q_hat must have shape {dist.shape}; got {self.q.shape}")
        return _q_rows(self.q, data, dist)


@dataclass(frozen=True)
class LinearRowQ:
    """:class:`LinearQ` from :func:`fit_fqe`, predicted on any batch."""

    model: LinearQ
    warnings: tuple[str, ...] = ()

    def rows(self, data: LoggedData, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _q_rows(self.model.predict(data.context), data, dist)


@dataclass(frozen=True)
class NeuralRowQ:
    """Cross-fitted neural FQE: one model per session fold (a seeded hash of the session
    id, :func:`~offrec.ope.session_data.session_folds`), each predicting the sessions of
    its own fold, so a row is never predicted by a model fitted on it."""

    models: tuple[Any, ...]
    seed: int
    warnings: tuple[str, ...] = ()

    def rows(self, data: LoggedData, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        recent = session_structure(data).recent
        fold = session_folds(data.session_id, len(self.models), self.seed)
        q = np.zeros((data.n_rows, data.n_actions))
        for k, model in enumerate(self.models):  # one loop over the folds
            te = fold == k
            q[te] = model.predict(data.context[te], recent[te])
        return _q_rows(q, data, dist)


@dataclass(frozen=True)
class SampleRowQ:
    """Values computed for the rows of the fitting sample only (the world model's
    rollouts from every logged row): the estimators reading it run on the sample."""

    q_logged: np.ndarray
    v_hat: np.ndarray
    warnings: tuple[str, ...] = ()

    def rows(self, data: LoggedData, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if data.n_rows != self.q_logged.shape[0]:
            raise ValueError("these values were computed on the fitting sample's rows only")
        return self.q_logged, self.v_hat


def _fit_row_q(
    fits: SessionFits, kind: str, key: str, policy: Target, dist: np.ndarray, gamma: float
) -> RowQ:
    """Fit the model of ``kind`` for one target on ``fits.data`` (see :meth:`SessionFits.row_q`)."""
    data, st = fits.data, fits.structure
    vmax = _value_max(data, st)
    if kind == "linear":
        linear = fit_fqe(data, dist, gamma=gamma)
        warn = _range_warning("linear FQE Q-values", linear.predict(data.context), vmax)
        return LinearRowQ(linear, tuple(warn))
    if kind == "neural":
        from offrec.ope.fqe import fit_neural_fqe

        models = tuple(
            fit_neural_fqe(
                data, dist, structure=st, rows=fits.folds != k, gamma=gamma, seed=fits.seed + 97 * k
            )
            for k in range(fits.n_folds)
        )
        q = np.zeros((data.n_rows, data.n_actions))
        for k, neural in enumerate(models):  # the sample's cross-fitted Q-values, checked
            te = fits.folds == k
            q[te] = neural.predict(data.context[te], st.recent[te])
        warn = _range_warning("neural FQE Q-values", q, vmax)
        return NeuralRowQ(models, fits.seed, tuple(warn))
    if kind == "world":
        from offrec.ope.model_based import rollout_values

        fn = _dist_fn(policy)
        q_log, v = np.zeros(data.n_rows), np.zeros(data.n_rows)
        for k, world in enumerate(fits.fold_models()):
            te = np.flatnonzero(fits.folds == k)
            args = (data.context[te], st.recent[te], st.step[te])
            q_log[te] = rollout_values(
                world, fn, *args, first_action=data.action[te], n_rollouts=2, rng=fits.rng(1, k)
            )
            v[te] = rollout_values(world, fn, *args, n_rollouts=2, rng=fits.rng(2, k))
        return SampleRowQ(q_log, v)
    raise ValueError(f"q_model must be 'linear', 'neural' or 'world'; got {kind!r}")


@dataclass
class SampleContext:
    """What an estimator computed on the fitting sample reads
    (:meth:`SessionEstimator.estimate_on_sample`): the fits (``fits.data`` is the sample),
    the target (``policy``, its probabilities ``dist`` on the sample, its cache ``key``)
    and the interval options. ``q_hat``: a Q-table on the sample given by the caller
    instead of the linear FQE fit."""

    estimator: type[SessionEstimator]
    fits: SessionFits
    policy: Target
    dist: np.ndarray
    key: str = "target"
    gamma: float = 1.0
    method: str = "normal"
    n_bootstrap: int = 1000
    alpha: float = 0.05
    seed: int = 0
    q_hat: np.ndarray | None = None
    _model_warnings: list[str] = field(default_factory=list)

    def row_q(self, kind: str) -> RowQ:
        """The fitted model of ``kind`` for this target (its warnings join the result's)."""
        if kind == "linear" and self.q_hat is not None:
            return TableQ(np.asarray(self.q_hat))
        rq = self.fits.row_q(kind, self.key, self.policy, self.dist, self.gamma)
        self._model_warnings += rq.warnings
        return rq

    def result(self, parts: Parts) -> SequentialResult:
        """The estimate of ``parts`` (per-session columns of the sample) with its interval
        by the one engine (sessions resampled by hashed id for the bootstrap), its warnings
        and per-session contributions (:meth:`~offrec.ope.estimators.Parts.influence`)."""
        data, st = self.fits.data, self.fits.structure
        value = parts.value()
        psi = parts.influence()
        warnings: list[str] = []
        if self.estimator.uses_weights():
            warnings += _ess_warnings(data, self.dist, st)
        warnings += self._model_warnings
        if psi.shape[0] < 2:
            iv = Interval(value, -math.inf, math.inf, self.method, self.alpha)
        else:
            cols, form = parts.columns()
            n_boot = self.n_bootstrap if self.method == "bootstrap" else 0
            moments = Moments.of(
                np.column_stack(cols),
                keys=row_keys(st.sessions),
                n_bootstrap=n_boot,
                seed=self.seed,
            )
            iv = interval(moments, form, method=self.method, alpha=self.alpha)
        return SequentialResult(iv, tuple(warnings), psi)


# --------------------------------------------------------------- in-memory functions
def estimate_sequential(
    estimator: str,
    data: LoggedData,
    policy: Target,
    *,
    gamma: float = 1.0,
    q_hat: np.ndarray | None = None,
    method: str = "bootstrap",
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: SeedLike = 0,
    fits: SessionFits | None = None,
    key: str = "target",
    dist: np.ndarray | None = None,
) -> SequentialResult:
    """Estimate ``policy``'s expected discounted clicks per session from a session log in
    memory: the estimator's kernel on the log as one batch (the streamed
    :func:`~offrec.ope.evaluate.evaluate` gives the same numbers).

    Args:
        estimator: one of :data:`SEQUENTIAL_ESTIMATORS` (module docstring has the formulas).
        data: a session log; ``policy``: anything with ``action_dist(obs)`` (or an
            (n, n_actions) array of its probabilities on ``data.context``).
        q_hat: (n, n_actions) Q estimates on ``data.context`` for ``dr``/``fqe``; by
            default :func:`fit_fqe` is run for the policy.
        method: ``"bootstrap"``, ``"normal"`` or ``"bernstein"``, by the one interval
            engine (:mod:`offrec.ope.intervals`) on per-session columns; the bootstrap
            resamples whole sessions (keyed by ``session_id``).
        fits: models shared across estimators and targets of this log (``key`` names the
            target in its cache); ``dist`` (n, A): the target's probabilities on the log
            when already computed.

    Returns:
        :class:`SequentialResult`: the interval (also as ``.value``, ``.low``, ``.high``),
        warnings and per-session contributions (:func:`paired_difference`).
    """
    check_scalar(gamma, "gamma", float, min=0.0, max=1.0)
    check_interval_options(method, n_bootstrap, alpha)
    if estimator not in SESSION_CLASSES:
        raise InputError(
            f"sequential estimator must be one of {list(SEQUENTIAL_ESTIMATORS)}; got {estimator!r}"
        )
    if dist is None:
        dist = np.asarray(
            policy if isinstance(policy, np.ndarray) else policy.action_dist(data.context)
        )
    s = seed_int(seed)
    if fits is None:
        fits = SessionFits(data, seed=s)
    cls = SESSION_CLASSES[estimator]
    ctx = SampleContext(cls, fits, policy, dist, key, gamma, method, n_bootstrap, alpha, s, q_hat)
    res = cls.estimate_on_sample(ctx)
    feasible = (0.0, _value_max(data, fits.structure))
    return replace(res, warnings=(*res.warnings, *range_warning(res.value, feasible)))


def estimate_sequential_full(*args: Any, **kwargs: Any) -> SequentialResult:
    """Deprecated alias of :func:`estimate_sequential` (which now returns the full
    :class:`SequentialResult`)."""
    _warnings.warn(
        "estimate_sequential_full is deprecated; use estimate_sequential",
        DeprecationWarning,
        stacklevel=2,
    )
    kwargs.setdefault("method", "normal")  # its old default
    return estimate_sequential(*args, **kwargs)


def select_policy(
    table: pd.DataFrame, estimator: str = RECOMMENDED_SEQUENTIAL, *, by: str = "low"
) -> str:
    """Off-policy selection from an :func:`~offrec.ope.evaluate.evaluate_sequential` table: the policy with the
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
