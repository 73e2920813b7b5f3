"""Policies learned offline from logged bandit feedback.

- :class:`RewardModelGreedy`: fit a reward model ``q_hat(x, a)`` on the logged rows, act
  with a head (default greedy) on ``q_hat(x, .)``.
- :class:`IPWLearner`: importance-weighted classification (Beygelzimer & Langford 2009;
  OBP's ``IPWLearner``): a multinomial logistic classifier of the logged action with
  sample weights ``r_i / pscore_i``, i.e. it maximises
  ``sum_i (r_i / p_i) log pi(a_i | x_i)``, an unbiased surrogate of the policy value.
- the bandit learners of :mod:`offrec.policies.bandits`, fitted on logged rows by
  :func:`offrec.policies.logged.fit_logged` (inverse-propensity weights where they matter).

Reward models of :class:`RewardModelGreedy` (``model=``), all stored without pickle:

- ``"per_item_logistic"`` (default): one ridge logistic regression per item on
  ``[1, x]`` (prior precision ``1 / C``): the model and batched Newton solver of
  :class:`~offrec.policies.bandits.LogisticEpsilonGreedy`, iterated to the optimum of
  the penalized log loss (what scikit-learn's ``LogisticRegression`` fitted per item
  would give, but one vectorized solve for all items). Stored as ``coef``
  (n_actions, d) and ``intercept`` (n_actions,). It is the best of the three on the
  default world (see ``tests/policies/test_offline.py`` for figures).
- ``"logistic"``: the OPE reward model :class:`offrec.reward.model.RewardModel`
  (``kind="logistic"``), fitted on all rows. Its logit
  ``b0 + beta^T z + gamma_a + delta_a^T z`` on standardized ``z = (x - mean) / scale``
  is folded into one linear logit per item, ``coef_a^T x + intercept_a``, and stored as
  above: the same numbers scikit-learn fitted.
- ``"gbm"``: :class:`~offrec.reward.model.RewardModel` (``kind="gbm"``), a
  ``HistGradientBoostingClassifier`` on ``[x, action]`` (the action categorical up to
  255 items), predicting through its public ``predict_proba``. Stored as skops bytes
  (:mod:`offrec.reward.persist`: no pickle, no code; loading trusts a fixed list of
  types and refuses any other), so no scikit-learn internals are read by offrec.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, log_softmax

from offrec.core.domain import is_binary
from offrec.core.errors import InputError
from offrec.core.policy import BasePolicy, GreedyDist, Head
from offrec.core.validation import check_scalar
from offrec.policies.bandits.base import as_head, check_context, check_feedback
from offrec.policies.logged import (
    check_pscore,
    domain_rewards,
    fit_logged,
    ipw_weights,
    logged_arrays,
)
from offrec.reward.model import KINDS as REWARD_MODEL_KINDS
from offrec.reward.model import FittedRewardModel
from offrec.reward.persist import dump_gbm, load_gbm

__all__ = ["IPWLearner", "RewardModelGreedy", "fit_logged", "ipw_weights", "logged_arrays"]
# fit_logged, ipw_weights and logged_arrays live in offrec.policies.logged (re-exported here)


# -- shared base for offline learners ----------------------------------------------------------
class _OfflinePolicy(BasePolicy):
    """Sizes, head, spec and persistence hooks shared by the offline learners."""

    kind: ClassVar[str] = "offline"
    item_map: Any = None  # the item map of the LoggedData it was fitted on (offrec.logs.items)
    n_actions: int
    context_dim: int | None
    head: Head

    def _set_sizes(self, n_actions: int | None, context_dim: int | None) -> None:
        if n_actions is not None:
            check_scalar(n_actions, "n_actions", int, min=1)
        if context_dim is not None:
            check_scalar(context_dim, "context_dim", int, min=1)
        self.n_actions = n_actions  # type: ignore[assignment]  # set by fit when None
        self.context_dim = context_dim

    def _sizes_from(self, context: Any, action: Any) -> None:
        x = np.asarray(context)
        if x.ndim != 2:
            raise InputError(f"context must be a 2-D array (n, d); got shape {x.shape}")
        if self.context_dim is None:
            self.context_dim = int(x.shape[1])
        if self.n_actions is None:
            a = np.asarray(action)
            if a.size == 0 or not np.issubdtype(a.dtype, np.integer):
                raise InputError("n_actions must be given when action is empty or not integers")
            self.n_actions = int(a.max()) + 1

    @property
    def fitted(self) -> bool:
        return self._fitted

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise InputError(f"{type(self).__name__} is not fitted; call fit(...) first")

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        """The head applied to :meth:`scores`, (n, n_actions) float64."""
        return self.head.apply(self.scores(obs))

    def action_dist_compact(self, obs: np.ndarray) -> GreedyDist | np.ndarray:
        """:meth:`action_dist` in the head's cheapest exact form (:meth:`Head.compact`)."""
        return self.head.compact(self.scores(obs))

    def scores(self, obs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, **self.get_params()}

    def get_params(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> _OfflinePolicy:
        return cls(**params)

    def get_state(self) -> dict[str, np.ndarray]:
        self._require_fitted()
        return self._state()

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self._set_state({k: np.asarray(v) for k, v in state.items()})
        self._fitted = True

    def _state(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_shapes(
        self, state: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
    ) -> None:
        for key, shape in shapes.items():
            if key not in state:
                raise InputError(f"{type(self).__name__} state is missing array {key!r}")
            if state[key].shape != shape:
                raise InputError(
                    f"{type(self).__name__} state array {key!r} must have shape {shape}; "
                    f"got {state[key].shape}"
                )

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


# -- reward-model greedy -----------------------------------------------------------------------
class RewardModelGreedy(_OfflinePolicy):
    """Fit ``q_hat(x, a)`` on logged rows, act with ``head`` (default greedy) on it.

    ``model`` is ``"per_item_logistic"`` (default), ``"logistic"`` or ``"gbm"`` (module
    docstring). ``C`` is the inverse regularization strength of the logistic models.
    ``weighting="ipw"`` weights rows by ``1 / pscore`` (needs ``pscore``; per item
    normalized to mean 1 for ``per_item_logistic``), moving a misspecified model's fit
    from the logger's users to all users. The model is fitted once on all rows
    (cross-fitting is for OPE, where a row must not be predicted by a model that saw
    it). Rewards must be in [0, 1]; a log with a bounded continuous reward is learned on
    the unit scale (:func:`~offrec.policies.logged.domain_rewards`), as a fraction of a
    success (a quasi-binomial fit; for ``"logistic"`` and ``"gbm"`` the reward model's
    fractional form, :class:`~offrec.reward.model.RewardModel`).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((3000, 2)); a = rng.integers(0, 3, 3000)
    >>> ctr = np.where(a == 1, x[:, 0], np.where(a == 0, 0.3, 0.1))  # item 1 suits high x0
    >>> r = (rng.random(3000) < ctr).astype(float)
    >>> policy = RewardModelGreedy(n_actions=3).fit(x, a, r)
    >>> policy.action_dist(np.array([[0.9, 0.5], [0.05, 0.5]])).argmax(axis=1).tolist()
    [1, 0]
    """

    kind = "reward-model"
    reward_support: ClassVar[str] = "unit"
    #: the per-item logistic model, then the reward-model kinds of :mod:`offrec.reward`
    MODELS: ClassVar[tuple[str, ...]] = ("per_item_logistic", *REWARD_MODEL_KINDS)

    def __init__(
        self,
        model: str = "per_item_logistic",
        *,
        head: Head | dict[str, Any] | None = None,
        n_actions: int | None = None,
        context_dim: int | None = None,
        C: float = 1.0,
        weighting: str = "none",
        seed: int = 0,
    ) -> None:
        if model not in self.MODELS:
            raise InputError(f"model must be one of {list(self.MODELS)}; got {model!r}")
        if weighting not in ("none", "ipw"):
            raise InputError(f"weighting must be one of ['none', 'ipw']; got {weighting!r}")
        check_scalar(C, "C", float, min=0.0, min_inclusive=False)
        check_scalar(seed, "seed", int, min=0)
        self.model, self.weighting = model, weighting
        self.head = as_head(head, Head())
        self.C, self.seed = float(C), int(seed)
        self._set_sizes(n_actions, context_dim)
        self._fitted = False
        self._gbm: FittedRewardModel | None = None
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)

    def fit(
        self, data: Any, action: Any = None, reward: Any = None, pscore: Any = None
    ) -> RewardModelGreedy:
        """Fit the reward model on all rows (``pscore`` only for ``weighting="ipw"``)."""
        from offrec.policies.bandits.logistic import LogisticEpsilonGreedy
        from offrec.reward.model import RewardModel

        context, a, r, p = logged_arrays(data, action, reward, pscore)
        domain = getattr(data, "reward_domain", None)
        r = domain_rewards(self, r, domain)
        self.item_map = getattr(data, "item_map", None)  # a LoggedData's items travel along
        self._sizes_from(context, a)
        x, a_arr, r_arr, _ = check_feedback(
            context,
            a,
            r,
            None,
            n_actions=self.n_actions,
            context_dim=self.context_dim,
            reward_range=(0.0, 1.0),
            who=" for a reward model",
        )
        # rewards are clicks, or a bounded reward now on the unit scale
        unit = None if is_binary(domain) else {"kind": "continuous", "low": 0.0, "high": 1.0}
        assert x is not None and self.context_dim is not None
        p_arr = check_pscore(p, a_arr.shape[0]) if self.weighting == "ipw" else None
        if self.model == "per_item_logistic":
            weight = None if p_arr is None else ipw_weights(a_arr, p_arr, self.n_actions)
            arms = LogisticEpsilonGreedy(self.n_actions, self.context_dim, reg=1.0 / self.C)
            arms.fit(x, a_arr, r_arr, weight)
            self._gbm = None
            self.intercept, self.coef = arms.mean[:, 0].copy(), arms.mean[:, 1:].copy()
            self._fitted = True
            return self
        rm = RewardModel(kind=self.model, seed=self.seed, weighting=self.weighting, C=self.C)
        fitted = rm.fit(x, a_arr, r_arr, p_arr, n_actions=self.n_actions, reward_domain=unit)
        self._gbm = None
        if fitted.constant is not None:  # one reward value in the log: a constant model
            k, d = self.n_actions, self.context_dim
            assert d is not None
            c = float(fitted.constant)
            self.coef = np.zeros((k, d))
            self.intercept = np.full(
                k, np.inf if c >= 1 else (-np.inf if c <= 0 else np.log(c / (1 - c)))
            )
        elif self.model == "logistic":
            self.coef, self.intercept = _fold_logistic(fitted, self.n_actions)
        else:
            self._gbm = fitted
        self._fitted = True
        return self

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Estimated click probability of every item, ``q_hat(x, .)`` (n, n_actions)."""
        self._require_fitted()
        x = check_context(obs, self.context_dim)
        if self._gbm is not None:
            return self._gbm.predict(x)
        s = x @ self.coef.T  # (n, n_actions), then in place: no second (n, n_actions) array
        s = s.astype(np.result_type(s, self.intercept), copy=False)
        s += self.intercept
        return expit(s, out=s)

    def scores(self, obs: np.ndarray) -> np.ndarray:
        return self.predict(obs)

    def get_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "head": self.head.to_dict(),
            "n_actions": self.n_actions,
            "context_dim": self.context_dim,
            "C": self.C,
            "weighting": self.weighting,
            "seed": self.seed,
        }

    def _state(self) -> dict[str, np.ndarray]:
        if self._gbm is not None:
            return {"gbm": dump_gbm(self._gbm.clf)}
        return {"coef": self.coef.copy(), "intercept": self.intercept.copy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        if "nodes" in state:
            raise InputError(
                "this gbm model was saved by an older offrec as scikit-learn's internal tree "
                "records, which offrec no longer reads (they were private scikit-learn API); "
                "fit it again and save it"
            )
        if "gbm" in state:
            model = FittedRewardModel("gbm", self.n_actions, 1)
            model.clf = load_gbm(state["gbm"], n_features=(self.context_dim or 0) + 1)
            self._gbm = model
            return
        k, d = self.n_actions, self.context_dim
        assert d is not None
        self._check_shapes(state, {"coef": (k, d), "intercept": (k,)})
        self._gbm = None
        self.coef = state["coef"].astype(np.float64)
        self.intercept = state["intercept"].astype(np.float64)


def _fold_logistic(fitted: Any, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-item ``(coef (k, d), intercept (k,))`` equal to a fitted logistic ``RewardModel``.

    Its logit on standardized ``z = (x - mean) / scale`` is
    ``b0 + beta^T z + gamma_a + delta_a^T z`` (design ``[z, onehot(a), z (x) onehot(a)]``);
    folding the standardization in gives ``W_a = (beta + delta_a) / scale`` and
    ``c_a = b0 + gamma_a - W_a^T mean``.
    """
    coef = np.asarray(fitted.clf.coef_, np.float64)[0]
    b0 = float(np.asarray(fitted.clf.intercept_)[0])
    mean, scale = np.asarray(fitted.mean, np.float64), np.asarray(fitted.scale, np.float64)
    d, k = mean.shape[0], n_actions
    if coef.shape[0] != d + k + d * k:
        raise InputError(
            f"unexpected logistic reward model width {coef.shape[0]}; expected d + k + d k = "
            f"{d + k + d * k} for d={d}, k={k} (no positions)"
        )
    beta, gamma, delta = coef[:d], coef[d : d + k], coef[d + k :].reshape(k, d)
    w = (beta[None, :] + delta) / scale[None, :]
    return w, b0 + gamma - w @ mean


# -- IPW learner -------------------------------------------------------------------------------
class IPWLearner(_OfflinePolicy):
    """Importance-weighted classification of the logged action.

    A multinomial logistic regression (scikit-learn, lbfgs, ``C``) of ``a_i`` on
    ``x_i`` with sample weights ``r_i / pscore_i`` (optionally clipped at ``clip``,
    normalized to mean 1 over the rows with ``r_i > 0``; the others have weight 0 and are
    dropped). It maximises ``sum_i (r_i / p_i) log pi(a_i|x_i)``. Rewards must be
    ``>= 0``. Items never rewarded in the log get probability 0.

    ``scores`` are the classifier's log-probabilities ``log pi(a|x)``: the default greedy
    head takes the most probable item, ``Head("softmax", temperature=1.0)`` acts with the
    classifier's own distribution. Stored as ``coef`` (n_actions, d) and ``intercept``
    (n_actions,), ``-inf`` for items without a class.
    """

    kind = "ipw"
    reward_support: ClassVar[str] = "unit"  # weights r / p need r >= 0: the unit scale

    def __init__(
        self,
        *,
        head: Head | dict[str, Any] | None = None,
        n_actions: int | None = None,
        context_dim: int | None = None,
        C: float = 1.0,
        clip: float | None = None,
        max_iter: int = 500,
    ) -> None:
        check_scalar(C, "C", float, min=0.0, min_inclusive=False)
        if clip is not None:
            check_scalar(clip, "clip", float, min=0.0, min_inclusive=False)
        check_scalar(max_iter, "max_iter", int, min=1)
        self.head = as_head(head, Head())
        self.C, self.clip, self.max_iter = float(C), clip, int(max_iter)
        self._set_sizes(n_actions, context_dim)
        self._fitted = False

    def fit(
        self, data: Any, action: Any = None, reward: Any = None, pscore: Any = None
    ) -> IPWLearner:
        """Fit on logged rows (``pscore`` required). Returns ``self``."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        context, a, r, p = logged_arrays(data, action, reward, pscore)
        r = domain_rewards(self, r, getattr(data, "reward_domain", None))
        self.item_map = getattr(data, "item_map", None)
        self._sizes_from(context, a)
        x, a_arr, r_arr, _ = check_feedback(
            context,
            a,
            r,
            None,
            n_actions=self.n_actions,
            context_dim=self.context_dim,
            reward_range=(0.0, np.inf),
            who=" for IPWLearner",
        )
        assert x is not None
        p_arr = check_pscore(p, a_arr.shape[0])
        w = r_arr / p_arr
        if self.clip is not None:
            np.minimum(w, self.clip, out=w)
        keep = w > 0
        if not keep.any():
            raise InputError("reward must be > 0 on at least one row to fit IPWLearner; all are 0")
        x, y, w = x[keep], a_arr[keep], w[keep] / w[keep].mean()
        k, d = self.n_actions, self.context_dim
        assert d is not None
        coef = np.zeros((k, d))
        intercept = np.full(k, -np.inf)
        classes = np.unique(y)
        if classes.size == 1:
            intercept[classes[0]] = 0.0
        else:
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(x, y, sample_weight=w)
            if classes.size == 2:  # scikit-learn's binary form: logit of classes[1] vs classes[0]
                coef[classes[1]], intercept[classes] = clf.coef_[0], (0.0, clf.intercept_[0])
                coef[classes[0]] = 0.0
            else:
                coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
        self.coef, self.intercept = coef, intercept
        self._fitted = True
        return self

    def predict_proba(self, obs: np.ndarray) -> np.ndarray:
        """The classifier's distribution ``pi(a|x)`` (n, n_actions)."""
        return np.exp(self.scores(obs))

    def scores(self, obs: np.ndarray) -> np.ndarray:
        """Log-probabilities ``log pi(a|x)`` (n, n_actions); ``-inf`` for items without a class."""
        self._require_fitted()
        x = check_context(obs, self.context_dim)
        logits = x @ self.coef.T + self.intercept
        return log_softmax(logits, axis=1)

    def get_params(self) -> dict[str, Any]:
        return {
            "head": self.head.to_dict(),
            "n_actions": self.n_actions,
            "context_dim": self.context_dim,
            "C": self.C,
            "clip": self.clip,
            "max_iter": self.max_iter,
        }

    def _state(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef.copy(), "intercept": self.intercept.copy()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        k, d = self.n_actions, self.context_dim
        assert d is not None
        self._check_shapes(state, {"coef": (k, d), "intercept": (k,)})
        self.coef = state["coef"].astype(np.float64)
        self.intercept = state["intercept"].astype(np.float64)
