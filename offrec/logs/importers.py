"""Bring your own logs: import CSV/Parquet with a column map, or the Open Bandit Dataset.

Imported logs are checked against every rule of the log schema plus the problems
real logs have. Each problem is reported with the column, the rule, how many rows,
and the first row numbers (0-based, in the source file). By default any problem is
an error and nothing is written; with ``repair="drop"`` the documented repair of each
problem is applied (see :data:`REPAIRS`) and reported as a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from offrec.core.errors import InputError, MissingInputError, OutputExistsError
from offrec.logs import schema as S
from offrec.logs.data import LoggedData
from offrec.logs.items import ItemMap, encode, read_item_map

log = logging.getLogger(__name__)

REPAIRS = {
    "missing": "drop the rows",
    "not_finite": "drop the rows",
    "out_of_range": "drop the rows",
    "duplicate": "keep the first of identical rows",
    "step_gap": "drop the whole session",
    "pscore_mismatch": "drop the rows",
}


@dataclass(frozen=True)
class Problem:
    """One kind of defect found in an imported log."""

    column: str
    rule: str
    kind: str  # key of REPAIRS
    rows: np.ndarray  # source row numbers, sorted

    def message(self) -> str:
        first = ", ".join(str(int(r)) for r in self.rows[:5])
        more = ", ..." if self.rows.size > 5 else ""
        return f"column '{self.column}': {self.rule} in {self.rows.size} row(s); first rows {first}{more}"


class ImportError_(InputError):
    """Raised when an import finds problems and no repair was asked for."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        head = problems[0].message()
        extra = f" (+{len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(
            f"{head}{extra}; nothing written (repair='drop' applies: {REPAIRS[problems[0].kind]})"
        )


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns hold what.

    ``context`` lists the context columns, or ``context_prefix`` selects every column
    starting with it (sorted by name). Non-numeric context columns are one-hot encoded
    (``categorical="onehot"``) or hashed into ``hash_buckets`` columns (``"hash"``).
    ``session``/``step``/``position``/``user`` are optional: without ``session`` every
    row is its own session; without ``step`` steps count rows within a session in
    source order.
    """

    action: str = "action"
    reward: str = "reward"
    pscore: str | None = "pscore"
    session: str | None = None
    step: str | None = None
    position: str | None = None
    user: str | None = None
    context: tuple[str, ...] | None = None
    context_prefix: str | None = None
    categorical: str = "onehot"
    hash_buckets: int = 32

    def __post_init__(self) -> None:
        if self.context is not None and not isinstance(self.context, tuple):
            object.__setattr__(self, "context", tuple(self.context))
        if self.categorical not in ("onehot", "hash"):
            raise InputError(f"categorical must be 'onehot' or 'hash'; got {self.categorical!r}")


@dataclass
class ImportResult:
    data: LoggedData
    problems: list[Problem] = field(default_factory=list)
    n_source_rows: int = 0
    action_map: list[Any] = field(default_factory=list)
    new_items: list[Any] = field(default_factory=list)  # ids added to a given item map

    def line(self, out: str | Path) -> str:
        """One line saying what was imported (what ``offrec import`` prints)."""
        d = self.data
        dropped = self.n_source_rows - d.n_rows
        dom = d.reward_domain
        reward = (
            "binary reward"
            if d.binary_reward
            else f"continuous reward in [{dom['low']}, {dom['high']}]"
        )
        return (
            f"imported {d.n_rows:,} rows ({d.n_actions} actions, context width {d.context_dim}, "
            f"{d.n_positions} position(s), {reward}) to {out}"
            + (f"; dropped {dropped:,} problem rows" if dropped else "")
            + (
                f"; {len(self.new_items)} new item(s) added to the item map"
                if self.new_items
                else ""
            )
        )


def read_table(src: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame (no type coercion beyond the reader's).

    A CSV that does not decode with ``encoding`` is an ``InputError`` naming the file,
    the byte offset and the encoding to try; an unreadable Parquet file names the file."""
    p = Path(src)
    if not p.is_file():
        raise MissingInputError(f"no such file: {p}")
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            return pq.read_table(p).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{p} is not readable Parquet: {str(exc).splitlines()[0]}") from None
    if p.suffix.lower() in (".csv", ".txt", ".gz"):
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(f"unknown encoding {encoding!r}") from None
        try:
            return pd.read_csv(p, low_memory=False, encoding=encoding)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{p}: cannot decode byte {exc.object[exc.start : exc.start + 1]!r} at offset "
                f"{exc.start} as {encoding}; pass encoding='latin-1' (or the file's encoding)"
            ) from None
        except pd.errors.EmptyDataError:
            raise InputError(f"{p} is empty: no header and no rows") from None
        except pd.errors.ParserError as exc:
            raise InputError(f"{p}: malformed CSV: {str(exc).splitlines()[0]}") from None
    raise InputError(f"source must be a .csv or .parquet file; got {p.name}")


def item_map_from(src: str | Path) -> ItemMap:
    """The item map to import against: an offrec log (its map; the identity for a
    simulated log) or a catalog file (CSV/Parquet with an ``item_id`` column: items in
    file order, unique)."""
    from offrec.logs.reader import log_files, read_metadata

    p = Path(src)
    if not p.exists():
        raise MissingInputError(f"no item map source at {p}: not a log folder or catalog file")
    if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
        files = log_files(p)
        if S.META_SCHEMA_VERSION.encode() in (pq.read_schema(files[0]).metadata or {}):
            meta = read_metadata(p)
            n = meta.get("n_actions")
            if not isinstance(n, int):
                raise InputError(f"log {p} does not record n_actions; cannot take its item map")
            stored = read_item_map(p) if p.is_dir() else None
            # logs imported before the sidecar kept the map in their part files' metadata
            return stored if stored is not None else ItemMap.of_metadata(meta, n)
        if p.is_dir():
            raise InputError(
                f"{p} is not an offrec log (no offrec metadata); give a log or a catalog file"
            )
    table = read_table(p)
    if "item_id" not in table.columns:
        raise InputError(
            f"catalog {p} must have an 'item_id' column; columns: {list(table.columns)}"
        )
    col = table["item_id"]
    if col.isna().any():
        row = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise InputError(f"catalog {p}: column 'item_id' must not be empty; row {row} is")
    return ItemMap(tuple(col.tolist()))


def _rows(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask))


def _numeric(df: pd.DataFrame, col: str, problems: list[Problem]) -> np.ndarray:
    """A numeric column as float64; NaN where missing. Mixed-type values are an error."""
    s = df[col]
    values = pd.to_numeric(s, errors="coerce")
    bad = values.isna() & s.notna()
    if bad.any():
        rows = _rows(bad.to_numpy())
        raise InputError(
            f"column '{col}' must be numeric; {rows.size} row(s) hold other values, first row "
            f"{rows[0]} has {s.iloc[rows[0]]!r}"
        )
    return values.to_numpy(dtype=np.float64)


def names_used(df: pd.DataFrame, cmap: ColumnMap) -> list[str]:
    """The source columns the map uses as context."""
    if cmap.context is not None:
        return list(cmap.context)
    if cmap.context_prefix is not None:
        return [c for c in df.columns if str(c).startswith(cmap.context_prefix)]
    return []


def _context(df: pd.DataFrame, cmap: ColumnMap) -> tuple[np.ndarray, list[str]]:
    if cmap.context is not None:
        cols = list(cmap.context)
    elif cmap.context_prefix is not None:
        cols = sorted(c for c in df.columns if str(c).startswith(cmap.context_prefix))
    else:
        cols = []
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(
            f"context column(s) {missing} not in the source; columns: {list(df.columns)}"
        )
    if cmap.context_prefix is not None and not cols:
        raise InputError(f"no column starts with context_prefix {cmap.context_prefix!r}")
    parts: list[np.ndarray] = []
    names: list[str] = []
    for c in cols:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            parts.append(s.to_numpy(dtype=np.float64)[:, None])
            names.append(str(c))
            continue
        numeric = pd.to_numeric(s, errors="coerce")
        if numeric.notna().sum() == s.notna().sum():  # numbers stored as text
            parts.append(numeric.to_numpy(dtype=np.float64)[:, None])
            names.append(str(c))
            continue
        if numeric.notna().any():  # some numbers, some words: mixed types
            bad = _rows((numeric.isna() & s.notna()).to_numpy())
            good = _rows(numeric.notna().to_numpy())
            raise InputError(
                f"context column '{c}' has mixed types: numbers (e.g. row {good[0]}: {s.iloc[good[0]]!r}) "
                f"and text (e.g. row {bad[0]}: {s.iloc[bad[0]]!r}); clean it or make it all text"
            )
        cat = s.astype("string").fillna("<NA>")
        if cmap.categorical == "onehot":
            levels = sorted(cat.unique())
            codes = pd.Categorical(cat, categories=levels).codes
            parts.append(np.eye(len(levels))[codes])
            names += [f"{c}={v}" for v in levels]
        else:
            h = pd.util.hash_array(cat.to_numpy(dtype=object)) % np.uint64(cmap.hash_buckets)
            parts.append(np.eye(cmap.hash_buckets)[h.astype(np.int64)])
            names += [f"{c}#h{b}" for b in range(cmap.hash_buckets)]
    if not parts:
        return np.zeros((len(df), 0)), names
    return np.hstack(parts), names


def import_frame(
    df: pd.DataFrame,
    cmap: ColumnMap,
    *,
    repair: str | None = None,
    claimed_policy: str | None = None,
    pscore_tolerance: float = 1e-6,
    reward_domain: dict[str, Any] | None = None,
    items: ItemMap | None = None,
    extend_items: bool = False,
) -> ImportResult:
    """Check and convert a DataFrame of logged rows into a ``LoggedData``.

    Item ids may be any hashable values (strings, sparse or negative integers). Without
    ``items`` they are sorted and mapped to dense actions ``0..K-1``; with ``items`` (an
    existing :class:`~offrec.logs.items.ItemMap`: another import's, or a catalog's) every
    known id keeps its index, and ids the map does not know are an ``InputError`` listing
    them, unless ``extend_items`` (they are appended, sorted). The map is kept with the
    log (``metadata["action_map"]``, stored in the dataset sidecar by the writer).
    Without context columns the log is context-free (context width 0).

    Args:
        reward_domain: the declared reward domain (see
            :func:`offrec.logs.schema.reward_domain`); binary (0/1) by default. Rewards
            outside it are a problem (``out_of_range``).
        repair: None (any problem raises :class:`ImportError_`) or ``"drop"`` (apply the
            repairs in :data:`REPAIRS`, log a warning per problem).
        claimed_policy: ``"uniform"`` to check that every propensity equals
            ``1 / n_actions`` (within ``pscore_tolerance``).
    """
    if repair not in (None, "drop"):
        raise InputError(f"repair must be None or 'drop'; got {repair!r}")
    needed = [cmap.action, cmap.reward] + [
        c for c in (cmap.pscore, cmap.session, cmap.step, cmap.position, cmap.user) if c
    ]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"column(s) {missing} not in the source; columns: {list(df.columns)}")
    if len(df) == 0:
        raise InputError("the source has no rows")
    if cmap.pscore is None:
        raise InputError("propensities are required: name the pscore column (pscore=...)")
    n = len(df)
    problems: list[Problem] = []
    reward = _numeric(df, cmap.reward, problems)
    pscore = _numeric(df, cmap.pscore, problems)
    context, names = _context(df, cmap)

    # item ids (any hashable: strings, sparse ints) -> dense action indices
    raw_action = df[cmap.action]
    if raw_action.isna().any():
        problems.append(
            Problem(cmap.action, "missing item id", "missing", _rows(raw_action.isna().to_numpy()))
        )
    item_map, action, unknown = encode(raw_action.to_numpy(), items, extend_items)
    if unknown and not extend_items:
        assert items is not None
        shown = ", ".join(repr(u) for u in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise InputError(
            f"column '{cmap.action}': {len(unknown)} item id(s) are not in the item map "
            f"({items.n_items} items): {shown}; pass extend_items=True (--extend-items) "
            "to add them"
        )
    ids = item_map.id_list()

    def add(col: str, rule: str, kind: str, mask: np.ndarray) -> None:
        if mask.any():
            problems.append(Problem(col, rule, kind, _rows(mask)))

    add(cmap.pscore, "missing propensity (empty or NaN)", "missing", np.isnan(pscore))
    add(
        cmap.pscore,
        "propensity must be in (0, 1]",
        "out_of_range",
        ~np.isnan(pscore) & ~((pscore > 0) & (pscore <= 1)),
    )
    add(
        cmap.pscore,
        f"propensity {S.PSCORE_FLOOR_RULE}",
        "out_of_range",
        (pscore > 0) & (pscore < S.MIN_PSCORE),
    )
    add(cmap.reward, "reward must be present and finite", "not_finite", ~np.isfinite(reward))
    domain = S.reward_domain(**(reward_domain or {"kind": "binary"}))
    fin = np.isfinite(reward)
    if domain["kind"] == "binary":
        add(
            cmap.reward,
            "reward must be 0 or 1 (binary; declare a continuous reward with its bounds)",
            "out_of_range",
            fin & (reward != 0) & (reward != 1),
        )
    else:
        add(
            cmap.reward,
            f"reward must be in the declared domain [{domain['low']}, {domain['high']}]",
            "out_of_range",
            fin & ((reward < domain["low"]) | (reward > domain["high"])),
        )
    if context.shape[1]:
        add(
            "context",
            "context values must be present and finite",
            "not_finite",
            ~np.isfinite(context).all(axis=1),
        )
    if claimed_policy == "uniform":
        k = len(ids)
        add(
            cmap.pscore,
            f"propensity differs from the claimed uniform logger's 1/{k}",
            "pscore_mismatch",
            ~np.isnan(pscore) & (np.abs(pscore - 1.0 / k) > pscore_tolerance),
        )
    elif claimed_policy is not None:
        raise InputError(f"claimed_policy must be None or 'uniform'; got {claimed_policy!r}")

    session = (
        pd.factorize(df[cmap.session])[0].astype(np.int64)
        if cmap.session
        else np.arange(n, dtype=np.int64)
    )
    if cmap.step:
        step = _numeric(df, cmap.step, problems)
        add(
            cmap.step,
            "step must be a non-negative integer",
            "out_of_range",
            ~(step >= 0) | (step != np.round(step)),
        )
        step = np.nan_to_num(step, nan=-1).astype(np.int64)
    else:
        step = pd.Series(session).groupby(session).cumcount().to_numpy(np.int64)
    position = np.zeros(n, np.int64)
    if cmap.position:
        pos = _numeric(df, cmap.position, problems)
        add(
            cmap.position,
            "position must be a non-negative integer",
            "out_of_range",
            ~(pos >= 0) | (pos != np.round(pos)),
        )
        position = np.nan_to_num(pos, nan=-1).astype(np.int64)
    # A duplicate repeats an earlier row in every column. It is evidence of a row logged
    # twice only when the source has a column identifying the event (session, step, user,
    # or any column the map does not use, such as a timestamp): without one, identical
    # rows (same context, item, click and propensity) are distinct decisions and are kept.
    described = {cmap.action, cmap.reward, cmap.pscore, cmap.position, *names_used(df, cmap)}
    identifying = [c for c in df.columns if c not in described]
    dup = df.duplicated(keep="first").to_numpy() if identifying else np.zeros(n, bool)
    add("*", "duplicated row (identical in every column)", "duplicate", dup)
    if cmap.session and cmap.step:
        order = np.lexsort((step, session))
        s_sorted, t_sorted = session[order], step[order]
        first = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
        expected = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
        gap_rows = order[t_sorted != expected]
        if gap_rows.size:
            bad_sessions = np.isin(session, session[gap_rows])
            add(
                cmap.step,
                "steps within a session must run 0, 1, 2, ... without gaps or repeats",
                "step_gap",
                bad_sessions & ~dup,
            )

    if problems and repair is None:
        raise ImportError_(problems)
    keep = np.ones(n, bool)
    for p in problems:
        log.warning("%s; repaired: %s", p.message(), REPAIRS[p.kind])
        keep[p.rows] = False
    if not keep.any():
        raise InputError("no rows left after dropping the problem rows")
    order = np.lexsort((step[keep], session[keep]))
    idx = np.flatnonzero(keep)[order]
    sess_kept = session[idx]
    last = np.r_[sess_kept[1:] != sess_kept[:-1], True]
    user = (
        pd.factorize(df[cmap.user])[0].astype(np.int64)[idx]
        if cmap.user
        else np.full(idx.size, -1, np.int64)
    )
    data = LoggedData(
        context=context[idx].astype(np.float32),
        action=action[idx],
        reward=reward[idx],
        pscore=pscore[idx],
        session_id=pd.factorize(sess_kept)[0].astype(np.int64),
        step=step[idx],
        position=position[idx],
        user_id=user,
        terminated=np.zeros(idx.size, bool),
        truncated=last,
        n_actions=len(ids),
        metadata={
            "action_map": [_jsonable(v) for v in ids],
            "context_columns": names,
            # row i of the log is not row i of the source (regrouped by session or
            # problem rows dropped): probabilities aligned by position are refused
            "rows_reordered": not np.array_equal(idx, np.arange(n)),
        },
        reward_domain=domain,
    )
    return ImportResult(data, problems, n, list(data.metadata["action_map"]), unknown)


def _jsonable(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def write_logged_data(
    data: LoggedData,
    out: str | Path,
    *,
    overwrite: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an imported ``LoggedData`` with its metadata: :func:`offrec.logs.write_log`
    (the one writer: atomic, locked, owned; the item map in the dataset sidecar)."""
    from offrec.logs.writer import write_log

    return write_log(data, out, overwrite=overwrite, metadata=extra_metadata)


def import_logs(
    src: str | Path,
    out: str | Path,
    cmap: ColumnMap,
    *,
    repair: str | None = None,
    claimed_policy: str | None = None,
    overwrite: bool = False,
    encoding: str = "utf-8",
    reward_domain: dict[str, Any] | None = None,
    items: ItemMap | str | Path | None = None,
    extend_items: bool = False,
) -> ImportResult:
    """Import a CSV/Parquet file into an offrec log dataset at ``out`` (atomic; nothing is
    written when the import fails). ``items``: an item map to import against (an
    :class:`~offrec.logs.items.ItemMap`, or the path of a log or catalog file, see
    :func:`item_map_from`), ``extend_items`` to add unknown items
    (:func:`import_frame`)."""
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True to replace it")
    if items is not None and not isinstance(items, ItemMap):
        items = item_map_from(items)
    result = import_frame(
        read_table(src, encoding=encoding),
        cmap,
        repair=repair,
        claimed_policy=claimed_policy,
        reward_domain=reward_domain,
        items=items,
        extend_items=extend_items,
    )
    write_logged_data(
        result.data,
        out,
        overwrite=overwrite,
        extra_metadata={"context_columns": result.data.metadata["context_columns"]},
    )
    return result


# ---------------------------------------------------------------- Open Bandit Dataset
OBD_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")


def obd_column_map(df: pd.DataFrame, categorical: str = "onehot") -> ColumnMap:
    """Column map of an Open Bandit Dataset campaign CSV: context = the user features
    (categorical, one-hot or hashed) followed by the user-item affinities."""
    missing = [c for c in OBD_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"not an Open Bandit Dataset file: missing column(s) {missing}")
    user = sorted(c for c in df.columns if c.startswith("user_feature_"))
    aff = sorted(
        (c for c in df.columns if c.startswith("user-item_affinity_")),
        key=lambda c: int(c.rsplit("_", 1)[1]),
    )
    return ColumnMap(
        action="item_id",
        reward="click",
        pscore="propensity_score",
        position="position",
        context=tuple(user + aff),
        categorical=categorical,
    )


def import_obd(
    campaign_csv: str | Path,
    out: str | Path,
    *,
    item_context_csv: str | Path | None = None,
    categorical: str = "onehot",
    repair: str | None = None,
    overwrite: bool = False,
    encoding: str = "utf-8",
    items: ItemMap | str | Path | None = None,
    extend_items: bool = False,
) -> ImportResult:
    """Import an Open Bandit Dataset campaign CSV (e.g. ``random/all/all.csv``).

    As in OBP: rows keep their file order (by ``timestamp``), ``position`` is mapped to
    dense 0-based slots (OBD's positions 1, 2, 3 -> 0, 1, 2), each row is its own
    session, and item ids become dense action indices (OBD's are already 0..n-1, so
    they are kept). ``item_context.csv`` (``item_id, item_feature_*``) is stored in the
    metadata as the action context.
    """
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True to replace it")
    df = read_table(campaign_csv, encoding=encoding)
    cmap = obd_column_map(df, categorical)
    if df["position"].notna().all():
        df = df.assign(position=pd.factorize(df["position"], sort=True)[0])
    if items is not None and not isinstance(items, ItemMap):
        items = item_map_from(items)
    result = import_frame(df, cmap, repair=repair, items=items, extend_items=extend_items)
    extra: dict[str, Any] = {
        "context_columns": result.data.metadata["context_columns"],
        "source": "obd",
    }
    if item_context_csv is not None:
        item_table = read_table(item_context_csv)
        if "item_id" not in item_table.columns:
            raise InputError(f"{item_context_csv}: missing column 'item_id'")
        feats = item_table.set_index("item_id").reindex(result.action_map)
        feats = feats.drop(columns=[c for c in feats.columns if not c.startswith("item_feature_")])
        extra["action_context"] = pd.get_dummies(feats, dtype=float).to_numpy().tolist()
        result.data.metadata["action_context"] = extra["action_context"]
    write_logged_data(result.data, out, overwrite=overwrite, extra_metadata=extra)
    return result


def is_offrec_log(src: str | Path) -> bool:
    """True when ``src`` (a Parquet file or dataset folder) carries offrec's log metadata."""
    p = Path(src)
    first = (
        p if p.is_file() else next(iter(sorted(p.glob("*.parquet"))), None) if p.is_dir() else None
    )
    if first is None or first.suffix.lower() not in (".parquet", ".pq"):
        return False
    try:
        return S.META_SCHEMA_VERSION.encode() in (pq.read_schema(first).metadata or {})
    except (pa.ArrowInvalid, OSError):
        return False


def import_offrec_log(
    src: str | Path, out: str | Path, *, repair: str | None = None, overwrite: bool = False
) -> ImportResult:
    """Re-import a log offrec wrote (e.g. copied from elsewhere): read and validate it
    like :func:`~offrec.logs.reader.read_logs` (same duplicate rule, ``repair="drop"``
    keeps the first), then write it with its metadata and reward domain."""
    from offrec.logs.reader import read_logs

    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True to replace it")
    n_source = read_logs(src, validate=False).n_rows
    data = read_logs(src, repair=repair)
    write_logged_data(data, out, overwrite=overwrite)  # metadata, item map, sidecar kept
    return ImportResult(data, [], n_source, list(data.metadata.get("action_map", [])))


def import_any(
    flavour: str,
    src: str | Path,
    out: str | Path,
    cmap: ColumnMap,
    *,
    given: set[str] | frozenset[str] = frozenset(),
    encoding: str = "utf-8",
    reward: tuple[str, float | None, float | None] = ("binary", None, None),
    item_context_csv: str | Path | None = None,
    repair: str | None = None,
    claimed_policy: str | None = None,
    overwrite: bool = False,
    items: ItemMap | str | Path | None = None,
    extend_items: bool = False,
    catalog: str | Path | None = None,
) -> ImportResult:
    """One entry point for every import: ``flavour`` ``"csv"``/``"parquet"`` (a column map,
    or, for a Parquet log offrec wrote, the log as it is) or ``"obd"``. ``items`` /
    ``extend_items``: the item map to import against (:func:`import_logs`). ``catalog``: a
    catalog export (:mod:`offrec.logs.catalog`: ``item_id``, ``topic``, ``quality``,
    embedding), read before anything is written; it numbers the items (ids it lacks are
    refused) and is stored beside the log as its item table, its topics as the item groups.

    ``given`` names the options the caller set explicitly; an option that does not apply
    to the flavour (a column map for OBD or for offrec's own Parquet, an item context for
    a CSV) is an ``InputError`` that says what applies."""
    if catalog is not None:
        from offrec.logs.catalog import attach_catalog, read_catalog

        if items is not None or extend_items:
            raise InputError(
                "catalog (--catalog FILE) numbers the items itself; drop --items / --extend-items"
            )
        table = read_catalog(catalog)
        res = import_any(
            flavour,
            src,
            out,
            cmap,
            given=given,
            encoding=encoding,
            reward=reward,
            item_context_csv=item_context_csv,
            repair=repair,
            claimed_policy=claimed_policy,
            overwrite=overwrite,
            items=ItemMap(tuple(table.item_id.tolist())),
        )
        attach_catalog(out, table)
        return res
    domain = S.reward_domain(*reward)
    if extend_items and items is None:
        raise InputError(
            "extend_items (--extend-items) applies only with items (--items LOG_OR_CATALOG)"
        )
    if flavour == "obd":
        wrong = sorted(set(given) - {"categorical", "item_context", "items", "extend_items"})
        if wrong or domain["kind"] != "binary":
            raise InputError(
                f"option(s) {wrong or ['reward domain']} do not apply to the Open Bandit "
                "Dataset (its columns and binary clicks are fixed); it takes: categorical, item_context"
            )
        return import_obd(
            src,
            out,
            item_context_csv=item_context_csv,
            categorical=cmap.categorical,
            repair=repair,
            overwrite=overwrite,
            encoding=encoding,
            items=items,
            extend_items=extend_items,
        )
    if flavour not in ("csv", "parquet"):
        raise InputError(f"flavour must be 'csv', 'parquet' or 'obd'; got {flavour!r}")
    if "item_context" in given:
        raise InputError("item_context applies only to the Open Bandit Dataset (flavour 'obd')")
    if flavour == "parquet" and is_offrec_log(src):
        if items is not None or extend_items:
            given = {*given, "items"}
        if given or domain["kind"] != "binary":
            raise InputError(
                f"{src} is a log offrec wrote: its columns, propensities and reward domain "
                f"are known; option(s) {sorted(given) or ['reward domain']} do not apply"
            )
        return import_offrec_log(src, out, repair=repair, overwrite=overwrite)
    return import_logs(
        src,
        out,
        cmap,
        repair=repair,
        claimed_policy=claimed_policy,
        overwrite=overwrite,
        encoding=encoding,
        reward_domain=domain,
        items=items,
        extend_items=extend_items,
    )


def to_obp_bandit_feedback(data: LoggedData) -> dict[str, Any]:
    """The Open Bandit Pipeline's ``bandit_feedback`` dict for cross-checking with OBP:
    ``n_rounds, n_actions, action, position, reward, pscore, context, action_context``."""
    ac = data.metadata.get("action_context")
    return {
        "n_rounds": data.n_rows,
        "n_actions": data.n_actions,
        "action": data.action.astype(int),
        "position": data.position.astype(int),
        "reward": data.reward.copy(),
        "pscore": data.pscore.copy(),
        "context": data.context.astype(np.float64),
        "action_context": np.eye(data.n_actions) if ac is None else np.asarray(ac, dtype=float),
    }
