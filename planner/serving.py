"""What the inference cost model is asked to price besides the model, the device, the layout
and the numerics: the requests served (:class:`Serving`) and how the serving runtime places
and runs the model (:class:`RuntimeSettings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from planner.errors import EstimateError
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
    # Serving engines with chunked prefill (vLLM, SGLang, TensorRT-LLM, llama.cpp's ubatch)
    # run at most this many prompt tokens per forward pass: the activation peak is one
    # chunk's, not the whole batch's prompts at once. None: the whole prefill at once.
    prefill_chunk_tokens: int | None = None
    # Share of device memory the engine takes for weights, KV cache and activations (vLLM's
    # gpu_memory_utilization); the runtime context (reserved_bytes) lives in the rest.
    memory_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.kv_token_budget is not None and (isinstance(self.kv_token_budget, bool) or not isinstance(self.kv_token_budget, int) or self.kv_token_budget < 1):
            raise EstimateError("kv_budget", f"--kv-budget must be a positive number of tokens; got {self.kv_token_budget!r}")
        if isinstance(self.kv_share_layers, bool) or not isinstance(self.kv_share_layers, int) or self.kv_share_layers < 1:
            raise EstimateError("kv_share", f"--kv-share must be a positive integer; got {self.kv_share_layers!r}")
        if not resolve_format(self.kv_evicted, "kv_evicted").is_kv:
            raise EstimateError("kv_evicted", f"--kv-evicted must be a KV-cache format; got {self.kv_evicted!r}")
        if self.runtime not in RUNTIME_OVERHEAD_S:
            raise EstimateError("runtime", f"--runtime must be one of {', '.join(RUNTIME_OVERHEAD_S)}; got {self.runtime!r}")
        if self.prefill_chunk_tokens is not None and (isinstance(self.prefill_chunk_tokens, bool) or not isinstance(
                self.prefill_chunk_tokens, int) or self.prefill_chunk_tokens < 1):
            raise EstimateError("engine", f"an engine's prefill chunk must be a positive token count; got {self.prefill_chunk_tokens!r}")
        if isinstance(self.memory_fraction, bool) or not 0.0 < float(self.memory_fraction) <= 1.0:
            raise EstimateError("engine", f"an engine's memory fraction must be in (0, 1]; got {self.memory_fraction!r}")
        if self.flash_chunk_bytes <= 0:
            raise EstimateError("flash_chunk_kib", f"--flash-chunk-kib must be positive; got {self.flash_chunk_bytes / 1024:g}")

    @property
    def host_overhead_s(self) -> float:
        return RUNTIME_OVERHEAD_S[self.runtime]


# Host-side cost per modelled operator on top of the device's kernel overhead.
# Graph-captured engines (CUDA graphs, TensorRT-LLM, torch.compile, llama.cpp) launch the whole
# pass at once: no per-operator host cost. PyTorch eager dispatches each ATen kernel from Python:
# ≈ 7–8 µs of dispatcher + launch per kernel and ≈ 4–5 kernels per modelled operator (a Llama
# layer runs ~50 ATen ops for the 11 operators modelled here) → ≈ 35 µs per operator. The
# DeepLearningExamples ResNet-50 table shows the effect (batch-1 AMP slower than fp32: launch bound).
RUNTIME_OVERHEAD_S = {"graph": 0.0, "eager": 35e-6}
