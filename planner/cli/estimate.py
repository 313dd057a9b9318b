"""`tierwise estimate`: the cost of one configuration (inference or training)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from planner.cli.common import (
    console,
    emit_json,
    fail,
    human_bytes,
    human_num,
    human_time,
)
from planner.errors import TierwiseError
from planner.request.fields import int_from_text
from planner.results import IMAGE_BASIS, PER_TOKEN_UNITS
from planner.request import (
    DoesNotFitError,
    EstimateRequest,
    TrainingRequest,
    build_estimate_request,
    estimate_result_dict,
    field_info,
    run_estimate,
)


class Mode(str, Enum):
    inference = "inference"
    training = "training"


_INF = field_info(EstimateRequest)
_TRN = field_info(TrainingRequest)


def _h(name: str) -> str:
    """Help text of a request field (declared once, in planner.request)."""
    if name in _INF:
        return _INF[name].help_text + ("" if name in _TRN else " (inference)")
    return "Training: " + _TRN[name].help_text


def estimate(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=_h("model"))] = None,
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help=_h("hardware"))] = None,
    mode: Annotated[Optional[Mode], typer.Option(help="inference (prefill+decode) or training (one step).")] = None,
    devices: Annotated[Optional[int], typer.Option(help=_h("devices"))] = None,
    tp: Annotated[Optional[int], typer.Option(help=_h("tp"))] = None,
    pp: Annotated[Optional[int], typer.Option(help=_h("pp"))] = None,
    dp: Annotated[Optional[int], typer.Option(help=_h("dp"))] = None,
    ep: Annotated[Optional[int], typer.Option(help=_h("ep"))] = None,
    cp: Annotated[Optional[int], typer.Option(help=_h("cp"))] = None,
    batch: Annotated[Optional[str], typer.Option(help=_h("batch"))] = None,
    prompt: Annotated[Optional[int], typer.Option(help=_h("prompt"))] = None,
    gen: Annotated[Optional[int], typer.Option(help=_h("gen"))] = None,
    weights: Annotated[Optional[str], typer.Option(help=_h("weights"))] = None,
    activations: Annotated[Optional[str], typer.Option(help=_h("activations"))] = None,
    kv: Annotated[Optional[str], typer.Option(help=_h("kv"))] = None,
    sparsity: Annotated[Optional[str], typer.Option(help=_h("sparsity"))] = None,
    low_rank: Annotated[Optional[int], typer.Option(help=_h("low_rank"))] = None,
    allow_offload: Annotated[Optional[bool], typer.Option("--allow-offload", help=_h("allow_offload"))] = None,
    kv_budget: Annotated[Optional[int], typer.Option(help=_h("kv_budget"))] = None,
    kv_evicted: Annotated[Optional[str], typer.Option(help=_h("kv_evicted"))] = None,
    kv_share: Annotated[Optional[int], typer.Option(help=_h("kv_share"))] = None,
    flash_chunk_kib: Annotated[Optional[float], typer.Option(help=_h("flash_chunk_kib"))] = None,
    per_op: Annotated[Optional[bool], typer.Option("--per-op", help=_h("per_op"))] = None,
    runtime: Annotated[Optional[str], typer.Option(help=_h("runtime"))] = None,
    engine: Annotated[Optional[str], typer.Option(help=_h("engine"))] = None,
    global_batch: Annotated[Optional[int], typer.Option(help=_h("global_batch"))] = None,
    micro_batch: Annotated[Optional[int], typer.Option(help=_h("micro_batch"))] = None,
    seq: Annotated[Optional[int], typer.Option(help=_h("seq"))] = None,
    zero: Annotated[Optional[int], typer.Option(help=_h("zero"))] = None,
    recompute: Annotated[Optional[str], typer.Option(help=_h("recompute"))] = None,
    sequence_parallel: Annotated[Optional[bool], typer.Option("--sequence-parallel", help=_h("sequence_parallel"))] = None,
    interleave: Annotated[Optional[int], typer.Option(help=_h("interleave"))] = None,
    optimizer: Annotated[Optional[str], typer.Option(help=_h("optimizer"))] = None,
    finetune: Annotated[Optional[str], typer.Option(help=_h("finetune"))] = None,
    attention: Annotated[Optional[str], typer.Option(help=_h("attention"))] = None,
    grad_accumulation: Annotated[Optional[str], typer.Option(help=_h("grad_accumulation"))] = None,
    dropout: Annotated[Optional[bool], typer.Option("--dropout", help=_h("dropout"))] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Predict time, memory, energy and cost of one configuration.

    Flags of the other mode are refused (e.g. --zero without --mode training). A
    configuration that does not fit exits 3 with the shortfall and the changes that fit."""
    given = {k: v for k, v in locals().items() if k != "json_out" and v is not None}
    if "batch" in given:  # the flag's text: an integer or 'max'
        given["batch"] = int_from_text(given["batch"])
    with cli_errors():
        req = build_estimate_request(given)
        try:
            est = run_estimate(req)
        except DoesNotFitError as exc:
            if not json_out and exc.result is not None:
                _print(req, exc.result)
            raise
    if json_out:
        emit_json(estimate_result_dict(req, est))
        return
    _print(req, est)


def _print(req, est) -> None:
    if isinstance(req, TrainingRequest):
        _print_training(est)
    else:
        _print_inference(est, bool(req.per_op))


@contextmanager
def cli_errors(aliases: Mapping[str, str] | None = None) -> Iterator[None]:
    """Request errors as the command line names them: ``aliases`` maps the request fields
    whose flag is not ``--field-name`` (``ttft_slo_s`` → ``--ttft-slo``). The error keeps its
    kind, code and details; ``tierwise``'s main renders it."""
    try:
        yield
    except TierwiseError as exc:
        for name, flag in (aliases or {}).items():
            exc.template = exc.template.replace("{@" + name + "}", flag)
        if aliases:  # so that a message naming ``--ttft-slo`` is not prefixed ``--ttft-slo-s:``
            exc.aliases = {**getattr(exc, "aliases", {}), **aliases}
        raise


def _print_inference(est, per_op: bool) -> None:
    m = est.memory
    title = f"{est.model} on {est.layout.devices}× {est.hardware} (tp={est.layout.tp} pp={est.layout.pp} dp={est.layout.dp})"
    t = Table(title=title, show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    c = est.choice
    images = est.per_token in IMAGE_BASIS.values()  # a CNN or ViT: one fixed-size image per sample
    t.add_row("engine", _engine_cell(est.engine, (est.engine_assumptions or {}).get("runtime")))
    kv = f", kv {c.kv}" if est.generative else ""
    t.add_row("formats", f"weights {c.weights}, activations {c.activations}{kv}, {c.sparsity}")
    if est.generative:
        t.add_row("batch / prompt / gen", f"{est.serving.batch} / {est.serving.prompt} / {est.serving.gen}")
    elif images:
        t.add_row("batch", f"{est.serving.batch} images")
    else:
        t.add_row("batch / tokens", f"{est.serving.batch} / {est.serving.prompt}")
    u = est.uncertainty
    bound = escape(f"[{est.prefill.bound}-bound]")
    if est.generative:
        t.add_row("TTFT (prefill)", f"{human_time(est.ttft_s)}{_band(u, 'ttft_s', human_time)}  {bound}")
    if est.decode is not None:
        t.add_row("TPOT (decode, avg)", f"{human_time(est.tpot_s)}{_band(u, 'tpot_s', human_time)}  " + escape(f"[{est.decode.bound}-bound]"))
    if est.generative:
        t.add_row("latency per request", human_time(est.latency_s) + _band(u, "latency_s", human_time))
    else:  # one forward pass over the batch: TTFT and the request's latency are the same
        t.add_row("latency (one forward pass)", f"{human_time(est.latency_s)}{_band(u, 'latency_s', human_time)}  {bound}")
    if est.output_tokens_per_s:
        t.add_row("output tokens/s (system)", _fixed(1)(est.output_tokens_per_s) + _band(u, "output_tokens_per_s", _fixed(1)))
    if est.per_token != "images":  # a CNN's "tokens" are its images: samples/s says it
        label = "patches/s" if images else ("prefill tokens/s" if est.generative else "tokens/s")
        t.add_row(label, _fixed(1)(est.prefill_tokens_per_s) + _band(u, "prefill_tokens_per_s", _fixed(1)))
    t.add_row("images/s" if images else "samples/s", _fixed(2)(est.samples_per_s) + _band(u, "samples_per_s", _fixed(2)))
    t.add_row("weights (total)", human_bytes(m.weights_bytes))
    if est.generative:
        t.add_row("KV cache (total)", human_bytes(m.kv_cache_bytes))
        t.add_row("KV cache (per device)", human_bytes(sum(tu.kv_cache_bytes for tu in m.tiers)))
    t.add_row("activations (peak, per device)", human_bytes(m.activations_bytes))
    held = f"{human_bytes(m.per_device_bytes)} of {human_bytes(m.device_capacity_bytes)}"
    elsewhere = (m.offloaded_weights_bytes or 0.0) + (m.offloaded_kv_bytes or 0.0)
    if m.fits and elsewhere > 0 and m.per_device_bytes > m.device_capacity_bytes:
        # what exceeds the device tier lives in a slower one (flash, host memory): the tier rows below say where
        held += f" ({human_bytes(elsewhere)} of it in slower tiers)"
    t.add_row("memory per device", held)
    t.add_row("fits", "yes" if m.fits else f"[red]no[/] (short by {human_bytes(m.shortfall_bytes)})")
    for tu in m.tiers:
        if tu.used_bytes > 0:
            t.add_row(f"  tier {tu.name} ({tu.role})", f"{human_bytes(tu.used_bytes)} of {human_bytes(tu.capacity_bytes)}")
    if est.switch_in_s is not None:
        t.add_row("model switch-in time", human_time(est.switch_in_s))
    one, many = PER_TOKEN_UNITS[est.per_token]
    t.add_row(f"energy per {one}", f"{est.energy_j_per_token:.4g} J")
    if est.usd_per_million_tokens is not None:
        t.add_row("cost", f"{est.usd_per_million_tokens:.4g} USD / M {many} ({est.usd_per_hour:.2f} USD/h)")
    else:
        t.add_row("cost", "- (no rental price in the profile)")
    console.print(t)
    for n in est.notes:
        console.print(f"note: {n}")
    _print_validity(u)
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


def _engine_cell(engine: str | None, runtime: str | None, *, training: bool = False) -> str:
    """The engine and the launch mode priced: a captured or compiled program (a training step: kernels
    launched ahead of the GPU), or eager PyTorch paying the host's dispatch per kernel."""
    if not engine:
        return "-"
    graph = "host launches hidden behind the kernels" if training else "graph launch"
    mode = {"eager": "eager PyTorch, host dispatch per kernel", "graph": graph}.get(runtime or "")
    return f"{engine} ({mode})" if mode else engine


def _print_training(est) -> None:
    d = est.to_dict()
    t = Table(title=f"Training step: {d.get('model')} on {d.get('devices')}× {d.get('hardware')}", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("engine", _engine_cell(d.get("engine"), d.get("runtime"), training=True))
    u = est.uncertainty
    t.add_row("step time", human_time(d["step_time_s"]) + _band(u, "step_time_s", human_time))
    # a CNN's positions are its images, a ViT's its patches
    unit = {"images": "images", "image_patches": "patches"}.get(d.get("per_token_basis"), "tokens")
    t.add_row(f"{unit}/s", _fixed(1)(d["tokens_per_s"]) + _band(u, "tokens_per_s", _fixed(1)))
    t.add_row(f"{unit}/s per device", f"{d['tokens_per_s_per_device']:,.0f}")
    t.add_row("model FLOP/s per device", human_num(d["model_flops_per_s_per_device"]))
    t.add_row("MFU / HFU", f"{d['mfu'] * 100:.1f}%" + _band(u, "mfu", lambda x: f"{100 * x:.1f}%") + f" / {d['hfu'] * 100:.1f}%")
    for k in ("compute_s", "recompute_s", "tp_comm_s", "cp_comm_s", "pp_comm_s", "pp_bubble_s", "dp_exposed_s", "ep_comm_s",
              "optimizer_s", "framework_s"):
        if d.get(k):
            label = k.removesuffix("_s").replace("_", " ")
            if k == "optimizer_s":
                label = "optimizer step"
            elif k == "framework_s":  # the engine's fitted time per micro-batch beyond the kernels
                label = f"framework ({d['microbatches']} micro-batches × {human_time(d[k] / d['microbatches'])})"
            t.add_row(f"  {label}", human_time(d[k]))
    mem = d["memory"]
    for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "logits_bytes",
              "runtime_context_bytes", "per_device_bytes"):
        if mem.get(k) or k in ("weights_bytes", "activations_bytes", "per_device_bytes"):
            t.add_row(k.replace("_bytes", "").replace("_", " "), human_bytes(mem[k]))
    t.add_row("fits", "yes" if mem["fits"] else "[red]no[/]")
    console.print(t)
    for n in d.get("notes") or ():
        if not n.startswith("does not fit"):  # the does-not-fit error says it, with the changes that fit
            console.print(f"note: {n}", highlight=False, markup=False)
    _print_validity(u)


def _fixed(decimals: int):
    """A rate and its band at one precision: whole numbers from 100, ``decimals`` places from 1, three
    significant digits below 1 (so ``0.0564 (p10–p90 0.039–0.07)``, not ``0.06 (p10–p90 0.0–0.1)``)."""
    def fmt(x: float) -> str:
        if x >= 100:
            return f"{x:,.0f}"
        return f"{x:,.{decimals}f}" if x >= 1 or x == 0 else f"{x:.3g}"
    return fmt


def _band(u, name: str, fmt, prefix: str = "p10–p90 ") -> str:
    """`` (p10–p90 95 ms–140 ms)`` for a figure of ``u`` (an ``Uncertainty`` or None) with an interval, else ``""``;
    ``*`` outside the validated region. Tables whose legend says what the range is pass ``prefix=""``."""
    i = None if u is None else u.get(name)
    if i is None:
        return ""
    mark = "" if i.validated else "*"
    return f" ({prefix}{fmt(i.p10)}–{fmt(i.p90)}{mark})"


def _print_validity(u) -> None:
    """Where the error bars come from, and what lies outside the validated region."""
    if u is None:
        return
    if u.validated:
        console.print("error bars: p10–p90 of the cost model's out-of-sample error on published rows of the same kind "
                      f"({u.hardware_class}, {u.engine_class} engines, batch {u.regime})")
        return
    console.print("error bars: p10–p90 of the cost model's out-of-sample error on the published rows nearest in kind; [yellow]* outside the "
                  "validated region[/], the range is that of a coarser group of rows:")
    for n in u.notes:
        console.print(f"  {escape(n)}")


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate)


__all__ = ["cli_errors", "estimate", "register", "fail"]
