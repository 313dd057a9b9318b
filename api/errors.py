"""Error responses with one stable shape: ``{"error": {"code", "message", "field"}}``.

Status codes: 400 malformed request, 401 missing/wrong API key, 404 unknown id,
409 duplicate id, 413 body too large, 422 invalid field (``field`` names it, dotted),
503 service busy. Every user-facing error is a ``TierwiseError``: its ``kind`` gives the status,
``code`` the code and ``render("rest")`` the message, so routes stay thin.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hwmodels.errors import TierwiseError, close_ids, per_front_end
from planner.request.fields import EXPECTED_BY_ERROR

log = logging.getLogger("tierwise.api")


_KIND_OF_STATUS = {404: "not_found", 409: "conflict", 503: "unavailable"}


class ApiError(TierwiseError):
    """An error to send as JSON with an explicit HTTP ``status``. ``field`` is the request
    field at fault, if one is. Like every user-facing error it is a :class:`TierwiseError`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        # ``message`` is final REST text (often a TierwiseError already rendered): kept as written, so
        # an echoed value such as '{@kv_budget}' is not read as a field token a second time
        super().__init__(per_front_end(message, message), field=field, code=code, details=details,
                         kind=_KIND_OF_STATUS.get(status, "bad_input"))
        self.status = status
        self.headers = headers

    @property
    def http_status(self) -> int:
        return self.status


#: An echoed value in an error keeps this many characters: an unbroken run of text (a field
#: name, an id, a format) or a quoted value, cut with an ellipsis; a whole message at most
#: ``_MESSAGE_MAX``. A request's input is never sent back at its full size.
_ECHO_MAX = 120
_MESSAGE_MAX = 4000
# a quoted value opens after a space or bracket and closes before one ("'tp' 2 needs … 'tp' 1"
# is two short values, not one long one)
_LONG = re.compile(r"(?<![\w'])'[^'\n]{%d,}'(?!\w)|(?<![\w\"])\"[^\"\n]{%d,}\"(?!\w)|\S{%d,}"
                   % (_ECHO_MAX, _ECHO_MAX, _ECHO_MAX + 1))


def _cut(match: re.Match) -> str:
    text = match.group(0)
    tail = re.search(r"[^\w\s]{0,3}$", text).group(0)  # a closing quote, bracket or stop
    return text[:_ECHO_MAX - 20] + "…" + tail


def bounded(value: Any) -> Any:
    """``value`` with every long echo of input cut (strings, keys and items of mappings and
    lists, recursively): what every error body is built from."""
    if isinstance(value, str):
        text = _LONG.sub(_cut, value)
        return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX - 1] + "…"
    if isinstance(value, dict):
        return {bounded(k): bounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(v) for v in value]
    return value


def error_body(code: str, message: str, field: str | None = None, details: Any = None) -> dict:
    """The error document; input echoed in ``message``, ``field`` or ``details`` is cut to a
    bounded length (:func:`bounded`)."""
    body: dict[str, Any] = {"code": code, "message": bounded(message), "field": bounded(field)}
    if details is not None:
        body["details"] = bounded(details)
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None, details: Any = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, field, details), status_code=status, headers=headers)


def not_found(kind: str, id: str, suggestions: list[str] | None = None) -> ApiError:
    msg = f"unknown {kind} id {id!r}"
    if suggestions:
        msg += "; did you mean " + ", ".join(suggestions) + "?"
    return ApiError(404, "not_found", msg, "id", {"suggestions": suggestions} if suggestions else None)


def _is_member(part: Any) -> bool:
    """Whether a location part is the union member pydantic tried ("int", "constrained-str",
    "list[constrained-str]", "literal['max']"), not a field name or an index."""
    p = str(part)
    return (p.startswith(("function-", "literal[", "lax-or-strict", "constrained-"))
            or p in ("int", "str", "float", "bool", "dict", "list", "none")
            or re.fullmatch(r"(list|dict|set|tuple|frozenset)\[.*\]", p) is not None)


def _loc_to_field(loc: tuple | list) -> str | None:
    loc = list(loc)
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    # pydantic adds the union member tried to the location: drop it
    return ".".join(str(p) for p in loc if not _is_member(p)) or None


def _member(err: dict) -> str:
    """The union member an error is about ('' when the field is no union)."""
    return next((str(p) for p in reversed(err.get("loc", ())) if _is_member(p)), "")


_MEMBER_OF_TYPE = {list: ("list", "list["), dict: ("dict", "dict["), str: ("str", "constrained-str", "literal["),
                   bool: ("bool",), int: ("int", "constrained-int", "float", "constrained-float"),
                   float: ("float", "constrained-float", "int", "constrained-int")}


def _union_error(first: dict, errors: list[dict]) -> tuple[dict, list[str]]:
    """For a field of several types (an engine id or a list of ids), the error of the member the
    input has the type of ('engine': [] is a list that is too short, not "a string"), and the
    things the field expects when the input has none of the members' types (else [])."""
    if not _member(first):
        return first, []
    field = _loc_to_field(first.get("loc", ()))
    alternatives = [e for e in errors if _member(e) and _loc_to_field(e.get("loc", ())) == field]
    kinds = _MEMBER_OF_TYPE.get(type(first.get("input")), ())
    same = [e for e in alternatives if _member(e).startswith(kinds)] if kinds else []
    if same:
        return same[0], []
    expected = [EXPECTED_BY_ERROR[e["type"]] for e in alternatives if e.get("type") in EXPECTED_BY_ERROR]
    return first, list(dict.fromkeys(expected)) if len(expected) > 1 else []


def _body_fields(request: Request | None) -> list[str]:
    """The top-level fields the route's JSON body accepts (none when it has no model body)."""
    route = request.scope.get("route") if request is not None else None
    model = getattr(getattr(getattr(route, "body_field", None), "field_info", None), "annotation", None)
    return list(getattr(model, "model_fields", None) or {})


def _catalog_ids(field: str) -> list[str]:
    """The catalog's ids for an id field ('VLLM' fails the id pattern before any lookup)."""
    if field == "engine":
        from planner.engines import list_engines

        return list_engines()
    if field == "hardware":
        from hwmodels import list_devices

        return list_devices()
    from planner.arch import list_models

    return list_models()


def _suggestions(err: dict, request: Request | None) -> list[str]:
    """Close spellings for a mistyped field name or choice ('bacth' → batch, 'vlm' → vllm)."""
    loc, kind, given = tuple(err.get("loc", ())), err.get("type"), err.get("input")
    if kind == "extra_forbidden" and len(loc) == 2 and loc[0] == "body":
        typed, known = str(loc[1]), _body_fields(request)
    elif kind in ("literal_error", "enum") and isinstance(given, str) and given.strip():
        typed, known = given, re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    elif kind == "string_pattern_mismatch" and isinstance(given, str) and loc[-1:] in (("model",), ("hardware",),
                                                                                      ("engine",)):
        typed, known = given, _catalog_ids(loc[-1])
    else:
        return []
    return [k for k in close_ids(typed, known, n=3) if k != typed]


def _as_json(value: object) -> str:
    """A request value as the caller wrote it in JSON (``true``, ``null``, ``["a"]``); a string keeps
    the quotes the other messages use (``'vlm'``)."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return repr(value)


def _describe(err: dict, suggestions: list[str] = (), request: Request | None = None, either: list[str] = ()) -> str:
    field = _loc_to_field(err.get("loc", ()))
    msg = err.get("msg", "invalid value")
    close = ", ".join(repr(s) for s in suggestions)
    if err.get("type") == "extra_forbidden":
        if close:
            return f"unknown field '{field}' (did you mean {close}?); rename or remove it (see /docs for the accepted fields)"
        return f"unknown field '{field}'; remove it (see /docs for the accepted fields)"
    hint = f"; did you mean {close}?" if close else ""
    if err.get("type") == "missing":
        return f"field '{field}' is required"
    got = err.get("input")
    shown = _as_json(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    kind = err.get("type", "")
    expected = " or ".join(either) if either else EXPECTED_BY_ERROR.get(kind)
    if expected is not None:
        plain = f"expects {expected}{'' if either else _example(kind, field, request)}"
        return (f"field '{field}' {plain}; got {shown}" if field else f"{plain}; got {shown}") + hint
    ctx = err.get("ctx") or {}
    if kind in ("too_short", "too_long") and isinstance(ctx.get("min_length", ctx.get("max_length")), int):
        n = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
        msg = f"must have at {'least' if kind == 'too_short' else 'most'} {n} item{'s' if n != 1 else ''}"
    msg = re.sub(r"^Input should be ", "must be ", msg)  # pydantic's wording, said of the field
    text = f"field '{field}' {msg}; got {shown}" if field and msg.startswith("must ") else (
        f"field '{field}': {msg}; got {shown}" if field else f"{msg}; got {shown}")
    return text + hint


# Examples after the plain words of planner.request.fields.EXPECTED_BY_ERROR, in JSON.
_REST_EXAMPLES = {
    "float_parsing": " (e.g. 512, 0.5 or 2e12)", "float_type": " (e.g. 512, 0.5 or 2e12)",
    "int_parsing": " (e.g. 8)", "int_type": " (e.g. 8)", "int_from_float": " (e.g. 8), not a fraction",
    "dict_type": " ({...})",
}
#: A list field's example when its schema gives none.
_LIST_EXAMPLES = {"formats": ["bf16", "int8"], "sparsity": ["2:4"], "low_rank": [256, 512], "models":
                  ["llama-3.1-8b", "llama-3.2-1b"], "mix": [1, 3], "engine": ["vllm", "sglang"], "hardware": ["l4", "h100-sxm"]}


def _example(kind: str, field: str | None, request: Request | None) -> str:
    """' (e.g. …)' for an error of ``kind`` on ``field``: a list field's own example (its schema's,
    else a known one: hardware ids for 'hardware', not format names)."""
    if kind != "list_type":
        return _REST_EXAMPLES.get(kind, "")
    name = (field or "").split(".")[-1]
    route = request.scope.get("route") if request is not None else None
    model = getattr(getattr(getattr(route, "body_field", None), "field_info", None), "annotation", None)
    info = (getattr(model, "model_fields", None) or {}).get(name)
    given = [x for x in (getattr(info, "examples", None) or []) if isinstance(x, list)]
    example = given[0] if given else _LIST_EXAMPLES.get(name)
    return f" (e.g. {json.dumps(example)})" if example else ""


def map_exception(exc: BaseException) -> ApiError | None:
    """A user-facing error (any :class:`TierwiseError`) → ApiError; None for anything else,
    which is a bug and answers 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TierwiseError):
        return ApiError(exc.http_status, exc.code, exc.render("rest"), exc.field, exc.render_details("rest"))
    return None


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 lists only the first
    matching route's), with HEAD wherever GET is served. Each method is tried through the
    routes' own ``matches`` (a full match is a route for that path and method), which also
    sees into included routers (FastAPI ≥ 0.120 wraps them: no ``methods`` of their own)."""
    from starlette.routing import Match

    methods = {m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
               if any(route.matches({**request.scope, "method": m})[0] == Match.FULL for route in request.app.routes)}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(TierwiseError)
    async def _tierwise_error(_: Request, exc: TierwiseError) -> JSONResponse:
        mapped = map_exception(exc)
        return error_response(mapped.status, mapped.code, mapped.message, mapped.field, mapped.details,
                              headers=getattr(mapped, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A mistyped field name is reported first: the "missing" error of the field it was
        # meant to be ('ttft_slo' for ttft_slo_s) is its consequence.
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        first = errors[0] if errors else {}
        details = [{"field": _loc_to_field(e.get("loc", ())), "message": e.get("msg")} for e in errors[:20]]
        if first.get("type") == "json_invalid":
            return error_response(400, "malformed_json", "request body is not valid JSON: " + str(first.get("ctx", {}).get("error", "")), None)
        if first.get("type") == "value_error" and tuple(first.get("loc", ())) == ("body",):
            # a rule across fields ("give exactly one of 'config' or 'yaml'"): its own words, naming
            # the first field it names
            said = str(first.get("ctx", {}).get("error", "")) or str(first.get("msg", ""))
            named = re.search(r"'([a-z_]+)'", said)
            return error_response(422, "invalid_field", said, named.group(1) if named else None)
        if _loc_to_field(first.get("loc", ())) is None and tuple(first.get("loc", ()))[:1] == ("body",):
            given = first.get("input")
            kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
                    type(None): "null"}.get(type(given), "a value")
            got = ("nothing" if first.get("type") == "missing" else "null" if given is None
                   else f"{kind}, {_as_json(given)[:60]}")
            if isinstance(given, (bytes, bytearray)):
                # not parsed as JSON at all: the body came with another Content-Type (text/plain, a form)
                ctype = request.headers.get("content-type") or "none"
                return error_response(422, "invalid_body", "the request body must be sent as JSON: give the header "
                                      f"Content-Type: application/json; got Content-Type {ctype!r}", None)
            return error_response(422, "invalid_body", "the request body must be a JSON object (Content-Type: application/json) "
                                  f"with the fields listed at /docs; got {got}", None)
        first, either = _union_error(first, errors)
        close = _suggestions(first, request)
        if close and details:
            details[0]["suggestions"] = close
        return error_response(422, "invalid_field", _describe(first, close, request, either),
                              _loc_to_field(first.get("loc", ())), details)

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
