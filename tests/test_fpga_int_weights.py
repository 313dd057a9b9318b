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


@pytest.mark.parametrize("hw", FPGAS)
def test_estimate_int2_on_fpga(hw, capsys):
    def run(w):
        code = main(["estimate", "-m", "llama-3.2-1b", "-H", hw, "--weights", w, "--json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    int2, int4 = run("int2"), run("int4")
    assert int2["weights"] == "int2"
    assert 0 < int2["tpot_s"] < int4["tpot_s"] and 0 < int2["ttft_s"] <= int4["ttft_s"]
    assert int2["memory"]["weights_bytes"] < int4["memory"]["weights_bytes"]


def test_plan_int2_on_fpga_over_rest(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'tierwise.db'}", sync_wait_s=120.0)
    with TestClient(create_app(settings)) as api:
        r = api.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "alveo-u280", "devices": 1,
                                        "kv": "int8", "formats": ["int2"]})
    # int2 is priced for every group (it used to be an HTTP 500); the solver weighs it against
    # the device's 16-bit format by accuracy and time.
    assert r.status_code == 201, r.text
    assert r.json()["plan"]["predicted"]["fits"] is True
