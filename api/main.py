"""The application factory: ``create_app(settings=None)``.

Middleware (outermost first): CORS (only when ``TIERWISE_CORS_ORIGINS`` is set), then one
ASGI layer that enforces the API key, caps the request body, answers HEAD on GET routes
and records metrics.
"""

from __future__ import annotations

import difflib
import gc
import hmac
import logging
import time
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.db import Store
from api.jobs import JobRunner
from api.metrics import Metrics
from api.services import Catalog
from api.settings import Settings
from planner.fileio import DuplicateKeyError, NumberTooLongError, parse_document

log = logging.getLogger("tierwise.api")

#: Routes that answer without the API key (the web page's static files: api/routes/ui.py).
PUBLIC_PATHS = frozenset({"/healthz", "/", "/ui/app.js", "/ui/app.css"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than this server's limit max_body_bytes={limit}")


class ServiceMiddleware:
    """API key, body-size limit and request metrics, as one pure ASGI layer (cheap per request)."""

    def __init__(self, app: ASGIApp, *, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.key = settings.api_key.encode() if settings.api_key else None
        self.limit = settings.max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status_holder = [500]
        head = scope.get("method") == "HEAD"
        if head:  # HEAD is GET without the body (RFC 9110 §9.3.2), on every GET route
            scope = dict(scope, method="GET")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            rejected = self._reject(scope)
            if rejected is not None:
                await rejected(scope, receive, send_wrapper)
                return
            seen = [0]

            async def receive_limited() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.limit:
                        raise BodyTooLarge(self.limit)
                return message

            if scope.get("method") in ("POST", "PUT", "PATCH") and _is_json(scope):
                try:
                    body = await _read_body(receive_limited)
                except BodyTooLarge:
                    await errors.error_response(413, "too_large", f"request body is larger than this server's limit "
                                                f"max_body_bytes={self.limit}", None,
                                                {"limit": "max_body_bytes", "value": self.limit})(scope, receive, send_wrapper)
                    return
                problem = _body_problem(body)
                if problem is not None:
                    status, code, message, field = problem
                    await errors.error_response(status, code, message, field)(scope, receive, send_wrapper)
                    return
                receive_limited = _replay(body, receive)
            await self.app(scope, receive_limited, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe_request(scope.get("method", ""), template, status_holder[0], time.perf_counter() - t0)

    def _reject(self, scope: Scope):
        headers = {}
        for k, v in scope.get("headers", ()):
            if k in (b"authorization", b"content-length"):
                headers[k] = v
        if self.key is not None and scope.get("path") not in PUBLIC_PATHS and scope.get("method") != "OPTIONS":
            auth = headers.get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                msg = "missing API key: send 'Authorization: Bearer <key>'" if not auth else "wrong API key"
                return errors.error_response(401, "unauthorized", msg, "authorization", headers={"WWW-Authenticate": "Bearer"})
        repeated = _repeated_query(scope.get("query_string", b""))
        if repeated is not None:
            return errors.error_response(422, "invalid_field", f"query parameter {repeated!r} is given more than once; "
                                         "give it once", repeated)
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return errors.error_response(400, "bad_request", "Content-Length is not a number", "content-length")
            if n > self.limit:
                return errors.error_response(413, "too_large", f"request body is {n} bytes, over this server's limit max_body_bytes={self.limit}",
                                             None, {"limit": "max_body_bytes", "value": self.limit})
        return None


def _is_json(scope: Scope) -> bool:
    for k, v in scope.get("headers", ()):
        if k == b"content-type":
            media = v.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body over once, then waits on the client (a
    disconnect still reaches the app)."""
    sent = [False]

    async def replay() -> Message:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


#: The deepest a request body may nest objects and lists: a hardware profile, the deepest body, nests 5 levels
#: (as YAML documents are bounded, planner.fileio); deeper bodies are refused before any route walks them.
MAX_BODY_DEPTH = 64


def _body_problem(body: bytes) -> tuple[int, str, str, str | None] | None:
    """(status, code, message, field) of a JSON body no route should see, or None (malformed JSON
    included: the route's own parser answers that):

    * one key stated twice in one object (``json.loads`` keeps the last silently: ``{"devices": 1,
      "devices": 2}`` would plan for 2) — 422 naming the key's path (``profile.memory.0.name``);
    * nesting deeper than :data:`MAX_BODY_DEPTH` — 400 ``malformed_json`` (at 500–980 levels a route's
      own recursion failed with an internal error);
    * a string or key holding a lone surrogate (``"\\ud800"``), which no UTF-8 text can store — 422 naming
      its path: inside a model config it was stored, and every later list of models failed."""
    try:
        doc = parse_document(body, "json")
    except DuplicateKeyError as exc:
        return 422, "invalid_field", f"{exc.path!r} is given more than once in one JSON object; give each key once", exc.path
    except NumberTooLongError as exc:
        return 422, "invalid_field", str(exc), exc.path
    except RecursionError:
        return 400, "malformed_json", f"request body is nested more than {MAX_BODY_DEPTH} levels deep", None
    except ValueError:
        return None
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_BODY_DEPTH:
            return 400, "malformed_json", f"request body is nested more than {MAX_BODY_DEPTH} levels deep", None
        if isinstance(value, str) and not _utf8(value):
            return 422, "invalid_field", f"{path or 'the body'!r}: {_SURROGATE}; got a string holding one", path or None
        if isinstance(value, dict):
            for k, v in value.items():
                sub = f"{path}.{_shown(k)}" if path else _shown(k)
                if not _utf8(k):
                    return 422, "invalid_field", f"{sub!r}: a key holding a lone surrogate; {_SURROGATE}", path or None
                stack.append((v, sub, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, f"{path}.{i}" if path else str(i), depth + 1) for i, v in enumerate(value))
    return None


_SURROGATE = "expected text without lone surrogates (such as \\ud800), which cannot be stored"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(key: str) -> str:
    """A key as it can be printed: a lone surrogate as its escape."""
    return key if _utf8(key) else key.encode("utf-8", "backslashreplace").decode("ascii", "replace")


def _repeated_query(query: bytes) -> str | None:
    """A query parameter given twice (``?format=vllm&format=hf``: every parameter of this API
    takes one value, and the last would win silently)."""
    if not query:
        return None
    seen: set[str] = set()
    for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if k in seen:
            return k
        seen.add(k)
    return None


def _query_names(dependant: object) -> set[str]:
    names = {p.alias for p in getattr(dependant, "query_params", ())}
    for sub in getattr(dependant, "dependencies", ()):
        names |= _query_names(sub)
    return names


async def _known_query(request: Request) -> None:
    """A query parameter the route does not take is refused (422 naming it, with the route's own),
    as an unknown body field is: ``?fromat=json`` would otherwise export the default format."""
    if not request.query_params or not request.url.path.startswith("/v1/"):
        return  # the page, its files, /healthz and /docs take what browsers and probes add
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = getattr(route, "_tierwise_query_names", None)
    if known is None:  # once per route: the walk of its dependencies is not redone per request
        known = sorted(_query_names(dependant))
        route._tierwise_query_names = known
    for key in request.query_params:
        if key not in known:
            close = difflib.get_close_matches(key.lower(), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise errors.ApiError(422, "invalid_field", f"unknown query parameter {key!r}{hint}; {takes}", key)


def _server_limits(schema: dict, settings: Settings) -> None:
    """Write this server's limits into the request schemas (``time_limit_s`` at most
    ``solve_time_limit_s``; device counts at most ``max_devices``), so that the schema says
    what the server accepts."""
    bounds = {"time_limit_s": settings.solve_time_limit_s, "devices": settings.max_devices,
              "max_devices": settings.max_devices}
    for name, model in schema.get("components", {}).get("schemas", {}).items():
        if not name.endswith("Create"):
            continue
        for prop, limit in bounds.items():
            spec = model.get("properties", {}).get(prop)
            for branch in (spec.get("anyOf") or [spec]) if spec else ():
                if branch.get("type") in ("number", "integer") and branch.get("maximum", limit + 1) > limit:
                    branch["maximum"] = limit
                    branch.pop("exclusiveMaximum", None)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. ``settings`` default to :meth:`Settings.from_env`."""
    settings = settings or Settings.from_env()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.database_url, lease_s=settings.job_lease_s)
        catalog = Catalog(store)
        runner = JobRunner(store, catalog, metrics, settings)
        app.state.store, app.state.catalog, app.state.runner = store, catalog, runner
        # Import the planner and read the catalog listings now, so that the first requests
        # (including ones refused at once) do not pay for module imports.
        import planner.capacity  # noqa: F401
        import planner.search  # noqa: F401
        from api.services import catalog_devices, catalog_models

        catalog_devices(), catalog_models()
        resumed = runner.resume()
        if resumed:
            log.info("resumed %d unfinished jobs of a server that stopped", resumed)
        # The catalogs, the cost model's caches and the app itself live for the whole
        # process: move them out of the collector's reach so that garbage-collection
        # pauses scale with per-request garbage only (they set the latency tail).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            runner.shutdown()
            store.close()

    from planner.plan import tool_version

    app = FastAPI(
        title="Tierwise",
        version=tool_version(),
        description="Hardware-aware cost model and compression planner. Request fields use the CLI's flag names in snake_case.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: api/routes/docs.py, with their scripts served here
        redoc_url=None,
        dependencies=[Depends(_known_query)],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    errors.install(app)

    from api.routes import docs, engines, estimate, hardware, health, jobs, metrics as metrics_routes, models, plans, ui

    for module in (health, metrics_routes, hardware, models, engines, estimate, plans, jobs, ui, docs):
        app.include_router(module.router)
    try:
        from api.routes import capacity
    except ImportError:  # the capacity planner is optional in partial installs
        capacity = None
    if capacity is not None:
        app.include_router(capacity.router)

    app.add_middleware(ServiceMiddleware, settings=settings, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer", "description": "needed on every route but /healthz when TIERWISE_API_KEY is set"}
        _server_limits(schema, settings)
        if settings.api_key:
            for path, ops in schema.get("paths", {}).items():
                if path in PUBLIC_PATHS:
                    continue
                for op in ops.values():
                    op["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
