"""The world a model was trained in, stored next to it as ``world.json``.

Layout (format ``offrec.world``, version 1)::

    world.json   {"format": "offrec.world", "format_version": 1, "offrec_version": ...,
                  "seed": <world seed>, "config": {WorldConfig fields}}

Files written before the header existed (``{"seed", "config"}`` only) still load.
``recommend`` names items and builds profiles from it; ``serve`` reads its observation
width.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from offrec.core.errors import InputError, MissingInputError
from offrec.core.formats import header, read_versioned_json
from offrec.sim import World, WorldConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "WORLD_FILE",
    "read_world",
    "world_of_metadata",
    "write_world",
]

FORMAT = "offrec.world"
FORMAT_VERSION = 1
WORLD_FILE = "world.json"


def write_world(folder: str | Path, world: World) -> Path:
    """Store ``world`` (its config and seed) in ``folder/world.json`` atomically; return the file."""
    from offrec.core.atomic import atomic_write_text

    path = Path(folder) / WORLD_FILE
    body = {**header(FORMAT, FORMAT_VERSION), "seed": world.seed, "config": world.config.to_dict()}
    atomic_write_text(path, json.dumps(body))
    return path


def read_world(folder: str | Path) -> World:
    """The :class:`~offrec.sim.World` stored by :func:`write_world` in ``folder``."""
    path = Path(folder) / WORLD_FILE
    if not path.is_file():
        raise MissingInputError(
            f"{path} not found: pass --world (the world config the model was trained in), or "
            "--context for a model trained on an imported log"
        )
    raw = read_versioned_json(path, FORMAT, versions=(FORMAT_VERSION,), legacy=True)
    if "config" not in raw or "seed" not in raw:
        raise InputError(f"model file {path} must hold an object with 'config' and 'seed'")
    return World(WorldConfig.from_dict(raw["config"]), seed=raw["seed"])


def world_of_metadata(meta: dict[str, Any]) -> World | None:
    """The simulated world of a log's metadata (``world_config``, ``world_seed``), or None
    for a log that was not simulated (imported)."""
    cfg = meta.get("world_config")
    if cfg is None:
        return None
    return World(WorldConfig.from_dict(cfg), seed=meta.get("world_seed") or 0)
