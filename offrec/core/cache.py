"""A folder cache keyed by configuration: each entry is a folder, served only when it is
intact and was made from the same configuration.

Used by every stage of :func:`offrec.pipeline.run_pipeline` (logs, trained models,
online learners): an entry is named ``<prefix>-<key>`` where ``key`` is the first 12
hex digits of the SHA-256 of the JSON of its configuration; :meth:`StageCache.seal`
writes the entry's manifest with a SHA-256 checksum of every file and the configuration
itself. :meth:`StageCache.lookup` serves an entry only when the manifest's checksums
and configuration match; a corrupt or swapped entry is reported (a logged warning) and
removed, and with ``fresh=True`` every entry is removed and recomputed.

>>> import tempfile, pathlib
>>> cache = StageCache(pathlib.Path(tempfile.mkdtemp()))
>>> entry = cache.lookup("demo", {"n": 1}, "demo stage")
>>> entry.hit
False
>>> entry.path.mkdir(); _ = (entry.path / "x.txt").write_text("1")
>>> cache.seal(entry, "dataset")
>>> cache.lookup("demo", {"n": 1}, "demo stage").hit
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from offrec.core.atomic import read_manifest, verify_manifest, write_manifest

__all__ = ["Entry", "StageCache", "cache_key"]

log = logging.getLogger(__name__)


def _canonical(config: object) -> object:
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def cache_key(*parts: object) -> str:
    """12 hex digits of the SHA-256 of ``parts`` as sorted JSON (``str`` for the rest)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class Entry:
    """One cache entry: its folder, its key, the configuration it is made from, and
    whether it was served from the cache (``hit``)."""

    path: Path
    key: str
    config: object
    hit: bool


class StageCache:
    """Entries under ``root`` (module docstring); ``fresh`` recomputes every entry."""

    def __init__(self, root: Path, *, fresh: bool = False) -> None:
        self.root = Path(root)
        self.fresh = fresh

    def lookup(self, prefix: str, config: object, what: str) -> Entry:
        """The entry of ``config`` (folder ``root/<prefix>-<key>``), ``hit`` when it can
        be served; a stale folder there is removed so the caller can write a new one."""
        key = cache_key(*config) if isinstance(config, list | tuple) else cache_key(config)
        path = self.root / f"{prefix}-{key}"
        return Entry(path, key, config, self._valid(path, config, what))

    def seal(self, entry: Entry, kind: str) -> None:
        """Write the entry's manifest: checksums of its files and its configuration."""
        write_manifest(
            entry.path, kind=kind, checksums=True, extra={"config": _canonical(entry.config)}
        )

    def _valid(self, path: Path, config: object, what: str) -> bool:
        if not path.exists():
            return False
        problems = ["--fresh: cache ignored"] if self.fresh else verify_manifest(path)
        if not problems and read_manifest(path).get("config") != _canonical(config):
            problems = [f"{path.name}: made from another configuration"]
        if not problems:
            return True
        if not self.fresh:
            log.warning(
                "%s: cached stage is corrupt or swapped (%s); recomputing",
                what,
                "; ".join(problems[:3]),
            )
        _discard(path)
        return False


def _discard(path: Path) -> None:
    """Remove ``path`` (renamed aside first, so a half-removed folder is never served)."""
    trash = path.parent / f".{path.name}.stale-{uuid.uuid4().hex[:8]}"
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
