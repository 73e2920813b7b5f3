"""The offline RL algorithms offrec trains, by name (no d3rlpy import: cheap to read).

``ALGOS`` maps each name to the d3rlpy config class :func:`offrec.rl.config.build_algo`
builds; pipelines (``learner = "cql"``), :class:`~offrec.rl.config.RLConfig` and the CLI's
``--algo`` derive their choices from it.

>>> ALGOS.names
('dqn', 'double_dqn', 'cql', 'bcq')
>>> ALGOS["cql"]
'DiscreteCQLConfig'
"""

from __future__ import annotations

from offrec.core.registry import Registry

__all__ = ["ALGOS"]

#: name -> d3rlpy config class (in ``d3rlpy.algos``)
ALGOS: Registry[str] = Registry(
    "RL algorithm",
    {
        "dqn": "DQNConfig",
        "double_dqn": "DoubleDQNConfig",
        "cql": "DiscreteCQLConfig",
        "bcq": "DiscreteBCQConfig",
    },
)
