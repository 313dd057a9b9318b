"""What an adversarial REST client found, each checked over real HTTP (the in-process client)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from conftest import ROOT, make_settings  # noqa: F401

CFG = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 128, "vocab_size": 100}
JSON = {"content-type": "application/json"}


def _l4() -> dict:
    return yaml.safe_load((ROOT / "profiles" / "hardware" / "l4.yaml").read_text())


def test_a_lone_surrogate_anywhere_in_a_body_is_refused_naming_its_path_and_nothing_is_stored(client):
    """Inside a model config it was stored behind a 500, and every later GET /v1/models failed."""
    body = b'{"id":"poison","config":{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,' \
           b'"num_attention_heads":2,"intermediate_size":128,"vocab_size":100,"_source":"x\\ud800"}}'
    r = client.post("/v1/models", content=body, headers=JSON)
    assert r.status_code == 422 and r.json()["error"]["field"] == "config._source", r.text
    assert client.get("/v1/models").status_code == 200
    assert client.post("/v1/models", json={"id": "poison", "config": CFG}).status_code == 201  # the id was not taken
    prof = _l4()
    prof["id"] = "lab"
    text = json.dumps({"profile": prof}).replace('"name": "', '"name": "\\ud800', 1)
    r = client.post("/v1/hardware", content=text.encode(), headers=JSON)
    assert r.status_code == 422 and r.json()["error"]["field"] == "profile.name", r.text
    assert client.get("/v1/hardware").status_code == 200
    r = client.post("/v1/models", content=b'{"id":"k","config":{"\\udc80":1}}', headers=JSON)
    assert r.status_code == 422 and "lone surrogate" in r.json()["error"]["message"]


@pytest.mark.parametrize("depth", [70, 600, 980, 5000])
def test_deep_nesting_is_a_400_on_every_post_route(client, depth):
    body = ('{"x":' + "[" * depth + "]" * depth + "}").encode()
    for route in ("/v1/estimate", "/v1/plans", "/v1/capacity", "/v1/models", "/v1/hardware"):
        r = client.post(route, content=body, headers=JSON)
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json", (route, depth, r.text[:200])


@pytest.mark.parametrize("model_type", [[], {}, ["llama"], 7])
def test_a_model_type_that_is_no_name_is_refused_naming_it(client, model_type):
    r = client.post("/v1/models", json={"id": "mt", "config": {**CFG, "model_type": model_type}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "config.model_type", r.text


@pytest.mark.parametrize("path", [("memory", 0, "bandwidth_gb_per_s"), ("links", "intra_node", "bandwidth_gb_per_s")])
def test_a_subnormal_number_in_a_profile_is_refused_when_registered(client, path):
    """1e-310 GB/s was registered (201) and every later plan, frontier and training search failed with a 500."""
    prof = _l4()
    prof["id"] = "sub"
    node = prof
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = 1e-310
    r = client.post("/v1/hardware", json={"profile": prof})
    assert r.status_code == 422 and "at least 1e-18" in r.json()["error"]["message"], r.text


def test_whole_number_floats_inside_configs_and_profiles_are_integers(client):
    assert client.post("/v1/models", json={"id": "f", "config": {**CFG, "hidden_size": 64.0}}).status_code == 201
    prof = _l4()
    prof["id"] = "lab8"
    prof["links"]["devices_per_node"] = float(prof["links"].get("devices_per_node", 8))
    assert client.post("/v1/hardware", json={"profile": prof}).status_code == 201


def test_idle_power_above_tdp_names_the_power_block(client):
    prof = _l4()
    prof["id"] = "lab-power"
    prof["power"]["tdp_w"] = 10
    r = client.post("/v1/hardware", json={"profile": prof})
    assert r.status_code == 422 and r.json()["error"]["field"] == "profile.power.idle_w", r.text


def test_a_sparsity_that_would_read_as_one_is_refused_naming_sparsity(client):
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "h100-sxm", "engine": "torch",
                                          "sparsity": "unstructured:0.9999999"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "sparsity" and "0.9999999" in r.text, r.text


def test_huge_mix_shares_normalise(client):
    r = client.post("/v1/capacity", json={"models": ["llama-3.2-1b", "llama-3.1-8b"], "mix": [1e308, 1e308],
                                          "hardware": ["l4"], "qps": 2, "ttft_slo_s": 2, "tpot_slo_s": 0.1})
    body = r.json()
    if r.status_code == 202:
        from frontdoors import job_result

        body = job_result(client, body)
    assert body["mix"] == [0.5, 0.5], body


def test_model_ids_that_differ_only_in_case_are_refused(client):
    r = client.post("/v1/models", json={"id": "LLAMA-3.1-8B", "config": CFG})
    assert r.status_code == 409 and "differs only in case from 'llama-3.1-8b'" in r.text
    assert client.post("/v1/models", json={"id": "mine", "config": CFG}).status_code == 201
    r = client.post("/v1/models", json={"id": "Mine", "config": CFG})
    assert r.status_code == 409 and "differs only in case from the registered 'mine'" in r.text


def test_a_plan_being_solved_is_findable_by_its_id(tmp_path):
    """GET /v1/plans/{id} said "unknown plan id" while the POST with that id was still solving, and the 202 job
    had plan_id null: a client that left could not find its solve."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(make_settings(tmp_path, sync_wait_s=0.0))) as c:
        r = c.post("/v1/plans", json={"id": "slow-one", "model": "llama-3.1-405b", "hardware": "h100-sxm",
                                      "devices": 4096, "time_limit_s": 20})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["plan_id"] == "slow-one" and job["plan_url"] is None
        g = c.get("/v1/plans/slow-one")  # the 405B solve on 4,096 devices takes seconds: still running here
        assert g.status_code == 404 and "is being solved" in g.text, g.text
        assert g.json()["error"]["details"]["job_url"] == job["url"]
        c.delete(job["url"])
        for _ in range(100):
            if c.get(job["url"]).json()["status"] in ("cancelled", "failed", "succeeded"):
                break
            time.sleep(0.1)
        assert "being solved" not in c.get("/v1/plans/slow-one").text


def test_an_integer_past_4300_digits_in_a_body_is_refused_naming_its_path(client):
    """It was a 400 "could not be parsed as JSON (malformed…)" for valid JSON, naming no field."""
    body = json.dumps({"id": "huge", "config": {**CFG, "vocab_size": 1}}).replace('"vocab_size": 1', '"vocab_size": ' + "9" * 5000)
    r = client.post("/v1/models", content=body.encode(), headers=JSON)
    assert r.status_code == 422 and r.json()["error"]["field"] == "config.vocab_size", r.text
    assert "5000 digits" in r.json()["error"]["message"]
    assert client.get("/v1/models").status_code == 200


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e400"])
def test_a_number_json_cannot_hold_is_refused_naming_its_key(client, token):
    """They were "'profile' must be JSON-compatible data (Out of range float values are not JSON compliant)"."""
    prof = _l4()
    prof["id"] = "lab-nan"
    text = json.dumps({"profile": prof})
    bw = prof["memory"][0]["bandwidth_gb_per_s"]
    text = text.replace(f'"bandwidth_gb_per_s": {json.dumps(bw)}', f'"bandwidth_gb_per_s": {token}', 1)
    assert token in text
    r = client.post("/v1/hardware", content=text.encode(), headers=JSON)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "bandwidth_gb_per_s" in (err["field"] or "") and "memory" in err["field"], err
    body = json.dumps({"id": "nan-model", "config": {**CFG, "rope_theta": 1.0}}).replace('"rope_theta": 1.0', f'"rope_theta": {token}')
    r = client.post("/v1/models", content=body.encode(), headers=JSON)
    assert r.status_code == 422 and r.json()["error"]["field"] == "config.rope_theta", r.text
    assert client.get("/v1/hardware").status_code == 200 and client.get("/v1/models").status_code == 200


def test_a_json_body_sent_as_text_plain_is_told_to_send_the_json_header(client):
    body = json.dumps({"model": "llama-3.2-1b", "hardware": "l4"})
    r = client.post("/v1/estimate", content=body.encode(), headers={"content-type": "text/plain"})
    assert r.status_code == 422, r.text
    msg = r.json()["error"]["message"]
    assert "Content-Type: application/json" in msg and "'text/plain'" in msg and "b'" not in msg, msg
