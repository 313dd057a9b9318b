"""Training setup: the step's configuration (:class:`TrainingConfig`), optimizers and
fine-tuning methods, and the cited closed-form formulas the estimate is tested against.
The estimate itself is :func:`planner.training.estimate_training`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from planner.costmodel import RUNTIME_OVERHEAD_S
# the one list of ZeRO stages and of attention kernels (engine profiles offer a subset of each)
from planner.engines import ATTENTION_KERNELS, ZERO_STAGES
from planner.errors import EstimateError
from planner.formats import DEQUANT_COPY_DTYPES
from planner.layout import Layout

RECOMPUTE_MODES = ("none", "selective", "full")
GRAD_ACCUMULATION = ("separate", "fused")
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


# ---------------------------------------------------------------------------
# Optimizers and fine-tuning methods
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizerSpec:
    """Bytes an optimizer keeps per trainable parameter besides the working weights and
    gradients: ``state_bytes`` for its moments; an fp32 master copy is added whenever the
    working weights are narrower than fp32 (mixed precision, Rajbhandari et al. 2020, https://arxiv.org/abs/1910.02054: K = 4 + 4 + 4 = 12)."""

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
    ``engine``: the training engine whose kernels and runtime facts price the step (``None``:
    engine-neutral defaults); ``tp_comm_overlap``: TP collectives overlapped with GEMMs (``None``:
    the engine profile's ``tp_comm_overlap``);
    ``grad_accumulation``: ``separate`` (each micro-batch's weight gradients are added into
    the step's gradient buffer by their own kernel: PyTorch autograd, Megatron-LM before
    gradient-accumulation fusion) or ``fused`` (added in the weight-gradient GEMM's epilogue);
    ``dequant_copy_dtype``: the float type QLoRA's bitsandbytes matmul dequantizes a 4-bit weight to,
    when it is not the compute type (``None``: the compute type, as when the weights were quantized
    from it). bitsandbytes dequantizes to the dtype a weight was quantized from and then casts it, so
    both copies are held at once: LitGPT's Fabric plugin quantizes from ``fp16`` and a bf16 run casts.
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
    engine: str | None = None
    tp_comm_overlap: bool | None = None
    dequant_copy_dtype: str | None = None

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
        if self.engine is not None and (not isinstance(self.engine, str) or not self.engine.strip()):
            raise EstimateError("engine", f"engine must be an engine id such as 'megatron-core' or None; got {self.engine!r}")
        if self.dequant_copy_dtype is not None and self.dequant_copy_dtype not in DEQUANT_COPY_DTYPES:
            raise EstimateError("dequant_copy_dtype", f"dequant_copy_dtype must be {', '.join(DEQUANT_COPY_DTYPES)} or None; "
                                f"got {self.dequant_copy_dtype!r}")
        if self.tp_comm_overlap not in (None, True, False):
            raise EstimateError("tp_comm_overlap", f"tp_comm_overlap must be true, false or None; got {self.tp_comm_overlap!r}")
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
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.ep, cp=self.cp)

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


def with_changes(cfg: TrainingConfig, **changes) -> TrainingConfig:
    """A validated copy of ``cfg`` with some fields changed."""
    return replace(cfg, **changes)


__all__ = [
    "ATTENTION_KERNELS",
    "DEFAULT_LORA_TARGETS",
    "FineTune",
    "GRAD_ACCUMULATION",
    "OPTIMIZERS",
    "OptimizerSpec",
    "RECOMPUTE_MODES",
    "TrainingConfig",
    "ZERO_STAGES",
    "korthikanti_activation_bytes_per_layer",
    "megatron_flops_per_iteration",
    "parse_finetune",
    "with_changes",
    "zero_model_state_bytes",
]
