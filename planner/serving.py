"""What the inference cost model is asked to price besides the model, the device, the layout
and the numerics: the requests served (:class:`Serving`) and how the serving runtime places
and runs the model (:class:`RuntimeSettings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from planner.errors import EstimateError
from planner.formats import DEQUANT_COPY_DTYPES
from planner.kernels import CPU_INT8_GEMM_BLOCK_OPS
from planner.numerics import resolve_format


@dataclass(frozen=True, slots=True, kw_only=True)
class Serving:
    """What is served: batch per replica, prompt and generated tokens per request."""

    batch: int = 1
    prompt: int = 512
    gen: int = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    """How the serving runtime places and runs the model (weight placement and offload,
    flash reads, graph or eager launch, KV-cache policies): knobs that change placement
    and overheads rather than numerics."""

    allow_offload: bool = False  # let weights spill to host memory (GPU/TPU/CPU) — slow
    flash_chunk_bytes: float = 256 * 1024  # read size when streaming weights from flash
    placement: Mapping[str, float] | None = None  # explicit fraction of weights per tier name
    runtime: str = "graph"  # "graph" (CUDA graphs / compiled engines) or "eager" (PyTorch eager)
    # KV-cache policies. A token budget keeps the most recent/important `kv_token_budget` tokens
    # at the KV format and retains evicted ones at `kv_evicted` (MiKV, Yang et al. 2024:
    # "No Token Left Behind"); `kv_share_layers` adjacent layers share one cache and the
    # later layers drop their K/V projections (SwiftKV's AcrossKV, Qiao et al. 2024).
    kv_token_budget: int | None = None
    kv_evicted: str = "int4-g32"
    kv_share_layers: int = 1
    # Device memory the serving engine keeps outside weights, KV and activations (CUDA
    # context, communication buffers, captured graphs): its profile's runtime.context_bytes.
    reserved_bytes: float = 0.0
    # Kernel facts of the serving engine (planner.kernels; profiles/engines/*.yaml runtime): a fused
    # FlashAttention-style attention kernel, non-GEMM operators fused into their neighbours, host
    # time per forward step, the compute unit it runs on (None = the device's first unit), the
    # tokens one prefill iteration processes under chunked prefill (0 = the whole batch at once:
    # bounds the transient activations) and the share of the memory left after weights,
    # activations and context that the engine gives its KV cache.
    fused_attention: bool = True
    fused_elementwise: bool = True
    step_overhead_s: float = 0.0
    compute_unit: str | None = None
    prefill_chunk_tokens: int = 0
    kv_memory_fraction: float = 1.0
    # Share of the device's compute one request gets: a Vitis AI DPU design with N cores runs a
    # single-threaded request on one of them (1/N); 1.0 elsewhere.
    compute_share: float = 1.0
    # Memory of an ahead-of-time compiled program (engine profile runtime, planner.engines.Runtime):
    # a static plan holds the KV cache at the program's sequence capacity and every activation at the
    # upper bound of its token dimension; ``static_tokens`` is that capacity (the export's
    # max_seq_length; 0 = the request's prompt + gen, what Tierwise's own export writes). With
    # ``quantized_act_storage_bits`` > 0 the tensors between operators of an integer-activation
    # scheme are held at those bits; ``untie_quantized_head`` stores a tied, quantized LM head twice.
    static_memory_plan: bool = False
    static_tokens: int = 0
    quantized_act_storage_bits: float = 0.0
    untie_quantized_head: bool = False
    # Linear layers with integer weights and float activations quantize their activations to this
    # format per token at run time (planner.engines.Runtime.dynamic_act_quant); None: W4A16-style.
    dynamic_act_quant: str | None = None
    # Integer weight formats exported weight-only for this model, which keep their float activations
    # (planner.engines.Runtime.weight_only_formats).
    weight_only_formats: tuple[str, ...] = ()
    # Operator kinds (embedding, lm_head) whose weights the engine keeps in 16 bit when the scheme quantizes
    # the linear layers (planner.engines.Runtime.float_weight_kinds); a per-group choice still wins.
    float_weight_kinds: tuple[str, ...] = ()
    # The peak of the engine's compute design on the device, per precision, in FLOP/s (planner.engines.
    # Runtime.design_peak_tops): it replaces the device's peak at that precision.
    design_peak_flops: tuple[tuple[str, float], ...] = ()
    # Vector instructions per 32-value block pair beside the dot product in the engine's quantized
    # CPU matmul (planner.kernels.CPU_INT8_GEMM_BLOCK_OPS); None: the device's best-shape fraction.
    cpu_int8_block_ops: float | None = None
    # Weights dequantized by a kernel of their own into a 16-bit buffer the GEMM reads
    # (planner.engines.Runtime.separate_dequant).
    separate_dequant: bool = False
    # Weight formats whose matmul dequantizes the whole weight into a 16-bit copy for an input of more than
    # one row (planner.engines.Runtime.dequant_copy_formats: bitsandbytes' 4-bit MatMul4Bit).
    dequant_copy_formats: tuple[str, ...] = ()
    # The float type that copy is made in when it differs from the compute type, which it is then cast to:
    # both copies are held at once and both passes are paid (planner.engines.Runtime.dequant_copy_dtype).
    dequant_copy_dtype: str | None = None
    # Eager launch runs the engine's fused kernels (planner.engines.Runtime.eager_fused_ops): the host
    # dispatches planner.kernels.fused_eager_layer_kernels per layer instead of the Transformers count.
    eager_fused_ops: bool = False
    # Formats the engine stores as tensor types of its own (planner.engines.Runtime.storage, e.g. llama.cpp's
    # int4-g32-zp as ggml q4_1: an fp16 scale and an fp16 min per 32 values, 5.0 bits, not the catalog's
    # 4.625): per format, (values per block, bits per value) of its type and then of the types a tensor
    # whose rows are no whole number of blocks falls back to. Weights and KV cache of those formats are
    # priced at these bits (planner.opcost.stored_bits); other formats at the catalog's.
    stored_formats: tuple[tuple[str, tuple[tuple[int, float], ...]], ...] = ()
    # SmoothQuant's migration strength in the engine's integer-activation recipe
    # (planner.engines.Runtime.smoothing_alpha): the sensitivity prior prices int8 activations after it.
    smoothing_alpha: float | None = None
    # Per weight format, the features one int8 activation scale covers where the engine quantizes them
    # in blocks (planner.engines.Runtime.activation_blocks); others: per token.
    activation_blocks: tuple[tuple[str, int], ...] = ()

    def activation_recipe(self):
        """The engine's recipe for integer activations (:class:`planner.format_noise.ActivationRecipe`)."""
        from planner.format_noise import ActivationRecipe

        return ActivationRecipe(smoothing=self.smoothing_alpha, blocks=self.activation_blocks, dynamic=self.dynamic_act_quant,
                                weight_only=self.weight_only_formats)

    def __post_init__(self) -> None:
        if self.kv_token_budget is not None and (isinstance(self.kv_token_budget, bool) or not isinstance(self.kv_token_budget, int) or self.kv_token_budget < 1):
            raise EstimateError("kv_budget", f"{{@kv_budget}} must be a positive number of tokens; got {self.kv_token_budget!r}")
        if isinstance(self.kv_share_layers, bool) or not isinstance(self.kv_share_layers, int) or self.kv_share_layers < 1:
            raise EstimateError("kv_share", f"{{@kv_share}} must be a positive integer; got {self.kv_share_layers!r}")
        if not resolve_format(self.kv_evicted, "kv_evicted").is_kv:
            raise EstimateError("kv_evicted", f"{{@kv_evicted}} must be a KV-cache format; got {self.kv_evicted!r}")
        if self.runtime not in RUNTIME_OVERHEAD_S:
            raise EstimateError("runtime", f"{{@runtime}} must be one of {', '.join(RUNTIME_OVERHEAD_S)}; got {self.runtime!r}")
        if isinstance(self.prefill_chunk_tokens, bool) or not isinstance(self.prefill_chunk_tokens, int) or self.prefill_chunk_tokens < 0:
            raise EstimateError("prefill_chunk_tokens", f"the prefill chunk must be a whole number of tokens >= 0; got {self.prefill_chunk_tokens!r}")
        if not self.step_overhead_s >= 0.0:
            raise EstimateError("step_overhead_s", f"the per-step overhead must be >= 0 seconds; got {self.step_overhead_s!r}")
        if not 0.0 < self.compute_share <= 1.0:
            raise EstimateError("compute_share", f"the compute share must be in (0, 1]; got {self.compute_share!r}")
        if isinstance(self.static_tokens, bool) or not isinstance(self.static_tokens, int) or self.static_tokens < 0:
            raise EstimateError("static_tokens", f"the program's sequence capacity must be a whole number of tokens >= 0; got {self.static_tokens!r}")
        if self.cpu_int8_block_ops is not None and not self.cpu_int8_block_ops >= 0.0:
            raise EstimateError("cpu_int8_block_ops", f"the block instructions per dot product must be >= 0; got {self.cpu_int8_block_ops!r}")
        if self.dequant_copy_dtype is not None and self.dequant_copy_dtype not in DEQUANT_COPY_DTYPES:
            raise EstimateError("dequant_copy_dtype", f"the dequantized copy's type must be {', '.join(DEQUANT_COPY_DTYPES)} or None; "
                                f"got {self.dequant_copy_dtype!r}")
        if not 0.0 < self.kv_memory_fraction <= 1.0:
            raise EstimateError("kv_memory_fraction", f"the KV-cache memory fraction must be in (0, 1]; got {self.kv_memory_fraction!r}")
        if self.flash_chunk_bytes <= 0:
            raise EstimateError("flash_chunk_kib", f"{{@flash_chunk_kib}} must be positive; got {self.flash_chunk_bytes / 1024:g}")

    @property
    def host_overhead_s(self) -> float:
        """Host time per kernel the runtime launches (0 for graph launch); an operator launches
        planner.kernels.eager_kernels_per_op of them."""
        return RUNTIME_OVERHEAD_S[self.runtime]


def engine_settings(runtime) -> dict:
    """RuntimeSettings fields taken from an engine profile's runtime block
    (:class:`planner.engines.Runtime`)."""
    return {
        "reserved_bytes": runtime.context_bytes,
        "fused_attention": runtime.fused_attention,
        "fused_elementwise": runtime.fused_elementwise,
        "step_overhead_s": runtime.step_overhead_us * 1e-6,
        "compute_unit": runtime.compute_unit,
        "prefill_chunk_tokens": runtime.chunk_tokens if runtime.chunked_prefill else 0,
        "kv_memory_fraction": runtime.memory_fraction if runtime.paged_kv else 1.0,
        "static_memory_plan": runtime.static_memory_plan,
        "quantized_act_storage_bits": _FLOAT_BITS.get(runtime.quantized_act_storage, 0.0),
        "untie_quantized_head": runtime.untie_quantized_head,
        "dynamic_act_quant": runtime.dynamic_act_quant,
        "weight_only_formats": tuple(runtime.weight_only_formats),
        "float_weight_kinds": tuple(runtime.float_weight_kinds),
        "design_peak_flops": tuple((k, v * 1e12) for k, v in runtime.design_peak_tops),
        # Read at call time: benchmarks/fitted.py patches the table for cross-validation.
        "cpu_int8_block_ops": CPU_INT8_GEMM_BLOCK_OPS[runtime.cpu_int8_gemm] if runtime.cpu_int8_gemm else None,
        "separate_dequant": runtime.separate_dequant,
        "dequant_copy_formats": tuple(runtime.dequant_copy_formats),
        "dequant_copy_dtype": runtime.dequant_copy_dtype,
        "eager_fused_ops": runtime.eager_fused_ops,
        "stored_formats": tuple((fmt, tuple((values, 8.0 * nbytes / values) for _, values, nbytes in chain))
                                for fmt, chain in runtime.storage),
        "smoothing_alpha": runtime.smoothing_alpha,
        "activation_blocks": runtime.activation_blocks,
    }


_FLOAT_BITS = {"fp32": 32.0, "fp16": 16.0, "bf16": 16.0}


# Host-side cost per kernel launched, on top of the device's kernel overhead.
# Graph-captured engines (CUDA graphs, TensorRT-LLM, torch.compile, llama.cpp) launch the whole
# pass at once: no per-kernel host cost. Eager PyTorch dispatches each ATen kernel from Python
# (argument parsing, dispatcher, launch); a modelled operator launches
# planner.kernels.eager_kernels_per_op(arch) of them (counted on the Hugging Face modules, not
# fitted). The DeepLearningExamples ResNet-50 table shows the effect (batch-1 AMP slower than fp32:
# launch bound). Fitted (benchmarks/fitted.py EAGER_DISPATCH_S); --cv loso refits it without each source.
RUNTIME_OVERHEAD_S = {"graph": 0.0, "eager": 15e-6}
