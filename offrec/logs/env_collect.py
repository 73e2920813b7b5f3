"""Log a policy acting in a gymnasium world (:class:`offrec.sim.adapter.GymWorld`).

The rollout (:func:`offrec.sim.adapter.rollout`) becomes a :class:`LoggedData` (one row
per decision: episode = session, ``terminated`` / ``truncated`` kept apart, ``pscore`` the
policy's probability of the logged action) and is published with :func:`write_log`
(validated, atomic, locked). The whole log is held in memory once, so this suits logs of
up to a few million rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offrec.core.validation import SeedLike, as_seed_sequence
from offrec.logs.data import LoggedData
from offrec.logs.writer import write_log
from offrec.sim.adapter import GymWorld, rollout


def env_log(
    world: GymWorld,
    policy: Any,
    *,
    n_sessions: int,
    seed: SeedLike = 0,
    logging_dist: bool = False,
) -> LoggedData:
    """The in-memory log of ``n_sessions`` episodes of ``policy`` in ``world`` (what
    :func:`collect_env` writes); same ``seed``, same log."""
    ss = as_seed_sequence(seed)
    ro = rollout(world, policy, n_sessions, ss)
    return LoggedData.from_arrays(
        ro.context,
        ro.action,
        ro.reward,
        ro.pscore,
        n_actions=world.n_actions,
        session_id=ro.session_id,
        step=ro.step,
        terminated=ro.terminated,
        truncated=ro.truncated,
        logging_dist=ro.logging_dist if logging_dist else None,
        reward_domain=world.reward_domain,
        metadata={
            "external_world": world.describe(),
            "collect_seed": ss.entropy,
            "logging_policy": type(policy).__name__,
        },
    )


def collect_env(
    world: GymWorld,
    policy: Any,
    *,
    out: str | Path,
    n_sessions: int,
    seed: SeedLike = 0,
    overwrite: bool = False,
    logging_dist: bool = False,
) -> Path:
    """Log ``n_sessions`` episodes of ``policy`` in ``world`` to the Parquet dataset ``out``.

    Same ``seed``, same log. ``logging_dist`` also stores the policy's full distribution
    per row. The metadata records the world (``external_world``: :meth:`GymWorld.describe`),
    the seed (``collect_seed``) and the policy's class (``logging_policy``). Returns ``out``.
    """
    data = env_log(world, policy, n_sessions=n_sessions, seed=seed, logging_dist=logging_dist)
    return write_log(data, out, overwrite=overwrite)
