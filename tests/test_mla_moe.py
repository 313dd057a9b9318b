"""DeepSeek-V2/V3 (Multi-head Latent Attention, routed + shared experts, dense first layers)
and Qwen2-MoE (routed experts + a gated shared expert): configs read, parameter counts
against the published totals and against the transformers modules, the compressed KV cache
(DeepSeek-V2, arXiv:2405.04434 §2.1: kv_lora_rank + qk_rope_head_dim values per token and
layer), attention FLOPs, and estimate / plan / REST registration end to end."""

from __future__ import annotations

import json

import pytest

from hwmodels import load_device
from planner.arch import ModelConfigError, arch_from_config, load_arch, load_config_dict
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, estimate_inference
from planner.workload import ATTENTION, Phase, build_workload, op_load


def rel_err(got: float, want: float) -> float:
    return abs(got - want) / want


# (id, published total, published active, source). Active counts include the LM head and the
# input embedding table; the papers' "activated" figures (37B, 2.4B) are met within 2 %.
PUBLISHED = [
    ("deepseek-v3", 671e9, 37e9, "DeepSeek-V3 Technical Report, arXiv:2412.19437, abstract: 671B total, 37B activated"),
    ("qwen1.5-moe-a2.7b", 14.3e9, 2.7e9, "https://qwenlm.github.io/blog/qwen-moe/: 14.3B total, 2.7B activated"),
]


@pytest.mark.parametrize(("model", "total", "active", "source"), PUBLISHED)
def test_published_totals(model, total, active, source):
    a = load_arch(model)
    assert rel_err(a.param_count(), total) <= 0.01, source
    assert rel_err(a.active_param_count(), active) <= 0.02, source


def test_deepseek_v2_lite_published_totals():
    # arXiv:2405.04434 Appendix B: 15.7B total, 2.4B activated (counted without the input
    # embedding table, a lookup: 102400 × 2048).
    a = load_arch("deepseek-v2-lite")
    assert rel_err(a.param_count(), 15.7e9) <= 0.01
    assert rel_err(a.active_param_count() - a.vocab_size * a.hidden_size, 2.4e9) <= 0.03


def test_deepseek_v3_kv_cache_is_the_latent():
    a = load_arch("deepseek-v3")
    assert a.is_mla and a.kv_elems_per_layer == 512 + 64
    assert a.kv_bytes_per_token(2.0) == 61 * (512 + 64) * 2
    # Against the uncompressed cache of the same heads (K 192, V 128 wide): ~71× smaller.
    assert a.kv_bytes_per_token(2.0) * 70 < 61 * 128 * (192 + 128) * 2
    assert a.kv_cache_bytes(1000) == 1000 * a.kv_bytes_per_token()


def test_dense_models_keep_their_kv_formula():
    a = load_arch("llama-3.1-8b")
    assert not a.is_mla and a.moe_layers == 0
    assert a.kv_bytes_per_token(2.0) == 2 * 32 * 8 * 128 * 2
    mx = load_arch("mixtral-8x7b")
    assert mx.moe_layers == 32 and mx.mlp_params() == 8 * mx.expert_mlp_params() + 4096 * 8


# --- the same configs built as transformers config objects --------------------------------

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _published(model: str) -> dict:
    return {k: v for k, v in load_config_dict(model).items() if not k.startswith("_")}


def test_deepseek_v3_config_object_reads_like_the_catalog():
    raw = _published("deepseek-v3")
    raw.pop("rope_scaling")  # transformers 5 spells RoPE settings as rope_parameters
    cfg = transformers.DeepseekV3Config(**raw)
    a = arch_from_config(cfg.to_dict(), model_id="v3", origin="DeepseekV3Config")
    ref = load_arch("deepseek-v3")
    assert (a.num_layers, a.dense_layers, a.num_experts, a.experts_per_token) == (61, 3, 256, 8)
    assert (a.q_lora_rank, a.kv_lora_rank, a.qk_rope_head_dim, a.head_dim, a.v_head_dim) == (1536, 512, 64, 192, 128)
    assert a.shared_expert_intermediate_size == 2048
    assert a.param_count() == ref.param_count() and a.active_param_count() == ref.active_param_count()


def test_qwen2_moe_config_object_reads_like_the_catalog():
    cfg = transformers.Qwen2MoeConfig(**_published("qwen1.5-moe-a2.7b"))
    a = arch_from_config(cfg.to_dict(), model_id="q", origin="Qwen2MoeConfig")
    assert (a.num_experts, a.experts_per_token, a.moe_intermediate_size) == (60, 4, 1408)
    assert a.shared_expert_intermediate_size == 5632 and a.shared_expert_gate and a.dense_layers == 0
    assert a.param_count() == load_arch("qwen1.5-moe-a2.7b").param_count()


def _meta_params(cfg) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


SMALL = {
    # Published widths and routing, fewer layers and experts: every module kind is built.
    "deepseek_v3": dict(num_hidden_layers=4, first_k_dense_replace=2, n_routed_experts=16, num_experts_per_tok=4),
    "deepseek_v2_lite_q": dict(num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=6,
                               n_shared_experts=2, q_lora_rank=None, hidden_size=2048, intermediate_size=10944,
                               moe_intermediate_size=1408, num_attention_heads=16, num_key_value_heads=16,
                               vocab_size=102400, attention_bias=True),
    "qwen2_moe": dict(num_hidden_layers=3, num_experts=8, mlp_only_layers=[0]),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_param_count_equals_the_transformers_model(name):
    if name.startswith("deepseek_v2"):
        cfg = transformers.DeepseekV2Config(**SMALL[name])
    elif name == "deepseek_v3":
        cfg = transformers.DeepseekV3Config(**SMALL[name])
    else:
        cfg = transformers.Qwen2MoeConfig(**SMALL[name])
    a = arch_from_config(cfg.to_dict(), model_id=name, origin=name)
    assert a.param_count() == _meta_params(cfg)
    assert build_workload(a).weight_params == a.param_count()


def test_planned_modules_exist_for_moe_layers_of_deepseek_v3():
    # The catalog check (tests/test_export_names.py) keeps 2 layers, both dense for V3: here
    # the MoE layers' names (router, per-expert, shared experts) are checked too.
    from planner.export import group_modules

    small = {**_published("deepseek-v3"), "num_hidden_layers": 4, "n_routed_experts": 8}
    small.pop("rope_scaling")
    cfg = transformers.DeepseekV3Config(**small)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    real = {n for n, _ in model.named_modules()}
    real |= {f"{n}.{e}.{p}" for n, _ in model.named_modules() if n.endswith("mlp.experts")
             for e in range(8) for p in ("gate_proj", "up_proj", "down_proj")}
    a = arch_from_config({**small, "architectures": ["DeepseekV3ForCausalLM"]}, model_id="deepseek-v3", origin="t")
    planned = [m for ms in group_modules(a, ("DeepseekV3ForCausalLM",)).values() for m in ms]
    assert "model.layers.3.mlp.gate" in planned and "model.layers.3.mlp.shared_experts.down_proj" in planned
    assert "model.layers.3.self_attn.kv_a_proj_with_mqa" in planned and "model.layers.0.mlp.gate_proj" in planned
    missing = [m for m in planned if m not in real]
    assert not missing, missing[:5]


# --- the workload and the cost model -------------------------------------------------------


def _mla_core():
    w = build_workload(load_arch("deepseek-v3"))
    blocks = [b for b in w.blocks if b.repeated]
    assert [(b.first, b.count) for b in blocks] == [(0, 3), (3, 58)]
    assert w.layer_names()[:4] == ["model.layers.0", "model.layers.1", "model.layers.2", "model.layers.3"]
    return next(op for op in blocks[1].ops if op.kind == ATTENTION)


def test_mla_decode_attention_is_absorbed_and_reads_the_latent():
    op = _mla_core()
    ld = op_load(op, Phase(name="decode", batch=2, tokens=1, context=4095.0))
    # Absorbed: per head per (query, key) pair 2·(576 + 512) FLOPs; 2 sequences × 4096 keys.
    assert ld.flops == pytest.approx(2 * 128 * 2 * (576 + 512) * 4096)
    assert ld.kv_read_elems == 2 * 576 * 4096 and ld.kv_write_elems == 2 * 576


def test_mla_prefill_attention_is_not_absorbed():
    op = _mla_core()
    t = 1024
    ld = op_load(op, Phase(name="prefill", batch=1, tokens=t, context=0.0))
    pairs = t * (t + 1) / 2
    assert ld.flops == pytest.approx(2 * 128 * (192 + 128) * pairs)
    assert ld.kv_write_elems == t * 576


def test_estimate_deepseek_v3_on_h200_tp8_counts_the_latent_cache():
    arch = load_arch("deepseek-v3")
    serving = Serving(batch=4, prompt=2048, gen=256)
    e = estimate_inference(arch, load_device("h200"), Layout(tp=8), serving, Choice(weights="fp8-e4m3"),
                           options=RuntimeSettings())
    per_token = 61 * (512 + 64) * 2
    assert e.memory.kv_cache_bytes == pytest.approx(4 * (2048 + 256) * per_token, rel=1e-6)
    assert e.memory.weights_bytes == pytest.approx(arch.param_count(), rel=0.02)  # ~1 byte per weight


def test_cli_estimate_and_plan(cli):
    code, out, err = cli("estimate", "--model", "deepseek-v3", "--hardware", "h200", "--tp", "8",
                         "--weights", "fp8-e4m3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["memory"]["kv_cache_bytes"] == pytest.approx((512 + 128) * 61 * 576 * 2, rel=1e-6)
    code, out, err = cli("plan", "--model", "qwen1.5-moe-a2.7b", "--hardware", "h200", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["predicted"]["fits"] and "model.layers.0.mlp.shared_experts.gate_up" in plan["choices"]


# --- bad input ------------------------------------------------------------------------------


def test_interleaved_dense_layers_are_refused_naming_the_field():
    raw = {**_published("deepseek-v2-lite"), "moe_layer_freq": 2}
    with pytest.raises(ModelConfigError) as ei:
        arch_from_config(raw, model_id="x", origin="v2.json")
    assert ei.value.field == "moe_layer_freq"
    raw = {**_published("qwen1.5-moe-a2.7b"), "mlp_only_layers": [3]}
    with pytest.raises(ModelConfigError) as ei:
        arch_from_config(raw, model_id="x", origin="q.json")
    assert ei.value.field == "mlp_only_layers"


@pytest.mark.parametrize(("field", "value"), [("kv_lora_rank", 0), ("kv_lora_rank", None), ("qk_rope_head_dim", "64"),
                                              ("num_experts_per_tok", 300), ("n_shared_experts", -1)])
def test_bad_deepseek_fields_name_the_field(field, value):
    raw = {**_published("deepseek-v3"), field: value}
    with pytest.raises(ModelConfigError) as ei:
        arch_from_config(raw, model_id="x", origin="v3.json")
    assert ei.value.field == field


def test_rest_registers_deepseek_and_qwen2_moe(tmp_path):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import Settings

    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'tw.db'}"))) as c:
        for mid, src in (("my-v3", "deepseek-v3"), ("my-qmoe", "qwen1.5-moe-a2.7b")):
            r = c.post("/v1/models", json={"id": mid, "config": _published(src)})
            assert r.status_code == 201, r.text
        r = c.post("/v1/estimate", json={"model": "my-v3", "hardware": "h200", "tp": 8, "weights": "fp8-e4m3"})
        assert r.status_code == 200, r.text
        r = c.post("/v1/models", json={"id": "bad", "config": {**_published("deepseek-v3"), "kv_lora_rank": 0}})
        assert r.status_code == 422 and "kv_lora_rank" in r.text


def test_quantized_latent_cache_scales_cover_the_latent_row():
    # An int8 cache keeps one scale per cached row: for MLA the row is the 576-wide latent
    # plus RoPE key, not a 192-wide head.
    from planner.opcost import kv_bits

    arch = load_arch("deepseek-v3")
    serving = Serving(batch=2, prompt=1024, gen=0)
    e = estimate_inference(arch, load_device("h200"), Layout(tp=8), serving, Choice(weights="fp8-e4m3", kv="int8"),
                           options=RuntimeSettings())
    want = 2 * 1024 * 61 * 576 * kv_bits("int8", 576) / 8
    assert e.memory.kv_cache_bytes == pytest.approx(want, rel=1e-6)
    assert kv_bits("int8", 576) < kv_bits("int8", 192)


def test_cli_reads_a_config_json_written_by_transformers(cli, tmp_path):
    # A user's config.json as transformers writes it (DeepseekV2Config.to_json_file), given by path.
    raw = _published("deepseek-v2-lite")
    raw.pop("rope_scaling")
    path = tmp_path / "config.json"
    transformers.DeepseekV2Config(**raw).to_json_file(str(path))
    code, out, err = cli("estimate", "--model", str(path), "--hardware", "h100-sxm", "--json")
    assert code == 0, err
    assert json.loads(out)["memory"]["kv_cache_bytes"] == pytest.approx((512 + 128) * 27 * 576 * 2, rel=1e-6)
    code, out, err = cli("models", "show", "deepseek-v3")
    assert code == 0 and "671" in out, err
