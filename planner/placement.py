"""Memory placement: weight, KV-cache and activation bytes per device and pipeline stage, and
their placement on a device's memory tiers — weights that do not fit the device tier spill to
the next allowed tier (RDU DDR, phone flash, host memory with ``allow_offload``) and are
streamed every pass at that tier's bandwidth. Pure functions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwmodels import DeviceSpec, MemoryTier
from planner.numerics import resolve_format
from planner.opcost import (dequant_copy, dequant_copy_bits, device_numerics, kv_mixed_bits, kv_proj_share, kv_shard, low_rank_factor, matrix_shape, shard_factor,
                            stored_bits, stored_row)
from planner.results import TierUse
from planner.workload import ATTENTION, LM_HEAD, NORM, Block, OpShape, Phase, Workload, op_load

if TYPE_CHECKING:
    from planner.numerics import Choice
    from planner.serving import RuntimeSettings
    from planner.layout import Layout


def block_weight_bytes(
    block: Block, device: DeviceSpec, choice_for, layout: Layout, uniform: bool = False, options: RuntimeSettings | None = None
) -> list[float]:
    """Per-instance weight bytes on one device for every instance of ``block`` (K/V projections
    dropped by cross-layer KV sharing are averaged over the layers)."""
    out = []
    for i in range(1 if uniform else block.count):
        total = 0.0
        for op in block.ops:
            p = op.weight_params or _untied_head_params(op, block, i, choice_for, options)
            if not p:
                continue
            ch = choice_for(block, i, op)
            if op.kind == NORM:
                total += p * 2.0
                continue
            rows, cols = matrix_shape(op)
            nm = device_numerics(device, ch, rows or 1, cols or 1, stored=stored_bits(options, stored_row(op)))
            total += p * low_rank_factor(op, ch) * kv_proj_share(op, options) * nm.weight_bits / 8.0 / shard_factor(op, layout)
        out.append(total)
    return out * block.count if uniform else out


def dequant_copy_bytes(work: Workload, device: DeviceSpec, choice_for, layout: Layout,
                       options: RuntimeSettings | None, uniform: bool = False) -> float:
    """Bytes of the largest 16-bit copy of a weight that the engine dequantizes before its GEMM
    (RuntimeSettings.dequant_copy_formats: bitsandbytes' 4-bit matmul for an input of more than one
    row), on one device: a transient that exists beside the activations while that GEMM runs; with
    the copy it was cast from when the engine dequantizes to another float type (dequant_copy_bits).
    ``uniform``: every layer of a block has the same choices, so its first stands for all (as in
    :func:`block_weight_bytes`)."""
    if options is None or not options.dequant_copy_formats:
        return 0.0
    best = 0.0
    for block in work.blocks:
        for i in range(1 if uniform else block.count):
            for op in block.ops:
                p = op.weight_params or _untied_head_params(op, block, i, choice_for, options)
                if not p:
                    continue
                ch = choice_for(block, i, op)
                rows, cols = matrix_shape(op)
                nm = device_numerics(device, ch, rows or 1, cols or 1)
                if dequant_copy(op, ch, nm, options, False):
                    # one Linear at a time: an MoE operator's experts are dequantized expert by expert
                    shard = 1.0 if op.experts and layout.ep > 1 else shard_factor(op, layout)  # EP: whole experts
                    copy = p / max(1, op.experts) * low_rank_factor(op, ch) * dequant_copy_bits(nm, options) / 8.0 / shard
                    best = max(best, copy)
    return best


def _untied_head_params(op: OpShape, block: Block, i: int, choice_for, options: RuntimeSettings | None) -> int:
    """Parameters of a tied LM head that the engine stores as its own copy: a quantized Linear
    kept beside the embedding table (ExecuTorch: the linear quantizer and the XNNPACK delegate hold
    the head's weights apart from the embedding op's table)."""
    if op.kind != LM_HEAD or op.tied_to is None or options is None or not options.untie_quantized_head:
        return 0
    w = resolve_format(choice_for(block, i, op).weights, "weights")
    if w.kind == "float" and w.bits_per_value() >= 16:  # a 16- or 32-bit head stays tied
        return 0
    return op.in_features * op.out_features


def kv_layer_bytes(
    work: Workload, device: DeviceSpec, choice: Choice, tp: int, tokens: int, options: RuntimeSettings
) -> list[float]:
    """KV-cache bytes of one sequence with ``tokens`` cached tokens on one device, for every
    layer of the repeated blocks in model order (0 for layers without a self-attention cache).
    A local (sliding-window) layer keeps at most its window (:meth:`ArchSpec.layer_windows`)."""
    device_numerics(device, choice, 1, 1)  # validates the formats
    windows = iter(work.arch.layer_windows())
    out: list[float] = []
    for b in work.blocks:
        if not b.repeated:
            continue
        attn = [op for op in b.ops if op.cached and not op.cross]
        per_cached: dict[int, float] = {}  # the layers of a block differ only by their window
        for _ in range(b.count):
            window = next(windows, None) if attn else None
            cached = tokens if window is None else min(tokens, window)
            if cached not in per_cached:
                total = 0.0
                for op in attn:
                    bits = kv_mixed_bits(choice.kv, op.kv_row, cached, options) if cached else 0.0
                    total += cached * op.cache_elems * bits / 8.0 / kv_shard(op, tp)
                per_cached[cached] = total / options.kv_share_layers
            out.append(per_cached[cached])
    return out


def activation_peak_bytes(work: Workload, ph: Phase, act_bits: float, tp: int, unfused_gate: bool = False) -> float:
    """Peak transient activation memory per device during one forward pass.

    Inference frees each layer's activations after use: the residual stream plus the largest
    operator's input and output are live at once, plus fp32 logits for the positions scored.
    With ``unfused_gate`` (a memory plan that gives the gated FFN's activation and product each its
    own output tensor, as ExecuTorch's plan of out-variant operators does) the product reads act(gate)
    and up and writes a third tensor of the FFN width: three FFN-wide tensors are live at once.
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
    a = work.arch
    if unfused_gate and a.gated_mlp and not a.num_experts and a.generative:
        largest = max(largest, 3.0 * m * a.intermediate_size / max(tp, 1))
    return (resid + largest) * act_bits / 8.0 + logits


def _shard_tp(op: OpShape, tp: int) -> float:
    return float(tp) if tp > 1 and op.shard in ("col", "row", "heads", "vocab") else 1.0


def allowed_tiers(device: DeviceSpec, options: RuntimeSettings) -> list[MemoryTier]:
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
    options: RuntimeSettings,
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
    uses[dev.name]["act"] += options.reserved_bytes  # the engine's runtime context stays on the device
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
    # An engine that gives its KV cache only a share of the memory left free (vLLM's and
    # TensorRT-LLM's memory fraction) needs kv / share of room on the device; weights spilling to
    # slower tiers must leave it, or the engine would have no room for the cache they moved out for.
    headroom = 0.0
    if len(allowed) > 1 and options.kv_memory_fraction < 1.0:
        headroom = uses[dev.name]["kv"] * (1.0 / options.kv_memory_fraction - 1.0)
    if options.placement:
        for t in allowed:
            f = options.placement.get(t.name, 0.0)
            uses[t.name]["w"] = weights_dev * f
            fractions[t.name] = f
        remaining = weights_dev * max(0.0, 1.0 - sum(fractions.values()))
    else:
        for t in allowed:
            cap = _tier_capacity(device, t)
            free = cap - sum(uses[t.name].values()) - (headroom if t.name == dev.name else 0.0)
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


def kv_tp_gain(work: Workload, tp: int) -> float:
    for b in work.blocks:
        for op in b.ops:
            if op.kind == ATTENTION:
                return kv_shard(op, tp)
    return 1.0


def stage_weight_bytes(
    work: Workload, device: DeviceSpec, choice_for, layout: Layout, uniform: bool = False, options: RuntimeSettings | None = None
) -> list[float]:
    """Weight bytes per pipeline stage on one device (layers split evenly; pre on the first
    stage, post on the last)."""
    pp = layout.pp
    pre = post = 0.0
    layer_bytes: list[float] = []
    for b in work.blocks:
        per = block_weight_bytes(b, device, choice_for, layout, uniform=uniform, options=options)
        if b.repeated:
            layer_bytes.extend(per)
        elif b.stage == "pre":
            pre += sum(per)
        else:
            post += sum(per)
    if not layer_bytes:  # CNN: one non-repeated block
        return [pre + post]
    stages = split_stages(layer_bytes, pp)
    stages[0] += pre
    stages[-1] += post
    return stages


def split_stages(per_layer: list[float], pp: int) -> list[float]:
    """Sum of ``per_layer`` on each of ``pp`` pipeline stages (layers split evenly, in order)."""
    n = len(per_layer)
    return [sum(per_layer[(n * s) // pp:(n * (s + 1)) // pp]) for s in range(pp)]


def stream_time_s(device: DeviceSpec, t: MemoryTier, nbytes: float, options: RuntimeSettings) -> float:
    """Time to bring ``nbytes`` of weights from tier ``t`` to where they are computed."""
    if t.role == "storage":
        return t.read_time_s(nbytes, options.flash_chunk_bytes)
    if t.role == "host" and device.host_link is not None:
        bw = min(t.bandwidth_bytes_per_s, device.host_link.bandwidth_bytes_per_s)
        return nbytes / (bw * device.efficiency.bandwidth(nbytes)) + device.host_link.latency_s
    return nbytes / (t.bandwidth_bytes_per_s * device.efficiency.bandwidth(nbytes)) + t.latency_s
