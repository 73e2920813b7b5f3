r"""The served model: loading (pickle-free, through :func:`offrec.models.load_model`), its
version, and how a decision of ``k`` items is drawn with exact propensities.

**Which propensity is logged.** A decision shows ``k`` distinct items, written as ``k``
log rows with ``position = 0 .. k-1`` (one row per shown item, as the log schema's
``position`` column has it). They are drawn by *Plackett-Luce sampling* from the policy's
distribution :math:`\pi(\cdot|x)`: item after item without replacement, each with
probability proportional to :math:`\pi` among the items not yet shown (implemented with
the Gumbel-top-k trick: the ``k`` largest :math:`\log \pi(a|x) + G_a`, :math:`G_a` i.i.d.
Gumbel, are an exact Plackett-Luce draw in order). The ``pscore`` of the row at position
:math:`j` is the conditional probability

.. math::

    p_j = \frac{\pi(a_j|x)}{1 - \sum_{l<j} \pi(a_l|x)},

computed exactly. Hence:

- position 0's ``pscore`` is the marginal :math:`\pi(a_0|x)`: the rows with
  ``position == 0`` are an ordinary one-item log, on which every bandit estimator of
  :mod:`offrec.ope` (IPS, SNIPS, DR, ...) is valid for the top slot's CTR; with ``k = 1``
  (the default) that is the whole log;
- the product :math:`\prod_{l \le j} p_l` is the exact probability of the prefix
  :math:`(a_0, ..., a_j)` and :math:`\prod_{l<k} p_l` that of the whole slate, which is
  what slate-level IPS (whole-slate reward) and prefix (reward-interaction IPS) estimators
  need;
- the rows with ``position > 0`` do **not** carry marginal propensities (the
  Plackett-Luce marginal of an item at a lower slot has no closed form): estimators that
  treat every row as its own one-item decision are not valid on them.

With ``k = 1`` the decision is :meth:`Policy.sample`'s own draw (its pscore is the
policy's probability of the action, the usual contract).

**Large catalogs.** A policy with ``sparse_form`` (the ``hybrid`` learner, the two-stage
logger) gives its distribution as a :class:`~offrec.core.policy.SparseDist` (``M``
candidates plus a uniform floor); :func:`plackett_luce_sparse` draws the same
Plackett-Luce slate from it exactly in ``O(n (M + k) k)`` time and memory, never
building the ``(n, n_items)`` table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.errors import InputError, MissingInputError
from offrec.core.policy import SparseDist

CONFIG_FILES = ("policy.json", "qpolicy.json")


@dataclass(frozen=True)
class ServedModel:
    """A loaded policy with what the service needs to know about it.

    Attributes:
        policy: an offrec policy (``action_dist``, ``sample``).
        version: ``"<folder name>@<first 12 hex of sha256(config file)>"``; the saved
            config holds the checksum of the arrays, so the version changes with any
            change of the model.
        folder: where it was loaded from.
        n_actions: items in the catalog. context_dim: the context width it expects.
        world: the :class:`~offrec.sim.World` saved next to it (``world.json``), or None;
            needed only for ``profile`` requests.
    """

    policy: Any
    version: str
    folder: Path
    n_actions: int
    context_dim: int
    world: Any = None

    def info(self) -> dict[str, Any]:
        spec = self.policy.spec() if hasattr(self.policy, "spec") else {}
        return {
            "version": self.version,
            "folder": str(self.folder),
            "n_actions": self.n_actions,
            "context_dim": self.context_dim,
            "type": spec.get("type", type(self.policy).__name__),
            "topics": None if self.world is None else list(self.world.topics),
        }


def model_version(folder: str | Path) -> str:
    """The version string of the model saved in ``folder`` (see :class:`ServedModel`)."""
    folder = Path(folder)
    for name in CONFIG_FILES:
        path = folder / name
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            return f"{folder.resolve().name}@{digest}"
    raise MissingInputError(f"no saved model in {folder}: expected one of {list(CONFIG_FILES)}")


def load_served(folder: str | Path, *, context_dim: int | None = None) -> ServedModel:
    """Load the model in ``folder`` for serving.

    The context width comes from ``context_dim`` if given, else the world saved next to the
    model (``world.json``: its observation width), else the model's own ``context_dim``
    / ``obs_dim``. A model that cannot tell (a context-free bandit without a world) needs
    ``context_dim``.
    """
    from offrec.models import load_model
    from offrec.recommend import WORLD_FILE, read_world

    folder = Path(folder)
    version = model_version(folder)
    world = read_world(folder) if (folder / WORLD_FILE).is_file() else None
    width = context_dim
    if width is None and world is not None:
        width = int(world.context_dim)
    policy = load_model(
        folder,
        n_actions=None if world is None else world.n_actions,
        obs_dim=width,
    )
    if width is None:
        own = getattr(policy, "context_dim", None) or getattr(policy, "obs_dim", None)
        if own is None:
            raise InputError(
                f"cannot tell the context width of the model in {folder}: save it with its "
                "world (world.json) or pass context_dim"
            )
        width = int(own)
    return ServedModel(policy, version, folder, int(policy.n_actions), width, world)


def check_compatible(old: ServedModel, new: ServedModel) -> None:
    """A deployment keeps the log's shape: same number of items and context width."""
    if (new.n_actions, new.context_dim) != (old.n_actions, old.context_dim):
        raise InputError(
            f"model {new.folder} has n_actions={new.n_actions}, context_dim={new.context_dim}; "
            f"the service's log has n_actions={old.n_actions}, context_dim={old.context_dim}"
        )


def decide(
    model: ServedModel, obs: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` items for each row of ``obs`` (n, d) and their logged pscores (module docstring).

    Returns ``(items (n, k) int64, pscores (n, k) float64)``. Raises ``InputError`` when a
    row's distribution has fewer than ``k`` items with positive probability (a greedy
    head cannot fill ``k > 1`` slots with propensities > 0).
    """
    if k == 1:
        actions, pscores = model.policy.sample(obs, rng)
        return np.asarray(actions, np.int64)[:, None], np.asarray(pscores, np.float64)[:, None]
    if getattr(model.policy, "sparse_form", False):
        return plackett_luce_sparse(model.policy.action_dist_compact(obs), k, rng)
    dist = np.asarray(model.policy.action_dist(obs), np.float64)
    return plackett_luce(dist, k, rng)


def plackett_luce(
    dist: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    r"""An exact Plackett-Luce draw of ``k`` distinct items per row of ``dist`` (n, K)
    (Gumbel-top-k) with the conditional probability of each pick (module docstring).

    >>> import numpy as np
    >>> items, p = plackett_luce(np.array([[0.5, 0.3, 0.2]]), 3, np.random.default_rng(0))
    >>> sorted(items[0].tolist())
    [0, 1, 2]
    >>> float(p[0, 0]) == [0.5, 0.3, 0.2][items[0, 0]], float(p[0, 2])
    (True, 1.0)
    """
    n, n_actions = dist.shape
    support = (dist > 0).sum(axis=1)
    if support.min() < k:
        row = int(np.argmin(support))
        raise InputError(
            f"k must be at most the number of items with positive probability; k={k} but "
            f"row {row} has {int(support[row])} (serve an exploring head: epsilon_greedy or "
            "softmax)"
        )
    with np.errstate(divide="ignore"):
        keys = np.log(dist) + rng.gumbel(size=dist.shape)
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
    items = np.take_along_axis(top, order, axis=1).astype(np.int64)
    probs = np.take_along_axis(dist, items, axis=1)
    shown_before = np.cumsum(probs, axis=1) - probs
    pscores = probs / np.clip(1.0 - shown_before, np.finfo(float).tiny, None)
    return items, np.minimum(pscores, 1.0)


def plackett_luce_sparse(
    dist: SparseDist, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    r"""The Plackett-Luce draw of :func:`plackett_luce` from a
    :class:`~offrec.core.policy.SparseDist` (n rows, ``M`` candidates, floor
    :math:`\epsilon` over the allowed items :math:`S`), without the dense table.

    Slot by slot (a loop over the ``k`` slots, vectorized over rows): the mass not yet
    shown is :math:`R_j = C_j + F_j`, with :math:`C_j` the candidates' masses of the
    items not shown (:math:`p_{im}`, the floor excluded) and :math:`F_j = \epsilon/|S|
    \cdot |S \setminus \text{shown}|`; a uniform :math:`u R_j` below :math:`C_j` picks a
    candidate by inverse CDF, else a uniform item of :math:`S` not shown yet (rejection
    against the ``< k`` shown items). An item :math:`a` not shown is thus drawn with
    probability :math:`(\sum_{m: c_m = a} p_m + \epsilon [a \in S]/|S|) / R_j =
    \pi(a|x) / R_j`, the Plackett-Luce conditional, which is the logged pscore. Cost
    ``O(n (M + k))`` per slot; the support is listed once (``O(n_actions)``) when given.

    Returns ``(items (n, k) int64, pscores (n, k) float64)``; ``InputError`` when a row
    has fewer than ``k`` items of positive probability.

    >>> d = SparseDist(np.array([[3, 3, 1]]), np.array([[0.3, 0.2, 0.1]]), 1000, floor=0.4)
    >>> items, p = plackett_luce_sparse(d, 2, np.random.default_rng(0))
    >>> bool(np.isclose(p[0, 0], d.at(items[:, 0])[0]))
    True
    """
    if not isinstance(dist, SparseDist):
        raise InputError(f"plackett_luce_sparse needs a SparseDist; got {type(dist).__name__}")
    cand_items, masses = dist.items, dist.probs
    n, m = cand_items.shape
    share, n_support = dist.floor_share, dist.n_support
    allowed = None if dist.support is None else np.flatnonzero(dist.support)
    in_support = (
        (lambda a: np.ones(a.shape, bool)) if dist.support is None else (lambda a: dist.support[a])
    )
    # items of positive probability per row: the support (floor > 0) plus the distinct
    # positive candidates outside it
    key = np.sort(np.where(masses > 0, cand_items, -1), axis=1)
    distinct = key >= 0
    distinct[:, 1:] &= key[:, 1:] != key[:, :-1]
    if share > 0.0:
        outside = distinct & ~in_support(np.maximum(key, 0))
        available = n_support + outside.sum(axis=1)
    else:
        available = distinct.sum(axis=1)
    if n and available.min() < k:
        row = int(np.argmin(available))
        raise InputError(
            f"k must be at most the number of items with positive probability; k={k} but "
            f"row {row} has {int(available[row])} (serve an exploring head: epsilon_greedy "
            "or a floor)"
        )
    rows = np.arange(n)
    live = masses.copy()  # candidate masses of the items not shown yet
    shown = np.zeros((n, k), np.int64)
    pscores = np.zeros((n, k))
    shown_in_support = np.zeros(n)
    for j in range(k):
        cdf = np.cumsum(live, axis=1) if m else np.zeros((n, 1))
        c = cdf[:, -1]
        total = c + share * (n_support - shown_in_support)
        t = rng.random(n) * total
        from_cand = t < c
        pick = np.minimum((cdf <= t[:, None]).sum(axis=1), max(m - 1, 0))
        a = np.where(from_cand, cand_items[rows, pick] if m else 0, -1).astype(np.int64)
        rest = np.flatnonzero(~from_cand)
        while rest.size:  # a uniform allowed item not shown yet (few retries: |S| >> k)
            draw = rng.integers(0, n_support, size=rest.size)
            item = draw if allowed is None else allowed[draw]
            fresh = ~(shown[rest, :j] == item[:, None]).any(axis=1)
            a[rest[fresh]] = item[fresh]
            rest = rest[~fresh]
        pscores[:, j] = dist.at(a) / np.clip(total, np.finfo(float).tiny, None)
        shown[:, j] = a
        live[cand_items == a[:, None]] = 0.0
        if share > 0.0:
            shown_in_support += in_support(a)
    return shown, np.minimum(pscores, 1.0)


__all__ = [
    "ServedModel",
    "check_compatible",
    "decide",
    "load_served",
    "model_version",
    "plackett_luce",
    "plackett_luce_sparse",
]
