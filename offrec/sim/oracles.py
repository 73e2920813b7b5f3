"""Reference policies built from the true model (they see the hidden state).

They implement ``action_dist_state(batch)``, which the world calls with the true
session state. In bandit mode their ``action_dist(obs)`` also works on logged
contexts (the user is recovered from the observed profile), so they can be
scored by off-policy estimators like any other policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrec.core.errors import InputError, InputTypeError
from offrec.core.policy import BasePolicy, GreedyDist, Head
from offrec.core.validation import check_scalar
from offrec.sim.world import SessionBatch, World, sigmoid


class _Oracle(BasePolicy):
    kind = "oracle"

    def __init__(self, world: World, head: Head | None = None) -> None:
        if not isinstance(world, World):
            raise InputTypeError(f"world must be a World; got {type(world).__name__}")
        self.world = world
        self.n_actions = world.n_actions
        self.head = head or Head()

    def scores(self, batch: SessionBatch) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def action_dist_state(self, batch: SessionBatch) -> np.ndarray:
        return self.head.apply(self.scores(batch))

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        return self.head.apply(self.obs_scores(obs))

    def action_dist_compact(self, obs: np.ndarray) -> GreedyDist | np.ndarray:
        """:meth:`action_dist` in the head's cheapest exact form (:meth:`Head.compact`)."""
        return self.head.compact(self.obs_scores(obs))

    def obs_scores(self, obs: np.ndarray) -> np.ndarray:
        """Scores (n, n_actions) of logged contexts (bandit mode: the user is recovered
        from the observed profile)."""
        if self.world.config.horizon > 1:
            raise InputError(
                f"{type(self).__name__}.action_dist(obs) needs the hidden session state in "
                "session mode; use World.true_value / run_sessions, which pass it"
            )
        users = self.world.user_from_obs(obs)
        return self.scores(self.world.new_sessions(0, np.random.default_rng(0), users))

    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, "head": self.head.to_dict()}


class BestItemOracle(_Oracle):
    """Always the single item with the highest mean click probability over users."""

    kind = "best_item"

    def __init__(self, world: World, head: Head | None = None) -> None:
        super().__init__(world, head)
        users = np.arange(world.config.n_users)
        self.item_ctr = sigmoid(world.base_logits(users)).mean(axis=0)
        self.best_item = int(np.argmax(self.item_ctr))

    def scores(self, batch: SessionBatch) -> np.ndarray:
        return np.broadcast_to(self.item_ctr, (len(batch), self.n_actions))

    def obs_scores(self, obs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_ctr, (len(obs), self.n_actions))


class MyopicOracle(_Oracle):
    """Argmax of the current true click probability ``q(u, i, s)`` (the best bandit)."""

    kind = "myopic"

    def scores(self, batch: SessionBatch) -> np.ndarray:
        return self.world.click_probs(batch)


class LookaheadOracle(_Oracle):
    """Far-sighted: one-step lookahead with the true model.

    For each item ``a`` it scores the immediate click plus the expected future::

        score(a) = q_a + gamma * (1 - P(leave | a)) * R * max_i q(u, i, s'_a)

    where ``s'_a`` is the state after showing ``a`` (fatigue and repeat window
    updated), ``P(leave | a)`` averages over the click outcome, and ``R`` is the
    number of steps left after this one. ``gamma`` weighs the future; the default
    was chosen by measurement (README, "The world").
    """

    kind = "lookahead"

    def __init__(self, world: World, head: Head | None = None, gamma: float = 0.25) -> None:
        super().__init__(world, head)
        check_scalar(gamma, "gamma", float, min=0.0)
        self.gamma = float(gamma)
        cfg = world.config
        same_topic = world.item_topic[:, None] == world.item_topic[None, :]
        # penalty[a, i]: extra logit penalty on item i after showing a
        self._penalty = (
            cfg.boredom * same_topic + cfg.repeat_penalty * np.eye(world.n_actions)
        ).astype(np.float32)

    def scores(self, batch: SessionBatch, chunk: int = 256) -> np.ndarray:
        w, cfg = self.world, self.world.config
        q = w.click_probs(batch)
        remaining = (cfg.horizon - batch.step - 1).astype(np.float64)
        # logits of the next state before the shown item's own effect
        nxt = SessionBatch(
            batch.user,
            batch.step,
            cfg.fatigue_decay * batch.fatigue,
            np.concatenate([np.full((len(batch), 1), -1), batch.recent[:, :-1]], axis=1),
            batch.last_click,
        )
        base = w._state_logits(nxt).astype(np.float32)
        best_next = np.empty_like(q)
        for s in range(0, len(batch), chunk):
            b = base[s : s + chunk]
            best_next[s : s + chunk] = (b[:, None, :] - self._penalty[None]).max(axis=2)
        m = sigmoid(best_next)
        f_next = cfg.fatigue_decay * batch.fatigue[:, w.item_topic] + 1.0  # (n, A)
        leave1 = sigmoid(cfg.leave_base + cfg.leave_fatigue * f_next - cfg.leave_click)
        leave0 = sigmoid(cfg.leave_base + cfg.leave_fatigue * f_next)
        stay = 1.0 - (q * leave1 + (1.0 - q) * leave0)
        return q + self.gamma * stay * remaining[:, None] * m

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "gamma": self.gamma}
