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
    from planner.formats import get_format, parse_sparsity

    for f in fmts:
        get_format(f)  # FormatError → exit 2 with the known names
    for s in _split(sparsity):
        parse_sparsity(s)
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads())
    try:
        table = _measure(torch_model, fmts, _split(sparsity) or ["dense"], method=method, samples=samples, seed=seed,
                         kv_formats=_split(kv_formats), json_out=json_out,
                         deadline=Deadline(time_limit, field="time_limit"))
    finally:
        torch.set_num_threads(previous_threads)
    with writing("out", out):
        path = write_sensitivity(table, out)
    if json_out:
        emit_json(table.to_file_dict() | {"path": str(path)})
        return
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
