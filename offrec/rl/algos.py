"""The offline RL algorithms offrec trains, by name (no d3rlpy import: cheap to read).

``ALGOS`` maps each name to the d3rlpy config class :func:`offrec.rl.config.build_algo`
builds; pipelines (``learner = "cql"``), :class:`~offrec.rl.config.RLConfig` and the CLI's
``--algo`` derive their choices from it.

>>> ALGOS.names
('dqn', 'double-dqn', 'cql', 'bcq')
>>> ALGOS["cql"]
'DiscreteCQLConfig'
"""

from __future__ import annotations

from offrec.core.registry import Registry

__all__ = ["ALGOS", "learner_name"]

#: name -> d3rlpy config class (in ``d3rlpy.algos``)
ALGOS: Registry[str] = Registry(
    "RL algorithm",
    {
        "dqn": "DQNConfig",
        "double-dqn": "DoubleDQNConfig",
        "cql": "DiscreteCQLConfig",
        "bcq": "DiscreteBCQConfig",
    },
)


def learner_name(name: str) -> str:
    """``name`` with a deprecated spelling replaced by the canonical one (and a
    ``DeprecationWarning``), whichever registry owns it: a bandit / offline learner
    (:data:`offrec.policies.registry.LEARNERS`, e.g. ``"thompson"``, ``"reward_model"``) or
    an RL algorithm (:data:`ALGOS`, e.g. ``"double_dqn"``). Any other name, canonical or
    unknown, comes back unchanged for the caller's own check to accept or reject.

    >>> learner_name("cql")
    'cql'
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     learner_name("double_dqn"), [str(w.message) for w in caught]
    ('double-dqn', ["RL algorithm 'double_dqn' is a deprecated alias of 'double-dqn'; use 'double-dqn'"])
    """
    from offrec.policies.registry import LEARNERS  # numpy / scipy: only when a name is read

    for registry in (LEARNERS, ALGOS):
        if name in registry.aliases:
            return registry.resolve(name)
    return name
