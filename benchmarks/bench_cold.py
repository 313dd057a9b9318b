"""Wall time of the ``tierwise`` command as a user runs it: a fresh process per run.

    python benchmarks/bench_cold.py [--runs 3] [--only plan-70b,estimate-70b] [--json]
                                    [--llm-analysis /tmp/llm-analysis-venv/bin/python]

For every command of the README's "Use" section (``serve`` excepted: it does not exit) and
the cases of the "Speed a user feels" issue, prints the cold figure — min / median / max
wall seconds of ``--runs`` fresh ``tierwise`` processes (imports, catalog loading, caches
empty) — beside the warm figure: the same command run again in one process whose caches
are hot (``planner.cli.main``, median of ``--runs`` after one warm-up). Commands run in a
temporary directory (``plan.yaml`` is written there first for the commands that read it).
The project's packages are byte-compiled first, as ``pip install`` does for an installed
``tierwise`` (``--no-compile`` skips it): a checkout run with ``PYTHONDONTWRITEBYTECODE=1``
would otherwise recompile every module in every process, which no installed copy does.

``--llm-analysis PYTHON`` (the interpreter of llm-analysis's virtualenv) adds
``tierwise estimate`` and llm-analysis's command line (``python -m llm_analysis.analysis
infer``, its documented entry point) on the
same case (Llama-2-7B, one A100-80GB, batch 1, prompt 512, gen 128, 16-bit), run in turn
(A B A B …) so that drift of the machine's speed hits both; the ratio is per pair.
llm-analysis is not a dependency: install it in a virtualenv of its own (it pins an old
transformers), e.g. ``python3 -m venv /tmp/llm-analysis-venv &&
/tmp/llm-analysis-venv/bin/pip install llm-analysis==0.2.2``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name → (argv after ``tierwise``, exit codes that count as success)
CASES: dict[str, tuple[list[str], tuple[int, ...]]] = {
    "hardware-list": (["hardware", "list"], (0,)),
    "models-show": (["models", "show", "llama-3.1-70b"], (0,)),
    "estimate-70b": (["estimate", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tp", "4", "--batch", "max",
                      "--prompt", "2000", "--gen", "200", "--weights", "fp8", "--activations", "fp8", "--kv", "fp8",
                      "--json"], (0,)),
    "estimate-phone": (["estimate", "--model", "llama-2-13b", "--hardware", "iphone-15-pro", "--weights", "fp16",
                        "--flash-chunk-kib", "32"], (0,)),
    "estimate-training": (["estimate", "--mode", "training", "--model", "llama-3.1-8b", "--hardware", "h100-sxm",
                           "--tp", "2", "--dp", "4", "--global-batch", "256", "--micro-batch", "2", "--seq", "4096",
                           "--zero", "1", "--recompute", "selective", "--finetune", "lora:16"], (0,)),
    "roofline": (["roofline", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--out", "roofline.png"], (0,)),
    "plan-70b": (["plan", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--devices", "2",
                  "--max-memory-per-device", "60GB", "--out", "plan.yaml"], (0,)),
    "plan-show": (["plan", "show", "plan.yaml"], (0,)),
    "export-vllm": (["export", "plan.yaml", "--format", "vllm", "--out", "deploy/"], (0,)),
    "plan-405b-8xh100": (["plan", "--model", "llama-3.1-405b", "--hardware", "h100-sxm", "--devices", "8",
                          "--json"], (0,)),
    "plan-pareto-8": (["plan", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--devices", "2",
                       "--max-memory-per-device", "60GB", "--pareto", "8", "--json"], (0,)),
    "plan-infeasible": (["plan", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--devices", "1",
                         "--max-memory-per-device", "20GB", "--json"], (3,)),
    "capacity-serve": (["capacity", "serve", "--model", "llama-3.1-70b", "--hardware",
                        "h100-sxm,h200,mi300x,a100-80gb-sxm,l40s", "--qps", "10", "--prompt", "2000", "--gen", "200",
                        "--ttft-slo", "2", "--tpot-slo", "0.05"], (0,)),
    # issue 11 item 6: 3 engines × 5 GPUs within 10 s; the same with disaggregated pools; the frontier
    "capacity-serve-engines": (["capacity", "serve", "--model", "llama-3.1-70b", "--hardware",
                                "h100-sxm,h200,mi300x,a100-80gb-sxm,l40s", "--engine", "vllm,trtllm,sglang", "--qps",
                                "10", "--prompt", "2000", "--gen", "200", "--ttft-slo", "2", "--tpot-slo", "0.05"], (0,)),
    "capacity-serve-disagg": (["capacity", "serve", "--model", "llama-3.1-70b", "--hardware",
                               "h100-sxm,h200,mi300x,a100-80gb-sxm,l40s", "--engine", "vllm,trtllm,sglang", "--qps",
                               "10", "--prompt", "2000", "--gen", "200", "--ttft-slo", "2", "--tpot-slo", "0.05",
                               "--disaggregated"], (0,)),
    "capacity-frontier": (["capacity", "frontier", "--model", "llama-3.1-70b", "--hardware",
                           "h100-sxm,h200,mi300x,a100-80gb-sxm,l40s", "--engine", "vllm,trtllm,sglang", "--prompt",
                           "2000", "--gen", "200"], (0,)),
    "capacity-train": (["capacity", "train", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--tokens", "2e12",
                        "--days", "30"], (0,)),
    "validate-minilm": (["validate", "plan-minilm.yaml", "--torch-model", "all-minilm-l6-v2"], (0,)),
    "calibrate": (["calibrate", "--out", "my-machine.yaml"], (0,)),
    "sensitivity-minilm-8": (["sensitivity", "--torch-model", "all-minilm-l6-v2", "--formats",
                              "int8,int4-g128,int4-g64,int3-g64,nf4,fp8-e4m3,mxfp4,int8-g32", "--out", "sens.yaml"],
                             (0,)),
    # int8 activations measured by vLLM's recipe (SmoothQuant calibrated first) on a 2-layer Llama-3.2-1B
    "sensitivity-w8a8-vllm": (["sensitivity", "--torch-model", "llama-3.2-1b@layers=2,vocab=1000", "--formats",
                               "int8,int4-g32", "--activations", "int8", "--engine", "vllm", "--out", "sens-w8a8.yaml"],
                              (0,)),
    "sensitivity-w8-only": (["sensitivity", "--torch-model", "llama-3.2-1b@layers=2,vocab=1000", "--formats",
                             "int8,int4-g32", "--out", "sens-w8.yaml"], (0,)),
}
#: Commands that need a file another command writes first.
SETUP = {
    "plan-show": ["plan-70b"],
    "export-vllm": ["plan-70b"],
    "validate-minilm": ["plan-minilm"],
}
EXTRA = {"plan-minilm": (["plan", "--model", "all-minilm-l6-v2", "--hardware", "h100-sxm", "--out",
                          "plan-minilm.yaml"], (0,))}
#: Slow commands get fewer runs (a minute each would not change the picture).
MAX_RUNS = {"sensitivity-minilm-8": 1, "calibrate": 1, "validate-minilm": 2, "sensitivity-w8a8-vllm": 1,
            "sensitivity-w8-only": 1}
LA_CASE = ["--model_name", "NousResearch_Llama-2-7b-hf", "--gpu_name", "a100-sxm-80gb", "--dtype_name",
           "w16a16e16", "--batch_size_per_gpu", "1", "--seq_len", "512", "--num_tokens_to_generate", "128",
           "--log_level", "ERROR"]
TW_CASE = ["estimate", "--model", "llama-2-7b", "--hardware", "a100-80gb-sxm", "--batch", "1", "--prompt", "512",
           "--gen", "128"]


def byte_compile() -> None:
    """Write the ``__pycache__`` of the project's packages (ignored by git), as an install does."""
    import compileall

    for pkg in ("planner", "hwmodels", "api"):
        compileall.compile_dir(str(ROOT / pkg), quiet=1)


def _tierwise() -> list[str]:
    exe = Path(sys.executable).with_name("tierwise")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "planner"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_once(argv: list[str], ok: tuple[int, ...], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child) of one fresh process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def cold(name: str, runs: int, cwd: Path) -> list[tuple[float, float]]:
    argv, ok = CASES.get(name) or EXTRA[name]
    return [_run_once(_tierwise() + argv, ok, cwd) for _ in range(min(runs, MAX_RUNS.get(name, runs)))]


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (process-pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def warm(name: str, runs: int, cwd: Path) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of the same command in this process after one warm-up run (caches hot)."""
    from planner.cli import main

    argv, ok = CASES[name]
    old = Path.cwd()
    os.chdir(cwd)
    try:
        out = []
        for i in range(min(runs, MAX_RUNS.get(name, runs)) + 1):
            t0, c0 = time.perf_counter(), _cpu_s()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = main(list(argv))
            if code not in ok:
                raise RuntimeError(f"tierwise {' '.join(argv)} exited {code} in process")
            if i:
                out.append((time.perf_counter() - t0, _cpu_s() - c0))
        return out
    finally:
        os.chdir(old)


def side_by_side(la: str, runs: int, cwd: Path) -> dict:
    """``tierwise estimate`` (A) and llm-analysis's CLI (B), alternating; ratio per pair."""
    a_cmd, b_cmd = _tierwise() + TW_CASE, [la, "-m", "llm_analysis.analysis", "infer", *LA_CASE]
    _run_once(a_cmd, (0,), cwd)
    _run_once(b_cmd, (0,), cwd)
    a, b = [], []
    for _ in range(runs):
        a.append(_run_once(a_cmd, (0,), cwd))
        b.append(_run_once(b_cmd, (0,), cwd))
    return {"tierwise": _stats([x for x, _ in a]), "llm_analysis": _stats([x for x, _ in b]),
            "tierwise_cpu": _stats([c for _, c in a]), "llm_analysis_cpu": _stats([c for _, c in b]),
            "ratio": _stats([x / y for (x, _), (y, _) in zip(a, b)]),
            "cpu_ratio": _stats([x / y for (_, x), (_, y) in zip(a, b)]), "tierwise_cmd": "tierwise " + " ".join(TW_CASE),
            "llm_analysis_cmd": "python -m llm_analysis.analysis infer " + " ".join(LA_CASE)}


def _stats(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "runs": len(xs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--no-warm", action="store_true", help="skip the in-process (warm) figures")
    ap.add_argument("--llm-analysis", default="", help="python of a virtualenv with llm-analysis installed")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="do not byte-compile the packages first")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if not args.no_compile:
        byte_compile()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        cwd = Path(tmp)
        for name in names:
            for dep in SETUP.get(name, []):
                if not (cwd / (CASES.get(dep) or EXTRA[dep])[0][-1]).exists():
                    cold(dep, 1, cwd)
            try:
                runs = cold(name, args.runs, cwd)
            except RuntimeError as exc:
                print(f"{name:22s} FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            row = {"cmd": "tierwise " + " ".join(CASES[name][0]), "cold": _stats([w for w, _ in runs]),
                   "cold_cpu": _stats([c for _, c in runs])}
            if not args.no_warm and name not in MAX_RUNS:
                hot = warm(name, args.runs, cwd)
                row["warm"], row["warm_cpu"] = _stats([w for w, _ in hot]), _stats([c for _, c in hot])
            results[name] = row
            if not args.json:
                w, c, cpu, wc = row.get("warm"), row["cold"], row["cold_cpu"], row.get("warm_cpu")
                print(f"{name:22s} cold {c['min']:7.2f} / {c['median']:7.2f} / {c['max']:7.2f} s "
                      f"(cpu {cpu['median']:6.2f} s)" + (f"   warm {w['median']:7.3f} s (cpu {wc['median']:6.2f} s)"
                                                          if w else ""), flush=True)
        if args.llm_analysis:
            la = shutil.which(args.llm_analysis) or args.llm_analysis
            results["estimate-vs-llm-analysis"] = side_by_side(la, max(args.runs, 5), cwd)
            if not args.json:
                r = results["estimate-vs-llm-analysis"]
                print(f"tierwise estimate {r['tierwise']['median']:.2f} s, llm-analysis {r['llm_analysis']['median']:.2f}"
                      f" s: ratio median {r['ratio']['median']:.2f} (min {r['ratio']['min']:.2f}, "
                      f"max {r['ratio']['max']:.2f}); CPU ratio median {r['cpu_ratio']['median']:.2f}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
