"""`tierwise plan`: solve a compression + parallelism plan; `plan show`; `plan diff`.

``tierwise plan --model M --hardware H [...]`` solves (the group's callback runs when no
subcommand is given); ``tierwise plan show PLAN`` prints a saved plan;
``tierwise plan diff A B`` compares two. Exit codes: 0 plan found, 2 bad input, 3 nothing
feasible (with the diagnosis on stderr, and under ``error.details`` with ``--json``).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from planner.cli.common import (
    EXIT_INFEASIBLE,
    CliError,
    console,
    emit_json,
    fail,
    human_bytes,
    check_writable,
    human_time,
    plot_target,
    writing,
)
from planner.cli.estimate import _band, _fixed, _print_validity, cli_errors
from planner.request.fields import field_info
from planner.request.plan import CLI_ALIASES, PlanRequest, resolve_plan
from planner.results import IMAGE_BASIS, PER_TOKEN_UNITS

plan_app = typer.Typer(
    help="Solve a compression + parallelism plan (`tierwise plan --model ... --hardware ...`), or show / diff "
         "saved plans.",
    invoke_without_command=True,
    no_args_is_help=False,
)


class Objective(str, Enum):
    accuracy = "accuracy"
    latency = "latency"
    memory = "memory"
    cost = "cost"
    weighted = "weighted"


class Backend(str, Enum):
    highs = "highs"
    cbc = "cbc"


_F = field_info(PlanRequest)


@plan_app.callback(invoke_without_command=True)
def plan(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=_F["model"].help_text)] = None,
    hardware: Annotated[Optional[str], typer.Option("--hardware", "-H", help=_F["hardware"].help_text)] = None,
    devices: Annotated[Optional[int], typer.Option(help=_F["devices"].help_text)] = None,
    tp: Annotated[Optional[int], typer.Option(help=_F["tp"].help_text)] = None,
    pp: Annotated[Optional[int], typer.Option(help=_F["pp"].help_text)] = None,
    dp: Annotated[Optional[int], typer.Option(help=_F["dp"].help_text)] = None,
    ep: Annotated[Optional[int], typer.Option(help=_F["ep"].help_text)] = None,
    batch: Annotated[Optional[int], typer.Option(help=_F["batch"].help_text)] = None,
    prompt: Annotated[Optional[int], typer.Option(help=_F["prompt"].help_text)] = None,
    gen: Annotated[Optional[int], typer.Option(help=_F["gen"].help_text)] = None,
    max_memory_per_device: Annotated[Optional[str], typer.Option(help=_F["max_memory_per_device"].help_text)] = None,
    ttft_slo: Annotated[Optional[str], typer.Option(help=_F["ttft_slo_s"].help_text)] = None,
    tpot_slo: Annotated[Optional[str], typer.Option(help=_F["tpot_slo_s"].help_text)] = None,
    avg_bits: Annotated[Optional[float], typer.Option(help=_F["avg_bits"].help_text)] = None,
    allow_offload: Annotated[Optional[bool], typer.Option("--allow-offload", help=_F["allow_offload"].help_text)] = None,
    objective: Annotated[Optional[Objective], typer.Option(help=_F["objective"].help_text)] = None,
    objective_weights: Annotated[Optional[str], typer.Option(help="For --objective weighted: accuracy=1,latency=0.5,memory=0.1.")] = None,
    formats: Annotated[Optional[str], typer.Option(help=_F["formats"].help_text)] = None,
    sparsity: Annotated[Optional[str], typer.Option(help=_F["sparsity"].help_text)] = None,
    kv: Annotated[Optional[str], typer.Option(help=_F["kv"].help_text)] = None,
    activations: Annotated[Optional[str], typer.Option(help=_F["activations"].help_text)] = None,
    pin: Annotated[Optional[list[str]], typer.Option(help="Pin groups: PATTERN=OPTION, e.g. model.lm_head=bf16 (repeatable).")] = None,
    low_rank: Annotated[Optional[str], typer.Option("--low-rank", help="Also offer low-rank factorisations of linear groups at these absolute ranks, e.g. 256,512 (factors in the 16-bit format or int8; off by default).")] = None,
    sensitivity: Annotated[Optional[str], typer.Option(help=_F["sensitivity"].help_text)] = None,
    solver: Annotated[Optional[Backend], typer.Option(help=_F["backend"].help_text)] = None,
    time_limit: Annotated[Optional[str], typer.Option(help=_F["time_limit_s"].help_text)] = None,
    gap: Annotated[Optional[float], typer.Option(help=_F["gap"].help_text)] = None,
    engine: Annotated[Optional[str], typer.Option(help=_F["engine"].help_text)] = None,
    pareto: Annotated[Optional[int], typer.Option(min=1, help="Return N non-dominated plans (sensitivity, memory, latency).")] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="With --pareto: write the points as CSV.")] = None,
    plot: Annotated[Optional[str], typer.Option(help="With --pareto: plot the frontier (.png/.svg/.pdf; a folder, out/, gets pareto.png).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the plan (.yaml/.json); with --pareto, one file per point.")] = None,
    per_group: Annotated[bool, typer.Option("--per-group", help="Print every group's choice.")] = False,
    max_degradation: Annotated[Optional[float], typer.Option(min=0.0, help="Closed loop: measured degradation to land under (e.g. 0.01 = 1%), with --validate-with.")] = None,
    validate_with: Annotated[Optional[str], typer.Option(help="Closed loop: torch model to measure each plan on (all-minilm-l6-v2, digits-cnn, a Llama-shaped config).")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Closed loop: degradation metric (cosine, accuracy, kl; default by model kind).")] = None,
    band_low: Annotated[float, typer.Option(min=0.0, max=1.0, help="Closed loop: accept a plan whose measured degradation is between BAND_LOW × --max-degradation and --max-degradation.")] = 0.8,
    rounds: Annotated[int, typer.Option(min=1, max=64, help="Closed loop: at most this many measured rounds.")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Solve for how to compress, split and place MODEL on HARDWARE."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None or hardware is None:
        missing = "--model" if model is None else "--hardware"
        fail(f"tierwise plan needs {missing} (or a subcommand: show, diff); try `tierwise plan --help`",
             field=missing.lstrip("-"))
    from planner.search import Planner

    if (csv_path or plot) and pareto is None:
        fail("--csv and --plot go with --pareto N", field="pareto")
    if out is not None:
        _check_out(out, pareto)
    # what --pareto writes beside the plans is checked before the search, as --out is
    plot = plot_target(plot, "pareto")
    if csv_path is not None and csv_path.is_dir():
        fail(f"--csv: {str(csv_path)!r} is a folder; expected the path of a .csv file to write the points to",
             field="csv")
    check_writable("--csv", csv_path)
    given = dict(model=model, hardware=hardware, devices=devices, tp=tp, pp=pp, dp=dp, ep=ep, batch=batch,
                 prompt=prompt, gen=gen, max_memory_per_device=max_memory_per_device, ttft_slo_s=ttft_slo,
                 tpot_slo_s=tpot_slo, avg_bits=avg_bits, allow_offload=allow_offload,
                 objective=objective.value if objective else None, objective_weights=objective_weights,
                 formats=formats, sparsity=sparsity, kv=kv, activations=activations, pins=pin, low_rank=low_rank,
                 sensitivity=sensitivity, backend=solver.value if solver else None, time_limit_s=time_limit, gap=gap,
                 engine=engine)
    with cli_errors(CLI_ALIASES):
        arch, dev, req, sens = resolve_plan(PlanRequest(**{k: v for k, v in given.items() if v is not None}))
    planner = Planner(arch, dev, sensitivity=sens)
    if pareto is not None:
        with cli_errors(CLI_ALIASES):
            _run_pareto(planner, req, pareto, out, csv_path, plot, json_out)
        return
    if (max_degradation is None) != (validate_with is None):
        fail("--max-degradation and --validate-with go together (the closed loop measures each plan on a torch model)",
             field="max_degradation" if max_degradation is None else "validate_with")
    if max_degradation is not None:
        with cli_errors(CLI_ALIASES):
            _closed_loop(planner, req, max_degradation, validate_with, metric, band_low, rounds, out, json_out,
                         per_group)
        return
    from planner.plan import with_engine

    with cli_errors(CLI_ALIASES):  # a pin is checked against the groups only when the solve builds them
        result = with_engine(planner.solve(req), req.engine)
    if out is not None:
        _save(result, out)
    if json_out:
        from planner.plan import plan_to_dict

        emit_json(plan_to_dict(result))
        return
    print_plan(result, per_group=per_group)
    if out is not None:
        console.print(f"wrote {out}")


def _run_pareto(planner, req, n: int, out: Path | None, csv_path: Path | None, plot: Path | None,
                json_out: bool) -> None:
    from planner.plan import with_engine

    plans = [with_engine(p, req.engine) for p in planner.pareto(req, n)]
    written: list[Path] = []
    if out is not None:
        for i, p in enumerate(plans, 1):
            path = out.with_name(f"{out.stem}-{i}{out.suffix}")
            _save(p, path)
            written.append(path)
    if csv_path is not None:
        _write_csv(plans, csv_path)
        written.append(csv_path)
    if plot is not None:
        _plot(plans, plot)
        written.append(plot)
    if json_out:
        from planner.plan import plan_to_dict

        emit_json({"points": [_point(p) for p in plans], "plans": [plan_to_dict(p) for p in plans]})
    else:
        _print_pareto(plans)
        for path in written:  # as a single plan's --out does: one line per file
            console.print(f"wrote {path}", markup=False, highlight=False)


def _closed_loop(planner, req, target: float, torch_model: str, metric: str | None, band_low: float, rounds: int,
                 out: Path | None, json_out: bool, per_group: bool) -> None:
    """Bisect the memory budget against *measured* degradation: each round solves, applies the
    plan to the torch model, measures, and moves the budget until the measurement lands in
    [band_low·target, target] or the rounds run out; the best feasible plan is kept."""
    from planner.execution.validate import make_evaluator

    try:
        evaluate = make_evaluator(torch_model, metric)
    except ValueError as exc:
        fail(str(exc), field="metric")
    log: list[dict[str, Any]] = []

    from planner.plan import with_engine

    def measured(p) -> float:
        # measured as the plan is written: with its engine's recipe for int8 activations (SmoothQuant, blocks)
        d = float(evaluate(with_engine(p, req.engine)))
        log.append({
            "round": len(log) + 1,
            "per_device_bytes": p.predicted.per_device_bytes,
            "avg_weight_bits": p.predicted.avg_weight_bits,
            "predicted_sensitivity": p.predicted.sensitivity,
            "measured_degradation": d,
        })
        return d

    band = (band_low * target, target)
    # A ladder of 2^rounds − 1 budgets: bisection uses every round to refine the budget.
    res = planner.bisect(req, measured, band, levels=min(2**rounds - 1, 1023), max_rounds=rounds)

    res = replace(res, plan=with_engine(res.plan, req.engine)) if res.plan is not None else res
    if res.inside_band:
        reason = f"measured {res.degradation:.4g} lies inside [{band[0]:.4g}, {band[1]:.4g}] after {len(log)} rounds"
    elif res.plan is not None:
        reason = (f"no plan measured inside [{band[0]:.4g}, {band[1]:.4g}] within {len(log)} rounds; kept the most "
                  f"compressed plan measured under the target ({res.degradation:.4g})")
    else:
        reason = f"even the least compressed plan measures above {target:.4g} ({evaluate.metric})"
    summary = {
        "target": target, "band": list(band), "metric": evaluate.metric, "torch_model": torch_model,
        "inside_band": res.inside_band, "degradation": res.degradation, "reason": reason, "rounds": log,
    }
    if res.plan is None:
        if json_out:
            emit_json({"closed_loop": summary, "plan": None})
        raise CliError(reason, EXIT_INFEASIBLE, field="max_degradation", payload=summary)
    if out is not None:
        _save(res.plan, out)
    if json_out:
        from planner.plan import plan_to_dict

        emit_json({"closed_loop": summary, "plan": plan_to_dict(res.plan)})
        return
    t = Table(title=f"Closed loop on {torch_model}: {evaluate.metric} ≤ {target:.4g}")
    for col in ("round", "memory per device", "avg bits", "predicted sensitivity", f"measured {evaluate.metric}"):
        t.add_column(col)
    for r in log:
        t.add_row(str(r["round"]), human_bytes(r["per_device_bytes"]), f"{r['avg_weight_bits']:.2f}",
                  f"{r['predicted_sensitivity']:.4g}", f"{r['measured_degradation']:.4g}")
    console.print(t)
    console.print(reason)
    print_plan(res.plan, per_group=per_group)
    if out is not None:
        console.print(f"wrote {out}")


def _check_out(out: Path, pareto: int | None) -> None:
    """``--out`` names a plan file (.yaml, .yml or .json), checked before the search; with
    ``--pareto N`` it is the name the N files are numbered from (plan.yaml → plan-1.yaml …)."""
    if out.suffix.lower() in (".yaml", ".yml", ".json"):
        check_writable("--out", out)
        return
    got = str(out) + ("/" if out.is_dir() else "")
    if pareto is not None:
        fail(f"--out: with --pareto {pareto}, --out is a plan file name ending in .yaml, .yml or .json that the points "
             f"are numbered from (--out plans.yaml writes plans-1.yaml … plans-{pareto}.yaml), not a folder; got {got!r}",
             field="out")
    fail(f"--out: plan files end in .yaml, .yml or .json; got {got!r}", field="out")


def _save(p, path: Path) -> None:
    from planner.plan import save_plan

    with writing("out", path):
        save_plan(p, path)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _layer_runs(plan) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(non-layer groups, layer runs): consecutive layers with the same choices are
    collapsed into one row ``layers 0–3``."""
    singles: list[tuple[str, str]] = []
    layers: dict[str, dict[str, str]] = {}
    order: list[str] = []
    pat = re.compile(r"^(.*?\.)(\d+)\.(.+)$")
    for fqn, c in plan.choices.items():
        text = c.key + ("" if c.tier == _device_tier(plan) else f" @{c.tier}")
        m = pat.match(fqn)
        if not m:
            singles.append((fqn, text))
            continue
        layer = f"{m.group(1)}{m.group(2)}"
        if layer not in layers:
            layers[layer] = {}
            order.append(layer)
        layers[layer][m.group(3)] = text
    runs: list[tuple[str, str]] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and layers[order[j + 1]] == layers[order[i]] and \
                order[j + 1].rsplit(".", 1)[0] == order[i].rsplit(".", 1)[0]:
            j += 1
        prefix, first = order[i].rsplit(".", 1)
        last = order[j].rsplit(".", 1)[1]
        name = f"{prefix}.{first}" if i == j else f"{prefix}.{first}–{last}"
        runs.append((name, ", ".join(f"{g}={t}" for g, t in layers[order[i]].items())))
        i = j + 1
    return singles, runs


def _device_tier(plan) -> str:
    for name, t in plan.predicted.tiers.items():
        if t.role == "device":
            return name
    return ""


def print_plan(plan, *, per_group: bool = False, title: str | None = None) -> None:
    p = plan.predicted
    u = p.uncertainty  # the p10–p90 bands of the predicted times and rates (None in older plans)
    lay = plan.layout
    t = Table(title=title or f"Plan: {plan.model} on {plan.devices}× {plan.hardware}", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("layout", f"tp={lay.tp} pp={lay.pp} dp={lay.dp} ep={lay.ep}")
    if getattr(plan, "engine", None):
        t.add_row("engine", f"{plan.engine} (`tierwise export PLAN` writes its deployment files)")
    # A model that generates nothing (an encoder, a ViT, a CNN) keeps no KV cache whatever the plan's kv
    # field says; its sample is a prompt (encoder) or one image, and it runs one forward pass.
    images = p.per_token_basis in IMAGE_BASIS.values()
    generative = p.generative if p.generative is not None else (  # plans written before they said
        not images and not (p.per_token_basis == "prompt_tokens" and not p.kv_cache_bytes))
    w = plan.workload
    t.add_row("workload", f"batch {w.batch}, prompt {w.prompt}, gen {w.gen}" if generative else
              f"batch {w.batch}, one image each" if images else f"batch {w.batch}, {w.prompt} tokens each")
    t.add_row("objective", plan.objective + f" (sensitivity source: {plan.sensitivity_source})")
    if generative:
        t.add_row("KV cache / compute format", f"{plan.kv if p.kv_cache_bytes else 'none'} / {plan.activations}")
        t.add_row("TTFT", human_time(p.ttft_s) + _band(u, "ttft_s", human_time))
    else:
        t.add_row("compute format", plan.activations)
    if p.tpot_s:
        limit = plan.constraints.tpot_slo_s
        default = ", the phone default: --tpot-slo none lifts it" if plan.constraints.tpot_slo_default else ""
        t.add_row("TPOT" + (f" (limit {human_time(limit)}{default})" if limit else ""),
                  human_time(p.tpot_s) + _band(u, "tpot_s", human_time)
                  + ("  " + escape(f"[{p.decode_bound}-bound]") if p.decode_bound else ""))
        t.add_row("decode tokens/s (system)", _fixed(1)(p.decode_tokens_per_s) + _band(u, "decode_tokens_per_s", _fixed(1)))
    t.add_row("latency per request" if generative else "latency (one forward pass)",
              human_time(p.latency_s) + _band(u, "latency_s", human_time))
    budget = plan.constraints.max_memory_per_device_bytes
    t.add_row("memory per device", human_bytes(p.per_device_bytes) + (f" (budget {human_bytes(budget)})" if budget else ""))
    for name, tu in p.tiers.items():
        if tu.used_bytes > 0:
            t.add_row(f"  {name} ({tu.role})", f"{human_bytes(tu.used_bytes)} of {human_bytes(tu.capacity_bytes)}")
    if generative:
        t.add_row("weights / KV cache (total)", f"{human_bytes(p.weights_bytes)} / {human_bytes(p.kv_cache_bytes)}")
    else:
        t.add_row("weights (total)", human_bytes(p.weights_bytes))
    t.add_row("average weight bits", f"{p.avg_weight_bits:.3f}")
    factored = [c.low_rank for c in plan.choices.values() if c.low_rank is not None]
    if factored:
        t.add_row("low-rank groups", f"{len(factored)} of {len(plan.choices)} (ranks "
                                     f"{', '.join(str(r) for r in sorted(set(factored)))})")
    t.add_row("sensitivity (Σ, lower is better)", f"{p.sensitivity:.4g}")
    if p.usd_per_million_tokens is not None:
        many = PER_TOKEN_UNITS[p.per_token_basis][1] if p.per_token_basis else "tokens"
        t.add_row("cost", f"{p.usd_per_million_tokens:.4g} USD / M {many}")
    s = plan.solver
    gap = f"{s.gap * 100:.3g} %" if s.gap is not None else "-"
    t.add_row("solver", f"{s.backend} {s.status}, gap {gap}, {s.time_s:.2f} s, {s.variables} vars, "
                        f"{s.constraints} rows, {s.candidates_solved} candidate(s)")
    console.print(t)
    _print_validity(u)
    ct = Table(title="Choices (option @tier when not the device tier)")
    ct.add_column("groups")
    ct.add_column("choice")
    if per_group:
        for fqn, c in plan.choices.items():
            ct.add_row(fqn, c.key + ("" if c.tier == _device_tier(plan) else f" @{c.tier}"))
    else:
        singles, runs = _layer_runs(plan)
        for name, text in singles[:1] + runs + singles[1:]:
            ct.add_row(name, text)
    console.print(ct)
    for n in p.notes:
        console.print(f"note: {n}", highlight=False)


_POINT_BANDS = ("latency_s", "ttft_s", "tpot_s")


def _point(p) -> dict[str, Any]:
    """One Pareto point: its figures, and each time's p10–p90 band (``<field>_p10``, ``_p90``, ``_validated``;
    empty for a plan written before plans carried them, or a figure without one: a CNN's TPOT)."""
    pr = p.predicted
    d = {"sensitivity": pr.sensitivity, "per_device_bytes": pr.per_device_bytes, "latency_s": pr.latency_s,
         "ttft_s": pr.ttft_s, "tpot_s": pr.tpot_s, "avg_weight_bits": pr.avg_weight_bits,
         "tp": p.layout.tp, "pp": p.layout.pp, "dp": p.layout.dp, "kv": p.kv}
    for k in _POINT_BANDS:
        i = pr.uncertainty.get(k) if pr.uncertainty is not None else None
        d[f"{k}_p10"], d[f"{k}_p90"] = (i.p10, i.p90) if i is not None else (None, None)
        d[f"{k}_validated"] = i.validated if i is not None else None
    return d


def _print_pareto(plans) -> None:
    t = Table(title=f"Pareto frontier: {len(plans)} non-dominated plans (sensitivity, memory, latency)")
    for col in ("#", "sensitivity", "memory/device", "TTFT", "TPOT", "latency", "avg bits", "layout", "KV"):
        t.add_column(col, justify="right" if col not in ("layout", "KV") else "left")
    for i, p in enumerate(plans, 1):
        d = _point(p)
        u = p.predicted.uncertainty

        timed = {k: human_time(d[k]) + (_band(u, k, human_time, prefix="") if d[k] else "") for k in _POINT_BANDS}
        t.add_row(str(i), f"{d['sensitivity']:.4g}", human_bytes(d["per_device_bytes"]), timed["ttft_s"],
                  timed["tpot_s"], timed["latency_s"], f"{d['avg_weight_bits']:.2f}",
                  f"tp={d['tp']} pp={d['pp']} dp={d['dp']}", d["kv"])
    console.print(t)
    bands = [p.predicted.uncertainty for p in plans if p.predicted.uncertainty is not None]
    if bands and all(u.validated for u in bands):  # as a single plan says it (_print_validity)
        console.print("(a–b): p10–p90 of the cost model's out-of-sample error on published rows of the same kind",
                      markup=False, highlight=False)
    elif bands:
        console.print("(a–b): p10–p90 of the cost model's out-of-sample error on published rows of the same kind; "
                      "* outside the validated region, the range is that of a coarser group of rows:",
                      markup=False, highlight=False)
        for n in dict.fromkeys(n for u in bands if not u.validated for n in u.notes):  # each point's notes, once
            console.print(f"  {n}", markup=False, highlight=False)


def _write_csv(plans, path: Path) -> None:
    rows = [_point(p) for p in plans]
    with writing("csv", path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def _plot(plans, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [_point(p) for p in plans]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sc = ax.scatter([d["per_device_bytes"] / 1e9 for d in pts], [d["sensitivity"] for d in pts],
                    c=[d["latency_s"] for d in pts], cmap="viridis", s=40)
    for i, d in enumerate(pts, 1):
        ax.annotate(str(i), (d["per_device_bytes"] / 1e9, d["sensitivity"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("memory per device (GB)")
    ax.set_ylabel("sensitivity (lower is better)")
    fig.colorbar(sc, ax=ax, label="request latency (s)")
    ax.set_title(f"{plans[0].model} on {plans[0].hardware}: Pareto frontier")
    fig.tight_layout()
    try:
        with writing("plot", path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------
# show / diff
# ---------------------------------------------------------------------------


@plan_app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="A plan file written by `tierwise plan --out`.")],
    per_group: Annotated[bool, typer.Option("--per-group", help="Print every group's choice.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print a saved plan (refuses tampered, malformed or newer-version files)."""
    from planner.plan import load_plan, plan_to_dict

    p = load_plan(path)
    if json_out:
        emit_json(plan_to_dict(p))
        return
    print_plan(p, per_group=per_group, title=f"{path.name}: {p.model} on {p.devices}× {p.hardware} "
                                             f"({p.created_at}, tierwise {p.tool_version})")


_DIFF_METRICS = ("ttft_s", "tpot_s", "latency_s", "decode_tokens_per_s", "per_device_bytes", "weights_bytes",
                 "kv_cache_bytes", "avg_weight_bits", "sensitivity", "usd_per_million_tokens")


def _field_text(name: str, value: Any) -> str:
    """A differing input as a person reads it (an activation recipe in words, not its dict)."""
    if name == "activation_recipe":
        from planner.format_noise import recipe_from_dict

        if value is None:
            return "none recorded"
        return "int8 activations " + recipe_from_dict(value, name, lambda *a: ValueError(a)).describe()
    if name == "engine_profile" and value is None:
        return "the catalog's"
    if name == "engine_hash" and value is None:
        return "none recorded"
    return str(value)


def diff_plans(a, b) -> dict[str, Any]:
    """Differences between two plans: inputs, predictions and per-group choices."""
    fields = {}
    for name in ("model", "hardware", "model_hash", "hardware_hash", "devices", "objective", "kv", "activations",
                 "sensitivity_source"):
        if getattr(a, name) != getattr(b, name):
            fields[name] = [getattr(a, name), getattr(b, name)]
    for name in ("engine", "engine_profile", "engine_hash"):
        if getattr(a, name) != getattr(b, name):
            fields[name] = [getattr(a, name), getattr(b, name)]
    from planner.plan import plan_activation_recipe

    # the recipes export and validate follow (a plan that records none: its engine's catalog profile)
    recipes = [None if (r := plan_activation_recipe(p)[1]) is None else r.to_dict() for p in (a, b)]
    if recipes[0] != recipes[1]:
        fields["activation_recipe"] = recipes
    for name in ("layout", "workload", "constraints"):
        da, db = getattr(a, name).to_dict(), getattr(b, name).to_dict()
        for k in da:
            if da[k] != db[k]:
                fields[f"{name}.{k}"] = [da[k], db[k]]
    predicted = {}
    for m in _DIFF_METRICS:
        va, vb = getattr(a.predicted, m), getattr(b.predicted, m)
        entry: dict[str, Any] = {"a": va, "b": vb}
        if va is not None and vb is not None:
            entry["delta"] = vb - va
            entry["ratio"] = vb / va if va else None
        predicted[m] = entry
    changed, same = [], 0
    for g, ca in a.choices.items():
        cb = b.choices.get(g)
        if cb is None:
            continue
        if ca == cb:
            same += 1
        else:
            changed.append({"group": g, "a": ca.key + f"@{ca.tier}", "b": cb.key + f"@{cb.tier}"})
    only_a = [g for g in a.choices if g not in b.choices]
    only_b = [g for g in b.choices if g not in a.choices]
    return {"fields": fields, "predicted": predicted,
            "choices": {"changed": changed, "same": same, "only_in_a": only_a, "only_in_b": only_b}}


@plan_app.command("diff")
def diff(
    a: Annotated[Path, typer.Argument(help="First plan file.", metavar="PLAN_A")],
    b: Annotated[Path, typer.Argument(help="Second plan file.", metavar="PLAN_B")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Compare two plans: inputs, predicted metrics and per-group choices."""
    from planner.plan import load_plan

    pa, pb = load_plan(a), load_plan(b)
    d = diff_plans(pa, pb)
    if json_out:
        emit_json(d)
        return
    if d["fields"]:
        t = Table(title="Inputs that differ")
        for col in ("field", a.name, b.name):
            t.add_column(col)
        for k, (va, vb) in d["fields"].items():
            t.add_row(k, _field_text(k, va), _field_text(k, vb))
        console.print(t)
    t = Table(title="Predicted")
    for col in ("metric", a.name, b.name, "b / a"):
        t.add_column(col, justify="right")
    for m, e in d["predicted"].items():
        fmt = _fmt_metric(m)
        ratio = e.get("ratio")
        t.add_row(m, fmt(e["a"]), fmt(e["b"]), f"{ratio:.3g}×" if ratio is not None and math.isfinite(ratio) else "-")
    console.print(t)
    ch = d["choices"]
    console.print(f"groups: {len(ch['changed'])} changed, {ch['same']} the same"
                  + (f", {len(ch['only_in_a'])} only in {a.name}" if ch["only_in_a"] else "")
                  + (f", {len(ch['only_in_b'])} only in {b.name}" if ch["only_in_b"] else ""))
    if ch["changed"]:
        t = Table(title="Changed choices")
        for col in ("group", a.name, b.name):
            t.add_column(col)
        for row in ch["changed"]:
            t.add_row(row["group"], row["a"], row["b"])
        console.print(t)


def _fmt_metric(name: str):
    if name.endswith("_per_s"):
        return lambda v: "-" if v is None else f"{v:,.4g}"
    if name.endswith("_bytes"):
        return human_bytes
    if name.endswith("_s"):
        return human_time
    return lambda v: "-" if v is None else f"{v:.4g}"


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")


__all__ = ["diff_plans", "plan_app", "print_plan", "register"]
