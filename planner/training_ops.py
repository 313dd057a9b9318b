"""Per-operator training time and the model structure the training estimate walks:
pipeline stages, sharding of each operator, forward/backward/recompute time of each operator
(the same roofline as inference, :func:`planner.costmodel.op_cost`), memory-bound elementwise
kernels, LoRA adapters, and the formats a training step computes in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.costmodel import Choice, op_cost, resolve_format
from planner.errors import EstimateError
from planner.formats import cast_copy_bits, get_format
from planner.kernels_train import AttentionKernel, fused_qkv, gemm_efficiency, padded_head_dim
from planner.layout import Layout, cp_split
from planner.training_config import (
    BN_RELU_FWD_PASSES,
    DEFAULT_LORA_TARGETS,
    MASK_BYTES,
    RESIDUAL_FWD_PASSES,
    FineTune,
    TrainingConfig,
)
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

_FLOAT_KINDS = ("float", "minifloat")
_MATMUL_KINDS = (LINEAR, ROUTER, LM_HEAD, ATTENTION, CONV)


# ---------------------------------------------------------------------------
# Model structure helpers
# ---------------------------------------------------------------------------


def _is_attn_proj(op: OpShape) -> bool:
    return op.kind == LINEAR and op.group.endswith(".qkv")


def _lora_targeted(op: OpShape, targets: tuple[str, ...]) -> bool:
    if op.kind != LINEAR:
        return False
    if "all-linear" in targets:
        return True
    last = op.name.rsplit(".", 1)[-1]
    return last in targets or op.name in targets


def _tp_shard(op: OpShape, tp: int) -> float:
    return float(tp) if tp > 1 and op.shard in ("col", "row", "heads", "vocab") else 1.0


def _expert_shard(op: OpShape, tp: int, ep: int) -> float:
    """Expert weights are split over the EP group; an EP group no larger than a TP group
    lies inside it and the TP split already covers it (ranks are placed tp-ep-dp-pp)."""
    if op.experts:
        return float(max(tp if op.shard in ("col", "row") else 1, ep))
    return _tp_shard(op, tp)


@dataclass(frozen=True, slots=True)
class _Stage:
    """Operators of one pipeline stage: (block, op, instances of that op on the stage)."""

    index: int
    items: tuple[tuple[Block, OpShape, int], ...]
    layers: int


def _stages(work: Workload, pp: int) -> list[_Stage]:
    """Split repeated layers evenly over ``pp`` stages (pre-layer ops on the first stage,
    post-layer ops on the last), as costmodel does for inference."""
    layer_list: list[Block] = []
    pre: list[Block] = []
    post: list[Block] = []
    for b in work.blocks:
        if b.repeated:
            layer_list.extend([b] * b.count)
        elif b.stage == "pre" or not layer_list:
            pre.append(b)
        else:
            post.append(b)
    n = len(layer_list)
    out = []
    for s in range(pp):
        lo, hi = (n * s) // pp, (n * (s + 1)) // pp
        counts: dict[int, tuple[Block, int]] = {}
        for b in layer_list[lo:hi]:
            key = id(b)
            blk, c = counts.get(key, (b, 0))
            counts[key] = (blk, c + 1)
        items: list[tuple[Block, OpShape, int]] = []
        if s == 0:
            items += [(b, op, 1) for b in pre for op in b.ops]
        for blk, c in counts.values():
            items += [(blk, op, c) for op in blk.ops]
        if s == pp - 1:
            items += [(b, op, 1) for b in post for op in b.ops]
        out.append(_Stage(index=s, items=tuple(items), layers=hi - lo))
    return out


def _unique_blocks(stg: _Stage) -> list[tuple[Block, int]]:
    seen: dict[int, tuple[Block, int]] = {}
    for blk, _op, cnt in stg.items:
        seen[id(blk)] = (blk, cnt)
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class _Ctx:
    arch: ArchSpec
    cfg: TrainingConfig
    ft: FineTune
    device: DeviceSpec
    e: float  # activation bytes per element
    tokens: int  # positions per sample on this rank (seq / cp)
    keys: int  # positions each query may attend to (the whole sequence)
    base_choice: Choice
    embed_choice: Choice
    attn_kernel: AttentionKernel | None = None  # fused attention kernel (None: the GEMM curve)

    @property
    def trainable_base(self) -> bool:
        return not self.ft.adapters

    def saves_input(self, op: OpShape) -> bool:
        """Does the operator keep its input for backward? A trainable weight needs it for
        the weight gradient; frozen weights do not (autograd saves only what an input
        requiring grad needs) — except bitsandbytes' 4-bit matmul, which keeps its input
        for backward whatever the weight (QLoRA, ``MatMul4Bit`` saves ``(A, B)``)."""
        if op.kind not in (LINEAR, LM_HEAD, ROUTER, CONV):
            return False
        if self.trainable_base:
            return True
        return self.ft.method == "qlora" and op.kind in (LINEAR, LM_HEAD)


# ---------------------------------------------------------------------------
# Per-operator training time
# ---------------------------------------------------------------------------


def _mem_time(device: DeviceSpec, nbytes: float) -> float:
    if nbytes <= 0:
        return 0.0
    tier = device.device_tier
    return nbytes / (tier.bandwidth_bytes_per_s * device.efficiency.bandwidth(nbytes))


def _gemm_time(device: DeviceSpec, flops: float, nbytes: float, peak: float, rows: float = 0.0, cols: float = 0.0) -> float:
    """A (batched) GEMM on the size-dependent curve, at the model-shape fraction of the MAMF
    (and the wave quantization of a ``rows × cols`` output when given)."""
    eff = device.efficiency
    share = gemm_efficiency(device, rows, cols)
    c = flops / (peak * eff.compute(flops) * share) if flops > 0 else 0.0
    return max(c, _mem_time(device, nbytes)) + eff.kernel_overhead_s


@dataclass(frozen=True, slots=True)
class _OpTrain:
    fwd_s: float
    bwd_s: float
    recompute_s: float  # added by selective recompute (attention core only)
    model_flops: float  # fwd + bwd, per micro-batch, this device
    recompute_flops: float  # selective recompute FLOPs
    fwd_flops: float


def _attention_train(op: OpShape, ph: Phase, ctx: _Ctx, peak: float) -> _OpTrain:
    cfg, e, device = ctx.cfg, ctx.e, ctx.device
    t = cfg.tp
    b, s = ph.batch, ph.tokens
    hd = op.head_dim
    heads = op.heads / t
    kv_heads = max(op.kv_heads / t, 1.0) if op.kv_heads else heads
    keys = float(ph.encoder_tokens) if op.cross else float(ctx.keys)
    full_flops = 4.0 * b * heads * hd * s * keys  # QKᵀ and AV, every (query, key) pair
    qkvo_bytes = e * b * s * hd * (2 * heads + 2 * kv_heads)
    if cfg.attention == "unfused":
        scores = b * heads * s * keys
        # QKᵀ writes the scores, AV reads the probabilities; softmax reads and writes them;
        # dropout reads and writes them and writes its mask.
        gemm = _gemm_time(device, full_flops / 2, e * (b * s * hd * (heads + kv_heads)) + e * scores, peak)
        gemm += _gemm_time(device, full_flops / 2, e * scores + e * b * s * hd * (kv_heads + heads), peak)
        elem_bytes = 2.0 * e * scores + ((2.0 * e + MASK_BYTES) * scores if cfg.dropout else 0.0)
        elem = _mem_time(device, elem_bytes) + device.efficiency.kernel_overhead_s * (2 if cfg.dropout else 1)
        fwd = gemm + elem
        bwd = 2.0 * gemm + 2.0 * elem
        rc = fwd if cfg.recompute == "selective" else 0.0
        flops = full_flops
    else:
        # A fused kernel skips the masked half of causal attention and never writes scores.
        load = op_load(op, ph)
        flops = load.flops / t
        fwd, bwd = _fused_attention_times(ctx, flops, qkvo_bytes, peak, hd)
        rc = 0.0  # the fused backward already recomputes the scores; nothing is stored
    # Attention FLOPs are counted as the kernel computes them: an unfused kernel multiplies
    # every (query, key) pair (the Megatron/PaLM count), a fused kernel skips the masked half.
    return _OpTrain(
        fwd_s=fwd,
        bwd_s=bwd,
        recompute_s=rc,
        model_flops=3.0 * flops,
        recompute_flops=flops if rc > 0 else 0.0,
        fwd_flops=flops,
    )


def _fused_attention_times(ctx: _Ctx, flops: float, qkvo_bytes: float, peak: float, head_dim: int) -> tuple[float, float]:
    """Forward and backward time of a fused (FlashAttention-style) kernel. With a published
    figure for the kernel on this architecture (planner.kernels_train) the forward runs at its
    fraction of the 16-bit peak and the backward computes 2.5× the forward FLOPs (5 matmuls
    against 2, recomputing the scores) at its own fraction, reading Q, K, V, O, dO and writing
    dQ, dK, dV; the device's fill-up curve still applies to small problems. Without one,
    backward = 2 × forward on the GEMM curve."""
    device, kern = ctx.device, ctx.attn_kernel
    if kern is None:
        fwd = _gemm_time(device, flops, qkvo_bytes, peak)
        return fwd, 2.0 * fwd
    eff = device.efficiency
    peak16 = max(_peak_or_zero(device, "bf16"), _peak_or_zero(device, "fp16")) or peak
    fill = eff.compute(flops) / eff.compute_max if flops > 0 else 1.0
    flops *= padded_head_dim(kern.name, head_dim) / head_dim  # padded head columns compute too
    arch = device.arch
    fwd_c = flops / (peak16 * kern.fwd[arch] * fill) if flops > 0 else 0.0
    bwd_c = 2.5 * flops / (peak16 * kern.bwd[arch] * fill) if flops > 0 else 0.0
    fwd = max(fwd_c, _mem_time(device, qkvo_bytes)) + eff.kernel_overhead_s
    bwd = max(bwd_c, _mem_time(device, 2.0 * qkvo_bytes)) + eff.kernel_overhead_s
    return fwd, bwd


def _peak_or_zero(device: DeviceSpec, precision: str) -> float:
    try:
        return device.peak_flops_per_s(precision)
    except ValueError:
        return 0.0


_CNN_BLOCK = re.compile(r"^(.*?\.(?:layers|layer|blocks|block)\.\d+)\.")


def residual_adds(block: Block) -> list[int]:
    """Output sizes (elements per sample) of a CNN's residual additions.

    Convolutions whose path shares a block index (HF-style ``…layers.{i}.…`` for ResNet,
    ``…layer.{i}.…`` for MobileNetV2) form a block; a block ends with a residual addition
    when it has a ``shortcut`` projection or when its last output has the size of its first
    input (identity shortcut, e.g. MobileNetV2's stride-1 blocks with equal widths).
    """
    groups: dict[str, list[OpShape]] = {}
    for op in block.ops:
        if op.kind != CONV:
            continue
        m = _CNN_BLOCK.match(op.name)
        if m:
            groups.setdefault(m.group(1), []).append(op)
    out = []
    for ops in groups.values():
        main = [o for o in ops if "shortcut" not in o.name and "downsample" not in o.name]
        if not main:
            continue
        projected = len(main) < len(ops)
        if projected or main[0].conv_in_elems == main[-1].conv_out_elems:
            out.append(main[-1].conv_out_elems)
    return out


def _elementwise_fwd_bytes(block: Block, ctx: _Ctx, b: int) -> tuple[float, int]:
    """Bytes moved by the memory-bound kernels of one layer's forward pass that the
    operator list does not name: the MLP activation (gated: act(gate)·up fused), the
    residual adds (read two, write one; dropout masks fused into them), and for CNNs batch
    norm (statistics pass + normalise-and-activate pass: read, read, write)."""
    cfg, e = ctx.cfg, ctx.e
    t = cfg.tp
    rep = t if (cfg.sequence_parallel and t > 1) else 1
    m = float(b * ctx.tokens)
    nbytes = 0.0
    kernels = 0
    if ctx.arch.family == "cnn":
        bn = {c.name: c.has_bn for c in ctx.arch.conv_layers}
        for op in block.ops:
            if op.kind == CONV and bn.get(op.name, False):
                nbytes += BN_RELU_FWD_PASSES * e * b * op.conv_out_elems
                kernels += 2
        for out_elems in residual_adds(block):
            nbytes += RESIDUAL_FWD_PASSES * e * b * out_elems
            kernels += 1
        return nbytes, kernels
    for op in block.ops:
        if op.allreduce_after:
            nbytes += e * m * 3.0 * op.out_features / rep + (MASK_BYTES * m * op.out_features / rep if cfg.dropout else 0.0)
            kernels += 1
    # activation function of the MLP
    mlp_cols = [op for op in block.ops if op.kind == LINEAR and op.shard == "col" and not _is_attn_proj(op)]
    if mlp_cols:
        op = mlp_cols[0]
        f = op.out_features / t
        tokens = m * (op.experts_active if op.experts else 1)
        width_in = 2.0 * f if ctx.arch.gated_mlp else f
        nbytes += e * tokens * (width_in + f)
        kernels += 1
    return nbytes, kernels


def _op_train(op: OpShape, block: Block, ph: Phase, ctx: _Ctx, peak: float) -> _OpTrain:
    cfg = ctx.cfg
    layout = Layout(tp=cfg.tp)
    if op.kind == ATTENTION:
        return _attention_train(op, ph, ctx, peak)
    choice = ctx.embed_choice if op.kind == EMBEDDING else ctx.base_choice
    c, _ = op_cost(op, ph, ctx.device, choice, layout, name=op.name)
    fwd = c.time_s
    trainable = ctx.trainable_base or op.kind not in (LINEAR, LM_HEAD, ROUTER, EMBEDDING, CONV)
    if op.kind in (NORM, POOL):
        bwd = 2.0 * fwd
    elif op.kind == EMBEDDING:
        bwd = 2.0 * fwd if ctx.trainable_base else 0.0  # frozen lookup: no gradient to scatter
    elif op.kind in (LINEAR, LM_HEAD) and not op.experts:
        fwd, dgrad, wgrad = _gemm_waves(op, block, ph, ctx, c)
        bwd = dgrad + (wgrad if trainable else 0.0)
        if c.precision == "fp8":  # the GEMM runs on the FP8 tensor cores
            cast_f, cast_b = _fp8_casts(op, ph, ctx)
            fwd, bwd = fwd + cast_f, bwd + cast_b
    elif op.kind in (CONV, LINEAR):
        # implicit-GEMM convolutions and grouped expert GEMMs run at the model-shape fraction of
        # the MAMF like any GEMM (their waves depend on the routing: not counted)
        share = gemm_efficiency(ctx.device, 0.0, 0.0, c.precision)
        fwd = max(c.compute_s / share, c.memory_s) + c.overhead_s
        bwd = (2.0 if trainable else 1.0) * fwd
    else:
        bwd = (2.0 if trainable else 1.0) * fwd
    if ctx.ft.method == "qlora" and op.kind in (LINEAR, LM_HEAD) and op.weight_params:
        # bitsandbytes' MatMul4Bit dequantizes the whole 4-bit weight before the forward GEMM and again
        # before the backward's data-gradient GEMM, each time a kernel of its own
        deq = _qlora_dequant_s(op, ctx)
        fwd, bwd = fwd + deq, bwd + deq
    mm = c.flops if op.kind in _MATMUL_KINDS else 0.0
    model = mm * (3.0 if trainable else 2.0)
    if op.kind == EMBEDDING:
        model = 0.0
    out = _OpTrain(fwd_s=fwd, bwd_s=bwd, recompute_s=0.0, model_flops=model, recompute_flops=0.0, fwd_flops=mm)
    if ctx.ft.adapters and _lora_targeted(op, cfg.lora_targets):
        out = _add_adapter(out, op, ph, ctx)
    return out


def _qlora_dequant_s(op: OpShape, ctx: _Ctx) -> float:
    """One pass of bitsandbytes' dequantization of ``op``'s 4-bit weights on one device (every expert this
    rank holds): read the 4-bit values and their scales, write the compute-type copy the GEMM then reads;
    a copy made in another float type first (TrainingConfig.dequant_copy_dtype) is read again and cast."""
    elems = op.weight_params / _expert_shard(op, ctx.cfg.tp, ctx.cfg.ep)
    cast = cast_copy_bits(ctx.cfg.dequant_copy_dtype, ctx.cfg.activations) / 8.0
    # the cast's copy is written by the dequantization and read by the cast, a kernel of its own
    nbytes = _weight_bits(op, ctx) / 8.0 + ctx.e + 2.0 * cast
    over = ctx.device.efficiency.kernel_overhead_s * (2.0 if cast else 1.0)
    return _mem_time(ctx.device, elems * nbytes) + over


# FP8 training (Transformer Engine, torchao float8): a GEMM's operands are cast from 16-bit to FP8
# with their scaling amax, and Hopper's FP8 tensor cores take only the TN layout, so each cast also
# writes the transposed copy the backward GEMMs read (fused cast-transpose kernels): read 2 bytes,
# write 1 + 1 per element. Forward casts the input, backward the output gradient; the weight is cast
# once per step and reused by the step's micro-batches (TE ``is_first_microbatch``).
# https://docs.nvidia.com/deeplearning/transformer-engine/user-guide/examples/fp8_primer.html
FP8_CAST_BYTES = 2.0 + 1.0 + 1.0


def _fp8_casts(op: OpShape, ph: Phase, ctx: _Ctx) -> tuple[float, float]:
    """Forward and backward time of an FP8 linear's cast(-transpose) kernels."""
    t = ctx.cfg.tp
    n = op.out_features / (t if op.shard in ("col", "vocab") and t > 1 else 1)
    k = op.in_features / (t if op.shard == "row" and t > 1 else 1)
    m = ph.batch * (ph.logits_tokens if op.kind == LM_HEAD else ph.tokens)
    over = ctx.device.efficiency.kernel_overhead_s
    weight = (_mem_time(ctx.device, FP8_CAST_BYTES * k * n) + over) / ctx.cfg.microbatches
    fwd = _mem_time(ctx.device, FP8_CAST_BYTES * m * k) + over + weight
    bwd = _mem_time(ctx.device, FP8_CAST_BYTES * m * n) + over
    return fwd, bwd


def _gemm_waves(op: OpShape, block: Block, ph: Phase, ctx: _Ctx, c) -> tuple[float, float, float]:
    """Forward, data-gradient and weight-gradient GEMM times of a linear, each with the wave
    quantization of its own output (M×N forward, M×K data gradient, N×K weight gradient; a fused
    Q/K/V projection counts as one GEMM of their summed width) on the
    device's SMs and the model-shape fraction of the MAMF (planner.kernels_train.gemm_efficiency). The size-dependent efficiency and the
    memory roof are op_cost's."""
    t = ctx.cfg.tp
    n = op.out_features
    if _is_attn_proj(op) and fused_qkv(ctx.cfg.engine, ctx.arch.model_type):
        n = sum(o.out_features for o in block.ops if _is_attn_proj(o))  # one GEMM for Q, K and V
    n /= t if op.shard in ("col", "vocab") and t > 1 else 1
    k = op.in_features / (t if op.shard == "row" and t > 1 else 1)
    m = ph.batch * (ph.logits_tokens if op.kind == LM_HEAD else ph.tokens)
    over = c.overhead_s

    def one(rows: float, cols: float) -> float:
        return max(c.compute_s / gemm_efficiency(ctx.device, rows, cols, c.precision), c.memory_s) + over

    return one(m, n), one(m, k), one(n, k)


def _add_adapter(base: _OpTrain, op: OpShape, ph: Phase, ctx: _Ctx) -> _OpTrain:
    """LoRA adapter of rank r on ``op``: x·A (in→r) then ·B (r→out), both trainable."""
    r = ctx.ft.rank
    layout = Layout(tp=ctx.cfg.tp)
    a_op = OpShape(name=op.name + ".lora_A", kind=LINEAR, group=op.group + ".lora", in_features=op.in_features, out_features=r)
    b_op = OpShape(name=op.name + ".lora_B", kind=LINEAR, group=op.group + ".lora", in_features=r, out_features=op.out_features, shard=op.shard if op.shard == "col" else "none")
    adapter_choice = Choice(weights=ctx.cfg.activations, activations=ctx.cfg.activations, kv=ctx.base_choice.kv)
    fwd = flops = 0.0
    for x in (a_op, b_op):
        c, _ = op_cost(x, ph, ctx.device, adapter_choice, layout, name=x.name)
        fwd += c.time_s * (op.experts_active if op.experts else 1)
        flops += c.flops * (op.experts_active if op.experts else 1)
    return _OpTrain(
        fwd_s=base.fwd_s + fwd,
        bwd_s=base.bwd_s + 2.0 * fwd,
        recompute_s=base.recompute_s,
        model_flops=base.model_flops + 3.0 * flops,
        recompute_flops=base.recompute_flops,
        fwd_flops=base.fwd_flops + flops,
    )


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def _lora_params(op: OpShape, ft: FineTune, targets: tuple[str, ...]) -> int:
    if not ft.adapters or not _lora_targeted(op, targets):
        return 0
    return ft.rank * (op.in_features + op.out_features) * max(1, op.experts)


def lora_trainable_params(arch: ArchSpec, rank: int, targets: tuple[str, ...] = DEFAULT_LORA_TARGETS) -> int:
    """Adapter parameters ``r·(in + out)`` summed over every targeted linear (Hu et al. 2021)."""
    ft = FineTune(method="lora", rank=rank)
    work = build_workload(arch)
    return sum(b.count * sum(_lora_params(op, ft, targets) for op in b.ops) for b in work.blocks)


def _weight_bits(op: OpShape, ctx: _Ctx) -> float:
    if op.kind == NORM:
        return 16.0  # norm scales stay 16-bit, as in costmodel
    fmt_name = ctx.embed_choice.weights if op.kind == EMBEDDING else ctx.base_choice.weights
    fmt = get_format(fmt_name)
    rows, cols = (op.out_features, op.in_features) if op.kind != CONV else (op.out_features, 0)
    return fmt.bits_per_value(rows or 1, cols or 1)


def _resolve_formats(cfg: TrainingConfig, ft: FineTune, device: DeviceSpec) -> tuple[Choice, Choice, float]:
    act = resolve_format(cfg.activations, "activations")
    w = resolve_format(cfg.weights, "weights")
    if not act.is_activation or act.kind not in _FLOAT_KINDS:
        raise EstimateError("activations", f"training computes in a float format (bf16, fp16, fp8, fp32); got '{act.name}'")
    if ft.method == "full":
        if w.kind not in _FLOAT_KINDS or w.element_bits < 8:
            raise EstimateError(
                "weights",
                f"full training updates the weights, so they must be a float format (bf16, fp16, fp32, fp8); got '{w.name}' "
                "(for a quantized frozen base use --finetune qlora:RANK)",
            )
        base = w.name
    elif ft.method == "qlora":
        # QLoRA stores the frozen base in 4-bit NormalFloat unless a ≤4-bit format is given.
        base = w.name if w.element_bits <= 4 else "nf4"
    else:
        base = w.name
    kv = act.name if act.is_kv else "bf16"
    base_choice = Choice(weights=base, activations=act.name, kv=kv)
    # Embedding tables are gathered, not multiplied: bitsandbytes leaves them unquantized.
    embed_w = act.name if ft.method == "qlora" else base
    embed_choice = Choice(weights=embed_w, activations=act.name, kv=kv)
    e = act.element_bits / 8.0
    for fld, name in (("weights", base), ("activations", act.name)):
        if device.supports(name) == "unsupported":
            raise EstimateError(fld, f"format '{name}' is not supported on {device.id} (native: {', '.join(sorted(device.formats.native))})")
    return base_choice, embed_choice, e


def _compute_peak(device: DeviceSpec, act_name: str) -> float:
    hp = get_format(act_name).hw_precision
    return device.peak_flops_per_s(hp)


def _training_phase(arch: ArchSpec, micro_batch: int, seq: int, cp: int = 1) -> Phase:
    """One micro-batch on one rank. With context parallelism a rank holds seq/cp positions
    and attends to the other ranks' keys through the ring: the attended context is set so
    that the rank's (query, key) pairs are 1/cp of the sequence's
    (:func:`planner.layout.cp_split`, shared with inference)."""
    tokens = max(1, tokens_per_sample(arch, seq))
    enc = seq if arch.family == "encoder_decoder" else 0
    local, context = cp_split(tokens, cp, causal=arch.family == "decoder")
    return Phase(name="train", batch=micro_batch, tokens=local, context=context, logits_tokens=local, encoder_tokens=enc)
