"""Every shipped model config loads, names itself, cites a source and matches the papers' shapes."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from planner.arch import SUPPORTED_MODEL_TYPES, list_models, load_arch, load_config_dict, model_config_path

CATALOG = list_models()

REQUIRED_IDS = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
    "llama-3.3-70b", "mistral-7b", "mixtral-8x7b", "mixtral-8x22b", "qwen2.5-7b", "qwen2.5-72b", "gemma-2-9b",
    "phi-3-mini", "falcon-7b", "falcon-40b", "falcon-180b", "gpt-j-6b", "opt-1.3b", "opt-6.7b", "opt-13b", "opt-30b",
    "opt-66b", "opt-175b", "bloom-176b", "mpt-7b", "mpt-30b", "gpt3-175b", "bert-base", "bert-large",
    "all-minilm-l6-v2", "t5-3b", "resnet-50", "mobilenet-v2", "vit-h", "megatron-gpt-1.7b", "megatron-gpt-7.5b",
    "megatron-gpt-22b", "megatron-gpt-145.6b", "megatron-gpt-529.6b", "megatron-gpt-1t", "palm-540b",
]

# model_type → the field names its HF config class spells (a catalog file using another
# spelling would silently fall back to defaults in transformers).
HF_SPELLINGS = {
    "llama": ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size"),
    "mistral": ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "sliding_window"),
    "mixtral": ("hidden_size", "num_hidden_layers", "num_local_experts", "num_experts_per_tok"),
    "qwen2": ("hidden_size", "num_hidden_layers", "num_key_value_heads", "use_sliding_window"),
    "gemma2": ("hidden_size", "head_dim", "num_key_value_heads", "sliding_window"),
    "phi3": ("hidden_size", "num_hidden_layers", "intermediate_size"),
    "falcon": ("hidden_size", "num_hidden_layers", "num_attention_heads", "new_decoder_architecture", "parallel_attn"),
    "gptj": ("n_embd", "n_layer", "n_head", "n_positions", "rotary_dim"),
    "gpt2": ("n_embd", "n_layer", "n_head", "n_positions"),
    "gpt_neox": ("hidden_size", "num_hidden_layers", "use_parallel_residual"),
    "opt": ("hidden_size", "num_hidden_layers", "ffn_dim", "word_embed_proj_dim", "do_layer_norm_before"),
    "bloom": ("hidden_size", "n_layer", "n_head"),
    "mpt": ("d_model", "n_heads", "n_layers", "expansion_ratio", "attn_config", "no_bias"),
    "bert": ("hidden_size", "num_hidden_layers", "intermediate_size", "type_vocab_size"),
    "t5": ("d_model", "d_kv", "d_ff", "num_heads", "num_layers"),
    "resnet": ("embedding_size", "hidden_sizes", "depths", "layer_type"),
    "mobilenet_v2": ("depth_multiplier", "expand_ratio", "depth_divisible_by", "min_depth", "output_stride"),
    "vit": ("hidden_size", "num_hidden_layers", "patch_size", "image_size", "qkv_bias"),
    "palm": ("d_model", "num_layers", "num_heads", "head_dim", "num_kv_heads", "ffn_dim", "parallel_block"),
    "deepseek_v2": ("kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "n_routed_experts", "first_k_dense_replace"),
    "deepseek_v3": ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "n_shared_experts", "moe_intermediate_size"),
    "qwen2_moe": ("num_experts", "moe_intermediate_size", "shared_expert_intermediate_size", "decoder_sparse_step"),
}


def test_catalog_has_required_ids():
    assert len(CATALOG) >= 30
    missing = sorted(set(REQUIRED_IDS) - set(CATALOG))
    assert not missing, f"catalog lacks {missing}"


@pytest.mark.parametrize("model_id", CATALOG)
def test_every_catalog_file_loads(model_id):
    path = model_config_path(model_id)
    assert path.name == f"{model_id}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, nothing else
    assert raw["_id"] == model_id, "the _id must equal the file stem"
    assert isinstance(raw["_source"], str) and len(raw["_source"]) > 20, "every file cites its source"
    assert raw["model_type"] in SUPPORTED_MODEL_TYPES
    for name in HF_SPELLINGS[raw["model_type"]]:
        assert name in raw, f"{model_id}: {raw['model_type']} configs spell this field {name!r}"
    assert load_config_dict(model_id) == raw
    a = load_arch(model_id)
    assert a.id == model_id and a.source == raw["_source"] and a.model_type == raw["model_type"]
    assert a.param_count() > 0 and 0 < a.active_param_count() <= a.param_count()


def test_catalog_files_are_package_data():
    names = {p.name for p in (resources.files("profiles") / "models").iterdir() if p.name.endswith(".json")}
    assert names == {f"{m}.json" for m in CATALOG}


# Shapes from papers and from benchmarks/data/published.csv arch_notes:
# (id, layers, hidden, heads, kv_heads, ffn, vocab, source)
SHAPES = [
    ("megatron-gpt-1.7b", 24, 2304, 24, 24, 4 * 2304, 51200, "Narayanan et al. 2021 Table 1; benchmarks/data/published.csv T01"),
    ("megatron-gpt-7.5b", 36, 4096, 32, 32, 4 * 4096, 51200, "Narayanan et al. 2021 Table 1; benchmarks/data/published.csv T02"),
    ("megatron-gpt-22b", 48, 6144, 64, 64, 4 * 6144, 51200, "Korthikanti et al. 2022 Table 3; benchmarks/data/published.csv T14"),
    ("megatron-gpt-145.6b", 80, 12288, 96, 96, 4 * 12288, 51200, "Narayanan et al. 2021 Table 1; benchmarks/data/published.csv T03"),
    ("megatron-gpt-529.6b", 105, 20480, 128, 128, 4 * 20480, 51200, "Narayanan et al. 2021 Table 1; benchmarks/data/published.csv T04/T15"),
    ("megatron-gpt-1t", 128, 25600, 160, 160, 4 * 25600, 51200, "Narayanan et al. 2021 Table 1; benchmarks/data/published.csv T05/T11"),
    ("gpt3-175b", 96, 12288, 96, 96, 4 * 12288, 50257, "Brown et al. 2020 Table 2.1; benchmarks/data/published.csv T10"),
    ("palm-540b", 118, 18432, 48, 1, 73728, 256000, "Chowdhery et al. 2022 Table 1; benchmarks/data/published.csv T12"),
    ("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, "Touvron et al. 2023; benchmarks/data/published.csv I01"),
    ("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, "Touvron et al. 2023; benchmarks/data/published.csv M06"),
    ("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, "Touvron et al. 2023; benchmarks/data/published.csv I02"),
    ("codellama-34b", 48, 8192, 64, 8, 22016, 32000, "codellama/CodeLlama-34b-hf config.json; benchmarks/data/published.csv I231"),
    ("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, "Llama 3 Herd Table 3"),
    ("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256, "Llama 3 Herd Table 3"),
    ("llama-3.1-405b", 126, 16384, 128, 8, 53248, 128256, "Llama 3 Herd Table 3"),
    ("gpt-j-6b", 28, 4096, 16, 16, 16384, 50400, "benchmarks/data/published.csv I03"),
    ("opt-175b", 96, 12288, 96, 96, 49152, 50272, "Zhang et al. 2022 Table 1; benchmarks/data/published.csv I38"),
    ("opt-30b", 48, 7168, 56, 56, 28672, 50272, "Zhang et al. 2022 Table 1; benchmarks/data/published.csv I40"),
    ("opt-6.7b", 32, 4096, 32, 32, 16384, 50272, "Zhang et al. 2022 Table 1; benchmarks/data/published.csv I41"),
    ("opt-66b", 64, 9216, 72, 72, 36864, 50272, "Zhang et al. 2022 Table 1"),
    ("bloom-176b", 70, 14336, 112, 112, 4 * 14336, 250880, "BLOOM paper Table 3"),
    ("falcon-180b", 80, 14848, 232, 8, 4 * 14848, 65024, "Falcon series paper"),
    ("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, "Mixtral paper Table 1"),
    ("gemma-2-9b", 42, 3584, 16, 8, 14336, 256000, "Gemma 2 paper Table 1"),
    ("vit-h", 32, 1280, 16, 16, 5120, 0, "ViT paper Table 1"),
    ("bert-large", 24, 1024, 16, 16, 4096, 30522, "BERT paper §3"),
]


@pytest.mark.parametrize(("model_id", "layers", "hidden", "heads", "kv", "ffn", "vocab", "source"), SHAPES, ids=[s[0] for s in SHAPES])
def test_catalog_shapes_match_papers(model_id, layers, hidden, heads, kv, ffn, vocab, source):
    a = load_arch(model_id)
    got = (a.num_layers, a.hidden_size, a.num_heads, a.num_kv_heads, a.intermediate_size, a.vocab_size)
    assert got == (layers, hidden, heads, kv, ffn, vocab), source


def test_megatron_and_gpt3_use_learned_positions_of_2048():
    # benchmarks/data/published.csv T01-T05: "FFN 4h; learned pos emb", sequence 2048.
    for model_id in ("megatron-gpt-1.7b", "megatron-gpt-1t", "gpt3-175b"):
        a = load_arch(model_id)
        assert a.learned_pos_emb and a.max_position_embeddings == 2048 and not a.gated_mlp
