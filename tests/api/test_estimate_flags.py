"""POST /v1/estimate takes the same knobs as `tierwise estimate` (snake_case)."""

from hwmodels import load_device
from planner.arch import load_arch
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, estimate_inference
from planner.engines import load_engine
from planner.serving import engine_settings


def test_kv_policies_low_rank_and_runtime_match_the_library(client):
    # Low-rank layers run on Tierwise's own execution (engine torch); vLLM has no model code for them.
    body = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "batch": 4, "prompt": 4000, "gen": 500,
            "kv_budget": 1024, "kv_share": 2, "low_rank": 1024, "runtime": "eager", "engine": "torch"}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 200, r.text
    dev = load_device("h100-sxm")
    settings = engine_settings(load_engine("torch").support(dev).runtime)
    want = estimate_inference(load_arch("llama-3.1-8b"), dev, Layout(), Serving(batch=4, prompt=4000, gen=500),
                              Choice(low_rank=1024), options=RuntimeSettings(kv_token_budget=1024, kv_share_layers=2,
                                                                             runtime="eager", **settings))
    got = r.json()
    assert got["tpot_s"] == want.tpot_s
    assert got["memory"]["kv_cache_bytes"] == want.memory.kv_cache_bytes
    r = client.post("/v1/estimate", json={**body, "engine": "vllm"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "low_rank", r.text
    assert "torch" in r.json()["error"]["message"] and "--low-rank" not in r.json()["error"]["message"]


def test_training_context_parallel_devices_rule(client):
    body = {"mode": "training", "model": "llama-3.1-8b", "hardware": "h100-sxm", "tp": 2, "cp": 2, "dp": 2,
            "devices": 4, "global_batch": 8, "seq": 8192, "zero": 1}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == "devices"
    r = client.post("/v1/estimate", json={**body, "devices": 8})
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "training"


def test_bad_kv_evicted_format_is_named(client):
    r = client.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "kv_budget": 16, "kv_evicted": "nf4"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "kv_evicted"
