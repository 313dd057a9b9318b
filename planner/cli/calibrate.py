"""`tierwise calibrate`: measure this machine's roofs into a hardware profile."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from planner.cli.common import console, emit_json, err_console, human_bytes, human_num, human_time, writing


class DeviceKind(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def calibrate_cmd(
    out: Annotated[str, typer.Option("--out", "-o", help="Profile to write (.yaml); its stem becomes the id.")],
    device: Annotated[DeviceKind, typer.Option(help="What to measure: cpu or cuda.")] = DeviceKind.cpu,
    device_id: Annotated[Optional[str], typer.Option("--id", help="Profile id (default: the file stem).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer sizes and repetitions (about 2 s on a laptop).")]
    = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads to measure with (default: torch's "
                                                   "own); use the count you will validate with.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
) -> None:
    """Measure GEMM throughput per precision and size, copy bandwidth and per-op overhead."""
    from hwmodels import load_device

    from planner.execution.calibrate import calibrate, profile_dict, write_profile

    if not out.lower().endswith((".yaml", ".yml")):
        from planner.cli.common import fail

        fail(f"--out must end in .yaml or .yml; got {out!r}", field="out")
    from pathlib import Path

    from planner.cli.common import check_writable

    check_writable("--out", Path(out))
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeElapsedColumn(), console=err_console, transient=json_out) as progress:
        task = progress.add_task(f"calibrating {device.value}", total=None)

        def tick(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total)

        result = calibrate(device.value, quick=quick, progress=tick)
    with writing("out", out):
        path = write_profile(result, out, device_id)
    spec = load_device(str(path))  # the profile must load as written
    data = profile_dict(result, spec.id)
    summary = {
        "path": str(path), "id": spec.id, "device": result.device, "host": result.host, "date": result.date,
        "peak_flops_per_s": result.peak_flops_per_s, "bandwidth_bytes_per_s": result.bandwidth_bytes_per_s,
        "kernel_overhead_s": result.kernel_overhead_s, "compute_points": data["efficiency"]["compute_points"],
        "bandwidth_points": data["efficiency"]["bandwidth_points"],
        "gemm_rows_points": data["efficiency"].get("gemm_rows_points", []),
    }
    if json_out:
        emit_json(summary)
        return
    console.print(f"wrote [bold]{path}[/] (id {spec.id}, {data['sources']['MEAS']})")
    rows = summary["gemm_rows_points"]
    if rows:
        console.print("weight-streaming share by GEMM rows: " + ", ".join(f"{int(r)}→{f:.2f}" for r, f in rows))
    for p, v in result.peak_flops_per_s.items():
        console.print(f"  peak {p}: {human_num(v)}FLOP/s")
    console.print(f"  memory bandwidth: {human_bytes(result.bandwidth_bytes_per_s)}/s")
    console.print(f"  per-op overhead: {human_time(result.kernel_overhead_s)}")
    console.print(f"use it: tierwise estimate --hardware {path} …  /  tierwise validate PLAN --hardware {path} …")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_cmd)
