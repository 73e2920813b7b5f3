r"""The HTTP API of ``offrec serve``: a Starlette app over a :class:`~offrec.serve.service.Service`.

Why Starlette (on uvicorn with uvloop and httptools) and not FastAPI: the API is five
small JSON endpoints whose validation must produce offrec's own one-line errors (field,
rule, value) anyway; FastAPI would add pydantic models and OpenAPI generation on every
request path for documentation that fits in this docstring, and costs throughput on the
2-core machines offrec targets. Starlette is the ASGI toolkit FastAPI itself is built
on, well kept, with a small dependency tree (anyio).

The hot route, ``POST /v1/recommend``, is a plain ASGI handler in front of Starlette
(:class:`ServeApp`): no request object, no routing table, ``orjson`` for both directions,
and the decision itself batched with the other requests of the same event-loop turn
(:meth:`offrec.serve.service.Service.recommend`). It validates exactly as the rest
(same size limit, token, one-line errors); the other endpoints are Starlette routes.

Endpoints (JSON in, JSON out; errors are ``{"error": "<one line>"}``):

``POST /v1/recommend``
    ``{"context": [d numbers]}`` or ``{"profile": {"sports": 0.9, ...}}`` (needs the
    world saved with the model), optional ``"k"`` (items to show, default 1),
    ``"user_id"`` (int) and ``"request_id"`` (string, echoed back). Answer
    ``{"decision_id": int, "items": [k ints], "propensities": [k floats],
    "model_version": str, "request_id": ...}``, sent only after the decision is durable
    in the write-ahead log. ``propensities`` are the logged pscores
    (:mod:`offrec.serve.model`: Plackett-Luce conditionals; the first is the top item's
    probability).
``POST /v1/feedback``
    ``{"decision_id": int, "reward": 0 or 1, "position": slot (default 0)}`` -> ``{"status":
    "joined"}`` within the attribution window, ``{"status": "late"}`` after it (counted,
    not added to the log); 404 for an unknown decision.
``GET /v1/health``
    status, the model version, counts served and compacted, write-ahead log stats.
``GET /v1/model``
    the served model: version, folder, items, context width, type, topics.
``POST /v1/admin/deploy`` (token required)
    ``{"model": "path/to/folder"}`` (absent: reload the current folder) -> the new model.
``POST /v1/admin/compact`` (token required)
    seal the active segment and compact ready segments now (``{"force": true}``: all).

Status codes: 400 malformed JSON or a field breaking a rule (the message names it), 401
missing or wrong token, 403 admin endpoints without a configured token, 404 unknown
decision, 413 body over the size limit, 503 the log cannot make the decision durable
(disk full, I/O error; nothing was acknowledged; ``Retry-After`` set).

Security: the server binds 127.0.0.1 unless told otherwise; with a token configured,
every endpoint except ``/v1/health`` requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from offrec.core.errors import InputError, MissingInputError
from offrec.serve.service import Service, UnknownDecision
from offrec.serve.wal import WALUnavailable

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def error_status(exc: BaseException) -> tuple[int, str] | None:
    """The status code and one-line message of a request that raised ``exc`` (module
    docstring), or None for an unexpected exception (a bug: 500)."""
    if isinstance(exc, HTTPError):
        return exc.status, str(exc)
    if isinstance(exc, UnknownDecision):
        return 404, str(exc)
    if isinstance(exc, MissingInputError):
        return 400, str(exc)
    if isinstance(exc, InputError):
        return 400, str(exc).splitlines()[0]
    if isinstance(exc, WALUnavailable):
        return 503, str(exc)
    return None


async def read_body(receive: Receive, content_length: str | None, max_body: int) -> bytes:
    """The request body, at most ``max_body`` bytes (413 beyond; checked against the
    announced length first, then while reading). Raises ``ClientDisconnect`` when the
    client hangs up mid-body."""
    if content_length is not None and (
        not content_length.isdigit() or int(content_length) > max_body
    ):
        raise HTTPError(413, f"request body must be at most {max_body} bytes; got {content_length}")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise HTTPError(413, f"request body must be at most {max_body} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body (an empty body is ``{}``); 400 otherwise."""
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"body must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPError(400, f"body must be a JSON object; got {type(data).__name__}")
    return data


def field(data: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """``data[name]`` if it is a ``kind`` (bools are not ints), else ``default`` when absent."""
    value = data.get(name, default)
    if value is default:
        return value
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{name} must be {kind.__name__}; got {value!r}")
    return value


RECOMMEND_FIELDS = frozenset({"context", "profile", "k", "user_id", "request_id"})


async def recommend(service: Service, data: dict[str, Any]) -> dict[str, Any]:
    """Validate a recommend request (module docstring), decide, return the answer."""
    if not data.keys() <= RECOMMEND_FIELDS:
        unknown = sorted(set(data) - RECOMMEND_FIELDS)
        raise InputError(f"unknown field {unknown[0]!r}; valid fields: {sorted(RECOMMEND_FIELDS)}")
    if ("context" in data) == ("profile" in data):
        raise InputError("give exactly one of context or profile")
    if "context" in data:
        x = service.check_context(data["context"])
    else:
        if not isinstance(data["profile"], dict):
            raise InputError(f"profile must be an object of topic weights; got {data['profile']!r}")
        x = service.context_from_profile(data["profile"])
    k = field(data, "k", int, 1)
    user = field(data, "user_id", int, -1)
    req_id = field(data, "request_id", str, None)
    if req_id is not None and len(req_id) > 200:
        raise InputError(f"request_id must be at most 200 characters; got {len(req_id)}")
    decision = await service.recommend(x, k, user)
    answer = decision.to_json()
    answer["request_id"] = req_id
    return answer


_JSON_HEADERS = [(b"content-type", b"application/json")]


class ServeApp:
    """The ASGI app: ``POST /v1/recommend`` by a lean handler (module docstring), every
    other path (and the lifespan) by the Starlette app ``rest``."""

    def __init__(self, service: Service, rest: Starlette, token: str | None, max_body: int):
        self.service = service
        self.rest = rest
        self.max_body = max_body
        self._bearer = None if token is None else f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/recommend":
            await self._recommend(scope, receive, send)
        else:
            await self.rest(scope, receive, send)

    async def _recommend(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                auth = value
        headers = _JSON_HEADERS
        if scope["method"] != "POST":
            status, body = 405, orjson.dumps({"error": "method not allowed: use POST"})
            headers = [*headers, (b"allow", b"POST")]
        elif self._bearer is not None and not hmac.compare_digest(auth or b"", self._bearer):
            status, body = 401, orjson.dumps({"error": UNAUTHORIZED})
        else:
            try:
                raw = await read_body(
                    receive, None if length is None else length.decode("latin-1"), self.max_body
                )
                answer = await recommend(self.service, parse_object(raw))
                status, body = 200, orjson.dumps(answer)
            except ClientDisconnect:  # the client hung up mid-body: nobody to answer
                return
            except Exception as exc:
                mapped = error_status(exc)
                if mapped is None:
                    raise
                status, body = mapped[0], orjson.dumps({"error": mapped[1]})
                if status == 503:
                    headers = [*headers, (b"retry-after", b"1")]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


UNAUTHORIZED = "missing or wrong token (Authorization: Bearer ...)"


def make_app(
    service: Service,
    *,
    token: str | None = None,
    max_body: int = MAX_BODY,
    on_startup: Callable[[], None] | None = None,
) -> ServeApp:
    """The ASGI app (module docstring). ``on_startup`` runs once the app serves (the
    server writes its ready file there); a background task seals and compacts the
    write-ahead log every ``service.config.compact_every_s`` seconds."""

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        got = request.headers.get("authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())

    async def body(request: Request) -> dict[str, Any]:
        raw = await read_body(request.receive, request.headers.get("content-length"), max_body)
        return parse_object(raw)

    def endpoint(
        fn: Callable[[Request], Awaitable[Response]], *, admin: bool = False, open_: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if admin and token is None:
                return _json(
                    {
                        "error": "admin endpoints are disabled: start the service with "
                        "--token (or deploy with SIGHUP)"
                    },
                    403,
                )
            if not open_ and not authorized(request):
                return _json({"error": UNAUTHORIZED}, 401)
            try:
                return await fn(request)
            except ClientDisconnect:  # the client hung up mid-body: nobody to answer
                return Response(status_code=400)
            except Exception as exc:
                mapped = error_status(exc)
                if mapped is None:
                    raise
                retry = {"Retry-After": "1"} if mapped[0] == 503 else None
                return _json({"error": mapped[1]}, mapped[0], retry)

        return handle

    async def feedback(request: Request) -> Response:
        data = await body(request)
        for name in ("decision_id", "reward"):
            if name not in data:
                raise InputError(f"missing field {name!r}")
        did = field(data, "decision_id", int, None)
        status = await service.feedback(did, data["reward"], field(data, "position", int, 0))
        return _json({"status": status, "decision_id": did})

    async def health(request: Request) -> Response:
        return _json(service.health())

    async def model(request: Request) -> Response:
        return _json(service.model.info())

    async def deploy(request: Request) -> Response:
        data = await body(request)
        folder = field(data, "model", str, None)
        new = await service.deploy(folder)
        return _json(new.info())

    async def compact(request: Request) -> Response:
        data = await body(request)
        force = data.get("force", False)
        if not isinstance(force, bool):
            raise InputError(f"force must be true or false; got {force!r}")
        counts = await service.compact(force=force)
        return _json({"compacted": counts.__dict__, "total": service.counts.__dict__})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def tick() -> None:
            while True:
                await asyncio.sleep(service.config.compact_every_s)
                try:
                    await service.compact()
                except Exception:  # keep serving; the next tick retries
                    log.exception("compaction failed")

        task = asyncio.create_task(tick())
        if on_startup is not None:
            on_startup()
        try:
            yield
        finally:
            task.cancel()

    routes = [
        Route("/v1/feedback", endpoint(feedback), methods=["POST"]),
        Route("/v1/health", endpoint(health, open_=True), methods=["GET"]),
        Route("/v1/model", endpoint(model), methods=["GET"]),
        Route("/v1/admin/deploy", endpoint(deploy, admin=True), methods=["POST"]),
        Route("/v1/admin/compact", endpoint(compact, admin=True), methods=["POST"]),
    ]
    rest = Starlette(routes=routes, lifespan=lifespan)
    return ServeApp(service, rest, token, max_body)


__all__ = ["MAX_BODY", "ServeApp", "error_status", "make_app", "read_body", "recommend"]
