"""Logged sessions as offline-RL transitions, and as d3rlpy replay buffers.

One logged row (a decision) becomes one transition ``(s, a, r, s', terminal)``:

- ``s`` = the row's ``context``, ``a`` its ``action``, ``r`` its ``reward``;
- ``s'`` = the ``context`` of the next row of the same session (rows are ordered by
  ``session_id`` then ``step``);
- the last row of a session has no logged ``s'``. Its target is ``r`` alone
  (``terminal = 1``, ``s'`` = zeros, as d3rlpy does for terminal steps).

Why the last row never bootstraps, whatever ended the session:

============================  ==========================================================
how the session ended         reasoning
============================  ==========================================================
``terminated`` (user left)    nothing follows: the return after it is 0.
``truncated`` at the horizon  the horizon is part of the MDP and the observation carries
                              ``step / horizon``: after the last step the return is
                              exactly 0, so ``r`` is the exact target. Bootstrapping from
                              a made-up next observation would inject an arbitrary Q.
``truncated`` before the      the log was cut (e.g. ``collect(n_decisions=...)`` cuts its
horizon ("cut")               last session): the next observation was never logged, so
                              no bootstrap target exists; the row's reward still counts.
                              Counted in :attr:`Transitions.n_cut` (at most one session
                              per ``collect`` log).
============================  ==========================================================

The two kinds of ending stay apart in :attr:`Transitions.episode_terminated` /
:attr:`Transitions.episode_truncated` (and ``n_cut``), for diagnostics and sequential OPE.

**The d3rlpy 2.8.1 timeout trap.** d3rlpy marks an episode either ``terminated`` or
timed out; a timed-out episode of length ``L`` yields only ``L - 1`` transitions (its
last step and that step's reward are dropped: with 10-step sessions, 10% of the logged
clicks), and a row may not be both. Here every episode handed to d3rlpy is marked
``terminated=True`` ("do not bootstrap past the last step", which is the meaning above),
so d3rlpy's :class:`~d3rlpy.dataset.BasicTransitionPicker` yields exactly one transition
per logged row, every reward included; :func:`to_replay_buffer` and the vectorized
sampler in :mod:`offrec.rl.sampler` produce the same transitions.

No Python loop runs per row: episodes are found with vectorized comparisons and cut
with ``np.split`` (views, one small object per episode for d3rlpy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from offrec.core.errors import InputError, InputTypeError
from offrec.logs.data import LoggedData

__all__ = ["Transitions", "to_replay_buffer", "to_transitions"]


@dataclass(frozen=True)
class Transitions:
    """Flat offline-RL transitions, one per logged row (``n`` rows, ``E`` episodes).

    Attributes:
        observations: (n, d) float32, ``s``.
        actions: (n,) int64, ``a``.
        rewards: (n,) float32, ``r``.
        terminals: (n,) float32, 1.0 on the last row of each episode (no bootstrap).
        episode_starts: (E + 1,) int64 offsets: episode ``e`` is rows
            ``episode_starts[e]:episode_starts[e + 1]``.
        episode_terminated: (E,) bool, the session ended because the user left.
        episode_truncated: (E,) bool, the session ended by the horizon or a cut log.
        n_actions: number of discrete actions.
        horizon: the world's horizon when the log says it (else ``None``).
        n_cut: episodes truncated before the horizon (their next observation is unknown).

    ``s'`` is not stored: it is row ``i + 1`` of ``observations`` when ``terminals[i] ==
    0``, zeros otherwise (see :meth:`next_observations`).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    episode_starts: np.ndarray
    episode_terminated: np.ndarray
    episode_truncated: np.ndarray
    n_actions: int
    horizon: int | None = None
    n_cut: int = 0

    @property
    def n_transitions(self) -> int:
        return int(self.actions.shape[0])

    @property
    def n_episodes(self) -> int:
        return int(self.episode_starts.shape[0] - 1)

    @property
    def observation_dim(self) -> int:
        return int(self.observations.shape[1])

    def next_observations(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``s'`` (len(rows), d) float32 of ``rows`` (all rows by default); zeros when terminal."""
        rows = np.arange(self.n_transitions) if rows is None else np.asarray(rows)
        nxt = self.observations[np.minimum(rows + 1, self.n_transitions - 1)]
        nxt[self.terminals[rows] > 0] = 0.0
        return nxt

    def next_actions(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Logged next action (len(rows),) int64 of ``rows``; 0 when terminal (as d3rlpy)."""
        rows = np.arange(self.n_transitions) if rows is None else np.asarray(rows)
        nxt = self.actions[np.minimum(rows + 1, self.n_transitions - 1)].copy()
        nxt[self.terminals[rows] > 0] = 0
        return nxt

    def episode_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(episode index, index within the episode) of each of ``rows``."""
        ep = np.searchsorted(self.episode_starts, rows, side="right") - 1
        return ep, np.asarray(rows) - self.episode_starts[ep]

    def summary(self) -> dict[str, Any]:
        """Counts for reports: transitions, episodes, how they ended, reward sum."""
        return {
            "n_transitions": self.n_transitions,
            "n_episodes": self.n_episodes,
            "n_terminated": int(self.episode_terminated.sum()),
            "n_truncated": int(self.episode_truncated.sum()),
            "n_cut": self.n_cut,
            "reward_sum": float(self.rewards.sum(dtype=np.float64)),
            "horizon": self.horizon,
        }


def _horizon_from(data: LoggedData) -> int | None:
    world = data.metadata.get("world_config")
    if isinstance(world, dict) and isinstance(world.get("horizon"), int):
        return int(world["horizon"])
    return None


def to_transitions(data: LoggedData, *, horizon: int | None = None) -> Transitions:
    """Turn a log into :class:`Transitions`, one per row, every reward kept.

    Args:
        data: the log. Rows may come in any order; they are sorted by
            ``(session_id, step)`` when they are not already.
        horizon: the world's session horizon, used only to tell a horizon end from a cut
            log (``n_cut``); default: read from the log's world config, if any.

    Raises ``ValueError`` (naming the first offending row) when a session skips or
    repeats a step, when a row is both ``terminated`` and ``truncated``, or when a row in
    the middle of a session is marked as its end. A session whose last row carries no
    end flag (a log filtered by hand) is treated as cut.
    """
    if not isinstance(data, LoggedData):
        raise InputTypeError(f"data must be a LoggedData; got {type(data).__name__}")
    n = data.n_rows
    if n == 0:
        raise InputError("data must have at least one row; got 0")
    sid, step = np.asarray(data.session_id), np.asarray(data.step)
    order: np.ndarray | None = None
    if n > 1:
        ordered = (sid[1:] > sid[:-1]) | ((sid[1:] == sid[:-1]) & (step[1:] > step[:-1]))
        if not ordered.all():
            order = np.lexsort((step, sid))
            sid, step = sid[order], step[order]

    def col(a: np.ndarray) -> np.ndarray:
        return a if order is None else a[order]

    terminated, truncated = col(np.asarray(data.terminated)), col(np.asarray(data.truncated))
    both = terminated & truncated
    if both.any():
        i = int(np.flatnonzero(both)[0])
        raise InputError(
            f"a row may not be both terminated and truncated; row {_orig(order, i)} "
            f"(session {int(sid[i])}, step {int(step[i])}) is both"
        )
    last = np.ones(n, bool)
    last[:-1] = sid[1:] != sid[:-1]
    gap = ~last[:-1] & (step[1:] != step[:-1] + 1)
    if gap.any():
        i = int(np.flatnonzero(gap)[0]) + 1
        raise InputError(
            f"steps of a session must be consecutive; session {int(sid[i])} goes from step "
            f"{int(step[i - 1])} to {int(step[i])} at row {_orig(order, i)}"
        )
    ended = terminated | truncated
    early = ended & ~last
    if early.any():
        i = int(np.flatnonzero(early)[0])
        raise InputError(
            f"only the last row of a session may be terminated/truncated; row "
            f"{_orig(order, i)} (session {int(sid[i])}, step {int(step[i])}) is marked but "
            f"the session goes on"
        )
    horizon = _horizon_from(data) if horizon is None else horizon
    ends = np.flatnonzero(last)
    ep_terminated = terminated[ends]
    ep_truncated = ~ep_terminated  # truncated, or no flag at all (treated as cut)
    at_horizon = (step[ends] + 1 >= horizon) if horizon is not None else np.zeros(ends.size, bool)
    n_cut = int((ep_truncated & ~at_horizon).sum())
    return Transitions(
        observations=np.ascontiguousarray(col(np.asarray(data.context)), dtype=np.float32),
        actions=col(np.asarray(data.action)).astype(np.int64, copy=False),
        rewards=col(np.asarray(data.reward)).astype(np.float32),
        terminals=last.astype(np.float32),
        episode_starts=np.concatenate([[0], ends + 1]).astype(np.int64),
        episode_terminated=ep_terminated,
        episode_truncated=ep_truncated,
        n_actions=int(data.n_actions),
        horizon=horizon,
        n_cut=n_cut,
    )


def _orig(order: np.ndarray | None, i: int) -> int:
    return i if order is None else int(order[i])


def to_episodes(tr: Transitions) -> list[Any]:
    """d3rlpy ``Episode`` objects (views into ``tr``), all ``terminated=True`` (see module doc)."""
    from d3rlpy.dataset import Episode

    cuts = tr.episode_starts[1:-1]
    obs = np.split(tr.observations, cuts)
    act = np.split(tr.actions.reshape(-1, 1), cuts)
    rew = np.split(tr.rewards.reshape(-1, 1), cuts)
    return [
        Episode(observations=o, actions=a, rewards=r, terminated=True)
        for o, a, r in zip(obs, act, rew, strict=True)
    ]


def dataset_info(tr: Transitions) -> Any:
    """d3rlpy ``DatasetInfo`` of ``tr`` (discrete actions, float32 observations)."""
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import DatasetInfo, Signature

    return DatasetInfo(
        observation_signature=Signature(
            dtype=[np.dtype(np.float32)], shape=[(tr.observation_dim,)]
        ),
        action_signature=Signature(dtype=[np.dtype(np.int64)], shape=[(1,)]),
        reward_signature=Signature(dtype=[np.dtype(np.float32)], shape=[(1,)]),
        action_space=ActionSpace.DISCRETE,
        action_size=tr.n_actions,
    )


def to_replay_buffer(data: LoggedData | Transitions, *, horizon: int | None = None) -> Any:
    """A d3rlpy ``ReplayBuffer`` (an ``MDPDataset`` without the per-row generator loop).

    Sampling from it uses d3rlpy's default per-transition picker; for training speed use
    :class:`offrec.rl.sampler.VectorizedReplayBuffer`, which yields the same transitions.
    """
    from d3rlpy.dataset import InfiniteBuffer, ReplayBuffer

    tr = data if isinstance(data, Transitions) else to_transitions(data, horizon=horizon)
    info = dataset_info(tr)
    return ReplayBuffer(
        InfiniteBuffer(),
        episodes=to_episodes(tr),
        observation_signature=info.observation_signature,
        action_signature=info.action_signature,
        reward_signature=info.reward_signature,
        action_space=info.action_space,
        action_size=info.action_size,
    )
