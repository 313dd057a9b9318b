"""Small-batch GEMMs: the measured share of streaming bandwidth by row count.

``Efficiency.gemm_rows`` (hwmodels/efficiency.py), its YAML key ``gemm_rows_points``
(hwmodels/loader.py), its measurement (planner/execution/calibrate.py ``gemm_rows_points``) and
its one use in the cost model (planner/costmodel.py ``op_cost``: weight bytes of LINEAR /
LM_HEAD / ROUTER ops are divided by it).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from hwmodels import Efficiency, ProfileError, SpecError, device_to_dict, list_devices, load_device
from hwmodels import load_device_from_dict
from planner.costmodel import Choice, Serving, estimate_inference, op_cost
from planner.layout import Layout
from planner.execution.calibrate import CalibrationResult, gemm_rows_points, profile_dict, write_profile
from planner.workload import ATTENTION, LINEAR, LM_HEAD, Phase, OpShape

BASE = Efficiency(compute_max=0.8, compute_half_flops=2e9, bandwidth_max=0.9, bandwidth_half_bytes=4e6,
                  kernel_overhead_s=4e-6)
# Shape of a CPU table: full speed for one row, a dip at 3 rows (BLAS switches from repeated
# matrix-vector products to a packed GEMM at 4 rows), then falling with the row count.
TABLE = ((1, 1.0), (2, 0.5), (3, 0.34), (4, 0.5), (16, 0.3), (64, 0.11))
FP32 = Choice(weights="fp32", activations="fp32", kv="fp32")


# ---- Efficiency.gemm_rows ---------------------------------------------------------------


def test_no_table_is_full_bandwidth_at_every_row_count():
    for rows in (0, 0.5, 1, 4, 1e6):
        assert BASE.gemm_rows(rows) == 1.0


def test_table_points_are_exact_and_interpolation_is_linear_in_log_rows():
    eff = BASE.with_points(gemm_rows_points=TABLE)
    for rows, share in TABLE:
        assert eff.gemm_rows(rows) == pytest.approx(share, abs=1e-12)
    # 8 rows is the geometric midpoint of 4 and 16: the mean of their shares.
    assert eff.gemm_rows(8) == pytest.approx((0.5 + 0.3) / 2)
    # 32 rows: half-way between 16 and 64 in log2 (4 → 5 → 6).
    assert eff.gemm_rows(32) == pytest.approx((0.3 + 0.11) / 2)
    # Not made monotone: the measured dip at 3 rows stays.
    assert eff.gemm_rows(3) < eff.gemm_rows(2) and eff.gemm_rows(3) < eff.gemm_rows(4)
    # The other tables are untouched.
    assert eff.compute(1e9) == BASE.compute(1e9) and eff.bandwidth(1e6) == BASE.bandwidth(1e6)


def test_outside_the_table_the_share_is_clamped():
    eff = BASE.with_points(gemm_rows_points=((2, 0.6), (64, 0.1)))
    assert eff.gemm_rows(0) == 0.6 and eff.gemm_rows(1) == 0.6  # below the first row count
    assert eff.gemm_rows(4096) == 0.1 and eff.gemm_rows(65) == 0.1  # above the last


def test_bad_tables_and_rows_are_named():
    with pytest.raises(SpecError, match=r"gemm_rows_points\[1\]\[0\]"):
        BASE.with_points(gemm_rows_points=((4, 0.5), (2, 0.6)))  # row counts must increase
    with pytest.raises(SpecError, match=r"gemm_rows_points\[0\]\[1\]"):
        BASE.with_points(gemm_rows_points=((1, 0.0),))  # a zero share would make times infinite
    with pytest.raises(SpecError, match=r"gemm_rows_points\[0\]\[1\]"):
        BASE.with_points(gemm_rows_points=((1, 1.5),))  # more than the streaming bandwidth
    with pytest.raises(ValueError, match="rows must be a number >= 0; got -1"):
        BASE.gemm_rows(-1)
    with pytest.raises(ValueError, match="rows must be a number"):
        BASE.with_points(gemm_rows_points=TABLE).gemm_rows(math.nan)


# ---- profiles -----------------------------------------------------------------------------


def _cpu_dict() -> dict:
    return yaml.safe_load(yaml.safe_dump(device_to_dict(load_device("cpu-host"))))


def test_yaml_key_loads_and_round_trips():
    data = _cpu_dict()
    data["efficiency"]["gemm_rows_points"] = [[1, 1.0], [2, 0.6], [4, 0.5], [64, 0.12]]
    spec = load_device_from_dict(data)
    assert spec.efficiency.gemm_rows_points == ((1.0, 1.0), (2.0, 0.6), (4.0, 0.5), (64.0, 0.12))
    assert spec.efficiency.gemm_rows(4) == 0.5
    out = device_to_dict(spec)
    assert out["efficiency"]["gemm_rows_points"] == [[1, 1], [2, 0.6], [4, 0.5], [64, 0.12]]
    assert load_device_from_dict(yaml.safe_load(yaml.safe_dump(out))).efficiency == spec.efficiency


def test_bad_yaml_table_names_the_field():
    data = _cpu_dict()
    data["efficiency"]["gemm_rows_points"] = [[1, 1.0], [2, 1.4]]
    with pytest.raises(ProfileError, match=r"gemm_rows_points\[1\]\[1\]"):
        load_device_from_dict(data, origin="test")
    data["efficiency"]["gemm_rows_points"] = [[1]]
    with pytest.raises(ProfileError, match=r"gemm_rows_points\[0\]"):
        load_device_from_dict(data, origin="test")


@pytest.mark.parametrize("device_id", list_devices())
def test_shipped_profiles_have_no_table(device_id):
    # Shipped profiles carry published numbers only; the row table comes from calibration, so
    # every catalog prediction (benchmarks/published.py) is what it was without it.
    spec = load_device(device_id)
    assert spec.efficiency.gemm_rows_points == ()
    assert "gemm_rows_points" not in device_to_dict(spec)["efficiency"]


# ---- cost model ---------------------------------------------------------------------------


def _with_table(spec, table=TABLE):
    return dataclasses.replace(spec, efficiency=spec.efficiency.with_points(gemm_rows_points=table))


def _cost(op, phase, spec):
    return op_cost(op, phase, spec, FP32, Layout(), name=op.name)[0]


def test_only_the_weight_bytes_of_linears_are_slowed():
    plain = load_device("cpu-host")
    slow = _with_table(plain)
    bw = plain.device_tier.bandwidth_bytes_per_s
    lin = OpShape(name="mlp.up_proj", kind=LINEAR, group="mlp", in_features=2048, out_features=8192)
    for batch, share in ((1, 1.0), (4, 0.5), (16, 0.3)):
        ph = Phase(name="decode", batch=batch, tokens=1, context=128)
        a, b = _cost(lin, ph, plain), _cost(lin, ph, slow)
        w_bytes, act_bytes = 2048 * 8192 * 4.0, batch * (2048 + 8192) * 4.0
        assert a.weight_bytes == w_bytes and a.activation_bytes == act_bytes
        rate = bw * plain.efficiency.bandwidth(w_bytes + act_bytes)
        # weight time / share + activation time at the same streaming rate
        assert b.memory_s == pytest.approx((w_bytes / share + act_bytes) / rate, rel=1e-12)
        assert a.memory_s == pytest.approx((w_bytes + act_bytes) / rate, rel=1e-12)
        assert b.compute_s == a.compute_s
    # lm_head: its rows are the positions scored (batch 4 → 4 rows → 0.5)
    head = OpShape(name="lm_head", kind=LM_HEAD, group="lm_head", in_features=2048, out_features=32000)
    ph = Phase(name="decode", batch=4, tokens=1, context=128)
    w_bytes, act_bytes = 2048 * 32000 * 4.0, 4 * (2048 + 32000) * 4.0
    rate = bw * plain.efficiency.bandwidth(w_bytes + act_bytes)
    assert _cost(head, ph, slow).memory_s == pytest.approx((w_bytes / 0.5 + act_bytes) / rate, rel=1e-12)
    # attention reads KV, not weights: unchanged
    att = OpShape(name="self_attn.attn", kind=ATTENTION, group="attn", heads=32, kv_heads=8, head_dim=64)
    assert _cost(att, ph, slow) == _cost(att, ph, plain)


def test_decode_with_a_few_sequences_gets_slower_and_single_sequence_does_not():
    from planner.arch import load_arch

    arch = load_arch("llama-3.2-1b")
    plain = load_device("cpu-host")
    slow = _with_table(plain)

    def tpot(spec, batch):
        return estimate_inference(arch, spec, serving=Serving(batch=batch, prompt=128, gen=1), choice=FP32).tpot_s

    assert tpot(slow, 1) == pytest.approx(tpot(plain, 1), rel=1e-12)  # share 1 at one row
    # at 4 rows the (memory-bound) weight stream takes twice as long: the step is 1.5-2x slower
    assert 1.5 < tpot(slow, 4) / tpot(plain, 4) <= 2.0


# ---- calibration --------------------------------------------------------------------------


def _synthetic(rows_s) -> CalibrationResult:
    return CalibrationResult(
        device="cpu", host="testhost", date="2026-01-31", processor="Test CPU", threads=1, torch_version="x",
        kernel_overhead_s=2e-6,
        gemm_flops_per_s={"fp32": [(5e5, 5e10), (3e7, 1e11), (2e9, 1e11), (8e9, 1e11), (1.6e10, 1e11)]},
        read_bytes_per_s=[(1e6, 8e10), (1.34e8, 2.5e10), (5.12e8, 2.5e10)],
        copy_bytes_per_s=[(2e6, 1e11)], dram_min_bytes=1.28e8, memory_capacity_bytes=16e9,
        gemm_rows_s=rows_s, gemm_rows_shape=(8192, 4096))


def _gemm_time(rows: float, share: float, compute_flops_per_s: float) -> float:
    """Time of ``x @ W.T`` (W: 8192 × 4096 fp32) streamed at 25 GB/s × share, or compute-bound."""
    w, act = 8192 * 4096 * 4.0, rows * (8192 + 4096) * 4.0
    return 2e-6 + max((w / share + act) / 2.5e10, 2 * rows * 8192 * 4096 / compute_flops_per_s)


def test_shares_recover_the_stream_rate_the_times_were_made_with():
    # 25 GB/s read bandwidth (the rated one) and 100 GFLOP/s peak, from the synthetic profile.
    rows_s = [(1, _gemm_time(1, 1.0, 1e11)), (2, _gemm_time(2, 0.5, 1e11)), (4, _gemm_time(4, 0.45, 1e11)),
              (16, _gemm_time(16, 0.25, 1e11)),
              # compute-bound at 512 rows: the compute roof explains the time, no stream penalty
              (512, _gemm_time(512, 1.0, 1e11) * 0.999)]
    points = gemm_rows_points(_synthetic(rows_s))
    assert [r for r, _ in points] == [1, 2, 4, 16, 512]
    assert [s for _, s in points] == pytest.approx([1.0, 0.5, 0.45, 0.25, 1.0], abs=1e-4)


def test_one_row_faster_than_the_bandwidth_table_is_capped_at_one():
    points = gemm_rows_points(_synthetic([(1, _gemm_time(1, 1.0, 1e11) * 0.8)]))
    assert points == [[1.0, 1.0]]


def test_profile_without_row_measurements_has_no_table():
    assert gemm_rows_points(_synthetic([])) == []
    assert "gemm_rows_points" not in profile_dict(_synthetic([]), "m")["efficiency"]


def test_measured_table_makes_the_cost_model_reproduce_the_measured_gemms(tmp_path, quick_calibration):
    """End to end on this machine: a quick calibration's profile predicts each measured
    ``x @ W.T`` within 0.1 % (shares are rounded to 4 digits) where the weight stream limits it,
    and never faster than measured where the compute roof does."""
    result, _ = quick_calibration  # calibrate("cpu", quick=True), once per session
    out_features, cols = result.gemm_rows_shape
    assert out_features * cols * 4 >= 64e6  # the weight does not fit a cache
    points = gemm_rows_points(result)
    assert [r for r, _ in points] == [1, 2, 4, 8, 16, 64]
    assert all(0 < s <= 1 for _, s in points)
    spec = load_device(str(write_profile(result, tmp_path / "here.yaml")))
    assert spec.efficiency.gemm_rows_points == tuple((float(r), s) for r, s in points)
    op = OpShape(name="w", kind=LINEAR, group="w", in_features=cols, out_features=out_features)
    for (rows, measured_s), (_, share) in zip(sorted(result.gemm_rows_s), points):
        predicted_s = _cost(op, Phase(name="p", batch=int(rows), tokens=1), spec).time_s
        if share < 1.0:
            assert predicted_s == pytest.approx(measured_s, rel=1e-3)
        else:
            assert predicted_s >= measured_s * (1 - 1e-3)
