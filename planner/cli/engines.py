"""`tierwise engines list|show`: the serving and training engines and what they run where."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli.common import console, emit_json, positional_id

engines_app = typer.Typer(help="The catalog of engine profiles (vLLM, TensorRT-LLM, llama.cpp, ...).",
                          no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def engine_summary(spec) -> dict:
    out = {
        "id": spec.id, "name": spec.name, "kind": spec.kind, "version": spec.version, "exporter": spec.exporter,
        "parallel": list(spec.parallel), "default_for": list(spec.default_for),
        "default_for_training": list(spec.default_for_training), "families": list(spec.families),
        "low_rank": spec.low_rank,  # runs low-rank factorised layers (--low-rank, pins @rRANK)
        # the Hugging Face model_types it builds; empty: every model of its families
        "model_types": list(spec.model_types),
        # SmoothQuant's migration strength in its int8-activation recipe (None: int8 activations as they come)
        "activation_smoothing": spec.runtime.smoothing_alpha,
        # per weight format, the features one int8 activation scale covers (empty: per token)
        "activation_blocks": dict(spec.runtime.activation_blocks),
    }
    if spec.kind == "training":
        from planner.training import MICROBATCH_OVERHEAD_S

        # the ZeRO stages its sharding offers, and its fitted time per micro-batch beyond the kernels (0: none)
        out["zero"] = list(spec.zero)
        # the attention kernels and optimizers it has (all the cost model knows when the profile lists none)
        out["attention"] = list(spec.attention)
        out["optimizers"] = list(spec.optimizers)
        out["microbatch_overhead_s"] = MICROBATCH_OVERHEAD_S.get(spec.id, 0.0)
    return out


def support_summary(sup) -> dict:

    rt = sup.runtime
    training = {}
    if sup.kind == "training":
        training = {"attention": list(sup.attention), "optimizers": list(sup.optimizers)}
    # its recipe for int8 activations, where it runs any on this hardware
    int8 = any("int8" in s.activations for s in sup.schemes)
    ran = {w for s in sup.schemes if "int8" in s.activations for w in s.weights}
    return {
        **training,
        "activation_smoothing": rt.smoothing_alpha if int8 else None,
        "activation_blocks": {f: b for f, b in rt.activation_blocks if f in ran},
        "engine": sup.engine, "hardware": sup.device,
        "schemes": [{"weights": list(s.weights), "activations": list(s.activations)} for s in sup.schemes],
        "kv": list(sup.kv), "sparsity": list(sup.sparsity), "parallel": list(sup.parallel), "low_rank": sup.low_rank,
        "runtime": {
            "graph_capture": rt.graph_capture, "runtimes": list(rt.runtimes), "default_runtime": rt.default_runtime,
            "chunked_prefill": rt.chunked_prefill, "chunk_tokens": rt.chunk_tokens,
            "paged_kv": rt.paged_kv, "kv_block_tokens": rt.kv_block_tokens,
            "continuous_batching": rt.continuous_batching, "memory_fraction": rt.memory_fraction,
            "context_bytes": rt.context_bytes,
            "design_peak_tops": dict(rt.design_peak_tops) or None,
            "dynamic_act_quant": rt.dynamic_act_quant,
        },
    }


def _print_activation_recipe(alpha, blocks) -> None:
    """The engine's recipe for int8 activations, one line each (nothing when it has none)."""
    if alpha is not None:
        console.print(f"int8 activations: SmoothQuant first (strength {alpha:g}) on the layers that alone read a norm; "
                      "the accuracy prior, the compressed-tensors export and validate follow it", highlight=False)
    from planner.engines import activation_blocks_text

    text = activation_blocks_text(blocks)
    if text:
        console.print(f"int8 activations: one scale per {text}", highlight=False)


@engines_app.command("list")
def engines_list(json_out: JsonOpt = False) -> None:
    """Every engine profile with its kind, exporter and the hardware classes it is the default on."""
    from planner.engines import list_engines, load_engine

    specs = [load_engine(e) for e in list_engines()]
    if json_out:
        emit_json({"engines": [engine_summary(s) for s in specs]})
        return
    table = Table(title="Engines")
    for col in ("id", "name", "kind", "exporter", "parallel", "default for"):
        table.add_column(col)
    for s in specs:
        defaults = list(s.default_for) + [f"{c} (training)" for c in s.default_for_training]
        table.add_row(s.id, s.name, s.kind, s.exporter, ",".join(s.parallel) or "-", ", ".join(defaults) or "-")
    console.print(table)


@engines_app.command("show")
def engines_show(
    engine_id: Annotated[str, typer.Argument(help="Engine id (see `tierwise engines list`) or path to an engine YAML.")],
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H",
                                                    help="Show what the engine runs on this hardware.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """An engine's profile; with --hardware, the formats, sparsity and layouts it runs on that device."""
    from hwmodels import ProfileError, load_device
    from planner.engines import hardware_for, load_engine, support
    from planner.errors import TierwiseError

    try:
        with positional_id("engine"):
            spec = load_engine(engine_id)
        if hardware is not None:
            try:
                device = load_device(hardware)
            except ProfileError as exc:
                raise exc.named("hardware") from None
            sup = support(spec, device, field="hardware")  # the engine is fixed: the device is the choice
    except TierwiseError as exc:
        # the engine is this command's argument, not an --engine option
        exc.aliases = {**(getattr(exc, "aliases", None) or {}), "engine": "ENGINE_ID"}
        raise
    if hardware is not None:
        if json_out:
            emit_json(support_summary(sup))
            return
        table = Table(title=f"{spec.name} on {sup.device}")
        table.add_column("weights")
        table.add_column("with activations")
        for s in sup.schemes:
            table.add_row(", ".join(s.weights), ", ".join(s.activations))
        console.print(table)
        console.print(f"KV cache: {', '.join(sup.kv) or '-'}    sparsity: {', '.join(sup.sparsity)}    "
                      f"parallel: {', '.join(sup.parallel) or 'single device'}")
        summary = support_summary(sup)
        console.print(f"launch: {', '.join(summary['runtime']['runtimes'])} (default "
                      f"{summary['runtime']['default_runtime']})")
        _print_activation_recipe(summary["activation_smoothing"], summary["activation_blocks"].items())
        for precision, tops in sup.runtime.design_peak_tops:
            console.print(f"compute design: one fixed design, {tops:g} {precision} TOPS peak (runtime.design_peak_tops); "
                          "estimates price it at that, not at the device's own roof", highlight=False)
        if sup.runtime.dynamic_act_quant:
            console.print(f"quantized linear layers: {sup.runtime.dynamic_act_quant} activations, quantized per token at "
                          "run time from 16-bit ones (runtime.dynamic_act_quant)", highlight=False)
        if "attention" in summary:
            console.print(f"attention: {', '.join(summary['attention'])}; optimizers: {', '.join(summary['optimizers'])}")
        return
    runs_on = hardware_for(spec)
    summary = engine_summary(spec)
    if json_out:
        emit_json({**summary, "hardware": runs_on, "sources": dict(spec.sources)})
        return
    console.print(f"[bold]{spec.name}[/] ({spec.id}, {spec.kind}, version {spec.version}); export with "
                  f"`tierwise export PLAN --format {spec.exporter}`")
    console.print(f"runs on: {', '.join(runs_on)}")
    console.print(f"parallel: {', '.join(spec.parallel) or 'single device'}")
    console.print(f"models: {', '.join(spec.families)}" + (f" of model types {', '.join(spec.model_types)}"
                                                          if spec.model_types else ""))
    _print_activation_recipe(spec.runtime.smoothing_alpha, spec.runtime.activation_blocks)
    if spec.kind == "training":
        console.print(f"ZeRO stages: {', '.join(map(str, spec.zero))}")
        console.print(f"attention: {', '.join(summary['attention'])}; optimizers: {', '.join(summary['optimizers'])}")
    if summary.get("microbatch_overhead_s"):
        console.print(f"training step: {summary['microbatch_overhead_s']:g} s per micro-batch beyond the priced kernels ('framework' in an estimate; "
                      "fitted on published llm-foundry rows, not a sourced fact: docs/training.md)", highlight=False)
    for key, text in spec.sources.items():
        console.print(f"  {key}: {text}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(engines_app, name="engines")
