r"""The serving core without HTTP: decide, make durable, join feedback, deploy, compact.

:class:`Service` owns one log folder (an exclusive lock on it while it runs), the
write-ahead log in its ``_wal/`` folder (:mod:`offrec.serve.wal`) and the model being
served. The HTTP layer (:mod:`offrec.serve.app`) only parses requests and maps the
errors below to status codes.

Life cycle: :meth:`Service.open` *recovers before serving*: it removes temporary folders
a killed compaction left, cuts torn tails off the segments, compacts the segments whose
attribution window has closed, re-reads the decisions still in the write-ahead log (so
feedback for them is accepted) and only then opens a fresh segment. :meth:`Service.close`
writes what is pending, compacts what is ready and releases the lock; what is not ready
stays in the write-ahead log for the next start.

Hot deploy (:meth:`Service.deploy`): the new model is loaded and checked off the event
loop, then swapped in with one reference assignment. A request reads the reference once
when it starts, so requests in flight finish on the old model, and each record carries the
version of the model that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from offrec.core.errors import InputError, MissingInputError
from offrec.core.validation import SeedLike, as_seed_sequence, check_scalar
from offrec.serve import compact as C
from offrec.serve.model import ServedModel, check_compatible, decide, load_served
from offrec.serve.wal import WAL_DIR, DecisionIds, Recovery, WriteAheadLog, list_segments

log = logging.getLogger(__name__)


class UnknownDecision(InputError, LookupError):
    """Feedback names a decision this service did not make (or not within the window)."""


@dataclass(frozen=True)
class ServiceConfig:
    """Options of a :class:`Service` (all validated; see ``offrec serve --help``).

    Attributes:
        window_s: attribution window: a reward counts if received at most this many
            seconds after the decision (:mod:`offrec.serve.compact`).
        grace_s: extra wait before a segment is compacted after its last window closed.
        compact_every_s: how often the service seals the active segment and compacts.
        max_k: largest ``k`` a request may ask for.
        seed: root seed of the service's sampling (None: fresh entropy).
        fsync: fsync each group commit (never turn off for a real log).
        segment_bytes: seal the active segment past this size.
        compact_process: run the periodic compaction in a child process (Linux; killed
            with the service) instead of a thread: parsing a segment holds the GIL for
            hundreds of milliseconds, which stalls every request in flight. The child is
            started with ``spawn``: a script that runs a :class:`Service` itself must guard
            its entry point with ``if __name__ == "__main__"`` (``offrec serve`` does).
    """

    window_s: float = 30.0
    grace_s: float = 2.0
    compact_every_s: float = 5.0
    max_k: int = 100
    seed: SeedLike = None
    fsync: bool = True
    segment_bytes: int = 64 << 20
    compact_process: bool = True

    def __post_init__(self) -> None:
        check_scalar(self.window_s, "window_s", float, min=0.0)
        check_scalar(self.grace_s, "grace_s", float, min=0.0)
        check_scalar(self.compact_every_s, "compact_every_s", float, min=0.0, min_inclusive=False)
        check_scalar(self.max_k, "max_k", int, min=1)
        check_scalar(self.segment_bytes, "segment_bytes", int, min=1024)


@dataclass(frozen=True)
class Decision:
    """One answered request: its id, the items shown (in slot order), their pscores."""

    decision_id: int
    items: list[int]
    propensities: list[float]
    model_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "items": self.items,
            "propensities": self.propensities,
            "model_version": self.model_version,
        }


_NUMBERS = frozenset({int, float})


@dataclass(frozen=True)
class _Pending:
    """A request waiting for the next batched decision."""

    context: np.ndarray
    k: int
    user_id: int
    future: asyncio.Future[Decision]


class Service:
    """A model served into a log folder (module docstring). Not thread-safe: call from one
    asyncio loop (the write-ahead log's writer thread is internal)."""

    def __init__(
        self,
        model_dir: str | Path,
        log_dir: str | Path,
        config: ServiceConfig | None = None,
        *,
        context_dim: int | None = None,
    ) -> None:
        self.config = config or ServiceConfig()
        self.log_dir = Path(log_dir)
        self.model: ServedModel = load_served(model_dir, context_dim=context_dim)
        self._context_dim = context_dim
        self.ids = DecisionIds()
        self.rng = np.random.default_rng(as_seed_sequence(self.config.seed))
        self.wal = WriteAheadLog(
            self.log_dir / WAL_DIR,
            fsync=self.config.fsync,
            segment_bytes=self.config.segment_bytes,
        )
        self._queue: list[_Pending] = []  # requests waiting for the next batched decide()
        self._recent: dict[int, int] = {}  # decision id -> k, for the window
        self._recent_order: deque[int] = deque()
        self._stack = contextlib.ExitStack()
        self.counts = C.Counts()
        self.stats = {"decisions": 0, "feedback": 0, "late_feedback": 0, "deploys": 0}
        self.recovery: Recovery | None = None
        self._compactor: ProcessPoolExecutor | None = None

    # ------------------------------------------------------------------ life cycle

    def layout(self) -> C.LogLayout:
        m = self.model
        meta: dict[str, str] = {}
        dataset = None
        if m.world is not None:
            from offrec.logs import schema as S

            meta[S.META_WORLD] = m.world.config.to_json()
            meta[S.META_WORLD_SEED] = json.dumps(m.world.seed)
            dataset = {"item_topics": m.world.item_topic.tolist(), "topics": list(m.world.topics)}
        return C.LogLayout(m.context_dim, m.n_actions, self.config.window_s, meta, dataset)

    def open(self) -> Recovery:
        """Lock the log folder and recover the write-ahead log, then accept requests."""
        from offrec.core.atomic import output_lock

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(output_lock(self.log_dir))
        C.remove_stale_temps(self.log_dir)
        self.recovery = self.wal.recover()
        self.counts.add(
            C.compact(
                self.log_dir,
                self.wal.folder,
                self.layout(),
                active_seq=None,
                grace_s=self.config.grace_s,
            )
        )
        for path in list_segments(self.wal.folder):
            decisions, _ = C.parse(C.read_segment(path).records)
            for rec in decisions:
                self._remember(int(rec["id"]), len(rec["a"]))
        for p in self.log_dir.glob("part-w*.parquet"):  # ids stay increasing after restarts
            self.ids.observe(_max_id(p))
        self.wal.start()
        return self.recovery

    def close(self) -> None:
        """Write what is pending, compact what is ready, release the log folder."""
        try:
            if self._compactor is not None:  # let a running compaction finish first
                self._compactor.shutdown(wait=True)
                self._compactor = None
            self.wal.close()
            self.counts.add(
                C.compact(
                    self.log_dir,
                    self.wal.folder,
                    self.layout(),
                    active_seq=None,
                    grace_s=self.config.grace_s,
                )
            )
        finally:
            self._stack.close()

    # ------------------------------------------------------------------ requests

    def context_from_profile(self, profile: dict[str, float]) -> np.ndarray:
        """The observation of a user at the start of a session with these topic weights
        (as ``offrec recommend``): needs the world saved with the model."""
        world = self.model.world
        if world is None:
            raise InputError(
                "profile needs the world the model was trained in (world.json next to it); "
                "send context instead"
            )
        prof = np.zeros(len(world.topics))
        for name, w in profile.items():
            if name not in world.topics:
                raise InputError(
                    f"profile: unknown topic {name!r}; topics: {', '.join(world.topics)}"
                )
            if not isinstance(w, int | float) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
                raise InputError(f"profile[{name!r}] must be a finite number >= 0; got {w!r}")
            prof[world.topics.index(name)] = float(w)
        if prof.sum() <= 0:
            raise InputError("profile must give some topic a positive weight")
        obs = np.zeros(world.context_dim, np.float32)
        obs[world.obs_slices()["profile"]] = prof / prof.sum()
        return obs

    def check_context(self, context: Any) -> np.ndarray:
        d = self.model.context_dim
        if not isinstance(context, list) or len(context) != d:
            got = f"{len(context)} values" if isinstance(context, list) else type(context).__name__
            raise InputError(f"context must be a list of {d} numbers; got {got}")
        if not {type(v) for v in context} <= _NUMBERS and not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in context
        ):
            bad = next(v for v in context if not isinstance(v, int | float) or isinstance(v, bool))
            raise InputError(f"context must hold numbers only; got {bad!r}")
        x = np.asarray(context, np.float32)
        if not np.isfinite(x).all():
            raise InputError(
                f"context must be finite; entry {int(np.argmin(np.isfinite(x)))} is not"
            )
        return x

    async def recommend(self, context: np.ndarray, k: int = 1, user_id: int = -1) -> Decision:
        """Decide ``k`` items for ``context`` (d,), make the decision durable, return it.
        Raises :class:`~offrec.serve.wal.WALUnavailable` when it cannot be made durable
        (then nothing was acknowledged).

        Requests that arrive in the same turn of the event loop are decided together
        (:meth:`_flush`: one :func:`~offrec.serve.model.decide` call per batch and ``k``,
        one write-ahead submission), which is what keeps the per-request cost low under
        load; a lone request is a batch of one."""
        check_scalar(k, "k", int, min=1, max=min(self.config.max_k, self.model.n_actions))
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        if not self._queue:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queue.append(_Pending(context, k, user_id, fut))
        return await fut

    def _flush(self) -> None:
        """Decide every queued request: group by ``k``, one :func:`decide` on the stacked
        contexts (n, d) per group, one write-ahead submission for the whole batch; each
        request's future resolves once that submission is durable."""
        batch, self._queue = self._queue, []
        try:
            self._decide_batch(batch)
        except BaseException as exc:  # a bug must fail these requests, not leave them hanging
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
            raise

    def _decide_batch(self, batch: list[_Pending]) -> None:
        model = self.model  # read once: a deployment meanwhile does not touch this batch
        groups: dict[int, list[_Pending]] = {}
        for req in batch:
            if not req.future.done():  # a cancelled request (client gone) needs no decision
                groups.setdefault(req.k, []).append(req)
        payloads: list[bytes] = []
        answered: list[tuple[_Pending, Decision]] = []
        for k, reqs in groups.items():
            for part in self._decide(model, k, reqs):
                if isinstance(part, BaseException):
                    continue
                for req, decision in part:
                    payloads.append(
                        orjson.dumps(
                            {
                                "t": "d",
                                "id": decision.decision_id,
                                "v": model.version,
                                "u": req.user_id,
                                "x": req.context.tolist(),
                                "a": decision.items,
                                "p": decision.propensities,
                            }
                        )
                    )
                    answered.append((req, decision))
        if not answered:
            return
        durable = self.wal.append_many(payloads)
        durable.add_done_callback(lambda f: self._answer(f, answered))

    def _decide(
        self, model: ServedModel, k: int, reqs: list[_Pending]
    ) -> list[list[tuple[_Pending, Decision]] | BaseException]:
        """One :func:`decide` for ``reqs``; if it fails (a row whose distribution cannot
        fill ``k`` slots), each request alone, so one bad row fails only its own request."""
        chunks = [reqs] if len(reqs) == 1 else [reqs, *([r] for r in reqs)]
        out: list[list[tuple[_Pending, Decision]] | BaseException] = []
        for chunk in chunks:
            try:
                obs = np.stack([r.context for r in chunk])
                items, pscores = decide(model, obs, k, self.rng)
            except Exception as exc:
                if len(chunk) == 1:
                    chunk[0].future.set_exception(exc)
                    out.append(exc)
                continue
            first = self.ids.next_many(len(chunk))
            out.append(
                [
                    (r, Decision(first + i, a, p, model.version))
                    for i, (r, a, p) in enumerate(
                        zip(chunk, items.tolist(), pscores.tolist(), strict=True)
                    )
                ]
            )
            if len(chunk) == len(reqs):
                break  # the whole group was decided at once
        return out

    def _answer(
        self, durable: asyncio.Future[None], answered: list[tuple[_Pending, Decision]]
    ) -> None:
        exc = None if durable.cancelled() else durable.exception()
        for req, decision in answered:
            if exc is None:
                self._remember(decision.decision_id, req.k)
            if req.future.done():
                continue
            if exc is None:
                req.future.set_result(decision)
            else:
                req.future.set_exception(exc)
        if exc is None:
            self.stats["decisions"] += len(answered)

    async def feedback(self, decision_id: int, reward: float, position: int = 0) -> str:
        """Record a reward for a decision; return ``"joined"`` (within the window) or
        ``"late"`` (counted, not added to the log). Unknown ids raise :class:`UnknownDecision`."""
        check_scalar(decision_id, "decision_id", int, min=1)
        check_scalar(position, "position", int, min=0)
        if not (isinstance(reward, int | float) and not isinstance(reward, bool)) or reward not in (
            0,
            1,
        ):
            raise InputError(f"reward must be 0 or 1 (a binary click); got {reward!r}")
        now = int(time.time() * 1000)
        made = DecisionIds.time_ms(decision_id)
        if made > now + 1000:
            raise UnknownDecision(f"unknown decision_id {decision_id} (it is from the future)")
        late = now - made > 1000 * self.config.window_s
        if not late:
            k = self._recent.get(decision_id)
            if k is None:
                raise UnknownDecision(f"unknown decision_id {decision_id}")
            if position >= k:
                raise InputError(
                    f"position must be < k={k} for decision {decision_id}; got {position}"
                )
        rec = {"t": "f", "id": decision_id, "r": float(reward), "pos": position, "late": late}
        await self.wal.append(orjson.dumps(rec))
        self.stats["late_feedback" if late else "feedback"] += 1
        return "late" if late else "joined"

    def _remember(self, decision_id: int, k: int) -> None:
        self._recent[decision_id] = k
        self._recent_order.append(decision_id)
        self.ids.observe(decision_id)
        horizon = int(time.time() * 1000) - int(1000 * (self.config.window_s + self.config.grace_s))
        order = self._recent_order
        while order and DecisionIds.time_ms(order[0]) < horizon:
            self._recent.pop(order.popleft(), None)

    # ------------------------------------------------------------------ operations

    async def deploy(self, model_dir: str | Path | None = None) -> ServedModel:
        """Load ``model_dir`` (default: the folder of the model being served, re-read) and
        serve it from now on (module docstring)."""
        folder = Path(model_dir) if model_dir is not None else self.model.folder
        if not folder.is_dir():
            raise MissingInputError(f"no model folder at {folder}")
        new = await asyncio.to_thread(load_served, folder, context_dim=self._context_dim)
        check_compatible(self.model, new)
        old, self.model = self.model, new
        self.stats["deploys"] += 1
        log.info("deployed %s (was %s)", new.version, old.version)
        return new

    async def compact(self, *, force: bool = False) -> C.Counts:
        """Seal the active segment and compact the ready ones (``force``: all sealed ones).

        Both run off the event loop: sealing waits for the group commit in progress, closes
        the segment and fsyncs the folder for the new one (milliseconds, up to the disk's
        fsync tail), which would otherwise stall every request in flight."""
        await asyncio.to_thread(self.wal.rotate)
        job = functools.partial(
            C.compact,
            self.log_dir,
            self.wal.folder,
            self.layout(),
            active_seq=self.wal.active_seq,
            grace_s=self.config.grace_s,
            force=force,
        )
        pool = self._compaction_pool()
        if pool is None:
            counts = await asyncio.to_thread(job)
        else:
            try:
                counts = await asyncio.get_running_loop().run_in_executor(pool, job)
            except BrokenProcessPool:
                # the worker died (killed, out of memory): start a new one next time
                self._compactor = None
                pool.shutdown(wait=False)
                raise
        self.counts.add(counts)
        return counts

    def _compaction_pool(self) -> ProcessPoolExecutor | None:
        """The child process that compacts (``config.compact_process``, Linux), started on
        first use from the event loop's thread (the thread whose exit delivers the
        worker's death signal: the main thread of ``offrec serve``); None: compact in a
        thread of this process."""
        if not self.config.compact_process or not sys.platform.startswith("linux"):
            return None
        if self._compactor is None:
            self._compactor = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._compactor

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.wal.broken is None else "degraded",
            "model_version": self.model.version,
            "served": dict(self.stats),
            "compacted": asdict(self.counts),
            "wal": self.wal.stats(),
            "window_s": self.config.window_s,
        }


def _die_with_parent(parent: int) -> None:
    """Compaction worker's initializer: ask Linux to SIGKILL this process when the service
    dies (``prctl(PR_SET_PDEATHSIG)``), so a killed service never leaves a compaction
    running while its restart recovers the same segments (a compaction cut anywhere is safe:
    part files are published atomically and named by segment range)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the service died before the request took effect
        os._exit(1)


def _max_id(path: Path) -> int:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    col = names.index("session_id")
    best = 0
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(col).statistics
        if st is not None and st.has_min_max:
            best = max(best, int(st.max))
    return best


__all__ = ["Decision", "Service", "ServiceConfig", "UnknownDecision"]
