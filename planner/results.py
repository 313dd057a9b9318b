"""Results of the inference cost model (:mod:`planner.costmodel`): per-operator, per-phase,
memory and whole-estimate records, and the per-decision-group costs the planner's ILP
consumes. Frozen dataclasses (the per-operator record excepted, hashable by value all the same);
``to_dict`` gives their JSON form."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planner.numerics import Choice
    from planner.serving import Serving
    from planner.layout import Layout


# What a per-token energy or cost counts: (one, many), as tables name it ("energy per output
# token", "USD / M output tokens").
PER_TOKEN_UNITS = {
    "output_tokens": ("output token", "output tokens"),
    "prompt_tokens": ("prompt token", "prompt tokens"),
    "images": ("image", "images"),
    "image_patches": ("image patch", "image patches"),
}


#: What one position of a model family is, where it is not a token: a CNN's image, a ViT's patch.
IMAGE_BASIS = {"cnn": "images", "vit": "image_patches"}


def per_token_basis(family: str, gen: int) -> str:
    """What an inference's per-token energy and cost count: the generated tokens when it generates
    any, else what one forward pass reads (a prefill-only or encoder request: its prompt tokens; a
    CNN: one per image; a ViT: its patch positions)."""
    if family in ("decoder", "encoder_decoder") and gen > 0:
        return "output_tokens"
    return IMAGE_BASIS.get(family, "prompt_tokens")


# Not frozen (hashable by value all the same): the cost model builds one per operator of every
# pass, and a frozen dataclass's __init__ (object.__setattr__ per field) costs ~4× a plain one's.
@dataclass(slots=True, kw_only=True, unsafe_hash=True)
class OpCost:
    name: str  # FQN pattern; "{i}" stands for every layer of a repeated block
    kind: str
    group: str
    count: int  # layer instances this row stands for
    flops: float  # per instance, per device
    weight_bytes: float
    activation_bytes: float
    kv_bytes: float
    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    time_s: float  # per instance, without comm
    bound: str  # "compute" | "memory" | "overhead"
    precision: str

    @property
    def intensity(self) -> float:
        b = self.weight_bytes + self.activation_bytes + self.kv_bytes
        return self.flops / b if b else math.inf

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "group": self.group,
            "count": self.count,
            "flops": self.flops,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_s": self.compute_s,
            "memory_s": self.memory_s,
            "comm_s": self.comm_s,
            "overhead_s": self.overhead_s,
            "time_s": self.time_s,
            "bound": self.bound,
            "precision": self.precision,
            "arithmetic_intensity": None if math.isinf(self.intensity) else self.intensity,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseCost:
    name: str
    batch: int
    time_s: float
    device_s: float  # Σ op time on the device tier
    stream_s: float  # time to stream spilled weights from slower tiers
    comm_s: float
    flops: float  # per device
    bytes_by_tier: Mapping[str, float]
    busy_s: float  # utilisation-weighted busy time (for energy)
    bound: str
    ops: tuple[OpCost, ...]

    def to_dict(self, ops: bool = True) -> dict:
        d = {
            "name": self.name,
            "batch": self.batch,
            "time_s": self.time_s,
            "device_s": self.device_s,
            "stream_s": self.stream_s,
            "comm_s": self.comm_s,
            "flops_per_device": self.flops,
            "bytes_by_tier": dict(self.bytes_by_tier),
            "bound": self.bound,
        }
        if ops:
            d["ops"] = [o.to_dict() for o in self.ops]
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class TierUse:
    name: str
    role: str
    capacity_bytes: float
    used_bytes: float
    weights_bytes: float
    kv_cache_bytes: float
    activations_bytes: float

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "capacity_bytes": self.capacity_bytes,
            "used_bytes": self.used_bytes,
            "weights_bytes": self.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "activations_bytes": self.activations_bytes,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryReport:
    weights_bytes: float  # whole model at its formats (all devices)
    kv_cache_bytes: float  # whole batch, all replicas' share on one replica
    activations_bytes: float  # peak transient per device
    per_device_bytes: float
    device_capacity_bytes: float
    fits: bool
    shortfall_bytes: float
    tiers: tuple[TierUse, ...]
    offloaded_weights_bytes: float  # per device, outside the device tier
    offloaded_kv_bytes: float = 0.0  # per device, KV cache spilled to host memory
    # The KV pool of an engine that gives its cache only a share of the memory weights, activations and
    # its context leave (vLLM, SGLang, TensorRT-LLM): its bytes per device, and the KV cache on the
    # device it must hold; None where the engine takes all that is free or the device itself is short.
    kv_pool_bytes: float | None = None
    kv_on_device_bytes: float | None = None
    # what the configuration does not fit when it does not: "device_memory" (the tiers weights may
    # use) or "kv_pool" (the engine's KV pool, while the device itself would hold it all)
    limited_by: str | None = None

    def to_dict(self) -> dict:
        return {
            "weights_bytes": self.weights_bytes,
            "kv_cache_bytes": self.kv_cache_bytes,
            "activations_bytes": self.activations_bytes,
            "per_device_bytes": self.per_device_bytes,
            "device_capacity_bytes": self.device_capacity_bytes,
            "fits": self.fits,
            "shortfall_bytes": self.shortfall_bytes,
            "offloaded_weights_bytes": self.offloaded_weights_bytes,
            "offloaded_kv_bytes": self.offloaded_kv_bytes,
            "tiers": {t.name: t.to_dict() for t in self.tiers},
            **({"kv_pool_bytes": self.kv_pool_bytes} if self.kv_pool_bytes is not None else {}),
            **({"limited_by": self.limited_by} if self.limited_by is not None else {}),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceEstimate:
    model: str
    hardware: str
    layout: Layout
    serving: Serving
    choice: Choice
    prefill: PhaseCost
    decode: PhaseCost | None
    ttft_s: float
    tpot_s: float
    latency_s: float
    output_tokens_per_s: float
    decode_tokens_per_s: float
    prefill_tokens_per_s: float
    samples_per_s: float
    energy_j_per_token: float
    energy_j_per_sample: float
    usd_per_million_tokens: float | None
    usd_per_hour: float | None
    memory: MemoryReport
    switch_in_s: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # What ``energy_j_per_token`` and ``usd_per_million_tokens`` count (``per_token_basis``):
    # "output_tokens" (generated tokens, gen > 0), "prompt_tokens" (gen 0, an encoder: the tokens
    # read), "images" (a CNN: one per image) or "image_patches" (a ViT: its patches and class token).
    per_token: str = "output_tokens"
    engine: str | None = None  # the serving engine priced (planner.engines)
    # What the estimate assumed of the engine (memory fraction, runtime context, prefill chunk,
    # ...; planner.request.estimate.engine_assumptions); None for a bare cost-model call.
    engine_assumptions: Mapping[str, Any] | None = None
    # p10-p90 error bars from published measurements (planner.uncertainty.Uncertainty), set by the request layer
    uncertainty: Any = None
    # what bounded the batch of a ``batch max`` request (planner.costmodel.batch_limit: batch, bound,
    # over_bytes, tiers, text); None when the batch was given
    batch_limit: Mapping[str, Any] | None = None
    # whether the request asked for the per-operator tables (``per_op``): ``to_dict()`` keeps them
    # then only, as ``--json`` does; None for a bare cost-model call (kept)
    per_op: bool | None = None
    # whether the model generates tokens and keeps a KV cache (ArchSpec.generative): an encoder's,
    # ViT's or CNN's answer has no TPOT, output tokens, gen or KV format (null in ``to_dict()``)
    generative: bool = True

    @property
    def batch(self) -> int:
        return self.serving.batch

    def to_dict(self, ops: bool | None = None) -> dict:
        """The answer as ``tierwise estimate --json`` gives it; ``ops`` (default: as the request's
        ``per_op`` said) keeps the per-operator tables."""
        ops = (self.per_op is not False) if ops is None else ops
        return {
            "mode": "inference",
            "engine": self.engine,
            **({"engine_assumptions": dict(self.engine_assumptions)} if self.engine_assumptions else {}),
            "model": self.model,
            "hardware": self.hardware,
            "devices": self.layout.devices,
            "tp": self.layout.tp,
            "pp": self.layout.pp,
            "dp": self.layout.dp,
            "ep": self.layout.ep,
            "cp": self.layout.cp,
            "batch": self.serving.batch,
            **({"batch_limit": dict(self.batch_limit)} if self.batch_limit is not None else {}),
            # null where it does not apply: a fixed-size image has no prompt length, a model that
            # generates nothing has no gen, KV format, TPOT or output tokens
            "prompt": None if self.per_token in IMAGE_BASIS.values() else self.serving.prompt,
            "gen": self.serving.gen if self.generative else None,
            "weights": self.choice.weights,
            "activations": self.choice.activations,
            "kv": self.choice.kv if self.generative else None,
            "sparsity": self.choice.sparsity,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s if self.decode is not None else None,
            "latency_s": self.latency_s,
            "output_tokens_per_s": self.output_tokens_per_s if self.generative else None,
            "decode_tokens_per_s": self.decode_tokens_per_s if self.generative else None,
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "samples_per_s": self.samples_per_s,
            "energy_j_per_token": self.energy_j_per_token,
            "energy_j_per_sample": self.energy_j_per_sample,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "per_token_basis": self.per_token,
            "switch_in_s": self.switch_in_s,
            "memory": self.memory.to_dict(),
            "prefill": self.prefill.to_dict(ops),
            "decode": self.decode.to_dict(ops) if self.decode else None,
            "notes": list(self.notes),
            "uncertainty": self.uncertainty.to_dict() if self.uncertainty is not None else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupCost:
    """Cost of one decision group (one layer instance) under one choice, on one device.

    Times are the group's additive share of a forward pass (Σ of its operators' times,
    TP communication included); bytes are per device (TP-sharded).
    """

    group: str  # relative group name inside its block, e.g. "mlp.gate_up"
    block: str  # block prefix, e.g. "model.layers"
    count: int  # instances (layers) this row stands for
    weight_params: int
    weight_bytes: float
    prefill_s: float
    decode_s: float
    prefill_flops: float
    decode_weight_bytes_read: float
