"""Save and load learned policies: a folder with a JSON config and a ``.npz`` of arrays.

Layout of a saved policy folder::

    policy.json   {"format": "offrec.policy", "format_version": 1, "offrec_version": ...,
                   "spec": {"type": ..., constructor parameters...},
                   "sizes": {"n_actions": ..., "context_dim": ...},
                   "items": {"n_items": ..., "ids": [...]},   (when trained on a log)
                   "arrays": {"file": "arrays.npz", "sha256": ...},
                   "index": {"file": "index.npz", "sha256": ..., "key": {...}}}  (optional)
    arrays.npz    what the policy learned (numpy arrays only; read with allow_pickle=False)
    index.npz     a learner's retrieval index (:meth:`HybridLinear.export_index
                  <offrec.policies.bandits.hybrid.HybridLinear.export_index>`: faiss's
                  serialization as uint8 plus the cells' bounds), when it has one

The index is built once, when the model is saved, so that loading it does not rebuild it;
``key`` says what it was built for (:meth:`offrec.policies.retrieval.Retriever.index_key`:
the catalog's sha256, ``nlist``, seed, format), and the loaded learner uses it only when
the key matches its own item table. Both files are checked against their sha256 before
anything is read from them; a folder without ``index`` (saved by an earlier offrec) loads
as before and builds the index at its first retrieval.

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
import mmap
import os
import struct
import zipfile
from pathlib import Path
from typing import IO, Any, Protocol, cast, runtime_checkable

import numpy as np

from offrec.core.atomic import atomic_dir
from offrec.core.errors import InputError, InputTypeError, MissingInputError
from offrec.core.formats import header, read_versioned_json
from offrec.core.policy import UniformPolicy
from offrec.logs.items import ItemMap
from offrec.policies.bandits.base import BanditLearner
from offrec.policies.registry import LEARNERS

__all__ = ["FORMAT", "FORMAT_VERSION", "load_policy", "save_policy", "saveable_types"]

FORMAT = "offrec.policy"
FORMAT_VERSION = 1
CONFIG_FILE = "policy.json"
ARRAYS_FILE = "arrays.npz"
INDEX_FILE = "index.npz"


@runtime_checkable
class IndexedPolicy(Protocol):
    """A learner that keeps a retrieval index with its saved arrays."""

    def export_index(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None: ...

    def import_index(self, arrays: dict[str, np.ndarray], key: dict[str, Any]) -> None: ...


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def _read_checked(folder: Path, entry: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` an entry of ``policy.json`` names, after checking the
    file's sha256 against the entry's (a missing or altered file is refused).

    The file is memory-mapped, hashed once from the map, and its stored (uncompressed)
    members are read as read-only views of the map: no copy of the file in memory (what
    :func:`np.load` on the bytes would make twice). The views are of the bytes just
    checked; a model folder is replaced by a rename, never rewritten in place."""
    path = folder / str(entry["file"])
    if not path.is_file():
        raise MissingInputError(f"saved policy {folder} is incomplete: {path.name} not found")
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise InputError(f"{path} does not match the checksum in {CONFIG_FILE}")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hashlib.sha256(mm).hexdigest() != entry["sha256"]:
        raise InputError(f"{path} does not match the checksum in {CONFIG_FILE}")
    try:
        return _npz_views(mm)
    except (ValueError, zipfile.BadZipFile, struct.error) as e:  # checked, yet not an npz
        raise InputError(f"{path} is not a numpy .npz archive: {e}") from None


def _npz_views(mm: mmap.mmap) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` held in ``mm``: a stored member as a read-only view of the
    map (its ``.npy`` header parsed by numpy); an archive with a compressed member is read
    by :func:`np.load` (a copy)."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(
        cast(IO[bytes], mm)
    ) as z:  # the map is a file object: read in place, not copied
        for info in z.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:  # not written by save_policy
                with np.load(io.BytesIO(mm[:]), allow_pickle=False) as npz:
                    return {k: npz[k] for k in npz.files}
            # the local header: 30 bytes, then the name and an extra field of given lengths
            name_len, extra_len = struct.unpack_from("<HH", mm, info.header_offset + 26)
            start = info.header_offset + 30 + name_len + extra_len
            f = io.BytesIO(mm[start : start + min(info.file_size, 1 << 17)])  # the header
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"member {name!r} has .npy format {version}, not 1.0 or 2.0")
            if dtype.hasobject:
                raise ValueError(f"member {name!r} holds Python objects (pickle refused)")
            count = int(np.prod(shape, dtype=np.int64))
            a = np.frombuffer(mm, dtype, count, offset=start + f.tell())
            out[name] = a.reshape(shape, order="F" if fortran else "C")
    return out


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
    blob = _npz_bytes(arrays)
    config = {
        **header(FORMAT, FORMAT_VERSION),
        "spec": spec,
        "sizes": sizes,
        "arrays": {"file": ARRAYS_FILE, "sha256": hashlib.sha256(blob).hexdigest()},
    }
    index = policy.export_index() if isinstance(policy, IndexedPolicy) else None
    index_blob = b""
    if index is not None:
        index_blob = _npz_bytes(index[0])
        config["index"] = {
            "file": INDEX_FILE,
            "sha256": hashlib.sha256(index_blob).hexdigest(),
            "key": index[1],
        }
    items = getattr(policy, "item_map", None)
    if isinstance(items, ItemMap):
        config["items"] = items.to_json()
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=True)
    folder = Path(folder)
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        (tmp / ARRAYS_FILE).write_bytes(blob)
        if index is not None:
            (tmp / INDEX_FILE).write_bytes(index_blob)
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
    state = _read_checked(folder, config["arrays"])
    policy = LEARNERS[kind].from_params(spec)  # an old type name resolves with a warning
    if not isinstance(policy, BanditLearner):  # it may keep what it is given: writable copies
        state = {k: np.array(v) for k, v in state.items()}
    policy.set_state(state)  # a bandit learner copies (or only reads) the read-only views
    if "index" in config and isinstance(policy, IndexedPolicy):
        entry = config["index"]
        policy.import_index(_read_checked(folder, entry), dict(entry["key"]))
    if "items" in config:
        policy.item_map = ItemMap.from_json(config["items"], f"{cfg_path} items")
    return policy
