"""``/v1/plans``: solve, store, list, fetch, delete and export plans.

``POST /v1/plans`` first checks the request (the service's limits and every field, as the
solve would before it starts: invalid input answers 4xx at once and makes no job), then commits a job, starts the solve in a worker thread and waits up to
``sync_wait_s``: a finished solve answers 201 with the stored plan; a longer one answers
202 with the job's URL (``GET /v1/jobs/{id}``; ``DELETE`` cancels it), and the plan is
stored when it finishes. The plan id is reserved when the job is admitted (one
transaction, unique key), so of concurrent requests for one id exactly one is accepted.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.db import PlanRow, iso_utc, new_id
from api.deps import CatalogDep, RunnerDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.routes import COMMON, errors
from api.routes.jobs import job_error, job_public, start_job
from api.schemas import ExportPublic, JobPublic, PlanCreate, PlanPage, PlanPublic
from api.services import check_plan, domain_errors, export_context

router = APIRouter(prefix="/v1/plans", tags=["plans"])

ExportFormat = Literal["vllm", "compressed-tensors", "hf", "modelopt-mixed", "trtllm", "sglang", "llamacpp", "megatron", "executorch", "mlc",
                       "yaml", "json"]


def plan_public(row: PlanRow) -> dict:
    return {"id": row.id, "created_at": iso_utc(row.created_at), "plan": row.body}


def _not_found(plan_id: str) -> ApiError:
    return ApiError(404, "not_found", f"unknown plan id {plan_id!r} (GET /v1/plans lists them)", "plan_id")


@router.post(
    "",
    status_code=201,
    response_model=PlanPublic,
    responses={**COMMON, **errors(404, 409, 503), 202: {"model": JobPublic, "description": "Solve still running: poll the job"}},
)
async def create_plan(request: Request, body: PlanCreate, store: StoreDep, catalog: CatalogDep, runner: RunnerDep,
                      settings: SettingsDep) -> Response:
    req = body.model_dump()
    # what the solve would refuse before it starts is refused here, before a job exists
    await run_in_threadpool(check_plan, catalog, settings, req)
    req["id"] = body.id or new_id()
    job_id, status, http = await start_job(request, store=store, runner=runner, settings=settings, kind="plan",
                                           body=req, plan_id=req["id"])
    job = await run_in_threadpool(store.get_job, job_id)
    if status == "succeeded":
        row = await run_in_threadpool(store.get_plan, req["id"])
        return JSONResponse(plan_public(row), status_code=201, headers={"Location": f"/v1/plans/{req['id']}"})
    if status == "failed":
        raise job_error(job, http)
    return JSONResponse(job_public(job), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})


@router.get("", response_model=PlanPage, responses=COMMON)
def list_plans(
    store: StoreDep,
    model: str | None = Query(default=None, max_length=64, description="only plans for this model id"),
    hardware: str | None = Query(default=None, max_length=64, description="only plans for this hardware id"),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> dict:
    total, rows = store.list_plans(model=model, hardware=hardware, limit=limit, offset=offset)
    items = [{"id": r.id, "model": r.model, "hardware": r.hardware, "created_at": iso_utc(r.created_at), "checksum": r.checksum}
             for r in rows]
    nxt = offset + len(rows)
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt if nxt < total else None}


def _stored(store: StoreDep, plan_id: str) -> PlanRow:
    """The stored plan, its body checked against its checksum: a body changed since it was
    written (by hand in the database, or a damaged row) is refused, 422 ``invalid_plan`` naming
    ``checksum``, rather than served or exported as a solved plan."""
    from planner.plan import plan_from_dict

    row = store.get_plan(plan_id)
    if row is None:
        job = store.job_of_plan_id(plan_id)
        if job is not None:  # a client that left its POST can find the solve that will store it
            raise ApiError(404, "not_found", f"plan {plan_id!r} is not stored yet: it is being solved (job "
                           f"{job.status}; poll /v1/jobs/{job.id})", "plan_id",
                           {"job_id": job.id, "job_url": f"/v1/jobs/{job.id}", "status": job.status})
        raise _not_found(plan_id)
    with domain_errors():
        plan_from_dict(row.body, require_checksum=True)
    return row


@router.get("/{plan_id}", response_model=PlanPublic, responses={**COMMON, **errors(404)})
def get_plan(plan_id: str, store: StoreDep) -> dict:
    return plan_public(_stored(store, plan_id))


@router.delete("/{plan_id}", status_code=204, response_class=Response, responses={**COMMON, **errors(404)})
def delete_plan(plan_id: str, store: StoreDep) -> Response:
    if not store.delete_plan(plan_id):
        raise _not_found(plan_id)
    return Response(status_code=204)


@router.get("/{plan_id}/export", response_model=ExportPublic, responses={**COMMON, **errors(404)})
def export(plan_id: str, store: StoreDep, catalog: CatalogDep,
           format: ExportFormat | None = Query(None, description="export target (default: the exporter of `engine`, else "
                                                                 "of the engine the plan was made for)"),
           engine: str | None = Query(None, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$",
                                      description="engine the files are for (catalog id; default: the plan's)")) -> dict:
    from planner.export import export_plan

    row = _stored(store, plan_id)  # what was stored is what gets exported
    ctx = export_context(catalog, row.body)
    with domain_errors():
        out = export_plan(row.body, format, ctx, engine=engine)
    return {"plan_id": plan_id, **out.to_dict()}
