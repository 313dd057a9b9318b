"""``/v1/hardware``: the catalog plus custom profiles registered through the API."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CatalogDep, StoreDep
from api.routes import COMMON, errors
from api.schemas import HardwareCreate, HardwareList, HardwarePublic
from api.services import catalog_devices, hardware_public, hardware_summary, register_hardware

router = APIRouter(prefix="/v1/hardware", tags=["hardware"])


@router.get("", response_model=HardwareList, response_model_by_alias=True, responses=COMMON)
def list_hardware(catalog: CatalogDep, store: StoreDep) -> dict:
    from hwmodels import load_device

    items = [hardware_summary(load_device(i), custom=False) for i in sorted(catalog_devices())]
    items += [hardware_summary(catalog.device(r.id), custom=True) for r in store.list_hardware()]
    return {"items": items}


@router.get("/{hardware_id}", response_model=HardwarePublic, response_model_by_alias=True, responses={**COMMON, **errors(404)})
def get_hardware(hardware_id: str, catalog: CatalogDep) -> dict:
    dev = catalog.device(hardware_id)
    return hardware_public(dev, custom=catalog.is_custom_device(hardware_id))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=HardwarePublic, response_model_by_alias=True,
             responses={**COMMON, **errors(409)})
def create_hardware(body: HardwareCreate, catalog: CatalogDep, store: StoreDep) -> dict:
    """Register a custom hardware profile (validated like a profile file), then use its id anywhere."""
    return register_hardware(store, catalog, body.profile, body.yaml)


