"""Estimate requests: one inference or training configuration, as the CLI (``tierwise
estimate``), REST (``POST /v1/estimate``) and the Python API (:func:`planner.estimate`,
:func:`planner.estimate_training`) give it.

:func:`build_estimate_request` turns the fields a front end received into an
:class:`EstimateRequest` (inference) or a :class:`TrainingRequest`; a field of the other
mode is an error naming it. :func:`run_estimate` validates, fills the defaults, calls the
cost model, and raises :class:`~planner.request.fit.DoesNotFitError` (exit 3 / HTTP 422
``infeasible``) when the configuration does not fit, with the cheapest changes that do.
This is the only translation of an estimate request into cost-model calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from hwmodels.errors import TierwiseError, per_front_end

from planner.serving import engine_settings
from planner.request.limits import check_model_size
from planner.request.engine import (
    ENGINE_HELP,
    RUNTIMES,
    check_given,
    check_runtime,
    check_training_kernels,
    engine_defaults,
    exporter_limits,
    resolve_engine,
)
from planner.request.fields import (
    bad,
    check_bool,
    check_choice,
    check_format,
    check_int,
    check_layout_fields,
    check_number,
    check_with,
    field_info,
    fill_defaults,
    given_fields,
    json_safe,
    opt,
    reject_unknown,
    within_context,
)

__all__ = [
    "EstimateRequest",
    "ResolvedInference",
    "TrainingRequest",
    "build_estimate_request",
    "estimate_result_dict",
    "native_16bit",
    "resolve_inference",
    "resolve_training",
    "run_estimate",
]

MODES = ("inference", "training")
#: planner.training.OPTIMIZERS' names (a test checks they agree), declared here so that the
#: request layer's field declarations load without the training model.
OPTIMIZER_NAMES = ("adamw", "adamw-8bit", "adamw-fp8", "sgd")


def native_16bit(arch: Any, device: Any) -> str:
    """The 16-bit float ``device`` computes in natively (bf16, else fp16, else fp32): the
    default weight, activation and KV format. Phones, Apple GPUs, T4 and V100 run fp16."""
    from planner.options import base_activation_format

    return base_activation_format(device)


_INF = ("inference",)
_TRAIN = ("training",)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    """Fields of both estimate modes. ``model`` / ``hardware``: catalog ids, paths to a
    config / profile, or loaded :class:`~planner.arch.ArchSpec` / ``DeviceSpec`` objects."""

    model: Any = opt("Catalog id or path to an HF-style config.")
    hardware: Any = opt("Catalog id or path to a hardware YAML.")
    devices: int | None = opt("Total devices; must equal the product of the parallel degrees.")
    tp: int | None = opt("Tensor-parallel degree.", 1)
    pp: int | None = opt("Pipeline-parallel degree.", 1)
    dp: int | None = opt("Data-parallel degree (replicas).", 1)
    ep: int | None = opt("Expert-parallel degree (MoE).", 1)
    cp: int | None = opt("Context-parallel degree (ring attention; devices = tp·cp·pp·dp).", 1)
    weights: str | None = opt("Weight format (default: the device's native 16-bit format; fp8, int8, int4-g128, nf4, mxfp4, ...).",
                              native_16bit)
    activations: str | None = opt("Activation/compute format (default: the device's native 16-bit format; fp8, int8).",
                                  native_16bit)
    runtime: str | None = opt("graph (CUDA graphs / compiled engines) or eager (PyTorch eager); default: the engine's "
                              "(eager for the PyTorch-eager engines hf-transformers and torch, else graph).",
                              choices=RUNTIMES)
    engine: str | None = opt(ENGINE_HELP)


@dataclass(frozen=True, slots=True, kw_only=True)
class EstimateRequest(_Common):
    """One inference configuration (prefill + decode). ``None`` means "not given": the
    default is filled in by :func:`resolve_inference`."""

    mode: str = "inference"
    batch: int | str | None = opt("Sequences per replica, or 'max' for the largest that fits.", 1)
    prompt: int | None = opt("Prompt tokens per request.", 512)
    gen: int | None = opt("Generated tokens per request.", 128)
    kv: str | None = opt("KV-cache format (default: the device's native 16-bit format; fp8, int8, int4-g64, ...).",
                         native_16bit)
    sparsity: str | None = opt("dense | 2:4 | unstructured:R", "dense")
    low_rank: int | None = opt("Factor every linear layer to this rank (r·(k+n) weights).")
    allow_offload: bool | None = opt("Let weights spill to host memory.", False)
    kv_budget: int | None = opt("KV token budget: older tokens beyond it are kept at the kv_evicted format (MiKV).")
    kv_evicted: str | None = opt("KV format of tokens beyond the KV token budget.", "int4-g32")
    kv_share: int | None = opt("Adjacent layers sharing one KV cache (SwiftKV AcrossKV).", 1)
    flash_chunk_kib: float | None = opt("Read size when streaming weights from flash (KiB).", 256.0)
    per_op: bool | None = opt("Include the per-operator tables.", False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingRequest(_Common):
    """One training step. ``None`` means "not given" (see :func:`resolve_training`)."""

    mode: str = "training"
    global_batch: int | None = opt("Sequences per optimizer step (default: micro_batch × dp).")
    micro_batch: int | None = opt("Sequences per micro-batch.", 1)
    seq: int | None = opt("Sequence length (default 2048, or the model's context when shorter). Not for a CNN or a "
                          "ViT, whose sample is one image.", within_context(2048))
    zero: int | None = opt("ZeRO stage 0..3.", 0)
    recompute: str | None = opt("Activation recomputation: none, selective or full.", "none",
                                choices=("none", "selective", "full"))
    sequence_parallel: bool | None = opt("Megatron sequence parallelism.", False)
    interleave: int | None = opt("Interleaved pipeline chunks per device.", 1)
    optimizer: str | None = opt("adamw | adamw-8bit | adamw-fp8 | sgd.", "adamw", choices=OPTIMIZER_NAMES)
    finetune: str | None = opt("full | lora:RANK | qlora:RANK.", "full")
    attention: str | None = opt("fused (the engine's FlashAttention kernel), unfused, or a named fused kernel "
                                "(flash2, flash3, flash-triton).", "fused",
                                choices=("fused", "unfused", "flash2", "flash3", "flash-triton"))
    grad_accumulation: str | None = opt("separate or fused gradient accumulation.", "separate",
                                        choices=("separate", "fused"))
    dropout: bool | None = opt("The model has dropout layers.", False)


INFERENCE_FIELDS = tuple(field_info(EstimateRequest))
TRAINING_FIELDS = tuple(field_info(TrainingRequest))


def build_estimate_request(fields_given: Mapping[str, Any]) -> EstimateRequest | TrainingRequest:
    """The request for ``fields_given`` (field → value; ``None`` values count as not given).

    ``mode`` picks the kind (inference by default). A field that only the other mode takes
    is an error naming it; so is a field no estimate takes."""
    given = {k: v for k, v in fields_given.items() if v is not None}
    mode = given.pop("mode", "inference")
    mode = check_choice("mode", getattr(mode, "value", mode), MODES)
    cls, other, other_mode = ((EstimateRequest, TRAINING_FIELDS, "training") if mode == "inference"
                              else (TrainingRequest, INFERENCE_FIELDS, "inference"))
    mine = field_info(cls)
    for name in given:
        if name not in mine and name in other:
            _refuse_if_meaningless(given.get("model"), name, given[name])  # a CNN's --seq: no --mode fixes it
            raise TierwiseError(
                f"{{@{name}}} applies to {other_mode} estimates only, not to {mode}; remove it or set {{@mode}} {other_mode}",
                field=name, code="not_applicable")
    reject_unknown(given, set(INFERENCE_FIELDS) | set(TRAINING_FIELDS), "an estimate request")
    return cls(**given)


def _refuse_if_meaningless(model: Any, name: str, value: Any) -> None:
    """:func:`check_fields_apply` for one field of the other mode, when the model loads: advice to
    set the mode would only lead to that refusal. A model that does not load is left to the
    request's own checks."""
    from planner.arch import ArchSpec

    if name not in ("seq", "attention", *_KV_FIELDS) or model is None:
        return
    try:
        arch = model if isinstance(model, ArchSpec) else _load_bounded_arch(model) if isinstance(model, str) else None
    except (TierwiseError, OSError, ValueError):
        return
    if arch is not None:
        check_fields_apply(arch, {name: value})


# ---------------------------------------------------------------------------
# Loading model and hardware
# ---------------------------------------------------------------------------


def load_specs(model: Any, hardware: Any) -> tuple[Any, Any]:
    """(ArchSpec, DeviceSpec) from ids/paths or loaded objects."""
    from hwmodels import DeviceSpec, load_device

    from planner.arch import ArchSpec

    if model is None:
        raise TierwiseError("{@model} is required: a catalog id such as llama-3.1-8b", field="model", code="missing_field")
    if hardware is None:
        raise TierwiseError("{@hardware} is required: a catalog id such as h100-sxm", field="hardware", code="missing_field")
    # a path object names a file as its text does (pathlib.Path, os.DirEntry)
    model = os.fspath(model) if isinstance(model, os.PathLike) else model
    hardware = os.fspath(hardware) if isinstance(hardware, os.PathLike) else hardware
    if isinstance(model, ArchSpec):
        arch = check_model_size(model)
    elif isinstance(model, str):
        arch = _named_file_error(_load_bounded_arch, model, "model")
    else:
        raise bad("model", "a catalog id, a config path or an ArchSpec", model)
    if isinstance(hardware, DeviceSpec):
        dev = hardware
    elif isinstance(hardware, str):
        dev = _named_file_error(load_device, hardware, "hardware")
    else:
        raise bad("hardware", "a catalog id, a profile path or a DeviceSpec", hardware)
    return arch, dev


def _load_bounded_arch(ref: str) -> Any:
    """The ArchSpec of a catalog id or config path, refused (naming {@model} and the config's own
    key) when a dimension is over :data:`~planner.request.limits.MODEL_LIMITS`: the check comes
    before any workload is built, so a config with a billion layers fails at once."""
    from planner.arch import _looks_like_path, _read, arch_from_config, load_arch

    if not _looks_like_path(ref):
        return check_model_size(load_arch(ref))
    cfg, origin, model_id, _ = _read(ref)
    return check_model_size(arch_from_config(cfg, model_id=model_id, origin=origin), cfg, source=origin)


def _named_file_error(load: Any, ref: str, name: str) -> Any:
    """``load(ref)``; a file that is missing, has the wrong suffix or is not a mapping at all is
    an error naming the request field (``--model ./nope/: ...``), not a pseudo-field of the
    file (``<file>``) or none. Errors inside a hardware file name the request field and the
    file's own key (``--hardware cfg/x.json: field 'sources' must be present``)."""
    from hwmodels.errors import ProfileError

    from planner.archspec import ModelConfigError

    try:
        return load(ref)
    except ModelConfigError as exc:
        if exc.field is not None:
            raise
        text = f"{exc.path}: {exc.expected}; got {exc.got}"  # as written: the path is not read as a field token
        raise TierwiseError(f"{{@{name}}} {per_front_end(text, text)}", field=name, code=exc.code) from None
    except ProfileError as exc:
        raise exc.named(name) from None


# ---------------------------------------------------------------------------
# Checks shared by both modes
# ---------------------------------------------------------------------------


def _useful_rank(arch: Any, rank: int) -> int:
    """``rank`` when it compresses some linear layer of ``arch`` (r·(k+n) < k·n), as ``tierwise
    plan --low-rank`` requires; else an error naming ``low_rank`` (the cost model would price
    every layer dense and report it as factorised)."""
    from planner.options import decision_groups, low_rank_fits, max_low_rank
    from planner.workload import build_workload

    groups = decision_groups(build_workload(arch))
    if any(low_rank_fits(g, rank) for g in groups):
        return rank
    widest = max((max_low_rank(g) for g in groups), default=0)
    raise TierwiseError(f"{{@low_rank}} {rank} compresses no linear layer of {arch.id} (a rank r compresses a k×n "
                        f"layer when r·(k+n) < k·n; " + (f"the largest useful rank here is {widest})" if widest else
                                                         "it has no linear layer low rank applies to)"),
                        field="low_rank", code="invalid_field")


def check_context(arch: Any, tokens: int, names: tuple[str, ...]) -> None:
    """Sequences longer than the model's positions (``max_position_embeddings``) are refused.

    Models with learned or rotary positions have a trained context; T5 (relative position
    buckets), ViTs (fixed patch count) and CNNs have no such limit on these fields."""
    limit = arch.max_position_embeddings or 0
    if limit <= 0 or arch.family not in ("decoder", "encoder"):
        return
    if tokens > limit:
        named = " + ".join("{@" + n + "}" for n in names)
        raise TierwiseError(
            f"{named} = {tokens} tokens is beyond the context of {arch.id} ({limit} positions, max_position_embeddings)",
            field=names[0], code="beyond_context", details={"tokens": tokens, "max_position_embeddings": limit})


_KV_FIELDS = ("kv", "kv_budget", "kv_evicted", "kv_share")  # the KV cache's format and policies


def check_fields_apply(arch: Any, given: Mapping[str, Any]) -> None:
    """A field given for a model it means nothing to is refused rather than ignored: a CNN has no
    sequence length and no attention; a ViT's sequence is its patches, fixed by its image and patch
    size. Only values the caller gave are checked (defaults are filled to suit the model)."""
    fam = arch.family
    if "seq" in given and fam in ("cnn", "vit"):
        if fam == "cnn":
            why = "a CNN: it has no sequence length (a sample is one image)"
        else:
            from planner.workload import tokens_per_sample

            why = (f"a ViT: its sequence is its {tokens_per_sample(arch, 1)} positions (patches and class token), "
                   f"fixed by its image size {arch.image_size} and patch size {arch.patch_size}")
        raise TierwiseError(f"{{@seq}} {given['seq']} does not apply to {arch.id}, {why}; leave {{@seq}} out",
                            field="seq", code="not_applicable", details={"family": fam})
    kv_field = next((n for n in _KV_FIELDS if given.get(n) is not None), None)
    if kv_field is not None and not arch.generative:
        why = ("a CNN: it has no attention and keeps no KV cache" if fam == "cnn" else
               f"{'a ViT' if fam == 'vit' else 'an encoder'}: it keeps no KV cache (one forward pass per sample; "
               "its keys and values are activations at the activation format)")
        raise TierwiseError(f"{{@{kv_field}}} {given[kv_field]} does not apply to {arch.id}, {why}; leave "
                            f"{{@{kv_field}}} out", field=kv_field, code="not_applicable", details={"family": fam})
    recompute = given.get("recompute")
    if recompute is not None and fam == "cnn" and str(recompute).strip().lower() != "none":
        raise TierwiseError(f"{{@recompute}} {recompute} does not apply to {arch.id}, a CNN: activation recomputation "
                            "is modelled for transformer layers, and a CNN's step would be priced as without it; leave "
                            "{@recompute} out", field="recompute", code="not_applicable", details={"family": fam})
    if given.get("attention") is not None and fam == "cnn":
        raise TierwiseError(f"{{@attention}} {given['attention']} does not apply to {arch.id}, a CNN: it has no "
                            "attention layers; leave {@attention} out", field="attention", code="not_applicable",
                            details={"family": fam})


def check_sequence(arch: Any, prompt: int, gen: int) -> None:
    """An inference request's lengths: it processes at least one token (a decoder or an
    encoder-decoder with ``prompt`` 0 and ``gen`` 0 would report latency and energy per token for
    no token; an encoder processes the prompt only), within the model's context. ``prompt`` 0
    with ``gen`` > 0 stays valid for generative models: decode alone (llama-bench's ``-p 0 -n 128``).
    CNNs and ViTs take one image per sample whatever the lengths (an estimate note says so)."""
    fam = arch.family
    if fam == "encoder" and prompt == 0:
        raise TierwiseError(f"{{@prompt}} must be at least 1 for {arch.id}: an encoder processes the prompt only, "
                            "so 0 prompt tokens is no work at all; got 0", field="prompt", code="invalid_field",
                            details={"expected": ">= 1", "given": 0})
    if arch.generative and prompt == 0 and gen == 0:
        raise TierwiseError("{@prompt} 0 and {@gen} 0 process no token (nothing to time or to divide energy by); "
                            "expected {@prompt} >= 1, or {@gen} >= 1 to price decoding alone; got 0 and 0",
                            field="prompt", code="invalid_field", details={"expected": "prompt + gen >= 1", "given": 0})
    if fam == "encoder":
        check_context(arch, prompt, ("prompt",))
    else:
        check_context(arch, prompt + gen, ("prompt", "gen"))


# ---------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedInference:
    """A validated inference request in the cost model's terms."""

    arch: Any
    device: Any
    layout: Any
    serving: Any  # batch is 1 when ``batch_max`` (the search starts there)
    choice: Any
    options: Any
    batch_max: bool
    per_op: bool
    values: Mapping[str, Any]  # every field, defaults filled
    engine: Any = None  # planner.engines.Support of the request's engine on the device


def _check_evicted(req: Any, v: Mapping[str, Any], kv_budget: int | None) -> None:
    """``kv_evicted`` is the format of the tokens beyond ``kv_budget``: without a budget it would change
    nothing, and a format wider than the cache's own would make eviction grow the cache."""
    from planner.formats import get_format

    if kv_budget is None:
        if getattr(req, "kv_evicted", None) is not None:
            raise TierwiseError("{@kv_evicted} is the format of the tokens beyond {@kv_budget}; without "
                                "{@kv_budget} it changes nothing (give both, or neither)", field="kv_evicted",
                                code="invalid_field")
        return
    kept, evicted = get_format(v["kv"]), get_format(v["kv_evicted"])
    if evicted.bits_per_value(1 << 20, 128) > kept.bits_per_value(1 << 20, 128):
        raise TierwiseError(f"{{@kv_evicted}} {evicted.name} stores the evicted tokens in more bits than the cache's "
                            f"own {{@kv}} {kept.name}: eviction would grow the cache; give a narrower format "
                            "(e.g. int4-g32)", field="kv_evicted", code="invalid_field")


def resolve_inference(req: EstimateRequest) -> ResolvedInference:
    from planner.costmodel import Choice, RuntimeSettings, Serving
    from planner.formats import parse_sparsity

    arch, dev = load_specs(req.model, req.hardware)
    sup = resolve_engine(req.engine, dev, training=False, arch=arch)
    given = given_fields(req)
    check_fields_apply(arch, given)
    v = engine_defaults(sup, given, fill_defaults(req, arch, dev), kv=True)
    layout = check_layout_fields(arch, dev, v, training=False)
    batch = v["batch"]
    batch_max = isinstance(batch, str) and batch.strip().lower() == "max"
    if not batch_max:  # text is 'max' only: "8" is not an integer (the command line converts its own text)
        if isinstance(batch, str):
            expected = (f"a positive integer or 'max' (the number {batch.strip()}, not the text {batch!r})"
                        if batch.strip().isdigit() else "a positive integer or 'max'")
            raise bad("batch", expected, batch)
        batch = check_int("batch", batch, hi=1 << 24)
    prompt = check_int("prompt", v["prompt"], lo=0, hi=1 << 26)
    gen = check_int("gen", v["gen"], lo=0, hi=1 << 26)
    check_sequence(arch, prompt, gen)
    for name, role in (("weights", "weight"), ("activations", "activation"), ("kv", "kv"), ("kv_evicted", "kv")):
        check_format(name, v[name], role)
    v["sparsity"] = check_with("sparsity", v["sparsity"], parse_sparsity).name  # 'DENSE', ' 2:4 ' as written
    # Serving replicas (dp) are separate instances of the engine, as capacity counts them: every engine
    # runs them; tp, pp, ep and cp split one instance and need the engine's support.
    check_given(sup, given, v, {n: v[n] for n in ("tp", "pp", "ep", "cp")})
    low_rank = None if v["low_rank"] is None else _useful_rank(arch, check_int("low_rank", v["low_rank"], hi=1 << 24))
    kv_budget = None if v["kv_budget"] is None else check_int("kv_budget", v["kv_budget"], hi=1 << 30)
    _check_evicted(req, v, kv_budget)
    kv_share = check_int("kv_share", v["kv_share"], hi=1 << 16)
    if 0 < (arch.num_layers or 0) < kv_share:  # the KV of fewer than one layer is no cache at all
        raise TierwiseError(f"{{@kv_share}} {kv_share} shares one KV cache across more layers than {arch.id} has "
                            f"({arch.num_layers}); at most {arch.num_layers}", field="kv_share", code="invalid_field")
    chunk = check_number("flash_chunk_kib", v["flash_chunk_kib"], lo=0.5, lo_open=False, hi=1 << 20)
    runtime = check_runtime(sup, v["runtime"], dev)
    allow_offload = check_bool("allow_offload", v["allow_offload"])
    per_op = check_bool("per_op", v["per_op"])
    choice = Choice(weights=v["weights"], activations=v["activations"], kv=v["kv"], sparsity=v["sparsity"],
                    low_rank=low_rank)
    options = RuntimeSettings(allow_offload=allow_offload, flash_chunk_bytes=chunk * 1024.0, runtime=runtime,
                              kv_token_budget=kv_budget, kv_evicted=v["kv_evicted"], kv_share_layers=kv_share,
                              **engine_settings(sup.runtime))
    serving = Serving(batch=1 if batch_max else batch, prompt=prompt, gen=gen)
    return ResolvedInference(arch, dev, layout, serving, choice, options, batch_max, per_op, v, sup)


def _run_inference(req: EstimateRequest, require_fit: bool = True):
    from planner.costmodel import batch_limit, estimate_inference
    from planner.request.fit import inference_does_not_fit

    r = resolve_inference(req)
    serving = r.serving
    bound = None
    if r.batch_max:
        bound = batch_limit(r.arch, r.device, r.layout, serving, r.choice, options=r.options)
        if bound.bound == "limit":
            # Nothing in memory grows with the batch: no KV cache, and the engine runs at most a
            # fixed number of tokens per pass. "max" would be the search's own end (2^20 samples).
            raise TierwiseError(f"{{@batch}} max: memory does not bound the batch of {r.arch.id} on {r.device.id} "
                                f"({'' if r.arch.generative else 'it keeps no KV cache and '}"
                                f"{r.engine.engine} runs a fixed number of tokens per pass), so there is no largest "
                                "batch that fits; give {@batch} a number", field="batch", code="invalid_field",
                                details={"expected": "a positive integer", "given": "max"})
        serving = replace(serving, batch=max(bound.batch, 1))
    est = estimate_inference(r.arch, r.device, r.layout, serving, r.choice, options=r.options)
    setting = getattr(r.engine.runtime, "memory_fraction_setting", None)
    kv = r.arch.generative
    limit_notes = () if bound is None or bound.batch < 1 else (f"batch max: {bound.text(r.engine.engine, setting, kv=kv)}",)
    est = replace(est, engine=r.engine.engine, engine_assumptions=engine_assumptions(r.engine, r.device, r.arch, r.options.runtime),
                  notes=(*limit_notes, *est.notes, *shape_notes(r.arch, serving), _engine_note(r.engine, r.device, r.arch),
                         *_storage_notes(r.engine, r.choice, r.arch), *_kept_table_notes(r.engine, r.choice, r.arch),
                         *_dequant_copy_notes(r.engine, r.choice, r.arch, est), *_kv_policy_notes(r.engine.engine, r.options),
                         *_export_notes(r.engine, r.choice, r.arch), *_dynamic_act_notes(r.engine, r.choice, r.device, r.arch),
                         *_design_peak_notes(r.engine, r.device)),
                  batch_limit=None if bound is None else {**bound.to_dict(), "text": bound.text(r.engine.engine, setting, kv=kv)},
                  per_op=r.per_op)
    # the p10-p90 error bars from published measurements of the same kind: every estimate result carries them
    from planner.uncertainty import estimate_uncertainty  # here, not at start-up: commands that estimate nothing skip it

    est = replace(est, uncertainty=estimate_uncertainty(est, r.device, r.engine.engine, r.options.runtime))
    if require_fit and not est.memory.fits:
        raise inference_does_not_fit(replace(r, serving=serving), est)
    return est


def engine_assumptions(sup: Any, device: Any, arch: Any = None, runtime: str | None = None) -> dict[str, Any]:
    """What an estimate assumed of its engine (``engine_assumptions`` of the answer): the
    cost model's settings from the profile's runtime block (:func:`planner.serving.engine_settings`)
    and the launch mode priced (``runtime``: the request's, else the engine's default)."""
    rt = sup.runtime
    s = engine_settings(rt)
    decoder = arch is None or getattr(arch, "family", "decoder") == "decoder"
    return {
        "cpu_int8_gemm_share": _cpu_int8_share(s, device, rt),
        "separate_dequant": s["separate_dequant"],
        "engine": sup.engine,
        "runtime": runtime or rt.default_runtime,
        "runtime_context_bytes": s["reserved_bytes"],
        "kv_memory_fraction": s["kv_memory_fraction"],
        "chunked_prefill_tokens": (s["prefill_chunk_tokens"] or None) if decoder else None,
        "paged_kv_block_tokens": rt.kv_block_tokens if rt.paged_kv else None,
        "graph_capture": rt.graph_capture,
        "continuous_batching": rt.continuous_batching,
        "step_overhead_s": s["step_overhead_s"],
        "static_memory_plan": s["static_memory_plan"],
        "dynamic_act_quant": s["dynamic_act_quant"],
        "weight_only_formats": list(s["weight_only_formats"]),
        # the tables it holds in 16 bit whatever the scheme, and the formats whose GEMMs dequantize a 16-bit copy
        "float_weight_kinds": list(s["float_weight_kinds"]),
        "dequant_copy_formats": list(s["dequant_copy_formats"]),
        "dequant_copy_dtype": s["dequant_copy_dtype"],
        "design_peak_tops": dict(rt.design_peak_tops) or None,
        "source": sup.profile_file,
    }


def _cpu_int8_share(settings: dict[str, Any], device: Any, runtime: Any) -> float | None:
    """Share of the device's int8 peak the engine's quantized CPU matmul reaches (planner.kernels),
    None when the engine has none or the engine runs on another unit of the device."""
    from planner.kernels import cpu_int8_gemm_fraction
    from planner.opcost import runs_on_cpu

    ops = settings.get("cpu_int8_block_ops")
    if ops is None or not runs_on_cpu(device, runtime.compute_unit):
        return None
    try:
        return cpu_int8_gemm_fraction(ops, device.peak_flops_per_s("int8", unit="cpu"), device.peak_flops_per_s("fp32", unit="cpu"))
    except (KeyError, ValueError):
        return None


def shape_notes(arch: Any, serving: Any) -> list[str]:
    """What the prompt and gen lengths mean for a model that is not a text decoder: a CNN or ViT
    takes one image per sample (the prompt length does not apply), and only generative models
    generate (gen does not apply to encoders, CNNs and ViTs)."""
    from planner.workload import tokens_per_sample

    fam = arch.family
    notes = []
    if fam in ("cnn", "vit"):
        size = getattr(arch, "image_size", 0)
        what = f"one {size}×{size} image" if size else "one image"
        if fam == "vit":
            what += f" = {tokens_per_sample(arch, serving.prompt)} patch tokens"
        notes.append(f"{arch.id} is a {'CNN' if fam == 'cnn' else 'ViT'}: each sample is {what}; the prompt length ({serving.prompt}) does not "
                     "apply and is ignored")
    if not arch.generative and serving.gen > 0:
        notes.append(f"{arch.id} generates no tokens ({fam}): gen ({serving.gen}) does not apply and is ignored; "
                     "one forward pass per sample")
    return notes


def _kv_policy_notes(engine: str, options: Any) -> tuple[str, ...]:
    """A KV token budget and shared KV layers are priced as what-ifs: no engine profile lists them
    (vLLM, SGLang, TensorRT-LLM and llama.cpp keep every token's K/V, per layer), so the answer says
    which figures no engine in the catalog would reach as asked."""
    asked = []
    if options.kv_token_budget is not None:
        asked.append(f"a KV token budget ({options.kv_token_budget} tokens at the KV format, older ones at "
                     f"{options.kv_evicted}: MiKV's mixed-precision retention)")
    if options.kv_share_layers > 1:
        asked.append(f"one KV cache shared by {options.kv_share_layers} adjacent layers (SwiftKV's AcrossKV)")
    if not asked:
        return ()
    return (f"what-if: {engine} keeps every token's K/V in every layer; this prices {' and '.join(asked)}, which "
            "no engine profile in the catalog lists: the figures are what an engine that ran it would reach",)


def _design_peak_notes(sup: Any, device: Any) -> tuple[str, ...]:
    """The engine's own compute design's peak where it differs from the device's roof and replaces it
    (runtime.design_peak_tops: Vitis AI's DPU on an Alveo card)."""
    out = []
    for precision, tops in sup.runtime.design_peak_tops:
        try:
            fabric = device.peak_flops_per_s(precision) / 1e12
        except (KeyError, ValueError):
            continue
        if abs(tops - fabric) > 1e-9 * fabric:
            out.append(f"{sup.engine} runs one compute design on {device.id}, whose published peak is {tops:g} "
                       f"{precision} TOPS ({sup.profile_file} runtime.design_peak_tops); it is priced at that peak, not "
                       f"at the {fabric:.3g} TOPS of the device's own roof")
    return tuple(out)


def _dynamic_act_notes(sup: Any, choice: Any, device: Any, arch: Any = None) -> tuple[str, ...]:
    """What the quantized layers compute in when the engine quantizes their float activations at run
    time (the profile's runtime.dynamic_act_quant: ExecuTorch's XNNPACK 8da4w / 8da8w)."""
    from planner.format_noise import dynamic_applies
    from planner.opcost import dynamic_activations

    rt = sup.runtime
    target = dynamic_activations(device, choice, rt.dynamic_act_quant, rt.weight_only_formats)
    if target is None:
        if (rt.dynamic_act_quant is not None and dynamic_applies(choice.weights, choice.activations)
                and not dynamic_applies(choice.weights, choice.activations, rt.weight_only_formats)):
            return (f"layers with {choice.weights} weights compute in {choice.activations}: {sup.engine}'s exporter writes "
                    f"this model's {choice.weights} weights weight-only (export_llama --quantization_mode int8), so they "
                    "are dequantized and priced so, not as dynamic int8",)
        return ()
    conv = " (its convolutions take calibrated static int8 inputs)" if getattr(arch, "family", None) == "cnn" else ""
    return (f"layers with {choice.weights} weights compute with {target} activations: {sup.engine} quantizes the "
            f"{choice.activations} activations of its quantized linear layers per token at run time{conv}, and they "
            f"are priced so ({sup.profile_file} runtime.dynamic_act_quant); the tensors between layers stay in "
            f"{choice.activations}",)


def _export_notes(sup: Any, choice: Any, arch: Any) -> tuple[str, ...]:
    """A what-if note where the estimate prices a format the engine runs but its exporter cannot
    write for this model (an int8 KV cache of an Optimum-route decoder under ExecuTorch):
    ``tierwise plan`` would not choose it and ``tierwise export`` would refuse it."""
    limits = exporter_limits(sup, arch)
    if not limits:
        return ()
    out = []
    from planner.formats import get_format

    if choice.weights in limits.get("weight_only", ()) and get_format(choice.activations).kind == "int":
        out.append(f"what-if: {choice.weights} weights with {choice.activations} activations: {sup.engine} runs them, but its "
                   f"exporter writes {arch.id}'s {choice.weights} weights weight-only (activations stay float), so `tierwise "
                   "plan` would not choose them and `tierwise export` would write a weight-only program")
    for field, what, name in (("kv", "KV cache", choice.kv if arch.generative else None),
                              ("weights", "weights", choice.weights)):
        if field in limits and name and name not in limits[field]:
            out.append(f"what-if: {what} in {name}: {sup.engine} runs it, but its exporter writes {arch.id}'s {what} "
                       f"in {', '.join(limits[field])} only, so `tierwise plan` would not choose it and `tierwise "
                       "export` could not write it")
    return tuple(out)


def _storage_notes(sup: Any, choice: Any, arch: Any = None) -> tuple[str, ...]:
    """What the engine stores the choice's weights and KV cache as, where its type's size is not the
    catalog format's price (the profile's ``storage``: llama.cpp's int4-g32-zp is ggml q4_1), and
    the share of the weights priced as a fallback type because their rows are no whole number of
    the type's blocks (Falcon-7B's 4544-wide rows: q5_0, not q4_K)."""
    from planner.formats import get_format

    out = []
    for what, name in (("weights", choice.weights), ("KV cache", choice.kv)):
        for fmt, chain in sup.runtime.storage:
            t, values, nbytes = chain[0]
            bits, catalog = 8.0 * nbytes / values, get_format(fmt).bits_per_value()
            fell = _storage_fallbacks(arch, chain) if fmt == name and what == "weights" and arch is not None else ""
            if fmt == name and (abs(bits - catalog) > 1e-9 or fell):
                out.append(f"{what} {fmt} priced as {sup.engine}'s {t}, {bits:g} bits per value (the catalog "
                           f"format: {catalog:g}; {sup.profile_file} storage){fell}")
    return tuple(out)


def _kept_table_notes(sup: Any, choice: Any, arch: Any) -> tuple[str, ...]:
    """Which tables the estimate priced in 16 bit although ``--weights`` quantizes: those the engine keeps
    (vLLM, SGLang and transformers quantize Linear layers only; TensorRT-LLM keeps the embedding)."""
    from planner.formats import get_format, parse_sparsity

    kinds = tuple(sup.runtime.float_weight_kinds)
    w = get_format(choice.weights)
    if not kinds or (w.kind == "float" and w.bits_per_value() >= 16 and parse_sparsity(choice.sparsity).name == "dense"):
        return ()
    names = {"embedding": "embedding table", "lm_head": "LM head"}
    tied = getattr(arch, "tie_word_embeddings", False) and "lm_head" not in kinds and "embedding" in kinds
    what = " and ".join(names.get(k, k) for k in kinds) + (" (and the LM head tied to it)" if tied else "")
    return (f"{sup.engine} keeps the {what} in 16 bit whatever the weight format (its exporter and loader "
            f"quantize linear layers only; planner/export/rules.py): priced so, as its plans pin them",)


def _dequant_copy_notes(sup: Any, choice: Any, arch: Any, est: Any) -> tuple[str, ...]:
    """A note when the engine's GEMMs of the weight format dequantize a whole 16-bit copy first."""
    from planner.formats import cast_copy_bits, get_format

    fmts = tuple(sup.runtime.dequant_copy_formats)
    if get_format(choice.weights).name not in fmts:
        return ()
    s = est.serving
    if s.batch * max(s.prompt, 1) <= 1 and (s.batch <= 1 or s.gen <= 1):
        # one row everywhere: the fused gemv_4bit runs and no copy is made (placement prices none)
        return (f"{choice.weights} under {sup.engine}: one row per step here, so the fused gemv_4bit runs and no "
                f"dequantized copy is made; a prompt or a batch above one would dequantize each weight whole first "
                f"({sup.profile_file} dequant_copy_formats)",)
    compute = get_format(choice.activations).name
    cast = sup.runtime.dequant_copy_dtype
    cast_text = (f", made in {cast} and cast to {compute}, so two copies are held while the cast runs"
                 if cast_copy_bits(cast, compute) else "")
    return (f"{choice.weights} under {sup.engine}: an input of more than one row (a prompt, or a decode batch above "
            f"one) dequantizes each weight into a {compute} copy before its GEMM (bitsandbytes' MatMul4Bit; one row runs "
            f"gemv_4bit){cast_text}: the largest copy is held beside the activations and the pass is priced "
            f"({sup.profile_file} dequant_copy_formats)",)


def _storage_fallbacks(arch: Any, chain: Any) -> str:
    """``; …`` naming the weights whose rows the first type's blocks do not tile and the type they
    are priced as (planner.opcost.stored_bits picks it the same way), with the average; '' if none."""
    from planner.opcost import stored_row
    from planner.workload import NORM, build_workload

    by_type: dict[str, float] = {}
    rows_of: dict[str, set[int]] = {}
    for block in build_workload(arch).blocks:
        for op in block.ops:
            if not op.weight_params or op.kind == NORM:
                continue
            row = stored_row(op)
            t = next((c for c in chain if row % c[1] == 0), chain[0])
            by_type[t[0]] = by_type.get(t[0], 0.0) + block.count * op.weight_params
            rows_of.setdefault(t[0], set()).add(row)
    total = sum(by_type.values())
    first = chain[0][0]
    others = [c for c in chain if c[0] != first and by_type.get(c[0])]
    if not total or not others:
        return ""
    parts = [f"{by_type[c[0]] / total:.0%} of them, in rows of {', '.join(map(str, sorted(rows_of[c[0]])))} values "
             f"(no whole number of {first}'s {chain[0][1]}-value blocks), as {c[0]}, {8.0 * c[2] / c[1]:g} bits"
             for c in others]
    avg = sum(by_type.get(c[0], 0.0) * 8.0 * c[2] / c[1] for c in chain) / total
    return f"; {'; '.join(parts)}: {avg:.3g} bits per weight on average"


def _engine_note(sup: Any, device: Any, arch: Any = None) -> str:
    a = engine_assumptions(sup, device, arch)
    parts = [f"engine {sup.engine} ({sup.profile_file}): "
             f"{a['runtime_context_bytes'] / 2**30:.2f} GiB runtime context per device counted as reserved memory"]
    if a["kv_memory_fraction"] < 1.0 and (arch is None or arch.generative):  # an encoder keeps no KV cache
        parts.append(f"KV cache in at most {a['kv_memory_fraction']:.0%} of the memory weights, activations and "
                     "context leave")
    if a["chunked_prefill_tokens"]:
        parts.append(f"chunked prefill: activations of one {a['chunked_prefill_tokens']}-token chunk, not the whole "
                     "batch's prompts at once")
    if a["separate_dequant"]:
        parts.append("weights stored below 16 bits are dequantized into a 16-bit copy by a kernel of their own before "
                     "each GEMM (read, write and read again)")
    if a["cpu_int8_gemm_share"] is not None:
        parts.append(f"int8 matmuls on the CPU cores at {a['cpu_int8_gemm_share']:.0%} of the int8 peak (the engine's "
                     "block-quantized kernel, planner.kernels.cpu_int8_gemm_fraction)")
    if a["static_memory_plan"] and (arch is None or arch.generative):
        parts.append("static memory plan: KV cache and activations held for the program's whole sequence length "
                     "(prompt + gen, the export's --max_seq_length)")
    elif a["static_memory_plan"]:  # an encoder's, ViT's or CNN's program is exported at its input's shape
        parts.append("static memory plan: activations held for the program's input shape (the batch at the export's "
                     "sequence length or image size)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

_FINETUNE = re.compile(r"^(full|(lora|qlora):[1-9][0-9]{0,5})$")


def _check_finetune_base(v: dict, given: Any) -> None:
    """QLoRA's frozen base is 4-bit and LoRA's is not: ``--weights`` must say the same as ``--finetune``.
    qlora with a 16-bit ``--weights`` was reported as given and priced as nf4; lora with nf4 was priced
    otherwise than the qlora it is. Without ``--weights``, qlora's base is nf4."""
    from planner.formats import get_format

    method, _, rank = v["finetune"].strip().lower().partition(":")
    bits = get_format(v["weights"]).element_bits
    if method == "qlora" and bits > 4:
        if "weights" in given:
            raise TierwiseError(f"{{@finetune}} qlora keeps the frozen base in 4 bits (nf4, nf4-dq); {{@weights}} is "
                                f"{bits}-bit, got {v['weights']!r} (for a {bits}-bit frozen base use {{@finetune}} lora:{rank})",
                                field="weights", code="invalid_field")
        v["weights"] = "nf4"
    if method == "lora" and bits <= 4:
        raise TierwiseError(f"a 4-bit frozen base ({{@weights}} {v['weights']!r}) is QLoRA: use {{@finetune}} qlora:{rank} "
                            f"(lora:{rank} keeps the base in a 16-bit or 8-bit format)", field="weights", code="invalid_field")


def resolve_training(req: TrainingRequest) -> tuple[Any, Any, Any]:
    """(arch, device, TrainingConfig, engine Support) of a validated training request."""
    from planner.training_config import GRAD_ACCUMULATION, RECOMPUTE_MODES, TrainingConfig

    arch, dev = load_specs(req.model, req.hardware)
    sup = resolve_engine(req.engine, dev, training=True, arch=arch)
    given = given_fields(req)
    check_fields_apply(arch, given)
    v = engine_defaults(sup, given, fill_defaults(req, arch, dev), kv=False)
    check_layout_fields(arch, dev, v, training=True)
    from planner.engines import EngineSupportError, tp_allowed

    if not tp_allowed(sup.engine, arch, v["tp"]):
        raise EngineSupportError(f"{sup.engine} shards whole key/value heads over tensor-parallel ranks: {{@tp}} "
                                 f"{v['tp']} must divide the {arch.num_kv_heads} KV heads of {arch.id}",
                                 field="tp", details={"engine": sup.engine, "kv_heads": arch.num_kv_heads})
    mb = check_int("micro_batch", v["micro_batch"], hi=1 << 24)
    seq = check_int("seq", v["seq"], hi=1 << 26)
    if getattr(arch, "family", None) in ("cnn", "vit"):
        from planner.workload import tokens_per_sample

        seq = tokens_per_sample(arch, 1)  # an image's positions: 1 for a CNN, patches + class token for a ViT
    check_context(arch, seq, ("seq",))
    if seq % v["cp"]:
        of = (f"the {seq} positions of {arch.id} (patches and class token, fixed by its image and patch size)"
              if arch.family == "vit" else f"{{@seq}} ({seq})")
        raise TierwiseError(f"{{@cp}} {v['cp']} must divide {of}: each rank holds seq/cp tokens", field="cp",
                            code="invalid_layout")
    gb = v["global_batch"]
    if gb is None:
        gb = mb * v["dp"]
    gb = check_int("global_batch", gb, hi=1 << 30)
    if gb % (mb * v["dp"]):
        raise TierwiseError(f"{{@global_batch}} ({gb}) must be a multiple of {{@micro_batch}} × {{@dp}} = "
                            f"{mb}×{v['dp']} = {mb * v['dp']}", field="global_batch", code="invalid_field")
    check_int("zero", v["zero"], lo=0, hi=3)
    if v["zero"] >= 2 and v["pp"] > 1:
        raise TierwiseError(f"{{@zero}} {v['zero']} shards gradients, which pipeline parallelism accumulates over "
                            "micro-batches; use ZeRO 0 or 1 with pp > 1 (as DeepSpeed and Megatron-LM require)",
                            field="zero", code="invalid_field")
    check_int("interleave", v["interleave"], hi=1024)
    if v["interleave"] > 1:
        micro = gb // (mb * v["dp"])
        if v["pp"] < 2:
            raise TierwiseError(f"{{@interleave}} {v['interleave']} needs pipeline parallelism ({{@pp}} >= 2)",
                                field="interleave", code="invalid_field")
        if micro % v["pp"]:
            raise TierwiseError(f"an interleaved schedule needs the number of micro-batches ({micro}) to be a multiple "
                                f"of {{@pp}} ({v['pp']})", field="interleave", code="invalid_field")
    check_choice("recompute", getattr(v["recompute"], "value", v["recompute"]), RECOMPUTE_MODES)
    # asked for where it does not run, a named kernel would silently be priced as another one
    check_training_kernels(sup, dev, v["attention"], v["optimizer"])
    check_choice("grad_accumulation", v["grad_accumulation"], GRAD_ACCUMULATION)
    runtime = check_runtime(sup, v["runtime"], dev)
    if not isinstance(v["finetune"], str) or not _FINETUNE.match(v["finetune"].strip().lower()):
        if isinstance(v["finetune"], str) and v["finetune"].strip().lower() in ("lora", "qlora"):
            method = v["finetune"].strip().lower()
            raise TierwiseError(f"{{@finetune}} {method} needs a rank, e.g. {method}:16; got {v['finetune']!r}",
                                field="finetune", code="invalid_field")
        raise bad("finetune", "full, lora:RANK or qlora:RANK (e.g. lora:16)", v["finetune"])
    for name in ("sequence_parallel", "dropout"):
        check_bool(name, v[name])
    check_format("weights", v["weights"], "weight")
    check_format("activations", v["activations"], "activation")
    _check_finetune_base(v, given)
    check_given(sup, given, v, {n: v[n] for n in ("tp", "pp", "dp", "ep", "cp")}, zero=v["zero"])
    if v["finetune"].strip().lower().startswith("qlora") and "nf4" not in sup.weights:
        from planner.engines import EngineSupportError, engines_for, support

        others = [e for e in engines_for(dev, training=True, family=getattr(arch, "family", None))
                  if e != sup.engine and "nf4" in support(e, dev).weights]
        raise EngineSupportError(
            f"{sup.engine} on {sup.device} runs no 4-bit (nf4) base weights, which {{@finetune}} qlora needs; it runs: "
            f"{', '.join(sup.weights)} (lora:RANK keeps the base in 16-bit). Training engines that run qlora there: "
            f"{', '.join(others) or 'none'}" + (f" (give {{@engine}} {others[0]})" if others else ""),
            field="finetune", details={"engines": others})
    cfg = TrainingConfig(
        global_batch=gb, micro_batch=mb, seq=seq, tp=v["tp"], pp=v["pp"], dp=v["dp"], ep=v["ep"], cp=v["cp"],
        zero=v["zero"], recompute=getattr(v["recompute"], "value", v["recompute"]),
        sequence_parallel=v["sequence_parallel"], interleave=v["interleave"], optimizer=v["optimizer"],
        finetune=v["finetune"].strip().lower(), weights=v["weights"], activations=v["activations"],
        attention=v["attention"], dropout=v["dropout"], runtime=runtime,
        grad_accumulation=v["grad_accumulation"], engine=sup.engine,
    )
    return arch, dev, cfg, sup


def _run_training(req: TrainingRequest, require_fit: bool = True):
    from planner.request.fit import training_does_not_fit
    from planner.training import estimate_training

    arch, dev, cfg, sup = resolve_training(req)
    est = replace(estimate_training(arch, dev, cfg), engine=sup.engine)
    from planner.uncertainty import estimate_uncertainty

    est = replace(est, uncertainty=estimate_uncertainty(est, dev, sup.engine, cfg.runtime, training=True))
    if require_fit and not est.memory.fits:
        raise training_does_not_fit(arch, dev, cfg, est, given=given_fields(req))
    return est


# ---------------------------------------------------------------------------
# One entry point
# ---------------------------------------------------------------------------


def run_estimate(req: EstimateRequest | TrainingRequest, *, require_fit: bool = True):
    """The cost model's estimate for ``req``: an ``InferenceEstimate`` or a
    ``TrainingEstimate``. Raises TierwiseError naming the field for bad input and
    :class:`~planner.request.fit.DoesNotFitError` when the configuration does not fit
    (``require_fit=False``: the estimate anyway, ``memory.fits`` false — for views of the
    operators, such as the roofline, that do not depend on fitting)."""
    if isinstance(req, TrainingRequest):
        return _run_training(req, require_fit)
    if isinstance(req, EstimateRequest):
        return _run_inference(req, require_fit)
    raise TypeError(f"run_estimate takes an EstimateRequest or a TrainingRequest; got {type(req).__name__}")


def estimate_result_dict(req: EstimateRequest | TrainingRequest, est: Any) -> dict:
    """The JSON-safe answer (``tierwise estimate --json`` and ``POST /v1/estimate``)."""
    if isinstance(req, EstimateRequest):
        return json_safe(est.to_dict(ops=bool(req.per_op)))
    return json_safe(est.to_dict())


def request_fields(req: Any) -> dict[str, Any]:
    return {f.name: getattr(req, f.name) for f in fields(req)}
