"""Item identity: which source item each action index stands for, kept with logs and models.

An imported log numbers its items ``0..K-1`` (the ``action`` column) and keeps the map
back to the source's own item ids: ``ids[a]`` is the source id of action ``a``, and
``K = n_items`` is the catalog size. The map lives in the dataset-level sidecar
(:data:`offrec.logs.schema.DATASET_FILE`, read and written only by
:func:`read_item_map` / :func:`write_item_map`) and in ``LoggedData.metadata["action_map"]``.
Logs offrec simulates have the identity map (ids ``0..K-1``) implicitly, stored as just
the catalog size.

A second import told to use an existing map keeps every known item's index and refuses
items the map does not know (listing their ids) unless told to extend it; new items are
then appended in sorted order, so earlier indices never move. Models carry the map they
were trained with (attribute ``item_map``, saved in their folder); :func:`translation`
tells whether a model's scores can be laid onto a log's actions, and
:class:`TranslatedPolicy` does it, so nothing is ever scored against the wrong item.

>>> log = ItemMap(("hat", "shoe", "sock"))
>>> log.lookup(["sock", "hat", "tie"]).tolist()
[2, 0, -1]
>>> log.extended(["tie", "cap"]).ids
('hat', 'shoe', 'sock', 'cap', 'tie')
>>> translation(ItemMap(("shoe", "hat")), log).tolist()
[1, 0]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.errors import InputError

__all__ = [
    "ItemMap",
    "TranslatedPolicy",
    "encode",
    "read_item_map",
    "translate_target",
    "translation",
    "write_item_map",
]

SIDECAR_KEY = "action_map"
"""Key of the source ids in the dataset sidecar (a JSON list, ``ids[a]`` for action ``a``)."""
SIDECAR_SIZE_KEY = "n_items"
"""Key of the catalog size in the dataset sidecar."""
SHOWN_IDS = 10
"""How many ids an error lists before "..."."""


def normalize_id(value: Any) -> Any:
    """A source item id as a plain JSON-able Python value: numpy scalars unwrapped, an
    integral float (``3.0``, what a CSV column with a gap parses to) as the int ``3``."""
    v = value.item() if hasattr(value, "item") else value
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _sorted(values: Iterable[Any]) -> list[Any]:
    vals = list(values)
    try:
        return sorted(vals)
    except TypeError:  # mixed types (ints and strings): by their text
        return sorted(vals, key=str)


def _factorize(values: Any) -> tuple[np.ndarray, list[Any]]:
    """``(codes (n,), distinct)``: one hash pass over the rows; ``distinct`` holds each
    distinct id once, normalized (:func:`normalize_id`), ``codes[i]`` its position for
    row ``i`` (-1 for a missing value)."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(values, dtype=object).ravel())
    return codes, [normalize_id(v) for v in uniques]  # a loop over items, not rows


def encode(
    values: Any, items: ItemMap | None = None, extend: bool = False
) -> tuple[ItemMap, np.ndarray, list[Any]]:
    """Number the source ids of a column in one hash pass: ``(map, actions (n,), unknown)``.

    Without ``items`` the map is the distinct ids, sorted; with it, known ids keep its
    indices and ``unknown`` lists (sorted) the ids it lacks, appended to the map when
    ``extend`` (else their rows get -1). Missing values get -1.

    >>> m, a, new = encode(["b", "a", None, "b"])
    >>> m.ids, a.tolist(), new
    (('a', 'b'), [1, 0, -1, 1], [])
    >>> m, a, new = encode(["c", "a"], ItemMap(("b", "a")), extend=True)
    >>> m.ids, a.tolist(), new
    (('b', 'a', 'c'), [2, 1], ['c'])
    """
    codes, distinct = _factorize(values)
    unknown: list[Any] = []
    if items is None:
        items = ItemMap(tuple(_sorted(set(distinct))))
        found = items._find(distinct)
    else:
        found = items._find(distinct)
        unknown = _sorted({v for v, f in zip(distinct, found, strict=True) if f < 0})
        if unknown and extend:
            items = ItemMap(tuple(items.id_list()) + tuple(unknown))
            found = items._find(distinct)
    return items, np.append(found, -1)[codes], unknown


def _show(ids: Sequence[Any]) -> str:
    head = ", ".join(repr(i) for i in ids[:SHOWN_IDS])
    return f"[{head}{', ...' if len(ids) > SHOWN_IDS else ''}]"


@dataclass(frozen=True)
class ItemMap:
    """Source item id of each action index.

    Attributes:
        ids: ``ids[a]`` is the source id of action ``a`` (unique); ``None`` for the
            identity map of a simulated log (ids ``0..n_items-1``, not stored).
        size: the catalog size when ``ids`` is None.
    """

    ids: tuple[Any, ...] | None
    size: int = 0

    def __post_init__(self) -> None:
        if self.ids is None:
            if self.size < 1:
                raise InputError(f"an identity item map needs n_items >= 1; got {self.size}")
            return
        ids = tuple(normalize_id(v) for v in self.ids)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "size", len(ids))
        if len(set(ids)) != len(ids):
            seen: set[Any] = set()
            dup = [v for v in ids if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
            raise InputError(f"item ids must be unique; repeated: {_show(_sorted(set(dup)))}")

    @classmethod
    def identity(cls, n_items: int) -> ItemMap:
        """Items ``0..n_items-1`` (a simulated log's catalog)."""
        return cls(None, int(n_items))

    @property
    def n_items(self) -> int:
        """The catalog size ``K`` (actions ``0..K-1``)."""
        return self.size

    @property
    def is_identity(self) -> bool:
        """Whether action ``a`` is item ``a`` for every ``a``."""
        return self.ids is None or self.ids == tuple(range(self.size))

    def id_list(self) -> list[Any]:
        """The source ids, action by action (``0..K-1`` for the identity map)."""
        return list(range(self.size)) if self.ids is None else list(self.ids)

    def lookup(self, values: Any) -> np.ndarray:
        """Action index of each source id in ``values`` (n,), int64; ``-1`` where the map
        does not know the id (or the value is missing). Vectorized: the distinct values are
        looked up once in a hash index over the map, then spread back to the rows."""
        codes, distinct = _factorize(values)
        return np.append(self._find(distinct), -1)[codes]  # code -1 (missing) reads the -1

    def _find(self, distinct: list[Any]) -> np.ndarray:
        """Action index of each of ``distinct`` (normalized ids), -1 when unknown."""
        import pandas as pd

        if self.ids is None:
            return np.array(
                [
                    v
                    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < self.size
                    else -1
                    for v in distinct
                ],
                np.int64,
            )
        index = pd.Index(np.array(self.ids, dtype=object))
        return np.asarray(index.get_indexer(np.array(distinct, dtype=object)), np.int64)

    def unknown(self, values: Any) -> list[Any]:
        """The distinct ids in ``values`` the map does not know, sorted (missing values
        are not ids and are not listed)."""
        _, distinct = _factorize(values)
        return _sorted({v for v, f in zip(distinct, self._find(distinct), strict=True) if f < 0})

    def extended(self, new_ids: Iterable[Any]) -> ItemMap:
        """This map with the unknown ids of ``new_ids`` appended (sorted): known items
        keep their indices."""
        new = self.unknown(list(new_ids))
        return ItemMap(tuple(self.id_list()) + tuple(new)) if new else self

    def to_json(self) -> dict[str, Any]:
        """``{"n_items": K}`` for the identity map, else ``{"n_items": K, "ids": [...]}``."""
        out: dict[str, Any] = {SIDECAR_SIZE_KEY: self.size}
        if self.ids is not None:
            out["ids"] = list(self.ids)
        return out

    @classmethod
    def from_json(cls, raw: Any, where: str = "item map") -> ItemMap:
        """Inverse of :meth:`to_json` (errors name ``where``)."""
        if not isinstance(raw, dict) or not isinstance(raw.get(SIDECAR_SIZE_KEY), int):
            raise InputError(f"{where} must be an object with an integer n_items; got {raw!r}")
        ids = raw.get("ids")
        if ids is None:
            return cls.identity(raw[SIDECAR_SIZE_KEY])
        m = cls(tuple(ids))
        if m.n_items != raw[SIDECAR_SIZE_KEY]:
            raise InputError(
                f"{where}: n_items={raw[SIDECAR_SIZE_KEY]} but it lists {m.n_items} ids"
            )
        return m

    @classmethod
    def of_metadata(cls, metadata: dict[str, Any], n_actions: int) -> ItemMap:
        """The map of a log from its decoded metadata: the stored ids, else the identity
        over ``n_actions`` items."""
        ids = metadata.get(SIDECAR_KEY)
        if ids is None:
            return cls.identity(n_actions)
        m = cls(tuple(ids))
        if m.n_items != n_actions:
            raise InputError(
                f"the log's item map lists {m.n_items} items but its n_actions is {n_actions}"
            )
        return m


# ------------------------------------------------------------------ the dataset sidecar
def read_item_map(folder: str | Path) -> ItemMap | None:
    """The item map stored in a log dataset's sidecar, or None when it stores none."""
    from offrec.logs.schema import read_dataset_meta

    raw = read_dataset_meta(folder)
    if SIDECAR_KEY not in raw:
        return None
    return ItemMap.from_json(
        {
            SIDECAR_SIZE_KEY: raw.get(SIDECAR_SIZE_KEY, len(raw[SIDECAR_KEY])),
            "ids": raw[SIDECAR_KEY],
        },
        f"the dataset metadata of {folder}",
    )


def write_item_map(folder: str | Path, items: ItemMap) -> None:
    """Store ``items`` in the sidecar of the dataset being written in ``folder`` (other
    sidecar keys kept); call it inside the dataset's ``atomic_dir`` so the map is
    published with the rows. The identity map is stored as nothing (its absence)."""
    from offrec.logs.schema import read_dataset_meta, write_dataset_meta

    raw = read_dataset_meta(folder)
    raw.pop(SIDECAR_KEY, None)
    raw.pop(SIDECAR_SIZE_KEY, None)
    if items.ids is not None:
        raw[SIDECAR_KEY] = list(items.ids)
        raw[SIDECAR_SIZE_KEY] = items.n_items
    if raw:
        write_dataset_meta(folder, raw)


# ---------------------------------------------------------------------- models vs logs
def translation(model: ItemMap, log: ItemMap, who: str = "the model") -> np.ndarray | None:
    """Where the model's actions sit among the log's: ``None`` when the two maps are the
    same, else ``idx`` (model.n_items,) with ``idx[b]`` the log action of model item
    ``b``. Log items the model does not know get no mass from it. A model item the log
    does not know is an ``InputError`` listing the ids (its mass could not be scored)."""
    same = model.ids == log.ids or (model.is_identity and log.is_identity)
    if same and model.n_items == log.n_items:
        return None
    idx = log.lookup(model.id_list())
    missing = [i for i, j in zip(model.id_list(), idx, strict=True) if j < 0]
    if missing:
        raise InputError(
            f"{who} was trained with {len(missing)} item(s) this log's item map does not have: "
            f"{_show(missing)}; import the log with --items <the training log> --extend-items "
            "so both share one map"
        )
    return idx


class TranslatedPolicy:
    """A policy trained on another item map, seen through a log's map: its distribution
    ``(n, model.n_items)`` is placed at the log's indices of the same source items,
    ``(n, log.n_items)``; items the model does not know get probability 0.

    >>> from offrec.core.policy import UniformPolicy
    >>> p = TranslatedPolicy(UniformPolicy(2), np.array([2, 0]), 3)
    >>> p.action_dist(np.zeros((1, 1))).tolist()
    [[0.5, 0.0, 0.5]]
    """

    def __init__(self, policy: Any, index: np.ndarray, n_actions: int) -> None:
        self.policy, self.index, self.n_actions = (
            policy,
            np.asarray(index, np.int64),
            int(n_actions),
        )
        self.name = getattr(policy, "name", type(policy).__name__)

    def action_dist(self, obs: np.ndarray) -> np.ndarray:
        inner = np.asarray(self.policy.action_dist(obs))
        out = np.zeros((inner.shape[0], self.n_actions) + inner.shape[2:], dtype=inner.dtype)
        out[:, self.index] = inner
        return out

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        actions, pscores = self.policy.sample(obs, rng)
        return self.index[np.asarray(actions)], pscores


def translate_target(target: Any, log: ItemMap, who: str) -> Any:
    """``target`` laid onto the log's actions when it carries an item map (attribute
    ``item_map``, set on trained and loaded models) that differs from ``log``; the target
    itself otherwise. A target without a map is taken to be indexed like the log."""
    model = getattr(target, "item_map", None)
    if not isinstance(model, ItemMap):
        return target
    idx = translation(model, log, who)
    return target if idx is None else TranslatedPolicy(target, idx, log.n_items)
