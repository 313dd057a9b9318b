"""One APIRouter per resource. ``ERRORS`` documents the error statuses every route may return."""

from __future__ import annotations

from api.schemas import ErrorPublic


def errors(*statuses: int) -> dict:
    text = {
        400: "Malformed request (body is not JSON)",
        401: "Missing or wrong API key",
        404: "Unknown id",
        409: "Duplicate id",
        413: "Request body too large",
        422: "Invalid field (the error names it) or a request over the server's limits",
        503: "Service busy",
    }
    return {s: {"model": ErrorPublic, "description": text[s]} for s in statuses}


#: Statuses any protected route can return.
COMMON = errors(400, 401, 413, 422)
