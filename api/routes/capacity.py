"""``POST /v1/capacity``: which hardware, and how many devices, serve a load within SLOs at least cost."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import CatalogDep, SettingsDep
from api.errors import ApiError
from api.routes import COMMON, errors
from api.schemas import CapacityCreate, CapacityPublic, TrainCapacityCreate, TrainCapacityPublic
from api.services import capacity, train_capacity

router = APIRouter(prefix="/v1", tags=["capacity"])


@router.post("/capacity", response_model=CapacityPublic, responses={**COMMON, **errors(404)})
async def post_capacity(body: CapacityCreate, catalog: CatalogDep, settings: SettingsDep) -> dict:
    if body.max_devices > settings.max_devices:
        raise ApiError(422, "limit_exceeded", f"'max_devices' {body.max_devices} is over this server's limit "
                       f"max_devices={settings.max_devices}", "max_devices", {"limit": "max_devices", "value": settings.max_devices})
    return await run_in_threadpool(capacity, catalog, body.model_dump())


@router.post("/capacity/train", response_model=TrainCapacityPublic, responses={**COMMON, **errors(404)})
async def post_train_capacity(body: TrainCapacityCreate, catalog: CatalogDep, settings: SettingsDep) -> dict:
    if body.max_devices > settings.max_devices:
        raise ApiError(422, "limit_exceeded", f"'max_devices' {body.max_devices} is over this server's limit "
                       f"max_devices={settings.max_devices}", "max_devices", {"limit": "max_devices", "value": settings.max_devices})
    return await run_in_threadpool(train_capacity, catalog, body.model_dump())
