"""The demo: a user profile in, ranked items out (and, in session mode, how they change)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from offrec.core.errors import InputError
from offrec.models import WORLD_FILE, read_world, write_world
from offrec.sim import World

__all__ = [
    "WORLD_FILE",
    "item_ids",
    "parse_context",
    "parse_profile",
    "read_world",
    "recommend",
    "recommend_for_context",
    "write_world",
]
# ``write_world`` / ``read_world`` / ``WORLD_FILE`` live in :mod:`offrec.models`
# (the model formats); they stay importable from here for scripts that use this path.


def parse_profile(text: str, topics: tuple[str, ...]) -> np.ndarray:
    """``"sports=0.9,news=0.1"`` -> a preference vector over ``topics`` (normalized to sum 1)."""
    prof = np.zeros(len(topics))
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise InputError(f"profile entries must look like topic=weight; got {part!r}")
        if name not in topics:
            raise InputError(
                f"unknown topic {name!r} in profile; topics of this world: {', '.join(topics)}"
            )
        try:
            w = float(value)
        except ValueError:
            raise InputError(
                f"profile weight for {name!r} must be a number; got {value!r}"
            ) from None
        if not np.isfinite(w) or w < 0:
            raise InputError(f"profile weight for {name!r} must be finite and >= 0; got {value!r}")
        prof[topics.index(name)] = w
    if prof.sum() <= 0:
        raise InputError(f"profile must give some topic a positive weight; got {text!r}")
    return prof / prof.sum()


def _scores(policy: Any, obs: np.ndarray) -> np.ndarray:
    """The model's own scores if it has them (Q-values, predicted CTR), else its probabilities."""
    from offrec.sim.slate import ranking_scores

    return ranking_scores(policy, obs)


def slate_columns(policy: Any, obs: np.ndarray, k: int, epsilon: float) -> dict[str, np.ndarray]:
    r"""Per-slot propensities of the shown top-``k`` list (one context, ``obs`` (1, d)) when
    it is served as a slate ranker: top-``k`` with probability ``1 - epsilon``, a uniform
    random list otherwise (:class:`~offrec.sim.slate.TopKEpsilon`). ``pscore``:
    :math:`\pi(a_j \text{ at } j|x) = (1 - \epsilon) + \epsilon / m` for the listed items;
    ``pscore_prefix``: :math:`\pi(a_{\le j}|x)`, the cascade (prefix) propensity, whose
    last entry is the whole list's; what a slate log records for the list."""
    from offrec.sim.slate import TopKEpsilon

    ranker = TopKEpsilon(policy, k, epsilon=epsilon)
    top = ranker.top(obs)
    marg, _ = ranker.marginals(obs)
    return {
        "pscore": marg[0, np.arange(k), top[0]],
        "pscore_prefix": np.cumprod(ranker.conditional(obs, top), axis=1)[0],
    }


def item_ids(policy: Any) -> list[Any]:
    """The source item id of each of the policy's actions: its item map's ids (a model
    trained on an imported log, :mod:`offrec.logs.items`), else ``0..n_actions-1``."""
    items = getattr(policy, "item_map", None)
    return items.id_list() if items is not None else list(range(int(policy.n_actions)))


def recommend_for_context(
    policy: Any, context: Any, k: int = 5, slate_epsilon: float | None = None
) -> pd.DataFrame:
    """Top-``k`` items for one context (a row of the log's context columns, (d,)), in
    the source's item ids: rank, item, score (the model's own, else its probability),
    probability; with ``slate_epsilon`` also the list's per-slot propensities as a slate
    ranker (:func:`slate_columns`). For models trained on imported logs, which have no
    world to build a profile in.

    >>> import numpy as np
    >>> from offrec.logs import LoggedData, ItemMap
    >>> from offrec.policies.bandits import LinUCB
    >>> m = LinUCB(3, 1).fit(np.array([[1.0], [1.0]]), np.array([2, 0]), np.array([1.0, 0.0]))
    >>> m.item_map = ItemMap(("tea", "cake", "jam"))
    >>> recommend_for_context(m.exploit(), [1.0], k=2)["item"].tolist()
    ['jam', 'tea']
    """
    x = np.asarray(context, dtype=np.float64).reshape(1, -1)
    n = int(policy.n_actions)
    if not 1 <= k <= n:
        raise InputError(f"k must be in [1, {n}]; got {k}")
    scores = _scores(policy, x)[0]
    probs = np.asarray(policy.action_dist(x))[0]
    top = np.argsort(-scores, kind="stable")[:k]
    ids = item_ids(policy)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, k + 1),
            "item": [ids[i] for i in top],
            "score": scores[top],
            "probability": probs[top],
        }
    )
    if slate_epsilon is not None:
        table = table.assign(**slate_columns(policy, x, k, slate_epsilon))
    return table


def parse_context(text: str) -> np.ndarray:
    """``"0.5,1,-2"`` -> a context row (d,); every entry must be a finite number."""
    try:
        x = np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)
    except ValueError:
        raise InputError(f"context must be comma-separated numbers; got {text!r}") from None
    if not x.size or not np.isfinite(x).all():
        raise InputError(f"context must be one or more finite numbers; got {text!r}")
    return x


def recommend(
    policy: Any,
    world: World,
    profile: np.ndarray | str,
    k: int = 5,
    steps: int = 0,
    slate_epsilon: float | None = None,
) -> list[pd.DataFrame]:
    """Top-``k`` items for a user with ``profile`` (topic preferences), at the session start
    and, for ``steps`` more steps, after being shown the top item each step (fatigue and
    step counter updated as the world does; no click assumed).

    Returns one DataFrame per step: rank, item (its source id, :func:`item_ids`), name,
    topic, score, probability; with ``slate_epsilon`` also the list's per-slot
    propensities as a slate ranker (:func:`slate_columns`).
    """
    items = getattr(policy, "item_map", None)
    if items is not None and not (items.is_identity and items.n_items == world.n_actions):
        raise InputError(
            f"this model was trained on a log whose items are not the world's 0..{world.n_actions - 1} "
            f"(e.g. {items.id_list()[:3]}); recommend with a context row (--context) instead"
        )
    if isinstance(profile, str):
        profile = parse_profile(profile, world.topics)
    if not 1 <= k <= world.n_actions:
        raise InputError(f"k must be in [1, {world.n_actions}]; got {k}")
    cfg, sl = world.config, world.obs_slices()
    obs = np.zeros((1, world.context_dim), np.float32)
    obs[0, sl["profile"]] = profile
    names = world.item_names()
    ids = item_ids(policy)
    out = []
    for t in range(steps + 1):
        scores = _scores(policy, obs)[0]
        probs = np.asarray(policy.action_dist(obs))[0]
        top = np.argsort(-scores, kind="stable")[:k]
        out.append(
            pd.DataFrame(
                {
                    "rank": np.arange(1, k + 1),
                    "item": [ids[i] for i in top],
                    "name": [names[i] for i in top],
                    "topic": [world.topics[world.item_topic[i]] for i in top],
                    "score": scores[top],
                    "probability": probs[top],
                }
            )
        )
        if slate_epsilon is not None:
            out[-1] = out[-1].assign(**slate_columns(policy, obs, k, slate_epsilon))
        if t == steps or cfg.horizon == 1:
            break
        shown = world.item_topic[top[0]]
        fatigue = obs[0, sl["fatigue"]] * cfg.fatigue_decay
        fatigue[shown] += 1.0
        obs[0, sl["fatigue"]] = fatigue
        obs[0, sl["step_frac"]] = (t + 1) / cfg.horizon
    return out
