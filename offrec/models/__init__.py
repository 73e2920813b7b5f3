"""Saved models: one registry of formats, one ``load_model`` and one ``save_model``.

A model folder holds one policy in one of the formats of :data:`FORMATS`, told apart by
the file that marks it, and optionally the world it was trained in (``world.json``,
:func:`write_world` / :func:`read_world`):

========================  ==============  =================================================
format                    marker file     written by
========================  ==============  =================================================
``offrec.policy``         policy.json     bandit and offline learners, the uniform policy
                                          (:mod:`offrec.policies.persist`)
``offrec.qpolicy``        qpolicy.json    offline RL Q-policies (:mod:`offrec.rl.policy`)
``sb3``                   model.zip       stable-baselines3 PPO / DQN (their own zip)
========================  ==============  =================================================

The JSON formats carry a versioned header read by one checked reader
(:func:`offrec.core.formats.read_versioned_json`); no format stores pickled code
(the SB3 zip is SB3's own format and is loaded only from folders you made). Folders
saved by earlier offrec versions load unchanged (``tests/models`` keeps one of each).

>>> import tempfile, numpy as np
>>> from offrec.policies.bandits import LinUCB
>>> folder = save_model(LinUCB(n_actions=3, context_dim=2), tempfile.mkdtemp() + "/m")
>>> model_format(folder).name, load_model(folder).n_actions
('offrec.policy', 3)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offrec.core.errors import InputError, InputTypeError, MissingInputError
from offrec.core.formats import header, read_versioned_json
from offrec.core.registry import Registry
from offrec.sim import World, WorldConfig

__all__ = [
    "FORMATS",
    "ModelFormat",
    "WORLD_FILE",
    "load_model",
    "model_format",
    "read_world",
    "save_model",
    "world_of_metadata",
    "write_world",
]

Loader = Callable[[Path, "int | None", "int | None"], Any]


@dataclass(frozen=True)
class ModelFormat:
    """One way a policy is stored: the file that marks a folder as this format, how to
    load it (``load(folder, n_actions, obs_dim)``, sizes checked when given), which
    policies it saves (``saves(policy)``) and how (``save(policy, folder, overwrite)``,
    atomic)."""

    name: str
    marker: str
    load: Loader
    saves: Callable[[object], bool]
    save: Callable[[Any, Path, bool], Path]


def _load_policy(folder: Path, n_actions: int | None, obs_dim: int | None) -> Any:
    from offrec.policies.persist import load_policy

    return load_policy(folder, n_actions=n_actions, context_dim=obs_dim)


def _saves_policy(policy: object) -> bool:
    from offrec.core.policy import UniformPolicy
    from offrec.policies.registry import LEARNERS

    return isinstance(policy, UniformPolicy) or type(policy) in LEARNERS.values()


def _save_policy(policy: Any, folder: Path, overwrite: bool) -> Path:
    from offrec.policies.persist import save_policy

    return save_policy(policy, folder, overwrite=overwrite)


def _load_q_policy(folder: Path, n_actions: int | None, obs_dim: int | None) -> Any:
    from offrec.rl.policy import load_q_policy

    return load_q_policy(folder, n_actions=n_actions, obs_dim=obs_dim)


def _saves_q_policy(policy: object) -> bool:
    return type(policy).__name__ == "QPolicy" and hasattr(policy, "write_to")


def _save_q_policy(policy: Any, folder: Path, overwrite: bool) -> Path:
    return Path(policy.save(folder, overwrite=overwrite))


def _load_sb3(folder: Path, n_actions: int | None, obs_dim: int | None) -> Any:
    from offrec.rl.online_baseline import load_sb3_policy

    if n_actions is None and (folder / WORLD_FILE).is_file():
        n_actions = read_world(folder).n_actions
    return load_sb3_policy(folder / "model.zip", n_actions)


def _saves_sb3(policy: object) -> bool:
    return type(policy).__name__ == "SB3Policy"


def _save_sb3(policy: Any, folder: Path, overwrite: bool) -> Path:
    from offrec.core.atomic import atomic_dir

    with atomic_dir(folder, overwrite=overwrite) as tmp:
        policy.save(tmp / "model.zip")
    return folder


#: every format a model folder can be in, looked up by its marker file (first match wins)
FORMATS: Registry[ModelFormat] = Registry(
    "model format",
    {
        f.name: f
        for f in (
            ModelFormat("offrec.policy", "policy.json", _load_policy, _saves_policy, _save_policy),
            ModelFormat(
                "offrec.qpolicy", "qpolicy.json", _load_q_policy, _saves_q_policy, _save_q_policy
            ),
            ModelFormat("sb3", "model.zip", _load_sb3, _saves_sb3, _save_sb3),
        )
    },
)


def model_format(folder: str | Path) -> ModelFormat:
    """The format of the model saved in ``folder`` (by its marker file)."""
    folder = Path(folder)
    for fmt in FORMATS.values():
        if (folder / fmt.marker).is_file():
            return fmt
    if not folder.exists():
        raise MissingInputError(f"no model at {folder}")
    markers = " or ".join(f.marker for f in FORMATS.values())
    raise MissingInputError(f"no saved model in {folder}: expected {markers}")


def load_model(
    folder: str | Path,
    *,
    n_actions: int | None = None,
    context_dim: int | None = None,
    obs_dim: int | None = None,
) -> Any:
    """Load the policy saved in ``folder``, whatever its format (:data:`FORMATS`).

    ``n_actions`` / ``context_dim``, when given, are the sizes the caller will use (the
    world's items, the log's context width); a model saved for other sizes raises
    ``InputError`` naming both. ``obs_dim`` is the deprecated name of ``context_dim``.
    A folder made by an older offrec loads the same way.
    """
    if obs_dim is not None:
        if context_dim is not None and context_dim != obs_dim:
            raise InputError(
                f"context_dim={context_dim} and obs_dim={obs_dim} (its old name) differ"
            )
        context_dim = obs_dim
    folder = Path(folder)
    return model_format(folder).load(folder, n_actions, context_dim)


def save_model(
    policy: Any, folder: str | Path, *, overwrite: bool = False, world: World | None = None
) -> Path:
    """Save ``policy`` to ``folder`` (atomic) in the format that saves its type, with the
    ``world`` it was trained in (``world.json``) when given; return the folder.

    Raises ``TypeError`` (``InputTypeError``) for a policy no format can save (e.g. a
    ``ScorePolicy`` around arbitrary code: offrec never pickles code).
    """
    folder = Path(folder)
    for fmt in FORMATS.values():
        if fmt.saves(policy):
            fmt.save(policy, folder, overwrite)
            break
    else:
        from offrec.policies.persist import saveable_types

        raise InputTypeError(
            f"cannot save a {type(policy).__name__}: only these policy types can be saved "
            f"without pickling code: {', '.join([*saveable_types(), 'q_policy', 'sb3'])}"
        )
    if world is not None:
        write_world(folder, world)
    return folder


# ------------------------------------------------------------------------------ the world
# ``world.json`` (format ``offrec.world``, version 1): {"format", "format_version",
# "offrec_version", "seed", "config": {WorldConfig fields}}; files written before the
# header existed (``{"seed", "config"}`` only) still load. ``recommend`` names items and
# builds profiles from it; ``serve`` reads its observation width.
WORLD_FORMAT = "offrec.world"
WORLD_FORMAT_VERSION = 1
WORLD_FILE = "world.json"


def write_world(folder: str | Path, world: World) -> Path:
    """Store ``world`` (its config and seed) in ``folder/world.json`` atomically; return the file."""
    from offrec.core.atomic import atomic_write_text

    path = Path(folder) / WORLD_FILE
    body = {
        **header(WORLD_FORMAT, WORLD_FORMAT_VERSION),
        "seed": world.seed,
        "config": world.config.to_dict(),
    }
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
    raw = read_versioned_json(path, WORLD_FORMAT, versions=(WORLD_FORMAT_VERSION,), legacy=True)
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
