"""``/v1/plans``: solve, store, list, fetch, delete and export plans.

``POST /v1/plans`` commits a job, starts the solve in a worker thread and waits up to
``sync_wait_s``: a finished solve answers 201 with the stored plan; a longer one answers
202 with the job's URL (``GET /v1/jobs/{id}``), and the plan is stored when it finishes.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.db import PlanRow, new_id
from api.deps import CatalogDep, RunnerDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.routes import COMMON, errors
from api.routes.jobs import job_public
from api.schemas import ExportPublic, JobPublic, PlanCreate, PlanPage, PlanPublic
from api.services import check_plan_limits, domain_errors, export_context

router = APIRouter(prefix="/v1/plans", tags=["plans"])

ExportFormat = Literal["vllm", "compressed-tensors", "hf", "modelopt-mixed", "trtllm", "llamacpp", "megatron", "yaml", "json"]


def plan_public(row: PlanRow) -> dict:
    return {"id": row.id, "created_at": row.created_at.isoformat(), "plan": row.body}


def _not_found(plan_id: str) -> ApiError:
    return ApiError(404, "not_found", f"unknown plan id {plan_id!r} (GET /v1/plans lists them)", "plan_id")


@router.post(
    "",
    status_code=201,
    response_model=PlanPublic,
    responses={**COMMON, **errors(404, 409, 503), 202: {"model": JobPublic, "description": "Solve still running: poll the job"}},
)
async def create_plan(body: PlanCreate, store: StoreDep, catalog: CatalogDep, runner: RunnerDep, settings: SettingsDep) -> Response:
    req = body.model_dump()
    await run_in_threadpool(check_plan_limits, catalog, settings, req)
    req["id"] = body.id or new_id()
    if body.id and await run_in_threadpool(store.plan_exists, body.id):
        raise ApiError(409, "duplicate_id", f"plan id {body.id!r} already exists", "id")
    if await run_in_threadpool(store.count_unfinished_jobs) >= settings.max_pending_jobs:
        raise ApiError(503, "busy", f"{settings.max_pending_jobs} solves are already queued; retry later", None)
    job_id = new_id()
    await run_in_threadpool(store.add_job, id=job_id, kind="plan", request=req)
    fut = runner.submit(job_id, req)
    try:
        plan_id = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout=settings.sync_wait_s)
    except asyncio.TimeoutError:
        job = await run_in_threadpool(store.get_job, job_id)
        return JSONResponse(job_public(job), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})
    row = await run_in_threadpool(store.get_plan, plan_id)
    return JSONResponse(plan_public(row), status_code=201, headers={"Location": f"/v1/plans/{plan_id}"})


@router.get("", response_model=PlanPage, responses=COMMON)
def list_plans(
    store: StoreDep,
    model: str | None = Query(default=None, max_length=64, description="only plans for this model id"),
    hardware: str | None = Query(default=None, max_length=64, description="only plans for this hardware id"),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> dict:
    total, rows = store.list_plans(model=model, hardware=hardware, limit=limit, offset=offset)
    items = [{"id": r.id, "model": r.model, "hardware": r.hardware, "created_at": r.created_at.isoformat(), "checksum": r.checksum}
             for r in rows]
    nxt = offset + len(rows)
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt if nxt < total else None}


@router.get("/{plan_id}", response_model=PlanPublic, responses={**COMMON, **errors(404)})
def get_plan(plan_id: str, store: StoreDep) -> dict:
    row = store.get_plan(plan_id)
    if row is None:
        raise _not_found(plan_id)
    return plan_public(row)


@router.delete("/{plan_id}", status_code=204, response_class=Response, responses={**COMMON, **errors(404)})
def delete_plan(plan_id: str, store: StoreDep) -> Response:
    if not store.delete_plan(plan_id):
        raise _not_found(plan_id)
    return Response(status_code=204)


@router.get("/{plan_id}/export", response_model=ExportPublic, responses={**COMMON, **errors(404)})
def export(plan_id: str, store: StoreDep, catalog: CatalogDep, format: ExportFormat = Query(description="export target")) -> dict:
    from planner.export import export_plan

    row = store.get_plan(plan_id)
    if row is None:
        raise _not_found(plan_id)
    ctx = export_context(catalog, row.body)
    with domain_errors():
        out = export_plan(row.body, format, ctx)
    return {"plan_id": plan_id, **out.to_dict()}
