"""Request (``XCreate``) and response (``XPublic``) models of the REST API.

Request bodies use the CLI's flag names in snake_case (a stable public contract) and
forbid unknown fields, so a typo is a 422 that names it instead of a silently ignored
option. Responses carry the same field names as the CLI's ``--json`` output; they allow
extra fields so the planner can add results without breaking clients.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from hwmodels.ids import ID_PATTERN
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, WithJsonSchema, model_validator

#: Ids of catalog entries, custom profiles and models: a bare name, never a path (hwmodels.ids.ID_PATTERN,
#: the one rule the CLI, Python and plan exports use too; server-side checks use hwmodels.ids.ID_RE.fullmatch).
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=64)]
#: An engine id of the catalog (vllm, trtllm, llamacpp, ...): no paths over REST.
EngineId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
#: One engine id or a list of them (compared side by side): capacity serve and frontier.
EngineList = Annotated[list[EngineId], Field(min_length=1, max_length=32)]
#: A format name (bf16, int4-g128, fp8-e4m3, ...); checked against the format registry.
FormatName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9:._-]{0,31}$")]
# A pin's option key, as on the command line: weights[+sparsity][@rRANK][/activations]
# (planner.options.option_key), e.g. int4-g128/fp8-e4m3, int8+2:4, bf16@r256.
OptionKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9:._+@/-]{0,95}$")]
#: A size: bytes as a number, or text such as "20GB", "24GiB", "1.5e9".
Size = Annotated[
    float | Annotated[str, StringConstraints(pattern=r"^\s*[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?\s*([kKmMgGtTpP]i?[bB]?|[bB])?\s*$", max_length=32)],
    Field(description="bytes, or a size like 20GB / 24GiB / 1.5e9 (decimal units unless 'i')"),
]

_NO_PATH = ("/", "\\")


def _iso_utc(t: dt.datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat()


#: A timestamp in responses: ISO 8601 in UTC with its offset (``...+00:00``).
UtcTime = Annotated[dt.datetime, PlainSerializer(_iso_utc, return_type=str, when_used="json"),
                    WithJsonSchema({"type": "string", "format": "date-time"})]


def _integral_floats_to_int(value: Any) -> Any:
    """239.0 is a JSON Schema integer: give strict validation the int (true stays a bool)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_to_int(v) for v in value]
    return value


class _In(BaseModel):
    # strict: JSON true is not the integer 1 and "5" is not 5 (an integer is still a valid
    # float, and an integral number such as 239.0 a valid integer, as in JSON Schema)
    # no whitespace stripping: a value is checked as sent, as the schema's patterns and
    # lengths describe it (" bf16" and "l4\n" are not bf16 and l4)
    # no NaN or infinity (JSON has neither; Python's parser reads them): "a finite number"
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _integers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _integral_floats_to_int(v) for k, v in data.items()}
        return data


def _exactly_one(a: str, b: str) -> ConfigDict:
    """Say in the schema what the validator enforces: exactly one of ``a`` and ``b`` is given."""
    def only(x: str, y: str) -> dict:
        return {"required": [x], "properties": {x: {"not": {"type": "null"}}, y: {"type": "null"}}}

    return ConfigDict(json_schema_extra={"oneOf": [only(a, b), only(b, a)]})


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
    either as JSON (``profile``) or as YAML text (``yaml``, plain YAML only: tags such as
    ``!!python/object``, anchors and aliases are refused, size and nesting are bounded)."""

    model_config = _exactly_one("profile", "yaml")

    profile: dict[str, Any] | None = Field(default=None, description="the profile mapping (YAML units, as in a profile file)")
    yaml: str | None = Field(default=None, max_length=128_000, description="the profile as YAML text")

    @model_validator(mode="after")
    def _one_source(self) -> "HardwareCreate":
        if (self.profile is None) == (self.yaml is None):
            raise ValueError("give exactly one of 'profile' (a JSON mapping) or 'yaml' (YAML text); got "
                             + ("neither" if self.profile is None else "both"))
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

    model_config = _exactly_one("config", "yaml")

    id: Id
    config: dict[str, Any] | None = None
    yaml: str | None = Field(default=None, max_length=128_000)

    @model_validator(mode="after")
    def _one_source(self) -> "ModelCreate":
        if (self.config is None) == (self.yaml is None):
            raise ValueError("give exactly one of 'config' (a JSON mapping) or 'yaml' (YAML text); got "
                             + ("neither" if self.config is None else "both"))
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


class IntervalPublic(BaseModel):
    """The p10-p90 range of one figure: where the measured value fell for 80% of the published
    rows nearest in kind, out of sample (``planner.uncertainty``)."""

    value: float = Field(description="the estimate's figure, in its own unit")
    p10: float = Field(description="low end of the range, same unit")
    p90: float = Field(description="high end of the range, same unit")
    category: Literal["prefill", "decode", "throughput", "training"]
    bucket: str = Field(description="the group of rows the range comes from, after back-off, e.g. 'throughput/gpu/serving'")
    rows: int = Field(description="published rows in that group")
    validated: bool = Field(description="false when no row shares the figure's category, hardware class, engine "
                                        "class and batch regime (the range is then that of a coarser group)")


class UncertaintyPublic(BaseModel):
    """Error bars of an estimate or a capacity row, keyed by the field they apply to
    (``ttft_s``, ``tpot_s``, ``output_tokens_per_s``, ``step_time_s``, ``days`` …)."""

    validated: bool = Field(description="every interval comes from rows of its own kind")
    hardware_class: str
    engine_class: str = Field(description="serving, on-device, training, eager or unknown")
    batch_regime: str = Field(description="1, 2-32, 33+ (sequences per replica) or training")
    quantiles: list[float]
    notes: list[str] = Field(description="what lies outside the validated region, and why")
    intervals: dict[str, IntervalPublic]


class EstimatePublic(_Out):
    """Inference: ttft_s, tpot_s, memory{...} and the rest of `tierwise estimate --json`;
    training: step_time_s, mfu, memory{...}. ``uncertainty``: p10-p90 error bars."""

    mode: Literal["inference", "training"]
    model: str
    hardware: str
    memory: dict[str, Any]
    uncertainty: UncertaintyPublic | None


# ---------------------------------------------------------------------------
# plans and jobs
# ---------------------------------------------------------------------------


def _time_limit(what: str) -> tuple[Any, Any]:
    """``time_limit_s`` as REST takes it: positive, at most an hour (and the server's limit)."""
    return (Annotated[float, Field(gt=0, le=3600)] | None,
            Field(default=None, description=f"{what} in seconds (at most the server's solve_time_limit_s)"))


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
        pins=(dict[Annotated[str, StringConstraints(max_length=256)], OptionKey] | None, Field(default=None, max_length=10_000)),
        low_rank=(list[int] | None, Field(default=None, max_length=16,
                                          description="ranks to offer as low-rank factorization options (off when left out)")),
        objective_weights=(dict[str, float] | None, Field(default=None, max_length=8)),
        time_limit_s=_time_limit("solver time limit"),
    )


PlanCreate = _plan_create()


class PlanSummary(_Out):
    id: str
    model: str
    hardware: str
    created_at: UtcTime
    checksum: str


class PlanPublic(_Out):
    id: str
    created_at: UtcTime
    plan: dict[str, Any]


class PlanPage(_Out):
    items: list[PlanSummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class JobPublic(_Out):
    id: str
    kind: Literal["plan", "capacity", "capacity_train"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    url: str
    plan_id: str | None = None
    plan_url: str | None = None
    result: dict[str, Any] | None = Field(default=None, description="a capacity job's answer, when it succeeded")
    error: ErrorDetail | None = None
    solve_s: float | None = None
    created_at: UtcTime
    updated_at: UtcTime


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
            raise ValueError("give exactly one of 'model' or 'models'; got " + ("neither" if self.model is None else "both"))
        return self

    model = request_model(
        "CapacityCreate", (CapacityServeRequest,),
        "Same fields as ``tierwise capacity serve``: the fewest devices of each hardware that serve ``qps`` "
        "requests per second within the TTFT/TPOT SLOs at ``percentile``, ranked by cost.",
        model=(Id | None, Field(default=None, examples=["llama-3.1-8b"])),
        models=(list[Id] | None, Field(default=None, max_length=16, description="several models on one fleet (with 'mix')")),
        mix=(list[Annotated[float, Field(gt=0)]] | None, Field(
            default=None, max_length=16, examples=[[1, 3]],
            description="share of the load per model: positive relative weights, normalised to sum to 1 "
                        "([1, 3] gives 25% and 75%), as the CLI's --mix")),
        hardware=(list[Id] | None, Field(default=None, max_length=64, examples=[["l4", "h100-sxm"]],
                                         description="candidate hardware ids (every catalog id when left out)")),
        qps=(Annotated[float, Field(gt=0, le=1e7)], Field(examples=[5.0])),
        ttft_slo_s=(Annotated[float, Field(gt=0, le=1e6)], Field(examples=[1.0])),
        tpot_slo_s=(Annotated[float, Field(gt=0, le=1e6)], Field(examples=[0.05])),
        formats=(list[FormatName] | None, Field(default=None, max_length=16, description="candidate weight formats",
                                                json_schema_extra={"default": list(field_info(CapacityServeRequest)["formats"].default)})),
        engine=(EngineId | EngineList | None, Field(default=None, description=field_info(CapacityServeRequest)["engine"].help,
                                                    examples=["vllm", ["vllm", "trtllm", "sglang"]])),
        time_limit_s=_time_limit("search time limit"),
    )
    return type("CapacityCreate", (model,), {"__module__": __name__, "__doc__": model.__doc__,
                                             "model_config": _exactly_one("model", "models"),
                                             "_models": model_validator(mode="after")(check)})


CapacityCreate = _capacity_create()


def _frontier_create() -> type[BaseModel]:
    from planner.request import field_info
    from planner.request.capacity import CapacityFrontierRequest

    info = field_info(CapacityFrontierRequest)
    return request_model(
        "FrontierCreate", (CapacityFrontierRequest,),
        "Same fields as ``tierwise capacity frontier``: tokens/s per device against tokens/s per user over batch "
        "sizes, layouts and weight formats, Pareto-filtered per (engine, hardware).",
        model=(Id, Field(examples=["llama-3.1-8b"])),
        hardware=(list[Id] | None, Field(default=None, max_length=64, examples=[["l4", "h100-sxm"]],
                                         description="candidate hardware ids (every catalog id when left out)")),
        formats=(list[FormatName] | None, Field(default=None, max_length=16, description="candidate weight formats",
                                                json_schema_extra={"default": list(info["formats"].default)})),
        engine=(EngineId | EngineList | None, Field(default=None, description=info["engine"].help,
                                                    examples=["vllm", ["vllm", "trtllm", "sglang"]])),
        time_limit_s=_time_limit("search time limit (default: the server's solve_time_limit_s)"),
    )


FrontierCreate = _frontier_create()


class FrontierPublic(_Out):
    """``series``: one per (engine, hardware), its Pareto ``points`` fastest per user first (a
    series with no point has its ``reason``; ``complete: false`` when the time limit stopped its
    search); ``unsupported``: the pairs the engine does not run, with the reason; ``status``:
    ``complete``, or ``time_limit`` when the search was cut short (``not_searched``: the pairs it
    never reached)."""

    model: str
    prompt: int
    gen: int
    status: str = "complete"
    series: list[dict[str, Any]]
    unsupported: list[dict[str, Any]]
    not_searched: list[dict[str, Any]] = []


def _train_capacity_create() -> type[BaseModel]:
    from planner.request.capacity import CapacityTrainRequest

    return request_model(
        "TrainCapacityCreate", (CapacityTrainRequest,),
        "Same fields as ``tierwise capacity train``: devices of ``hardware`` needed to train ``model`` on "
        "``tokens`` tokens within ``days`` days, with the best layout.",
        model=(Id, Field(examples=["llama-3.1-70b"])),
        hardware=(Id | Annotated[list[Id], Field(min_length=1, max_length=64)],
                  Field(examples=["h100-sxm", ["h100-sxm", "h200"]],
                        description="one hardware id, or a list: one answer per hardware, cheapest first")),
        tokens=(float, Field(examples=[2e12])),
        days=(float, Field(examples=[30.0])),
        time_limit_s=_time_limit("search time limit"),
    )


TrainCapacityCreate = _train_capacity_create()


class _RowPublic(_Out):
    """One capacity row (layout, figures); ``uncertainty``: its p10-p90 error bars."""

    uncertainty: UncertaintyPublic | None = None


class TrainCapacityPublic(_Out):
    model: str
    hardware: str
    tokens: float
    days: float
    required_tokens_per_s: float
    seq: int
    feasible: bool
    best: _RowPublic | None = None
    fastest: _RowPublic | None = None
    frontier: list[_RowPublic]


class TrainSkippedPublic(_Out):
    hardware: str
    reason: str


class TrainCapacityFleetPublic(_Out):
    """The answer for a list of hardware: one per hardware, those that meet the deadline
    first (cheapest first); ``skipped``: hardware no training engine runs on."""

    hardware: list[TrainCapacityPublic]
    skipped: list[TrainSkippedPublic] = []


class HardwareAnswerPublic(_Out):
    hardware: str
    meets_slo: bool
    best: _RowPublic | None = None
    closest: _RowPublic | None = None


class CapacityPublic(_Out):
    models: list[str]
    qps: float
    feasible: bool
    hardware: list[HardwareAnswerPublic]


class HealthPublic(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    version: str
