"""Training and fine-tuning estimate: one optimizer step on a parallel layout.

Pure functions returning frozen result dataclasses (no files, no logging). The step is
priced with the same per-operator roofline and size-dependent efficiency as inference
(:func:`planner.costmodel.op_cost` on the operators of :func:`planner.workload.build_workload`);
what training adds is documented where it is computed:

* **Backward** — each GEMM has a data-gradient and a weight-gradient GEMM of the same
  size, so its backward costs 2× its forward (Narayanan et al. 2021, §3.5: "backward pass
  ≈ 2× forward"); a frozen weight (LoRA/QLoRA base) needs only the data gradient (1×).
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
  tensor (§B.1; reduce-scatter + all-gather with sequence parallelism, same volume, §B.2),
  plus 2 more for a fully recomputed forward; PP: one activation forward and one gradient
  backward per micro-batch per stage boundary (b·s·h/t with Megatron's scatter/gather),
  v× for an interleaved schedule; DP: one gradient all-reduce per step (ZeRO-1/2:
  reduce-scatter + all-gather, same volume; ZeRO-3 adds two parameter all-gathers per
  micro-batch, 1.5× DP), overlapped with the backward pass of the last micro-batch; EP:
  two all-to-alls forward and two backward per MoE layer (§B.6).
* **Pipeline** — m micro-batches through p stages with 1F1B: step ≈ m·t_stage + (p−1)/v ·
  t_stage (bubble ``(p−1)/(v·m)``, Narayanan et al. 2021 §2.2).
* **Gradient accumulation** — with m > 1 micro-batches, each micro-batch's weight gradients
  are added into the step's gradient buffer (read new, read and write the buffer) unless
  the weight-gradient GEMM accumulates in its epilogue.
* **Optimizer step** — memory bound: each trainable parameter's master weight and states
  are read and written once, its gradient read and its working copy written.

Memory per device: weights, gradients and optimizer states (ZeRO stages per
Rajbhandari et al. 2020, §B.3), activations per Korthikanti et al. 2022 (§B.2, generalised
from the operator list so GQA, gated MLPs, MoE and fused attention are covered; it reduces
exactly to the paper's formulas for GPT layers), the cross-entropy logits buffer (fp32
b·s·V plus the logits themselves), and for LoRA/QLoRA the frozen base at its own precision
plus trainable adapters r·(in+out) per targeted linear with their gradients and states.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.costmodel import RUNTIME_OVERHEAD_S, Choice, EstimateError, Layout, op_cost, resolve_format
from planner.formats import get_format
from planner.parallel import collective_s, num_layers, p2p_stage_s, strides, validate_layout
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

RECOMPUTE_MODES = ("none", "selective", "full")
ATTENTION_KERNELS = ("fused", "unfused")
GRAD_ACCUMULATION = ("separate", "fused")
ZERO_STAGES = (0, 1, 2, 3)
# Bytes of a mask element (torch stores dropout masks as bool: 1 byte; Korthikanti et al.
# count "1 byte" masks as well).
MASK_BYTES = 1.0
# fp32 buffer of the cross-entropy (log-softmax in fp32 over b·s·V logits).
LOGITS_FP32_BYTES = 4.0
# Batch norm + ReLU in training, in tensor passes over the conv output: forward reads it for
# the statistics, then reads it and writes the normalised, rectified output (3); backward
# reads the output gradient and the activation for the ReLU mask and writes (3), then batch
# norm reads gradient and input for its two reductions and again to write the input
# gradient (5): 8 passes (cuDNN / PyTorch native kernels, one pass each).
BN_RELU_FWD_PASSES = 3.0
BN_RELU_BWD_PASSES = 8.0
# A residual addition (with the ReLU that follows it fused) reads two tensors and writes one;
# backward it masks the gradient (read gradient and output, write) and the gradient of the
# fork is summed (read two, write one): 3 passes forward, 6 backward (the 2× of every other
# elementwise kernel).
RESIDUAL_FWD_PASSES = 3.0
FP32_BYTES = 4.0
# Batch norm + ReLU in training, in tensor passes over the conv output: forward reads it for
# the statistics, then reads it and writes the normalised, rectified output (3); backward
# reads the output gradient and the activation for the ReLU mask and writes (3), then batch
# norm reads gradient and input for its two reductions and again to write the input
# gradient (5): 8 passes (cuDNN / PyTorch native kernels, one pass each).
BN_RELU_FWD_PASSES = 3.0
BN_RELU_BWD_PASSES = 8.0
# A residual addition (with the ReLU that follows it fused) reads two tensors and writes one;
# backward it masks the gradient (read gradient and output, write) and the gradient of the
# fork is summed (read two, write one): 3 passes forward, 6 backward (the 2× of every other
# elementwise kernel).
RESIDUAL_FWD_PASSES = 3.0
_FLOAT_KINDS = ("float", "minifloat")
_MATMUL_KINDS = (LINEAR, ROUTER, LM_HEAD, ATTENTION, CONV)


# ---------------------------------------------------------------------------
# Optimizers and fine-tuning methods
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizerSpec:
    """Bytes an optimizer keeps per trainable parameter besides the working weights and
    gradients: ``state_bytes`` for its moments; an fp32 master copy is added whenever the
    working weights are narrower than fp32 (mixed precision, §B.3: K = 4 + 4 + 4 = 12)."""

    name: str
    state_bytes: float
    source: str

    def __post_init__(self) -> None:
        if not self.state_bytes >= 0:
            raise ValueError(f"OptimizerSpec.state_bytes must be ≥ 0; got {self.state_bytes!r}")


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adamw": OptimizerSpec(
        name="adamw",
        state_bytes=8.0,
        source="Loshchilov & Hutter 2019; fp32 first and second moments (Rajbhandari et al. 2020: K = 12 with the fp32 master)",
    ),
    "adamw-8bit": OptimizerSpec(
        name="adamw-8bit",
        state_bytes=2.0 + 2.0 * 4.0 / 2048.0,
        source="Dettmers et al. 2022, 8-bit optimizers: block-wise int8 moments, one fp32 absmax per 2048-value block",
    ),
    "adamw-fp8": OptimizerSpec(
        name="adamw-fp8",
        state_bytes=2.0 + 2.0 * 4.0 / 128.0,
        source="Xi et al. 2025 (COAT): FP8 E4M3 moments with per-group (1×128) fp32 scales",
    ),
    "sgd": OptimizerSpec(name="sgd", state_bytes=4.0, source="SGD with momentum: one fp32 momentum buffer"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FineTune:
    """``full`` trains every weight; ``lora``/``qlora`` train rank-``rank`` adapters on a
    frozen base (QLoRA: base weights stored in a 4-bit format, Dettmers et al. 2023)."""

    method: str
    rank: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora", "qlora"):
            raise EstimateError("finetune", f"--finetune must be full, lora:RANK or qlora:RANK; got method {self.method!r}")
        if self.method == "full" and self.rank != 0:
            raise EstimateError("finetune", "--finetune full takes no rank")
        if self.method != "full" and (not isinstance(self.rank, int) or self.rank < 1):
            raise EstimateError("finetune", f"--finetune {self.method}:RANK needs a positive integer rank; got {self.rank!r}")

    @property
    def adapters(self) -> bool:
        return self.method != "full"

    def __str__(self) -> str:
        return self.method if self.method == "full" else f"{self.method}:{self.rank}"


_FT = re.compile(r"^\s*(full|lora|qlora)\s*(?::\s*(\S+))?\s*$", re.IGNORECASE)


def parse_finetune(text: str) -> FineTune:
    """'full' | 'lora:16' | 'qlora:64' → :class:`FineTune` (EstimateError on anything else)."""
    m = _FT.match(str(text))
    if not m:
        raise EstimateError("finetune", f"--finetune must be full, lora:RANK or qlora:RANK (e.g. lora:16); got {text!r}")
    method = m.group(1).lower()
    rank_text = m.group(2)
    if method == "full":
        if rank_text is not None:
            raise EstimateError("finetune", f"--finetune full takes no rank; got {text!r}")
        return FineTune(method="full")
    if rank_text is None:
        raise EstimateError("finetune", f"--finetune {method} needs a rank, e.g. {method}:16; got {text!r}")
    try:
        rank = int(rank_text)
    except ValueError:
        raise EstimateError("finetune", f"--finetune {method}:RANK needs an integer rank; got {rank_text!r}") from None
    return FineTune(method=method, rank=rank)


# Linear layers LoRA adapts by default: the query and value projections (Hu et al. 2021,
# §7.1; the default of PEFT and LitGPT). Names are matched against the operator's last
# path component; "all-linear" targets every linear layer of the repeated blocks.
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj", "query", "value")


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def _pos_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise EstimateError(name, f"--{name.replace('_', '-')} must be a positive integer; got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingConfig:
    """One training step's setup. Field names are the CLI flags (without dashes).

    ``global_batch``: sequences (images) per optimizer step; ``micro_batch``: per pipeline
    micro-batch on one replica; ``cp``: context parallelism — every layer's sequence is split
    over ``cp`` ranks and attention passes K/V chunks around a ring (ring attention, Liu et
    al. 2023; Megatron-LM context parallel), devices = tp·cp·pp·dp; ``attention``: ``fused`` (FlashAttention-style) or
    ``unfused`` (materialised scores); ``dropout``: model has dropout layers (masks are
    stored); ``lora_targets`` / ``lora_dropout``: which linears carry adapters and whether
    adapter inputs pass through dropout (LitGPT's default 0.05 does; PEFT's default 0 does not);
    ``runtime``: ``graph`` (fused kernels, as Megatron-LM / Transformer Engine) or ``eager``
    (PyTorch modules as written in HF Transformers / LitGPT: a host dispatch per kernel, RMSNorm
    upcast to fp32 with its fp32 input kept for backward, and Q/K/V sliced as views of one
    fused projection so the saved V keeps the whole projection output alive);
    ``grad_accumulation``: ``separate`` (each micro-batch's weight gradients are added into
    the step's gradient buffer by their own kernel: PyTorch autograd, Megatron-LM before
    gradient-accumulation fusion) or ``fused`` (added in the weight-gradient GEMM's epilogue).
    """

    global_batch: int
    micro_batch: int = 1
    seq: int = 2048
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    cp: int = 1
    zero: int = 0
    recompute: str = "none"
    sequence_parallel: bool = False
    interleave: int = 1
    optimizer: str = "adamw"
    finetune: str = "full"
    weights: str = "bf16"
    activations: str = "bf16"
    attention: str = "fused"
    dropout: bool = False
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    lora_dropout: bool = False
    runtime: str = "graph"
    grad_accumulation: str = "separate"

    def __post_init__(self) -> None:
        for name in ("global_batch", "micro_batch", "seq", "tp", "pp", "dp", "ep", "cp", "interleave"):
            _pos_int(name, getattr(self, name))
        if self.seq % self.cp:
            raise EstimateError("cp", f"--cp {self.cp} must divide --seq ({self.seq}): each rank holds seq/cp tokens")
        if self.zero not in ZERO_STAGES:
            raise EstimateError("zero", f"--zero must be one of 0, 1, 2, 3; got {self.zero!r}")
        if self.recompute not in RECOMPUTE_MODES:
            raise EstimateError("recompute", f"--recompute must be one of {', '.join(RECOMPUTE_MODES)}; got {self.recompute!r}")
        if self.optimizer not in OPTIMIZERS:
            raise EstimateError("optimizer", f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.runtime not in RUNTIME_OVERHEAD_S:
            raise EstimateError("runtime", f"--runtime must be one of {', '.join(RUNTIME_OVERHEAD_S)}; got {self.runtime!r}")
        if self.grad_accumulation not in GRAD_ACCUMULATION:
            raise EstimateError(
                "grad_accumulation", f"grad_accumulation must be one of {', '.join(GRAD_ACCUMULATION)}; got {self.grad_accumulation!r}"
            )
        if self.attention not in ATTENTION_KERNELS:
            raise EstimateError("attention", f"attention must be one of {', '.join(ATTENTION_KERNELS)}; got {self.attention!r}")
        parse_finetune(self.finetune)
        per_step = self.micro_batch * self.dp
        if self.global_batch % per_step:
            raise EstimateError(
                "global_batch",
                f"--global-batch ({self.global_batch}) must be a multiple of --micro-batch × --dp = "
                f"{self.micro_batch}×{self.dp} = {per_step}",
            )
        if self.interleave > 1:
            if self.pp < 2:
                raise EstimateError("interleave", f"--interleave {self.interleave} needs pipeline parallelism (--pp ≥ 2)")
            if self.microbatches % self.pp:
                raise EstimateError(
                    "interleave",
                    f"an interleaved schedule needs the number of micro-batches ({self.microbatches}) to be a multiple of --pp ({self.pp})",
                )
        if self.zero >= 2 and self.pp > 1:
            raise EstimateError(
                "zero",
                f"--zero {self.zero} shards gradients, which pipeline parallelism accumulates over micro-batches; "
                "use --zero 0 or 1 with --pp > 1 (as DeepSpeed and Megatron-LM require)",
            )
        if not isinstance(self.lora_targets, tuple) or not self.lora_targets:
            raise EstimateError("lora_targets", f"lora_targets must be a non-empty tuple of layer names; got {self.lora_targets!r}")

    @property
    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.ep)

    @property
    def devices(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def data_ranks(self) -> int:
        """Ranks that hold the same weights and reduce gradients together: DP × CP."""
        return self.dp * self.cp

    @property
    def microbatches(self) -> int:
        """Micro-batches per replica per step, m = B / (b·d)."""
        return self.global_batch // (self.micro_batch * self.dp)

    @property
    def fine_tune(self) -> FineTune:
        return parse_finetune(self.finetune)


# ---------------------------------------------------------------------------
# Cited closed-form formulas (used by tests and benchmarks; the estimate derives the same
# quantities from the operator list)
# ---------------------------------------------------------------------------


def megatron_flops_per_iteration(
    *, global_batch: int, seq: int, layers: int, hidden: int, vocab: int, recompute: bool = True
) -> float:
    """FLOPs per iteration of a GPT model, Narayanan et al. 2021 (arXiv:2104.04473) §5.1:
    ``96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h))`` with full recomputation (72 without it)."""
    b, s, l, h, v = global_batch, seq, layers, hidden, vocab
    if recompute:
        return 96.0 * b * s * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h))
    return 72.0 * b * s * l * h * h * (1.0 + s / (6.0 * h) + v / (12.0 * l * h))


def korthikanti_activation_bytes_per_layer(
    *, seq: int, micro_batch: int, hidden: int, heads: int, tp: int = 1, sequence_parallel: bool = False, recompute: str = "none"
) -> float:
    """Activation bytes stored per transformer layer, Korthikanti et al. 2022
    (arXiv:2205.05198) Table 2 / §4 (16-bit activations, 1-byte dropout masks):

    no parallelism ``s·b·h·(34 + 5·a·s/h)``; tensor parallel ``s·b·h·(10 + 24/t + 5·a·s/(h·t))``;
    TP + sequence parallel ``s·b·h/t·(34 + 5·a·s/h)``; TP + SP + selective recompute
    ``34·s·b·h/t``; full recompute ``2·s·b·h``.
    """
    s, b, h, a, t = seq, micro_batch, hidden, heads, tp
    if recompute == "full":
        return 2.0 * s * b * h
    if recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}; got {recompute!r}")
    attn_scores = 0.0 if recompute == "selective" else 5.0 * a * s / h
    if sequence_parallel:
        return s * b * h / t * (34.0 + attn_scores)
    return s * b * h * (10.0 + 24.0 / t + attn_scores / t)


def zero_model_state_bytes(params: float, stage: int, dp: int, *, optimizer_k: float = 12.0) -> float:
    """Model-state bytes per device under ZeRO (Rajbhandari et al. 2020, arXiv:1910.02054,
    §5 / Fig. 1), mixed-precision Adam: 2Ψ weights + 2Ψ gradients + KΨ optimizer (K = 12):
    stage 0 ``(4+K)Ψ``; 1 ``4Ψ + KΨ/N``; 2 ``2Ψ + (2+K)Ψ/N``; 3 ``(4+K)Ψ/N``."""
    if stage not in ZERO_STAGES:
        raise ValueError(f"stage must be 0..3; got {stage!r}")
    n = float(dp)
    w, g, o = 2.0 * params, 2.0 * params, optimizer_k * params
    if stage >= 1:
        o /= n
    if stage >= 2:
        g /= n
    if stage >= 3:
        w /= n
    return w + g + o


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingMemory:
    """Peak memory of the most loaded device (bytes)."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    logits_bytes: float
    per_device_bytes: float
    device_capacity_bytes: float
    fits: bool
    shortfall_bytes: float
    tier: str
    stage: int  # pipeline stage that holds the most

    def to_dict(self) -> dict:
        return {
            "weights_bytes": self.weights_bytes,
            "gradients_bytes": self.gradients_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "activations_bytes": self.activations_bytes,
            "logits_bytes": self.logits_bytes,
            "per_device_bytes": self.per_device_bytes,
            "device_capacity_bytes": self.device_capacity_bytes,
            "fits": self.fits,
            "shortfall_bytes": self.shortfall_bytes,
            "stage": self.stage,
            "tiers": {self.tier: {"capacity_bytes": self.device_capacity_bytes, "used_bytes": self.per_device_bytes}},
        }


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
            "sequence_parallel": c.sequence_parallel,
            "interleave": c.interleave,
            "optimizer": c.optimizer,
            "finetune": c.finetune,
            "weights": c.weights,
            "activations": c.activations,
            "attention": c.attention,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
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
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "memory": self.memory.to_dict(),
            "notes": list(self.notes),
        }


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


# ---------------------------------------------------------------------------
# Per-layer activation memory (generalised Korthikanti accounting)
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Per-operator training time
# ---------------------------------------------------------------------------


def _mem_time(device: DeviceSpec, nbytes: float) -> float:
    if nbytes <= 0:
        return 0.0
    tier = device.device_tier
    return nbytes / (tier.bandwidth_bytes_per_s * device.efficiency.bandwidth(nbytes))


def _gemm_time(device: DeviceSpec, flops: float, nbytes: float, peak: float) -> float:
    eff = device.efficiency
    c = flops / (peak * eff.compute(flops)) if flops > 0 else 0.0
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
        fwd = _gemm_time(device, flops, qkvo_bytes, peak)
        bwd = 2.0 * fwd
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
    else:
        bwd = (2.0 if trainable else 1.0) * fwd
    mm = c.flops if op.kind in _MATMUL_KINDS else 0.0
    model = mm * (3.0 if trainable else 2.0)
    if op.kind == EMBEDDING:
        model = 0.0
    out = _OpTrain(fwd_s=fwd, bwd_s=bwd, recompute_s=0.0, model_flops=model, recompute_flops=0.0, fwd_flops=mm)
    if ctx.ft.adapters and _lora_targeted(op, cfg.lora_targets):
        out = _add_adapter(out, op, ph, ctx)
    return out


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


# ---------------------------------------------------------------------------
# The estimate
# ---------------------------------------------------------------------------


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
    whose queries see, on average over load-balanced causal chunks, half of the other
    ranks' keys: the attended context is set so that the rank's (query, key) pairs are
    1/cp of the sequence's."""
    tokens = max(1, tokens_per_sample(arch, seq))
    enc = seq if arch.family == "encoder_decoder" else 0
    if cp > 1:
        local = tokens // cp
        return Phase(name="train", batch=micro_batch, tokens=local, context=(tokens - local) / 2.0, logits_tokens=local, encoder_tokens=enc)
    return Phase(name="train", batch=micro_batch, tokens=tokens, context=0.0, logits_tokens=tokens, encoder_tokens=enc)


def estimate_training(arch: ArchSpec, device: DeviceSpec, cfg: TrainingConfig) -> TrainingEstimate:
    """Predict one optimizer step: time (with communication, bubble and optimizer),
    throughput, MFU/HFU and memory per device. Raises EstimateError on a bad setup."""
    layout = cfg.layout
    validate_layout(arch, layout)
    ft = cfg.fine_tune
    if arch.family in ("cnn", "encoder_decoder") and cfg.cp > 1:
        raise EstimateError("cp", f"context parallelism is modelled for decoder and encoder stacks, not for {arch.family} models ({arch.id})")
    if arch.family == "cnn" and cfg.pp > 1:
        raise EstimateError("pp", f"pipeline parallelism is not modelled for CNNs ({arch.id}); use --dp")
    layers = num_layers(arch)
    if cfg.interleave > 1 and layers % (cfg.pp * cfg.interleave):
        raise EstimateError(
            "interleave",
            f"--interleave {cfg.interleave} × --pp {cfg.pp} must divide the number of layers ({layers}) of {arch.id}",
        )
    base_choice, embed_choice, e = _resolve_formats(cfg, ft, device)
    peak = _compute_peak(device, cfg.activations)
    work = build_workload(arch)
    ph = _training_phase(arch, cfg.micro_batch, cfg.seq, cfg.cp)
    ctx = _Ctx(arch=arch, cfg=cfg, ft=ft, device=device, e=e, tokens=ph.tokens, keys=ph.tokens * cfg.cp, base_choice=base_choice, embed_choice=embed_choice)
    st = strides(layout)
    # Megatron order tp-cp-ep-dp-pp: CP ranks are tp apart, DP×CP gradient groups stride tp,
    # pipeline stages tp·cp·dp apart
    dp_ranks, dp_stride, pp_stride = cfg.data_ranks, cfg.tp, cfg.tp * cfg.cp * cfg.dp
    b = cfg.micro_batch
    m_tokens = float(b * ph.tokens)
    act_bytes_el = e
    sp = cfg.sequence_parallel and cfg.tp > 1

    # ---- per-op costs, computed once per distinct (block, op) ----------------------
    op_cache: dict[tuple[int, str], _OpTrain] = {}
    elem_cache: dict[int, tuple[float, int]] = {}

    # Eager PyTorch dispatches every kernel from the host (forward 1, backward 2 per op);
    # a graph runtime does not (costmodel.RUNTIME_OVERHEAD_S).
    dispatch_s = RUNTIME_OVERHEAD_S[cfg.runtime]

    def op_train(blk: Block, op: OpShape) -> _OpTrain:
        key = (id(blk), op.name)
        if key not in op_cache:
            o = _op_train(op, blk, ph, ctx, peak)
            if sp and op.kind == NORM:
                # sequence parallelism runs norms on s/t tokens per rank
                o = replace(o, fwd_s=o.fwd_s / cfg.tp, bwd_s=o.bwd_s / cfg.tp)
            if dispatch_s:
                o = replace(o, fwd_s=o.fwd_s + dispatch_s, bwd_s=o.bwd_s + 2.0 * dispatch_s)
            op_cache[key] = o
        return op_cache[key]

    def elementwise(blk: Block) -> tuple[float, int]:
        if id(blk) not in elem_cache:
            elem_cache[id(blk)] = _elementwise_fwd_bytes(blk, ctx, b)
        return elem_cache[id(blk)]

    # ---- communication per layer per micro-batch ------------------------------------
    def tp_layer_comm(blk: Block) -> float:
        if cfg.tp <= 1:
            return 0.0
        n_ar = sum(1 for op in blk.ops if op.allreduce_after)
        if not n_ar:
            return 0.0
        nbytes = m_tokens * arch.hidden_size * act_bytes_el
        if sp:
            one = collective_s("reduce_scatter", device, nbytes, cfg.tp, st.tp, what="tensor-parallel reduce-scatter") + collective_s(
                "all_gather", device, nbytes, cfg.tp, st.tp, what="tensor-parallel all-gather"
            )
        else:
            one = collective_s("allreduce", device, nbytes, cfg.tp, st.tp, what="tensor-parallel all-reduce")
        passes = 2 + (1 if cfg.recompute == "full" else 0)  # forward, backward, recomputed forward
        return n_ar * passes * one

    def ep_layer_comm(blk: Block) -> float:
        if cfg.ep <= 1:
            return 0.0
        moe = [op for op in blk.ops if op.experts and op.shard == "col"]
        if not moe:
            return 0.0
        k = moe[0].experts_active
        nbytes = m_tokens / (cfg.tp if sp else 1) * k * arch.hidden_size * act_bytes_el
        one = collective_s("all_to_all", device, nbytes, cfg.ep, st.ep, what="expert-parallel all-to-all")
        passes = 4 + (2 if cfg.recompute == "full" else 0)
        return passes * one

    def cp_layer_comm(blk: Block) -> float:
        """Ring attention: each of cp−1 steps passes a K/V chunk to the next CP rank while
        attention runs on the current one; backward passes K/V again and dK/dV. Only what
        the attention core's own time cannot hide is exposed."""
        if cfg.cp <= 1:
            return 0.0
        total = 0.0
        for op in blk.ops:
            if op.kind != ATTENTION or op.cross:
                continue
            kv_heads = max(op.kv_heads / cfg.tp, 1.0)
            chunk = b * ph.tokens * 2.0 * kv_heads * op.head_dim * act_bytes_el
            step = p2p_stage_s(device, chunk, cfg.tp)
            core = op_train(blk, op)
            fwd_comm = (cfg.cp - 1) * step
            bwd_comm = 2.0 * fwd_comm
            passes_fwd = 1 + (1 if cfg.recompute in ("full", "selective") and cfg.attention == "unfused" or cfg.recompute == "full" else 0)
            total += passes_fwd * max(0.0, fwd_comm - core.fwd_s) + max(0.0, bwd_comm - core.bwd_s)
        return total

    # ---- stage times -----------------------------------------------------------------
    stages = _stages(work, cfg.pp)
    eff = device.efficiency
    stage_fwd: list[float] = []
    stage_bwd: list[float] = []
    stage_rc: list[float] = []
    stage_tp: list[float] = []
    stage_ep: list[float] = []
    stage_cp: list[float] = []
    model_flops_mb = 0.0  # whole model, one micro-batch, one TP group (÷tp already applied)
    rc_flops_mb = 0.0
    for stg in stages:
        f = bw = rc = tpc = epc = cpc = 0.0
        blocks_seen: dict[int, int] = {}
        for blk, op, cnt in stg.items:
            o = op_train(blk, op)
            f += o.fwd_s * cnt
            bw += o.bwd_s * cnt
            rc += o.recompute_s * cnt
            model_flops_mb += o.model_flops * cnt
            rc_flops_mb += o.recompute_flops * cnt
            if cfg.recompute == "full" and blk.repeated:
                rc += o.fwd_s * cnt
                rc_flops_mb += o.fwd_flops * cnt
            blocks_seen[id(blk)] = cnt
        for blk, cnt in _unique_blocks(stg):
            nbytes, kernels = elementwise(blk)
            t_el = _mem_time(device, nbytes) + kernels * (eff.kernel_overhead_s + dispatch_s) if nbytes else 0.0
            f += t_el * cnt
            bw += (BN_RELU_BWD_PASSES / BN_RELU_FWD_PASSES if arch.family == "cnn" else 2.0) * t_el * cnt
            if cfg.recompute == "full" and blk.repeated:
                rc += t_el * cnt
            if blk.repeated:
                tpc += tp_layer_comm(blk) * cnt
                epc += ep_layer_comm(blk) * cnt
                cpc += cp_layer_comm(blk) * cnt
        stage_fwd.append(f)
        stage_bwd.append(bw)
        stage_rc.append(rc)
        stage_tp.append(tpc)
        stage_ep.append(epc)
        stage_cp.append(cpc)

    # Pipeline point-to-point per micro-batch: activation forward + gradient backward, v×
    # with interleaving; Megatron's scatter/gather sends b·s·h/t per rank.
    pp_mb = 0.0
    if cfg.pp > 1:
        nbytes = m_tokens * arch.hidden_size * act_bytes_el / cfg.tp
        pp_mb = 2.0 * cfg.interleave * p2p_stage_s(device, nbytes, pp_stride)

    m = cfg.microbatches
    v = cfg.interleave
    stage_params, stage_trainable, stage_wbytes, largest_layer = _stage_param_bytes(stages, ctx)
    grad_bytes_el = 4.0 if get_format(cfg.weights if not ft.adapters else cfg.activations).element_bits >= 32 else 2.0
    # Gradient accumulation: from the second micro-batch on, each weight gradient is added
    # into the step's gradient buffer by a separate memory-bound kernel (read the new
    # gradient, read and write the buffer), unless the weight-gradient GEMM accumulates in
    # its epilogue (grad_accumulation="fused", Megatron-core's gradient_accumulation_fusion).
    stage_acc = [0.0] * cfg.pp
    if cfg.grad_accumulation == "separate" and m > 1:
        for i in range(cfg.pp):
            nbytes = stage_trainable[i] * 3.0 * grad_bytes_el
            stage_acc[i] = (_mem_time(device, nbytes) + eff.kernel_overhead_s) * (m - 1) / m if nbytes else 0.0
    stage_bwd = [stage_bwd[i] + stage_acc[i] for i in range(cfg.pp)]
    per_mb = [stage_fwd[i] + stage_bwd[i] + stage_rc[i] + stage_tp[i] + stage_ep[i] + stage_cp[i] + pp_mb for i in range(cfg.pp)]
    slow = max(range(cfg.pp), key=lambda i: per_mb[i])
    mean_mb = sum(per_mb) / cfg.pp
    bubble = (cfg.pp - 1) / v * mean_mb if cfg.pp > 1 else 0.0
    pipeline_s = m * per_mb[slow] + bubble

    # ---- parameters per device and data-parallel traffic -----------------------------
    params_total = work.weight_params
    adapters_total = sum(blk.count * sum(_lora_params(op, ft, cfg.lora_targets) for op in blk.ops) for blk in work.blocks)
    trainable_total = adapters_total if ft.adapters else params_total
    if ft.adapters:
        params_total += adapters_total
    trainable_dev = max(stage_trainable)
    dp_s = 0.0
    zero3_exposed = 0.0
    if dp_ranks > 1:
        gbytes = trainable_dev * grad_bytes_el
        if cfg.zero == 0:
            dp_s = collective_s("allreduce", device, gbytes, dp_ranks, dp_stride, what="data-parallel gradient all-reduce")
        else:
            dp_s = collective_s("reduce_scatter", device, gbytes, dp_ranks, dp_stride, what="data-parallel reduce-scatter")
            if cfg.zero < 3:
                dp_s += collective_s("all_gather", device, gbytes, dp_ranks, dp_stride, what="data-parallel all-gather")
            else:
                # ZeRO-3 gathers the parameters for each micro-batch's forward and backward,
                # prefetched behind that micro-batch's compute.
                ag = collective_s("all_gather", device, max(stage_wbytes), dp_ranks, dp_stride, what="ZeRO-3 parameter all-gather")
                zero3_exposed = m * max(0.0, 2.0 * ag - (stage_fwd[slow] + stage_bwd[slow]))
                dp_s += 2.0 * m * ag
    # Gradient buckets are reduced while the last micro-batch's backward still runs.
    dp_overlappable = stage_bwd[slow] if cfg.zero < 3 else 0.0
    dp_grad_s = dp_s if cfg.zero < 3 else dp_s - 2.0 * m * (ag if dp_ranks > 1 else 0.0)
    dp_exposed = max(0.0, dp_grad_s - dp_overlappable) + zero3_exposed

    # ---- optimizer step --------------------------------------------------------------
    opt = OPTIMIZERS[cfg.optimizer]
    w_train_bytes = e if ft.adapters else get_format(cfg.weights).element_bits / 8.0
    master = 4.0 if w_train_bytes < 4.0 else 0.0
    shard = dp_ranks if cfg.zero >= 1 else 1
    opt_bytes_rw = trainable_dev / shard * (2.0 * (master + opt.state_bytes) + grad_bytes_el + w_train_bytes)
    optimizer_s = _mem_time(device, opt_bytes_rw) + 3 * eff.kernel_overhead_s if opt_bytes_rw else 0.0

    step = pipeline_s + dp_exposed + optimizer_s

    # ---- FLOPs (whole system) ----------------------------------------------------------
    # Per micro-batch the op FLOPs above are per TP rank and cover all stages once.
    replicas_mb = cfg.global_batch / b * cfg.cp  # each micro-batch is split over cp ranks
    model_flops = model_flops_mb * cfg.tp * replicas_mb
    hw_flops = model_flops + rc_flops_mb * cfg.tp * replicas_mb

    # ---- memory ------------------------------------------------------------------------
    memory = _memory(stages, ctx, stage_params, stage_trainable, stage_wbytes, largest_layer, grad_bytes_el, master, opt)

    tokens_step = cfg.global_batch * ph.tokens * cfg.cp
    notes: list[str] = []
    if not memory.fits:
        notes.append(
            f"does not fit: needs {memory.per_device_bytes / 1e9:.2f} GB on pipeline stage {memory.stage}, "
            f"{memory.shortfall_bytes / 1e9:.2f} GB more than {device.id}'s {memory.device_capacity_bytes / 1e9:.0f} GB"
        )
    if cfg.pp > 1 and m < cfg.pp:
        notes.append(f"only {m} micro-batches for {cfg.pp} pipeline stages: the bubble dominates (raise --global-batch)")
    usd_h = device.usd_per_hour * cfg.devices if device.usd_per_hour is not None else None
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
        peak_flops_per_s=peak,
        compute_s=m * (stage_fwd[slow] + stage_bwd[slow]),
        recompute_s=m * stage_rc[slow],
        tp_comm_s=m * stage_tp[slow],
        pp_comm_s=m * pp_mb,
        pp_bubble_s=bubble,
        ep_comm_s=m * stage_ep[slow],
        cp_comm_s=m * stage_cp[slow],
        dp_comm_s=dp_s,
        dp_exposed_s=dp_exposed,
        optimizer_s=optimizer_s,
        memory=memory,
        usd_per_hour=usd_h,
        notes=tuple(notes),
    )


def _unique_blocks(stg: _Stage) -> list[tuple[Block, int]]:
    seen: dict[int, tuple[Block, int]] = {}
    for blk, _op, cnt in stg.items:
        seen[id(blk)] = (blk, cnt)
    return list(seen.values())


def _stage_param_bytes(stages: list[_Stage], ctx: _Ctx) -> tuple[list[float], list[float], list[float], float]:
    """Per stage and device: parameters, trainable parameters, weight bytes; and the
    largest layer's weight bytes (ZeRO-3 gathers one layer at a time)."""
    cfg = ctx.cfg
    params, trainable, wbytes = [], [], []
    largest = 0.0
    for stg in stages:
        p = tr = wb = 0.0
        layer_bytes: dict[int, float] = {}
        for blk, op, cnt in stg.items:
            n = op.weight_params
            if n:
                shard = _expert_shard(op, cfg.tp, cfg.ep)
                per = n / shard
                p += per * cnt
                bytes_one = per * _weight_bits(op, ctx) / 8.0
                wb += bytes_one * cnt
                layer_bytes[id(blk)] = layer_bytes.get(id(blk), 0.0) + bytes_one
                if ctx.trainable_base:
                    tr += per * cnt
            a = _lora_params(op, ctx.ft, cfg.lora_targets)
            if a:
                per = a / _tp_shard(op, cfg.tp)
                p += per * cnt
                tr += per * cnt
                wb += per * ctx.e * cnt
        if layer_bytes:
            largest = max(largest, max(layer_bytes.values()))
        params.append(p)
        trainable.append(tr)
        wbytes.append(wb)
    return params, trainable, wbytes, largest


def _memory(
    stages: list[_Stage],
    ctx: _Ctx,
    stage_params: list[float],
    stage_trainable: list[float],
    stage_wbytes: list[float],
    largest_layer: float,
    grad_bytes_el: float,
    master: float,
    opt: OptimizerSpec,
) -> TrainingMemory:
    cfg, arch, device = ctx.cfg, ctx.arch, ctx.device
    b = cfg.micro_batch
    m = cfg.microbatches
    p, v = cfg.pp, cfg.interleave
    best = None
    for stg in stages:
        i = stg.index
        weights = stage_wbytes[i]
        if cfg.zero >= 3 and cfg.data_ranks > 1:
            # shards plus two gathered layers (the one computing and the one prefetched)
            weights = weights / cfg.data_ranks + 2.0 * largest_layer
        grads = stage_trainable[i] * grad_bytes_el / (cfg.data_ranks if cfg.zero >= 2 else 1)
        optim = stage_trainable[i] * (master + opt.state_bytes) / (cfg.data_ranks if cfg.zero >= 1 else 1)
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
        total = weights + grads + optim + acts + logits
        if best is None or total > best[0]:
            best = (total, i, weights, grads, optim, acts, logits)
    total, i, weights, grads, optim, acts, logits = best
    cap = device.memory_capacity_bytes
    short = max(0.0, total - cap)
    return TrainingMemory(
        weights_bytes=weights,
        gradients_bytes=grads,
        optimizer_bytes=optim,
        activations_bytes=acts + logits,
        logits_bytes=logits,
        per_device_bytes=total,
        device_capacity_bytes=cap,
        fits=short <= 0.0,
        shortfall_bytes=short,
        tier=device.device_tier.name,
        stage=i,
    )


def _largest_dequantized(stg: _Stage, ctx: _Ctx) -> float:
    best = 0.0
    for _blk, op, _cnt in stg.items:
        if op.kind in (LINEAR, LM_HEAD) and op.weight_params:
            best = max(best, op.weight_params / _expert_shard(op, ctx.cfg.tp, ctx.cfg.ep) / max(1, op.experts) * ctx.e)
    return best


def with_changes(cfg: TrainingConfig, **changes) -> TrainingConfig:
    """A validated copy of ``cfg`` with some fields changed."""
    return replace(cfg, **changes)


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
    "with_changes",
    "zero_model_state_bytes",
]
