"""mlc target: the three MLC LLM commands that turn a Hugging Face checkpoint into a model
MLC runs — ``mlc_llm convert_weight`` (quantized weights), ``mlc_llm gen_config``
(``mlc-chat-config.json``) and ``mlc_llm compile`` (the model library).

Flags as documented in "Compile Model Libraries",
https://llm.mlc.ai/docs/compilation/compile_models.html (``convert_weight MODEL --quantization Q
-o OUT``; ``gen_config MODEL --quantization Q --conv-template T --context-window-size N
--prefill-chunk-size N --tensor-parallel-shards N -o OUT``; ``compile CONFIG --device D -o LIB``)
and "Convert Model Weights", https://llm.mlc.ai/docs/compilation/convert_weights.html. The
quantization modes are those of "Configure Quantization",
https://llm.mlc.ai/docs/compilation/configure_quantization.html: ``q0f16``/``q0f32`` (no
quantization), ``q4f16_1``/``q4f32_1`` (4-bit, groups of 32, fp16/fp32 scales and compute),
``q3f16_1`` (3-bit) and ``e4m3_e4m3_f16`` (FP8 on CUDA).

One ``--quantization`` covers the whole model: a plan whose groups mix weight formats cannot
be written and is refused with the groups at fault.

The KV cache has no setting of its own: each model's ``create_paged_kv_cache`` builds
``PagedKVCache.create_generic(..., dtype=self.dtype)``, the model dtype of the quantization mode
(``model_dtype`` in python/mlc_llm/quantization/quantization.py: float16 for q0f16, q3f16_1,
q4f16_1 and e4m3_e4m3_f16, float32 for q0f32 and q4f32_1;
https://github.com/mlc-ai/mlc-llm/blob/main/python/mlc_llm/model/llama/llama_model.py). A plan
with a quantized KV cache (fp8, int8, int4) is refused naming ``kv``; a 16/32-bit cache other
than the mode's dtype is written in the mode's dtype with a note.
"""

from __future__ import annotations

from .common import model_path, prefill_chunk, shell_lines
from .core import FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, register, weights_of
from .rules import float_router, one_format_replan, replan_hint, role_of

#: Flags the commands use (the documents above).
FLAGS = ("--quantization", "--conv-template", "--context-window-size", "--prefill-chunk-size",
         "--tensor-parallel-shards", "--device", "-o")

#: (plan weights, compute) → MLC quantization mode (Configure Quantization).
_MODE = {("fp16", "fp16"): "q0f16", ("bf16", "fp16"): "q0f16", ("fp32", "fp32"): "q0f32",
         ("int4-g32", "fp16"): "q4f16_1", ("int4-g32", "fp32"): "q4f32_1", ("int3-g32", "fp16"): "q3f16_1",
         ("fp8-e4m3", "fp8-e4m3"): "e4m3_e4m3_f16"}

#: MLC quantization mode → its model dtype, which the paged KV cache is stored in (module docstring).
_KV_DTYPE = {"q0f16": "fp16", "q3f16_1": "fp16", "q4f16_1": "fp16", "e4m3_e4m3_f16": "fp16", "q0f32": "fp32",
             "q4f32_1": "fp32"}

#: Hugging Face ``model_type`` → an MLC conversation template (python/mlc_llm/conversation_template).
_TEMPLATE = {"llama": "llama-3", "mistral": "mistral_default", "mixtral": "mistral_default", "qwen2": "qwen2",
             "gemma2": "gemma_instruction", "gemma": "gemma_instruction", "phi3": "phi-3"}


def _device(v: PlanView) -> str:
    """``mlc_llm compile --device`` for the plan's hardware."""
    try:
        from hwmodels import load_device

        dev = load_device(v.hardware)
    except Exception:  # noqa: BLE001 - hardware outside the catalog: MLC's portable GPU backend
        return "vulkan"
    vendor, cls = (dev.vendor or "").lower(), getattr(dev, "device_class", "")
    if vendor == "apple":
        return "iphone" if cls == "phone" else "metal"
    if cls == "phone":
        return "android"
    return {"nvidia": "cuda", "amd": "rocm"}.get(vendor, "vulkan")


def _mode(v: PlanView) -> str:
    by: dict[tuple[str, str], list[str]] = {}
    # Float MoE routers are never quantized; MLC's per-tensor fp8 mode (e4m3_e4m3_f16:
    # PerTensorQuantize with quantize_embedding=False) keeps the embedding in 16 bit.
    fp8 = any(weights_of(v, g).startswith("fp8") for g in v.choices)
    for g in v.choices:
        w, a = weights_of(v, g), acts_of(v, g)
        if float_router(v, g) or (fp8 and role_of(g) == "embedding" and w in FLOAT16):
            continue
        a = "fp16" if a == "bf16" else a
        by.setdefault((w, a), []).append(g)
    modes = {_MODE.get(k) for k in by}
    for (w, a), gs in by.items():
        if (w, a) not in _MODE:
            raise ExportError(f"choices.{gs[0]}.weights", f"MLC LLM has no quantization mode for {w} weights with {a} "
                              f"compute; it runs {', '.join(f'{m} ({x}/{y})' for (x, y), m in _MODE.items())}")
    if len(modes) > 1:
        listing = "; ".join(f"{_MODE[k]} ({k[0]}): {', '.join(gs[:4])}{' …' if len(gs) > 4 else ''}" for k, gs in by.items())
        odd = sorted(by.values(), key=len)[0][0]
        most = max(by.items(), key=lambda kv: len(kv[1]))[0][0]
        raise ExportError(f"choices.{odd}.weights", f"MLC LLM applies one --quantization to the whole model; the plan "
                          f"mixes {listing}. Re-plan for mlc-llm with one format, e.g. the plan's most used one: "
                          f"{one_format_replan(v, 'mlc-llm', most)}")
    return modes.pop() if modes else "q0f16"


def _kv_note(v: PlanView, ctx: ExportContext, q: str) -> list[str]:
    """The note for a float KV cache written in the mode's dtype; ExportError (``kv``) for a KV
    format no mode stores."""
    dtype = _KV_DTYPE[q]
    if v.kv not in FLOAT16:
        raise ExportError("kv", f"MLC LLM keeps the KV cache in the model dtype of its --quantization mode (fp16 for "
                          f"q0f16/q3f16_1/q4f16_1/e4m3_e4m3_f16, fp32 for q0f32/q4f32_1) and has no KV-cache "
                          f"quantization; the plan's KV cache is {v.kv!r}; {replan_hint(v, 'mlc', ctx.engine)}")
    if v.kv == dtype:
        return []
    larger = " (twice the planned KV memory)" if dtype == "fp32" else ""
    return [f"the KV cache is kept in {q}'s model dtype ({dtype}){larger}; the plan's {v.kv} cache is not set "
            "separately"]


@register("mlc", "MLC LLM convert_weight, gen_config and compile commands")
def _export_mlc(v: PlanView, ctx: ExportContext) -> Export:
    q = _mode(v)
    kv_notes = _kv_note(v, ctx, q)
    src = model_path(v, ctx)
    out = f"dist/{v.model}-{q}-MLC"
    device = _device(v)
    mt = getattr(ctx.arch, "model_type", None) or ""
    template = _TEMPLATE.get(mt, "LM")
    notes = [] if mt in _TEMPLATE else [f"{v.model}: no chat template known for model type {mt or 'unknown'}; "
                                         "--conv-template LM (plain text) is written"]
    notes += kv_notes
    if any(weights_of(v, g) == "int3-g32" for g in v.choices):
        notes.append("q3f16_1 packs 3-bit weights in MLC's own groups (40 values per fp16 scale), not the plan's 32")
    gen = ["--quantization", q, "--conv-template", template, "--context-window-size", str(max(1, v.prompt + v.gen))]
    chunk = prefill_chunk(ctx.engine or "mlc-llm")
    if chunk:
        gen += ["--prefill-chunk-size", str(min(chunk, max(1, v.prompt)))]
    if v.tp > 1:
        gen += ["--tensor-parallel-shards", str(v.tp)]
    steps = [
        ["mlc_llm", "convert_weight", "${MODEL_DIR:?Hugging Face checkpoint folder}", "--quantization", q, "-o", out],
        ["mlc_llm", "gen_config", "${MODEL_DIR:?Hugging Face checkpoint folder}", *gen, "-o", out],
        ["mlc_llm", "compile", f"{out}/mlc-chat-config.json", "--device", device, "-o", f"dist/libs/{v.model}-{q}-{device}.so"],
    ]
    body = "\n".join(shell_lines(s).replace("'${MODEL_DIR:?Hugging Face checkpoint folder}'",
                                            '"${MODEL_DIR:?Hugging Face checkpoint folder}"') for s in steps)
    script = (f"#!/usr/bin/env bash\n# MLC LLM build of {v.model} ({src}) for {v.hardware}.\n"
              f"# MODEL_DIR: a local copy of {src} (config.json, tokenizer, safetensors).\nset -euo pipefail\n{body}\n")
    return Export(format="mlc", files=(ExportFile(path="build_mlc.sh", content=script, media_type="text/x-shellscript"),),
                  next_command=f"MODEL_DIR=path/to/{src.split('/')[-1]} ./build_mlc.sh && mlc_llm chat {out} "
                               f"--model-lib dist/libs/{v.model}-{q}-{device}.so",
                  notes=tuple(notes))
