"""``GET /v1/jobs/{id}``: status of a background solve, and its plan when done."""

from __future__ import annotations

from fastapi import APIRouter

from api.db import JobRow
from api.deps import StoreDep
from api.errors import ApiError
from api.routes import COMMON, errors
from api.schemas import JobPublic

router = APIRouter(prefix="/v1/jobs", tags=["plans"])


def job_public(job: JobRow) -> dict:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "url": f"/v1/jobs/{job.id}",
        "plan_id": job.plan_id,
        "plan_url": f"/v1/plans/{job.plan_id}" if job.plan_id else None,
        "error": job.error,
        "solve_s": job.solve_s,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


@router.get("/{job_id}", response_model=JobPublic, responses={**COMMON, **errors(404)})
def get_job(job_id: str, store: StoreDep) -> dict:
    job = store.get_job(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"unknown job id {job_id!r}", "job_id")
    return job_public(job)
