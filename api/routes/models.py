"""``/v1/models``: the model catalog plus HF-style configs registered through the API."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CatalogDep, StoreDep
from api.routes import COMMON, errors
from api.schemas import ModelCreate, ModelList, ModelPublic
from api.services import catalog_models, model_public, register_model

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, responses=COMMON)
def list_models(catalog: CatalogDep, store: StoreDep) -> dict:
    items = [model_public(catalog.arch(m), custom=False) for m in sorted(catalog_models())]
    items += [model_public(catalog.arch(r.id), custom=True) for r in store.list_models()]
    return {"items": items}


@router.get("/{model_id}", response_model=ModelPublic, responses={**COMMON, **errors(404)})
def get_model(model_id: str, catalog: CatalogDep) -> dict:
    return model_public(catalog.arch(model_id), custom=model_id not in catalog_models())


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelPublic, responses={**COMMON, **errors(409)})
def create_model(body: ModelCreate, store: StoreDep) -> dict:
    """Register an HF-style config (``config.json`` contents) under ``id``."""
    return register_model(store, body.id, body.config, body.yaml)
