"""`tierwise estimate`: the cost of one configuration (inference or training)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from planner.cli.common import (
    EXIT_OK,
    console,
    emit_json,
    fail,
    human_bytes,
    human_num,
    human_time,
    option_batch,
)


class Mode(str, Enum):
    inference = "inference"
    training = "training"


class Recompute(str, Enum):
    none = "none"
    selective = "selective"
    full = "full"


def estimate(
    model: Annotated[str, typer.Option("--model", "-m", help="Catalog id or path to an HF-style config.")],
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Catalog id or path to a hardware YAML.")],
    mode: Annotated[Mode, typer.Option(help="inference (prefill+decode) or training (one step).")] = Mode.inference,
    devices: Annotated[Optional[int], typer.Option(help="Total devices; must equal tp×pp×dp.")] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree.")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel degree.")] = 1,
    dp: Annotated[int, typer.Option(help="Data-parallel degree (replicas).")] = 1,
    ep: Annotated[int, typer.Option(help="Expert-parallel degree (MoE).")] = 1,
    cp: Annotated[int, typer.Option(help="Training: context-parallel degree (ring attention).")] = 1,
    batch: Annotated[str, typer.Option(help="Sequences per replica, or 'max' for the largest that fits.")] = "1",
    prompt: Annotated[int, typer.Option(min=0, help="Prompt tokens per request.")] = 512,
    gen: Annotated[int, typer.Option(min=0, help="Generated tokens per request.")] = 128,
    weights: Annotated[str, typer.Option(help="Weight format (bf16, fp8, int8, int4-g128, nf4, mxfp4, ...).")] = "bf16",
    activations: Annotated[str, typer.Option(help="Activation/compute format (bf16, fp16, fp8, int8).")] = "bf16",
    kv: Annotated[str, typer.Option(help="KV-cache format (bf16, fp16, fp8, int8, int4-g64, ...).")] = "bf16",
    sparsity: Annotated[str, typer.Option(help="dense | 2:4 | unstructured:R")] = "dense",
    low_rank: Annotated[Optional[int], typer.Option(min=1, help="Factor every linear layer to this rank (r·(k+n) weights).")] = None,
    allow_offload: Annotated[bool, typer.Option("--allow-offload", help="Let weights spill to host memory.")] = False,
    kv_budget: Annotated[Optional[int], typer.Option(min=1, help="KV token budget: older tokens beyond it are kept at --kv-evicted (MiKV).")] = None,
    kv_evicted: Annotated[str, typer.Option(help="KV format of tokens beyond --kv-budget.")] = "int4-g32",
    kv_share: Annotated[int, typer.Option(min=1, help="Adjacent layers sharing one KV cache (SwiftKV AcrossKV).")] = 1,
    flash_chunk_kib: Annotated[float, typer.Option(min=0.5, help="Read size when streaming weights from flash (KiB).")] = 256.0,
    per_op: Annotated[bool, typer.Option("--per-op", help="Print the per-operator table.")] = False,
    runtime: Annotated[str, typer.Option(help="graph (CUDA graphs / compiled engines) or eager (PyTorch eager).")] = "graph",
    # training
    global_batch: Annotated[Optional[int], typer.Option(min=1, help="Training: sequences per optimizer step.")] = None,
    micro_batch: Annotated[int, typer.Option(min=1, help="Training: sequences per micro-batch.")] = 1,
    seq: Annotated[int, typer.Option(min=1, help="Training: sequence length.")] = 2048,
    zero: Annotated[int, typer.Option(min=0, max=3, help="Training: ZeRO stage 0..3.")] = 0,
    recompute: Annotated[Recompute, typer.Option(help="Training: activation recomputation.")] = Recompute.none,
    sequence_parallel: Annotated[bool, typer.Option("--sequence-parallel", help="Training: Megatron sequence parallelism.")] = False,
    interleave: Annotated[int, typer.Option(min=1, help="Training: interleaved pipeline chunks per device.")] = 1,
    optimizer: Annotated[str, typer.Option(help="Training: adamw | adamw-8bit | adamw-fp8 | sgd.")] = "adamw",
    finetune: Annotated[str, typer.Option(help="Training: full | lora:RANK | qlora:RANK.")] = "full",
    attention: Annotated[str, typer.Option(help="Training: fused (FlashAttention) or unfused attention.")] = "fused",
    grad_accumulation: Annotated[str, typer.Option(help="Training: separate or fused gradient accumulation.")] = "separate",
    dropout: Annotated[bool, typer.Option("--dropout", help="Training: the model has dropout layers.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Predict time, memory, energy and cost of one configuration."""
    from planner.cli.common import load_hardware_or_fail, load_model_or_fail
    from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, check_layout, estimate_inference, max_batch

    arch = load_model_or_fail(model)
    dev = load_hardware_or_fail(hardware)
    layout = Layout(tp=tp, pp=pp, dp=dp, ep=ep)
    if mode == Mode.training:
        if devices is not None and devices != tp * cp * pp * dp:
            fail(f"--devices ({devices}) must equal tp×cp×pp×dp = {tp}×{cp}×{pp}×{dp} = {tp * cp * pp * dp}", field="devices")
        check_layout(arch, layout, None)
    else:
        if cp != 1:
            fail("--cp (context parallelism) applies to --mode training only", field="cp")
        check_layout(arch, layout, devices)
    if mode == Mode.training:
        from planner.training import TrainingConfig, estimate_training

        cfg = TrainingConfig(
            global_batch=global_batch if global_batch is not None else micro_batch * dp,
            micro_batch=micro_batch,
            seq=seq,
            tp=tp,
            pp=pp,
            dp=dp,
            ep=ep,
            cp=cp,
            zero=zero,
            recompute=recompute.value,
            sequence_parallel=sequence_parallel,
            interleave=interleave,
            optimizer=optimizer,
            finetune=finetune,
            weights=weights,
            activations=activations,
            attention=attention,
            dropout=dropout,
            runtime=runtime,
            grad_accumulation=grad_accumulation,
        )
        est = estimate_training(arch, dev, cfg)
        if json_out:
            emit_json(est.to_dict())
        else:
            _print_training(est)
        raise typer.Exit(EXIT_OK)

    choice = Choice(weights=weights, activations=activations, kv=kv, sparsity=sparsity, low_rank=low_rank)
    options = RuntimeSettings(
        allow_offload=allow_offload,
        flash_chunk_bytes=flash_chunk_kib * 1024.0,
        runtime=runtime,
        kv_token_budget=kv_budget,
        kv_evicted=kv_evicted,
        kv_share_layers=kv_share,
    )
    b = option_batch(batch)
    if b == "max":
        b = max_batch(arch, dev, layout, Serving(batch=1, prompt=prompt, gen=gen), choice, options=options)
        if b == 0:
            # Report the batch-1 configuration so the shortfall is visible.
            b = 1
    est = estimate_inference(arch, dev, layout, Serving(batch=b, prompt=prompt, gen=gen), choice, options=options)
    if json_out:
        emit_json(est.to_dict())
        return
    _print_inference(est, per_op)


def _print_inference(est, per_op: bool) -> None:
    m = est.memory
    title = f"{est.model} on {est.layout.devices}× {est.hardware} (tp={est.layout.tp} pp={est.layout.pp} dp={est.layout.dp})"
    t = Table(title=title, show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    c = est.choice
    t.add_row("formats", f"weights {c.weights}, activations {c.activations}, kv {c.kv}, {c.sparsity}")
    t.add_row("batch / prompt / gen", f"{est.serving.batch} / {est.serving.prompt} / {est.serving.gen}")
    t.add_row("TTFT (prefill)", f"{human_time(est.ttft_s)}  " + escape(f"[{est.prefill.bound}-bound]"))
    if est.decode is not None:
        t.add_row("TPOT (decode, avg)", f"{human_time(est.tpot_s)}  " + escape(f"[{est.decode.bound}-bound]"))
    t.add_row("latency per request", human_time(est.latency_s))
    if est.output_tokens_per_s:
        t.add_row("output tokens/s (system)", f"{est.output_tokens_per_s:,.1f}")
    t.add_row("prefill tokens/s", f"{est.prefill_tokens_per_s:,.1f}")
    t.add_row("samples/s", f"{est.samples_per_s:,.2f}")
    t.add_row("weights (total)", human_bytes(m.weights_bytes))
    t.add_row("KV cache (total)", human_bytes(m.kv_cache_bytes))
    t.add_row("KV cache (per device)", human_bytes(sum(tu.kv_cache_bytes for tu in m.tiers)))
    t.add_row("activations (peak, per device)", human_bytes(m.activations_bytes))
    t.add_row("memory per device", f"{human_bytes(m.per_device_bytes)} of {human_bytes(m.device_capacity_bytes)}")
    t.add_row("fits", "yes" if m.fits else f"[red]no[/] (short by {human_bytes(m.shortfall_bytes)})")
    for tu in m.tiers:
        if tu.used_bytes > 0:
            t.add_row(f"  tier {tu.name} ({tu.role})", f"{human_bytes(tu.used_bytes)} of {human_bytes(tu.capacity_bytes)}")
    if est.switch_in_s is not None:
        t.add_row("model switch-in time", human_time(est.switch_in_s))
    t.add_row("energy per token", f"{est.energy_j_per_token:.4g} J")
    if est.usd_per_million_tokens is not None:
        t.add_row("cost", f"{est.usd_per_million_tokens:.4g} USD / M tokens ({est.usd_per_hour:.2f} USD/h)")
    else:
        t.add_row("cost", "- (no rental price in the profile)")
    console.print(t)
    for n in est.notes:
        console.print(f"note: {n}")
    if per_op:
        for ph in (est.prefill, est.decode):
            if ph is None:
                continue
            ot = Table(title=f"{ph.name}: per operator (per layer instance, one device)")
            for col in ("op", "×", "FLOPs", "bytes", "compute", "memory", "comm", "bound"):
                ot.add_column(col)
            for o in ph.ops:
                ot.add_row(
                    o.name,
                    str(o.count),
                    human_num(o.flops),
                    human_bytes(o.weight_bytes + o.activation_bytes + o.kv_bytes),
                    human_time(o.compute_s),
                    human_time(o.memory_s),
                    human_time(o.comm_s),
                    o.bound,
                )
            console.print(ot)


def _print_training(est) -> None:
    d = est.to_dict()
    t = Table(title=f"Training step: {d.get('model')} on {d.get('devices')}× {d.get('hardware')}", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("step time", human_time(d["step_time_s"]))
    t.add_row("tokens/s", f"{d['tokens_per_s']:,.0f}")
    t.add_row("tokens/s per device", f"{d['tokens_per_s_per_device']:,.0f}")
    t.add_row("model FLOP/s per device", human_num(d["model_flops_per_s_per_device"]))
    t.add_row("MFU / HFU", f"{d['mfu'] * 100:.1f}% / {d['hfu'] * 100:.1f}%")
    for k in ("compute_s", "tp_comm_s", "cp_comm_s", "pp_comm_s", "pp_bubble_s", "dp_exposed_s", "ep_comm_s", "optimizer_s"):
        if d.get(k):
            t.add_row(f"  {k.removesuffix('_s').replace('_', ' ')}", human_time(d[k]))
    mem = d["memory"]
    for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "per_device_bytes"):
        t.add_row(k.replace("_bytes", "").replace("_", " "), human_bytes(mem[k]))
    t.add_row("fits", "yes" if mem["fits"] else "[red]no[/]")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate)


__all__ = ["estimate", "register", "fail"]
