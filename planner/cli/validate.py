"""`tierwise validate`: apply a plan to a torch model, measure it, compare with the prediction."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from planner.cli.common import console, emit_json, fail, human_bytes, human_time


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def validate_cmd(
    plan_path: Annotated[str, typer.Argument(metavar="PLAN", help="Plan file written by `tierwise plan --out`.")],
    torch_model: Annotated[str, typer.Option("--torch-model", help="all-minilm-l6-v2 | digits-cnn | a Llama-shaped "
                                             "catalog id or config path [@layers=N,vocab=V] | a directory with "
                                             "config.json + model.safetensors.")],
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help="Profile of this machine (from "
                                                    "`tierwise calibrate`) to predict latency with, priced for engine torch (what "
                                                    "runs here) whatever engine the plan was made for.")] = None,
    samples: Annotated[int, typer.Option(min=2, help="Evaluation samples (sentences, images, sequences).")] = 16,
    metric: Annotated[Optional[str], typer.Option(help="Degradation metric: cosine | accuracy | kl | top1 "
                                                  "(default by model kind).")] = None,
    latency: Annotated[Optional[bool], typer.Option("--latency/--no-latency", help="Measure wall times (default: "
                                                    "on when --hardware is given).")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads (default: torch's own); match the "
                                                   "profile's calibration for latency comparisons.")] = None,
    all_layers: Annotated[bool, typer.Option("--all-layers", help="Print every layer, not the 10 worst.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Apply a plan to a real torch model and report fidelity, bytes and latency beside the prediction."""
    from planner.execution.validate import METRICS, validate
    from planner.plan import load_plan

    if metric is not None and metric not in METRICS:
        fail(f"--metric must be one of {', '.join(METRICS)}; got {metric!r}", field="metric")
    plan = load_plan(plan_path)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    device = None
    if hardware is not None:
        from planner.cli.common import load_hardware_or_fail

        device = load_hardware_or_fail(hardware)
    measure = latency if latency is not None else device is not None
    report = validate(torch_model, plan, samples=samples, metric=metric, device=device, latency=measure)
    if json_out:
        emit_json(report.to_dict())
        return
    _print(report, all_layers)


def _print(r, all_layers: bool) -> None:
    made_for = f" (engine {r.plan_engine})" if r.plan_engine else ""
    t = Table(title=f"Validation: plan for {r.plan_model}{made_for} on torch model {r.torch_model} "
              f"({r.samples} samples)", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row(f"degradation ({r.metric})", f"{r.degradation:.5f}")
    t.add_row("output SQNR", f"{r.output_sqnr_db:.2f} dB")
    t.add_row("cosine similarity mean / min", f"{r.cosine_mean:.5f} / {r.cosine_min:.5f}")
    if r.nn_agreement is not None:
        t.add_row("nearest-neighbour agreement", f"{r.nn_agreement * 100:.1f}%")
    if r.kl_mean is not None:
        t.add_row("KL(original ‖ compressed)", f"{r.kl_mean:.5f} nats")
        t.add_row("top-1 agreement", f"{r.top1_agreement * 100:.1f}%")
    if r.accuracy_original is not None:
        t.add_row("accuracy original → compressed",
                  f"{r.accuracy_original * 100:.2f}% → {r.accuracy_compressed * 100:.2f}%")
    t.add_row("compressed weights measured / predicted",
              f"{human_bytes(r.measured_weight_bytes)} / {human_bytes(r.predicted_weight_bytes)} "
              f"({r.bytes_error * 100:+.3f}%)")
    t.add_row("same layers in fp32", human_bytes(r.dense_fp32_weight_bytes))
    if r.plan_predicted_weights_bytes is not None:
        t.add_row("plan: whole-model weights (predicted)", human_bytes(r.plan_predicted_weights_bytes))
    t.add_row("compressed model, all parameters + buffers", human_bytes(r.measured_model_bytes))
    if r.kv_cache_bytes is not None:
        t.add_row("KV cache after the run (measured)", human_bytes(r.kv_cache_bytes))
    t.add_row("apply / total time", f"{r.apply_s:.2f} s / {r.total_s:.2f} s")
    console.print(t)
    if r.latency:
        engine = r.latency[0].engine
        lt = Table(title=f"Latency (best of N) vs prediction for engine {engine}, the engine that ran")
        for col in ("phase", "batch×tokens", "original", "predicted", "error", "compressed", "predicted", "error"):
            lt.add_column(col, justify="right")
        # A plan made for another engine: that engine's own prediction of the same configuration,
        # beside the measurement but not compared with it (it did not run here).
        other = next((x.plan_engine for x in r.latency if x.plan_engine_predicted_compressed_s is not None), None)
        if other is not None:
            lt.add_column(f"predicted for {other} (the plan's engine)", justify="right")
        for x in r.latency:
            e0, e1 = x.error_original, x.error_compressed
            cells = [x.phase, f"{x.batch}×{x.tokens}", human_time(x.measured_original_s),
                     human_time(x.predicted_original_s), "-" if e0 is None else f"{e0 * 100:+.1f}%",
                     human_time(x.measured_compressed_s), human_time(x.predicted_compressed_s),
                     "-" if e1 is None else f"{e1 * 100:+.1f}%"]
            if other is not None:
                cells.append(human_time(x.plan_engine_predicted_compressed_s))
            lt.add_row(*cells)
        console.print(lt)
    layers = list(r.layers)
    if not all_layers:
        layers = sorted(layers, key=lambda lay: lay.weight_sqnr_db)[:10]
    if layers:
        table = Table(title="Per layer" + ("" if all_layers else " (10 lowest weight SQNR; --all-layers for all)"))
        for col in ("layer", "option", "weight SQNR", "output SQNR", "measured", "predicted"):
            table.add_column(col, justify="right" if col not in ("layer", "option") else "left")
        for lay in layers:
            table.add_row(lay.name, lay.option, f"{lay.weight_sqnr_db:.1f} dB", _fmt(lay.output_sqnr_db, ".1f"),
                          human_bytes(lay.measured_bytes), human_bytes(lay.predicted_bytes))
        console.print(table)
    for note in r.notes:
        console.print(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
