"""Per-operator cost: the numerics a choice resolves to on a device, and one operator's
compute, memory, dequantization and overhead time (the model of :mod:`planner.costmodel`).

    compute_s = flops / (peak(precision) · eff_c(flops))
    memory_s  = bytes_on_device_tier / (bw · eff_b(bytes)) + dequant_s
    op_s      = max(compute_s, memory_s) + kernel_overhead_s

Pure functions; the only state is caches of immutable lookups.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from hwmodels import DeviceSpec
from planner.errors import EstimateError
from planner.format_noise import dynamic_applies
from planner.formats import Format, cast_copy_bits, combined_bits_per_weight, get_format, parse_sparsity
from planner.kernels import (
    CONV_EPILOGUE_KERNELS,
    TILE_M_CHOICES,
    conv_epilogue_bytes,
    cpu_int8_gemm_fraction,
    flash_attention_fraction,
    gemm_efficiency,
    unfused_attention_bytes,
)
from planner.numerics import resolve_format
from planner.results import OpCost
from planner.workload import ATTENTION, CONV, EMBEDDING, LINEAR, LM_HEAD, NORM, POOL, ROUTER, OpLoad, OpShape, Phase, op_load

if TYPE_CHECKING:
    from planner.numerics import Choice
    from planner.serving import RuntimeSettings
    from planner.layout import Layout

# Fraction of streaming bandwidth that decode attention reaches when gathering the KV cache from
# paged blocks. Fitted (benchmarks/fitted.py, grid 0.3–1.0): the value minimising the median error
# over the published rows it moves (benchmarks/published_report.fit: each constant judged by its own
# rows; 0.6 while every constant was judged by one median pooled over all the rows any constant
# moves, which rows that only another constant moves could tip: 0.9 and 0.8 at earlier revisions; 0.8 until
# the embedding tables TensorRT-LLM keeps in 16 bit were priced so);
# benchmarks/published.py --cv loso refits it without each source.
KV_GATHER_EFFICIENCY = 0.9

# Compute precisions below 16 bits that run on their own (low precision) units.
_LOW_PRECISION_COMPUTE = {"fp8": 8, "int8": 8, "int4": 4, "fp4": 4}


def low_rank_factor(op: OpShape, choice: Choice) -> float:
    """Fraction of a linear's weights (and FLOPs) kept by a rank-r factorization:
    r·(k+n) / (k·n), capped at 1 (a rank that does not compress leaves the layer dense)."""
    r = choice.low_rank
    if not r or op.kind != LINEAR or not op.in_features or not op.out_features:
        return 1.0
    k, n = op.in_features, op.out_features
    return min(1.0, r * (k + n) / (k * n))



@dataclass(frozen=True, slots=True)
class DeviceNumerics:
    """What a numeric choice resolves to on one device (bits, compute path, peaks)."""

    weight_bits: float  # effective stored bits per weight incl. scales and sparse metadata
    act_bits: float
    kv_bits: float
    precision: str  # compute precision key for the peak
    peak_flops_per_s: float
    dequant_ops_per_weight: float  # vector ops per weight element to dequantize (0 when native)
    vector_flops_per_s: float
    density: float  # fraction of weights kept (compute still dense unless 2:4 native)
    # The size-efficiency curve is defined in the device's main-unit FLOPs (half = peak × ~2 µs):
    # an op on a slower unit occupies it as long as an op this many times larger on the main one.
    curve_scale: float = 1.0


_FLOAT_COMPUTE_BITS = {"fp32": 32.0, "tf32": 32.0, "bf16": 16.0, "fp16": 16.0}


def compute_bits(nm: DeviceNumerics) -> float:
    """Bits per value the GEMM's operands are in: its float width, else (a low-precision GEMM)
    the activations' element width."""
    return _FLOAT_COMPUTE_BITS.get(nm.precision, nm.act_bits)


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


Stored = tuple[tuple[str, float], ...]


@functools.lru_cache(maxsize=4096)
def _stored_for_row(stored_formats: tuple, row: int) -> Stored:
    out = []
    for fmt, chain in stored_formats:
        # The type the engine writes, or the first fallback whose blocks tile the row (ggml rows hold
        # whole blocks: llama-quantize's tensor_type_fallback); none does: the type as written.
        bits = next((b for values, b in chain if row % values == 0), chain[0][1])
        out.append((fmt, bits))
    return tuple(out)


def stored_bits(options: RuntimeSettings | None, row: int) -> Stored:
    """(format, bits per value) of every format the engine stores as a tensor type of its own
    (RuntimeSettings.stored_formats), for a tensor whose rows hold ``row`` values; () when it states none."""
    if options is None or not options.stored_formats:
        return ()
    return _stored_for_row(options.stored_formats, max(int(row), 1))


def stored_row(op: OpShape) -> int:
    """Values in one stored row of ``op``'s weight: the input features of a linear (GGUF ne[0]), a
    table row (hidden size) of an embedding."""
    if op.kind == EMBEDDING:
        return op.out_features or 1
    return matrix_shape(op)[1] or 1


def _stored(name: str, stored: Stored) -> float | None:
    for fmt, bits in stored:
        if fmt == name:
            return bits
    return None


@functools.lru_cache(maxsize=1024)
def kv_bits(kv_name: str, head_dim: int, stored: Stored = ()) -> float:
    """Bits per cached element. A row is one head of one token (per-head scales are priced over
    head_dim values); the cache holds very many rows, so per-tensor scales vanish. ``stored``: the
    engine's own storage of formats (:func:`stored_bits` for rows of head_dim), which wins."""
    own = _stored(get_format(kv_name).name, stored)
    if own is not None:
        return own
    return get_format(kv_name).bits_per_value(1 << 20, max(head_dim, 1))


def kv_mixed_bits(kv_name: str, head_dim: int, tokens: float, options: RuntimeSettings) -> float:
    """Average bits per cached element when ``tokens`` are cached under a token budget: the
    budget at the KV format, the rest at the evicted format."""
    stored = stored_bits(options, head_dim)
    hi = kv_bits(kv_name, head_dim, stored)
    budget = options.kv_token_budget
    if not budget or tokens <= budget:
        return hi
    lo = kv_bits(options.kv_evicted, head_dim, stored)
    return (budget * hi + (tokens - budget) * lo) / tokens


def kv_proj_share(op: OpShape, options: RuntimeSettings | None) -> float:
    """Fraction of layers that keep this K/V projection under cross-layer KV sharing."""
    if options is None or options.kv_share_layers <= 1 or op.kind != LINEAR:
        return 1.0
    if op.name.endswith(("k_proj", "v_proj", ".key", ".value")):
        return 1.0 / options.kv_share_layers
    return 1.0


@functools.lru_cache(maxsize=1 << 16)
def device_numerics(device: DeviceSpec, choice: Choice, rows: int, cols: int, unit: str | None = None,
                    stored: Stored = ()) -> DeviceNumerics:
    """What ``choice`` resolves to on ``device`` for a ``rows × cols`` weight; ``unit`` names the
    compute unit the engine runs on (None: the device's first unit that runs the precision);
    ``stored`` the engine's own storage of formats (:func:`stored_bits`), priced instead of the catalog's."""
    b = _choice_numerics(device, choice, unit)
    return DeviceNumerics(_weight_bits(choice.weights, choice.sparsity, rows, cols, stored), b.act_bits, b.kv_bits,
                          b.precision, b.peak_flops_per_s, b.dequant_ops_per_weight, b.vector_flops_per_s, b.density,
                          b.curve_scale)


@functools.lru_cache(maxsize=1 << 14)
def _weight_bits(weights: str, sparsity: str, rows: int, cols: int, stored: Stored = ()) -> float:
    # Sparsity thins the elements; scales stay per dense group (Sparse-Marlin layout).
    w, sp = resolve_format(weights, "weights"), parse_sparsity(sparsity)
    own = _stored(w.name, stored)
    if own is None:
        return combined_bits_per_weight(w, sp, rows, cols)
    # The engine's type in place of the catalog's price: its bits beyond the elements stay per dense block.
    return sp.bits_per_weight(w.element_bits, rows, cols) + (own - w.element_bits)


@functools.lru_cache(maxsize=4096)
def _choice_numerics(device: DeviceSpec, choice: Choice, unit: str | None) -> DeviceNumerics:
    """Everything of :func:`device_numerics` but the weight bits (which depend on the matrix
    shape through group sizes); ``weight_bits`` here is the 1 × 1 matrix's, replaced by the caller."""
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

    wbits = _weight_bits(choice.weights, choice.sparsity, 1, 1)
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
        unit=unit,
        sparse_2to4=sparse_native,
        weight_bits=w.element_bits,
        act_bits=a.element_bits,
        number_kind=number_kind,
    )
    vec = device.peak_flops_per_s("fp32", unit=unit)
    scale = 1.0
    if unit is not None:
        main = device.peak_flops_per_s(precision, sparse_2to4=sparse_native, weight_bits=w.element_bits,
                                       act_bits=a.element_bits, number_kind=number_kind)
        scale = main / peak if peak > 0 else 1.0
    return DeviceNumerics(wbits, abits, kvbits, precision, peak, deq, vec, sp.density, scale)


def matrix_shape(op: OpShape) -> tuple[int, int]:
    """(rows, cols) of the weight as quantized: output features × input features; a conv's
    weight is out_channels × (in_channels/groups · k·k) = out × params/out."""
    if op.kind == CONV:
        return op.out_features, max(1, op.weight_params // max(op.out_features, 1))
    if op.kind == POOL:
        return 1, 1
    return op.out_features, op.in_features


def shard_factor(op: OpShape, layout: Layout) -> float:
    if op.experts and layout.ep > 1:
        # Expert parallelism: each of the ep ranks holds E/ep whole experts and computes the
        # tokens routed to them (vLLM / DeepSpeed-MoE EP over the TP×DP group).
        return float(layout.ep)
    if layout.tp <= 1:
        return 1.0
    if op.shard in ("col", "row", "heads", "vocab"):
        return float(layout.tp)
    return 1.0


def kv_shard(op: OpShape, tp: int) -> float:
    # KV heads are split across TP ranks; with fewer KV heads than ranks each rank keeps one
    # (replicated), as vLLM and TensorRT-LLM do for GQA/MQA.
    if tp <= 1 or op.kv_heads <= 0:
        return 1.0
    return op.kv_heads / max(1.0, op.kv_heads / tp)


@dataclass(slots=True)
class OpStatic:
    """What one operator's cost does not owe to the phase (batch, tokens, context): its numerics,
    sharding, bytes per element and launch overhead under one (device, choice, layout, runtime).
    :func:`op_static` builds it; a pass over many phases (a batch sweep) reuses it."""

    nm: DeviceNumerics
    shard: float
    work_share: float  # low-rank fraction / shard: share of the op's FLOPs and weights on one device
    w_byte: float  # bytes per weight element read
    act_byte: float  # bytes per activation element moved (0 when the layer is fused)
    kv_hi_bits: float
    kv_div: float
    unfused_scores: bool
    epilogue: bool
    separate: bool
    best: float  # the GEMM kernel's best-shape fraction of the peak (engine kernel or device table)
    bandwidth: float  # the device tier's rated bytes/s
    overhead_s: float  # launches and host time (a separate dequantizing kernel's launch is added per pass)
    compute_share: float
    gemm_nk: tuple[float, float] | None  # (N, K) of a GEMM priced by the kernel model, else None
    precise: bool
    copy_dequant: bool = False  # dequantized to a 16-bit copy first when the input has more than one row
    copy_bits: float = 0.0  # bits per weight value of the copies that path writes and reads (dequant_copy_bits)


def dynamic_activations(device: DeviceSpec, choice: Choice, target: str | None,
                        weight_only: tuple[str, ...] = ()) -> str | None:
    """``target`` when an engine that quantizes the activations of integer-weight linears at run time
    to ``target`` (RuntimeSettings.dynamic_act_quant: XNNPACK's 8da4w / 8da8w) computes ``choice``'s
    linear layers in it: integer weights of at most 8 bits, not exported weight-only (``weight_only``),
    with 16- or 32-bit float activations, on a device that runs ``target`` natively. None otherwise."""
    if target is None or device.supports(target) != "native":
        return None
    w = resolve_format(choice.weights, "weights")
    a = resolve_format(choice.activations, "activations")
    return target if dynamic_applies(w.name, a.name, weight_only) else None


def computed_choice(op: OpShape, device: DeviceSpec, choice: Choice, options: RuntimeSettings | None) -> Choice:
    """The scheme ``op`` computes in: ``choice``, except a linear layer whose activations the engine
    quantizes at run time (:func:`dynamic_activations`), which computes at that format; so does an
    int8 convolution there (XNNPACK runs it with calibrated static int8 inputs: its dynamic
    quantization does not cover depthwise convolutions, and the export writes them all static)."""
    if options is None or op.kind not in (LINEAR, LM_HEAD, CONV):
        return choice
    target = dynamic_activations(device, choice, options.dynamic_act_quant, options.weight_only_formats)
    return choice if target is None else replace(choice, activations=target)


def design_capped(nm: DeviceNumerics, options: RuntimeSettings | None) -> DeviceNumerics:
    """``nm`` with its peak replaced by the engine's own compute design's at that precision
    (RuntimeSettings.design_peak_flops: Vitis AI's DPU on an Alveo card). The design is what runs,
    whether its published peak is below the device's roof for a design of the whole fabric (the U50's
    6 engines) or above it (the U280's 14 engines run their DSPs at twice the fabric clock)."""
    peak = dict(options.design_peak_flops).get(nm.precision) if options is not None and options.design_peak_flops else None
    return nm if peak is None else replace(nm, peak_flops_per_s=peak)


def op_static(
    op: OpShape,
    device: DeviceSpec,
    choice: Choice,
    layout: Layout,
    *,
    fused: bool = False,
    host_overhead_s: float = 0.0,
    options: RuntimeSettings | None = None,
    host_kernels: float = 1.0,
) -> OpStatic:
    """The phase-independent part of :func:`op_cost` (raises EstimateError for a choice the device
    cannot run)."""
    rows, cols = matrix_shape(op)
    computed = computed_choice(op, device, choice, options)
    nm = design_capped(device_numerics(device, computed, rows or 1, cols or 1, _unit(device, options),
                                       stored_bits(options, stored_row(op))), options)
    # A layer that quantizes its activations at run time reads and writes them in the planned format.
    act_bits = nm.act_bits if computed is choice else device_numerics(device, choice, 1, 1, _unit(device, options)).act_bits
    shard = shard_factor(op, layout)
    share = low_rank_factor(op, choice) / shard
    separate = _separate_dequant(op, nm, options, fused)
    copy_dequant = not separate and dequant_copy(op, choice, nm, options, fused)
    epilogue = op.kind == CONV and options is not None and not options.fused_elementwise and not fused
    eff = device.efficiency
    # ``host_overhead_s`` is the eager host time per kernel launched; a modelled operator launches
    # ``host_kernels`` of them (planner.kernels.eager_kernels_per_op), a convolution one.
    overhead = (eff.kernel_overhead_s if not fused else 0.0) + host_overhead_s * (1.0 if op.kind == CONV else host_kernels)
    if epilogue:
        # The BatchNorm and ReLU kernels launch like the conv, one host dispatch each.
        overhead += CONV_EPILOGUE_KERNELS * (eff.kernel_overhead_s + host_overhead_s)
    gemm_nk = None
    if options is not None and op.kind in (LINEAR, LM_HEAD, ROUTER, CONV) and eff.cores and not eff.compute_points:
        n = rows / shard if op.shard in ("col", "vocab", "heads") and shard > 1 else rows
        k = cols / shard if op.shard == "row" and shard > 1 else cols
        gemm_nk = (n, k)
    return OpStatic(
        nm=nm,
        shard=shard,
        work_share=share,
        # Norm weights stay in 16-bit; a gather reads whole embedding rows at the weight format.
        w_byte=2.0 if op.kind == NORM else nm.weight_bits / 8.0,
        act_byte=0.0 if fused else act_bits / 8.0 / shard,
        # An encoder's attention reads its keys and values at the activation format: it keeps no cache.
        kv_hi_bits=(kv_bits(choice.kv, op.kv_row, stored_bits(options, op.kv_row)) if op.cached
                    else nm.act_bits if op.kind == ATTENTION else 0.0),
        kv_div=kv_shard(op, layout.tp),
        unfused_scores=op.kind == ATTENTION and options is not None and not options.fused_attention and not fused,
        epilogue=epilogue,
        separate=separate,
        best=_best_fraction(op, device, nm, options),
        bandwidth=device.device_tier.bandwidth_bytes_per_s,
        overhead_s=overhead,
        compute_share=options.compute_share if options is not None else 1.0,
        gemm_nk=gemm_nk,
        precise=options is not None,
        copy_dequant=copy_dequant,
        copy_bits=dequant_copy_bits(nm, options) if copy_dequant else 0.0,
    )


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
    options: RuntimeSettings | None = None,
    static: OpStatic | None = None,
    host_kernels: float = 1.0,
) -> tuple[OpCost, float]:
    """Cost of one instance of ``op``; returns (cost, weight bytes streamed from slower tiers).
    ``static``: :func:`op_static` of the same arguments, when the caller has it already."""
    st = static if static is not None else op_static(op, device, choice, layout, fused=fused,
                                                     host_overhead_s=host_overhead_s, options=options,
                                                     host_kernels=host_kernels)
    if op.experts and layout.ep > 1 and layout.ep > layout.tp:
        # The EP group spans ep/tp replicas: each rank's experts serve all their tokens.
        ph = replace(ph, batch=ph.batch * (layout.ep // max(layout.tp, 1)))
    load = op_load(op, ph)
    nm = st.nm
    flops = load.flops * st.work_share
    w_elems = load.weight_elems_read * st.work_share
    w_bytes = w_elems * st.w_byte
    act_bytes = (load.act_in_elems + load.act_out_elems) * st.act_byte
    kv_bytes = _kv_traffic_bytes(op, ph, load, choice, st, options) if op.kind == ATTENTION else 0.0
    dev_w = w_bytes * weights_on_device
    if st.unfused_scores:
        act_bytes += _unfused_scores_bytes(op, ph, st.shard, nm)
    if st.epilogue:
        act_bytes += conv_epilogue_bytes(load.act_out_elems / st.shard, nm.act_bits / 8.0)
    separate = (st.separate or (st.copy_dequant and ph.batch * ph.tokens > 1)) and w_elems > 0
    if separate:
        # The dequantizing kernel writes the weights at the compute precision's width and the GEMM
        # reads them back: two more passes over that copy (16 bits for a 16-bit GEMM, whatever
        # the activations are stored in; a transient buffer, counted here). A copy dequantized to
        # another float type is cast first: its write and read are paid too (copy_bits).
        act_bytes += 2.0 * w_elems * (st.copy_bits or compute_bits(nm)) / 8.0
    memory_s = _memory_s(op, ph, device, load, dev_w, act_bytes, kv_bytes, st.bandwidth)
    compute_s, precision = _compute_s(op, device, nm, flops, _shape_factor(op, ph, device, load, st, options),
                                      precise=st.precise, best=st.best)
    deq_s = _dequant_s(op, device, nm, load, w_elems) if nm.dequant_ops_per_weight else 0.0
    if st.compute_share < 1.0:
        compute_s /= st.compute_share
        deq_s /= st.compute_share
    overhead = st.overhead_s
    if separate:
        overhead += device.efficiency.kernel_overhead_s  # the dequantizing kernel's own launch
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
    return cost, w_bytes - dev_w


def _kv_traffic_bytes(
    op: OpShape, ph: Phase, load: OpLoad, choice: Choice, st: OpStatic, options: RuntimeSettings | None
) -> float:
    """KV-cache bytes an attention operator reads and writes on one device (0 for others);
    under a token budget the evicted tokens are read at their smaller format."""
    if op.kind != ATTENTION:
        return 0.0
    hi = st.kv_hi_bits
    read_bits = hi
    if options is not None and options.kv_token_budget and op.cached and not op.cross:
        read_bits = kv_mixed_bits(choice.kv, op.kv_row, ph.context + ph.tokens, options)
    return (load.kv_read_elems * read_bits + load.kv_write_elems * hi) / st.kv_div / 8.0


def _memory_s(
    op: OpShape, ph: Phase, device: DeviceSpec, load: OpLoad, dev_w: float, act_bytes: float, kv_bytes: float,
    bw: float,
) -> float:
    """Time to move the operator's device-tier bytes (weights, activations, KV cache) at the
    device tier's rated bandwidth ``bw``."""
    eff = device.efficiency
    mem_bytes = dev_w + act_bytes + kv_bytes
    if mem_bytes <= 0:
        return 0.0
    # A GEMM with few rows streams its weights below the streaming bandwidth on CPU BLAS (packing,
    # few vector lanes filled); calibrate measures that per row count (Efficiency.gemm_rows, 1.0
    # without a measured table). Only the weight bytes are slowed: activations and KV are not.
    rows_share = eff.gemm_rows(load.gemm_m) if op.kind in (LINEAR, LM_HEAD, ROUTER) else 1.0
    memory_s = (dev_w / rows_share + act_bytes + kv_bytes) / (bw * eff.bandwidth(mem_bytes))
    if kv_bytes > 0 and ph.kv_gather:
        # Decode attention gathers the KV cache from scattered (paged) blocks per sequence and
        # head: such irregular reads are estimated at ~40–60% of peak bandwidth (an assumption,
        # see KV_GATHER_EFFICIENCY), modelled as KV_GATHER_EFFICIENCY × streaming. A prefill
        # (even of one token) reads the K/V it has just written, contiguously.
        memory_s += kv_bytes / (bw * eff.bandwidth(kv_bytes)) * (1.0 / KV_GATHER_EFFICIENCY - 1.0)
    return memory_s


def _unit(device: DeviceSpec, options: RuntimeSettings | None) -> str | None:
    unit = options.compute_unit if options is not None else None
    return unit if unit is not None and unit in device.unit_names else None


def _unfused_scores_bytes(op: OpShape, ph: Phase, shard: float, nm: DeviceNumerics) -> float:
    """Score-matrix traffic of an attention without a fused kernel (planner.kernels)."""
    keys = (ph.encoder_tokens if op.cross else ph.context + ph.tokens) or ph.tokens
    if op.window and not op.cross:
        keys = op.window_share * min(keys, op.window) + (1.0 - op.window_share) * keys
    return unfused_attention_bytes(ph.batch, op.heads / shard, ph.tokens, keys, nm.act_bits / 8.0)


def _shape_factor(op: OpShape, ph: Phase, device: DeviceSpec, load: OpLoad, st: OpStatic,
                  options: RuntimeSettings | None) -> float | None:
    """Kernel-level efficiency of ``op`` replacing the size curve's view of it (inference only:
    ``options`` is None for the training model, which keeps the size curve): a GEMM's wave
    quantization and K depth (planner.kernels.gemm_efficiency), a fused prefill attention's
    FlashAttention fraction. None: use the device's size curve."""
    if options is None:
        return None
    eff = device.efficiency
    gemm = op.kind in (LINEAR, LM_HEAD, ROUTER, CONV) and load.gemm_m > 0
    if gemm and not eff.cores and not eff.compute_points and load.gemm_m < TILE_M_CHOICES[0]:
        # A matrix-vector product (fewer rows than the smallest MMA tile): each core streams its
        # share of the weights; no fill-up of a large GEMM (its time is the weight stream).
        return 1.0
    if gemm and st.gemm_nk is not None:
        return gemm_efficiency(load.gemm_m, st.gemm_nk[0], st.gemm_nk[1], eff.cores)
    if op.kind == ATTENTION and options.fused_attention and not ph.kv_gather:
        keys = (ph.encoder_tokens if op.cross else ph.context + ph.tokens) or ph.tokens
        return -flash_attention_fraction(keys)  # negative: an absolute fraction of the 16-bit peak
    return None


def _separate_dequant(op: OpShape, nm: DeviceNumerics, options: RuntimeSettings | None, fused: bool) -> bool:
    """True when the engine dequantizes this GEMM's weights with a kernel of their own
    (RuntimeSettings.separate_dequant) and the weights need dequantizing at all."""
    return (options is not None and options.separate_dequant and not fused and nm.dequant_ops_per_weight > 0
            and op.kind in (LINEAR, LM_HEAD, ROUTER))


def dequant_copy(op: OpShape, choice: Choice, nm: DeviceNumerics, options: RuntimeSettings | None, fused: bool) -> bool:
    """True when the engine's matmul for this weight format dequantizes the whole weight into a 16-bit
    copy whenever the input has more than one row (RuntimeSettings.dequant_copy_formats:
    bitsandbytes' 4-bit MatMul4Bit; a one-row input runs the fused gemv_4bit)."""
    return (options is not None and bool(options.dequant_copy_formats) and not fused
            and op.kind in (LINEAR, LM_HEAD, ROUTER)
            and resolve_format(choice.weights, "weights").name in options.dequant_copy_formats)


def dequant_copy_bits(nm: DeviceNumerics, options: RuntimeSettings | None) -> float:
    """Bits per weight value of the whole copies a dequantize-then-GEMM matmul holds at once
    (:func:`dequant_copy`): the copy in the compute type, and, when the engine dequantizes to another
    float type (RuntimeSettings.dequant_copy_dtype), the copy it is cast from, alive while the cast
    runs (bitsandbytes' ``dequantize_4bit(B, quant_state).to(A.dtype)``)."""
    return compute_bits(nm) + cast_copy_bits(options.dequant_copy_dtype if options is not None else None, nm.precision)


def runs_on_cpu(device: DeviceSpec, compute_unit: str | None) -> bool:
    """Whether an engine that names ``compute_unit`` (None: the device's first unit) computes on
    the device's CPU cores."""
    unit = compute_unit if compute_unit is not None and compute_unit in device.unit_names else None
    return (unit or (device.compute_units[0].name if device.compute_units else None)) == "cpu"


def _best_fraction(op: OpShape, device: DeviceSpec, nm: DeviceNumerics, options: RuntimeSettings | None) -> float:
    """Best-shape fraction of the peak a GEMM of ``op`` reaches: the engine's own kernel's
    (:func:`_cpu_int8_fraction`) or the device's at the compute precision (FP8 MAMF < BF16's)."""
    best = _cpu_int8_fraction(op, device, nm, options)
    return best if best is not None else device.efficiency.max_for(nm.precision)


def _cpu_int8_fraction(op: OpShape, device: DeviceSpec, nm: DeviceNumerics, options: RuntimeSettings | None) -> float | None:
    """The engine's quantized-matmul share of the int8 peak for a GEMM run on CPU cores
    (planner.kernels.cpu_int8_gemm_fraction), or None: the device's best-shape fraction."""
    if options is None or options.cpu_int8_block_ops is None or nm.precision != "int8":
        return None
    if op.kind not in (LINEAR, LM_HEAD, ROUTER) or not nm.vector_flops_per_s:
        return None
    if not runs_on_cpu(device, options.compute_unit):
        return None
    return cpu_int8_gemm_fraction(options.cpu_int8_block_ops, nm.peak_flops_per_s, nm.vector_flops_per_s)


def _compute_s(op: OpShape, device: DeviceSpec, nm: DeviceNumerics, flops: float,
               shape: float | None = None, precise: bool = False, best: float | None = None) -> tuple[float, str]:
    """(compute time, compute precision) of ``flops`` of ``op``. ``shape`` > 0 multiplies the
    device's best-shape fraction (GEMMs), < 0 is an absolute fraction of the 16-bit peak (fused
    attention), None leaves the size curve. ``best`` replaces the device's best-shape fraction
    (an engine's own kernel, e.g. llama.cpp's quantized CPU matmul)."""
    eff = device.efficiency
    if op.kind in (NORM, POOL, EMBEDDING):
        # Vector-unit work: the size-efficiency curve is defined in tensor-peak FLOPs, so scale
        # the op to the time it occupies (same fill-up time on the same cores).
        scaled = flops * nm.curve_scale * nm.peak_flops_per_s / nm.vector_flops_per_s if nm.vector_flops_per_s else flops
        return (flops / (nm.vector_flops_per_s * eff.compute(scaled)) if flops > 0 else 0.0), "fp32"
    if flops <= 0:
        return 0.0, ("bf16" if op.kind == ATTENTION else nm.precision)
    if op.kind == ATTENTION and (shape is not None or nm.precision not in ("fp32", "tf32", "bf16", "fp16")):
        # QKᵀ/softmax/AV run in 16-bit even in FP8/INT8 engines (fused MHA kernels keep
        # 16-bit operands; only the KV cache storage is low precision).
        peak = max(_peak_or_zero(device, "bf16"), _peak_or_zero(device, "fp16")) or nm.peak_flops_per_s
        frac = -shape if shape is not None and shape < 0 else eff.compute(flops * nm.curve_scale)
        return flops / (peak * frac), "bf16"
    pmax = best if best is not None else eff.max_for(nm.precision)  # best-shape fraction (FP8 MAMF < BF16's)
    if shape is not None and shape > 0:
        # A GEMM: the size curve's fill-up is replaced by the kernel's waves and K depth.
        return flops / (nm.peak_flops_per_s * pmax * shape), nm.precision
    # The training model (``precise`` False) keeps the size curve at compute_max until it adopts
    # the kernel model.
    ratio = pmax / eff.compute_max if precise else 1.0
    return flops / (nm.peak_flops_per_s * eff.compute(flops * nm.curve_scale) * ratio), nm.precision


def _dequant_s(op: OpShape, device: DeviceSpec, nm: DeviceNumerics, load: OpLoad, w_elems: float) -> float:
    """Time to dequantize the weights a GEMM reads (0 when the format is native)."""
    if not (nm.dequant_ops_per_weight and w_elems) or op.kind in (ATTENTION, NORM, POOL, EMBEDDING):
        return 0.0
    # Fused dequantizing GEMMs convert each weight tile once per 128-row block of tokens, on
    # the vector ALUs (fp32 rate, no size penalty: the kernel is already launched). The
    # conversion sits between the load and the MMA of each tile, so it adds to the
    # weight stream rather than hiding under it: gpt-fast on A100 reaches 1397 GB/s in
    # bf16 but 1069 (int8) and 863 GB/s (int4) — consistent with this serial term.
    tiles = max(1.0, math.ceil(load.gemm_m / 128.0))
    deq_ops = w_elems * nm.dequant_ops_per_weight * tiles
    return deq_ops / (nm.vector_flops_per_s * device.efficiency.compute_max)
