"""``collect``: run a logging policy in the world and stream its log to Parquet."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offrec.core.atomic import atomic_dir
from offrec.core.errors import InputError
from offrec.core.validation import SeedLike, as_seed_sequence, check_scalar
from offrec.core.version import __version__
from offrec.logs import schema as S
from offrec.logs.data import LoggedData, validate_logged_data
from offrec.logs.schema import BINARY
from offrec.sim.world import Trajectories, World


@dataclass(frozen=True)
class CollectSummary:
    """What ``collect`` wrote."""

    path: Path
    n_rows: int
    n_sessions: int
    n_files: int
    ctr: float
    seconds: float

    def line(self) -> str:
        rate = self.n_rows / max(self.seconds, 1e-9)
        return (
            f"wrote {self.n_rows:,} rows ({self.n_sessions:,} sessions, CTR {self.ctr:.4f}) "
            f"to {self.path} in {self.seconds:.1f}s ({rate:,.0f} rows/s)"
        )


def policy_spec(policy: Any) -> dict[str, Any]:
    """The policy's ``spec()`` if it has one, else its class name."""
    spec = policy.spec() if hasattr(policy, "spec") else {"type": type(policy).__name__}
    return dict(spec)


def collect(
    world: World,
    policy: Any,
    *,
    out: str | Path,
    n_sessions: int | None = None,
    n_decisions: int | None = None,
    seed: SeedLike = 0,
    overwrite: bool = False,
    chunk_rows: int = 65_536,
    rows_per_file: int = 4_194_304,
    logging_dist: bool = False,
    true_ctr: bool = True,
    progress: Callable[[int], None] | None = None,
    overlap: bool = True,
) -> CollectSummary:
    """Log ``policy`` acting in ``world`` into a Parquet dataset directory ``out``.

    Exactly one of ``n_sessions`` / ``n_decisions`` sets the size. Sessions run in
    cohorts of about ``chunk_rows`` rows through the world's batch core; each cohort
    becomes one row group, so memory stays bounded by one cohort whatever the size.
    Part files hold up to ``rows_per_file`` rows. The dataset is built in a temporary
    directory and renamed to ``out`` at the end: an interrupted or failing run leaves
    nothing at ``out`` (and an existing dataset there is replaced only if ``overwrite``).

    With ``n_decisions`` in session mode the last session is cut at the budget; its last
    row is then marked ``truncated``.

    ``progress`` (optional) is called with the number of rows written so far.

    ``overlap`` (default on): a worker thread encodes and compresses cohort ``k`` while
    cohort ``k + 1`` is simulated, so two cohorts are in memory at most; the simulation
    and its random stream stay in the calling thread, in order, so the output is the
    same either way.
    """
    if (n_sessions is None) == (n_decisions is None):
        raise InputError("give exactly one of n_sessions or n_decisions")
    budget_name = "n_sessions" if n_sessions is not None else "n_decisions"
    budget: int = n_sessions if n_sessions is not None else n_decisions  # type: ignore[assignment]
    check_scalar(budget, budget_name, int, min=1)
    check_scalar(chunk_rows, "chunk_rows", int, min=1)
    check_scalar(rows_per_file, "rows_per_file", int, min=1)
    if getattr(policy, "n_actions", None) != world.n_actions:
        raise InputError(
            f"policy.n_actions must equal the world's n_items={world.n_actions}; "
            f"got {getattr(policy, 'n_actions', None)}"
        )
    rng = np.random.default_rng(as_seed_sequence(seed))
    cfg = world.config
    metadata = {
        S.META_VERSION: __version__,
        S.META_WORLD: cfg.to_json(),
        S.META_WORLD_SEED: json.dumps(world.seed),
        S.META_POLICY: json.dumps(policy_spec(policy)),
        S.META_SEED: json.dumps(seed if isinstance(seed, int) else None),
        S.META_REWARD_DOMAIN: json.dumps(BINARY),
    }
    items = {"item_topics": world.item_topic.tolist(), "topics": list(world.topics)}
    group_pscores = logs_group_pscore(policy)
    schema = S.log_schema(
        world.context_dim,
        world.n_actions,
        logging_dist=logging_dist,
        true_ctr=true_ctr,
        metadata=metadata,
        pscore_group=group_pscores,
    )
    per_cohort = max(1, chunk_rows // cfg.horizon)
    check_collect_memory(world, policy, min(per_cohort, budget), logging_dist=logging_dist)
    start = time.perf_counter()
    rows = sessions = clicks = 0
    files = PartWriter(schema, rows_per_file)
    # Two cohorts in flight: the next one is simulated (numpy, no GIL in the big kernels)
    # while a worker thread encodes and compresses the previous one (Arrow, no GIL).
    # Simulation stays in this thread, in order, so the random stream does not change.
    pending: Future[None] | None = None
    n_rows = n_decisions if n_decisions is not None else expected_rows(world, budget)
    size = estimated_bytes(
        n_rows, world.context_dim, world.n_actions, logging_dist=logging_dist, true_ctr=true_ctr
    )
    with (
        atomic_dir(out, overwrite=overwrite, kind="dataset", expected_bytes=size) as tmp,
        ThreadPoolExecutor(1) as pool,
    ):
        S.write_dataset_meta(tmp, items)
        if group_pscores:  # a large catalog: its item table beside the part files
            from offrec.logs.catalog import world_catalog, write_catalog

            write_catalog(tmp, world_catalog(world))
        try:
            while (sessions if n_sessions is not None else rows) < budget:
                if n_sessions is not None:
                    n = min(per_cohort, budget - sessions)
                else:
                    n = min(per_cohort, budget - rows)  # >= rows needed in bandit mode
                traj = world.run_sessions(policy, n, rng, record_dist=logging_dist)
                if n_decisions is not None and rows + len(traj.action) > budget:
                    traj = _cut(traj, budget - rows)
                group = _group_pscore(policy, traj, world.item_topic) if group_pscores else None
                table = _to_table(
                    traj,
                    schema,
                    session_offset=sessions,
                    bandit=cfg.horizon == 1,
                    pscore_group=group,
                )
                if pending is not None:
                    pending.result()
                if overlap:
                    pending = pool.submit(files.write, tmp, table)
                else:
                    files.write(tmp, table)
                rows += table.num_rows
                sessions += int(traj.session.max()) + 1 if len(traj.session) else 0
                clicks += int(traj.reward.sum())
                if progress is not None:
                    progress(rows)
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                pending.exception()  # wait; the error (if any) was raised above
            files.close()
    seconds = time.perf_counter() - start
    return CollectSummary(Path(out), rows, sessions, files.n_files, clicks / max(rows, 1), seconds)


class PartWriter:
    """Part files of up to ``rows_per_file`` rows, one row group per table written."""

    def __init__(self, schema: pa.Schema, rows_per_file: int) -> None:
        self.schema, self.rows_per_file = schema, rows_per_file
        self.writer: pq.ParquetWriter | None = None
        self.n_files = self.rows_in_file = 0

    def write(self, folder: Path, table: pa.Table) -> None:
        if self.writer is None or self.rows_in_file >= self.rows_per_file:
            self.close()
            self.writer = pq.ParquetWriter(
                folder / f"part-{self.n_files:05d}.parquet",
                self.schema,
                compression="lz4",
                use_dictionary=False,
                write_statistics=["session_id", "step", "action"],
            )
            self.n_files += 1
            self.rows_in_file = 0
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.rows_in_file += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def check_collect_memory(
    world: World, policy: Any, per_cohort: int, *, logging_dist: bool = False
) -> None:
    """Refuse (``InputError``, before anything is simulated) a cohort whose peak memory
    would not fit: the peak of ``world.run_sessions`` is measured on 8 and 32 sessions of
    this policy (fewer when a cohort has fewer) (:func:`~offrec.sim.limits.measured_bytes`, a private random stream: the
    log is unchanged) and scaled to ``per_cohort`` sessions; two cohorts are in memory
    when encoding overlaps simulation."""
    from offrec.sim.limits import check_memory, measured_bytes

    probe = np.random.default_rng(0)
    big = min(32, max(2, per_cohort))  # never more sessions than a cohort (long horizons)
    fixed, per_session = measured_bytes(
        lambda n: world.run_sessions(policy, n, probe, record_dist=logging_dist),
        sizes=(max(1, big // 4), big),
    )
    need = int(fixed + per_session * per_cohort * 2)
    check_memory(
        need,
        f"simulating {per_cohort * world.config.horizon:,} rows at once with {world.n_actions:,} items",
        "use a smaller --batch-size (rows simulated at once) or fewer items",
    )


def estimated_bytes(
    n_rows: int,
    context_dim: int,
    n_actions: int,
    *,
    logging_dist: bool = False,
    true_ctr: bool = True,
) -> int:
    """Upper estimate of a log's size on disk: the uncompressed bytes of its columns
    (8+4+8+4 d+4+4+4+8+2 bytes per row, plus 4 K with ``logging_dist`` and 4 with
    ``true_ctr``); lz4 barely compresses the float columns, so the estimate is close."""
    per_row = 46 + 4 * context_dim + (4 * n_actions if logging_dist else 0) + (4 if true_ctr else 0)
    return int(n_rows) * per_row


def _cut(traj: Trajectories, n_rows: int) -> Trajectories:
    """First ``n_rows`` rows of a cohort; the cut session's last row becomes truncated."""
    keep = slice(0, n_rows)
    out = Trajectories(**{k: (None if v is None else v[keep]) for k, v in vars(traj).items()})  # type: ignore[arg-type]
    last = n_rows - 1
    if not (out.terminated[last] or out.truncated[last]):
        out.truncated = out.truncated.copy()
        out.truncated[last] = True
    return out


def logs_group_pscore(policy: Any) -> bool:
    """Whether :func:`collect` writes the ``pscore_group`` column (and the item table) for
    ``policy``: a sparse-form (large-catalog, two-stage) logger."""
    return bool(getattr(policy, "sparse_form", False)) and hasattr(policy, "action_dist_compact")


def _group_pscore(policy: Any, traj: Trajectories, item_topic: np.ndarray) -> np.ndarray:
    """(rows,) the logger's probability of each logged item's topic, from its sparse
    distribution at the observation it acted on (:data:`offrec.logs.schema.PSCORE_GROUP`)."""
    from offrec.core.policy import GreedyDist, SparseDist

    if not len(traj.action):
        return np.zeros(0)
    dist = policy.action_dist_compact(traj.obs)
    if isinstance(dist, GreedyDist):
        dist = dist.sparse()
    if not isinstance(dist, SparseDist):
        raise InputError(f"a sparse-form logger must give a SparseDist; got {type(dist).__name__}")
    sizes = dist.group_sizes(item_topic, int(item_topic.max()) + 1)
    return dist.group_at(item_topic, item_topic[traj.action], sizes)


def _to_table(
    traj: Trajectories,
    schema: pa.Schema,
    session_offset: int,
    bandit: bool = False,
    pscore_group: np.ndarray | None = None,
) -> pa.Table:
    """Arrow table of a cohort. In bandit mode (``bandit``: horizon 1) the one-step
    episode is marked ``terminated`` (nothing follows a decision), as the env does."""
    n, d = traj.obs.shape
    cols: dict[str, pa.Array] = {
        "session_id": pa.array(traj.session + session_offset, pa.int64()),
        "step": pa.array(traj.step.astype(np.int32)),
        "user_id": pa.array(traj.user, pa.int64()),
        "context": pa.FixedSizeListArray.from_arrays(pa.array(traj.obs.reshape(-1)), d),
        "action": pa.array(traj.action.astype(np.int32)),
        "position": pa.array(np.zeros(n, np.int32)),
        "reward": pa.array(traj.reward.astype(np.float32)),
        "pscore": pa.array(traj.pscore.astype(np.float64)),
        "terminated": pa.array(traj.terminated | bandit),
        "truncated": pa.array(traj.truncated & ~bandit),
    }
    if "logging_dist" in schema.names:
        if traj.dist is None:
            raise InputError(
                "logging_dist requested but the policy's distribution was not recorded"
            )
        k = traj.dist.shape[1]
        cols["logging_dist"] = pa.FixedSizeListArray.from_arrays(pa.array(traj.dist.reshape(-1)), k)
    if "true_ctr" in schema.names:
        cols["true_ctr"] = pa.array(traj.click_prob.astype(np.float32))
    if pscore_group is not None:
        cols[S.PSCORE_GROUP] = pa.array(np.asarray(pscore_group, np.float64))
    return pa.Table.from_arrays([cols[name] for name in schema.names], schema=schema)


SIDECAR_KEYS = ("item_topics", "topics")
"""Metadata keys :func:`write_log` stores in the dataset sidecar (:data:`DATASET_FILE`,
once per dataset) rather than in every part file; the item map is stored there too
(:func:`offrec.logs.items.write_item_map`)."""
_DERIVED_KEYS = ("schema_version", "version", "n_actions", "reward_domain", "action_map", "n_items")
# rows_reordered is kept (as offrec.rows_reordered): --probs aligned by position is refused


def write_log(
    data: LoggedData,
    out: str | Path,
    *,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
    chunk_rows: int = 65_536,
    rows_per_file: int = 4_194_304,
) -> Path:
    """Write a ``LoggedData`` as a log dataset at ``out``; return ``out``.

    The same safety as every offrec writer: ``data`` is validated first
    (:func:`~offrec.logs.data.validate_logged_data`, errors name the column and row);
    the dataset is built in a temporary folder and renamed into place
    (:func:`~offrec.core.atomic.atomic_dir`): locked against a second writer, and
    ``overwrite`` replaces only a folder offrec wrote. Rows are written ``chunk_rows``
    at a time as row groups (part files of up to ``rows_per_file`` rows), like
    :func:`collect`. Stored with the rows: the reward domain, the item map
    (``data.metadata["action_map"]``, see :mod:`offrec.logs.items`), and the other keys
    of ``data.metadata`` plus ``metadata`` (JSON values, under ``offrec.<key>``), so
    :func:`~offrec.logs.read_logs` gives back the same rows and metadata.

    >>> import tempfile
    >>> from offrec.logs import LoggedData, read_logs
    >>> data = LoggedData.from_arrays([[0.5], [1.5]], [1, 0], [1, 0], [0.5, 0.5],
    ...                               item_ids=["tea", "cake"])
    >>> back = read_logs(write_log(data, tempfile.mkdtemp() + "/log"))
    >>> back.action.tolist(), back.metadata["action_map"]
    ([1, 0], ['tea', 'cake'])
    """
    from offrec.logs.items import ItemMap, write_item_map

    check_scalar(chunk_rows, "chunk_rows", int, min=1)
    check_scalar(rows_per_file, "rows_per_file", int, min=1)
    validate_logged_data(data)
    items = ItemMap.of_metadata(data.metadata, data.n_actions)
    extra = {**data.metadata, **(metadata or {})}
    meta = {S.META_VERSION: __version__, S.META_REWARD_DOMAIN: json.dumps(data.reward_domain)}
    side = {k: extra[k] for k in SIDECAR_KEYS if k in extra}
    for k, v in extra.items():
        if k not in _DERIVED_KEYS and k not in side:
            meta[f"offrec.{k}"] = json.dumps(v)
    schema = S.log_schema(
        data.context_dim,
        data.n_actions,
        logging_dist=data.logging_dist is not None,
        true_ctr=data.true_ctr is not None,
        metadata=meta,
    )
    size = estimated_bytes(
        data.n_rows,
        data.context_dim,
        data.n_actions,
        logging_dist=data.logging_dist is not None,
        true_ctr=data.true_ctr is not None,
    )
    files = PartWriter(schema, rows_per_file)
    with atomic_dir(out, overwrite=overwrite, kind="dataset", expected_bytes=size) as tmp:
        if side:
            S.write_dataset_meta(tmp, side)
        write_item_map(tmp, items)
        try:
            for lo, hi in _session_chunks(data.session_id, chunk_rows):
                files.write(tmp, _logged_table(data, slice(lo, hi), schema))
        finally:
            files.close()
    return Path(out)


def _session_chunks(session_id: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of about ``chunk_rows`` rows that cut only between
    sessions (a part file rolls over between chunks, and a session lives in one file):
    each chunk ends at the last session start at or before ``lo + chunk_rows``, or at the
    next one when a single session is longer than that."""
    n = session_id.size
    starts = np.flatnonzero(np.r_[True, session_id[1:] != session_id[:-1]])
    starts = np.r_[starts, n]
    out, lo = [], 0
    while lo < n:
        i = int(np.searchsorted(starts, lo + chunk_rows, side="right")) - 1
        hi = (
            int(starts[i])
            if starts[i] > lo
            else int(starts[np.searchsorted(starts, lo, side="right")])
        )
        out.append((lo, hi))
        lo = hi
    return out


def _logged_table(data: LoggedData, rows: slice, schema: pa.Schema) -> pa.Table:
    """Rows ``rows`` of ``data`` as an Arrow table of the log schema ``schema``."""
    d = data.context_dim
    ctx = data.context[rows]
    n = ctx.shape[0]
    flat = pa.array(ctx.astype(np.float32).reshape(-1), pa.float32())
    context = (
        pa.FixedSizeListArray.from_arrays(flat, d)
        if d
        else pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), flat)
    )
    cols: dict[str, pa.Array] = {
        "session_id": pa.array(data.session_id[rows], pa.int64()),
        "step": pa.array(data.step[rows].astype(np.int32)),
        "user_id": pa.array(data.user_id[rows], pa.int64()),
        "context": context,
        "action": pa.array(data.action[rows].astype(np.int32)),
        "position": pa.array(data.position[rows].astype(np.int32)),
        "reward": pa.array(data.reward[rows].astype(np.float32)),
        "pscore": pa.array(data.pscore[rows].astype(np.float64)),
        "terminated": pa.array(data.terminated[rows]),
        "truncated": pa.array(data.truncated[rows]),
    }
    if data.logging_dist is not None:
        cols["logging_dist"] = pa.FixedSizeListArray.from_arrays(
            pa.array(data.logging_dist[rows].astype(np.float32).reshape(-1)), data.n_actions
        )
    if data.true_ctr is not None:
        cols["true_ctr"] = pa.array(data.true_ctr[rows].astype(np.float32))
    return pa.Table.from_arrays([cols[f] for f in schema.names], schema=schema)


def expected_rows(world: World, n_sessions: int) -> int:
    """Upper bound on rows for ``n_sessions`` sessions (for progress bars)."""
    return n_sessions * world.config.horizon if world.config.horizon > 1 else n_sessions


__all__ = [
    "CollectSummary",
    "check_collect_memory",
    "collect",
    "estimated_bytes",
    "expected_rows",
    "policy_spec",
    "write_log",
]
