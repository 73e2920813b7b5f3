"""A vectorized replay buffer for offline training: a whole mini-batch in a few gathers.

d3rlpy's ``ReplayBuffer.sample_transition_batch`` calls its transition picker once per
sampled transition (a Python loop building one ``Transition`` object each, then stacking
them); on this machine that costs about as much as the gradient step itself. A
:class:`VectorizedReplayBuffer` draws the batch's row indices at once and gathers them
with numpy fancy indexing from one float32 table (a row per transition: ``s``, ``a``,
``r``, terminal, alive, ``a'``), plus the next rows' observations for ``s'`` (zeroed
where terminal): two gathers a batch. :meth:`~VectorizedReplayBuffer.sample_torch_batch`
hands the same batch over as d3rlpy's torch batch, for
:func:`offrec.rl.q_learning.gradient_step`.

It plugs into d3rlpy through its public extension point, the abstract
:class:`d3rlpy.dataset.ReplayBufferBase` that ``algo.fit(dataset, ...)`` and
``algo.update(batch)`` consume; it holds offrec's :class:`~offrec.rl.dataset.Transitions`
(composition), and changes nothing inside d3rlpy. Its batches have the same semantics as
d3rlpy's default :class:`~d3rlpy.dataset.BasicTransitionPicker` over the episodes of
:func:`offrec.rl.dataset.to_replay_buffer`: the same ``(s, a, r, s', a', terminal,
interval=1)`` for a given row (tested row by row), ``s'`` and ``a'`` zero on terminal
rows; the ``transitions`` field of a batch is a lazy sequence that builds the full
d3rlpy ``Transition`` objects (with ``rewards_to_go``) only if an algorithm asks for them.

Sampling is uniform over rows (as d3rlpy's is uniform over transitions) and draws from
the buffer's own ``numpy.random.Generator`` (``seed``), never from global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO, overload

import numpy as np

from offrec.rl._d3rlpy import d3rlpy_module

d3rlpy_module()  # quiet first import (the legacy gym notice)

from d3rlpy.dataset import (  # noqa: E402
    BasicTransitionPicker,
    DatasetInfo,
    EpisodeBase,
    PartialTrajectory,
    ReplayBufferBase,
    Transition,
    TransitionMiniBatch,
)
from d3rlpy.dataset.trajectory_slicers import BasicTrajectorySlicer  # noqa: E402

from offrec.core.errors import InputTypeError  # noqa: E402
from offrec.core.validation import SeedLike, as_generator, check_scalar  # noqa: E402
from offrec.rl.dataset import Transitions, dataset_info, to_episodes  # noqa: E402

__all__ = ["VectorizedReplayBuffer"]


class _FlatIndex:
    """d3rlpy ``BufferProtocol`` view: flat row index -> (episode, index within it)."""

    def __init__(self, owner: VectorizedReplayBuffer) -> None:
        self._owner = owner

    def append(self, episode: EpisodeBase, index: int) -> None:
        raise NotImplementedError("VectorizedReplayBuffer is read-only (offline data)")

    @property
    def episodes(self) -> Sequence[EpisodeBase]:
        return self._owner.episodes

    @property
    def transition_count(self) -> int:
        return self._owner.transition_count

    def __len__(self) -> int:
        return self._owner.transition_count

    def __getitem__(self, index: int) -> tuple[EpisodeBase, int]:
        ep, within = self._owner.transitions.episode_of(np.asarray([index]))
        return self._owner.episodes[int(ep[0])], int(within[0])


class _LazyTransitions(Sequence[Transition]):
    """The ``transitions`` of a batch, built on access only (rarely needed by Q-learning)."""

    def __init__(self, owner: VectorizedReplayBuffer, rows: np.ndarray) -> None:
        self._owner, self._rows = owner, rows

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    @overload
    def __getitem__(self, i: int) -> Transition: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Transition]: ...

    def __getitem__(self, i: int | slice) -> Transition | Sequence[Transition]:
        if isinstance(i, slice):
            return [self._owner.transition_at(int(r)) for r in self._rows[i]]
        return self._owner.transition_at(int(self._rows[i]))


class VectorizedReplayBuffer(ReplayBufferBase):
    """Read-only d3rlpy replay buffer over :class:`~offrec.rl.dataset.Transitions`.

    Not run as a doctest: it needs a converted log and a d3rlpy algorithm
    (``tests/rl/test_train.py`` runs this path).

    >>> buf = VectorizedReplayBuffer(transitions, seed=0)  # doctest: +SKIP
    >>> batch = buf.sample_transition_batch(256)           # doctest: +SKIP
    >>> algo.update(batch)                                  # doctest: +SKIP

    Args:
        transitions: from :func:`offrec.rl.dataset.to_transitions`.
        seed: seed of the sampling generator (int, Generator or None).
    """

    def __init__(self, transitions: Transitions, seed: SeedLike = None) -> None:
        if not isinstance(transitions, Transitions):
            raise InputTypeError(
                f"transitions must be Transitions; got {type(transitions).__name__}"
            )
        self._tr = transitions
        self._rng = as_generator(seed)
        n, d = transitions.n_transitions, transitions.observation_dim
        terminal = transitions.terminals > 0
        # s' is the next row's observation (the row itself when terminal, then zeroed)
        self._next_row = np.where(terminal, np.arange(n), np.arange(1, n + 1))
        # one row per transition, everything but s': a mini-batch is two gathers from it
        # (its rows, and the next rows' observations, mostly adjacent in memory) instead
        # of one per field: each gather is a cache miss per row on a large log
        table = np.empty((n, d + 5), np.float32)
        table[:, :d] = transitions.observations
        table[:, d] = transitions.actions
        table[:, d + 1] = transitions.rewards
        table[:, d + 2] = terminal
        table[:, d + 3] = ~terminal  # alive: 0 zeroes s' on terminal rows
        table[:, d + 4] = transitions.next_actions()  # 0 on terminal rows
        self._table, self._d = table, d
        self._info = dataset_info(transitions)
        self._episodes: list[EpisodeBase] | None = None
        self._picker = BasicTransitionPicker()
        self._slicer = BasicTrajectorySlicer()

    # -- sampling ------------------------------------------------------------------------
    def seed(self, seed: SeedLike) -> None:
        """Reset the sampling generator."""
        self._rng = as_generator(seed)

    def batch_at(self, rows: np.ndarray) -> TransitionMiniBatch:
        """The mini-batch of the given row indices (deterministic; what sampling gathers)."""
        rows = np.asarray(rows, dtype=np.int64)
        d = self._d
        cur = self._table[rows]
        next_obs = self._table[self._next_row[rows], :d]
        next_obs *= cur[:, d + 3 : d + 4]
        return TransitionMiniBatch(
            observations=cur[:, :d],
            actions=cur[:, d : d + 1],
            rewards=cur[:, d + 1 : d + 2],
            next_observations=next_obs,
            next_actions=cur[:, d + 4 : d + 5],
            terminals=cur[:, d + 2 : d + 3],
            intervals=np.ones((rows.shape[0], 1), np.float32),
            transitions=_LazyTransitions(self, rows),
        )

    def sample_transition_batch(self, batch_size: int) -> TransitionMiniBatch:
        check_scalar(batch_size, "batch_size", int, min=1)
        return self.batch_at(self._rng.integers(0, self.transition_count, size=batch_size))

    def sample_torch_batch(self, batch_size: int) -> Any:
        """The next :meth:`sample_transition_batch` as d3rlpy's ``TorchMiniBatch`` (CPU):
        what ``algo.update`` would hand ``algo.impl.update``, built with
        ``torch.from_numpy`` from the batch's fresh arrays (no scalers, zero
        returns-to-go, which is what d3rlpy's Q-learning algorithms here use)."""
        import torch
        from d3rlpy.torch_utility import TorchMiniBatch

        b = self.sample_transition_batch(batch_size)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a))

        rewards = t(b.rewards)
        return TorchMiniBatch(
            observations=t(b.observations),
            actions=t(b.actions),
            rewards=rewards,
            next_observations=t(b.next_observations),
            next_actions=t(b.next_actions),
            returns_to_go=torch.zeros_like(rewards),
            terminals=t(b.terminals),
            intervals=t(b.intervals),
            device="cpu:0",
            numpy_batch=b,
        )

    def sample_transition(self) -> Transition:
        return self.transition_at(int(self._rng.integers(0, self.transition_count)))

    def transition_at(self, row: int) -> Transition:
        """d3rlpy's ``Transition`` for one row (built by d3rlpy's own default picker)."""
        ep, within = self._tr.episode_of(np.asarray([row]))
        return self._picker(self.episodes[int(ep[0])], int(within[0]))

    def sample_trajectory(self, length: int) -> PartialTrajectory:
        ep, within = self._tr.episode_of(self._rng.integers(0, self.transition_count, size=1))
        return self._slicer(self.episodes[int(ep[0])], int(within[0]), length)

    def sample_trajectory_batch(self, batch_size: int, length: int) -> Any:
        from d3rlpy.dataset import TrajectoryMiniBatch

        return TrajectoryMiniBatch.from_partial_trajectories(
            [self.sample_trajectory(length) for _ in range(batch_size)]
        )

    # -- read-only buffer ----------------------------------------------------------------
    def append(self, observation: Any, action: Any, reward: Any) -> None:
        raise NotImplementedError("VectorizedReplayBuffer is read-only (offline data)")

    def append_episode(self, episode: EpisodeBase) -> None:
        raise NotImplementedError("VectorizedReplayBuffer is read-only (offline data)")

    def clip_episode(self, terminated: bool) -> None:
        raise NotImplementedError("VectorizedReplayBuffer is read-only (offline data)")

    def dump(self, f: BinaryIO) -> None:
        from d3rlpy.dataset.io import dump

        dump(self.episodes, f)

    @classmethod
    def from_episode_generator(cls, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("build a VectorizedReplayBuffer from offrec Transitions")

    @classmethod
    def load(cls, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("build a VectorizedReplayBuffer from offrec Transitions")

    # -- facts ---------------------------------------------------------------------------
    @property
    def transitions(self) -> Transitions:
        return self._tr

    @property
    def episodes(self) -> Sequence[EpisodeBase]:
        if self._episodes is None:  # built on first use only (scalers, dump, trajectories)
            self._episodes = to_episodes(self._tr)
        return self._episodes

    def size(self) -> int:
        return self._tr.n_episodes

    @property
    def buffer(self) -> Any:
        return _FlatIndex(self)

    @property
    def transition_count(self) -> int:
        return self._tr.n_transitions

    @property
    def transition_picker(self) -> Any:
        return self._picker

    @property
    def trajectory_slicer(self) -> Any:
        return self._slicer

    @property
    def dataset_info(self) -> DatasetInfo:
        return self._info
