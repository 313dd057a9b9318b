"""Kernel-level training facts (planner/kernels_train.py) and how the training estimate uses them:
attention kernels by generation and architecture, GEMM wave quantization, fused Q/K/V, ZeRO-3
collectives every micro-batch, engine TP overlap and FP8 cast passes."""

import pytest

from hwmodels import load_device
from planner.arch import load_arch
from planner.errors import EstimateError
from planner.kernels_train import (
    ATTENTION_KERNEL_TABLE,
    MODEL_SHAPE_FRACTION,
    attention_kernel,
    fused_qkv,
    gemm_efficiency,
    wave_efficiency,
)
from planner.training import TrainingConfig, estimate_training

H100 = load_device("h100-sxm")
A100 = load_device("a100-80gb-sxm")


def test_attention_kernel_fractions_are_the_papers():
    fa2 = ATTENTION_KERNEL_TABLE["flash2"]
    assert fa2.fwd["ampere"] == 0.73 and fa2.bwd["ampere"] == 0.63  # FA2 §4.1
    assert fa2.fwd["hopper"] == pytest.approx(335 / 989.4, abs=0.01)  # 335 TFLOP/s on H100
    tri = ATTENTION_KERNEL_TABLE["flash-triton"]
    assert tri.fwd["ampere"] == pytest.approx(0.73 / 1.4) and tri.bwd["ampere"] == pytest.approx(0.63 / 2)
    assert ATTENTION_KERNEL_TABLE["flash3"].fwd["hopper"] == pytest.approx(740 / 989.4, abs=0.01)
    for k in ATTENTION_KERNEL_TABLE.values():
        assert all(0 < f <= 1 for f in (*k.fwd.values(), *k.bwd.values())), k.name


def test_engine_picks_its_attention_kernel_per_architecture():
    assert attention_kernel("megatron-core", H100, "fused").name == "flash3"
    assert attention_kernel("megatron-core", A100, "fused").name == "flash2"  # FA3 needs sm_90
    assert attention_kernel("fsdp", H100, "fused").name == "flash2"
    assert attention_kernel(None, A100, "fused").name == "flash2"
    assert attention_kernel("fsdp", A100, "flash-triton").name == "flash-triton"
    # no published figure on this architecture: the GEMM curve applies
    assert attention_kernel("fsdp", load_device("v100-16gb"), "fused") is None
    assert attention_kernel("fsdp", load_device("tpu-v4"), "fused") is None


def test_wave_quantization_staircase():
    # 108 SMs: one full wave of 128x128 tiles is efficient, one tile more opens a nearly empty wave
    full = wave_efficiency(A100, 108 * 128, 128)
    assert full == pytest.approx(1.0)
    # 109 tiles of the largest tile: the best tile choice still wastes part of a wave
    assert wave_efficiency(A100, 109 * 256, 128) < 1.0
    assert wave_efficiency(A100, 2048, 1024) == pytest.approx(256 / 324)  # 128x64 tiles, 3 waves
    assert wave_efficiency(A100, 65536, 12288) > 0.99  # large training GEMMs: negligible
    assert wave_efficiency(load_device("cpu-host"), 100, 100) == 1.0  # no SM count on record
    assert gemm_efficiency(A100, 65536, 12288) == pytest.approx(MODEL_SHAPE_FRACTION, rel=0.01)
    assert gemm_efficiency(load_device("tpu-v4"), 4096, 4096) == 1.0  # not a GPU: its own profile


def test_fused_qkv_by_model_family_and_engine():
    assert fused_qkv(None, "mpt") and fused_qkv(None, "gpt2") and fused_qkv("megatron-core", "llama")
    assert not fused_qkv("fsdp", "llama") and not fused_qkv(None, "mistral")


def _train(arch="llama-3.1-8b", dev=H100, **kw):
    base = dict(global_batch=16, micro_batch=2, seq=4096, dp=8, zero=3, recompute="full")
    base.update(kw)
    return estimate_training(load_arch(arch), dev, TrainingConfig(**base))


def test_flash_attention_generations_order_the_step_time():
    t = {k: _train(attention=k, seq=16384, micro_batch=1, global_batch=8).step_time_s for k in ("flash-triton", "flash2", "flash3")}
    assert t["flash3"] < t["flash2"] < t["flash-triton"]
    # long sequences on FA2 at 34% of the H100 peak: attention is a visible share of the step
    short = _train(seq=1024, micro_batch=8, global_batch=64)
    long = _train(seq=16384, micro_batch=1, global_batch=8)
    assert long.tokens_per_s_per_device < 0.9 * short.tokens_per_s_per_device


def test_zero3_reduce_scatters_every_micro_batch():
    one = _train(global_batch=16, micro_batch=2)  # 1 micro-batch per rank
    four = _train(global_batch=64, micro_batch=2)  # 4 micro-batches per rank
    assert four.microbatches == 4 * one.microbatches
    assert four.dp_comm_s == pytest.approx(4 * one.dp_comm_s, rel=1e-6)
    # ZeRO-1 reduces once per step whatever the accumulation
    z1a, z1b = _train(zero=1, global_batch=16), _train(zero=1, global_batch=64)
    assert z1b.dp_comm_s == pytest.approx(z1a.dp_comm_s, rel=1e-6)


def test_zero3_exposed_traffic_grows_when_compute_cannot_hide_it():
    # slow inter-node gathers of a large model on tiny micro-batches are exposed; on one NVLink node mostly hidden
    near = _train(arch="llama-3.1-70b", dp=8, global_batch=8, micro_batch=1, seq=1024)
    far = _train(arch="llama-3.1-70b", dp=64, global_batch=64, micro_batch=1, seq=1024)
    assert far.dp_exposed_s > near.dp_exposed_s > 0
    assert near.dp_exposed_s < 0.2 * near.dp_comm_s


def test_engine_tp_overlap_hides_tensor_parallel_traffic():
    kw = dict(tp=8, dp=1, zero=0, global_batch=8, micro_batch=1, seq=4096, recompute="selective", sequence_parallel=True)
    plain = _train(arch="llama-3.1-70b", tp_comm_overlap=False, **kw)
    hidden = _train(arch="llama-3.1-70b", tp_comm_overlap=True, **kw)
    assert plain.tp_comm_s > 0 and hidden.tp_comm_s < 0.5 * plain.tp_comm_s
    assert hidden.step_time_s < plain.step_time_s
    # the engine profile decides when the config does not: Megatron-Core overlaps, FSDP does not
    mc = _train(arch="llama-3.1-70b", engine="megatron-core", **kw)
    fs = _train(arch="llama-3.1-70b", engine="fsdp", **kw)
    assert mc.tp_comm_s < fs.tp_comm_s
    with pytest.raises(EstimateError) as exc:
        TrainingConfig(global_batch=8, tp_comm_overlap="yes")
    assert exc.value.field == "tp_comm_overlap"


def test_fp8_training_pays_cast_passes_but_beats_bf16():
    bf16 = _train()
    fp8 = _train(weights="fp8-e4m3", activations="fp8-e4m3")
    assert fp8.tokens_per_s_per_device > bf16.tokens_per_s_per_device
    # less than the 2x of the FP8 peak: casts, attention in 16-bit and memory passes do not speed up
    assert fp8.tokens_per_s_per_device < 1.9 * bf16.tokens_per_s_per_device


def test_named_attention_kernel_is_validated():
    with pytest.raises(EstimateError) as exc:
        TrainingConfig(global_batch=8, attention="flash9")
    assert exc.value.field == "attention"


def test_unknown_or_malformed_engine_is_refused_or_neutral():
    with pytest.raises(EstimateError) as exc:
        TrainingConfig(global_batch=8, engine="")
    assert exc.value.field == "engine"
    with pytest.raises(EstimateError):
        TrainingConfig(global_batch=8, engine=3)
    # an id the catalog does not know prices no overlap (the request layer names the bad engine)
    est = _train(arch="llama-3.1-70b", tp=8, dp=1, zero=0, global_batch=8, micro_batch=1, engine="no-such-engine")
    assert est.tp_comm_s > 0


def test_request_layer_prices_the_engine_it_resolves():
    from planner.api import estimate_training as api_train

    kw = dict(tp=2, dp=4, global_batch=16, micro_batch=1, seq=4096, recompute="full", sequence_parallel=True)
    mc = api_train("llama-3.1-8b", "h100-sxm", engine="megatron-core", **kw)
    fs = api_train("llama-3.1-8b", "h100-sxm", engine="fsdp", **kw)
    assert mc.engine == "megatron-core" and fs.engine == "fsdp"
    assert mc.config.engine == "megatron-core"
    assert mc.tp_comm_s < fs.tp_comm_s  # Megatron-Core overlaps TP traffic, FSDP does not
    assert mc.step_time_s < fs.step_time_s  # and runs FA3-class attention on Hopper


def test_fp8_gemms_reach_a_smaller_share_of_their_peak():
    from hwmodels import list_devices, load_device

    from planner.kernels_train import fp8_mamf_ratio

    assert gemm_efficiency(H100, 65536, 12288, "fp8") == pytest.approx(
        gemm_efficiency(H100, 65536, 12288) * 0.709 / 0.803)
    ratios = {d: fp8_mamf_ratio(load_device(d)) for d in list_devices() if load_device(d).device_class == "gpu"}
    assert all(0.8 < r <= 1.0 for r in ratios.values())
    assert ratios["h100-sxm"] < 1.0 and ratios["a100-80gb-sxm"] == 1.0
    assert gemm_efficiency(A100, 65536, 12288, "fp8") == gemm_efficiency(A100, 65536, 12288)  # no FP8 MAMF on record
