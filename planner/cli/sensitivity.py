"""`tierwise sensitivity`: measure per group × option sensitivity on a torch model."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hwmodels.errors import TierwiseError
from planner.cli.common import console, emit_json, err_console, fail, writing


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def sensitivity_cmd(
    torch_model: Annotated[str, typer.Option("--torch-model", help="all-minilm-l6-v2 | digits-cnn | a Llama-shaped "
                                             "catalog id [@layers=N,vocab=V] | a BERT checkpoint directory.")],
    formats: Annotated[str, typer.Option("--formats", help="Comma-separated weight formats, e.g. "
                                         "int8,int4-g128,int3-g64.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Sensitivity file to write (.yaml/.json), read by "
                                     "`tierwise plan --sensitivity`.")],
    sparsity: Annotated[str, typer.Option(help="Comma-separated sparsity patterns: dense, 2:4, unstructured:S.")]
    = "dense",
    method: Annotated[str, typer.Option(help="kl (output error, one group at a time) | fisher (diagonal Fisher).")]
    = "kl",
    samples: Annotated[int, typer.Option(min=2, help="Calibration samples.")] = 8,
    kv_formats: Annotated[Optional[str], typer.Option("--kv-formats", help="Decoders: KV formats to score too.")]
    = None,
    activations: Annotated[Optional[str], typer.Option("--activations", help="Low-precision compute formats to score "
                                                      "with every weight format too (keys like int8/int8), e.g. "
                                                      "int8,fp8-e4m3; --method kl only.")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="Engine (id or profile file) whose recipe quantizes "
                                                  "the integer activations of --activations: SmoothQuant for vllm and "
                                                  "sglang, scale blocks for llamacpp; default: per token.")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the calibration inputs.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the table as JSON too.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads (default: the cores not busy "
                                                   "with other work, at least 1).")] = None,
    time_limit: Annotated[Optional[float], typer.Option(min=0, help="Stop with an error after this many "
                                                        "seconds.")] = None,
) -> None:
    """Score every decision group × option of a real model and write a sensitivity file."""
    from planner.deadline import Deadline
    from planner.execution.sensitivity_data import METHODS, default_threads, write_sensitivity

    if method not in METHODS:
        fail(f"--method must be one of {', '.join(METHODS)}; got {method!r}", field="method")
    fmts = _split(formats)
    if not fmts:
        fail("--formats needs at least one weight format, e.g. int8,int4-g128", field="formats")
    if not out.lower().endswith((".yaml", ".yml", ".json")):
        fail(f"--out must end in .yaml, .yml or .json; got {out!r}", field="out")
    from pathlib import Path

    from planner.cli.common import check_writable

    check_writable("--out", Path(out))
    from planner.formats import FormatError, get_format, parse_sparsity

    def known(flag: str, name: str):
        try:
            return get_format(name)
        except FormatError as exc:  # exit 2 naming the flag, with the known names
            fail(f"{flag}: {exc}", field=flag.lstrip("-"))

    for f in fmts:
        known("--formats", f)
    for s in _split(sparsity):
        parse_sparsity(s)
    acts = _split(activations)
    if activations is not None and not acts:
        fail("--activations needs at least one compute format, e.g. int8 or fp8-e4m3", field="activations")
    for a in acts:
        spec = known("--activations", a)
        if not spec.is_activation:
            fail(f"--activations: {spec.name!r} is a weight-only format; give compute formats such as int8 or fp8-e4m3",
                 field="activations")
        if spec.name in ("fp32", "bf16", "fp16"):
            fail(f"--activations: {spec.name} is the reference compute format, which every weight-only score already "
                 "uses; give low-precision formats such as int8 or fp8-e4m3", field="activations")
    if acts and method != "kl":
        fail("--activations is measured by --method kl only (the diagonal Fisher scores weight perturbations)",
             field="activations")
    if engine is not None:
        if not acts:
            fail("--engine chooses how the integer activations of --activations are quantized; give --activations too",
                 field="engine")
        from pathlib import Path

        from planner.engines import load_engine

        if engine.endswith((".yaml", ".yml")) and not Path(engine).is_file():
            fail(f"--engine: no such engine profile file {engine!r}", field="engine")
        try:
            spec = load_engine(engine)
        except TierwiseError as exc:  # an unknown id or a bad profile file → exit 2 naming --engine
            if exc.field == "engine":
                raise
            fail(f"--engine {engine}: {exc}", field="engine")
        if spec.kind == "training":
            fail(f"--engine: {spec.id} is a training engine; give the serving engine whose int8 recipe the scores "
                 "should follow (vllm, sglang, llamacpp, trtllm, ...)", field="engine")
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads())
    try:
        table = _measure(torch_model, fmts, _split(sparsity) or ["dense"], method=method, samples=samples, seed=seed,
                         kv_formats=_split(kv_formats), json_out=json_out, activations=acts, engine=engine,
                         deadline=Deadline(time_limit, field="time_limit"))
    finally:
        torch.set_num_threads(previous_threads)
    with writing("out", out):
        path = write_sensitivity(table, out)
    if json_out:
        emit_json(table.to_file_dict() | {"path": str(path), "notes": list(table.notes)})
        return
    for note in table.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    n = sum(len(v) for v in table.scores.values())
    console.print(f"wrote [bold]{path}[/]: {n} scores over {len(table.scores)} groups ({table.metric}); "
                  f"use it with `tierwise plan … --sensitivity {path}`")


def _measure(torch_model: str, fmts: list[str], sparsity: list[str], *, json_out: bool, **kw):
    """measure_sensitivity with a progress bar on stderr; ValueError → exit 2."""
    from planner.execution.sensitivity_data import measure_sensitivity

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=err_console,
                  transient=json_out) as progress:
        task = progress.add_task("loading the model", total=None)

        def tick(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total)

        try:
            return measure_sensitivity(torch_model, fmts, sparsity, progress=tick, **kw)
        except TierwiseError:
            raise
        except ValueError as exc:
            fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("sensitivity")(sensitivity_cmd)
