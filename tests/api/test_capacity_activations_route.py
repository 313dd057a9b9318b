"""``activations`` of POST /v1/capacity and /v1/capacity/frontier: the same request layer as
``tierwise capacity serve|frontier --activations``."""

from __future__ import annotations

import pytest
from frontdoors import job_result

BODY = {"model": "llama-3.1-8b", "hardware": ["h100-sxm"], "qps": 5, "ttft_slo_s": 1.0, "tpot_slo_s": 0.05}
FRONTIER = {"model": "llama-3.2-1b", "hardware": ["b200"], "engine": "vllm", "formats": ["nvfp4"], "max_devices": 1}


def test_fp8_activations_on_h100(client):
    d = job_result(client, client.post("/v1/capacity", json={**BODY, "engine": ["vllm", "trtllm"],
                                                          "activations": "fp8-e4m3"}))
    assert {(h["engine"], h["best"]["activations"]) for h in d["hardware"]} == {("vllm", "fp8-e4m3"),
                                                                                ("trtllm", "fp8-e4m3")}
    assert {(u["engine"], u["weights"], u["activations"]) for u in d["unsupported"]} == {
        ("vllm", "bf16", "fp8-e4m3"), ("vllm", "int4-g128", "fp8-e4m3"), ("trtllm", "bf16", "fp8-e4m3")}
    assert all("'activations' fp8-e4m3" in u["reason"] for u in d["unsupported"])


def test_pair_not_running_the_activations_is_unsupported(client):
    d = job_result(client, client.post("/v1/capacity", json={**BODY, "hardware": ["h100-sxm", "a100-80gb-sxm"],
                                                          "engine": "vllm", "activations": "fp8-e4m3"}))
    assert [h["hardware"] for h in d["hardware"]] == ["h100-sxm"]
    (a100,) = [u for u in d["unsupported"] if u["hardware"] == "a100-80gb-sxm"]
    assert "does not compute in 'activations' 'fp8-e4m3'" in a100["reason"] and "weights" not in a100


def test_frontier_w4a4_on_b200(client):
    a16 = client.post("/v1/capacity/frontier", json=FRONTIER)
    a4 = client.post("/v1/capacity/frontier", json={**FRONTIER, "activations": "nvfp4"})
    assert a16.status_code == a4.status_code == 200, a4.text
    p16 = {p["batch"]: p for s in a16.json()["series"] for p in s["points"]}
    p4 = {p["batch"]: p for s in a4.json()["series"] for p in s["points"]}
    assert {p["activations"] for p in p4.values()} == {"nvfp4"} and {p["activations"] for p in p16.values()} == {"bf16"}
    same = p16.keys() & p4.keys()
    assert same and all(p4[b]["prefill_s"] < p16[b]["prefill_s"] for b in same)


@pytest.mark.parametrize("route, body", [("/v1/capacity", BODY), ("/v1/capacity/frontier", {**FRONTIER, "hardware": ["h100-sxm"]})])
@pytest.mark.parametrize("value, code, text", [
    ("fp8-e4", "invalid_format", "'activations': unknown format 'fp8-e4' (did you mean fp8-e4m3"),
    ("int4-g64", "invalid_format", "'activations' must be a format usable for activations"),
    (8, "invalid_field", "'activations'"),
    ("nvfp4", "engine_unsupported", "does not compute in 'activations' 'nvfp4'"),
])
def test_bad_activations_name_the_field(client, route, body, value, code, text):
    r = client.post(route, json={**body, "activations": value})
    assert r.status_code == 422, r.text
    e = r.json()["error"]
    assert e["field"] == "activations" and e["code"] == code and text in e["message"]


def test_cli_json_reasons_name_flags_and_rest_names_fields(cli, client):
    """`capacity serve --json` and `capacity frontier --json` on the command line give the reasons in
    its own syntax (--activations), as its table does; REST gives 'activations'."""
    import json as _json

    common = ["--model", "llama-3.1-70b", "--hardware", "b200,h100-sxm", "--engine", "vllm", "--activations", "nvfp4",
              "--formats", "nvfp4"]
    code, out, err = cli("capacity", "serve", *common, "--qps", "5", "--ttft-slo", "1", "--tpot-slo", "0.05", "--json")
    assert code == 0, err
    (u,) = [u for u in _json.loads(out)["unsupported"] if u["hardware"] == "h100-sxm"]
    assert "--activations 'nvfp4'" in u["reason"] and "'activations'" not in u["reason"], u
    code, out, err = cli("capacity", "frontier", *common, "--json")
    assert code == 0, err
    (u,) = [u for u in _json.loads(out)["unsupported"] if u["hardware"] == "h100-sxm"]
    assert "--activations" in u["reason"], u
    r = client.post("/v1/capacity", json={"model": "llama-3.1-70b", "hardware": ["b200", "h100-sxm"], "engine": "vllm",
                                          "activations": "nvfp4", "formats": ["nvfp4"], "qps": 5, "ttft_slo_s": 1,
                                          "tpot_slo_s": 0.05})
    assert r.status_code == 200, r.text
    (u,) = [u for u in r.json()["unsupported"] if u["hardware"] == "h100-sxm"]
    assert "'activations' 'nvfp4'" in u["reason"] and "--" not in u["reason"], u
