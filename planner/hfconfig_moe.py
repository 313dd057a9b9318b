"""Readers for fine-grained MoE decoders: DeepSeek-V2/V3 (Multi-head Latent Attention, routed
plus shared experts, dense first layers) and Qwen2-MoE (routed experts plus a gated shared
expert). Field names and defaults are those of transformers' ``DeepseekV2Config``,
``DeepseekV3Config`` and ``Qwen2MoeConfig``; ``planner.hfconfig`` registers these readers.

Sources: DeepSeek-AI, "DeepSeek-V2: A Strong, Economical, and Efficient Mixture-of-Experts
Language Model", arXiv:2405.04434 (§2.1 MLA, §2.2 DeepSeekMoE); DeepSeek-AI, "DeepSeek-V3
Technical Report", arXiv:2412.19437; Qwen Team, "Qwen2 Technical Report", arXiv:2407.10671 §2.2.
"""

from __future__ import annotations

from typing import Any

from planner.archspec import ModelConfigError
from planner.hfconfig import _Cfg, _llama_like


def _leading_dense(c: _Cfg, n_layers: int, dense: list[int], field: str, got: Any) -> int:
    """The number of dense layers when they form a leading run (the only layout modelled)."""
    k = len(dense)
    if dense != list(range(k)):
        raise ModelConfigError(
            c.origin, field, "a layout whose dense (non-MoE) layers are the first ones", got
        )
    return k


def _int_list(c: _Cfg, name: str) -> list[int]:
    value = c.raw.get(name)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ModelConfigError(c.origin, name, "a list of layer indices (non-negative integers)", value)
    return sorted(set(value))


def _experts(c: _Cfg, kw: dict[str, Any], experts_name: str) -> None:
    kw["num_experts"] = c.int(experts_name)
    kw["experts_per_token"] = c.int("num_experts_per_tok")
    if kw["experts_per_token"] > kw["num_experts"]:
        raise ModelConfigError(
            c.origin, "num_experts_per_tok", f"at most {experts_name} ({kw['num_experts']})", kw["experts_per_token"]
        )
    kw["moe_intermediate_size"] = c.int("moe_intermediate_size")


def qwen2_moe(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF Qwen2MoeSparseMoeBlock: gate (h→E, no bias), experts, shared_expert (gated MLP of
    # shared_expert_intermediate_size), shared_expert_gate (h→1, no bias, sigmoid). A layer is
    # sparse unless listed in mlp_only_layers, and only every decoder_sparse_step-th layer.
    kw = _llama_like(c, "qwen2")
    _experts(c, kw, "num_experts")
    kw["shared_expert_intermediate_size"] = c.int("shared_expert_intermediate_size", default=0, allow_zero=True)
    kw["shared_expert_gate"] = kw["shared_expert_intermediate_size"] > 0
    n = kw["num_layers"]
    step = c.int("decoder_sparse_step", default=1)
    only = _int_list(c, "mlp_only_layers")
    dense = [i for i in range(n) if i in only or (i + 1) % step != 0]
    field = "mlp_only_layers" if step == 1 else "decoder_sparse_step"
    kw["dense_layers"] = _leading_dense(c, n, dense, field, c.raw.get(field))
    return kw


def deepseek(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF DeepseekV2/V3 decoder: Llama-like embeddings, norms and gated SiLU MLPs; MLA
    # attention; layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0.
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    nope, rope = c.int("qk_nope_head_dim"), c.int("qk_rope_head_dim")
    n = c.int("num_hidden_layers")
    kw: dict[str, Any] = dict(
        family="decoder",
        num_layers=n,
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=nope + rope,
        intermediate_size=c.int("intermediate_size"),
        gated_mlp=True,
        activation=c.str("hidden_act", default="silu"),
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=False),
        max_position_embeddings=c.int("max_position_embeddings", default=2048 if model_type == "deepseek_v2" else 4096),
        learned_pos_emb=False,
        position_encoding="rope",
        norm="rmsnorm",
        attn_bias=c.bool("attention_bias", default=False),
        q_lora_rank=c.int("q_lora_rank", default=0, allow_zero=True),
        kv_lora_rank=c.int("kv_lora_rank"),
        qk_rope_head_dim=rope,
        v_head_dim=c.int("v_head_dim"),
    )
    if c.has("n_routed_experts"):
        _experts(c, kw, "n_routed_experts")
        shared = c.int("n_shared_experts", default=0, allow_zero=True)
        kw["shared_expert_intermediate_size"] = shared * kw["moe_intermediate_size"]
        first = c.int("first_k_dense_replace", default=0, allow_zero=True)
        freq = c.int("moe_layer_freq", default=1)
        dense = [i for i in range(n) if i < first or i % freq != 0]
        kw["dense_layers"] = _leading_dense(c, n, dense, "moe_layer_freq", freq)
    return kw


READERS = {"deepseek_v2": deepseek, "deepseek_v3": deepseek, "qwen2_moe": qwen2_moe}
