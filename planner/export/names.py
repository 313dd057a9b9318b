"""Module names of each architecture's real Hugging Face module tree.

The planner's workload (planner/workload.py) names every model's operators in one
canonical, Llama-like scheme (``model.layers.3.self_attn.q_proj``, ``model.layers.3.mlp.fc1``,
``model.lm_head``). Quantization configs must instead name the modules of the checkpoint
the engine loads: Falcon's ``transformer.h.3.self_attention.query_key_value``, Phi-3's fused
``qkv_proj``, Mixtral's per-expert ``block_sparse_moe.experts.E.w1``. This module rewrites
canonical names into those, one rule table per ``model_type``.

Sources (module trees of the transformers implementations, ``modeling_<type>.py``; checked by
tests/test_export_names.py against the transformers skeleton built on the meta device):
Mixtral's expert names are those of its checkpoints (``block_sparse_moe.experts.E.w1/w2/w3``,
which transformers 5 converts with ``conversion_mapping.get_checkpoint_conversion_mapping``
and vLLM loads as is); every other architecture's names are its ``named_modules()``.
"""

from __future__ import annotations

import re
from typing import Any

# A rule: (regex on the canonical module name, replacement templates). Templates use
# re.sub's \1 backreferences; "{e}" expands to every expert index. A canonical name that
# no rule of its architecture matches keeps its name (Llama-like architectures).
_Rule = tuple[str, tuple[str, ...]]
_L = r"^model\.layers\.(\d+)\."

_LM_HEAD: list[_Rule] = [(r"^model\.lm_head$", ("lm_head",))]

_FUSED_QKV_H: list[_Rule] = [  # Falcon, BLOOM (modeling_falcon.py, modeling_bloom.py)
    (r"^model\.embed_tokens$", ("transformer.word_embeddings",)),
    (_L + r"self_attn\.[qkv]_proj$", (r"transformer.h.\1.self_attention.query_key_value",)),
    (_L + r"self_attn\.o_proj$", (r"transformer.h.\1.self_attention.dense",)),
    (_L + r"mlp\.fc1$", (r"transformer.h.\1.mlp.dense_h_to_4h",)),
    (_L + r"mlp\.fc2$", (r"transformer.h.\1.mlp.dense_4h_to_h",)),
]

# DeepSeek-V2/V3 and Qwen2-MoE checkpoints: mlp.gate routes, per-expert modules
# mlp.experts.E.gate_proj/up_proj/down_proj (transformers 5 fuses them on load).
_FINE_MOE: list[_Rule] = [
    (_L + r"mlp\.router$", (r"model.layers.\1.mlp.gate",)),
    (_L + r"mlp\.experts\.(gate_proj|up_proj|down_proj)$", (r"model.layers.\1.mlp.experts.{e}.\2",)),
]

_RULES: dict[str, list[_Rule]] = {
    "deepseek_v2": _FINE_MOE,
    "deepseek_v3": _FINE_MOE,
    "qwen2_moe": [*_FINE_MOE, (_L + r"mlp\.shared_experts\.(\w+)$", (r"model.layers.\1.mlp.shared_expert.\2",))],
    "mixtral": [
        (_L + r"mlp\.router$", (r"model.layers.\1.block_sparse_moe.gate",)),
        (_L + r"mlp\.experts\.gate_proj$", (r"model.layers.\1.block_sparse_moe.experts.{e}.w1",)),
        (_L + r"mlp\.experts\.up_proj$", (r"model.layers.\1.block_sparse_moe.experts.{e}.w3",)),
        (_L + r"mlp\.experts\.down_proj$", (r"model.layers.\1.block_sparse_moe.experts.{e}.w2",)),
    ],
    "phi3": [
        (_L + r"self_attn\.[qkv]_proj$", (r"model.layers.\1.self_attn.qkv_proj",)),
        (_L + r"mlp\.(gate|up)_proj$", (r"model.layers.\1.mlp.gate_up_proj",)),
    ],
    "falcon": _FUSED_QKV_H,
    "bloom": _FUSED_QKV_H,
    "gpt_neox": [
        (r"^model\.embed_tokens$", ("gpt_neox.embed_in",)),
        (_L + r"self_attn\.[qkv]_proj$", (r"gpt_neox.layers.\1.attention.query_key_value",)),
        (_L + r"self_attn\.o_proj$", (r"gpt_neox.layers.\1.attention.dense",)),
        (_L + r"mlp\.fc1$", (r"gpt_neox.layers.\1.mlp.dense_h_to_4h",)),
        (_L + r"mlp\.fc2$", (r"gpt_neox.layers.\1.mlp.dense_4h_to_h",)),
    ],
    "gptj": [
        (r"^model\.embed_tokens$", ("transformer.wte",)),
        (_L + r"self_attn\.([qkv])_proj$", (r"transformer.h.\1.attn.\2_proj",)),
        (_L + r"self_attn\.o_proj$", (r"transformer.h.\1.attn.out_proj",)),
        (_L + r"mlp\.fc1$", (r"transformer.h.\1.mlp.fc_in",)),
        (_L + r"mlp\.fc2$", (r"transformer.h.\1.mlp.fc_out",)),
    ],
    "gpt2": [
        (r"^model\.embed_tokens$", ("transformer.wte",)),
        (r"^model\.embed_positions$", ("transformer.wpe",)),
        (_L + r"self_attn\.[qkv]_proj$", (r"transformer.h.\1.attn.c_attn",)),
        (_L + r"self_attn\.o_proj$", (r"transformer.h.\1.attn.c_proj",)),
        (_L + r"mlp\.fc1$", (r"transformer.h.\1.mlp.c_fc",)),
        (_L + r"mlp\.fc2$", (r"transformer.h.\1.mlp.c_proj",)),
    ],
    "opt": [
        (r"^model\.embed_(tokens|positions)$", (r"model.decoder.embed_\1",)),
        (_L + r"self_attn\.([qkv])_proj$", (r"model.decoder.layers.\1.self_attn.\2_proj",)),
        (_L + r"self_attn\.o_proj$", (r"model.decoder.layers.\1.self_attn.out_proj",)),
        (_L + r"mlp\.(fc1|fc2)$", (r"model.decoder.layers.\1.\2",)),
    ],
    "mpt": [
        (r"^model\.embed_tokens$", ("transformer.wte",)),
        (_L + r"self_attn\.[qkv]_proj$", (r"transformer.blocks.\1.attn.Wqkv",)),
        (_L + r"self_attn\.o_proj$", (r"transformer.blocks.\1.attn.out_proj",)),
        (_L + r"mlp\.fc1$", (r"transformer.blocks.\1.ffn.up_proj",)),
        (_L + r"mlp\.fc2$", (r"transformer.blocks.\1.ffn.down_proj",)),
    ],
    "t5": [
        (r"^model\.shared$", ("shared",)),
        (r"^(.*\.(?:SelfAttention|EncDecAttention))\.([qkvo])_proj$", (r"\1.\2",)),
    ],
    "vit": [  # transformers 5 modeling_vit.py
        (r"^vit\.encoder\.layer\.(\d+)\.attention\.self\.(q|k|v)\w*$", (r"vit.layers.\1.attention.\2_proj",)),
        (r"^vit\.encoder\.layer\.(\d+)\.attention\.output\.dense$", (r"vit.layers.\1.attention.o_proj",)),
        (r"^vit\.encoder\.layer\.(\d+)\.intermediate\.dense$", (r"vit.layers.\1.mlp.fc1",)),
        (r"^vit\.encoder\.layer\.(\d+)\.output\.dense$", (r"vit.layers.\1.mlp.fc2",)),
        (r"^vit\.classifier$", ("classifier",)),
    ],
    "resnet": [(r"^model\.classifier$", ("classifier.1",)), (r"^model\.(.+)$", (r"\1",))],
    "mobilenet_v2": [(r"^model\.(.+)$", (r"\1",))],
}

# BERT: the base model (BertModel, e.g. sentence-transformers checkpoints) has no "bert."
# prefix; BertForMaskedLM has no pooler, its hidden x hidden dense is the MLM head's transform.
_BERT_BASE: list[_Rule] = [(r"^bert\.(.+)$", (r"\1",))]
_BERT_MLM: list[_Rule] = [(r"^bert\.pooler\.dense$", ("cls.predictions.transform.dense",))]


def _rules(arch: Any, architectures: tuple[str, ...]) -> list[_Rule]:
    mt = str(getattr(arch, "model_type", "") or "")
    if mt == "bert":
        return _BERT_BASE if architectures[:1] == ("BertModel",) else _BERT_MLM
    return [*_RULES.get(mt, []), *_LM_HEAD]


def architectures_of(arch: Any) -> tuple[str, ...]:
    """The ``architectures`` list of a catalog model's config.json (empty when unknown)."""
    try:
        import json

        from planner.arch import model_config_path

        data = json.loads(model_config_path(str(arch.id)).read_text(encoding="utf-8"))
        return tuple(str(a) for a in data.get("architectures") or ())
    except Exception:  # noqa: BLE001 - a model outside the catalog: base-model naming
        return ()


def renamer(arch: Any, architectures: tuple[str, ...] | None = None):
    """A function canonical module name → real module names for ``arch``."""
    rules = [(re.compile(p), t) for p, t in _rules(arch, architectures if architectures is not None else architectures_of(arch))]
    experts = int(getattr(arch, "num_experts", 0) or 0)

    def rename(name: str) -> tuple[str, ...]:
        for pat, templates in rules:
            m = pat.match(name)
            if not m:
                continue
            out: list[str] = []
            for t in templates:
                real = m.expand(t)
                out.extend(real.replace("{e}", str(e)) for e in range(experts)) if "{e}" in real else out.append(real)
            return tuple(out)
        return (name,)

    return rename
