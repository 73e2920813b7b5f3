"""The versioned Parquet log schema (one row per decision) and its file metadata keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1"

# metadata keys stored in every part file's key-value metadata
META_SCHEMA_VERSION = "offrec.schema_version"
META_VERSION = "offrec.version"
META_WORLD = "offrec.world_config"  # JSON of WorldConfig (simulated logs)
META_WORLD_SEED = "offrec.world_seed"
META_POLICY = "offrec.logging_policy"  # JSON spec of the logging policy
META_SEED = "offrec.seed"
META_N_ACTIONS = "offrec.n_actions"
META_ITEM_TOPICS = "offrec.item_topics"  # JSON list: topic index of each item
META_TOPICS = "offrec.topics"  # JSON list of topic names
META_ACTION_MAP = "offrec.action_map"  # JSON list: original item id of each action (imports)
META_ROWS_REORDERED = (
    "offrec.rows_reordered"  # JSON bool: the importer reordered or dropped source rows
)
META_REWARD_DOMAIN = "offrec.reward_domain"  # JSON: {"kind": "binary"} or {"kind": "continuous", "low": a, "high": b}
META_SLATE = "offrec.slate"  # JSON, slate logs only: see SLATE_COLUMNS

MODEL_VERSION = "model_version"
"""Optional column (string): the version of the model that made the row's decision
(written by ``offrec serve``, e.g. ``"linucb@3f2a9c01b4d2"``). Readers ignore it; it tells
the loggers of a log written by successive deployments apart (multiple-logger OPE)."""

DATASET_FILE = "_offrec_dataset.json"
"""Dataset-level metadata stored once per dataset directory (not in every part file):
item topics and topic names of simulated logs, which grow with the number of items.
The name starts with ``_`` so that Parquet readers that list the directory (pandas,
pyarrow, Spark, Hive, Polars, DuckDB's directory form) skip it. Read and write it only
through :func:`read_dataset_meta` / :func:`write_dataset_meta`."""
LEGACY_DATASET_FILE = "dataset.json"
"""The sidecar's name before it started with ``_`` (read as a fallback, never written)."""


def dataset_meta_file(folder: str | Path) -> Path | None:
    """The sidecar file of the dataset ``folder`` (the current name, else the legacy
    ``dataset.json``), or ``None`` when it has none (a single-file log has none)."""
    p = Path(folder)
    for name in (DATASET_FILE, LEGACY_DATASET_FILE):
        if (p / name).is_file():
            return p / name
    return None


def read_dataset_meta(folder: str | Path) -> dict[str, Any]:
    """The dataset-level metadata of the log ``folder`` as a dict (empty when there is no
    sidecar). A sidecar that is unreadable, not UTF-8 JSON or not a JSON object is an
    ``InputError`` naming the file."""
    from offrec.core.errors import InputError

    side = dataset_meta_file(folder)
    if side is None:
        return {}
    try:
        value = json.loads(side.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read the dataset metadata {side}: {first}") from None
    if not isinstance(value, dict):
        raise InputError(
            f"the dataset metadata {side} must hold a JSON object; got {type(value).__name__}"
        )
    return value


def write_dataset_meta(folder: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``meta`` (JSON-serialisable) as the sidecar of the dataset being built in
    ``folder`` (a temporary folder of :func:`offrec.core.atomic.atomic_dir`, published
    with the part files). Returns the file written."""
    path = Path(folder) / DATASET_FILE
    path.write_text(json.dumps(meta), encoding="utf-8")
    return path


MIN_PSCORE = 1e-12
"""The smallest propensity a log may hold. A row's importance weight is up to
``1 / pscore``: below ``1e-12`` one row outweighs a trillion others, so it alone decides
IPS, SNIPS and DR for any log that fits on a disk, and their sums lose the other rows in
float64's 16 digits (at ``1e-300`` they overflow: SNIPS 1.8e-295, DR -5.9e292). Such
propensities are logging bugs (an underflowed softmax, a log-propensity stored as one);
every reader refuses them with the row."""

PSCORE_FLOOR_RULE = (
    f"must be >= {MIN_PSCORE:g} (a smaller propensity gives one row an importance weight "
    f"above {1 / MIN_PSCORE:g}, which alone decides every weighted estimate)"
)
"""The message of the :data:`MIN_PSCORE` rule (readers and importers)."""

BINARY: dict = {"kind": "binary"}
"""The default reward domain: clicks in {0, 1}."""


def reward_domain(
    kind: str = "binary", low: float | None = None, high: float | None = None
) -> dict:
    """A validated reward domain: ``binary`` (0/1, the default) or ``continuous`` with
    finite bounds ``low < high`` (e.g. watch time in seconds)."""
    import math

    from offrec.core.errors import InputError

    if kind == "binary":
        if low is not None or high is not None:
            raise InputError(
                "reward bounds apply only to a continuous reward; the binary domain is {0, 1}"
            )
        return {"kind": "binary"}
    if kind != "continuous":
        raise InputError(f"reward domain must be 'binary' or 'continuous'; got {kind!r}")
    if (
        low is None
        or high is None
        or not (math.isfinite(low) and math.isfinite(high))
        or not low < high
    ):
        raise InputError(
            f"a continuous reward needs finite bounds low < high; got low={low!r}, high={high!r}"
        )
    return {"kind": "continuous", "low": float(low), "high": float(high)}


REQUIRED = {
    "session_id": pa.int64(),
    "step": pa.int32(),
    "user_id": pa.int64(),
    "action": pa.int32(),
    "position": pa.int32(),
    "reward": pa.float32(),
    "pscore": pa.float64(),
    "terminated": pa.bool_(),
    "truncated": pa.bool_(),
}


PSCORE_GROUP = "pscore_group"
"""Optional float64 column of a large-catalog log: the logging policy's probability of the
logged item's *group* (its topic, the dataset's ``item_topics``),
:math:`\\pi_b(g(a_i)|x_i) = \\sum_{a: g(a) = g(a_i)} \\pi_b(a|x_i)`, in ``[pscore, 1]``.
Written at collect time by a sparse (two-stage) logger so that MIPS / SN-MIPS / OffCEM
never rebuild the logger (or rescan the catalog) to evaluate; absent, they read
``logging_dist`` or rebuild the logger from the metadata."""

SLATE_COLUMNS = {
    "pscore_slate": pa.float64(),
    "pscore_cascade": pa.float64(),
}
"""Optional columns of a slate log (one row per slot, keyed by (session_id, step,
position); ``position`` is the rank from 0, ``action`` the item shown there):

- ``pscore``: the per-slot marginal ``pi_b(a_k at rank k | x)`` (so every
  per-position reader, OBD-style, keeps its meaning);
- ``pscore_slate``: the joint slate propensity ``pi_b(slate | x)``, equal in every slot;
- ``pscore_cascade``: the prefix propensity ``pi_b(a_1..a_k | x)``.

The metadata key :data:`META_SLATE` holds ``{"slate_size": K, "click_model": {...},
"marginals": "exact" | {"monte_carlo_samples": S}}``: whether ``pscore`` is exact or a
Monte-Carlo estimate, and from how many sampled prefixes per context.

Why an optional-column extension and not a schema version bump: a slate log is a valid
version-1 log read one slot at a time (every required column keeps its meaning, ``pscore``
included), so existing readers and per-position estimators stay correct on it; the new
columns and the metadata key only add what the slate estimators need, and the reader
checks the slate rules (every slot present once, no item twice in a slate) whenever
:data:`META_SLATE` is present."""


def log_schema(
    context_dim: int,
    n_actions: int,
    *,
    logging_dist: bool = False,
    true_ctr: bool = False,
    metadata: dict[str, str] | None = None,
    slate: bool = False,
    pscore_group: bool = False,
) -> pa.Schema:
    """Arrow schema of a log: the required columns, ``context`` as
    ``fixed_size_list<float32>[context_dim]``, and the optional columns asked for."""
    fields = [
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        # a context-free log (width 0) stores empty variable-size lists
        pa.field(
            "context",
            pa.list_(pa.float32(), context_dim) if context_dim else pa.list_(pa.float32()),
            nullable=False,
        ),
        pa.field("action", pa.int32(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("reward", pa.float32(), nullable=False),
        pa.field("pscore", pa.float64(), nullable=False),
        pa.field("terminated", pa.bool_(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
    ]
    if logging_dist:
        fields.append(pa.field("logging_dist", pa.list_(pa.float32(), n_actions)))
    if true_ctr:
        fields.append(pa.field("true_ctr", pa.float32()))
    if pscore_group:  # the logger's probability of the logged item's group (PSCORE_GROUP)
        fields.append(pa.field(PSCORE_GROUP, pa.float64()))
    if slate:  # the slate layout's optional columns (SLATE_COLUMNS)
        fields += [pa.field(name, t, nullable=False) for name, t in SLATE_COLUMNS.items()]
    meta = {META_SCHEMA_VERSION: SCHEMA_VERSION, META_N_ACTIONS: str(n_actions)}
    meta.update(metadata or {})
    return pa.schema(fields, metadata=meta)
