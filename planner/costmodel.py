"""Inference cost model: operator × hardware × numeric choice → time, bytes, memory, energy, money.

Pure functions returning frozen result dataclasses; no files, no logging, no globals
beyond caches of immutable lookups.

Model, per operator instance on one device (details and error analysis in docs/costmodel.md):

    compute_s = flops / (peak(precision) · eff_c(flops)) + dequant_s
    memory_s  = bytes_on_device_tier / (bw · eff_b(bytes))
    op_s      = max(compute_s, memory_s) + kernel_overhead_s
    phase_s   = max(Σ op_s, Σ streamed_bytes / tier_bw) + Σ comm_s + step_overhead

* ``peak(precision)`` is the dense vendor peak of the compute path the choice takes:
  W8A8 / FP8 (weights and activations both low precision and native) run on the low
  precision units; weight-only formats run at the activation precision after dequantizing
  (the bytes are saved, the compute is not — plus ``dequant_s`` on the vector units);
  2:4 sparsity uses the sparse tensor-core peak where the device has one.
* Efficiencies are size dependent and separate from peaks (:class:`hwmodels.Efficiency`).
* Weights that do not fit the device tier spill to the next allowed tier (RDU DDR,
  phone flash, host memory with ``allow_offload``) and are streamed every pass at that
  tier's bandwidth, overlapped with on-device work (prefetch) — hence the ``max``.
* Dataflow devices (SN40L) fuse a layer's operators: intermediate activations stay in
  on-chip SRAM and cost no device-memory traffic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from hwmodels import DeviceSpec, MemoryTier
from planner.arch import ArchSpec
from planner.errors import EstimateError
from planner.formats import Format, combined_bits_per_weight, get_format, parse_sparsity
from planner.workload import (
    ATTENTION,
    CONV,
    EMBEDDING,
    LINEAR,
    LM_HEAD,
    NORM,
    POOL,
    ROUTER,
    Block,
    OpShape,
    Phase,
    Workload,
    build_workload,
    op_load,
    tokens_per_sample,
)
from planner.layout import (
    Layout,
    check_layout,  # noqa: F401  (callers that validate a layout before estimating use costmodel.check_layout)
    check_layout_on,
    collective_s,
    cp_split,
    microbatch_sizes,
    p2p_stage_s,
    pipeline_time_s,
    ring_exchange_s,
    strides,
)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """Numeric choice for one operator or decision group (format names as in planner.formats)."""

    weights: str = "bf16"
    activations: str = "bf16"
    kv: str = "bf16"
    sparsity: str = "dense"
    low_rank: int | None = None  # factor each linear k→n into k→r→n (Greenformers-style)

    def __post_init__(self) -> None:
        if self.low_rank is not None and (isinstance(self.low_rank, bool) or not isinstance(self.low_rank, int) or self.low_rank < 1):
            raise EstimateError("low_rank", f"low_rank must be a positive integer or null; got {self.low_rank!r}")


def low_rank_factor(op: OpShape, choice: Choice) -> float:
    """Fraction of a linear's weights (and FLOPs) kept by a rank-r factorization:
    r·(k+n) / (k·n), capped at 1 (a rank that does not compress leaves the layer dense)."""
    r = choice.low_rank
    if not r or op.kind != LINEAR or not op.in_features or not op.out_features:
        return 1.0
    k, n = op.in_features, op.out_features
    return min(1.0, r * (k + n) / (k * n))


@dataclass(frozen=True, slots=True, kw_only=True)
class Serving:
    """What is served: batch per replica, prompt and generated tokens per request."""

    batch: int = 1
    prompt: int = 512
    gen: int = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Knobs that change placement rather than numerics."""

    allow_offload: bool = False  # let weights spill to host memory (GPU/TPU/CPU) — slow
    flash_chunk_bytes: float = 256 * 1024  # read size when streaming weights from flash
    placement: Mapping[str, float] | None = None  # explicit fraction of weights per tier name
    runtime: str = "graph"  # "graph" (CUDA graphs / compiled engines) or "eager" (PyTorch eager)
    # KV-cache policies. A token budget keeps the most recent/important `kv_token_budget` tokens
    # at the KV format and retains evicted ones at `kv_evicted` (MiKV, Yang et al. 2024:
    # "No Token Left Behind"); `kv_share_layers` adjacent layers share one cache and the
    # later layers drop their K/V projections (SwiftKV's AcrossKV, Qiao et al. 2024).
    kv_token_budget: int | None = None
    kv_evicted: str = "int4-g32"
    kv_share_layers: int = 1

    def __post_init__(self) -> None:
        if self.kv_token_budget is not None and (isinstance(self.kv_token_budget, bool) or not isinstance(self.kv_token_budget, int) or self.kv_token_budget < 1):
            raise EstimateError("kv_budget", f"--kv-budget must be a positive number of tokens; got {self.kv_token_budget!r}")
        if isinstance(self.kv_share_layers, bool) or not isinstance(self.kv_share_layers, int) or self.kv_share_layers < 1:
            raise EstimateError("kv_share", f"--kv-share must be a positive integer; got {self.kv_share_layers!r}")
        if not resolve_format(self.kv_evicted, "kv_evicted").is_kv:
            raise EstimateError("kv_evicted", f"--kv-evicted must be a KV-cache format; got {self.kv_evicted!r}")
        if self.runtime not in RUNTIME_OVERHEAD_S:
            raise EstimateError("runtime", f"--runtime must be one of {', '.join(RUNTIME_OVERHEAD_S)}; got {self.runtime!r}")
        if self.flash_chunk_bytes <= 0:
            raise EstimateError("flash_chunk_kib", f"--flash-chunk-kib must be positive; got {self.flash_chunk_bytes / 1024:g}")

    @property
    def host_overhead_s(self) -> float:
        return RUNTIME_OVERHEAD_S[self.runtime]


# Host-side cost per modelled operator on top of the device's kernel overhead.
# Graph-captured engines (CUDA graphs, TensorRT-LLM, torch.compile, llama.cpp) launch the whole
# pass at once: no per-operator host cost. PyTorch eager dispatches each ATen kernel from Python:
# ≈ 7–8 µs of dispatcher + launch per kernel and ≈ 4–5 kernels per modelled operator (a Llama
# layer runs ~50 ATen ops for the 11 operators modelled here) → ≈ 35 µs per operator. The
# DeepLearningExamples ResNet-50 table shows the effect (batch-1 AMP slower than fp32: launch bound).
RUNTIME_OVERHEAD_S = {"graph": 0.0, "eager": 35e-6}

# Fraction of streaming bandwidth that decode attention reaches when gathering the KV cache:
# irregular (paged) reads are estimated at 40–60% of peak (an assumption, not a measurement); the upper end
# is used because serving engines' paged-attention kernels read whole 16-token blocks.
KV_GATHER_EFFICIENCY = 0.6


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
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

    @property
    def batch(self) -> int:
        return self.serving.batch

    def to_dict(self, ops: bool = True) -> dict:
        return {
            "mode": "inference",
            "model": self.model,
            "hardware": self.hardware,
            "devices": self.layout.devices,
            "tp": self.layout.tp,
            "pp": self.layout.pp,
            "dp": self.layout.dp,
            "ep": self.layout.ep,
            "cp": self.layout.cp,
            "batch": self.serving.batch,
            "prompt": self.serving.prompt,
            "gen": self.serving.gen,
            "weights": self.choice.weights,
            "activations": self.choice.activations,
            "kv": self.choice.kv,
            "sparsity": self.choice.sparsity,
            "ttft_s": self.ttft_s,
            "tpot_s": self.tpot_s,
            "latency_s": self.latency_s,
            "output_tokens_per_s": self.output_tokens_per_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "prefill_tokens_per_s": self.prefill_tokens_per_s,
            "samples_per_s": self.samples_per_s,
            "energy_j_per_token": self.energy_j_per_token,
            "energy_j_per_sample": self.energy_j_per_sample,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "switch_in_s": self.switch_in_s,
            "memory": self.memory.to_dict(),
            "prefill": self.prefill.to_dict(ops),
            "decode": self.decode.to_dict(ops) if self.decode else None,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------
# Resolved numerics of a choice on a device
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Numerics:
    weight_bits: float  # effective stored bits per weight incl. scales and sparse metadata
    act_bits: float
    kv_bits: float
    precision: str  # compute precision key for the peak
    peak_flops_per_s: float
    dequant_ops_per_weight: float  # vector ops per weight element to dequantize (0 when native)
    vector_flops_per_s: float
    density: float  # fraction of weights kept (compute still dense unless 2:4 native)


_LOW_PRECISION_COMPUTE = {"fp8": 8, "int8": 8, "int4": 4, "fp4": 4}


def _act_compute_precision(act: Format) -> str:
    hp = act.hw_precision
    return hp if hp in ("fp32", "tf32", "bf16", "fp16") else "bf16"


def _peak_or_zero(device: DeviceSpec, precision: str) -> float:
    try:
        return device.peak_flops_per_s(precision)
    except ValueError:
        return 0.0


def _dequant_ops(w: Format) -> float:
    """Vector instructions per weight to turn a stored value into a compute-precision value:
    convert + scale, +1 to unpack sub-byte values, +1 for a zero-point, +1 for a table lookup
    (NF4 / codebooks)."""
    ops = 2.0
    if w.element_bits < 8:
        ops += 1.0
    if w.zero_point_bits:
        ops += 1.0
    if w.kind in ("codebook", "nf"):
        ops += 1.0
    return ops


@functools.lru_cache(maxsize=1024)
def _kv_bits(kv_name: str, head_dim: int) -> float:
    """Bits per cached element. A row is one head of one token (per-head scales are priced over
    head_dim values); the cache holds very many rows, so per-tensor scales vanish."""
    return get_format(kv_name).bits_per_value(1 << 20, max(head_dim, 1))


def resolve_format(name: str, field: str) -> Format:
    """The registered format ``name``; an unknown one is an EstimateError naming ``field``."""
    try:
        return get_format(name)
    except ValueError as exc:
        raise EstimateError(field, str(exc)) from None


def _kv_mixed_bits(kv_name: str, head_dim: int, tokens: float, options: Options) -> float:
    """Average bits per cached element when ``tokens`` are cached under a token budget: the
    budget at the KV format, the rest at the evicted format."""
    hi = _kv_bits(kv_name, head_dim)
    budget = options.kv_token_budget
    if not budget or tokens <= budget:
        return hi
    lo = _kv_bits(options.kv_evicted, head_dim)
    return (budget * hi + (tokens - budget) * lo) / tokens


def _kv_proj_share(op: OpShape, options: Options | None) -> float:
    """Fraction of layers that keep this K/V projection under cross-layer KV sharing."""
    if options is None or options.kv_share_layers <= 1 or op.kind != LINEAR:
        return 1.0
    if op.name.endswith(("k_proj", "v_proj", ".key", ".value")):
        return 1.0 / options.kv_share_layers
    return 1.0


@functools.lru_cache(maxsize=1 << 16)
def _numerics(device: DeviceSpec, choice: Choice, rows: int, cols: int) -> _Numerics:
    w = resolve_format(choice.weights, "weights")
    a = resolve_format(choice.activations, "activations")
    kv = resolve_format(choice.kv, "kv")
    try:
        sp = parse_sparsity(choice.sparsity)
    except ValueError as exc:
        raise EstimateError("sparsity", str(exc)) from None
    for fld, fmt in (("weights", w), ("activations", a), ("kv", kv)):
        if device.supports(fmt.name) == "unsupported":
            raise EstimateError(
                fld,
                f"format '{fmt.name}' is not supported on {device.id} (native: {', '.join(sorted(device.formats.native))})",
            )
    if not a.is_activation:
        raise EstimateError("activations", f"'{a.name}' is not an activation format")
    if not kv.is_kv:
        raise EstimateError("kv", f"'{kv.name}' is not a KV-cache format")

    # Sparsity thins the elements; scales stay per dense group (Sparse-Marlin layout).
    wbits = combined_bits_per_weight(w, sp, rows, cols)
    abits = float(a.element_bits)
    kvbits = kv.bits_per_value(None, None)

    a_native = device.supports(a.name) == "native"
    w_native = device.supports(w.name) == "native"
    number_kind = "float" if w.kind in ("float", "minifloat", "mx", "nvfp") else "int"
    # Compute path: both operands low precision and native on the device → low precision units
    # (W8A8, FP8, W4A8 on int8 units). Otherwise the weights are dequantized to the activation
    # precision (weight-only quantization saves bytes, not compute).
    if a.hw_precision in _LOW_PRECISION_COMPUTE and a_native and w.element_bits <= 8:
        precision = a.hw_precision
        deq = 0.0 if (w_native and w.hw_precision == precision) else 1.0
    else:
        precision = _act_compute_precision(a)
        if w.hw_precision == precision or (w.kind == "float" and w.element_bits >= 16):
            deq = 0.0
        else:
            deq = _dequant_ops(w)
    structured = sp.structured and sp.density < 1.0
    sparse_native = structured and device.sparse_2to4_speedup() > 1.0 and (w_native or deq == 0.0)
    peak = device.peak_flops_per_s(
        precision,
        sparse_2to4=sparse_native,
        weight_bits=w.element_bits,
        act_bits=a.element_bits,
        number_kind=number_kind,
    )
    vec = device.peak_flops_per_s("fp32")
    return _Numerics(wbits, abits, kvbits, precision, peak, deq, vec, sp.density)


# ---------------------------------------------------------------------------
# Per-operator cost
# ---------------------------------------------------------------------------


def _matrix_shape(op: OpShape) -> tuple[int, int]:
    """(rows, cols) of the weight as quantized: output features × input features; a conv's
    weight is out_channels × (in_channels/groups · k·k) = out × params/out."""
    if op.kind == CONV:
        return op.out_features, max(1, op.weight_params // max(op.out_features, 1))
    if op.kind == POOL:
        return 1, 1
    return op.out_features, op.in_features


def _shard(op: OpShape, layout: Layout) -> float:
    if op.experts and layout.ep > 1:
        # Expert parallelism: each of the ep ranks holds E/ep whole experts and computes the
        # tokens routed to them (vLLM / DeepSpeed-MoE EP over the TP×DP group).
        return float(layout.ep)
    if layout.tp <= 1:
        return 1.0
    if op.shard in ("col", "row", "heads", "vocab"):
        return float(layout.tp)
    return 1.0


def _kv_shard(op: OpShape, tp: int) -> float:
    # KV heads are split across TP ranks; with fewer KV heads than ranks each rank keeps one
    # (replicated), as vLLM and TensorRT-LLM do for GQA/MQA.
    if tp <= 1 or op.kv_heads <= 0:
        return 1.0
    return op.kv_heads / max(1.0, op.kv_heads / tp)


def op_cost(
    op: OpShape,
    ph: Phase,
    device: DeviceSpec,
    choice: Choice,
    layout: Layout,
    *,
    name: str,
    count: int = 1,
    weights_on_device: float = 1.0,
    fused: bool = False,
    host_overhead_s: float = 0.0,
    options: Options | None = None,
) -> tuple[OpCost, float]:
    """Cost of one instance of ``op``; returns (cost, weight bytes streamed from slower tiers)."""
    if op.experts and layout.ep > 1 and layout.ep > layout.tp:
        # The EP group spans ep/tp replicas: each rank's experts serve all their tokens.
        ph = replace(ph, batch=ph.batch * (layout.ep // max(layout.tp, 1)))
    load = op_load(op, ph)
    rows, cols = _matrix_shape(op)
    nm = _numerics(device, choice, rows or 1, cols or 1)
    shard = _shard(op, layout)
    eff = device.efficiency

    lr = low_rank_factor(op, choice)
    flops = load.flops * lr / shard
    w_elems = load.weight_elems_read * lr / shard
    if op.kind == NORM:
        w_bytes = w_elems * 2.0  # norm weights stay in 16-bit
    elif op.kind == EMBEDDING:
        # a gather reads whole rows; rows are stored at the weight format
        w_bytes = w_elems * nm.weight_bits / 8.0
    else:
        w_bytes = w_elems * nm.weight_bits / 8.0
    act_bytes = 0.0 if fused else (load.act_in_elems + load.act_out_elems) / shard * nm.act_bits / 8.0
    kv_bytes = 0.0
    if op.kind == ATTENTION:
        hi = _kv_bits(choice.kv, op.head_dim)
        read_bits = hi
        if options is not None and options.kv_token_budget and not op.cross:
            keys = ph.context + ph.tokens
            read_bits = _kv_mixed_bits(choice.kv, op.head_dim, keys, options)
        kv_bytes = (load.kv_read_elems * read_bits + load.kv_write_elems * hi) / _kv_shard(op, layout.tp) / 8.0

    dev_w = w_bytes * weights_on_device
    streamed = w_bytes - dev_w
    mem_bytes = dev_w + act_bytes + kv_bytes
    bw = device.device_tier.bandwidth_bytes_per_s
    # A GEMM with few rows streams its weights below the streaming bandwidth on CPU BLAS (packing,
    # few vector lanes filled); calibrate measures that per row count (Efficiency.gemm_rows, 1.0
    # without a measured table). Only the weight bytes are slowed: activations and KV are not.
    rows_share = eff.gemm_rows(load.gemm_m) if op.kind in (LINEAR, LM_HEAD, ROUTER) else 1.0
    memory_s = (dev_w / rows_share + act_bytes + kv_bytes) / (bw * eff.bandwidth(mem_bytes)) if mem_bytes > 0 else 0.0
    if kv_bytes > 0 and ph.tokens == 1:
        # Decode attention gathers the KV cache from scattered (paged) blocks per sequence and
        # head: such irregular reads are estimated at ~40–60% of peak bandwidth (an assumption,
        # see KV_GATHER_EFFICIENCY), modelled as KV_GATHER_EFFICIENCY × streaming.
        memory_s += kv_bytes / (bw * eff.bandwidth(kv_bytes)) * (1.0 / KV_GATHER_EFFICIENCY - 1.0)

    if op.kind in (NORM, POOL, EMBEDDING):
        # Vector-unit work: the size-efficiency curve is defined in tensor-peak FLOPs, so scale
        # the op to the time it occupies (same fill-up time on the same cores).
        scaled = flops * nm.peak_flops_per_s / nm.vector_flops_per_s if nm.vector_flops_per_s else flops
        compute_s = flops / (nm.vector_flops_per_s * eff.compute(scaled)) if flops > 0 else 0.0
        precision = "fp32"
    elif op.kind == ATTENTION and nm.precision not in ("fp32", "tf32", "bf16", "fp16"):
        # QKᵀ/softmax/AV run in 16-bit even in FP8/INT8 engines (fused MHA kernels keep
        # 16-bit operands; only the KV cache storage is low precision).
        peak = max(_peak_or_zero(device, "bf16"), _peak_or_zero(device, "fp16")) or nm.peak_flops_per_s
        compute_s = flops / (peak * eff.compute(flops)) if flops > 0 else 0.0
        precision = "bf16"
    else:
        compute_s = flops / (nm.peak_flops_per_s * eff.compute(flops)) if flops > 0 else 0.0
        precision = nm.precision
    deq_s = 0.0
    if nm.dequant_ops_per_weight and w_elems and op.kind not in (ATTENTION, NORM, POOL, EMBEDDING):
        # Fused dequantizing GEMMs convert each weight tile once per 128-row block of tokens, on
        # the vector ALUs (fp32 rate, no size penalty: the kernel is already launched). The
        # conversion sits between the load and the MMA of each tile, so it adds to the
        # weight stream rather than hiding under it: gpt-fast on A100 reaches 1397 GB/s in
        # bf16 but 1069 (int8) and 863 GB/s (int4) — consistent with this serial term.
        tiles = max(1.0, math.ceil(load.gemm_m / 128.0))
        deq_ops = w_elems * nm.dequant_ops_per_weight * tiles
        deq_s = deq_ops / (nm.vector_flops_per_s * eff.compute_max)
    overhead = (eff.kernel_overhead_s if not fused else 0.0) + host_overhead_s
    t = max(compute_s, memory_s + deq_s)
    if overhead > t:
        bound = "overhead"
    else:
        bound = "compute" if compute_s >= memory_s else "memory"
    cost = OpCost(
        name=name,
        kind=op.kind,
        group=op.group,
        count=count,
        flops=flops,
        weight_bytes=w_bytes,
        activation_bytes=act_bytes,
        kv_bytes=kv_bytes,
        compute_s=compute_s,
        memory_s=memory_s + deq_s,
        comm_s=0.0,
        overhead_s=overhead,
        time_s=t + overhead,
        bound=bound,
        precision=precision,
    )
    return cost, streamed


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


def _block_weight_bytes(
    block: Block, device: DeviceSpec, choice_for, layout: Layout, uniform: bool = False, options: Options | None = None
) -> list[float]:
    """Per-instance weight bytes on one device for every instance of ``block`` (K/V projections
    dropped by cross-layer KV sharing are averaged over the layers)."""
    out = []
    for i in range(1 if uniform else block.count):
        total = 0.0
        for op in block.ops:
            p = op.weight_params
            if not p:
                continue
            ch = choice_for(block, i, op)
            if op.kind == NORM:
                total += p * 2.0
                continue
            rows, cols = _matrix_shape(op)
            nm = _numerics(device, ch, rows or 1, cols or 1)
            total += p * low_rank_factor(op, ch) * _kv_proj_share(op, options) * nm.weight_bits / 8.0 / _shard(op, layout)
        out.append(total)
    return out * block.count if uniform else out


def _kv_bytes_per_token(work: Workload, device: DeviceSpec, choice: Choice, tp: int) -> float:
    """KV-cache bytes per cached token on one device (all layers of the model)."""
    _numerics(device, choice, 1, 1)  # validates the formats
    total = 0.0
    for b in work.blocks:
        for op in b.ops:
            if op.kind == ATTENTION and not op.cross and op.causal:
                total += b.count * 2 * op.kv_heads * op.head_dim * _kv_bits(choice.kv, op.head_dim) / 8.0 / _kv_shard(op, tp)
    return total


def _activation_peak_bytes(work: Workload, ph: Phase, act_bits: float, tp: int) -> float:
    """Peak transient activation memory per device during one forward pass.

    Inference frees each layer's activations after use: the residual stream plus the largest
    operator's input and output are live at once, plus fp32 logits for the positions scored.
    """
    m = ph.batch * ph.tokens
    largest = 0.0
    resid = 0.0
    logits = 0.0
    for b in work.blocks:
        for op in b.ops:
            load = op_load(op, ph)
            if op.kind == LM_HEAD:
                logits = ph.batch * min(ph.tokens, ph.logits_tokens) * op.out_features * 4.0 / _shard_tp(op, tp)
                continue
            live = (load.act_in_elems + load.act_out_elems) / _shard_tp(op, tp)
            largest = max(largest, live)
            if op.hidden:
                resid = max(resid, m * op.hidden)
    return (resid + largest) * act_bits / 8.0 + logits


def _shard_tp(op: OpShape, tp: int) -> float:
    return float(tp) if tp > 1 and op.shard in ("col", "row", "heads", "vocab") else 1.0


def allowed_tiers(device: DeviceSpec, options: Options) -> list[MemoryTier]:
    """Tiers weights may occupy, fastest first."""
    out = []
    for t in device.tiers:
        if t.role == "on_chip":
            if device.device_class == "fpga":
                out.append(t)
            continue
        if t.role in ("device", "device_ext"):
            out.append(t)
        elif t.role == "host" and options.allow_offload:
            out.append(t)
        elif t.role == "storage" and (device.device_class in ("phone", "laptop", "edge") or options.allow_offload):
            # Phones and laptops map weights from flash by design (LLM in a flash); servers
            # stream from NVMe only when offloading is asked for (FlexGen's disk tier).
            out.append(t)
    return out


def _tier_capacity(device: DeviceSpec, t: MemoryTier) -> float:
    if t is device.device_tier:
        return device.memory_capacity_bytes
    return t.capacity_bytes


def place_memory(
    device: DeviceSpec,
    weights_dev: float,
    kv_dev: float,
    act_dev: float,
    options: Options,
) -> tuple[list[TierUse], dict[str, float], float]:
    """Place one device's weights, KV cache and activations on its tiers.

    KV cache and activations live in the device tier (dataflow devices keep activations in
    on-chip SRAM when they fit); weights fill the remaining space tier by tier. Returns the
    tier usage, the weight fraction per tier, and the shortfall in bytes (0 when it fits).
    """
    uses: dict[str, dict[str, float]] = {t.name: {"w": 0.0, "kv": 0.0, "act": 0.0} for t in device.tiers}
    dev = device.device_tier
    act_tier = dev
    if device.dataflow_fusion:
        for t in device.tiers:
            if t.role == "on_chip" and t.capacity_bytes >= act_dev:
                act_tier = t
                break
    uses[act_tier.name]["act"] = act_dev
    allowed = allowed_tiers(device, options)
    # The KV cache stays on the device; with offloading allowed, what does not fit next to the
    # activations spills to host memory (FlexGen keeps KV in CPU DRAM) and is streamed back.
    kv_room = max(0.0, device.memory_capacity_bytes - uses[dev.name]["act"])
    host = next((t for t in allowed if t.role == "host"), None)
    if kv_dev > kv_room and host is not None:
        uses[dev.name]["kv"] = kv_room
        uses[host.name]["kv"] = kv_dev - kv_room
    else:
        uses[dev.name]["kv"] = kv_dev
    remaining = weights_dev
    fractions: dict[str, float] = {}
    if options.placement:
        for t in allowed:
            f = options.placement.get(t.name, 0.0)
            uses[t.name]["w"] = weights_dev * f
            fractions[t.name] = f
        remaining = weights_dev * max(0.0, 1.0 - sum(fractions.values()))
    else:
        for t in allowed:
            cap = _tier_capacity(device, t)
            free = cap - sum(uses[t.name].values())
            take = min(max(free, 0.0), remaining)
            if take > 0:
                uses[t.name]["w"] += take
                fractions[t.name] = take / weights_dev if weights_dev else 0.0
                remaining -= take
            if remaining <= 0:
                break
    shortfall = max(0.0, remaining)
    if remaining > 0:
        # Report where the rest would have to go: over-commit the device tier.
        uses[dev.name]["w"] += remaining
        fractions[dev.name] = fractions.get(dev.name, 0.0) + remaining / weights_dev
    # KV / activations themselves may overflow the device tier
    over = sum(uses[dev.name].values()) - device.memory_capacity_bytes
    if over > shortfall + 1e-6 and not options.placement:
        shortfall = max(shortfall, over)
    tiers = [
        TierUse(
            name=t.name,
            role=t.role,
            capacity_bytes=_tier_capacity(device, t),
            used_bytes=sum(uses[t.name].values()),
            weights_bytes=uses[t.name]["w"],
            kv_cache_bytes=uses[t.name]["kv"],
            activations_bytes=uses[t.name]["act"],
        )
        for t in device.tiers
    ]
    return tiers, fractions, shortfall


# ---------------------------------------------------------------------------
# Phase evaluation
# ---------------------------------------------------------------------------

ChoiceMap = Mapping[str, Choice]


def _choice_fn(default: Choice, overrides: ChoiceMap | None):
    if not overrides:
        return lambda block, i, op: default

    def f(block: Block, i: int, op: OpShape) -> Choice:
        return overrides.get(block.group_fqn(i, op), default)

    return f


def evaluate_phase(
    work: Workload,
    ph: Phase,
    device: DeviceSpec,
    layout: Layout,
    default: Choice,
    overrides: ChoiceMap | None,
    weight_fractions: Mapping[str, float],
    options: Options,
    kv_on_device: float = 1.0,
) -> PhaseCost:
    """Time of one forward pass of the whole model (all pipeline stages) on ``layout``."""
    choice_for = _choice_fn(default, overrides)
    dev_tier = device.device_tier
    on_device = weight_fractions.get(dev_tier.name, 1.0 if not weight_fractions else 0.0)
    # Weights held on chip (FPGA BRAM/URAM) count as "streamed" from a tier whose reads cost
    # no device bandwidth (skipped in the stream time below).
    fused = device.dataflow_fusion
    ops_out: list[OpCost] = []
    device_s = 0.0
    busy = 0.0
    flops_total = 0.0
    streamed_total = 0.0
    kv_streamed = 0.0
    comm_s = 0.0
    bytes_dev = 0.0
    for b in work.blocks:
        uniform = not overrides
        instances = [(0, b.count)] if uniform else [(i, 1) for i in range(b.count)]
        for i, cnt in instances:
            for op in b.ops:
                ch = choice_for(b, i, op)
                nm_name = b.fqn(i, op) if not (uniform and b.repeated) else f"{b.prefix}.{{i}}.{op.name}"
                c, streamed = op_cost(
                    op,
                    ph,
                    device,
                    ch,
                    layout,
                    name=nm_name,
                    count=cnt,
                    weights_on_device=on_device,
                    fused=fused and op.kind not in (EMBEDDING, LM_HEAD) and b.repeated,
                    host_overhead_s=options.host_overhead_s,
                    options=options,
                )
                comm = _op_comm(op, ph, device, ch, layout, c.time_s)
                if comm:
                    c = _with_comm(c, comm)
                ops_out.append(c)
                # Cross-layer KV sharing: only 1 in kv_share_layers layers runs its K/V projection.
                n = cnt * _kv_proj_share(op, options)
                device_s += c.time_s * n
                comm_s += comm * n
                flops_total += c.flops * n
                streamed_total += streamed * n
                if kv_on_device < 1.0 and c.kv_bytes:
                    kv_streamed += c.kv_bytes * (1.0 - kv_on_device) * n
                bytes_dev += (c.weight_bytes * on_device + c.activation_bytes + c.kv_bytes) * n
                if c.time_s > 0:
                    peak_t = max(c.compute_s, c.memory_s)
                    busy += peak_t * n
    stream_s = 0.0
    by_tier = {dev_tier.name: bytes_dev}
    if streamed_total > 0:
        off = {k: v for k, v in weight_fractions.items() if k != dev_tier.name}
        tot = sum(off.values()) or 1.0
        for name, frac in off.items():
            t = device.tier(name)
            nbytes = streamed_total * frac / tot
            by_tier[name] = nbytes
            if t.role == "on_chip":
                continue
            stream_s += stream_time_s(device, t, nbytes, options)
    if kv_streamed > 0:
        host = next((t for t in device.tiers if t.role == "host"), None)
        if host is not None:
            by_tier[host.name] = by_tier.get(host.name, 0.0) + kv_streamed
            stream_s += stream_time_s(device, host, kv_streamed, options)
    # Pipeline: activations cross (pp-1) stage boundaries.
    if layout.pp > 1:
        nbytes = ph.batch * ph.tokens * work.arch.hidden_size * 2.0 / max(layout.tp, 1)
        comm_s += (layout.pp - 1) * p2p_stage_s(device, nbytes, strides(layout).pp)
    t_total = max(device_s, stream_s) + comm_s
    if stream_s > device_s:
        bound = "stream"
    elif comm_s > 0.5 * t_total:
        bound = "communication"
    else:
        comp = sum(o.compute_s * o.count for o in ops_out)
        mem = sum(o.memory_s * o.count for o in ops_out)
        ovh = sum(o.overhead_s * o.count for o in ops_out)
        bound = max((comp, "compute"), (mem, "memory"), (ovh, "overhead"))[1]
    return PhaseCost(
        name=ph.name,
        batch=ph.batch,
        time_s=t_total,
        device_s=device_s,
        stream_s=stream_s,
        comm_s=comm_s,
        flops=flops_total,
        bytes_by_tier=by_tier,
        busy_s=min(busy + comm_s, t_total),
        bound=bound,
        ops=tuple(ops_out),
    )


def stream_time_s(device: DeviceSpec, t: MemoryTier, nbytes: float, options: Options) -> float:
    """Time to bring ``nbytes`` of weights from tier ``t`` to where they are computed."""
    if t.role == "storage":
        return t.read_time_s(nbytes, options.flash_chunk_bytes)
    if t.role == "host" and device.host_link is not None:
        bw = min(t.bandwidth_bytes_per_s, device.host_link.bandwidth_bytes_per_s)
        return nbytes / (bw * device.efficiency.bandwidth(nbytes)) + device.host_link.latency_s
    return nbytes / (t.bandwidth_bytes_per_s * device.efficiency.bandwidth(nbytes)) + t.latency_s


def _with_comm(c: OpCost, comm: float) -> OpCost:
    return OpCost(
        name=c.name,
        kind=c.kind,
        group=c.group,
        count=c.count,
        flops=c.flops,
        weight_bytes=c.weight_bytes,
        activation_bytes=c.activation_bytes,
        kv_bytes=c.kv_bytes,
        compute_s=c.compute_s,
        memory_s=c.memory_s,
        comm_s=comm,
        overhead_s=c.overhead_s,
        time_s=c.time_s,
        bound=c.bound,
        precision=c.precision,
    )


# ---------------------------------------------------------------------------
# Whole estimate
# ---------------------------------------------------------------------------


def memory_report(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout,
    serving: Serving,
    choice: Choice,
    overrides: ChoiceMap | None = None,
    options: Options = Options(),
) -> tuple[MemoryReport, dict[str, float]]:
    """Memory per device and tier placement for ``serving`` on ``layout``."""
    work = build_workload(arch)
    choice_for = _choice_fn(choice, overrides)
    stage_bytes = _stage_weight_bytes(work, device, choice_for, layout, uniform=not overrides, options=options)
    weights_dev = max(stage_bytes)
    # Whole-model bytes (replicated operators such as norms and routers counted once).
    weights_total = sum(_stage_weight_bytes(work, device, choice_for, Layout(), uniform=not overrides, options=options))
    generative = arch.family in ("decoder", "encoder_decoder")
    kv_tokens = (serving.prompt + serving.gen) if generative else 0
    kv_per_tok_dev = _kv_bytes_per_token(work, device, choice, layout.tp) if generative else 0.0
    if generative and options.kv_token_budget and kv_tokens > 0:
        kv_per_tok_dev *= _kv_mixed_bits(choice.kv, _head_dim(work), kv_tokens, options) / _kv_bits(choice.kv, _head_dim(work))
    kv_per_tok_dev /= options.kv_share_layers
    kv_dev = serving.batch * kv_tokens * kv_per_tok_dev / layout.pp / layout.cp  # CP shards the cache by position
    # One replica's whole KV cache: each of the tp ranks holds 1/gain of it (gain = min(tp,
    # KV heads); ranks beyond the KV heads hold replicas, which are not counted twice).
    kv_total = kv_dev * layout.pp * layout.cp * _kv_tp_gain(work, layout.tp)
    prefill = _prefill_phase(arch, serving, cp=layout.cp)
    act_bits = _numerics(device, choice, 1, 1).act_bits
    act_dev = _activation_peak_bytes(work, prefill, act_bits, layout.tp)
    tiers, fractions, shortfall = place_memory(device, weights_dev, kv_dev, act_dev, options)
    dev = device.device_tier
    per_device = weights_dev + kv_dev + act_dev
    offloaded = sum(t.weights_bytes for t in tiers if t.name != dev.name and t.role != "on_chip")
    offloaded_kv = sum(t.kv_cache_bytes for t in tiers if t.name != dev.name)
    rep = MemoryReport(
        weights_bytes=weights_total,
        kv_cache_bytes=kv_total,
        activations_bytes=act_dev,
        per_device_bytes=per_device,
        device_capacity_bytes=device.memory_capacity_bytes,
        fits=shortfall <= 0,
        shortfall_bytes=shortfall,
        tiers=tuple(tiers),
        offloaded_weights_bytes=offloaded,
        offloaded_kv_bytes=offloaded_kv,
    )
    return rep, fractions


def _head_dim(work: Workload) -> int:
    for b in work.blocks:
        for op in b.ops:
            if op.kind == ATTENTION:
                return op.head_dim
    return 1


def _kv_tp_gain(work: Workload, tp: int) -> float:
    for b in work.blocks:
        for op in b.ops:
            if op.kind == ATTENTION:
                return _kv_shard(op, tp)
    return 1.0


def _stage_weight_bytes(
    work: Workload, device: DeviceSpec, choice_for, layout: Layout, uniform: bool = False, options: Options | None = None
) -> list[float]:
    """Weight bytes per pipeline stage on one device (layers split evenly; pre on the first
    stage, post on the last)."""
    pp = layout.pp
    pre = post = 0.0
    layer_bytes: list[float] = []
    for b in work.blocks:
        per = _block_weight_bytes(b, device, choice_for, layout, uniform=uniform, options=options)
        if b.repeated:
            layer_bytes.extend(per)
        elif b.stage == "pre":
            pre += sum(per)
        else:
            post += sum(per)
    if not layer_bytes:  # CNN: one non-repeated block
        return [pre + post]
    n = len(layer_bytes)
    stages = []
    for s in range(pp):
        lo, hi = (n * s) // pp, (n * (s + 1)) // pp
        stages.append(sum(layer_bytes[lo:hi]))
    stages[0] += pre
    stages[-1] += post
    return stages


def _prefill_phase(arch: ArchSpec, serving: Serving, batch: int | None = None, cp: int = 1) -> Phase:
    """One prefill pass on one rank. Under context parallelism a rank holds 1/cp of the
    prompt and attends to the rest through the ring (:func:`planner.layout.cp_split`)."""
    b = serving.batch if batch is None else batch
    if arch.family == "encoder_decoder":
        return Phase(name="prefill", batch=b, tokens=max(1, serving.prompt), context=0.0, encoder_tokens=serving.prompt)
    local, ctx = cp_split(max(1, tokens_per_sample(arch, serving.prompt)), cp, causal=arch.family == "decoder")
    return Phase(name="prefill", batch=b, tokens=local, context=ctx)


def _decode_phase(arch: ArchSpec, serving: Serving, batch: int, cp: int = 1) -> Phase:
    # TPOT averaged over the generation: attention cost is linear in context, so the mean
    # context (prompt + (gen−1)/2 tokens already cached) gives the average step exactly.
    # Under context parallelism each rank holds and reads 1/cp of the cache.
    ctx = (serving.prompt + max(serving.gen - 1, 0) / 2.0) / cp
    return Phase(name="decode", batch=batch, tokens=1, context=ctx, encoder_tokens=serving.prompt)


def _check_cp_prompt(arch: ArchSpec, serving: Serving, layout: Layout) -> None:
    tokens = tokens_per_sample(arch, serving.prompt)
    if layout.cp > 1 and tokens < layout.cp:
        raise EstimateError("cp", f"{{@cp}} {layout.cp} splits the prompt over {layout.cp} ranks, but it has only {tokens} positions; use {{@cp}} ≤ {max(tokens, 1)}")


def estimate_inference(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout = Layout(),
    serving: Serving = Serving(),
    choice: Choice = Choice(),
    overrides: ChoiceMap | None = None,
    options: Options = Options(),
) -> InferenceEstimate:
    """Predict prefill (TTFT), decode (TPOT), throughput, memory, energy and cost."""
    check_layout_on(arch, device, layout)
    if serving.batch < 1:
        raise EstimateError("batch", f"--batch must be a positive integer; got {serving.batch}")
    if serving.prompt < 0 or serving.gen < 0:
        raise EstimateError("prompt" if serving.prompt < 0 else "gen", "token counts must be ≥ 0")
    _check_cp_prompt(arch, serving, layout)
    work = build_workload(arch)
    mem, fractions = memory_report(arch, device, layout, serving, choice, overrides, options)
    notes: list[str] = []
    if not mem.fits:
        notes.append(
            f"does not fit: needs {mem.per_device_bytes / 1e9:.2f} GB per device, "
            f"{mem.shortfall_bytes / 1e9:.2f} GB more than the allowed tiers hold"
        )
    if mem.offloaded_weights_bytes > 0:
        notes.append(f"{mem.offloaded_weights_bytes / 1e9:.2f} GB of weights per device stream from slower tiers each pass")

    # Pipeline micro-batching: the batch is split into m = min(batch, pp) micro-batches of their
    # true sizes; the largest sets the decode step.
    sizes = microbatch_sizes(serving.batch, layout.pp)
    mb = sizes[0]
    kv_total_dev = mem.offloaded_kv_bytes + sum(t.kv_cache_bytes for t in mem.tiers if t.role in ("device",))
    kv_on_device = 1.0 - mem.offloaded_kv_bytes / kv_total_dev if kv_total_dev > 0 else 1.0
    passes = {
        s: evaluate_phase(work, _prefill_phase(arch, serving, s, layout.cp), device, layout, choice, overrides, fractions, options, kv_on_device)
        for s in sorted(set(sizes), reverse=True)
    }
    prefill = passes[mb]
    step = device.efficiency.kernel_overhead_s  # one synchronisation per forward pass
    prefill_pipe_s = pipeline_time_s([passes[s].time_s for s in sizes], layout.pp)
    ttft = prefill_pipe_s + step
    generative = arch.family in ("decoder", "encoder_decoder")
    decode = None
    tpot = 0.0
    if generative and serving.gen > 0:
        decode = evaluate_phase(work, _decode_phase(arch, serving, mb, layout.cp), device, layout, choice, overrides, fractions, options, kv_on_device)
        tpot = decode.time_s + step
    gen_steps = max(serving.gen - 1, 0) if generative else 0
    latency = ttft + gen_steps * tpot
    dp, b = layout.dp, serving.batch
    out_tokens = b * serving.gen if generative else 0
    output_tps = dp * out_tokens / latency if latency > 0 and out_tokens else 0.0
    decode_tps = dp * b / tpot if tpot > 0 else 0.0
    prompt_tokens = b * (serving.prompt if arch.family not in ("cnn",) else 1)
    prefill_tps = dp * prompt_tokens / ttft if ttft > 0 else 0.0
    samples = dp * b / latency if latency > 0 else 0.0

    # Energy: idle power for the whole time plus dynamic power scaled by how busy the
    # device is (compute or bandwidth, whichever limits each operator).
    idle, tdp = device.idle_w, device.tdp_w
    n_dev = layout.model_parallel

    def phase_energy(pc: PhaseCost) -> float:
        util = min(1.0, pc.busy_s / pc.time_s) if pc.time_s > 0 else 0.0
        return n_dev * pc.time_s * (idle + (tdp - idle) * util)

    e_run = phase_energy(prefill) * (prefill_pipe_s / prefill.time_s if prefill.time_s > 0 else 1.0)
    if decode is not None:
        e_run += gen_steps * phase_energy(decode)
    per_token = e_run / out_tokens if out_tokens else e_run / max(prompt_tokens, 1)
    # Devices without a rental price (phones, FPGA boards) report no cost.
    usd_h = device.usd_per_hour * layout.devices if device.usd_per_hour is not None else None
    tokens_for_cost = output_tps if output_tps else prefill_tps
    usd_per_m = usd_h / 3600.0 / tokens_for_cost * 1e6 if (usd_h is not None and tokens_for_cost) else None

    switch_in = None
    ext = [t for t in device.tiers if t.role in ("device_ext", "host", "storage")]
    if ext:
        src = ext[0]
        link_bw = src.bandwidth_bytes_per_s
        if src.role == "host" and device.host_link is not None:
            link_bw = min(link_bw, device.host_link.bandwidth_bytes_per_s)
        resident = mem.weights_bytes / max(layout.devices // layout.dp, 1) - mem.offloaded_weights_bytes
        switch_in = max(resident, 0.0) / link_bw + src.latency_s
    if prefill.bound == "stream" or (decode is not None and decode.bound == "stream"):
        notes.append("per-token time is dominated by streaming weights from a slower memory tier")
    return InferenceEstimate(
        model=arch.id,
        hardware=device.id,
        layout=layout,
        serving=serving,
        choice=choice,
        prefill=prefill,
        decode=decode,
        ttft_s=ttft,
        tpot_s=tpot,
        latency_s=latency,
        output_tokens_per_s=output_tps,
        decode_tokens_per_s=decode_tps,
        prefill_tokens_per_s=prefill_tps,
        samples_per_s=samples,
        energy_j_per_token=per_token,
        energy_j_per_sample=e_run / max(b, 1),
        usd_per_million_tokens=usd_per_m,
        usd_per_hour=usd_h,
        memory=mem,
        switch_in_s=switch_in,
        notes=tuple(notes),
    )


def max_batch(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout = Layout(),
    serving: Serving = Serving(),
    choice: Choice = Choice(),
    overrides: ChoiceMap | None = None,
    options: Options = Options(),
    limit: int = 1 << 20,
) -> int:
    """Largest batch per replica whose memory fits (0 if not even batch 1 fits)."""

    def fits(b: int) -> bool:
        s = Serving(batch=b, prompt=serving.prompt, gen=serving.gen)
        return memory_report(arch, device, layout, s, choice, overrides, options)[0].fits

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


# ---------------------------------------------------------------------------
# Per-decision-group costs (what the compression planner's ILP consumes)
# ---------------------------------------------------------------------------


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


def group_costs(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout,
    serving: Serving,
    choice: Choice,
) -> list[GroupCost]:
    """Additive cost of every weighted decision group of one layer instance under ``choice``.

    Layers of a repeated block are identical, so each (block, group) is priced once and
    carries ``count``. Non-weighted operators (attention core, norms) are not included:
    they depend only on the activation and KV formats.
    """
    work = build_workload(arch)
    mb = microbatch_sizes(serving.batch, layout.pp)[0]
    pre = _prefill_phase(arch, serving, mb, layout.cp)
    dec = _decode_phase(arch, serving, mb, layout.cp)
    out: list[GroupCost] = []
    for b in work.blocks:
        groups: dict[str, list[OpShape]] = {}
        for op in b.ops:
            if op.is_weighted or (op.kind == LM_HEAD and op.tied_to):
                groups.setdefault(op.group, []).append(op)
        for g, ops in groups.items():
            w_bytes = pf = ps = ds = dbytes = 0.0
            params = 0
            for op in ops:
                cp, _ = op_cost(op, pre, device, choice, layout, name=op.name, fused=device.dataflow_fusion and b.repeated)
                ps += cp.time_s + _op_comm(op, pre, device, choice, layout)
                pf += cp.flops
                if arch.family in ("decoder", "encoder_decoder") and serving.gen > 0:
                    cd, _ = op_cost(op, dec, device, choice, layout, name=op.name, fused=device.dataflow_fusion and b.repeated)
                    ds += cd.time_s + _op_comm(op, dec, device, choice, layout)
                    dbytes += cd.weight_bytes
                if op.weight_params:
                    params += op.weight_params
                    rows, cols = _matrix_shape(op)
                    nm = _numerics(device, choice, rows or 1, cols or 1)
                    w_bytes += op.weight_params * low_rank_factor(op, choice) * (2.0 if op.kind == NORM else nm.weight_bits / 8.0) / _shard(op, layout)
            out.append(
                GroupCost(
                    group=g,
                    block=b.prefix if b.repeated else f"{b.prefix}",
                    count=b.count,
                    weight_params=params,
                    weight_bytes=w_bytes,
                    prefill_s=ps,
                    decode_s=ds,
                    prefill_flops=pf,
                    decode_weight_bytes_read=dbytes,
                )
            )
    return out


def _op_comm(op: OpShape, ph: Phase, device: DeviceSpec, choice: Choice, layout: Layout, hidden_s: float = 0.0) -> float:
    """Communication after ``op``, priced by :func:`planner.layout.collective_s` exactly as
    training prices it: the TP all-reduce of a row-parallel output; for the last expert
    matrix under expert parallelism the dispatch and combine all-to-alls of the routed tokens
    (2 per MoE layer; per-rank send S = tokens·k·h·bytes, nccl-tests PERFORMANCE.md); and
    under context parallelism, for self-attention, the ring K/V exchange of prefill (what the
    attention's own time ``hidden_s`` does not hide) or the all-reduce of the partial
    attention outputs of decode, whose KV cache is sharded over the CP ranks."""
    if layout.cp > 1 and op.kind == ATTENTION and not op.cross:
        return _cp_attention_comm(op, ph, device, choice, layout, hidden_s)
    if not op.allreduce_after:
        return 0.0
    m = ph.batch * ph.tokens
    st = strides(layout)
    if op.experts and layout.ep > 1:
        nbytes = m * op.experts_active * op.out_features * _comm_bytes_per_elem(device, choice)
        return 2.0 * collective_s("all_to_all", device, nbytes, layout.ep, st.ep, what="expert-parallel all-to-all", field="ep")
    if layout.tp <= 1:
        return 0.0
    nbytes = m * op.out_features * _comm_bytes_per_elem(device, choice)
    return collective_s("allreduce", device, nbytes, layout.tp, st.tp, what="tensor-parallel all-reduce", field="tp")


def _cp_attention_comm(op: OpShape, ph: Phase, device: DeviceSpec, choice: Choice, layout: Layout, hidden_s: float) -> float:
    el = _comm_bytes_per_elem(device, choice)
    if ph.tokens > 1:
        chunk = ph.batch * ph.tokens * 2.0 * max(op.kv_heads / layout.tp, 1.0) * op.head_dim * el
        return max(0.0, ring_exchange_s(device, chunk, layout) - hidden_s)
    # decode: each rank attends over its 1/cp of the cache; the partial outputs (and their
    # softmax sums, one more element per head) are combined across the CP group.
    heads = max(op.heads / layout.tp, 1.0)
    nbytes = ph.batch * heads * (op.head_dim + 1) * el
    return collective_s("allreduce", device, nbytes, layout.cp, strides(layout).cp, what="context-parallel attention combine", field="cp")


def _comm_bytes_per_elem(device: DeviceSpec, choice: Choice) -> float:
    """Tensor-parallel partial sums are all-reduced in 16-bit (or fp32) even when the GEMMs run
    in fp8/int8: NCCL reduces in the accumulation precision's storage type."""
    return max(_numerics(device, choice, 1, 1).act_bits, 16.0) / 8.0
