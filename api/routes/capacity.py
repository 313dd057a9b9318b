"""``POST /v1/capacity`` (serving) and ``POST /v1/capacity/train``: run as jobs like plans;
``POST /v1/capacity/frontier`` (the throughput-latency frontier) answers directly, under the
same time limit (``status: "time_limit"`` when it cut the search short), and a client that
leaves cancels it.

The search runs under one time limit (``time_limit_s``, capped by the server's
``solve_time_limit_s``) and stops there, answering with what it searched (``status:
"time_limit"``). The route waits up to ``sync_wait_s``: a finished search answers 200 with
its result, a longer one 202 with the job (``GET /v1/jobs/{id}`` has ``result`` when done,
``DELETE`` cancels). A client that leaves before the answer cancels the search.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.deps import CatalogDep, RunnerDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.jobs import job_time_limit
from api.routes import COMMON, errors
from api.routes.jobs import job_error, job_public, start_job
from api.schemas import (
    CapacityCreate,
    CapacityPublic,
    FrontierCreate,
    FrontierPublic,
    JobPublic,
    TrainCapacityCreate,
    TrainCapacityFleetPublic,
    TrainCapacityPublic,
)
from api.services import check_capacity, frontier
from planner.deadline import Deadline
from planner.request.capacity import CapacityFrontierRequest, CapacityServeRequest, CapacityTrainRequest
from planner.request.fields import field_info

router = APIRouter(prefix="/v1", tags=["capacity"])

_ACCEPTED = {202: {"model": JobPublic, "description": "Search still running: poll the job (its 'result' when done)"}}


def _within_limits(req: dict, request_type: type, settings) -> dict:
    """``req`` with ``max_devices`` filled (the request layer's default, within this server's
    limit); 422 ``limit_exceeded`` for a value over the server's limits."""
    if "max_devices" not in req:
        req["max_devices"] = min(field_info(request_type)["max_devices"].default, settings.max_devices)
    if req["max_devices"] > settings.max_devices:
        raise ApiError(422, "limit_exceeded", f"'max_devices' {req['max_devices']} is over this server's limit "
                       f"max_devices={settings.max_devices}", "max_devices", {"limit": "max_devices", "value": settings.max_devices})
    tl = req.get("time_limit_s")
    if tl is not None and tl > settings.solve_time_limit_s:
        raise ApiError(422, "limit_exceeded", f"'time_limit_s' {tl:g} is over this server's limit "
                       f"solve_time_limit_s={settings.solve_time_limit_s:g}", "time_limit_s",
                       {"limit": "solve_time_limit_s", "value": settings.solve_time_limit_s})
    return req


async def _run(request: Request, kind: str, req: dict, catalog, store, runner, settings) -> Response:
    # what the search would refuse before it starts is refused here, before a job exists
    await run_in_threadpool(check_capacity, catalog, kind, req)
    job_id, status, http = await start_job(request, store=store, runner=runner, settings=settings, kind=kind,
                                           body=req, cancel_on_disconnect=True)
    job = await run_in_threadpool(store.get_job, job_id)
    if status == "succeeded":
        return JSONResponse(job.result, status_code=200)
    if status == "failed":
        raise job_error(job, http)
    return JSONResponse(job_public(job), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})


@router.post("/capacity", response_model=CapacityPublic, responses={**COMMON, **errors(404, 503), **_ACCEPTED})
async def post_capacity(request: Request, body: CapacityCreate, catalog: CatalogDep, store: StoreDep, runner: RunnerDep,
                        settings: SettingsDep) -> Response:
    req = _within_limits(body.model_dump(exclude_none=True), CapacityServeRequest, settings)
    return await _run(request, "capacity", req, catalog, store, runner, settings)


@router.post("/capacity/train", response_model=TrainCapacityPublic | TrainCapacityFleetPublic, responses={**COMMON, **errors(404, 503), **_ACCEPTED})
async def post_train_capacity(request: Request, body: TrainCapacityCreate, catalog: CatalogDep, store: StoreDep,
                              runner: RunnerDep, settings: SettingsDep) -> Response:
    req = _within_limits(body.model_dump(exclude_none=True), CapacityTrainRequest, settings)
    return await _run(request, "capacity_train", req, catalog, store, runner, settings)


@router.post("/capacity/frontier", response_model=FrontierPublic, responses={**COMMON, **errors(404)})
async def post_frontier(request: Request, body: FrontierCreate, catalog: CatalogDep, settings: SettingsDep) -> Response:
    """Tokens/s per device against tokens/s per user, Pareto-filtered per (engine, hardware).
    The search stops at ``time_limit_s`` (at most, and by default, the server's
    ``solve_time_limit_s``), answering what it searched with ``status: "time_limit"``; a client
    that disconnects cancels it."""
    req = _within_limits(body.model_dump(exclude_none=True), CapacityFrontierRequest, settings)
    deadline = Deadline(job_time_limit(settings, req))
    work = asyncio.ensure_future(run_in_threadpool(frontier, catalog, req, deadline))
    while not work.done():
        await asyncio.wait([work], timeout=0.25)
        if not work.done() and await request.is_disconnected():
            deadline.cancel()  # the search stops at its next check; nobody reads the answer
            break
    return JSONResponse(await work, status_code=200)
