"""The input defects of tests/test_adversary_inputs.py over real HTTP (a ``tierwise serve``
process): the REST service answers as the command line and the Python API do, because all
three go through the one request layer (planner/request/)."""

from __future__ import annotations

import json

import pytest
from liveserver import checked_server

from planner.arch import _models_dir

B = {"model": "llama-3.1-8b", "hardware": "l4"}
CAP = {"model": "llama-3.2-1b", "hardware": ["l4"], "qps": 1, "ttft_slo_s": 2, "tpot_slo_s": 0.2, "max_devices": 1}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from checked_server(tmp_path_factory, "request-inputs", {"TIERWISE_SYNC_WAIT_S": "60"})


def _error(r, status: int = 422) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def test_a_model_over_the_layer_limit_is_refused_and_one_at_it_accepted(srv):
    cfg = json.loads((_models_dir() / "llama-3.2-1b.json").read_text())
    cfg.pop("_id", None)
    with srv.client() as c:
        err = _error(c.post("/v1/models", json={"id": "deep-1025", "config": {**cfg, "num_hidden_layers": 1025}}))
        assert err["code"] == "limit_exceeded" and err["field"] == "config.num_hidden_layers" and "1025" in err["message"]
        assert c.post("/v1/models", json={"id": "deep-1024", "config": {**cfg, "num_hidden_layers": 1024}}).status_code == 201


def test_no_token_to_process_is_refused_naming_prompt(srv):
    with srv.client() as c:
        err = _error(c.post("/v1/estimate", json={**B, "prompt": 0, "gen": 0}))
        assert err["field"] == "prompt" and "'prompt'" in err["message"] and "--prompt" not in err["message"]
        err = _error(c.post("/v1/estimate", json={"model": "bert-base", "hardware": "l4", "prompt": 0}))
        assert err["field"] == "prompt"
        r = c.post("/v1/estimate", json={**B, "prompt": 0, "gen": 128})
        assert r.status_code == 200 and r.json()["prompt"] == 0, r.text


@pytest.mark.parametrize("engine", ["megatron-core", "fsdp"])
def test_inference_refuses_a_training_engine(srv, engine):
    with srv.client() as c:
        err = _error(c.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "engine": engine}))
        assert err["field"] == "engine" and "training engine" in err["message"], err
        listed = err["message"].split("serving engines on h100-sxm:")[1]
        assert "vllm" in listed and "fsdp" not in listed and "megatron-core" not in listed, err
        err = _error(c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "tpu-v5e", "engine": "trtllm"}))
        assert "serving engines for decoder models that do: vllm" in err["message"] and "fsdp" not in err["message"], err


@pytest.mark.parametrize("text", ["8", " 8", "08", "+8"])
def test_text_is_not_an_integer_for_batch_as_for_prompt(srv, text):
    with srv.client() as c:
        err = _error(c.post("/v1/estimate", json={**B, "batch": text}))
        assert err["field"] == "batch" and "'batch'" in err["message"], err
        assert _error(c.post("/v1/estimate", json={**B, "prompt": text}))["field"] == "prompt"


def test_integral_numbers_are_integers_and_max_is_still_a_batch(srv):
    with srv.client() as c:
        a = c.post("/v1/estimate", json={**B, "batch": 8, "prompt": 256})
        b = c.post("/v1/estimate", json={**B, "batch": 8.0, "prompt": 256.0})
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert a.json()["batch"] == b.json()["batch"] == 8 and a.json()["latency_s"] == b.json()["latency_s"]
        assert _error(c.post("/v1/estimate", json={**B, "batch": 8.5}))["field"] == "batch"
        assert c.post("/v1/estimate", json={**B, "batch": "max"}).json()["batch"] > 1


@pytest.mark.parametrize("change, field, item", [
    ({"hardware": ["h100-sxm", "h100-sxm"]}, "hardware", "'h100-sxm'"),
    ({"model": None, "models": ["llama-3.2-1b", "llama-3.2-1b"]}, "models", "'llama-3.2-1b'"),
    ({"formats": ["bf16", "bf16"]}, "formats", "'bf16'"),
])
def test_capacity_refuses_a_repeated_item(srv, change, field, item):
    body = {k: v for k, v in {**CAP, **change}.items() if v is not None}
    with srv.client() as c:
        err = _error(c.post("/v1/capacity", json=body))
    assert err["field"] == field and item in err["message"] and "more than once" in err["message"], err


@pytest.mark.parametrize("body_field, change, path, said", [
    ("config", {"hidden_size": -5}, "config.hidden_size", "'config.hidden_size' must be a positive integer; got -5"),
    ("config", {"hidden_size": None}, "config.hidden_size", "'config.hidden_size' is missing; it must be a positive integer"),
    ("config", {"num_attention_heads": 7}, "config.num_key_value_heads",
     "'config.num_key_value_heads' must be a divisor of the number of attention heads (7); got 8"),
    ("mpt", {"attn_config": {"attn_type": "grouped_query_attention", "kv_n_heads": 5}}, "config.attn_config.kv_n_heads",
     "'config.attn_config.kv_n_heads' must be a divisor of the number of attention heads"),
    ("config", {"num_hidden_layers": 1025}, "config.num_hidden_layers", "'config.num_hidden_layers' is 1025"),
    ("yaml", {"hidden_size": -5}, "yaml.hidden_size", "'yaml.hidden_size' must be a positive integer; got -5"),
    ("yaml", {"num_hidden_layers": 1025}, "yaml.num_hidden_layers", "'yaml.num_hidden_layers' is 1025"),
])
def test_a_registered_config_error_names_the_key_by_its_path_in_the_body(srv, body_field, change, path, said):
    """Every error about a registered model config names the key as the size limits do: its path
    in the request body (``config.hidden_size``), not the bare key with the config's internal origin."""
    import yaml

    cfg = json.loads((_models_dir() / ("mpt-7b.json" if body_field == "mpt" else "llama-3.2-1b.json")).read_text())
    cfg.pop("_id", None)
    cfg = {k: v for k, v in {**cfg, **change}.items() if v is not None}
    body_field = "config" if body_field == "mpt" else body_field  # a nested block of an MPT config
    value = cfg if body_field == "config" else yaml.safe_dump(cfg)
    with srv.client() as c:
        err = _error(c.post("/v1/models", json={"id": "bad-config", body_field: value}))
    assert err["field"] == path and err["message"].startswith(said) and "<model" not in err["message"], err


def test_an_unknown_kv_format_lists_the_kv_formats_only(srv):
    from planner.formats import list_formats

    with srv.client() as c:
        err = _error(c.post("/v1/capacity", json={**CAP, "kv": "bf61"}))
    assert err["field"] == "kv" and err["message"].startswith("'kv': unknown format 'bf61' (did you mean bf16"), err
    listed = err["message"].split("expected one of the formats for the KV cache: ", 1)[1].split(", ")
    assert listed == [f.name for f in list_formats(role="kv")] and "cb4" not in err["message"], err


@pytest.mark.parametrize(("route", "body", "field", "said"), [
    ("/v1/capacity/train", {"model": "llama-3.2-1b", "hardware": ["h100-sxm"], "tokens": "abc", "days": 1},
     "tokens", "expects a number"),
    ("/v1/estimate", {**B, "batch": 2.5}, "batch", "expects a whole number"),
    ("/v1/estimate", {**B, "allow_offload": "maybe"}, "allow_offload", "expects true or false"),
])
def test_a_value_of_the_wrong_type_is_said_in_plain_words(srv, route, body, field, said):
    with srv.client() as c:
        err = _error(c.post(route, json=body))
    assert err["field"] == field and said in err["message"] and "Input should" not in err["message"], err
