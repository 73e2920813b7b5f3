"""The Ray engine: the same kernel on Ray Data, on this machine or a cluster.

Bandit kernels run as ``ray.data.read_parquet(files) -> map_batches(kernel)``; each
batch returns its partial (pickled into one cell), and the driver merges the partials
in the dataset's order (``preserve_order``), so the result is the local engine's up to
floating-point summation order. Kernels that need whole sessions run one Ray task per
part file (offrec's writer keeps a session inside one file), each reading its file
with the local engine's session reader.

Where Ray runs: ``address`` (or the ``RAY_ADDRESS`` environment variable) joins a
running cluster (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on
the others; the log must be on storage every node can read). Without either, a local
Ray is started with ``num_cpus`` CPUs and shut down when the process exits. Workers run
BLAS and torch on one thread each.

Ray is optional: ``pip install 'offrec[ray]'``.
"""

from __future__ import annotations

import atexit
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from offrec.core.errors import InputError, OffrecError
from offrec.core.validation import check_scalar
from offrec.logs.data import LoggedData
from offrec.logs.scan import Batch, LogSource, iter_sessions, validate_batch

_THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def require_ray() -> Any:
    """Import Ray, or fail with one line saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(
            "the ray engine needs Ray: pip install 'offrec[ray]' (or ray[data])"
        ) from None
    return ray


class RayEngine:
    """Run a kernel over a log's batches on Ray (module docstring).

    Args:
        batch_size: rows per batch handed to the kernel.
        address: a Ray cluster (default ``RAY_ADDRESS``; else a local Ray).
        num_cpus: CPUs of a local Ray (default: all of this machine's).
    """

    name = "ray"

    def __init__(
        self, batch_size: int = 65_536, address: str | None = None, num_cpus: int | None = None
    ) -> None:
        check_scalar(batch_size, "batch_size", int, min=1)
        if num_cpus is not None:
            check_scalar(num_cpus, "num_cpus", int, min=1)
        self.batch_size = batch_size
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus

    def map_reduce(
        self,
        source: LogSource | LoggedData,
        kernel: Callable[[Batch], Any],
        *,
        sessions: bool = False,
        columns: list[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Any:
        """``merge`` of ``kernel(batch)`` over the batches of ``source`` (a log on disk)."""
        if isinstance(source, LoggedData):
            raise InputError("the ray engine reads logs from Parquet files; pass the log's path")
        ray = start(self.address, self.num_cpus)
        try:
            if sessions:
                parts = self._per_file(ray, source, kernel, columns)
            else:
                parts = self._ray_data(ray, source, kernel, columns)
            total = None
            for p in parts:  # merged as they arrive: one partial held at a time
                total = p if total is None else total.merge(p)
        except Exception as exc:  # errors raised in workers come back wrapped
            raise _unwrap(exc) from None
        if total is None:
            raise ValueError("the log has no rows")
        if progress is not None:
            progress(source.n_rows)
        return total

    def _ray_data(
        self, ray: Any, source: LogSource, kernel: Callable[[Batch], Any], columns: Any
    ) -> Iterator[Any]:
        from offrec.logs.scan import read_columns

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        wanted = read_columns(source, columns)
        meta = source.metadata

        def run(table: Any) -> dict[str, Any]:
            files = table.column("path").to_pylist()
            table = table.drop_columns(["path"])
            try:
                data = validate_batch(table, meta, "", None)
                partial = kernel(Batch(data, files[0], -1, -1))
            except InputError as err:  # a batch may span files: name the offending row's
                raise InputError(_name_file(str(err), files)) from None
            return {"partial": np.array([pickle.dumps(partial)], dtype=object)}

        ds = ray.data.read_parquet(list(source.files), include_paths=True)
        ds = ds.select_columns([*wanted, "path"])
        out = ds.map_batches(
            run, batch_format="pyarrow", batch_size=self.batch_size, zero_copy_batch=True
        )
        return (pickle.loads(row["partial"]) for row in out.iter_rows())

    def _per_file(
        self, ray: Any, source: LogSource, kernel: Callable[[Batch], Any], columns: Any
    ) -> Iterator[Any]:
        batch_size = self.batch_size

        @ray.remote(num_cpus=1)
        def run(i: int) -> bytes:
            partial = None
            for batch in iter_sessions(source, files=[i], batch_size=batch_size, columns=columns):
                p = kernel(batch)
                partial = p if partial is None else partial.merge(p)
            return pickle.dumps(partial)

        refs = [run.remote(i) for i in range(len(source.files))]
        parts = (pickle.loads(ray.get(ref)) for ref in refs)  # in file order
        return (p for p in parts if p is not None)


_STARTED = False


def start(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to Ray at ``address``, or start a local Ray (once per process)."""
    global _STARTED
    ray = require_ray()
    if ray.is_initialized():
        return ray
    import logging

    for name in ("ray", "ray.data", "ray._private"):  # offrec reports errors itself, in one line
        logging.getLogger(name).setLevel(logging.CRITICAL)
    env = {"env_vars": dict(_THREADS)}
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                runtime_env=env,
                log_to_driver=False,
                logging_level="ERROR",
            )
            _STARTED = True
            atexit.register(ray.shutdown)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise InputError(
            f"cannot start or reach Ray at {where}: {str(exc).splitlines()[0]}"
        ) from None
    return ray


def _name_file(message: str, files: list[str]) -> str:
    import re

    m = re.search(r"\brow (\d+)", message)
    if not m:
        return message
    name = Path(files[int(m.group(1))]).name
    text = message.replace(m.group(0), "a row", 1).removeprefix(": ")
    return f"log file {name}: {text} (the ray engine does not track row numbers; --engine local names the row)"


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast on an address nothing answers at (``ray.init`` would wait for minutes)."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(
            f"ray address must be HOST:PORT (or ray://HOST:PORT, or auto); got {address!r}"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise InputError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


def _unwrap(exc: BaseException) -> BaseException:
    """The offrec error inside a Ray error, if any (Ray wraps what workers raise)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OffrecError):
            return InputError(str(e).splitlines()[0])
        cause = getattr(e, "cause", None)
        e = cause if isinstance(cause, BaseException) else (e.__cause__ or e.__context__)
    text = str(exc)
    for line in text.splitlines():
        if "InputError:" in line or "OffrecError" in line:
            return InputError(line.split("Error:", 1)[-1].strip())
    return exc
