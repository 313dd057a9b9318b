"""Request (``XCreate``) and response (``XPublic``) models of the REST API.

Request bodies use the CLI's flag names in snake_case (a stable public contract) and
forbid unknown fields, so a typo is a 422 that names it instead of a silently ignored
option. Responses carry the same field names as the CLI's ``--json`` output; they allow
extra fields so the planner can add results without breaking clients.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

#: Ids of catalog entries, custom profiles and models: a bare name, never a path.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=64)]
#: An engine id of the catalog (vllm, trtllm, llamacpp, ...): no paths over REST.
EngineId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
#: A format name (bf16, int4-g128, fp8-e4m3, ...); checked against the format registry.
FormatName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9:._-]{0,31}$")]
#: A size: bytes as a number, or text such as "20GB", "24GiB", "1.5e9".
Size = Annotated[
    float | Annotated[str, StringConstraints(pattern=r"^\s*[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?\s*([kKmMgGtTpP]i?[bB]?|[bB])?\s*$", max_length=32)],
    Field(description="bytes, or a size like 20GB / 24GiB / 1.5e9 (decimal units unless 'i')"),
]

_NO_PATH = ("/", "\\")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: Any = None


class ErrorPublic(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------------------
# hardware
# ---------------------------------------------------------------------------


class HardwareCreate(_In):
    """A custom hardware profile: the same mapping as a ``profiles/hardware/*.yaml`` file,
    either as JSON (``profile``) or as YAML text (``yaml``, parsed with ``yaml.safe_load``:
    tags such as ``!!python/object`` are refused)."""

    profile: dict[str, Any] | None = Field(default=None, description="the profile mapping (YAML units, as in a profile file)")
    yaml: str | None = Field(default=None, max_length=500_000, description="the profile as YAML text")

    @model_validator(mode="after")
    def _one_source(self) -> "HardwareCreate":
        if (self.profile is None) == (self.yaml is None):
            raise ValueError("give exactly one of 'profile' (a JSON mapping) or 'yaml' (YAML text)")
        return self


class HardwareSummary(_Out):
    id: str
    name: str
    class_: str = Field(alias="class")
    memory_capacity_bytes: float
    device_bandwidth_bytes_per_s: float | None = None
    peak_bf16_flops_per_s: float | None = None
    usd_per_hour: float | None = None
    custom: bool


class HardwarePublic(_Out):
    id: str
    name: str
    class_: str = Field(alias="class")
    vendor: str | None = None
    memory_capacity_bytes: float
    tiers: list[dict[str, Any]]
    content_hash: str | None = None
    custom: bool
    profile: dict[str, Any] = Field(description="the profile mapping (YAML units), as accepted by POST /v1/hardware")


class HardwareList(_Out):
    items: list[HardwareSummary]


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


class ModelCreate(_In):
    """A custom model: an HF-style ``config.json`` mapping (``config``) or YAML text."""

    id: Id
    config: dict[str, Any] | None = None
    yaml: str | None = Field(default=None, max_length=500_000)

    @model_validator(mode="after")
    def _one_source(self) -> "ModelCreate":
        if (self.config is None) == (self.yaml is None):
            raise ValueError("give exactly one of 'config' (a JSON mapping) or 'yaml' (YAML text)")
        return self


class ModelPublic(_Out):
    id: str
    model_type: str
    family: str
    params: int
    active_params: int
    num_layers: int
    hidden_size: int
    custom: bool


class ModelList(_Out):
    items: list[ModelPublic]


# ---------------------------------------------------------------------------
# estimate
# ---------------------------------------------------------------------------

Parallel = Annotated[int, Field(ge=1, le=4096)]
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]


def request_model(name: str, classes: tuple[type, ...], doc: str, *, exclude: tuple[str, ...] = (),
                  **overrides: Any) -> type[BaseModel]:
    """A request body declared from the request layer's dataclasses (``planner.request``):
    one field per request field, ``None`` (not given) by default, described by the field's
    help text. The request layer checks the values and fills the defaults; this model only
    refuses unknown fields and values of the wrong JSON type. ``overrides`` replace a field's
    (type, FieldInfo) or add a field; ``exclude`` leaves fields out of the REST body."""
    from typing import get_type_hints

    from pydantic import create_model

    from planner.request import field_info

    spec: dict[str, Any] = {k: v for k, v in overrides.items() if k == "id"}
    for cls in classes:
        hints = get_type_hints(cls)
        for fname, info in field_info(cls).items():
            if fname in spec or fname in exclude:
                continue
            if fname in overrides:
                spec[fname] = overrides[fname]
                continue
            if fname == "engine":  # a catalog id over REST, never a path on the server
                spec[fname] = (EngineId | None, Field(default=None, description=info.help or None, examples=["vllm"]))
                continue
            typ = Literal[info.choices] if info.choices else hints[fname]  # type: ignore[valid-type]
            extra = {"default": info.default} if info.default is not None and not callable(info.default) else None
            spec[fname] = (typ | None if typ is not Any else Any,
                           Field(default=None, description=info.help or None, json_schema_extra=extra))
    spec.update({k: v for k, v in overrides.items() if k not in spec})
    model = create_model(name, __base__=_In, __doc__=doc, __module__=__name__, **spec)
    return model


def _estimate_create() -> type[BaseModel]:
    from planner.request import EstimateRequest, TrainingRequest

    return request_model(
        "EstimateCreate", (EstimateRequest, TrainingRequest),
        "Same fields as ``tierwise estimate`` (flags in snake_case). Fields left out take their defaults; a "
        "field of the other mode (``zero`` without ``mode: training``, ``kv`` with it) is refused.",
        mode=(Literal["inference", "training"] | None, Field(default=None, description="inference (default) or training")),
        model=(Id, Field(examples=["llama-3.1-8b"])),
        hardware=(Id, Field(examples=["l4"])),
    )


EstimateCreate = _estimate_create()


class EstimatePublic(_Out):
    """Inference: ttft_s, tpot_s, memory{...} and the rest of `tierwise estimate --json`;
    training: step_time_s, mfu, memory{...}."""

    mode: Literal["inference", "training"]
    model: str
    hardware: str
    memory: dict[str, Any]


# ---------------------------------------------------------------------------
# plans and jobs
# ---------------------------------------------------------------------------


def _plan_create() -> type[BaseModel]:
    from planner.request.plan import PlanRequest

    return request_model(
        "PlanCreate", (PlanRequest,),
        "Same fields as ``tierwise plan`` (``planner.request.PlanRequest``). Layout degrees left out are "
        "searched; ``kv`` left out searches the KV-cache formats too.",
        exclude=("sensitivity",),  # a server never reads weight or sensitivity files named by a client
        id=(Id | None, Field(default=None, description="client-chosen plan id (409 if taken); a new id when left out")),
        model=(Id, Field(examples=["llama-3.1-8b"])),
        hardware=(Id, Field(examples=["l4"])),
        max_memory_per_device=(Size | None, Field(default=None, examples=["20GB"])),
        formats=(list[FormatName] | None, Field(default=None, max_length=64, description="candidate weight formats")),
        sparsity=(list[Annotated[str, StringConstraints(max_length=32)]] | None, Field(default=None, max_length=16)),
        pins=(dict[Annotated[str, StringConstraints(max_length=256)], FormatName] | None, Field(default=None, max_length=10_000)),
        low_rank=(list[int] | None, Field(default=None, max_length=16,
                                          description="ranks to offer as low-rank factorization options (off when left out)")),
        objective_weights=(dict[str, float] | None, Field(default=None, max_length=8)),
        time_limit_s=(Annotated[float, Field(gt=0, le=3600)] | None,
                      Field(default=None, description="solver time limit (at most the server's solve_time_limit_s)")),
    )


PlanCreate = _plan_create()


class PlanSummary(_Out):
    id: str
    model: str
    hardware: str
    created_at: dt.datetime
    checksum: str


class PlanPublic(_Out):
    id: str
    created_at: dt.datetime
    plan: dict[str, Any]


class PlanPage(_Out):
    items: list[PlanSummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class JobPublic(_Out):
    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed"]
    url: str
    plan_id: str | None = None
    plan_url: str | None = None
    error: ErrorDetail | None = None
    solve_s: float | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class ExportFilePublic(_Out):
    path: str
    media_type: str
    content: str


class ExportPublic(_Out):
    format: str
    plan_id: str
    files: list[ExportFilePublic]
    next_command: str
    notes: list[str]


# ---------------------------------------------------------------------------
# capacity
# ---------------------------------------------------------------------------


def _capacity_create() -> type[BaseModel]:
    from planner.request import field_info
    from planner.request.capacity import CapacityServeRequest

    def check(self):
        if (self.model is None) == (self.models is None):
            raise ValueError("give exactly one of 'model' or 'models'")
        return self

    model = request_model(
        "CapacityCreate", (CapacityServeRequest,),
        "Same fields as ``tierwise capacity serve``: the fewest devices of each hardware that serve ``qps`` "
        "requests per second within the TTFT/TPOT SLOs at ``percentile``, ranked by cost.",
        model=(Id | None, Field(default=None, examples=["llama-3.1-8b"])),
        models=(list[Id] | None, Field(default=None, max_length=16, description="several models on one fleet (with 'mix')")),
        mix=(list[Annotated[float, Field(gt=0, le=1)]] | None, Field(default=None, max_length=16,
                                                                   description="share of the load per model")),
        hardware=(list[Id] | None, Field(default=None, max_length=64, examples=[["l4", "h100-sxm"]],
                                         description="candidate hardware ids (every catalog id when left out)")),
        qps=(Annotated[float, Field(gt=0, le=1e7)], Field(examples=[5.0])),
        ttft_slo_s=(Annotated[float, Field(gt=0, le=1e6)], Field(examples=[1.0])),
        tpot_slo_s=(Annotated[float, Field(gt=0, le=1e6)], Field(examples=[0.05])),
        formats=(list[FormatName] | None, Field(default=None, max_length=16, description="candidate weight formats",
                                                json_schema_extra={"default": list(field_info(CapacityServeRequest)["formats"].default)})),
    )
    return type("CapacityCreate", (model,), {"__module__": __name__, "__doc__": model.__doc__,
                                             "_models": model_validator(mode="after")(check)})


CapacityCreate = _capacity_create()


def _train_capacity_create() -> type[BaseModel]:
    from planner.request.capacity import CapacityTrainRequest

    return request_model(
        "TrainCapacityCreate", (CapacityTrainRequest,),
        "Same fields as ``tierwise capacity train``: devices of ``hardware`` needed to train ``model`` on "
        "``tokens`` tokens within ``days`` days, with the best layout.",
        model=(Id, Field(examples=["llama-3.1-70b"])),
        hardware=(Id, Field(examples=["h100-sxm"])),
        tokens=(float, Field(examples=[2e12])),
        days=(float, Field(examples=[30.0])),
    )


TrainCapacityCreate = _train_capacity_create()


class TrainCapacityPublic(_Out):
    model: str
    hardware: str
    tokens: float
    days: float
    required_tokens_per_s: float
    seq: int
    feasible: bool
    best: dict[str, Any] | None = None
    fastest: dict[str, Any] | None = None
    frontier: list[dict[str, Any]]


class CapacityPublic(_Out):
    models: list[str]
    qps: float
    feasible: bool
    hardware: list[dict[str, Any]]


class HealthPublic(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    version: str
