"""Safe publishing: outputs appear complete at their final path, or not at all.

Every output folder offrec writes (a log dataset, a model, a run, a study) goes through
:func:`atomic_dir`, which gives these guarantees:

- **Atomic**: the folder is built under a hidden temporary name next to ``out``
  (``.NAME.tmp-XXXXXXXX``) and renamed into place at the end. An exception, Ctrl-C or
  SIGTERM removes the temporary folder and leaves any previous ``out`` intact.
- **Locked**: the writer holds an OS file lock (``fcntl.flock``) on ``.NAME.lock``
  beside ``out`` for the whole write, so a second concurrent writer to the same output
  fails at once with :class:`~offrec.core.errors.OutputBusyError` instead of both
  succeeding and the later one silently replacing the first.
- **Owned**: the published folder carries a manifest, ``.offrec-manifest.json``, listing
  what offrec wrote there. ``overwrite=True`` replaces only such a folder (or a log
  dataset / model folder written by older offrec versions, recognised by its files);
  anything else, including a recognised folder into which other files were put, is
  refused with an error naming what is there. The current directory and its parents are
  never an output.
- **Self-cleaning**: each temporary folder holds an owner marker
  (``.offrec-owner.json``: pid, host, start time). A process killed with SIGKILL cannot
  clean up; the next writer to the same output removes the temporary folders whose
  owner is dead (same host, pid gone).
- **Sized**: with ``expected_bytes`` the write is refused before it starts when the disk
  has less free space than the estimate (the message gives both numbers).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from offrec.core.errors import (
    InputError,
    NoSpaceError,
    NotWritableError,
    OffrecError,
    OutputBusyError,
    OutputExistsError,
)

MANIFEST = ".offrec-manifest.json"
"""File in every output folder offrec publishes: what it wrote there."""
OWNER = ".offrec-owner.json"
"""File in every temporary folder: the pid and host of the process building it."""

# Files of folders written before manifests existed (log datasets are recognised by
# their Parquet metadata instead).
_LEGACY_MODEL_MARKERS = ("policy.json", "qpolicy.json")
_LEGACY_MODEL_FILES = frozenset(
    {
        "policy.json",
        "arrays.npz",
        "qpolicy.json",
        "weights.npz",
        "training.json",
        "training_curve.png",
        "training_curve.json",
        "world.json",
    }
)


_LEGACY_RUN_FILES = frozenset(
    {"cache", "plots", "metrics.json", "report.md", "report.html", "pipeline.resolved.json"}
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or another termination signal) received: handled like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


# ------------------------------------------------------------------------------ checks
def check_output_path(out: str | Path) -> Path:
    """``out`` as a Path, refusing the current directory and its parents (replacing
    one of them would delete the user's working tree)."""
    p = Path(out)
    resolved = p.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise InputError(
            f"output must not be the current directory or one of its parents; got {str(out)!r} "
            f"({resolved}); name a new folder, e.g. {str(Path(out) / 'out')!r}"
        )
    return p


def foreign_content(out: str | Path) -> str | None:
    """None when ``out`` is something offrec wrote (so it may be replaced), else a short
    description of what is there.

    Recognised: a folder with a manifest whose entries cover everything in it; a log
    dataset from older versions (only ``*.parquet`` files carrying offrec metadata); a
    model folder from older versions (``policy.json`` or ``qpolicy.json`` and only the
    files offrec writes in one); a pipeline run folder from older versions
    (``pipeline.resolved.json`` and only a run's files); an empty folder (nothing to lose).
    """
    p = Path(out)
    if p.is_symlink():
        return "it is a symbolic link"
    if p.is_file():
        return "it is a file"
    if not p.is_dir():
        return "it is not a folder"
    names = sorted(x.name for x in p.iterdir())
    if not names:
        return None
    if MANIFEST in names:
        try:
            listed = set(read_manifest(p).get("files", {}))
        except (OSError, ValueError):
            return f"its {MANIFEST} is unreadable"
        extra = [n for n in names if n not in listed and n not in (MANIFEST, OWNER)]
        if extra:
            return f"it holds files offrec did not write: {_first(extra)}"
        return None
    if all(n.endswith(".parquet") for n in names) and _all_offrec_parquet(p, names):
        return None
    if any(m in names for m in _LEGACY_MODEL_MARKERS) and set(names) <= _LEGACY_MODEL_FILES:
        return None
    if "pipeline.resolved.json" in names and set(names) <= _LEGACY_RUN_FILES:
        return None
    return f"it is a folder offrec did not write (holding {_first(names)})"


def _first(names: list[str], k: int = 5) -> str:
    more = f" (+{len(names) - k} more)" if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _all_offrec_parquet(folder: Path, names: list[str]) -> bool:
    import pyarrow.parquet as pq

    try:
        for n in names:
            meta = pq.read_schema(folder / n).metadata or {}
            if b"offrec.schema_version" not in meta:
                return False
    except Exception:  # unreadable: not recognisably ours
        return False
    return True


def check_free_space(folder: str | Path, expected_bytes: int, what: str = "the output") -> None:
    """Raise :class:`NoSpaceError` when ``folder``'s disk has less than ``expected_bytes`` free."""
    free = shutil.disk_usage(folder).free
    if expected_bytes > free:
        raise NoSpaceError(
            f"not enough disk space for {what}: the write needs about "
            f"{format_bytes(expected_bytes)} and {folder} has {format_bytes(free)} free; "
            "write less data or choose another disk"
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} PB"  # pragma: no cover


# ------------------------------------------------------------------------------ OS errors
_NOT_WRITABLE = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_NO_SPACE = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}


def os_errno(exc: BaseException) -> int | None:
    """The errno of an ``OSError`` (also when Arrow only writes it in the message,
    ``"... [errno 28] No space left on device"``)."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno is not None:
        return int(exc.errno)
    import re

    m = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
    return int(m.group(1)) if m else None


def write_error(exc: BaseException, target: str | Path) -> OffrecError | None:
    """The one-line offrec error for an OS error met while writing ``target`` (a read-only
    file system, no permission, a full disk), or ``None`` when ``exc`` is not one of them.
    The message says that nothing was published and any previous output is intact."""
    no = os_errno(exc)
    if no in _NO_SPACE:
        return NoSpaceError(
            f"cannot write {target}: {_NO_SPACE[no]} ([Errno {no}]); nothing was written and "
            "any previous output is intact: free space or choose another disk"
        )
    if no in _NOT_WRITABLE:
        where = getattr(exc, "filename", None) or target
        if ".tmp-" in str(where):  # a temporary name means nothing to the user
            where = Path(target).parent
        return NotWritableError(
            f"cannot write {target}: {_NOT_WRITABLE[no]} ([Errno {no}] at {where}); nothing was "
            "written: choose a writable folder"
        )
    return None


def check_writable(target: str | Path) -> None:
    """Refuse up front (before any work) a ``target`` whose folder cannot be written: the
    nearest existing folder above it is on a read-only file system or not writable."""
    p = Path(target).absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if os.access(p, os.W_OK):
        return
    readonly = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    no = errno.EROFS if readonly else errno.EACCES
    err = write_error(OSError(no, os.strerror(no), str(p)), target)
    assert err is not None
    raise err


@contextmanager
def os_write_errors(target: str | Path) -> Iterator[None]:
    """Within the block, OS errors of writing (:func:`write_error`) become offrec errors."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, OffrecError):
            raise
        err = write_error(exc, target)
        if err is None:
            raise
        raise err from None


# ------------------------------------------------------------------------------ lock
@contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold an exclusive OS lock on ``.NAME.lock`` beside ``out``; fail at once if another
    process holds it (:class:`OutputBusyError` names its pid and host)."""
    out = Path(out)
    lock = out.parent / f".{out.name}.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, atomic rename still holds
        yield
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputBusyError(
                    f"another process is writing {out} (lock {lock.name} held by {holder}); "
                    "wait for it to finish or choose another output"
                ) from None
            raise
        try:  # the file we locked must still be the one at the path (a releaser unlinks it)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


# ------------------------------------------------------------------------------ signals
@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so
    cleanup runs as on Ctrl-C. Only installed from the main thread and only when SIGTERM
    still has its default action (a handler the application set is kept)."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ------------------------------------------------------------------------------ stale temp
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(out: str | Path) -> list[Path]:
    """Remove the temporary folders of dead writers to ``out`` (owner marker names a pid on
    this host that no longer runs) and leftovers of an interrupted replace; return them.
    Call while holding :func:`output_lock` (then no live writer to ``out`` exists)."""
    out = Path(out)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    host = socket.gethostname()
    for p in out.parent.iterdir():
        if p.name.startswith(f".{out.name}.tmp-") and p.is_dir():
            try:
                owner = json.loads((p / OWNER).read_text())
            except (OSError, ValueError):
                continue  # not marked: not provably ours
            if owner.get("host") == host and not _pid_alive(int(owner.get("pid", -1))):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        elif p.name.startswith(f".{out.name}.old-") and (p / MANIFEST).exists():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ------------------------------------------------------------------------------ manifest
def read_manifest(folder: str | Path) -> dict[str, Any]:
    data = json.loads((Path(folder) / MANIFEST).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{MANIFEST} must hold an object")
    return data


def write_manifest(
    folder: str | Path, *, kind: str, extra: dict[str, Any] | None = None, checksums: bool = False
) -> dict[str, Any]:
    """Write ``folder``'s manifest: every entry in it (files with their size and, with
    ``checksums``, their SHA-256), the kind of output, the offrec version, and ``extra``."""
    from offrec.core.version import __version__

    folder = Path(folder)
    files: dict[str, Any] = {}
    for p in sorted(folder.iterdir()):
        if p.name in (MANIFEST, OWNER):
            continue
        if p.is_dir():
            files[p.name] = {"dir": True}
        else:
            entry: dict[str, Any] = {"size": p.stat().st_size}
            if checksums:
                entry["sha256"] = file_sha256(p)
            files[p.name] = entry
    manifest = {
        "offrec": __version__,
        "kind": kind,
        "created": time.time(),
        "files": files,
        **(extra or {}),
    }
    _write_file(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_manifest(folder: str | Path) -> list[str]:
    """Problems of ``folder`` against its manifest (empty list when it is intact): a missing
    manifest, missing or extra files, sizes or SHA-256 checksums that differ."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except FileNotFoundError:
        return [f"{folder.name}: no {MANIFEST}"]
    except (OSError, ValueError) as exc:
        return [f"{folder.name}: unreadable {MANIFEST} ({exc})"]
    problems = []
    listed: dict[str, Any] = manifest.get("files", {})
    present = {p.name for p in folder.iterdir()} - {MANIFEST, OWNER}
    for name in sorted(set(listed) - present):
        problems.append(f"{folder.name}/{name}: missing")
    for name in sorted(present - set(listed)):
        problems.append(f"{folder.name}/{name}: not in the manifest")
    for name in sorted(set(listed) & present):
        entry, p = listed[name], folder / name
        if entry.get("dir"):
            continue
        if p.stat().st_size != entry.get("size"):
            problems.append(f"{folder.name}/{name}: size {p.stat().st_size} != {entry.get('size')}")
        elif "sha256" in entry and file_sha256(p) != entry["sha256"]:
            problems.append(f"{folder.name}/{name}: checksum differs")
    return problems


def record_in_manifest(path: str | Path) -> None:
    """Record a file or folder offrec just wrote into its parent's manifest, when the
    parent is an offrec output (else nothing)."""
    path = Path(path)
    mpath = path.parent / MANIFEST
    if not mpath.is_file():
        return
    try:
        manifest = read_manifest(path.parent)
    except (OSError, ValueError):
        return
    entry: dict[str, Any] = {"dir": True} if path.is_dir() else {"size": path.stat().st_size}
    old = manifest.setdefault("files", {}).get(path.name, {})
    if "sha256" in old and not path.is_dir():
        entry["sha256"] = file_sha256(path)
    manifest["files"][path.name] = entry
    _write_file(mpath, json.dumps(manifest, indent=2, sort_keys=True).encode())


# ------------------------------------------------------------------------------ publishing
@contextmanager
def atomic_dir(
    out: str | Path,
    *,
    overwrite: bool = False,
    kind: str = "output",
    expected_bytes: int | None = None,
) -> Iterator[Path]:
    """Yield a temporary directory next to ``out``; on success publish it as ``out``.

    See the module docstring for the guarantees. Raises, before any work:
    :class:`OutputExistsError` when ``out`` exists and ``overwrite`` is false, or when it
    holds something offrec did not write; :class:`OutputBusyError` when another process
    is writing ``out``; :class:`NoSpaceError` when ``expected_bytes`` do not fit;
    ``InputError`` when ``out`` is the current directory or a parent of it.
    """
    out = check_output_path(out)
    with os_write_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    with os_write_errors(out), output_lock(out):
        remove_stale_temps(out)
        _check_replaceable(out, overwrite)
        if expected_bytes is not None:
            check_free_space(out.parent, expected_bytes, what=str(out))
        tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        with terminate_as_interrupt():
            try:
                owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
                (tmp / OWNER).write_text(json.dumps(owner))
                yield tmp
                write_manifest(tmp, kind=kind)
                (tmp / OWNER).unlink()
                _publish(tmp, out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise


def _check_replaceable(out: Path, overwrite: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise OutputExistsError(f"output {out} already exists; pass overwrite=True to replace it")
    foreign = foreign_content(out)
    if foreign is not None:
        raise OutputExistsError(
            f"refusing to replace {out}: {foreign}; offrec replaces only what it "
            f"wrote (a folder with {MANIFEST}). Move those files or choose another output"
        )


def _publish(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)
    record_in_manifest(out)


@contextmanager
def owned_dir(out: str | Path, *, kind: str) -> Iterator[Path]:
    """Lock an output folder that is written in place over time (a pipeline run with its
    cache): create it with a manifest if absent, refuse it if it holds anything offrec
    did not write or is another kind of offrec output (a log dataset or a model folder
    is not merged into: its manifest's ``kind`` must be ``kind``), and hold
    :func:`output_lock` until the block ends."""
    out = check_output_path(out)
    with os_write_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    with os_write_errors(out), output_lock(out), terminate_as_interrupt():
        if out.exists() or out.is_symlink():
            foreign = foreign_content(out)
            if foreign is not None and not (out / MANIFEST).is_file():
                raise OutputExistsError(
                    f"refusing to write into {out}: {foreign}; choose a new folder"
                )
            other = _other_kind(out, kind)
            if other is not None:
                raise OutputExistsError(
                    f"refusing to write a {kind} into {out}: it is {other}, not a {kind} "
                    f"folder; choose a new folder"
                )
        out.mkdir(exist_ok=True)
        if not (out / MANIFEST).is_file():
            write_manifest(out, kind=kind)
        yield out


def _other_kind(out: Path, kind: str) -> str | None:
    """None when the existing folder ``out`` may hold a ``kind`` output (empty, or its
    manifest says ``kind``, or a legacy run folder for ``"run"``), else what it is."""
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if (out / MANIFEST).is_file():
        try:
            found = read_manifest(out).get("kind")
        except (OSError, ValueError):
            return f"a folder whose {MANIFEST} is unreadable"
        if found == kind:
            return None
        names = {"dataset": "a log dataset", "output": "a model or output folder"}
        return f"{names.get(str(found), f'an offrec {found} folder')} offrec wrote"
    names_in = {p.name for p in out.iterdir()}
    if kind == "run" and "pipeline.resolved.json" in names_in:
        return None
    return "a folder offrec wrote for something else (a log dataset or a model)"


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    When ``path``'s folder is an offrec output (it has a manifest), the file is recorded
    in the manifest, so a later ``overwrite`` still recognises the folder as offrec's.
    """
    path = Path(path)
    with os_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise OutputExistsError(f"cannot write the file {path}: a folder is there")
        _write_file(path, data)
        record_in_manifest(path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


__all__ = [
    "MANIFEST",
    "OWNER",
    "Terminated",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "check_free_space",
    "check_output_path",
    "file_sha256",
    "foreign_content",
    "format_bytes",
    "os_write_errors",
    "output_lock",
    "owned_dir",
    "write_error",
    "read_manifest",
    "record_in_manifest",
    "remove_stale_temps",
    "terminate_as_interrupt",
    "verify_manifest",
    "write_manifest",
]
