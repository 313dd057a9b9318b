"""Calibration: the measured profile loads, is cited as measured, and drives the cost model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from hwmodels import load_device
from planner.cli import main
from planner.execution.calibrate import CalibrationResult, profile_dict, write_profile


def _synthetic() -> CalibrationResult:
    return CalibrationResult(
        device="cpu", host="testhost", date="2026-01-31", processor="Test CPU", threads=2, torch_version="x",
        kernel_overhead_s=3e-6,
        gemm_flops_per_s={"fp32": [(5e5, 5e10), (4e6, 1.5e11), (3e7, 2.2e11), (2e9, 2e11), (1.6e10, 1.8e11)],
                          "bf16": [(2e9, 4e11)]},
        read_bytes_per_s=[(2e6, 2e11), (2.56e8, 7e10), (1.024e9, 6.5e10)],
        copy_bytes_per_s=[(4e6, 3e11), (5.12e8, 9e10)],
        dram_min_bytes=1.28e8, memory_capacity_bytes=16e9)


def test_profile_numbers_come_from_the_measurements():
    d = profile_dict(_synthetic(), "test-machine")
    # peaks: the sustained rate, the median of the three largest GEMMs (2e11 FLOP/s fp32; bf16 has one
    # size, 4e11), in TFLOP/s; the faster mid size (2.2e11) is capped at fraction 1
    assert d["compute"][0]["peak_tflops"] == {"fp32": 0.2, "bf16": 0.4}
    # rated bandwidth: best streaming read at least 4x the last-level cache (7e10 B/s), not the in-cache
    # 2e11 B/s read nor the copies
    assert d["memory"][0]["bandwidth_gb_per_s"] == 70.0
    eff = d["efficiency"]
    assert eff["compute_points"] == [[5e5, 0.25], [4e6, 0.75], [3e7, 1.0], [2e9, 1.0], [1.6e10, 0.9]]
    assert eff["bandwidth_points"][0] == [2e6, 1.0] and eff["bandwidth_points"][-1] == [1.024e9, 0.9286]
    assert eff["kernel_overhead_us"] == 3.0
    assert d["sources"]["MEAS"].startswith("measured on testhost, 2026-01-31")
    assert d["compute"][0]["provenance"] == "measured" and d["power"]["provenance"] == "estimate"


def test_written_profile_loads_and_predicts(tmp_path):
    path = write_profile(_synthetic(), tmp_path / "my-machine.yaml")
    dev = load_device(str(path))
    assert dev.id == "my-machine" and dev.device_class == "cpu"
    assert dev.peak_flops_per_s("fp32") == pytest.approx(2e11)
    assert dev.efficiency.compute(4e6) == pytest.approx(0.75)
    from planner.arch import load_arch
    from planner.costmodel import Choice, Serving, estimate_inference

    est = estimate_inference(load_arch("all-minilm-l6-v2"), dev, serving=Serving(batch=4, prompt=64, gen=0),
                             choice=Choice(weights="fp32", activations="fp32", kv="fp32"))
    # 4·64 tokens through 6 layers of 384-wide linears (+ the pooler): ~ 2·tokens·params FLOPs at <= 0.2 TFLOP/s
    assert 5e-3 < est.ttft_s < 0.2


def test_quick_calibration_measures_this_machine(tmp_path, quick_calibration):
    result, steps = quick_calibration  # calibrate("cpu", quick=True, progress=...), once per session
    assert steps[-1][0] == steps[-1][1]
    assert result.peak_flops_per_s["fp32"] > 1e9  # any CPU of the last decade does > 1 GFLOP/s fp32
    assert result.bandwidth_bytes_per_s > 1e9 and 0 < result.kernel_overhead_s < 1e-3
    dev = load_device(str(write_profile(result, tmp_path / "here.yaml")))
    assert dev.provenance["compute[0]"] == "measured"


def test_cli_calibrate(tmp_path, capsys):
    out = tmp_path / "m.yaml"
    assert main(["calibrate", "--quick", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["id"] == "m" and summary["peak_flops_per_s"]["fp32"] > 0
    data = yaml.safe_load(out.read_text())
    assert "measured on" in data["sources"]["MEAS"]
    assert main(["estimate", "--model", "all-minilm-l6-v2", "--hardware", str(out), "--weights", "fp32",
                 "--activations", "fp32", "--prompt", "64", "--gen", "0", "--json"]) == 0


def test_cli_calibrate_bad_input(tmp_path, capsys):
    assert main(["calibrate", "--out", str(tmp_path / "m.txt")]) == 2
    assert "--out must end in .yaml" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["calibrate", "--device", "cuda", "--out", str(tmp_path / "g.yaml")]) == 2
        assert "no CUDA device" in capsys.readouterr().err
