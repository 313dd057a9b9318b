"""POST /v1/capacity: the serving capacity search behind the route."""

from __future__ import annotations

from hwmodels import load_device
from planner.arch import load_arch
from planner.capacity import ServeTarget, plan_serving
from planner.cli.common import clean_json
from planner.request.capacity import serve_intervals
from conftest import job_result

BODY = {"model": "llama-3.1-8b", "hardware": ["l4", "h100-sxm"], "qps": 5, "prompt": 512, "gen": 128,
        "ttft_slo_s": 1.0, "tpot_slo_s": 0.05}


def test_capacity_matches_the_planner(client):
    got = job_result(client, client.post("/v1/capacity", json=BODY))
    devices = [load_device("l4"), load_device("h100-sxm")]
    expect = serve_intervals(plan_serving([load_arch("llama-3.1-8b")], devices,
                                          ServeTarget(qps=5, prompt=512, gen=128, ttft_slo_s=1.0, tpot_slo_s=0.05)),
                             devices, None, "graph").to_dict()
    assert got == clean_json(expect) and got["status"] == "complete"
    best = got["hardware"][0]["best"]
    band = best["uncertainty"]["intervals"]["ttft_p95_s"]
    assert band["value"] == best["ttft_p95_s"] and band["p10"] < band["value"] * 2 and band["p90"] > band["value"] / 2
    assert got["feasible"] and {h["hardware"] for h in got["hardware"]} == {"l4", "h100-sxm"}


def test_capacity_errors(client):
    assert client.post("/v1/capacity", json={**BODY, "hardware": ["l9"]}).status_code == 404
    r = client.post("/v1/capacity", json={**BODY, "ttft_slo_s": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "ttft_slo_s"
    r = client.post("/v1/capacity", json={**BODY, "models": ["llama-3.1-8b"]})
    assert r.status_code == 422  # model and models together
    r = client.post("/v1/capacity", json={**BODY, "max_devices": 100_000})
    assert r.status_code == 422
