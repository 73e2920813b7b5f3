r"""Estimators for large catalogs: weight by what the item *is* (its group), not which item.

With many items, the importance weight :math:`w_i = \pi_e(a_i|x_i)/\pi_b(a_i|x_i)` of an
item-level estimator explodes (a target that concentrates on a few of 10^5 items puts
weights of thousands on the rows where the logger happened to show them). When the
reward depends on the item only through an embedding :math:`e(a)` (here a discrete group
:math:`g(a)`: the item's topic by default, or a clustering of item embeddings), the
marginalized weight over the group is enough:

.. math::

    w(x, g) = \frac{\pi_e(g|x)}{\pi_b(g|x)}, \qquad
    \pi(g|x) = \sum_{a: g(a) = g} \pi(a|x),

whose variance is bounded by the number of groups instead of the number of items.

- **MIPS** (marginalized IPS; Saito & Joachims, *Off-policy evaluation for large action
  spaces via embeddings*, ICML 2022): :math:`\hat V = \frac1n \sum_i w(x_i, g_i)\, r_i`;
- **SN-MIPS**: :math:`\sum_i w(x_i, g_i) r_i / \sum_i w(x_i, g_i)`;
- **OffCEM** (Saito, Ren & Joachims, *Off-policy evaluation for large action spaces via
  conjunct effect modeling*, ICML 2023): the cluster-level weight on the residual of a
  reward model plus the model's value under the target,
  :math:`\hat V = \frac1n \sum_i \big[ w(x_i, g_i) (r_i - \hat f(x_i, a_i)) +
  \sum_a \pi_e(a|x_i) \hat f(x_i, a) \big]` (here :math:`\hat f` is the cross-fitted
  reward model of DR/DM, which plays the paper's "local correction").

**Assumption of MIPS / SN-MIPS** (no direct effect): given the context and the group,
the item carries no further information about the reward,
:math:`E[r|x, a] = E[r|x, g(a)]` for all items of a group, and the logger covers the
target's groups (:math:`\pi_e(g|x) > 0 \Rightarrow \pi_b(g|x) > 0`). When it fails (items
of one topic differ in quality and the target picks the better ones within a topic, as
every learned target does), MIPS is **biased**: it credits the target with the logger's
average reward within each group, i.e. it estimates the target's group choice, not its
item choice. OffCEM removes that bias to the extent the reward model captures the
within-group effects (unbiased when :math:`\hat f` is right about the item-level
deviations from the group mean, Saito et al. 2023, Thm 3.5), at the variance of the
group-level weights. The accuracy study (README "Large catalogs") measures both.

Inputs (besides :func:`~offrec.ope.terms.round_terms`' arrays): ``item_groups``
(n_actions,) the group of every item and ``pscore_group`` (n,) the logger's probability of
the logged item's group (:func:`logging_group_pscore`). On dense arrays the estimates
equal OBP 0.5.7's ``MarginalizedInverseProbabilityWeighting`` /
``SelfNormalizedMarginalizedInverseProbabilityWeighting`` with ``p_e_a`` the one-hot
group table (tested to 1e-12).

>>> import numpy as np
>>> pi_b = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
>>> pi_e = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
>>> groups = np.array([0, 1, 1])  # items 1 and 2 share a group
>>> MIPS().estimate_policy_value(reward=np.array([1.0, 0.0]), action=np.array([1, 0]),
...     pscore=np.array([0.25, 0.5]), action_dist=pi_e, item_groups=groups,
...     pscore_group=np.array([0.5, 0.5]))
1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from offrec.core.errors import InputError
from offrec.core.policy import GreedyDist, SparseDist
from offrec.logs.data import LoggedData
from offrec.ope.estimators import ESTIMATORS, Estimator, Parts, check_weight_mass, residual
from offrec.ope.intervals import Form, Interval, interval
from offrec.ope.moments import Moments
from offrec.ope.terms import PairRewards, RoundTerms, group_probability, round_terms
from offrec.reward.bilinear import FittedBilinear


def _group_weight(terms: RoundTerms, name: str) -> np.ndarray:
    if terms.group_weight is None:
        raise InputError(
            f"estimator {name!r} needs item_groups (the group of each item) and pscore_group "
            "(the logger's probability of the logged item's group); got none"
        )
    return terms.group_weight


_MIPS_ASSUMES = (
    "no direct effect: given the context, the reward depends on the item only through its "
    "group (else MIPS is biased by the within-group differences)",
    "the logger puts mass on every group the target chooses (group-level support)",
)
_MIPS_REF = (
    "Saito & Joachims (2022), Off-policy evaluation for large action spaces via embeddings, ICML"
)


@dataclass(frozen=True)
class MIPS(Estimator):
    r"""Marginalized IPS over item groups: :math:`\frac1n \sum_i w(x_i, g_i) r_i` (module
    docstring: formula, the no-direct-effect assumption and what its failure does)."""

    name: ClassVar[str] = "mips"
    needs_groups: ClassVar[bool] = True
    assumptions: ClassVar[tuple[str, ...]] = _MIPS_ASSUMES
    reference: ClassVar[str] = _MIPS_REF

    def weights(self, terms: RoundTerms) -> np.ndarray:
        return _group_weight(terms, self.name)

    def parts(self, terms: RoundTerms) -> Parts:
        return Parts(self.weights(terms) * terms.reward)


@dataclass(frozen=True)
class SNMIPS(Estimator):
    r"""Self-normalized MIPS: :math:`\sum_i w(x_i, g_i) r_i / \sum_i w(x_i, g_i)`."""

    name: ClassVar[str] = "snmips"
    needs_groups: ClassVar[bool] = True
    assumptions: ClassVar[tuple[str, ...]] = _MIPS_ASSUMES
    reference: ClassVar[str] = _MIPS_REF
    self_normalized: ClassVar[bool] = True

    def weights(self, terms: RoundTerms) -> np.ndarray:
        return _group_weight(terms, self.name)

    def parts(self, terms: RoundTerms) -> Parts:
        w = self.weights(terms)
        check_weight_mass(w, self.name)
        return Parts(None, w * terms.reward, w)


@dataclass(frozen=True)
class OffCEM(Estimator):
    r"""OffCEM: :math:`\frac1n \sum_i [w(x_i, g_i)(r_i - \hat q(x_i, a_i)) + \hat q^\pi_i]`,
    group-level weights on the reward model's residual (module docstring)."""

    name: ClassVar[str] = "offcem"
    needs_model: ClassVar[bool] = True
    needs_groups: ClassVar[bool] = True
    assumptions: ClassVar[tuple[str, ...]] = (
        "local correctness: the reward model gets the within-group differences right "
        "(the group-level weights correct only the group effect)",
        "the logger puts mass on every group the target chooses (group-level support)",
    )
    reference: ClassVar[str] = (
        "Saito, Ren & Joachims (2023), Off-policy evaluation for large action spaces via "
        "conjunct effect modeling, ICML"
    )

    def weights(self, terms: RoundTerms) -> np.ndarray:
        return _group_weight(terms, self.name)

    def parts(self, terms: RoundTerms) -> Parts:
        w = self.weights(terms)
        resid = residual(terms, self.name)
        assert terms.q_target is not None  # residual checked it
        return Parts(terms.q_target + w * resid)


EMBEDDING_ESTIMATORS: tuple[type[Estimator], ...] = (MIPS, SNMIPS, OffCEM)
ESTIMATORS.update({cls.name: cls for cls in EMBEDDING_ESTIMATORS})


def cluster_items(
    embedding: np.ndarray, n_clusters: int, *, seed: int = 0, n_iter: int = 20
) -> np.ndarray:
    """Item groups (n_items,) int64 from a k-means clustering of item embeddings
    (n_items, k) (Lloyd's algorithm, ``n_iter`` rounds from a k-means++ start drawn by
    ``seed``, Arthur & Vassilvitskii 2007; an emptied cluster keeps its centre): finer groups than topics, for
    MIPS / OffCEM when the topic leaves too much of the item's effect out. Vectorized over
    items, blocked over them (``O(n_items n_clusters)`` time per round, bounded memory)."""
    x = np.asarray(embedding, np.float64)
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise InputError(f"n_clusters must be in [1, {n}]; got {n_clusters}")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    d2 = ((x - x[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(n_clusters - 1):  # k-means++: the next centre with probability ~ D^2
        total = d2.sum()
        nxt = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        chosen.append(nxt)
        d2 = np.minimum(d2, ((x - x[nxt]) ** 2).sum(axis=1))
    centres = x[chosen].copy()
    label = np.zeros(n, np.int64)
    step = max(1, (1 << 21) // n_clusters)
    for _ in range(n_iter):
        c2 = (centres**2).sum(axis=1)
        for lo in range(0, n, step):  # nearest centre, in blocks of items
            label[lo : lo + step] = np.argmin(c2 - 2.0 * x[lo : lo + step] @ centres.T, axis=1)
        counts = np.bincount(label, minlength=n_clusters)
        sums = np.zeros_like(centres)
        np.add.at(sums, label, x)
        keep = counts > 0
        centres[keep] = sums[keep] / counts[keep, None]
    return label


def logging_group_pscore(
    logging_dist: Any, item_groups: np.ndarray, action: np.ndarray
) -> np.ndarray:
    """:math:`\\pi_b(g(a_i)|x_i)` (n,) from the logger's distribution on the rows (dense
    ``(n, n_actions)``, a ``GreedyDist`` or a ``SparseDist``): what ``pscore_group`` holds."""
    groups = np.asarray(item_groups)
    return group_probability(logging_dist, groups, groups[np.asarray(action)])


class LoggerGroups:
    """The logging policy's group propensities for the rows of a log, in batches.

    From the log's ``pscore_group`` column when it has one (written at collect time by a
    two-stage logger, :data:`offrec.logs.schema.PSCORE_GROUP`: nothing is rebuilt and the
    catalog is not scanned), else its ``logging_dist`` column, else from the logging policy
    rebuilt from the log's metadata (world config and seed, logging policy spec: simulated
    logs); the rebuilt policy's propensity at the logged item must equal the logged
    ``pscore`` (relative 1e-6), else the log's metadata does not describe its logger and
    group weights would be wrong: an ``InputError`` naming the row.
    """

    def __init__(
        self, metadata: dict[str, Any], has_logging_dist: bool, has_group_column: bool = False
    ) -> None:
        topics = metadata.get("item_topics")
        if topics is None:
            raise InputError(
                "MIPS / SN-MIPS / OffCEM need the item groups: the log's item_topics "
                "(dataset metadata); this log has none"
            )
        self.item_groups = np.asarray(topics, np.int64)
        self.policy: Any = None
        if not has_logging_dist and not has_group_column:
            self.policy = _rebuild_logger(metadata)

    def pscore_group(
        self,
        context: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray,
        logging_dist: Any = None,
        logged: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n,) :math:`\\pi_b(g(a_i)|x_i)` for one batch (``logged``: the log's
        ``pscore_group`` column, taken as it is)."""
        if logged is not None:
            return np.asarray(logged, np.float64)
        if logging_dist is not None:
            return logging_group_pscore(np.asarray(logging_dist), self.item_groups, action)
        compact = getattr(self.policy, "action_dist_compact", None)
        dist = compact(context) if callable(compact) else self.policy.action_dist(context)
        at = (
            dist.at(action)
            if hasattr(dist, "at")
            else np.asarray(dist)[np.arange(len(action)), action]
        )
        bad = ~(np.abs(at - pscore) <= 1e-6 * pscore)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"the logging policy rebuilt from the log's metadata gives pscore "
                f"{float(at[i])!r} at row {i}, the log has {float(pscore[i])!r}: group "
                "propensities cannot be computed (store logging_dist, or log with offrec)"
            )
        return logging_group_pscore(dist, self.item_groups, action)


def pair_reward_model(name: str, policies: dict[str, Any]) -> Any:
    """The (context, item) reward model a large-catalog pipeline names by its policy
    (``[ope] reward_model = "NAME"`` of a trained policy with ``predict_pairs``, e.g. the
    shared-parameter learner): DR / DM / OffCEM then read it at the logged items and the
    target's candidates, never a dense (n, n_items) table; ``None`` when ``name`` is not
    such a policy (a reward-model kind)."""
    policy = policies.get(name)
    return policy if callable(getattr(policy, "predict_pairs", None)) else None


def cross_fit_interval(
    estimator: str,
    model: FittedBilinear,
    context: np.ndarray,
    *,
    alpha: float = 0.05,
    **arrays: Any,
) -> Interval:
    r"""A DM / DR / OffCEM estimate from a cross-fitted bilinear reward model
    (:class:`~offrec.reward.bilinear.FittedBilinear`, fitted on these very rows) with a
    normal interval that includes the model's fitting noise.

    The estimator's per-row terms :math:`\psi_i = \hat q^\pi_i + w_i (r_i - \hat q(x_i, a_i))`
    are read from its ``parts``; :math:`w_i = \psi_i(\hat q) - \psi_i(\hat q + 1)` (exact for
    the estimators linear in the residual: DM, DR, OffCEM); the interval is
    :math:`\bar\psi \pm t_{1-\alpha/2, n-1}\, \mathrm{sd}(\psi + c) / \sqrt n` with ``c``
    :meth:`~offrec.reward.bilinear.FittedBilinear.correction`, the rows' influence through
    the fold fits (module docstring of :mod:`offrec.reward.bilinear`). ``arrays``: those of
    :func:`~offrec.ope.terms.round_terms` (``reward``, ``action``, ``pscore``, a
    :class:`~offrec.core.policy.SparseDist` ``action_dist``, and ``item_groups`` /
    ``pscore_group`` for OffCEM), without ``estimated_rewards`` (the model's).
    """
    from offrec.ope.estimators import make_estimator

    est = make_estimator(estimator)
    if not est.needs_model or est.self_normalized:
        raise InputError(
            f"estimator must be a reward-model estimator linear in the residual (dm, dr, "
            f"offcem); got {estimator!r}"
        )
    dist = arrays["action_dist"]
    if not isinstance(dist, SparseDist):
        raise InputError(f"action_dist must be a SparseDist; got {type(dist).__name__}")
    action = np.asarray(arrays["action"])
    terms = round_terms(estimated_rewards=_pairs(model, context, action, dist), **arrays)
    psi = est.parts(terms).a
    assert psi is not None  # a model estimator, not self-normalized (checked above)
    c = model_noise_terms(est, model, context, action, dist, terms)
    iv = interval(Moments.of((psi + c)[:, None]), Form(0), method="normal", alpha=alpha)
    return replace(iv, method="normal+model")  # c is centred: the value is mean(psi)


def model_noise_terms(
    est: Estimator,
    model: FittedBilinear,
    context: np.ndarray,
    action: np.ndarray,
    dist: SparseDist,
    terms: RoundTerms,
    scale: float = 1.0,
) -> np.ndarray:
    r"""The rows' fitting-noise influence :math:`c` (n,) for estimator ``est`` (its terms
    :math:`\psi_i = \hat q^\pi_i + w_i (r_i - \hat q_i)`, ``terms`` from the model's
    predictions on the rows the model was fitted on):
    :meth:`~offrec.reward.bilinear.FittedBilinear.correction` with
    :math:`w_i = \psi_i(\hat q) - \psi_i(\hat q + 1)`, exact for every estimator linear in
    the residual with unit weight on :math:`\hat q^\pi` (DM, DR, switch-DR, DR-os, OffCEM);
    ``scale``: the evaluated rows per fitted row (a fitting sample)."""
    psi = est.parts(terms).a
    if psi is None or terms.q_logged is None or not est.needs_model:
        raise InputError(f"estimator {est.name!r} has no per-row reward-model term")
    shifted = est.parts(replace(terms, q_logged=terms.q_logged + 1.0)).a
    assert shifted is not None
    return model.correction(context, action, terms.reward, dist, psi - shifted, scale)


def _pairs(
    model: FittedBilinear, context: np.ndarray, action: np.ndarray, dist: SparseDist
) -> PairRewards:
    return PairRewards(
        logged=model.predict_pairs(context, action[:, None])[:, 0],
        at_items=model.predict_pairs(context, dist.items),
        support_mean=model.predict_mean(context) if dist.floor > 0 else 0.0,
    )


def sample_model_noise(
    model: FittedBilinear,
    data: LoggedData,
    targets: Mapping[str, Any],
    estimators: Sequence[Estimator],
    groups: LoggerGroups | None,
    n_total: int,
) -> dict[tuple[str, str], np.ndarray]:
    """:func:`model_noise_terms` (m,) of the fitting sample ``data`` (the ``m`` rows
    ``model`` was fitted on, out of the log's ``n_total``), per (target name, estimator
    label), for the targets with a sparse form (or a greedy one) and the estimators with a
    per-row reward-model term; :func:`~offrec.ope.evaluate` adds them to the sample's rows
    (the other rows have none)."""
    x = np.asarray(data.context)
    marginal: dict[str, Any] = {}
    if groups is not None:
        pg = groups.pscore_group(x, data.action, data.pscore, data.logging_dist, data.pscore_group)
        marginal = {"item_groups": groups.item_groups, "pscore_group": pg}
    out: dict[tuple[str, str], np.ndarray] = {}
    ests = [e for e in estimators if e.needs_model and not e.self_normalized]
    for name, target in targets.items():
        compact = getattr(target, "action_dist_compact", None)
        dist = compact(x) if callable(compact) and ests else None
        if isinstance(dist, GreedyDist):
            dist = dist.sparse()
        if not isinstance(dist, SparseDist):
            continue  # dense targets (small catalogs), fixed probabilities: no correction
        terms = round_terms(
            reward=data.reward,
            action=data.action,
            pscore=data.pscore,
            action_dist=dist,
            estimated_rewards=_pairs(model, x, data.action, dist),
            **marginal,
        )
        for e in ests:
            out[name, e.label] = model_noise_terms(
                e, model, x, data.action, dist, terms, n_total / len(x)
            )
    return out


def _rebuild_logger(metadata: dict[str, Any]) -> Any:
    from offrec.policies.loggers import logging_policy_from_spec
    from offrec.sim import World, WorldConfig

    cfg, spec = metadata.get("world_config"), metadata.get("logging_policy")
    if not isinstance(cfg, dict) or not isinstance(spec, dict):
        raise InputError(
            "MIPS / SN-MIPS / OffCEM need the logger's group propensities: a logging_dist "
            "column, or a simulated log whose metadata holds the world and logging policy"
        )
    world = World(WorldConfig.from_dict(cfg), seed=metadata.get("world_seed") or 0)
    return logging_policy_from_spec(world, spec)


__all__ = [
    "EMBEDDING_ESTIMATORS",
    "MIPS",
    "SNMIPS",
    "LoggerGroups",
    "OffCEM",
    "cluster_items",
    "cross_fit_interval",
    "logging_group_pscore",
    "model_noise_terms",
    "pair_reward_model",
    "sample_model_noise",
]
