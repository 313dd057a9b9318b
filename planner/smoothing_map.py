"""Which norm each decision group reads, where SmoothQuant's migration can fold into it.

SmoothQuant (Xiao et al., ICML 2023) divides a linear's input channels by ``s`` and multiplies its
weight columns by ``s``; a deployment folds the ``1/s`` into the normalization whose output the
linear reads, which is only exact when no other consumer reads that output. This module lists, per
``model_type``, the norm module (its checkpoint name) of each decision group for which that holds.
The accuracy prior (``planner.sensitivity``), the compressed-tensors export's SmoothQuantModifier
mappings and the execution (``planner.execution.apply``) all read it, so they smooth the same layers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["smoothing_norm"]

# SmoothQuant: per model_type, the norm module (checkpoint name, "{i}" the layer) whose output a
# decision group reads and no other group does, so that the migration's 1/s folds into it. From each
# architecture's transformers module tree (modeling_<type>.py) and llm-compressor's mappings
# (src/llmcompressor/modifiers/smoothquant/utils.py: q/k/v from input_layernorm, gate/up from
# post_attention_layernorm for Llama-like models; BLOOM's input / post-attention LayerNorm; OPT's
# self_attn_layer_norm / final_layer_norm). Groups and architectures not listed are not smoothed: a
# parallel-attention block whose one norm feeds both q/k/v and the MLP (Falcon-7B, GPT-J), MoE experts
# beside their router, post-norm encoders (BERT) whose norm also feeds the residual, GPT-2's Conv1D.
_LLAMA_NORMS = {"self_attn.qkv": "model.layers.{i}.input_layernorm", "mlp.gate_up": "model.layers.{i}.post_attention_layernorm"}
_SMOOTH_NORMS: dict[str, dict[str, str]] = {
    "llama": _LLAMA_NORMS,
    "mistral": _LLAMA_NORMS,
    "qwen2": _LLAMA_NORMS,
    "phi3": _LLAMA_NORMS,
    "mixtral": {"self_attn.qkv": "model.layers.{i}.input_layernorm"},
    "qwen2_moe": {"self_attn.qkv": "model.layers.{i}.input_layernorm"},
    # Gemma 2 normalizes before and after each sublayer; the MLP reads pre_feedforward_layernorm
    "gemma2": {"self_attn.qkv": "model.layers.{i}.input_layernorm", "mlp.gate_up": "model.layers.{i}.pre_feedforward_layernorm"},
    "opt": {"self_attn.qkv": "model.decoder.layers.{i}.self_attn_layer_norm", "mlp.fc1": "model.decoder.layers.{i}.final_layer_norm"},
    "bloom": {"self_attn.qkv": "transformer.h.{i}.input_layernorm", "mlp.fc1": "transformer.h.{i}.post_attention_layernorm"},
    "gpt_neox": {"self_attn.qkv": "gpt_neox.layers.{i}.input_layernorm", "mlp.fc1": "gpt_neox.layers.{i}.post_attention_layernorm"},
    "mpt": {"self_attn.qkv": "transformer.blocks.{i}.norm_1", "mlp.fc1": "transformer.blocks.{i}.norm_2"},
    # Falcon-40B/180B (new_decoder_architecture, parallel): ln_attn and ln_mlp; sequential Falcon (RW-style
    # configs, parallel_attn false): input_layernorm and post_attention_layernorm; Falcon-7B's one norm feeds both
    "falcon": {"self_attn.qkv": "transformer.h.{i}.ln_attn", "mlp.fc1": "transformer.h.{i}.ln_mlp"},
}
_FALCON_SEQUENTIAL = {"self_attn.qkv": "transformer.h.{i}.input_layernorm", "mlp.fc1": "transformer.h.{i}.post_attention_layernorm"}


def smoothing_norm(arch: Any, group: str) -> str | None:
    """The checkpoint name template (``{i}``: the layer) of the norm whose output the decision group
    named ``group`` (``self_attn.qkv``) alone reads, where SmoothQuant can fold into it; None elsewhere."""
    if getattr(arch, "family", None) != "decoder":
        return None
    mt = str(getattr(arch, "model_type", "") or "")
    if mt == "falcon":
        if getattr(arch, "norms_per_layer", None) != 2:
            return None
        if not getattr(arch, "parallel_attn_mlp", False):
            return _FALCON_SEQUENTIAL.get(group)
    # post-norm OPT (do_layer_norm_before: false, OPT-350m): q/k/v read the residual stream
    if mt == "opt" and not getattr(arch, "final_norm", True):
        return None
    return _SMOOTH_NORMS.get(mt, {}).get(group)
