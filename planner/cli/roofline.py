"""`tierwise roofline`: every operator of prefill and decode placed on the device's roofline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from planner.cli.common import console, emit_json, fail, writing


def roofline_points(est) -> list[dict]:
    """Operators with their arithmetic intensity and attained FLOP/s (one device)."""
    pts = []
    for ph in (est.prefill, est.decode):
        if ph is None:
            continue
        for o in ph.ops:
            nbytes = o.weight_bytes + o.activation_bytes + o.kv_bytes
            if o.flops <= 0 or nbytes <= 0 or o.time_s <= 0:
                continue
            pts.append(
                {
                    "phase": ph.name,
                    "op": o.name,
                    "kind": o.kind,
                    "flops": o.flops,
                    "bytes": nbytes,
                    "intensity_flop_per_byte": o.flops / nbytes,
                    "attained_flops_per_s": o.flops / o.time_s,
                    "time_s": o.time_s,
                    "bound": o.bound,
                    "precision": o.precision,
                }
            )
    return pts


def draw_roofline(dev, pts: list[dict], out: Path, title: str, precisions: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bw = dev.device_tier.bandwidth_bytes_per_s
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    xs = [p["intensity_flop_per_byte"] for p in pts] or [1.0]
    xmin = min(0.1, min(xs) / 2)
    xmax = max(1e4, max(xs) * 2)
    grid = [xmin * (xmax / xmin) ** (i / 200) for i in range(201)]
    styles = ["-", "--", ":", "-."]
    for k, prec in enumerate(precisions):
        peak = dev.peak_flops_per_s(prec)
        ax.plot(grid, [min(peak, x * bw) for x in grid], styles[k % 4], color="black", lw=1.2, label=f"roof {prec} ({peak / 1e12:.0f} TFLOP/s)")
        ridge = peak / bw
        ax.axvline(ridge, color="grey", lw=0.6, ls=":")
        ax.annotate(f"ridge {ridge:.0f}", (ridge, peak), textcoords="offset points", xytext=(4, -12), fontsize=7, color="grey")
    colors = {"prefill": "tab:blue", "decode": "tab:orange"}
    markers = {"linear": "o", "attention": "s", "lm_head": "^", "norm": "x", "conv": "D", "router": "v", "embedding": "+", "pool": "*"}
    seen = set()
    for p in pts:
        key = (p["phase"], p["kind"])
        label = f"{p['phase']} {p['kind']}" if key not in seen else None
        seen.add(key)
        ax.scatter(p["intensity_flop_per_byte"], p["attained_flops_per_s"], c=colors.get(p["phase"], "k"), marker=markers.get(p["kind"], "o"), s=28, alpha=0.8, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained FLOP/s (one device)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    fig.savefig(tmp, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    tmp.replace(out)


def roofline(
    model: Annotated[str, typer.Option("--model", "-m")],
    hardware: Annotated[str, typer.Option("--hardware", "-H")],
    out: Annotated[Path, typer.Option(help="Image to write (.png, .svg or .pdf).")] = Path("roofline.png"),
    batch: Annotated[Optional[int], typer.Option(help="Sequences per replica (default 1).")] = None,
    prompt: Annotated[Optional[int], typer.Option(help="Prompt tokens per request (default 512).")] = None,
    gen: Annotated[Optional[int], typer.Option(help="Generated tokens per request (default 128).")] = None,
    tp: Annotated[Optional[int], typer.Option(help="Tensor-parallel degree (default 1).")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Weight format (default: the device's native 16-bit).")] = None,
    activations: Annotated[Optional[str], typer.Option(help="Compute format (default: the device's native 16-bit).")] = None,
    kv: Annotated[Optional[str], typer.Option(help="KV-cache format (default: the device's native 16-bit).")] = None,
    sparsity: Annotated[Optional[str], typer.Option(help="dense | 2:4 | unstructured:R")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Draw the device roofline with each prefill and decode operator on it."""
    from planner.cli.estimate import cli_errors
    from planner.request import build_estimate_request, run_estimate
    from planner.request.estimate import load_specs

    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"--out must end in .png, .svg or .pdf; got {str(out)!r}", field="out")
    from planner.cli.common import check_writable

    check_writable("--out", out)
    with cli_errors():
        arch, dev = load_specs(model, hardware)
        given = dict(model=arch, hardware=dev, batch=batch, prompt=prompt, gen=gen, tp=tp, weights=weights,
                     activations=activations, kv=kv, sparsity=sparsity)
        # the operators' places on the roofline do not depend on the configuration fitting
        est = run_estimate(build_estimate_request(given), require_fit=False)
    pts = roofline_points(est)
    precs = []
    for prec in ("bf16", "fp8", "int8"):
        try:
            v = dev.peak_flops_per_s(prec)
        except Exception:  # noqa: BLE001
            continue
        if v and math.isfinite(v) and all(abs(dev.peak_flops_per_s(p) - v) > 1 for p in precs):
            precs.append(prec)
    with writing("out", out):
        draw_roofline(dev, pts, out, f"{arch.id} on {dev.name} (batch {est.serving.batch}, prompt {est.serving.prompt})", precs or ["fp32"])
    if json_out:
        emit_json({"out": str(out), "device_bandwidth_bytes_per_s": dev.device_tier.bandwidth_bytes_per_s, "roofs": {p: dev.peak_flops_per_s(p) for p in precs}, "points": pts})
    else:
        console.print(f"wrote {out} ({len(pts)} operators)")


def register(app: typer.Typer) -> None:
    app.command("roofline")(roofline)
