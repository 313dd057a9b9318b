"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from api.deps import MetricsDep, StoreDep
from api.routes import COMMON

router = APIRouter(tags=["service"])


@router.get("/metrics", response_class=PlainTextResponse, responses={**COMMON, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(m: MetricsDep, store: StoreDep) -> PlainTextResponse:
    pending = await run_in_threadpool(store.count_unfinished_jobs)
    return PlainTextResponse(m.render(pending_jobs=pending), media_type="text/plain; version=0.0.4; charset=utf-8")
