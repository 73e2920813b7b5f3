"""Save and load learned policies: a folder with a JSON config and a ``.npz`` of arrays.

Layout of a saved policy folder::

    policy.json   {"format": "offrec.policy", "format_version": 1, "offrec_version": ...,
                   "spec": {"type": ..., constructor parameters...},
                   "sizes": {"n_actions": ..., "context_dim": ...},
                   "items": {"n_items": ..., "ids": [...]},   (when trained on a log)
                   "arrays": {"file": "arrays.npz", "sha256": ...}}
    arrays.npz    what the policy learned (numpy arrays only; read with allow_pickle=False)

No pickle and no code is stored: loading looks the ``type`` up in
:data:`offrec.policies.registry.LEARNERS` (whose deprecated aliases keep folders saved
under older type names loadable), builds it from the stored parameters and restores the arrays (shapes
checked). The folder is published atomically (written next to it, then renamed).

``items`` is the item map the policy was trained with (its attribute ``item_map``, an
:class:`~offrec.logs.items.ItemMap`: the source id of each action, see
:mod:`offrec.logs.items`); loading sets it back, so evaluating or recommending with the
model can check it against a log's map and translate through the ids.

>>> import tempfile, numpy as np
>>> from offrec.policies.bandits import LinUCB
>>> learner = LinUCB(n_actions=4, context_dim=3)
>>> folder = tempfile.mkdtemp() + "/model"
>>> _ = save_policy(learner, folder)
>>> x = np.ones((2, 3))
>>> bool(np.array_equal(load_policy(folder).action_dist(x), learner.action_dist(x)))
True
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.atomic import atomic_dir
from offrec.core.errors import InputError, InputTypeError, MissingInputError
from offrec.core.formats import header, read_versioned_json
from offrec.core.policy import UniformPolicy
from offrec.logs.items import ItemMap
from offrec.policies.registry import LEARNERS

__all__ = ["FORMAT", "FORMAT_VERSION", "load_policy", "save_policy", "saveable_types"]

FORMAT = "offrec.policy"
FORMAT_VERSION = 1
CONFIG_FILE = "policy.json"
ARRAYS_FILE = "arrays.npz"


def saveable_types() -> list[str]:
    """The ``spec()["type"]`` values :func:`save_policy` writes: the learner names of
    :data:`offrec.policies.registry.LEARNERS`, and ``"uniform"``."""
    return sorted([*LEARNERS.names, "uniform"])


def save_policy(policy: Any, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``policy`` to ``folder`` (``policy.json`` + ``arrays.npz``); return the folder.

    Supported: every learner in :mod:`offrec.policies.bandits` and
    :mod:`offrec.policies.offline`, and :class:`UniformPolicy`. Other policies (e.g. a
    :class:`ScorePolicy` around arbitrary code) raise ``TypeError``. An existing
    ``folder`` is replaced only with ``overwrite=True`` (else ``FileExistsError``).
    The policy's ``item_map`` (set by :func:`offrec.training.train_policy`) is stored.
    """
    if isinstance(policy, UniformPolicy):
        spec: dict[str, Any] = policy.spec()
        arrays: dict[str, np.ndarray] = {}
        sizes = {"n_actions": policy.n_actions, "context_dim": None}
    elif type(policy) in LEARNERS.values():
        spec = policy.spec()
        arrays = policy.get_state()
        sizes = {"n_actions": policy.n_actions, "context_dim": policy.context_dim}
    else:
        raise InputTypeError(
            f"cannot save a {type(policy).__name__}: only these policy types can be saved "
            f"without pickling code: {', '.join(saveable_types())}"
        )
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    blob = buf.getvalue()
    config = {
        **header(FORMAT, FORMAT_VERSION),
        "spec": spec,
        "sizes": sizes,
        "arrays": {"file": ARRAYS_FILE, "sha256": hashlib.sha256(blob).hexdigest()},
    }
    items = getattr(policy, "item_map", None)
    if isinstance(items, ItemMap):
        config["items"] = items.to_json()
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=True)
    folder = Path(folder)
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        (tmp / ARRAYS_FILE).write_bytes(blob)
        (tmp / CONFIG_FILE).write_text(text + "\n")
    return folder


def load_policy(
    folder: str | Path, *, n_actions: int | None = None, context_dim: int | None = None
) -> Any:
    """Load a policy written by :func:`save_policy`.

    ``n_actions`` / ``context_dim``, when given, are the sizes the caller will use (the
    world's items, the log's context width): a model saved for other sizes raises
    ``ValueError`` naming both numbers. Non-contextual models accept any context width.
    """
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise MissingInputError(f"no saved policy in {folder}: {CONFIG_FILE} not found")
    config = read_versioned_json(
        cfg_path, FORMAT, versions=(FORMAT_VERSION,), what="offrec policy file"
    )
    spec = dict(config["spec"])
    sizes = config.get("sizes", {})
    saved_n, saved_d = sizes.get("n_actions"), sizes.get("context_dim")
    if n_actions is not None and saved_n != n_actions:
        raise InputError(
            f"policy in {folder} was saved for n_actions={saved_n} items; "
            f"cannot load it for n_actions={n_actions}"
        )
    if context_dim is not None and saved_d is not None and saved_d != context_dim:
        raise InputError(
            f"policy in {folder} was saved for context_dim={saved_d}; "
            f"cannot load it for context_dim={context_dim}"
        )
    kind = spec.pop("type", None)
    if kind == "uniform":
        return UniformPolicy(int(spec["n_actions"]), support=spec.get("support"))
    if kind not in LEARNERS and kind not in LEARNERS.aliases:
        raise InputError(
            f"{cfg_path} has unknown policy type {kind!r}; known types: {', '.join(saveable_types())}"
        )
    arrays_path = folder / config["arrays"]["file"]
    if not arrays_path.is_file():
        raise MissingInputError(
            f"saved policy {folder} is incomplete: {arrays_path.name} not found"
        )
    blob = arrays_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != config["arrays"]["sha256"]:
        raise InputError(f"{arrays_path} does not match the checksum in {CONFIG_FILE}")
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    policy = LEARNERS[kind].from_params(spec)  # an old type name resolves with a warning
    policy.set_state(state)
    if "items" in config:
        policy.item_map = ItemMap.from_json(config["items"], f"{cfg_path} items")
    return policy
