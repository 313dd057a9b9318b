"""Tierwise beside llm-analysis 0.2.2 on the same inference case, and the speed of each.

    python benchmarks/compare_llm_analysis.py [--venv /tmp/llm-analysis-venv] [--calls 300]
                                              [--no-install] [--json]

Prerequisite: llm-analysis lives in its own virtualenv, never in the project's (it pins
transformers 4.31 and huggingface-hub 0.14, and needs no torch). The script creates it when
missing; by hand it is:

    python3 -m venv /tmp/llm-analysis-venv
    /tmp/llm-analysis-venv/bin/pip install llm-analysis==0.2.2

The case: Llama-2-7B on one A100-80GB SXM, batch 1, prompt 512, generate 128, (a) fp16
weights and (b) int4 weights, fp16 activations and fp16 KV cache. Tierwise side is what

    tierwise estimate --model llama-2-7b --hardware a100-80gb-sxm --batch 1 --prompt 512
        --gen 128 --weights fp16|int4-g128 --activations fp16 --kv fp16 --json

prints (the script checks that once through the CLI), computed by calling the library.
llm-analysis side is its ``llm_analysis.analysis.infer`` entry point with the packaged
configs ``NousResearch_Llama-2-7b-hf``, ``a100-sxm-80gb`` and dtype configs ``w16a16e16`` /
``w4a16e16``, every other argument at its default (flops and HBM efficiency 1.0). Neither
tool is tuned.

Timing is in process for each tool: llm-analysis in a subprocess of its own virtualenv that
times ``infer(...)`` and prints JSON; Tierwise here, timing ``load_arch`` + ``load_device``
(catalog lookups, as ``infer`` looks up its configs by name) + ``estimate_inference``. Each
is timed twice: the same case repeated, and with the batch cycling over 1..16 (so no cache
of a previous answer can serve a call). Medians of ``--calls`` calls after a warm-up.

With ``benchmarks/data/published.csv`` (in the repository), both tools also predict
the decode time per token of the gpt-fast measurements on the same GPU (rows I14 bf16 and
I16 int4 group 32: Llama-2-7B, batch 1, ~5-token prompt, 200 tokens) as a check of which
assumptions land nearer a measurement.

Differences in assumptions are listed in docs/benchmarks.md ("Estimate speed and
comparison with llm-analysis").
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from hwmodels import load_device  # noqa: E402

from planner.arch import load_arch  # noqa: E402
from planner.costmodel import Choice, Layout, Serving, estimate_inference  # noqa: E402

LLM_ANALYSIS_VERSION = "0.2.2"
DEFAULT_VENV = Path("/tmp/llm-analysis-venv")
PUBLISHED_CSV = REPO / "benchmarks" / "data" / "published.csv"

MODEL = "llama-2-7b"
HARDWARE = "a100-80gb-sxm"
LA_MODEL = "NousResearch_Llama-2-7b-hf"  # llm-analysis packaged config for the same checkpoint
LA_GPU = "a100-sxm-80gb"
BATCH, PROMPT, GEN = 1, 512, 128
TIMING_BATCHES = tuple(range(1, 17))

# label → (Tierwise weight format, llm-analysis dtype config)
CASES = {
    "fp16": ("fp16", "w16a16e16"),
    "int4": ("int4-g128", "w4a16e16"),
}
# gpt-fast rows of published.csv: id → (label, Tierwise weights, llm-analysis dtype).
# gpt-fast runs bf16; llm-analysis has one 16-bit type; int4 there is group size 32.
ANCHORS = {
    "I14": ("bf16", "bf16", "w16a16e16"),
    "I16": ("int4 g32", "int4-g32", "w4a16e16"),
}

# Runs inside the llm-analysis virtualenv. Argument: one JSON object. Prints one JSON object.
LLM_ANALYSIS_RUNNER = r"""
import importlib.metadata, json, statistics, sys, time
args = json.loads(sys.argv[1])
from llm_analysis import constant
from llm_analysis.analysis import infer

KEEP = ("prefill_latency", "decode_latency", "total_latency", "weight_memory_per_gpu",
        "kv_cache_memory_per_gpu", "kv_cache_latency", "flops_efficiency", "hbm_memory_efficiency",
        "prefill_num_flops_fwd_total", "decode_num_flops_fwd_total")

def run(dtype, batch, prompt, gen):
    return infer(model_name=args["model"], gpu_name=args["gpu"], dtype_name=dtype, log_level="ERROR",
                 batch_size_per_gpu=batch, seq_len=prompt, num_tokens_to_generate=gen)

def median_time(calls, fn):
    for i in range(args["warmup"]):
        fn(i)
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

out = {"version": importlib.metadata.version("llm-analysis"), "python": sys.version.split()[0],
       "defaults": {"FLOPS_EFFICIENCY": constant.FLOPS_EFFICIENCY,
                    "HBM_MEMORY_EFFICIENCY": constant.HBM_MEMORY_EFFICIENCY},
       "cases": {}, "anchors": {}}
for label, dtype in args["cases"].items():
    r = run(dtype, args["batch"], args["prompt"], args["gen"])
    res = {k: r[k] for k in KEEP}
    batches = args["timing_batches"]
    res["time_same_case_s"] = median_time(args["calls"], lambda i: run(dtype, args["batch"], args["prompt"], args["gen"]))
    res["time_batch_varied_s"] = median_time(
        args["calls"], lambda i: run(dtype, batches[i % len(batches)], args["prompt"], args["gen"]))
    out["cases"][label] = res
for rid, a in args["anchors"].items():
    r = run(a["dtype"], a["batch"], a["prompt"], a["gen"])
    out["anchors"][rid] = {k: r[k] for k in KEEP}
print(json.dumps(out))
"""


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(venv: Path, install: bool) -> Path:
    """Return the llm-analysis virtualenv's interpreter, creating the venv when allowed."""
    py = venv_python(venv)
    probe = [str(py), "-c", "import importlib.metadata as m; print(m.version('llm-analysis'))"]
    if py.exists():
        got = subprocess.run(probe, capture_output=True, text=True)
        if got.returncode == 0 and got.stdout.strip() == LLM_ANALYSIS_VERSION:
            return py
    if not install:
        raise SystemExit(
            f"llm-analysis {LLM_ANALYSIS_VERSION} is not installed in {venv}. Create it with:\n"
            f"  python3 -m venv {venv}\n  {venv}/bin/pip install llm-analysis=={LLM_ANALYSIS_VERSION}\n"
            "or run this script without --no-install."
        )
    if not py.exists():
        print(f"creating {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing llm-analysis=={LLM_ANALYSIS_VERSION} into {venv} ...", file=sys.stderr)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"llm-analysis=={LLM_ANALYSIS_VERSION}"], check=True)
    got = subprocess.run(probe, capture_output=True, text=True)
    if got.returncode != 0 or got.stdout.strip() != LLM_ANALYSIS_VERSION:
        raise SystemExit(f"llm-analysis in {venv} reports version {got.stdout.strip()!r}; expected {LLM_ANALYSIS_VERSION}")
    return py


def read_anchors(path: Path) -> dict:
    """gpt-fast decode rows from published.csv (measured tokens/s → seconds per token)."""
    if not path.is_file():
        return {}
    rows = {r["id"]: r for r in csv.DictReader(path.open(newline="", encoding="utf-8"))}
    out = {}
    for rid, (label, weights, dtype) in ANCHORS.items():
        r = rows.get(rid)
        if r is None or r["unit"] != "tokens/s":
            continue
        out[rid] = {
            "label": label,
            "weights": weights,
            "dtype": dtype,
            "batch": int(r["batch"]),
            "prompt": int(r["prompt_len"]),
            "gen": int(r["gen_len"]),
            "measured_tpot_s": 1.0 / float(r["value"]),
            "source": r["source"],
        }
    return out


def run_llm_analysis(py: Path, calls: int, warmup: int, anchors: dict) -> dict:
    args = {
        "model": LA_MODEL,
        "gpu": LA_GPU,
        "batch": BATCH,
        "prompt": PROMPT,
        "gen": GEN,
        "cases": {label: dtype for label, (_, dtype) in CASES.items()},
        "anchors": {rid: {k: a[k] for k in ("dtype", "batch", "prompt", "gen")} for rid, a in anchors.items()},
        "calls": calls,
        "warmup": warmup,
        "timing_batches": list(TIMING_BATCHES),
    }
    # Its own interpreter, its own site-packages; nothing from this project on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"  # configs are packaged; make sure nothing reaches for the network
    got = subprocess.run([str(py), "-c", LLM_ANALYSIS_RUNNER, json.dumps(args)], capture_output=True, text=True,
                         env=env, cwd="/")
    if got.returncode != 0:
        raise SystemExit(f"llm-analysis run failed (exit {got.returncode}):\n{got.stderr[-3000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def _tierwise(weights: str, act: str, batch: int, prompt: int, gen: int):
    return estimate_inference(
        load_arch(MODEL),
        load_device(HARDWARE),
        Layout(),
        Serving(batch=batch, prompt=prompt, gen=gen),
        Choice(weights=weights, activations=act, kv=act),
    )


def _median_time(calls: int, warmup: int, fn) -> float:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_tierwise(calls: int, warmup: int, anchors: dict) -> dict:
    out = {"cases": {}, "anchors": {}}
    for label, (weights, _) in CASES.items():
        d = _tierwise(weights, "fp16", BATCH, PROMPT, GEN).to_dict(ops=False)
        res = {
            "ttft_s": d["ttft_s"],
            "tpot_s": d["tpot_s"],
            "latency_s": d["latency_s"],
            "weights_bytes": d["memory"]["weights_bytes"],
            "kv_cache_bytes": d["memory"]["kv_cache_bytes"],
        }
        res["time_same_case_s"] = _median_time(calls, warmup, lambda i: _tierwise(weights, "fp16", BATCH, PROMPT, GEN))
        res["time_batch_varied_s"] = _median_time(
            calls, warmup, lambda i: _tierwise(weights, "fp16", TIMING_BATCHES[i % len(TIMING_BATCHES)], PROMPT, GEN))
        out["cases"][label] = res
    for rid, a in anchors.items():
        est = _tierwise(a["weights"], "bf16", a["batch"], a["prompt"], a["gen"])
        out["anchors"][rid] = {"tpot_s": est.tpot_s}
    return out


def check_cli(results: dict) -> None:
    """The library numbers above are what `tierwise estimate --json` prints."""
    for label, (weights, _) in CASES.items():
        argv = ["estimate", "--model", MODEL, "--hardware", HARDWARE, "--batch", str(BATCH), "--prompt", str(PROMPT),
                "--gen", str(GEN), "--weights", weights, "--activations", "fp16", "--kv", "fp16", "--json"]
        got = subprocess.run([sys.executable, "-c", "import sys; from planner.cli import main; sys.exit(main(sys.argv[1:]))",
                              *argv], capture_output=True, text=True, cwd=str(REPO))
        if got.returncode != 0:
            raise SystemExit(f"tierwise {' '.join(argv)} failed (exit {got.returncode}): {got.stderr[-2000:]}")
        d = json.loads(got.stdout)
        mine = results["cases"][label]
        pairs = [("ttft_s", d["ttft_s"]), ("tpot_s", d["tpot_s"]), ("latency_s", d["latency_s"]),
                 ("weights_bytes", d["memory"]["weights_bytes"]), ("kv_cache_bytes", d["memory"]["kv_cache_bytes"])]
        for key, cli_value in pairs:
            if not math.isclose(mine[key], cli_value, rel_tol=1e-9):
                raise SystemExit(f"CLI and library disagree on {label} {key}: {cli_value} vs {mine[key]}")


def _fmt_rows(tw: dict, la: dict) -> list[tuple[str, float, float]]:
    return [
        ("prefill latency (ms)", tw["ttft_s"] * 1e3, la["prefill_latency"] * 1e3),
        ("decode latency per token (ms)", tw["tpot_s"] * 1e3, la["decode_latency"] * 1e3),
        ("total latency (s)", tw["latency_s"], la["total_latency"]),
        ("weights memory (GB)", tw["weights_bytes"] / 1e9, la["weight_memory_per_gpu"] / 1e9),
        ("KV cache memory (GB)", tw["kv_cache_bytes"] / 1e9, la["kv_cache_memory_per_gpu"] / 1e9),
        ("time per estimate, same case (µs)", tw["time_same_case_s"] * 1e6, la["time_same_case_s"] * 1e6),
        ("time per estimate, batch 1..16 (µs)", tw["time_batch_varied_s"] * 1e6, la["time_batch_varied_s"] * 1e6),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="llm-analysis virtualenv (created when missing)")
    ap.add_argument("--no-install", action="store_true", help="fail instead of creating the virtualenv")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per tool and case")
    ap.add_argument("--warmup", type=int, default=30, help="untimed calls before timing")
    ap.add_argument("--csv", type=Path, default=PUBLISHED_CSV, help="published measurements (for the gpt-fast rows)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args(argv)
    if args.calls < 1 or args.warmup < 0:
        ap.error("--calls must be ≥ 1 and --warmup ≥ 0")

    py = ensure_venv(args.venv, install=not args.no_install)
    anchors = read_anchors(args.csv)
    la = run_llm_analysis(py, args.calls, args.warmup, anchors)
    tw = run_tierwise(args.calls, args.warmup, anchors)
    check_cli(tw)

    report = {
        "case": {"model": MODEL, "llm_analysis_model": LA_MODEL, "hardware": HARDWARE, "llm_analysis_gpu": LA_GPU,
                 "batch": BATCH, "prompt": PROMPT, "gen": GEN},
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
        "llm_analysis": la,
        "tierwise": tw,
        "anchors": anchors,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    print(f"Llama-2-7B on one A100-80GB SXM, batch {BATCH}, prompt {PROMPT}, generate {GEN}; fp16 activations and KV")
    print(f"llm-analysis {la['version']} (Python {la['python']}), defaults flops_efficiency="
          f"{la['defaults']['FLOPS_EFFICIENCY']}, hbm_memory_efficiency={la['defaults']['HBM_MEMORY_EFFICIENCY']}; "
          f"machine: {os.cpu_count()} CPUs")
    for label, (weights, dtype) in CASES.items():
        print(f"\n({label}) Tierwise --weights {weights}  |  llm-analysis dtype {dtype}")
        print(f"  {'':38s} {'Tierwise':>12s} {'llm-analysis':>13s} {'ratio':>7s}")
        for name, a, b in _fmt_rows(tw["cases"][label], la["cases"][label]):
            print(f"  {name:38s} {a:12.4g} {b:13.4g} {a / b:7.3f}")
    if anchors:
        print("\nDecode time per token against gpt-fast measurements (A100-SXM 80GB at 330 W, batch 1):")
        print(f"  {'row':5s} {'weights':9s} {'measured':>9s} {'Tierwise':>9s} {'err':>7s} {'llm-analysis':>13s} {'err':>7s}")
        for rid, a in anchors.items():
            m = a["measured_tpot_s"]
            t = tw["anchors"][rid]["tpot_s"]
            l_ = la["anchors"][rid]["decode_latency"]
            print(f"  {rid:5s} {a['label']:9s} {m * 1e3:7.2f}ms {t * 1e3:7.2f}ms {(t / m - 1) * 100:+6.1f}% "
                  f"{l_ * 1e3:11.2f}ms {(l_ / m - 1) * 100:+6.1f}%")
    print("\nTierwise numbers equal `tierwise estimate ... --json` (checked through the CLI).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
