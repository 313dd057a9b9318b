"""Quantization schemes that several targets share: compressed-tensors
``QuantizationArgs`` (written by the compressed-tensors, vllm and hf exports) and
TensorRT-LLM / ModelOpt ``QuantAlgo`` names (modelopt-mixed and trtllm exports)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from .common import compact_targets, modules_of
from .rules import check_groups, dense_only
from .core import FLOAT16, ExportContext, ExportError, PlanView, acts_of, format_of, sparsity_of, weights_of


# ---------------------------------------------------------------------------
# compressed-tensors quantization arguments (QuantizationArgs fields)
# ---------------------------------------------------------------------------

_CT_FORMAT = {  # compressed-tensors CompressionFormat per weight family
    "int-wo": "pack-quantized",
    "int-w8a8": "int-quantized",
    "fp8": "float-quantized",
    "nvfp4": "nvfp4-pack-quantized",
    "mxfp4": "mxfp4-pack-quantized",
    "mxfp6": "mxfp6-pack-quantized",
    "mxfp8": "mxfp8-quantized",
}


def _ct_weight_args(name: str, field_name: str) -> tuple[dict | None, str | None]:
    """(QuantizationArgs dict, CompressionFormat key) of a weight format; (None, None) for 16/32-bit."""
    if name in FLOAT16:
        return None, None
    f = format_of(name)
    if f.kind == "int":
        args: dict[str, Any] = {"num_bits": f.element_bits, "type": "int", "symmetric": f.zero_point_bits == 0}
        if f.group_size:
            args.update(strategy="group", group_size=f.group_size)
        else:
            args["strategy"] = "channel"
        return args, "int-wo"
    if name == "fp8-e4m3":
        return {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"}, "fp8"
    if name == "nvfp4":  # compressed-tensors NVFP4 preset: e2m1 in groups of 16, fp8-e4m3 scales
        return {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16,
                "scale_dtype": "float8_e4m3fn"}, "nvfp4"
    if f.kind == "mx":  # OCP MX: blocks of 32 with an E8M0 (uint8) shared exponent
        return {"num_bits": f.element_bits, "type": "float", "symmetric": True, "strategy": "group", "group_size": 32,
                "scale_dtype": "uint8"}, f.family
    raise ExportError(field_name, f"compressed-tensors has no scheme for weight format {name!r}; "
                      "supported: int8/int4/int3/int2 (per channel or group), fp8-e4m3, nvfp4, mxfp4, mxfp6, mxfp8")


# Activation schemes (dynamic, per token or per block) and KV-cache schemes (static, per
# tensor) compressed-tensors defines, by plan format.
_CT_ACT: dict[str, dict[str, Any]] = {
    "int8": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
    "fp8-e4m3": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True},
    "nvfp4": {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16,
              "dynamic": "local", "scale_dtype": "float8_e4m3fn"},
    **{name: {"num_bits": bits, "type": "float", "symmetric": True, "strategy": "group", "group_size": 32,
              "dynamic": True, "scale_dtype": "uint8"} for name, bits in (("mxfp8", 8), ("mxfp4", 4))},
}
_CT_KV: dict[str, dict[str, Any]] = {
    "fp8-e4m3": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False},
    "int8": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "tensor", "dynamic": False},
}


def _ct_act_args(name: str, field_name: str) -> dict | None:
    if name in FLOAT16:
        return None
    if name not in _CT_ACT:
        raise ExportError(field_name, f"compressed-tensors has no activation scheme for {name!r}; supported: int8, fp8-e4m3, nvfp4, mxfp8, mxfp4")
    return dict(_CT_ACT[name])


# An FP8 E5M2 KV cache needs no scale in the checkpoint: its range (±57344) holds K and V unscaled,
# unlike E4M3's ±240 (vLLM docs, "FP8 E4M3 KV Cache", https://docs.vllm.ai/en/v0.6.6/quantization/fp8_e4m3_kvcache.html);
# the serving engine casts to it at run time (vLLM --kv-cache-dtype fp8_e5m2).
KV_RUNTIME_ONLY = ("fp8-e5m2",)


def _ct_kv_args(name: str) -> dict | None:
    if name in FLOAT16 or name in KV_RUNTIME_ONLY:
        return None
    if name not in _CT_KV:
        raise ExportError("kv", f"compressed-tensors kv_cache_scheme supports fp8-e4m3 and int8 KV caches (fp8-e5m2 needs none); "
                          f"the plan uses {name!r}")
    return dict(_CT_KV[name])


def _ct_groups(v: PlanView, ctx: ExportContext) -> tuple[dict, list[str], list[str], str]:
    """(config_groups, ignore, notes, top-level format)."""
    buckets: dict[str, dict] = {}
    members: dict[str, list[str]] = {}
    ignore: list[str] = []
    notes: list[str] = []
    formats: set[str] = set()
    for g in v.choices:
        w, a = weights_of(v, g), acts_of(v, g)
        wargs, fam = _ct_weight_args(w, f"choices.{g}.weights")
        aargs = _ct_act_args(a, f"choices.{g}.activations")
        mods = list(modules_of(g, ctx))
        if wargs is None and aargs is None:
            ignore.extend(mods)
            continue
        if wargs is None:
            raise ExportError(f"choices.{g}.weights", f"group {g!r} quantizes activations ({a}) but keeps {w} weights; "
                              "compressed-tensors quantizes activations only together with weights")
        if fam == "int-wo" and aargs is not None:
            fam = "int-w8a8" if w == "int8" else fam
        fmt = _CT_FORMAT[fam]
        formats.add(fmt)
        key = json.dumps([wargs, aargs, fmt], sort_keys=True)
        if key not in buckets:
            buckets[key] = {"weights": wargs, "input_activations": aargs, "format": fmt}
            members[key] = []
        members[key].extend(mods)
        if v.choices[g].get("low_rank"):
            notes.append(f"{g}: low-rank factorisation is not expressible in compressed-tensors; it is left out")
    groups = {}
    for i, (key, scheme) in enumerate(buckets.items()):
        groups[f"group_{i}"] = {"targets": compact_targets(members[key]), **scheme}
    top = formats.pop() if len(formats) == 1 else ("mixed-precision" if formats else "dense")
    return groups, compact_targets(ignore), notes, top


def _ct_check(v: PlanView, g: str) -> None:
    w, a = weights_of(v, g), acts_of(v, g)
    wargs, _ = _ct_weight_args(w, f"choices.{g}.weights")
    aargs = _ct_act_args(a, f"choices.{g}.activations")
    if wargs is None and aargs is not None:
        raise ExportError(f"choices.{g}.weights", f"group {g!r} quantizes activations ({a}) but keeps {w} weights; "
                          "compressed-tensors quantizes activations only together with weights")


def ct_quantization_config(v: PlanView, ctx: ExportContext, target: str = "compressed-tensors") -> tuple[dict, list[str]]:
    """The compressed-tensors ``QuantizationConfig`` of a plan (as ``target`` exports it: see
    :func:`.rules.as_exported`); every group it cannot express is named in one error."""
    check_groups(v, target, lambda g: _ct_check(v, g))
    groups, ignore, notes, top = _ct_groups(v, ctx)
    cfg = {
        "quant_method": "compressed-tensors",
        "format": top,
        "quantization_status": "compressed",
        "config_groups": groups,
        "ignore": ignore,
        "kv_cache_scheme": _ct_kv_args(v.kv),
    }
    if v.kv in KV_RUNTIME_ONLY:
        notes = [*notes, f"KV cache {v.kv}: no scales to store; the engine casts to it at run time "
                         "(vLLM: --kv-cache-dtype fp8_e5m2)"]
    sparsity = ct_sparsity_config(v, ctx, target)
    if sparsity is not None:
        cfg["sparsity_config"] = sparsity
    return cfg, notes


# compressed-tensors CompressionFormat of a sparse checkpoint (compressed_tensors/config/):
# 2:4 as a bitmask of the kept pair per 4 values; other sparsities as a plain bitmask.
_CT_SPARSE = {"2:4": "sparse-24-bitmask", "unstructured": "sparse-bitmask"}


def ct_sparsity_config(v: PlanView, ctx: ExportContext, target: str) -> dict | None:
    """The checkpoint's ``sparsity_config`` (``SparsityCompressionConfig``): one structure per
    model, so a plan mixing 2:4 with unstructured sparsity is refused naming the groups."""
    by: dict[str, list[str]] = {}
    for g in v.choices:
        s = sparsity_of(v, g)
        if s not in ("dense", ""):
            by.setdefault("2:4" if s == "2:4" else "unstructured", []).append(g)
    if not by:
        return None
    main = max(by, key=lambda k: len(by[k]))

    def check(g: str) -> None:
        s = sparsity_of(v, g)
        if s not in ("dense", "") and ("2:4" if s == "2:4" else "unstructured") != main:
            raise ExportError(f"choices.{g}.sparsity", f"a compressed-tensors checkpoint has one sparsity_config; the plan "
                              f"mixes {main} with {s}")

    check_groups(v, target, check)
    mods = [m for g in by[main] for m in modules_of(g, ctx)]
    return {"format": _CT_SPARSE[main], "targets": compact_targets(mods), "ignore": [], "sparsity_structure": main}


# ---------------------------------------------------------------------------
# ModelOpt / TensorRT-LLM
# ---------------------------------------------------------------------------

_TRT_KV = {"fp8-e4m3": "FP8", "int8": "INT8", "nvfp4": "NVFP4"}


def _trt_algo(w: str, a: str, field_name: str) -> tuple[str | None, dict]:
    """(QuantAlgo name, extra per-layer keys) of a weight/activation pair; (None, {}) for 16-bit."""
    if w in FLOAT16:
        if a not in FLOAT16:
            raise ExportError(field_name, f"TensorRT-LLM quantizes activations only with weights; got {w} weights with {a} activations")
        return None, {}
    f = format_of(w)
    if w == "fp8-e4m3":
        if a != "fp8-e4m3":  # QuantAlgo.FP8 quantizes activations too: never widen a weight-only plan to W8A8
            raise ExportError(field_name, f"TensorRT-LLM's FP8 QuantAlgo is W8A8 (fp8 activations); the plan keeps {a} "
                              "activations with fp8 weights (weight-only), which TensorRT-LLM has no QuantAlgo for")
        return "FP8", {}
    if w == "nvfp4":
        algo = {"nvfp4": "NVFP4", "fp8-e4m3": "W4A8_NVFP4_FP8"}.get(a)
        return algo or _bad_trt(w, a, field_name), {"group_size": 16}
    if w == "mxfp4":
        algo = {"fp8-e4m3": "W4A8_MXFP4_FP8", "mxfp8": "W4A8_MXFP4_MXFP8"}.get(a, "W4A16_MXFP4" if a in FLOAT16 else None)
        return algo or _bad_trt(w, a, field_name), {"group_size": 32}
    if f.kind == "int" and f.element_bits == 8 and not f.group_size:
        if a in FLOAT16:
            return "W8A16", {}
        if a == "int8":
            return "W8A8_SQ_PER_CHANNEL", {}
    if f.kind == "int" and f.element_bits == 4:
        extra = {"group_size": f.group_size, "has_zero_point": f.zero_point_bits > 0} if f.group_size else {}
        if a in FLOAT16:
            return ("W4A16_AWQ" if f.group_size else "W4A16"), extra
        if a == "fp8-e4m3" and f.group_size:
            return "W4A8_AWQ", extra
    return _bad_trt(w, a, field_name), {}


def _bad_trt(w: str, a: str, field_name: str):
    raise ExportError(field_name, f"TensorRT-LLM / ModelOpt have no QuantAlgo for {w} weights with {a} activations; "
                      "supported: fp8, nvfp4, mxfp4, int8 (W8A16, W8A8 SmoothQuant), int4 (W4A16, W4A16_AWQ, W4A8_AWQ)")


def modelopt_layers(v: PlanView, ctx: ExportContext, target: str = "modelopt-mixed") -> tuple[dict, list[str], Counter]:
    check_groups(v, target, lambda g: _trt_algo(weights_of(v, g), acts_of(v, g), f"choices.{g}.weights"))
    dense_only(v, target, "TensorRT-LLM / ModelOpt's quantization config (quant_algo, quantized_layers)")
    layers: dict[str, dict] = {}
    exclude: list[str] = []
    algos: Counter = Counter()
    for g in v.choices:
        algo, extra = _trt_algo(weights_of(v, g), acts_of(v, g), f"choices.{g}.weights")
        for m in modules_of(g, ctx):
            if algo is None:
                exclude.append(m)
            else:
                layers[m] = {"quant_algo": algo, **extra}
                algos[json.dumps(layers[m], sort_keys=True)] += 1
    return layers, exclude, algos


def trt_kv_algo(v: PlanView) -> str | None:
    if v.kv in FLOAT16:
        return None
    if v.kv not in _TRT_KV:
        raise ExportError("kv", f"TensorRT-LLM KV-cache quantization supports FP8, INT8 and NVFP4; the plan's KV cache is {v.kv!r}")
    return _TRT_KV[v.kv]
