"""Logging policies a platform would run: uniform, and epsilon-greedy / softmax over a
"production model" — an imperfect scorer of the true click probabilities.

>>> from offrec.sim import World
>>> world = World(seed=0)
>>> pi = logging_policy(world, "softmax", beta=1.0, noise=0.5)
>>> pi.action_dist(world.observe(world.new_sessions(3, np.random.default_rng(0)))).shape
(3, 100)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrec.core.errors import InputError
from offrec.core.policy import BasePolicy, Head, ScorePolicy, UniformPolicy
from offrec.core.validation import check_scalar
from offrec.sim.world import World

LOGGER_KINDS = ("uniform", "epsilon_greedy", "softmax")


class ProductionModel:
    """Scores (n, n_items) a recommender could compute from the observation alone.

    With the observed profile ``x`` and fatigue ``f`` read from ``obs``::

        score(x, i) = theta1 * <x C, v_i + e_i> + b_i + e'_i - boredom * f_{t_i}

    where ``C`` holds the topic centroids (so ``x C`` estimates the user's latent
    vector) and ``e_i, e'_i ~ N(0, noise^2)`` are the model's errors, fixed by ``seed``.
    ``noise = 0`` is the best observation-based model; larger means worse.

    Scores are float32 (the observation is float32 already): half the memory traffic
    of float64 in the logger's hot loop. The policy a head builds on them is defined
    by these float32 numbers, and its pscores are float64 (see ``Head.sample``).
    """

    def __init__(self, world: World, noise: float = 0.5, seed: int = 0) -> None:
        check_scalar(noise, "noise", float, min=0.0)
        check_scalar(seed, "seed", int, min=0)
        self.noise, self.seed = float(noise), seed
        cfg = world.config
        rng = np.random.default_rng(seed)
        item_vec = world.item_vec + noise * rng.normal(size=world.item_vec.shape)
        quality = world.item_quality + noise * rng.normal(size=world.n_items)
        # (2 n_topics, n_items): profile rows -> affinity, fatigue rows -> boredom penalty
        self._weights = np.vstack(
            [
                cfg.theta1 * world.topic_centroids @ item_vec.T,
                -cfg.boredom * np.eye(cfg.n_topics)[world.item_topic].T,
            ]
        )
        self._weights = self._weights.astype(np.float32)
        self._bias = quality.astype(np.float32)
        self._width = 2 * cfg.n_topics  # obs layout: profile, fatigue, ... (World.obs_slices)
        self.n_actions = world.n_items

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        feats = np.asarray(obs, dtype=np.float32)[:, : self._width]
        scores = feats @ self._weights
        scores += self._bias
        return scores


def logging_policy(
    world: World,
    kind: str = "softmax",
    *,
    epsilon: float = 0.1,
    beta: float = 1.0,
    noise: float = 0.5,
    model_seed: int = 0,
    support: np.ndarray | list[int] | None = None,
) -> BasePolicy:
    """A logging policy for ``world``.

    Args:
        kind: ``"uniform"``, ``"epsilon_greedy"`` (greedy on the production model with
            probability ``1 - epsilon``, uniform otherwise) or ``"softmax"``
            (``pi(a|x) ∝ exp(beta * score(x, a))``).
        noise, model_seed: quality of the production model (see :class:`ProductionModel`).
        support: items the logger may show (indices or a boolean mask); the others get
            probability 0 (deficient support). ``None`` = all items.
    """
    if kind not in LOGGER_KINDS:
        raise InputError(f"logging policy kind must be one of {list(LOGGER_KINDS)}; got {kind!r}")
    if kind == "uniform":
        return UniformPolicy(
            world.n_items, support=None if support is None else np.asarray(support)
        )
    check_scalar(beta, "beta", float, min=0.0, min_inclusive=False)
    head = (
        Head("softmax", temperature=1.0 / beta)
        if kind == "softmax"
        else Head("epsilon_greedy", epsilon=epsilon)
    )
    model = ProductionModel(world, noise=noise, seed=model_seed)
    spec: dict[str, Any] = {"type": kind, "noise": noise, "model_seed": model_seed}
    spec.update({"beta": beta} if kind == "softmax" else {"epsilon": epsilon})
    sup = None if support is None else np.asarray(support)
    return ScorePolicy(model, world.n_items, head, support=sup, spec=spec)


LOGGER_OPTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("support",),
    "softmax": ("beta", "noise", "model_seed", "support"),
    "epsilon_greedy": ("epsilon", "noise", "model_seed", "support"),
}
"""The options each logger kind takes (the others do not apply to it)."""


def logging_policy_kwargs(kind: str, *, strict: bool = True, **options: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`logging_policy` for ``kind`` from ``options``
    (``None`` = not given, the default applies).

    With ``strict`` an option given for a kind it does not apply to (``beta`` for the
    uniform logger) is an ``InputError`` that lists what applies; without it (configs
    whose dataclass carries every field) such options are left out.
    """
    if kind not in LOGGER_OPTIONS:
        raise InputError(f"logging policy kind must be one of {list(LOGGER_OPTIONS)}; got {kind!r}")
    valid = set().union(*LOGGER_OPTIONS.values())
    unknown = sorted(set(options) - valid)
    if unknown and strict:
        raise InputError(f"unknown logging policy option(s) {unknown}; valid: {sorted(valid)}")
    given = {k: v for k, v in options.items() if v is not None}
    wrong = sorted(set(given) - set(LOGGER_OPTIONS[kind]))
    if wrong and strict:
        raise InputError(
            f"option(s) {wrong} do not apply to the {kind} logger; it takes: "
            f"{', '.join(LOGGER_OPTIONS[kind])}"
        )
    return {k: v for k, v in given.items() if k in LOGGER_OPTIONS[kind]}


def logging_policy_from_spec(world: World, spec: dict[str, Any]) -> BasePolicy:
    """Rebuild a logging policy from the ``spec()`` stored in a log's metadata."""
    kind = str(spec.get("type"))
    options = {k: v for k, v in spec.items() if k != "type"}
    return logging_policy(world, kind, **logging_policy_kwargs(kind, strict=False, **options))
