"""Validation benchmarks: the numbers of docs/validation.md.

Sections (run one with ``--only NAME`` or all):

* ``bytes``       MiniLM mixed int8/int4 plan: apply + validate time, measured vs predicted bytes,
                  per-layer weight SQNR (acceptance 1).
* ``latency``     calibrate this machine, then predicted vs measured CPU latency of the MiniLM forward
                  pass and of a Llama-shaped decoder's prefill and decode step (acceptance 2).
* ``sensitivity`` measured sensitivity table on calibration sentences; >= 8 ILP plans at different
                  average-bit budgets; Spearman rho between the plans' predicted sensitivity and
                  their degradation measured on held-out sentences (acceptance 3).
* ``mixed``       mixed (ILP) vs the best uniform format at equal average bits on MiniLM and on the
                  digits CNN (acceptance 4).
* ``loop``        closed loop: bisection over average-bit budgets with measured degradation until it
                  lands inside the band (acceptance 5).

    python benchmarks/bench_validation.py --out benchmarks/results/validation.json
    python benchmarks/bench_validation.py --only latency

Calibration (sensitivity tables) uses documentation paragraphs drawn with seed 0; every
measured degradation uses held-out paragraphs drawn with seed 1 (different paragraphs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwmodels import load_device  # noqa: E402
from planner.execution.calibrate import calibrate, measure_seconds, write_profile  # noqa: E402
from planner.execution.models import load_torch_model  # noqa: E402
from planner.execution.sensitivity_data import measure_sensitivity, write_sensitivity  # noqa: E402
from planner.execution.validate import make_evaluator, validate  # noqa: E402
from planner.formats import combined_bits_per_weight  # noqa: E402
from planner.options import decision_groups  # noqa: E402
from planner.search import bisect_ladder, solve_plan  # noqa: E402
from planner.sensitivity import load_sensitivity_file  # noqa: E402
from planner.workload import build_workload  # noqa: E402

MINILM = "all-minilm-l6-v2"
MENU = ("int8", "fp6-e3m2", "int4-g32", "int4-g64", "int4-g128", "int3-g32", "int3-g128", "int2-g32")
CAL_SAMPLES, EVAL_SAMPLES = 8, 32
CAL_SEED, EVAL_SEED = 0, 1
HARDWARE = "cpu-host"  # only used for the ILP's (unconstrained) memory and latency rows
# "Equal average bits": a uniform format counts at a budget when it is within 0.01 bit of it (int4-g32 is
# 4.5003 bits because biases are priced at the format too, as the planner's avg_bits row does).
BITS_TOL = 0.01


def _log(msg: str) -> None:
    print(msg, flush=True)


def _plan_avg_bits(arch, choices) -> float:
    """Average stored bits per weight over the decision groups (registry pricing, true shapes)."""
    num = den = 0.0
    for g in decision_groups(build_workload(arch)):
        c = choices[g.fqn]
        w, sp = (c["weights"], c.get("sparsity", "dense")) if isinstance(c, dict) else (c.weights, c.sparsity)
        for m in g.members:
            rows = m.out_features or 1
            cols = (m.weight_params // rows) if m.kind == "conv" else (m.in_features or 1)
            num += m.weight_params * combined_bits_per_weight(w, sp, rows, cols)
            den += m.weight_params
    return num / den


def _uniform(arch, fmt: str) -> dict:
    return {g.fqn: {"weights": fmt, "activations": "fp32"} for g in decision_groups(build_workload(arch))}


def _fp32_plan_dict(plan) -> dict:
    """The plan's choices with fp32 activations: the comparisons are about weight formats."""
    return {k: {"weights": c.weights, "sparsity": c.sparsity, "activations": "fp32", "low_rank": c.low_rank}
            for k, c in plan.choices.items()}


def _solve(arch, **kw):
    """solve_plan with HiGHS, retried with CBC when HiGHS reports a false infeasibility (seen at
    avg_bits 3.75 on MiniLM with a measured table: CBC finds a 3.749-bit plan)."""
    from planner.diagnose import NoFeasiblePlanError

    try:
        return solve_plan(arch, HARDWARE, batch=16, prompt=128, gen=0, formats=MENU, **kw)
    except NoFeasiblePlanError:
        return solve_plan(arch, HARDWARE, batch=16, prompt=128, gen=0, formats=MENU, backend="cbc", **kw)


def _sens_table(path: Path, formats=MENU):
    if not path.exists():
        _log(f"measuring the MiniLM sensitivity table ({len(formats)} formats, {CAL_SAMPLES} sentences) …")
        t0 = time.perf_counter()
        table = measure_sensitivity(MINILM, formats, method="kl", samples=CAL_SAMPLES, seed=CAL_SEED)
        write_sensitivity(table, path)
        _log(f"  {time.perf_counter() - t0:.1f} s → {path}")
    return load_sensitivity_file(path)


# -- sections -----------------------------------------------------------------------------------


def bench_bytes(ctx: dict) -> dict:
    tm = load_torch_model(MINILM)
    plan = solve_plan(tm.arch, HARDWARE, avg_bits=6.0, formats=("int8", "int4-g128"), batch=16, prompt=128, gen=0)
    t0 = time.perf_counter()
    r = validate(tm, plan, samples=16, seed=EVAL_SEED)
    elapsed = time.perf_counter() - t0
    linear = [lay for lay in r.layers if ".embeddings." not in lay.name]
    out = {
        "apply_validate_s": elapsed, "apply_s": r.apply_s,
        "formats": sorted({c.weights for c in plan.choices.values()}),
        "measured_weight_bytes": r.measured_weight_bytes, "predicted_weight_bytes": r.predicted_weight_bytes,
        "bytes_error": r.bytes_error, "plan_predicted_weights_bytes": r.plan_predicted_weights_bytes,
        "int8_linear_min_sqnr_db": min(lay.weight_sqnr_db for lay in linear if lay.option.startswith("int8")),
        "int4_linear_min_sqnr_db": min(lay.weight_sqnr_db for lay in linear if lay.option.startswith("int4")),
        "embedding_sqnr_db": {lay.name: lay.weight_sqnr_db for lay in r.layers if ".embeddings." in lay.name},
        "cosine_mean": r.cosine_mean, "nn_agreement": r.nn_agreement, "samples": r.samples,
    }
    _log(f"bytes: {elapsed:.1f} s apply+validate; measured {r.measured_weight_bytes} B vs predicted "
         f"{r.predicted_weight_bytes} B ({r.bytes_error * 100:+.4f} %); int8 linear SQNR >= "
         f"{out['int8_linear_min_sqnr_db']:.1f} dB; cosine {r.cosine_mean:.4f}")
    return out


def bench_latency(ctx: dict) -> dict:
    threads = int(ctx.get("threads") or torch.get_num_threads())
    torch.set_num_threads(threads)
    _log(f"calibrating on {threads} thread(s) (load average {os.getloadavg()[0]:.2f}) …")
    result = calibrate("cpu")
    path = write_profile(result, Path(ctx["workdir"]) / "this-machine.yaml")
    dev = load_device(str(path))
    from planner.costmodel import Choice, Serving, estimate_inference

    fp32 = Choice(weights="fp32", activations="fp32", kv="fp32")
    rows = []
    tm = load_torch_model(MINILM)
    for b, t in ((1, 128), (8, 128), (16, 128), (32, 64)):
        ids = torch.randint(1000, 20000, (b, t), generator=torch.Generator().manual_seed(0))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            meas = min(measure_seconds(lambda: tm.module(ids, mask), min_time_s=0.5) for _ in range(3))
        pred = estimate_inference(tm.arch, dev, serving=Serving(batch=b, prompt=t, gen=0), choice=fp32).ttft_s
        rows.append({"model": MINILM, "phase": "forward", "batch": b, "tokens": t, "measured_s": meas,
                     "predicted_s": pred, "error": (pred - meas) / meas})
    dec = load_torch_model("llama-3.2-1b@layers=2,vocab=32000")
    m = dec.module
    for b, p in ((1, 128), (1, 512), (4, 128)):
        ids = torch.randint(0, 32000, (b, p), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            pre = min(measure_seconds(lambda: m(ids, m.new_cache(), last_only=True), min_time_s=0.5, warmup=1)
                      for _ in range(3))
            cache = m.new_cache()
            m(ids, cache, last_only=True)
            state = cache.snapshot()
            nxt = ids[:, -1:]

            def step() -> None:
                cache.restore(state)
                m(nxt, cache)

            dstep = min(measure_seconds(step, min_time_s=0.5) for _ in range(3))
        est = estimate_inference(dec.arch, dev, serving=Serving(batch=b, prompt=p, gen=1), choice=fp32)
        rows.append({"model": dec.name, "phase": "prefill", "batch": b, "tokens": p, "measured_s": pre,
                     "predicted_s": est.ttft_s, "error": (est.ttft_s - pre) / pre})
        rows.append({"model": dec.name, "phase": "decode", "batch": b, "tokens": p, "measured_s": dstep,
                     "predicted_s": est.tpot_s, "error": (est.tpot_s - dstep) / dstep})
    for r in rows:
        _log(f"latency: {r['model']:36s} {r['phase']:8s} {r['batch']:>3d}×{r['tokens']:<4d} measured "
             f"{r['measured_s'] * 1e3:9.2f} ms  predicted {r['predicted_s'] * 1e3:9.2f} ms  {r['error'] * 100:+6.1f} %")
    return {"profile": str(path), "threads": threads, "peak_fp32_flops_per_s": result.peak_flops_per_s["fp32"],
            "bandwidth_bytes_per_s": result.bandwidth_bytes_per_s, "kernel_overhead_s": result.kernel_overhead_s,
            "load_average": os.getloadavg()[0], "rows": rows}


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def bench_sensitivity(ctx: dict) -> dict:
    sens = _sens_table(Path(ctx["workdir"]) / "minilm-sens.yaml")
    tm = load_torch_model(MINILM)
    evaluate = make_evaluator(MINILM, "cosine", samples=EVAL_SAMPLES, seed=EVAL_SEED)
    budgets = (3.25, 3.5, 3.75, 4.0, 4.25, 4.5, 5.0, 5.5, 6.0, 7.0)
    out = {}
    for source, spec in (("data", sens), ("prior", None)):
        rows = []
        for b in budgets:
            plan = _solve(tm.arch, sensitivity=spec, avg_bits=b)
            measured = evaluate(_fp32_plan_dict(plan))
            rows.append({"avg_bits_budget": b, "avg_bits": _plan_avg_bits(tm.arch, plan.choices),
                         "predicted_sensitivity": plan.predicted.sensitivity, "measured_degradation": measured})
            _log(f"sensitivity[{source}]: budget {b:4.2f} bits → predicted {plan.predicted.sensitivity:.5f}, "
                 f"measured 1-cos {measured:.5f}")
        rho = _spearman([r["predicted_sensitivity"] for r in rows], [r["measured_degradation"] for r in rows])
        _log(f"sensitivity[{source}]: Spearman rho = {rho:.3f} over {len(rows)} plans")
        out[source] = {"rho": rho, "plans": rows}
    return out


def _digits_mixed(budgets) -> list[dict]:
    """Mixed vs uniform on the digits CNN. The ILP is built directly on planner.solver with exact
    per-kernel bits (convolution rows are out channels, columns in/groups·k²)."""
    from planner.solver import Problem, Row, solve

    tm = load_torch_model("digits-cnn")
    formats = MENU
    table = measure_sensitivity(tm, formats, method="kl", samples=128, seed=CAL_SEED)
    groups = decision_groups(build_workload(tm.arch))
    evaluate = make_evaluator("digits-cnn", "kl", samples=400, seed=EVAL_SEED)
    uniform = {}
    for f in formats:
        uniform[f] = (_plan_avg_bits(tm.arch, _uniform(tm.arch, f)), evaluate(_uniform(tm.arch, f)))
    rows = []
    for b in budgets:
        cg, cost, bits, labels = [], [], [], []
        for gi, g in enumerate(groups):
            for f in formats:
                if f not in table.scores[g.fqn]:
                    continue
                cg.append(gi)
                cost.append(table.scores[g.fqn][f])
                num = 0.0
                for m in g.members:
                    rows_ = m.out_features or 1
                    cols = (m.weight_params // rows_) if m.kind == "conv" else m.in_features
                    num += m.weight_params * combined_bits_per_weight(f, "dense", rows_, cols)
                bits.append(num)
                labels.append(f"{g.fqn}:{f}")
        total = float(sum(g.params for g in groups))
        prob = Problem(groups=tuple(g.fqn for g in groups), column_group=np.asarray(cg), cost=np.asarray(cost),
                       rows=(Row(name="avg_bits", coeffs=np.asarray(bits), sense="<=", rhs=b * total),),
                       labels=tuple(labels))
        sol = solve(prob)
        choice = {groups[cg[j]].fqn: {"weights": labels[j].split(":", 1)[1], "activations": "fp32"}
                  for j in sol.picks}
        mixed = evaluate(choice)
        fits = {f: v for f, v in uniform.items() if v[0] <= b + BITS_TOL}
        best_f = min(fits, key=lambda f: fits[f][1]) if fits else None
        rows.append({"model": "digits-cnn", "metric": "kl", "budget": b,
                     "mixed_avg_bits": _plan_avg_bits(tm.arch, choice), "mixed": mixed,
                     "mixed_choice": {k: v["weights"] for k, v in choice.items()},
                     "best_uniform": best_f, "uniform_avg_bits": fits[best_f][0] if best_f else None,
                     "uniform": fits[best_f][1] if best_f else None,
                     "mixed_wins": best_f is None or mixed < fits[best_f][1]})
    return rows


def bench_mixed(ctx: dict) -> dict:
    budgets = (4.5, 5.0, 5.5, 6.0, 7.0)
    sens = _sens_table(Path(ctx["workdir"]) / "minilm-sens.yaml")
    tm = load_torch_model(MINILM)
    evaluate = make_evaluator(MINILM, "cosine", samples=EVAL_SAMPLES, seed=EVAL_SEED)
    uniform = {f: (_plan_avg_bits(tm.arch, _uniform(tm.arch, f)), evaluate(_uniform(tm.arch, f))) for f in MENU}
    rows = []
    for b in budgets:
        plan = _solve(tm.arch, sensitivity=sens, avg_bits=b)
        mixed = evaluate(_fp32_plan_dict(plan))
        fits = {f: v for f, v in uniform.items() if v[0] <= b + BITS_TOL}
        best_f = min(fits, key=lambda f: fits[f][1])
        rows.append({"model": MINILM, "metric": "cosine", "budget": b,
                     "mixed_avg_bits": _plan_avg_bits(tm.arch, plan.choices), "mixed": mixed,
                     "best_uniform": best_f, "uniform_avg_bits": fits[best_f][0], "uniform": fits[best_f][1],
                     "mixed_wins": mixed < fits[best_f][1]})
    rows += _digits_mixed(budgets)
    for r in rows:
        _log(f"mixed: {r['model']:16s} {r['budget']:.2f} bits: mixed {r['mixed']:.6f} ({r['mixed_avg_bits']:.3f} b) "
             f"vs uniform {r['best_uniform']} {r['uniform'] if r['uniform'] is not None else float('nan'):.6f} "
             f"({r['uniform_avg_bits'] or float('nan'):.3f} b) → {'mixed' if r['mixed_wins'] else 'uniform'}")
    share = {m: float(np.mean([r["mixed_wins"] for r in rows if r["model"] == m])) for m in {r["model"] for r in rows}}
    _log(f"mixed wins: {share}")
    return {"rows": rows, "mixed_win_share": share, "uniform_minilm": uniform}


def bench_loop(ctx: dict) -> dict:
    sens = _sens_table(Path(ctx["workdir"]) / "minilm-sens.yaml")
    tm = load_torch_model(MINILM)
    evaluate = make_evaluator(MINILM, "cosine", samples=EVAL_SAMPLES, seed=EVAL_SEED)
    target, band = 0.01, (0.008, 0.01)
    ladder = [round(8.0 - 0.0625 * i, 4) for i in range(81)]  # 8.0 … 3.0 bits, least → most compressed
    rounds = []

    def make(i: int):
        try:
            return _solve(tm.arch, sensitivity=sens, avg_bits=ladder[i])
        except Exception:  # noqa: BLE001 - an infeasible rung counts as failing
            return None

    def measured(plan) -> float:
        d = evaluate(_fp32_plan_dict(plan))
        rounds.append({"avg_bits_budget": plan.constraints.avg_bits, "predicted_sensitivity":
                       plan.predicted.sensitivity, "measured_degradation": d})
        _log(f"loop: round {len(rounds)}: budget {plan.constraints.avg_bits:.4f} bits, predicted "
             f"{plan.predicted.sensitivity:.5f}, measured 1-cos {d:.5f}")
        return d

    res = bisect_ladder(len(ladder), make, measured, band, max_rounds=8)
    best = res.plan
    out = {"metric": "1 - mean cosine similarity (held-out sentences)", "target": target, "band": band,
           "rounds": rounds, "inside_band": res.inside_band, "degradation": res.degradation,
           "avg_bits": best.constraints.avg_bits if best is not None else None}
    if best is not None:
        from planner.plan import save_plan

        out["plan"] = str(save_plan(best, Path(ctx["workdir"]) / "closed-loop-plan.yaml"))
    _log(f"loop: {'inside' if res.inside_band else 'outside'} the band after {len(rounds)} rounds; "
         f"kept {out['avg_bits']} bits with measured {res.degradation}")
    return out


SECTIONS = {"bytes": bench_bytes, "latency": bench_latency, "sensitivity": bench_sensitivity, "mixed": bench_mixed,
            "loop": bench_loop}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(SECTIONS), action="append")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    ap.add_argument("--threads", type=int, help="torch threads for the latency section (calibration and runs)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tierwise-bench")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ctx = {"workdir": str(args.workdir), "threads": args.threads}
    results = {"host": platform.node(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in args.only or list(SECTIONS):
        t0 = time.perf_counter()
        results[name] = SECTIONS[name](ctx)
        results[name]["section_s"] = time.perf_counter() - t0
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=lambda o: None if o is None else str(o)) + "\n")
        _log(f"wrote {args.out}")


if __name__ == "__main__":
    main()

