r"""What the learned session estimators need from a log: next rows, recent actions, folds.

A session log is rows ``(session_id, step, context, action, reward, terminated,
truncated)``. :func:`session_structure` indexes it once, vectorized (no loop over rows or
sessions):

- ``next_row`` (n,): the row of the same session at ``step + 1``, or -1 for the
  session's last row. A last row is *terminated* (the user left: an absorbing state of
  value 0) or *truncated* (the horizon was reached, or the log was cut). offrec
  evaluates the value of at most ``horizon`` steps, so the value-to-go after a truncated
  last row is 0 as well; both kinds get the Bellman target :math:`r` alone. The two are
  kept apart in ``terminated`` / ``truncated`` so the model-based estimator can learn
  *when* sessions are truncated (:mod:`offrec.ope.model_based`).
- ``recent`` (n, L): the actions shown 1..L steps earlier in the same session (-1 before
  the session's start). The observation may not record them, yet they can matter
  (offrec's world penalises an item shown in the last few steps); any log holds them.
- ``fold`` (m,): a fold per session from a seeded hash of ``session_id``
  (:func:`session_folds`), so cross-fitting does not depend on row order or batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offrec.core.errors import InputError
from offrec.logs.data import LoggedData

RECENT = 4  # actions remembered per row (the world's repeat window is 3; learned weights tell)


@dataclass(frozen=True)
class EpisodeIndex:
    """Where each row sits in the padded (m, H) episode matrices."""

    episode: np.ndarray  # (n,) episode index of each row
    step: np.ndarray  # (n,) position within the episode
    n_episodes: int
    horizon: int

    def pad(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full((self.n_episodes, self.horizon), fill, dtype=np.float64)
        out[self.episode, self.step] = values
        return out

    @property
    def mask(self) -> np.ndarray:
        return self.pad(np.ones(self.episode.shape[0]), 0.0) > 0


def episode_index(
    session_id: np.ndarray, step: np.ndarray, horizon: int | None = None
) -> EpisodeIndex:
    """Index rows by episode; steps must run 0, 1, 2, ... within each session.

    ``horizon`` pads the episode matrices to that width (default: the longest session),
    so batches of one log share one layout."""
    session_id = np.asarray(session_id)
    step = np.asarray(step, dtype=np.int64)
    if session_id.shape != step.shape or session_id.ndim != 1:
        raise InputError(
            f"session_id and step must be 1-D of one length; got {session_id.shape}, {step.shape}"
        )
    uniq, episode = np.unique(session_id, return_inverse=True)
    counts = np.bincount(episode)
    if (step < 0).any() or (step >= counts[episode]).any():
        i = int(np.flatnonzero((step < 0) | (step >= counts[episode]))[0])
        raise InputError(
            f"step must run 0..len-1 within each session; row {i} (session {session_id[i]}) "
            f"has step {step[i]} in a session of {counts[episode[i]]} rows"
        )
    seen = np.zeros((uniq.size, int(counts.max())), bool)
    seen[episode, step] = True
    if seen.sum() != step.size:
        raise InputError(
            "step must not repeat within a session (duplicated (session_id, step) rows)"
        )
    width = int(counts.max()) if horizon is None else horizon
    if counts.max() > width:
        raise InputError(f"a session has {int(counts.max())} steps, more than horizon {width}")
    return EpisodeIndex(episode, step, int(uniq.size), width)


@dataclass(frozen=True)
class SessionStructure:
    """Index of a session log (all (n,) arrays are per row, in the log's row order)."""

    episode: np.ndarray  # (n,) session index in [0, m), sessions in sorted session_id order
    step: np.ndarray  # (n,) int64
    next_row: np.ndarray  # (n,) int64, -1 on a session's last row
    recent: np.ndarray  # (n, L) int64 actions shown 1..L steps before, -1 if none
    first_row: np.ndarray  # (m,) row of each session's step 0
    sessions: np.ndarray  # (m,) sorted unique session ids
    horizon: int  # longest session in the log

    @property
    def n_sessions(self) -> int:
        return int(self.sessions.shape[0])


def session_structure(data: LoggedData, recent: int = RECENT) -> SessionStructure:
    """Index ``data`` by session (see the module docstring); steps must run 0..len-1."""
    idx = episode_index(data.session_id, data.step)
    n = data.n_rows
    row_of = np.full((idx.n_episodes, idx.horizon + 1), -1, np.int64)
    row_of[idx.episode, idx.step] = np.arange(n)
    next_row = row_of[idx.episode, idx.step + 1]
    hist = np.full((n, recent), -1, np.int64)
    action = np.asarray(data.action, np.int64)
    for j in range(1, recent + 1):  # loop over the L lags, not over rows
        ok = idx.step >= j
        prev = row_of[idx.episode[ok], idx.step[ok] - j]
        hist[ok, j - 1] = action[prev]
    return SessionStructure(
        episode=idx.episode,
        step=np.asarray(idx.step, np.int64),
        next_row=next_row,
        recent=hist,
        first_row=row_of[:, 0],
        sessions=np.unique(data.session_id),
        horizon=idx.horizon,
    )


def session_folds(session_id: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold in ``[0, n_folds)`` of each session id: a seeded 64-bit mix (splitmix64) of
    the id, so a session's fold depends on (seed, session_id) only."""
    z = np.asarray(session_id).astype(np.uint64) + np.uint64(
        (0x9E3779B97F4A7C15 * (seed + 1)) & 0xFFFFFFFFFFFFFFFF
    )
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_folds)).astype(np.int64)


def session_weights(n_sessions: int, n_replicates: int, seed: int) -> np.ndarray:
    """Poisson(1) bootstrap weights (n_replicates, n_sessions) for sessions in sorted-id
    order (Hanley & MacGibbon, 2006; the Poisson bootstrap): ``E W = Var W = 1`` as for
    the multinomial bootstrap, and a weight per session lets models be refitted with
    weights instead of copying rows."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E55]))
    return rng.poisson(1.0, size=(n_replicates, n_sessions)).astype(np.float64)
