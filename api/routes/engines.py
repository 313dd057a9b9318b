"""``/v1/engines``: the engine profiles (vLLM, TensorRT-LLM, llama.cpp, ExecuTorch, ...) and
what each runs on a given hardware, as ``tierwise engines list|show --json`` gives them.

``GET /v1/engines`` lists every engine with the catalog hardware it runs on; with
``?hardware=ID`` (catalog or custom) only the engines that run there, and the hardware
class's default serving and training engine (``planner.engines.default_engine``, the one a
request without ``engine`` gets). ``GET /v1/engines/{id}`` is one engine's profile; with
``?hardware=ID`` also what it runs there (schemes, KV formats, sparsity, parallel
dimensions, runtime) and the formats a request that names no format gets on it: the
estimate's weight / activation / KV defaults and the weight formats a plan searches.
Engine ids are catalog ids only: the server never reads an engine file a client names.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from api.deps import CatalogDep
from api.errors import ApiError
from api.routes import COMMON, errors
from api.schemas import ID_PATTERN, _Out
from api.services import domain_errors

router = APIRouter(prefix="/v1/engines", tags=["engines"])

HardwareQuery = Query(default=None, max_length=64, pattern=ID_PATTERN,
                      description="a catalog or custom hardware id: only what runs there, and its defaults")
ModelQuery = Query(default=None, max_length=64, pattern=ID_PATTERN,
                   description="with hardware: a catalog or custom model id, whose family the defaults run (a CNN on a "
                               "CPU gets hf-transformers, not llama.cpp)")


class EngineSummary(_Out):
    id: str
    name: str
    kind: str
    version: str
    exporter: str
    parallel: list[str]
    default_for: list[str]
    default_for_training: list[str]
    families: list[str]  # model families it runs (planner.archspec.FAMILIES)
    low_rank: bool = False  # runs low-rank factorised layers (low_rank, pins with @rRANK)
    model_types: list[str] = []  # Hugging Face model_types it builds; empty: every model of its families
    activation_smoothing: float | None = None  # SmoothQuant strength of its int8-activation recipe; None: none
    activation_blocks: dict[str, int] = {}  # weight format → features per int8 activation scale; empty: per token
    runs_on: list[str]
    zero: list[int] | None = None  # training engines: the ZeRO stages their sharding offers
    attention: list[str] | None = None  # training engines: the attention kernels they have (--attention)
    optimizers: list[str] | None = None  # training engines: the optimizers they have (--optimizer)
    microbatch_overhead_s: float | None = None  # training engines: fitted time per micro-batch beyond the kernels


class EngineList(_Out):
    items: list[EngineSummary]
    hardware: str | None = None
    model: str | None = None
    default: str | None = None
    default_training: str | None = None


class EngineDefaults(_Out):
    weights: str
    activations: str
    kv: str | None = None


class EnginePublic(EngineSummary):
    sources: dict[str, str]
    runtime: dict[str, Any]
    support: dict[str, Any] | None = None
    defaults: EngineDefaults | None = None
    plan_formats: list[str] | None = None


def _runs_on(spec: Any) -> list[str]:
    from planner.engines import hardware_for

    return hardware_for(spec)


def _summary(spec: Any) -> dict:
    from planner.cli.engines import engine_summary

    return {**engine_summary(spec), "runs_on": _runs_on(spec)}


def _default_id(dev: Any, *, training: bool, family: str | None = None) -> str | None:
    from planner.engines import EngineSupportError, default_engine

    try:
        return default_engine(dev, training=training, kind=family).id
    except EngineSupportError:  # a class with no engine for this (training on a phone)
        return None


def _engine(engine_id: str) -> Any:
    """A catalog engine by id (never a path: ids are checked against the listing first)."""
    import difflib

    from planner.engines import list_engines, load_engine

    known = list_engines()
    if engine_id not in known:
        close = difflib.get_close_matches(engine_id.strip().lower(), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ApiError(404, "not_found", f"unknown engine id {engine_id!r}{hint} (GET /v1/engines lists them)", "engine",
                       {"suggestions": close} if close else None)
    with domain_errors():
        return load_engine(engine_id)


@router.get("", response_model=EngineList, responses={**COMMON, **errors(404)})
def list_engines_route(catalog: CatalogDep, hardware: str | None = HardwareQuery, model: str | None = ModelQuery) -> dict:
    """Every engine profile, or with ``hardware`` the engines that run on it and its defaults; with ``model`` too,
    the defaults for that model's family, as a request naming that model and no engine gets them."""
    from planner.engines import list_engines, load_engine

    specs = [load_engine(e) for e in list_engines()]
    if hardware is None:
        if model is not None:
            raise ApiError(422, "invalid_field", "'model' picks the defaults on a hardware: give 'hardware' too", "model")
        return {"items": [_summary(s) for s in specs]}
    dev = catalog.device(hardware)
    family = None if model is None else catalog.arch(model).family
    return {
        "items": [_summary(s) for s in specs if s.support(dev) is not None],
        "hardware": dev.id,
        **({"model": model} if model is not None else {}),
        "default": _default_id(dev, training=False, family=family),
        "default_training": _default_id(dev, training=True, family=family),
    }


@router.get("/{engine_id}", response_model=EnginePublic, responses={**COMMON, **errors(404)})
def get_engine(engine_id: str, catalog: CatalogDep, hardware: str | None = HardwareQuery) -> dict:
    """One engine's profile; with ``hardware``, what it runs there and the formats a request
    that names none gets (422 ``engine_unsupported`` when it does not run there)."""
    from planner.cli.engines import support_summary

    spec = _engine(engine_id)
    rt = spec.runtime
    out: dict[str, Any] = {
        **_summary(spec), "sources": dict(spec.sources),
        "runtime": {k: getattr(rt, k) for k in rt.__dataclass_fields__},
    }
    if hardware is None:
        return out
    dev = catalog.device(hardware)
    with domain_errors():
        sup = _support(spec, dev)
        out["support"] = {**support_summary(sup), "weights": list(sup.weights), "activations": list(sup.activations)}
        out["defaults"], out["plan_formats"] = _defaults(sup, dev)
    return out


def _support(spec: Any, dev: Any) -> Any:
    from planner.engines import support

    return support(spec, dev, field="hardware")  # the engine is the path: the query's hardware is the choice


def _defaults(sup: Any, dev: Any) -> tuple[dict, list[str]]:
    """What a request that names no format gets with this engine on ``dev``: the estimate's
    weight / activation / KV formats (the request layer's own rule) and the weight formats
    a plan searches (the planner's default candidates the engine runs there)."""
    from planner.request.engine import engine_defaults
    from planner.request.estimate import native_16bit
    from planner.request.plan import _engine_formats  # the plan request's own default rule

    native = native_16bit(None, dev)
    v = engine_defaults(sup, {}, {"weights": native, "activations": native, "kv": native}, kv=True)
    formats, _ = _engine_formats(sup, dev, None, None)
    kv = v["kv"] if sup.kv else None
    return {"weights": v["weights"], "activations": v["activations"], "kv": kv}, list(formats)
