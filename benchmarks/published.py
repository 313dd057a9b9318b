"""Predict every row of the published-measurements table and report the error.

    python benchmarks/published.py [--csv PATH] [--json] [--rows I01,I02]

For each row of ``published.csv`` (Megatron, TensorRT-LLM, gpt-fast, llama.cpp, FlexGen,
LitGPT, ResNet-50 …) the row's text fields are translated into Tierwise inputs — model id,
hardware id, formats, batch, prompt/generation lengths, layout — and the cost model's
prediction is printed beside the measured value with the error. Rows the model cannot
express say why. The translation reads only what the row states (its dtype, engine and
hardware text); there are no per-row constants: the same general mechanisms (size-dependent
efficiency, per-operator overhead of graph vs eager runtimes, tier streaming) serve all rows.

Categories: ``inference`` and ``memory`` are predicted here; ``training`` rows (and the
fine-tuning memory rows) come from ``benchmarks/published_training.py`` when present.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "data" / "published.csv"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from hwmodels import load_device  # noqa: E402

from planner.arch import load_arch  # noqa: E402
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, estimate_inference  # noqa: E402
from rowmap import HARDWARE, MODELS, first_int  # noqa: E402
from rowmap import match as _match  # noqa: E402



def weight_format(text: str) -> str | None:
    t = text.lower()
    if "q8_0" in t:
        return "int8-g32"  # llama.cpp Q8_0: 8-bit values, fp16 scale per 32 → 8.5 bits
    if "q4_0" in t:
        return "int4-g32"  # llama.cpp Q4_0: 4-bit values, fp16 scale per 32 → 4.5 bits
    if "nf4" in t:
        return "nf4-dq" if "double" in t else "nf4"
    m = re.search(r"int4.*group size (\d+)", t)
    if m:
        return f"int4-g{m.group(1)}"
    m = re.search(r"4-bit group-wise.*group (\d+)", t)
    if m:
        return f"int4-g{m.group(1)}-zp"  # FlexGen: min/max (asymmetric) group quantization
    if "int8" in t:
        return "int8"
    for f in ("fp8", "bf16", "fp16", "fp32"):
        if t.startswith(f):
            return "fp8-e4m3" if f == "fp8" else f
    return None


def act_format(text: str, weights: str) -> str:
    t = text.lower()
    if t.startswith("fp8"):
        return "fp8-e4m3"
    if t.startswith("int8"):
        return "int8"
    if t.startswith("fp32") and weights == "fp32":
        return "fp32"
    if t.startswith("bf16"):
        return "bf16"
    return "fp16" if "fp16" in t else "bf16"


def kv_format(text: str, act: str) -> str:
    t = text.lower()
    if t.startswith("fp8"):
        return "fp8-e4m3"
    m = re.search(r"4-bit group-wise", t)
    if m:
        return "int4-g64"
    if t.startswith("int8"):
        return "int8"
    if t.startswith("bf16"):
        return "bf16"
    if t.startswith("fp16"):
        return "fp16"
    return act if act in ("fp16", "bf16", "fp32") else "fp16"


def runtime_of(engine: str) -> str:
    """Graph-captured engines (TensorRT-LLM, torch.compile, llama.cpp, Vitis AI DPU) pay the device's
    kernel overhead; eager PyTorch pays a host dispatch per operator on top."""
    e = engine.lower()
    if "eager" in e or "accelerate" in e or "litgpt" in e:
        return "eager"
    return "graph"


@dataclass
class Result:
    row_id: str
    category: str
    model: str
    hardware: str
    metric: str
    unit: str
    measured: float
    predicted: float | None
    reason: str = ""

    @property
    def error(self) -> float | None:
        if self.predicted is None or not self.measured:
            return None
        return (self.predicted - self.measured) / self.measured


def predict_inference(row: dict) -> tuple[float | None, str]:
    model = _match(MODELS, row["model"])
    hw = _match(HARDWARE, row["hardware"])
    if model is None or hw is None:
        return None, f"no catalog entry for model {row['model']!r} / hardware {row['hardware'][:40]!r}"
    metric = row["metric"].lower()
    if "contextual" in row["sparsity"].lower() or "flash->dram" in metric:
        return None, "contextual activation sparsity (predictor-selected FFN neurons) is not modelled"
    wf = weight_format(row["weight_dtype"])
    if wf is None:
        return None, f"weight format {row['weight_dtype']!r} not expressible"
    af = act_format(row["act_dtype"], wf)
    kf = kv_format(row["kv_dtype"], af)
    arch = load_arch(model)
    dev = load_device(hw)
    n = first_int(row["num_devices"], 1)
    tp, pp = first_int(row["tp"], 1), first_int(row["pp"], 1)
    dp = max(1, n // (tp * pp))
    batch = first_int(row["batch"], 1)
    prompt = first_int(row["prompt_len"], None)
    gen = first_int(row["gen_len"], None)
    if arch.family in ("decoder", "encoder_decoder") and (prompt is None or gen is None):
        # LitGPT's generate defaults (litgpt/generate/base.py: prompt "What food do llamas eat?",
        # max_new_tokens=50) when the table does not state lengths.
        prompt = prompt if prompt is not None else 8
        gen = gen if gen is not None else 50
    prompt = prompt or 0
    gen = gen or 0
    engine = row["engine"]
    offload = "flexgen" in engine.lower() or "offload" in engine.lower()
    opts = RuntimeSettings(allow_offload=offload, runtime=runtime_of(engine))
    est = estimate_inference(
        arch,
        dev,
        Layout(tp=tp, pp=pp, dp=dp),
        Serving(batch=batch, prompt=prompt, gen=gen),
        Choice(weights=wf, activations=af, kv=kf),
        options=opts,
    )
    unit = row["unit"].lower()
    if row["category"] == "memory":
        return est.memory.per_device_bytes / 1e9, ""
    if "time to first token" in metric:
        return est.ttft_s * 1e3, ""
    if "prefill" in metric or "prompt-processing" in metric:
        return est.prefill_tokens_per_s, ""
    if "latency" in metric:
        return est.latency_s * 1e3, ""
    if "images/s" in unit:
        return est.samples_per_s, ""
    if "token" in metric or "throughput" in metric:
        total = est.output_tokens_per_s
        if "/gpu" in unit:
            return total / n, ""
        return total, ""
    return None, f"metric {row['metric']!r} not mapped"


def predict_row(row: dict) -> Result:
    cat = row["category"]
    measured = float(row["value"])
    model = _match(MODELS, row["model"]) or row["model"]
    hw = _match(HARDWARE, row["hardware"]) or row["hardware"][:30]
    pred: float | None = None
    reason = ""
    finetune = cat == "memory" and ("lora" in row["engine"].lower() or "fine-tun" in row["engine"].lower())
    if cat == "training" or finetune:
        try:
            from published_training import training_row_prediction  # type: ignore
        except ImportError:
            return Result(row["id"], cat, model, hw, row["metric"], row["unit"], measured, None, "training model not available")
        out = training_row_prediction(row)
        if out is None:
            reason = "not expressible by the training model"
        else:
            pred = out[0]
        if finetune:
            cat = "finetune-memory"
    else:
        try:
            pred, reason = predict_inference(row)
        except Exception as exc:  # noqa: BLE001 - report and continue with the next row
            pred, reason = None, f"error: {exc}"
    return Result(row["id"], cat, model, hw, row["metric"], row["unit"], measured, pred, reason)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rows", default="", help="comma-separated row ids to run")
    args = ap.parse_args(argv)
    if not args.csv.exists():
        print(f"published table not found: {args.csv}", file=sys.stderr)
        return 2
    rows = list(csv.DictReader(args.csv.open()))
    if args.rows:
        keep = set(args.rows.split(","))
        rows = [r for r in rows if r["id"] in keep]
    results = [predict_row(r) for r in rows]
    by_cat: dict[str, list[float]] = {}
    for r in results:
        if r.error is not None:
            by_cat.setdefault(r.category, []).append(abs(r.error))
    if args.json:
        out = {
            "rows": [
                {
                    "id": r.row_id,
                    "category": r.category,
                    "model": r.model,
                    "hardware": r.hardware,
                    "metric": r.metric,
                    "unit": r.unit,
                    "measured": r.measured,
                    "predicted": r.predicted,
                    "error": r.error,
                    "reason": r.reason,
                }
                for r in results
            ],
            "median_abs_pct_error": {k: 100 * statistics.median(v) for k, v in by_cat.items()},
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'id':5} {'category':15} {'model':20} {'hardware':15} {'measured':>12} {'predicted':>12} {'error':>8}  unit / note")
    for r in results:
        pred = "-" if r.predicted is None else f"{r.predicted:12.4g}"
        err = "-" if r.error is None else f"{100 * r.error:+7.1f}%"
        note = r.unit if r.predicted is not None else r.reason
        print(f"{r.row_id:5} {r.category:15} {r.model[:20]:20} {r.hardware[:15]:15} {r.measured:12.4g} {pred:>12} {err:>8}  {note}")
    print()
    for cat, errs in sorted(by_cat.items()):
        print(f"median |error| {cat:16}: {100 * statistics.median(errs):5.1f}%  over {len(errs)} rows (max {100 * max(errs):.1f}%)")
    skipped = [r for r in results if r.predicted is None]
    if skipped:
        print(f"not predicted: {', '.join(r.row_id for r in skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
