"""Memory per device of a training step: weights, gradients and optimizer states (ZeRO
stages, Rajbhandari et al. 2020, https://arxiv.org/abs/1910.02054), activations stored for
backward (Korthikanti et al. 2022, https://arxiv.org/abs/2205.05198, generalised from the
operator list so GQA, gated MLPs, MoE and fused attention are covered), the cross-entropy
logits buffer, and for LoRA/QLoRA the frozen base plus trainable adapters."""

from __future__ import annotations

from dataclasses import dataclass

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.errors import EstimateError
from planner.formats import cast_copy_bits
from planner.training_config import FP32_BYTES, LOGITS_FP32_BYTES, MASK_BYTES, OptimizerSpec, TrainingConfig
from planner.training_ops import (
    _Ctx,
    _expert_shard,
    _is_attn_proj,
    _lora_params,
    _lora_targeted,
    _resolve_formats,
    _Stage,
    _tp_shard,
    _training_phase,
    _unique_blocks,
    _weight_bits,
)
from planner.workload import ATTENTION, CONV, LINEAR, LM_HEAD, NORM, POOL, ROUTER, Block, OpShape, build_workload


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingMemory:
    """Peak memory of the most loaded device (bytes). The parts add up to ``per_device_bytes``:
    weights + gradients + optimizer + activations + logits + the engine's runtime context."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float  # stored for backward and the transients beside them, the logits apart
    logits_bytes: float
    per_device_bytes: float
    device_capacity_bytes: float
    fits: bool
    shortfall_bytes: float
    tier: str
    stage: int  # pipeline stage that holds the most
    # what the engine holds beside the model (CUDA context, communication buffers, workspaces):
    # its profile's runtime.context_gib; 0 without an engine
    runtime_context_bytes: float = 0.0

    def to_dict(self) -> dict:
        return {
            "weights_bytes": self.weights_bytes,
            "gradients_bytes": self.gradients_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "activations_bytes": self.activations_bytes,
            "logits_bytes": self.logits_bytes,
            "runtime_context_bytes": self.runtime_context_bytes,
            "per_device_bytes": self.per_device_bytes,
            "device_capacity_bytes": self.device_capacity_bytes,
            "fits": self.fits,
            "shortfall_bytes": self.shortfall_bytes,
            "stage": self.stage,
            "tiers": {self.tier: {"capacity_bytes": self.device_capacity_bytes, "used_bytes": self.per_device_bytes}},
        }


# ---------------------------------------------------------------------------
# Per-layer activation memory (generalised Korthikanti accounting)
# ---------------------------------------------------------------------------

def _layer_saved_bytes(block: Block, ctx: _Ctx, b: int) -> float:
    """Bytes one layer instance of ``block`` stores for backward (one micro-batch, one
    device), for recompute ``none``/``selective``; see the module docstring."""
    cfg, e = ctx.cfg, ctx.e
    t = cfg.tp
    s = ctx.tokens
    m = float(b * s)
    sp = cfg.sequence_parallel and t > 1
    rep = t if sp else 1  # replicated activations are split only with sequence parallelism
    total = 0.0
    seen_group_inputs: set[str] = set()
    lora_groups: set[str] = set()
    mlp_width = 0
    mlp_tokens = m
    eager = cfg.runtime == "eager"
    for op in block.ops:
        if op.kind == NORM:
            # eager RMSNorm upcasts to fp32 and autograd keeps that fp32 input
            nb = FP32_BYTES if (eager and ctx.arch.norm == "rmsnorm") else e
            total += nb * m * op.hidden / rep
        elif op.kind in (LINEAR, ROUTER):
            tokens = m * (op.experts_active if op.experts else 1)
            in_shard = t if op.shard == "row" else rep
            if ctx.saves_input(op) and op.group not in seen_group_inputs:
                # ops of one decision group (q/k/v, gate/up) share one input tensor
                total += e * tokens * op.in_features / in_shard
                seen_group_inputs.add(op.group)
            if ctx.ft.adapters and _lora_targeted(op, cfg.lora_targets) and op.group not in lora_groups:
                lora_groups.add(op.group)
                if cfg.lora_dropout:
                    # adapter input passes through dropout: mask + dropped copy kept
                    total += (MASK_BYTES + e) * tokens * op.in_features / in_shard
                elif op.group not in seen_group_inputs:
                    total += e * tokens * op.in_features / in_shard
                    seen_group_inputs.add(op.group)
            if op.shard == "col" and not _is_attn_proj(op):
                mlp_width = op.out_features
                mlp_tokens = tokens
            if op.allreduce_after and cfg.dropout:
                total += MASK_BYTES * m * op.out_features / rep  # hidden dropout mask
        elif op.kind == ATTENTION:
            q_dim = op.heads * op.head_dim
            kv_dim = op.kv_heads * op.head_dim
            heads_local = op.heads / t
            if cfg.attention == "unfused":
                # Q, K (inputs of QKᵀ) and V (input of AV): 11·sbh with the projections' and
                # the output projection's inputs; s² tensors: softmax output (2) + dropout
                # mask (1) + dropout output (2) per score = 5·a·s²·b.
                total += e * m * (q_dim + 2 * kv_dim) / t
                if cfg.recompute != "selective":
                    scores = b * heads_local * s * ctx.keys
                    total += e * scores
                    if cfg.dropout:
                        total += (MASK_BYTES + e) * scores
            else:
                # fused kernel keeps Q, K, V, the output and fp32 log-sum-exp per row
                total += e * m * (2 * q_dim + 2 * kv_dim) / t + FP32_BYTES * m * heads_local
            if eager and not op.cross:
                # V is a view of the fused QKV projection output: saving V keeps Q and K's
                # share of that buffer alive too (RoPE makes new Q and K tensors).
                total += e * m * (q_dim + kv_dim) / t
    if mlp_width:
        f_local = mlp_width / t
        if ctx.arch.gated_mlp:
            # act(gate) input, act output and up output are kept by the activation and the
            # product; the product (down-projection input) is counted by saves_input above
            total += 3.0 * e * mlp_tokens * f_local
        else:
            # GeLU keeps its input; its output (fc2 input) is counted by saves_input above
            total += e * mlp_tokens * f_local
    return total


def activation_bytes_per_layer(arch: ArchSpec, device: DeviceSpec, cfg: TrainingConfig) -> float:
    """Bytes one transformer layer stores for backward for one micro-batch on one device
    (the generalised Korthikanti et al. 2022 accounting used by :func:`estimate_training`;
    with ``recompute="full"`` only the layer input is stored)."""
    ft = cfg.fine_tune
    base_choice, embed_choice, e = _resolve_formats(cfg, ft, device)
    ph = _training_phase(arch, cfg.micro_batch, cfg.seq, cfg.cp)
    ctx = _Ctx(arch=arch, cfg=cfg, ft=ft, device=device, e=e, tokens=ph.tokens, keys=ph.tokens * cfg.cp, base_choice=base_choice, embed_choice=embed_choice)
    blocks = [b for b in build_workload(arch).blocks if b.repeated]
    if not blocks:
        raise EstimateError("model", f"{arch.id} has no repeated transformer layers")
    if cfg.recompute == "full":
        return _layer_input_bytes(ctx, cfg.micro_batch)
    return _layer_saved_bytes(blocks[0], ctx, cfg.micro_batch)


def _layer_input_bytes(ctx: _Ctx, b: int) -> float:
    """Full recompute stores only each layer's input (2·s·b·h for 16-bit activations);
    with sequence parallelism that checkpoint is sequence-sharded."""
    rep = ctx.cfg.tp if (ctx.cfg.sequence_parallel and ctx.cfg.tp > 1) else 1
    return ctx.e * b * ctx.tokens * ctx.arch.hidden_size / rep


def _cnn_saved_bytes(block: Block, ctx: _Ctx, b: int) -> float:
    """A CNN keeps, per convolution, its input (the previous activation's output) and, with
    batch norm, the normalisation input; the activation keeps its output."""
    bn = {c.name: c.has_bn for c in ctx.arch.conv_layers}
    total = 0.0
    first = True
    for op in block.ops:
        if op.kind == CONV:
            if first:
                total += ctx.e * b * op.conv_in_elems
                first = False
            total += ctx.e * b * op.conv_out_elems * (2.0 if bn.get(op.name, False) else 1.0)
        elif op.kind == POOL:
            total += ctx.e * b * op.conv_in_elems
        elif op.kind == LINEAR:
            total += ctx.e * b * op.in_features
    return total


@dataclass(frozen=True, slots=True)
class StageParams:
    """Per pipeline stage and device: trainable parameters and weight bytes; the same two after ZeRO shards each weight over the ranks that hold its copy (``zero_trainable``,
    ``zero_wbytes``: :func:`zero_group`); and the largest layer's weight bytes (ZeRO-3 gathers one
    layer at a time)."""

    trainable: list[float]
    wbytes: list[float]
    zero_trainable: list[float]
    zero_wbytes: list[float]
    largest_layer: float


def zero_group(op: OpShape, cfg: TrainingConfig) -> float:
    """Ranks that hold the same copy of ``op``'s weights, over which ZeRO shards them: the DP × CP
    group; for an expert split over an EP group wider than the TP group, the expert-data-parallel
    group (EP ranks are carved out of TP × DP: tp·dp·cp / max(tp, ep) ranks hold each expert slice;
    Megatron-Core's expert data parallelism)."""
    if op.experts and cfg.ep > 1:
        return cfg.data_ranks * cfg.tp / max(cfg.tp, cfg.ep)
    return float(cfg.data_ranks)


def _stage_param_bytes(stages: list[_Stage], ctx: _Ctx) -> StageParams:
    """What every stage holds of the parameters on one device (:class:`StageParams`)."""
    cfg = ctx.cfg
    trainable, wbytes, ztrain, zbytes = [], [], [], []
    largest = 0.0
    for stg in stages:
        tr = wb = ztr = zwb = 0.0
        layer_bytes: dict[int, float] = {}
        for blk, op, cnt in stg.items:
            n = op.weight_params
            if n:
                shard = _expert_shard(op, cfg.tp, cfg.ep)
                group = zero_group(op, cfg)
                per = n / shard
                bytes_one = per * _weight_bits(op, ctx) / 8.0
                wb += bytes_one * cnt
                zwb += bytes_one * cnt / group
                layer_bytes[id(blk)] = layer_bytes.get(id(blk), 0.0) + bytes_one
                if ctx.trainable_base:
                    tr += per * cnt
                    ztr += per * cnt / group
            a = _lora_params(op, ctx.ft, cfg.lora_targets)
            if a:
                per = a / _tp_shard(op, cfg.tp)
                tr += per * cnt
                ztr += per * cnt / cfg.data_ranks
                wb += per * ctx.e * cnt
                zwb += per * ctx.e * cnt / cfg.data_ranks
        if layer_bytes:
            largest = max(largest, max(layer_bytes.values()))
        trainable.append(tr)
        wbytes.append(wb)
        ztrain.append(ztr)
        zbytes.append(zwb)
    return StageParams(trainable, wbytes, ztrain, zbytes, largest)


def _memory(
    stages: list[_Stage],
    ctx: _Ctx,
    sp: StageParams,
    grad_bytes_el: float,
    master: float,
    opt: OptimizerSpec,
    reserved: float = 0.0,
) -> TrainingMemory:
    """The most loaded stage's memory; ``reserved``: the engine's runtime context on every device."""
    cfg, arch, device = ctx.cfg, ctx.arch, ctx.device
    b = cfg.micro_batch
    m = cfg.microbatches
    p, v = cfg.pp, cfg.interleave
    best = None
    for stg in stages:
        i = stg.index
        weights = sp.wbytes[i]
        if cfg.zero >= 3 and cfg.data_ranks > 1:
            # shards plus two gathered layers (the one computing and the one prefetched)
            weights = sp.zero_wbytes[i] + 2.0 * sp.largest_layer
        grads = (sp.zero_trainable[i] if cfg.zero >= 2 else sp.trainable[i]) * grad_bytes_el
        optim = (sp.zero_trainable[i] if cfg.zero >= 1 else sp.trainable[i]) * (master + opt.state_bytes)
        # 1F1B: stage i keeps p − i micro-batches in flight (the first stage p, the last 1);
        # an interleaved schedule stores (1 + (p−1)/(p·v)) times more (Korthikanti et al. §4.2.3).
        inflight = min(m, p - i)
        factor = (1.0 + (p - 1) / (p * v)) if v > 1 else 1.0
        per_mb = 0.0
        transient = 0.0
        for blk, cnt in _unique_blocks(stg):
            if arch.family == "cnn":
                per_mb += _cnn_saved_bytes(blk, ctx, b) * cnt
                continue
            if not blk.repeated:
                continue
            full = _layer_saved_bytes(blk, ctx, b)
            if cfg.recompute == "full":
                per_mb += _layer_input_bytes(ctx, b) * cnt
                transient = max(transient, full)  # the layer being recomputed
            else:
                per_mb += full * cnt
        if ctx.ft.method == "qlora":
            # bitsandbytes dequantizes a whole 4-bit matrix to the compute precision for
            # each matmul: the largest one exists transiently beside everything else
            transient = max(transient, _largest_dequantized(stg, ctx))
        acts = per_mb * inflight * factor + transient
        logits = 0.0
        if i == p - 1 and arch.family != "cnn":
            lm = [op for blk, op, _ in stg.items if op.kind == LM_HEAD]
            if lm:
                vocab = lm[0].out_features
                # the logits (activation precision) and the fp32 cross-entropy buffer
                logits = b * ctx.tokens * vocab * (ctx.e + LOGITS_FP32_BYTES) / _tp_shard(lm[0], cfg.tp)
        total = weights + grads + optim + acts + logits + reserved
        if best is None or total > best[0]:
            best = (total, i, weights, grads, optim, acts, logits)
    total, i, weights, grads, optim, acts, logits = best
    cap = device.memory_capacity_bytes
    short = max(0.0, total - cap)
    return TrainingMemory(
        weights_bytes=weights,
        gradients_bytes=grads,
        optimizer_bytes=optim,
        activations_bytes=acts,
        logits_bytes=logits,
        per_device_bytes=total,
        device_capacity_bytes=cap,
        fits=short <= 0.0,
        shortfall_bytes=short,
        tier=device.device_tier.name,
        stage=i,
        runtime_context_bytes=reserved,
    )


def _largest_dequantized(stg: _Stage, ctx: _Ctx) -> float:
    """The largest whole weight bitsandbytes dequantizes at once: its copy in the compute type, and the
    copy it is cast from when it was dequantized to another float type (TrainingConfig.dequant_copy_dtype)."""
    per_value = ctx.e + cast_copy_bits(ctx.cfg.dequant_copy_dtype, ctx.cfg.activations) / 8.0
    best = 0.0
    for _blk, op, _cnt in stg.items:
        if op.kind in (LINEAR, LM_HEAD) and op.weight_params:
            best = max(best, op.weight_params / _expert_shard(op, ctx.cfg.tp, ctx.cfg.ep) / max(1, op.experts) * per_value)
    return best
