"""Error responses with one stable shape: ``{"error": {"code", "message", "field"}}``.

Status codes: 400 malformed request, 401 missing/wrong API key, 404 unknown id,
409 duplicate id, 413 body too large, 422 invalid field (``field`` names it, dotted),
503 service busy. Planner exceptions are mapped here so routes stay thin.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("tierwise.api")


class ApiError(Exception):
    """An error to send as JSON. ``field`` is the request field at fault, if one is."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details
        self.headers = headers


def error_body(code: str, message: str, field: str | None = None, details: Any = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None, details: Any = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, field, details), status_code=status, headers=headers)


def not_found(kind: str, id: str, suggestions: list[str] | None = None) -> ApiError:
    msg = f"unknown {kind} id {id!r}"
    if suggestions:
        msg += "; did you mean " + ", ".join(suggestions) + "?"
    return ApiError(404, "not_found", msg, "id", {"suggestions": suggestions} if suggestions else None)


def _loc_to_field(loc: tuple | list) -> str | None:
    loc = list(loc)
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    parts = [str(p) for p in loc]
    # pydantic adds the union member tried ("int", "literal['max']") to the location: drop it
    parts = [p for p in parts if not (p.startswith(("function-", "literal[", "lax-or-strict", "constrained-")) or p in ("int", "str", "float", "bool", "dict", "list", "none"))]
    return ".".join(parts) or None


def _describe(err: dict) -> str:
    field = _loc_to_field(err.get("loc", ()))
    msg = err.get("msg", "invalid value")
    if err.get("type") == "extra_forbidden":
        return f"unknown field '{field}'; remove it (see /docs for the accepted fields)"
    if err.get("type") == "missing":
        return f"field '{field}' is required"
    got = err.get("input")
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"field '{field}': {msg}; got {shown}" if field else f"{msg}; got {shown}"


def map_exception(exc: BaseException) -> ApiError | None:
    """A planner/hwmodels exception → ApiError; None for unexpected exceptions."""
    from hwmodels import ProfileError, SpecError, UnknownIdError

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownIdError):
        kind = exc.catalog
        return ApiError(404, "not_found", str(exc).split(" (see `")[0], kind if kind in ("hardware", "model") else "id",
                        {"suggestions": exc.suggestions} if exc.suggestions else None)
    if isinstance(exc, ProfileError):
        return ApiError(422, "invalid_profile", str(exc), exc.field)
    if isinstance(exc, SpecError):
        return ApiError(422, "invalid_profile", str(exc), exc.field)
    try:
        from planner.arch import ModelConfigError

        if isinstance(exc, ModelConfigError):
            return ApiError(422, "invalid_model_config", str(exc), getattr(exc, "field", None))
    except ImportError:  # pragma: no cover - planner always ships arch
        pass
    from planner.costmodel import EstimateError
    from planner.formats import FormatError, SparsityError

    if isinstance(exc, EstimateError):
        return ApiError(422, "invalid_configuration", exc.message, exc.field)
    if isinstance(exc, (FormatError, SparsityError)):
        return ApiError(422, "invalid_format", str(exc), getattr(exc, "field", None))
    from planner.export import ExportError

    if isinstance(exc, ExportError):
        return ApiError(422, "export_unsupported", exc.message, exc.field)
    try:
        from planner.plan import PlanError

        if isinstance(exc, PlanError):
            return ApiError(422, "invalid_plan", str(exc), getattr(exc, "field", None))
    except ImportError:  # pragma: no cover
        pass
    for typ, status, code in _extra_types():
        if isinstance(exc, typ):
            return ApiError(status, code, getattr(exc, "message", None) or str(exc), getattr(exc, "field", None),
                            getattr(exc, "payload", None) or getattr(exc, "details", None))
    if isinstance(exc, (ValueError, KeyError)) and getattr(exc, "user_facing", False):
        return ApiError(422, "invalid_request", str(exc), getattr(exc, "field", None))
    return None


def _extra_types() -> list[tuple[type, int, str]]:
    """Planner modules that may be absent in a partial install map their errors here."""
    out: list[tuple[type, int, str]] = []
    for mod, names, status, code in (
        ("planner.diagnose", ("NoFeasiblePlanError",), 422, "infeasible"),
        ("planner.solver", ("InfeasibleError",), 422, "infeasible"),
        ("planner.solver", ("SolverError",), 422, "solver_failed"),
        ("planner.search", ("InfeasibleError", "PlanInfeasibleError", "NoFeasiblePlanError"), 422, "infeasible"),
        ("planner.search", ("SearchError",), 422, "invalid_request"),
        ("planner.capacity", ("CapacityError",), 422, "invalid_request"),
        ("planner.capacity", ("InfeasibleError", "NoFeasibleError"), 422, "infeasible"),
        ("planner.training", ("TrainingConfigError", "TrainingError"), 422, "invalid_configuration"),
        ("planner.parallel", ("ParallelError", "LayoutError"), 422, "invalid_configuration"),
    ):
        try:
            module = __import__(mod, fromlist=list(names))
        except ImportError:
            continue
        for n in names:
            typ = getattr(module, n, None)
            if isinstance(typ, type) and issubclass(typ, BaseException):
                out.append((typ, status, code))
    return out


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 lists only the first
    matching route's), with HEAD wherever GET is served."""
    from starlette.routing import Match

    scope = {**request.scope, "method": "GET"}
    methods: set[str] = set()
    for route in request.app.routes:
        if getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
            methods |= set(route.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        details = [{"field": _loc_to_field(e.get("loc", ())), "message": e.get("msg")} for e in errors[:20]]
        if first.get("type") == "json_invalid":
            return error_response(400, "malformed_json", "request body is not valid JSON: " + str(first.get("ctx", {}).get("error", "")), None)
        if _loc_to_field(first.get("loc", ())) is None and tuple(first.get("loc", ()))[:1] == ("body",):
            got = "nothing" if first.get("type") == "missing" else f"{type(first.get('input')).__name__} {str(first.get('input'))[:60]!r}"
            return error_response(422, "invalid_body", "the request body must be a JSON object (Content-Type: application/json) "
                                  f"with the fields listed at /docs; got {got}", None)
        return error_response(422, "invalid_field", _describe(first), _loc_to_field(first.get("loc", ())), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            return error_response(405, "method_not_allowed", f"{request.method} is not allowed here; use "
                                  + ", ".join(allowed), None, headers={"Allow": ", ".join(allowed)})
        # 400 comes from parsing the body (e.g. JSON nested too deeply for the parser)
        code = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                413: "too_large"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message = "request body could not be parsed as JSON (malformed, or nested too deeply)"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route; see /docs for the routes"
        return error_response(exc.status_code, code, message, None, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _other(_: Request, exc: Exception) -> JSONResponse:
        mapped = map_exception(exc)
        if mapped is not None:
            return error_response(mapped.status, mapped.code, mapped.message, mapped.field, mapped.details)
        log.exception("unexpected error")
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); the server log has the details")
