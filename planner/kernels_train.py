"""Kernel-level facts a training step is priced with: attention kernels by generation and GPU
architecture, GEMM wave quantization on the device's SMs, and what each training engine runs.

Every number is a published measurement or a vendor fact, with its source next to it; nothing
here is fitted on the validation rows (``benchmarks/data/published.csv``).

* **Attention kernels** reach a fraction of the dense 16-bit tensor peak far below a large GEMM's
  (FlashAttention-2, Dao 2023, https://arxiv.org/abs/2307.08691, §4.1: FA2 forward up to 73% of
  A100's peak, 230 TFLOP/s; backward up to 63%; FlashAttention (v1) 25–40%; FA2 is 1.3–1.5×
  faster than FlashAttention in Triton forward and about 2× backward; the same FA2 code reaches
  up to 335 TFLOP/s forward + backward on H100, 34% of 989. FlashAttention-3, Shah et al. 2024,
  https://arxiv.org/abs/2407.08608, abstract: FA2 "achieving only 35% utilization on the H100",
  FA3 forward up to 740 TFLOP/s, 75%; its backward 1.5–1.75× FA2's.) The fractions are the
  kernels' best (long sequences, head dim 128); smaller problems also pay the device's fill-up
  curve. A backward pass computes 2.5× the forward FLOPs (5 matmuls against 2, FA2 §4.1).
* **Wave quantization**: a GEMM's output is cut into tiles, one thread block per tile, run in
  waves over the SMs; the last wave is partly idle (NVIDIA, "Matrix Multiplication Background
  User's Guide", https://docs.nvidia.com/deeplearning/performance/dl-performance-matrix-multiplication/,
  §"Wave quantization"; stas00/ml-engineering training/performance/README.md "Tile and wave
  quantization"; Anthony et al. 2024, https://arxiv.org/abs/2401.14489). SM counts are the vendors'
  specifications.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from hwmodels import DeviceSpec


@dataclass(frozen=True, slots=True)
class AttentionKernel:
    """A fused attention kernel's best fraction of the dense 16-bit peak, per GPU architecture."""

    name: str
    fwd: dict[str, float]
    bwd: dict[str, float]
    source: str


# FA2 on Ampere: 73% forward, 63% backward (FA2 §4.1). On Hopper the same code: 335 TFLOP/s
# forward + backward = 0.34 of 989 (FA2 §4.1, Fig. 7; FA3 abstract "35%"), used for both passes.
# Ada runs the same mma.sync kernels as Ampere (sm_89 has no wgmma): Ampere's fractions.
_FA2_FWD = {"ampere": 0.73, "ada": 0.73, "hopper": 0.34}
_FA2_BWD = {"ampere": 0.63, "ada": 0.63, "hopper": 0.34}
# FlashAttention in Triton: FA2 is 1.3–1.5× faster forward (midpoint 1.4) and ~2× backward (FA2 §4.1);
# the same ratios applied on Hopper, where neither used Hopper's wgmma/TMA in 2023.
_TRITON_FWD = {k: v / 1.4 for k, v in _FA2_FWD.items()}
_TRITON_BWD = {k: v / 2.0 for k, v in _FA2_BWD.items()}

ATTENTION_KERNEL_TABLE: dict[str, AttentionKernel] = {
    "flash2": AttentionKernel("flash2", _FA2_FWD, _FA2_BWD, "Dao 2023, arXiv:2307.08691 §4.1"),
    "flash-triton": AttentionKernel("flash-triton", _TRITON_FWD, _TRITON_BWD, "Dao 2023, arXiv:2307.08691 §4.1 (FA2 vs Triton)"),
    # FA3 forward 740 of 989 TFLOP/s; backward 1.5–1.75× FA2's (midpoint 1.6 × 0.34). Hopper only;
    # elsewhere the FA2 fractions apply (FA3 does not run before sm_90).
    "flash3": AttentionKernel(
        "flash3",
        {**_FA2_FWD, "hopper": 0.75},
        {**_FA2_BWD, "hopper": 0.34 * 1.6},
        "Shah et al. 2024, arXiv:2407.08608 (abstract, §4)",
    ),
}

# Which fused attention kernel each training engine runs, per architecture (engines' docs):
# PyTorch SDPA's flash backend is FlashAttention-2 (torch.nn.functional.scaled_dot_product_attention docs,
# https://docs.pytorch.org/docs/stable/generated/torch.nn.functional.scaled_dot_product_attention.html);
# Megatron-Core runs Transformer Engine's cuDNN fused attention, FA3-class on Hopper
# (https://docs.nvidia.com/deeplearning/transformer-engine/user-guide/api/pytorch.html#transformer_engine.pytorch.DotProductAttention);
# llm-foundry's MPT yamls set ``attn_impl: triton``, FlashAttention in Triton (scripts/train/yamls/pretrain
# at commit 061f2c7, https://github.com/mosaicml/llm-foundry).
ENGINE_ATTENTION = {
    None: {"*": "flash2"},
    "fsdp": {"*": "flash2"},
    "llm-foundry": {"*": "flash-triton"},
    "megatron-core": {"hopper": "flash3", "*": "flash2"},
}
FUSED_KERNELS = tuple(ATTENTION_KERNEL_TABLE)


def padded_head_dim(kernel: str, head_dim: int) -> int:
    """Head dimension the kernel computes with: FlashAttention in Triton pads to the next power of
    two (``BLOCK_HEADDIM = max(triton.next_power_of_2(d), 16)``, flash_attn_triton.py); FA2 rounds
    up to a multiple of 32 up to 192, else 256 (``head_size_rounded``, flash_attn_interface.py /
    flash_api.cpp); FA3 instantiates 64, 96, 128, 192 and 256 (hopper/ in the flash-attention
    repository). Every padded column costs FLOPs like a real one."""
    d = max(int(head_dim), 1)
    if kernel == "flash-triton":
        return max(16, 1 << (d - 1).bit_length())
    if kernel == "flash3":
        return next((x for x in (64, 96, 128, 192, 256) if x >= d), d)
    return (d + 31) // 32 * 32 if d <= 192 else max(d, 256)


def attention_kernel(engine: str | None, device: DeviceSpec, requested: str) -> AttentionKernel | None:
    """The kernel a ``fused`` (engine default) or named attention runs on ``device``; None when
    the architecture has no published figure (the GEMM curve then applies)."""
    name = requested
    if requested == "fused":
        by_arch = ENGINE_ATTENTION.get(engine, ENGINE_ATTENTION[None])
        name = by_arch.get(device.arch, by_arch["*"])
    kern = ATTENTION_KERNEL_TABLE[name]
    return kern if device.arch in kern.fwd else None


# ---------------------------------------------------------------------------
# GEMM wave quantization
# ---------------------------------------------------------------------------

# Streaming multiprocessors (NVIDIA) / compute units (AMD) per device: the hardware profile's
# ``efficiency.cores`` (vendor specifications, cited in each profile), the count the inference GEMM
# model (planner.kernels) uses too.
# Output tiles the BLAS chooses among for half-precision GEMMs (CUTLASS/cuBLAS tile shapes, NVIDIA
# matrix-multiplication guide): the one that wastes least of the last wave is taken.
GEMM_TILES = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 128))

# A profile's compute_max is the MAMF: the fastest iteration of the best shape found by an exhaustive
# search (stas00/ml-engineering @744d01e, compute/accelerator/benchmarks/README.md: "fastest result is
# picked (not the average)"). A model runs its own fixed shapes; the same README reports that the best
# of an M-sweep at N = K = 4096 (transformer linears) "should give around 80-90% of the maximum
# achievable result". Linears and batched GEMMs of a training step run at the midpoint of that range
# of the MAMF, on GPUs (the devices whose compute_max is a MAMF measurement).
MODEL_SHAPE_FRACTION = 0.85


def wave_efficiency(device: DeviceSpec, rows: float, cols: float) -> float:
    """Share of the SMs a ``rows × cols`` GEMM output keeps busy over its waves of tiles
    (1.0 for devices with no SM count on record)."""
    sms = device.efficiency.cores
    if not sms or rows <= 0 or cols <= 0:
        return 1.0
    return _waves(sms, math.ceil(rows), math.ceil(cols))


@functools.lru_cache(maxsize=4096)
def _waves(sms: int, rows: int, cols: int) -> float:
    best = 0.0
    for tm, tn in GEMM_TILES:
        tiles = math.ceil(rows / tm) * math.ceil(cols / tn)
        best = max(best, tiles / (math.ceil(tiles / sms) * sms))
    return best


# Model families whose reference code computes Q, K and V with one projection (Hugging Face modelling
# code: GPT-2 ``c_attn``, MPT ``Wqkv``, Falcon / GPT-NeoX / BLOOM ``query_key_value``, Phi-3
# ``qkv_proj``; PaLM's fused projection), and engines that fuse it for every model (Megatron-Core
# ``linear_qkv``). The fused GEMM's wider output changes its wave quantization.
FUSED_QKV_MODEL_TYPES = frozenset({"gpt2", "mpt", "falcon", "gpt_neox", "bloom", "phi3", "palm"})
FUSED_QKV_ENGINES = frozenset({"megatron-core"})


def fused_qkv(engine: str | None, model_type: str) -> bool:
    return engine in FUSED_QKV_ENGINES or model_type in FUSED_QKV_MODEL_TYPES


# FP8 GEMMs reach a smaller share of their (2×) peak than BF16 ones: the profile's FP8 MAMF
# (``efficiency.precision_max.fp8``) over its BF16 MAMF (``compute_max``), the fractions the
# inference model uses (stas00/ml-engineering @744d01e, "Maximum Achievable Matmul FLOPS comparison
# table": H100 SXM 70.9% / 80.3%, H200 73.4% / 80.3%, B200 76.3% / 77.6%, GH200 77.6% / 83.8%).
def fp8_mamf_ratio(device: DeviceSpec) -> float:
    """FP8 MAMF / BF16 MAMF of ``device`` (1.0 without an FP8 measurement on record)."""
    eff = device.efficiency
    return eff.max_for("fp8") / eff.compute_max


def gemm_efficiency(device: DeviceSpec, rows: float, cols: float, precision: str = "bf16") -> float:
    """Fraction of the size-dependent GEMM efficiency (the MAMF curve) a model's ``rows × cols``
    output reaches: wave quantization × the model-shape fraction × (FP8) the FP8/BF16 MAMF ratio
    (GPUs; 1.0 elsewhere)."""
    if device.device_class != "gpu":
        return 1.0
    share = wave_efficiency(device, rows, cols) * MODEL_SHAPE_FRACTION
    if precision == "fp8":
        share *= fp8_mamf_ratio(device)
    return share


__all__ = [
    "ATTENTION_KERNEL_TABLE",
    "AttentionKernel",
    "ENGINE_ATTENTION",
    "FUSED_KERNELS",
    "FUSED_QKV_ENGINES",
    "FUSED_QKV_MODEL_TYPES",
    "GEMM_TILES",
    "MODEL_SHAPE_FRACTION",
    "attention_kernel",
    "fp8_mamf_ratio",
    "fused_qkv",
    "padded_head_dim",
    "gemm_efficiency",
    "wave_efficiency",
]
