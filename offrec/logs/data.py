"""``LoggedData``: the typed, validated in-memory form of a log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LoggedData:
    """One row per logged decision (shapes with ``n`` rows, ``d`` context width).

    Attributes:
        context: (n, d) float32, the observation the logging policy saw.
        action: (n,) int64 in ``[0, n_actions)``.
        reward: (n,) float64 (clicks are 0/1).
        pscore: (n,) float64 in (0, 1], the logger's probability of ``action``.
        session_id: (n,) int64; step: (n,) int64 (from 0 within a session).
        position: (n,) int64 (0 when one item is shown).
        user_id: (n,) int64 (-1 when unknown).
        terminated / truncated: (n,) bool, the session ended by the user / by the horizon.
        n_actions: number of items.
        logging_dist: optional (n, n_actions) float32, the logger's full distribution.
        true_ctr: optional (n,) float64, the true click probability of the logged action
            (simulated data only).
        metadata: dict of file metadata (world config, logging policy spec, seed, version...).
    """

    context: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    session_id: np.ndarray
    step: np.ndarray
    position: np.ndarray
    user_id: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    n_actions: int
    logging_dist: np.ndarray | None = None
    true_ctr: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.position.max()) + 1 if self.n_rows else 1

    @property
    def context_dim(self) -> int:
        return int(self.context.shape[1])

    def subset(self, rows: np.ndarray) -> LoggedData:
        """Rows ``rows`` (index array or boolean mask) as a new ``LoggedData``."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return LoggedData(
            context=self.context[rows],
            action=self.action[rows],
            reward=self.reward[rows],
            pscore=self.pscore[rows],
            session_id=self.session_id[rows],
            step=self.step[rows],
            position=self.position[rows],
            user_id=self.user_id[rows],
            terminated=self.terminated[rows],
            truncated=self.truncated[rows],
            n_actions=self.n_actions,
            logging_dist=pick(self.logging_dist),
            true_ctr=pick(self.true_ctr),
            metadata=dict(self.metadata),
        )
