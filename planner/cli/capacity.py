"""`tierwise capacity serve|train`: how many devices of which hardware meet a workload.

Sweeps run as independent tasks (planner.capacity) in a local process pool by default,
in this process with ``--executor serial``, or on a Ray cluster with ``--executor ray``
(optional extra ``tierwise[ray]``; ``--ray-address`` passes through to ``ray.init``).
A progress bar shows in a terminal, never with ``--json``. ``--csv`` writes the rows with
pandas; ``--plot`` draws cost against QPS (serve) or throughput against devices (train)
with matplotlib's Agg backend.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from planner.cli.common import (
    EXIT_BAD_INPUT,
    CliError,
    console,
    emit_json,
    err_console,
    human_bytes,
    check_writable,
    human_time,
    plot_target,
)
from hwmodels.errors import per_front_end, render_tokens
from planner.cli.estimate import _band as _figure_band
from planner.cli.estimate import cli_errors
from planner.fileio import atomic_write_text
from planner.request.capacity import (
    CAPACITY_CLI_ALIASES,
    CapacityFrontierRequest,
    CapacityServeRequest,
    CapacityTrainRequest,
    resolve_capacity_frontier,
    resolve_capacity_serve,
    request_deadline,
    serve_infeasible,
    resolve_training_fleet,
    serve_intervals,
    frontier_intervals,
    train_intervals,
)
from planner.request.fields import field_info

capacity_app = typer.Typer(help="Devices, layout and cost that meet a serving load or a training deadline.", no_args_is_help=True)


class Executor(str, Enum):
    process = "process"
    serial = "serial"
    ray = "ray"


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
CsvOpt = Annotated[Optional[Path], typer.Option("--csv", help="Write the result rows as CSV.")]
# a string, not a Path: a trailing slash ("out/") names a folder even before it exists, and Path drops it
PlotOpt = Annotated[Optional[str], typer.Option("--plot", help="Write a plot (PNG) of the sweep; a folder (out/) gets NAME.png.")]
ExecOpt = Annotated[Executor, typer.Option("--executor", help="process (local pool), serial, or ray.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes (default: CPU count).")]
RayOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster address for --executor ray (default: local).")]


# ---------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------


def _run_tasks(fn: Callable, tasks: Sequence, executor: Executor, workers: int | None, ray_address: str | None, show: bool, label: str) -> list:
    """Run ``fn`` over ``tasks`` (results in task order) with an optional progress bar."""
    if not tasks:
        return []
    progress = None
    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
    results: list[Any] = [None] * len(tasks)
    try:
        if progress:
            progress.start()
            bar = progress.add_task(label, total=len(tasks))
        advance = (lambda: progress.advance(bar)) if progress else (lambda: None)
        if executor == Executor.ray:
            import ray  # type: ignore  # availability checked by _check_executor

            ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
            remote = ray.remote(fn)
            refs = [remote.remote(t) for t in tasks]
            index = {r: i for i, r in enumerate(refs)}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    results[index[r]] = ray.get(r)
                    advance()
        elif executor == Executor.process and len(tasks) > 1 and (workers or os.cpu_count() or 1) > 1:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            n = min(workers or os.cpu_count() or 1, len(tasks))
            pool = ProcessPoolExecutor(max_workers=n)
            try:
                futs = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
                for f in as_completed(futs):
                    results[futs[f]] = f.result()
                    advance()
            except BaseException:
                # Ctrl-C (to this process alone, or to the group) or an error: drop the queued tasks and stop the
                # workers now, rather than waiting for every queued search to finish before exiting
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
                raise
            pool.shutdown(wait=True)
        else:
            for i, t in enumerate(tasks):
                results[i] = fn(t)
                advance()
    finally:
        if progress:
            progress.stop()
    return results


RAY_MISSING = "--executor ray needs Ray, which is not installed: install tierwise[ray] (pip install 'tierwise[ray]')"


def _check_executor(executor: Executor, json_out: bool) -> None:
    """Fail early (exit 2) when Ray is asked for but not installed."""
    if executor != Executor.ray:
        return
    try:
        import ray  # type: ignore  # noqa: F401
    except ImportError:
        # errors are printed as plain text (no markup): the pip command must copy as written
        raise CliError(RAY_MISSING, EXIT_BAD_INPUT, field="executor") from None


def _wants_progress(json_out: bool) -> bool:
    return (not json_out) and sys.stdout.isatty()


# ---------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------


_S = field_info(CapacityServeRequest)
_T = field_info(CapacityTrainRequest)

HARDWARE_HELP = ("Hardware ids or YAML paths, comma separated (left out: every catalog device; with --engine, the "
                 "catalog devices one of the engines runs on).")


@capacity_app.command("serve")
def serve(
    qps: Annotated[str, typer.Option("--qps", help="Requests per second (several, comma separated, sweep the load).")],
    ttft_slo: Annotated[str, typer.Option("--ttft-slo", help=_S["ttft_slo_s"].help_text)],
    tpot_slo: Annotated[str, typer.Option("--tpot-slo", help=_S["tpot_slo_s"].help_text)],
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help=HARDWARE_HELP)] = None,
    prompt: Annotated[Optional[int], typer.Option("--prompt", help=_S["prompt"].help_text)] = None,
    gen: Annotated[Optional[int], typer.Option("--gen", help=_S["gen"].help_text)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=_S["model"].help_text)] = None,
    models: Annotated[Optional[str], typer.Option("--models", help="Several models on one fleet, comma separated.")] = None,
    mix: Annotated[Optional[str], typer.Option("--mix", help=_S["mix"].help_text)] = None,
    formats: Annotated[Optional[str], typer.Option("--formats", help="Weight formats to consider, comma separated (default bf16,fp8,int4-g128).")] = None,
    activations: Annotated[Optional[str], typer.Option("--activations", help=_S["activations"].help_text)] = None,
    kv: Annotated[Optional[str], typer.Option("--kv", help=_S["kv"].help_text)] = None,
    percentile: Annotated[Optional[float], typer.Option("--percentile", help="Percentile the SLOs apply to (50..99.9; default 95).")] = None,
    max_devices: Annotated[Optional[int], typer.Option("--max-devices", help=_S["max_devices"].help_text)] = None,
    max_pp: Annotated[Optional[int], typer.Option("--max-pp", help=_S["max_pp"].help_text)] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help=_S["runtime"].help_text)] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help=_S["engine"].help_text)] = None,
    serving: Annotated[Optional[str], typer.Option("--serving", help=_S["serving"].help_text)] = None,
    disaggregated: Annotated[bool, typer.Option("--disaggregated", help="Same as --serving disaggregated.")] = False,
    kv_link: Annotated[Optional[str], typer.Option("--kv-link", help=_S["kv_link"].help_text)] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time-limit", help=_S["time_limit_s"].help_text + " The "
                                                        "search then runs in this process (--executor is not used), "
                                                        "as the REST service runs it.")] = None,
    json_out: JsonOpt = False,
    csv_path: CsvOpt = None,
    plot_path: PlotOpt = None,
    executor: ExecOpt = Executor.process,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
) -> None:
    """Fewest devices per engine × hardware (layout × replicas, formats, batch) that meet both SLOs, cheapest first."""
    from planner.capacity import dedupe_tasks, run_serve_task, run_serve_within, serve_tasks, summarize_searched

    _check_executor(executor, json_out)
    plot_path = plot_target(plot_path, "capacity-serve")
    check_writable("--csv", csv_path)
    if disaggregated:
        if serving not in (None, "disaggregated"):
            raise CliError(f"--disaggregated contradicts --serving {serving}", EXIT_BAD_INPUT, field="serving")
        serving = "disaggregated"
    given = dict(model=model, models=models, mix=mix, hardware=hardware, qps=qps, prompt=prompt, gen=gen,
                 ttft_slo_s=ttft_slo, tpot_slo_s=tpot_slo, percentile=percentile, formats=formats,
                 activations=activations, kv=kv,
                 max_devices=max_devices, max_pp=max_pp, runtime=runtime, engine=engine, serving=serving,
                 kv_link=kv_link, time_limit_s=time_limit)
    with cli_errors(CAPACITY_CLI_ALIASES):
        req = CapacityServeRequest(**{k: v for k, v in given.items() if v is not None})
        deadline = request_deadline(req)
        archs, devices, targets, search = resolve_capacity_serve(req)
    unsupported = [p for p in devices if p.listed]
    loads = [t.qps for t in targets]
    if plot_path is not None and len(targets) == 1:
        t0 = targets[0]
        targets = [replace(t0, qps=q) for q in sorted({t0.qps * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)})]
    all_tasks = []
    spans = []
    for t in targets:
        ts = serve_tasks(archs, devices, t, search)
        spans.append((len(all_tasks), len(all_tasks) + len(ts)))
        all_tasks.extend(ts)
    unique, index = dedupe_tasks(all_tasks)
    if deadline is None:
        found = _run_tasks(run_serve_task, unique, executor, workers, ray_address, _wants_progress(json_out),
                           "searching layouts")
    else:  # as run_capacity_serve: the searches done when the time is up, pair by pair; nothing done → exit 3
        with cli_errors(CAPACITY_CLI_ALIASES):
            found = run_serve_within(unique, deadline)
    if isinstance(found, list):
        found = dict(enumerate(found))
    answers = {}
    for t, (a, b) in zip(targets, spans):
        ans = summarize_searched(archs, t, all_tasks[a:b], index[a:b], found, unsupported)
        answers[t.qps] = serve_intervals(ans, devices, search.runtime)
    shown = [answers[q] for q in loads]
    if csv_path is not None:
        _write_csv(_serve_rows(answers), csv_path)
    if plot_path is not None:
        _plot_serve(answers, plot_path)
    if json_out:
        if len(shown) == 1 and not shown[0].feasible:
            with cli_errors(CAPACITY_CLI_ALIASES):  # time_limit when the limit stopped it, as in REST
                raise serve_infeasible(shown[0])
        emit_json(shown[0].to_dict("cli", CAPACITY_CLI_ALIASES) if len(shown) == 1
                  else {"sweep": [a.to_dict("cli", CAPACITY_CLI_ALIASES) for a in shown]})
        return
    for ans in shown:
        _print_serve(ans)
    if not shown[-1].feasible:
        with cli_errors(CAPACITY_CLI_ALIASES):
            raise serve_infeasible(shown[-1])


def _serve_rows(answers: dict) -> list[dict]:
    """One CSV row per (QPS, engine, hardware); disaggregated figures prefixed ``disagg_``."""
    from planner.capacity_model import unsupported_rows

    rows = []
    for q, ans in answers.items():
        for rank, h in enumerate(ans.ranked, 1):
            o = h.best or h.closest
            row = {"qps": q, "rank": rank, "engine": h.engine, "hardware": h.hardware, "supported": True,
                   "meets_slo": h.best is not None, "complete": h.complete}
            if o is not None:
                row.update({k: v for k, v in o.to_dict().items()
                            if k not in ("hardware", "engine", "models", "failures", "uncertainty")})
                row.update(_band_columns(o))
                row["failures"] = "; ".join(o.failures)
            elif h.reason:
                row["failures"] = h.reason_text("cli", CAPACITY_CLI_ALIASES)
            if h.separate_devices is not None:
                row["separate_devices"] = h.separate_devices
                row["separate_usd_per_hour"] = h.separate_usd_per_hour
            d = h.disagg or h.disagg_closest
            if h.disaggregated:
                row["disagg_meets_slo"] = h.disagg is not None
                if h.disagg_reason:
                    row["disagg_reason"] = h.disagg_reason
            if d is not None:
                row.update({"disagg_devices": d.devices, "disagg_prefill": f"tp{d.prefill_tp}·pp{d.prefill_pp} × {d.prefill_replicas}",
                            "disagg_decode": f"tp{d.decode_tp}·pp{d.decode_pp} × {d.decode_replicas}",
                            "disagg_kv_bytes": d.kv_bytes, "disagg_kv_transfer_s": d.kv_transfer_s,
                            "disagg_kv_link": d.kv_link_kind, "disagg_prefill_s": d.prefill_s,
                            "disagg_ttft_p50_s": d.ttft_p50_s, "disagg_ttft_p95_s": d.ttft_p95_s, "disagg_ttft_s": d.ttft_s,
                            "disagg_tpot_p50_s": d.tpot_p50_s, "disagg_tpot_p95_s": d.tpot_p95_s, "disagg_tpot_s": d.tpot_s,
                            "disagg_usd_per_hour": d.usd_per_hour,
                            **{f"disagg_{k}": v for k, v in _band_columns(d).items()}})
            rows.append(row)
        for u in unsupported_rows(ans.unsupported, "cli"):  # the command line's file: its flags (--activations)
            rows.append({"qps": q, "engine": u["engine"], "hardware": u["hardware"], "supported": False,
                         **{k: u[k] for k in ("weights", "activations") if k in u},
                         "meets_slo": False, "failures": u["reason"]})
        for engine, hw in ans.not_searched:
            rows.append({"qps": q, "engine": engine, "hardware": hw, "supported": True, "meets_slo": False,
                         "complete": False, "failures": "not searched before the time limit"})
    return rows


def _aggregated_order(ans) -> list:
    """Rows by their aggregated answer (the ranking of a disaggregated search counts both modes)."""
    if ans.serving != "disaggregated":
        return list(ans.ranked)
    inf = math.inf

    def key(h) -> tuple:
        if h.best is None:
            return (1, h.closest.badness if h.closest else inf, 0, 0.0)
        return (0, h.best.usd_per_hour if h.best.usd_per_hour is not None else inf, h.best.devices, h.best.ttft_s)

    return sorted(ans.ranked, key=key)


def _print_serve(ans) -> None:
    from planner.capacity_model import unsupported_rows

    t = ans.target
    pct = f"p{t.percentile * 100:g}"
    title = (
        f"{', '.join(ans.models)} at {t.qps:g} QPS, prompt {t.prompt} / gen {t.gen}: "
        f"TTFT {pct} ≤ {t.ttft_slo_s:g} s, TPOT {pct} ≤ {t.tpot_slo_s:g} s"
    )
    tab = Table(title=title)
    multi = len(ans.models) > 1
    cols = ["#", "engine", "hardware", "devices", "layout", "weights / act / kv", "batch ≤", f"TTFT p50 / {pct}",
            f"TPOT p50 / {pct}", "USD/h", "USD/M tok"]
    if multi:
        cols += ["hot / cold", "alone: devices, USD/h"]
    cols.append("meets SLO")
    for c in cols:
        tab.add_column(c, justify="right" if c not in ("engine", "hardware", "layout", "weights / act / kv", "hot / cold", "meets SLO") else "left")
    for i, h in enumerate(_aggregated_order(ans), 1):
        o = h.best or h.closest
        if o is None:
            tab.add_row(str(i), h.engine or "-", h.hardware, "-", "does not fit", *(["-"] * (len(cols) - 6)),
                        "[red]no[/]" + (": " + escape(h.reason_text("cli", CAPACITY_CLI_ALIASES)) if h.reason else ""))
            continue
        cells = [
            str(i),
            (h.engine or "-") + (" (eager)" if o.runtime == "eager" else ""),
            h.hardware + ("" if h.complete else " [yellow](partial)[/]"),
            str(o.devices),
            f"tp{o.tp}·pp{o.pp} × {o.replicas}",
            f"{o.weights} / {o.activations} / {o.kv}",
            str(o.max_batch),
            f"{human_time(o.ttft_p50_s)} / {human_time(o.ttft_s)}{_band(o, 'ttft_s', human_time)}",
            f"{human_time(o.tpot_p50_s)} / {human_time(o.tpot_s)}{_band(o, 'tpot_s', human_time)}",
            "-" if o.usd_per_hour is None else f"{o.usd_per_hour:,.2f}",
            "-" if o.usd_per_million_tokens is None else f"{o.usd_per_million_tokens:,.3f}",
        ]
        if multi:
            cells.append(f"{len(o.hot_models)} / {len(o.cold_models)}")
            if h.separate_devices is None:
                sep = "-"
            else:
                usd = "-" if h.separate_usd_per_hour is None else f"{h.separate_usd_per_hour:,.2f}"
                sep = f"{h.separate_devices}, {usd}"
            cells.append(sep)
        cells.append("yes" if h.best is not None else "[red]no[/]: " + escape("; ".join(o.failures)))
        tab.add_row(*cells)
    for u in unsupported_rows(ans.unsupported, "cli"):
        fmt = f"{u['weights']} / {u.get('activations', '-')} / -" if "weights" in u else "-"
        tab.add_row("-", u["engine"] or "-", u["hardware"], "-", "not supported", fmt, *(["-"] * (len(cols) - 7)),
                    "[red]no[/]: " + escape(u["reason"]))
    console.print(tab)
    if multi:
        console.print("QPS shares (--mix, weights normalised to sum to 1): "
                      + ", ".join(f"{m} {share:.1%}" for m, share in zip(ans.models, t.mix)))
    if not ans.complete:
        console.print("[yellow]--time-limit reached: the answer covers the configurations searched so far; "
                      "(partial) rows had only some of their formats searched[/]")
        if ans.not_searched:
            console.print("[yellow]not searched: " + escape(", ".join(f"{e or '-'} on {h}" for e, h in ans.not_searched)) + "[/]")
    console.print(BANDS_NOTE)
    if ans.serving == "disaggregated":
        _print_disagg(ans)


def _print_disagg(ans) -> None:
    """Separate prefill / decode pools per (engine, hardware), beside the aggregated answer."""
    tab = Table(title="Disaggregated prefill / decode (DistServe, Splitwise) against aggregated serving")
    pct = f"p{ans.target.percentile * 100:g}"
    cols = ["engine", "hardware", "prefill pool", "decode pool", "devices (aggregated)", "KV / request, transfer",
            f"TTFT p50 / {pct}", f"TPOT p50 / {pct}", "USD/h (aggregated)", "winner"]
    for c in cols:
        tab.add_column(c, justify="left" if c in ("engine", "hardware", "prefill pool", "decode pool", "winner") else "right")
    for h in ans.ranked:
        d, a = h.disagg or h.disagg_closest, h.best
        agg_dev = "-" if a is None else str(a.devices)
        agg_usd = "-" if a is None or a.usd_per_hour is None else f"{a.usd_per_hour:,.2f}"
        if d is None:
            win = "aggregated" if a is not None else "[red]neither[/]"
            if h.disagg_reason:
                win += ": no disaggregated pools: " + escape(h.disagg_reason)
            tab.add_row(h.engine or "-", h.hardware, "-", "-", f"- ({agg_dev})", "-", "-", "-", f"- ({agg_usd})", win)
            continue
        from planner.disagg import compare

        win = compare(h.disagg, a)["winner"] or "[red]neither[/]"
        if h.disagg is None:
            win = ("aggregated" if a is not None else "[red]neither[/]") + ": " + escape("; ".join(d.failures))
        tab.add_row(
            h.engine or "-", h.hardware,
            f"tp{d.prefill_tp}·pp{d.prefill_pp} × {d.prefill_replicas}",
            f"tp{d.decode_tp}·pp{d.decode_pp} × {d.decode_replicas}",
            f"{d.devices} ({agg_dev})",
            f"{human_bytes(d.kv_bytes)}, {human_time(d.kv_transfer_s)} ({d.kv_link_kind.replace('_', '-')})",
            f"{human_time(d.ttft_p50_s)} / {human_time(d.ttft_s)}{_band(d, 'ttft_s', human_time)}",
            f"{human_time(d.tpot_p50_s)} / {human_time(d.tpot_s)}{_band(d, 'tpot_s', human_time)}",
            ("-" if d.usd_per_hour is None else f"{d.usd_per_hour:,.2f}") + f" ({agg_usd})",
            win,
        )
    console.print(tab)


#: Integer columns that stay integers in a CSV whose rows may lack them (unsupported pairs).
_INT_COLUMNS = ("rank", "tp", "pp", "replicas", "devices", "max_batch", "batch", "separate_devices", "disagg_devices")


BANDS_NOTE = ("(a–b): p10–p90 of the cost model's out-of-sample error on published rows of the same kind; "
              "* outside the validated region (no rows of that hardware class, engine class or batch regime)")


def _band_columns(o) -> dict:
    """CSV columns of a row's error bars: ``<field>_p10``, ``<field>_p90`` and ``<field>_validated`` (the table's
    ``*`` where false), and ``validated`` (all of them)."""
    u = o.uncertainty
    if u is None:
        return {}
    cols = {f"{k}_{q}": getattr(i, q) for k, i in u.intervals.items() for q in ("p10", "p90", "validated")}
    return {**cols, "validated": u.validated}


def _one_decimal(x: float) -> str:
    return f"{x:,.1f}"


def _band(o, name: str, fmt) -> str:
    """`` (lo–hi)`` of a capacity row's figure (``*`` outside the validated region), else ``""``: the legend under
    the table says what the range is."""
    return _figure_band(None if o is None else o.uncertainty, name, fmt, prefix="")


def _write_csv(rows: list[dict], path: Path, columns: Sequence[str] | None = None) -> None:
    """``rows`` as CSV; ``columns``: the header (in that order, even when there is no row)."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(columns) if columns is not None else None)
    for c in _INT_COLUMNS:
        if c in df and df[c].isna().any():
            df[c] = df[c].astype("Int64")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, df.to_csv(index=False))
    except OSError as exc:
        raise CliError(f"--csv: cannot write {per_front_end(str(path), str(path))}: {exc.strerror or exc}",
                       field="csv") from None


def _plot_serve(answers: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, float]]] = {}
    for q, ans in sorted(answers.items()):
        for h in ans.ranked:
            if h.best is not None and h.best.usd_per_hour is not None:
                label = f"{h.hardware} ({h.engine})" if h.engine else h.hardware
                series.setdefault(label, []).append((q, h.best.usd_per_hour))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for hw, pts in sorted(series.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=hw)
    ax.set_xlabel("offered load (QPS)")
    ax.set_ylabel("fleet cost (USD/hour)")
    first = next(iter(answers.values()))
    ax.set_title(f"{', '.join(first.models)}: cheapest fleet meeting the SLOs")
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise CliError(f"--plot: cannot write {per_front_end(str(path), str(path))}: {exc.strerror or exc}",
                       field="plot") from None
    finally:
        plt.close(fig)
    err_console.print(f"wrote plot {path}")


# ---------------------------------------------------------------------------
# frontier
# ---------------------------------------------------------------------------


_F = field_info(CapacityFrontierRequest)


@capacity_app.command("frontier")
def frontier(
    model: Annotated[str, typer.Option("--model", "-m", help=_F["model"].help_text)],
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help=HARDWARE_HELP)] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help=_F["engine"].help_text)] = None,
    prompt: Annotated[Optional[int], typer.Option("--prompt", help=_F["prompt"].help_text)] = None,
    gen: Annotated[Optional[int], typer.Option("--gen", help=_F["gen"].help_text)] = None,
    formats: Annotated[Optional[str], typer.Option("--formats", help="Weight formats to consider, comma separated (default bf16,fp8,int4-g128).")] = None,
    activations: Annotated[Optional[str], typer.Option("--activations", help=_F["activations"].help_text)] = None,
    kv: Annotated[Optional[str], typer.Option("--kv", help=_F["kv"].help_text)] = None,
    max_devices: Annotated[Optional[int], typer.Option("--max-devices", help=_F["max_devices"].help_text)] = None,
    max_pp: Annotated[Optional[int], typer.Option("--max-pp", help=_F["max_pp"].help_text)] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help=_F["runtime"].help_text)] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time-limit", help=_F["time_limit_s"].help_text + " The "
                                                        "search then runs in this process (--executor is not used), "
                                                        "as the REST service runs it.")] = None,
    json_out: JsonOpt = False,
    csv_path: CsvOpt = None,
    plot_path: PlotOpt = None,
    executor: ExecOpt = Executor.process,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
) -> None:
    """Throughput-latency frontier: tokens/s per device against tokens/s per user over batch sizes and layouts (Pareto set per engine × hardware)."""
    from planner.capacity import dedupe_tasks
    from planner.frontier import CSV_COLUMNS, frontier_tasks, run_frontier_task, run_frontier_within, summarize_frontier
    from planner.request.capacity import check_frontier

    _check_executor(executor, json_out)
    plot_path = plot_target(plot_path, "capacity-frontier")
    check_writable("--csv", csv_path)
    given = dict(model=model, hardware=hardware, engine=engine, prompt=prompt, gen=gen, formats=formats,
                 activations=activations, kv=kv, max_devices=max_devices, max_pp=max_pp, runtime=runtime, time_limit_s=time_limit)
    with cli_errors(CAPACITY_CLI_ALIASES):
        req = CapacityFrontierRequest(**{k: v for k, v in given.items() if v is not None})
        deadline = request_deadline(req)
        arch, pairs, prompt_n, gen_n, search = resolve_capacity_frontier(req)
    tasks = frontier_tasks(arch, pairs, prompt_n, gen_n, search)
    unique, index = dedupe_tasks(tasks)
    if deadline is None:
        found = dict(enumerate(_run_tasks(run_frontier_task, unique, executor, workers, ray_address,
                                          _wants_progress(json_out), "sweeping batches")))
    else:  # as the REST service: the searches done when the time is up, pair by pair; nothing done → exit 3
        with cli_errors(CAPACITY_CLI_ALIASES):
            found = run_frontier_within(unique, deadline)
    ans = frontier_intervals(summarize_frontier(arch, prompt_n, gen_n, tasks, [found.get(i) for i in index],
                                                [p for p in pairs if p.listed], search), pairs, search.runtime)
    if csv_path is not None:  # the header even when no pair has a point
        from planner.uncertainty import FRONTIER_POINT_QUANTITIES

        bands = tuple(f"{k}_{q}" for k in FRONTIER_POINT_QUANTITIES for q in ("p10", "p90", "validated")) + ("validated",)
        _write_csv(_frontier_rows(ans), csv_path, columns=(*CSV_COLUMNS, *bands, "supported", "failures"))
    if plot_path is not None:
        _plot_frontier(ans, plot_path)
    if not json_out:
        _print_frontier(ans)
    with cli_errors(CAPACITY_CLI_ALIASES):
        check_frontier(ans)  # no point anywhere: exit 3 with every pair's reason
    if json_out:
        emit_json(ans.to_dict("cli", CAPACITY_CLI_ALIASES))


def _frontier_rows(ans) -> list[dict]:
    """The frontier's points, then a row per pair without one (its reason) and per pair or
    (weights, activations) entry not supported, as the table lists them: a file read alone says
    what was not priced."""
    from planner.capacity_model import unsupported_rows

    rows = [{**{k: v for k, v in p.to_dict().items() if k != "uncertainty"}, **_band_columns(p), "supported": True,
             "failures": ""} for s in ans.series for p in s.points]
    rows += [{"engine": s.engine, "hardware": s.hardware, "supported": True,
              "failures": render_tokens(s.reason, "cli", CAPACITY_CLI_ALIASES)} for s in ans.series if not s.points]
    rows += [{"engine": u["engine"], "hardware": u["hardware"], **{k: u[k] for k in ("weights", "activations") if k in u},
              "supported": False, "failures": u["reason"]} for u in unsupported_rows(ans.unsupported, "cli")]
    return rows


def _print_frontier(ans) -> None:
    from planner.capacity_model import unsupported_rows
    from planner.frontier import NOT_SEARCHED

    tab = Table(title=f"{ans.model}, prompt {ans.prompt} / gen {ans.gen}: throughput-latency frontier (Pareto set)")
    cols = ["engine", "hardware", "weights / act / kv", "layout", "batch", "tok/s/user", "tok/s/device", "TPOT",
            "USD/M tok"]
    for c in cols:
        tab.add_column(c, justify="left" if c in ("engine", "hardware", "weights / act / kv", "layout") else "right")
    for s in ans.series:
        hw = s.hardware + ("" if s.complete else " [yellow](partial)[/]")
        if not s.points:
            what = "not searched" if s.reason == NOT_SEARCHED else "does not fit"
            tab.add_row(s.engine or "-", hw, "-", what, *(["-"] * 5))
        for p in s.points:
            tab.add_row((s.engine or "-") + (" (eager)" if p.runtime == "eager" else ""), hw,
                        f"{p.weights} / {p.activations} / {p.kv}", f"tp{p.tp}·pp{p.pp}",
                        str(p.batch), f"{p.tokens_per_s_per_user:,.1f}{_band(p, 'tokens_per_s_per_user', _one_decimal)}",
                        f"{p.tokens_per_s_per_device:,.1f}{_band(p, 'tokens_per_s_per_device', _one_decimal)}",
                        human_time(p.tpot_s) + _band(p, "tpot_s", human_time),
                        "-" if p.usd_per_million_tokens is None else f"{p.usd_per_million_tokens:,.3f}")
        tab.add_section()
    rows = unsupported_rows(ans.unsupported, "cli")
    for u in rows:
        fmt = f"{u['weights']} / {u.get('activations', '-')} / -" if "weights" in u else "-"
        tab.add_row(u["engine"] or "-", u["hardware"], fmt, "not supported", "-", "-", "-", "-", "-")
    console.print(tab)
    if any(p.uncertainty is not None for s in ans.series for p in s.points):
        console.print(BANDS_NOTE)
    for s in ans.series:
        if not s.points:
            console.print(f"[red]no point[/]: {escape(s.engine or '-')} on {escape(s.hardware)}: "
                          f"{escape(render_tokens(s.reason, 'cli', CAPACITY_CLI_ALIASES))}")
    for u in rows:
        what = (f" {u['weights']} weights" + (f" with {u['activations']} activations" if "activations" in u else "")
                if "weights" in u else "")
        console.print(f"[red]not supported[/]: {escape(u['engine'])} on {escape(u['hardware'])}{escape(what)}: "
                      f"{escape(u['reason'])}")
    if not ans.complete:
        console.print("[yellow]--time-limit reached: the frontier covers the configurations searched so far; "
                      "(partial) series had only some of their formats searched[/]")


def _plot_frontier(ans, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    # colour per hardware, line style and marker per engine: engines that price a device alike overlap visibly
    hws = list(dict.fromkeys(s.hardware for s in ans.series))
    engines = list(dict.fromkeys(s.engine for s in ans.series))
    styles, marks = ("-", "--", ":", "-."), ("o", "s", "^", "D", "v", "x")
    for s in ans.series:
        if s.points:
            e = engines.index(s.engine)
            ax.plot([p.tokens_per_s_per_user for p in s.points], [p.tokens_per_s_per_device for p in s.points],
                    color=f"C{hws.index(s.hardware) % 10}", linestyle=styles[e % len(styles)],
                    marker=marks[e % len(marks)], markersize=4, markerfacecolor="none" if e else None,
                    label=f"{s.hardware} ({s.engine})" if s.engine else s.hardware)
    ax.set_xlabel("tokens/s per user (1 / TPOT)")
    ax.set_ylabel("tokens/s per device")
    ax.set_title(f"{ans.model}: throughput-latency frontier (prompt {ans.prompt}, gen {ans.gen})")
    ax.grid(True, alpha=0.3)
    if any(s.points for s in ans.series):
        ax.legend(fontsize=8)
    _save(fig, path)


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------


@capacity_app.command("train")
def train(
    model: Annotated[str, typer.Option("--model", "-m", help=_T["model"].help_text)],
    hardware: Annotated[str, typer.Option("--hardware", "-H", help="Hardware ids or YAML paths, comma separated.")],
    tokens: Annotated[float, typer.Option("--tokens", help=_T["tokens"].help_text)],
    days: Annotated[float, typer.Option("--days", help=_T["days"].help_text)],
    seq: Annotated[Optional[int], typer.Option("--seq", help=_T["seq"].help_text)] = None,
    global_batch_tokens: Annotated[Optional[float], typer.Option("--global-batch-tokens", help=_T["global_batch_tokens"].help_text)] = None,
    activations: Annotated[Optional[str], typer.Option("--activations", help=_T["activations"].help_text)] = None,
    optimizer: Annotated[Optional[str], typer.Option("--optimizer", help=_T["optimizer"].help_text)] = None,
    max_devices: Annotated[Optional[int], typer.Option("--max-devices", help=_T["max_devices"].help_text)] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help=_T["engine"].help_text)] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time-limit", help=_T["time_limit_s"].help_text + " The "
                                                        "search then runs in this process.")] = None,
    json_out: JsonOpt = False,
    csv_path: CsvOpt = None,
    plot_path: PlotOpt = None,
    executor: ExecOpt = Executor.process,
    workers: WorkersOpt = None,
    ray_address: RayOpt = None,
) -> None:
    """Devices needed to train on TOKENS within DAYS, with the best layout, MFU, step time and memory."""
    from planner.capacity import (InfeasibleError, TrainFleetAnswer, run_train_task, summarize_train, train_infeasible_message, train_tasks)

    _check_executor(executor, json_out)
    plot_path = plot_target(plot_path, "capacity-train")
    check_writable("--csv", csv_path)
    given = dict(model=model, hardware=hardware, tokens=tokens, days=days, seq=seq, global_batch_tokens=global_batch_tokens,
                 activations=activations, optimizer=optimizer, max_devices=max_devices, engine=engine,
                 time_limit_s=time_limit)
    with cli_errors(CAPACITY_CLI_ALIASES):
        req = CapacityTrainRequest(**{k: v for k, v in given.items() if v is not None})
        deadline = request_deadline(req)
        arch, pairs, skipped = resolve_training_fleet(req)
    if deadline is not None:  # as run_capacity_train: every hardware's search within one deadline, here
        from planner.capacity import plan_training

        with cli_errors(CAPACITY_CLI_ALIASES):
            answers = [train_intervals(plan_training(arch, dev, target, deadline=deadline), dev, engine)
                       for dev, target in pairs]
    else:
        all_tasks = []
        spans = []
        for dev, target in pairs:
            ts = train_tasks(arch, dev, target)
            spans.append((len(all_tasks), len(all_tasks) + len(ts)))
            all_tasks.extend(ts)
        results = _run_tasks(run_train_task, all_tasks, executor, workers, ray_address, _wants_progress(json_out),
                             "searching layouts")
        answers = [train_intervals(summarize_train(arch, dev, target, results[a:b]), dev, engine)
                   for (dev, target), (a, b) in zip(pairs, spans)]
    fleet = TrainFleetAnswer.ranked(answers, [(d.id, exc.render("cli")) for d, exc in skipped])
    if csv_path is not None:
        rows = [{"hardware": a.hardware, **{k: v for k, v in o.to_dict(tokens).items() if k != "uncertainty"}, **_band_columns(o)}
                for a in answers for o in a.frontier]
        _write_csv(rows, csv_path)
    if plot_path is not None:
        _plot_train(answers, plot_path)
    if not fleet.feasible:
        msg, payload = train_infeasible_message(fleet.closest())
        if not json_out:
            _print_train(fleet)
        raise InfeasibleError(msg, payload)
    if json_out:
        doc = fleet.to_dict()
        if len(fleet) == 1:  # one hardware: its answer itself, with the skipped ones beside it
            doc = {**fleet[0].to_dict(), **{k: v for k, v in doc.items() if k != "hardware"}}
        emit_json(doc)
        return
    _print_train(fleet)


def _print_train(fleet) -> None:
    answers = fleet.answers
    first = answers[0]
    t = first.target
    from planner.training_capacity import days_text, rate_text

    within = f"{t.days:g} days" if t.days >= 1 else f"{t.days:g} days = {days_text(t.days)}"
    tab = Table(title=f"Train {first.model} on {t.tokens:.3g} tokens in {within} (needs {rate_text(t.tokens_per_s)} tokens/s, seq {t.seq})")
    for c in ("hardware", "devices", "layout tp·pp·dp", "micro-batch / global", "recompute / ZeRO", "step time", "tokens/s", "MFU", "memory / device", "time to train", "USD total"):
        tab.add_column(c, justify="left" if c in ("hardware", "layout tp·pp·dp", "recompute / ZeRO") else "right")
    for a in answers:
        o = a.best or a.fastest
        if o is None:
            tab.add_row(a.hardware, "-", "does not fit", *(["-"] * 8))
            continue
        d = o.to_dict(t.tokens)
        mark = "" if a.best else " [red](too slow)[/]"
        tab.add_row(
            a.hardware + mark,
            str(o.devices),
            f"{o.tp}·{o.pp}·{o.dp}",
            f"{o.micro_batch} / {o.global_batch}",
            f"{o.recompute} / {o.zero}",
            human_time(o.step_time_s) + _band(o, "step_time_s", human_time),
            f"{o.tokens_per_s:,.0f}",
            f"{100 * o.mfu:.1f}%",
            f"{human_bytes(o.memory_per_device_bytes)} of {human_bytes(o.device_capacity_bytes)}",
            days_text(d["days"]) + _band(o, "days", days_text),
            "-" if d.get("usd_total") is None else f"{d['usd_total']:,.0f}",
        )
    console.print(tab)
    for hw, why in fleet.skipped:
        console.print(f"skipped {hw}: {escape(why)}")
    console.print(BANDS_NOTE)


def _plot_train(answers, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a in answers:
        if a.frontier:
            ax.plot([o.devices for o in a.frontier], [o.tokens_per_s for o in a.frontier], marker=".", label=a.hardware)
    need = answers[0].target.tokens_per_s
    ax.axhline(need, color="grey", linestyle="--", label="required")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("devices")
    ax.set_ylabel("tokens/s (best layout)")
    ax.set_title(f"{answers[0].model}: training throughput vs devices")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend()
    _save(fig, path)


def register(app: typer.Typer) -> None:
    app.add_typer(capacity_app, name="capacity")


__all__ = ["capacity_app", "frontier", "register", "serve", "train"]
