"""`tierwise hardware list|show` and `tierwise models list|show`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from planner.cli.common import console, emit_json, human_bytes, human_num, positional_id

hardware_app = typer.Typer(help="The catalog of hardware profiles.", no_args_is_help=True)
models_app = typer.Typer(help="The catalog of model definitions.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def device_summary(dev) -> dict:
    tiers = [
        {
            "name": t.name,
            "role": t.role,
            "capacity_bytes": t.capacity_bytes,
            "bandwidth_bytes_per_s": t.bandwidth_bytes_per_s,
            "latency_s": t.latency_s,
            "read_curve": [list(p) for p in t.read_curve] if t.read_curve else None,
        }
        for t in dev.tiers
    ]
    units = [
        {"unit": u.unit, "peak_flops_per_s": dict(u.peak_flops_per_s), "sparse_2to4_speedup": u.sparse_2to4_speedup}
        for u in dev.compute_units
    ]

    def link(lk):
        return None if lk is None else {"name": lk.name, "bandwidth_bytes_per_s": lk.bandwidth_bytes_per_s, "latency_s": lk.latency_s}

    return {
        "id": dev.id,
        "name": dev.name,
        "class": dev.device_class,
        "vendor": dev.vendor,
        "compute_units": units,
        "peak_bf16_flops_per_s": _safe_peak(dev, "bf16"),
        "tiers": tiers,
        "memory_capacity_bytes": dev.memory_capacity_bytes,
        "devices_per_node": dev.devices_per_node,
        "intra_node_link": link(dev.intra_node_link),
        "inter_node_link": link(dev.inter_node_link),
        "host_link": link(dev.host_link),
        "tdp_w": dev.tdp_w,
        "idle_w": dev.idle_w,
        "usd_per_hour": dev.usd_per_hour,
        "formats": {"native": sorted(dev.formats.native), "emulated": sorted(dev.formats.emulated)},
        "efficiency": {
            "compute_max": dev.efficiency.compute_max,
            "compute_half_flops": dev.efficiency.compute_half_flops,
            "bandwidth_max": dev.efficiency.bandwidth_max,
            "bandwidth_half_bytes": dev.efficiency.bandwidth_half_bytes,
            "kernel_overhead_s": dev.efficiency.kernel_overhead_s,
        },
        "sources": dict(dev.sources),
        "content_hash": dev.content_hash,
    }


def _safe_peak(dev, prec: str) -> float | None:
    try:
        return dev.peak_flops_per_s(prec)
    except Exception:  # noqa: BLE001 - a device may lack the precision entirely
        return None


@hardware_app.command("list")
def hardware_list(json_out: JsonOpt = False) -> None:
    """List every shipped hardware profile."""
    from hwmodels import list_devices, load_device

    devs = [load_device(i) for i in list_devices()]
    if json_out:
        emit_json(
            [
                {
                    "id": d.id,
                    "name": d.name,
                    "class": d.device_class,
                    "memory_capacity_bytes": d.memory_capacity_bytes,
                    "device_bandwidth_bytes_per_s": d.device_tier.bandwidth_bytes_per_s,
                    "peak_bf16_flops_per_s": _safe_peak(d, "bf16"),
                    "usd_per_hour": d.usd_per_hour,
                }
                for d in devs
            ]
        )
        return
    t = Table(title="Hardware profiles")
    for col in ("id", "class", "name", "memory", "bandwidth", "bf16 peak", "$/h"):
        t.add_column(col)
    for d in devs:
        t.add_row(
            d.id,
            d.device_class,
            d.name,
            human_bytes(d.memory_capacity_bytes),
            human_bytes(d.device_tier.bandwidth_bytes_per_s) + "/s",
            human_num(_safe_peak(d, "bf16")) + "FLOP/s",
            f"{d.usd_per_hour:.2f}" if d.usd_per_hour is not None else "-",
        )
    console.print(t)


@hardware_app.command("show")
def hardware_show(hardware_id: Annotated[str, typer.Argument(help="Catalog id or path to a hardware YAML.")], json_out: JsonOpt = False) -> None:
    """Show one hardware profile with its sources."""
    from hwmodels import load_device

    with positional_id("hardware"):
        d = load_device(hardware_id)
    s = device_summary(d)
    if json_out:
        emit_json(s)
        return
    console.print(f"[bold]{d.name}[/] ({d.id}, {d.device_class}, {d.vendor})")
    t = Table(title="Compute (dense peaks)")
    t.add_column("unit")
    t.add_column("precision")
    t.add_column("peak")
    for u in d.compute_units:
        for prec, v in u.peak_flops_per_s.items():
            t.add_row(u.unit, prec, human_num(v) + "FLOP/s")
    if d.fpga is not None:
        from hwmodels import fpga_peak_ops_per_s

        for wb, ab, kind in ((8, 8, "int"), (4, 8, "int"), (4, 4, "int"), (8, 8, "float")):
            t.add_row("fabric (derived)", f"{'fp' if kind == 'float' else 'int'}{wb}×{'fp' if kind == 'float' else 'int'}{ab}", human_num(fpga_peak_ops_per_s(d.fpga, wb, ab, kind)) + "OP/s")
    console.print(t)
    t = Table(title="Memory tiers (fastest first)")
    for col in ("tier", "role", "capacity", "bandwidth", "latency"):
        t.add_column(col)
    for tr in d.tiers:
        t.add_row(tr.name, tr.role, human_bytes(tr.capacity_bytes), human_bytes(tr.bandwidth_bytes_per_s) + "/s", f"{tr.latency_s * 1e6:.2f} µs" if tr.latency_s else "-")
    console.print(t)
    for label, lk in (("intra-node", d.intra_node_link), ("inter-node", d.inter_node_link), ("host", d.host_link)):
        if lk is not None:
            console.print(f"{label} link: {lk.name}, {human_bytes(lk.bandwidth_bytes_per_s)}/s per direction")
    price = f"{d.usd_per_hour:.2f} USD/h" if d.usd_per_hour is not None else "no rental price"
    tdp = f"TDP {d.tdp_w:.0f} W" if d.tdp_w is not None else "TDP -"
    idle = f"idle {d.idle_w:.0f} W" if d.idle_w is not None else "idle -"
    console.print(f"{tdp}, {idle}, {price}")
    console.print(f"native formats: {', '.join(sorted(d.formats.native))}")
    console.print("sources:")
    for k, v in d.sources.items():
        console.print(f"  {k}: {v}", highlight=False)


def model_summary(a) -> dict:
    return {
        "id": a.id,
        "model_type": a.model_type,
        "family": a.family,
        "params": a.param_count(),
        "active_params": a.active_param_count(),
        "num_layers": a.num_layers,
        "hidden_size": a.hidden_size,
        "num_heads": a.num_heads,
        "num_kv_heads": a.num_kv_heads,
        "head_dim": a.head_dim,
        "intermediate_size": a.intermediate_size,
        "vocab_size": a.vocab_size,
        "num_experts": a.num_experts,
        "experts_per_token": a.experts_per_token,
        "max_position_embeddings": a.max_position_embeddings,
        "kv_cache_bytes_per_token_bf16": a.kv_bytes_per_token(2.0) if a.generative else 0,
        "source": a.source,
    }


@models_app.command("list")
def models_list(json_out: JsonOpt = False) -> None:
    """List every shipped model definition."""
    from planner.arch import list_models, load_arch

    rows = [model_summary(load_arch(m)) for m in list_models()]
    if json_out:
        emit_json(rows)
        return
    t = Table(title="Models")
    for col in ("id", "type", "family", "params", "active", "layers", "hidden"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["id"], r["model_type"], r["family"], human_num(r["params"]), human_num(r["active_params"]), str(r["num_layers"]), str(r["hidden_size"]))
    console.print(t)


@models_app.command("show")
def models_show(model_id: Annotated[str, typer.Argument(help="Catalog id or path to an HF-style config (JSON/YAML).")], json_out: JsonOpt = False) -> None:
    """Show one model's architecture and parameter counts."""
    from planner.arch import load_arch

    with positional_id("model"):
        s = model_summary(load_arch(model_id))
    if json_out:
        emit_json(s)
        return
    t = Table(title=s["id"], show_header=False)
    for k, v in s.items():
        t.add_row(k, human_num(v) if k in ("params", "active_params") else str(v))
    console.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(hardware_app, name="hardware")
    app.add_typer(models_app, name="models")
