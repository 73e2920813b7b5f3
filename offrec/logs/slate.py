"""Slate logs: write a slate world's log to Parquet (one row per slot) and read it back
with the slate rules checked. The layout is documented at
:data:`offrec.logs.schema.SLATE_COLUMNS`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from offrec.core.atomic import atomic_dir
from offrec.core.errors import InputError
from offrec.core.validation import SeedLike, as_seed_sequence, check_scalar, first_bad
from offrec.core.version import __version__
from offrec.logs import schema as S
from offrec.logs.data import LoggedData
from offrec.logs.reader import read_logs
from offrec.logs.slate_rules import check_slate_rows, slate_rules_from_metadata
from offrec.logs.writer import CollectSummary, policy_spec
from offrec.sim.slate import MARGINAL_SAMPLES, MarginalCache, SlatePolicy, SlateWorld


@dataclass
class SlateLog:
    """A slate log in memory: the per-slot :class:`~offrec.logs.data.LoggedData` (``pscore``
    the per-slot marginal) plus ``pscore_slate`` and ``pscore_cascade`` (n_rows,) float64,
    ``slate_size`` and the ``slate`` metadata (click model, how marginals were computed)."""

    data: LoggedData
    pscore_slate: np.ndarray
    pscore_cascade: np.ndarray
    slate_size: int
    slate: dict[str, Any]

    def sorted(self) -> SlateLog:
        """Rows ordered by (session_id, step, position): slates contiguous, slots in order."""
        d = self.data
        order = np.lexsort((d.position, d.step, d.session_id))
        return SlateLog(
            d.subset(order),
            self.pscore_slate[order],
            self.pscore_cascade[order],
            self.slate_size,
            self.slate,
        )


def read_slate_log(path: str | Path) -> SlateLog:
    """Read a slate log: :func:`~offrec.logs.reader.read_logs` (which checks the slate rules
    when the ``slate`` metadata is present) plus the slate columns, checked in (0, 1]."""
    data = read_logs(path)
    meta = data.metadata.get("slate")
    if not isinstance(meta, dict) or "slate_size" not in meta:
        raise InputError(f"log {path} is not a slate log: its metadata has no 'slate' entry")
    table = pq.read_table(_files(path), columns=list(S.SLATE_COLUMNS))
    cols = {}
    for name in S.SLATE_COLUMNS:
        x = np.asarray(table.column(name).to_numpy(), dtype=np.float64)
        if not (x.min() > 0.0 and x.max() <= 1.0):
            i = first_bad(~((x > 0.0) & (x <= 1.0)))
            raise InputError(f"column '{name}' must be in (0, 1]; row {i} has {float(x[i])!r}")
        cols[name] = x
    return SlateLog(
        data, cols["pscore_slate"], cols["pscore_cascade"], int(meta["slate_size"]), meta
    )


def _files(path: str | Path) -> list[str]:
    from offrec.logs.reader import log_files

    return [str(f) for f in log_files(path)]


def collect_slates(
    sw: SlateWorld,
    policy: SlatePolicy,
    *,
    out: str | Path,
    n_slates: int,
    seed: SeedLike = 0,
    overwrite: bool = False,
    chunk_slates: int = 16_384,
    marginal_samples: int = MARGINAL_SAMPLES,
    marginals: MarginalCache | None = None,
) -> CollectSummary:
    """Log ``policy`` acting in the slate world ``sw`` into a Parquet dataset ``out``, one
    row per slot (:data:`~offrec.logs.schema.SLATE_COLUMNS`), ``chunk_slates`` slates per
    row group (memory bounded by one chunk), published atomically.

    Chunk ``c`` draws from the ``c``-th child of ``seed``'s ``SeedSequence``: same seed and
    chunk size, identical files. ``marginals`` (a :class:`~offrec.sim.slate.MarginalCache`
    of ``policy``) reuses the logger's per-context marginals across calls."""
    check_scalar(n_slates, "n_slates", int, min=1)
    check_scalar(chunk_slates, "chunk_slates", int, min=1)
    world, K = sw.world, sw.slate_size
    start = time.perf_counter()
    root = as_seed_sequence(seed)
    n_chunks = -(-n_slates // chunk_slates)
    first = sw.log(
        policy,
        min(chunk_slates, n_slates),
        seed=_child(root, 0),
        marginal_samples=marginal_samples,
        marginals=marginals,
    )
    samples = first.propensities.n_samples
    how: Any = "exact" if first.propensities.exact else {"monte_carlo_samples": samples}
    metadata = {
        S.META_VERSION: __version__,
        S.META_WORLD: world.config.to_json(),
        S.META_WORLD_SEED: json.dumps(world.seed),
        S.META_POLICY: json.dumps(policy_spec(policy)),
        S.META_SEED: json.dumps(seed if isinstance(seed, int) else None),
        S.META_REWARD_DOMAIN: json.dumps(S.BINARY),
        S.META_SLATE: json.dumps(
            {"slate_size": K, "click_model": sw.click_model.to_dict(), "marginals": how}
        ),
    }
    schema = S.log_schema(
        world.context_dim, world.n_actions, true_ctr=True, metadata=metadata, slate=True
    )
    items = {"item_topics": world.item_topic.tolist(), "topics": list(world.topics)}
    rows = clicks = 0
    with atomic_dir(out, overwrite=overwrite, kind="dataset") as tmp:
        S.write_dataset_meta(tmp, items)
        with pq.ParquetWriter(tmp / "part-00000.parquet", schema, compression="lz4") as writer:
            for c in range(n_chunks):
                n = min(chunk_slates, n_slates - c * chunk_slates)
                rounds = (
                    first
                    if c == 0
                    else sw.log(policy, n, seed=_child(root, c), marginal_samples=marginal_samples)
                )
                table = _slate_table(rounds, schema, c * chunk_slates)
                writer.write_table(table, row_group_size=table.num_rows)
                rows += table.num_rows
                clicks += int(rounds.clicks.sum())
    seconds = time.perf_counter() - start
    return CollectSummary(Path(out), rows, n_slates, 1, clicks / max(rows, 1), seconds)


def _child(root: np.random.SeedSequence, c: int) -> int:
    return int(
        np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, c)).generate_state(1)[0]
    )


def _slate_table(rounds: Any, schema: pa.Schema, offset: int) -> pa.Table:
    r = rounds.rows()
    n_rows = r["action"].shape[0]
    K = rounds.slates.shape[1]
    obs = np.repeat(rounds.obs, K, axis=0)
    cols = {
        "session_id": pa.array(r["slate_id"] + offset, pa.int64()),
        "step": pa.array(np.zeros(n_rows, np.int32)),
        "user_id": pa.array(r["user_id"], pa.int64()),
        "context": pa.FixedSizeListArray.from_arrays(pa.array(obs.reshape(-1)), obs.shape[1]),
        "action": pa.array(r["action"].astype(np.int32)),
        "position": pa.array(r["position"].astype(np.int32)),
        "reward": pa.array(r["reward"].astype(np.float32)),
        "pscore": pa.array(r["pscore_item_position"]),
        "terminated": pa.array(np.ones(n_rows, bool)),
        "truncated": pa.array(np.zeros(n_rows, bool)),
        "true_ctr": pa.array(r["true_ctr"].astype(np.float32)),
        "pscore_slate": pa.array(r["pscore"]),
        "pscore_cascade": pa.array(r["pscore_cascade"]),
    }
    return pa.Table.from_arrays([cols[name] for name in schema.names], schema=schema)


__all__ = [
    "SlateLog",
    "check_slate_rows",
    "collect_slates",
    "read_slate_log",
    "slate_rules_from_metadata",
]
