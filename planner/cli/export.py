"""`tierwise export PLAN --format F [--out DIR]`: deployment configs from a plan file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hwmodels.errors import TierwiseError, echo_value
from planner.cli.common import CliError, console, emit_json, writing


def export(
    plan_file: Annotated[Path, typer.Argument(help="A plan written by `tierwise plan` (YAML or JSON).")],
    format: Annotated[Optional[str], typer.Option("--format", "-f", help="vllm | sglang | compressed-tensors | hf | modelopt-mixed | trtllm | llamacpp | megatron | executorch | mlc | yaml | json (default: the exporter of --engine, else of the engine the plan was made for).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write the files into (default: print them).")] = None,
    model_path: Annotated[Optional[str], typer.Option(help="Model the commands load (HF repo id or folder); default from the catalog entry.")] = None,
    engine: Annotated[Optional[str], typer.Option(help="Engine the files are for (default: the one the plan was made for); the plan is checked against what it runs on the plan's hardware.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Turn a plan into the configuration of a serving or training engine."""
    from planner.export import ExportContext, export_formats, export_plan, group_modules, write_export
    from planner.plan import load_plan, plan_to_dict

    if format is not None and format.strip().lower() not in export_formats():
        from planner.request.fields import did_you_mean

        raise CliError(f"--format must be one of {', '.join(export_formats())}; got {echo_value(format)}"
                       f"{did_you_mean(format, export_formats())}", field="format")
    from planner.cli.common import check_writable

    check_writable("--out", out, folder=True)
    plan = load_plan(plan_file)
    d = plan_to_dict(plan)
    arch = dev = None
    try:
        from planner.arch import load_arch

        arch = load_arch(d["model"])
    except Exception:  # noqa: BLE001 - a plan for a model not in this catalog still exports, by group names
        arch = _arch_at(model_path)
    try:
        from hwmodels import load_device

        dev = load_device(d["hardware"])
    except Exception:  # noqa: BLE001 - likewise for hardware: capacity then comes from the plan
        dev = None
    if dev is not None and d.get("hardware_hash") not in (None, f"sha256:{dev.content_hash}"):
        dev = None  # a profile file that reused a catalog id (an L4 called h100-sxm): the plan knows its device
    ctx = ExportContext(
        model_path=model_path,
        modules=group_modules(arch) if arch is not None else None,
        arch=arch,
        device_capacity_bytes=dev.memory_capacity_bytes if dev is not None else None,
        tiers=tuple(t.name for t in dev.tiers) if dev is not None else None,
        devices_per_node=dev.devices_per_node if dev is not None else None,
    )
    try:
        result = export_plan(d, format, ctx, engine=engine)
    except TierwiseError as exc:
        if exc.field and exc.field not in ("format", "engine", "out", "model_path"):
            # a field of the plan file (its KV format, its groups, its predicted memory), not a flag of export
            exc.aliases = {**(getattr(exc, "aliases", None) or {}), exc.field: "PLAN"}
        raise
    if out is not None and out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; expected a folder to write the export's files into", field="out")
    with writing("out", out):
        written = write_export(result, out) if out is not None else []
    if json_out:
        body = result.to_dict()
        body["written"] = [str(p) for p in written]
        emit_json(body)
        return
    if out is None:
        for f in result.files:
            console.rule(f.path)
            console.print(f.content, markup=False, highlight=False, soft_wrap=True)
    else:
        for p in written:
            console.print(f"wrote {p}", highlight=False)
    for n in result.notes:
        console.print(f"note: {n}", highlight=False, soft_wrap=True)
    console.print("next: " + result.next_command, markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def _arch_at(model_path: str | None):
    """The architecture of a local model folder (its config.json) or config file named by --model-path,
    for a plan whose model is not in the catalog; None when there is none."""
    from pathlib import Path

    if not model_path:
        return None
    p = Path(model_path).expanduser()
    config = p / "config.json" if p.is_dir() else p
    if not config.is_file():
        return None
    try:
        from planner.arch import load_arch

        return load_arch(str(config))
    except Exception:  # noqa: BLE001 - not a config this catalog reads: export by group names
        return None
