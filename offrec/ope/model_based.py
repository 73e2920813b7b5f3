r"""Model-based session OPE: learn the observable dynamics from the log, roll the target out.

Everything is learned from the log's own columns (context, action, reward, terminated,
truncated, session order): nothing is read from a simulator config, so it works on
imported logs. With :math:`x` the context (d,), :math:`a` the action, :math:`r` the reward
on the unit scale (:math:`r' = (r - a_0)/(b_0 - a_0)` for a log whose declared reward
domain is :math:`[a_0, b_0]`, :func:`offrec.core.domain.to_unit`; the click itself for a
binary log) and :math:`h` the L actions shown just before
(:mod:`offrec.ope.session_data`):

1. **Observation update**, penalized least squares on consecutive logged contexts: a
   shared linear map plus per-action slopes shrunk toward it,

   .. math:: x' \approx [x,\ e_a,\ r]\, M + z B_a,\qquad
             M \in \mathbb R^{(d + A + 1) \times d},\ B \in \mathbb R^{A \times d \times d},
             \qquad \text{penalty } \lambda \textstyle\sum_a \lVert B_a\rVert_F^2

   (:math:`e_a` one-hot, :math:`z` the standardized context; one joint solve,
   :func:`_solve_update`). :math:`\lambda` is chosen from :data:`SLOPE_L2_GRID`
   (:math:`\infty`: the shared map alone, the model before issue 26) by held-out squared
   error on a seeded half of the sessions with the one-standard-error rule
   (:func:`_choose_slope_l2`): a world whose actions move the state differently (RECEnv,
   :math:`s' \propto (I + v_a v_a^\top) s`) gets slopes, one whose actions only add
   (offrec's fatigue) keeps the shared map. Each coordinate whose residual standard
   deviation is below ``DETERMINISTIC_TOL`` times its spread is *recognised* as
   deterministic (in offrec's world: the profile is copied, the step advances, fatigue
   decays and the shown topic's grows, the last click is the click); the others get
   Gaussian noise with their residual standard deviation in the rollouts. When every
   logged next context has the same norm :math:`\rho` (relative spread below
   ``DETERMINISTIC_TOL``: the env re-normalises its state, as SCOPE-RL's RECEnv does),
   that invariant is recognised too: the prediction is projected onto the sphere,
   :math:`x' \leftarrow \rho\, x'/\lVert x'\rVert`, before and after the noise, the fit
   targets the unprojected update (a fixed point, :func:`_fit_update`) and the residuals
   are measured after the projection (RECEnv binary, seed 0: 0.02 per coordinate with the
   shared map and plain least squares, 0.007 with the fixed point, 0 with the slopes:
   RECEnv's update is then recognised as deterministic). Rolled-out contexts are clipped
   to the logged range. The action's own effect :math:`\Delta_a` (row :math:`a` of the
   one-hot block of the plain shared least-squares map, :math:`\lambda = \infty`, minus
   the mean row) defines an *exposure feature* :math:`s(x, a) = x \cdot \Delta_a`: the
   current value of what showing :math:`a` adds whatever the state (the fatigue of its
   topic). It is read from the shared map even when slopes are chosen: the slopes' part
   :math:`z B_a` is a state-dependent move, already per-action linear in :math:`z` as
   the click model's own slopes are, and the feature then stays one function of the log
   whatever the chosen :math:`\lambda`.
2. **Click (reward) model**, a regression with per-action intercepts and slopes shrunk to
   a shared slope (ridge on :math:`W_a`): for clicks a logistic regression; for a bounded
   continuous reward either the fractional logit of :math:`r'` (the same Bernoulli
   log-likelihood with :math:`r' \in [0, 1]` as the target: a bounded regression of the
   mean, Papke & Wooldridge 1996) or the identity link (least squares of :math:`r'` on
   the same features, predictions clipped to [0, 1]), whichever has the smaller held-out
   squared error (``reward_link``; RECEnv's continuous mean :math:`(1 + \langle s,
   v_a\rangle)/2` is linear):

   .. math:: g(\hat q(x, a, h)) = b_a + z \cdot (\beta + W_a) + z^\top G e_a + c \cdot e_a
             + \gamma_0 s(x, a) + \sum_{j=1}^{L} \gamma_j [h_j = a],
             \qquad g = \operatorname{logit} \text{ or the identity.}

   The **shared term** :math:`z^\top G e_a + c \cdot e_a` (``click_shared``; :math:`G`
   (d, d), :math:`c` (d,), :math:`e_a = \Delta_a / \lVert \Delta_a\rVert` the direction of
   the action's effect, :func:`_shared_features`) lets actions that move the state alike
   share slopes and intercepts, fitted from all their rows: in offrec's world
   :math:`\Delta_a` is the fatigue its topic gains, so :math:`G` holds one slope per topic
   and each item's own :math:`W_a` is its departure from its topic. Without it a rarely
   logged item has only its own few rows for its d slopes: under the light ridge
   :data:`CLICK_L2` they overfit (offrec's world with 1,000 items, about 30 held-out rows
   per item: the learned bandits 12-24% low in 3 of the 4 seeds measured, the logger
   itself 9% low on seed 0), and shrunk harder toward one slope for all they lose the
   items' topic preferences (a topic world's greedy target 26-28% low at ridge 10,
   ``tests/ope/test_model_based_shared.py``). With it, the ridge on :math:`W_a` shrinks
   toward the shared structure, and its strength is chosen from
   :data:`SHARED_CLICK_L2_GRID`: the weakest whose held-out error on the logger's own
   return, :math:`\sum_t (r'_t - \hat q_t)` per session, is within one standard error
   of the smallest (:func:`_calibrated_choice`). That error is the bias a value estimate
   inherits, which the held-out log-likelihood does not weigh: on RECEnv, where the
   clicks are near coin flips, the log-likelihood prefers the strongest shrinkage, which
   put the greedy target 8% low instead of 3%. The term is kept when its held-out loss at
   that strength beats the model without it (at :data:`CLICK_L2`) by one standard error.

   The repeat terms :math:`\gamma_{1..L}` are kept only when they lower the held-out
   loss beyond one standard error (``click_recent``): offrec's world penalises repeats;
   in RECEnv, which does not, their noise was paid by a target that repeats its item at
   every step.
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

Assumptions: the next context depends on (x, a, r') through a per-action affine map,
possibly followed by the norm projection (or the misfit is flagged by the residual
noise), the click and leave probabilities are logistic (or for a continuous reward's
mean, linear) in the features above, and the Markov state is (x, h). Every model-class
choice (:attr:`SessionModel.choices`) is made once on the log and reused by the refits
of the interval and the cross-fitting folds. What the log never shows (an action the logger
never takes in some region) is extrapolated by the shared slope: the estimate carries a
support warning from :mod:`offrec.ope.sequential` when the target leaves the support.

References: Paduraru (2013), *Off-policy evaluation in Markov decision processes* (PhD
thesis, McGill; model-based OPE); Jiang & Li (2016), *Doubly robust off-policy value
evaluation for reinforcement learning*, ICML; Voloshin et al. (2021), *Empirical study
of off-policy policy evaluation for reinforcement learning*, NeurIPS Datasets (model-based
estimators as a strong baseline when the model class is right).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch
from scipy import sparse
from scipy.special import expit
from threadpoolctl import threadpool_limits

from offrec.core.domain import bounds, is_binary, to_unit
from offrec.core.errors import InputError
from offrec.core.threads import torch_threads
from offrec.logs.data import LoggedData
from offrec.ope.session_data import SessionStructure, session_folds, session_structure

DETERMINISTIC_TOL = 1e-3
SHARED_CLICK_L2_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""Ridge strengths on the per-action click slopes tried with the shared term when
``click_l2=None`` (the weakest within one standard error of the smallest held-out error on
the logger's own return is taken, :func:`_calibrated_choice`)."""
SLOPE_L2_GRID = (math.inf, 1000.0, 100.0, 10.0, 1.0)
r"""Ridge strengths tried for the per-action slopes :math:`B_a` of the observation update
when ``slope_l2=None`` (``inf``: no per-action slopes, the shared map alone). In units of
rows: the penalty :math:`\lambda \lVert B_a\rVert^2` weighs like :math:`\lambda` extra
rows of standardized context at which :math:`B_a` predicts nothing."""
REWARD_LINKS = ("logit", "identity")
UPDATE_ITERS = 50  # fixed-point rounds of the update's fit under a norm invariant
MIN_DISPERSION = 1e-4  # floor of phi in the click fit's penalty (conditioning)
_CHUNK = 1 << 21  # floats per chunk of (rows, d, d) products: bounded memory
CLICK_L2 = 0.3
"""Default ridge strength on the per-action click slopes :math:`W_a` (penalty
``CLICK_L2 * ||W||^2`` on the summed log-loss). Shrinking the slopes pulls the predicted
click rates of the actions a good target picks (high for the user) toward the average, so
the value of targets better than the logger is underestimated: with the strength that
held-out log-likelihood picks (10 on session_rl seeds 0-2) the learned policies came out
3-6% low; with 0.3 their errors were -2%..+2% (session_rl seeds 1-2, measured in the
study). Less shrinkage costs variance, which the intervals carry."""
SHARED_L2 = 1.0
"""Ridge strength on the click model's shared term :math:`(G, c)` (a few Bernoulli-sized
rows' worth: its d^2 + d parameters are fitted from every row of the log)."""
DistFn = Callable[[np.ndarray], np.ndarray]


class ModelChoices(TypedDict):
    """The model-class choices :func:`fit_session_model` makes from the log (ridge strengths,
    reward link); refits on resampled or folded sessions reuse them (``**model.choices``)."""

    click_l2: float
    slope_l2: float
    reward_link: str
    click_recent: bool
    click_shared: bool


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
    slopes: np.ndarray | None = None  # (A, d, d) per-action slopes B_a on z; None: shared map
    slope_l2: float = math.inf  # ridge strength of B_a (inf: no per-action slopes)
    reward_link: str = "logit"  # "logit" or "identity" (bounded continuous rewards only)
    click_recent: bool = True  # the click model reads the recent actions (else click_g[1:] = 0)
    click_shared: bool = False  # the click model's shared term z G e_a + c e_a is on
    shared_E: np.ndarray | None = None  # (A, d) its action features e_a (_shared_features)
    click_G: np.ndarray | None = None  # (d, d)
    click_c: np.ndarray | None = None  # (d,)

    @property
    def choices(self) -> ModelChoices:
        """The model-class choices this model was fitted with (:class:`ModelChoices`)."""
        return ModelChoices(
            click_l2=self.click_l2,
            slope_l2=self.slope_l2,
            reward_link=self.reward_link,
            click_recent=self.click_recent,
            click_shared=self.click_shared,
        )

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
        """Click logits of every action (n, A) (linear scores, :meth:`click_logit`)."""
        z = self._z(x)
        out = self.click_b[None, :] + (z @ self.click_beta)[:, None] + z @ self.click_W.T
        out += self.click_g[0] * (x @ self.effect.T)
        if self.shared_E is not None and self.click_G is not None and self.click_c is not None:
            out += (z @ self.click_G) @ self.shared_E.T + (self.shared_E @ self.click_c)[None, :]
        rows = np.arange(x.shape[0])
        for j in range(recent.shape[1]):
            ok = recent[:, j] >= 0
            out[rows[ok], recent[ok, j]] += self.click_g[1 + j]
        return out

    def reward_mean_all(self, x: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """Mean unit-scale reward (click probability) of every action (n, A): the link's
        inverse of :meth:`click_logits_all` (:func:`_link_mean`)."""
        return _link_mean(self.click_logits_all(x, recent), self.reward_link)

    def reward_mean(self, x: np.ndarray, a: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """Mean unit-scale reward of actions ``a`` (n,)."""
        return _link_mean(self.click_logit(x, a, recent), self.reward_link)

    def click_logit(self, x: np.ndarray, a: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """Click logit of actions ``a`` (n,) (the linear score; the mean itself, before
        clipping, for the identity link)."""
        z = self._z(x)
        s = np.einsum("nd,nd->n", x, self.effect[a])
        rep = (recent == a[:, None]).astype(np.float64)
        return _score(z, s, rep, a, self._click_params, self.shared_E)

    @property
    def _click_params(self) -> tuple[np.ndarray, ...]:
        """(b, beta, W, g, G, c) of the click model (:func:`_score`)."""
        d = self.click_beta.shape[0]
        G = np.zeros((d, d)) if self.click_G is None else self.click_G
        c = np.zeros(d) if self.click_c is None else self.click_c
        return (self.click_b, self.click_beta, self.click_W, self.click_g, G, c)

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
        """Next context (n, d): the learned update (shared map plus per-action slopes),
        noise where not deterministic."""
        out = self.project(self.predict_next(x, a, r))
        noisy = self.noise_std > 0
        if noisy.any():
            out[:, noisy] += rng.normal(size=(x.shape[0], int(noisy.sum()))) * self.noise_std[noisy]
            out = self.project(out)
        return np.clip(out, self.x_low, self.x_high)

    def predict_next(self, x: np.ndarray, a: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The update's mean (n, d) before the projection and the noise:
        :math:`[x, e_a, r] M + z B_a`."""
        return _update_predict(self.trans, self.slopes, x, self._z(x), a, r)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` (n, d) scaled to the norm invariant :attr:`next_norm`
        (:func:`_to_sphere`)."""
        return _to_sphere(x, self.next_norm)


def _link_mean(score: np.ndarray, link: str) -> np.ndarray:
    r"""Mean unit-scale reward from the linear score: :math:`\sigma(\eta)` for the logit
    link, :math:`\operatorname{clip}(\eta, 0, 1)` for the identity link."""
    return expit(score) if link == "logit" else np.clip(score, 0.0, 1.0)


def _slope_term(z: np.ndarray, a: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """Rows :math:`z_i B_{a_i}` (n, d) of per-action slopes ``slopes`` (A, d, d), in chunks
    of rows so the gathered (rows, d, d) block stays within ``_CHUNK`` floats."""
    n, d = z.shape
    out = np.empty((n, slopes.shape[2]))
    step = max(1, _CHUNK // max(d * slopes.shape[2], 1))
    for i in range(0, n, step):  # a loop over chunks of rows, not over rows
        out[i : i + step] = np.einsum("nd,nde->ne", z[i : i + step], slopes[a[i : i + step]])
    return out


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
    link: str = "logit",
    dispersion: float = 1.0,
    shared: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    r"""Weighted fit of the click (reward) model; returns (b, beta, W, g, G, c). ``init``
    warm-starts from earlier parameters.

    ``shared`` (A, d): the actions' features :math:`e_a` of the shared term
    :math:`z^\top G e_a + c \cdot e_a` (the directions of the action effects,
    :func:`_shared_features`),
    with a light ridge ``SHARED_L2`` on :math:`(G, c)`; ``None``: no shared term (G, c = 0).

    ``link="logit"``: the Bernoulli log-loss of :math:`\sigma(\eta)` (a fractional logit for
    :math:`y \in [0, 1]`). ``link="identity"``: least squares of :math:`\eta` itself,
    :math:`\tfrac12 \sum w (y - \eta)^2`, with the penalty divided by :math:`v = \bar y (1 -
    \bar y)`: near the mean the log-loss is :math:`\tfrac12\sum (y - \mu)^2 / v` and a
    logit slope is :math:`1/v` times a slope of the mean, so the same ``l2`` shrinks both
    links' slopes alike.

    ``dispersion`` :math:`\phi`: the data term is a quasi-likelihood, divided by
    :math:`\phi = \operatorname{Var}(y|x)/(\mu(1 - \mu))` (McCullagh & Nelder 1989, ch. 9),
    so the penalty weighs ``l2`` Bernoulli-sized observations: a continuous reward with
    little noise (RECEnv's is deterministic, :math:`\phi \approx 0`) is shrunk
    accordingly less. Clicks have :math:`\phi = 1`."""
    d = z.shape[1]
    Z, S, R = (torch.as_tensor(v, dtype=torch.float64) for v in (z, s, rep))
    A_, Y, Wt = torch.as_tensor(a), torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(w)
    total = float(w.sum())
    disp = float(np.clip(dispersion, MIN_DISPERSION, 1.0))
    ybar = float(np.clip(y @ w / max(total, 1e-12), 1e-3, 1 - 1e-3))
    if link == "logit":
        base = float(np.log(max(y @ w, 1e-3) / max((1 - y) @ w, 1e-3)))
        pen_scale = 1.0
    else:
        base, pen_scale = ybar, 1.0 / (ybar * (1 - ybar))
    b = torch.full((n_actions,), base, dtype=torch.float64, requires_grad=True)
    beta = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    W = torch.zeros((n_actions, d), dtype=torch.float64, requires_grad=True)
    g = torch.zeros(1 + R.shape[1], dtype=torch.float64, requires_grad=True)
    G = torch.zeros((d, d), dtype=torch.float64, requires_grad=shared is not None)
    c = torch.zeros(d, dtype=torch.float64, requires_grad=shared is not None)
    if init is not None:
        with torch.no_grad():
            for t, v in zip((b, beta, W, g, G, c), init, strict=True):
                t.copy_(torch.as_tensor(v))
    E = None if shared is None else torch.as_tensor(shared, dtype=torch.float64)[A_]

    def loss() -> torch.Tensor:
        logit = b[A_] + Z @ beta + (Z * W[A_]).sum(1) + S * g[0] + R @ g[1:]
        if E is not None:
            logit = logit + ((Z @ G) * E).sum(1) + E @ c
        if link == "logit":
            nll = torch.nn.functional.binary_cross_entropy_with_logits(
                logit, Y, weight=Wt, reduction="sum"
            )
        else:
            nll = 0.5 * (Wt * (Y - logit) ** 2).sum()
        pen = l2 * (W * W).sum() + 1.0 * ((b - b.mean()) ** 2).sum()
        if E is not None:
            pen = pen + SHARED_L2 * ((G * G).sum() + (c * c).sum())
        return (nll + disp * pen_scale * pen) / total

    _lbfgs([b, beta, W, g] + ([G, c] if shared is not None else []), loss, iters)
    return tuple(t.detach().numpy().copy() for t in (b, beta, W, g, G, c))


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


def _score(
    z: np.ndarray,
    s: np.ndarray,
    rep: np.ndarray,
    a: np.ndarray,
    params: tuple[np.ndarray, ...],
    shared: np.ndarray | None = None,
) -> np.ndarray:
    """The click model's linear score (n,) of logged rows under ``params`` = (b, beta, W, g,
    G, c); ``shared`` as in :func:`_fit_click`."""
    b, beta, W, g, G, c = params
    out = b[a] + z @ beta + np.einsum("nd,nd->n", z, W[a]) + s * g[0] + rep @ g[1:]
    if shared is not None:
        e = shared[a]
        out += np.einsum("nd,nd->n", z @ G, e) + e @ c
    return out


def _shared_features(effect: np.ndarray) -> np.ndarray | None:
    r"""The actions' features of the click model's shared term (A, d): the directions
    :math:`e_a = \Delta_a / \lVert\Delta_a\rVert` of the action effects (0 for an action
    whose effect is below 1e-6 of their root-mean-square norm); ``None`` when no action
    moves the state (a bandit log): then the term has nothing to share."""
    norm = np.linalg.norm(effect, axis=1)
    rms = float(np.sqrt((norm**2).mean())) if effect.size else 0.0
    if not rms > 1e-12:
        return None
    return np.divide(
        effect, norm[:, None], out=np.zeros_like(effect), where=norm[:, None] > 1e-6 * rms
    )


def _group_sum(a: np.ndarray, v: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of the rows of ``v`` (n, k) per group ``a`` (n,): (n_groups, k), through a
    sparse one-hot product (no dense (n, n_groups) matrix)."""
    n = a.shape[0]
    onehot = sparse.csr_matrix((np.ones(n), (a, np.arange(n))), shape=(n_groups, n))
    return np.asarray(onehot @ v)


@dataclass(frozen=True)
class _UpdateMoments:
    r"""Weighted sufficient statistics of the observation update's least squares, with
    :math:`X = [x, e_a, r]` (n, p), p = d + A + 1, and targets :math:`Y` (n, k):

    - ``gram`` (p, p) :math:`X^\top W X` and ``xty`` (p, k) :math:`X^\top W Y`;
    - per action :math:`a` (rows with that action): ``gz`` (A, d, d) :math:`\sum w z z^\top`,
      ``zx`` (A, d, d) :math:`\sum w z x^\top`, ``zr`` (A, d) :math:`\sum w z r`, ``zs``
      (A, d) :math:`\sum w z` and ``zy`` (A, d, k) :math:`\sum w z y^\top`.

    Sizes are fixed whatever the number of rows: p^2 + A d (2d + k + 2) floats."""

    gram: np.ndarray
    xty: np.ndarray
    gz: np.ndarray
    zx: np.ndarray
    zr: np.ndarray
    zs: np.ndarray
    zy: np.ndarray


def _update_moments(
    x: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
    r: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    n_actions: int,
    slopes: bool = True,
) -> _UpdateMoments:
    """:class:`_UpdateMoments` of the rows given. The one-hot block's Gram matrix is the
    diagonal of per-action weights, so no (n, A) matrix is built; the per-action outer
    products are accumulated over chunks of rows (each chunk's (rows, d, 2d + k) block
    stays within ``_CHUNK`` floats) by sparse one-hot sums: no loop per row or action.
    ``slopes=False`` skips the per-action blocks (zeros)."""
    d, A = x.shape[1], n_actions
    xw, rw = x * w[:, None], r * w
    G = np.zeros((d + A + 1, d + A + 1))
    G[:d, :d] = xw.T @ x
    G[:d, d : d + A] = _group_sum(a, xw, A).T
    G[:d, -1] = xw.T @ r
    G[d : d + A, d : d + A] = np.diag(np.bincount(a, weights=w, minlength=A))
    G[d : d + A, -1] = np.bincount(a, weights=rw, minlength=A)
    G[-1, -1] = rw @ r
    G = np.triu(G) + np.triu(G, 1).T
    zw = z * w[:, None]
    zz = _per_action_outer(zw, np.hstack([z, x]), a, A) if slopes else np.zeros((A, d, 2 * d))
    xty, zy = _target_moments(x, z, a, r, y, w, A, slopes)
    return _UpdateMoments(
        gram=G,
        xty=xty,
        gz=zz[:, :, :d],
        zx=zz[:, :, d:],
        zr=_group_sum(a, zw * r[:, None], A),
        zs=_group_sum(a, zw, A),
        zy=zy,
    )


def _per_action_outer(zw: np.ndarray, v: np.ndarray, a: np.ndarray, n_actions: int) -> np.ndarray:
    """Per-action sums of the outer products of the rows of ``zw`` (n, d) and ``v`` (n, k):
    (A, d, k), accumulated over chunks of rows (each chunk's (rows, d, k) block stays within
    ``_CHUNK`` floats) by sparse one-hot sums: no loop per row or action."""
    d, k = zw.shape[1], v.shape[1]
    out = np.zeros((n_actions, d * k))
    step = max(1, _CHUNK // max(d * k, 1))
    for i in range(0, a.shape[0], step):  # chunks of rows bound the outer products' memory
        sl = slice(i, i + step)
        out += _group_sum(a[sl], (zw[sl, :, None] * v[sl, None, :]).reshape(-1, d * k), n_actions)
    return out.reshape(n_actions, d, k)


def _target_moments(
    x: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
    r: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    n_actions: int,
    slopes: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The parts of :class:`_UpdateMoments` that depend on the targets ``y``: ``xty`` and
    ``zy``."""
    A, d, k = n_actions, x.shape[1], y.shape[1]
    yw = y * w[:, None]
    xty = np.vstack([x.T @ yw, _group_sum(a, yw, A), r @ yw])
    zy = _per_action_outer(z * w[:, None], y, a, A) if slopes else np.zeros((A, d, k))
    return xty, zy


def _solve_update(m: _UpdateMoments, lam: float) -> tuple[np.ndarray, np.ndarray | None]:
    r"""The observation update's penalized least squares, jointly in the shared map and the
    per-action slopes:

    .. math:: \min_{M, B} \sum_i w_i \lVert y_i - X_i M - z_i B_{a_i}\rVert^2
              + \lambda \sum_a \lVert B_a\rVert_F^2

    (:math:`X_i = [x_i, e_{a_i}, r_i]`; the per-action intercepts in :math:`M` are not
    penalized, so :math:`B_a` shrinks toward the shared slope, not toward 0). For fixed
    :math:`M`, :math:`B_a = (G_a + \lambda I)^{-1}(C_a - Q_a M)` with :math:`G_a = \sum_a w z
    z^\top`, :math:`C_a = \sum_a w z y^\top`, :math:`Q_a = \sum_a w z X^\top`; substituted
    back (a Schur complement over the block-diagonal slope block), :math:`M` solves

    .. math:: \Big(X^\top W X - \sum_a Q_a^\top (G_a + \lambda I)^{-1} Q_a\Big) M
              = X^\top W Y - \sum_a Q_a^\top (G_a + \lambda I)^{-1} C_a .

    One batched solve over actions and one (p, p) solve; ``lam = inf`` is the shared map
    alone. Returns (M (p, k), B (A, d, k) or None)."""
    p = m.gram.shape[0]
    ridge = 1e-8 * np.eye(p)
    if not math.isfinite(lam):
        return np.linalg.lstsq(m.gram + ridge, m.xty, rcond=None)[0], None
    A, d = m.gz.shape[0], m.gz.shape[1]
    # F = (G_a + lam I)^{-1} [Q_x | Q_s | Q_r | C], batched over actions
    rhs = np.concatenate([m.zx, m.zs[:, :, None], m.zr[:, :, None], m.zy], axis=2)
    F = np.linalg.solve(m.gz + lam * np.eye(d)[None], rhs)
    Fx, Fs, Fr, Fc = F[:, :, :d], F[:, :, d], F[:, :, d + 1], F[:, :, d + 2 :]
    qx, qs, qr = m.zx, m.zs, m.zr
    S = np.zeros((p, p))
    S[:d, :d] = np.einsum("adi,adj->ij", qx, Fx)
    S[:d, d : d + A] = np.einsum("adi,ad->ia", qx, Fs)
    S[:d, -1] = np.einsum("adi,ad->i", qx, Fr)
    S[d : d + A, d : d + A] = np.diag(np.einsum("ad,ad->a", qs, Fs))
    S[d : d + A, -1] = np.einsum("ad,ad->a", qs, Fr)
    S[-1, -1] = np.einsum("ad,ad->", qr, Fr)
    S = np.triu(S) + np.triu(S, 1).T
    T = np.vstack(
        [
            np.einsum("adi,adk->ik", qx, Fc),
            np.einsum("ad,adk->ak", qs, Fc),
            np.einsum("ad,adk->k", qr, Fc)[None],
        ]
    )
    M = np.linalg.lstsq(m.gram - S + ridge, m.xty - T, rcond=None)[0]
    # B_a = F_C - F_Q M, with Q_a M = Q_x M_x + Q_s M_a + Q_r m_r
    B = (
        Fc
        - np.einsum("adj,jk->adk", Fx, M[:d])
        - Fs[:, :, None] * M[d : d + A][:, None, :]
        - Fr[:, :, None] * M[-1][None, None, :]
    )
    return M, B


def _shared_predict(trans: np.ndarray, x: np.ndarray, a: np.ndarray, r: np.ndarray) -> np.ndarray:
    d, A = x.shape[1], trans.shape[0] - x.shape[1] - 1
    return x @ trans[:d] + trans[d : d + A][a] + np.outer(r, trans[-1])


def _fit_update(
    mom: _UpdateMoments,
    lam: float,
    rows: tuple[np.ndarray, ...],
    rho: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""The observation update (M, B) at slope strength ``lam`` (:func:`_solve_update`) from
    ``mom``, the moments of ``rows`` = (x, z, a, r, y, w).

    With a norm invariant (``rho > 0``) the logged next contexts are the projections
    :math:`y = \rho\,u/\lVert u\rVert` of an unseen update :math:`u`, and least squares of
    :math:`y` itself weighs each row's direction by :math:`1/\lVert u\rVert`: on a sphere
    world whose truth is a per-action linear map before the projection, the projected fit
    was 0.06 off per coordinate. So the fit targets :math:`u` instead, by a fixed point:
    :math:`y_i` rescaled by its current prediction's norm, :math:`c_i = \lVert \hat
    u_i\rVert / \overline{\lVert \hat u\rVert}` (mean 1, so the scale does not drift),
    refitted until the projected predictions move by less than ``1e-7`` (at most
    ``UPDATE_ITERS`` rounds). When the truth is linear-then-projected, :math:`c_i y_i
    \propto u_i` and the fixed point is exact."""
    x, z, a, r, y, w = rows
    trans, slopes = _solve_update(mom, lam)
    if rho <= 0:
        return trans, slopes
    A = trans.shape[0] - x.shape[1] - 1
    prev = None
    for _ in range(UPDATE_ITERS):  # a fixed point over whole arrays, a few dozen rounds at most
        pred = _update_predict(trans, slopes, x, z, a, r)
        proj = _to_sphere(pred, rho)
        if prev is not None and np.abs(proj - prev).max(initial=0.0) < 1e-7 * rho:
            break
        prev = proj
        c = np.linalg.norm(pred, axis=1)
        c = c / max(float(c @ w) / max(float(w.sum()), 1e-12), 1e-300)
        xty, zy = _target_moments(x, z, a, r, y * c[:, None], w, A, slopes is not None)
        trans, slopes = _solve_update(dataclasses.replace(mom, xty=xty, zy=zy), lam)
    return trans, slopes


def _update_predict(
    trans: np.ndarray,
    slopes: np.ndarray | None,
    x: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
    r: np.ndarray,
) -> np.ndarray:
    """The update's mean (n, d) before the projection: :math:`[x, e_a, r] M + z B_a`
    (``slopes`` None: the shared map alone)."""
    pred = _shared_predict(trans, x, a, r)
    if slopes is not None:
        pred += _slope_term(z, a, slopes)
    return pred


def _choose_slope_l2(
    x: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
    r: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    session: np.ndarray,
    held: np.ndarray,
    n_actions: int,
    rho: float,
) -> float:
    r"""Ridge strength of the per-action slopes from :data:`SLOPE_L2_GRID` by held-out
    squared error. Fitted on the rows with ``held`` False, scored on the others: the
    projected prediction's squared error per coordinate over the coordinate's spread,
    summed per session (``session`` (n,) index). The one-standard-error rule (Hastie,
    Tibshirani & Friedman, *Elements of Statistical Learning*, 2009, sec. 7.10) keeps the
    strongest shrinkage (``inf`` first: no per-action slopes) whose mean held-out error is
    within one standard error (over held-out sessions, paired) of the best, plus the
    rounding level of a deterministic update (``DETERMINISTIC_TOL`` of each coordinate's
    spread), so that where slopes do not help (offrec's shared dynamics, whose update is
    exact without them) the shared map is kept."""
    tr, te = ~held, held
    if not tr.any() or not te.any():
        return math.inf
    rows = tuple(v[tr] for v in (x, z, a, r, y, w))
    xt, zt, at, rt, yt, wt = rows
    mom = _update_moments(xt, zt, at, rt, yt, wt, n_actions)
    spread = y.std(axis=0)
    spread = np.maximum(spread, 1e-6 * spread.max() + 1e-12)
    sess, idx = np.unique(session[te], return_inverse=True)
    errs = []
    for lam in SLOPE_L2_GRID:  # a handful of strengths
        trans, slopes = _fit_update(mom, lam, rows, rho)
        pred = _update_predict(trans, slopes, x[te], z[te], a[te], r[te])
        e = (((y[te] - _to_sphere(pred, rho)) / spread) ** 2).sum(axis=1) * w[te]
        errs.append(np.bincount(idx, weights=e, minlength=sess.size))
    # differences below the "deterministic" level (every coordinate within DETERMINISTIC_TOL
    # of its spread on every row) are rounding, not fit: offrec's update is exact without slopes
    tol = DETERMINISTIC_TOL**2 * y.shape[1] * float(np.bincount(idx, weights=w[te]).mean())
    return float(SLOPE_L2_GRID[_one_se_choice(errs, tol)])


def _calibrated_choice(resid: list[np.ndarray]) -> int:
    """Index of the first candidate whose mean residual per session (``resid[k]`` (m,), a
    held-out error on the logger's own return) is, in absolute value, within one standard
    error of that mean (``std(resid[k]) / sqrt(m)``) of the smallest: the candidates whose
    error the held-out sessions cannot tell from the smallest, the first of them."""
    err = np.array(resid)
    m = err.shape[1]
    mean = np.abs(err.mean(axis=1))
    se = err.std(axis=1, ddof=1) / math.sqrt(m) if m > 1 else np.zeros(len(resid))
    return int(np.flatnonzero(mean <= mean.min() + se)[0])


def _one_se_choice(losses: list[np.ndarray], tol: float = 0.0) -> int:
    """Index of the first (simplest) candidate whose mean held-out loss is within one
    standard error of the best's (paired over the held-out sessions: ``losses[k]`` (m,) is
    candidate ``k``'s loss per session), plus ``tol``: the one-standard-error rule (Hastie,
    Tibshirani & Friedman, 2009, sec. 7.10)."""
    err = np.array(losses)
    mean = err.mean(axis=1)
    best = int(np.argmin(mean))
    m = err.shape[1]
    se = (err - err[best]).std(axis=1, ddof=1) / np.sqrt(m) if m > 1 else np.zeros(len(err))
    return int(np.flatnonzero(mean - mean[best] <= se + tol)[0])


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
    click_l2: float | None = None,
    slope_l2: float | None = None,
    reward_link: str | None = None,
    click_recent: bool | None = None,
    click_shared: bool | None = None,
    seed: int = 0,
    warm_start: SessionModel | None = None,
    iters: int = 300,
) -> SessionModel:
    r"""Learn a :class:`SessionModel` from ``data`` (module docstring).

    Args:
        weights: optional (m,) weight per session (sorted session-id order), e.g. Poisson
            bootstrap weights; rows inherit their session's weight.
        click_l2: ridge strength on the per-action click slopes :math:`W_a`; ``None``:
            :data:`CLICK_L2` without the shared term, and with it the weakest strength of
            :data:`SHARED_CLICK_L2_GRID` whose held-out error on the logger's own return is
            within one standard error of the smallest (:func:`_calibrated_choice`; the
            slopes are then shrunk toward the shared term, not toward one slope for all).
        click_shared: whether the click model has the shared term :math:`z^\top G e_a + c
            \cdot e_a` over the actions' effects (module docstring); ``None``: kept when
            its held-out loss, at the slope strength chosen for it, beats the model without
            it (at :data:`CLICK_L2`) by one standard error.
        slope_l2: ridge strength on the observation update's per-action slopes ``B_a``
            (``math.inf``: none); ``None`` picks it from :data:`SLOPE_L2_GRID` by held-out
            squared error on a seeded half of the sessions (:func:`_choose_slope_l2`).
        reward_link: ``"logit"`` or ``"identity"`` (:data:`REWARD_LINKS`); ``None`` keeps
            the logit for a binary log and, for a bounded continuous reward, picks the link
            with the smaller held-out squared error of the mean on a seeded half.
        click_recent: whether the click model reads the recent actions (the repeat
            features :math:`[h_j = a]`); ``None`` decides by held-out loss on a seeded half
            of the sessions with the one-standard-error rule, which drops them unless they
            predict better (:func:`_one_se_choice`).
        seed: seeds the held-out split of every choice above.
        warm_start: start the click and leave fits from this model's parameters (and take
            its choices, :attr:`SessionModel.choices`), running at most ``iters`` L-BFGS
            iterations: the cheap refits of the bootstrap replicates.
    """
    st = structure or session_structure(data)
    x = np.asarray(data.context, np.float64)
    a = np.asarray(data.action, np.int64)
    dom = data.reward_domain
    r = unit_rewards(data)
    low, high = bounds(dom)
    A, d = data.n_actions, x.shape[1]
    w = np.ones(data.n_rows) if weights is None else np.asarray(weights, np.float64)[st.episode]
    ws = warm_start
    if ws is not None:
        click_l2, slope_l2, reward_link = ws.click_l2, ws.slope_l2, ws.reward_link
        click_recent, click_shared = ws.click_recent, ws.click_shared
    if reward_link is not None and reward_link not in REWARD_LINKS:
        raise InputError(f"reward_link must be one of {REWARD_LINKS}; got {reward_link!r}")
    if is_binary(dom) and reward_link not in (None, "logit"):
        raise InputError(
            f"reward_link must be 'logit' for a binary (click) log; got {reward_link!r}"
        )
    if slope_l2 is not None and not slope_l2 > 0:
        raise InputError(f"slope_l2 must be > 0 (math.inf: no per-action slopes); got {slope_l2}")
    if click_l2 is not None and not (math.isfinite(click_l2) and click_l2 >= 0):
        raise InputError(f"click_l2 must be a finite number >= 0; got {click_l2}")
    held = session_folds(data.session_id, 2, seed) == 1  # (n,) the held-out half of the choices
    x_mean = x.mean(axis=0)
    x_scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    z = (x - x_mean) / x_scale
    with threadpool_limits(1):
        # 1. observation update from consecutive contexts: shared map, then per-action slopes
        has = st.next_row >= 0
        xh, ah, rh, zh, wh = x[has], a[has], r[has], z[has], w[has]
        Y = x[st.next_row[has]]
        norms = np.linalg.norm(Y, axis=1)
        rho = float(norms.mean()) if norms.size else 0.0
        if not (rho > 0 and norms.std() <= DETERMINISTIC_TOL * rho):
            rho = 0.0
        if slope_l2 is None:
            slope_l2 = _choose_slope_l2(xh, zh, ah, rh, Y, wh, st.episode[has], held[has], A, rho)
        mom = _update_moments(xh, zh, ah, rh, Y, wh, A, slopes=math.isfinite(slope_l2))
        block = _solve_update(mom, math.inf)[0][d : d + A]  # the plain shared map's effects
        effect = block - block.mean(axis=0, keepdims=True)
        trans, slopes = _fit_update(mom, slope_l2, (xh, zh, ah, rh, Y, wh), rho)
        pred = _update_predict(trans, slopes, xh, zh, ah, rh)
        resid = Y - _to_sphere(pred, rho)  # with a norm invariant: after projecting
        spread = np.maximum(Y.std(axis=0), 1e-12) if len(Y) else np.ones(d)  # (bandit log)
        rstd = np.sqrt(np.average(resid**2, axis=0, weights=wh)) if wh.sum() > 0 else np.zeros(d)
        noise_std = np.where(rstd <= DETERMINISTIC_TOL * spread, 0.0, rstd)
        s = np.einsum("nd,nd->n", x, effect[a])
        rep = (st.recent == a[:, None]).astype(np.float64)
        tr, te = ~held, held
        _, sess_te = np.unique(st.episode[te], return_inverse=True)
        no_rep = np.zeros_like(rep)
        E = _shared_features(effect)
        if E is None:
            click_shared = False

        def held_loss(
            lam: float, link: str, rp: np.ndarray, sh: np.ndarray | None = None
        ) -> np.ndarray:
            """Per-session held-out loss of the click model fitted on the other half: the
            negative Bernoulli log-likelihood (binary), the squared error of the mean
            (continuous)."""
            return held_fit(lam, link, rp, sh)[0]

        def held_fit(
            lam: float, link: str, rp: np.ndarray, sh: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
            r"""Per held-out session: the loss (:func:`held_loss`) and the residual sum
            :math:`\sum_t (r'_t - \hat q_t)` (the model's error on the logger's own return)."""
            p = _fit_click(z[tr], s[tr], rp[tr], a[tr], r[tr], w[tr], A, lam, link=link, shared=sh)
            eta = _score(z[te], s[te], rp[te], a[te], p, sh)
            if is_binary(dom):
                loss = np.logaddexp(0.0, eta) - r[te] * eta
            else:
                loss = (r[te] - _link_mean(eta, link)) ** 2
            resid = r[te] - _link_mean(eta, link)
            return (
                np.bincount(sess_te, weights=loss * w[te]),
                np.bincount(sess_te, weights=resid * w[te]),
            )

        # 2. reward model: the link (a bounded continuous reward), the shared term and its
        #    slopes' ridge strength, then whether the recent actions enter it, by held-out
        #    sessions
        if is_binary(dom):
            reward_link = "logit"
        if not (tr.any() and te.any()):  # too few sessions to hold any out: the defaults
            reward_link = reward_link or "logit"
            click_recent = True if click_recent is None else click_recent
            click_shared = False if click_shared is None else click_shared
            click_l2 = CLICK_L2 if click_l2 is None else click_l2
        lam0 = CLICK_L2 if click_l2 is None else click_l2
        links = REWARD_LINKS if reward_link is None else (reward_link,)
        if len(links) > 1:
            reward_link = min(links, key=lambda k: float(held_loss(lam0, k, rep).sum()))
        else:
            reward_link = links[0]
        # the shared term, with its own slope strength: the weakest strength whose held-out
        # error on the logger's own return is within one standard error of the smallest;
        # then the term itself against the model without it, by held-out loss
        lams = (lam0,) if click_l2 is not None else SHARED_CLICK_L2_GRID
        best = lam0
        if click_shared is not False and E is not None and len(lams) + (click_shared is None) > 1:
            fits = {lam: held_fit(lam, reward_link, rep, E) for lam in lams}
            best = lams[_calibrated_choice([fits[lam][1] for lam in lams])]
            if click_shared is None:
                click_shared = (
                    _one_se_choice([held_loss(lam0, reward_link, rep), fits[best][0]]) == 1
                )
        if click_l2 is None:
            click_l2 = best if click_shared else lam0
        click_l2 = float(click_l2)
        sh = E if click_shared else None
        if click_recent is None:
            click_recent = (
                _one_se_choice([held_loss(click_l2, reward_link, m, sh) for m in (no_rep, rep)])
                == 1
            )
        rp = rep if click_recent else no_rep
        ws_click = None if ws is None else ws._click_params
        # a continuous reward: fitted first at the Bernoulli dispersion (or the refitted
        # model's), then refitted at the dispersion measured around that fit
        phi = 1.0 if ws is None or is_binary(dom) else ws.dispersion
        params = _fit_click(
            z,
            s,
            rp,
            a,
            r,
            w,
            A,
            click_l2,
            iters=iters,
            init=ws_click,
            link=reward_link,
            dispersion=phi,
            shared=sh,
        )

        def dispersion_of(p: tuple[np.ndarray, ...]) -> float:
            q = _link_mean(_score(z, s, rp, a, p, sh), reward_link)
            return float(np.clip(((r - q) ** 2) @ w / max((q * (1 - q)) @ w, 1e-12), 0.0, 1.0))

        if not is_binary(dom):  # dispersion of the bounded reward around its mean
            phi = dispersion_of(params)
            if ws is None and phi < 1.0:
                params = _fit_click(
                    z,
                    s,
                    rp,
                    a,
                    r,
                    w,
                    A,
                    click_l2,
                    iters=iters,
                    init=params,
                    link=reward_link,
                    dispersion=phi,
                    shared=sh,
                )
                phi = dispersion_of(params)
        b, beta, W, g, G, c = params
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
        slopes=slopes,
        slope_l2=float(slope_l2),
        reward_link=reward_link,
        click_recent=bool(click_recent),
        click_shared=bool(click_shared),
        shared_E=sh,
        click_G=G if click_shared else None,
        click_c=c if click_shared else None,
    )


# ------------------------------------------------------------------------------ rollouts
def _sample(dist: np.ndarray, u: np.ndarray) -> np.ndarray:
    c = np.cumsum(dist, axis=1)
    a = (c < (u * c[:, -1])[:, None]).sum(axis=1)
    return np.minimum(a, dist.shape[1] - 1)


@dataclass
class RolloutTally:
    r"""What a target's rollouts show, in expectation under its action distribution
    (filled by :func:`rollout_values` when passed one): the rolled-out steps, the expected
    number of them that show an item among the :math:`L` shown just before (a repeat,
    :math:`\sum_a \pi(a|x_t)[a \in h_t]`), and the expected number of times each action is
    shown, ``shown`` (A,)."""

    steps: float = 0.0
    repeats: float = 0.0
    shown: np.ndarray | None = None

    def add(self, dist: np.ndarray, recent: np.ndarray) -> None:
        """Count one rolled-out step of ``dist`` (n, A) with histories ``recent`` (n, L)."""
        n, n_actions = dist.shape
        self.steps += n
        shown = dist.sum(axis=0)
        self.shown = shown if self.shown is None else self.shown + shown
        seen = np.zeros((n, n_actions), bool)  # an item twice in h counts once
        rows = np.arange(n)
        for j in range(recent.shape[1]):  # L columns, a handful
            ok = recent[:, j] >= 0
            seen[rows[ok], recent[ok, j]] = True
        self.repeats += float(dist[seen].sum())


REPEAT_EXTRA = 0.10
"""A target's rollouts repeat beyond the log when their repeat share exceeds both three
times the log's and the log's plus ``REPEAT_EXTRA`` (:func:`extrapolation_warnings`)."""
THIN_ROWS = 20
THIN_SHARE = 0.25
"""A target rests on thinly logged items when at least ``THIN_SHARE`` of its rolled-out
steps show items the fitting log shows fewer than ``THIN_ROWS`` times."""


def extrapolation_warnings(
    tally: RolloutTally, action: np.ndarray, recent: np.ndarray
) -> list[str]:
    r"""Where the target's rollouts leave what the log shows, as plain sentences (issue 26:
    in offrec's world with 1,000 items and 10,000 logged sessions `mb` was 24-36% low for
    bandits whose rollouts repeat one of the last 4 items on 15-28% of their steps, against
    0.6% of the log's rows, so that the held-out choice left the repeat terms out of the
    click model, and whose items the log shows about 19 times each):

    - repeats: the share of rolled-out steps that repeat one of the last :math:`L` items
      against the logged rows' share; what a repeat does is learned from those few logged
      repeats (or, with the repeat terms left out, :attr:`SessionModel.click_recent`,
      assumed away); flagged beyond :data:`REPEAT_EXTRA`;
    - thin items: the share of rolled-out steps on items with fewer than
      :data:`THIN_ROWS` logged rows, flagged from :data:`THIN_SHARE`.

    ``action`` (n,) and ``recent`` (n, L) are the fitting log's; these are flags for the
    reader, not corrections: the estimate is unchanged."""
    out: list[str] = []
    if tally.steps <= 0 or tally.shown is None:
        return out
    tgt_rep = tally.repeats / tally.steps
    log_rep = float(np.mean((np.asarray(recent) == np.asarray(action)[:, None]).any(axis=1)))
    if tgt_rep > max(3 * log_rep, log_rep + REPEAT_EXTRA):
        out.append(
            f"mb extrapolates repeats: the target shows one of its last {recent.shape[1]} "
            f"items on {100 * tgt_rep:.1f}% of its rolled-out steps, the log on "
            f"{100 * log_rep:.1f}% of its rows: what a repeat does rests on those"
        )
    counts = np.bincount(np.asarray(action, np.int64), minlength=tally.shown.size)
    thin = float(tally.shown[counts < THIN_ROWS].sum()) / tally.steps
    if thin >= THIN_SHARE:
        out.append(
            f"mb rests on thinly logged items: {100 * thin:.0f}% of the target's rolled-out "
            f"steps show items the log shows fewer than {THIN_ROWS} times"
        )
    return out


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
    tally: RolloutTally | None = None,
) -> np.ndarray:
    r"""Expected reward-to-go (n,) of ``policy`` from each start ``(context, recent, step)``
    in ``model``: the mean over ``n_rollouts`` rollouts of :math:`\sum_t (a_0 + (b_0 - a_0)
    \sum_a \pi(a|x_t) \hat q(x_t, a, h_t))` (clicks-to-go for a binary log). With
    ``first_action`` the first action is fixed (a Q-value).
    ``tally``: counts what the policy's steps show (:class:`RolloutTally`); the values do
    not depend on it.

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
                q = model.reward_mean(x, a, h)
                v = q
            else:
                dist = np.asarray(policy(x.astype(np.float32)), np.float64)
                if tally is not None:
                    tally.add(dist, h)
                q_all = model.reward_mean_all(x, h)
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
