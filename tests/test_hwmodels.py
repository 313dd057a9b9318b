"""Unit tests of the hardware math in hwmodels (spec objects, fallbacks, curves, FPGA roofs)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwmodels import (
    ComputeUnit,
    Efficiency,
    FormatSupport,
    FpgaResources,
    Link,
    MemoryTier,
    SpecError,
    UnsupportedPrecisionError,
    attainable_flops_per_s,
    fpga_peak_ops_per_s,
    load_device,
    mac_cost,
    ridge_point,
)
from hwmodels.format_support import format_family

# Alveo U280 resources (AMD DS963): 9,024 DSP48E2, 1,304K LUTs; 300 MHz, 80 % / 50 % usable.
U280 = FpgaResources(
    dsp_slices=9024, luts=1_304_000, bram_bytes=9.29e6, uram_bytes=35.39e6,
    clock_hz=300e6, dsp_usable=0.8, lut_usable=0.5, dsp_type="DSP48E2",
)


# ---- roofline -------------------------------------------------------------------------


def test_h100_sxm_bf16_ridge_point_is_295_flop_per_byte():
    # Dense bf16 989.4 TFLOP/s over 3.35 TB/s HBM3 (H100 SXM datasheet) = 295.3 FLOP/byte.
    # The scaling book's roofline.md quotes ~298 for the same part (it rounds the peak to
    # ~1e15); decode GEMVs (~1-2 FLOP/byte per sequence) sit far below it. Tolerance 1 %.
    h100 = load_device("h100-sxm")
    assert ridge_point(h100, "bf16") == pytest.approx(295, rel=0.01)
    assert ridge_point(h100, "bf16") == pytest.approx(989.4e12 / 3.35e12, rel=1e-9)


def test_attainable_flops_is_min_of_compute_and_bandwidth_roof():
    h100 = load_device("h100-sxm")
    assert attainable_flops_per_s(h100, 1.0, "bf16") == pytest.approx(3.35e12)
    assert attainable_flops_per_s(h100, 10_000.0, "bf16") == pytest.approx(989.4e12)
    with pytest.raises(ValueError):
        attainable_flops_per_s(h100, -1.0, "bf16")


# ---- peaks and fallbacks --------------------------------------------------------------


def test_missing_precision_falls_back_to_nearest_wider_one():
    # Hopper has no int4 tensor cores: int4 runs at the int8 rate (1978.9 TOPS dense, S2).
    assert load_device("h100-sxm").peak_flops_per_s("int4") == pytest.approx(1978.9e12)
    # A100 does have int4 tensor cores: 1248 TOPS dense (S1).
    assert load_device("a100-80gb-sxm").peak_flops_per_s("int4") == pytest.approx(1248e12)
    # T4 has no bf16 datapath: bf16 is computed in fp32 (8.1 TFLOP/s, S6), not at the fp16 rate.
    assert load_device("t4").peak_flops_per_s("bf16") == pytest.approx(8.1e12)
    # Volta: int8 values are exact in fp16, so int8 GEMMs run on the fp16 tensor cores (125).
    assert load_device("v100-16gb").peak_flops_per_s("int8") == pytest.approx(125e12)


def test_precision_without_any_wider_peak_raises_clear_error():
    sn40l = load_device("sn40l")  # only bf16 (published) and fp32 (estimated) peaks
    with pytest.raises(UnsupportedPrecisionError) as info:
        sn40l.peak_flops_per_s("fp64")
    assert "pcu" in str(info.value) and "bf16" in str(info.value)


def test_default_unit_is_the_first_that_can_run_the_precision():
    # The iPhone's Neural Engine has fp16/int8 only; a bf16 graph runs on the GPU,
    # whose nearest wider precision is fp32 (2.15 TFLOP/s, estimate in the profile).
    phone = load_device("iphone-15-pro")
    assert phone.peak_flops_per_s("bf16") == pytest.approx(2.15e12)
    with pytest.raises(UnsupportedPrecisionError, match="npu"):
        phone.peak_flops_per_s("bf16", unit="npu")


def test_sparse_speedup_per_unit_and_on_fabric():
    assert load_device("h100-sxm").sparse_2to4_speedup() == 2.0
    assert load_device("jetson-agx-orin").sparse_2to4_speedup("cpu") == 1.0
    assert load_device("alveo-u280").sparse_2to4_speedup() == 1.0
    with pytest.raises(KeyError):
        load_device("h100-sxm").sparse_2to4_speedup("fabric")


def test_sparse_2to4_doubles_dense_peak_only_where_hardware_has_it():
    assert load_device("h100-sxm").peak_flops_per_s("fp8", sparse_2to4=True) == pytest.approx(2 * 1978.9e12)
    assert load_device("t4").peak_flops_per_s("fp16", sparse_2to4=True) == pytest.approx(65e12)


def test_unit_selection_and_aliases():
    phone = load_device("iphone-15-pro")
    assert phone.peak_flops_per_s("int8") == pytest.approx(35e12)  # first unit = npu
    assert phone.peak_flops_per_s("fp16", unit="gpu") == pytest.approx(2.15e12)
    h100 = load_device("h100-sxm")
    assert h100.peak_flops_per_s("bfloat16") == h100.peak_flops_per_s("bf16")
    assert h100.peak_flops_per_s("fp8-e5m2") == h100.peak_flops_per_s("fp8")
    with pytest.raises(KeyError):
        phone.peak_flops_per_s("fp16", unit="tensor_core")
    with pytest.raises(ValueError, match="unknown compute precision"):
        h100.peak_flops_per_s("fp12")
    with pytest.raises(ValueError, match="number_kind"):
        h100.peak_flops_per_s("int8", number_kind="fixed")


def test_compute_unit_validation():
    with pytest.raises(SpecError, match="peak_tflops.fp9"):
        ComputeUnit(name="x", peak_flops_per_s={"fp9": 1.0})
    with pytest.raises(SpecError, match="positive"):
        ComputeUnit(name="x", peak_flops_per_s={"bf16": -1.0})
    with pytest.raises(SpecError, match="sparse_2to4_speedup"):
        ComputeUnit(name="x", peak_flops_per_s={"bf16": 1.0}, sparse_2to4_speedup=0.5)


# ---- formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("fp8", "fp8-e4m3"), ("FP8-E4M3", "fp8-e4m3"), ("int4", "int4"), ("int4-g128", "int4"),
        ("int4-g32", "int4"), ("int3-g64", "int3"), ("int2-g16", "int2"), ("cb4", "codebook"),
        ("cb3-g8", "codebook"), ("bfloat16", "bf16"), ("nvfp4", "nvfp4"), ("fp4", "fp4-e2m1"),
    ],
)
def test_format_family_aliases(name, family):
    assert format_family(name) == family


def test_supports_reports_native_emulated_unsupported():
    h100 = load_device("h100-sxm")
    assert h100.supports("fp8") == "native"
    assert h100.supports("int4-g32") == "emulated"
    assert h100.supports("cb4") == "emulated"
    assert h100.supports("fp64-bogus") == "unsupported"
    assert load_device("b200").supports("nvfp4") == "native"
    assert load_device("a100-80gb-sxm").supports("int4") == "native"
    assert load_device("t4").supports("bf16") == "emulated"


def test_format_support_validation():
    with pytest.raises(SpecError, match="native"):
        FormatSupport(native=frozenset({"fp7-e9m9"}), emulated=frozenset())
    with pytest.raises(SpecError, match="disjoint"):
        FormatSupport(native=frozenset({"int8"}), emulated=frozenset({"int8"}))


# ---- memory tiers and links -----------------------------------------------------------


def _flash(curve=((4096.0, 0.2e9), (65536.0, 1.5e9), (1048576.0, 4.0e9))):
    return MemoryTier(
        name="flash", role="storage", capacity_bytes=256e9, bandwidth_bytes_per_s=4.2e9,
        latency_s=80e-6, read_curve=curve,
    )


def test_read_bandwidth_log_log_interpolation_and_clamping():
    tier = _flash()
    # Geometric midpoint of 4 KiB and 64 KiB is 16 KiB; log-log interpolation gives the
    # geometric mean of 0.2 and 1.5 GB/s there.
    assert tier.read_bandwidth(16384) == pytest.approx(math.sqrt(0.2e9 * 1.5e9), rel=1e-9)
    assert tier.read_bandwidth(512) == pytest.approx(0.2e9)  # clamped below
    assert tier.read_bandwidth(1e9) == pytest.approx(4.0e9)  # clamped above
    assert tier.read_bandwidth() == pytest.approx(4.2e9)  # rated
    with pytest.raises(ValueError):
        tier.read_bandwidth(0)


def test_read_time_with_and_without_curve():
    tier = _flash()
    assert tier.read_time_s(0) == 0.0
    assert tier.read_time_s(4.2e9) == pytest.approx(1.0 + 80e-6)
    # With a curve, per-read latency is already inside the measured throughput.
    assert tier.read_time_s(1.5e9, chunk_bytes=65536) == pytest.approx(1.0 + 80e-6)
    plain = MemoryTier(name="dram", role="host", capacity_bytes=1e9, bandwidth_bytes_per_s=1e9, latency_s=1e-6)
    # No curve: 10 serial reads of 1 kB, each paying 1 us of latency.
    assert plain.read_time_s(1e4, chunk_bytes=1e3) == pytest.approx(1e-5 + 10 * 1e-6)


def test_memory_tier_validation():
    with pytest.raises(SpecError, match="bandwidth_bytes_per_s"):
        MemoryTier(name="m", role="device", capacity_bytes=1.0, bandwidth_bytes_per_s=-3.0, latency_s=0.0)
    with pytest.raises(SpecError, match="role"):
        MemoryTier(name="m", role="cache", capacity_bytes=1.0, bandwidth_bytes_per_s=1.0, latency_s=0.0)
    with pytest.raises(SpecError, match=r"read_curve\[1\]\[1\]"):
        _flash(curve=((4096.0, 1.0e9), (65536.0, 0.5e9)))
    with pytest.raises(SpecError, match="rated bandwidth"):
        _flash(curve=((4096.0, 1.0e9), (65536.0, 9.0e9)))


def test_link_transfer_time():
    link = Link(name="NVLink 4", bandwidth_bytes_per_s=450e9, latency_s=1e-6)
    assert link.transfer_time_s(450e6) == pytest.approx(1e-3 + 1e-6)
    assert link.transfer_time_s(0) == 0.0
    with pytest.raises(SpecError):
        Link(name="x", bandwidth_bytes_per_s=0.0, latency_s=0.0)


# ---- efficiency -----------------------------------------------------------------------

EFF = Efficiency(
    compute_max=0.8, compute_half_flops=2e9, bandwidth_max=0.9, bandwidth_half_bytes=4e6, kernel_overhead_s=4e-6
)


def test_efficiency_curve_reaches_half_of_max_at_half_point():
    assert EFF.compute(2e9) == pytest.approx(0.4)
    assert EFF.bandwidth(4e6) == pytest.approx(0.45)
    assert EFF.compute(1e18) == pytest.approx(0.8, rel=1e-6)
    assert EFF.compute(0) == pytest.approx(0.008)  # floor: 1 % of max


@given(st.floats(min_value=0, max_value=1e20), st.floats(min_value=0, max_value=1e20))
def test_efficiency_curves_in_unit_interval_and_monotone(a, b):
    small, large = sorted((a, b))
    for curve in (EFF.compute, EFF.bandwidth):
        assert 0 < curve(small) <= 1
        assert curve(small) <= curve(large)


def test_efficiency_measured_points_override_and_stay_monotone():
    measured = EFF.with_points(compute_points=[(1e6, 0.05), (1e9, 0.5), (1e10, 0.45), (1e12, 0.78)])
    assert measured.compute(1e6) == pytest.approx(0.05)
    assert measured.compute(1e3) == pytest.approx(0.05)  # clamped
    # Geometric midpoint of 1e6 and 1e9: linear in log(size).
    assert measured.compute(math.sqrt(1e6 * 1e9)) == pytest.approx((0.05 + 0.5) / 2)
    # The dip at 1e10 is lifted to 0.5: a larger op can run as several smaller ones.
    assert measured.compute(1e10) == pytest.approx(0.5)
    sizes = [10**k for k in range(3, 14)]
    values = [measured.compute(s) for s in sizes]
    assert values == sorted(values)
    assert measured.bandwidth(4e6) == EFF.bandwidth(4e6)  # bandwidth table untouched


def test_efficiency_validation():
    with pytest.raises(SpecError, match="compute_max"):
        Efficiency(compute_max=1.2, compute_half_flops=1, bandwidth_max=0.5, bandwidth_half_bytes=1, kernel_overhead_s=0)
    with pytest.raises(SpecError, match=r"compute_points\[1\]\[0\]"):
        EFF.with_points(compute_points=[(1e6, 0.1), (1e5, 0.2)])
    with pytest.raises(SpecError, match=r"bandwidth_points\[0\]\[1\]"):
        EFF.with_points(bandwidth_points=[(1e6, 0.0)])


# ---- FPGA roofs -----------------------------------------------------------------------


def test_u280_int4_weights_beat_int8_which_beats_fp8():
    # WP521-style packing (4 MACs per DSP48E2) and cheaper LUT MACs make w4a8 faster than
    # w8a8; minifloat MACs need exponent/alignment/normalisation logic and no DSP packing.
    w4a8 = fpga_peak_ops_per_s(U280, 4, 8, "int")
    w8a8 = fpga_peak_ops_per_s(U280, 8, 8, "int")
    fp8 = fpga_peak_ops_per_s(U280, 8, 8, "float")
    assert w4a8 > w8a8 > fp8
    # DSP path: 9024 x 0.8 x 2 MACs (WP486) = 14,438; LUT path: 652,000 / (0.5*64 + 26) = 11,241.
    assert w8a8 == pytest.approx(300e6 * (9024 * 0.8 * 2 + 1_304_000 * 0.5 / 58) * 2, rel=1e-12)


def test_alveo_u280_profile_gives_the_same_ordering():
    u280 = load_device("alveo-u280")
    int8 = u280.peak_flops_per_s("int8")
    assert u280.peak_flops_per_s("int8", weight_bits=4) > int8 > u280.peak_flops_per_s("fp8")
    assert int8 == pytest.approx(fpga_peak_ops_per_s(u280.fpga, 8, 8, "int"))
    assert u280.peak_flops_per_s("fp8", sparse_2to4=True) == u280.peak_flops_per_s("fp8")


@pytest.mark.parametrize("bits", [4, 5, 6, 8, 12, 16])
def test_minifloat_mac_costs_at_least_1_5x_integer_mac(bits):
    # Significand multiplier + exponent add + alignment and normalisation shifters
    # (Aggarwal et al., FPL 2024): >= 1.5x the LUTs of an integer MAC of the same widths.
    f = mac_cost("DSP48E2", bits, bits, "float").luts_per_lut_mac
    i = mac_cost("DSP48E2", bits, bits, "int").luts_per_lut_mac
    assert f >= 1.5 * i


def test_narrower_integers_never_lower_the_roof():
    roofs = [fpga_peak_ops_per_s(U280, b, b, "int") for b in (16, 8, 6, 4, 3, 2)]
    assert roofs == sorted(roofs)


def test_dsp58_runs_fp32_natively():
    # Versal DSP58 has an FP32 MAC mode (AM004): no fabric LUTs per DSP MAC.
    assert mac_cost("DSP58", 32, 32, "float").luts_per_dsp_mac == 0.0
    assert mac_cost("DSP48E2", 32, 32, "float").luts_per_dsp_mac > 0.0
    assert mac_cost("DSP58", 8, 8, "int").macs_per_dsp == 3.0


def test_fpga_input_validation():
    with pytest.raises(ValueError, match="weight_bits"):
        fpga_peak_ops_per_s(U280, 0, 8, "int")
    with pytest.raises(ValueError, match="number_kind"):
        fpga_peak_ops_per_s(U280, 8, 8, "posit")
    with pytest.raises(SpecError, match="dsp_type"):
        FpgaResources(dsp_slices=1, luts=1, bram_bytes=0, uram_bytes=0, clock_hz=1e8, dsp_usable=0.5, lut_usable=0.5, dsp_type="DSP99")
    with pytest.raises(SpecError, match="lut_usable"):
        FpgaResources(dsp_slices=1, luts=1, bram_bytes=0, uram_bytes=0, clock_hz=1e8, dsp_usable=0.5, lut_usable=1.5, dsp_type="DSP58")
