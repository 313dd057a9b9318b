"""How fast is one estimate, and how fast is a sweep of many?

    python benchmarks/bench_estimate.py [--calls 400] [--configs 10000] [--workers N]
                                        [--start-method fork|spawn|forkserver] [--json]

1. **One estimate, in process**: the median wall time of one
   ``planner.costmodel.estimate_inference`` call for an 80-layer model (llama-3.1-70b on
   h100-sxm, tp=4, prompt 512, gen 128, batch around 8). The model and device are loaded
   once, a warm-up runs first, then every timed call uses a different batch from the one
   before (batch cycles over 1..64), so no cache of a previous result can answer it.
   Target: median ≤ 0.5 ms. Beside it the script times a fixed pure-Python loop (the
   machine's speed at that moment), so runs on a shared or throttled machine can be compared.
2. **A sweep of distinct configurations** — catalog decoder models × data-centre
   accelerators (GPU, TPU, RDU) × batch × prompt × generated tokens × weight format × tp —
   run over a ``concurrent.futures.ProcessPoolExecutor`` with ``os.cpu_count()`` workers.
   Configurations travel in chunks (lists), never one by one. The wall time is end to end:
   building the configuration list, starting the pool, estimating, collecting, shutting
   the pool down. Target: 10,000 configurations in ≤ 5 s on a 2-core machine.

Configurations are chosen to be valid: tp divides the attention heads, the activation
and KV formats are the device's native 16-bit type, every weight format is one the device
runs (natively or by dequantizing). ``EstimateError`` is still caught and counted per
field, so a configuration the cost model refuses is visible, not hidden. Configurations
that are valid but do not fit in memory are estimated (that is the answer the cost model
gives for them: ``fits = false``) and counted separately.

Results of this script on the project's reference machine are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hwmodels import list_devices, load_device  # noqa: E402

from planner.arch import list_models, load_arch  # noqa: E402
from planner.costmodel import Choice, Serving, estimate_inference  # noqa: E402
from planner.errors import EstimateError  # noqa: E402
from planner.layout import Layout  # noqa: E402

SINGLE_TARGET_S = 0.5e-3
SWEEP_TARGET_S = 5.0

# Single-estimate case (the 80-layer model of the task statement).
SINGLE_MODEL = "llama-3.1-70b"
SINGLE_HARDWARE = "h100-sxm"
SINGLE_TP = 4
SINGLE_PROMPT = 512
SINGLE_GEN = 128
SINGLE_BATCHES = tuple(range(1, 65))  # batch 8 is among them; consecutive calls never repeat a batch

# Sweep axes.
SWEEP_DEVICE_CLASSES = ("gpu", "tpu", "rdu")
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
SWEEP_PROMPTS = (128, 512, 1024, 2048, 4096)
SWEEP_GENS = (32, 128, 256, 512)
SWEEP_TPS = (1, 2, 4, 8)
# Weight formats beside the device's 16-bit type; all are in the format registry and every
# device in SWEEP_DEVICE_CLASSES runs them natively or by dequantizing.
SWEEP_QUANT_WEIGHTS = ("fp8-e4m3", "int8", "int4-g128", "nf4", "mxfp4")


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepConfig:
    """One inference configuration of the sweep (picklable, small)."""

    model: str
    hardware: str
    batch: int
    prompt: int
    gen: int
    weights: str
    activations: str
    tp: int


@dataclass(slots=True, kw_only=True)
class ChunkResult:
    """What a worker sends back for one chunk: small summaries, not whole estimates."""

    ok: int = 0
    not_fitting: int = 0
    errors: Counter = field(default_factory=Counter)  # EstimateError.field → count
    error_examples: dict = field(default_factory=dict)  # field → first message
    best_tpot_s: float = float("inf")
    best_config: SweepConfig | None = None
    checksum_latency_s: float = 0.0  # sum of predicted request latencies (a cheap fingerprint)
    cpu_s: float = 0.0  # CPU time the worker spent on the chunk (robust to other load on the machine)


def _native_16bit(device_id: str) -> str:
    dev = load_device(device_id)
    return "bf16" if dev.supports("bf16") == "native" else "fp16"


def sweep_axes() -> tuple[list[tuple], dict[str, str], list[tuple]]:
    """The sweep's axes: valid (model, tp) pairs, the 16-bit activation format per device,
    and the remaining axes (hardware, batch, prompt, gen, weight format choice)."""
    models = [m for m in list_models() if load_arch(m).family == "decoder"]
    devices = [d for d in list_devices() if load_device(d).device_class in SWEEP_DEVICE_CLASSES]
    act = {d: _native_16bit(d) for d in devices}
    model_tp = [(m, tp) for m in models for tp in SWEEP_TPS if load_arch(m).num_heads % tp == 0]
    # Weight choice 0 is the device's own 16-bit type, 1.. the quantized formats.
    rest = [tuple(devices), SWEEP_BATCHES, SWEEP_PROMPTS, SWEEP_GENS, tuple(range(1 + len(SWEEP_QUANT_WEIGHTS)))]
    return model_tp, act, rest


def make_configs(n: int, seed: int = 0) -> list[SweepConfig]:
    """``n`` distinct valid configurations drawn without replacement (fixed seed).

    The space (≈ 2 million points) is never built: indices are drawn from ``range(size)``
    and decoded digit by digit (mixed radix), so drawing 10,000 costs milliseconds."""
    model_tp, act, rest = sweep_axes()
    radices = [len(model_tp)] + [len(axis) for axis in rest]
    size = 1
    for r in radices:
        size *= r
    if n > size:
        raise ValueError(f"--configs {n} exceeds the {size} distinct configurations of the sweep space")
    out = []
    for index in random.Random(seed).sample(range(size), n):
        digits = []
        for r in reversed(radices):
            index, d = divmod(index, r)
            digits.append(d)
        i_mt, i_dev, i_b, i_p, i_g, i_w = reversed(digits)
        m, tp = model_tp[i_mt]
        dev = rest[0][i_dev]
        w = act[dev] if i_w == 0 else SWEEP_QUANT_WEIGHTS[i_w - 1]
        out.append(SweepConfig(model=m, hardware=dev, batch=rest[1][i_b], prompt=rest[2][i_p], gen=rest[3][i_g],
                               weights=w, activations=act[dev], tp=tp))
    return out


def run_chunk(configs: list[SweepConfig]) -> ChunkResult:
    """Estimate every configuration of a chunk (runs inside a worker process)."""
    out = ChunkResult()
    t0 = time.process_time()
    for c in configs:
        try:
            est = estimate_inference(
                load_arch(c.model),
                load_device(c.hardware),
                Layout(tp=c.tp),
                Serving(batch=c.batch, prompt=c.prompt, gen=c.gen),
                Choice(weights=c.weights, activations=c.activations, kv=c.activations),
            )
        except EstimateError as exc:
            out.errors[exc.field] += 1
            out.error_examples.setdefault(exc.field, f"{c}: {exc.message}")
            continue
        out.ok += 1
        if not est.memory.fits:
            out.not_fitting += 1
        out.checksum_latency_s += est.latency_s
        if est.memory.fits and 0 < est.tpot_s < out.best_tpot_s:
            out.best_tpot_s, out.best_config = est.tpot_s, c
    out.cpu_s = time.process_time() - t0
    return out


def _merge(parts: list[ChunkResult]) -> ChunkResult:
    total = ChunkResult()
    for p in parts:
        total.ok += p.ok
        total.not_fitting += p.not_fitting
        total.errors.update(p.errors)
        for k, v in p.error_examples.items():
            total.error_examples.setdefault(k, v)
        total.checksum_latency_s += p.checksum_latency_s
        total.cpu_s += p.cpu_s
        if p.best_tpot_s < total.best_tpot_s:
            total.best_tpot_s, total.best_config = p.best_tpot_s, p.best_config
    return total


def chunked(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def sweep(configs: list[SweepConfig], workers: int, chunks_per_worker: int = 4, start_method: str | None = None) -> ChunkResult:
    """Estimate ``configs`` over a process pool, ``chunks_per_worker`` chunks per worker
    (a few chunks each, so a slow chunk does not leave the other workers idle).

    Configurations are grouped by (hardware, weights, model) before chunking: neighbours
    then share the cost model's cached per-(device, format, shape) numerics."""
    configs = sorted(configs, key=lambda c: (c.hardware, c.weights, c.model, c.tp))
    size = max(1, -(-len(configs) // (workers * chunks_per_worker)))
    ctx = multiprocessing.get_context(start_method) if start_method else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        parts = list(pool.map(run_chunk, chunked(configs, size)))
    return _merge(parts)


def reference_loop_s(repeats: int = 5) -> float:
    """Median time of a fixed pure-Python loop (1,000,000 multiply-adds): the interpreter's speed
    on this machine at this moment, printed beside the estimate timing."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        acc = 0
        for i in range(1_000_000):
            acc += i * i
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_single(calls: int, warmup: int = 50) -> dict:
    """Median in-process time of one estimate_inference call (see the module docstring)."""
    arch = load_arch(SINGLE_MODEL)
    dev = load_device(SINGLE_HARDWARE)
    layout = Layout(tp=SINGLE_TP)
    choice = Choice()
    if arch.num_layers != 80:
        raise SystemExit(f"{SINGLE_MODEL} has {arch.num_layers} layers; this benchmark is defined for 80")

    def one(b: int):
        return estimate_inference(arch, dev, layout, Serving(batch=b, prompt=SINGLE_PROMPT, gen=SINGLE_GEN), choice)

    for i in range(warmup):
        one(SINGLE_BATCHES[i % len(SINGLE_BATCHES)])
    times = []
    tpots = set()
    for i in range(calls):
        b = SINGLE_BATCHES[i % len(SINGLE_BATCHES)]
        t0 = time.perf_counter()
        est = one(b)
        times.append(time.perf_counter() - t0)
        tpots.add(est.tpot_s)
    # Different batches must give different answers, or the timing measured a lookup.
    if len(tpots) < min(calls, len(SINGLE_BATCHES)) // 2:
        raise SystemExit(f"only {len(tpots)} distinct TPOT values over {calls} calls: results look cached")
    ref = one(8)
    times.sort()
    return {
        "case": f"{SINGLE_MODEL} ({arch.num_layers} layers) on {SINGLE_HARDWARE}, tp={SINGLE_TP}, "
        f"prompt {SINGLE_PROMPT}, gen {SINGLE_GEN}, batch cycling 1..64",
        "calls": calls,
        "median_s": statistics.median(times),
        "p10_s": times[len(times) // 10],
        "p90_s": times[(9 * len(times)) // 10],
        "min_s": times[0],
        "batch8_ttft_s": ref.ttft_s,
        "batch8_tpot_s": ref.tpot_s,
        "target_s": SINGLE_TARGET_S,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=400, help="timed single-estimate calls (≥ 200)")
    ap.add_argument("--configs", type=int, default=10_000, help="distinct configurations in the sweep")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool workers (default: os.cpu_count())")
    ap.add_argument("--start-method", choices=multiprocessing.get_all_start_methods(), default=None,
                    help="process start method (default: the platform's)")
    ap.add_argument("--seed", type=int, default=0, help="seed for drawing the sweep configurations")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)
    if args.calls < 200:
        ap.error(f"--calls must be at least 200; got {args.calls}")
    if args.configs < 1 or args.workers < 1:
        ap.error("--configs and --workers must be positive")

    ref_before = reference_loop_s()
    single = time_single(args.calls)
    single["reference_loop_s"] = (ref_before + reference_loop_s()) / 2

    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    configs = make_configs(args.configs, args.seed)
    t_built = time.perf_counter()
    res = sweep(configs, args.workers, start_method=args.start_method)
    wall = time.perf_counter() - t0
    n_models = len({c.model for c in configs})
    n_devices = len({c.hardware for c in configs})
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "single": single,
        "sweep": {
            "configs": len(configs),
            "distinct": len(set(configs)),
            "models": n_models,
            "hardware": n_devices,
            "workers": args.workers,
            "start_method": args.start_method or multiprocessing.get_start_method(),
            "build_configs_s": t_built - t0,
            "wall_s": wall,
            "worker_cpu_s": res.cpu_s,
            "load_average_1min_at_start": load_at_start,
            "configs_per_s": len(configs) / wall,
            "ok": res.ok,
            "not_fitting": res.not_fitting,
            "errors": dict(res.errors),
            "error_examples": res.error_examples,
            "sum_latency_s": res.checksum_latency_s,
            "fastest_fitting_tpot_s": res.best_tpot_s,
            "fastest_fitting_config": None if res.best_config is None else vars_of(res.best_config),
            "target_s": SWEEP_TARGET_S,
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    s, w = report["single"], report["sweep"]
    m = report["machine"]
    print(f"machine: {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}")
    print(f"single estimate: {s['case']}")
    print(f"  {s['calls']} calls: median {s['median_s'] * 1e3:.3f} ms (p10 {s['p10_s'] * 1e3:.3f}, "
          f"p90 {s['p90_s'] * 1e3:.3f}, min {s['min_s'] * 1e3:.3f}) — target ≤ {s['target_s'] * 1e3:g} ms: "
          f"{'met' if s['median_s'] <= s['target_s'] else 'MISSED'}")
    print(f"  machine speed: a 1,000,000-iteration pure-Python loop takes {s['reference_loop_s'] * 1e3:.0f} ms here now "
          f"(median of 5, before and after)")
    print(f"  batch 8: TTFT {s['batch8_ttft_s'] * 1e3:.2f} ms, TPOT {s['batch8_tpot_s'] * 1e3:.3f} ms")
    print(f"sweep: {w['configs']} distinct configurations ({w['models']} models × {w['hardware']} devices × batch × "
          f"prompt × gen × weights × tp), {w['workers']} workers ({w['start_method']})")
    print(f"  wall {w['wall_s']:.2f} s end to end (config list {w['build_configs_s']:.2f} s), "
          f"{w['configs_per_s']:,.0f} configs/s — target ≤ {w['target_s']:g} s: "
          f"{'met' if w['wall_s'] <= w['target_s'] else 'MISSED'}")
    print(f"  worker CPU time {w['worker_cpu_s']:.2f} s ({w['worker_cpu_s'] / w['configs'] * 1e3:.3f} ms per configuration); "
          f"1-min load average at start {w['load_average_1min_at_start']}")
    print(f"  estimated {w['ok']}, of which {w['not_fitting']} do not fit in memory; "
          f"EstimateError: {sum(w['errors'].values())} {w['errors'] or ''}")
    for fld, msg in w["error_examples"].items():
        print(f"    e.g. {fld}: {msg}")
    if w["fastest_fitting_config"]:
        print(f"  fastest fitting TPOT {w['fastest_fitting_tpot_s'] * 1e3:.3f} ms: {w['fastest_fitting_config']}")
    return 0


def vars_of(c: SweepConfig) -> dict:
    return {k: getattr(c, k) for k in SweepConfig.__slots__}


if __name__ == "__main__":
    raise SystemExit(main())
