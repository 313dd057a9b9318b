"""Kernel-level cost terms (planner/kernels.py) and how the inference cost model uses them:
GEMM wave quantization and K depth, the FP8 best-shape fraction, fused vs unfused attention and
elementwise operators, the sampling pass, engine runtime facts and the engine's KV memory share."""

import math

import pytest

from hwmodels import load_device, load_device_from_dict
from hwmodels.errors import SpecError
from hwmodels.loader import device_to_dict
from planner import kernels
from planner.arch import load_arch
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, estimate_inference, max_batch
from planner.engines import load_engine, load_engine_from_dict
from planner.errors import EstimateError, TierwiseError
from planner.serving import engine_settings
from planner.workload import ATTENTION, LINEAR

H100 = "h100-sxm"


# ---- pure functions --------------------------------------------------------------------------


def test_one_full_wave_of_full_tiles_wastes_nothing():
    # 132 SMs, 12 x 11 = 132 tiles of 128 x 128: exactly one wave.
    assert kernels.wave_efficiency(12 * 128, 11 * 128, 4096, 132) == pytest.approx(1.0)


def test_one_tile_more_than_the_cores_costs_a_second_wave():
    # 133 tiles on 132 SMs: two waves, the second with one busy SM.
    eff = kernels.wave_efficiency(133 * 128, 128, 4096, 132)
    assert eff == pytest.approx(133 / 264)


def test_edge_tiles_compute_only_their_inside():
    # 130 rows need two 128-row tiles; the second is 2/128 full (2 cores: one wave either way).
    assert kernels.wave_efficiency(130, 128, 256, 2) == pytest.approx(130 / 256)
    assert kernels.wave_efficiency(256, 128, 256, 2) == pytest.approx(1.0)


def test_few_rows_use_a_small_tile_not_a_128_row_one():
    # 16 rows run a 16-row tile: as efficient per tile as 128 rows in a 128-row tile.
    assert kernels.wave_efficiency(16, 132 * 128, 4096, 132) == pytest.approx(1.0)
    # 1 row in a 16-row tile (decode GEMV on tensor cores): 1/16 of the tile is useful.
    assert kernels.wave_efficiency(1, 132 * 128, 4096, 132) == pytest.approx(1 / 16)


def test_split_k_fills_idle_cores_when_k_is_deep():
    shallow = kernels.wave_efficiency(128, 128 * 4, 512, 132)  # 4 tiles, K too shallow to split
    deep = kernels.wave_efficiency(128, 128 * 4, 16384, 132)  # split over the idle SMs
    assert shallow == pytest.approx(4 / 132)
    assert deep > 20 * shallow


def test_no_declared_cores_means_no_wave_term():
    assert kernels.wave_efficiency(1, 1, 1, 0) == 1.0


def test_depth_efficiency_grows_with_k_and_uses_the_fitted_overhead():
    assert kernels.depth_efficiency(256, 256) == pytest.approx(0.5)
    assert kernels.depth_efficiency(8192) > kernels.depth_efficiency(1024) > kernels.depth_efficiency(128)
    assert kernels.depth_efficiency(1024, 0.0) == 1.0


def test_gemm_efficiency_is_a_fraction():
    for m, n, k in [(1, 1, 1), (7, 4096, 4096), (4096, 4096, 4096), (10**6, 3, 17)]:
        assert 0.0 < kernels.gemm_efficiency(m, n, k, 132) <= 1.0


def test_flash_attention_fraction_rises_with_sequence_and_is_clamped():
    lo, hi = kernels.FLASH_ATTENTION_POINTS[0][1], kernels.FLASH_ATTENTION_POINTS[-1][1]
    assert kernels.flash_attention_fraction(1) == lo
    assert kernels.flash_attention_fraction(10**7) == hi
    assert lo < kernels.flash_attention_fraction(2048) < hi


def test_memory_pass_formulas():
    assert kernels.unfused_attention_bytes(2, 4, 8, 16, 2) == 4 * 2 * 4 * 8 * 16 * 2
    assert kernels.sampling_bytes(3, 1000) == 3 * 1000 * 4
    assert kernels.conv_epilogue_bytes(10, 2) == 2 * kernels.CONV_EPILOGUE_KERNELS * 10 * 2
    gated = kernels.elementwise_bytes(1, 8, 32, 8, 4, 2, gated=True)
    plain = kernels.elementwise_bytes(1, 8, 32, 8, 4, 2, gated=False)
    assert gated - plain == 32 * 2  # the gated product reads one more ffn-wide tensor
    assert kernels.step_overhead_s(-5) == 0.0 and kernels.step_overhead_s(250) == pytest.approx(250e-6)


# ---- in the cost model -----------------------------------------------------------------------


_SERVING = Serving(batch=8, prompt=1024, gen=64)
_CHOICE = Choice()


def _est(model="llama-3.1-8b", hw=H100, serving=_SERVING, choice=_CHOICE, **opts):
    return estimate_inference(load_arch(model), load_device(hw), Layout(), serving, choice, options=RuntimeSettings(**opts))


def test_fp8_gemms_reach_a_smaller_share_of_their_peak_than_bf16():
    dev = load_device(H100)
    assert dev.efficiency.max_for("fp8") < dev.efficiency.max_for("bf16") == dev.efficiency.compute_max
    bf16 = _est(serving=Serving(batch=32, prompt=2048, gen=1))
    fp8 = _est(serving=Serving(batch=32, prompt=2048, gen=1), choice=Choice(weights="fp8-e4m3", activations="fp8-e4m3", kv="fp8-e4m3"))
    lin = lambda e: sum(o.compute_s * o.count for o in e.prefill.ops if o.kind == LINEAR)  # noqa: E731
    # Twice the peak, but not twice the speed: the FP8 MAMF share is below the BF16 one (same
    # shapes, so the wave and depth terms cancel).
    ratio = lin(bf16) / lin(fp8)
    assert ratio == pytest.approx(2.0 * dev.efficiency.max_for("fp8") / dev.efficiency.compute_max, rel=1e-3)
    assert ratio < 1.8


def test_unfused_elementwise_engine_is_slower_and_shows_the_passes():
    fused = _est()
    unfused = _est(fused_elementwise=False)
    assert unfused.ttft_s > fused.ttft_s and unfused.tpot_s > fused.tpot_s
    rows = [o for o in unfused.prefill.ops if o.kind == "elementwise"]
    assert len(rows) == 1 and rows[0].count == load_arch("llama-3.1-8b").num_layers and rows[0].activation_bytes > 0
    assert not [o for o in fused.prefill.ops if o.kind == "elementwise"]


def test_unfused_attention_pays_the_score_matrix_in_prefill():
    fused = _est(serving=Serving(batch=4, prompt=4096, gen=2))
    unfused = _est(serving=Serving(batch=4, prompt=4096, gen=2), fused_attention=False)
    att = lambda e: next(o for o in e.prefill.ops if o.kind == ATTENTION)  # noqa: E731
    assert att(unfused).activation_bytes > 10 * att(fused).activation_bytes
    assert unfused.ttft_s > fused.ttft_s


def test_engine_step_overhead_is_paid_once_per_forward_step():
    base = _est()
    slow = _est(step_overhead_s=1e-3)
    assert slow.ttft_s == pytest.approx(base.ttft_s + 1e-3, rel=1e-9)
    assert slow.tpot_s == pytest.approx(base.tpot_s + 1e-3, rel=1e-9)


def test_compute_share_slows_compute_bound_prefill_not_weight_streaming_decode():
    full = _est(serving=Serving(batch=1, prompt=4096, gen=64))
    third = _est(serving=Serving(batch=1, prompt=4096, gen=64), compute_share=1 / 3)
    assert third.ttft_s > 2.5 * full.ttft_s
    assert third.tpot_s < 1.2 * full.tpot_s


def test_chunked_prefill_bounds_activations_so_more_sequences_fit():
    arch, dev = load_arch("llama-3.1-8b"), load_device(H100)
    s = Serving(batch=1, prompt=8192, gen=128)
    whole = max_batch(arch, dev, Layout(), s, Choice(), options=RuntimeSettings())
    chunked = max_batch(arch, dev, Layout(), s, Choice(), options=RuntimeSettings(prefill_chunk_tokens=8192))
    assert chunked > whole


def test_kv_memory_fraction_leaves_room_outside_the_kv_pool():
    arch, dev = load_arch("llama-3.1-8b"), load_device(H100)
    s = Serving(batch=1, prompt=1024, gen=1024)
    full = max_batch(arch, dev, Layout(), s, Choice(), options=RuntimeSettings(prefill_chunk_tokens=8192))
    part = max_batch(arch, dev, Layout(), s, Choice(), options=RuntimeSettings(prefill_chunk_tokens=8192, kv_memory_fraction=0.5))
    assert 0.4 * full < part < 0.6 * full


def test_compute_unit_prices_the_named_unit():
    # Snapdragon: the first unit is the NPU; ExecuTorch's XNNPACK delegate runs on the CPU cores.
    npu = _est("llama-3.2-1b", "snapdragon-8-gen-3", Serving(batch=1, prompt=256, gen=8), Choice(weights="fp16", activations="fp16", kv="fp16"))
    cpu = _est("llama-3.2-1b", "snapdragon-8-gen-3", Serving(batch=1, prompt=256, gen=8), Choice(weights="fp16", activations="fp16", kv="fp16"), compute_unit="cpu")
    assert cpu.ttft_s > 5 * npu.ttft_s
    # A unit the device lacks falls back to the default unit rather than failing.
    other = _est("llama-3.2-1b", "snapdragon-8-gen-3", Serving(batch=1, prompt=256, gen=8), Choice(weights="fp16", activations="fp16", kv="fp16"), compute_unit="tpu")
    assert other.ttft_s == pytest.approx(npu.ttft_s, rel=1e-12)


def test_dynamic_int8_activations_price_a_w4_16bit_linear_as_the_8da4w_program_runs():
    # ExecuTorch exports int4 weights with fp16 activations as 8da4w: XNNPACK quantizes the activations
    # per token, so the linear layers compute in int8, as an int8-activation scheme does.
    s = Serving(batch=1, prompt=256, gen=64)
    dyn = {"compute_unit": "cpu", "dynamic_act_quant": "int8"}
    plain = {"compute_unit": "cpu"}
    w4a16 = Choice(weights="int4-g32", activations="fp16", kv="fp16")
    w4a8 = Choice(weights="int4-g32", activations="int8", kv="fp16")
    priced = _est("llama-3.2-1b", "snapdragon-8-gen-3", s, w4a16, **dyn)
    as_planned = _est("llama-3.2-1b", "snapdragon-8-gen-3", s, w4a16, **plain)
    int8 = _est("llama-3.2-1b", "snapdragon-8-gen-3", s, w4a8, **plain)
    assert priced.tpot_s < 0.85 * as_planned.tpot_s  # W4A16 dequantizes the weights to fp16 first
    # The layer reads and writes its activations in the planned fp16; only its arithmetic is int8.
    lin = lambda e: [o for o in e.prefill.ops if o.kind == LINEAR]  # noqa: E731
    assert [o.activation_bytes for o in lin(priced)] == pytest.approx([o.activation_bytes for o in lin(as_planned)])
    assert {o.precision for o in lin(priced)} == {"int8"} and {o.precision for o in lin(as_planned)} == {"fp16"}
    assert priced.tpot_s == pytest.approx(int8.tpot_s, rel=0.1)
    assert priced.ttft_s == pytest.approx(int8.ttft_s, rel=0.1)
    # Layers without integer weights, and int8 activations already, are unchanged.
    fp16 = Choice(weights="fp16", activations="fp16", kv="fp16")
    a = _est("llama-3.2-1b", "snapdragon-8-gen-3", s, fp16, **dyn)
    b = _est("llama-3.2-1b", "snapdragon-8-gen-3", s, fp16, **plain)
    assert a.tpot_s == pytest.approx(b.tpot_s, rel=1e-12) and a.ttft_s == pytest.approx(b.ttft_s, rel=1e-12)
    c = _est("llama-3.2-1b", "snapdragon-8-gen-3", s, w4a8, **dyn)
    assert c.tpot_s == pytest.approx(int8.tpot_s, rel=1e-12)


def test_dynamic_activations_rule():
    from planner.opcost import dynamic_activations

    phone, tpu = load_device("snapdragon-8-gen-3"), load_device("tpu-v4")
    assert dynamic_activations(phone, Choice(weights="int8", activations="fp32", kv="fp16"), "int8") == "int8"
    assert dynamic_activations(phone, Choice(weights="int4-g128", activations="fp16", kv="fp16"), "int8") == "int8"
    assert dynamic_activations(phone, Choice(weights="int4-g128", activations="fp16", kv="fp16"), None) is None
    assert dynamic_activations(phone, Choice(weights="fp16", activations="fp16", kv="fp16"), "int8") is None
    assert dynamic_activations(phone, Choice(weights="int8", activations="int8", kv="fp16"), "int8") is None
    if tpu.supports("int8") != "native":
        assert dynamic_activations(tpu, Choice(weights="int8", activations="bf16", kv="bf16"), "int8") is None


def test_executorch_phone_estimate_says_its_linears_run_dynamic_int8():
    from planner.api import estimate

    est = estimate("llama-3.2-1b", "snapdragon-8-gen-3", weights="int4-g32", activations="fp16", kv="fp16", prompt=64, gen=16)
    assert est.engine_assumptions["dynamic_act_quant"] == "int8"
    assert any("compute with int8 activations" in n and "executorch" in n for n in est.notes)
    # export_llama writes int8 weights weight-only (--quantization_mode int8): those layers keep fp16 activations.
    w8 = estimate("llama-3.2-1b", "snapdragon-8-gen-3", weights="int8", activations="fp16", kv="fp16", prompt=64, gen=16)
    assert w8.engine_assumptions["weight_only_formats"] == ["int8"]
    assert not any("compute with int8 activations" in n for n in w8.notes)
    w8a8 = estimate("llama-3.2-1b", "snapdragon-8-gen-3", weights="int8", activations="int8", kv="fp16", prompt=64, gen=16)
    assert w8.tpot_s > 1.2 * w8a8.tpot_s
    # The Optimum route (Gemma) writes 8da8w: there int8 weights do run with dynamic int8 activations.
    g8 = estimate("gemma-2-9b", "snapdragon-8-gen-3", weights="int8", activations="fp16", kv="fp16", prompt=64, gen=16)
    assert g8.engine_assumptions["weight_only_formats"] == []
    assert any("int8 weights compute with int8 activations" in n for n in g8.notes)
    # A CNN's int8 convolutions run on calibrated int8 inputs whatever the plan's activations.
    r16 = estimate("resnet-50", "snapdragon-8-gen-3", weights="int8", activations="fp16")
    r8 = estimate("resnet-50", "snapdragon-8-gen-3", weights="int8", activations="int8")
    assert r16.latency_s == pytest.approx(r8.latency_s, rel=0.02)
    assert any("calibrated static int8" in n for n in r16.notes)
    fp = estimate("llama-3.2-1b", "snapdragon-8-gen-3", weights="fp16", activations="fp16", kv="fp16", prompt=64, gen=16)
    assert not any("compute with int8 activations" in n for n in fp.notes)
    # A GPU serving engine has no such rule: W4A16 stays W4A16 there.
    gpu = estimate("llama-3.1-8b", "h100-sxm", weights="int4-g128", activations="fp16", kv="fp16", engine="vllm", prompt=64, gen=16)
    assert gpu.engine_assumptions["dynamic_act_quant"] is None
    assert not any("compute with int8 activations" in n for n in gpu.notes)


@pytest.mark.parametrize("field, value", [("compute_share", 0.0), ("compute_share", 1.5), ("compute_share", math.nan),
                                          ("kv_memory_fraction", 0.0), ("kv_memory_fraction", 2.0),
                                          ("prefill_chunk_tokens", -1), ("prefill_chunk_tokens", 1.5),
                                          ("prefill_chunk_tokens", True), ("step_overhead_s", -1e-6),
                                          ("step_overhead_s", math.nan)])
def test_runtime_settings_refuse_shares_outside_0_1(field, value):
    with pytest.raises(EstimateError) as exc:
        RuntimeSettings(**{field: value})
    assert exc.value.field == field


# ---- profiles --------------------------------------------------------------------------------


def test_gpu_profiles_declare_their_sm_counts_and_round_trip():
    for dev_id, sms in [("h100-sxm", 132), ("a100-80gb-sxm", 108), ("t4", 40), ("mi250x-gcd", 110)]:
        dev = load_device(dev_id)
        assert dev.efficiency.cores == sms
        again = load_device_from_dict(device_to_dict(dev))
        assert again.efficiency.cores == sms and dict(again.efficiency.precision_max) == dict(dev.efficiency.precision_max)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "132"])
def test_bad_core_count_is_named(bad):
    data = device_to_dict(load_device(H100))
    data["efficiency"]["cores"] = bad
    with pytest.raises(TierwiseError, match="cores"):
        load_device_from_dict(data)


@pytest.mark.parametrize("bad", [{"fp8": 1.5}, {"fp8": 0}, {"fp8": "high"}, [0.7]])
def test_bad_precision_max_is_named(bad):
    data = device_to_dict(load_device(H100))
    data["efficiency"]["precision_max"] = bad
    with pytest.raises((TierwiseError, SpecError), match="precision_max"):
        load_device_from_dict(data)


def test_engine_profiles_carry_kernel_facts():
    hf, trt, lc = (load_engine(e).runtime for e in ("hf-transformers", "trtllm", "llamacpp"))
    assert trt.fused_attention and trt.fused_elementwise
    assert hf.fused_attention and not hf.fused_elementwise
    assert not lc.fused_attention and not lc.fused_elementwise
    kw = engine_settings(trt)
    assert kw["prefill_chunk_tokens"] == trt.chunk_tokens and kw["kv_memory_fraction"] == trt.memory_fraction
    assert engine_settings(hf)["prefill_chunk_tokens"] == 0 and engine_settings(hf)["kv_memory_fraction"] == 1.0
    RuntimeSettings(**kw)  # every engine's facts make valid settings
    for e in ("vllm", "sglang", "executorch", "mlc-llm", "tvm", "deepspeed-inference", "vitis-ai", "sambaflow"):
        RuntimeSettings(**engine_settings(load_engine(e).runtime))


@pytest.mark.parametrize("key, value", [("step_overhead_us", -3), ("step_overhead_us", "fast"), ("fused_attention", "yes"),
                                        ("compute_unit", 7), ("cpu_int8_gemm", "tinyblas"), ("cpu_int8_gemm", 3),
                                        ("dynamic_act_quant", "int4"), ("dynamic_act_quant", 8),
                                        ("design_peak_tops", {"int9": 1.0}), ("design_peak_tops", {"int8": -1.0}),
                                        ("design_peak_tops", 5), ("design_peak_tops", {})])
def test_bad_engine_kernel_facts_are_named(key, value):
    import yaml
    from importlib import resources

    text = resources.files("profiles").joinpath("engines/trtllm.yaml").read_text()
    data = yaml.safe_load(text)
    data["runtime"][key] = value
    with pytest.raises(TierwiseError, match=key):
        load_engine_from_dict(data)


def test_training_keeps_the_size_curve():
    # The training model calls op_cost without runtime settings: no wave term, no FP8 MAMF change.
    from planner.opcost import op_cost
    from planner.workload import Phase, build_workload

    arch, dev = load_arch("llama-3.1-8b"), load_device(H100)
    op = next(o for b in build_workload(arch).blocks for o in b.ops if o.kind == LINEAR)
    ph = Phase(name="prefill", batch=1, tokens=130)
    plain, _ = op_cost(op, ph, dev, Choice(), Layout(), name=op.name)
    eff = dev.efficiency
    assert plain.compute_s == pytest.approx(plain.flops / (dev.peak_flops_per_s("bf16") * eff.compute(plain.flops)), rel=1e-9)
    shaped, _ = op_cost(op, ph, dev, Choice(), Layout(), name=op.name, options=RuntimeSettings())
    assert not math.isclose(shaped.compute_s, plain.compute_s)


# ---- an engine's quantized CPU matmul (llama.cpp) ----------------------------------------------


def test_cpu_int8_gemm_share_follows_the_isa():
    # int8 peak 4x the fp32 peak (one VNNI instruction per 32 MACs) against 2x (VPMADDUBSW +
    # VPMADDWD): the same block instructions cost the VNNI core a larger share of its peak.
    assert kernels.cpu_int8_gemm_fraction(4.0, 4.0, 1.0) == pytest.approx(1 / 5)
    assert kernels.cpu_int8_gemm_fraction(4.0, 2.0, 1.0) == pytest.approx(1 / 3)
    assert kernels.cpu_int8_gemm_fraction(0.0, 4.0, 1.0) == pytest.approx(1.0)
    # Achieved int8 rate = share x peak: nearly the same on both ISAs (the block work dominates).
    assert 4.0 * kernels.cpu_int8_gemm_fraction(4.0, 4.0, 1.0) == pytest.approx(0.8)
    assert 2.0 * kernels.cpu_int8_gemm_fraction(4.0, 2.0, 1.0) == pytest.approx(2 / 3)
    for bad in ((-1.0, 4.0, 1.0), (4.0, 0.0, 1.0), (4.0, 4.0, 0.0)):
        with pytest.raises(ValueError):
            kernels.cpu_int8_gemm_fraction(*bad)


def _llamacpp_cpu(device: str, weights: str, activations: str, prompt: int, gen: int, engine: bool):
    kw = engine_settings(load_engine("llamacpp").runtime)
    if not engine:
        kw["cpu_int8_block_ops"] = None
    return estimate_inference(load_arch("llama-3.1-8b"), load_device(device), Layout(), Serving(batch=1, prompt=prompt, gen=gen),
                              Choice(weights=weights, activations=activations, kv="fp16"), options=RuntimeSettings(**kw))


@pytest.mark.parametrize("device, share", [("ryzen-9-7950x", 1 / 6), ("threadripper-pro-5975wx", 2 / 7)])
def test_llamacpp_prices_its_quantized_cpu_matmul(device, share):
    """A Q8_0 prefill on CPU cores runs at the block kernel's share of the int8 peak, not at the
    device's best-shape fraction; decode (a weight stream) and the fp16 path do not change."""
    assert kernels.CPU_INT8_GEMM_BLOCK_OPS["ggml"] == 5.0  # the all-row fit (benchmarks/fitted.py)
    best = load_device(device).efficiency.max_for("int8")
    on = _llamacpp_cpu(device, "int8-g32", "int8", 512, 0, True)
    off = _llamacpp_cpu(device, "int8-g32", "int8", 512, 0, False)
    gemm = [o for o in on.prefill.ops if o.kind == LINEAR]
    gemm_off = {o.name: o for o in off.prefill.ops if o.kind == LINEAR}
    for o in gemm:
        assert o.bound == "compute"
        assert o.compute_s == pytest.approx(gemm_off[o.name].compute_s * best / share, rel=1e-3)  # peaks: int8 ≈ 4x / 2x fp32
    assert on.ttft_s > 1.5 * off.ttft_s
    dec_on, dec_off = (_llamacpp_cpu(device, "int8-g32", "int8", 16, 64, e).tpot_s for e in (True, False))
    assert dec_on == pytest.approx(dec_off, rel=0.02)
    f16_on, f16_off = (_llamacpp_cpu(device, "fp16", "fp16", 512, 0, e).ttft_s for e in (True, False))
    assert f16_on == pytest.approx(f16_off)


def test_llamacpp_on_a_gpu_keeps_the_gpu_gemm_model():
    kw = engine_settings(load_engine("llamacpp").runtime)
    assert kw["cpu_int8_block_ops"] is not None
    arch, dev = load_arch("llama-3.1-8b"), load_device("rtx-4090")
    args = (arch, dev, Layout(), Serving(batch=4, prompt=512, gen=0), Choice(weights="int8-g32", activations="fp16", kv="fp16"))
    with_engine = estimate_inference(*args, options=RuntimeSettings(**kw))
    kw["cpu_int8_block_ops"] = None
    assert with_engine.ttft_s == pytest.approx(estimate_inference(*args, options=RuntimeSettings(**kw)).ttft_s)


def test_bad_block_ops_are_named():
    with pytest.raises(EstimateError, match="block instructions") as info:
        RuntimeSettings(cpu_int8_block_ops=-1.0)
    assert info.value.field == "cpu_int8_block_ops"


# ---- an engine that dequantizes weights with a kernel of its own (DeepSpeed-Inference int8) -------


def _ds_decode(weights: str, separate: bool) -> float:
    from planner.engines import support

    dev = load_device("a100-80gb-sxm")
    kw = engine_settings(support("deepspeed-inference", dev).runtime)
    assert kw["separate_dequant"] is True
    kw["separate_dequant"] = separate
    est = estimate_inference(load_arch("llama-2-7b"), dev, Layout(), Serving(batch=1, prompt=16, gen=64),
                             Choice(weights=weights, activations="fp16", kv="fp16"), options=RuntimeSettings(**kw))
    return est.tpot_s


def test_separate_dequant_pass_makes_int8_decode_slower_than_fp16():
    """DeepSpeed's int8 GEMM writes an fp16 copy of the weights and cuBLAS reads it back: a
    weight-bound decode moves 1 + 2 + 2 bytes per weight instead of 2 (fp16) or ~1 (fused)."""
    fp16 = _ds_decode("fp16", True)
    assert _ds_decode("fp16", True) == pytest.approx(_ds_decode("fp16", False))  # nothing to dequantize
    fused, separate = _ds_decode("int8", False), _ds_decode("int8", True)
    assert fused < fp16 < separate
    assert separate / fp16 == pytest.approx(2.5, rel=0.2)


def test_separate_dequant_is_a_named_engine_fact():
    import yaml
    from importlib import resources

    data = yaml.safe_load(resources.files("profiles").joinpath("engines/deepspeed-inference.yaml").read_text())
    data["runtime"]["separate_dequant"] = "sometimes"
    with pytest.raises(TierwiseError, match="separate_dequant"):
        load_engine_from_dict(data)


def test_rotary_elementwise_passes_are_priced_only_for_models_with_rotary_positions():
    from planner.kernels import elementwise_bytes, elementwise_kernels

    with_rope = elementwise_bytes(10, 4096, 11008, 4096, 1024, 2.0, gated=True, rotary=True)
    without = elementwise_bytes(10, 4096, 11008, 4096, 1024, 2.0, gated=True, rotary=False)
    assert with_rope - without == 10 * 2 * (4096 + 1024) * 2.0
    assert elementwise_kernels(False, rotary=False) == 3 and elementwise_kernels(True) == 6


def test_an_engine_design_peak_bounds_the_fabric_peak():
    # Vitis AI runs one fixed DPU design on an Alveo U50: 7,373 int8 GOPS (PG367), below the 10.2 TOPS
    # the card's DSP slices could hold for a design of the whole fabric.
    from planner.api import estimate
    from planner.engines import support

    dev = load_device("alveo-u50")
    sup = support(load_engine("vitis-ai"), dev)
    assert len(sup.schemes) == 1  # the generic FPGA target and the U50's give one scheme, not two
    settings = engine_settings(sup.runtime)
    assert dict(settings["design_peak_flops"]) == {"int8": pytest.approx(7.373e12)}
    arch, s, int8 = load_arch("resnet-50"), Serving(batch=6, prompt=1, gen=0), Choice(weights="int8", activations="int8", kv="int8")
    capped = estimate_inference(arch, dev, Layout(), s, int8, options=RuntimeSettings(**settings))
    fabric = estimate_inference(arch, dev, Layout(), s, int8, options=RuntimeSettings(**{**settings, "design_peak_flops": ()}))
    conv = lambda e: sum(o.compute_s * o.count for o in e.prefill.ops if o.kind == "conv")  # noqa: E731
    assert conv(capped) / conv(fabric) == pytest.approx(dev.peak_flops_per_s("int8") / 7.373e12, rel=1e-6)
    est = estimate("resnet-50", "alveo-u50", batch=6)
    assert est.engine_assumptions["design_peak_tops"] == {"int8": 7.373}
    assert any("published peak is 7.373 int8 TOPS" in n and "not at the 10.2" in n for n in est.notes)
    # The design replaces the device's roof, above it as well (the U280's 14 engines run their DSPs at twice
    # the clock: 17.2 TOPS against 15.4 derived for a design of the whole fabric).
    high = estimate_inference(arch, dev, Layout(), s, int8, options=RuntimeSettings(**{**settings, "design_peak_flops": (("int8", 20e12),)}))
    assert conv(fabric) / conv(high) == pytest.approx(20e12 / dev.peak_flops_per_s("int8"), rel=1e-6)
    u280 = estimate("resnet-50", "alveo-u280", batch=14)
    assert any("published peak is 17.203 int8 TOPS" in n for n in u280.notes)
    assert engine_settings(support(load_engine("vitis-ai"), load_device("zcu102")).runtime)["design_peak_flops"] == ()


def test_a_llama_plan_on_a_phone_prices_int8_weights_as_the_weight_only_program_export_writes():
    # export_llama writes int8 Linear weights weight-only: a plan for it never pairs int8 weights with int8
    # activations, so the TPOT it promises is the exported program's; an estimate of W8A8 says it is a what-if.
    from planner.api import estimate, plan

    p = plan("llama-3.2-1b", "snapdragon-8-gen-3", formats=["int8"], activations="int8", kv="fp16", prompt=64, gen=16)
    acts = {c.activations for c in p.choices.values() if c.weights == "int8"}
    assert acts and "int8" not in acts
    est = estimate("llama-3.2-1b", "snapdragon-8-gen-3", weights="int8", activations="fp16", kv="fp16", prompt=64, gen=16)
    p16 = plan("llama-3.2-1b", "snapdragon-8-gen-3", formats=["int8"], activations="fp16", kv="fp16", prompt=64, gen=16)
    assert p16.predicted.tpot_s == pytest.approx(est.tpot_s, rel=1e-6)
    assert any("weight-only" in n and "compute in fp16" in n for n in est.notes)
    w8a8 = estimate("llama-3.2-1b", "snapdragon-8-gen-3", weights="int8", activations="int8", kv="fp16", prompt=64, gen=16)
    assert any(n.startswith("what-if: int8 weights with int8 activations") for n in w8a8.notes)
    assert not any("compute in int8" in n for n in w8a8.notes)


def test_engines_show_states_design_peak_and_dynamic_activations(cli):
    import json

    code, out, _ = cli("engines", "show", "vitis-ai", "--hardware", "alveo-u50")
    assert code == 0 and "7.373 int8 TOPS peak" in out
    code, out, _ = cli("engines", "show", "vitis-ai", "--hardware", "alveo-u50", "--json")
    assert json.loads(out)["runtime"]["design_peak_tops"] == {"int8": 7.373}
    code, out, _ = cli("engines", "show", "executorch", "--hardware", "snapdragon-8-gen-3")
    assert code == 0 and "int8 activations, quantized per token at run time" in out
