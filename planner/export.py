"""Deployment export: turn a Plan into the configuration files of a serving or training engine.

One registry (:data:`EXPORTERS`) maps a target name to a pure function
``(plan dict, ExportContext) -> Export``; :func:`export_plan` is the one verb. An
:class:`Export` is data: the files to write (relative path, text) and the command a
user runs next. Nothing touches the disk until :func:`write_export`, which writes
every file or none.

Targets and the published names each one follows (tests check them against the
target's own package where one is pip-installable, else against these documents):

* ``vllm`` — vLLM engine arguments (docs.vllm.ai, "Engine Arguments"; ``vllm serve``).
* ``compressed-tensors`` — llm-compressor recipe (``QuantizationModifier`` with
  ``config_groups`` targeting module names, ``SparseGPTModifier``) and the
  compressed-tensors ``QuantizationConfig`` written into the checkpoint's config.json.
* ``hf`` — a transformers ``quantization_config`` (bitsandbytes, fine-grained FP8, or
  compressed-tensors for per-layer mixtures).
* ``modelopt-mixed`` — ModelOpt's unified checkpoint ``hf_quant_config.json`` with a
  per-layer ``quantized_layers`` map (``quant_algo: MIXED_PRECISION``).
* ``trtllm`` — TensorRT-LLM ``QuantConfig`` (``QuantAlgo`` names from
  ``tensorrt_llm/quantization/mode.py``), parallel sizes and ``trtllm-serve`` flags.
* ``llamacpp`` — ``llama-quantize`` with per-tensor ``--tensor-type NAME=TYPE``
  overrides (tools/quantize/quantize.cpp), GGUF tensor names from gguf-py's
  ``tensor_mapping.py``.
* ``megatron`` — Megatron-LM training arguments (``megatron/training/arguments.py``).
* ``yaml`` / ``json`` — the plan itself.

A choice the target cannot express raises :class:`ExportError` naming the plan field
(``choices.<group>.weights``) instead of writing a configuration that silently differs
from the plan. Approximations a target forces (llama.cpp's 256-value super-blocks for
int4 with group 128, say) are written and reported in ``Export.notes``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hwmodels.errors import TierwiseError

__all__ = [
    "EXPORTERS",
    "Export",
    "ExportContext",
    "ExportError",
    "ExportFile",
    "Exporter",
    "export_formats",
    "export_plan",
    "group_modules",
    "write_export",
]

#: vLLM's ``cpu_offload_gb`` is in GiB (vLLM engine arguments: "The space in GiB to
#: offload to CPU, per GPU"); the only binary unit this module uses.
_GIB = 2**30

#: Fraction of device memory kept free above the plan's predicted footprint when
#: setting vLLM's ``gpu_memory_utilization`` / TensorRT-LLM's KV-cache fraction:
#: CUDA context, NCCL buffers and CUDA graphs live outside the engine's budget.
_HEADROOM_FRACTION = 0.05


class ExportError(TierwiseError, ValueError):
    """A plan that a target cannot express. ``field`` names the plan field."""

    code = "export_unsupported"

    def __init__(self, field: str, message: str) -> None:
        TierwiseError.__init__(self, message, field=field)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportFile:
    """One file of an export: ``path`` relative to the output folder."""

    path: str
    content: str
    media_type: str = "text/plain"

    def __post_init__(self) -> None:
        p = Path(self.path)
        if p.is_absolute() or ".." in p.parts or not self.path:
            raise ExportError("path", f"export file paths must be relative and stay inside the output folder; got {self.path!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Export:
    """What an exporter produced: files, the next command, and notes for the user."""

    format: str
    files: tuple[ExportFile, ...]
    next_command: str
    notes: tuple[str, ...] = ()

    def file(self, path: str) -> ExportFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": [{"path": f.path, "media_type": f.media_type, "content": f.content} for f in self.files],
            "next_command": self.next_command,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportContext:
    """What an exporter may know beyond the plan.

    ``modules`` maps a decision-group FQN to the module names it covers (from
    :func:`group_modules`); without it, groups are expanded by name (``.qkv`` →
    q/k/v projections, ``.gate_up`` → gate/up). ``device_capacity_bytes`` is the
    device tier of one accelerator; ``devices_per_node`` sizes ``torchrun``.
    ``model_path`` is what the commands load (a Hugging Face repo id or a folder).
    """

    model_path: str | None = None
    modules: Mapping[str, tuple[str, ...]] | None = None
    arch: Any = None
    device_capacity_bytes: float | None = None
    devices_per_node: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Exporter:
    name: str
    description: str
    func: Callable[[dict, ExportContext], Export]


# ---------------------------------------------------------------------------
# Plan access
# ---------------------------------------------------------------------------


def _plan_dict(plan: Any) -> dict:
    if isinstance(plan, Mapping):
        return dict(plan)
    from planner.plan import plan_to_dict  # a Plan object

    return plan_to_dict(plan)


def _need(d: Mapping, key: str, where: str = "") -> Any:
    if not isinstance(d, Mapping) or key not in d or d[key] is None:
        name = f"{where}.{key}" if where else key
        raise ExportError(name, f"the plan has no '{name}'; export needs a complete plan (see `tierwise plan`)")
    return d[key]


def _int(d: Mapping, key: str, where: str, default: int | None = None) -> int:
    v = d.get(key, default) if isinstance(d, Mapping) else default
    if v is None:
        return _need(d, key, where)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
        raise ExportError(f"{where}.{key}", f"plan field '{where}.{key}' must be a non-negative integer; got {v!r}")
    return int(v)


@dataclass(frozen=True, slots=True)
class _View:
    """The parts of a plan every exporter reads, checked once."""

    model: str
    hardware: str
    tp: int
    pp: int
    dp: int
    ep: int
    batch: int
    prompt: int
    gen: int
    kv: str
    choices: dict[str, dict]
    predicted: dict
    raw: dict

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp


def _view(plan: Any) -> _View:
    d = _plan_dict(plan)
    layout = _need(d, "layout")
    workload = _need(d, "workload")
    choices = _need(d, "choices")
    if not isinstance(choices, Mapping):
        raise ExportError("choices", f"plan field 'choices' must map group names to choices; got {type(choices).__name__}")
    for g, c in choices.items():
        if not isinstance(c, Mapping):
            raise ExportError(f"choices.{g}", f"choice for group {g!r} must be a mapping; got {type(c).__name__}")
    kv = d.get("kv") or "bf16"
    return _View(
        model=str(_need(d, "model")),
        hardware=str(_need(d, "hardware")),
        tp=max(1, _int(layout, "tp", "layout", 1)),
        pp=max(1, _int(layout, "pp", "layout", 1)),
        dp=max(1, _int(layout, "dp", "layout", 1)),
        ep=max(1, _int(layout, "ep", "layout", 1)),
        batch=max(1, _int(workload, "batch", "workload", 1)),
        prompt=_int(workload, "prompt", "workload", 0),
        gen=_int(workload, "gen", "workload", 0),
        kv=_canonical(str(kv), "kv"),
        choices={str(g): dict(c) for g, c in choices.items()},
        predicted=dict(d.get("predicted") or {}),
        raw=d,
    )


def _canonical(name: str, field_name: str) -> str:
    from planner.formats import FormatError, get_format

    try:
        return get_format(name).name
    except FormatError as e:
        raise ExportError(field_name, f"plan field '{field_name}': {e}") from None


def _fmt(name: str):
    from planner.formats import get_format

    return get_format(name)


_FLOAT16 = frozenset({"bf16", "fp16", "fp32"})


def _weights(v: _View, group: str) -> str:
    return _canonical(str(v.choices[group].get("weights") or "bf16"), f"choices.{group}.weights")


def _acts(v: _View, group: str) -> str:
    return _canonical(str(v.choices[group].get("activations") or "bf16"), f"choices.{group}.activations")


def _sparsity(v: _View, group: str) -> str:
    s = v.choices[group].get("sparsity") or "dense"
    return str(s)


# ---------------------------------------------------------------------------
# Groups → module names
# ---------------------------------------------------------------------------

# Decision groups that bundle several modules (planner/workload.py): q/k/v share one
# choice, gate/up share one choice.
_GROUP_MEMBERS = {"qkv": ("q_proj", "k_proj", "v_proj"), "gate_up": ("gate_proj", "up_proj")}


def _hf_module(name: str) -> str:
    # Hugging Face *ForCausalLM keeps the LM head at the top level ("lm_head"), not
    # under the base model ("model.lm_head").
    return "lm_head" if name == "model.lm_head" else name


def group_modules(arch: Any) -> dict[str, tuple[str, ...]]:
    """Decision-group FQN → module names (Hugging Face naming) for a model."""
    from planner.workload import WEIGHTED_KINDS, build_workload

    out: dict[str, list[str]] = {}
    for block in build_workload(arch).blocks:
        for i in range(block.count):
            for op in block.ops:
                if op.kind not in WEIGHTED_KINDS or op.tied_to is not None:
                    continue
                out.setdefault(block.group_fqn(i, op), []).append(_hf_module(block.fqn(i, op)))
    return {g: tuple(m) for g, m in out.items()}


def _modules_of(group: str, ctx: ExportContext) -> tuple[str, ...]:
    if ctx.modules is not None and group in ctx.modules:
        return tuple(ctx.modules[group])
    head, _, last = group.rpartition(".")
    if last in _GROUP_MEMBERS and head:
        return tuple(f"{head}.{m}" for m in _GROUP_MEMBERS[last])
    return (_hf_module(group),)


_LAYER = re.compile(r"^(.*?)\.(\d+)\.(.+)$")


def _compact(names: list[str], *, anchor_end: bool = True) -> list[str]:
    """Module names → compressed-tensors targets: exact names, or one ``re:`` pattern
    per (prefix, suffix) covering several layer indices."""
    buckets: dict[tuple[str, str], list[int]] = {}
    singles: list[str] = []
    for n in names:
        m = _LAYER.match(n)
        if m:
            buckets.setdefault((m.group(1), m.group(3)), []).append(int(m.group(2)))
        else:
            singles.append(n)
    out = list(dict.fromkeys(singles))
    for (head, tail), idx in buckets.items():
        idx = sorted(set(idx))
        if len(idx) == 1:
            out.append(f"{head}.{idx[0]}.{tail}")
        else:
            alt = "|".join(str(i) for i in idx)
            out.append(f"re:^{re.escape(head)}\\.({alt})\\.{re.escape(tail)}{'$' if anchor_end else ''}")
    return out


def _model_path(v: _View, ctx: ExportContext) -> str:
    if ctx.model_path:
        return ctx.model_path
    src = getattr(ctx.arch, "source", "") or ""
    m = re.match(r"^\s*([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)\s+config\.json", src)
    return m.group(1) if m else v.model


def _quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _multiline(args: list[str]) -> str:
    """A shell command with one flag (and its value) per line."""
    parts: list[str] = []
    for a in args:
        if a.startswith("--") or not parts:
            parts.append(shlex.quote(a))
        else:
            parts[-1] += " " + shlex.quote(a)
    return " \\\n  ".join(parts)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def _capacity(v: _View, ctx: ExportContext) -> float | None:
    if ctx.device_capacity_bytes:
        return float(ctx.device_capacity_bytes)
    tiers = v.predicted.get("tiers")
    if isinstance(tiers, Mapping):
        for t in tiers.values():
            if isinstance(t, Mapping) and t.get("role") == "device" and t.get("capacity_bytes"):
                return float(t["capacity_bytes"])
    cap = (v.raw.get("constraints") or {}).get("max_memory_per_device_bytes")
    return float(cap) if cap else None


def _memory_fraction(v: _View, ctx: ExportContext) -> float | None:
    """Predicted per-device bytes as a fraction of device memory, plus headroom,
    rounded up to 0.01 and kept within vLLM's accepted (0, 1]."""
    cap = _capacity(v, ctx)
    need = v.predicted.get("per_device_bytes")
    if not cap or not need:
        return None
    frac = math.ceil((float(need) / cap + _HEADROOM_FRACTION) * 100) / 100
    return min(max(frac, 0.05), 0.98)


def _host_offload_bytes(v: _View) -> float:
    tiers = v.predicted.get("tiers")
    total = 0.0
    if isinstance(tiers, Mapping):
        for t in tiers.values():
            if isinstance(t, Mapping) and t.get("role") == "host":
                total += float(t.get("weights_bytes") or 0.0)
    return total


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
    if name in _FLOAT16:
        return None, None
    f = _fmt(name)
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


def _ct_act_args(name: str, field_name: str) -> dict | None:
    if name in _FLOAT16:
        return None
    if name == "int8":
        return {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True}
    if name == "fp8-e4m3":
        return {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True}
    if name == "nvfp4":
        return {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "tensor_group", "group_size": 16,
                "dynamic": "local", "scale_dtype": "float8_e4m3fn"}
    if name in ("mxfp8", "mxfp4"):
        return {"num_bits": _fmt(name).element_bits, "type": "float", "symmetric": True, "strategy": "group",
                "group_size": 32, "dynamic": True, "scale_dtype": "uint8"}
    raise ExportError(field_name, f"compressed-tensors has no activation scheme for {name!r}; supported: int8, fp8-e4m3, nvfp4, mxfp8, mxfp4")


def _ct_kv_args(name: str) -> dict | None:
    if name in _FLOAT16:
        return None
    if name == "fp8-e4m3":
        return {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor", "dynamic": False}
    if name == "int8":
        return {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "tensor", "dynamic": False}
    raise ExportError("kv", f"compressed-tensors kv_cache_scheme supports fp8-e4m3 and int8 KV caches; the plan uses {name!r}")


def _ct_groups(v: _View, ctx: ExportContext) -> tuple[dict, list[str], list[str], str]:
    """(config_groups, ignore, notes, top-level format)."""
    buckets: dict[str, dict] = {}
    members: dict[str, list[str]] = {}
    ignore: list[str] = []
    notes: list[str] = []
    formats: set[str] = set()
    for g in v.choices:
        w, a = _weights(v, g), _acts(v, g)
        wargs, fam = _ct_weight_args(w, f"choices.{g}.weights")
        aargs = _ct_act_args(a, f"choices.{g}.activations")
        mods = list(_modules_of(g, ctx))
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
        groups[f"group_{i}"] = {"targets": _compact(members[key]), **scheme}
    top = formats.pop() if len(formats) == 1 else ("mixed-precision" if formats else "dense")
    return groups, _compact(ignore), notes, top


def _ct_quantization_config(v: _View, ctx: ExportContext) -> tuple[dict, list[str]]:
    groups, ignore, notes, top = _ct_groups(v, ctx)
    cfg = {
        "quant_method": "compressed-tensors",
        "format": top,
        "quantization_status": "compressed",
        "config_groups": groups,
        "ignore": ignore,
        "kv_cache_scheme": _ct_kv_args(v.kv),
    }
    return cfg, notes


def _sparsity_stages(v: _View, ctx: ExportContext) -> dict:
    """llm-compressor SparseGPTModifier stages, one per distinct sparsity."""
    from planner.formats import parse_sparsity

    by: dict[str, list[str]] = {}
    for g in v.choices:
        s = _sparsity(v, g)
        try:
            sp = parse_sparsity(s)
        except ValueError as e:
            raise ExportError(f"choices.{g}.sparsity", str(e)) from None
        if sp.sparsity == 0:
            continue
        by.setdefault(s, []).extend(_modules_of(g, ctx))
    stages: dict[str, Any] = {}
    for i, (s, mods) in enumerate(by.items()):
        if s == "2:4":
            mod = {"sparsity": 0.5, "mask_structure": "2:4"}
        else:
            mod = {"sparsity": float(parse_sparsity(s).sparsity), "mask_structure": "0:0"}
        mod["targets"] = _compact(mods)
        stages[f"sparsity_stage_{i}"] = {"sparsity_modifiers": {"SparseGPTModifier": mod}}
    return stages


def _export_compressed_tensors(v: _View, ctx: ExportContext) -> Export:
    qcfg, notes = _ct_quantization_config(v, ctx)
    recipe: dict[str, Any] = dict(_sparsity_stages(v, ctx))
    modifier: dict[str, Any] = {"ignore": qcfg["ignore"], "config_groups": qcfg["config_groups"]}
    if qcfg["kv_cache_scheme"] is not None:
        modifier["kv_cache_scheme"] = qcfg["kv_cache_scheme"]
    if qcfg["config_groups"] or qcfg["kv_cache_scheme"] is not None:
        recipe["quant_stage"] = {"quant_modifiers": {"QuantizationModifier": modifier}}
    model = _model_path(v, ctx)
    out_dir = f"{v.model}-tierwise"
    needs_data = any(s.startswith("sparsity_stage") for s in recipe) or qcfg["kv_cache_scheme"] is not None or any(
        g["input_activations"] is not None and g["input_activations"].get("dynamic") is False
        for g in qcfg["config_groups"].values()
    )
    script = "\n".join([
        '"""Apply the Tierwise plan with llm-compressor and save a compressed-tensors checkpoint."""',
        "from llmcompressor import oneshot",
        "",
        "oneshot(",
        f"    model={model!r},",
        '    recipe="recipe.yaml",',
        *(['    dataset="open_platypus",  # calibration data for sparsity / static scales', "    num_calibration_samples=512,"] if needs_data else []),
        f"    output_dir={out_dir!r},",
        ")",
        "",
    ])
    return Export(
        format="compressed-tensors",
        files=(
            ExportFile(path="recipe.yaml", content=yaml.safe_dump(recipe, sort_keys=False), media_type="application/yaml"),
            ExportFile(path="quantization_config.json", content=_json(qcfg), media_type="application/json"),
            ExportFile(path="oneshot.py", content=script, media_type="text/x-python"),
        ),
        next_command=f"python oneshot.py && vllm serve {shlex.quote(out_dir)}",
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# vLLM
# ---------------------------------------------------------------------------

_VLLM_KV = {"bf16": "auto", "fp16": "auto", "fp32": "auto", "fp8-e4m3": "fp8_e4m3", "fp8-e5m2": "fp8_e5m2"}


def _export_vllm(v: _View, ctx: ExportContext) -> Export:
    notes: list[str] = []
    weights = {_weights(v, g) for g in v.choices}
    acts = {_acts(v, g) for g in v.choices}
    sparse = any(_sparsity(v, g) not in ("dense", "") for g in v.choices)
    model = _model_path(v, ctx)
    if weights <= _FLOAT16 and acts <= _FLOAT16 and not sparse:
        quantization = None
    elif weights <= _FLOAT16 | {"fp8-e4m3"} and acts <= _FLOAT16 | {"fp8-e4m3"} and not sparse and weights & {"fp8-e4m3"} \
            and all(_weights(v, g) == "fp8-e4m3" or _acts(v, g) in _FLOAT16 for g in v.choices):
        # vLLM quantizes a 16-bit checkpoint to FP8 when it loads it (per-tensor weights,
        # dynamic per-token activations); groups left in 16 bit need a checkpoint instead.
        if any(_weights(v, g) in _FLOAT16 for g in v.choices):
            quantization = "compressed-tensors"
        else:
            quantization = "fp8"
    else:
        quantization = "compressed-tensors"
    if quantization == "compressed-tensors":
        _ct_quantization_config(v, ctx)  # raises ExportError for formats vLLM cannot load
        model = f"{v.model}-tierwise"
        notes.append(f"serve the compressed-tensors checkpoint: run `tierwise export PLAN --format compressed-tensors` "
                     f"and its oneshot.py first; it writes {model}/")
    if v.kv not in _VLLM_KV:
        raise ExportError("kv", f"vLLM's --kv-cache-dtype supports auto (16-bit), fp8_e4m3 and fp8_e5m2; the plan's KV cache is {v.kv!r}")
    args: dict[str, Any] = {
        "model": model,
        "tensor_parallel_size": v.tp,
        "pipeline_parallel_size": v.pp,
    }
    if v.dp > 1:
        args["data_parallel_size"] = v.dp
    if v.ep > 1:
        args["enable_expert_parallel"] = True
    if quantization:
        args["quantization"] = quantization
    args["dtype"] = "float16" if acts == {"fp16"} else "bfloat16"
    args["kv_cache_dtype"] = _VLLM_KV[v.kv]
    args["max_model_len"] = max(1, v.prompt + v.gen)
    args["max_num_seqs"] = v.batch
    frac = _memory_fraction(v, ctx)
    if frac is not None:
        args["gpu_memory_utilization"] = frac
    else:
        notes.append("no device capacity known: gpu_memory_utilization left at vLLM's default (0.9)")
    offload = _host_offload_bytes(v)
    if offload > 0:
        args["cpu_offload_gb"] = math.ceil(offload / _GIB * 100) / 100
    cli = ["vllm", "serve", args["model"]]
    for k, val in args.items():
        if k == "model":
            continue
        flag = "--" + k.replace("_", "-")
        if val is True:
            cli.append(flag)
        else:
            cli += [flag, str(val)]
    script = "#!/usr/bin/env bash\n# vLLM server for plan of " + v.model + " on " + v.hardware + "\nset -euo pipefail\n" + _multiline(cli) + "\n"
    return Export(
        format="vllm",
        files=(
            ExportFile(path="vllm_args.json", content=_json(args), media_type="application/json"),
            ExportFile(path="serve.sh", content=script, media_type="text/x-shellscript"),
        ),
        next_command=_quote(cli),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# transformers quantization_config
# ---------------------------------------------------------------------------


def _export_hf(v: _View, ctx: ExportContext) -> Export:
    notes: list[str] = []
    quantized = {g: _weights(v, g) for g in v.choices if _weights(v, g) not in _FLOAT16}
    acts = {_acts(v, g) for g in v.choices}
    skip_plain = [m for g in v.choices if g not in quantized for m in _modules_of(g, ctx)]
    kinds = set(quantized.values())
    model = _model_path(v, ctx)
    if v.kv not in _FLOAT16:
        notes.append(f"transformers keeps its KV cache in 16 bit; the plan's {v.kv} KV cache applies when served by vLLM or TensorRT-LLM")
    if not quantized:
        qcfg: dict[str, Any] | None = None
    elif acts <= _FLOAT16 and kinds <= {"nf4", "nf4-dq", "fp4-e2m1"} and len({k.split("-")[0] for k in kinds}) == 1:
        # bitsandbytes 4-bit (Dettmers et al., QLoRA 2023): NF4 or FP4 with optional double quantization.
        qcfg = {
            "quant_method": "bitsandbytes",
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "fp4" if kinds == {"fp4-e2m1"} else "nf4",
            "bnb_4bit_use_double_quant": kinds == {"nf4-dq"},
            "bnb_4bit_compute_dtype": "bfloat16",
            "llm_int8_skip_modules": skip_plain or None,
        }
        if len(kinds) > 1:
            raise ExportError("choices", "bitsandbytes applies one 4-bit type to the whole model; the plan mixes " + ", ".join(sorted(kinds)))
    elif acts <= _FLOAT16 and kinds == {"int8"}:
        # bitsandbytes LLM.int8 (Dettmers et al. 2022): per-row int8 weights, 16-bit compute.
        qcfg = {"quant_method": "bitsandbytes", "load_in_8bit": True, "llm_int8_skip_modules": skip_plain or None}
    elif kinds == {"fp8-e4m3"} and acts <= _FLOAT16 | {"fp8-e4m3"}:
        # transformers FineGrainedFP8Config: e4m3 weights with 128x128 block scales,
        # activations quantized per 1x128 block at run time.
        qcfg = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
                "modules_to_not_convert": skip_plain or None}
        notes.append("FineGrainedFP8 stores one scale per 128x128 block; the plan priced one per output channel (a few bytes per tensor apart)")
    else:
        qcfg, more = _ct_quantization_config(v, ctx)
        notes += more
    snippet = "\n".join([
        '"""Load the model the way the Tierwise plan quantizes it."""',
        "import json",
        "",
        "from transformers import AutoModelForCausalLM",
        "from transformers.quantizers.auto import AutoQuantizationConfig",
        "",
        'with open("quantization_config.json") as f:',
        "    qcfg = json.load(f)",
        "kwargs = {} if qcfg is None else {\"quantization_config\": AutoQuantizationConfig.from_dict(qcfg)}",
        f"model = AutoModelForCausalLM.from_pretrained({model!r}, torch_dtype=\"auto\", device_map=\"auto\", **kwargs)",
        "print(model.get_memory_footprint() / 1e9, \"GB\")",
        "",
    ])
    if qcfg is not None and qcfg.get("quant_method") == "compressed-tensors":
        notes.append("transformers loads compressed-tensors configs from a checkpoint made by llm-compressor "
                     "(`tierwise export PLAN --format compressed-tensors`); this config documents that checkpoint")
    return Export(
        format="hf",
        files=(
            ExportFile(path="quantization_config.json", content=_json(qcfg), media_type="application/json"),
            ExportFile(path="load.py", content=snippet, media_type="text/x-python"),
        ),
        next_command="python load.py",
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# ModelOpt / TensorRT-LLM
# ---------------------------------------------------------------------------

_TRT_KV = {"fp8-e4m3": "FP8", "int8": "INT8", "nvfp4": "NVFP4"}


def _trt_algo(w: str, a: str, field_name: str) -> tuple[str | None, dict]:
    """(QuantAlgo name, extra per-layer keys) of a weight/activation pair; (None, {}) for 16-bit."""
    if w in _FLOAT16:
        if a not in _FLOAT16:
            raise ExportError(field_name, f"TensorRT-LLM quantizes activations only with weights; got {w} weights with {a} activations")
        return None, {}
    f = _fmt(w)
    if w == "fp8-e4m3":
        return "FP8", {}
    if w == "nvfp4":
        algo = {"nvfp4": "NVFP4", "fp8-e4m3": "W4A8_NVFP4_FP8"}.get(a)
        return algo or _bad_trt(w, a, field_name), {"group_size": 16}
    if w == "mxfp4":
        algo = {"fp8-e4m3": "W4A8_MXFP4_FP8", "mxfp8": "W4A8_MXFP4_MXFP8"}.get(a, "W4A16_MXFP4" if a in _FLOAT16 else None)
        return algo or _bad_trt(w, a, field_name), {"group_size": 32}
    if f.kind == "int" and f.element_bits == 8 and not f.group_size:
        if a in _FLOAT16:
            return "W8A16", {}
        if a == "int8":
            return "W8A8_SQ_PER_CHANNEL", {}
    if f.kind == "int" and f.element_bits == 4:
        extra = {"group_size": f.group_size, "has_zero_point": f.zero_point_bits > 0} if f.group_size else {}
        if a in _FLOAT16:
            return ("W4A16_AWQ" if f.group_size else "W4A16"), extra
        if a == "fp8-e4m3" and f.group_size:
            return "W4A8_AWQ", extra
    return _bad_trt(w, a, field_name), {}


def _bad_trt(w: str, a: str, field_name: str):
    raise ExportError(field_name, f"TensorRT-LLM / ModelOpt have no QuantAlgo for {w} weights with {a} activations; "
                      "supported: fp8, nvfp4, mxfp4, int8 (W8A16, W8A8 SmoothQuant), int4 (W4A16, W4A16_AWQ, W4A8_AWQ)")


def _modelopt_layers(v: _View, ctx: ExportContext) -> tuple[dict, list[str], Counter]:
    layers: dict[str, dict] = {}
    exclude: list[str] = []
    algos: Counter = Counter()
    for g in v.choices:
        algo, extra = _trt_algo(_weights(v, g), _acts(v, g), f"choices.{g}.weights")
        for m in _modules_of(g, ctx):
            if algo is None:
                exclude.append(m)
            else:
                layers[m] = {"quant_algo": algo, **extra}
                algos[json.dumps(layers[m], sort_keys=True)] += 1
    return layers, exclude, algos


def _trt_kv(v: _View) -> str | None:
    if v.kv in _FLOAT16:
        return None
    if v.kv not in _TRT_KV:
        raise ExportError("kv", f"TensorRT-LLM KV-cache quantization supports FP8, INT8 and NVFP4; the plan's KV cache is {v.kv!r}")
    return _TRT_KV[v.kv]


def _tool_version(v: _View) -> str:
    return str(v.raw.get("tool_version") or "unknown")


def _export_modelopt(v: _View, ctx: ExportContext) -> Export:
    layers, exclude, _ = _modelopt_layers(v, ctx)
    cfg = {
        "producer": {"name": "tierwise", "version": _tool_version(v)},
        "quantization": {
            "quant_algo": "MIXED_PRECISION",
            "kv_cache_quant_algo": _trt_kv(v),
            "quantized_layers": layers,
            "exclude_modules": exclude,
        },
    }
    model = f"{v.model}-tierwise"
    return Export(
        format="modelopt-mixed",
        files=(ExportFile(path="hf_quant_config.json", content=_json(cfg), media_type="application/json"),),
        next_command=f"vllm serve {shlex.quote(model)} --quantization modelopt_mixed --tensor-parallel-size {v.tp}",
        notes=(f"place hf_quant_config.json in {model}/ beside weights quantized per layer as listed (ModelOpt `mtq.quantize` "
               "with a per-module quant_cfg writes such a checkpoint)",),
    )


_QFORMAT = {  # TensorRT-LLM examples/quantization/quantize.py --qformat per QuantAlgo
    "FP8": "fp8", "NVFP4": "nvfp4", "W4A16_AWQ": "int4_awq", "W4A8_AWQ": "w4a8_awq", "W8A16": "int8_wo",
    "W4A16": "int4_wo", "W8A8_SQ_PER_CHANNEL": "int8_sq", "W4A16_MXFP4": "w4a16_mxfp4", "W4A8_MXFP4_FP8": "w4a8_mxfp4_fp8",
    "W4A8_NVFP4_FP8": "w4a8_nvfp4_fp8",
}
_QFORMAT_KV = {"FP8": "fp8", "INT8": "int8", "NVFP4": "nvfp4"}


def _export_trtllm(v: _View, ctx: ExportContext) -> Export:
    layers, exclude, algos = _modelopt_layers(v, ctx)
    kv = _trt_kv(v)
    notes: list[str] = []
    files: list[ExportFile] = []
    if not layers:
        quant: dict[str, Any] = {"quant_algo": None, "kv_cache_quant_algo": kv}
        qformat = "full_prec"
    elif len(algos) == 1:
        one = json.loads(next(iter(algos)))
        quant = {"quant_algo": one["quant_algo"], "kv_cache_quant_algo": kv}
        if "group_size" in one:
            quant["group_size"] = one["group_size"]
        if one.get("has_zero_point"):
            quant["has_zero_point"] = True
        # TensorRT-LLM matches exclude_modules by name (wildcards, not "re:" patterns): list them.
        quant["exclude_modules"] = exclude or None
        qformat = _QFORMAT[one["quant_algo"]]
    else:
        quant = {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": kv}
        qformat = None
        files.append(ExportFile(path="quant_cfg.json", media_type="application/json", content=_json(
            {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": kv, "quantized_layers": layers, "exclude_modules": exclude})))
        notes.append("several QuantAlgos per layer: TensorRT-LLM reads them from quant_cfg.json (MIXED_PRECISION) in the quantized checkpoint")
    frac = _memory_fraction(v, ctx)
    max_seq = max(1, v.prompt + v.gen)
    kv_frac = None
    if frac is not None:
        # trtllm-serve's KV fraction is of the memory left after weights are loaded.
        cap = _capacity(v, ctx) or 0.0
        weights_dev = float(v.predicted.get("weights_bytes") or 0.0) / max(1, v.tp * v.pp)
        free = cap - weights_dev
        kv_need = float(v.predicted.get("kv_cache_bytes") or 0.0) / max(1, v.tp * v.pp)
        if free > 0 and kv_need > 0:
            kv_frac = min(0.95, math.ceil((kv_need / free + _HEADROOM_FRACTION) * 100) / 100)
    llm_args: dict[str, Any] = {
        "tensor_parallel_size": v.tp,
        "pipeline_parallel_size": v.pp,
        "max_batch_size": v.batch,
        "max_seq_len": max_seq,
        "quant_config": {k: val for k, val in quant.items() if val is not None},
    }
    if v.ep > 1:
        llm_args["moe_expert_parallel_size"] = v.ep
    if kv_frac is not None:
        llm_args["kv_cache_config"] = {"free_gpu_memory_fraction": kv_frac}
    ckpt = f"{v.model}-tierwise-trtllm"
    src = _model_path(v, ctx)
    cmds = []
    if qformat and qformat != "full_prec":
        q = ["python", "examples/quantization/quantize.py", "--model_dir", src, "--qformat", qformat,
             "--output_dir", ckpt, "--tp_size", str(v.tp), "--pp_size", str(v.pp)]
        if kv:
            q += ["--kv_cache_dtype", _QFORMAT_KV[kv]]
        cmds.append(q)
        serve_model = ckpt
    else:
        serve_model = src if not layers else ckpt
    serve = ["trtllm-serve", serve_model, "--tp_size", str(v.tp), "--pp_size", str(v.pp),
             "--max_batch_size", str(v.batch), "--max_seq_len", str(max_seq)]
    if v.ep > 1:
        serve += ["--ep_size", str(v.ep)]
    if kv_frac is not None:
        serve += ["--kv_cache_free_gpu_memory_fraction", str(kv_frac)]
    serve += ["--extra_llm_api_options", "extra_llm_api_options.yaml"]
    cmds.append(serve)
    script = "#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(_multiline(c) for c in cmds) + "\n"
    files = [
        ExportFile(path="extra_llm_api_options.yaml", content=yaml.safe_dump(llm_args, sort_keys=False), media_type="application/yaml"),
        ExportFile(path="trtllm.sh", content=script, media_type="text/x-shellscript"),
        *files,
    ]
    return Export(format="trtllm", files=tuple(files), next_command=_quote(cmds[0]), notes=tuple(notes))


# ---------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------

# Hugging Face module name (inside a decoder layer) → GGUF tensor name
# (llama.cpp gguf-py/gguf/tensor_mapping.py, MODEL_TENSOR.* for LLaMA-style models).
_GGUF_LAYER = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "mlp.router": "ffn_gate_inp",
    "mlp.experts.gate_proj": "ffn_gate_exps",
    "mlp.experts.up_proj": "ffn_up_exps",
    "mlp.experts.down_proj": "ffn_down_exps",
}
_GGUF_GLOBAL = {"model.embed_tokens": "token_embd", "lm_head": "output"}

# Plan weight format → ggml type (ggml/include/ggml.h; block layouts in ggml-common.h):
# q8_0 = 32 int8 + fp16 scale; q4_0 = 32 int4 + fp16 scale; q4_1 adds an fp16 min;
# q4_k / q3_k / q2_k = 256-value super-blocks of 16/32-value sub-blocks; iq4_nl = 32
# values on a fixed non-linear 4-bit grid; mxfp4 = OCP MX blocks of 32.
_GGML = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "q8_0", "int4-g32": "q4_0", "int4-g32-zp": "q4_1",
         "nf4": "iq4_nl", "nf4-dq": "iq4_nl", "mxfp4": "mxfp4"}
# llama-quantize's positional type (an ftype name) for a base ggml type.
_FTYPE = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q4_k": "Q4_K_M", "q3_k": "Q3_K_M", "q2_k": "Q2_K",
          "iq4_nl": "IQ4_NL", "mxfp4": "MXFP4_MOE", "bf16": "BF16", "f16": "F16", "f32": "F32"}
_GGML_KV = {"bf16": "bf16", "fp16": "f16", "fp32": "f32", "int8": "q8_0", "int4-g32": "q4_0", "int4-g32-zp": "q4_1"}


def _ggml_type(name: str, field_name: str, notes: list[str]) -> str:
    if name in _GGML:
        return _GGML[name]
    f = _fmt(name)
    if f.kind == "int" and f.element_bits in (2, 3, 4) and f.group_size:
        t = {4: "q4_k", 3: "q3_k", 2: "q2_k"}[f.element_bits]
        notes.append(f"{name}: llama.cpp has no {f.element_bits}-bit type with groups of {f.group_size}; "
                     f"{t} (256-value super-blocks) is the nearest")
        return t
    raise ExportError(field_name, f"llama.cpp (GGUF) has no tensor type for {name!r}; supported: bf16, fp16, fp32, int8, "
                      "int4/int3/int2 (group sizes map to q4_0/q4_1/q4_k/q3_k/q2_k), nf4 (iq4_nl), mxfp4")


def _gguf_name(module: str, field_name: str) -> str:
    if module in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[module]
    m = re.match(r"^model\.layers\.(\d+)\.(.+)$", module)
    if m and m.group(2) in _GGUF_LAYER:
        return f"blk.{m.group(1)}.{_GGUF_LAYER[m.group(2)]}"
    raise ExportError(field_name, f"no GGUF tensor name known for module {module!r}; the llama.cpp export covers "
                      "LLaMA-style decoders (q/k/v/o, gate/up/down, experts, embeddings, lm_head)")


def _export_llamacpp(v: _View, ctx: ExportContext) -> Export:
    notes: list[str] = []
    per_tensor: dict[str, str] = {}
    token_type = output_type = None
    for g in v.choices:
        t = _ggml_type(_weights(v, g), f"choices.{g}.weights", notes)
        if _acts(v, g) not in _FLOAT16:
            notes.append(f"{g}: llama.cpp picks compute precision per kernel; the plan's {_acts(v, g)} activations are not set")
        for mod in _modules_of(g, ctx):
            name = _gguf_name(mod, f"choices.{g}")
            if name == "token_embd":
                token_type = t
            elif name == "output":
                output_type = t
            else:
                per_tensor[name] = t
    notes = list(dict.fromkeys(notes))
    counts = Counter(per_tensor.values())
    quantized = [t for t, _ in counts.most_common() if t not in ("bf16", "f16", "f32")]
    base = quantized[0] if quantized else (counts.most_common(1)[0][0] if counts else "bf16")
    # One --tensor-type per (tensor kind, type): a regex over the layer indices.
    # Overrides apply only when the base type is a quantized one (llama-quant.cpp).
    by: dict[tuple[str, str], list[int]] = {}
    for name, t in per_tensor.items():
        _, idx, kind = name.split(".", 2)
        by.setdefault((kind, t), []).append(int(idx))
    overrides: list[str] = []
    if quantized:
        for (kind, t), idx in sorted(by.items(), key=lambda kv: (kv[0][0], min(kv[1]))):
            idx = sorted(idx)
            overrides.append(f"blk\\.({'|'.join(map(str, idx))})\\.{kind}\\.weight={t}")
    src = f"{v.model}-bf16.gguf"
    out = f"{v.model}-{_FTYPE[base].lower()}-tierwise.gguf"
    cmd = ["llama-quantize"]
    for o in overrides:
        cmd += ["--tensor-type", o]
    if token_type:
        cmd += ["--token-embedding-type", token_type]
    if output_type:
        cmd += ["--output-tensor-type", output_type]
    cmd += [src, out, _FTYPE[base]]
    if v.kv not in _GGML_KV:
        raise ExportError("kv", f"llama.cpp's KV cache types are f16, bf16, f32, q8_0, q4_0, q4_1; the plan's KV cache is {v.kv!r}")
    ctk = _GGML_KV[v.kv]
    server = ["llama-server", "-m", out, "-c", str(max(1, v.batch * (v.prompt + v.gen))), "--parallel", str(v.batch),
              "--cache-type-k", ctk, "--cache-type-v", ctk, "--n-gpu-layers", "999"]
    if v.tp > 1:
        server += ["--split-mode", "row"]
    if _host_offload_bytes(v) > 0:
        notes.append("the plan streams some weights from host memory: lower --n-gpu-layers until the model fits")
    convert = ["python", "convert_hf_to_gguf.py", _model_path(v, ctx), "--outtype", "bf16", "--outfile", src]
    script = "#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(_multiline(c) for c in (convert, cmd, server)) + "\n"
    tensor_types = "".join(f"{o}\n" for o in overrides)
    return Export(
        format="llamacpp",
        files=(
            ExportFile(path="quantize.sh", content=script, media_type="text/x-shellscript"),
            ExportFile(path="tensor_types.txt", content=tensor_types, media_type="text/plain"),
        ),
        next_command=_quote(cmd),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# Megatron-LM
# ---------------------------------------------------------------------------


def _export_megatron(v: _View, ctx: ExportContext) -> Export:
    notes: list[str] = []
    tr = v.raw.get("training") or {}
    micro = int(tr.get("micro_batch") or v.batch)
    global_batch = int(tr.get("global_batch") or micro * v.dp)
    seq = int(tr.get("seq") or max(1, v.prompt + v.gen))
    if global_batch % (micro * v.dp):
        raise ExportError("training.global_batch", f"Megatron needs the global batch ({global_batch}) to be a multiple of "
                          f"micro-batch × data-parallel size = {micro}×{v.dp}")
    args: list[str] = [
        "--tensor-model-parallel-size", str(v.tp),
        "--pipeline-model-parallel-size", str(v.pp),
    ]
    if v.ep > 1:
        args += ["--expert-model-parallel-size", str(v.ep)]
    args += ["--micro-batch-size", str(micro), "--global-batch-size", str(global_batch), "--seq-length", str(seq)]
    a = ctx.arch
    if a is not None and getattr(a, "family", None) == "decoder":
        args += ["--num-layers", str(a.num_layers), "--hidden-size", str(a.hidden_size),
                 "--ffn-hidden-size", str(a.intermediate_size), "--num-attention-heads", str(a.num_heads),
                 "--max-position-embeddings", str(max(seq, a.max_position_embeddings))]
        if a.num_kv_heads != a.num_heads:
            args += ["--group-query-attention", "--num-query-groups", str(a.num_kv_heads)]
        if a.gated_mlp:
            args.append("--swiglu")
        if a.norm == "rmsnorm":
            args += ["--normalization", "RMSNorm"]
        if a.position_encoding == "rope":
            args += ["--position-embedding-type", "rope"]
        if not a.tie_word_embeddings:
            args.append("--untie-embeddings-and-output-weights")
        if not a.attn_bias and not a.mlp_bias:
            args.append("--disable-bias-linear")
        if a.num_experts:
            args += ["--num-experts", str(a.num_experts), "--moe-router-topk", str(a.experts_per_token)]
    recompute = tr.get("recompute") or "none"
    if recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    elif recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    elif recompute != "none":
        raise ExportError("training.recompute", f"recompute must be none, selective or full; got {recompute!r}")
    if tr.get("sequence_parallel") and v.tp > 1:
        args.append("--sequence-parallel")
    interleave = int(tr.get("interleave") or 1)
    if interleave > 1:
        layers = getattr(a, "num_layers", None)
        if not layers or layers % (v.pp * interleave):
            raise ExportError("training.interleave", f"interleave {interleave} needs the layer count to be a multiple of pp×interleave")
        args += ["--num-layers-per-virtual-pipeline-stage", str(layers // (v.pp * interleave))]
    if int(tr.get("zero") or 0) >= 1:
        args.append("--use-distributed-optimizer")
        if int(tr.get("zero")) >= 2:
            notes.append("Megatron's distributed optimizer shards optimizer state (ZeRO-1); ZeRO-2/3 sharding of gradients/weights needs Megatron FSDP")
    acts = {_acts(v, g) for g in v.choices}
    weights = {_weights(v, g) for g in v.choices}
    if acts & {"fp8-e4m3", "fp8-e5m2"} or weights & {"fp8-e4m3"}:
        # Transformer Engine FP8: e4m3 forward; 'hybrid' adds e5m2 gradients (Micikevicius et al. 2022).
        args += ["--bf16", "--fp8-format", "hybrid" if "fp8-e5m2" in acts else "e4m3"]
    elif acts == {"fp16"}:
        args.append("--fp16")
    else:
        args.append("--bf16")
    if weights - _FLOAT16 - {"fp8-e4m3"}:
        notes.append("Megatron trains in bf16/fp16/fp8; the plan's low-bit weight formats apply after training (export to vllm or compressed-tensors)")
    per_node = ctx.devices_per_node or min(8, v.devices)
    nodes = max(1, math.ceil(v.devices / per_node))
    launch = ["torchrun", "--nproc_per_node", str(min(per_node, v.devices)), "--nnodes", str(nodes), "pretrain_gpt.py", *args]
    script = "#!/usr/bin/env bash\n# Megatron-LM launch for the plan of " + v.model + f" on {v.devices}× " + v.hardware + \
        "\n# data-parallel size = world size / (tp × pp) = " + str(v.dp) + "\nset -euo pipefail\n" + _multiline(launch) + "\n"
    return Export(
        format="megatron",
        files=(
            ExportFile(path="megatron_args.txt", content="\n".join(
                (f"{a_}" if not a_.startswith("--") else f"\n{a_}") for a_ in args).strip() + "\n", media_type="text/plain"),
            ExportFile(path="train.sh", content=script, media_type="text/x-shellscript"),
        ),
        next_command=_quote(launch),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# The plan itself
# ---------------------------------------------------------------------------


def _export_yaml(v: _View, ctx: ExportContext) -> Export:
    text = yaml.safe_dump(v.raw, sort_keys=False, allow_unicode=True)
    return Export(format="yaml", files=(ExportFile(path="plan.yaml", content=text, media_type="application/yaml"),),
                  next_command="tierwise export plan.yaml --format vllm --out deploy")


def _export_json(v: _View, ctx: ExportContext) -> Export:
    return Export(format="json", files=(ExportFile(path="plan.json", content=_json(v.raw), media_type="application/json"),),
                  next_command="tierwise export plan.json --format vllm --out deploy")


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter(name="vllm", description="vLLM engine arguments and `vllm serve` command", func=_export_vllm),
        Exporter(name="compressed-tensors", description="llm-compressor recipe + compressed-tensors quantization_config", func=_export_compressed_tensors),
        Exporter(name="hf", description="transformers quantization_config", func=_export_hf),
        Exporter(name="modelopt-mixed", description="ModelOpt hf_quant_config.json with per-layer quantized_layers", func=_export_modelopt),
        Exporter(name="trtllm", description="TensorRT-LLM quant_config, parallel sizes and trtllm-serve flags", func=_export_trtllm),
        Exporter(name="llamacpp", description="llama-quantize command with per-tensor type overrides", func=_export_llamacpp),
        Exporter(name="megatron", description="Megatron-LM training arguments", func=_export_megatron),
        Exporter(name="yaml", description="the plan as YAML", func=_export_yaml),
        Exporter(name="json", description="the plan as JSON", func=_export_json),
    )
}


def export_formats() -> tuple[str, ...]:
    return tuple(EXPORTERS)


def export_plan(plan: Any, fmt: str, context: ExportContext | None = None) -> Export:
    """Export ``plan`` (a Plan or its dict) for target ``fmt``; see :data:`EXPORTERS`."""
    key = str(fmt).strip().lower()
    if key not in EXPORTERS:
        raise ExportError("format", f"unknown export format {fmt!r}; expected one of: {', '.join(EXPORTERS)}")
    return EXPORTERS[key].func(_view(plan), context or ExportContext())


def write_export(export: Export, out_dir: str | os.PathLike) -> list[Path]:
    """Write every file of ``export`` under ``out_dir`` — all of them or none.

    Files are first written into a temporary folder beside ``out_dir`` and then moved
    in, so a failure leaves no half-written export. Shell scripts are made executable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tierwise-export-", dir=out))
    written: list[Path] = []
    try:
        staged = []
        for f in export.files:
            p = tmp / f.path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f.content, encoding="utf-8")
            if f.path.endswith(".sh"):
                p.chmod(0o755)
            staged.append((p, out / f.path))
        for src, dst in staged:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            written.append(dst)
    finally:
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        tmp.rmdir()
    return written
