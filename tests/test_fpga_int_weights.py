"""Integer weights on FPGA fabric: int2 (listed native on the Alveo boards and the ZCU102)
is priced from the LUT/DSP MAC model instead of crashing, in estimate, plan and REST."""

import json

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from hwmodels import fpga_peak_ops_per_s, load_device, mac_cost
from planner.cli import main

FPGAS = ["alveo-u280", "alveo-u50", "zcu102"]


def test_integer_weight_in_a_float_mac_is_a_significand_without_exponent():
    # int2 weight × bf16 (e8m7) activation on a DSP48E2 board: a 2 × 8 array multiplier
    # (0.5·2·8 LUTs, Walters 2016) plus the activation's exponent adder (8+1), two log shifters
    # over A = 2 + 8 + 10 = 20 bits (20·5/2 each), the A-bit adder and leading-zero count (20/2).
    c = mac_cost("DSP48E2", 2, 16, "float", weight_exponent_bits=0, act_exponent_bits=8)
    assert c.luts_per_lut_mac == pytest.approx(8 + 9 + 50 + 20 + 10 + 50)
    # Narrower integer weights never cost more LUTs, and never lower the roof.
    luts = [mac_cost("DSP48E2", b, 16, "float", weight_exponent_bits=0, act_exponent_bits=8).luts_per_lut_mac
            for b in (8, 4, 3, 2)]
    assert luts == sorted(luts, reverse=True)
    with pytest.raises(ValueError, match="weight_bits"):
        mac_cost("DSP48E2", 2, 16, "float")  # a 2-bit float has no room for an exponent


@pytest.mark.parametrize("hw", FPGAS)
def test_int2_weights_price_on_the_fabric(hw):
    dev = load_device(hw)
    assert dev.supports("int2") == "native"
    roofs = [dev.peak_flops_per_s("bf16", weight_bits=b, number_kind="int") for b in (8, 4, 3, 2)]
    assert roofs == sorted(roofs) and roofs[-1] > 0
    # W2A8 on the integer units.
    assert dev.peak_flops_per_s("int8", weight_bits=2) == pytest.approx(fpga_peak_ops_per_s(dev.fpga, 2, 8, "int"))


#: A custom fabric overlay (FINN-style dataflow, arbitrary-precision integer weights): the
#: Vitis AI DPU, the FPGA class's default engine, runs int8 only.
OVERLAY = """
schema_version: 1
id: fabric-overlay
name: Custom integer overlay
kind: on-device
version: "1"
exporter: yaml
sources:
  FINN: "FINN (Umuroglu et al., FPGA 2017): dataflow overlays with arbitrary-precision integer weights, https://github.com/Xilinx/finn"
models: {families: [decoder], source: [FINN]}
parallel: []
runtime: {graph_capture: true, chunked_prefill: false, chunk_tokens: 0, paged_kv: false, kv_block_tokens: 0,
          continuous_batching: false, memory_fraction: 1.0, context_gib: 0.0, source: [FINN], provenance: estimate}
targets:
  - match: {class: fpga}
    schemes:
      - {weights: [bf16, int8, int4-g128, int2-g128], activations: [bf16, int8]}
    kv: [bf16, int8]
    sparsity: [dense]
    source: [FINN]
"""


@pytest.fixture
def overlay(tmp_path):
    path = tmp_path / "fabric-overlay.yaml"
    path.write_text(OVERLAY)
    return str(path)


@pytest.mark.parametrize("hw", FPGAS)
def test_estimate_int2_on_fpga(hw, capsys, overlay):
    def run(w, *extra):
        code = main(["estimate", "-m", "llama-3.2-1b", "-H", hw, "--weights", w, "--json", *extra])
        out = capsys.readouterr()
        return code, out

    code, out = run("int2")  # the default engine (Vitis AI DPU) runs CNNs only (and int8 only)
    assert code == 2 and "--engine" in out.err and "vitis-ai" in out.err and "decoder" in out.err
    (c2, o2), (c4, o4) = run("int2", "--engine", overlay), run("int4", "--engine", overlay)
    assert c2 == 0 and c4 == 0, o2.err + o4.err
    int2, int4 = json.loads(o2.out), json.loads(o4.out)
    assert int2["weights"] == "int2" and int2["engine"] == "fabric-overlay"
    assert 0 < int2["tpot_s"] < int4["tpot_s"] and 0 < int2["ttft_s"] <= int4["ttft_s"]
    assert int2["memory"]["weights_bytes"] < int4["memory"]["weights_bytes"]


def test_plan_int2_on_fpga_over_rest(tmp_path, overlay):
    import planner

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'tierwise.db'}", sync_wait_s=120.0)
    with TestClient(create_app(settings)) as api:
        r = api.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "alveo-u280", "devices": 1,
                                        "kv": "int8", "formats": ["int2"]})
    # The FPGA's default engine (the Vitis AI DPU) runs no decoder LLM: a clear 422 naming the engine.
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "engine" and "vitis-ai" in r.text and "decoder" in r.text
    # On an engine that runs it, int2 is priced for every group (it used to be an HTTP 500); the
    # solver weighs it against the device's 16-bit format by accuracy and time.
    p = planner.plan("llama-3.2-1b", "alveo-u280", devices=1, kv="int8", formats=["int2"], engine=overlay)
    assert p.predicted.fits is True


@pytest.mark.parametrize("hardware", ["zcu102", "alveo-u50", "alveo-u280", "vck190"])
@pytest.mark.parametrize("model", ["resnet-50", "mobilenet-v2"])
def test_a_batch_that_fills_the_device_stays_within_the_capacity_it_reports(model, hardware):
    """The batch-max estimate of a CNN on an FPGA counted its BRAM-resident activations in per_device_bytes
    but not in device_capacity_bytes: 4,003,164,025 bytes "of" 4,000,000,000 and fits. The capacity now
    counts the on-chip tiers the placement uses."""
    import planner

    m = planner.estimate(model, hardware, batch="max").memory
    on_chip = sum(t.capacity_bytes for t in load_device(hardware).tiers if t.role == "on_chip")
    assert on_chip > 0 and m.fits
    assert m.device_capacity_bytes == load_device(hardware).memory_capacity_bytes + on_chip
    assert m.per_device_bytes <= m.device_capacity_bytes
    assert sum(t.used_bytes for t in m.tiers) == pytest.approx(m.per_device_bytes, rel=1e-9)
