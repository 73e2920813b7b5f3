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
  :math:`\hat Q` from :func:`fit_fqe` (any target policy, stochastic or greedy).

Assumptions: the logger's propensities are right and cover the target's actions
(IS, DR), the session ends are logged (``terminated`` or ``truncated``) and the
observation is (close to) Markov (FQE, DR). ``dr`` and ``fqe`` use the Q-model fitted
by :func:`fit_fqe` unless ``q_hat`` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from offrec.core.errors import InputError
from offrec.core.hashing import row_keys, seed_int
from offrec.core.validation import SeedLike, check_scalar
from offrec.logs.data import LoggedData
from offrec.ope.intervals import Form, Interval, check_interval_options, interval
from offrec.ope.stats import Moments

if TYPE_CHECKING:
    pass

SEQUENTIAL_ESTIMATORS: tuple[str, ...] = ("pdis", "tis", "wpdis", "wtis", "dr", "fqe")


@dataclass(frozen=True)
class EpisodeIndex:
    """Where each row sits in the padded (m, H) episode matrices."""

    episode: np.ndarray  # (n,) episode index of each row
    step: np.ndarray  # (n,) position within the episode
    n_episodes: int
    horizon: int

    def pad(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full((self.n_episodes, self.horizon), fill, dtype=np.float64)
        out[self.episode, self.step] = values
        return out

    @property
    def mask(self) -> np.ndarray:
        return self.pad(np.ones(self.episode.shape[0]), 0.0) > 0


def episode_index(
    session_id: np.ndarray, step: np.ndarray, horizon: int | None = None
) -> EpisodeIndex:
    """Index rows by episode; steps must run 0, 1, 2, ... within each session.

    ``horizon`` pads the episode matrices to that width (default: the longest session),
    so batches of one log share one layout."""
    session_id = np.asarray(session_id)
    step = np.asarray(step, dtype=np.int64)
    if session_id.shape != step.shape or session_id.ndim != 1:
        raise InputError(
            f"session_id and step must be 1-D of one length; got {session_id.shape}, {step.shape}"
        )
    uniq, episode = np.unique(session_id, return_inverse=True)
    counts = np.bincount(episode)
    if (step < 0).any() or (step >= counts[episode]).any():
        i = int(np.flatnonzero((step < 0) | (step >= counts[episode]))[0])
        raise InputError(
            f"step must run 0..len-1 within each session; row {i} (session {session_id[i]}) "
            f"has step {step[i]} in a session of {counts[episode[i]]} rows"
        )
    seen = np.zeros((uniq.size, int(counts.max())), bool)
    seen[episode, step] = True
    if seen.sum() != step.size:
        raise InputError(
            "step must not repeat within a session (duplicated (session_id, step) rows)"
        )
    width = int(counts.max()) if horizon is None else horizon
    if counts.max() > width:
        raise InputError(f"a session has {int(counts.max())} steps, more than horizon {width}")
    return EpisodeIndex(episode, step, int(uniq.size), width)


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


def _terms(
    estimator: str,
    data: LoggedData,
    dist: np.ndarray,
    q_hat: np.ndarray | None,
    gamma: float,
    horizon: int | None = None,
) -> _EpisodeTerms:
    if estimator not in SEQUENTIAL_ESTIMATORS:
        raise InputError(
            f"sequential estimator must be one of {list(SEQUENTIAL_ESTIMATORS)}; got {estimator!r}"
        )
    idx = episode_index(data.session_id, data.step, horizon)
    n = data.n_rows
    if dist.shape != (n, data.n_actions):
        raise InputError(f"action_dist must have shape ({n}, {data.n_actions}); got {dist.shape}")
    rows = np.arange(n)
    w = idx.pad(dist[rows, data.action] / data.pscore, fill=1.0)
    r = idx.pad(data.reward)
    mask = idx.mask
    disc = gamma ** np.arange(idx.horizon)
    rho = np.cumprod(w, axis=1)  # padding weights are 1: an ended episode keeps its last rho
    zeros = np.zeros(idx.n_episodes)
    if estimator == "pdis":
        return _EpisodeTerms((rho * r) @ disc, None, None)
    if estimator == "tis":
        return _EpisodeTerms(rho[:, -1] * (r @ disc), None, None)
    if estimator == "wpdis":
        return _EpisodeTerms(zeros, rho * r * disc, rho)
    if estimator == "wtis":
        return _EpisodeTerms(zeros, (rho[:, -1] * (r @ disc))[:, None], rho[:, -1:])
    if q_hat is None:
        raise InputError(
            f"estimator {estimator!r} needs q_hat (n, n_actions) or a fitted FQE model"
        )
    v_hat = idx.pad(np.einsum("na,na->n", dist, q_hat))
    if estimator == "fqe":
        return _EpisodeTerms(v_hat[:, 0], None, None)
    q_logged = idx.pad(q_hat[rows, data.action])
    rho_prev = np.hstack([np.ones((idx.n_episodes, 1)), rho[:, :-1]])
    contrib = (rho * (r - q_logged) + rho_prev * v_hat) * mask
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
    dist = np.asarray(
        policy if isinstance(policy, np.ndarray) else policy.action_dist(data.context)
    )
    if estimator in ("dr", "fqe") and q_hat is None:
        q_hat = fit_fqe(data, dist, gamma=gamma).predict(data.context)
    t = _terms(estimator, data, dist, q_hat, gamma)
    cols, form = t.columns()
    n_boot = n_bootstrap if method == "bootstrap" else 0
    moments = Moments.of(
        cols, keys=row_keys(np.unique(data.session_id)), n_bootstrap=n_boot, seed=seed_int(seed)
    )
    return interval(moments, form, method=method, alpha=alpha)
