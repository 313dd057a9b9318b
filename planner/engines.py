"""Engine profiles: what each serving or training runtime runs on which hardware.

A plan is only useful if the user's engine can run it. An engine profile
(``profiles/engines/<id>.yaml``, one file per engine, every fact with its public source)
declares

- ``targets``: per hardware match (``class``, ``vendor``, ``arch``, ``id``), the
  weight / activation *schemes* the engine's kernels run (a scheme pairs a set of weight
  formats with the activation formats they run with, e.g. fp8 W8A8 or int4 W4A16), the KV
  cache formats and the sparsity patterns;
- ``parallel``: the parallel dimensions it implements (tp, pp, dp, ep, cp);
- ``zero`` (training engines, optional): the ZeRO stages its data-parallel sharding offers
  (all four when absent; llm-foundry's FSDP1 offers 0, 2, 3);
- ``attention`` and ``optimizers`` (training engines, optional): the attention kernels
  (``--attention``) and optimizers (``--optimizer``) it has (all when absent);
- ``runtime``: behaviour the cost model prices (graph capture, chunked prefill and its
  chunk, paged KV, continuous batching, the memory fraction the engine takes and the
  context memory it keeps outside it), overridable per target;
- ``exporter``: the ``tierwise export --format`` that writes its deployment files;
- ``models.families``: the model families it runs (``planner.archspec.FAMILIES``: decoder,
  encoder, encoder_decoder, cnn, vit), with a source; ``models.types`` (optional): the Hugging
  Face ``model_type``s it builds, for an engine that compiles each architecture from its own
  model code (MLC LLM), when not every model of those families runs;
- ``low_rank`` (optional, default false): whether it runs layers factorised into two low-rank
  matrices (``--low-rank``, a pin ``...@rRANK``): loading such a checkpoint takes model code
  the serving engines do not have;
- ``storage`` (optional): the engine's own tensor types that its exporter writes each format as, with
  their block layouts (values and bytes per block; llama.cpp's ggml types): the cost model prices
  a format the engine stores this way at its type's bytes, not the catalog format's;
- ``activation_smoothing`` (optional): the engine's integer-activation recipe migrates activation
  outliers into the weights first (SmoothQuant, Xiao et al. 2023), with migration strength ``alpha``
  on the linears whose input is a normalization's output (attention q/k/v, MLP gate/up): the
  sensitivity prior prices int8 activations there after that migration (planner.format_noise);
- ``activation_blocks`` (optional): per weight format, the features one scale of its int8
  activations covers where the engine quantizes them in blocks, not per token (llama.cpp's CPU
  matmul: Q8_0's 32, Q8_K's 256): an outlier channel then drowns its own block only;
- ``default_for`` / ``default_for_training``: the hardware classes it is the default on.

Support is the union of every target whose match the device satisfies. Adding an engine
is one YAML file (see docs/engines.md).
"""

from __future__ import annotations

import hashlib
import re

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from hwmodels import DEVICE_CLASSES, DeviceSpec
from hwmodels.errors import SUGGEST_MAX_LEN, ProfileError, TierwiseError, UnknownIdError, per_front_end
from hwmodels.ids import ID_EXPECTED, is_id
from hwmodels.loader import _Reader, exists, is_dir, is_file

SCHEMA_VERSION = 1
KINDS = ("serving", "on-device", "training")
PARALLEL_DIMS = ("tp", "pp", "dp", "ep", "cp")
ZERO_STAGES = (0, 1, 2, 3)  # Rajbhandari et al. 2020: none, optimizer states, + gradients, + parameters
# The training attention kernels and optimizers a request can name (planner.training_config prices them;
# an engine profile lists the ones it has): ``fused`` is the engine's own FlashAttention-style kernel,
# ``unfused`` materialises the scores, the others are named fused kernels (planner.kernels_train).
ATTENTION_KERNELS = ("fused", "unfused", "flash2", "flash3", "flash-triton")
OPTIMIZER_NAMES = ("adamw", "adamw-8bit", "adamw-fp8", "sgd")
SPARSITY_PATTERNS = ("dense", "2:4", "unstructured")
MATCH_KEYS = ("class", "vendor", "arch", "id")
PROVENANCES = ("datasheet", "measured", "estimate")


class EngineSupportError(TierwiseError):
    """A request asks an engine for something it does not run on that hardware."""

    code = "engine_unsupported"


@dataclass(frozen=True, slots=True)
class Runtime:
    """Runtime behaviour of an engine that the cost model prices."""

    graph_capture: bool
    chunked_prefill: bool
    chunk_tokens: int
    paged_kv: bool
    kv_block_tokens: int
    continuous_batching: bool
    memory_fraction: float
    context_bytes: float
    tp_comm_overlap: bool = False
    grad_reduce_overlap: bool = False
    # Kernel facts the inference cost model prices (planner.kernels): a fused FlashAttention-style
    # attention kernel, non-GEMM operators fused into neighbouring kernels, host time per forward
    # step beyond the kernels (scheduler, sampling launch), and the compute unit the engine runs on
    # (e.g. the CPU cores of a phone for ExecuTorch's XNNPACK delegate; None = the device's first).
    fused_attention: bool = True
    fused_elementwise: bool = True
    step_overhead_us: float = 0.0
    compute_unit: str | None = None
    # Memory facts of an ahead-of-time compiled program (ExecuTorch): the KV cache is a buffer of the
    # export's maximum sequence length and the memory plan sizes every activation at the upper bound
    # of the token dimension (static_memory_plan); the tensors between operators of a scheme with
    # dynamically quantized (integer) activations are held in this float format, the quantization
    # happening inside each delegated GEMM (quantized_act_storage, None = the scheme's format); a
    # tied LM head whose Linear is quantized is stored as its own copy beside the embedding table
    # (untie_quantized_head).
    static_memory_plan: bool = False
    quantized_act_storage: str | None = None
    untie_quantized_head: bool = False
    # A linear layer with integer weights and float activations runs with its activations quantized
    # to this format per token at run time (XNNPACK's dynamically quantized linear: ExecuTorch exports
    # a plan's 16-bit activations beside int4 / int8 weights as 8da4w / 8da8w), so it computes, and
    # is priced, at that format's rate; None: such a layer dequantizes its weights (W4A16).
    dynamic_act_quant: str | None = None
    # Integer weight formats whose linear layers the engine's exporter writes weight-only for the request's
    # model (export_llama's int8 mode), so dynamic_act_quant does not apply to them. Not a profile field:
    # the request layer sets it from the exporter (planner.request.engine.resolve_engine).
    weight_only_formats: tuple[str, ...] = ()
    # Operator kinds (``embedding``, ``lm_head``) whose weights the engine holds in 16 bit whatever format
    # its scheme gives the linear layers (vLLM, SGLang and transformers quantize Linear layers only:
    # planner.export.rules.ROLE_RULES). The request layer sets it from the exporter
    # (planner.request.engine.kept_float_roles) unless the profile declares it (an engine exported as
    # plain YAML has no exporter rule: LitGPT's bitsandbytes swap keeps [embedding]).
    float_weight_kinds: tuple[str, ...] = ()
    # The peak of the engine's own compute design on the device, per precision, in TOPS, which replaces the
    # device's (an FPGA overlay such as Vitis AI's DPU is one fixed design: the U50's DPUCAHX8H with 2 cores
    # of 3 engines peaks at 7,373 GOPS int8). Empty: the device's peak.
    design_peak_tops: tuple[tuple[str, float], ...] = ()
    # The engine's quantized CPU matmul kernel family (planner.kernels.CPU_INT8_GEMM_BLOCK_OPS),
    # None when the engine's int8 GEMMs on a CPU reach the device's best-shape fraction.
    cpu_int8_gemm: str | None = None
    # Weights kept in a format the GEMM does not compute in are dequantized by a kernel of their own
    # into a 16-bit buffer that the GEMM then reads (DeepSpeed-Inference's int8 path), not inside
    # the GEMM's tiles.
    separate_dequant: bool = False
    # Weight formats whose matmul, for an input of more than one row (a prompt, or a decode batch above
    # one), first dequantizes the whole weight into a 16-bit copy that a 16-bit GEMM reads; a one-row
    # input takes a fused kernel (bitsandbytes' matmul_4bit: MatMul4Bit, else gemv_4bit). The copy is a
    # transient beside the activations, and the pass is priced like ``separate_dequant`` in such phases.
    dequant_copy_formats: tuple[str, ...] = ()
    # The float type that copy comes out in when it is not the compute type: bitsandbytes dequantizes to
    # the dtype the weight was quantized from (its quant_state), so a weight quantized from fp16 and run
    # with bf16 activations is dequantized to fp16 and then cast, two whole copies at once (Lightning
    # Fabric's BitsandbytesPrecision quantizes from fp16). None: the copy is made in the compute type.
    dequant_copy_dtype: str | None = None
    # The host dispatches every operator from eager PyTorch (Transformers' generate, Tierwise's torch
    # execution): each modelled operator pays the host's dispatch on top of its kernel. Engines with
    # graph capture, compiled programs or their own native graph executor (llama.cpp's ggml) do not.
    eager_dispatch: bool = False
    # The engine can run its operators from eager PyTorch, one kernel launch at a time (vLLM's
    # --enforce-eager, SGLang's --disable-cuda-graph, Transformers' default generate, DeepSpeed-Inference
    # without enable_cuda_graph, the PyTorch training engines). False for engines that only run a compiled
    # or captured program of their own (MLC LLM, TVM, llama.cpp's ggml graphs, ExecuTorch, SambaFlow,
    # Vitis AI): ``--runtime eager`` / ``runtime: eager`` is refused for them.
    eager_mode: bool = True
    # In eager mode the engine's model code calls its own fused kernels (vLLM, SGLang): one GEMM per merged
    # projection (QKV, gate-up), a fused residual add + RMSNorm, one rotary kernel, a cache write and one
    # attention kernel, one gated-activation kernel and a fused MoE path; the host dispatches those
    # (planner.kernels.fused_eager_layer_kernels), not the Transformers modules' ATen kernels.
    eager_fused_ops: bool = False
    # False for an engine that only runs eager PyTorch, with no CUDA-graph or compiled mode to choose
    # (Tierwise's own torch execution): ``--runtime graph`` is refused for it.
    graph_mode: bool = True
    # Tensor parallelism shards whole key/value head groups (Megatron-Core: num_query_groups must divide by
    # the TP size), so TP must divide the model's KV heads; engines that replicate KV heads do not need it.
    tp_divides_kv_heads: bool = False
    # Expert parallelism splits the tensor-parallel group (SGLang: an MoE rank's expert group is
    # tp_rank // (tp_size // ep_size)), so ep must divide tp; engines whose expert-parallel group spans
    # data-parallel replicas (vLLM's --enable-expert-parallel uses tp × dp ranks) do not need it.
    ep_divides_tp: bool = False
    # The engine's own name for memory_fraction (SGLang's --mem-fraction-static, vLLM's
    # --gpu-memory-utilization), named when its KV pool is what a configuration does not fit; None = unnamed.
    memory_fraction_setting: str | None = None
    # Formats the engine stores as tensor types of its own (the profile's ``storage``): per format,
    # its type and then the types a tensor whose rows are no whole number of blocks falls back to,
    # each as (type, values per block, bytes per block). Formats not listed: the catalog's price.
    storage: tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...] = ()
    # SmoothQuant's migration strength in the engine's integer-activation recipe (the profile's
    # ``activation_smoothing.alpha``), None when its int8 activations are quantized as they come.
    smoothing_alpha: float | None = None
    # Features one activation scale covers, per weight format, where the engine quantizes int8
    # activations in blocks rather than per token (the profile's ``activation_blocks``; llama.cpp's CPU
    # matmul quantizes them to the weight type's vec_dot_type, Q8_0 / Q8_K).
    activation_blocks: tuple[tuple[str, int], ...] = ()

    @property
    def runtimes(self) -> tuple[str, ...]:
        """The launch modes (``--runtime`` / ``runtime``) the engine has: ``graph`` unless it only runs
        eager PyTorch (``graph_mode: false``), ``eager`` when it can dispatch operators from eager PyTorch."""
        eager = ("eager",) if self.eager_mode or self.eager_dispatch else ()
        return (("graph",) if self.graph_mode else ()) + eager

    @property
    def default_runtime(self) -> str:
        """The cost model's launch mode for this engine (``--runtime`` / ``runtime`` overrides it):
        ``eager`` for an engine that dispatches each operator from eager PyTorch, else ``graph``."""
        return "eager" if self.eager_dispatch else "graph"


@dataclass(frozen=True, slots=True)
class Scheme:
    """Weight formats that run with each of the given activation formats."""

    weights: tuple[str, ...]
    activations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Target:
    match: Mapping[str, tuple[str, ...]]
    schemes: tuple[Scheme, ...]
    kv: tuple[str, ...]
    sparsity: tuple[str, ...]
    sources: tuple[str, ...]
    runtime: Mapping[str, Any] = field(default_factory=dict)
    exclusive: tuple[str, ...] = ()
    #: Weight formats its convolutions take (empty: every weight format of its schemes).
    conv: tuple[str, ...] = ()

    def matches(self, device: DeviceSpec) -> bool:
        have = {"class": device.device_class, "vendor": device.vendor, "arch": device.arch, "id": device.id}
        return all(have[key] in values for key, values in self.match.items())


@dataclass(frozen=True, slots=True)
class Support:
    """What one engine runs on one device: the union of its matching targets."""

    engine: str
    device: str
    schemes: tuple[Scheme, ...]
    kv: tuple[str, ...]
    sparsity: tuple[str, ...]
    parallel: tuple[str, ...]
    runtime: Runtime
    #: ZeRO stages its data-parallel sharding offers (llm-foundry's FSDP1: NO_SHARD, SHARD_GRAD_OP, FULL_SHARD).
    zero: tuple[int, ...] = ZERO_STAGES
    #: Training attention kernels and optimizers it has (every one the cost model knows unless listed).
    attention: tuple[str, ...] = ATTENTION_KERNELS
    optimizers: tuple[str, ...] = OPTIMIZER_NAMES
    #: Weight formats the engine applies to a whole model at once (bitsandbytes 4-bit
    #: quantizes every Linear layer alike): a plan uses one only beside 16-bit groups.
    exclusive: tuple[str, ...] = ()
    #: Weight formats its convolutions take, where fewer than its schemes' (ExecuTorch's 4-bit
    #: configs and bitsandbytes convert Linear layers only); empty: every one.
    conv: tuple[str, ...] = ()
    #: Whether it runs low-rank factorised layers (two matrices of rank r in place of one).
    low_rank: bool = False
    #: The profile file it was read from, as given (empty for the catalog; ``profile_file``), and
    #: the sha256 of its text.
    profile: str = ""
    content_hash: str = ""
    #: The engine's kind (``inference``, ``training``, ``on-device``) and exporter, from its profile
    #: (so a profile file whose id the catalog lacks needs no catalog lookup).
    kind: str = ""
    exporter: str = ""

    @property
    def profile_file(self) -> str:
        return self.profile or f"profiles/engines/{self.engine}.yaml"

    @property
    def weights(self) -> tuple[str, ...]:
        return _unique(w for s in self.schemes for w in s.weights)

    @property
    def activations(self) -> tuple[str, ...]:
        return _unique(a for s in self.schemes for a in s.activations)

    def activations_for(self, weights: str) -> tuple[str, ...]:
        return _unique(a for s in self.schemes if weights in s.weights for a in s.activations)

    def runs(self, weights: str, activations: str) -> bool:
        return any(weights in s.weights and activations in s.activations for s in self.schemes)


@dataclass(frozen=True, slots=True)
class EngineSpec:
    id: str
    name: str
    kind: str
    version: str
    exporter: str
    parallel: tuple[str, ...]
    runtime: Runtime
    targets: tuple[Target, ...]
    default_for: tuple[str, ...] = ()
    default_for_training: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    provenance: str = "estimate"
    #: Model families (``planner.archspec.FAMILIES``) the engine runs: vLLM runs no CNN.
    families: tuple[str, ...] = ()
    #: ZeRO stages (0-3) its data-parallel sharding offers; every stage unless the profile lists them.
    zero: tuple[int, ...] = ZERO_STAGES
    #: Training attention kernels (``ATTENTION_KERNELS``) and optimizers (``OPTIMIZER_NAMES``) it has;
    #: every one unless the profile lists them.
    attention: tuple[str, ...] = ATTENTION_KERNELS
    optimizers: tuple[str, ...] = OPTIMIZER_NAMES
    #: Whether it runs low-rank factorised layers (``low_rank: true`` in the profile).
    low_rank: bool = False
    #: Hugging Face ``model_type``s it builds (``models.types``); empty: every model of its families.
    model_types: tuple[str, ...] = ()
    #: Where the profile was read from, as a user would find it: the path as given for a profile
    #: file; empty for the catalog (``profiles/engines/{id}.yaml``).
    profile: str = ""
    #: sha256 of the profile's text (empty for a profile given as a dict).
    content_hash: str = ""

    @property
    def profile_file(self) -> str:
        return self.profile or f"profiles/engines/{self.id}.yaml"

    def runs_family(self, family: str) -> bool:
        return family in self.families

    def builds(self, model_type: str | None) -> bool:
        """Whether it builds a model of Hugging Face type ``model_type`` (unknown type: assumed yes)."""
        return not self.model_types or not model_type or model_type in self.model_types

    def support(self, device: DeviceSpec) -> Support | None:
        """What this engine runs on ``device``; ``None`` when it does not run there at all."""
        hits = [t for t in self.targets if t.matches(device)]
        if not hits:
            return None
        runtime = self.runtime
        for t in hits:
            if t.runtime:
                runtime = replace(runtime, **t.runtime)
        return Support(
            engine=self.id,
            device=device.id,
            schemes=_unique(s for t in hits for s in t.schemes),
            kv=_unique(k for t in hits for k in t.kv),
            sparsity=_unique(s for t in hits for s in t.sparsity),
            parallel=self.parallel,
            runtime=runtime,
            zero=self.zero,
            attention=self.attention,
            optimizers=self.optimizers,
            exclusive=_unique(x for t in hits for x in t.exclusive),
            # a restriction holds only where every matching target states one
            conv=_unique(c for t in hits for c in t.conv) if all(t.conv for t in hits) else (),
            low_rank=self.low_rank,
            profile=self.profile,
            content_hash=self.content_hash,
            kind=self.kind,
            exporter=self.exporter,
        )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# ---------------------------------------------------------------- loading


def _engines_dir() -> Any:
    return resources.files("profiles") / "engines"


def list_engines() -> list[str]:
    """Ids of the engine profiles shipped with Tierwise, sorted."""
    return sorted(p.name[:-5] for p in _engines_dir().iterdir() if p.name.endswith(".yaml"))


def _names(reader: _Reader, key: str, allowed: Iterable[str] | None, *, empty_ok: bool = False) -> tuple[str, ...]:
    value = reader.raw(key) if reader.has(key) else None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or (not value and not empty_ok) or not all(isinstance(v, str) and v for v in value):
        from planner.formats import base60_hint

        hint = next((base60_hint(v) for v in value if base60_hint(v)), "") if isinstance(value, list) else ""
        raise reader.error(key, "a list of names" + ("" if empty_ok else " (at least one)") + hint, value)
    if allowed is not None:
        allowed = tuple(allowed)
        for v in value:
            if v not in allowed:
                raise reader.error(key, "names from: " + ", ".join(allowed), v)
    return tuple(value)


def _formats(reader: _Reader, key: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    from planner.formats import FormatError, get_format

    names = _names(reader, key, None, empty_ok=empty_ok)
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise reader.error(key, "each format once", repeated)
    for name in names:
        try:
            if get_format(name).name != name:
                raise FormatError(f"{name!r} is an alias of {get_format(name).name!r}; use the canonical name")
        except (FormatError, ValueError) as exc:
            raise reader.error(key, f"Tierwise format names ({exc})", name) from None
    return names


_RUNTIME_FLAGS = ("graph_capture", "chunked_prefill", "paged_kv", "continuous_batching", "tp_comm_overlap",
                  "grad_reduce_overlap", "fused_attention", "fused_elementwise", "static_memory_plan",
                  "untie_quantized_head", "separate_dequant", "eager_dispatch", "eager_mode",
                  "eager_fused_ops", "graph_mode", "tp_divides_kv_heads", "ep_divides_tp")
_OPTIONAL_FLAGS = {"tp_comm_overlap": False, "grad_reduce_overlap": False, "fused_attention": True, "fused_elementwise": True,
                   "static_memory_plan": False, "untie_quantized_head": False, "separate_dequant": False,
                   "eager_dispatch": False, "eager_mode": True, "eager_fused_ops": False, "graph_mode": True,
                   "tp_divides_kv_heads": False, "ep_divides_tp": False}


def _runtime_fields(reader: _Reader, *, partial: bool) -> dict[str, Any]:
    reader.allow(*_RUNTIME_FLAGS, "chunk_tokens", "kv_block_tokens", "memory_fraction", "context_gib", "source",
                 "provenance", "notes", "step_overhead_us", "compute_unit", "quantized_act_storage", "cpu_int8_gemm",
                 "memory_fraction_setting", "dynamic_act_quant", "design_peak_tops", "dequant_copy_formats",
                 "dequant_copy_dtype", "float_weight_kinds")
    out: dict[str, Any] = {}
    for key in _RUNTIME_FLAGS:
        if reader.has(key) or not partial:
            out[key] = reader.boolean(key, default=_OPTIONAL_FLAGS.get(key))
    if reader.has("step_overhead_us") or not partial:
        out["step_overhead_us"] = reader.number("step_overhead_us", positive=False, default=0.0)
    if reader.has("compute_unit"):
        out["compute_unit"] = reader.text("compute_unit")
    if reader.has("memory_fraction_setting"):
        out["memory_fraction_setting"] = reader.text("memory_fraction_setting")
    if reader.has("quantized_act_storage"):
        out["quantized_act_storage"] = reader.text("quantized_act_storage", choices=("fp32", "fp16", "bf16"))
    if reader.has("dynamic_act_quant"):
        out["dynamic_act_quant"] = reader.text("dynamic_act_quant", choices=("int8",))
    if reader.has("design_peak_tops"):
        from hwmodels.precision import PRECISIONS

        peaks = reader.sub("design_peak_tops")
        if not isinstance(peaks.data, Mapping) or not peaks.data:
            raise reader.error("design_peak_tops", "a mapping of precision to TOPS, e.g. {int8: 7.373}", peaks.data)
        peaks.allow(*PRECISIONS)
        out["design_peak_tops"] = tuple((k, peaks.number(k)) for k in PRECISIONS if peaks.has(k))
    if reader.has("cpu_int8_gemm"):
        from planner.kernels import CPU_INT8_GEMM_BLOCK_OPS

        value = reader.raw("cpu_int8_gemm")
        if value not in CPU_INT8_GEMM_BLOCK_OPS:
            raise reader.error("cpu_int8_gemm", "one of " + ", ".join(sorted(CPU_INT8_GEMM_BLOCK_OPS)), value)
        out["cpu_int8_gemm"] = value
    if reader.has("dequant_copy_formats"):
        out["dequant_copy_formats"] = _formats(reader, "dequant_copy_formats", empty_ok=True)
        from planner.formats import get_format

        wide = next((f for f in out["dequant_copy_formats"] if get_format(f).kind == "float"), None)
        if wide is not None:
            raise reader.error("dequant_copy_formats", "quantized weight formats (a float format needs no dequantizing)", wide)
    if reader.has("float_weight_kinds"):
        out["float_weight_kinds"] = _names(reader, "float_weight_kinds", ("embedding", "lm_head"), empty_ok=True)
    if reader.has("dequant_copy_dtype"):
        if not partial and not out.get("dequant_copy_formats"):  # a target may type the profile's formats
            raise reader.error("dequant_copy_dtype", "dequant_copy_formats beside it naming the formats whose copy it "
                               "types (alone it changes nothing)", reader.raw("dequant_copy_dtype"))
        from planner.formats import DEQUANT_COPY_DTYPES

        out["dequant_copy_dtype"] = reader.text("dequant_copy_dtype", choices=DEQUANT_COPY_DTYPES)
    for key in ("chunk_tokens", "kv_block_tokens"):
        if reader.has(key) or not partial:
            out[key] = reader.integer(key, minimum=0)
    if reader.has("memory_fraction") or not partial:
        out["memory_fraction"] = reader.number("memory_fraction", at_most=1.0)
    if reader.has("context_gib") or not partial:
        out["context_bytes"] = reader.number("context_gib", positive=False) * 2**30
    if out.get("chunked_prefill") and out.get("chunk_tokens") == 0:
        raise reader.error("chunk_tokens", "a positive token count when chunked_prefill is true", 0)
    if out.get("paged_kv") and out.get("kv_block_tokens") == 0:
        raise reader.error("kv_block_tokens", "a positive token count when paged_kv is true", 0)
    return out


def _target(reader: _Reader, sources: Mapping[str, str]) -> Target:
    reader.allow("match", "schemes", "kv", "sparsity", "source", "runtime", "exclusive", "conv", "notes")
    m = reader.sub("match")
    if not isinstance(m.data, Mapping) or not m.data:
        raise reader.error("match", "a mapping of class / vendor / arch / id to a name or list of names", m.data)
    m.allow(*MATCH_KEYS)
    match = {k: _names(m, k, DEVICE_CLASSES if k == "class" else None) for k in MATCH_KEYS if m.has(k)}
    schemes = []
    for s in reader.items("schemes"):
        s.allow("weights", "activations", "notes")
        schemes.append(Scheme(weights=_formats(s, "weights"), activations=_formats(s, "activations")))
    runtime = _runtime_fields(reader.sub("runtime"), partial=True) if reader.has("runtime") else {}
    exclusive = _formats(reader, "exclusive", empty_ok=True) if reader.has("exclusive") else ()
    for name in exclusive:
        if not any(name in s.weights for s in schemes):
            raise reader.error("exclusive", "weight formats of this target's schemes", name)
    conv = _formats(reader, "conv") if reader.has("conv") else ()
    for name in conv:
        if not any(name in s.weights for s in schemes):
            raise reader.error("conv", "weight formats of this target's schemes", name)
    return Target(
        match=match,
        schemes=tuple(schemes),
        kv=_formats(reader, "kv", empty_ok=True),
        sparsity=_names(reader, "sparsity", SPARSITY_PATTERNS),
        sources=reader.sources("source", sources),
        runtime=runtime,
        exclusive=exclusive,
        conv=conv,
    )


def _targets(top: _Reader, sources: Mapping[str, str], *, kind: str, families: Sequence[str]) -> tuple[Target, ...]:
    """The profile's targets. A serving engine that runs decoders keeps a KV cache on every target it
    lists: ``kv: []`` there was accepted, and its estimates then priced a bf16 cache the engine "does not run"."""
    out = []
    for t in top.items("targets"):
        target = _target(t, sources)
        if kind != "training" and not target.kv and set(families) & {"decoder", "encoder_decoder"}:
            raise t.error("kv", "at least one KV-cache format: the engine runs decoders, which keep a KV cache", [])
        out.append(target)
    return tuple(out)


def _parse(data: Any, origin: str) -> EngineSpec:
    from planner.export import export_formats

    top = _Reader(origin, data, "")
    top.allow("schema_version", "id", "name", "kind", "version", "exporter", "default_for", "default_for_training",
              "sources", "parallel", "runtime", "targets", "notes", "models", "zero",
              "attention", "optimizers", "low_rank", "storage", "activation_smoothing", "activation_blocks")
    if top.integer("schema_version", minimum=1) != SCHEMA_VERSION:
        raise top.error("schema_version", str(SCHEMA_VERSION), top.data["schema_version"])
    raw_sources = top.raw("sources")
    if not isinstance(raw_sources, Mapping) or not raw_sources or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in raw_sources.items()):
        raise top.error("sources", "a non-empty mapping of source key -> citation text", raw_sources)
    sources = dict(raw_sources)
    rt = top.sub("runtime")
    runtime = Runtime(**_runtime_fields(rt, partial=False))
    rt.sources("source", sources)
    if top.has("storage"):
        runtime = replace(runtime, storage=_storage(top.sub("storage"), sources))
    for key in ("activation_smoothing", "activation_blocks"):
        if top.has(key) and not isinstance(top.raw(key), Mapping):
            raise top.error(key, "a mapping (leave the key out for none)", top.raw(key))
    if top.has("activation_smoothing"):
        sm = top.sub("activation_smoothing")
        sm.allow("alpha", "source", "notes")
        sm.sources("source", sources)
        alpha = sm.raw("alpha")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
            raise sm.error("alpha", "a migration strength in (0, 1]", alpha)
        runtime = replace(runtime, smoothing_alpha=float(alpha))
    if top.has("activation_blocks"):
        runtime = replace(runtime, activation_blocks=_activation_blocks(top.sub("activation_blocks"), sources))
    provenance = rt.text("provenance", choices=PROVENANCES, default="datasheet")
    exporter = top.text("exporter", choices=export_formats())
    engine_id = top.text("id")
    if not is_id(engine_id):
        raise top.error("id", ID_EXPECTED, engine_id)
    families, model_types = _families(top, sources)
    return EngineSpec(
        id=engine_id,
        name=top.text("name"),
        kind=top.text("kind", choices=KINDS),
        version=str(top.raw("version")),
        exporter=exporter,
        parallel=_names(top, "parallel", PARALLEL_DIMS, empty_ok=True),
        runtime=runtime,
        targets=_targets(top, sources, kind=top.text("kind", choices=KINDS), families=families),
        default_for=_names(top, "default_for", DEVICE_CLASSES, empty_ok=True) if top.has("default_for") else (),
        default_for_training=(_names(top, "default_for_training", DEVICE_CLASSES, empty_ok=True)
                              if top.has("default_for_training") else ()),
        sources=sources,
        provenance=provenance,
        families=families,
        zero=_zero_stages(top),
        attention=_training_names(top, "attention"),
        optimizers=_training_names(top, "optimizers"),
        low_rank=top.boolean("low_rank", default=False),
        model_types=model_types,
    )


def _check_canonical_format(reader: _Reader, fmt: Any, expected: str) -> None:
    """A key of ``reader`` that must be a Tierwise format by its canonical name (``int4-g32``, not an alias)."""
    from planner.formats import FormatError, get_format

    try:
        canonical = isinstance(fmt, str) and get_format(fmt).name == fmt
    except (FormatError, ValueError):
        canonical = False
    if not canonical:
        raise reader.error(str(fmt), expected, fmt)


def activation_blocks_text(blocks: Iterable[tuple[str, int]], unit: str = " values") -> str:
    """``32 values with int4-g32, nf4 weights; 256 values with int4-g128 weights`` ('' for none)."""
    by: dict[int, list[str]] = {}
    for fmt, block in blocks:
        by.setdefault(block, []).append(fmt)
    return "; ".join(f"{b}{unit} with {', '.join(f)} weights" for b, f in sorted(by.items()))


def _activation_blocks(reader: _Reader, sources: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    """``activation_blocks: {formats: {WEIGHT FORMAT: VALUES}, source}``: per weight format, the
    features one scale of the int8 activations it computes with covers."""
    reader.allow("formats", "source", "notes")
    reader.sources("source", sources)
    f = reader.sub("formats")
    if not isinstance(f.data, Mapping) or not f.data:
        raise reader.error("formats", "a mapping of weight format -> values per activation scale", f.data)
    out = []
    for fmt in f.data:
        _check_canonical_format(f, fmt, "a Tierwise weight format by its canonical name (docs/formats.md)")
        block = f.raw(fmt)
        if isinstance(block, bool) or not isinstance(block, int) or block < 8 or block > 4096 or block & (block - 1):
            raise f.error(str(fmt), "a whole number, a power of two from 8 to 4096 (values per activation scale)",
                          repr(block) if isinstance(block, float) else block)
        out.append((fmt, block))
    return tuple(out)


def _storage(reader: _Reader, sources: Mapping[str, str]) -> tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...]:
    """``storage: {types: {TYPE: {values: N, bytes: B}}, formats: {FORMAT: [TYPE, FALLBACK...]}, source}``:
    the engine's own tensor types (N values stored in B bytes per block) and, per Tierwise format, the
    type its exporter writes it as, then the types a tensor whose rows are no whole number of that
    type's blocks falls back to."""
    reader.allow("types", "formats", "source", "notes")
    reader.sources("source", sources)
    t = reader.sub("types")
    if not t.data:
        raise reader.error("types", "a mapping of type name -> {values, bytes}", t.data)
    types: dict[str, tuple[int, int]] = {}
    for name in t.data:
        if not isinstance(name, str) or not name.strip():
            raise t.error(str(name), "a type name", name)
        b = t.sub(name)
        b.allow("values", "bytes", "notes")
        types[name] = (b.integer("values", minimum=1), b.integer("bytes", minimum=1))
    f = reader.sub("formats")
    if not f.data:
        raise reader.error("formats", "a mapping of Tierwise format -> [type, fallback types...]", f.data)
    out = []
    for fmt in f.data:
        _check_canonical_format(f, fmt, "a Tierwise format name (the canonical one)")
        chain = _names(f, fmt, types)
        out.append((fmt, tuple((n, *types[n]) for n in chain)))
    return tuple(out)


def _zero_stages(top: _Reader) -> tuple[int, ...]:
    """``zero: [0, 2, 3]``: the ZeRO stages the engine's sharding offers (optional; all when absent)."""
    if not top.has("zero"):
        return ZERO_STAGES
    raw = top.raw("zero")
    if (not isinstance(raw, list) or not raw or any(isinstance(z, bool) or z not in ZERO_STAGES for z in raw)
            or len(set(raw)) != len(raw)):
        raise top.error("zero", "a list of distinct ZeRO stages from 0, 1, 2, 3", raw)
    return tuple(sorted(raw))


def _training_names(top: _Reader, key: str) -> tuple[str, ...]:
    """``attention: [...]`` / ``optimizers: [...]``: the training attention kernels / optimizers the
    engine has (optional: all the cost model knows when absent)."""
    known = ATTENTION_KERNELS if key == "attention" else OPTIMIZER_NAMES
    return _names(top, key, known) if top.has(key) else known


def _families(top: _Reader, sources: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``models: {families: [...], types: [...], source: [...]}``: the model families the engine runs
    and (optional) the Hugging Face model types it builds."""
    from planner.archspec import FAMILIES

    m = top.sub("models")
    if not isinstance(m.data, Mapping):
        raise top.error("models", "a mapping with families: [names from " + ", ".join(FAMILIES) + "] and source",
                        m.data)
    m.allow("families", "types", "source", "notes")
    families = _names(m, "families", FAMILIES)
    types: tuple[str, ...] = ()
    if m.has("types"):
        raw = m.raw("types")
        if (not isinstance(raw, list) or not raw or not all(isinstance(t, str) and re.fullmatch(r"[a-z0-9_.-]+", t)
                                                            for t in raw) or len(set(raw)) != len(raw)):
            raise m.error("types", "a list of distinct Hugging Face model_type names (lower case, e.g. llama, qwen2)",
                          raw)
        types = tuple(raw)
    m.sources("source", sources)
    return families, types


def load_engine_from_dict(data: Mapping[str, Any], origin: str = "<dict>") -> EngineSpec:
    """Validate an engine profile given as a mapping (as in the YAML file)."""
    if not isinstance(data, Mapping):
        raise ProfileError(origin, "(top level)", "a mapping of engine profile fields", data)
    return _parse(data, origin)


@lru_cache(maxsize=None)
def _load_catalog(engine_id: str) -> EngineSpec:
    path = _engines_dir() / f"{engine_id}.yaml"
    text = path.read_text(encoding="utf-8")
    # The C loader: the catalog is trusted package data, read on every command's start-up.
    spec = _parse(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)),  # noqa: S506
                  f"{engine_id}.yaml")
    spec = replace(spec, content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest())
    if spec.id != engine_id:
        raise ProfileError(f"{engine_id}.yaml", "id", f"the file name's stem {engine_id!r}", spec.id)
    return spec


def load_engine(ref: str | EngineSpec) -> EngineSpec:
    """An engine by catalog id (``vllm``), path to a YAML file, or an :class:`EngineSpec`."""
    if isinstance(ref, EngineSpec):
        return ref
    if not isinstance(ref, str) or not ref.strip():
        raise TierwiseError(f"{{@engine}} must be an engine id such as 'vllm'; got {ref!r}", field="engine")
    known = list_engines()
    if ref in known:
        return _load_catalog(ref)
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        return _load_file(ref)
    import difflib

    close = difflib.get_close_matches(ref, known, n=3, cutoff=0.5) if len(ref) <= SUGGEST_MAX_LEN else []
    raise UnknownIdError(ref, "engine", close, known=known)


def _load_file(ref: str) -> EngineSpec:
    """An engine profile file, every error led by the flag or field that named it (``--engine
    ./my.yaml: field 'runtime.context_gb' …``)."""
    from hwmodels.safeyaml import UnsafeYamlError, load_untrusted

    path = Path(ref)
    if is_dir(path):
        raise TierwiseError(f"{{@engine}} {per_front_end(ref, ref)}: a directory, not an engine profile file", field="engine")
    if not is_file(path):
        if exists(path):
            raise TierwiseError(f"{{@engine}} {per_front_end(ref, ref)}: not a regular file", field="engine")
        raise TierwiseError(f"{{@engine}} {per_front_end(ref, ref)}: no such file (an engine is a catalog id such as "
                            "'vllm' or a path to a profile file)", field="engine")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(ref, "<document>", "UTF-8 text", f"undecodable bytes ({exc.reason})").named("engine") from None
    except OSError as exc:
        raise TierwiseError(f"{{@engine}} {per_front_end(ref, ref)}: cannot read the file ({exc.strerror or exc})",
                            field="engine") from None
    try:
        data = load_untrusted(text, field="engine")
    except UnsafeYamlError as exc:
        raise TierwiseError(f"{{@engine}} {per_front_end(ref, ref)}: {exc.reason}", field="engine",
                            code="invalid_yaml") from None
    try:
        spec = load_engine_from_dict(data, ref)
    except ProfileError as exc:
        raise exc.named("engine") from None
    return replace(spec, profile=ref, content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest())


def profile_ref(ref: str) -> str:
    """Where an engine's profile is read from, as a user would find it: ``profiles/engines/vllm.yaml`` for a
    catalog id, the path as given for a profile file."""
    return ref if ref.endswith((".yaml", ".yml")) or "/" in ref else f"profiles/engines/{ref}.yaml"


# ---------------------------------------------------------------- queries


#: When the class default does not run a request's model family, the first of these (then the
#: rest, alphabetically) that runs on the device and runs that family: PyTorch eager first
#: (hf-transformers serving, fsdp training), as it runs every family wherever PyTorch runs.
FALLBACK_ORDER = ("hf-transformers", "fsdp", "executorch", "tvm", "trtllm", "llamacpp", "vllm")


def _fallback_order(engines: list[EngineSpec]) -> list[EngineSpec]:
    rank = {e: i for i, e in enumerate(FALLBACK_ORDER)}
    return sorted(engines, key=lambda e: (rank.get(e.id, len(rank)), e.id))


def hardware_for(engine: str | EngineSpec) -> list[str]:
    """Ids of the catalog hardware ``engine`` runs on, sorted."""
    from hwmodels import list_devices, load_device

    spec = load_engine(engine)
    return [d for d in sorted(list_devices()) if spec.support(load_device(d)) is not None]


def ep_runs(sup: Support, tp: int, ep: int) -> bool:
    """Whether the engine runs expert parallelism of degree ``ep`` beside tensor parallelism of
    degree ``tp`` (``runtime.ep_divides_tp``: its expert-parallel ranks split the TP group)."""
    return ep <= 1 or not sup.runtime.ep_divides_tp or tp % ep == 0


def ep_refusal(sup: Support, tp: int, ep: int) -> str:
    """Why ``ep`` does not run beside ``tp`` on an engine whose expert parallelism splits the
    tensor-parallel group, and the layouts that do (``{@field}`` tokens)."""
    from hwmodels.errors import per_front_end

    lcm = math.lcm(tp, ep)
    runs = per_front_end(f"run --tp {lcm} --ep {ep}, or --ep 1", f'send "tp": {lcm}, "ep": {ep}, or "ep": 1')
    return (f"{sup.engine} on {sup.device} splits the tensor-parallel group into expert-parallel ranks, so {{@ep}} must "
            f"divide {{@tp}}; got {{@ep}} {ep} with {{@tp}} {tp} ({runs})")


def tp_allowed(engine: str | EngineSpec | None, arch: Any, tp: int) -> bool:
    """Whether ``engine`` can shard ``arch`` over ``tp`` tensor-parallel ranks, as far as its KV heads go
    (``runtime.tp_divides_kv_heads``); no engine, or one without the rule: yes."""
    if tp <= 1 or engine is None:
        return True
    spec = load_engine(engine)
    kv = getattr(arch, "num_kv_heads", 0) or getattr(arch, "num_heads", 0)
    return not spec.runtime.tp_divides_kv_heads or not kv or kv % tp == 0


def engines_for(device: DeviceSpec, *, training: bool, family: str | None = None,
                model_type: str | None = None) -> list[str]:
    """Ids of the engines of the request's kind (training or not) that run on ``device`` (and
    run ``family`` and build ``model_type``, when given), in the fallback order."""
    engines = [load_engine(e) for e in list_engines()]
    return [e.id for e in _fallback_order(engines)
            if (e.kind == "training") == training and e.support(device) is not None
            and (family is None or e.runs_family(family)) and e.builds(model_type)]


_INLINE_LIST = re.compile(r"^(default_for(?:_training)?):\s*\[([^\]]*)\]", re.MULTILINE)


@lru_cache(maxsize=None)
def _default_candidates(key: str, device_class: str) -> tuple[str, ...]:
    """Catalog engines that may be ``key``'s default for ``device_class``, in catalog order,
    found by reading each file's ``key:`` line instead of validating every profile (that is
    most of a cold ``tierwise estimate``). A file that does not write ``key`` as one inline
    list stays a candidate; the caller decides on the parsed profile, so the answer is the
    same as parsing them all."""
    out = []
    for engine_id in list_engines():
        text = (_engines_dir() / f"{engine_id}.yaml").read_text()
        lines = {m.group(1): m.group(2) for m in _INLINE_LIST.finditer(text)}
        if key not in lines and re.search(rf"^{key}:", text, re.MULTILINE) is None:
            continue  # no such key: not a default for any class
        if key not in lines or device_class in (c.strip() for c in lines[key].split(",")):
            out.append(engine_id)
    return tuple(out)


def default_engine(device: DeviceSpec, *, training: bool = False, kind: str | None = None) -> EngineSpec:
    """The documented default engine for a device's class and a model family (docs/engines.md).

    Serving: GPU and TPU → vllm, phone → executorch, laptop / CPU / edge → llamacpp, RDU →
    sambaflow, FPGA → vitis-ai. Training: GPU → megatron-core, otherwise fsdp. ``kind`` is the
    model family (``planner.archspec.FAMILIES``; ``None``: any): when the class default does
    not run it, the first engine of :data:`FALLBACK_ORDER` (then the rest, alphabetically) that
    runs on the device and runs that family (a CNN on a GPU → hf-transformers, PyTorch eager);
    none → an :class:`EngineSupportError` naming ``engine``.
    """
    key = "default_for_training" if training else "default_for"
    what = "training" if training else "serving"
    class_default = None
    for engine_id in _default_candidates(key, device.device_class):
        engine = load_engine(engine_id)
        if device.device_class in getattr(engine, key) and engine.support(device) is not None:
            class_default = engine
            break
    if class_default is None and training and load_engine("fsdp").support(device) is not None:
        class_default = load_engine("fsdp")
    if class_default is not None and (kind is None or class_default.runs_family(kind)):
        return class_default
    if class_default is None:
        runs_here = engines_for(device, training=training)
        if not runs_here:  # no engine to pass: the hardware is what has to change
            raise EngineSupportError(
                f"no {what} engine runs on {device.id} (class {device.device_class}); pass other {{@hardware}} "
                "({!engines} shows where each engine runs)", field="hardware")
        raise EngineSupportError(
            f"no default {what} engine for {device.id} (class {device.device_class}); "
            f"engines that run on it: {', '.join(runs_here)} — pass {{@engine}}", field="engine")
    fits = engines_for(device, training=training, family=kind)
    if fits:
        return load_engine(fits[0])
    raise EngineSupportError(
        f"no {what} engine runs {kind} models on {device.id} (class {device.device_class}): "
        f"{class_default.id}, its default, runs {', '.join(class_default.families)}; other {what} engines on it: "
        f"{', '.join(e for e in engines_for(device, training=training) if e != class_default.id) or 'none'} — pass "
        f"another {{@hardware}} or "
        f"an {{@engine}} profile that runs {kind} models", field="engine")


def support(engine: str | EngineSpec, device: DeviceSpec, *, training: bool | None = None,
            field: str = "engine", family: str | None = None) -> Support:
    """What ``engine`` runs on ``device``; an :class:`EngineSupportError` naming ``field`` if nothing
    (``engine`` in a request that names one; ``hardware`` where the engine is fixed and the caller
    chose the device, as ``engines show ID --hardware``). ``training`` (the request's kind, when
    there is one) limits the engines the error suggests to those of that kind: an inference
    request is not told to use FSDP; ``family`` (the request's model's) to those that run it: a
    ResNet-50 request is not told to use vLLM."""
    spec = load_engine(engine)
    found = spec.support(device)
    if found is None:
        if training is None:
            where, what = [e for e in list_engines() if load_engine(e).support(device) is not None], "engines"
        else:
            where, what = engines_for(device, training=training, family=family), "training engines" if training else "serving engines"
            if family is not None:
                what += f" for {family} models"
        on = f"does not run on {device.id} ({device.device_class}, {device.vendor}{', ' + device.arch if device.arch else ''})"
        if field == "hardware":  # the device was the choice: say where the engine runs, then what runs there
            head = f"{spec.name} {on}; it runs on: {', '.join(hardware_for(spec)) or 'none'}"
            what = f"{what} that run on {device.id}"
        else:
            # the field by its token: REST reads 'engine', the CLI --engine ("engines that do"
            # below would otherwise pass for naming it)
            head, what = f"{{@{field}}}: {spec.name} ({spec.id}) {on}", f"{what} that do"
        raise EngineSupportError(f"{head}; {what}: {', '.join(where) or 'none'}", field=field)
    return found


def low_rank_refusal(sup: Support) -> str:
    """Why ``sup`` cannot run a low-rank factorised layer, and which engines can."""
    from hwmodels import load_device

    try:
        device = load_device(sup.device)
    except TierwiseError:  # hardware from a file outside the catalog: name the engines that do anywhere
        device = None
    can = [e for e in list_engines() if load_engine(e).low_rank
           and (device is None or load_engine(e).support(device) is not None)]
    there = "" if device is None else f" on {sup.device}"
    return (f"{sup.engine} on {sup.device} does not run low-rank factorised layers: loading two rank-r matrices "
            f"in place of one weight takes model code it does not have; engines that do{there}: "
            f"{', '.join(can) or 'none'}")


def _same_family(name: str, runs: Sequence[str]) -> str:
    """' (its int8 format: int8-g32)' when the engine runs another format of ``name``'s family
    (llama.cpp's 8-bit KV cache is q8_0 = int8-g32, not per-head int8), else ''."""
    from planner.formats import get_format

    try:
        family = get_format(name).family
    except ValueError:
        return ""
    same = [r for r in runs if get_format(r).family == family]
    return f" (its {family} format{'s' if len(same) > 1 else ''}: {', '.join(same)})" if same else ""


def check_request(sup: Support, *, weights: str | None = None, activations: str | None = None,
                  kv: str | None = None, sparsity: str | None = None,
                  layout: Mapping[str, int] | None = None, zero: int | None = None,
                  low_rank: object = None) -> None:
    """Raise :class:`EngineSupportError` naming the first field the engine cannot run."""
    where = f"{sup.engine} on {sup.device}"
    if low_rank and not sup.low_rank:
        raise EngineSupportError(low_rank_refusal(sup) + " (leave out {@low_rank})", field="low_rank")
    if weights is not None and weights not in sup.weights:
        raise EngineSupportError(f"{where} does not run {{@weights}} {weights!r}; it runs: {', '.join(sup.weights)}",
                                 field="weights")
    if weights is not None and activations is not None and not sup.runs(weights, activations):
        raise EngineSupportError(
            f"{where} runs {weights} weights with {{@activations}} {', '.join(sup.activations_for(weights))}; "
            f"got {activations!r}", field="activations")
    if kv is not None and kv not in sup.kv:
        raise EngineSupportError(f"{where} has no {{@kv}} cache format {kv!r}; it runs: {', '.join(sup.kv) or 'none'}"
                                 f"{_same_family(kv, sup.kv)}", field="kv")
    if sparsity is not None:
        pattern = "unstructured" if str(sparsity).startswith("unstructured") else str(sparsity)
        if pattern not in sup.sparsity:
            raise EngineSupportError(f"{where} does not run {{@sparsity}} {sparsity!r}; it runs: "
                                     f"{', '.join(sup.sparsity)}", field="sparsity")
    for dim, degree in (layout or {}).items():
        if degree and degree > 1 and dim not in sup.parallel:
            raise EngineSupportError(
                f"{where} has no {{@{dim}}} parallelism (degree {degree}); it supports: "
                f"{', '.join(sup.parallel) or 'a single device only'}", field=dim)
    # tp left out (a plan searches it): the search keeps the layouts whose TP degree the EP degree divides
    ep, tp = (layout or {}).get("ep") or 1, (layout or {}).get("tp")
    if tp is not None and not ep_runs(sup, tp, ep):
        raise EngineSupportError(ep_refusal(sup, tp, ep), field="ep", details={"engine": sup.engine, "tp": tp, "ep": ep})
    if zero is not None and zero not in sup.zero:
        raise EngineSupportError(f"{where} has no {{@zero}} stage {zero}; its sharding offers ZeRO "
                                 f"{', '.join(map(str, sup.zero))}", field="zero")


__all__ = [
    "FALLBACK_ORDER", "ZERO_STAGES", "EngineSpec", "EngineSupportError", "Runtime", "Scheme", "Support", "Target", "check_request", "default_engine",
    "engines_for", "ep_refusal", "ep_runs", "hardware_for", "list_engines", "load_engine", "load_engine_from_dict", "low_rank_refusal", "support",
]
