"""``POST /v1/estimate``: the cost of one configuration, as ``tierwise estimate --json``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.deps import CatalogDep
from api.routes import COMMON, errors
from api.schemas import EstimateCreate, EstimatePublic
from api.services import estimate, estimate_cached

router = APIRouter(prefix="/v1", tags=["estimate"])


@router.post("/estimate", response_model=EstimatePublic, responses={**COMMON, **errors(404)})
async def post_estimate(body: EstimateCreate, catalog: CatalogDep) -> Response:
    # Estimates are pure and cached: a repeated one is a dictionary lookup, so the route
    # runs on the event loop instead of paying a thread hop; a new one (about a
    # millisecond of arithmetic) or a custom-id lookup goes to the thread pool.
    req = body.model_dump(exclude_none=True)  # fields left out take the request layer's defaults
    hit = estimate_cached(catalog, req)
    if hit is None:
        hit = await run_in_threadpool(estimate, catalog, req)
    # The estimate is already JSON bytes: send it as is rather than re-validating a
    # large nested document on every request.
    return Response(content=hit, media_type="application/json")
