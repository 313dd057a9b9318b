"""Predict every row of the published-measurements table and report the error.

    python benchmarks/published.py [--csv PATH] [--json] [--rows I01,I02] [--cv loso]
                                   [--set NAME=VALUE] [--write-baseline [PATH]]

For each row of ``published.csv`` (Megatron, TensorRT-LLM, gpt-fast, llama.cpp, FlexGen,
LitGPT, ResNet-50 …) the row's text fields are translated into Tierwise inputs — model id,
hardware id, formats, batch, prompt/generation lengths, layout — and the cost model's
prediction is printed beside the measured value with the error. Rows the model cannot
express say why. The translation reads only what the row states (its dtype, engine and
hardware text); there are no per-row constants: the same general mechanisms (size-dependent
efficiency, per-operator overhead of graph vs eager runtimes, tier streaming) serve all rows.

Rows whose ``split`` column says ``fit`` are the declared fit split: they fit the constants
``benchmarks/fitted.py`` declares ``split`` and are printed apart, in no reported figure.

Categories: ``inference`` and ``memory`` are predicted here; ``training`` rows (and the
fine-tuning memory rows) come from ``benchmarks/published_training.py`` when present.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "data" / "published.csv"
DEFAULT_BASELINE = HERE / "data" / "baseline.json"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from hwmodels import load_device  # noqa: E402

from planner.arch import load_arch  # noqa: E402
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, estimate_inference, max_batch  # noqa: E402
from planner.engines import load_engine  # noqa: E402
from planner.request.engine import kept_float_roles  # noqa: E402
from planner.serving import engine_settings  # noqa: E402
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
    if t.startswith("fp4") or "nvfp4" in t:
        return "nvfp4"
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


def act_format(text: str, weights: str) -> str | None:
    t = text.lower()
    if t.startswith("fp8"):
        return "fp8-e4m3"
    if t.startswith("fp4") or "nvfp4" in t:
        return "nvfp4"  # W4A4 NVFP4: activations quantized per 16 values on the fly
    if t.startswith("int8"):
        return "int8"
    if t.startswith("fp32") and weights == "fp32":
        return "fp32"
    if t.startswith("bf16"):
        return "bf16"
    return "fp16" if "fp16" in t else "bf16"


def kv_format(text: str, act: str, weights_text: str = "") -> str:
    t = text.lower()
    if "not stated" in t and "modelopt" in weights_text.lower():
        # A ModelOpt checkpoint carries its KV format in hf_quant_config.json, which TensorRT-LLM's
        # KV cache adopts (kv_cache_config.dtype "auto"); ModelOpt's hf_ptq.py quantizes the KV cache
        # to FP8 unless told otherwise (--kv_cache_qformat default "fp8",
        # github.com/NVIDIA/TensorRT-Model-Optimizer examples/llm_ptq/hf_ptq.py).
        return "fp8-e4m3"
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
    if t.startswith("fp32"):
        return "fp32"
    return act if act in ("fp16", "bf16", "fp32") else "fp16"


def runtime_of(engine: str) -> str:
    """Graph-captured engines (TensorRT-LLM, torch.compile, llama.cpp, Vitis AI DPU) pay the device's
    kernel overhead; eager PyTorch pays a host dispatch per operator on top."""
    e = engine.lower()
    if "eager" in e or "accelerate" in e or "litgpt" in e:
        return "eager"
    return "graph"


def stated_overrides(row: dict, arch, choice: Choice) -> dict | None:
    """Per-layer formats a row states beside its main scheme: "classification layer 8-bit
    per-channel" / "embedding 8-bit per-channel" (the ExecuTorch 8da4w recipe of the
    Llama 3.2 model card) put the embedding and LM head at int8."""
    text = row["notes"].lower()
    if "classification layer 8-bit" not in text and "embedding 8-bit" not in text:
        return None
    from planner.workload import EMBEDDING, LM_HEAD, build_workload

    work = build_workload(arch)
    eight = Choice(weights="int8", activations=choice.activations, kv=choice.kv)
    return {b.group_fqn(0, op): eight for b in work.blocks if not b.repeated for op in b.ops
            if op.kind in (EMBEDDING, LM_HEAD)}


def _engine_batch_cap(engine: str, pp: int, hardware: str = "") -> int:
    """The most requests the engine runs at once: trtllm-bench caps the batch at 4096 / pp
    (tensorrt_llm/bench/build/tuning.py, finetune_setting: "Cap total batch size to avoid decoder
    buffer size becoming too large"); a Vitis AI DPU design runs one image per DPU kernel (core)
    at a time, so a multi-threaded run keeps as many in flight as the design has kernels."""
    if "trtllm-bench" in engine.lower():
        return max(1, 4096 // pp)
    dpu = re.search(r"(\d+) DPU\w* kernels|(\d+)x DPU", hardware)
    if "vitis" in engine.lower() and dpu:
        return int(dpu.group(1) or dpu.group(2))
    return 1 << 20


def engine_options(row: dict, dev) -> RuntimeSettings:
    """Runtime settings of the row's engine: its profile's kernel and runtime facts when the row
    names one (engine_id), otherwise what the engine text says (eager or graph launch; a fused
    attention kernel unless the engine is FlexGen, whose attention is matmul + softmax)."""
    engine = row["engine"]
    low = engine.lower()
    offload = "flexgen" in low or "offload" in low
    base = {"allow_offload": offload, "runtime": runtime_of(engine)}
    eid = row.get("engine_id", "").strip()
    if eid:
        eng = load_engine(eid)
        sup = eng.support(dev)
        kw = engine_settings(sup.runtime if sup is not None else eng.runtime)
        if sup is not None:  # the embedding / LM head the engine holds in 16 bit, as estimates price them
            kw["float_weight_kinds"] = kept_float_roles(sup)
    else:
        kw = {"fused_elementwise": base["runtime"] == "graph", "fused_attention": "flexgen" not in low}
        if "litgpt" in low and "nf4" in row["weight_dtype"].lower():
            # LitGPT quantizes through Lightning Fabric's BitsandbytesPrecision, which swaps the model's
            # torch.nn.Linear layers for bitsandbytes ones (lm_head included unless ignore_modules names
            # it; lightning/fabric/plugins/precision/bitsandbytes.py); the nn.Embedding table stays bf16.
            kw["float_weight_kinds"] = ("embedding",)
            # Its Linear4bit layers call bitsandbytes' matmul_4bit: a prompt dequantizes each weight whole to
            # bf16 before the GEMM (MatMul4Bit), as under transformers (profiles/engines/hf-transformers.yaml H-BNB).
            kw["dequant_copy_formats"] = ("nf4", "nf4-dq")
            # Fabric's _Linear4bit quantizes each weight from fp16 (weight.to(device="cuda", dtype=torch.half)), so
            # bitsandbytes' quant_state is fp16 and MatMul4Bit's dequantize_4bit(B, quant_state).to(A.dtype) makes an
            # fp16 copy and then, for the bf16 activations, a bf16 one: two copies at once.
            kw["dequant_copy_dtype"] = "fp16"
            # Its GPT keeps lm_head and the wte table as two modules (lit_gpt/model.py), so a tied model's
            # head is a quantized Linear of its own beside the bf16 table.
            kw["untie_quantized_head"] = True
    m = re.search(r"kv_cache_free_gpu_mem_fraction (0\.\d+)", row["notes"])
    if m and kw.get("kv_memory_fraction", 1.0) < 1.0:
        kw["kv_memory_fraction"] = float(m.group(1))  # the fraction the source states it ran with
    seq = re.search(r"max_seq_length (\d+)", row["notes"])
    if seq and kw.get("static_memory_plan"):
        # The program's sequence capacity as the source's export command sets it: a static plan
        # holds the KV cache and the activations at that length, whatever the prompt.
        kw["static_tokens"] = int(seq.group(1))
    threads = re.search(r"(\d+) threads", row["engine"])
    cpu_cores = re.search(r"(\d+) cores", row["hardware"])
    if threads and cpu_cores and int(threads.group(1)) < int(cpu_cores.group(1)):
        # A CPU run with fewer threads than cores computes on that share of the cores.
        kw["compute_share"] = int(threads.group(1)) / int(cpu_cores.group(1))
    cores = re.search(r"(\d+)x DPU", row["hardware"])
    if cores and "1 thread" in row["metric"].lower():
        # Vitis AI runs one thread's requests on one DPU core of the design (Vitis AI Library: one
        # DPU runner per thread); the board's N cores serve N threads.
        kw["compute_share"] = 1.0 / int(cores.group(1))
    return RuntimeSettings(**base, **kw)


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


def _stated(text: str) -> bool:
    return bool(text.strip()) and "not stated" not in text.lower()


def _max_load_batch(text: str) -> bool:
    """A row measured "at max load" (requests fed without pause, the engine picks the batch)."""
    return "max load" in text.lower()


def _lengths(row: dict, family: str, decode_only: bool) -> tuple[int, int]:
    prompt = first_int(row["prompt_len"], None)
    gen = first_int(row["gen_len"], None)
    if family in ("decoder", "encoder_decoder") and (prompt is None or gen is None):
        if "litgpt" in row["engine"].lower():
            # LitGPT's generate defaults (litgpt/generate/base.py: prompt "What food do llamas eat?",
            # max_new_tokens=50) when the table does not state lengths.
            prompt = prompt if prompt is not None else 8
            gen = gen if gen is not None else 50
        elif decode_only and gen is None:
            # A decode rate with no stated length: the rate of the steps right after the prompt.
            gen = 2
    return prompt or 0, gen or 0


def predict_inference(row: dict) -> tuple[float | None, str]:
    model = _match(MODELS, row["model"])
    hw = _match(HARDWARE, row["hardware"])
    if model is None or hw is None:
        missing = [f"{what} {row[what][:40]!r}" for what, found in (("model", model), ("hardware", hw)) if found is None]
        return None, "no catalog entry for " + " / ".join(missing)
    metric = row["metric"].lower()
    if "contextual" in row["sparsity"].lower() or "flash->dram" in metric:
        return None, "contextual activation sparsity (predictor-selected FFN neurons) is not modelled"
    if any("not stated" in row[k].lower() for k in ("num_devices", "batch", "prompt_len")):
        return None, "device count, batch or prompt length not stated by the source"
    wf = weight_format(row["weight_dtype"])
    if wf is None:
        return None, f"weight format {row['weight_dtype']!r} not expressible"
    af = act_format(row["act_dtype"], wf)
    if af is None:
        return None, f"activation format {row['act_dtype']!r} not expressible"
    kf = kv_format(row["kv_dtype"], af, row["weight_dtype"])
    arch = load_arch(model)
    dev = load_device(hw)
    n = first_int(row["num_devices"], 1)
    tp, pp = first_int(row["tp"], 1), first_int(row["pp"], 1)
    dp = max(1, n // (tp * pp))
    decode_only = "decode" in metric and not _stated(row["gen_len"])
    prompt, gen = _lengths(row, arch.family, decode_only)
    opts = engine_options(row, dev)
    layout = Layout(tp=tp, pp=pp, dp=dp)
    choice = Choice(weights=wf, activations=af, kv=kf)
    if _max_load_batch(row["batch"]):
        # Max-load throughput: the largest batch whose weights, KV cache and activations fit,
        # never more than the number of requests the run sent (when the row states it) nor the
        # engine's own batch cap.
        requests = first_int(row["batch"], None) or 4096
        batch = max_batch(arch, dev, layout, Serving(batch=1, prompt=prompt, gen=gen), choice, options=opts,
                          limit=min(requests, _engine_batch_cap(row["engine"], pp, row["hardware"])))
        if batch < 1:
            return None, "not even batch 1 fits in memory"
    else:
        batch = first_int(row["batch"], 1)
    est = estimate_inference(arch, dev, layout, Serving(batch=batch, prompt=prompt, gen=gen), choice,
                             overrides=stated_overrides(row, arch, choice), options=opts)
    return _metric_value(row, est, n, decode_only)


def _metric_value(row: dict, est, n: int, decode_only: bool) -> tuple[float | None, str]:
    metric = row["metric"].lower()
    unit = row["unit"].lower()
    if row["category"] == "memory":
        scale = {"mb": 1e6, "mib": 2.0**20, "gib": 2.0**30}.get(unit.strip(), 1e9)
        return est.memory.per_device_bytes / scale, ""
    if "per generated token" in metric and unit.startswith("ms"):
        # Wall time of the whole generate call over the tokens it produced (batch × new tokens).
        return (1e3 / est.output_tokens_per_s if est.output_tokens_per_s else None), ""
    if "time to first token" in metric:
        return est.ttft_s * 1e3, ""
    if "prefill" in metric or "prompt-processing" in metric:
        return est.prefill_tokens_per_s, ""
    if "latency" in metric:
        return est.latency_s * 1e3, ""
    if "images/s" in unit:
        return est.samples_per_s, ""
    if decode_only:
        return est.decode_tokens_per_s, ""
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


#: Columns every row needs: what the translation reads and what the report prints.
REQUIRED_COLUMNS = ("id", "category", "model", "hardware", "num_devices", "engine", "engine_id", "weight_dtype",
                    "act_dtype", "kv_dtype", "sparsity", "batch", "prompt_len", "gen_len", "tp", "pp", "dp", "metric",
                    "value", "unit", "source", "notes")


def load_rows(path: Path = DEFAULT_CSV) -> list[dict]:
    """The table's rows; ValueError with one line naming the file, and the row or column, when it
    is not a readable CSV file, lacks a column, repeats an id, holds a value that is not a positive
    number, or has a ``split`` neither empty nor ``fit`` (a misspelt split would silently report a
    fit row, or fit on a reported one)."""
    import math

    from published_report import SPLITS, split_of

    if not path.is_file():
        raise ValueError(f"published table {path}: not a file")
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"published table {path}: cannot be read as CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}")
    if not rows:
        raise ValueError(f"{path.name}: no rows")
    seen: set[str] = set()
    for n, r in enumerate(rows, start=2):
        rid = (r.get("id") or "").strip()
        if not rid:
            raise ValueError(f"{path.name} line {n}: empty id")
        if rid in seen:
            raise ValueError(f"{path.name} row {rid!r}: the id appears twice")
        seen.add(rid)
        try:
            value = float(r["value"])
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{path.name} row {rid!r}: value must be a positive number; got {r['value']!r}")
        if split_of(r) not in SPLITS:
            raise ValueError(f"{path.name} row {rid!r}: split must be empty (reported) or 'fit'; got {r['split']!r}")
    return rows


def evaluate(rows: list[dict], cv: bool, fixed: dict[str, float] | None = None) -> dict:
    """In-sample results at the shipped constants and, with ``cv``, leave-one-source-out results,
    over the reported rows. Rows of the declared fit split (``split`` = ``fit``) only fit the
    constants declared ``split`` in benchmarks/fitted.py (unless ``fixed`` sets them); their own
    results are returned apart (``fit_split``) and no reported figure includes them."""
    from fitted import settings
    from published_report import combo_dict, fit, fit_split, is_fit_row, loso, moved_by, prediction_grid

    fixed = fixed or {}
    split_values = fit_split(rows, predict_row, fixed=fixed)
    reported = [r for r in rows if not is_fit_row(r)]
    with settings(split_values):
        results = {r["id"]: predict_row(r) for r in reported}
        fit_results = {r["id"]: predict_row(r) for r in rows if is_fit_row(r)}
        out: dict = {"results": results, "held": None, "chosen": None,
                     "fit_split": {"constants": split_values, "results": fit_results}}
        if cv:
            grid = prediction_grid(reported, predict_row, fixed=fixed)
            moves = {r["id"]: moved_by(grid[r["id"]]) for r in reported}
            held, chosen = loso(reported, grid, moves)
            out["held"] = held
            out["chosen"] = {src: combo_dict(c) for src, c in chosen.items()}
            # the shipped values are the fit over every reported row (tests/test_published.py checks it)
            out["all_rows"] = combo_dict(fit(grid, [r["id"] for r in reported], moves)) if reported else {}
    return out


def _errors(results: dict) -> list[tuple[str, str, float]]:
    return [(i, r.category, r.error) for i, r in results.items() if r.error is not None]


def row_kind(row: dict) -> str:
    """'category / hardware class / engine' of a row: the groups whose errors say how far to trust an
    estimate of the same kind (rows off the catalog count as hardware class '?', no engine profile as '-')."""
    hw = _match(HARDWARE, row["hardware"])
    cls = load_device(hw).device_class if hw else "?"
    cat = "finetune-memory" if row["category"] == "memory" and "lora" in row["engine"].lower() else row["category"]
    return f"{cat}/{cls}/{row['engine_id'] or '-'}"


def report_json(rows: list[dict], ev: dict) -> dict:
    from fitted import current
    from published_report import summary

    held = ev["held"]
    kinds = {r["id"]: row_kind(r) for r in rows}
    out = {
        "constants": current(),
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
                "loso_error": None if held is None else held[r.row_id].error,
                "kind": kinds[r.row_id],
                "reason": r.reason,
            }
            for r in ev["results"].values()
        ],
        "in_sample": {k: v.to_dict() for k, v in summary(_errors(ev["results"])).items()},
        "fit_split": {
            "constants": ev["fit_split"]["constants"],
            "rows": [{"id": r.row_id, "category": r.category, "measured": r.measured, "predicted": r.predicted,
                      "error": r.error} for r in ev["fit_split"]["results"].values()],
            "stats": {k: v.to_dict() for k, v in summary(_errors(ev["fit_split"]["results"])).items()},
        },
    }
    if held is not None:
        out["loso"] = {k: v.to_dict() for k, v in summary(_errors(held)).items()}
        out["loso_by_kind"] = {k: v.to_dict() for k, v in summary((i, kinds[i], e) for i, _, e in _errors(held)).items()}
        out["loso_constants"] = ev["chosen"]
        out["all_rows_constants"] = ev["all_rows"]
    return out


def print_report(rows: list[dict], ev: dict) -> None:
    from published_report import summary

    held = ev["held"]
    print(f"{'id':5} {'category':15} {'model':20} {'hardware':15} {'measured':>12} {'predicted':>12} {'error':>8} {'loso':>8}  unit / note")
    for r in ev["results"].values():
        pred = "-" if r.predicted is None else f"{r.predicted:12.4g}"
        err = "-" if r.error is None else f"{100 * r.error:+7.1f}%"
        h = held[r.row_id].error if held is not None else None
        herr = "-" if h is None else f"{100 * h:+7.1f}%"
        note = r.unit if r.predicted is not None else r.reason
        print(f"{r.row_id:5} {r.category:15} {r.model[:20]:20} {r.hardware[:15]:15} {r.measured:12.4g} {pred:>12} {err:>8} {herr:>8}  {note}")
    ins = summary(_errors(ev["results"]))
    cv = summary(_errors(held)) if held is not None else {}
    print()
    print(f"{'category':16} {'rows':>4} | {'in-sample: median':>17} {'p90':>7} {'max':>8} {'signed':>7} | {'LOSO: median':>12} {'p90':>7} {'max':>8} {'signed':>7}")
    for cat, st in ins.items():
        line = f"{cat:16} {st.rows:4d} | {100 * st.median_abs:16.1f}% {100 * st.p90_abs:6.1f}% {100 * st.max_abs:7.1f}% {100 * st.signed_median:+6.1f}%"
        if cat in cv:
            c = cv[cat]
            line += f" | {100 * c.median_abs:11.1f}% {100 * c.p90_abs:6.1f}% {100 * c.max_abs:7.1f}% {100 * c.signed_median:+6.1f}%"
        print(line)
    for label, stats in (("in-sample", ins), ("LOSO", cv)):
        for cat, st in stats.items():
            worst = ", ".join(f"{i} {100 * e:+.0f}%" for i, e in st.worst)
            print(f"worst {label:9} {cat:16}: {worst}")
    fit = ev["fit_split"]
    if fit["results"]:
        vals = " ".join(f"{k}={v:g}" for k, v in fit["constants"].items()) or "nothing (its constants set by --set)"
        print(f"\nfit split ({len(fit['results'])} rows, not in any figure above) fits {vals}; its rows:")
        for cat, st in summary(_errors(fit["results"])).items():
            print(f"  {cat:16} {st.rows:4d} rows  median {100 * st.median_abs:.1f}%  p90 {100 * st.p90_abs:.1f}%"
                  f"  signed {100 * st.signed_median:+.1f}%")
    if ev["chosen"]:
        print("\nfitted constants chosen without each source (LOSO; each constant judged by the rows it moves):")
        for src, vals in ev["chosen"].items():
            print(f"  {src[:60]:60} " + " ".join(f"{k}={v:g}" for k, v in vals.items()))
        print(f"  {'every reported row (the shipped values should be these)':60} "
              + " ".join(f"{k}={v:g}" for k, v in ev["all_rows"].items()))
    skipped = [r for r in ev["results"].values() if r.predicted is None]
    if skipped:
        print(f"\nnot predicted ({len(skipped)}):")
        for r in skipped:
            print(f"  {r.row_id}: {r.reason}")


def write_baseline(path: Path, rows: list[dict], ev: dict) -> None:
    data = report_json(rows, ev)
    slim = {
        "constants": data["constants"],
        # reported rows and the fit split's: a change that moves a fit row is a regression too
        "errors": {**{r["id"]: r["error"] for r in data["rows"]}, **{r["id"]: r["error"] for r in data["fit_split"]["rows"]}},
        "fit_split": data["fit_split"]["constants"],
        # each reported row held out with its source: a refit of other folds that moves a row is caught too
        "loso_errors": {r["id"]: r["loso_error"] for r in data["rows"]} if "loso" in data else None,
        "in_sample": data["in_sample"],
        "loso": data.get("loso"),
    }
    path.write_text(json.dumps(slim, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    from fitted import parse_assignment, settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--rows", default="", help="comma-separated row ids to run")
    ap.add_argument("--cv", choices=["loso"], help="also report leave-one-source-out cross-validated error")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="set a fitted constant (benchmarks/fitted.py) for this run")
    ap.add_argument("--write-baseline", type=Path, nargs="?", const=DEFAULT_BASELINE, help=f"write per-row errors (default {DEFAULT_BASELINE})")
    args = ap.parse_args(argv)
    if not args.csv.exists():
        print(f"published table not found: {args.csv}", file=sys.stderr)
        return 2
    try:
        values = dict((f.name, v) for f, v in map(parse_assignment, args.set))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        rows = load_rows(args.csv)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.rows:
        keep = {x.strip() for x in args.rows.split(",") if x.strip()}
        unknown = sorted(keep - {r["id"] for r in rows})
        if unknown or not keep:
            print(f"--rows: no row {', '.join(unknown) or '(none given)'} in {args.csv.name}", file=sys.stderr)
            return 2
        rows = [r for r in rows if r["id"] in keep]
    shipped = args.write_baseline is not None and args.write_baseline.resolve() == DEFAULT_BASELINE.resolve()
    partial = [flag for flag, on in (("--rows", bool(args.rows)), ("--set", bool(args.set)),
                                     ("--csv", args.csv.resolve() != DEFAULT_CSV.resolve())) if on]
    if shipped and partial:
        # the shipped baseline is the repository's rows at the shipped constants, every row
        print(f"--write-baseline with {', '.join(partial)} would replace the shipped baseline "
              f"({DEFAULT_BASELINE.name}) with another run's errors; give another path", file=sys.stderr)
        return 2
    with settings(values):
        ev = evaluate(rows, cv=args.cv == "loso" or args.write_baseline is not None, fixed=values)
        if args.write_baseline is not None:
            write_baseline(args.write_baseline, rows, ev)
        if args.json:
            print(json.dumps(report_json(rows, ev), indent=2))
        else:
            print_report(rows, ev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
