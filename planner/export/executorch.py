"""executorch target: the ExecuTorch Llama export command (``export_llama``) that writes the
``.pte`` program the XNNPACK delegate runs on a phone or laptop CPU.

Flags follow ``examples/models/llama/export_llama_lib.py`` as documented in the Llama example
README, https://github.com/pytorch/executorch/tree/main/examples/models/llama (``--checkpoint``,
``--params``, ``--use_kv_cache``/``-kv``, ``--use_sdpa_with_kv_cache``, ``--xnnpack``/``-X``,
``--quantization_mode``/``-qmode 8da4w`` with ``--group_size 32|128``, ``--embedding-quantize
4,32|8,0``, ``--dtype-override``/``-d fp32|fp16|bf16``, ``--quantize_kv_cache``,
``--max_seq_length``, ``--output_name``), and the XNNPACK quantization schemes of
https://docs.pytorch.org/executorch/stable/backends/xnnpack/xnnpack-quantization.html (8-bit
dynamic activations with 4-bit grouped weights, "8da4w"). Newer releases also take the same
settings through ``python -m executorch.extension.llm.export.export_llm`` (LlmConfig fields,
https://docs.pytorch.org/executorch/stable/llm/export-llm.html); ``export_llama`` is kept there.

One quantization mode covers every Linear layer (the LM head included) and one
``--embedding-quantize`` covers the token embedding: a plan whose Linear groups mix weight
formats cannot be written as one command and is refused with the groups at fault.

Encoders, ViTs and CNNs export through ExecuTorch's generic XNNPACK flow instead
(:mod:`.executorch_program`: a ``torch.export`` + ``to_edge_transform_and_lower`` script), and the
decoders Optimum ExecuTorch has tested (Mistral, Gemma, GPT-J, GPT-NeoX…; :data:`OPTIMUM_DECODERS`)
through ``optimum-cli export executorch``.

export_llama builds the decoder-only transformer of ``examples/models/llama/llama_transformer.py``
with a KV cache: the models it names (``EXECUTORCH_DEFINED_MODELS`` in export_llama_lib.py:
Llama 2/3/3.1/3.2, Qwen 2.5 and 3, Phi-4-mini, SmolLM2). A plan for any other decoder
(Falcon, Mixtral, GPT-2…) is refused naming the plan's model:
the command would build a Llama graph with a KV cache the model does not have. ExecuTorch's
own guide sends those to Optimum ExecuTorch
(https://docs.pytorch.org/executorch/stable/llm/export-llm-optimum.html: "export_llm focuses
on a limited set of highly optimized models (Llama, Qwen, Phi, and SmolLM)").
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hwmodels.errors import per_front_end

from .common import model_path, plan_arch, shell_lines
from .core import (FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, UnsupportedModelError, acts_of,
                   format_of, register, weights_of)
from .executorch_program import FAMILIES, export_program
from .rules import float_router, one_format_replan, replan_hint, role_of

#: Flags the export command uses, each as named in export_llama_lib.py (README above).
FLAGS = ("--checkpoint", "--params", "--model", "--use_kv_cache", "--use_sdpa_with_kv_cache", "--xnnpack",
         "--quantization_mode", "--group_size", "--embedding-quantize", "--dtype-override", "--quantize_kv_cache",
         "--max_seq_length", "--output_name")

#: Hugging Face ``model_type`` → export_llama ``--model`` (EXECUTORCH_DEFINED_MODELS).
_MODEL = {"llama": "llama3_2", "qwen2": "qwen2_5", "qwen3": "qwen3_0_6b", "phi3": "phi_4_mini"}
#: What the recipe exports, for the refusal.
RECIPE_MODELS = "decoder LLMs of the Llama family (Llama 2/3/3.1/3.2, Qwen 2.5/3, Phi-4-mini; model_type " + \
    ", ".join(sorted(_MODEL)) + ")"


def _recipe_model(v: PlanView, ctx: ExportContext) -> str:
    """export_llama's ``--model`` for the plan's model; ExportError (naming the model) for an
    architecture the Llama recipe does not build."""
    arch = plan_arch(v, ctx)
    mt = getattr(arch, "model_type", None) or ""
    family = getattr(arch, "family", None) or "unknown"
    name = _MODEL.get(mt)
    if not mt:
        how = per_front_end("give --model-path, a folder with its config.json",
                            "export it on the command line with --model-path, a folder with its config.json")
        raise UnsupportedModelError("model", f"the plan's model {v.model} is not in the catalog and its architecture "
                                    f"could not be read ({how}): ExecuTorch's exporters choose their recipe by the "
                                    "architecture")
    if name is None or family != "decoder":
        what = f"model_type {mt!r}, family {family}"
        raise UnsupportedModelError("model", f"ExecuTorch's Llama recipe (examples/models/llama export_llama) exports only "
                          f"{RECIPE_MODELS}, and Optimum ExecuTorch the decoders it has tested (model_type "
                          f"{', '.join(sorted(OPTIMUM_DECODERS))}); the plan's model {v.model} ({what}) is none of "
                          "them: neither builds its layers and KV cache. Choose another {@format}")
    return name


#: Decoder ``model_type``s Optimum ExecuTorch exports for text generation outside export_llama's
#: recipe: the decoder-only models its README lists as tested, each with a test file in
#: tests/models/ (https://github.com/huggingface/optimum-executorch, "Supported Models").
OPTIMUM_DECODERS = frozenset({"codegen", "gemma", "gemma2", "gemma3_text", "glm", "gpt2", "gptj", "gpt_neox",
                              "gpt_neox_japanese", "granite", "mistral", "olmo", "phi", "smollm3", "starcoder2"})
_OPTIMUM_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Model types whose Optimum tests export without the custom SDPA / KV-cache ops (tests/models/test_modeling_*.py:
#: GPT-J and CodeGen with neither, Gemma and Gemma 2 with the custom SDPA only): those flags are left out for them.
_NO_CUSTOM_SDPA = frozenset({"gptj", "codegen"})
_NO_CUSTOM_KV = frozenset({"gptj", "codegen", "gemma", "gemma2"})


def _optimum_linear(v: PlanView, linear: list[str], notes: list[str], ctx: ExportContext) -> list[str]:
    """``--qlinear`` for the plan's Linear layers: one config for every Linear layer, the LM head
    included (optimum/exporters/executorch/quantization.py quantize_model_: ``quantize_`` over every
    ``nn.Linear``). Its text-generation task passes no group size to ``quantize_model_``
    (tasks/causal_lm.py), so 4-bit weights are in groups of 32 and 8-bit ones ``8da8w`` per channel;
    ``--qlinear_group_size`` would be read and dropped, and is not written."""
    w = _one_linear_format(v, linear, "Optimum ExecuTorch's --qlinear")
    if w in FLOAT16 or w == "fp32":
        return []
    f = format_of(w)
    int8_acts = all(acts_of(v, g) == "int8" for g in linear)
    if f.kind == "int" and f.element_bits == 4 and f.group_size == 32:
        if not int8_acts:
            notes.append(f"{w} weights: 8da4w quantizes activations to int8 per token at run time (the plan's 16-bit "
                         "activations become dynamic int8)")
        return ["--qlinear", "8da4w"]
    if w == "int8":
        if not int8_acts:
            notes.append("int8 weights: 8da8w quantizes activations to int8 per token at run time (XNNPACK has no "
                         "weight-only int8; the plan's 16-bit activations become dynamic int8)")
        return ["--qlinear", "8da8w"]
    raise ExportError(f"choices.{linear[0]}.weights", f"Optimum ExecuTorch's text-generation export quantizes Linear "
                      f"layers to int4 in groups of 32 (8da4w) or int8 per channel (8da8w); the plan gives {w!r}. "
                      f"Re-plan: {one_format_replan(v, 'executorch', 'int4-g32' if f.element_bits == 4 else 'int8')}")


def _optimum_embedding(v: PlanView, emb: list[str], notes: list[str]) -> list[str]:
    w = _one_embedding_format(v, emb, "--qembedding")
    if w is None or w == "fp32":
        return []
    f = format_of(w)
    if w == "int8":
        return ["--qembedding", "8w"]
    if f.kind == "int" and f.element_bits == 4:
        if f.group_size:
            notes.append(f"{w} embedding: the text-generation task passes no group size, so the table is int4 with "
                         f"one scale per row, not per {f.group_size} values")
        return ["--qembedding", "4w"]
    raise ExportError(f"choices.{emb[0]}.weights", f"--qembedding has no setting for {w!r}; it takes 8w and 4w")


def _export_optimum(v: PlanView, ctx: ExportContext) -> Export:
    """``optimum-cli export executorch`` (optimum/commands/export/executorch.py) for a decoder outside
    export_llama's recipe: task text-generation, the XNNPACK recipe, the custom SDPA and KV-cache ops
    (a static cache of ``--max_seq_len`` positions in the ``--dtype`` float type; no quantized-cache
    flag, so an int8 KV cache is refused naming ``kv``)."""
    notes: list[str] = []
    emb = [g for g in v.choices if role_of(g) == "embedding"]
    linear = [g for g in v.choices if g not in emb and not float_router(v, g)]
    qlinear = _optimum_linear(v, linear, notes, ctx)
    qembedding = _optimum_embedding(v, emb, notes)
    # --dtype: the plan's float type (its compute format; the float parts of a quantized model and the cache)
    base = str(v.raw.get("activations") or "")
    floats = ({acts_of(v, g) for g in linear} | {weights_of(v, g) for g in linear}) & set(_OPTIMUM_DTYPE)
    if qlinear:
        dtype = base if base in _OPTIMUM_DTYPE else "fp32"
    else:
        dtype = next(iter(floats)) if len(floats) == 1 else "fp32"
    if v.kv in FLOAT16 or v.kv == "fp32":
        if v.kv != dtype:
            more = format_of(dtype).element_bits / format_of(v.kv).element_bits
            notes.append(f"the KV cache is kept in the model dtype ({dtype}), {more:g}× the bytes of the plan's {v.kv} "
                         "cache: it is not set separately")
    else:
        kv = dtype if dtype in ("fp16", "fp32") else "fp32"
        again = replace(v, kv=kv, raw={**v.raw, "kv": kv})  # the re-plan with the cache the program keeps
        raise ExportError("kv", f"Optimum ExecuTorch keeps the KV cache in the --dtype float type; it has no flag for a "
                          f"{v.kv!r} cache; {replan_hint(again, 'executorch', ctx.engine)}")
    out_dir = f"{v.model}-executorch"
    mt = getattr(plan_arch(v, ctx), "model_type", "") or ""
    custom = [f for f, untested in (("--use_custom_sdpa", _NO_CUSTOM_SDPA), ("--use_custom_kv_cache", _NO_CUSTOM_KV))
              if mt not in untested]
    args = ["optimum-cli", "export", "executorch", "--model", model_path(v, ctx), "--task", "text-generation",
            "--recipe", "xnnpack", *custom, *qlinear, *qembedding,
            "--dtype", _OPTIMUM_DTYPE[dtype], "--max_seq_len", str(max(1, v.prompt + v.gen)), "--output_dir", out_dir]
    script = (f"#!/usr/bin/env bash\n# ExecuTorch export of {v.model} for {v.hardware} with Optimum ExecuTorch "
              "(pip install optimum-executorch).\nset -euo pipefail\n" + shell_lines(args) + "\n")
    return Export(format="executorch", files=(ExportFile(path="export_executorch.sh", content=script,
                                                         media_type="text/x-shellscript"),),
                  next_command="pip install optimum-executorch && ./export_executorch.sh",
                  notes=tuple(dict.fromkeys(notes)))


def _one_linear_format(v: PlanView, linear: list[str], what: str) -> str:
    """The one weight format of the plan's Linear layers (``what`` applies one to all of them, the LM head
    included); a plan that mixes them is refused with the re-plan in its most used quantized format."""
    by: dict[str, list[str]] = {}
    for g in linear:
        by.setdefault(weights_of(v, g), []).append(g)
    if len(by) > 1:
        listing = "; ".join(f"{w}: {', '.join(gs[:4])}{' …' if len(gs) > 4 else ''}" for w, gs in by.items())
        odd = sorted(by.items(), key=lambda kv: len(kv[1]))[0][1][0]
        quantized = {w: gs for w, gs in by.items() if w not in (*FLOAT16, "fp32")} or by
        keep = max(quantized.items(), key=lambda kv: len(kv[1]))[0]
        raise ExportError(f"choices.{odd}.weights", f"{what} applies one configuration to every Linear layer; the plan "
                          f"mixes {len(by)} weight formats ({listing}). Re-plan for executorch with one format, e.g. "
                          f"the plan's most used quantized one: {one_format_replan(v, 'executorch', keep)}")
    return next(iter(by)) if by else "fp32"


def _linear_mode(v: PlanView, linear: list[str], notes: list[str]) -> tuple[list[str], str | None]:
    """(quantization flags, the float dtype the weights are written in when none)."""
    w = _one_linear_format(v, linear, "ExecuTorch's export_llama (one --quantization_mode)")
    if w in FLOAT16:
        return [], w
    f = format_of(w)
    if f.kind == "int" and f.element_bits == 4 and f.group_size in (32, 64, 128, 256):
        if any(acts_of(v, g) != "int8" for g in linear):
            notes.append(f"{w} weights: XNNPACK's 8da4w quantizes activations to int8 per token at run time "
                         "(the plan's 16-bit activations become dynamic int8)")
        return ["--quantization_mode", "8da4w", "--group_size", str(f.group_size)], None
    if w == "int8":
        notes.append("int8 weights: export_llama's int8 mode is weight-only (per output channel); activations stay in "
                     "the --dtype-override precision")
        return ["--quantization_mode", "int8"], None
    raise ExportError(f"choices.{linear[0]}.weights", f"ExecuTorch's export_llama has no quantization mode for {w!r}; "
                      "it writes fp32/fp16/bf16, int8 (weight-only) and int4 in groups of 32/64/128/256 (8da4w)")


def _one_embedding_format(v: PlanView, emb: list[str], flag: str) -> str | None:
    """The one weight format of the plan's embedding tables (``flag`` covers them all), or None when
    it is 16-bit; a plan that gives them different formats is refused."""
    ws = {weights_of(v, g) for g in emb}
    if len(ws) > 1:
        raise ExportError(f"choices.{emb[0]}.weights", f"one {flag} covers every embedding table; the plan gives "
                          f"them {', '.join(sorted(ws))}")
    w = next(iter(ws)) if ws else "bf16"
    return None if w in FLOAT16 else w


def _embedding_flag(v: PlanView, emb: list[str]) -> list[str]:
    w = _one_embedding_format(v, emb, "--embedding-quantize")
    if w is None:
        return []
    f = format_of(w)
    if w == "int8":
        return ["--embedding-quantize", "8,0"]
    if f.kind == "int" and f.element_bits in (2, 4, 8) and f.group_size:
        return ["--embedding-quantize", f"{f.element_bits},{f.group_size}"]
    raise ExportError(f"choices.{emb[0]}.weights", f"--embedding-quantize has no setting for {w!r}; it takes "
                      "BITS,GROUP (8,0 per row; 4,32; 2,32)")


def _dtype(v: PlanView, linear: list[str], float_w: str | None) -> str:
    if float_w is not None:
        return float_w
    acts = {acts_of(v, g) for g in linear} & FLOAT16
    return sorted(acts)[0] if len(acts) == 1 else "fp32"


def _kv_flags(v: PlanView, ctx: ExportContext, dtype: str, notes: list[str]) -> list[str]:
    """export_llama's KV-cache flags for the plan's KV format. The cache follows the model dtype
    (``KVCache`` buffers in the ``--dtype-override`` dtype, X-KV of profiles/engines/executorch.yaml);
    ``--quantize_kv_cache`` ("Whether or not to export a model using int8 per token quantized kv
    cache", export_llama_lib.py; it requires ``--use_kv_cache``) swaps it for ``QuantizedKVCache``:
    int8 values with one fp32 scale and one int8 zero point per token and KV head
    (examples/models/llama/source_transformation/custom_kv_cache.py). No flag writes any other
    format (fp8, int4, grouped int8): such a plan is refused naming ``kv``."""
    if v.kv == "int8":
        notes.append("int8 KV cache: --quantize_kv_cache stores it per token and KV head (asymmetric, one fp32 scale "
                     "and int8 zero point each)")
        return ["--quantize_kv_cache"]
    if v.kv in FLOAT16:
        if v.kv != dtype:
            notes.append(f"the KV cache is kept in the model dtype ({dtype}); the plan's {v.kv} cache is not set "
                         "separately")
        return []
    raise ExportError("kv", f"ExecuTorch's export_llama keeps the KV cache in the --dtype-override dtype "
                      f"(fp32, fp16, bf16) or, with --quantize_kv_cache, in int8 (per token); the plan's KV cache is "
                      f"{v.kv!r}; {replan_hint(v, 'executorch', ctx.engine)}")


def _optimum_route(arch: Any) -> bool:
    mt = getattr(arch, "model_type", None) or ""
    return getattr(arch, "family", None) == "decoder" and mt not in _MODEL and mt in OPTIMUM_DECODERS


def _limits(arch: Any) -> dict[str, tuple[str, ...]] | None:
    """What the Optimum route writes for a decoder: a float KV cache (no quantized-cache flag), and
    Linear weights in float, int8 or int4 in groups of 32 (its text-generation task passes no group size).
    export_llama writes int8 Linear weights weight-only (``--quantization_mode int8``: the activations stay
    float, where the other routes write 8da8w), so those layers do not compute in int8 ("weight_only")."""
    if getattr(arch, "family", None) == "decoder" and (getattr(arch, "model_type", None) or "") in _MODEL:
        return {"weight_only": ("int8",)}
    if not _optimum_route(arch):
        return None
    return {"kv": ("fp32", "fp16", "bf16"), "weights": ("fp32", "fp16", "bf16", "int8", "int4-g32")}


@register("executorch", "ExecuTorch .pte: export_llama for Llama-family decoders, optimum-cli for other tested "
          "decoders, a torch.export script for encoders, ViTs and CNNs", limits=_limits)
def _export_executorch(v: PlanView, ctx: ExportContext) -> Export:
    arch = plan_arch(v, ctx)  # read once: the routes below take it from the context
    ctx = replace(ctx, arch=arch) if ctx.arch is None and arch is not None else ctx
    if getattr(arch, "family", None) in FAMILIES:
        return export_program(v, ctx)
    if _optimum_route(arch):
        return _export_optimum(v, ctx)
    name = _recipe_model(v, ctx)
    notes: list[str] = []
    emb = [g for g in v.choices if role_of(g) == "embedding"]
    linear = [g for g in v.choices if g not in emb and not float_router(v, g)]
    qflags, float_w = _linear_mode(v, linear, notes)
    dtype = _dtype(v, linear, float_w)
    kv = _kv_flags(v, ctx, dtype, notes)
    pte = f"{v.model}.pte"
    args = ["python", "-m", "examples.models.llama.export_llama", "--checkpoint", "${CHECKPOINT:?consolidated .pth}",
            "--params", "${PARAMS:?params.json}", "--model", name, "--use_kv_cache",
            "--use_sdpa_with_kv_cache", "--xnnpack", *qflags, *_embedding_flag(v, emb), "--dtype-override", dtype, *kv,
            "--max_seq_length", str(max(1, v.prompt + v.gen)), "--output_name", pte]
    cmd = shell_lines(args).replace("'${CHECKPOINT:?consolidated .pth}'", '"${CHECKPOINT:?consolidated .pth}"')
    cmd = cmd.replace("'${PARAMS:?params.json}'", '"${PARAMS:?params.json}"')
    script = (f"#!/usr/bin/env bash\n# ExecuTorch export of {v.model} for {v.hardware} ({model_path(v, ctx)}).\n"
              "# Run from an ExecuTorch checkout; CHECKPOINT and PARAMS name the Meta-format weights.\nset -euo pipefail\n"
              f"{cmd}\n")
    return Export(format="executorch", files=(ExportFile(path="export_executorch.sh", content=script,
                                                         media_type="text/x-shellscript"),),
                  next_command="CHECKPOINT=consolidated.00.pth PARAMS=params.json ./export_executorch.sh",
                  notes=tuple(dict.fromkeys(notes)))
