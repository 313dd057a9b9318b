"""compressed-tensors target: an llm-compressor recipe (``QuantizationModifier`` with
``config_groups`` targeting module names, ``SparseGPTModifier``), the compressed-tensors
``QuantizationConfig`` written into the checkpoint's config.json, and a ``oneshot.py``."""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from .common import compact_targets, model_path, modules_of, to_json
from .core import Export, ExportContext, ExportError, ExportFile, PlanView, register, sparsity_of
from .rules import as_exported
from .schemes import ct_quantization_config


def _sparsity_stages(v: PlanView, ctx: ExportContext) -> dict:
    """llm-compressor SparseGPTModifier stages, one per distinct sparsity."""
    from planner.formats import parse_sparsity

    by: dict[str, list[str]] = {}
    for g in v.choices:
        s = sparsity_of(v, g)
        try:
            sp = parse_sparsity(s)
        except ValueError as e:
            raise ExportError(f"choices.{g}.sparsity", str(e)) from None
        if sp.sparsity == 0:
            continue
        by.setdefault(s, []).extend(modules_of(g, ctx))
    stages: dict[str, Any] = {}
    for i, (s, mods) in enumerate(by.items()):
        if s == "2:4":
            mod = {"sparsity": 0.5, "mask_structure": "2:4"}
        else:
            mod = {"sparsity": float(parse_sparsity(s).sparsity), "mask_structure": "0:0"}
        mod["targets"] = compact_targets(mods)
        stages[f"sparsity_stage_{i}"] = {"sparsity_modifiers": {"SparseGPTModifier": mod}}
    return stages


def _smoothing(qcfg: dict, ctx: ExportContext) -> float | None:
    """SmoothQuant's migration strength for a checkpoint with integer activations: the serving
    engine's recipe (its profile's ``activation_smoothing``; SGLang for an SGLang plan, else vLLM)."""
    from planner.engines import load_engine

    if not any((g.get("input_activations") or {}).get("type") == "int" for g in qcfg["config_groups"].values()):
        return None
    return load_engine("sglang" if ctx.engine == "sglang" else "vllm").runtime.smoothing_alpha


@register("compressed-tensors", "llm-compressor recipe + compressed-tensors quantization_config")
def _export_compressed_tensors(v: PlanView, ctx: ExportContext) -> Export:
    v, _, kept_notes = as_exported(v, "compressed-tensors")
    qcfg, notes = ct_quantization_config(v, ctx, "compressed-tensors")
    notes = kept_notes + notes
    recipe: dict[str, Any] = dict(_sparsity_stages(v, ctx))
    modifier: dict[str, Any] = {"ignore": qcfg["ignore"], "config_groups": qcfg["config_groups"]}
    if qcfg["kv_cache_scheme"] is not None:
        modifier["kv_cache_scheme"] = qcfg["kv_cache_scheme"]
    smoothing = _smoothing(qcfg, ctx)
    if qcfg["config_groups"] or qcfg["kv_cache_scheme"] is not None:
        quant: dict[str, Any] = {}
        if smoothing is not None:
            quant["SmoothQuantModifier"] = {"smoothing_strength": smoothing}
            notes.append(f"int8 activations: SmoothQuantModifier (smoothing_strength {smoothing:g}) first moves their outlier "
                         "channels' range into the weights of the linears that read a norm's output (q/k/v, gate/up; "
                         "llm-compressor's default mappings), as vLLM documents for INT8 W8A8; the plan's accuracy "
                         "prior priced it so; it calibrates on the dataset in oneshot.py")
        quant["QuantizationModifier"] = modifier
        recipe["quant_stage"] = {"quant_modifiers": quant}
    model = model_path(v, ctx)
    out_dir = f"{v.model}-tierwise"
    needs_data = any(s.startswith("sparsity_stage") for s in recipe) or smoothing is not None or qcfg["kv_cache_scheme"] is not None or any(
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
        *(['    dataset="open_platypus",  # calibration data for SmoothQuant, sparsity and static scales', "    num_calibration_samples=512,"] if needs_data else []),
        f"    output_dir={out_dir!r},",
        ")",
        "",
    ])
    # the checkpoint's server: SGLang for an SGLang plan, else vLLM
    serve = "python -m sglang.launch_server --model-path" if ctx.engine == "sglang" else "vllm serve"
    return Export(
        format="compressed-tensors",
        files=(
            ExportFile(path="recipe.yaml", content=yaml.safe_dump(recipe, sort_keys=False), media_type="application/yaml"),
            ExportFile(path="quantization_config.json", content=to_json(qcfg), media_type="application/json"),
            ExportFile(path="oneshot.py", content=script, media_type="text/x-python"),
        ),
        next_command=f"python oneshot.py && {serve} {shlex.quote(out_dir)}",
        notes=tuple(notes),
    )
