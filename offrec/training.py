"""Train a policy from a log of any size: the one function the CLI and the pipelines call.

How much of the log each learner reads:

- ``linucb`` and ``lints``: per-arm sufficient statistics
  :math:`A_a = \\lambda I + \\sum_{i: a_i = a} \\phi_i \\phi_i^\\top`,
  :math:`b_a = \\sum_{i: a_i = a} r_i \\phi_i` are sums over rows, so they are computed
  batch by batch (local or Ray engine) and merged: every row counts, memory is one batch.
- the other bandit and offline learners (logistic bandits, context-free bandits with
  their per-arm importance weights, reward-model greedy, IPW): fitted on a bounded,
  seeded sample of at most ``fit_rows`` rows (:mod:`offrec.engines.sample`); past that
  size a sample estimates their parameters about as well as the whole log.
- offline RL (DQN, CQL, ...): d3rlpy trains from a replay buffer in memory; a log larger
  than ``fit_rows`` rows is sampled by whole sessions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.policy import Head
from offrec.engines import make_engine
from offrec.engines.sample import draw_sample
from offrec.logs.data import LoggedData
from offrec.logs.items import ItemMap
from offrec.logs.scan import Batch, LogSource, open_log

STREAMED = ("linucb", "lints")
"""Learners fitted from sums over every row (the others use a bounded sample)."""


def train_policy(
    spec: Any,
    logs: LoggedData | LogSource | str | Path,
    world: Any,
    seed: int,
    *,
    engine: str = "local",
    batch_size: int = 65_536,
    fit_rows: int = 1_000_000,
    progress: Callable[[int], None] | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """Train the policy ``spec`` (a ``PolicySpec``) describes; return it with its
    training curve (RL) or None. ``logs`` is a log in memory or on disk (module docstring:
    which learners read all of it). The policy carries the log's item map (attribute
    ``item_map``, :mod:`offrec.logs.items`), which saving stores with it."""
    source: LoggedData | LogSource
    source = logs if isinstance(logs, LoggedData | LogSource) else open_log(logs)
    policy, curve = _train(spec, source, world, seed, engine, batch_size, fit_rows, progress)
    policy.item_map = ItemMap.of_metadata(
        source.metadata, int(source.n_actions or policy.n_actions)
    )
    return policy, curve


def _train(
    spec: Any, source: LoggedData | LogSource, world: Any, seed: int, engine: str,
    batch_size: int, fit_rows: int, progress: Callable[[int], None] | None,
) -> tuple[Any, dict[str, Any] | None]:  # fmt: skip
    head = Head(**spec.head)
    params = dict(spec.params)
    eng = make_engine(engine, batch_size=batch_size)
    if spec.learner in STREAMED:
        return _streamed_ridge(spec.learner, params, source, eng, progress).exploit(head), None
    data = source if isinstance(source, LoggedData) else None
    if data is None or data.n_rows > fit_rows:
        sample = draw_sample(
            source, eng, fit_rows, seed, sessions=bool(spec.is_rl), progress=progress
        )
        data = sample.data
        assert data is not None
        if spec.is_rl:  # d3rlpy wants each session's rows together, in step order
            data = data.subset(np.lexsort((data.step, data.session_id)))
    if spec.is_rl:
        from offrec.rl.config import RLConfig
        from offrec.rl.train import train_rl

        rl_cfg = RLConfig.from_dict({"seed": seed, **params, "algo": spec.learner})
        result = train_rl(data, rl_cfg, world=world)
        return result.policy.with_head(head), result.curve.to_dict()
    from offrec.policies import registry
    from offrec.policies.logged import fit_logged

    if spec.learner in registry.OFFLINE_LEARNERS:
        cls = registry.LEARNERS[spec.learner]
        if "seed" in inspect.signature(cls).parameters:
            params.setdefault("seed", seed)
        # sized by the log, not by the actions its training rows happen to contain
        params.setdefault("n_actions", data.n_actions)
        params.setdefault("context_dim", data.context_dim)
        return cls(head=head, **params).fit(data), None
    if spec.learner == "hybrid" and world is None and params.get("item_features") is None:
        params.update(_catalog_features(source))
    learner = registry.make_learner(
        spec.learner, data.n_actions, data.context_dim, world=world, **params
    )
    fit_logged(learner, data)
    return learner.exploit(head), None


def _catalog_features(source: LoggedData | LogSource) -> dict[str, Any]:
    """``{"item_features": ...}`` from the log's item table (an imported log that brought
    its catalog, :mod:`offrec.logs.catalog`), or nothing when it has none."""
    from offrec.logs.catalog import catalog_path, read_catalog

    path = getattr(source, "path", None)
    if path is None or catalog_path(path) is None or not Path(path).is_dir():
        return {}
    return {"item_features": read_catalog(path).features()}


@dataclass
class _Sums:
    """Per-arm ridge statistics of some rows (without the prior): mergeable."""

    A: np.ndarray
    b: np.ndarray
    n: int

    def merge(self, other: _Sums) -> _Sums:
        return _Sums(self.A + other.A, self.b + other.b, self.n + other.n)


def _streamed_ridge(name: str, params: dict[str, Any], source: Any, eng: Any, progress: Any) -> Any:
    from offrec.policies.registry import make_learner

    n_actions = source.n_actions
    dim = source.context_dim
    learner = make_learner(name, n_actions, dim, **params)
    prior = learner._state()  # the prior's A = reg * I, b = 0
    prior_A, prior_b = prior["A"], prior["b"]

    def kernel(batch: Batch) -> _Sums:
        fresh = make_learner(name, n_actions, dim, **params)
        data = batch.data
        fresh.partial_fit(data.context, data.action, data.reward)
        state = fresh._state()
        return _Sums(state["A"] - prior_A, state["b"] - prior_b, data.n_rows)

    sums = eng.map_reduce(source, kernel, progress=progress)
    learner._set_state({"A": prior_A + sums.A, "b": prior_b + sums.b})
    learner.n_updates = 1
    return learner
