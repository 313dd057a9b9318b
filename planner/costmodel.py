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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.errors import EstimateError
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
from planner.kernels import (
    eager_kernels_per_op,
    elementwise_bytes,
    elementwise_kernels,
    fused_eager_kernels_per_op,
    sampling_bytes,
)
from planner.formats import parse_sparsity
from planner.numerics import Choice, resolve_format
from planner.opcost import (
    KV_GATHER_EFFICIENCY,
    device_numerics,
    kv_proj_share,
    OpStatic,
    low_rank_factor,
    matrix_shape,
    op_cost,
    op_static,
    shard_factor,
    stored_bits,
    stored_row,
)
from planner.placement import (
    activation_peak_bytes,
    allowed_tiers,
    dequant_copy_bytes,
    kv_layer_bytes,
    kv_tp_gain,
    place_memory,
    split_stages,
    stage_weight_bytes,
    stream_time_s,
)
from planner.results import GroupCost, InferenceEstimate, MemoryReport, OpCost, PhaseCost, TierUse, per_token_basis
from planner.serving import RUNTIME_OVERHEAD_S, RuntimeSettings, Serving
from planner.workload import (
    ATTENTION,
    EMBEDDING,
    LM_HEAD,
    NORM,
    Block,
    OpShape,
    Phase,
    Workload,
    build_workload,
    tokens_per_sample,
)

__all__ = [
    "KV_GATHER_EFFICIENCY",
    "RUNTIME_OVERHEAD_S",
    "Choice",
    "ChoiceMap",
    "EstimateError",
    "GroupCost",
    "InferenceEstimate",
    "Layout",
    "MemoryReport",
    "OpCost",
    "PhaseCost",
    "RuntimeSettings",
    "Serving",
    "TierUse",
    "BatchLimit",
    "allowed_tiers",
    "batch_limit",
    "check_layout",
    "estimate_inference",
    "evaluate_phase",
    "group_costs",
    "low_rank_factor",
    "max_batch",
    "memory_report",
    "op_cost",
    "place_memory",
    "resolve_format",
    "stream_time_s",
]


# ---------------------------------------------------------------------------
# Phase evaluation
# ---------------------------------------------------------------------------

ChoiceMap = Mapping[str, Choice]


def _choice_fn(default: Choice, overrides: ChoiceMap | None, device: DeviceSpec | None = None,
               options: RuntimeSettings | None = None):
    """The choice of each operator: its group's override, else ``default`` — except that the
    operator kinds the engine keeps in 16 bit (``options.float_weight_kinds``: the embedding and LM
    head under vLLM, SGLang and transformers, which quantize Linear layers only) take the 16-bit
    choice when ``default`` quantizes the weights and no override names them."""
    kept = _kept_float_choice(default, device, options)
    if kept is None:
        if not overrides:
            return lambda block, i, op: default

        def f(block: Block, i: int, op: OpShape) -> Choice:
            return overrides.get(block.group_fqn(i, op), default)

        return f
    kinds = options.float_weight_kinds
    table = overrides or {}

    def g(block: Block, i: int, op: OpShape) -> Choice:
        got = table.get(block.group_fqn(i, op))
        if got is not None:
            return got
        # a tied LM head is its table (its group is the embedding's): it follows the table's format, unless the
        # engine stores a quantized head as a Linear of its own (untie_quantized_head: LitGPT, ExecuTorch)
        follows = op.tied_to is not None and EMBEDDING in kinds and not options.untie_quantized_head
        return kept if op.kind in kinds or follows else default

    return g


def _kept_float_choice(default: Choice, device: DeviceSpec | None, options: RuntimeSettings | None) -> Choice | None:
    """The 16-bit choice of an operator the engine keeps unquantized, or None when nothing changes
    (no such kinds, or ``default`` already holds its weights in a 16- or 32-bit float): the
    scheme's activations when they are such a float, else the device's native 16-bit float."""
    if options is None or not options.float_weight_kinds or device is None:
        return None
    w = resolve_format(default.weights, "weights")
    if w.kind == "float" and w.bits_per_value() >= 16 and parse_sparsity(default.sparsity).name == "dense":
        return None  # a dense 16-bit scheme: the tables are what it says (a 2:4 one keeps them dense, as plans pin)
    a = resolve_format(default.activations, "activations")
    if a.kind == "float" and a.bits_per_value() >= 16:
        act = a.name
    else:
        from planner.options import base_activation_format

        act = base_activation_format(device)
    return Choice(weights=act, activations=act, kv=default.kv, sparsity="dense")


def evaluate_phase(
    work: Workload,
    ph: Phase,
    device: DeviceSpec,
    layout: Layout,
    default: Choice,
    overrides: ChoiceMap | None,
    weight_fractions: Mapping[str, float],
    options: RuntimeSettings,
    kv_on_device: float = 1.0,
) -> PhaseCost:
    """Time of one forward pass of the whole model (all pipeline stages) on ``layout``."""
    dev_tier = device.device_tier
    on_device = weight_fractions.get(dev_tier.name, 1.0 if not weight_fractions else 0.0)
    ops_out: list[OpCost] = []
    device_s = busy = flops_total = streamed_total = kv_streamed = comm_s = bytes_dev = 0.0
    for c, streamed, n in _phase_ops(work, ph, device, layout, default, overrides, on_device, options):
        ops_out.append(c)
        device_s += c.time_s * n
        comm_s += c.comm_s * n
        flops_total += c.flops * n
        streamed_total += streamed * n
        if kv_on_device < 1.0 and c.kv_bytes:
            kv_streamed += c.kv_bytes * (1.0 - kv_on_device) * n
        bytes_dev += (c.weight_bytes * on_device + c.activation_bytes + c.kv_bytes) * n
        if c.time_s > 0:
            busy += max(c.compute_s, c.memory_s) * n
    extra = _elementwise_cost(work, ph, device, layout, default, options)
    if extra is not None:
        ops_out.append(extra)
        device_s += extra.time_s * extra.count
        busy += extra.memory_s * extra.count
        bytes_dev += extra.activation_bytes * extra.count
    by_tier = {dev_tier.name: bytes_dev}
    stream_s = _stream_s(device, weight_fractions, streamed_total, kv_streamed, options, by_tier)
    # Pipeline: activations cross (pp-1) stage boundaries.
    if layout.pp > 1:
        nbytes = ph.batch * ph.tokens * work.arch.hidden_size * 2.0 / max(layout.tp, 1)
        comm_s += (layout.pp - 1) * p2p_stage_s(device, nbytes, strides(layout).pp)
    t_total = max(device_s, stream_s) + comm_s
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
        bound=_phase_bound(ops_out, device_s, stream_s, comm_s, t_total),
        ops=tuple(ops_out),
    )


def _phase_ops(
    work: Workload,
    ph: Phase,
    device: DeviceSpec,
    layout: Layout,
    default: Choice,
    overrides: ChoiceMap | None,
    on_device: float,
    options: RuntimeSettings,
) -> Iterator[tuple[OpCost, float, float]]:
    """Every operator row of one pass: (cost with its communication, weight bytes streamed
    from slower tiers, instances it stands for). Layers of a repeated block share one row
    unless per-group overrides make them differ."""
    if overrides:
        rows: Iterable[_OpRow] = _op_rows(work, device, layout, default, overrides, options)
    else:
        rows = _uniform_op_rows(work, device, layout, default, options)
    cp_attention = layout.cp > 1
    for op, st, ch, name, cnt, share, stage in rows:
        p = stage_phase(ph, stage, op)
        if p is None:
            continue
        c, streamed = op_cost(op, p, device, ch, layout, name=name, count=cnt, weights_on_device=on_device,
                              options=options, static=st)
        if op.allreduce_after or (cp_attention and op.kind == ATTENTION):
            comm = _op_comm(op, p, device, ch, layout, c.time_s)
            if comm:
                c = _with_comm(c, comm)
        yield c, streamed, cnt * share


# One operator row of a pass: (operator, its phase-independent cost terms, its choice, its name,
# the layer instances it stands for, the share of them that run it under cross-layer KV sharing,
# its block's stage: an encoder-decoder's stages run different tokens, :func:`stage_phase`).
_OpRow = tuple[OpShape, OpStatic, Choice, str, int, float, str]


def stage_phase(ph: Phase, stage: str, op: OpShape | None = None) -> Phase | None:
    """The pass an operator of ``stage`` (``op``; left out: the stage's layers as a whole) runs in ``ph``,
    or None when it does not run.

    An encoder-decoder (T5; ``ph.encoder_tokens`` > 0) runs its encoder over the prompt once, in the
    prefill, together with the cross-attention K/V projections of every decoder layer (their output is
    the cross-attention cache). The decoder starts from one start token: its prefill is one token, its
    self-attention cache holds the generated tokens only, and decode steps run the decoder alone
    (Raffel et al. 2020; Hugging Face ``generate`` with ``past_key_values``: the cross-attention keys and
    values are computed at the first step and reused). Decoder-only models run every stage on ``ph``."""
    if not ph.encoder_tokens:
        return ph
    if stage == "encoder" or (op is not None and op.cross and op.kind != ATTENTION):
        return ph if ph.name == "prefill" else None
    if ph.name == "prefill" and stage in ("decoder", "post"):
        return replace(ph, tokens=1, context=0.0, logits_tokens=1)
    return ph


def _op_rows(work: Workload, device: DeviceSpec, layout: Layout, default: Choice, overrides: ChoiceMap | None,
             options: RuntimeSettings) -> Iterator[_OpRow]:
    choice_for = _choice_fn(default, overrides, device, options)
    uniform = not overrides
    for b in work.blocks:
        host_kernels = block_host_kernels(work.arch, b, options.eager_fused_ops)
        instances = [(0, b.count)] if uniform else [(i, 1) for i in range(b.count)]
        # Dataflow devices fuse a layer's operators (activations stay on chip).
        for i, cnt in instances:
            for op in b.ops:
                ch = choice_for(b, i, op)
                name = f"{b.prefix}.{{i}}.{op.name}" if uniform and b.repeated else b.fqn(i, op)
                fused = device.dataflow_fusion and op.kind not in (EMBEDDING, LM_HEAD) and b.repeated
                st = op_static(op, device, ch, layout, fused=fused, host_overhead_s=options.host_overhead_s,
                               options=options, host_kernels=host_kernels)
                # Cross-layer KV sharing: only 1 in kv_share_layers layers runs its K/V projection.
                yield op, st, ch, name, cnt, kv_proj_share(op, options), b.stage


def block_host_kernels(arch: ArchSpec, block, fused_ops: bool = False) -> float:
    """Kernels eager PyTorch launches per modelled operator of ``block``: a repeated layer's
    average (planner.kernels.eager_kernels_per_op, the Transformers modules' ATen kernels; with
    ``fused_ops``, an engine's own fused kernels, planner.kernels.fused_eager_kernels_per_op), one
    for the operators outside the layers (embedding, final norm, LM head)."""
    if not block.repeated:
        return 1.0
    if fused_ops:
        return fused_eager_kernels_per_op(arch, tuple((op.kind, op.group, bool(op.experts)) for op in block.ops))
    return eager_kernels_per_op(arch, tuple(op.kind for op in block.ops))


@functools.lru_cache(maxsize=1024)
def _uniform_op_rows_cached(arch: ArchSpec, device: DeviceSpec, layout: Layout, choice: Choice,
                            options: RuntimeSettings, host_overhead_s: float) -> tuple[_OpRow, ...]:
    # ``host_overhead_s`` is options.host_overhead_s, a module-level table a cross-validation run
    # sets per fold (benchmarks/fitted.py): part of the key, so a row built under one value is
    # never served under another.
    return tuple(_op_rows(build_workload(arch), device, layout, choice, None, options))


def _uniform_op_rows(work: Workload, device: DeviceSpec, layout: Layout, choice: Choice,
                     options: RuntimeSettings) -> tuple[_OpRow, ...]:
    """The operator rows of a pass where every layer has ``choice``: they do not depend on the
    phase, so a sweep over batch and sequence builds them once (options with a placement map
    are not hashable, and a workload not built from its architecture is not cached either)."""
    if options.placement is not None or build_workload(work.arch) is not work:
        return tuple(_op_rows(work, device, layout, choice, None, options))
    return _uniform_op_rows_cached(work.arch, device, layout, choice, options, options.host_overhead_s)


def _elementwise_cost(work: Workload, ph: Phase, device: DeviceSpec, layout: Layout, choice: Choice,
                      options: RuntimeSettings) -> OpCost | None:
    """Residual adds, activation and rotary of every layer the pass runs as memory passes, for an engine
    that runs them as separate kernels (planner.kernels.elementwise_bytes); None when fused. One row
    for all of them, at the mean per layer: an encoder-decoder's prefill runs its encoder layers over the
    prompt and its decoder layers over the start token, a decode step the decoder layers only
    (:func:`stage_phase`)."""
    a = work.arch
    if options.fused_elementwise or not a.generative or device.dataflow_fusion:
        return None
    tp = max(layout.tp, 1)
    act_bytes = stored_act_bits(device, choice, options) / 8.0
    rotary = a.position_encoding == "rope"
    eff = device.efficiency
    overhead = elementwise_kernels(a.gated_mlp, rotary) * eff.kernel_overhead_s
    stages = [(a.num_layers, ph)]
    if a.family == "encoder_decoder" and ph.encoder_tokens:
        stages = [(a.num_layers, stage_phase(ph, "encoder")),
                  (a.num_decoder_layers or a.num_layers, stage_phase(ph, "decoder"))]
    layers = nbytes = mem_s = 0.0
    for n, p in stages:
        if p is None:
            continue
        b = elementwise_bytes(p.batch * p.tokens, a.hidden_size, a.intermediate_size / tp, a.q_dim / tp,
                              a.kv_dim / tp, act_bytes, gated=a.gated_mlp, rotary=rotary)
        layers += n
        nbytes += n * b
        mem_s += n * b / (device.device_tier.bandwidth_bytes_per_s * eff.bandwidth(b))
    if not layers:
        return None
    nbytes, mem_s = nbytes / layers, mem_s / layers
    return OpCost(name="layers.{i}.elementwise", kind="elementwise", group="", count=int(layers), flops=0.0,
                  weight_bytes=0.0, activation_bytes=nbytes, kv_bytes=0.0, compute_s=0.0, memory_s=mem_s, comm_s=0.0,
                  overhead_s=overhead, time_s=mem_s + overhead, bound="memory" if mem_s >= overhead else "overhead",
                  precision="bf16")


def _step_overhead_s(arch: ArchSpec, device: DeviceSpec, batch: int, options: RuntimeSettings) -> float:
    """Per forward step beyond the operators: one synchronisation, the engine's host time
    (scheduler, sampling launch) and, for generative models, the sampling pass over the logits."""
    eff = device.efficiency
    t = eff.kernel_overhead_s + options.step_overhead_s
    if arch.generative and arch.vocab_size:
        nbytes = sampling_bytes(batch, arch.vocab_size)
        t += nbytes / (device.device_tier.bandwidth_bytes_per_s * eff.bandwidth(nbytes))
    return t


def _stream_s(
    device: DeviceSpec,
    weight_fractions: Mapping[str, float],
    streamed: float,
    kv_streamed: float,
    options: RuntimeSettings,
    by_tier: dict[str, float],
) -> float:
    """Time to stream spilled weights (and offloaded KV cache) from slower tiers; adds the
    bytes each tier serves to ``by_tier``. Weights held on chip (FPGA BRAM/URAM) count as
    streamed from a tier whose reads cost no device bandwidth."""
    stream_s = 0.0
    dev_name = device.device_tier.name
    if streamed > 0:
        off = {k: v for k, v in weight_fractions.items() if k != dev_name}
        tot = sum(off.values()) or 1.0
        for name, frac in off.items():
            t = device.tier(name)
            nbytes = streamed * frac / tot
            by_tier[name] = nbytes
            if t.role != "on_chip":
                stream_s += stream_time_s(device, t, nbytes, options)
    if kv_streamed > 0:
        host = next((t for t in device.tiers if t.role == "host"), None)
        if host is not None:
            by_tier[host.name] = by_tier.get(host.name, 0.0) + kv_streamed
            stream_s += stream_time_s(device, host, kv_streamed, options)
    return stream_s


def _phase_bound(ops: list[OpCost], device_s: float, stream_s: float, comm_s: float, t_total: float) -> str:
    """What limits a pass: streaming, communication, or the operators' compute, memory or
    launch overhead (whichever sums largest)."""
    if stream_s > device_s:
        return "stream"
    if comm_s > 0.5 * t_total:
        return "communication"
    comp = sum(o.compute_s * o.count for o in ops)
    mem = sum(o.memory_s * o.count for o in ops)
    ovh = sum(o.overhead_s * o.count for o in ops)
    return max((comp, "compute"), (mem, "memory"), (ovh, "overhead"))[1]


def _with_comm(c: OpCost, comm: float) -> OpCost:
    # Spelled out rather than dataclasses.replace: this runs for every communicating operator.
    return OpCost(name=c.name, kind=c.kind, group=c.group, count=c.count, flops=c.flops, weight_bytes=c.weight_bytes,
                  activation_bytes=c.activation_bytes, kv_bytes=c.kv_bytes, compute_s=c.compute_s, memory_s=c.memory_s,
                  comm_s=comm, overhead_s=c.overhead_s, time_s=c.time_s, bound=c.bound, precision=c.precision)


# ---------------------------------------------------------------------------
# Whole estimate
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _uniform_weight_bytes(arch: ArchSpec, device: DeviceSpec, choice: Choice, layout: Layout,
                          options: RuntimeSettings) -> tuple[tuple[float, ...], float]:
    """(weight bytes per pipeline stage on one device, whole-model weight bytes) when every layer
    has ``choice``: they do not depend on the batch or the sequence, so a sweep over those
    computes them once."""
    work = build_workload(arch)
    choice_for = _choice_fn(choice, None, device, options)
    stages = stage_weight_bytes(work, device, choice_for, layout, uniform=True, options=options)
    total = sum(stage_weight_bytes(work, device, choice_for, Layout(), uniform=True, options=options))
    return tuple(stages), total


def memory_report(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout,
    serving: Serving,
    choice: Choice,
    overrides: ChoiceMap | None = None,
    options: RuntimeSettings = RuntimeSettings(),
) -> tuple[MemoryReport, dict[str, float]]:
    """Memory per device and tier placement for ``serving`` on ``layout``."""
    work = build_workload(arch)
    if overrides or options.placement is not None:  # per-layer choices, or an unhashable placement map
        choice_for = _choice_fn(choice, overrides, device, options)
        uniform = not overrides
        stage_bytes = stage_weight_bytes(work, device, choice_for, layout, uniform=uniform, options=options)
        # Whole-model bytes (replicated operators such as norms and routers counted once).
        weights_total = sum(stage_weight_bytes(work, device, choice_for, Layout(), uniform=uniform, options=options))
    else:
        stage_bytes, weights_total = _uniform_weight_bytes(arch, device, choice, layout, options)
    weights_dev = max(stage_bytes)
    generative = arch.generative
    kv_tokens = static_kv_tokens(serving, options) if generative else 0
    kv_layers = [serving.batch * x for x in _kv_layer_bytes(work, device, choice, layout.tp, kv_tokens, options)]
    # The busiest pipeline stage sets the memory per device; CP shards the cache by position.
    kv_stages = [x / layout.cp for x in split_stages(kv_layers, layout.pp)] if kv_layers else [0.0] * layout.pp
    w_stages = stage_bytes if len(stage_bytes) == layout.pp else [weights_dev] * layout.pp
    top = max(range(layout.pp), key=lambda s: w_stages[s] + kv_stages[s])
    weights_dev, kv_dev = w_stages[top], kv_stages[top]
    # One replica's whole KV cache: each tp rank holds 1/gain of it (gain = min(tp, KV heads));
    # ranks beyond the KV heads hold replicas, which are not counted twice.
    kv_total = sum(kv_layers) * kv_tp_gain(work, layout.tp)
    prefill = _activation_phase(_prefill_phase(arch, serving, cp=layout.cp), options)
    if options.static_memory_plan and arch.family == "decoder":
        # The memory plan sizes activations at the token dimension's upper bound: the program's
        # sequence capacity less one (ExecuTorch export_llama: Dim("token_dim", max=max_seq_len - 1)).
        prefill = replace(prefill, tokens=max(prefill.tokens, static_kv_tokens(serving, options) - 1))
    act_dev = activation_peak_bytes(work, prefill, stored_act_bits(device, choice, options), layout.tp,
                                    unfused_gate=options.static_memory_plan and not options.fused_elementwise)
    if options.dequant_copy_formats and (prefill.batch * prefill.tokens > 1 or (generative and serving.batch > 1)):
        # A prompt (or a decode batch) runs the engine's dequantize-then-GEMM path: the largest weight's
        # 16-bit copy is held beside the activations while its GEMM runs (bitsandbytes' MatMul4Bit).
        act_dev += dequant_copy_bytes(work, device, _choice_fn(choice, overrides, device, options), layout, options,
                                      uniform=not overrides)
    tiers, fractions, shortfall = place_memory(device, weights_dev, kv_dev, act_dev, options)
    dev = device.device_tier
    offloaded = sum(t.weights_bytes for t in tiers if t.name != dev.name and t.role != "on_chip")
    offloaded_kv = sum(t.kv_cache_bytes for t in tiers if t.name != dev.name)
    limited_by = "device_memory" if shortfall > 0 else None
    kv_pool = kv_on_device = None
    if options.kv_memory_fraction < 1.0 and shortfall <= 0:
        # The engine gives its KV cache only a share of what weights, activations and its
        # context leave free on the device (TensorRT-LLM free_gpu_memory_fraction); weights and KV
        # placed in slower tiers (--allow-offload) take none of it.
        free = device.memory_capacity_bytes - (weights_dev - offloaded) - act_dev - options.reserved_bytes
        kv_pool, kv_on_device = options.kv_memory_fraction * max(free, 0.0), kv_dev - offloaded_kv
        shortfall = kv_on_device - options.kv_memory_fraction * free
        shortfall = shortfall if shortfall > 1.0 else 0.0  # under a byte: rounding of an exact fill
        limited_by = "kv_pool" if shortfall > 0 else None
    per_device = weights_dev + kv_dev + act_dev + options.reserved_bytes  # + the engine's runtime context
    rep = MemoryReport(
        weights_bytes=weights_total,
        kv_cache_bytes=kv_total,
        activations_bytes=act_dev,
        per_device_bytes=per_device,
        # the device's memory *and* its on-chip tiers (an FPGA's BRAM, the SN40L's SRAM), which hold what the
        # placement put there and which per_device_bytes counts: a batch that fills the DDR was 4.003 GB "of 4.00 GB"
        device_capacity_bytes=device.memory_capacity_bytes + sum(t.capacity_bytes for t in device.tiers
                                                                  if t.role == "on_chip"),
        fits=shortfall <= 0,
        shortfall_bytes=shortfall,
        tiers=tuple(tiers),
        offloaded_weights_bytes=offloaded,
        offloaded_kv_bytes=offloaded_kv,
        kv_pool_bytes=kv_pool,
        kv_on_device_bytes=kv_on_device,
        limited_by=limited_by,
    )
    return rep, fractions


def _kv_layer_bytes(work: Workload, device: DeviceSpec, choice: Choice, tp: int, tokens: int,
                    options: RuntimeSettings) -> Sequence[float]:
    """:func:`planner.placement.kv_layer_bytes`, computed once per configuration and cached-token
    count (it does not depend on the batch)."""
    if options.placement is not None or build_workload(work.arch) is not work:
        return kv_layer_bytes(work, device, choice, tp, tokens, options)
    return _kv_layer_bytes_cached(work.arch, device, choice, tp, tokens, options)


@functools.lru_cache(maxsize=1024)
def _kv_layer_bytes_cached(arch: ArchSpec, device: DeviceSpec, choice: Choice, tp: int, tokens: int,
                           options: RuntimeSettings) -> tuple[float, ...]:
    return tuple(kv_layer_bytes(build_workload(arch), device, choice, tp, tokens, options))


def static_kv_tokens(serving: Serving, options: RuntimeSettings) -> int:
    """Tokens the KV cache holds memory for: the request's prompt + gen, or under a static memory
    plan the program's sequence capacity when larger (a KV buffer of max_seq_length positions)."""
    tokens = serving.prompt + serving.gen
    return max(tokens, options.static_tokens) if options.static_memory_plan else tokens


def stored_act_bits(device: DeviceSpec, choice: Choice, options: RuntimeSettings) -> float:
    """Bits of the activations held between operators: the scheme's, or the engine's float storage
    when the scheme quantizes activations below 16 bits inside each GEMM (dynamic quantization:
    ExecuTorch's 8da4w, the serving engines' W8A8 / FP8 / NVFP4 linear layers)."""
    bits = device_numerics(device, choice, 1, 1).act_bits
    if options.quantized_act_storage_bits and bits < 16:
        return options.quantized_act_storage_bits
    return bits


def _activation_phase(ph: Phase, options: RuntimeSettings) -> Phase:
    """The prefill iteration whose activations are live at once: under chunked prefill the
    engine processes at most ``prefill_chunk_tokens`` prompt tokens per iteration."""
    chunk = options.prefill_chunk_tokens
    if not chunk or ph.batch * ph.tokens <= chunk:
        return ph
    tokens = min(ph.tokens, chunk)
    return replace(ph, batch=max(1, min(ph.batch, chunk // max(tokens, 1))), tokens=tokens)


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
    # An encoder-decoder's self-attention caches the decoder's own tokens (the start token and those
    # generated); the prompt is in its cross-attention cache (``encoder_tokens``).
    first = 1 if arch.family == "encoder_decoder" else serving.prompt
    ctx = (first + max(serving.gen - 1, 0) / 2.0) / cp
    return Phase(name="decode", batch=batch, tokens=1, context=ctx,
                 encoder_tokens=serving.prompt if arch.family == "encoder_decoder" else 0, kv_gather=True)


def _check_serving(arch: ArchSpec, serving: Serving, layout: Layout) -> None:
    if serving.batch < 1:
        raise EstimateError("batch", f"{{@batch}} must be a positive integer; got {serving.batch}")
    if serving.prompt < 0 or serving.gen < 0:
        raise EstimateError("prompt" if serving.prompt < 0 else "gen", "token counts must be ≥ 0")
    _check_cp_prompt(arch, serving, layout)


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
    options: RuntimeSettings = RuntimeSettings(),
) -> InferenceEstimate:
    """Predict prefill (TTFT), decode (TPOT), throughput, memory, energy and cost."""
    check_layout_on(arch, device, layout)
    _check_serving(arch, serving, layout)
    work = build_workload(arch)
    mem, fractions = memory_report(arch, device, layout, serving, choice, overrides, options)
    notes = _memory_notes(mem)
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
    step = _step_overhead_s(arch, device, mb, options)
    prefill_pipe_s = pipeline_time_s([passes[s].time_s for s in sizes], layout.pp)
    ttft = prefill_pipe_s + step
    generative = arch.generative
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
    prompt_tokens = b * tokens_per_sample(arch, serving.prompt)  # a CNN: 1 per image; a ViT: its patches
    prefill_tps = dp * prompt_tokens / ttft if ttft > 0 else 0.0
    samples = dp * b / latency if latency > 0 else 0.0

    e_run = _energy_j(device, layout, prefill, prefill_pipe_s, decode, gen_steps)
    per_token = e_run / out_tokens if out_tokens else e_run / max(prompt_tokens, 1)
    # Devices without a rental price (phones, FPGA boards) report no cost.
    usd_h = device.usd_per_hour * layout.devices if device.usd_per_hour is not None else None
    tokens_for_cost = output_tps if output_tps else prefill_tps
    usd_per_m = usd_h / 3600.0 / tokens_for_cost * 1e6 if (usd_h is not None and tokens_for_cost) else None

    switch_in = _switch_in_s(device, layout, mem)
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
        per_token=per_token_basis(arch.family, serving.gen),
        generative=generative,
    )


def _memory_notes(mem: MemoryReport) -> list[str]:
    notes: list[str] = []
    if not mem.fits and mem.limited_by == "kv_pool":
        notes.append(
            f"does not fit: the KV cache needs {(mem.kv_on_device_bytes or 0.0) / 1e9:.2f} GB per device, "
            f"{mem.shortfall_bytes / 1e9:.2f} GB more than the {(mem.kv_pool_bytes or 0.0) / 1e9:.2f} GB KV pool the "
            "engine's memory fraction leaves (the device itself would hold it)"
        )
    elif not mem.fits:
        notes.append(
            f"does not fit: needs {mem.per_device_bytes / 1e9:.2f} GB per device, "
            f"{mem.shortfall_bytes / 1e9:.2f} GB more than the allowed tiers hold"
        )
    if mem.offloaded_weights_bytes > 0:
        notes.append(f"{mem.offloaded_weights_bytes / 1e9:.2f} GB of weights per device stream from slower tiers each pass")
    return notes


def _energy_j(
    device: DeviceSpec, layout: Layout, prefill: PhaseCost, prefill_pipe_s: float, decode: PhaseCost | None, gen_steps: int
) -> float:
    """Energy of one request batch on the devices of one replica: idle power for the whole
    time plus dynamic power scaled by how busy the device is (compute or bandwidth, whichever
    limits each operator)."""
    idle, tdp = device.idle_w, device.tdp_w
    n_dev = layout.model_parallel

    def phase_energy(pc: PhaseCost) -> float:
        util = min(1.0, pc.busy_s / pc.time_s) if pc.time_s > 0 else 0.0
        return n_dev * pc.time_s * (idle + (tdp - idle) * util)

    e_run = phase_energy(prefill) * (prefill_pipe_s / prefill.time_s if prefill.time_s > 0 else 1.0)
    if decode is not None:
        e_run += gen_steps * phase_energy(decode)
    return e_run


def _switch_in_s(device: DeviceSpec, layout: Layout, mem: MemoryReport) -> float | None:
    """Time to bring the device-resident weights in from the first slower tier (model
    switching); None on a device without one."""
    ext = [t for t in device.tiers if t.role in ("device_ext", "host", "storage")]
    if not ext:
        return None
    src = ext[0]
    link_bw = src.bandwidth_bytes_per_s
    if src.role == "host" and device.host_link is not None:
        link_bw = min(link_bw, device.host_link.bandwidth_bytes_per_s)
    resident = mem.weights_bytes / max(layout.devices // layout.dp, 1) - mem.offloaded_weights_bytes
    return max(resident, 0.0) / link_bw + src.latency_s


def _gb_or_mb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n / 1e6:.2f} MB"


@dataclass(frozen=True, slots=True)
class BatchLimit:
    """The largest batch per replica and what stops the next one (:func:`batch_limit`).

    ``bound``: ``memory`` (batch + 1 does not fit), ``kv_fraction`` (it would fit the device but not
    the share of free memory the engine gives its KV cache), ``resident_weights`` (it fits only by
    moving weights that batch 1 keeps in the device's memory out to a slower tier, or spilling KV
    cache there), ``limit`` (the search's upper end), ``none`` (not even batch 1 fits)."""

    batch: int
    bound: str
    #: of batch + 1: bytes of weights (and KV cache) it would move to slower tiers beyond batch 1's,
    #: or its memory shortfall
    over_bytes: float = 0.0
    #: the tiers batch + 1 would move weights or KV cache to (``resident_weights``)
    tiers: tuple[str, ...] = ()

    def text(self, engine: str | None = None, setting: str | None = None, *, kv: bool = True) -> str:
        """The sentence; ``setting``: the engine's name for its memory fraction
        (``memory_fraction_setting``), named for a ``kv_fraction`` bound; ``kv``: whether the model
        keeps a KV cache (an encoder's or CNN's batch grows its activations only)."""
        nxt = self.batch + 1
        grows = "KV cache" if kv else "activations"
        if self.bound == "resident_weights":
            return (f"batch {self.batch} is the largest whose {grows} fit{'s' if kv else ''} beside the weights batch 1 keeps in device "
                    f"memory; batch {nxt} would move {_gb_or_mb(self.over_bytes)} more of them to "
                    f"{', '.join(self.tiers)}, streamed every step (ask for a larger batch explicitly to price it)")
        if self.bound == "kv_fraction":
            who = f"{engine}'s" if engine else "the engine's"
            share = f"its {setting}" if setting else "its share of memory"
            return (f"batch {self.batch} is the largest whose KV cache fits {who} KV pool ({share}); "
                    f"batch {nxt} is short by {self.over_bytes / 1e9:.2f} GB")
        if self.bound == "memory":
            return (f"batch {self.batch} is the largest that fits device memory; batch {nxt} is short by "
                    f"{self.over_bytes / 1e9:.2f} GB")
        if self.bound == "limit":
            return f"batch {self.batch} is the search's upper limit"
        return "not even batch 1 fits"

    def to_dict(self) -> dict:
        return {"batch": self.batch, "bound": self.bound, "over_bytes": self.over_bytes, "tiers": list(self.tiers)}


def batch_limit(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout = Layout(),
    serving: Serving = Serving(),
    choice: Choice = Choice(),
    overrides: ChoiceMap | None = None,
    options: RuntimeSettings = RuntimeSettings(),
    limit: int = 1 << 20,
) -> BatchLimit:
    """Largest batch per replica whose memory fits with the weights placed as at batch 1: the KV
    cache takes what batch 1's weights leave in the device's memory, and no batch counts as fitting
    by pushing weights (or KV cache) out to a slower tier (flash, host memory) that batch 1 keeps
    resident. A larger batch may still fit by streaming weights; asked for explicitly, it is priced."""

    def report(b: int) -> MemoryReport:
        s = Serving(batch=b, prompt=serving.prompt, gen=serving.gen)
        return memory_report(arch, device, layout, s, choice, overrides, options)[0]

    base = report(1)
    if not base.fits:
        return BatchLimit(0, "none", base.shortfall_bytes)
    base_w = {t.name: t.weights_bytes for t in base.tiers}
    base_kv = base.offloaded_kv_bytes
    dev = device.device_tier.name

    def moved(m: MemoryReport) -> tuple[float, tuple[str, ...]]:
        """Bytes of weights and KV cache placed off the device beyond batch 1's, and the tiers."""
        over, where = m.offloaded_kv_bytes - base_kv, []
        if over > 1.0:
            where += [t.name for t in m.tiers if t.name != dev and t.kv_cache_bytes > 0]
        for t in m.tiers:
            if t.name != dev and t.role != "on_chip" and t.weights_bytes - base_w.get(t.name, 0.0) > 1.0:
                over += t.weights_bytes - base_w.get(t.name, 0.0)
                where.append(t.name)
        return max(over, 0.0), tuple(dict.fromkeys(where))

    def ok(b: int) -> bool:
        m = report(b)
        return m.fits and moved(m)[0] <= 1.0

    lo, hi = 1, 2
    while hi <= limit and ok(hi):
        lo, hi = hi, hi * 2
    if hi > limit:
        hi = limit + 1
        if lo == limit or ok(limit):
            return BatchLimit(limit, "limit")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    nxt = report(lo + 1)
    if not nxt.fits:
        return BatchLimit(lo, "kv_fraction" if nxt.limited_by == "kv_pool" else "memory", nxt.shortfall_bytes)
    over, where = moved(nxt)
    return BatchLimit(lo, "resident_weights", over, where)


def max_batch(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout = Layout(),
    serving: Serving = Serving(),
    choice: Choice = Choice(),
    overrides: ChoiceMap | None = None,
    options: RuntimeSettings = RuntimeSettings(),
    limit: int = 1 << 20,
) -> int:
    """Largest batch per replica whose memory fits with the weights placed as at batch 1 (0 if not
    even batch 1 fits); :func:`batch_limit` says what bounds it."""
    return batch_limit(arch, device, layout, serving, choice, overrides, options, limit).batch


# ---------------------------------------------------------------------------
# Per-decision-group costs (what the compression planner's ILP consumes)
# ---------------------------------------------------------------------------


def group_costs(
    arch: ArchSpec,
    device: DeviceSpec,
    layout: Layout,
    serving: Serving,
    choice: Choice,
    options: RuntimeSettings = RuntimeSettings(),
) -> list[GroupCost]:
    """Additive cost of every weighted decision group of one layer instance under ``choice``.

    Layers of a repeated block are identical, so each (block, group) is priced once and
    carries ``count``. Non-weighted operators (attention core, norms) are not included:
    they depend only on the activation and KV formats. ``options`` are the runtime settings the
    estimate of the assembled plan uses (the same kernel terms, so the ILP's sums equal it).
    """
    work = build_workload(arch)
    mb = microbatch_sizes(serving.batch, layout.pp)[0]
    pre = _prefill_phase(arch, serving, mb, layout.cp)
    dec = _decode_phase(arch, serving, mb, layout.cp)
    out: list[GroupCost] = []
    for b in work.blocks:
        host_kernels = block_host_kernels(arch, b, options.eager_fused_ops)
        groups: dict[str, list[OpShape]] = {}
        for op in b.ops:
            if op.is_weighted or (op.kind == LM_HEAD and op.tied_to):
                groups.setdefault(op.group, []).append(op)
        for g, ops in groups.items():
            w_bytes = pf = ps = ds = dbytes = 0.0
            params = 0
            for op in ops:
                op_pre = stage_phase(pre, b.stage, op)
                if op_pre is not None:
                    cp, _ = op_cost(op, op_pre, device, choice, layout, name=op.name,
                                    fused=device.dataflow_fusion and b.repeated, host_overhead_s=options.host_overhead_s,
                                    options=options, host_kernels=host_kernels)
                    ps += cp.time_s + _op_comm(op, op_pre, device, choice, layout)
                    pf += cp.flops
                op_dec = stage_phase(dec, b.stage, op)
                if arch.generative and serving.gen > 0 and op_dec is not None:
                    cd, _ = op_cost(op, op_dec, device, choice, layout, name=op.name, fused=device.dataflow_fusion and b.repeated,
                                    host_overhead_s=options.host_overhead_s, options=options, host_kernels=host_kernels)
                    ds += cd.time_s + _op_comm(op, op_dec, device, choice, layout)
                    dbytes += cd.weight_bytes
                if op.weight_params:
                    params += op.weight_params
                    rows, cols = matrix_shape(op)
                    nm = device_numerics(device, choice, rows or 1, cols or 1, stored=stored_bits(options, stored_row(op)))
                    w_bytes += op.weight_params * low_rank_factor(op, choice) * (2.0 if op.kind == NORM else nm.weight_bits / 8.0) / shard_factor(op, layout)
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
    return max(device_numerics(device, choice, 1, 1).act_bits, 16.0) / 8.0
