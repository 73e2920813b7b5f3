"""Reference targets: hand-made policies a pipeline compares its learned ones against.

One registry, :data:`REFERENCES`, names every kind with its role in a report:

- ``logger``: the policy that logged the data (built from the pipeline's ``[logging]``,
  so it has no builder here);
- ``uniform``, ``epsilon_greedy``, ``softmax``: logging policies of their own
  (:func:`offrec.policies.loggers.logging_policy`), role ``hand-made``;
- ``best_item``, ``myopic``, ``lookahead``: oracles that know the true click model
  (:mod:`offrec.sim.oracles`), role ``oracle``.

>>> from offrec.sim import World, WorldConfig
>>> world = World(WorldConfig(n_items=4, n_topics=2), seed=0)
>>> REFERENCES["myopic"].role, make_reference("best_item", world).n_actions
('oracle', 4)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from offrec.core.policy import BasePolicy, Head
from offrec.core.registry import Registry
from offrec.policies.loggers import LOGGER_KINDS, logging_policy, logging_policy_kwargs
from offrec.sim import BestItemOracle, LookaheadOracle, MyopicOracle, World

__all__ = ["REFERENCES", "ReferenceKind", "make_reference"]


@dataclass(frozen=True)
class ReferenceKind:
    """A kind of reference: its ``role`` in reports (``logger``, ``oracle``, ``hand-made``)
    and how it is built from a world and its options (None for ``logger``)."""

    role: str
    build: Callable[..., BasePolicy] | None


def _logging(kind: str) -> Callable[..., BasePolicy]:
    def build(world: World, **options: float) -> BasePolicy:
        kw = logging_policy_kwargs(kind, strict=False, **options)
        return logging_policy(world, kind, **kw)

    return build


def _head(epsilon: float) -> Head:
    return Head("epsilon_greedy", epsilon=epsilon) if epsilon > 0 else Head()


def _best_item(world: World, *, epsilon: float = 0.0, **_: float) -> BasePolicy:
    return BestItemOracle(world, _head(epsilon))


def _myopic(world: World, *, epsilon: float = 0.0, **_: float) -> BasePolicy:
    return MyopicOracle(world, _head(epsilon))


def _lookahead(
    world: World, *, epsilon: float = 0.0, gamma: float = 0.25, **_: float
) -> BasePolicy:
    return LookaheadOracle(world, _head(epsilon), gamma=gamma)


#: every reference kind: name -> role and builder
REFERENCES: Registry[ReferenceKind] = Registry(
    "reference policy",
    {
        "logger": ReferenceKind("logger", None),
        **{kind: ReferenceKind("hand-made", _logging(kind)) for kind in LOGGER_KINDS},
        "best_item": ReferenceKind("oracle", _best_item),
        "myopic": ReferenceKind("oracle", _myopic),
        "lookahead": ReferenceKind("oracle", _lookahead),
    },
)


def make_reference(
    kind: str,
    world: World,
    *,
    epsilon: float = 0.0,
    beta: float = 1.0,
    noise: float = 0.5,
    gamma: float = 0.25,
    model_seed: int = 0,
) -> BasePolicy:
    """The reference ``kind`` in ``world``: logging policies take ``epsilon`` / ``beta`` /
    ``noise`` / ``model_seed`` as :func:`~offrec.policies.loggers.logging_policy` does;
    oracles are greedy, or epsilon-greedy with ``epsilon > 0``; ``lookahead`` weighs
    the next step by ``gamma``. ``logger`` is the pipeline's own logging policy and is
    not built here."""
    build = REFERENCES[REFERENCES.resolve(kind, "reference policy")].build
    if build is None:
        raise ValueError("the 'logger' reference is the pipeline's logging policy: build it there")
    return build(world, epsilon=epsilon, beta=beta, noise=noise, gamma=gamma, model_seed=model_seed)
