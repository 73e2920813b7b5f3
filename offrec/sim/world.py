"""The simulated platform: items, users, and a vectorized batch core for sessions.

Everything that moves (the gymnasium env, the vector env, log collection, ground
truth, online learning) goes through :meth:`World.step` on a :class:`SessionBatch`;
there is no second copy of the dynamics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from offrec.core.errors import InputError, InputTypeError
from offrec.core.policy import GreedyDist, Policy, SparseDist, sample_from_dist
from offrec.core.validation import SeedLike, as_generator, as_seed_sequence
from offrec.sim.config import WorldConfig

MAX_TABLE_CELLS = 32_000_000
BLOCK_CELLS = 1 << 21
"""(user, item) pairs scored at once by the blocked catalog passes (16 MB of float64)."""
SPARSE_TRUTH_ITEMS = 10_000
"""Above this many items, :meth:`World.true_value` reads a greedy target's factored form
as a :class:`~offrec.core.policy.SparseDist` instead of its dense rows."""


def sigmoid(x: Any) -> Any:
    """Logistic function ``1 / (1 + exp(-x))``, computed as ``exp(-log(1 + exp(-x)))``
    (numpy's ``logaddexp``: no overflow for any ``x``); arrays or scalars alike. Plain
    numpy, so simulating does not import scipy (a sixth of a second of start-up)."""
    return np.exp(-np.logaddexp(0.0, -x))


@dataclass
class SessionBatch:
    """State of ``n`` concurrent sessions (all arrays have ``n`` rows).

    user: (n,) int64 user index; step: (n,) int64 steps taken so far;
    fatigue: (n, n_topics) float64 per-topic fatigue ``f``;
    recent: (n, repeat_window) int64 items shown in the last steps (-1 = empty);
    last_click: (n,) float64 the previous step's click (0 at the start).
    """

    user: np.ndarray
    step: np.ndarray
    fatigue: np.ndarray
    recent: np.ndarray
    last_click: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, rows: np.ndarray) -> SessionBatch:
        return SessionBatch(
            self.user[rows],
            self.step[rows],
            self.fatigue[rows],
            self.recent[rows],
            self.last_click[rows],
        )


@dataclass
class StepResult:
    """Outcome of one step for each session: (n,) arrays."""

    reward: np.ndarray  # float64 clicks 0/1
    click_prob: np.ndarray  # float64 q of the shown item
    terminated: np.ndarray  # bool: the user left
    truncated: np.ndarray  # bool: horizon reached


@dataclass(frozen=True)
class ValueEstimate:
    """A policy's true value: CTR (bandit) or expected clicks per session (session mode)."""

    value: float
    stderr: float
    exact: bool
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "stderr": self.stderr, "exact": self.exact, "n": self.n}


@dataclass
class Trajectories:
    """Rows of a cohort of sessions, ordered by (session, step); all (rows,) unless noted."""

    session: np.ndarray  # int64 index within the cohort
    step: np.ndarray
    user: np.ndarray
    obs: np.ndarray  # (rows, obs_dim) float32
    action: np.ndarray
    pscore: np.ndarray
    reward: np.ndarray
    click_prob: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    dist: np.ndarray | None  # (rows, n_items) float32 when recorded


def _deprecated_alias(old: str, new: str) -> None:
    """Warn that ``World.<old>`` was read: it is the deprecated name of ``World.<new>``."""
    warnings.warn(f"World.{old} is deprecated; use World.{new}", DeprecationWarning, stacklevel=3)


class World:
    """A recommendation platform drawn from ``config`` with randomness from ``seed``.

    ``seed`` fixes the items and the user population; the randomness of sessions
    (which users arrive, clicks, leaving) is passed to each call explicitly.

    >>> w = World(WorldConfig(n_items=20, n_users=100), seed=0)
    >>> rng = np.random.default_rng(1)
    >>> batch = w.new_sessions(4, rng)
    >>> w.observe(batch).shape
    (4, 18)
    """

    #: one-session batches take :meth:`_step_one` (False: always the array path)
    small_batch_path: bool = True

    def __init__(self, config: WorldConfig | None = None, seed: SeedLike = 0) -> None:
        self.config = cfg = config or WorldConfig()
        if not isinstance(cfg, WorldConfig):
            raise InputTypeError(f"config must be a WorldConfig; got {type(cfg).__name__}")
        self.seed = seed if isinstance(seed, int) else None
        item_rng, user_rng = (np.random.default_rng(s) for s in as_seed_sequence(seed).spawn(2))
        T, K = cfg.n_topics, cfg.latent_dim
        centroids = item_rng.normal(size=(T, K))
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        self.topic_centroids = centroids
        self.item_topic = item_rng.permutation(np.arange(cfg.n_items) % T).astype(np.int64)
        self.item_vec = centroids[self.item_topic] + cfg.item_noise / np.sqrt(K) * item_rng.normal(
            size=(cfg.n_items, K)
        )
        self.item_quality = cfg.quality_std * item_rng.normal(size=cfg.n_items)
        self.user_profile = user_rng.dirichlet(np.full(T, cfg.profile_concentration), cfg.n_users)
        self.user_vec = self.user_profile @ centroids + cfg.user_noise / np.sqrt(
            K
        ) * user_rng.normal(size=(cfg.n_users, K))
        noisy = self.user_profile + cfg.obs_noise * user_rng.normal(size=(cfg.n_users, T))
        self.user_obs_profile = np.clip(noisy, -1.0, 2.0).astype(np.float32)
        self._topic_onehot = np.eye(T)[self.item_topic]  # (n_items, T)
        self._user_keys: tuple[np.ndarray, np.ndarray] | None = None
        self._arange = np.arange(1)
        self._leave_const = cfg.leave_base + cfg.leave_fatigue
        self._leave_slope = cfg.leave_fatigue * cfg.fatigue_decay
        # (n_users, n_items) table of state-free logits when it is small (<= 256 MB)
        self._logit_table: np.ndarray | None = None
        self._mean_q: np.ndarray | None = None  # per-user mean q over the catalog (lazy)
        if cfg.n_users * cfg.n_items <= MAX_TABLE_CELLS:
            self._logit_table = self._compute_logits(np.arange(cfg.n_users))
        if cfg.click_probs is not None:
            self._set_click_table(np.asarray(cfg.click_probs, dtype=np.float64))

    def _set_click_table(self, probs: np.ndarray) -> None:
        """Bernoulli world: logits from the given ``(n_types, n_items)`` click probabilities.

        The latent model is replaced by an exact embedding of the table: each item its own
        topic and latent axis (``v_i = e_i``, centroids ``I``, no quality bias), user ``u``
        of type ``u % n_types`` with observed profile ``probs[type]`` and base logit
        ``logit(probs[type])`` (``+-inf`` for probabilities 1 and 0, which ``sigmoid`` maps
        back exactly). The logit table always exists here, so the dynamics below use it.
        """
        n_types, n_items = probs.shape
        self.user_type = np.arange(self.config.n_users, dtype=np.int64) % n_types
        self.item_topic = np.arange(n_items, dtype=np.int64)
        self.topic_centroids = np.eye(n_items)
        self.item_vec = np.eye(n_items)
        self.item_quality = np.zeros(n_items)
        self.user_profile = probs[self.user_type]
        self.user_obs_profile = self.user_profile.astype(np.float32)
        self._topic_onehot = np.eye(n_items)
        with np.errstate(divide="ignore"):  # logit; +-inf at 1 and 0
            logits = np.log(probs) - np.log1p(-probs)
        self._logit_table = logits[self.user_type]
        # the latent path's equivalent (finite-clipped); unused while _logit_table exists
        cfg = self.config
        self.user_vec = (np.clip(self._logit_table, -40.0, 40.0) - cfg.theta0) / cfg.theta1

    # -- basic facts ------------------------------------------------------------------------
    @property
    def n_actions(self) -> int:
        """Items a policy chooses among (``config.n_items``): the name logs and policies use."""
        return self.config.n_items

    @property
    def context_dim(self) -> int:
        """Width of an observation row (``config.obs_dim``): the name logs and policies use."""
        return self.config.obs_dim

    @property
    def n_items(self) -> int:
        """Deprecated alias of :attr:`n_actions` (warns; ``config.n_items`` stays the TOML key)."""
        _deprecated_alias("n_items", "n_actions")
        return self.config.n_items

    @property
    def obs_dim(self) -> int:
        """Deprecated alias of :attr:`context_dim` (warns; ``config.obs_dim`` does not)."""
        _deprecated_alias("obs_dim", "context_dim")
        return self.config.obs_dim

    @property
    def topics(self) -> tuple[str, ...]:
        return self.config.topics

    def obs_slices(self) -> dict[str, slice]:
        """Where each feature sits in an observation row."""
        T = self.config.n_topics
        return {
            "profile": slice(0, T),
            "fatigue": slice(T, 2 * T),
            "step_frac": slice(2 * T, 2 * T + 1),
            "last_click": slice(2 * T + 1, 2 * T + 2),
        }

    def item_names(self) -> list[str]:
        """Readable names ``"<topic>-<k>"`` (k counts items within the topic)."""
        counts = [0] * self.config.n_topics
        names = []
        for t in self.item_topic:
            names.append(f"{self.topics[t]}-{counts[t]}")
            counts[t] += 1
        return names

    # -- sessions ---------------------------------------------------------------------------
    def new_sessions(
        self, n: int, rng: np.random.Generator, users: np.ndarray | None = None
    ) -> SessionBatch:
        """``n`` fresh sessions for users drawn uniformly (or the given ``users``)."""
        cfg = self.config
        if users is None:
            users = rng.integers(0, cfg.n_users, size=n)
        users = np.asarray(users, dtype=np.int64)
        n = users.shape[0]
        return SessionBatch(
            user=users,
            step=np.zeros(n, np.int64),
            fatigue=np.zeros((n, cfg.n_topics)),
            recent=np.full((n, cfg.repeat_window), -1, np.int64),
            last_click=np.zeros(n),
        )

    def restart(
        self, batch: SessionBatch, rows: np.ndarray | slice, rng: np.random.Generator
    ) -> None:
        """Start new sessions in place at ``rows`` of ``batch`` (new users, empty history).

        Draws the users exactly as :meth:`new_sessions` does, so restarting all rows of a
        batch is the same as making a new one.
        """
        n = batch.user[rows].shape[0]
        batch.user[rows] = rng.integers(0, self.config.n_users, size=n)
        batch.step[rows] = 0
        batch.fatigue[rows] = 0.0
        batch.recent[rows] = -1
        batch.last_click[rows] = 0.0

    def observe(self, batch: SessionBatch) -> np.ndarray:
        """Observation (n, obs_dim) float32: profile, fatigue, step / horizon, last click."""
        n, T = batch.user.shape[0], self.config.n_topics
        obs = np.empty((n, 2 * T + 2), np.float32)
        obs[:, :T] = self.user_obs_profile[batch.user]
        obs[:, T : 2 * T] = batch.fatigue
        obs[:, 2 * T] = batch.step * (1.0 / self.config.horizon)
        obs[:, 2 * T + 1] = batch.last_click
        return obs

    def base_logits(self, users: np.ndarray) -> np.ndarray:
        """State-free logits (n, n_items): ``theta0 + theta1 <w_u, v_i> + b_i``."""
        if self._logit_table is not None:
            return self._logit_table[users]
        return self._compute_logits(users)

    def _compute_logits(self, users: np.ndarray) -> np.ndarray:
        cfg = self.config
        return (
            cfg.theta0 + cfg.theta1 * (self.user_vec[users] @ self.item_vec.T) + self.item_quality
        )

    def click_probs(self, batch: SessionBatch) -> np.ndarray:
        """True click probability of every item in the current state, (n, n_items)."""
        return sigmoid(self._state_logits(batch))

    def _state_logits(self, batch: SessionBatch) -> np.ndarray:
        cfg = self.config
        logits = self.base_logits(batch.user).copy()
        logits -= cfg.boredom * (batch.fatigue @ self._topic_onehot.T)
        rows, cols = np.nonzero(batch.recent >= 0)
        logits[rows, batch.recent[rows, cols]] -= cfg.repeat_penalty
        return logits

    def pair_click_probs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """State-free click probability ``q(u, i) = sigmoid(theta0 + theta1 <w_u, v_i> + b_i)``
        of each (user, item) pair: ``users`` (n,), ``items`` (n, k) -> (n, k) float64.

        Bandit mode's ``q`` (no fatigue, no repeat penalty), computed for the given pairs
        only (never a row over the whole catalog); the slate worlds read it."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if self._logit_table is not None:
            return sigmoid(self._logit_table[users[:, None], items])
        cfg = self.config
        affinity = np.einsum("nk,nsk->ns", self.user_vec[users], self.item_vec[items])
        return sigmoid(cfg.theta0 + cfg.theta1 * affinity + self.item_quality[items])

    def click_probs_at(self, batch: SessionBatch, items: np.ndarray) -> np.ndarray:
        """True click probabilities (n, M) of the items ``items`` (n, M) in each session's
        current state: ``q(u_i, items[i, m], s_i)``, the formula of :meth:`click_probs`
        for the given (user, item) pairs only. Rows are scored in blocks of about
        :data:`BLOCK_CELLS` latent products, so memory stays ``O(n M)``."""
        a = np.asarray(items)
        if a.ndim != 2 or a.shape[0] != len(batch):
            raise InputError(f"items must have shape ({len(batch)}, M); got {a.shape}")
        cfg = self.config
        out = np.empty(a.shape)
        step = max(1, BLOCK_CELLS // max(1, a.shape[1] * cfg.latent_dim))
        for lo in range(0, a.shape[0], step):
            hi = min(lo + step, a.shape[0])
            ab, users = a[lo:hi], batch.user[lo:hi]
            if self._logit_table is not None:
                logit = self._logit_table[users[:, None], ab]
            else:
                affinity = np.einsum("nk,nmk->nm", self.user_vec[users], self.item_vec[ab])
                logit = cfg.theta0 + cfg.theta1 * affinity + self.item_quality[ab]
            if cfg.horizon > 1:
                rows = np.arange(lo, hi)[:, None]
                fatigue = batch.fatigue[rows, self.item_topic[ab]]
                repeat = (batch.recent[lo:hi, None, :] == ab[:, :, None]).any(axis=2)
                logit = self._click_logit(logit, fatigue, repeat)
            out[lo:hi] = sigmoid(logit)
        return out

    def mean_click_prob(self, users: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
        """State-free mean click probability over the catalog (or the items of ``support``,
        (n_items,) bool), per user: ``(1/|S|) sum_{a in S} sigmoid(theta0 + theta1 <w_u, v_a>
        + b_a)`` (n,) float64, what a uniform floor over ``S`` earns in bandit mode.

        Computed exactly in blocks of users x items (``O(BLOCK_CELLS)`` memory), once per
        world for the whole population when ``support`` is None (cached: ``n_users``
        numbers), else for the given users.
        """
        users = np.asarray(users, np.int64)
        if support is None:
            if self._mean_q is None:
                self._mean_q = self._catalog_mean(np.arange(self.config.n_users), None)
            return self._mean_q[users]
        return self._catalog_mean(users, np.asarray(support, bool))

    def _catalog_mean(self, users: np.ndarray, support: np.ndarray | None) -> np.ndarray:
        cfg = self.config
        idx = np.arange(self.n_actions) if support is None else np.flatnonzero(support)
        total = np.zeros(users.shape[0])
        ib = min(idx.size, max(1, BLOCK_CELLS // 256))
        ub = max(1, BLOCK_CELLS // ib)
        for lo in range(0, users.shape[0], ub):
            u = users[lo : lo + ub]
            for a0 in range(0, idx.size, ib):
                items = idx[a0 : a0 + ib]
                if self._logit_table is not None:
                    logit = self._logit_table[u[:, None], items[None, :]]
                else:
                    logit = self.user_vec[u] @ self.item_vec[items].T
                    logit *= cfg.theta1
                    logit += cfg.theta0 + self.item_quality[items]
                total[lo : lo + ub] += sigmoid(logit).sum(axis=1)
        return total / idx.size

    def click_prob(self, batch: SessionBatch, actions: np.ndarray) -> np.ndarray:
        """True click probability of ``actions`` (n,) in the current state, (n,)."""
        return sigmoid(self._action_logits(batch, actions)[0])

    def _action_logits(
        self, batch: SessionBatch, a: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits (n,) of items ``a`` and, in session mode, the fatigue (n,) of their topics.

        Few numpy calls (gathers rather than one-hot products): on the one-session batches
        of the gymnasium env each call costs about a microsecond whatever its size.
        """
        cfg = self.config
        if self._logit_table is not None:
            logit = self._logit_table[batch.user, a]
        else:
            affinity = np.einsum("nk,nk->n", self.user_vec[batch.user], self.item_vec[a])
            logit = cfg.theta0 + cfg.theta1 * affinity + self.item_quality[a]
        if cfg.horizon == 1:
            return logit, None
        fatigue = batch.fatigue[self._rows(len(a)), self.item_topic[a]]
        repeat = (batch.recent == a[:, None]).any(axis=1)
        return self._click_logit(logit, fatigue, repeat), fatigue

    # The two formulas of the session dynamics, written once for arrays and scalars alike.
    def _click_logit(self, base: Any, fatigue: Any, repeat: Any) -> Any:
        """``base - boredom * f_topic - repeat_penalty * [item in the repeat window]``."""
        cfg = self.config
        return base - (cfg.boredom * fatigue + cfg.repeat_penalty * repeat)

    def _leave_logit(self, fatigue: Any, click: Any) -> Any:
        """``leave_base + leave_fatigue * (decay * f + 1) - leave_click * click``, with ``f``
        the shown topic's fatigue before the step."""
        return self._leave_const + self._leave_slope * fatigue - self.config.leave_click * click

    def _rows(self, n: int) -> np.ndarray:
        """``np.arange(n)``, cached (a view of the largest one made so far)."""
        if self._arange.shape[0] < n:
            self._arange = np.arange(n)
        return self._arange[:n]

    def check_actions(self, actions: np.ndarray, n: int) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (n,):
            raise InputError(f"actions must have shape ({n},); got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise InputError(f"actions must be integers; got dtype {a.dtype}")
        bad = (a < 0) | (a >= self.n_actions)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"action must be in [0, {self.n_actions}); row {i} has {int(a[i])}")
        return a.astype(np.int64, copy=False)

    def step(
        self,
        batch: SessionBatch,
        actions: np.ndarray,
        rng: np.random.Generator,
        *,
        validate: bool = True,
    ) -> StepResult:
        """Show ``actions`` (n,) to the sessions of ``batch`` and advance them in place.

        Draws clicks ``~ Bernoulli(q)``, updates fatigue and the repeat window, and
        (before the horizon) whether each user leaves.
        """
        cfg = self.config
        n = batch.user.shape[0]
        a = self.check_actions(actions, n) if validate else actions
        table = self._logit_table
        if n == 1 and self.small_batch_path and cfg.horizon > 1 and table is not None:
            return self._step_one(batch, int(a[0]), rng, table)
        logit, fatigue = self._action_logits(batch, a)
        q = sigmoid(logit)
        u = rng.random((2, n)) if fatigue is not None else rng.random((1, n))
        reward = (u[0] < q).astype(np.float64)
        batch.step += 1
        truncated = batch.step >= cfg.horizon
        if fatigue is None:
            return StepResult(reward, q, np.zeros(n, bool), truncated)
        batch.fatigue *= cfg.fatigue_decay
        batch.fatigue[self._rows(n), self.item_topic[a]] += 1.0  # the shown item's topic
        batch.recent[:, 1:] = batch.recent[:, :-1]
        batch.recent[:, 0] = a
        batch.last_click = reward
        leave = sigmoid(self._leave_logit(fatigue, reward))
        terminated = (u[1] < leave) & ~truncated
        return StepResult(reward, q, terminated, truncated)

    def _step_one(
        self, batch: SessionBatch, a: int, rng: np.random.Generator, table: np.ndarray
    ) -> StepResult:
        """:meth:`step` for a single session (the gymnasium env's case), on Python scalars.

        The same formulas (:meth:`_click_logit`, :meth:`_leave_logit`, ``sigmoid``), the
        same random draws in the same order and the same state updates as the batch path,
        hence bitwise the same results; only the per-call overhead of a dozen numpy calls
        on one-element arrays is gone.
        """
        cfg = self.config
        topic = int(self.item_topic[a])
        fatigue_row, recent = batch.fatigue[0], batch.recent[0]
        fatigue = float(fatigue_row[topic])
        repeat = 1.0 if a in recent.tolist() else 0.0
        q = sigmoid(self._click_logit(float(table[batch.user[0], a]), fatigue, repeat))
        u_click, u_leave = rng.random(2).tolist()
        reward = 1.0 if u_click < q else 0.0
        batch.step[0] += 1
        truncated = bool(batch.step[0] >= cfg.horizon)
        fatigue_row *= cfg.fatigue_decay
        fatigue_row[topic] += 1.0
        recent[1:] = recent[:-1]
        recent[0] = a
        batch.last_click[0] = reward
        terminated = bool(u_leave < sigmoid(self._leave_logit(fatigue, reward))) and not truncated
        return StepResult(
            np.array([reward]),
            np.array([q], np.float64),
            np.array([terminated]),
            np.array([truncated]),
        )

    # -- policies ---------------------------------------------------------------------------
    def policy_dist(self, policy: Policy, batch: SessionBatch, obs: np.ndarray) -> np.ndarray:
        """``policy``'s distribution (n, n_items): state-aware oracles see the true state."""
        if hasattr(policy, "action_dist_state"):
            dist = policy.action_dist_state(batch)
        else:
            dist = policy.action_dist(obs)
        dist = np.asarray(dist)
        if dist.shape != (len(batch), self.n_actions):
            raise InputError(
                f"policy.action_dist must return shape ({len(batch)}, {self.n_actions}); got {dist.shape}"
            )
        return dist

    def _sparse_dist(self, policy: Any, obs: np.ndarray) -> SparseDist | None:
        """``policy``'s distribution as a :class:`SparseDist` when it offers one (its
        ``sparse_form`` attribute is true and ``action_dist_compact`` returns a
        :class:`SparseDist`, or a :class:`GreedyDist` on a catalog of more
        than :data:`SPARSE_TRUTH_ITEMS` items); None otherwise (the dense path)."""
        compact = getattr(policy, "action_dist_compact", None)
        if hasattr(policy, "action_dist_state") or not callable(compact):
            return None
        if not getattr(policy, "sparse_form", False) and self.n_actions <= SPARSE_TRUTH_ITEMS:
            return None
        dist = compact(obs)
        if isinstance(dist, GreedyDist):
            dist = dist.sparse()
        if not isinstance(dist, SparseDist):
            return None
        if dist.shape != (obs.shape[0], self.n_actions):
            raise InputError(
                f"policy.action_dist_compact must have shape ({obs.shape[0]}, {self.n_actions}); "
                f"got {dist.shape}"
            )
        return dist

    def user_from_obs(self, obs: np.ndarray) -> np.ndarray:
        """Recover user ids (n,) from observations via the observed profile (exact match).

        Used by oracles in bandit mode, where the observation is the user's profile.
        Raises ``ValueError`` naming the first row whose profile matches no user.
        """
        T = self.config.n_topics
        prof = np.ascontiguousarray(np.asarray(obs, dtype=np.float32)[:, :T])
        if self._user_keys is None:
            keys = _row_hash(self.user_obs_profile)
            order = np.argsort(keys, kind="stable")
            self._user_keys = (keys[order], order)
        sorted_keys, order = self._user_keys
        keys = _row_hash(prof)
        pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        users = order[pos]
        bad = (sorted_keys[pos] != keys) | (self.user_obs_profile[users] != prof).any(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"obs row {i} matches no user of this world (profile {prof[i].tolist()})"
            )
        return users

    # -- rollouts and ground truth ----------------------------------------------------------
    def run_sessions(
        self,
        policy: Any,
        n_sessions: int,
        rng: np.random.Generator,
        *,
        users: np.ndarray | None = None,
        record_dist: bool = False,
    ) -> Trajectories:
        """Run a cohort of ``n_sessions`` sessions to their end under ``policy``.

        Actions come from ``policy.sample(obs, rng)`` (state-aware oracles: sampled from
        ``action_dist_state``). Returns every row, ordered by (session, step).
        """
        batch = self.new_sessions(n_sessions, rng, users)
        alive = np.arange(len(batch))
        parts: list[dict[str, np.ndarray]] = []
        while alive.size:
            obs = self.observe(batch)
            if hasattr(policy, "action_dist_state") or record_dist:
                dist = self.policy_dist(policy, batch, obs)

                actions, pscores = sample_from_dist(dist, rng)
            else:
                dist = None
                actions, pscores = policy.sample(obs, rng)
                actions = self.check_actions(actions, len(batch))
            part = {
                "session": alive,
                "step": batch.step.copy(),
                "user": batch.user,
                "obs": obs,
                "action": actions,
                "pscore": pscores,
            }
            if record_dist and dist is not None:
                part["dist"] = dist.astype(np.float32)
            res = self.step(batch, actions, rng, validate=False)
            part.update(
                reward=res.reward,
                click_prob=res.click_prob,
                terminated=res.terminated,
                truncated=res.truncated,
            )
            parts.append(part)
            keep = ~(res.terminated | res.truncated)
            alive = alive[keep]
            batch = batch.take(keep)
        if len(parts) == 1:  # bandit mode: one step, already in session order
            cat = parts[0]
        else:
            cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            order = np.lexsort((cat["step"], cat["session"]))
            cat = {k: v[order] for k, v in cat.items()}
        return Trajectories(
            session=cat["session"],
            step=cat["step"],
            user=cat["user"],
            obs=cat["obs"],
            action=cat["action"],
            pscore=cat["pscore"],
            reward=cat["reward"],
            click_prob=cat["click_prob"],
            terminated=cat["terminated"],
            truncated=cat["truncated"],
            dist=cat.get("dist"),
        )

    def true_value(
        self,
        policy: Any,
        *,
        n_sessions: int = 20_000,
        seed: SeedLike = 0,
        chunk_size: int = 10_000,
    ) -> ValueEstimate:
        """True value of ``policy`` (anything with ``action_dist(obs) -> (n, n_items)``).

        Bandit mode (``horizon == 1``), exact over the user population::

            V(pi) = mean_u sum_a pi(a | x_u) q(u, a)

        Session mode: expected clicks per session by Monte-Carlo over ``n_sessions``
        sessions (clicks replaced by their probabilities ``q``, which keeps the estimate
        unbiased and lowers its variance), with its standard error; reproducible by ``seed``.
        """
        cfg = self.config
        if cfg.horizon == 1:
            total = 0.0
            for start in range(0, cfg.n_users, chunk_size):
                users = np.arange(start, min(start + chunk_size, cfg.n_users))
                batch = self.new_sessions(0, np.random.default_rng(0), users)
                obs = self.observe(batch)
                sparse = self._sparse_dist(policy, obs)
                if sparse is not None:
                    q_floor = (
                        self.mean_click_prob(users, sparse.support) if sparse.floor > 0 else 0.0
                    )
                    q_items = self.click_probs_at(batch, sparse.items)
                    total += float(sparse.expect(q_items, q_floor).sum())
                    continue
                dist = self.policy_dist(policy, batch, obs)
                total += float(np.einsum("na,na->", dist, self.click_probs(batch)))
            return ValueEstimate(total / cfg.n_users, 0.0, True, cfg.n_users)
        rng = as_generator(seed)
        values = []
        for start in range(0, n_sessions, chunk_size):
            n = min(chunk_size, n_sessions - start)
            traj = self.run_sessions(policy, n, rng)
            values.append(np.bincount(traj.session, weights=traj.click_prob, minlength=n))
        v = np.concatenate(values)
        return ValueEstimate(float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))), False, len(v))


def _row_hash(rows: np.ndarray) -> np.ndarray:
    """64-bit hash of each float32 row (n, T) (bit patterns times fixed odd multipliers)."""
    bits = rows.view(np.uint32).astype(np.uint64)
    mult = (
        np.arange(1, rows.shape[1] + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    ) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (bits * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(29)
    return h
