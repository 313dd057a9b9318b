"""Cost model: first-principles values, hardware classes end to end, invariants."""

import math

import pytest

from hwmodels import load_device, ridge_point
from planner.arch import load_arch
from planner.costmodel import (
    Choice,
    EstimateError,
    Layout,
    RuntimeSettings,
    Serving,
    check_layout,
    estimate_inference,
    max_batch,
)
from planner.formats import get_format


def est(model, hw, **kw):
    layout = kw.pop("layout", Layout())
    serving = kw.pop("serving", Serving(batch=1, prompt=512, gen=128))
    options = kw.pop("options", RuntimeSettings())
    return estimate_inference(load_arch(model), load_device(hw), layout, serving, Choice(**kw), options=options)


# --- first-principles values -------------------------------------------------------------


def test_llama2_7b_bf16_weights_bytes():
    # Llama-2-7B has 6,738,415,616 parameters (Touvron et al. 2023; HF config) × 2 bytes in bf16
    # = 13.48 GB; ±0.5%.
    e = est("llama-2-7b", "h100-sxm")
    assert e.memory.weights_bytes == pytest.approx(13.48e9, rel=0.005)


def test_kv_cache_bytes_per_token():
    # KV bytes/token = 2 (K and V) · layers · kv_heads · head_dim · bytes.
    # Llama-2-7B (MHA): 2·32·32·128·2 = 524,288 B; Llama-3-8B (GQA, 8 KV heads): 2·32·8·128·2 = 131,072 B.
    for model, per_token in (("llama-2-7b", 524_288), ("llama-3-8b", 131_072)):
        s = Serving(batch=1, prompt=1000, gen=0)
        e = est(model, "h100-sxm", serving=s)
        assert e.memory.kv_cache_bytes == pytest.approx(per_token * 1000, rel=1e-9)


def test_kv_format_scales_cache_bytes():
    # fp8 KV halves the bf16 cache (per-tensor scale only); int8 adds one fp16 scale per head
    # per token: 8 + 16/128 = 8.125 bits.
    s = Serving(batch=4, prompt=1024, gen=0)
    bf16 = est("llama-3-8b", "h100-sxm", serving=s).memory.kv_cache_bytes
    fp8 = est("llama-3-8b", "h100-sxm", serving=s, kv="fp8").memory.kv_cache_bytes
    int8 = est("llama-3-8b", "h100-sxm", serving=s, kv="int8").memory.kv_cache_bytes
    assert fp8 == pytest.approx(bf16 / 2)
    assert int8 == pytest.approx(bf16 * 8.125 / 16)


def test_mixtral_total_and_active_parameters():
    # Mixtral-8x7B: 46.7 B total / 12.9 B active (Jiang et al. 2024), ±1%. The estimate holds all
    # experts in memory but a single decode token reads only the 2 routed experts per layer.
    arch = load_arch("mixtral-8x7b")
    assert arch.param_count() == pytest.approx(46.7e9, rel=0.01)
    assert arch.active_param_count() == pytest.approx(12.9e9, rel=0.01)
    e = est("mixtral-8x7b", "h100-sxm", layout=Layout(tp=2), serving=Serving(batch=1, prompt=16, gen=16))
    assert e.memory.weights_bytes == pytest.approx(2 * arch.param_count(), rel=1e-6)
    read = sum(o.weight_bytes * o.count for o in e.decode.ops) * 2  # two TP ranks
    assert read == pytest.approx(2 * arch.active_param_count(), rel=0.02)


def test_llama31_70b_parameters():
    # Llama-3.1-70B: 70.6 B parameters (Meta model card), ±1%.
    assert load_arch("llama-3.1-70b").param_count() == pytest.approx(70.6e9, rel=0.01)


def test_h100_ridge_point():
    # H100 SXM dense bf16: 989.4 TFLOP/s / 3.35 TB/s = 295 FLOP/byte (scaling-book roofline.md
    # quotes ≈ 298 with rounded figures); ±1%.
    assert ridge_point(load_device("h100-sxm"), "bf16") == pytest.approx(295, rel=0.01)


# --- regimes -------------------------------------------------------------------------------


def test_decode_is_memory_bound_and_prefill_compute_bound():
    e = est("llama-2-7b", "h100-sxm", serving=Serving(batch=1, prompt=2048, gen=64))
    assert e.decode.bound == "memory"
    assert e.prefill.bound == "compute"
    # Batch-1 decode time is close to weights / bandwidth: 13.48 GB / 3.35 TB/s = 4.0 ms, and
    # below 2× of it once kernel overheads and efficiency are added.
    assert 13.48e9 / 3.35e12 < e.tpot_s < 2 * 13.48e9 / 3.35e12


def test_weight_only_int4_speeds_up_decode_not_prefill():
    s = Serving(batch=1, prompt=2048, gen=128)
    bf16 = est("llama-2-7b", "a100-80gb-sxm", serving=s)
    int4 = est("llama-2-7b", "a100-80gb-sxm", serving=s, weights="int4-g128")
    assert int4.tpot_s < 0.6 * bf16.tpot_s
    # weight-only: compute still in bf16, plus dequantization → prefill not faster
    assert int4.ttft_s >= 0.95 * bf16.ttft_s
    assert int4.memory.weights_bytes == pytest.approx(bf16.memory.weights_bytes * get_format("int4-g128").bits_per_value() / 16, rel=0.01)


def test_fp8_w8a8_speeds_up_prefill_on_h100():
    s = Serving(batch=8, prompt=2048, gen=16)
    bf16 = est("llama-3-8b", "h100-sxm", serving=s)
    fp8 = est("llama-3-8b", "h100-sxm", serving=s, weights="fp8", activations="fp8", kv="fp8")
    assert fp8.ttft_s < 0.75 * bf16.ttft_s


def test_tensor_parallel_splits_memory_and_adds_communication():
    one = est("llama-2-70b", "h100-sxm", layout=Layout(tp=2), serving=Serving(batch=1, prompt=128, gen=32))
    four = est("llama-2-70b", "h100-sxm", layout=Layout(tp=4), serving=Serving(batch=1, prompt=128, gen=32))
    assert four.memory.per_device_bytes < 0.6 * one.memory.per_device_bytes
    assert four.decode.comm_s > 0
    assert four.tpot_s < one.tpot_s


def test_batch_max_fits_and_next_does_not():
    arch, dev = load_arch("llama-2-13b"), load_device("a100-40gb-sxm")
    s = Serving(batch=1, prompt=1024, gen=256)
    b = max_batch(arch, dev, Layout(), s, Choice())
    assert b >= 1
    assert estimate_inference(arch, dev, Layout(), Serving(batch=b, prompt=1024, gen=256)).memory.fits
    assert not estimate_inference(arch, dev, Layout(), Serving(batch=b + 1, prompt=1024, gen=256)).memory.fits


def test_not_fitting_reports_shortfall():
    e = est("llama-2-70b", "l4")
    assert not e.memory.fits
    assert e.memory.shortfall_bytes > 100e9
    assert any("does not fit" in n for n in e.notes)


def test_energy_and_cost_are_positive_and_consistent():
    e = est("llama-2-7b", "h100-sxm", serving=Serving(batch=16, prompt=512, gen=128))
    assert e.energy_j_per_token > 0
    # USD per million tokens = device $/h ÷ 3600 ÷ tokens/s × 1e6
    assert e.usd_per_million_tokens == pytest.approx(e.usd_per_hour / 3600 / e.output_tokens_per_s * 1e6)


# --- non-GPU classes end to end (issue acceptance 5) --------------------------------------


def test_phone_int4_7b_fits_in_app_dram():
    e = est("llama-2-7b", "iphone-15-pro", weights="int4-g128", activations="fp16", kv="fp16", serving=Serving(batch=1, prompt=128, gen=64))
    assert e.memory.fits
    assert e.memory.offloaded_weights_bytes == 0


def test_phone_13b_fp16_streams_from_flash_and_depends_on_chunk_size():
    s = Serving(batch=1, prompt=128, gen=64)
    small = est("llama-2-13b", "iphone-15-pro", weights="fp16", activations="fp16", kv="fp16", serving=s, options=RuntimeSettings(flash_chunk_bytes=4 * 1024))
    large = est("llama-2-13b", "iphone-15-pro", weights="fp16", activations="fp16", kv="fp16", serving=s, options=RuntimeSettings(flash_chunk_bytes=1024 * 1024))
    assert small.memory.offloaded_weights_bytes > 10e9
    assert large.decode.bound == "stream"  # per-token time dominated by flash reads
    assert large.decode.stream_s > 0.8 * large.decode.time_s
    assert small.tpot_s > 2 * large.tpot_s  # small random reads are latency-bound (LLM in a flash)


def test_sn40l_streams_from_ddr_and_reports_switch_in():
    e = est("llama-3.1-70b", "sn40l", serving=Serving(batch=1, prompt=256, gen=32))
    tiers = {t.name: t for t in e.memory.tiers}
    ddr = [t for t in e.memory.tiers if t.role == "device_ext"][0]
    assert ddr.weights_bytes > 0
    assert e.decode.bound == "stream"
    assert e.switch_in_s is not None and e.switch_in_s > 0
    assert e.memory.fits and tiers  # DDR holds the rest: fits across tiers
    # Dataflow fusion: activations sit in on-chip SRAM, not HBM
    assert [t for t in e.memory.tiers if t.role == "on_chip"][0].activations_bytes > 0


def test_fpga_roof_depends_on_operand_widths():
    dev = load_device("alveo-u280")
    int8 = dev.peak_flops_per_s("int8", weight_bits=8, act_bits=8, number_kind="int")
    w4a8 = dev.peak_flops_per_s("int8", weight_bits=4, act_bits=8, number_kind="int")
    fp8 = dev.peak_flops_per_s("fp8", weight_bits=8, act_bits=8, number_kind="float")
    assert w4a8 > int8 > fp8
    # and the estimate follows: the same CNN runs faster with int4 weights, slower with fp8
    s = Serving(batch=16, prompt=1, gen=0)
    t_int8 = est("resnet-50", "alveo-u280", serving=s, weights="int8", activations="int8").ttft_s
    t_w4 = est("resnet-50", "alveo-u280", serving=s, weights="int4-g128", activations="int8").ttft_s
    t_fp8 = est("resnet-50", "alveo-u280", serving=s, weights="fp8", activations="fp8").ttft_s
    assert t_w4 < t_int8 < t_fp8


def test_offload_places_remainder_in_host_memory():
    s = Serving(batch=1, prompt=128, gen=32)
    no = est("llama-2-70b", "rtx-4090", serving=s, weights="int4-g128", activations="fp16", kv="fp16")
    yes = est("llama-2-70b", "rtx-4090", serving=s, weights="int4-g128", activations="fp16", kv="fp16", options=RuntimeSettings(allow_offload=True))
    assert not no.memory.fits
    assert yes.memory.fits and yes.memory.offloaded_weights_bytes > 0
    assert yes.decode.bound == "stream"


# --- layouts and bad input -----------------------------------------------------------------


def test_layout_rules():
    arch = load_arch("llama-2-7b")
    with pytest.raises(EstimateError, match="divide the number of attention heads"):
        check_layout(arch, Layout(tp=3))
    with pytest.raises(EstimateError, match="exceeds the number of layers"):
        check_layout(arch, Layout(pp=64))
    with pytest.raises(EstimateError, match="must equal tp×pp×dp"):
        check_layout(arch, Layout(tp=2), devices=3)
    with pytest.raises(EstimateError, match="mixture-of-experts"):
        check_layout(arch, Layout(ep=2, dp=2))


def test_unsupported_or_unknown_formats_are_named():
    with pytest.raises(EstimateError) as e:
        est("llama-2-7b", "h100-sxm", weights="int5")
    assert e.value.field == "weights"
    with pytest.raises(EstimateError) as e:
        est("llama-2-7b", "h100-sxm", kv="nf4")
    assert e.value.field == "kv"


def test_every_catalog_model_estimates_on_a_gpu():
    from planner.arch import list_models

    dev = load_device("h100-sxm")
    for m in list_models():
        e = estimate_inference(load_arch(m), dev, Layout(), Serving(batch=1, prompt=64, gen=8))
        assert e.ttft_s > 0 and math.isfinite(e.ttft_s), m


def test_every_profile_estimates_a_small_model():
    from hwmodels import list_devices

    arch = load_arch("opt-1.3b")
    for h in list_devices():
        dev = load_device(h)
        fmt = "fp16" if dev.supports("fp16") != "unsupported" else "int8"
        e = estimate_inference(arch, dev, Layout(), Serving(batch=1, prompt=32, gen=8), Choice(weights=fmt, activations=fmt if fmt == "fp16" else "int8", kv="fp16" if dev.supports("fp16") != "unsupported" else "int8"))
        assert e.latency_s > 0, h


def test_low_rank_shrinks_weights_and_compute():
    # A rank-r factorization of a k→n linear stores r·(k+n) weights (Greenformers); for
    # Llama-2-7B's 4096→4096 projections at r=512 that is 1/4 of the weights and FLOPs.
    s = Serving(batch=1, prompt=1024, gen=32)
    dense = est("llama-2-7b", "h100-sxm", serving=s)
    lr = est("llama-2-7b", "h100-sxm", serving=s, low_rank=512)
    q_dense = next(o for o in dense.prefill.ops if o.name.endswith("q_proj"))
    q_lr = next(o for o in lr.prefill.ops if o.name.endswith("q_proj"))
    assert q_lr.flops == pytest.approx(q_dense.flops * 512 * 8192 / 4096**2)
    assert q_lr.weight_bytes == pytest.approx(q_dense.weight_bytes * 0.25, rel=1e-3)
    assert lr.memory.weights_bytes < 0.4 * dense.memory.weights_bytes
    assert lr.tpot_s < dense.tpot_s
    with pytest.raises(EstimateError):
        Choice(low_rank=0)


def test_expert_parallel_spreads_experts_and_adds_all_to_all():
    # Mixtral-8x7B on 8 GPUs: tp=8 shards every expert 8 ways; tp=1 × dp=8 with ep=8 gives each
    # GPU one whole expert per layer (8 experts / 8 ranks) and replicates attention.
    s = Serving(batch=8, prompt=512, gen=64)
    tp8 = est("mixtral-8x7b", "h100-sxm", layout=Layout(tp=8), serving=s)
    ep8 = est("mixtral-8x7b", "h100-sxm", layout=Layout(dp=8, ep=8), serving=s)
    experts = lambda e: sum(o.weight_bytes * o.count for o in e.decode.ops if ".experts." in o.name)  # noqa: E731
    # each EP rank serves the tokens of all 8 replicas, so it reads its expert for nearly every
    # step: more expert bytes per device than the 8-way sharded experts at tp=8 (batch 8 touches
    # all 8 experts either way), never more than one expert per layer.
    per_layer_expert = 3 * 4096 * 14336 * 2
    assert experts(tp8) <= experts(ep8) <= 32 * per_layer_expert * 1.01
    flops = lambda e: sum(o.flops * o.count for o in e.decode.ops if ".experts." in o.name)  # noqa: E731
    # tp=8 serves one replica's 8 tokens, ep=8 × dp=8 serves 8 replicas' 64 tokens: 8× the routed
    # work per device, for 8× the system throughput.
    assert flops(ep8) == pytest.approx(8 * flops(tp8), rel=1e-6)
    assert ep8.output_tokens_per_s > tp8.output_tokens_per_s
    down = [o for o in ep8.decode.ops if o.name.endswith("experts.down_proj")][0]
    assert down.comm_s > 0  # dispatch + combine all-to-alls
    # attention is replicated under pure EP+DP: more weight bytes per device than tp=8
    assert ep8.memory.per_device_bytes > tp8.memory.per_device_bytes


def test_kv_token_budget_and_cross_layer_sharing():
    # MiKV-style budget: the newest 2048 of 9000 cached tokens stay bf16, the rest int4-g32
    # (4 + 16/32 = 4.5 bits): average (2048·16 + 6952·4.5)/9000 bits. AcrossKV with 2 layers
    # per cache halves the cache and drops half of the K/V projections.
    s = Serving(batch=16, prompt=8000, gen=1000)
    base = est("llama-3.1-8b", "h100-sxm", serving=s)
    budget = est("llama-3.1-8b", "h100-sxm", serving=s, options=RuntimeSettings(kv_token_budget=2048))
    share = est("llama-3.1-8b", "h100-sxm", serving=s, options=RuntimeSettings(kv_share_layers=2))
    frac = (2048 * 16 + 6952 * 4.5) / 9000 / 16
    assert budget.memory.kv_cache_bytes == pytest.approx(base.memory.kv_cache_bytes * frac, rel=1e-6)
    assert budget.tpot_s < base.tpot_s  # evicted tokens are read at 4.5 bits
    assert share.memory.kv_cache_bytes == pytest.approx(base.memory.kv_cache_bytes / 2)
    kv_proj = 2 * 32 * 4096 * 1024 * 2  # k_proj + v_proj of 32 layers, bf16
    assert base.memory.weights_bytes - share.memory.weights_bytes == pytest.approx(kv_proj / 2, rel=1e-6)
    with pytest.raises(EstimateError):
        RuntimeSettings(kv_evicted="nf4")
    with pytest.raises(EstimateError):
        RuntimeSettings(kv_share_layers=0)


def test_with_comm_copies_every_field_of_an_op_cost():
    """The spelled-out copy that adds communication keeps every other field (a field added to
    OpCost and forgotten there fails here)."""
    import dataclasses

    from planner.costmodel import _with_comm, estimate_inference
    from planner.layout import Layout

    est = estimate_inference(load_arch("llama-3.1-8b"), load_device("h100-sxm"), Layout(tp=2), Serving(batch=4, prompt=128, gen=16), Choice())
    op = next(o for o in est.prefill.ops if o.comm_s > 0)
    assert _with_comm(op, 1.25) == dataclasses.replace(op, comm_s=1.25)


def test_explicit_placement_map_is_accepted_and_cached_results_match():
    """An explicit per-tier placement (a mapping, not hashable) goes through the uncached weight
    path; the cached path gives the same memory report as the uncached one."""
    from planner.costmodel import estimate_inference
    from planner.layout import Layout
    from planner.serving import RuntimeSettings

    arch, dev = load_arch("llama-3.2-1b"), load_device("l4")
    est = estimate_inference(arch, dev, Layout(), Serving(batch=2, prompt=64, gen=8), Choice(),
                             options=RuntimeSettings(placement={dev.device_tier.name: 1.0}))
    plain = estimate_inference(arch, dev, Layout(), Serving(batch=2, prompt=64, gen=8), Choice())
    assert est.memory.weights_bytes == pytest.approx(plain.memory.weights_bytes)


def test_offload_leaves_an_engines_kv_share_room_on_the_device():
    """vLLM / TensorRT-LLM give their KV cache only a share of the memory left free. Weights spilled
    to host memory must leave that room, or --allow-offload could never fit on the default engines."""
    from planner.engines import load_engine
    from planner.serving import engine_settings

    arch, dev = load_arch("llama-3.1-70b"), load_device("h100-sxm")
    for engine in ("vllm", "trtllm", "hf-transformers"):
        opts = RuntimeSettings(allow_offload=True, **engine_settings(load_engine(engine).support(dev).runtime))
        e = estimate_inference(arch, dev, Layout(), Serving(batch=1, prompt=512, gen=128), Choice(), options=opts)
        m = e.memory
        assert m.fits and m.offloaded_weights_bytes > 60e9, (engine, m)
        on_device = next(t for t in m.tiers if t.name == dev.device_tier.name)
        assert on_device.used_bytes <= dev.memory_capacity_bytes + 1.0
        if opts.kv_memory_fraction < 1.0:
            free = dev.memory_capacity_bytes - on_device.weights_bytes - on_device.activations_bytes
            assert on_device.kv_cache_bytes <= opts.kv_memory_fraction * free + 1.0, engine
    # without offloading, the same model still does not fit, with the same shortfall as before
    no = estimate_inference(arch, dev, Layout(), Serving(batch=1, prompt=512, gen=128), Choice(),
                            options=RuntimeSettings(**engine_settings(load_engine("vllm").support(dev).runtime)))
    assert not no.memory.fits and no.memory.shortfall_bytes > 60e9
