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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.errors import InputError, MissingInputError

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
        width = int(world.obs_dim)
    policy = load_model(
        folder,
        n_actions=None if world is None else world.n_items,
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


__all__ = [
    "ServedModel",
    "check_compatible",
    "decide",
    "load_served",
    "model_version",
    "plackett_luce",
]
