"""W4A4 NVFP4: activations quantized to NVFP4 on the fly and multiplied on Blackwell's FP4 tensor
cores. The engine profiles (TensorRT-LLM, vLLM, SGLang on Blackwell) list the scheme; the
estimate, the planner, the exports and the published rows that ran it all take it."""

from __future__ import annotations

import json

import pytest

from hwmodels import load_device
from planner.formats import get_format, list_formats, resolve_numerics
from planner.numerics import Choice
from planner.opcost import device_numerics
from planner.options import candidate_options
from tests.frontdoors import app_client, run

MODEL = "llama-3.1-8b"


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path) as c:
        yield c


def test_nvfp4_is_an_activation_format_priced_at_the_fp4_peak():
    assert get_format("nvfp4").is_activation and "nvfp4" in [f.name for f in list_formats(role="activation")]
    w, _, a = resolve_numerics("nvfp4", "dense", "nvfp4")
    assert (w.name, a.name) == ("nvfp4", "nvfp4")
    b200 = load_device("b200")
    w4a4 = device_numerics(b200, Choice(weights="nvfp4", activations="nvfp4"), 8192, 8192)
    w4a16 = device_numerics(b200, Choice(weights="nvfp4", activations="bf16"), 8192, 8192)
    assert w4a4.precision == "fp4" and w4a4.dequant_ops_per_weight == 0.0
    assert w4a16.precision == "bf16" and w4a16.dequant_ops_per_weight > 0
    # The FP4 peak is derated by its own measured MAMF (5702 of 9000 TFLOP/s), not bf16's.
    assert w4a4.peak_flops_per_s == pytest.approx(9000e12)
    assert b200.efficiency.max_for("fp4") == pytest.approx(0.634)
    assert b200.efficiency.max_for("bf16") == pytest.approx(0.776)


def test_the_planner_offers_w4a4_only_where_fp4_tensor_cores_run_it():
    def pairs(hw):
        return {(o.weights, o.activations) for o in candidate_options(load_device(hw))}

    assert ("nvfp4", "nvfp4") in pairs("b200")
    assert ("nvfp4", "nvfp4") not in pairs("h100-sxm")  # Hopper stores NVFP4 but has no FP4 units


def test_estimate_w4a4_on_b200_prefills_faster_than_w4a16(capsys):
    args = ("estimate", "-m", MODEL, "-H", "b200", "--engine", "vllm", "--weights", "nvfp4",
            "--batch", "16", "--prompt", "2048", "--gen", "64", "--json")
    code, out, err = run(capsys, *args, "--activations", "nvfp4")
    assert code == 0, err
    w4a4 = json.loads(out)
    code, out, err = run(capsys, *args, "--activations", "bf16")
    assert code == 0, err
    w4a16 = json.loads(out)
    assert w4a4["activations"] == "nvfp4"
    # Compute-bound prefill: FP4 MMA (5.7 PFLOP/s achievable) against bf16 after dequantization.
    assert w4a4["ttft_s"] < 0.6 * w4a16["ttft_s"]
    # Same weights stored: the memory does not change with the compute path.
    assert w4a4["memory"]["weights_bytes"] == w4a16["memory"]["weights_bytes"]


def test_w4a4_where_the_engine_does_not_run_it_is_refused_naming_the_field(capsys, client):
    code, _, err = run(capsys, "estimate", "-m", MODEL, "-H", "b200", "--engine", "trtllm",
                       "--weights", "fp8-e4m3", "--activations", "nvfp4")
    assert code == 2 and "--activations" in err and "'nvfp4'" in err and "fp8-e4m3" in err
    body = {"model": MODEL, "hardware": "h100-sxm", "engine": "vllm", "weights": "nvfp4", "activations": "nvfp4"}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "activations" and "bf16" in r.json()["error"]["message"]
    r = client.post("/v1/estimate", json={**body, "hardware": "b200"})
    assert r.status_code == 200, r.text
    assert r.json()["activations"] == "nvfp4"


@pytest.mark.parametrize("engine, fmt, expect", [
    ("trtllm", "trtllm", '"quant_algo": "NVFP4"'),
    ("vllm", "compressed-tensors", '"input_activations"'),
])
def test_a_w4a4_plan_exports_with_nvfp4_activations(capsys, tmp_path, engine, fmt, expect):
    plan_path = tmp_path / "plan.yaml"
    code, out, err = run(capsys, "plan", "-m", MODEL, "-H", "b200", "--engine", engine, "--batch", "64",
                         "--prompt", "1024", "--gen", "128", "--objective", "latency", "--out", str(plan_path),
                         "--json")
    assert code == 0, err
    plan = json.loads(out)
    acts = {c["activations"] for c in plan["choices"].values()}
    assert "nvfp4" in acts, plan["choices"]
    code, out, err = run(capsys, "export", str(plan_path), "--format", fmt, "--out", str(tmp_path / "x"))
    assert code == 0, err
    text = "\n".join(p.read_text() for p in (tmp_path / "x").iterdir() if p.suffix == ".json")
    assert expect in text
    if fmt == "compressed-tensors":
        scheme = json.loads((tmp_path / "x" / "quantization_config.json").read_text())
        groups = [g for g in scheme["config_groups"].values() if g.get("input_activations")]
        assert any(g["input_activations"]["group_size"] == 16 and g["input_activations"]["num_bits"] == 4
                   for g in groups)


@pytest.mark.parametrize("hw, act", [("b200", "nvfp4"), ("h100-sxm", "fp8-e4m3")])
def test_roles_the_engine_keeps_in_16_bit_are_pinned_to_16_bit_whatever_the_compute_format(capsys, hw, act):
    # Was: --activations nvfp4 pinned the embedding and LM head to nvfp4 *weights* (the compute
    # format used as a weight format), which vLLM writes in bf16 anyway.
    code, out, err = run(capsys, "plan", "-m", MODEL, "-H", hw, "--engine", "vllm", "--activations", act, "--json")
    assert code == 0, err
    plan = json.loads(out)
    for g in ("model.embed_tokens", "model.lm_head"):
        assert plan["constraints"]["pins"][g] == "bf16/bf16"
        assert (plan["choices"][g]["weights"], plan["choices"][g]["activations"]) == ("bf16", "bf16")


def test_a_replan_hint_keeps_only_pins_whose_activations_the_engine_runs():
    from planner.engines import load_engine
    from planner.export.rules import _pin_runs

    sup = load_engine("vllm").support(load_device("b200"))
    assert _pin_runs(sup, "nvfp4/nvfp4", "bf16") and _pin_runs(sup, "nvfp4", "bf16")
    assert not _pin_runs(sup, "nvfp4/fp8-e4m3", "bf16")  # W4A8 NVFP4 x FP8: TensorRT-LLM's, not vLLM's
    assert not _pin_runs(sup, "int4-g128/fp8-e4m3", None)


def test_a_separate_dequantize_pass_writes_a_copy_at_the_compute_width(capsys):
    # Tierwise's torch execution on a CPU quantizes NVFP4 activations and back, then runs a float
    # GEMM on a dequantized copy: the copy is 16-bit, so W4A4 is not priced below W4A16 there.
    args = ("estimate", "-m", "llama-3.2-1b", "-H", "cpu-host", "--engine", "torch", "--weights", "nvfp4", "--json")
    tpot = {}
    for act in ("nvfp4", "bf16"):
        code, out, err = run(capsys, *args, "--activations", act)
        assert code == 0, err
        tpot[act] = json.loads(out)["tpot_s"]
    assert tpot["nvfp4"] == pytest.approx(tpot["bf16"], rel=0.02)


@pytest.mark.parametrize("engine, hw, weights, act", [("vllm", "h100-sxm", "fp8-e4m3", "fp8-e4m3"),
                                                      ("trtllm", "b200", "nvfp4", "nvfp4"),
                                                      ("sglang", "h100-sxm", "int8", "int8")])
def test_serving_engines_hold_16_bit_tensors_between_operators(capsys, engine, hw, weights, act):
    # Their fp8 / int8 / NVFP4 linears quantize a 16-bit input inside each call: the activation peak
    # is the 16-bit one (it was priced at 4 bits a value for W4A4).
    args = ("estimate", "-m", MODEL, "-H", hw, "--engine", engine, "--batch", "8", "--prompt", "1024", "--json")
    code, out, err = run(capsys, *args, "--weights", weights, "--activations", act)
    assert code == 0, err
    low = json.loads(out)["memory"]["activations_bytes"]
    code, out, err = run(capsys, *args, "--weights", "bf16", "--activations", "bf16")
    assert code == 0, err
    assert low == pytest.approx(json.loads(out)["memory"]["activations_bytes"], rel=1e-6)
