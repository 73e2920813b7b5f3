r"""A cross-fitted bilinear logistic reward model of (context, item) pairs, for large catalogs.

The world's click model is logistic and bilinear in the user and the item,
:math:`q(u, a) = \sigma(\theta_0 + \theta_1 \langle w_u, v_a\rangle + b_a)`, with the user's
latent :math:`w_u` a linear image of the observed profile plus noise and the item's
embedding :math:`v_a` and quality :math:`b_a` in the catalog's item table. A model of the
same shape, shared over all items, is

.. math::

    \hat q(x, a) = \sigma\big(\tilde x^\top B\, \tilde e_a\big) = \sigma(z(x, a)^\top \beta),
    \qquad z(x, a) = \tilde x \otimes \tilde e_a,\quad
    \tilde x = [x_S, 1],\ \tilde e_a = [e_a, 1],

with :math:`e_a` the item's features (embedding, topic one-hot, quality: what
:func:`~offrec.policies.bandits.hybrid.catalog_features` returns) and :math:`x_S` the
context columns that vary in the fitting rows (constant ones are absorbed by the
intercept). ``p = (|S| + 1)(d_e + 1)`` parameters whatever the catalog's size, fitted by
ridge-penalised Newton steps (:func:`~offrec.reward.newton.newton_logistic`,
:math:`\max_\beta \sum_i [r_i \log \hat q_i + (1 - r_i)\log(1 - \hat q_i)] - \frac\lambda2
\|\beta\|^2`). Unlike the shared-parameter learner's ridge regression of the click on
:math:`z` (a linear probability model, which cannot follow the sigmoid's curvature over
the catalog's tail, where a learned target picks its items), the link here is the world's.
What it still misses is the user's unobserved latent noise (the click probability
averaged over it is a slightly flatter sigmoid).

**Cross-fitting** (Chernozhukov et al. 2018): each row's fold is a hash of
``(seed, its context)`` (:mod:`offrec.core.hashing`), so all rows of one user share a
fold; the model of fold :math:`k` is fitted on the rows of the other folds and predicts the
rows of fold :math:`k`, whatever log they come from. No row's :math:`\hat q` comes from a
model that saw that user.

**Intervals with the model's fitting noise.** A DM / DR / OffCEM estimate is
:math:`\hat V = \frac1n \sum_i \psi_i(\hat\beta_{-k(i)})` with
:math:`\psi_i(\beta) = \hat q^\pi_i(\beta) + w_i (r_i - \hat q(x_i, a_i; \beta))`
(:math:`w_i = 0` for DM, the item weight for DR, the group weight for OffCEM). A
first-order expansion of each fold's fit around its limit :math:`\beta^*`,
:math:`\hat\beta_{-k} - \beta^* \approx H_{-k}^{-1} \sum_{j \notin k} s_j`
(:math:`s_j = (r_j - \hat q_j) z_j` the score, :math:`H_{-k}` the penalised Hessian of the
fold's fit), gives

.. math::

    \hat V - V(\beta^*) \approx \frac1n \sum_j \big[\psi_j + c_j\big], \qquad
    c_j = \sum_{k \ne k(j)} s_j(\hat\beta_{-k})^\top H_{-k}^{-1} g_k, \qquad
    g_k = \sum_{i \in k} \nabla_\beta \psi_i,

the stacked estimating-equation (M-estimation sandwich) influence of each row: its own
term plus its effect, through the folds it helped fit, on the other rows' terms
(Newey & McFadden 1994, Sec. 6; Stefanski & Boos 2002). :meth:`FittedBilinear.correction`
returns :math:`c` (centred, so the estimate is unchanged), and the normal interval of the
column :math:`\psi + c`, :math:`\hat V \pm t_{1-\alpha/2, n-1}\, \mathrm{sd}(\psi + c)/\sqrt n`,
includes the model's fitting noise; what it cannot include is the model's
misspecification bias (DR's and OffCEM's weights remove the part of it they can see).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> items = rng.normal(size=(50, 3)); x = rng.normal(size=(2000, 2))
>>> a = rng.integers(0, 50, 2000)
>>> r = (rng.random(2000) < 1 / (1 + np.exp(-(x[:, 0] * items[a, 0])))).astype(float)
>>> m = BilinearLogistic(items).fit(x, a, r)
>>> m.predict_pairs(x[:3], a[:3, None]).shape
(3, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from offrec.core.errors import InputError
from offrec.core.hashing import hash_keys, row_keys
from offrec.core.policy import SparseDist
from offrec.core.validation import check_scalar
from offrec.reward.newton import ArmGroups, newton_logistic

__all__ = ["BILINEAR", "BilinearLogistic", "FittedBilinear", "context_folds"]

#: the ``[ope] reward_model`` / ``reward_model=`` name of this model
BILINEAR = "bilinear"
_FOLD_SALT = 23  # keeps the folds independent of the other hashes of the same seed
_BLOCK = 1 << 18  # (row, item) scores per block in catalog scans and gradients


def context_folds(context: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """The fold (n,) int64 of each context row: a hash of ``(seed, the row's float32 bit
    pattern)``, so equal contexts (one user's rows) share a fold, whatever the batch."""
    x = np.ascontiguousarray(np.asarray(context, np.float32))
    keys = row_keys(*x.view(np.uint32).T) if x.shape[1] else np.zeros(len(x), np.uint64)
    return (hash_keys(keys, seed, _FOLD_SALT) % np.uint64(n_folds)).astype(np.int64)


class BilinearLogistic:
    """Configuration of the bilinear logistic model (module docstring); :meth:`fit`
    cross-fits it.

    Args:
        item_features: (n_items, d_e) finite item features (embedding, topic, quality).
        l2: ridge penalty :math:`\\lambda > 0` on all coefficients. Small by default: it
            only has to make the Hessian invertible (the topic one-hot sums to the
            constant); a larger one shrinks the logits and biases DM toward the mean
            (at 4,000 rows, ``l2=1`` put DM 8% under the truth of a world the model
            specifies exactly, ``l2=0.01`` within its standard error).
        n_folds: cross-fitting folds, >= 2.
        seed: seeds the folds (and the fitting sample).
        n_iter: at most this many Newton steps per fold; tol: stop once no coefficient
            moves more than this.
        fit_rows: fit on at most this many rows (a seeded hash sample): bounded memory,
            ``O(fit_rows p)`` (about 0.6 GB at the default and ``p = 162``).
    """

    def __init__(
        self,
        item_features: np.ndarray,
        *,
        l2: float = 0.01,
        n_folds: int = 3,
        seed: int = 0,
        n_iter: int = 30,
        tol: float = 1e-7,
        fit_rows: int = 200_000,
    ) -> None:
        e = np.asarray(item_features, np.float64)
        if e.ndim != 2 or e.shape[0] < 1 or not np.isfinite(e).all():
            raise InputError(
                f"item_features must be a finite (n_items, d_e) array; got shape {e.shape}"
            )
        check_scalar(l2, "l2", float, min=0.0, min_inclusive=False)
        check_scalar(n_folds, "n_folds", int, min=2)
        check_scalar(seed, "seed", int, min=0)
        check_scalar(n_iter, "n_iter", int, min=1)
        check_scalar(tol, "tol", float, min=0.0)
        check_scalar(fit_rows, "fit_rows", int, min=10)
        self.items = np.hstack([e, np.ones((e.shape[0], 1))])  # (n_items, d_e + 1)
        self.l2, self.n_folds, self.seed = float(l2), n_folds, seed
        self.n_iter, self.tol, self.fit_rows = n_iter, float(tol), fit_rows

    def fit(self, context: np.ndarray, action: np.ndarray, reward: np.ndarray) -> FittedBilinear:
        """Cross-fit on logged rows: ``context`` (n, d), ``action`` (n,) item ids,
        ``reward`` (n,) in [0, 1]. Returns the fold models."""
        x, a, r = _check_rows(context, action, reward, self.items.shape[0])
        if len(r) > self.fit_rows:  # a seeded sample of the rows (by a hash of their index)
            keys = row_keys(np.arange(len(r)))
            keep = np.sort(np.argsort(hash_keys(keys, self.seed, _FOLD_SALT + 1))[: self.fit_rows])
            x, a, r = x[keep], a[keep], r[keep]
        cols = np.flatnonzero(np.ptp(x, axis=0) > 0)
        fold = context_folds(x, self.n_folds, self.seed)
        p = (cols.size + 1) * self.items.shape[1]
        coef = np.zeros((self.n_folds, p))
        hess = np.zeros((self.n_folds, p, p))
        z = _design(x[:, cols], self.items, a)
        for k in range(self.n_folds):
            train = fold != k
            if not train.any():
                raise InputError(
                    f"fold {k} of {self.n_folds} holds every distinct context: cross-fitting "
                    f"needs more distinct contexts (users) than folds; got {len(r)} rows"
                )
            m = int(train.sum())
            mode, h = newton_logistic(
                ArmGroups(np.zeros(m, np.int64)),
                z[train],
                r[train],
                np.ones(m),
                np.zeros((1, p)),
                self.l2 * np.eye(p)[None],
                n_iter=self.n_iter,
                tol=self.tol,
            )
            coef[k], hess[k] = mode[0], h[0]
        return FittedBilinear(self.items, cols, coef, hess, self.seed)


@dataclass
class FittedBilinear:
    r"""The cross-fitted fold models of :class:`BilinearLogistic`: a (context, item) reward
    model with ``predict_pairs`` / ``predict_mean`` (each row read by the model of its
    context's fold), usable as ``evaluate(..., reward_model=...)`` for DM / DR / OffCEM.

    Attributes:
        items: (n_items, d_e + 1) item features with the constant.
        cols: the context columns the model reads.
        coef: (K, p) each fold's coefficients, ``p = (len(cols) + 1)(d_e + 1)``.
        hess: (K, p, p) each fold's penalised Hessian at its coefficients.
        seed: the fold hash's seed.
    """

    items: np.ndarray
    cols: np.ndarray
    coef: np.ndarray
    hess: np.ndarray
    seed: int

    @property
    def n_folds(self) -> int:
        return int(self.coef.shape[0])

    def folds(self, context: np.ndarray) -> np.ndarray:
        """The fold (n,) of each context row (:func:`context_folds`)."""
        return context_folds(context, self.n_folds, self.seed)

    def _queries(self, context: np.ndarray, fold: np.ndarray | None = None) -> np.ndarray:
        r""":math:`\tilde x_i^\top B_{k}` (n, d_e + 1) with ``k`` the row's fold (or ``fold``)."""
        x = np.asarray(context, np.float64)
        xt = np.hstack([x[:, self.cols], np.ones((len(x), 1))])
        k = self.folds(context) if fold is None else fold
        b = self.coef.reshape(self.n_folds, xt.shape[1], -1)  # (K, |S| + 1, d_e + 1)
        out = np.empty((len(x), b.shape[2]))
        for f in range(self.n_folds):  # a loop over the K folds, vectorized over rows
            rows = np.flatnonzero(k == f)
            out[rows] = xt[rows] @ b[f]
        return out

    def predict_pairs(self, context: np.ndarray, items: np.ndarray) -> np.ndarray:
        r""":math:`\hat q(x_i, a_{im})` (n, M) float64 for items (n, M), out of fold."""
        u = self._queries(context)
        return np.asarray(expit(np.einsum("nj,nmj->nm", u, self.items[np.asarray(items)])))

    def predict_mean(self, context: np.ndarray) -> np.ndarray:
        r"""The catalog mean of :math:`\hat q(x_i, \cdot)` (n,), exact: a scan of the catalog
        in blocks, once per distinct (context, fold)."""
        return self._catalog_moments(context)[0]

    def _catalog_moments(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Per row, :math:`\frac1N \sum_a \hat q_a` (n,) and
        :math:`\frac1N \sum_a \hat q_a (1 - \hat q_a) \tilde e_a` (n, d_e + 1), exact,
        over the distinct queries, blocked (``O(_BLOCK)`` memory)."""
        u = self._queries(context)
        uniq, inv = np.unique(u, axis=0, return_inverse=True)
        n_items = self.items.shape[0]
        mean = np.zeros(len(uniq))
        slope = np.zeros(uniq.shape)
        ib = min(n_items, 4096)
        ub = max(1, _BLOCK // ib)
        for lo in range(0, len(uniq), ub):
            for a0 in range(0, n_items, ib):
                e = self.items[a0 : a0 + ib]
                q = expit(uniq[lo : lo + ub] @ e.T)
                mean[lo : lo + ub] += q.sum(axis=1)
                slope[lo : lo + ub] += (q * (1.0 - q)) @ e
        return mean[inv.ravel()] / n_items, slope[inv.ravel()] / n_items

    def correction(
        self,
        context: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        dist: SparseDist,
        weight: np.ndarray | None,
        scale: float = 1.0,
    ) -> np.ndarray:
        r"""The fitting-noise influence :math:`c_j` (n,) of each row (module docstring),
        centred, for an estimate :math:`\frac1N\sum_i \psi_i` with
        :math:`\psi_i = \hat q^\pi_i + w_i (r_i - \hat q(x_i, a_i))`. The rows given must
        be the rows the model was fitted on (all of them: no ``fit_rows`` subsampling).
        When they are a sample of the ``N`` evaluated rows, ``scale = N / n`` scales the
        sample's sums :math:`g_k` up to the whole log's (the other rows, which fitted
        nothing, have :math:`c = 0`). ``dist``: the target's :class:`SparseDist` on the
        rows; ``weight`` (n,) :math:`w_i` (None: DM). Add it to the rows' terms before a
        normal interval."""
        x, a, r = _check_rows(context, action, reward, self.items.shape[0])
        n = len(r)
        if dist.shape[0] != n:
            raise InputError(f"dist must have {n} rows; got {dist.shape[0]}")
        w = np.zeros(n) if weight is None else np.asarray(weight, np.float64)
        if w.shape != (n,):
            raise InputError(f"weight must have shape ({n},); got {w.shape}")
        fold = self.folds(x)
        xt = np.hstack([x[:, self.cols], np.ones((n, 1))])
        u = self._queries(x, fold)
        # d psi_i / d beta = xt_i (x) E_i, E_i = sum_m p_im q(1-q) e_c - w_i q_i(1-q_i) e_a
        #                                   + floor * mean_a q(1-q) e_a
        e_c = self.items[dist.items]  # (n, M, d_e + 1)
        q_c = expit(np.einsum("nj,nmj->nm", u, e_c))
        big_e = np.einsum("nm,nmj->nj", dist.probs * q_c * (1.0 - q_c), e_c)
        q_a = expit(np.einsum("nj,nj->n", u, self.items[a]))
        big_e -= (w * q_a * (1.0 - q_a))[:, None] * self.items[a]
        if dist.floor > 0:
            if dist.support is not None:
                raise InputError("correction: a floor over a support mask is not supported")
            big_e += dist.floor * self._catalog_moments(x)[1]
        c = np.zeros(n)
        b = self.coef.reshape(self.n_folds, xt.shape[1], -1)
        for k in range(self.n_folds):
            mine = fold == k
            g_k = scale * (xt[mine].T @ big_e[mine]).ravel()  # sum over fold k of d psi/d beta
            u_k = np.linalg.solve(self.hess[k], g_k).reshape(b.shape[1:])
            others = ~mine
            # s_j^T u_k = (r_j - q_k(x_j, a_j)) xt_j^T U_k e_{a_j}, over the rows fold k saw
            q_k = expit(np.einsum("nj,nj->n", xt[others] @ b[k], self.items[a[others]]))
            c[others] += (r[others] - q_k) * np.einsum(
                "nj,nj->n", xt[others] @ u_k, self.items[a[others]]
            )
        return c - c.mean()


def _design(x: np.ndarray, items: np.ndarray, action: np.ndarray) -> np.ndarray:
    """:math:`z(x_i, a_i) = [x_i, 1] \\otimes \\tilde e_{a_i}` (n, p) float64."""
    xt = np.hstack([x, np.ones((len(x), 1))])
    e = items[action]
    return (xt[:, :, None] * e[:, None, :]).reshape(len(x), -1)


def _check_rows(
    context: np.ndarray, action: np.ndarray, reward: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(context, np.float64)
    a = np.asarray(action)
    r = np.asarray(reward, np.float64)
    if x.ndim != 2:
        raise InputError(f"context must be a 2-d (n, d) array; got shape {x.shape}")
    n = x.shape[0]
    if a.shape != (n,) or r.shape != (n,):
        raise InputError(f"action and reward must have shape ({n},); got {a.shape} and {r.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"action must hold integer item ids; got dtype {a.dtype}")
    bad = (a < 0) | (a >= n_items)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"action must be in [0, {n_items}); row {i} has {int(a[i])}")
    bad = ~((r >= 0) & (r <= 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"reward must be in [0, 1]; row {i} has {float(r[i])!r}")
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise InputError(f"context must be finite; row {i} is not")
    return x, a.astype(np.int64), r
