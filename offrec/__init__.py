"""offrec: simulate logged recommendation data, train policies offline, evaluate them off-policy.

The public face: the few entry points a library user needs, loaded on first use, so
``import offrec`` imports neither gymnasium nor torch (nor pandas or scikit-learn):

>>> import offrec
>>> sorted(offrec.__all__)  # doctest: +NORMALIZE_WHITESPACE
['World', 'WorldConfig', '__version__', 'collect', 'evaluate', 'load_model', 'read_logs',
 'run_pipeline', 'save_model', 'sim', 'train', 'write_log']

- :func:`collect` (:func:`offrec.logs.writer.collect`): simulate a logging policy in a
  :class:`World` and stream its log to Parquet;
- :func:`read_logs` / :func:`write_log`: a log on disk to a validated
  :class:`~offrec.logs.LoggedData` and back;
- :func:`train` (:func:`offrec.training.train`: bandit, RL and online learners),
  :func:`save_model` / :func:`load_model` (:mod:`offrec.models`, no pickle);
- :func:`evaluate` (:func:`offrec.ope.evaluate.evaluate`): off-policy estimates with
  intervals, diagnostics, the data-driven estimator choice;
- :func:`run_pipeline` (:func:`offrec.pipeline.run_pipeline`): a pipeline file end to end.

The gymnasium environment ``offrec/Recommender-v0`` is registered by ``import offrec.sim``
(or by ``offrec.sim`` on first use here).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from offrec.core.version import __version__

if TYPE_CHECKING:
    from offrec import sim
    from offrec.logs.reader import read_logs
    from offrec.logs.writer import collect, write_log
    from offrec.models import load_model, save_model
    from offrec.ope.evaluate import evaluate
    from offrec.pipeline import run_pipeline
    from offrec.sim.config import WorldConfig
    from offrec.sim.world import World
    from offrec.training import train

_LAZY: dict[str, tuple[str, str]] = {
    "collect": ("offrec.logs.writer", "collect"),
    "read_logs": ("offrec.logs.reader", "read_logs"),
    "write_log": ("offrec.logs.writer", "write_log"),
    "evaluate": ("offrec.ope.evaluate", "evaluate"),
    "train": ("offrec.training", "train"),
    "load_model": ("offrec.models", "load_model"),
    "save_model": ("offrec.models", "save_model"),
    "run_pipeline": ("offrec.pipeline", "run_pipeline"),
    "World": ("offrec.sim.world", "World"),
    "WorldConfig": ("offrec.sim.config", "WorldConfig"),
}


def __getattr__(name: str) -> Any:
    if name == "sim":
        return importlib.import_module("offrec.sim")
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'offrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "World",
    "WorldConfig",
    "__version__",
    "collect",
    "evaluate",
    "load_model",
    "read_logs",
    "run_pipeline",
    "save_model",
    "sim",
    "train",
    "write_log",
]
