"""planner.arch: HF-style configs → ArchSpec, parameter counts, KV-cache sizes, errors.

Each published number below names its source and the tolerance it is checked with. Where a
paper or model card prints the exact count, the check is exact.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import pytest

from hwmodels import UnknownIdError
from planner.arch import (
    SUPPORTED_MODEL_TYPES,
    ArchSpec,
    ConvLayer,
    ModelConfigError,
    arch_from_config,
    list_models,
    load_arch,
    load_config_dict,
)


def rel_err(got: float, want: float) -> float:
    return abs(got - want) / want


# ---------------------------------------------------------------------------
# Published parameter counts
# ---------------------------------------------------------------------------

# (catalog id, published total parameters, relative tolerance, source)
PUBLISHED_TOTALS = [
    # Touvron et al. 2023 (Llama 2) list "7B"; the HF model card / safetensors metadata gives
    # 6.74B; benchmarks/data/published.csv (I01, TensorRT-LLM performance.md) uses 6.74B. ±0.5%.
    ("llama-2-7b", 6.738e9, 0.005, "Llama-2-7b-hf model card 6.74B; benchmarks/data/published.csv I01"),
    # benchmarks/data/published.csv I02/I05/I17: Llama-2-70B 68.98B.
    ("llama-2-70b", 68.98e9, 0.005, "benchmarks/data/published.csv I02 (68.98B)"),
    # Llama 3.1 model cards: 70.6B and 405.9B (HF safetensors metadata). ±1% / ±0.1%.
    ("llama-3.1-70b", 70.6e9, 0.01, "Llama-3.1-70B model card 70.6B"),
    ("llama-3.1-405b", 405.9e9, 0.001, "Llama-3.1-405B model card 405.9B (126 layers, d 16384)"),
    ("llama-3.2-1b", 1.24e9, 0.005, "Llama-3.2-1B model card 1.24B (tied embeddings)"),
    # Mixtral of Experts (Jiang et al. 2024) §2: 47B total (46.7B in the HF metadata). ±1%.
    ("mixtral-8x7b", 46.7e9, 0.01, "Jiang et al. 2024, arXiv:2401.04088: 46.7B total"),
    ("mixtral-8x22b", 141e9, 0.01, "Mistral AI Mixtral 8x22B announcement: 141B total"),
    # GPT-3 175B: Brown et al. Table 2.1 rounds to 175.0B; 12·l·h²·(1 + 13/12h + (V+s)/12lh)
    # with V=50257, s=2048 gives 174.6B. ±0.1% of 174.6B.
    ("gpt3-175b", 174.6e9, 0.001, "Brown et al. 2020 Table 2.1 shape; 174.6B by the Megatron formula"),
    # OPT paper Table 1: 175B. ±0.5%.
    ("opt-175b", 175e9, 0.005, "Zhang et al. 2022 Table 1 (175B)"),
    ("opt-30b", 30e9, 0.005, "Zhang et al. 2022 Table 1 (30B); benchmarks/data/published.csv I40"),
    ("opt-6.7b", 6.7e9, 0.01, "Zhang et al. 2022 Table 1 (6.7B); benchmarks/data/published.csv I41"),
    # BERT: Devlin et al. 2019 §3 "110M" / "340M"; HF BertModel (with pooler) 109.48M / 335.14M.
    ("bert-base", 109.5e6, 0.001, "bert-base-uncased 109.5M (BertModel with pooler)"),
    ("bert-large", 335.1e6, 0.001, "bert-large-uncased 335.1M (BertModel with pooler)"),
    # sentence-transformers/all-MiniLM-L6-v2 model card: 22.7M parameters. ±0.5%.
    ("all-minilm-l6-v2", 22.7e6, 0.005, "all-MiniLM-L6-v2 model card 22.7M"),
    # T5 paper §3.7: "3B"; the google-t5/t5-3b checkpoint has 2.85B. ±0.5%.
    ("t5-3b", 2.85e9, 0.005, "google-t5/t5-3b 2.85B"),
    # ViT paper Table 1: ViT-Huge 632M. ±0.5%.
    ("vit-h", 632e6, 0.005, "Dosovitskiy et al. 2021 Table 1 (ViT-Huge 632M)"),
    # PaLM Table 1: 540.35B parameters. ±0.05%.
    ("palm-540b", 540.35e9, 0.0005, "Chowdhery et al. 2022 Table 1 (540.35B)"),
    # GPT-J README (mesh-transformer-jax): 6,053,381,344 parameters. ±0.1%.
    ("gpt-j-6b", 6_053_381_344, 0.001, "kingoflolz/mesh-transformer-jax README"),
    # MPT model cards: MPT-7B 6.7B, MPT-30B 29.95B (n_parameters). ±1% / ±0.1%.
    ("mpt-7b", 6.7e9, 0.01, "mosaicml/mpt-7b model card 6.7B"),
    ("mpt-30b", 29.95e9, 0.001, "mosaicml/mpt-30b model card 29.95B"),
    # Qwen2.5 model cards: 7.61B and 72.7B. ±0.5%.
    ("qwen2.5-7b", 7.61e9, 0.005, "Qwen/Qwen2.5-7B model card 7.61B"),
    ("qwen2.5-72b", 72.7e9, 0.005, "Qwen/Qwen2.5-72B model card 72.7B"),
    # Phi-3 technical report: 3.8B. ±1%.
    ("phi-3-mini", 3.8e9, 0.01, "Abdin et al. 2024 (3.8B)"),
    # Mistral 7B paper title figure 7.3B counts a 32768 vocab; v0.1 has 32000 → 7.24B. ±0.5%.
    ("mistral-7b", 7.24e9, 0.005, "mistralai/Mistral-7B-v0.1 7.24B"),
]


@pytest.mark.parametrize(("model_id", "want", "tol", "source"), PUBLISHED_TOTALS, ids=[r[0] for r in PUBLISHED_TOTALS])
def test_total_params_match_published(model_id, want, tol, source):
    got = load_arch(model_id).param_count()
    assert rel_err(got, want) <= tol, f"{model_id}: {got:,} vs {want:,.0f} ({source})"


# (catalog id, exact published count, source)
EXACT_TOTALS = [
    # BLOOM paper (BigScience 2022) Table 3 / HF card: 176,247,271,424 parameters.
    ("bloom-176b", 176_247_271_424, "BLOOM model card: 176,247,271,424"),
    # GPT-NeoX-20B paper (Black et al. 2022) Table 1: 20,554,567,680 parameters.
    ("gpt-neox-20b", 20_554_567_680, "Black et al. 2022 Table 1"),
    # torchvision resnet50 (IMAGENET1K_V1/V2 metadata): num_params 25,557,032.
    ("resnet-50", 25_557_032, "torchvision ResNet50_Weights num_params"),
    # Llama-2-7b-hf safetensors metadata: 6,738,415,616 parameters.
    ("llama-2-7b", 6_738_415_616, "meta-llama/Llama-2-7b-hf safetensors metadata"),
    # llm-foundry scripts/train/benchmarking/README.md (commit 061f2c7), NumParams of the SeqLen 2048 rows.
    *(
        (f"llm-foundry-mpt-{size}", n, "llm-foundry benchmarking README NumParams at SeqLen 2048")
        for size, n in (
            ("125m", 125_311_488), ("350m", 355_985_408), ("760m", 760_470_528), ("1b", 1_315_950_592),
            ("3b", 2_651_837_440), ("7b", 6_658_859_008), ("13b", 12_853_954_560), ("30b", 29_975_214_080),
            ("70b", 64_862_437_376),
        )
    ),
]


@pytest.mark.parametrize(("model_id", "want", "source"), EXACT_TOTALS, ids=[r[0] for r in EXACT_TOTALS])
def test_total_params_exact(model_id, want, source):
    assert load_arch(model_id).param_count() == want, source


def test_llama2_7b_bf16_weights_13_48_gb():
    # 6.738B parameters × 2 bytes (bf16) = 13.48 GB (decimal), ±0.5%; benchmarks/data/published.csv M04/M05
    # context (LitGPT bf16 Llama-2-7B inference peak 13.52 GB ≈ weights + small activations).
    weights_bytes = load_arch("llama-2-7b").param_count() * 2
    assert rel_err(weights_bytes, 13.48e9) <= 0.005


def test_mixtral_8x7b_active_params():
    # Jiang et al. 2024 §2: each token uses 13B active parameters (12.9B; Jiang et al. 2024, arXiv:2401.04088
    # §B.5: "Mixtral-8×7B is 46.7B total / 12.9B active"). ±1%.
    a = load_arch("mixtral-8x7b")
    assert a.num_experts == 8 and a.experts_per_token == 2
    assert rel_err(a.active_param_count(), 12.9e9) <= 0.01
    # The router (a bias-free 4096×8 gate per layer) is counted in both totals.
    assert a.mlp_params() == 8 * a.expert_mlp_params() + 4096 * 8


def test_mixtral_8x22b_active_params():
    # Mistral AI announcement: 39B active of 141B. ±1%.
    assert rel_err(load_arch("mixtral-8x22b").active_param_count(), 39e9) <= 0.01


def test_dense_active_equals_total():
    a = load_arch("llama-3-8b")
    assert a.active_param_count() == a.param_count()


def test_falcon_180b_ties_lm_head_to_embedding():
    # Falcon configs have no tie_word_embeddings key, so the HF default (tied) applies; vLLM's
    # falcon.py says the same ("only Falcon-11B doesn't share lm_head weight"). The unique
    # count is 178.56B; the often quoted 179.5B also counts the stored lm_head copy
    # (65024 × 14848 = 0.965B). ±0.1% on both.
    a = load_arch("falcon-180b")
    assert a.tie_word_embeddings
    assert rel_err(a.param_count(), 178.56e9) <= 0.001
    assert rel_err(a.param_count() + a.vocab_size * a.hidden_size, 179.5e9) <= 0.001


def test_gemma2_9b_non_embedding_params_exact():
    # Gemma Team 2024 (Gemma 2) Table 2: 9B has 8,324,201,984 non-embedding parameters.
    a = load_arch("gemma-2-9b")
    assert a.param_count() - a.vocab_size * a.hidden_size == 8_324_201_984


@pytest.mark.parametrize(
    ("model_id", "table_b"),
    [("megatron-gpt-7.5b", 7.5), ("megatron-gpt-145.6b", 145.6), ("megatron-gpt-529.6b", 529.6), ("megatron-gpt-1t", 1008.0)],
)
def test_megatron_params_match_formula_and_table(model_id, table_b):
    # Narayanan et al. 2021 §5.1: P = 12·l·h²·(1 + 13/(12h) + (V + s)/(12·l·h)), V=51200, s=2048
    # (arXiv:2104.04473). The formula omits only the final LayerNorm (2h).
    a = load_arch(model_id)
    l, h = a.num_layers, a.hidden_size
    formula = 12 * l * h * h * (1 + 13 / (12 * h) + (51200 + 2048) / (12 * l * h))
    assert math.isclose(a.param_count(), formula + 2 * h, rel_tol=1e-12)
    # Table 1's model sizes (billions), ±0.5%.
    assert rel_err(a.param_count(), table_b * 1e9) <= 0.005


# ---------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------


def test_kv_bytes_per_token_llama2_7b():
    # 2 (K and V) · 32 layers · 32 heads · 128 head_dim · 2 bytes (bf16) = 524,288 B,
    # 0.52 MB per token.
    assert load_arch("llama-2-7b").kv_bytes_per_token() == 524_288


def test_kv_bytes_per_token_llama3_8b_gqa():
    # GQA with 8 KV heads: 2 · 32 · 8 · 128 · 2 = 131,072 B (a quarter of MHA).
    assert load_arch("llama-3-8b").kv_bytes_per_token() == 131_072
    assert load_arch("llama-3-8b").kv_bytes_per_token(1.0) == 65_536


def test_kv_bytes_mqa_and_t5_decoder():
    # Falcon-7B is multi-query: one KV head of 64 → 2 · 32 · 1 · 64 · 2 = 8,192 B.
    assert load_arch("falcon-7b").kv_bytes_per_token() == 8_192
    # PaLM 540B: multi-query, head_dim 256, 118 layers → 2 · 118 · 256 · 2 = 120,832 B.
    assert load_arch("palm-540b").kv_bytes_per_token() == 120_832
    # T5-3B caches only its 24 decoder self-attention layers: 2 · 24 · 32 · 128 · 2.
    assert load_arch("t5-3b").kv_bytes_per_token() == 2 * 24 * 32 * 128 * 2
    assert load_arch("bert-base").kv_bytes_per_token() == 0.0
    with pytest.raises(ValueError):
        load_arch("llama-3-8b").kv_bytes_per_token(0)


def test_kv_cache_bytes_respects_sliding_window():
    # Mistral 7B v0.1 uses a 4096-token window on every layer (Jiang et al. 2023 §2), so an
    # 8192-token sequence keeps 4096 tokens of KV per layer.
    m = load_arch("mistral-7b")
    assert m.sliding_window == 4096
    assert m.kv_cache_bytes(8192) == m.kv_bytes_per_token() * 4096
    assert m.kv_cache_bytes(1000) == m.kv_bytes_per_token() * 1000
    # Gemma 2 9B: 21 of 42 layers are local (window 4096), 21 global.
    g = load_arch("gemma-2-9b")
    assert g.sliding_window == 4096 and g.sliding_window_layers == 21
    per_layer = 2 * 8 * 256 * 2
    assert g.kv_cache_bytes(8192) == per_layer * (21 * 8192 + 21 * 4096)
    # Llama has no window.
    assert load_arch("llama-3-8b").kv_cache_bytes(8192) == 131_072 * 8192


# ---------------------------------------------------------------------------
# Architecture normalization per model_type
# ---------------------------------------------------------------------------


def test_llama_shapes():
    a = load_arch("llama-2-70b")
    assert (a.family, a.num_layers, a.hidden_size, a.num_heads, a.num_kv_heads, a.head_dim) == ("decoder", 80, 8192, 64, 8, 128)
    assert a.gated_mlp and a.norm == "rmsnorm" and not a.tie_word_embeddings and not a.learned_pos_emb
    assert a.intermediate_size == 28672 and a.vocab_size == 32000


def test_gemma2_head_dim_differs_from_hidden_over_heads():
    # Gemma 2 9B: 16 heads × 256 = 4096 ≠ d_model 3584; tied embeddings; GeGLU.
    a = load_arch("gemma-2-9b")
    assert a.head_dim == 256 and a.hidden_size // a.num_heads == 224 and a.q_dim == 4096
    assert a.tie_word_embeddings and a.gated_mlp and a.norms_per_layer == 4


def test_phi3_fused_projections_count_like_llama():
    # Phi-3 stores qkv_proj and gate_up_proj fused; the parameter count equals the unfused
    # Llama layout with the same shapes.
    phi = load_config_dict("phi-3-mini")
    as_llama = {k: v for k, v in phi.items() if not k.startswith("_")} | {"model_type": "llama"}
    assert load_arch("phi-3-mini").param_count() == arch_from_config(as_llama, model_id="x", origin="x").param_count()


def test_falcon_variants():
    f7 = load_arch("falcon-7b")
    assert f7.num_kv_heads == 1 and f7.parallel_attn_mlp and f7.norms_per_layer == 1 and f7.head_dim == 64
    f40 = load_arch("falcon-40b")
    assert f40.num_kv_heads == 8 and f40.parallel_attn_mlp and f40.norms_per_layer == 2
    assert f40.norm == "layernorm" and not f40.attn_bias


def test_gptj_bloom_mpt_opt_details():
    j = load_arch("gpt-j-6b")
    assert j.parallel_attn_mlp and not j.attn_bias and j.mlp_bias and j.lm_head_bias and not j.tie_word_embeddings
    b = load_arch("bloom-176b")
    assert b.position_encoding == "alibi" and not b.learned_pos_emb and b.embedding_norm and b.tie_word_embeddings
    m = load_arch("mpt-7b")
    # MPT: ALiBi turns learned positions off even though the config says learned_pos_emb: true.
    assert m.position_encoding == "alibi" and not m.learned_pos_emb and not m.attn_bias and m.norm_bias is False
    o = load_arch("opt-6.7b")
    assert o.learned_pos_emb and o.pos_emb_offset == 2 and o.activation == "relu" and o.tie_word_embeddings
    g = load_arch("gpt3-175b")
    assert g.learned_pos_emb and g.max_position_embeddings == 2048 and g.attn_bias


def test_qwen2_qkv_bias_without_output_bias():
    a = load_arch("qwen2.5-7b")
    assert a.attn_bias and a.attn_out_bias is False and a.num_kv_heads == 4
    h, q, kv = a.hidden_size, a.q_dim, a.kv_dim
    assert a.attention_params() == 2 * h * q + 2 * h * kv + q + 2 * kv
    assert a.sliding_window is None  # use_sliding_window: false


def test_palm_fields():
    a = load_arch("palm-540b")
    assert (a.num_layers, a.hidden_size, a.num_heads, a.head_dim, a.num_kv_heads) == (118, 18432, 48, 256, 1)
    assert a.q_dim == 12288 and a.intermediate_size == 73728 and a.gated_mlp and a.parallel_attn_mlp
    assert not a.attn_bias and not a.mlp_bias and a.tie_word_embeddings and a.vocab_size == 256000


def test_t5_feed_forward_proj_selects_gated_mlp():
    t = load_arch("t5-3b")
    assert t.family == "encoder_decoder" and t.num_layers == 24 and t.num_decoder_layers == 24
    assert not t.gated_mlp and t.activation == "relu" and t.head_dim == 128
    # flan-t5-xl (google/flan-t5-xl config.json): gated-gelu, untied head; 2.85B parameters
    # per its model card (2,849,757,184). ±0.1%.
    flan = {
        "model_type": "t5", "d_model": 2048, "d_kv": 64, "d_ff": 5120, "num_heads": 32, "num_layers": 24,
        "num_decoder_layers": 24, "vocab_size": 32128, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
    }
    f = arch_from_config(flan, model_id="flan-t5-xl", origin="flan.json")
    assert f.gated_mlp and f.activation == "gelu_new"
    assert rel_err(f.param_count(), 2.85e9) <= 0.001


def test_bert_encoder_fields():
    a = load_arch("bert-base")
    assert a.family == "encoder" and a.type_vocab_size == 2 and a.learned_pos_emb and a.pooler and not a.final_norm


def test_vit_h_fields():
    a = load_arch("vit-h")
    assert (a.family, a.hidden_size, a.num_layers, a.num_heads, a.intermediate_size) == ("vit", 1280, 32, 16, 5120)
    assert (a.image_size, a.patch_size, a.num_channels, a.num_labels) == (224, 14, 3, 1000)
    assert a.max_position_embeddings == 16 * 16 + 1 and a.conv_layers == ()


# ---------------------------------------------------------------------------
# CNNs
# ---------------------------------------------------------------------------


def test_conv_layer_params_and_macs():
    # ResNet stem (He et al. 2016 Table 1): 7×7/2, 3→64 on 224² → 112²:
    # 9,408 weights (+128 BatchNorm), 9,408 · 112² = 118,013,952 MACs.
    c = ConvLayer(name="stem", in_channels=3, out_channels=64, kernel=7, stride=2, groups=1, out_h=112, out_w=112, has_bn=True)
    assert c.params() == 9_408 + 128 and c.macs() == 118_013_952
    # Depthwise 3×3 on 96 channels at 56²: 864 weights, 864 · 3136 MACs.
    d = ConvLayer(name="dw", in_channels=96, out_channels=96, kernel=3, stride=1, groups=96, out_h=56, out_w=56, has_bn=False)
    assert d.params() == 864 and d.macs() == 864 * 56 * 56
    with pytest.raises(ModelConfigError, match="groups"):
        ConvLayer(name="bad", in_channels=3, out_channels=64, kernel=3, stride=1, groups=2, out_h=1, out_w=1, has_bn=False)


def test_resnet50_macs_and_layers():
    # ResNet-50 v1.5: ≈4.1 GMACs per 224×224 image (benchmarks/data/published.csv T20: "~4.1 GMACs (~8.2 GFLOPs)";
    # torchvision lists 4.09 GFLOPS as MACs). ±1%.
    a = load_arch("resnet-50")
    assert rel_err(a.macs_per_image(), 4.09e9) <= 0.01
    assert a.family == "cnn" and a.num_labels == 1000 and a.hidden_size == 2048
    # 1 stem + 16 bottlenecks × 3 + 4 projection shortcuts = 53 convolutions.
    assert len(a.conv_layers) == 53
    first, last = a.conv_layers[0], a.conv_layers[-1]
    assert first.name == "resnet.embedder.embedder.convolution" and (first.out_h, first.out_w) == (112, 112)
    assert last.name == "resnet.encoder.stages.3.layers.2.layer.2.convolution" and (last.out_h, last.out_channels) == (7, 2048)
    # v1.5: the stride sits on the 3×3 conv of the first block of stages 1-3.
    by_name = {c.name: c for c in a.conv_layers}
    assert by_name["resnet.encoder.stages.1.layers.0.layer.1.convolution"].stride == 2
    assert by_name["resnet.encoder.stages.1.layers.0.layer.0.convolution"].stride == 1


def test_resnet_v1_stride_in_1x1_and_basic_blocks():
    base = load_config_dict("resnet-50")
    v1 = arch_from_config(base | {"downsample_in_bottleneck": True}, model_id="r50v1", origin="r50v1.json")
    # Moving the stride to the first 1×1 (original v1) cuts the 3×3 work: He et al. 2016
    # Table 1 gives 3.8×10⁹ multiply-adds for ResNet-50. ±2%.
    assert rel_err(v1.macs_per_image(), 3.8e9) <= 0.02
    assert v1.param_count() == load_arch("resnet-50").param_count()
    # ResNet-18 (basic blocks): torchvision num_params 11,689,512 and 1.81 GMACs.
    r18 = {"model_type": "resnet", "depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 256, 512], "layer_type": "basic", "num_labels": 1000}
    a = arch_from_config(r18, model_id="resnet-18", origin="r18.json")
    assert a.param_count() == 11_689_512
    assert rel_err(a.macs_per_image(), 1.81e9) <= 0.01


def test_mobilenet_v2_params_and_macs():
    # Sandler et al. 2018 Table 4: 3.4M parameters, 300M multiply-adds at 224² (1.0×);
    # torchvision mobilenet_v2 (1000 classes) 3,504,872 parameters. The HF checkpoint has a
    # 1001-class head (+1,281). ±0.1% on 3.506M, ±1% on 300M MACs.
    a = load_arch("mobilenet-v2")
    assert a.num_labels == 1001
    assert a.param_count() == 3_504_872 + 1_281
    assert rel_err(a.macs_per_image(), 300e6) <= 0.01
    dw = [c for c in a.conv_layers if c.groups > 1]
    assert len(dw) == 17 and all(c.groups == c.in_channels == c.out_channels for c in dw)
    assert a.conv_layers[-1].name == "mobilenet_v2.conv_1x1.convolution" and a.conv_layers[-1].out_h == 7


def test_mobilenet_v2_depth_multiplier():
    # TF-slim mobilenet_v2 README table (1001 classes, parameters without BatchNorm):
    # 1.0/224: 3.47M params, 300M MACs; 0.75/224: 2.61M params, 209M MACs. ±0.1% / ±0.5%.
    for mult, params_m, macs_m in ((1.0, 3.47, 300), (0.75, 2.61, 209)):
        cfg = load_config_dict("mobilenet-v2") | {"depth_multiplier": mult}
        a = arch_from_config(cfg, model_id=f"mnv2-{mult}", origin="mnv2.json")
        bn = sum(2 * c.out_channels for c in a.conv_layers if c.has_bn)
        assert rel_err(a.param_count() - bn, params_m * 1e6) <= 0.001
        assert rel_err(a.macs_per_image(), macs_m * 1e6) <= 0.005


def test_cnn_macs_only_for_cnns():
    with pytest.raises(ValueError, match="CNN"):
        load_arch("bert-base").macs_per_image()


# ---------------------------------------------------------------------------
# Loading from files
# ---------------------------------------------------------------------------

TINY_LLAMA_YAML = """\
# a user's own model, written as YAML
model_type: llama
hidden_size: 512
intermediate_size: 1376
num_attention_heads: 8
num_key_value_heads: 2
num_hidden_layers: 4
vocab_size: 32000
"""


def tiny_llama_params() -> int:
    h, f, L, V, kv = 512, 1376, 4, 32000, 2 * 64
    per_layer = h * h * 2 + 2 * h * kv + 3 * h * f + 2 * h
    return L * per_layer + 2 * V * h + h


def test_user_yaml_config_path(tmp_path):
    p = tmp_path / "tiny-llama.yaml"
    p.write_text(TINY_LLAMA_YAML)
    a = load_arch(str(p))
    assert a.id == "tiny-llama" and a.source == str(p)
    assert a.num_kv_heads == 2 and a.head_dim == 64
    assert a.param_count() == tiny_llama_params()
    assert load_config_dict(str(p))["hidden_size"] == 512


def test_user_json_config_and_snapshot_folder(tmp_path):
    # GPT-2 small (openai-community/gpt2 config.json): 124,439,808 parameters (HF metadata).
    cfg = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024, "vocab_size": 50257}
    folder = tmp_path / "gpt2-small"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_arch(str(folder / "config.json")).param_count() == 124_439_808
    a = load_arch(str(folder))
    assert a.id == "gpt2-small" and a.param_count() == 124_439_808
    named = tmp_path / "mine.json"
    named.write_text(json.dumps(cfg | {"_id": "my-gpt", "_source": "my notes"}))
    b = load_arch(str(named))
    assert b.id == "my-gpt" and b.source == "my notes"


def test_yaml_is_parsed_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ModelConfigError) as e:
        load_arch(str(p))
    assert str(p) in str(e.value) and "YAML" in str(e.value)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def llama_cfg(**overrides):
    cfg = {
        "model_type": "llama", "hidden_size": 512, "intermediate_size": 1376, "num_attention_heads": 8,
        "num_hidden_layers": 4, "vocab_size": 32000,
    }
    cfg.update(overrides)
    return {k: v for k, v in cfg.items() if v is not ...}


def test_error_message_names_file_field_expected_and_got():
    with pytest.raises(ModelConfigError) as e:
        arch_from_config(llama_cfg(num_attention_heads=0), model_id="x", origin="llama.json")
    assert str(e.value) == "llama.json: field 'num_attention_heads' must be a positive integer; got 0"
    assert (e.value.path, e.value.field, e.value.expected, e.value.got) == ("llama.json", "num_attention_heads", "a positive integer", 0)
    assert isinstance(e.value, ValueError)
    # Survives pickling (worker processes, API error handlers).
    assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"hidden_size": ...}, "hidden_size", "is missing"),
        ({"hidden_size": "4096"}, "hidden_size", "got '4096'"),
        ({"hidden_size": 4096.5}, "hidden_size", "got 4096.5"),  # 4096.0 is the integer 4096
        ({"num_hidden_layers": True}, "num_hidden_layers", "got true"),
        ({"num_hidden_layers": -2}, "num_hidden_layers", "got -2"),
        ({"num_key_value_heads": 3}, "num_key_value_heads", "divisor of the number of attention heads (8)"),
        ({"hidden_size": 500}, "num_attention_heads", "divisor of the hidden size (500)"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings", "true or false"),
        ({"model_type": "llama-ish"}, "model_type", "one of"),
        ({"model_type": ...}, "model_type", "is missing"),
    ],
)
def test_bad_fields_are_named(overrides, field, fragment):
    with pytest.raises(ModelConfigError) as e:
        arch_from_config(llama_cfg(**overrides), model_id="x", origin="my.json")
    assert e.value.field == field
    assert str(e.value).startswith(f"my.json: field '{field}'")
    assert fragment in str(e.value)


def test_unknown_model_type_lists_supported():
    with pytest.raises(ModelConfigError) as e:
        arch_from_config({"model_type": "rwkv"}, model_id="x", origin="rwkv.json")
    for t in ("llama", "mixtral", "t5", "bert", "resnet", "mobilenet_v2", "vit", "palm"):
        assert t in SUPPORTED_MODEL_TYPES and t in str(e.value)


def test_model_specific_errors():
    with pytest.raises(ModelConfigError, match="num_experts_per_tok"):
        arch_from_config(
            llama_cfg(model_type="mixtral", num_local_experts=4, num_experts_per_tok=8), model_id="x", origin="moe.json"
        )
    with pytest.raises(ModelConfigError, match="num_local_experts"):
        arch_from_config(llama_cfg(model_type="mixtral"), model_id="x", origin="moe.json")
    with pytest.raises(ModelConfigError, match="depths"):
        arch_from_config({"model_type": "resnet", "depths": [3, 4], "hidden_sizes": [256, 512, 1024]}, model_id="x", origin="r.json")
    with pytest.raises(ModelConfigError, match="hidden_sizes"):
        arch_from_config({"model_type": "resnet", "depths": [3], "hidden_sizes": []}, model_id="x", origin="r.json")
    with pytest.raises(ModelConfigError, match="feed_forward_proj"):
        arch_from_config(
            {"model_type": "t5", "d_model": 8, "d_kv": 4, "d_ff": 8, "num_heads": 2, "num_layers": 1, "vocab_size": 10,
             "feed_forward_proj": "gated-"},
            model_id="x", origin="t.json",
        )
    with pytest.raises(ModelConfigError, match="patch_size"):
        arch_from_config(
            {"model_type": "vit", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
             "image_size": 224, "patch_size": 15},
            model_id="x", origin="v.json",
        )


def test_bad_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_type": "llama", "hidden_size": 512,}')
    with pytest.raises(ModelConfigError) as e:
        load_arch(str(broken))
    assert str(e.value).startswith(f"{broken}: expected valid JSON; got ") and "line 1" in str(e.value)
    listy = tmp_path / "list.yaml"
    listy.write_text("- model_type: llama\n")
    with pytest.raises(ModelConfigError, match="mapping of config fields"):
        load_arch(str(listy))
    with pytest.raises(ModelConfigError, match="no such file"):
        load_arch(str(tmp_path / "missing.json"))
    wrong_suffix = tmp_path / "cfg.txt"
    wrong_suffix.write_text("{}")
    with pytest.raises(ModelConfigError, match=r"\.json, \.yaml or \.yml"):
        load_arch(str(wrong_suffix))
    bad_field = tmp_path / "bad.yaml"
    bad_field.write_text(TINY_LLAMA_YAML.replace("num_attention_heads: 8", "num_attention_heads: 0"))
    with pytest.raises(ModelConfigError) as e:
        load_arch(str(bad_field))
    assert str(e.value) == f"{bad_field}: field 'num_attention_heads' must be a positive integer; got 0"


def test_unknown_id_suggests_close_ids():
    with pytest.raises(UnknownIdError) as e:
        load_arch("llama-3.1-8")
    assert e.value.id == "llama-3.1-8" and e.value.catalog == "model"
    assert "llama-3.1-8b" in e.value.suggestions
    assert "llama-3.1-8b" in str(e.value)
    with pytest.raises(LookupError):
        load_config_dict("no-such-model")


def test_archspec_is_frozen_and_validates():
    a = load_arch("llama-3-8b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.hidden_size = 1  # type: ignore[misc]
    with pytest.raises(ModelConfigError, match="num_kv_heads"):
        dataclasses.replace(a, num_kv_heads=5)
    with pytest.raises(ModelConfigError, match="family"):
        dataclasses.replace(a, family="rnn")
    with pytest.raises(ModelConfigError, match="experts_per_token"):
        dataclasses.replace(a, num_experts=4, experts_per_token=0)
    with pytest.raises(ModelConfigError, match="conv_layers"):
        dataclasses.replace(load_arch("resnet-50"), conv_layers=())
    assert isinstance(a, ArchSpec) and hash(a) == hash(load_arch("llama-3-8b"))


def test_list_models_is_sorted_catalog():
    ids = list_models()
    assert ids == sorted(ids) and "llama-2-7b" in ids and len(ids) >= 30
