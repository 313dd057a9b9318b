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

The model must be one MLC LLM builds (:func:`model_types`); others are refused naming ``model``.
``--conv-template`` is the architecture's MLC conversation template where one is named for it
(:data:`_TEMPLATE`), else ``LM`` with a note listing the templates ``gen_config`` takes
(:data:`CONV_TEMPLATES`) for a chat-tuned checkpoint.

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
from hwmodels.errors import TierwiseError

from .core import (FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, UnsupportedModelError, acts_of,
                   register, weights_of)
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

#: Hugging Face ``model_type`` → an MLC conversation template (python/mlc_llm/conversation_template):
#: gpt2 → ``gpt2`` (gpt.py, plain text ending at GPT-2's <|endoftext|>, token 50256); deepseek_v2 /
#: deepseek_v3 → ``deepseek_v2`` / ``deepseek_v3`` (deepseek.py).
_TEMPLATE = {"llama": "llama-3", "mistral": "mistral_default", "mixtral": "mistral_default", "qwen2": "qwen2",
             "gemma2": "gemma_instruction", "gemma": "gemma_instruction", "phi3": "phi-3", "gpt2": "gpt2",
             "deepseek_v2": "deepseek_v2", "deepseek_v3": "deepseek_v3"}

#: Llama 3's vocabulary (128,256 tokens, its <|start_header_id|> chat tokens among them); Llama 2 and
#: Code Llama have 32,000 / 32,016 (their config.json ``vocab_size``).
LLAMA3_VOCAB = 128_000

#: The template for a model with no chat template of its own: MLC LLM's plain-text completion, "Use
#: "LM" for vanilla base model" (``--conv-template``, https://llm.mlc.ai/docs/compilation/compile_models.html).
PLAIN = "LM"

#: ``mlc_llm gen_config --conv-template`` choices that name a registered template: ``CONV_TEMPLATES``
#: in python/mlc_llm/interface/gen_config.py (the CLI's ``choices``), less ``llama_default``, which
#: no file of python/mlc_llm/conversation_template registers (https://github.com/mlc-ai/mlc-llm, main).
CONV_TEMPLATES = (
    "LM", "aya-23", "chatml", "chatml_nosystem", "codellama_completion", "codellama_instruct", "deepseek",
    "deepseek_r1_llama", "deepseek_r1_qwen", "deepseek_v2", "deepseek_v3", "dolly", "gemma3_instruction",
    "gemma_instruction", "glm", "gorilla", "gorilla-openfunctions-v2", "gpt2", "gpt_bigcode", "hermes2_pro_llama3",
    "hermes3_llama-3_1", "llama-2", "llama-3", "llama-3_1", "llama-4", "llava", "llm-jp", "ministral3",
    "ministral3_reasoning", "mistral_default", "nemotron", "neural_hermes_mistral", "oasst", "olmo", "olmo2",
    "open_hermes_mistral", "orion", "phi-2", "phi-3", "phi-3-vision", "phi-4", "qwen2", "qwen3", "qwen3_5",
    "qwen3_5_nothink", "redpajama_chat", "rwkv_world", "stablelm", "stablelm-2", "stablelm-3b", "tinyllama_v1_0",
    "wizard_coder_or_math", "wizardlm_7b")

#: Hugging Face ``model_type``s MLC LLM builds: the profile's ``models.types`` (profiles/engines/mlc-llm.yaml,
#: source M-MT: the keys of ``MODELS`` in python/mlc_llm/model/model.py). ``convert_weight`` and
#: ``gen_config`` read the type from config.json and stop with "Unknown model type" for any other.
def model_types() -> tuple[str, ...]:
    from planner.engines import load_engine

    return load_engine("mlc-llm").model_types


def _template(v: PlanView, ctx: ExportContext) -> tuple[str, list[str]]:
    """(``--conv-template``, notes): the architecture's template, else ``LM`` with a note saying
    what to pass for a chat-tuned checkpoint. UnsupportedModelError (``model``) for an
    architecture MLC LLM does not build."""
    arch = ctx.arch
    if arch is None:
        from planner.arch import load_arch

        try:
            arch = load_arch(v.model)
        except TierwiseError:  # a model outside the catalog: MLC reads its type from config.json
            arch = None
    mt = getattr(arch, "model_type", None) or ""
    if mt and mt not in model_types():
        raise UnsupportedModelError("model", f"MLC LLM does not build model type {mt!r} (the plan's model {v.model}): "
                                    "mlc_llm convert_weight stops with 'Unknown model type'. It builds "
                                    f"{', '.join(sorted(model_types()))} (python/mlc_llm/model/model.py); choose "
                                    "another {@format}")
    vocab = getattr(arch, "vocab_size", 0) or 0
    if mt == "llama" and 0 < vocab < LLAMA3_VOCAB:
        # Llama 2 / Code Llama: a 32k SentencePiece vocabulary without Llama 3's header tokens, for
        # which the llama-3 template would write text the model never saw
        return PLAIN, [f"{v.model}: a Llama model with a {vocab:,}-token vocabulary (Llama 2 / Code Llama, not Llama 3), "
                       f"so build_mlc.sh passes --conv-template {PLAIN} (plain-text completion, MLC's template for a "
                       "base model); for a Llama-2-chat checkpoint pass --conv-template llama-2"]
    if mt in _TEMPLATE:
        return _TEMPLATE[mt], []
    what = f"model type {mt}" if mt else "its model type (not read)"
    return PLAIN, [f"{v.model}: MLC LLM has no conversation template for {what}, so build_mlc.sh passes "
                   f"--conv-template {PLAIN} (plain-text completion, MLC's template for a base model). For a "
                   "chat-tuned checkpoint, replace it with the template of its chat format; mlc_llm gen_config "
                   f"--conv-template takes {', '.join(CONV_TEMPLATES)}"]


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
    template, notes = _template(v, ctx)
    q = _mode(v)
    kv_notes = _kv_note(v, ctx, q)
    src = model_path(v, ctx)
    out = f"dist/{v.model}-{q}-MLC"
    device = _device(v)
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
