"""Kernel-level cost terms: how efficiently one kernel runs given its shape and the engine
that launches it. Pure functions over numbers; :mod:`planner.opcost` and
:mod:`planner.costmodel` call them, and so may the training model.

* **GEMM** (:func:`gemm_efficiency`): a GEMM of ``m × n`` outputs is cut into output tiles
  (``TILE_M × TILE_N``); each core (SM / CU) computes one tile at a time, so the tiles run in
  ``ceil(tiles / cores)`` waves and the last wave leaves cores idle (*wave quantization*,
  NVIDIA "Matrix Multiplication Background User's Guide",
  https://docs.nvidia.com/deeplearning/performance/dl-performance-matrix-multiplication/).
  With fewer tiles than cores the libraries split K over idle cores (split-K / Stream-K,
  Osama et al. 2023, arXiv:2301.03598), at least ``SPLIT_K_MIN_DEPTH`` of K per slice.
  A tile's prologue and epilogue cost about ``k_overhead`` of K-depth (fitted,
  ``GEMM_K_OVERHEAD``): a shallow GEMM (small K) reaches less of the best-shape fraction.
  The best-shape fraction itself is the device's measured MAMF (``Efficiency.compute_max``).
* **Decode GEMV**: a matrix-vector product is a bandwidth problem; its weights stream at the
  device's bandwidth fraction (``Efficiency.bandwidth``) — no compute-side term.
* **Attention**: FlashAttention-style prefill reaches a fraction of the 16-bit peak that rises
  with the sequence length (:func:`flash_attention_fraction`, from the FlashAttention-2 paper);
  an engine without a fused kernel materialises the score matrix (:func:`unfused_attention_bytes`).
  Paged decode attention reads the KV cache at a fraction of streaming bandwidth
  (``planner.opcost.KV_GATHER_EFFICIENCY``, fitted).
* **Non-GEMM operators** (:func:`elementwise_bytes`): residual adds, the gated activation,
  rotary embedding and the sampling pass are memory passes over the activations; an engine with
  fused kernels folds them into the neighbouring GEMM or norm (no extra pass).
* **Runtime overhead per step** (:func:`step_overhead_s`): scheduler + sampling + graph launch of
  one forward pass, from the engine profile.
"""

from __future__ import annotations

import functools
import math

# Output tile of a tensor-core GEMM (128 × 128: the tile of the wave-quantization examples in
# NVIDIA's Matrix Multiplication Background guide; CUTLASS's default threadblock tile on
# Ampere/Hopper is 128 × 128 or 128 × 256). A GEMM with few rows (decode) runs a tile with fewer
# rows: the smallest of TILE_M_CHOICES that covers them (CUTLASS and cuBLAS ship 16/32/64-row
# tiles; 16 is the M of the tensor-core MMA instruction mma.m16n8k16).
TILE_M = 128
TILE_N = 128
TILE_M_CHOICES = (16, 32, 64, 128)
# Split-K never slices K thinner than this (one K slice must amortise its reduction).
SPLIT_K_MIN_DEPTH = 512
# K-depth a tile's prologue (first loads) and epilogue (output store) cost, in K elements
# (fitted: benchmarks/fitted.py GEMM_K_OVERHEAD, grid 0–512; 512 minimises the median error over
# every published row, --cv loso refits it without each source).
GEMM_K_OVERHEAD = 512.0

# An engine's quantized matmul on CPU cores (runtime.cpu_int8_gemm in its profile). "ggml":
# llama.cpp's Q8_0 / Q4_0 weights against Q8_0-quantized activations (tinyBLAS_Q0_AVX in
# ggml/src/llamafile/sgemm.cpp, llama.cpp PR #6414). Per 32-value block pair the kernel issues the
# integer dot product (one VPDPBUSD with AVX-VNNI, VPMADDUBSW + VPMADDWD with AVX2: what the CPU
# profiles' int8 peak counts) and, beside it, the sign fix-up of the activations, the conversion
# of the 32-bit sums to fp32, the product of the two blocks' fp16 scales, its broadcast and an fp32
# multiply-add — five vector instructions in the source, plus the weight block's own work (and
# the Q4_0 nibble unpacking) shared by the 2–4 activation columns of a register tile. These block
# instructions, not the dot product, take most issue slots, so the kernel's share of the int8
# peak depends on the ISA: see cpu_int8_gemm_fraction. The count is not a measured throughput
# (pipes differ per instruction): fitted (benchmarks/fitted.py GGML_CPU_BLOCK_OPS, grid 2–8) on the
# published rows it moves, llama.cpp's CPU rows: 5 (4 or 5 at earlier revisions, when one median
# pooled over every row any fitted constant moves decided it, so GPU rows could tip it), --cv loso
# refits it without each source.
CPU_INT8_GEMM_BLOCK_OPS: dict[str, float] = {"ggml": 5.0}
# tinyBLAS_Q0_AVX works on 256-bit vectors: 8 fp32 lanes per instruction.
CPU_GEMM_VECTOR_LANES = 8


def cpu_int8_gemm_fraction(block_ops: float, int8_peak: float, fp32_peak: float, lanes: int = CPU_GEMM_VECTOR_LANES) -> float:
    """Share of the int8 peak an int8 block-quantized matmul reaches when each 32-value block pair
    costs its dot-product instructions plus ``block_ops`` other vector instructions of the same
    issue cost. A vector slot does ``2·lanes`` fp32 FLOP (an FMA) at the fp32 peak, so a slot's time
    is ``2·lanes / fp32_peak`` and a block pair's 64 int8 operations take ``64 / int8_peak`` of dot
    product: share = 1 / (1 + lanes·block_ops·int8_peak / (32·fp32_peak)). With int8 = 4× fp32
    (VNNI, Zen 4) and 5 block instructions (the shipped fit) that is 1/6; with int8 = 2× fp32 (AVX2, Zen 3) 2/7."""
    if block_ops < 0 or int8_peak <= 0 or fp32_peak <= 0:
        raise ValueError(f"block_ops must be >= 0 and the peaks > 0; got {block_ops!r}, {int8_peak!r}, {fp32_peak!r}")
    return 1.0 / (1.0 + lanes * block_ops * int8_peak / (32.0 * fp32_peak))


# FlashAttention-2 forward on A100 (Dao 2023, arXiv:2307.08691, Fig. 4 and abstract: "50-73% of
# the theoretical maximum FLOPs/s"): ~50% of the 16-bit peak at 512 tokens rising to ~73% at
# 16k, head dim 128. (sequence length, fraction of 16-bit peak).
FLASH_ATTENTION_POINTS = ((512.0, 0.50), (16384.0, 0.73))


def wave_efficiency(m: float, n: float, k: float, cores: int) -> float:
    """Share of the cores' time doing useful tiles for an ``m × n × k`` GEMM on ``cores`` cores
    (1.0 when the device declares no core count)."""
    if cores <= 0 or m <= 0 or n <= 0:
        return 1.0
    tm = next((t for t in TILE_M_CHOICES if t >= m), TILE_M)
    tiles = math.ceil(m / tm) * math.ceil(n / TILE_N)
    # Useful share of each tile: a tile cut by the matrix edge computes only its inside.
    fill = (m * n) / (tiles * tm * TILE_N)
    if tiles < cores:
        split = max(1, min(cores // tiles, int(k // SPLIT_K_MIN_DEPTH)))
        tiles *= split
    waves = math.ceil(tiles / cores)
    return fill * tiles / (waves * cores)


def depth_efficiency(k: float, k_overhead: float | None = None) -> float:
    """Share of a tile's time spent in its K loop: ``k / (k + k_overhead)``."""
    ko = GEMM_K_OVERHEAD if k_overhead is None else k_overhead
    return k / (k + ko) if k > 0 else 1.0


def gemm_efficiency(m: float, n: float, k: float, cores: int) -> float:
    """Shape factor in (0, 1] multiplying the device's best-shape fraction for an ``m × n × k``
    GEMM: wave quantization × K depth."""
    return _gemm_efficiency(m, n, k, cores, GEMM_K_OVERHEAD)


@functools.lru_cache(maxsize=1 << 14)
def _gemm_efficiency(m: float, n: float, k: float, cores: int, k_overhead: float) -> float:
    # The fitted K overhead is part of the key, so a run that sets it (benchmarks/fitted.py)
    # never reads a value cached under another.
    return max(1e-3, wave_efficiency(m, n, k, cores) * depth_efficiency(k, k_overhead))


def _interp_log(points: tuple[tuple[float, float], ...], x: float) -> float:
    if x <= points[0][0]:
        return points[0][1]
    if x >= points[-1][0]:
        return points[-1][1]
    for (x0, v0), (x1, v1) in zip(points, points[1:]):
        if x <= x1:
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return v0 + t * (v1 - v0)
    return points[-1][1]


def flash_attention_fraction(seq: float) -> float:
    """Fraction of the 16-bit peak a fused (FlashAttention-style) prefill attention kernel
    reaches for sequences of ``seq`` keys (FlashAttention-2 forward, A100)."""
    return _interp_log(FLASH_ATTENTION_POINTS, max(seq, 1.0))


def unfused_attention_bytes(batch: float, heads: float, queries: float, keys: float, act_bytes: float) -> float:
    """Memory traffic of attention without a fused kernel: the score matrix is written by
    QKᵀ, read and written by the softmax and read by the AV product (4 passes)."""
    return 4.0 * batch * heads * queries * keys * act_bytes


def elementwise_bytes(tokens: float, hidden: float, ffn: float, q_width: float, kv_width: float, act_bytes: float,
                      *, gated: bool, rotary: bool = True) -> float:
    """Bytes moved per decoder layer by the operators that are not GEMMs or norms when each
    is its own kernel: two residual adds (read 2, write 1 over the hidden width), the
    activation (gated: read gate and up, write one; plain: read and write), and rotary
    embedding on the queries and keys (read and write) for a model with rotary positions."""
    residual = 2 * 3 * hidden
    act = 3 * ffn if gated else 2 * ffn
    rope = 2 * (q_width + kv_width) if rotary else 0
    return tokens * (residual + act + rope) * act_bytes


# Kernels one decoder layer launches for those operators when unfused: two residual adds, the
# activation (gated: act(gate) and the product), rotary on q and k (models with rotary positions).
def elementwise_kernels(gated: bool, rotary: bool = True) -> int:
    return 2 + (2 if gated else 1) + (2 if rotary else 0)


# Kernels eager PyTorch launches per layer in one decode step (planner.serving.RUNTIME_OVERHEAD_S
# prices one host dispatch per kernel). Counted on the Hugging Face modules with SDPA attention, not
# fitted: a Llama layer launches 36 (7 matmuls; 12 for its two RMSNorms: pow, mean, add, rsqrt, mul,
# mul; 10 for rotary on q and k: mul, mul, neg, cat, add each; 2 KV-cache appends and the SDPA
# kernel; SiLU and its product; 2 residual adds). Views and reshapes launch none, and their host
# time is inside the fitted time per kernel. A Mixtral layer adds 16 for routing (softmax, top-k,
# renormalisation, the sort / histogram / scatter of tokens to experts; transformers' grouped-GEMM
# path) beyond its router and expert matmuls. Layers without SDPA in transformers (BLOOM, eager
# attention) launch more than counted here: tests/test_eager_dispatch.py repeats the counts on
# the installed transformers and states each architecture's margin.
RMSNORM_KERNELS = 6
LAYERNORM_KERNELS = 1
ROTARY_KERNELS = 10
ATTENTION_KERNELS = 3  # k and v appended to the cache, one SDPA kernel
RESIDUAL_KERNELS = 2
MOE_ROUTING_KERNELS = 16


def norm_kernels(arch) -> int:
    """ATen kernels one norm of ``arch`` launches in eager PyTorch (an RMSNorm six, a LayerNorm one)."""
    return RMSNORM_KERNELS if arch.norm == "rmsnorm" else LAYERNORM_KERNELS


def eager_layer_kernels(arch, kinds: tuple[str, ...]) -> int:
    """ATen kernels one layer of ``arch`` launches in eager PyTorch, from the operator kinds the
    layer is modelled with (``linear``, ``router``, ``norm``, ``attention``)."""
    norm = norm_kernels(arch)
    attention = ATTENTION_KERNELS + (ROTARY_KERNELS if arch.position_encoding == "rope" else 0)
    n = RESIDUAL_KERNELS + (2 if arch.gated_mlp else 1)
    for kind in kinds:
        n += {"linear": 1, "router": 1 + MOE_ROUTING_KERNELS, "norm": norm, "attention": attention}.get(kind, 1)
    return n


@functools.lru_cache(maxsize=256)
def eager_kernels_per_op(arch, kinds: tuple[str, ...]) -> float:
    """Kernels per modelled operator of one repeated layer (1.0 for a convolution network, whose
    operators are one kernel each plus the BatchNorm / ReLU epilogue priced apart)."""
    if arch.family == "cnn" or not kinds:
        return 1.0
    return eager_layer_kernels(arch, kinds) / len(kinds)

# Kernels one layer launches in an engine whose eager model code calls its own fused kernels
# (planner.engines.Runtime.eager_fused_ops; vLLM's --enforce-eager, SGLang's --disable-cuda-graph).
# Counted on vLLM's model code (vllm/model_executor/models/llama.py, opt.py, mixtral.py;
# https://github.com/vllm-project/vllm): QKVParallelLinear and MergedColumnParallelLinear make one GEMM of
# each merged projection; RMSNorm(x, residual) is one fused_add_rms_norm kernel that also does the
# residual add (LayerNorm models add their residuals as two more kernels); get_rope is one rotary kernel
# for q and k; Attention writes the new k and v into the paged cache (reshape_and_cache) and runs one
# attention kernel; SiluAndMul / GeluAndMul is one kernel. A MoE layer's experts run fused_experts
# (fused_moe.py): topk_softmax, moe_align_block_size, the w13 grouped GEMM, silu_and_mul, the w2 grouped
# GEMM and moe_sum, after the router GEMM. SGLang's model code has the same structure
# (python/sglang/srt/models/llama.py: fused_add_rmsnorm, QKVParallelLinear, get_rope, RadixAttention,
# SiluAndMul, MergedColumnParallelLinear; https://github.com/sgl-project/sglang).
FUSED_NORM_KERNELS = 1
FUSED_ATTENTION_KERNELS = 2  # cache write, attention
FUSED_ROTARY_KERNELS = 1
FUSED_MOE_KERNELS = 6  # topk_softmax, align, w13 GEMM, activation, w2 GEMM, moe_sum


def fused_eager_layer_kernels(arch, ops: tuple[tuple[str, str, bool], ...]) -> int:
    """Kernels one layer of ``arch`` launches under an engine with fused eager kernels, from the
    layer's operators as (kind, decision group, is an expert linear): one GEMM per group of
    linears (merged QKV, merged gate-up), see the table above."""
    rms = arch.norm == "rmsnorm"
    n = 0 if rms else RESIDUAL_KERNELS
    groups: set[str] = set()
    moe = False
    for kind, group, expert in ops:
        if kind == "linear":
            if expert:
                moe = True
            elif group not in groups:
                groups.add(group)
                n += 1
        elif kind == "router":
            n += 1  # the router GEMM; the routing itself is in FUSED_MOE_KERNELS
            moe = True
        elif kind == "norm":
            n += FUSED_NORM_KERNELS
        elif kind == "attention":
            n += FUSED_ATTENTION_KERNELS + (FUSED_ROTARY_KERNELS if arch.position_encoding == "rope" else 0)
        else:
            n += 1
    # the MLP's activation: one kernel, inside the fused MoE path for expert layers
    return n + (FUSED_MOE_KERNELS if moe else 1)


@functools.lru_cache(maxsize=256)
def fused_eager_kernels_per_op(arch, ops: tuple[tuple[str, str, bool], ...]) -> float:
    """:func:`fused_eager_layer_kernels` per modelled operator of the layer."""
    if arch.family == "cnn" or not ops:
        return 1.0
    return fused_eager_layer_kernels(arch, ops) / len(ops)


# A convolution in an engine without conv+BN+ReLU fusion (eager PyTorch in eval mode runs
# BatchNorm and ReLU as their own kernels) is followed by two more kernels over its output.
CONV_EPILOGUE_KERNELS = 2


def conv_epilogue_bytes(out_elems: float, act_bytes: float) -> float:
    """Bytes of the BatchNorm and ReLU passes after an unfused convolution: each reads and
    writes the convolution's output once."""
    return 2.0 * CONV_EPILOGUE_KERNELS * out_elems * act_bytes


def sampling_bytes(sequences: float, vocab: float) -> float:
    """Bytes of one sampling step: the fp32 logits of each sequence read once by the
    softmax / arg-max pass (the LM head's write of them is the LM head's own traffic)."""
    return sequences * vocab * 4.0


def step_overhead_s(step_us: float) -> float:
    """Host time one forward step costs the engine beyond its kernels (scheduler, sampling
    launch, graph replay), from the engine profile (µs)."""
    return max(0.0, step_us) * 1e-6
