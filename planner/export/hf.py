"""hf target: a transformers ``quantization_config`` (bitsandbytes, fine-grained FP8, or
compressed-tensors for per-layer mixtures) and a ``load.py``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .common import arch_family, group_kinds, model_path, modules_of, plan_arch, quantized_convs, to_json
from .core import FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, register, weights_of
from .rules import as_exported, dense_only, replan_hint
from .schemes import ct_quantization_config


_QUANTIZED_CACHE = {"int4-g64": 4, "int2-g64": 2}


def qcfg_is_bnb(quantized: dict[str, str], acts: set[str]) -> bool:
    """Whether the plan's quantized weights export as bitsandbytes (int8, nf4, fp4 with 16-bit compute)."""
    return acts <= FLOAT16 and set(quantized.values()) <= {"int8", "nf4", "nf4-dq", "fp4-e2m1"}


#: The transformers Auto class that loads a model of each family with its head: a decoder's LM
#: head, T5's encoder-decoder with its LM head, a CNN's or ViT's image classifier, an encoder's
#: bare model with its pooler (BertModel, as sentence-embedding checkpoints are).
AUTO_CLASS = {"decoder": "AutoModelForCausalLM", "encoder_decoder": "AutoModelForSeq2SeqLM",
              "cnn": "AutoModelForImageClassification", "vit": "AutoModelForImageClassification",
              "encoder": "AutoModel"}


@register("hf", "transformers quantization_config")
def _export_hf(v: PlanView, ctx: ExportContext) -> Export:
    v, _, notes = as_exported(v, "hf")
    dense_only(v, "hf", "transformers' quantization_config")
    quantized = {g: weights_of(v, g) for g in v.choices if weights_of(v, g) not in FLOAT16}
    acts = {acts_of(v, g) for g in v.choices}
    skip_plain = [m for g in v.choices if g not in quantized for m in modules_of(g, ctx)]
    kinds = set(quantized.values())
    model = model_path(v, ctx)
    arch = plan_arch(v, ctx)
    family = arch_family(arch)
    auto = AUTO_CLASS.get(family, "AutoModelForCausalLM")
    convs = quantized_convs(v, group_kinds(arch)) if arch is not None and family in ("cnn", "vit") else []
    if convs:  # profiles/engines/hf-transformers.yaml `conv`: the planner offers them 16-bit formats only
        raise ExportError(f"choices.{convs[0]}.weights", "transformers' quantizers (bitsandbytes, fine-grained FP8, "
                          f"compressed-tensors) swap nn.Linear layers only: {convs[0]}"
                          f"{f' and {len(convs) - 1} more' if len(convs) > 1 else ''} would stay 16-bit, not the plan's "
                          f"{quantized[convs[0]]}; " + replan_hint(v, "hf", ctx.engine))
    generate: list[str] = []
    if v.kv in _QUANTIZED_CACHE:
        # transformers' QuantizedCache (quanto backend): int4 / int2 keys and values in groups
        # of 64 with the most recent residual_length tokens in 16 bit (docs, "KV cache strategies").
        generate = ["# The plan's KV cache: transformers' QuantizedCache (pip install optimum-quanto)",
                    'model.generation_config.cache_implementation = "quantized"',
                    f'model.generation_config.cache_config = {{"backend": "quanto", "nbits": {_QUANTIZED_CACHE[v.kv]}, '
                    '"q_group_size": 64}', ""]
    elif v.kv not in FLOAT16:
        raise ExportError("kv", f"transformers' KV caches are 16-bit or QuantizedCache int4 / int2 (groups of 64); the "
                          f"plan's KV cache is {v.kv!r}; {replan_hint(v, 'hf', ctx.engine)}")
    if not quantized:
        qcfg: dict[str, Any] | None = None
    elif acts <= FLOAT16 and kinds <= {"nf4", "nf4-dq", "fp4-e2m1"} and len({k.split("-")[0] for k in kinds}) == 1:
        # bitsandbytes 4-bit (Dettmers et al., QLoRA 2023): NF4 or FP4 with optional double quantization.
        qcfg = {
            "quant_method": "bitsandbytes",
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "fp4" if kinds == {"fp4-e2m1"} else "nf4",
            "bnb_4bit_use_double_quant": kinds == {"nf4-dq"},
            "bnb_4bit_compute_dtype": "bfloat16",
            "llm_int8_skip_modules": skip_plain or None,
        }
        if len(kinds) > 1:
            raise ExportError("choices", "bitsandbytes applies one 4-bit type to the whole model; the plan mixes " + ", ".join(sorted(kinds)))
    elif acts <= FLOAT16 and kinds == {"int8"}:
        # bitsandbytes LLM.int8 (Dettmers et al. 2022): per-row int8 weights, 16-bit compute.
        qcfg = {"quant_method": "bitsandbytes", "load_in_8bit": True, "llm_int8_skip_modules": skip_plain or None}
    elif kinds == {"fp8-e4m3"} and all(acts_of(v, g) == "fp8-e4m3" for g in quantized):
        # transformers FineGrainedFP8Config: e4m3 weights with 128x128 block scales,
        # activations quantized per 1x128 block at run time.
        qcfg = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
                "modules_to_not_convert": skip_plain or None}
        notes.append("FineGrainedFP8 stores one scale per 128x128 block; the plan priced one per output channel (a few bytes per tensor apart)")
    else:
        # the KV cache is the generation config's (above), not the checkpoint's kv_cache_scheme
        qcfg, more = ct_quantization_config(replace(v, kv="bf16") if v.kv in _QUANTIZED_CACHE else v, ctx, "hf")
        notes += more
    snippet = "\n".join([
        '"""Load the model the way the Tierwise plan quantizes it."""',
        "import json",
        "",
        f"from transformers import {auto}",
        "from transformers.quantizers.auto import AutoQuantizationConfig",
        "",
        'with open("quantization_config.json") as f:',
        "    qcfg = json.load(f)",
        "kwargs = {} if qcfg is None else {\"quantization_config\": AutoQuantizationConfig.from_dict(qcfg)}",
        f"model = {auto}.from_pretrained({model!r}, torch_dtype=\"auto\", device_map=\"auto\", **kwargs)",
        "print(model.get_memory_footprint() / 1e9, \"GB\")",
        "",
        *generate,
    ])
    if qcfg is not None and qcfg.get("quant_method") == "compressed-tensors":
        notes.append("transformers loads compressed-tensors configs from a checkpoint made by llm-compressor "
                     "(`tierwise export PLAN --format compressed-tensors`); this config documents that checkpoint")
    return Export(
        format="hf",
        files=(
            ExportFile(path="quantization_config.json", content=to_json(qcfg), media_type="application/json"),
            ExportFile(path="load.py", content=snippet, media_type="text/x-python"),
        ),
        next_command="python load.py",
        notes=tuple(notes),
    )
