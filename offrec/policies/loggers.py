"""Logging policies a platform would run: uniform, and epsilon-greedy / softmax over a
"production model" — an imperfect scorer of the true click probabilities.

For large catalogs (``candidates=M``) the logger is two-stage, as production systems are
(:class:`TwoStagePolicy`): retrieval of the top ``M`` items, a softmax or epsilon-greedy
ranker over them, and an optional uniform floor over the whole catalog; its
distribution is a :class:`~offrec.core.policy.SparseDist` and its propensities are exact.

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
from offrec.core.policy import BasePolicy, Head, ScorePolicy, SparseDist, UniformPolicy
from offrec.core.validation import check_scalar
from offrec.policies.retrieval import Retriever
from offrec.sim.world import World

DENSE_LIMIT_BYTES = 1 << 30
"""``TwoStagePolicy.action_dist`` refuses to build a dense distribution larger than this."""

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
        quality = world.item_quality + noise * rng.normal(size=world.n_actions)
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
        self.n_topics = cfg.n_topics
        self.n_actions = world.n_actions

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        feats = np.asarray(obs, dtype=np.float32)[:, : self._width]
        scores = feats @ self._weights
        scores += self._bias
        return scores


class TwoStagePolicy(BasePolicy):
    r"""A two-stage logger over a large catalog: retrieval, ranking, and a uniform floor.

    1. **Retrieval**: the ``M`` items with the highest retrieval score
       :math:`r(x, i) = b_i + \sum_{d < T} x_d W_{di}` (the production model's score
       from the user's profile, the first ``n_topics`` features of the observation; items
       outside ``support`` excluded). Exact: the catalog is scored in blocks of users x
       items (one float32 product of a fixed shape per block, so a profile's candidates
       do not depend on which other rows share its block) and the top ``M`` kept by
       ``argpartition`` per block, then merged. The candidates of each distinct profile
       are cached (at most ``cache_rows`` profiles), since a user's profile does not
       change within the log: the catalog is scanned once per user, not once per row.
    2. **Ranking**: the head (``softmax`` with ``temperature = 1 / beta``, or
       ``epsilon_greedy``) over the candidates' full production scores
       :math:`s(x, i) = r(x, i) + \sum_{d \ge T} x_d W_{di}` (fatigue included), giving
       masses :math:`\rho_{im}` summing to 1 per row.
    3. **Floor**: mass ``floor`` spread uniformly over the catalog (or ``support``), so
       every item has a positive propensity (full support for importance weighting).

    .. math:: \pi(a|x) = (1 - \epsilon_f) \sum_m \rho_{m} [c_m = a] + \epsilon_f [a \in S]/|S|

    (:class:`~offrec.core.policy.SparseDist`); ``sample`` draws from it and logs
    ``pscore = pi(a|x)`` exactly (an item both retrieved and drawn by the floor counts
    both masses). Memory: ``O(n M)`` per batch, ``O(n_items T)`` for the model.
    """

    sparse_form = True

    def __init__(
        self,
        model: ProductionModel,
        candidates: int,
        head: Head,
        floor: float = 0.0,
        support: np.ndarray | None = None,
        spec: dict[str, Any] | None = None,
        cache_rows: int | None = None,
    ) -> None:
        check_scalar(candidates, "candidates", int, min=1)
        check_scalar(floor, "floor", float, min=0.0, max=1.0)
        n_items = model.n_actions
        if candidates > n_items:
            raise InputError(f"candidates must be <= n_items={n_items}; got {candidates}")
        self.model, self.head, self.floor = model, head, float(floor)
        self.n_actions, self.candidates = n_items, int(candidates)
        self.support = None if support is None else np.asarray(support, bool)
        if self.support is not None and int(self.support.sum()) < candidates:
            raise InputError(
                f"candidates must be <= the {int(self.support.sum())} items of support; "
                f"got {candidates}"
            )
        self._spec = spec or {"type": "two_stage"}
        t = model.n_topics
        self._w_ret = np.ascontiguousarray(model._weights[:t])  # (T, n_items) float32
        self._w_rank = model._weights[t:]  # fatigue rows
        bias = model._bias.copy()
        if self.support is not None:
            bias[~self.support] = -np.inf
        self._bias = bias
        self.retriever = Retriever(self._w_ret, bias, candidates, cache_rows=cache_rows)

    def retrieve(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates (n, M) int32, ascending item ids, and their retrieval scores (n, M)
        float32 (:class:`~offrec.policies.retrieval.Retriever`, cached per profile)."""
        prof = np.asarray(obs, np.float32)[:, : self._w_ret.shape[0]]
        return self.retriever.retrieve(prof)

    # -- the distribution ----------------------------------------------------------------
    def action_dist_compact(self, obs: np.ndarray) -> SparseDist:
        """The distribution as a :class:`~offrec.core.policy.SparseDist` (n rows, M candidates)."""
        obs = np.asarray(obs)
        items, scores = self.retrieve(obs)
        full = scores.astype(np.float64)
        fat = np.asarray(obs, np.float32)[:, self._w_ret.shape[0] : 2 * self._w_ret.shape[0]]
        if fat.size and fat.any():  # the ranker's context features, in row blocks
            step = max(1, (1 << 20) // max(1, self.candidates * fat.shape[1]))
            for lo in range(0, full.shape[0], step):
                w = self._w_rank[:, items[lo : lo + step]]  # (T, r, M)
                full[lo : lo + step] += np.einsum("rt,trm->rm", fat[lo : lo + step], w)
        rank = self.head.apply(full)
        rank *= 1.0 - self.floor
        return SparseDist(items, rank, self.n_actions, self.floor, self.support)

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        """The dense (n, n_items) distribution (small catalogs; an ``InputError`` above
        :data:`DENSE_LIMIT_BYTES`: use :meth:`action_dist_compact`)."""
        n = np.asarray(obs).shape[0]
        if 8 * n * self.n_actions > DENSE_LIMIT_BYTES:
            raise InputError(
                f"a dense action_dist of {n} rows x {self.n_actions} items would need "
                f"{8 * n * self.n_actions / 2**30:.1f} GiB; use action_dist_compact (sparse)"
            )
        return self.action_dist_compact(obs).dense()

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Actions and exact pscores drawn from :meth:`action_dist_compact`."""
        return self.action_dist_compact(obs).sample(rng)

    def spec(self) -> dict[str, Any]:
        support = None if self.support is None else np.flatnonzero(self.support).tolist()
        return {**self._spec, "head": self.head.to_dict(), "support": support}


def logging_policy(
    world: World,
    kind: str = "softmax",
    *,
    epsilon: float = 0.1,
    beta: float = 1.0,
    noise: float = 0.5,
    model_seed: int = 0,
    support: np.ndarray | list[int] | None = None,
    candidates: int | None = None,
    floor: float = 0.0,
) -> BasePolicy:
    """A logging policy for ``world``.

    Args:
        kind: ``"uniform"``, ``"epsilon_greedy"`` (greedy on the production model with
            probability ``1 - epsilon``, uniform otherwise) or ``"softmax"``
            (``pi(a|x) ∝ exp(beta * score(x, a))``).
        noise, model_seed: quality of the production model (see :class:`ProductionModel`).
        support: items the logger may show (indices or a boolean mask); the others get
            probability 0 (deficient support). ``None`` = all items.
        candidates: ``M``: a two-stage logger (:class:`TwoStagePolicy`) that retrieves the
            top ``M`` items and ranks them with the head (softmax or epsilon-greedy).
            Needed for large catalogs; ``None`` = one stage over the whole catalog.
        floor: the two-stage logger's uniform mass over the whole catalog (or support).
    """
    if kind not in LOGGER_KINDS:
        raise InputError(f"logging policy kind must be one of {list(LOGGER_KINDS)}; got {kind!r}")
    if kind == "uniform":
        return UniformPolicy(
            world.n_actions, support=None if support is None else np.asarray(support)
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
    check_scalar(floor, "floor", float, min=0.0, max=1.0)
    if candidates is None:
        if floor:
            raise InputError("floor applies to the two-stage logger; give candidates too")
        return ScorePolicy(model, world.n_actions, head, support=sup, spec=spec)
    spec.update(candidates=candidates, floor=floor)
    mask = None
    if sup is not None:
        mask = sup if sup.dtype == bool else np.isin(np.arange(world.n_actions), sup)
    return TwoStagePolicy(model, candidates, head, floor=floor, support=mask, spec=spec)


LOGGER_OPTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("support",),
    "softmax": ("beta", "noise", "model_seed", "support", "candidates", "floor"),
    "epsilon_greedy": ("epsilon", "noise", "model_seed", "support", "candidates", "floor"),
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
