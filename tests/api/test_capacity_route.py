"""POST /v1/capacity: the serving capacity search behind the route."""

from __future__ import annotations

from hwmodels import load_device
from planner.arch import load_arch
from planner.capacity import DEFAULT_FORMATS, ServeTarget, plan_serving
from planner.request.capacity import serve_intervals, serve_pairs
from planner.cli.common import clean_json
from conftest import job_result

BODY = {"model": "llama-3.1-8b", "hardware": ["l4", "h100-sxm"], "qps": 5, "prompt": 512, "gen": 128,
        "ttft_slo_s": 1.0, "tpot_slo_s": 0.05}


def test_capacity_matches_the_planner(client):
    got = job_result(client, client.post("/v1/capacity", json=BODY))
    # each hardware priced with its default engine (vllm on GPUs): its formats, KV and runtime context
    pairs = serve_pairs((None,), [load_device("l4"), load_device("h100-sxm")], DEFAULT_FORMATS, "bf16",
                        given_formats=False, given_kv=False, runtime=None)
    assert [p.engine for p in pairs] == ["vllm", "vllm"]
    expect = serve_intervals(plan_serving([load_arch("llama-3.1-8b")], pairs,
                                          ServeTarget(qps=5, prompt=512, gen=128, ttft_slo_s=1.0, tpot_slo_s=0.05)),
                             pairs, "graph").to_dict()
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


def test_capacity_engines_list_and_disaggregated(client):
    body = {**BODY, "hardware": ["h100-sxm", "mi300x"], "engine": ["vllm", "trtllm"], "serving": "disaggregated",
            "max_devices": 16}
    got = job_result(client, client.post("/v1/capacity", json=body))
    assert {(h["engine"], h["hardware"]) for h in got["hardware"]} == {("vllm", "h100-sxm"), ("trtllm", "h100-sxm"),
                                                                       ("vllm", "mi300x")}
    assert got["unsupported"][0]["engine"] == "trtllm" and got["serving"] == "disaggregated"
    assert all("disaggregated" in h for h in got["hardware"])
    assert job_result(client, client.post("/v1/capacity", json={**BODY, "engine": "vllm"}))["hardware"][0]["engine"] == "vllm"


def test_capacity_bad_engine_lists(client):
    r = client.post("/v1/capacity", json={**BODY, "engine": ["vllm", "vlm"]})
    assert r.status_code == 404
    e = r.json()["error"]
    assert e["field"] == "engine" and "'engine'" in e["message"] and "sglang" in e["message"]
    r = client.post("/v1/capacity", json={**BODY, "engine": ["vllm", "vllm"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "engine"
    for bad in ([], "", ["../etc/passwd.yaml"], [1], {"id": "vllm"}):
        r = client.post("/v1/capacity", json={**BODY, "engine": bad})
        assert r.status_code == 422, bad
    r = client.post("/v1/capacity", json={**BODY, "serving": "split"})
    assert r.status_code == 422 and "serving" in r.text


def test_frontier_route(client):
    body = {"model": "llama-3.2-1b", "hardware": ["l4", "mi300x"], "engine": ["vllm", "trtllm"], "prompt": 512,
            "gen": 128, "max_devices": 4}
    r = client.post("/v1/capacity/frontier", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    from planner.request.capacity import CapacityFrontierRequest, run_capacity_frontier

    expect = run_capacity_frontier(CapacityFrontierRequest(**body)).to_dict()
    assert d == clean_json(expect)
    assert d["unsupported"] == [{"engine": "trtllm", "hardware": "mi300x", "reason": d["unsupported"][0]["reason"]}]
    r = client.post("/v1/capacity/frontier", json={**body, "engine": ["vllm", "vlm"]})
    assert r.status_code == 404 and r.json()["error"]["field"] == "engine"
    r = client.post("/v1/capacity/frontier", json={**body, "qps": 3})
    assert r.status_code == 422  # no such field on the frontier
    r = client.post("/v1/capacity/frontier", json={**body, "max_devices": 10**6})
    assert r.status_code == 422


def test_refused_inputs_answer_before_a_job_exists(tmp_path):
    """With a zero wait every accepted search answers 202; what the search would refuse before it
    starts (an engine's launch mode, a training engine's optimizer, an engine off its hardware)
    must still answer 422/404 at once and leave no job behind."""
    import sqlalchemy
    from fastapi.testclient import TestClient

    from api.main import create_app
    from conftest import make_settings

    with TestClient(create_app(make_settings(tmp_path, sync_wait_s=0.0))) as c:
        r = c.post("/v1/capacity", json={**BODY, "hardware": ["cpu-host"], "engine": "llamacpp", "runtime": "eager"})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "runtime" and "'eager'" in err["message"] and "--runtime" not in err["message"]
        r = c.post("/v1/capacity", json={**BODY, "hardware": ["h100-sxm"], "engine": "llamacpp", "formats": ["nvfp4"]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "formats", r.text
        train = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "tokens": 1e9, "days": 1}
        r = c.post("/v1/capacity/train", json={**train, "engine": "llm-foundry", "optimizer": "sgd"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "optimizer", r.text
        r = c.post("/v1/capacity/train", json={**train, "engine": "vllm"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "engine", r.text
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'tierwise.db'}")
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("select count(*) from jobs")).scalar() == 0
        # a valid request still becomes a job
        r = c.post("/v1/capacity", json=BODY)
        assert r.status_code in (200, 202), r.text


def test_mix_takes_relative_weights_as_the_cli_and_python_do(client):
    """mix [1, 3] is a quarter and three quarters of the load, as `--mix 1,3` and
    planner.capacity_serve(mix=[1, 3]) read it: the same answer, not a 422 for a weight over 1."""
    import planner
    from planner.request import json_safe

    fleet = {"models": ["llama-3.1-8b", "llama-3.2-1b"], "hardware": ["l4"], "qps": 5, "ttft_slo_s": 1.0,
             "tpot_slo_s": 0.05}
    got = job_result(client, client.post("/v1/capacity", json={**fleet, "mix": [1, 3]}))
    assert got["mix"] == [0.25, 0.75]
    expect = planner.capacity_serve(fleet["models"], fleet["hardware"], mix=[1, 3],
                                    **{k: fleet[k] for k in ("qps", "ttft_slo_s", "tpot_slo_s")})
    assert got == clean_json(json_safe(expect.to_dict()))
    r = client.post("/v1/capacity", json={**fleet, "mix": [1, 0]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "mix.1", r.text


def test_infeasible_at_the_servers_device_limit_names_it(tmp_path):
    """A search that found nothing up to this server's max_devices says that the bound is the
    server's (the CLI and Python search further), in the message and in details.server_limit."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from conftest import make_settings

    train = {"model": "llama-3.1-405b", "hardware": "h100-sxm", "tokens": 15e12, "days": 90}
    with TestClient(create_app(make_settings(tmp_path, sync_wait_s=120.0))) as c:
        err = c.post("/v1/capacity/train", json=train).json()["error"]
        assert err["code"] == "infeasible" and err["details"]["devices"] == 4096, err
        assert "'max_devices' 4096 devices, this server's limit" in err["message"] and "65536" in err["message"]
        assert err["details"]["server_limit"] == {"limit": "max_devices", "value": 4096}
        # a bound the caller chose below the server's is theirs: no word of the server's limit
        err = c.post("/v1/capacity/train", json={**train, "max_devices": 1024}).json()["error"]
        assert err["code"] == "infeasible" and "server" not in err["message"] and "server_limit" not in err["details"]
    with TestClient(create_app(make_settings(tmp_path, sync_wait_s=120.0, max_devices=64))) as c:
        r = c.post("/v1/capacity", json={**BODY, "hardware": ["l4"], "qps": 5000})
        err = r.json()["error"]
        assert r.status_code == 422 and err["code"] == "infeasible", r.text
        assert "'max_devices' 64 devices, this server's limit" in err["message"] and "1024" in err["message"]
        assert err["details"]["server_limit"] == {"limit": "max_devices", "value": 64}
