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


class EstimateCreate(_In):
    """Same fields as ``tierwise estimate`` (flags in snake_case)."""

    mode: Literal["inference", "training"] = "inference"
    model: Id = Field(examples=["llama-3.1-8b"])
    hardware: Id = Field(examples=["l4"])
    devices: Parallel | None = None
    tp: Parallel = 1
    pp: Parallel = 1
    dp: Parallel = 1
    ep: Parallel = 1
    batch: Annotated[int, Field(ge=1, le=1_000_000)] | Literal["max"] = 1
    prompt: Tokens = 512
    gen: Tokens = 128
    weights: FormatName = "bf16"
    activations: FormatName = "bf16"
    kv: FormatName = "bf16"
    sparsity: Annotated[str, StringConstraints(pattern=r"^(dense|2:4|unstructured:[0-9.]+)$")] = "dense"
    allow_offload: bool = False
    flash_chunk_kib: Annotated[float, Field(ge=0.5, le=1_048_576)] = 256.0
    low_rank: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    runtime: Literal["graph", "eager"] = "graph"
    kv_budget: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    kv_evicted: FormatName = "int4-g32"
    kv_share: Annotated[int, Field(ge=1, le=1024)] = 1
    per_op: bool = Field(default=False, description="include the per-operator tables")
    # training
    global_batch: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    micro_batch: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    seq: Annotated[int, Field(ge=1, le=10_000_000)] = 2048
    zero: Annotated[int, Field(ge=0, le=3)] = 0
    recompute: Literal["none", "selective", "full"] = "none"
    sequence_parallel: bool = False
    interleave: Annotated[int, Field(ge=1, le=1024)] = 1
    optimizer: Literal["adamw", "adamw-8bit", "adamw-fp8", "sgd"] = "adamw"
    finetune: Annotated[str, StringConstraints(pattern=r"^(full|lora:[0-9]{1,5}|qlora:[0-9]{1,5})$")] = "full"
    cp: Parallel = 1
    attention: Literal["fused", "unfused"] = "fused"
    grad_accumulation: Literal["separate", "fused"] = "separate"
    dropout: bool = False


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


class PlanCreate(_In):
    """Same fields as ``tierwise plan`` (``planner.search.PlanProblem``). Layout degrees
    left out are searched; ``kv`` left out searches the KV-cache formats too."""

    id: Id | None = Field(default=None, description="client-chosen plan id (409 if taken); a new id when left out")
    model: Id = Field(examples=["llama-3.1-8b"])
    hardware: Id = Field(examples=["l4"])
    devices: Parallel = 1
    tp: Parallel | None = None
    pp: Parallel | None = None
    dp: Parallel | None = None
    ep: Parallel | None = None
    batch: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    prompt: Tokens = 512
    gen: Tokens = 128
    max_memory_per_device: Size | None = Field(default=None, examples=["20GB"])
    ttft_slo_s: Annotated[float, Field(gt=0, le=1e6)] | None = None
    tpot_slo_s: Annotated[float, Field(gt=0, le=1e6)] | None = None
    avg_bits: Annotated[float, Field(gt=0, le=32)] | None = None
    allow_offload: bool = False
    objective: Literal["accuracy", "latency", "memory", "cost", "weighted"] = "accuracy"
    objective_weights: dict[Literal["accuracy", "latency", "memory"], Annotated[float, Field(ge=0, le=1e6)]] | None = None
    formats: list[FormatName] | None = Field(default=None, max_length=64, description="candidate weight formats")
    sparsity: list[Annotated[str, StringConstraints(pattern=r"^(dense|2:4|unstructured:[0-9.]+)$")]] | None = Field(default=None, max_length=16)
    kv: FormatName | None = None
    activations: FormatName | None = None
    pins: dict[Annotated[str, StringConstraints(max_length=256)], FormatName] | None = Field(default=None, max_length=10_000)
    low_rank: list[Annotated[int, Field(ge=1, le=1_000_000)]] | None = Field(
        default=None, max_length=16, description="ranks to offer as low-rank factorization options (off when left out)"
    )
    backend: Literal["highs", "cbc"] = "highs"
    time_limit_s: Annotated[float, Field(gt=0, le=3600)] | None = Field(default=None, description="solver time limit (at most the server's solve_time_limit_s)")


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


class CapacityCreate(_In):
    """Same fields as ``tierwise capacity`` (serving): the fewest devices of each hardware
    that serve ``qps`` requests per second within the TTFT/TPOT SLOs at ``percentile``,
    ranked by cost."""

    model: Id | None = Field(default=None, examples=["llama-3.1-8b"])
    models: list[Id] | None = Field(default=None, max_length=16, description="several models on one fleet (with 'mix')")
    mix: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(default=None, max_length=16, description="share of the load per model")
    hardware: list[Id] | None = Field(default=None, max_length=64, examples=[["l4", "h100-sxm"]],
                                      description="candidate hardware ids (every catalog id when left out)")
    qps: Annotated[float, Field(gt=0, le=1e7)] = Field(examples=[5.0])
    prompt: Annotated[int, Field(ge=1, le=10_000_000)] = 512
    gen: Annotated[int, Field(ge=1, le=10_000_000)] = 128
    ttft_slo_s: Annotated[float, Field(gt=0, le=1e6)] = Field(examples=[1.0])
    tpot_slo_s: Annotated[float, Field(gt=0, le=1e6)] = Field(examples=[0.05])
    percentile: Annotated[float, Field(ge=0.5, lt=1.0)] = 0.95
    formats: list[FormatName] | None = Field(default=None, max_length=16, description="candidate weight formats")
    kv: FormatName = "bf16"
    max_devices: Parallel = 1024
    max_pp: Annotated[int, Field(ge=1, le=64)] = 4

    @model_validator(mode="after")
    def _models(self) -> "CapacityCreate":
        if (self.model is None) == (self.models is None):
            raise ValueError("give exactly one of 'model' or 'models'")
        return self


class TrainCapacityCreate(_In):
    """Same fields as ``tierwise capacity train``: devices of ``hardware`` needed to train
    ``model`` on ``tokens`` tokens within ``days`` days, with the best layout."""

    model: Id = Field(examples=["llama-3.1-70b"])
    hardware: Id = Field(examples=["h100-sxm"])
    tokens: Annotated[float, Field(gt=0, le=1e16)] = Field(examples=[2e12])
    days: Annotated[float, Field(gt=0, le=36500)] = Field(examples=[30.0])
    seq: Annotated[int, Field(ge=1, le=10_000_000)] = 4096
    global_batch_tokens: Annotated[float, Field(gt=0, le=1e12)] = 4 * 1024 * 1024
    activations: FormatName = "bf16"
    optimizer: Literal["adamw", "adamw-8bit", "adamw-fp8", "sgd"] = "adamw"
    max_devices: Parallel = 4096


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
