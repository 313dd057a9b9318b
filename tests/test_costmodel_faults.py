"""Regression tests for cost-model faults: sliding-window KV (memory and reads), the decode
KV-gather penalty on a one-token prefill, BERT's pooler and ViT's classifier on [CLS] only."""

import dataclasses

import pytest

from hwmodels import load_device
from planner.arch import arch_from_config, load_arch, load_config_dict
from planner.costmodel import Choice, Layout, Serving, estimate_inference, max_batch, memory_report
from planner.workload import ATTENTION, LINEAR, Phase, build_workload, op_load

H100 = "h100-sxm"


def _qwen2_windowed():
    """Qwen2.5-7B with its sliding window switched on: HF Qwen2Attention windows the layers
    from ``max_window_layers`` on (here the last 8 of 28)."""
    cfg = load_config_dict("qwen2.5-7b") | {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
    return arch_from_config(cfg, model_id="qwen2.5-7b-swa", origin="qwen2.5-7b-swa.json")


# --- which layers are local ----------------------------------------------------------------


def test_layer_windows_follow_each_architecture():
    g = load_arch("gemma-2-9b")
    w = g.layer_windows()
    # Gemma 2: local layers at even indices (HF Gemma2Attention: window when layer_idx % 2 == 0).
    assert len(w) == 42 and w[0] == 4096 and w[1] is None and w.count(4096) == 21
    assert load_arch("mistral-7b").layer_windows() == (4096,) * 32
    assert load_arch("phi-3-mini").layer_windows() == (2047,) * 32
    # Qwen2.5 ships use_sliding_window: false → every layer global.
    assert load_arch("qwen2.5-7b").layer_windows() == (None,) * 28
    q = _qwen2_windowed()
    assert q.layer_windows() == (None,) * 20 + (4096,) * 8
    assert load_arch("llama-3.1-8b").layer_windows() == (None,) * 32
    # The interleaved count follows the layers when a model is shortened.
    short = dataclasses.replace(g, num_layers=5)
    assert short.layer_windows() == (4096, None, 4096, None, 4096) and short.sliding_window_layers == 3


# --- KV memory follows the window ------------------------------------------------------------


@pytest.mark.parametrize("model", ["mistral-7b", "gemma-2-9b", "phi-3-mini", "llama-3.1-8b", "qwen2.5-7b-swa"])
def test_kv_memory_follows_each_layers_window(model):
    arch = _qwen2_windowed() if model == "qwen2.5-7b-swa" else load_arch(model)
    prompt, gen, batch = 7000, 1000, 2
    rep, _ = memory_report(arch, load_device(H100), Layout(), Serving(batch=batch, prompt=prompt, gen=gen), Choice())
    assert rep.kv_cache_bytes == pytest.approx(batch * arch.kv_cache_bytes(prompt + gen, 2.0), rel=1e-12)


def test_mistral_kv_at_32k_is_one_window():
    # Mistral 7B keeps 4096 tokens per layer: 2·32·8·128·2 B · 4096 = 0.537 GB per sequence at 32k.
    arch, dev = load_arch("mistral-7b"), load_device(H100)
    s = Serving(batch=1, prompt=32768 - 128, gen=128)
    rep, _ = memory_report(arch, dev, Layout(), s, Choice())
    assert rep.kv_cache_bytes == pytest.approx(131072 * 4096, rel=1e-12)
    # So far more sequences fit than a window-blind cache (4.29 GB each) would allow.
    assert max_batch(arch, dev, Layout(), s, Choice()) > 20


def test_kv_memory_per_pipeline_stage_follows_the_windowed_layers():
    # Qwen2 with windows on its last 8 layers: the first stage holds the full-context layers.
    arch, dev = _qwen2_windowed(), load_device(H100)
    s = Serving(batch=4, prompt=30000, gen=768)
    rep, _ = memory_report(arch, dev, Layout(pp=2), s, Choice())
    per_layer = arch.kv_bytes_per_token(2.0) / 28 * 4
    first_stage_kv = 14 * per_layer * (30000 + 768)
    assert rep.tiers[0].kv_cache_bytes == pytest.approx(first_stage_kv, rel=1e-9)


# --- KV reads follow the window of each layer ------------------------------------------------


@pytest.mark.parametrize("model", ["mistral-7b", "gemma-2-9b", "phi-3-mini", "llama-3.1-8b", "qwen2.5-7b-swa"])
def test_decode_kv_reads_equal_the_cache_each_layer_keeps(model):
    # One decode step reads every cached token of every layer once (plus writes its own K/V):
    # the bytes read must equal what the memory report says is cached.
    arch = _qwen2_windowed() if model == "qwen2.5-7b-swa" else load_arch(model)
    prompt = 9000
    e = estimate_inference(arch, load_device(H100), Layout(), Serving(batch=1, prompt=prompt, gen=1), Choice())
    attn = [o for o in e.decode.ops if o.kind == ATTENTION]
    per_layer_token = arch.kv_bytes_per_token(2.0) / arch.num_layers
    written = per_layer_token * arch.num_layers  # one new token per layer
    read = sum(o.kv_bytes * o.count for o in attn) - written
    assert read == pytest.approx(arch.kv_cache_bytes(prompt + 1, 2.0), rel=1e-9)


def test_gemma2_decode_reads_full_context_on_global_layers():
    # Half of Gemma 2's layers are global: at 8k context the decode KV traffic is
    # (4096 + 8192) / 2 tokens per layer, not the 4096 a window on every layer would read.
    arch = load_arch("gemma-2-9b")
    e = estimate_inference(arch, load_device(H100), Layout(), Serving(batch=8, prompt=8192, gen=1), Choice())
    core = next(o for o in e.decode.ops if o.kind == ATTENTION)
    per_token = 8 * 2 * 8 * 256 * 2  # batch · (K, V) · kv_heads · head_dim · bf16
    assert core.kv_bytes == pytest.approx(per_token * ((4096 + 8193) / 2 + 1), rel=1e-9)


# --- prefill never pays the decode gather ----------------------------------------------------


@pytest.mark.parametrize("model", ["llama-3.1-8b", "gemma-2-9b", "t5-3b"])
def test_one_token_prefill_reads_kv_contiguously(model):
    arch, dev = load_arch(model), load_device(H100)
    e = estimate_inference(arch, dev, Layout(), Serving(batch=64, prompt=1, gen=4), Choice())
    eff = dev.efficiency
    bw = dev.device_tier.bandwidth_bytes_per_s
    for o in e.prefill.ops:
        if o.kind != ATTENTION or o.kv_bytes == 0:
            continue
        moved = o.activation_bytes + o.kv_bytes
        # Streaming time only: no (1/KV_GATHER_EFFICIENCY − 1) gather surcharge on the KV bytes.
        assert o.memory_s == pytest.approx(moved / (bw * eff.bandwidth(moved)), rel=1e-9), o.name
    # The decode step of the same request does pay it.
    from planner.opcost import KV_GATHER_EFFICIENCY

    assert KV_GATHER_EFFICIENCY < 1.0
    d = next(o for o in e.decode.ops if o.kind == ATTENTION and o.kv_bytes)
    moved = d.activation_bytes + d.kv_bytes
    surcharge = d.kv_bytes / (bw * eff.bandwidth(d.kv_bytes)) * (1.0 / KV_GATHER_EFFICIENCY - 1.0)
    assert d.memory_s == pytest.approx(moved / (bw * eff.bandwidth(moved)) + surcharge, rel=1e-9)
    assert surcharge > 0


def test_phase_gathers_kv_only_when_asked():
    assert not Phase(name="prefill", batch=1, tokens=1).kv_gather
    assert Phase(name="decode", batch=1, tokens=1, context=5, kv_gather=True).kv_gather


# --- heads on the [CLS] token ------------------------------------------------------------------


@pytest.mark.parametrize("model,op_name", [("bert-base", "pooler.dense"), ("bert-large", "pooler.dense"),
                                           ("vit-h", "classifier")])
def test_cls_heads_run_on_one_position(model, op_name):
    arch = load_arch(model)
    work = build_workload(arch)
    op = next(o for b in work.blocks for o in b.ops if o.name == op_name)
    assert op.kind == LINEAR
    ph = Phase(name="prefill", batch=3, tokens=384)
    load = op_load(op, ph)
    assert load.flops == 2.0 * 3 * op.in_features * op.out_features  # 3 sequences × one [CLS] row
    assert load.act_in_elems == 3 * op.in_features and load.gemm_m == 3


def test_bert_pooler_cost_does_not_grow_with_sequence_length():
    arch, dev = load_arch("bert-base"), load_device(H100)

    def pooler_flops(seq):
        e = estimate_inference(arch, dev, Layout(), Serving(batch=4, prompt=seq, gen=0), Choice())
        return next(o for o in e.prefill.ops if o.name.endswith("pooler.dense")).flops

    assert pooler_flops(512) == pooler_flops(16) == 2.0 * 4 * 768 * 768
