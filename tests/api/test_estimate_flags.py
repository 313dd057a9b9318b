"""POST /v1/estimate takes the same knobs as `tierwise estimate` (snake_case)."""

from hwmodels import load_device
from planner.arch import load_arch
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, estimate_inference


def test_kv_policies_low_rank_and_runtime_match_the_library(client):
    body = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "batch": 4, "prompt": 4000, "gen": 500,
            "kv_budget": 1024, "kv_share": 2, "low_rank": 1024, "runtime": "eager"}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 200, r.text
    want = estimate_inference(load_arch("llama-3.1-8b"), load_device("h100-sxm"), Layout(), Serving(batch=4, prompt=4000, gen=500),
                              Choice(low_rank=1024), options=RuntimeSettings(kv_token_budget=1024, kv_share_layers=2, runtime="eager",
                                                                             # h100-sxm's default engine, vLLM, runs its
                                                                             # fused kernels in eager mode
                                                                             eager_fused_ops=True))
    got = r.json()
    assert got["tpot_s"] == want.tpot_s
    assert got["memory"]["kv_cache_bytes"] == want.memory.kv_cache_bytes


def test_training_context_parallel_devices_rule(client):
    body = {"mode": "training", "model": "llama-3.1-8b", "hardware": "h100-sxm", "tp": 2, "cp": 2, "dp": 2,
            "devices": 4, "global_batch": 8, "seq": 8192}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == "devices"
    r = client.post("/v1/estimate", json={**body, "devices": 8})
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "training"


def test_bad_kv_evicted_format_is_named(client):
    r = client.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "kv_budget": 16, "kv_evicted": "nf4"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "kv_evicted"
