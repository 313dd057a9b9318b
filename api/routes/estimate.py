"""``POST /v1/estimate``: the cost of one configuration, as ``tierwise estimate --json``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import CatalogDep
from api.routes import COMMON, errors
from api.schemas import EstimateCreate, EstimatePublic
from api.services import estimate

router = APIRouter(prefix="/v1", tags=["estimate"])


@router.post("/estimate", response_model=EstimatePublic, responses={**COMMON, **errors(404)})
def post_estimate(body: EstimateCreate, catalog: CatalogDep) -> Response:
    # The estimate is already JSON (cached bytes): send it as is rather than re-validating
    # a large nested document on every request.
    return Response(content=estimate(catalog, body.model_dump()), media_type="application/json")
