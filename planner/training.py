"""Training and fine-tuning estimate: one optimizer step on a parallel layout.

Pure functions returning frozen result dataclasses (no files, no logging). The step is
priced with the same per-operator roofline and size-dependent efficiency as inference
(:func:`planner.costmodel.op_cost` on the operators of :func:`planner.workload.build_workload`);
what training adds is documented where it is computed:

* **Backward** — each GEMM has a data-gradient and a weight-gradient GEMM of the same
  FLOPs (Narayanan et al. 2021, §3.5: "backward pass ≈ 2× forward"), each priced with its own
  output's wave quantization at the model-shape fraction of the MAMF
  (:mod:`planner.kernels_train`); a frozen weight (LoRA/QLoRA base) needs only the data
  gradient. Fused attention runs at its kernel generation's published efficiency.
* **Recomputation** — ``full`` reruns every transformer layer's forward in the backward
  pass; ``selective`` reruns only the attention core (QKᵀ, softmax, dropout, AV;
  Korthikanti et al. 2022, §4.2). Both count as hardware FLOPs, not model FLOPs.
* **Elementwise kernels** — activation functions, residual adds, dropout and (unfused)
  softmax are memory-bound kernels between the GEMMs; they read and write their tensors
  once forward and about twice backward (input and output gradient).
* **Attention kernel** — ``fused`` (FlashAttention-style: no s² tensor is stored or
  written to memory; the default) or ``unfused`` (scores and probabilities materialised,
  as Megatron-LM did in 2021–2022: the s² tensors are written and read by the softmax and
  dropout kernels and stored for backward, the 5·a·s/h term of Korthikanti's formula).
* **Communication** — TP: 2 all-reduces per layer forward and 2 backward of a b·s·h
  tensor (Narayanan et al. 2021, tensor model parallelism, https://arxiv.org/abs/2104.04473;
  reduce-scatter + all-gather with sequence parallelism, same volume, Korthikanti et al. 2022),
  plus 2 more for a fully recomputed forward; PP: one activation forward and one gradient
  backward per micro-batch per stage boundary (b·s·h/t with Megatron's scatter/gather),
  v× for an interleaved schedule; DP: one gradient all-reduce per step (ZeRO-1/2:
  reduce-scatter + all-gather, same volume), overlapped with the backward pass of the last
  micro-batch; ZeRO-3: two parameter all-gathers and one gradient reduce-scatter every
  micro-batch, each overlapped with its own pass (see :func:`_data_parallel`); TP collectives
  hidden behind the layer's GEMMs when the engine overlaps them (Megatron-Core); EP:
  two all-to-alls forward and two backward per MoE layer (GShard, Lepikhin et al. 2020,
  https://arxiv.org/abs/2006.16668). Every collective is priced by
  :func:`planner.layout.collective_s`, the same function inference uses.
* **Pipeline** — m micro-batches through p stages with 1F1B: step ≈ m·t_stage + (p−1)/v ·
  t_stage (bubble ``(p−1)/(v·m)``, Narayanan et al. 2021 §2.2).
* **Gradient accumulation** — with m > 1 micro-batches, each micro-batch's weight gradients
  are added into the step's gradient buffer (read new, read and write the buffer) unless
  the weight-gradient GEMM accumulates in its epilogue.
* **Optimizer step** — memory bound: each trainable parameter's master weight and states
  are read and written once, its gradient read and its working copy written.
* **Framework time per micro-batch** — time a training engine spends per micro-batch beyond
  the kernels priced above (:data:`MICROBATCH_OVERHEAD_S`, per engine). No source states it; it
  is a *fitted* constant (``benchmarks/fitted.py``), fitted on the declared fit split of the
  validation table and never on the rows whose error is reported. Engines without a fitted value
  pay none.

Memory per device: weights, gradients and optimizer states (ZeRO stages per
Rajbhandari et al. 2020, https://arxiv.org/abs/1910.02054), activations per Korthikanti et al.
2022 (https://arxiv.org/abs/2205.05198, generalised
from the operator list so GQA, gated MLPs, MoE and fused attention are covered; it reduces
exactly to the paper's formulas for GPT layers), the cross-entropy logits buffer (fp32
b·s·V plus the logits themselves), and for LoRA/QLoRA the frozen base at its own precision
plus trainable adapters r·(in+out) per targeted linear with their gradients and states.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field, replace

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.costmodel import RUNTIME_OVERHEAD_S
from planner.errors import EstimateError, TierwiseError
from planner.formats import get_format
from planner.kernels import norm_kernels
from planner.results import IMAGE_BASIS
from planner.kernels_train import attention_kernel
from planner.layout import check_layout_on, collective_s, num_layers, p2p_stage_s, ring_exchange_s, strides
from planner.training_config import (
    ATTENTION_KERNELS,
    BN_RELU_BWD_PASSES,
    BN_RELU_FWD_PASSES,
    DEFAULT_LORA_TARGETS,
    OPTIMIZERS,
    RECOMPUTE_MODES,
    FineTune,
    OptimizerSpec,
    TrainingConfig,
    korthikanti_activation_bytes_per_layer,
    megatron_flops_per_iteration,
    parse_finetune,
    with_changes,
    zero_model_state_bytes,
)
from planner.training_memory import TrainingMemory, _memory, _stage_param_bytes, activation_bytes_per_layer
from planner.training_ops import (
    _compute_peak,
    _Ctx,
    _elementwise_fwd_bytes,
    _lora_params,
    _lora_targeted,
    _mem_time,
    _op_train,
    _OpTrain,
    _resolve_formats,
    _Stage,
    _stages,
    _training_phase,
    _unique_blocks,
    lora_trainable_params,
    residual_adds,
)
from planner.workload import ATTENTION, LINEAR, NORM, Block, OpShape, Phase, build_workload

# Seconds per micro-batch that a training engine spends beyond the kernels the step prices, by
# engine id. Fitted (benchmarks/fitted.py, LLM_FOUNDRY_MICROBATCH_S) on the fit split of
# benchmarks/data/published.csv: the llm-foundry benchmark's A100-40GB section, whose steps exceed
# the priced kernels by a roughly constant time per micro-batch, whatever the model size (125M-70B)
# or the number of GPUs (8-128). What spends it (Composer's per-micro-batch loop, FSDP1 hooks, the
# host) is not identified; the rows' errors, not a source, set it. Its error is reported only on
# rows outside the fit split (the H100 and A100-80GB sections).
MICROBATCH_OVERHEAD_S: dict[str, float] = {"llm-foundry": 0.14}


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingEstimate:
    model: str
    hardware: str
    config: TrainingConfig
    params: int
    trainable_params: int
    microbatches: int
    step_time_s: float
    tokens_per_s: float
    samples_per_s: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    peak_flops_per_s: float
    compute_s: float  # forward + backward compute over all micro-batches (bottleneck stage)
    recompute_s: float
    tp_comm_s: float
    pp_comm_s: float
    pp_bubble_s: float
    ep_comm_s: float
    cp_comm_s: float  # ring-attention K/V exchange not hidden behind attention
    dp_comm_s: float  # total DP traffic time
    dp_exposed_s: float  # part not hidden behind the backward pass
    optimizer_s: float
    memory: TrainingMemory
    usd_per_hour: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    engine: str | None = None  # the training engine priced (planner.engines)
    framework_s: float = 0.0  # the engine's time per micro-batch beyond the kernels, over the step
    uncertainty: object = None  # p10-p90 error bars (planner.uncertainty.Uncertainty), set by the request layer
    # what ``tokens_per_s`` counts: "tokens", "images" (a CNN: one position per image) or
    # "image_patches" (a ViT: its patches and class token)
    per_token: str = "tokens"

    @property
    def devices(self) -> int:
        return self.config.devices

    @property
    def tokens_per_s_per_device(self) -> float:
        return self.tokens_per_s / self.devices

    @property
    def model_flops_per_s_per_device(self) -> float:
        return self.model_flops_per_step / self.step_time_s / self.devices

    @property
    def hardware_flops_per_s_per_device(self) -> float:
        return self.hardware_flops_per_step / self.step_time_s / self.devices

    @property
    def mfu(self) -> float:
        return self.model_flops_per_s_per_device / self.peak_flops_per_s

    @property
    def hfu(self) -> float:
        return self.hardware_flops_per_s_per_device / self.peak_flops_per_s

    @property
    def usd_per_million_tokens(self) -> float | None:
        if self.usd_per_hour is None or self.tokens_per_s <= 0:
            return None
        return self.usd_per_hour / 3600.0 / self.tokens_per_s * 1e6

    def to_dict(self) -> dict:
        c = self.config
        return {
            "mode": "training",
            "engine": self.engine,
            "model": self.model,
            "hardware": self.hardware,
            "devices": self.devices,
            "tp": c.tp,
            "pp": c.pp,
            "dp": c.dp,
            "ep": c.ep,
            "cp": c.cp,
            "global_batch": c.global_batch,
            "micro_batch": c.micro_batch,
            "microbatches": self.microbatches,
            "seq": c.seq,
            "zero": c.zero,
            "recompute": c.recompute,
            # Megatron-LM turns sequence parallelism off at tp 1, and so does the estimate (its note says so)
            "sequence_parallel": c.sequence_parallel and c.tp > 1,
            "interleave": c.interleave,
            "optimizer": c.optimizer,
            "finetune": c.finetune,
            "weights": c.weights,
            "activations": c.activations,
            "attention": c.attention,
            "runtime": c.runtime,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "per_token_basis": self.per_token,
            "samples_per_s": self.samples_per_s,
            "tokens_per_s_per_device": self.tokens_per_s_per_device,
            "model_flops_per_step": self.model_flops_per_step,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "model_flops_per_s_per_device": self.model_flops_per_s_per_device,
            "hardware_flops_per_s_per_device": self.hardware_flops_per_s_per_device,
            "peak_flops_per_s": self.peak_flops_per_s,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "compute_s": self.compute_s,
            "recompute_s": self.recompute_s,
            "tp_comm_s": self.tp_comm_s,
            "pp_comm_s": self.pp_comm_s,
            "pp_bubble_s": self.pp_bubble_s,
            "ep_comm_s": self.ep_comm_s,
            "cp_comm_s": self.cp_comm_s,
            "dp_comm_s": self.dp_comm_s,
            "dp_exposed_s": self.dp_exposed_s,
            "optimizer_s": self.optimizer_s,
            "framework_s": self.framework_s,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "memory": self.memory.to_dict(),
            "notes": list(self.notes),
            "uncertainty": self.uncertainty.to_dict() if self.uncertainty is not None else None,
        }


# ---------------------------------------------------------------------------
# The estimate, in parts
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Step:
    """What every part of one step's estimate shares (one micro-batch on one rank)."""

    arch: ArchSpec
    device: DeviceSpec
    cfg: TrainingConfig
    ph: Phase
    ctx: _Ctx
    peak: float
    sp: bool  # sequence parallelism in effect
    m_tokens: float  # tokens of one micro-batch on this rank
    dispatch_s: float  # host dispatch per kernel (eager runtime)
    tp_overlap: bool = False  # TP collectives overlapped with the layer's GEMMs (engine fact)
    op_cache: dict = field(default_factory=dict)
    elem_cache: dict = field(default_factory=dict)

    def op_train(self, blk: Block, op: OpShape) -> _OpTrain:
        key = (id(blk), op.name)
        if key not in self.op_cache:
            o = _op_train(op, blk, self.ph, self.ctx, self.peak)
            if self.sp and op.kind == NORM:
                # sequence parallelism runs norms on s/t tokens per rank
                o = replace(o, fwd_s=o.fwd_s / self.cfg.tp, bwd_s=o.bwd_s / self.cfg.tp)
            if self.dispatch_s:
                # One host dispatch per kernel: a norm is several in eager PyTorch (an RMSNorm six), the
                # other operators one each; the backward launches about twice the forward's.
                k = norm_kernels(self.arch) if op.kind == NORM else 1
                o = replace(o, fwd_s=o.fwd_s + k * self.dispatch_s, bwd_s=o.bwd_s + 2.0 * k * self.dispatch_s)
            self.op_cache[key] = o
        return self.op_cache[key]

    def elementwise(self, blk: Block) -> tuple[float, int]:
        if id(blk) not in self.elem_cache:
            self.elem_cache[id(blk)] = _elementwise_fwd_bytes(blk, self.ctx, self.cfg.micro_batch)
        return self.elem_cache[id(blk)]


def _check(arch: ArchSpec, device: DeviceSpec, cfg: TrainingConfig) -> None:
    """Refuse a setup that cannot run: the layout's rules and links (the same checks as
    inference, :func:`planner.layout.check_layout_on`) and training's own."""
    check_layout_on(arch, device, cfg.layout, training=True)
    if cfg.engine is not None:
        # The engine's own limits (its parallel dimensions and ZeRO stages), for callers that build a
        # config without the request layer (the capacity search, the does-not-fit suggestions).
        from planner.engines import check_request

        sup = _engine_support(cfg.engine, device)
        if sup is not None:
            check_request(sup, layout={"tp": cfg.tp, "pp": cfg.pp, "dp": cfg.dp, "ep": cfg.ep, "cp": cfg.cp}, zero=cfg.zero)
    if arch.family == "cnn" and cfg.pp > 1:
        raise EstimateError("pp", f"pipeline parallelism is not modelled for CNNs ({arch.id}); use {{@dp}}")
    layers = num_layers(arch)
    if cfg.interleave > 1 and layers % (cfg.pp * cfg.interleave):
        raise EstimateError(
            "interleave",
            f"{{@interleave}} {cfg.interleave} × {{@pp}} {cfg.pp} must divide the number of layers ({layers}) of {arch.id}",
        )
    _check_adapters(arch, cfg)


def _check_adapters(arch: ArchSpec, cfg: TrainingConfig) -> None:
    """LoRA / QLoRA adapt the linear layers ``cfg.lora_targets`` names (Hu et al. 2021): a model without
    them (a CNN) has nothing to adapt, and an adapter's rank is at most the smaller side of the
    matrix it factors (rank ``r`` of ``B·A`` with ``A`` r × in, ``B`` out × r)."""
    ft = cfg.fine_tune
    if not ft.adapters:
        return
    targeted = [op for b in build_workload(arch).blocks for op in b.ops if _lora_targeted(op, cfg.lora_targets)]
    if not targeted:
        raise EstimateError("finetune", f"{{@finetune}} {ft.method}:{ft.rank} adds adapters to the linear layers named "
                            f"{', '.join(cfg.lora_targets)}; {arch.id} ({arch.family}) has none, so nothing would train: "
                            "use {@finetune} full")
    smallest = min(min(op.in_features, op.out_features) for op in targeted)
    if ft.rank > smallest:
        raise EstimateError("finetune", f"{{@finetune}} {ft.method}:{ft.rank}: a rank-{ft.rank} adapter is larger than "
                            f"the matrices it factors in {arch.id} (their smallest side is {smallest}); the rank is at "
                            f"most {smallest}")


def _tp_layer_comm(s: _Step, blk: Block) -> float:
    """TP: 2 all-reduces per layer forward and 2 backward (reduce-scatter + all-gather with
    sequence parallelism), plus 2 more for a fully recomputed forward."""
    cfg = s.cfg
    if cfg.tp <= 1:
        return 0.0
    n_ar = sum(1 for op in blk.ops if op.allreduce_after)
    if not n_ar:
        return 0.0
    nbytes = s.m_tokens * s.arch.hidden_size * s.ctx.e
    stride = strides(cfg.layout).tp
    if s.sp:
        one = collective_s("reduce_scatter", s.device, nbytes, cfg.tp, stride, what="tensor-parallel reduce-scatter", field="tp")
        one += collective_s("all_gather", s.device, nbytes, cfg.tp, stride, what="tensor-parallel all-gather", field="tp")
    else:
        one = collective_s("allreduce", s.device, nbytes, cfg.tp, stride, what="tensor-parallel all-reduce", field="tp")
    passes = 2 + (1 if cfg.recompute == "full" else 0)  # forward, backward, recomputed forward
    return n_ar * passes * one


def _ep_layer_comm(s: _Step, blk: Block) -> float:
    """EP: two all-to-alls forward and two backward per MoE layer (two more recomputed)."""
    cfg = s.cfg
    if cfg.ep <= 1:
        return 0.0
    moe = [op for op in blk.ops if op.experts and op.shard == "col"]
    if not moe:
        return 0.0
    k = moe[0].experts_active
    nbytes = s.m_tokens / (cfg.tp if s.sp else 1) * k * s.arch.hidden_size * s.ctx.e
    one = collective_s("all_to_all", s.device, nbytes, cfg.ep, strides(cfg.layout).ep, what="expert-parallel all-to-all", field="ep")
    passes = 4 + (2 if cfg.recompute == "full" else 0)
    return passes * one


def _cp_layer_comm(s: _Step, blk: Block) -> float:
    """Ring attention: each of cp−1 steps passes a K/V chunk to the next CP rank while
    attention runs on the current one; backward passes K/V again and dK/dV. Only what
    the attention core's own time cannot hide is exposed."""
    cfg = s.cfg
    if cfg.cp <= 1:
        return 0.0
    total = 0.0
    for op in blk.ops:
        if op.kind != ATTENTION or op.cross:
            continue
        kv_heads = max(op.kv_heads / cfg.tp, 1.0)
        chunk = cfg.micro_batch * s.ph.tokens * 2.0 * kv_heads * op.head_dim * s.ctx.e
        fwd_comm = ring_exchange_s(s.device, chunk, cfg.layout)
        core = s.op_train(blk, op)
        bwd_comm = 2.0 * fwd_comm
        passes_fwd = 1 + (1 if cfg.recompute in ("full", "selective") and cfg.attention == "unfused" or cfg.recompute == "full" else 0)
        total += passes_fwd * max(0.0, fwd_comm - core.fwd_s) + max(0.0, bwd_comm - core.bwd_s)
    return total


@dataclass(slots=True)
class _StageTimes:
    """Per pipeline stage, one micro-batch: forward, backward, recompute and communication."""

    fwd: list[float] = field(default_factory=list)
    bwd: list[float] = field(default_factory=list)
    rc: list[float] = field(default_factory=list)
    tp: list[float] = field(default_factory=list)
    ep: list[float] = field(default_factory=list)
    cp: list[float] = field(default_factory=list)
    model_flops_mb: float = 0.0  # whole model, one micro-batch, one TP group (÷tp already applied)
    rc_flops_mb: float = 0.0


def _stage_times(s: _Step, stages: list[_Stage]) -> _StageTimes:
    cfg, eff = s.cfg, s.device.efficiency
    full_rc = cfg.recompute == "full"
    out = _StageTimes()
    for stg in stages:
        f = bw = rc = tpc = epc = cpc = 0.0
        gemm_s: dict[int, float] = {}  # per block instance: its linears' forward + backward time
        for blk, op, cnt in stg.items:
            o = s.op_train(blk, op)
            if op.kind == LINEAR:
                gemm_s[id(blk)] = gemm_s.get(id(blk), 0.0) + o.fwd_s + o.bwd_s
            f += o.fwd_s * cnt
            bw += o.bwd_s * cnt
            rc += o.recompute_s * cnt
            out.model_flops_mb += o.model_flops * cnt
            out.rc_flops_mb += o.recompute_flops * cnt
            if full_rc and blk.repeated:
                rc += o.fwd_s * cnt
                out.rc_flops_mb += o.fwd_flops * cnt
        for blk, cnt in _unique_blocks(stg):
            nbytes, kernels = s.elementwise(blk)
            t_el = _mem_time(s.device, nbytes) + kernels * (eff.kernel_overhead_s + s.dispatch_s) if nbytes else 0.0
            f += t_el * cnt
            bw += (BN_RELU_BWD_PASSES / BN_RELU_FWD_PASSES if s.arch.family == "cnn" else 2.0) * t_el * cnt
            if full_rc and blk.repeated:
                rc += t_el * cnt
            if blk.repeated:
                tp_s = _tp_layer_comm(s, blk)
                # Overlapped TP collectives (userbuffers) hide behind the layer's GEMMs; what
                # exceeds them stays exposed.
                tpc += (max(0.0, tp_s - gemm_s.get(id(blk), 0.0)) if s.tp_overlap else tp_s) * cnt
                epc += _ep_layer_comm(s, blk) * cnt
                cpc += _cp_layer_comm(s, blk) * cnt
        for lst, v in ((out.fwd, f), (out.bwd, bw), (out.rc, rc), (out.tp, tpc), (out.ep, epc), (out.cp, cpc)):
            lst.append(v)
    return out


@dataclass(frozen=True, slots=True)
class _Pipeline:
    per_mb: list[float]  # per stage, one micro-batch, everything included
    slow: int  # the bottleneck stage
    pp_mb: float  # point-to-point time per micro-batch
    bubble_s: float
    time_s: float  # all micro-batches through the pipeline


def _pipeline(s: _Step, t: _StageTimes, stage_trainable: list[float], grad_bytes_el: float) -> _Pipeline:
    """1F1B over ``pp`` stages: step ≈ m·t_stage + (p−1)/v · t_stage, with gradient
    accumulation added to the backward when m > 1 (unless fused into the weight-gradient
    GEMM) and a point-to-point send forward and back per micro-batch and stage boundary."""
    cfg, eff = s.cfg, s.device.efficiency
    # Megatron's scatter/gather sends b·s·h/t per rank, v× with interleaving; stages are
    # tp·cp·dp ranks apart.
    pp_mb = 0.0
    if cfg.pp > 1:
        nbytes = s.m_tokens * s.arch.hidden_size * s.ctx.e / cfg.tp
        pp_mb = 2.0 * cfg.interleave * p2p_stage_s(s.device, nbytes, strides(cfg.layout).pp)
    m = cfg.microbatches
    if cfg.grad_accumulation == "separate" and m > 1:
        for i in range(cfg.pp):
            nbytes = stage_trainable[i] * 3.0 * grad_bytes_el
            t.bwd[i] += (_mem_time(s.device, nbytes) + eff.kernel_overhead_s) * (m - 1) / m if nbytes else 0.0
    per_mb = [t.fwd[i] + t.bwd[i] + t.rc[i] + t.tp[i] + t.ep[i] + t.cp[i] + pp_mb for i in range(cfg.pp)]
    slow = max(range(cfg.pp), key=lambda i: per_mb[i])
    mean_mb = sum(per_mb) / cfg.pp
    bubble = (cfg.pp - 1) / cfg.interleave * mean_mb if cfg.pp > 1 else 0.0
    return _Pipeline(per_mb=per_mb, slow=slow, pp_mb=pp_mb, bubble_s=bubble, time_s=m * per_mb[slow] + bubble)


def _data_parallel(s: _Step, t: _StageTimes, slow: int, trainable_dev: float, stage_wbytes: list[float], grad_bytes_el: float,
                   units: int) -> tuple[float, float]:
    """DP × CP gradient traffic per step and the part of it compute cannot hide.

    ZeRO-0/1/2: one all-reduce (reduce-scatter + all-gather) per step, bucketed behind the last
    micro-batch's backward. ZeRO-3 (FSDP ``FULL_SHARD``, DeepSpeed stage 3): every micro-batch
    all-gathers the parameters at their stored format before the forward and again before the
    backward, and reduce-scatters its gradients during the backward (FSDP and ZeRO-3 keep only
    sharded gradients, so there is no step-level accumulation; PyTorch FSDP docs, "FULL_SHARD";
    Rajbhandari et al. 2020 §5). Each pass overlaps its collectives with its compute by
    prefetching the next unit; the first unit's gather and the last unit's reduce-scatter of a
    pass cannot be hidden (one unit per layer)."""
    cfg = s.cfg
    ranks, stride = cfg.data_ranks, strides(cfg.layout).cp  # DP×CP groups stride tp
    if ranks <= 1:
        return 0.0, 0.0
    m = cfg.microbatches
    gbytes = trainable_dev * grad_bytes_el

    def coll(kind: str, nbytes: float, what: str) -> float:
        return collective_s(kind, s.device, nbytes, ranks, stride, what=what, field="dp")

    if cfg.zero == 3:
        ag = coll("all_gather", max(stage_wbytes), "ZeRO-3 parameter all-gather")
        rs = coll("reduce_scatter", gbytes, "data-parallel reduce-scatter")
        fwd, bwd = t.fwd[slow], t.bwd[slow] + t.rc[slow]
        per_mb = max(0.0, ag - fwd) + max(0.0, ag + rs - bwd) + (2.0 * ag + rs) / max(units, 1)
        return m * (2.0 * ag + rs), m * per_mb
    if cfg.zero == 0:
        dp_s = coll("allreduce", gbytes, "data-parallel gradient all-reduce")
    else:
        dp_s = coll("reduce_scatter", gbytes, "data-parallel reduce-scatter")
        dp_s += coll("all_gather", gbytes, "data-parallel all-gather")
    # Gradient buckets are reduced while the last micro-batch's backward still runs.
    return dp_s, max(0.0, dp_s - t.bwd[slow])


def _optimizer_s(s: _Step, trainable_dev: float, grad_bytes_el: float, master: float) -> float:
    """Memory bound: each trainable parameter's master weight and states are read and
    written once, its gradient read and its working copy written (``trainable_dev``: the
    parameters this rank steps, its ZeRO shard under ZeRO-1+)."""
    cfg, ft = s.cfg, s.ctx.ft
    opt = OPTIMIZERS[cfg.optimizer]
    w_train_bytes = s.ctx.e if ft.adapters else get_format(cfg.weights).element_bits / 8.0
    nbytes = trainable_dev * (2.0 * (master + opt.state_bytes) + grad_bytes_el + w_train_bytes)
    return _mem_time(s.device, nbytes) + 3 * s.device.efficiency.kernel_overhead_s if nbytes else 0.0


def _make_step(arch: ArchSpec, device: DeviceSpec, cfg: TrainingConfig) -> _Step:
    ft = cfg.fine_tune
    base_choice, embed_choice, e = _resolve_formats(cfg, ft, device)
    ph = _training_phase(arch, cfg.micro_batch, cfg.seq, cfg.cp)
    kern = attention_kernel(cfg.engine, device, cfg.attention) if cfg.attention != "unfused" else None
    ctx = _Ctx(arch=arch, cfg=cfg, ft=ft, device=device, e=e, tokens=ph.tokens, keys=ph.tokens * cfg.cp, base_choice=base_choice,
               embed_choice=embed_choice, attn_kernel=kern)
    return _Step(
        arch=arch,
        device=device,
        cfg=cfg,
        ph=ph,
        ctx=ctx,
        peak=_compute_peak(device, cfg.activations),
        sp=cfg.sequence_parallel and cfg.tp > 1,
        m_tokens=float(cfg.micro_batch * ph.tokens),
        # Eager PyTorch dispatches every kernel from the host (forward 1, backward 2 per op);
        # a graph runtime does not (costmodel.RUNTIME_OVERHEAD_S).
        dispatch_s=RUNTIME_OVERHEAD_S[cfg.runtime],
        tp_overlap=_tp_overlap(cfg, device),
    )


def _tp_overlap(cfg: TrainingConfig, device: DeviceSpec) -> bool:
    """Whether TP collectives overlap the GEMMs: the config's choice, else the engine profile's
    ``tp_comm_overlap`` runtime fact (Megatron-Core: userbuffers overlap, ``--tp-comm-overlap``;
    PyTorch FSDP/TP: no), else no."""
    if cfg.tp_comm_overlap is not None or cfg.engine is None or cfg.tp <= 1:
        return bool(cfg.tp_comm_overlap)
    sup = _engine_support(cfg.engine, device)
    return sup is not None and sup.runtime.tp_comm_overlap


def _runtime_context(cfg: TrainingConfig, device: DeviceSpec) -> float:
    """Bytes the training engine holds on every device beside the model (its profile's
    ``runtime.context_gib``: CUDA context, NCCL buffers, workspaces), as inference estimates count
    them; 0 without an engine."""
    if cfg.engine is None:
        return 0.0
    sup = _engine_support(cfg.engine, device)
    return sup.runtime.context_bytes if sup is not None else 0.0


@functools.lru_cache(maxsize=256)
def _engine_support(engine: str, device: DeviceSpec):
    """What ``engine`` runs on ``device`` (planner.engines.Support), once per pair; None for an unknown
    engine or one that does not run there, which then prices as no engine (the request layer names it)."""
    from planner.engines import support

    try:
        return support(engine, device)
    except TierwiseError:
        return None


# The steps of the fit split that MICROBATCH_OVERHEAD_S was fitted on (llm-foundry's A100-40GB section): 1-16
# micro-batches per step (gradient accumulation) of 4,096-53,248 tokens each; outside them it is an extrapolation.
MICROBATCH_OVERHEAD_FITTED_MAX = 16
MICROBATCH_OVERHEAD_FITTED_TOKENS = (4096, 53248)


def _notes(s: _Step, memory: TrainingMemory, framework_s: float = 0.0, step_s: float = 0.0) -> tuple[str, ...]:
    cfg, m = s.cfg, s.cfg.microbatches
    notes: list[str] = []
    lo, hi = MICROBATCH_OVERHEAD_FITTED_TOKENS
    tokens = cfg.micro_batch * cfg.seq
    if framework_s and (m > MICROBATCH_OVERHEAD_FITTED_MAX or not lo <= tokens <= hi):
        notes.append(
            f"{cfg.engine}'s fitted time per micro-batch is {100 * framework_s / step_s:.0f}% of this step ({m} "
            f"micro-batches of {tokens:,} tokens): it was fitted on steps of 1-{MICROBATCH_OVERHEAD_FITTED_MAX} "
            f"micro-batches of {lo:,}-{hi:,} tokens, so this is an extrapolation"
        )
    if not memory.fits:
        notes.append(
            f"does not fit: needs {memory.per_device_bytes / 1e9:.2f} GB on pipeline stage {memory.stage}, "
            f"{memory.shortfall_bytes / 1e9:.2f} GB more than {s.device.id}'s {memory.device_capacity_bytes / 1e9:.0f} GB"
        )
    if cfg.pp > 1 and m < cfg.pp:
        notes.append(f"only {m} micro-batches for {cfg.pp} pipeline stages: the bubble dominates (a larger global batch gives more)")
    if cfg.sequence_parallel and cfg.tp == 1:
        # Megatron-LM does the same: arguments.py turns sequence_parallel off when the TP size is 1.
        notes.append("sequence parallelism splits activations across the tensor-parallel group: with tp 1 there is "
                     "none, so it is off in this estimate (Megatron disables it too); it needs a tensor-parallel size above 1")
    return tuple(notes)


def estimate_training(arch: ArchSpec, device: DeviceSpec, cfg: TrainingConfig) -> TrainingEstimate:
    """Predict one optimizer step: time (with communication, bubble and optimizer),
    throughput, MFU/HFU and memory per device. Raises EstimateError on a bad setup."""
    _check(arch, device, cfg)
    s = _make_step(arch, device, cfg)
    ft, m, b = s.ctx.ft, cfg.microbatches, cfg.micro_batch
    work = build_workload(arch)
    stages = _stages(work, cfg.pp)
    times = _stage_times(s, stages)
    sp = _stage_param_bytes(stages, s.ctx)
    stage_trainable, stage_wbytes = sp.trainable, sp.wbytes
    grad_bytes_el = 4.0 if get_format(cfg.weights if not ft.adapters else cfg.activations).element_bits >= 32 else 2.0
    pipe = _pipeline(s, times, stage_trainable, grad_bytes_el)
    slow = pipe.slow

    params_total = work.weight_params
    adapters_total = sum(blk.count * sum(_lora_params(op, ft, cfg.lora_targets) for op in blk.ops) for blk in work.blocks)
    trainable_total = adapters_total if ft.adapters else params_total
    if ft.adapters:
        params_total += adapters_total
    trainable_dev = max(stage_trainable)
    dp_s, dp_exposed = _data_parallel(s, times, slow, trainable_dev, stage_wbytes, grad_bytes_el, max(st.layers for st in stages))
    master = 4.0 if (s.ctx.e if ft.adapters else get_format(cfg.weights).element_bits / 8.0) < 4.0 else 0.0
    # ZeRO-1+ steps each rank's shard: its weights over the ranks holding their copy (zero_group)
    optimizer_s = _optimizer_s(s, max(sp.zero_trainable) if cfg.zero >= 1 else trainable_dev, grad_bytes_el, master)
    framework_s = m * MICROBATCH_OVERHEAD_S.get(cfg.engine or "", 0.0)
    step = pipe.time_s + dp_exposed + optimizer_s + framework_s

    # FLOPs (whole system): per micro-batch the op FLOPs are per TP rank and cover all stages
    # once; each micro-batch is split over cp ranks.
    replicas_mb = cfg.global_batch / b * cfg.cp
    model_flops = times.model_flops_mb * cfg.tp * replicas_mb
    hw_flops = model_flops + times.rc_flops_mb * cfg.tp * replicas_mb
    memory = _memory(stages, s.ctx, sp, grad_bytes_el, master, OPTIMIZERS[cfg.optimizer], reserved=_runtime_context(cfg, device))
    tokens_step = cfg.global_batch * s.ph.tokens * cfg.cp
    return TrainingEstimate(
        model=arch.id,
        hardware=device.id,
        config=cfg,
        params=int(params_total),
        trainable_params=int(trainable_total),
        microbatches=m,
        step_time_s=step,
        tokens_per_s=tokens_step / step,
        samples_per_s=cfg.global_batch / step,
        model_flops_per_step=model_flops,
        hardware_flops_per_step=hw_flops,
        peak_flops_per_s=s.peak,
        compute_s=m * (times.fwd[slow] + times.bwd[slow]),
        recompute_s=m * times.rc[slow],
        tp_comm_s=m * times.tp[slow],
        pp_comm_s=m * pipe.pp_mb,
        pp_bubble_s=pipe.bubble_s,
        ep_comm_s=m * times.ep[slow],
        cp_comm_s=m * times.cp[slow],
        dp_comm_s=dp_s,
        dp_exposed_s=dp_exposed,
        optimizer_s=optimizer_s,
        framework_s=framework_s,
        memory=memory,
        usd_per_hour=device.usd_per_hour * cfg.devices if device.usd_per_hour is not None else None,
        notes=_notes(s, memory, framework_s, step),
        per_token=IMAGE_BASIS.get(arch.family, "tokens"),
    )


__all__ = [
    "ATTENTION_KERNELS",
    "DEFAULT_LORA_TARGETS",
    "FineTune",
    "OPTIMIZERS",
    "OptimizerSpec",
    "RECOMPUTE_MODES",
    "TrainingConfig",
    "TrainingEstimate",
    "TrainingMemory",
    "activation_bytes_per_layer",
    "estimate_training",
    "korthikanti_activation_bytes_per_layer",
    "lora_trainable_params",
    "megatron_flops_per_iteration",
    "parse_finetune",
    "residual_adds",
    "with_changes",
    "zero_model_state_bytes",
]
