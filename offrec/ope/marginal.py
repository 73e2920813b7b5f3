r"""Marginalized importance sampling for session logs: horizon-indexed state-marginal ratios.

Per-decision IS multiplies the step ratios :math:`w_{t} = \pi(a_t|x_t)/\mu(a_t|x_t)`, and
the product's variance grows exponentially with the horizon. Marginalized IS replaces
the product of the first :math:`t` ratios by the ratio of the *state* distributions at
step :math:`t`, :math:`\omega_t(s) = d^\pi_t(s) / d^\mu_t(s)`, which obeys the forward
recursion (Xie, Ma & Wang, 2019, *Towards optimal off-policy evaluation for
reinforcement learning with marginalized importance sampling*, NeurIPS, eq. (4))

.. math:: \omega_{t+1}(s') = \mathbb E_\mu\big[\omega_t(s_t)\, w_t \,\big|\, s_{t+1} = s'\big],
          \qquad \omega_0 \equiv 1,

where the expectation runs over the logged transitions into :math:`s'` and a session
that ended has left the state space (its mass is lost under both policies, so the ratio
of *alive* state distributions is estimated; :math:`\frac1m\sum_i \omega_t` estimates
:math:`P_\pi(\text{alive at } t)`). Here the conditional expectation is a ridge regression
of :math:`\hat\omega_t(s_{i,t}) w_{i,t}` on features :math:`\phi(s_{i,t+1}) = [1, z, z^2]`
of the next standardized context (with an unpenalised intercept, so
:math:`\sum_i \hat\omega_{t+1} = \sum_i \hat\omega_t w_t` over the rows that continue:
the mass is kept), clipped at 0. The estimate (``"mis"``) is

.. math:: \hat V_{MIS} = \frac1m \sum_i \sum_t \gamma^t \hat\omega_t(s_{i,t})\, w_{i,t}\, r_{i,t},

one ratio per step instead of a product of :math:`t`. Per-session contributions give a t
interval that treats :math:`\hat\omega` as fixed (its fitting noise is not in the width;
the study measures the coverage that results).

Assumptions: the logged context is (close to) the Markov state, the ratio is smooth in
the features above, and the logger covers the target's actions (one single-step ratio
remains). See also Liu, Li, Tang & Zhou (2018), *Breaking the curse of horizon:
infinite-horizon off-policy estimation*, NeurIPS.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from offrec.logs.data import LoggedData
from offrec.ope.session_data import SessionStructure, session_structure


def _features(
    x: np.ndarray, mean: np.ndarray, scale: np.ndarray, repeat_prob: np.ndarray
) -> np.ndarray:
    z = (x - mean) / scale
    return np.hstack([np.ones((x.shape[0], 1)), z, z * z, repeat_prob])


def marginal_ratios(
    data: LoggedData,
    step_ratio: np.ndarray,
    target_dist: np.ndarray,
    *,
    structure: SessionStructure | None = None,
    l2: float = 1.0,
) -> np.ndarray:
    r"""Estimated state-marginal ratios :math:`\hat\omega_t(s_{i,t})` (n,) at every row
    (module docstring); ``step_ratio`` (n,) holds :math:`w_{i,t}`."""
    st = structure or session_structure(data)
    x = np.asarray(data.context, np.float64)
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    rows = np.arange(data.n_rows)[:, None]
    rep = np.where(st.recent >= 0, target_dist[rows, np.maximum(st.recent, 0)], 0.0)
    omega = np.zeros(data.n_rows)
    omega[st.step == 0] = 1.0
    with threadpool_limits(1):
        for t in range(st.horizon - 1):  # loop over steps, vectorized over rows
            at = st.step == t
            # E[w | s] = 1: rescale the step's ratios so sum(omega w) = sum(omega) at step t
            wt = step_ratio[at] * omega[at].sum() / max(float(omega[at] @ step_ratio[at]), 1e-300)
            src = np.flatnonzero(at & (st.next_row >= 0))
            if src.size == 0:
                break
            dst = st.next_row[src]
            y = omega[src] * wt[np.searchsorted(np.flatnonzero(at), src)]
            phi = _features(x[dst], mean, scale, rep[dst])
            pen = l2 * np.eye(phi.shape[1])
            pen[0, 0] = 0.0
            beta = np.linalg.solve(phi.T @ phi + pen, phi.T @ y)
            fit = np.maximum(phi @ beta, 0.0)
            omega[dst] = fit * (y.sum() / max(float(fit.sum()), 1e-300))  # keep the mass
    return omega


def mis_contributions(
    data: LoggedData,
    step_ratio: np.ndarray,
    target_dist: np.ndarray,
    *,
    structure: SessionStructure | None = None,
    gamma: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-session MIS contributions (m,) (their mean is the estimate) and the ratios (n,)."""
    st = structure or session_structure(data)
    omega = marginal_ratios(data, step_ratio, target_dist, structure=st)
    terms = omega * step_ratio * np.asarray(data.reward, np.float64) * gamma**st.step
    return np.bincount(st.episode, weights=terms, minlength=st.n_sessions), omega
