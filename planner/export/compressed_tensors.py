"""compressed-tensors target: an llm-compressor recipe (``QuantizationModifier`` with
``config_groups`` targeting module names, ``SparseGPTModifier``), the compressed-tensors
``QuantizationConfig`` written into the checkpoint's config.json, and a ``oneshot.py``."""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from hwmodels.errors import TierwiseError

from .common import compact_targets, model_path, modules_of, to_json
from .core import Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, register, sparsity_of
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


def _plan_engine(v: PlanView) -> str | None:
    """The engine the plan was priced for (its accuracy prior followed that engine's recipe)."""
    engine = v.raw.get("engine")
    return engine if isinstance(engine, str) and engine else None


def _smoothing(v: PlanView, ctx: ExportContext) -> tuple[float | None, list]:
    """(strength, mappings) of the SmoothQuantModifier the plan's engine runs before int8 activations:
    the strength its recipe states (the one the plan recorded, else the engine's catalog profile; None:
    the engine quantizes them as they come, as the plan was priced), over the groups in int8 activations
    that alone read a norm (:mod:`planner.smoothing_map`, the same ones the accuracy prior and the
    execution smooth), each ``[[its modules], its norm]``."""
    from planner.format_noise import smoothable
    from planner.options import decision_groups
    from planner.plan import plan_activation_recipe
    from planner.smoothing_map import smoothing_norm
    from planner.workload import build_workload

    engine, recipe = plan_activation_recipe(v.raw)  # a malformed record: PlanError (invalid_plan), naming it
    alpha = recipe.smoothing if recipe is not None else None
    if alpha is None:
        return None, []
    if ctx.arch is None:
        if any(smoothable(acts_of(v, g)) for g in v.choices):
            raise ExportError("model_path", f"the plan was priced with {engine}'s SmoothQuant before its int8 activations, "
                              f"whose mappings name the norms of the model's own layers, but model {v.model!r} is not in "
                              "this catalog; give {@model_path} as a folder (or config file) holding its config.json")
        return None, []
    info = {g.fqn: g for g in decision_groups(build_workload(ctx.arch))}
    mappings = []
    for g in v.choices:
        gi = info.get(g)
        if gi is None or not gi.reads_norm or not smoothable(acts_of(v, g)) or gi.layer is None:
            continue
        norm = smoothing_norm(ctx.arch, gi.name)
        index = int(g[len(gi.block) + 1:].split(".", 1)[0])  # model.layers.7.self_attn.qkv -> 7
        mappings.append([list(modules_of(g, ctx)), norm.format(i=index)])
    return (alpha, mappings) if mappings else (None, [])


def _unknown_recipe(v: PlanView) -> str | None:
    """A note when the plan's int8 activations follow a recipe this export cannot know: its engine is not
    in this installation and the plan records no recipe (written before plans did)."""
    from planner.format_noise import smoothable
    from planner.plan import plan_activation_recipe

    engine, recipe = plan_activation_recipe(v.raw)
    if engine is None or recipe is not None or not any(smoothable(acts_of(v, g)) for g in v.choices):
        return None
    return (f"int8 activations: the plan's engine {engine!r} is not one this installation knows and the plan records "
            "no recipe of it, so no SmoothQuantModifier is written (quantized per token, as they come); re-plan with "
            "that engine's profile (--engine PATH.yaml) to record its recipe")


@register("compressed-tensors", "llm-compressor recipe + compressed-tensors quantization_config")
def _export_compressed_tensors(v: PlanView, ctx: ExportContext) -> Export:
    v, _, kept_notes = as_exported(v, "compressed-tensors")
    qcfg, notes = ct_quantization_config(v, ctx, "compressed-tensors")
    notes = kept_notes + notes
    recipe: dict[str, Any] = dict(_sparsity_stages(v, ctx))
    modifier: dict[str, Any] = {"ignore": qcfg["ignore"], "config_groups": qcfg["config_groups"]}
    if qcfg["kv_cache_scheme"] is not None:
        modifier["kv_cache_scheme"] = qcfg["kv_cache_scheme"]
    smoothing, mappings = _smoothing(v, ctx)
    unknown = _unknown_recipe(v)
    if unknown is not None:
        notes.append(unknown)
    if qcfg["config_groups"] or qcfg["kv_cache_scheme"] is not None:
        quant: dict[str, Any] = {}
        if smoothing is not None:
            quant["SmoothQuantModifier"] = {"smoothing_strength": smoothing, "mappings": mappings}
            notes.append(f"int8 activations: SmoothQuantModifier (smoothing_strength {smoothing:g}, {_plan_engine(v)}'s recipe) "
                         f"first moves their outlier channels' range into the weights of the {len(mappings)} groups in int8 "
                         "activations that alone read a norm's output, each mapped to that norm; the plan's accuracy prior "
                         "smoothed the same groups; it calibrates on the dataset in oneshot.py")
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
    serve = "python -m sglang.launch_server --model-path" if _exporter_of(ctx.engine) == "sglang" else "vllm serve"
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


def _exporter_of(engine: str | None) -> str | None:
    """The exporter of the engine the files are for (a catalog id or a profile file's path)."""
    if not engine:
        return None
    from planner.engines import load_engine

    try:
        return load_engine(engine).exporter
    except TierwiseError:
        return engine
