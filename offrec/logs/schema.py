"""The versioned Parquet log schema (one row per decision) and its file metadata keys."""

from __future__ import annotations

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
META_REWARD_DOMAIN = "offrec.reward_domain"  # JSON: {"kind": "binary"} or {"kind": "continuous", "low": a, "high": b}

MODEL_VERSION = "model_version"
"""Optional column (string): the version of the model that made the row's decision
(written by ``offrec serve``, e.g. ``"linucb@3f2a9c01b4d2"``). Readers ignore it; it tells
the loggers of a log written by successive deployments apart (multiple-logger OPE)."""

DATASET_FILE = "dataset.json"
"""Dataset-level metadata stored once per dataset directory (not in every part file):
item topics and topic names of simulated logs, which grow with the number of items."""

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


def log_schema(
    context_dim: int,
    n_actions: int,
    *,
    logging_dist: bool = False,
    true_ctr: bool = False,
    metadata: dict[str, str] | None = None,
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
    meta = {META_SCHEMA_VERSION: SCHEMA_VERSION, META_N_ACTIONS: str(n_actions)}
    meta.update(metadata or {})
    return pa.schema(fields, metadata=meta)
