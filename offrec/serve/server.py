"""Run the service: recover the log, bind, serve with uvicorn, deploy on SIGHUP, stop cleanly.

The socket is bound *after* :meth:`Service.open` recovered the write-ahead log, so no
request is answered before recovery. ``port=0`` picks a free port; the address is
written to ``ready_file`` (atomically, as JSON ``{"url", "pid", "model_version",
"recovery"}``) once the app serves, which is how scripts and tests wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from offrec.serve.app import MAX_BODY, make_app
from offrec.serve.service import Service, ServiceConfig

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_service(
    model_dir: str | Path,
    log_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    config: ServiceConfig | None = None,
    context_dim: int | None = None,
    max_body: int = MAX_BODY,
    ready_file: str | Path | None = None,
    on_ready: Any = None,
) -> dict[str, Any]:
    """Serve ``model_dir`` into ``log_dir`` until SIGINT/SIGTERM; return the final health.

    SIGHUP re-reads the model folder being served and deploys it (see
    :meth:`Service.deploy`); the admin endpoint does the same with a token.
    """
    import uvicorn

    service = Service(model_dir, log_dir, config, context_dim=context_dim)
    recovery = service.open()
    try:
        sock = bind(host, port)
        bound = sock.getsockname()
        url = f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}"

        def started() -> None:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(_redeploy(service))
            )
            info = {
                "url": url,
                "pid": os.getpid(),
                "model_version": service.model.version,
                "recovery": asdict(recovery),
                "compacted_at_start": asdict(service.counts),
            }
            if ready_file is not None:
                from offrec.core.atomic import atomic_write_text

                atomic_write_text(ready_file, json.dumps(info))
            if on_ready is not None:
                on_ready(info)

        app = make_app(service, token=token, max_body=max_body, on_startup=started)
        cfg = uvicorn.Config(
            app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=30,
            backlog=2048,
        )
        server = uvicorn.Server(cfg)
        with _quiet_stop_signals(), tuned_gc():
            server.run(sockets=[sock])
    finally:
        service.close()
    return service.health()


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """Keep Python's garbage collector out of the latency tail while serving; entered once
    everything long-lived (model, world, imported modules) is loaded.

    ``gc.freeze()`` moves every object alive now to the permanent generation, which no
    collection scans again. Without it each full (generation-2) collection walks the whole
    heap of numpy, pyarrow, Starlette and the model while every request waits: measured
    under ``benchmarks.bench_serve`` load, 4 full collections in 10 s taking up to 126 ms
    (405 ms in all), the largest source of the p99 tail; with it, full collections walk
    only what was allocated since and took at most 26 ms (README, "Serving and the closed
    loop"). The thresholds stay CPython's: a larger young generation (5,000 instead of
    700) made the young collections longer (up to 28 ms) without lowering the tail.
    Reference cycles are still collected. On exit the frozen objects become collectable
    again.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _quiet_stop_signals() -> Iterator[None]:
    """uvicorn handles SIGINT/SIGTERM by stopping gracefully and then re-raises the signal
    to the handler that was there before; make that handler a no-op so that the caller's
    cleanup (compaction, releasing the log's lock) runs and the process exits normally."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda *_: None) for s in stops}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


async def _redeploy(service: Service) -> None:
    try:
        await service.deploy()
    except Exception as exc:  # a bad folder must not stop the service
        log.error("SIGHUP deploy failed: %s", exc)


__all__ = ["bind", "run_service", "tuned_gc"]
