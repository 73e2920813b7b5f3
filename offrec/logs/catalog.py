r"""The item table of a dataset: what a real catalog export holds, once per dataset.

An :class:`ItemTable` has one row per action index ``a`` (``0..K-1``): the source
``item_id``, the ``topic`` (an index into ``topics``), an ``embedding`` (K, k) float32 and a
``quality`` (K,) float64. It travels beside a log's part files as
``_offrec_items.arrow`` (:data:`CATALOG_FILE`, an Arrow IPC file: the ``_`` prefix and the
non-Parquet suffix keep it out of every reader's ``DIR``, ``DIR/*.parquet`` and recursive
folder forms, checked in ``tests/logs/test_catalog.py``), written once by
:func:`~offrec.logs.writer.collect` for a large-catalog (two-stage) logger and by
``offrec import ... --catalog FILE`` from a real export, and read by the learners
(:meth:`ItemTable.features`: the shared-parameter learner's item features) and by
MIPS / OffCEM (``topic``: the item groups, also in the sidecar's ``item_topics``).

A catalog export is a CSV or Parquet file with the columns ``item_id`` (unique),
``topic`` (any labels), ``quality`` (a number; 0 when absent) and the embedding either as
columns ``emb_0, emb_1, ...`` or as one list column ``embedding``.

>>> t = ItemTable(np.array(["a", "b"], object), np.array([0, 1]), ("news", "music"),
...               np.eye(2, dtype=np.float32), np.array([0.5, -0.5]))
>>> t.features().tolist()
[[1.0, 0.0, 1.0, 0.0, 0.5], [0.0, 1.0, 0.0, 1.0, -0.5]]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from offrec.core.errors import InputError, MissingInputError

CATALOG_FILE = "_offrec_items.arrow"
"""File name of the item table in a dataset folder (Parquet readers skip it)."""
EMB_PREFIX = "emb_"


@dataclass(frozen=True)
class ItemTable:
    """A catalog: row ``a`` describes action ``a``.

    Attributes:
        item_id: (K,) the source ids (object or int64).
        topic: (K,) int64 in ``[0, len(topics))``.
        topics: the topic names.
        embedding: (K, k) float32, finite.
        quality: (K,) float64, finite.
    """

    item_id: np.ndarray
    topic: np.ndarray
    topics: tuple[str, ...]
    embedding: np.ndarray
    quality: np.ndarray

    def __post_init__(self) -> None:
        k = self.item_id.shape[0]
        for name in ("topic", "embedding", "quality"):
            got = getattr(self, name).shape[0]
            if got != k:
                raise InputError(f"item table column {name!r} has {got} rows; expected {k}")
        if k == 0:
            raise InputError("item table must have at least one item; got 0")
        if self.topic.min() < 0 or self.topic.max() >= len(self.topics):
            raise InputError(f"item table column 'topic' must be in [0, {len(self.topics)})")
        for name in ("embedding", "quality"):
            bad = ~np.isfinite(np.asarray(getattr(self, name), np.float64))
            if bad.any():
                row = int(np.flatnonzero(bad.reshape(k, -1).any(axis=1))[0])
                raise InputError(f"item table column {name!r} must be finite; row {row} is not")

    @property
    def n_items(self) -> int:
        return int(self.item_id.shape[0])

    def features(self) -> np.ndarray:
        """(K, k + T + 1) float64: ``[embedding, topic one-hot, quality]``, the item features
        of the shared-parameter learner (:class:`~offrec.policies.bandits.hybrid.HybridLinear`)."""
        onehot = np.zeros((self.n_items, len(self.topics)))
        onehot[np.arange(self.n_items), self.topic] = 1.0
        return np.hstack([self.embedding.astype(np.float64), onehot, self.quality[:, None]])

    def to_arrow(self) -> pa.Table:
        k = self.embedding.shape[1]
        ids = self.item_id
        id_arr = pa.array(ids.astype(np.int64) if ids.dtype.kind in "iu" else [str(v) for v in ids])
        emb = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(self.embedding, np.float32).reshape(-1)), k
        )
        return pa.table(
            {
                "item_id": id_arr,
                "topic": pa.array([self.topics[t] for t in self.topic]),
                "quality": pa.array(self.quality.astype(np.float64)),
                "embedding": emb,
            },
            metadata={"offrec.topics": "\x1f".join(self.topics)},
        )

    def reordered(self, ids: list[Any]) -> ItemTable:
        """The rows of ``ids`` (a log's item map, action order); an id the table lacks is an
        error listing the first few."""
        where = {_key(v): i for i, v in enumerate(self.item_id.tolist())}
        idx = np.array([where.get(_key(v), -1) for v in ids], np.int64)  # a loop over items
        if (idx < 0).any():
            missing = [ids[i] for i in np.flatnonzero(idx < 0)[:10]]
            raise InputError(
                f"the catalog lacks {int((idx < 0).sum())} item id(s) of the log, e.g. {missing}"
            )
        return ItemTable(
            self.item_id[idx], self.topic[idx], self.topics, self.embedding[idx], self.quality[idx]
        )


def _key(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def world_catalog(world: Any) -> ItemTable:
    """The item table of a simulated world (ids ``0..K-1``, its topics, latent vectors and
    quality biases)."""
    return ItemTable(
        np.arange(world.n_actions, dtype=np.int64),
        np.asarray(world.item_topic, np.int64),
        tuple(world.topics),
        np.asarray(world.item_vec, np.float32),
        np.asarray(world.item_quality, np.float64),
    )


def write_catalog(folder: str | Path, table: ItemTable) -> Path:
    """Write ``table`` as ``folder/_offrec_items.arrow`` (inside a dataset being published
    atomically, or replacing the file by a rename)."""
    path = Path(folder) / CATALOG_FILE
    tmp = path.with_name(path.name + ".tmp")
    feather.write_feather(table.to_arrow(), tmp, compression="lz4")
    tmp.replace(path)
    return path


def attach_catalog(folder: str | Path, table: ItemTable) -> None:
    """Give the published log at ``folder`` its item table (rows in action order): the
    table file, and the topics as the sidecar's ``item_topics`` / ``topics`` (the item
    groups of MIPS / OffCEM); each file replaced by a rename, never half-written."""
    import json

    from offrec.logs.schema import DATASET_FILE, read_dataset_meta

    write_catalog(folder, table)
    meta = read_dataset_meta(folder)
    meta.update(item_topics=table.topic.tolist(), topics=list(table.topics))
    path = Path(folder) / DATASET_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    tmp.replace(path)


def catalog_path(src: str | Path) -> Path | None:
    """The item table of a dataset folder (``None`` when it has none), or ``src`` itself."""
    p = Path(src)
    if p.is_dir():
        f = p / CATALOG_FILE
        return f if f.is_file() else None
    return p if p.is_file() else None


def read_catalog(src: str | Path) -> ItemTable:
    """An item table from a dataset folder (its ``_offrec_items.arrow``) or a catalog
    export (CSV / Parquet / Arrow file, module docstring); errors name the column."""
    import pandas as pd

    p = catalog_path(src)
    if p is None:
        raise MissingInputError(
            f"no item table at {src}: give a catalog file or a log that has one"
        )
    suffix = p.suffix.lower()
    order = None
    try:
        if suffix in (".arrow", ".feather", ".ipc"):
            table = feather.read_table(p)
            order = (table.schema.metadata or {}).get(b"offrec.topics")
            df = table.to_pandas()
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif suffix == ".csv":
            df = pd.read_csv(p)
        else:
            raise InputError(f"catalog must be a .csv, .parquet or .arrow file; got {p.name}")
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read catalog {p}: {str(exc).splitlines()[0]}") from None
    topics = None if order is None else tuple(order.decode().split("\x1f"))
    return _from_frame(df, str(p), topics)


def _from_frame(df: Any, where: str, topic_order: tuple[str, ...] | None = None) -> ItemTable:
    import pandas as pd

    if "item_id" not in df.columns:
        raise InputError(
            f"catalog {where} must have an 'item_id' column; columns: {list(df.columns)}"
        )
    ids = df["item_id"]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise InputError(f"catalog {where}: column 'item_id' must not be empty; row {row} is")
    dup = ids.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(
            f"catalog {where}: column 'item_id' must be unique; row {row} repeats {_key(ids.iloc[row])!r}"
        )
    emb_cols = sorted(
        (
            c
            for c in df.columns
            if str(c)[len(EMB_PREFIX) :].isdigit() and str(c).startswith(EMB_PREFIX)
        ),
        key=lambda c: int(str(c)[len(EMB_PREFIX) :]),
    )
    if "embedding" in df.columns:
        try:
            emb = np.stack([np.asarray(v, np.float32) for v in df["embedding"]])  # per item
        except (ValueError, TypeError):
            raise InputError(
                f"catalog {where}: column 'embedding' must hold one equal-length list of numbers per item"
            ) from None
    elif emb_cols:
        emb = _numbers(df, emb_cols, where).astype(np.float32)
    else:
        raise InputError(
            f"catalog {where} must have an embedding: columns emb_0, emb_1, ... or a list "
            f"column 'embedding'; columns: {list(df.columns)}"
        )
    quality = (
        _numbers(df, ["quality"], where)[:, 0] if "quality" in df.columns else np.zeros(len(df))
    )
    if "topic" in df.columns and topic_order is not None:  # offrec's own table: its order
        topics = topic_order
        codes = pd.Categorical(df["topic"].astype(str), categories=list(topics)).codes
    elif "topic" in df.columns:
        codes, names = pd.factorize(df["topic"].astype(str), sort=True)
        topics = tuple(str(n) for n in names)
    else:
        codes, topics = np.zeros(len(df), np.int64), ("all",)
    raw = ids.to_numpy()
    item_id = (
        raw.astype(np.int64)
        if raw.dtype.kind in "iu"
        else np.asarray([_key(v) for v in raw], object)
    )
    return ItemTable(item_id, np.asarray(codes, np.int64), topics, emb, quality)


def _numbers(df: Any, cols: list[Any], where: str) -> np.ndarray:
    import pandas as pd

    out = np.empty((len(df), len(cols)))
    for j, c in enumerate(cols):  # a loop over columns
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"catalog {where}: column {c!r} must hold finite numbers; row {row} has "
                f"{df[c].iloc[row]!r}"
            )
        out[:, j] = v
    return out


__all__ = [
    "CATALOG_FILE",
    "ItemTable",
    "attach_catalog",
    "catalog_path",
    "read_catalog",
    "world_catalog",
    "write_catalog",
]
