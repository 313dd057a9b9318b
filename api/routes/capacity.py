"""``POST /v1/capacity``: which hardware, and how many devices, serve a load within SLOs at least cost."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import CatalogDep, SettingsDep
from api.errors import ApiError
from api.routes import COMMON, errors
from api.schemas import CapacityCreate, CapacityPublic, TrainCapacityCreate, TrainCapacityPublic
from api.services import capacity, train_capacity
from planner.request.capacity import CapacityServeRequest, CapacityTrainRequest
from planner.request.fields import field_info

router = APIRouter(prefix="/v1", tags=["capacity"])


@router.post("/capacity", response_model=CapacityPublic, responses={**COMMON, **errors(404)})
async def post_capacity(body: CapacityCreate, catalog: CatalogDep, settings: SettingsDep) -> dict:
    req = body.model_dump(exclude_none=True)
    if "max_devices" not in req:  # the request layer's default, within this server's limit
        req["max_devices"] = min(field_info(CapacityServeRequest)["max_devices"].default, settings.max_devices)
    if req["max_devices"] > settings.max_devices:
        raise ApiError(422, "limit_exceeded", f"'max_devices' {req['max_devices']} is over this server's limit "
                       f"max_devices={settings.max_devices}", "max_devices", {"limit": "max_devices", "value": settings.max_devices})
    return await run_in_threadpool(capacity, catalog, req)


@router.post("/capacity/train", response_model=TrainCapacityPublic, responses={**COMMON, **errors(404)})
async def post_train_capacity(body: TrainCapacityCreate, catalog: CatalogDep, settings: SettingsDep) -> dict:
    req = body.model_dump(exclude_none=True)
    if "max_devices" not in req:
        req["max_devices"] = min(field_info(CapacityTrainRequest)["max_devices"].default, settings.max_devices)
    if req["max_devices"] > settings.max_devices:
        raise ApiError(422, "limit_exceeded", f"'max_devices' {req['max_devices']} is over this server's limit "
                       f"max_devices={settings.max_devices}", "max_devices", {"limit": "max_devices", "value": settings.max_devices})
    return await run_in_threadpool(train_capacity, catalog, req)
