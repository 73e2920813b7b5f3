r"""Model-based session OPE: learn the observable dynamics from the log, roll the target out.

Everything is learned from the log's own columns (context, action, reward, terminated,
truncated, session order): nothing is read from a simulator config, so it works on
imported logs. With :math:`x` the context (d,), :math:`a` the action, :math:`r` the reward
on the unit scale (:math:`r' = (r - a_0)/(b_0 - a_0)` for a log whose declared reward
domain is :math:`[a_0, b_0]`, :func:`offrec.core.domain.to_unit`; the click itself for a
binary log) and :math:`h` the L actions shown just before
(:mod:`offrec.ope.session_data`):

1. **Observation update**, least squares on consecutive logged contexts

   .. math:: x' \approx [x,\ e_a,\ r]\, M,\qquad M \in \mathbb R^{(d + A + 1) \times d}

   (:math:`e_a` one-hot). Each coordinate whose residual standard deviation is below
   ``DETERMINISTIC_TOL`` times its spread is *recognised* as deterministic (in offrec's
   world: the profile is copied, the step advances, fatigue decays and the shown topic's
   grows, the last click is the click); the others get Gaussian noise with their
   residual standard deviation in the rollouts. When every logged next context has the
   same norm :math:`\rho` (relative spread below ``DETERMINISTIC_TOL``: the env
   re-normalises its state, as SCOPE-RL's RECEnv does), that invariant is recognised
   too: the prediction is projected onto the sphere, :math:`x' \leftarrow \rho\,
   x'/\lVert x'\rVert`, before and after the noise, and the residuals are measured
   after the projection (on RECEnv, issue 26: 0.028 per coordinate instead of the linear
   update's 0.12, spread 0.45). Rolled-out contexts are clipped to the logged range. The action's own effect :math:`\Delta_a` (row :math:`a` of :math:`M`'s
   one-hot block, minus the mean row) defines an *exposure feature*
   :math:`s(x, a) = x \cdot \Delta_a`: the current value of what showing :math:`a` moves
   (the fatigue of its topic).
2. **Click (reward) model**, a logistic regression with per-action intercepts and slopes
   shrunk to a shared slope (ridge on :math:`W_a`), of the click, or for a bounded
   continuous reward a fractional logit of :math:`r'` (the same Bernoulli log-likelihood
   with :math:`r' \in [0, 1]` as the target: a bounded regression of the mean, Papke &
   Wooldridge 1996):

   .. math:: \operatorname{logit} \hat q(x, a, h) = b_a + z \cdot (\beta + W_a)
             + \gamma_0 s(x, a) + \sum_{j=1}^{L} \gamma_j [h_j = a]

   with :math:`z` the standardized context.
3. **Leave model**: a logistic regression of ``terminated`` on
   :math:`(1, z, r, s(x, a), [h_j = a])` over the rows that were not truncated.
4. **Truncation**: the logged rate of ``truncated`` per step (1 at the horizon).

The value of a target :math:`\pi` is then the mean over the logged first contexts of
:math:`K` rollouts in the learned model, adding the *expected* reward
:math:`a_0 + (b_0 - a_0)\sum_a \pi(a|x)\hat q(x, a, h)` at every step (Rao-Blackwellised;
rewards are drawn only to move the state: a click :math:`B \sim \mathrm{Bernoulli}(\hat q)`,
or for a continuous reward :math:`r' = \hat q + \sqrt{\phi}(B - \hat q)`, which has mean
:math:`\hat q`, stays in [0, 1] and has variance :math:`\phi\,\hat q(1 - \hat q)`, with
the dispersion :math:`\phi = \sum (r' - \hat q)^2 / \sum \hat q (1 - \hat q)` measured
on the log, clipped to [0, 1]):

.. math:: \hat V_{MB} = \frac1{mK}\sum_{i,k} \sum_t \Big(a_0 + (b_0 - a_0) \sum_a
          \pi(a|\tilde x^{(k)}_{i,t}) \hat q(\tilde x^{(k)}_{i,t}, a, \tilde h^{(k)}_{i,t})\Big).

Its doubly robust form (``"mb-dr"``) plugs :math:`\hat Q(x_t, a_t)` and
:math:`\hat V(x_t)`, both rolled out from every logged row in a model fitted on the other
folds (cross-fitting over sessions), into the per-decision DR of Jiang & Li (2016).

Assumptions: the next context depends on (x, a, r') linearly (or the misfit is flagged
by the residual noise), the click and leave probabilities are logistic in the features
above, and the Markov state is (x, h). What the log never shows (an action the logger
never takes in some region) is extrapolated by the shared slope: the estimate carries a
support warning from :mod:`offrec.ope.sequential` when the target leaves the support.

References: Paduraru (2013), *Off-policy evaluation in Markov decision processes* (PhD
thesis, McGill; model-based OPE); Jiang & Li (2016), *Doubly robust off-policy value
evaluation for reinforcement learning*, ICML; Voloshin et al. (2021), *Empirical study
of off-policy policy evaluation for reinforcement learning*, NeurIPS Datasets (model-based
estimators as a strong baseline when the model class is right).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit
from threadpoolctl import threadpool_limits

from offrec.core.domain import bounds, is_binary, to_unit
from offrec.core.errors import InputError
from offrec.core.threads import torch_threads
from offrec.logs.data import LoggedData
from offrec.ope.session_data import SessionStructure, session_folds, session_structure

DETERMINISTIC_TOL = 1e-3
L2_GRID = (0.3, 1.0, 10.0, 100.0)  # ridge strengths tried when click_l2=None
CLICK_L2 = 0.3
"""Default ridge strength on the per-action click slopes :math:`W_a` (penalty
``CLICK_L2 * ||W||^2`` on the summed log-loss). Shrinking the slopes pulls the predicted
click rates of the actions a good target picks (high for the user) toward the average, so
the value of targets better than the logger is underestimated: with the strength that
held-out log-likelihood picks (10 on session_rl seeds 0-2) the learned policies came out
3-6% low; with 0.3 their errors were -2%..+2% (session_rl seeds 1-2, measured in the
study). Less shrinkage costs variance, which the intervals carry."""
DistFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class SessionModel:
    """A learned model of a session log's observable dynamics (module docstring).

    Shapes: d context width, A actions, L remembered actions.
    """

    x_mean: np.ndarray  # (d,)
    x_scale: np.ndarray  # (d,)
    trans: np.ndarray  # (d + A + 1, d)
    noise_std: np.ndarray  # (d,) 0 on deterministic coordinates
    x_low: np.ndarray  # (d,)
    x_high: np.ndarray  # (d,)
    effect: np.ndarray  # (A, d) centred action effects Delta_a
    click_b: np.ndarray  # (A,)
    click_beta: np.ndarray  # (d,)
    click_W: np.ndarray  # (A, d)
    click_g: np.ndarray  # (1 + L,)
    leave_c: float
    leave_eta: np.ndarray  # (d,)
    leave_kappa: float
    leave_g: np.ndarray  # (1 + L,)
    trunc_prob: np.ndarray  # (H,) P(truncated | step), 1 from the horizon on
    click_l2: float
    r_max: float
    r_low: float = 0.0  # reward = r_low + r_scale * r' with r' in [0, 1]
    r_scale: float = 1.0
    dispersion: float = 1.0  # phi: Var(r' | x, a, h) / (q (1 - q)); 1 for clicks
    next_norm: float = 0.0  # rho > 0: every next context has this norm (0: no invariant)

    @property
    def n_actions(self) -> int:
        return int(self.click_b.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.trunc_prob.shape[0])

    @property
    def deterministic(self) -> np.ndarray:
        """(d,) bool: coordinates recognised as a deterministic function of (x, a, r)."""
        return self.noise_std == 0

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (x - self.x_mean) / self.x_scale

    def click_logits_all(self, x: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """Click logits of every action (n, A)."""
        z = self._z(x)
        out = self.click_b[None, :] + (z @ self.click_beta)[:, None] + z @ self.click_W.T
        out += self.click_g[0] * (x @ self.effect.T)
        rows = np.arange(x.shape[0])
        for j in range(recent.shape[1]):
            ok = recent[:, j] >= 0
            out[rows[ok], recent[ok, j]] += self.click_g[1 + j]
        return out

    def click_logit(self, x: np.ndarray, a: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """Click logit of actions ``a`` (n,)."""
        z = self._z(x)
        s = np.einsum("nd,nd->n", x, self.effect[a])
        rep = (recent == a[:, None]).astype(np.float64)
        return (
            self.click_b[a]
            + z @ self.click_beta
            + np.einsum("nd,nd->n", z, self.click_W[a])
            + self.click_g[0] * s
            + rep @ self.click_g[1:]
        )

    def leave_prob(
        self, x: np.ndarray, a: np.ndarray, r: np.ndarray, recent: np.ndarray
    ) -> np.ndarray:
        """P(the user leaves after this step | x, a, r, h), (n,)."""
        s = np.einsum("nd,nd->n", x, self.effect[a])
        rep = (recent == a[:, None]).astype(np.float64)
        logit = (
            self.leave_c
            + self._z(x) @ self.leave_eta
            + self.leave_kappa * r
            + self.leave_g[0] * s
            + rep @ self.leave_g[1:]
        )
        return expit(logit)

    def draw_reward(self, q: np.ndarray, u: np.ndarray) -> np.ndarray:
        r"""Unit-scale rewards (n,) with mean ``q`` drawn from uniforms ``u``:
        :math:`r' = q + \sqrt{\phi}\,(B - q)`, :math:`B = [u < q]`; clicks when
        :math:`\phi = 1`, the mean itself when :math:`\phi = 0`."""
        b = (u < q).astype(np.float64)
        if self.dispersion >= 1.0:
            return b
        return q + np.sqrt(self.dispersion) * (b - q)

    def next_context(
        self, x: np.ndarray, a: np.ndarray, r: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Next context (n, d): the learned linear update, noise where not deterministic."""
        d = x.shape[1]
        out = self.project(
            x @ self.trans[:d] + self.trans[d : d + self.n_actions][a] + np.outer(r, self.trans[-1])
        )
        noisy = self.noise_std > 0
        if noisy.any():
            out[:, noisy] += rng.normal(size=(x.shape[0], int(noisy.sum()))) * self.noise_std[noisy]
            out = self.project(out)
        return np.clip(out, self.x_low, self.x_high)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` (n, d) scaled to the norm invariant :attr:`next_norm`
        (:func:`_to_sphere`)."""
        return _to_sphere(x, self.next_norm)


def _to_sphere(x: np.ndarray, rho: float) -> np.ndarray:
    """Rows of ``x`` (n, d) scaled to norm ``rho`` (unchanged when ``rho <= 0``, the
    model having no norm invariant, and for a zero row)."""
    if rho <= 0:
        return x
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norm > 0, x * (rho / np.maximum(norm, 1e-300)), x)


# ------------------------------------------------------------------------------ fitting
def _lbfgs(params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], iters: int) -> None:
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=iters,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def _fit_click(
    z: np.ndarray,
    s: np.ndarray,
    rep: np.ndarray,
    a: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    n_actions: int,
    l2: float,
    iters: int = 300,
    init: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted logistic fit of the click model; returns (b, beta, W, g). ``init``
    warm-starts from earlier parameters."""
    d = z.shape[1]
    Z, S, R = (torch.as_tensor(v, dtype=torch.float64) for v in (z, s, rep))
    A_, Y, Wt = torch.as_tensor(a), torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(w)
    base = float(np.log(max(y @ w, 1e-3) / max((1 - y) @ w, 1e-3)))
    b = torch.full((n_actions,), base, dtype=torch.float64, requires_grad=True)
    beta = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    W = torch.zeros((n_actions, d), dtype=torch.float64, requires_grad=True)
    g = torch.zeros(1 + R.shape[1], dtype=torch.float64, requires_grad=True)
    if init is not None:
        with torch.no_grad():
            for t, v in zip((b, beta, W, g), init, strict=True):
                t.copy_(torch.as_tensor(v))
    total = float(w.sum())

    def loss() -> torch.Tensor:
        logit = b[A_] + Z @ beta + (Z * W[A_]).sum(1) + S * g[0] + R @ g[1:]
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            logit, Y, weight=Wt, reduction="sum"
        )
        pen = l2 * (W * W).sum() + 1.0 * ((b - b.mean()) ** 2).sum()
        return (nll + pen) / total

    _lbfgs([b, beta, W, g], loss, iters)
    return tuple(t.detach().numpy().copy() for t in (b, beta, W, g))  # type: ignore[return-value]


def _fit_leave(
    z: np.ndarray,
    s: np.ndarray,
    rep: np.ndarray,
    r: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    iters: int = 200,
    init: np.ndarray | None = None,
) -> tuple[float, np.ndarray, float, np.ndarray]:
    X = np.hstack([np.ones((z.shape[0], 1)), z, r[:, None], s[:, None], rep])
    Xt, Y, Wt = (torch.as_tensor(v, dtype=torch.float64) for v in (X, y, w))
    theta = torch.zeros(X.shape[1], dtype=torch.float64)
    if init is not None:
        theta += torch.as_tensor(init)
    theta.requires_grad_(True)
    total = float(w.sum())

    def loss() -> torch.Tensor:
        nll = torch.nn.functional.binary_cross_entropy_with_logits(
            Xt @ theta, Y, weight=Wt, reduction="sum"
        )
        return (nll + 1e-3 * (theta[1:] ** 2).sum()) / total

    _lbfgs([theta], loss, iters)
    th = theta.detach().numpy()
    d = z.shape[1]
    return float(th[0]), th[1 : 1 + d].copy(), float(th[1 + d]), th[2 + d :].copy()


def _held_out_loglik(
    z: np.ndarray,
    s: np.ndarray,
    rep: np.ndarray,
    a: np.ndarray,
    y: np.ndarray,
    params: tuple[np.ndarray, ...],
) -> float:
    b, beta, W, g = params
    logit = b[a] + z @ beta + np.einsum("nd,nd->n", z, W[a]) + s * g[0] + rep @ g[1:]
    return float(np.mean(y * logit - np.logaddexp(0.0, logit)))


def unit_rewards(data: LoggedData) -> np.ndarray:
    """The log's rewards on the unit scale (n,) (:func:`offrec.core.domain.to_unit`), after
    checking they lie in the declared domain: 0/1 for a binary log, within the bounds
    (to float32 rounding) for a continuous one. Raises ``InputError`` naming the row."""
    dom = data.reward_domain
    r = np.asarray(data.reward, np.float64)
    if is_binary(dom):
        bad, rule = (r != 0) & (r != 1), "0/1 clicks for a binary log"
    else:
        low, high = bounds(dom)
        lo, hi = min(low, float(np.float32(low))), max(high, float(np.float32(high)))
        bad, rule = ~((r >= lo) & (r <= hi)), f"in the declared domain [{low}, {high}]"
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        who = "the model-based estimators (mb, mb-dr)"
        raise InputError(f"reward must be {rule} for {who}; row {i} has {r[i]}")
    return to_unit(r, dom)


@torch_threads(1)  # one thread for the small networks; restored after
def fit_session_model(
    data: LoggedData,
    *,
    weights: np.ndarray | None = None,
    structure: SessionStructure | None = None,
    click_l2: float | None = CLICK_L2,
    seed: int = 0,
    warm_start: SessionModel | None = None,
    iters: int = 300,
) -> SessionModel:
    """Learn a :class:`SessionModel` from ``data`` (module docstring).

    Args:
        weights: optional (m,) weight per session (sorted session-id order), e.g. Poisson
            bootstrap weights; rows inherit their session's weight.
        click_l2: ridge strength on the per-action click slopes (:data:`CLICK_L2`);
            ``None`` picks it from ``L2_GRID`` by held-out log-likelihood on a seeded half
            of the sessions (better predictions, more bias for good targets).
        seed: seeds the held-out split for ``click_l2``.
        warm_start: start the click and leave fits from this model's parameters (and take
            its ``click_l2``), running at most ``iters`` L-BFGS iterations: the cheap refits
            of the bootstrap replicates.
    """
    st = structure or session_structure(data)
    x = np.asarray(data.context, np.float64)
    a = np.asarray(data.action, np.int64)
    dom = data.reward_domain
    r = unit_rewards(data)
    low, high = bounds(dom)
    A, d = data.n_actions, x.shape[1]
    w = np.ones(data.n_rows) if weights is None else np.asarray(weights, np.float64)[st.episode]
    with threadpool_limits(1):
        # 1. observation update from consecutive contexts
        has = st.next_row >= 0
        X = np.hstack([x[has], np.eye(A)[a[has]], r[has, None]])
        Y = x[st.next_row[has]]
        wh = w[has]
        G = (X * wh[:, None]).T @ X + 1e-8 * np.eye(X.shape[1])
        trans = np.linalg.lstsq(G, (X * wh[:, None]).T @ Y, rcond=None)[0]
        norms = np.linalg.norm(Y, axis=1)
        rho = float(norms.mean()) if norms.size else 0.0
        if not (rho > 0 and norms.std() <= DETERMINISTIC_TOL * rho):
            rho = 0.0
        resid = Y - _to_sphere(X @ trans, rho)  # with a norm invariant: after projecting
        spread = np.maximum(Y.std(axis=0), 1e-12)
        rstd = np.sqrt(np.average(resid**2, axis=0, weights=wh)) if wh.sum() > 0 else np.zeros(d)
        noise_std = np.where(rstd <= DETERMINISTIC_TOL * spread, 0.0, rstd)
        block = trans[d : d + A]
        effect = block - block.mean(axis=0, keepdims=True)
        x_mean = x.mean(axis=0)
        x_scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
        z = (x - x_mean) / x_scale
        s = np.einsum("nd,nd->n", x, effect[a])
        rep = (st.recent == a[:, None]).astype(np.float64)
        # 2. click model, ridge strength by held-out sessions
        if warm_start is not None:
            click_l2 = warm_start.click_l2
        if click_l2 is None:
            fold = session_folds(data.session_id, 2, seed)
            tr, te = fold == 0, fold == 1
            best = max(
                L2_GRID,
                key=lambda lam: _held_out_loglik(
                    z[te],
                    s[te],
                    rep[te],
                    a[te],
                    r[te],
                    _fit_click(z[tr], s[tr], rep[tr], a[tr], r[tr], w[tr], A, lam),
                ),
            )
            click_l2 = float(best)
        ws = warm_start
        b, beta, W, g = _fit_click(
            z,
            s,
            rep,
            a,
            r,
            w,
            A,
            click_l2,
            iters=iters,
            init=None if ws is None else (ws.click_b, ws.click_beta, ws.click_W, ws.click_g),
        )
        phi = 1.0
        if not is_binary(dom):  # dispersion of the bounded reward around its mean
            q = expit(b[a] + z @ beta + np.einsum("nd,nd->n", z, W[a]) + s * g[0] + rep @ g[1:])
            phi = float(np.clip(((r - q) ** 2) @ w / max((q * (1 - q)) @ w, 1e-12), 0.0, 1.0))
        # 3. leave model on rows that could end by the user's choice
        nt = ~np.asarray(data.truncated, bool)
        lc, eta, kappa, lg = _fit_leave(
            z[nt],
            s[nt],
            rep[nt],
            r[nt],
            np.asarray(data.terminated, np.float64)[nt],
            w[nt],
            iters=min(iters, 200),
            init=None
            if ws is None
            else np.r_[ws.leave_c, ws.leave_eta, ws.leave_kappa, ws.leave_g],
        )
    # 4. truncation rate per step
    H = st.horizon
    rows_at = np.bincount(st.step, weights=w, minlength=H)
    trunc_at = np.bincount(st.step, weights=w * np.asarray(data.truncated, np.float64), minlength=H)
    trunc = np.divide(trunc_at, rows_at, out=np.ones(H), where=rows_at > 0)
    trunc[-1] = 1.0
    return SessionModel(
        x_mean=x_mean,
        x_scale=x_scale,
        trans=trans,
        noise_std=noise_std,
        x_low=x.min(axis=0),
        x_high=x.max(axis=0),
        effect=effect,
        click_b=b,
        click_beta=beta,
        click_W=W,
        click_g=g,
        leave_c=lc,
        leave_eta=eta,
        leave_kappa=kappa,
        leave_g=lg,
        trunc_prob=trunc,
        click_l2=click_l2,
        r_max=float(max(np.asarray(data.reward).max(initial=0.0), 1e-12)),
        r_low=low,
        r_scale=high - low,
        dispersion=phi,
        next_norm=rho,
    )


# ------------------------------------------------------------------------------ rollouts
def _sample(dist: np.ndarray, u: np.ndarray) -> np.ndarray:
    c = np.cumsum(dist, axis=1)
    a = (c < (u * c[:, -1])[:, None]).sum(axis=1)
    return np.minimum(a, dist.shape[1] - 1)


def rollout_values(
    model: SessionModel,
    policy: DistFn,
    context: np.ndarray,
    recent: np.ndarray,
    step: np.ndarray,
    *,
    first_action: np.ndarray | None = None,
    n_rollouts: int = 4,
    rng: np.random.Generator,
) -> np.ndarray:
    r"""Expected reward-to-go (n,) of ``policy`` from each start ``(context, recent, step)``
    in ``model``: the mean over ``n_rollouts`` rollouts of :math:`\sum_t (a_0 + (b_0 - a_0)
    \sum_a \pi(a|x_t) \hat q(x_t, a, h_t))` (clicks-to-go for a binary log). With ``first_action`` the first action is fixed (a Q-value).

    Vectorized over starts x rollouts; the only loop is over steps (<= the horizon).
    """
    n0 = context.shape[0]
    K = n_rollouts
    slot = np.arange(n0 * K)  # row of (start, rollout) in ``total``
    x = np.repeat(np.asarray(context, np.float64), K, axis=0)
    h = np.repeat(np.asarray(recent, np.int64), K, axis=0)
    t = np.repeat(np.asarray(step, np.int64), K)
    fa = None if first_action is None else np.repeat(np.asarray(first_action, np.int64), K)
    total = np.zeros(n0 * K)
    H = model.horizon
    first = True
    with threadpool_limits(1):
        while slot.size:
            if first and fa is not None:
                a = fa
                q = expit(model.click_logit(x, a, h))
                v = q
            else:
                dist = np.asarray(policy(x.astype(np.float32)), np.float64)
                q_all = expit(model.click_logits_all(x, h))
                v = np.einsum("na,na->n", dist, q_all)
                a = _sample(dist, np.asarray(rng.random(x.shape[0])))
                q = q_all[np.arange(x.shape[0]), a]
            first = False
            total[slot] += model.r_low + model.r_scale * v
            u = rng.random((3, x.shape[0]))
            click = model.draw_reward(q, u[0])
            trunc = u[2] < model.trunc_prob[np.minimum(t, H - 1)]
            leave = (u[1] < model.leave_prob(x, a, click, h)) & ~trunc
            keep = ~(trunc | leave) & (t + 1 < H)
            x = model.next_context(x[keep], a[keep], click[keep], rng)
            h = np.hstack([a[keep, None], h[keep, :-1]])
            t = t[keep] + 1
            slot = slot[keep]
    return total.reshape(n0, K).mean(axis=1)
