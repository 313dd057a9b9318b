"""``/v1/jobs/{id}``: status of a background job (plan solve or capacity search), its plan
or result when done, and ``DELETE`` to cancel it. :func:`start_job` is how the plan and
capacity routes admit a job and wait a little for it."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.db import DuplicateIdError, JobRow, QueueFullError, iso_utc, new_id
from api.deps import RunnerDep, StoreDep
from api.errors import ApiError
from api.routes import COMMON, errors
from api.schemas import JobPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_public(job: JobRow) -> dict:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "url": f"/v1/jobs/{job.id}",
        # the plan's id from the start (the client's or the server's): reserved while the job is queued or running,
        # stored when it succeeds, released when it fails or is cancelled
        "plan_id": job.plan_id or ((job.request or {}).get("id")
                                   if job.kind == "plan" and job.status in ("queued", "running") else None),
        "plan_url": f"/v1/plans/{job.plan_id}" if job.plan_id else None,
        "result": job.result,
        "error": job.error,
        "solve_s": job.solve_s,
        "created_at": iso_utc(job.created_at),
        "updated_at": iso_utc(job.updated_at),
    }


def client_of(request: Request) -> str:
    """Who a job belongs to, for queue fairness: the peer address."""
    return request.client.host if request.client else "-"


async def start_job(request: Request, *, store, runner, settings, kind: str, body: dict,
                    plan_id: str | None = None, cancel_on_disconnect: bool = False):
    """Admit a job (409 for a taken plan id, 503 with ``Retry-After`` when the queue is full),
    queue it and wait up to ``sync_wait_s``. Returns ``(job_id, final_status | None,
    http_status_of_a_failure)``; with ``cancel_on_disconnect`` a client that leaves before the
    answer cancels the job (nobody else knows its id)."""
    job_id = new_id()
    try:
        await run_in_threadpool(store.admit_job, id=job_id, kind=kind, request=body, max_pending=settings.max_pending_jobs,
                                plan_id=plan_id, client=client_of(request))
    except DuplicateIdError:
        raise ApiError(409, "duplicate_id", f"plan id {plan_id!r} already exists (stored, or a request for it is running)", "id") from None
    except QueueFullError:
        raise ApiError(503, "busy", f"{settings.max_pending_jobs} jobs are already queued or running; retry later", None,
                       {"limit": "max_pending_jobs", "value": settings.max_pending_jobs},
                       headers={"Retry-After": str(settings.retry_after_s)}) from None
    job = runner.submit(job_id, kind, body, client_of(request))
    waiting = asyncio.wrap_future(job.done)
    end = time.monotonic() + settings.sync_wait_s
    while not waiting.done():
        left = end - time.monotonic()
        if left <= 0:
            break
        await asyncio.wait([waiting], timeout=min(left, 0.25))
        if cancel_on_disconnect and not waiting.done() and await request.is_disconnected():
            await run_in_threadpool(runner.cancel, job_id)
            break
    if waiting.done():
        return job_id, waiting.result(), job.http_status
    return job_id, None, None  # (the wrapper is left alone: cancelling it would cancel job.done)


def job_error(job: JobRow, status: int | None) -> ApiError:
    err = job.error or {"code": "internal", "message": "the job failed", "field": None}
    return ApiError(status or 422, err.get("code", "internal"), err.get("message", ""), err.get("field"), err.get("details"))


@router.get("/{job_id}", response_model=JobPublic, responses={**COMMON, **errors(404)})
def get_job(job_id: str, store: StoreDep) -> dict:
    job = store.get_job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"unknown job id {job_id!r}", "job_id")
    return job_public(job)


@router.delete("/{job_id}", response_model=JobPublic, responses={**COMMON, **errors(404, 409)})
def cancel_job(job_id: str, store: StoreDep, runner: RunnerDep) -> dict:
    """Cancel a queued or running job: it stops at its next deadline check, its worker is
    free at once, it is not resumed after a restart and stores nothing."""
    if not runner.cancel(job_id):
        job = store.get_job(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"unknown job id {job_id!r}", "job_id")
        raise ApiError(409, "job_finished", f"job {job_id!r} has already ended ({job.status})", "job_id")
    return job_public(store.get_job(job_id))
