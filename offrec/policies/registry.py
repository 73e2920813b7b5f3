"""The learners of :mod:`offrec.policies`, by name: the one list pipelines, the CLI and
saved models use.

Each learner class's ``kind`` is its name here and the ``type`` written by
:func:`~offrec.policies.persist.save_policy`. Offline RL algorithms are registered by
:mod:`offrec.rl.algos` (``offrec.rl.algos.ALGOS``).

Deprecated aliases (resolve with a ``DeprecationWarning``; never listed as choices):

- ``"thompson"`` -> ``"bernoulli-ts"``: the pipeline / CLI name before one name per learner;
- ``"lin_ucb"``, ``"lin_ts"``, ``"logistic_epsilon_greedy"``, ``"reward_model_greedy"``,
  ``"ipw_learner"`` -> ``"linucb"``, ``"lints"``, ``"logistic"``, ``"reward-model"``,
  ``"ipw"``: the ``type`` in model folders saved before that change, so they still load;
- ``"epsilon_greedy"``, ``"bernoulli_ts"``, ``"reward_model"``: the underscore spellings
  used before names took hyphens (added by :class:`~offrec.core.registry.Registry`).

>>> LEARNERS.names
('epsilon-greedy', 'ucb1', 'bernoulli-ts', 'linucb', 'lints', 'logistic', 'hybrid', 'reward-model', 'ipw')
>>> make_learner("linucb", n_actions=4, context_dim=3).kind
'linucb'
"""

from __future__ import annotations

from typing import Any

from offrec.core.errors import InputError
from offrec.core.registry import Registry
from offrec.policies.bandits import (
    UCB1,
    BanditLearner,
    BernoulliTS,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    LogisticEpsilonGreedy,
)
from offrec.policies.bandits.hybrid import HybridLinear, catalog_features
from offrec.policies.offline import IPWLearner, RewardModelGreedy

__all__ = ["BANDIT_LEARNERS", "LEARNERS", "OFFLINE_LEARNERS", "make_learner"]

_BANDITS: tuple[type[BanditLearner], ...] = (
    EpsilonGreedy,
    UCB1,
    BernoulliTS,
    LinUCB,
    LinTS,
    LogisticEpsilonGreedy,
    HybridLinear,
)
_OFFLINE: tuple[type[Any], ...] = (RewardModelGreedy, IPWLearner)

#: every learner of this package: name -> class (bandit learners first, then offline ones)
LEARNERS: Registry[type[Any]] = Registry(
    "learner",
    {cls.kind: cls for cls in (*_BANDITS, *_OFFLINE)},
    aliases={
        "thompson": "bernoulli-ts",
        "lin_ucb": "linucb",
        "lin_ts": "lints",
        "logistic_epsilon_greedy": "logistic",
        "reward_model_greedy": "reward-model",
        "ipw_learner": "ipw",
    },
)
#: names of the online bandit learners (``partial_fit``; fitted on logs by ``fit_logged``)
BANDIT_LEARNERS: tuple[str, ...] = tuple(cls.kind for cls in _BANDITS)
#: names of the learners fitted once on a whole log (``fit(data)``)
OFFLINE_LEARNERS: tuple[str, ...] = tuple(cls.kind for cls in _OFFLINE)


def make_learner(
    name: str, n_actions: int, context_dim: int, *, world: Any = None, **params: Any
) -> BanditLearner:
    """The bandit learner called ``name`` (:data:`BANDIT_LEARNERS`), sized for ``n_actions``
    items and (contextual learners) ``context_dim`` features; ``params`` go to its class.

    ``world``: the simulated world the log came from (or None). The shared-parameter
    learner ``"hybrid"`` takes its item features from the world's item table
    (:func:`~offrec.policies.bandits.hybrid.catalog_features`) unless ``params`` hold
    ``item_features``; without either it uses one-hot items (small catalogs only)."""
    canonical = LEARNERS.resolve(name)
    if canonical not in BANDIT_LEARNERS:
        raise InputError(
            f"learner must be one of the bandit learners {list(BANDIT_LEARNERS)}; got {name!r}"
        )
    cls = LEARNERS[canonical]
    if cls is HybridLinear:
        if world is not None and params.get("item_features") is None:
            if int(world.n_actions) != n_actions:
                raise InputError(
                    f"the world has {world.n_actions} items; the hybrid learner was asked for "
                    f"n_actions={n_actions}"
                )
            params["item_features"] = catalog_features(world)
        return HybridLinear.from_sizes(n_actions, context_dim, **params)
    learner: BanditLearner = (
        cls(n_actions, context_dim, **params) if cls.contextual else cls(n_actions, **params)
    )
    return learner
