"""``GET /healthz``: liveness and database reachability (never needs the API key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import StoreDep
from api.errors import ApiError
from api.routes import errors
from api.schemas import HealthPublic

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=HealthPublic, responses=errors(503))
async def healthz(store: StoreDep) -> dict:
    from planner.plan import tool_version

    try:
        await run_in_threadpool(store.ping)
    except Exception as exc:  # noqa: BLE001 - any database failure means not healthy
        raise ApiError(503, "database_unavailable", f"database not reachable: {type(exc).__name__}") from exc
    return {"status": "ok", "database": "ok", "version": tool_version()}
