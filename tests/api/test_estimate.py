"""POST /v1/estimate: same numbers as the cost model (the route is a thin wrapper)."""

from __future__ import annotations

import pytest

from hwmodels import load_device
from planner.arch import load_arch
from planner.cli.common import clean_json
from planner.costmodel import Choice, Serving, estimate_inference, max_batch
from planner.layout import Layout
from planner.serving import RuntimeSettings


def _vllm(hw: str, model: str = "llama-3.1-8b") -> RuntimeSettings:
    """The default GPU engine's runtime facts: its context as reserved memory, its KV memory share,
    chunked-prefill activations, kernel facts and the embedding / LM head it keeps in 16 bit
    (docs/engines.md), as the request layer resolves them."""
    from planner.request.engine import resolve_engine
    from planner.serving import engine_settings

    sup = resolve_engine("vllm", load_device(hw), training=False, arch=load_arch(model))
    assert sup.runtime.float_weight_kinds == ("embedding", "lm_head")
    return RuntimeSettings(**engine_settings(sup.runtime))


def test_inference_matches_the_cost_model(client):
    body = {"model": "llama-3.1-8b", "hardware": "l4", "batch": 8, "prompt": 512, "gen": 128, "weights": "int4-g128", "kv": "fp8"}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 200
    est = estimate_inference(load_arch("llama-3.1-8b"), load_device("l4"), Layout(), Serving(batch=8, prompt=512, gen=128),
                             Choice(weights="int4-g128", kv="fp8"), options=_vllm("l4"))
    want = clean_json(est.to_dict(ops=False))
    want["engine"] = "vllm"
    want["engine_assumptions"] = r.json()["engine_assumptions"]
    assert want["engine_assumptions"]["kv_memory_fraction"] == 0.9
    assert want["engine_assumptions"]["chunked_prefill_tokens"] == 8192
    notes = r.json()["notes"]
    assert any(n.startswith("engine vllm (profiles/engines/vllm.yaml): 1.50 GiB") for n in notes), notes
    assert notes[-1].startswith("vllm keeps the embedding table and LM head in 16 bit")  # int4-g128 weights
    # the request layer adds the p10-p90 error bars of the same figures (planner.uncertainty)
    got_bands = r.json()["uncertainty"]["intervals"]
    assert got_bands["ttft_s"]["value"] == pytest.approx(est.ttft_s)
    assert got_bands["tpot_s"]["p10"] < est.tpot_s * 1.5 and got_bands["tpot_s"]["p90"] > est.tpot_s / 1.5
    assert {**r.json(), "notes": want["notes"], "uncertainty": None} == want
    for key in ("ttft_s", "tpot_s", "latency_s", "output_tokens_per_s", "prefill_tokens_per_s", "samples_per_s",
                "energy_j_per_token", "usd_per_million_tokens"):
        assert key in r.json()
    assert set(r.json()["memory"]) >= {"weights_bytes", "kv_cache_bytes", "activations_bytes", "per_device_bytes", "fits", "tiers"}


def test_batch_max_is_the_largest_fitting_batch(client):
    r = client.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "l4", "batch": "max"})
    b = max_batch(load_arch("llama-3.1-8b"), load_device("l4"), Layout(), Serving(batch=1, prompt=512, gen=128), Choice(),
                  options=_vllm("l4"))
    assert r.json()["batch"] == b and r.json()["memory"]["fits"]


def test_per_op_tables_on_request(client):
    plain = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4"}).json()
    ops = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "per_op": True}).json()
    assert "ops" not in plain["prefill"] and ops["prefill"]["ops"]


def test_training_mode(client):
    r = client.post("/v1/estimate", json={"mode": "training", "model": "llama-3.1-8b", "hardware": "h100-sxm", "tp": 2, "dp": 4,
                                          "micro_batch": 1, "global_batch": 32, "seq": 4096, "zero": 1, "recompute": "selective"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["mode"] == "training" and 0 < d["mfu"] <= 1 and d["step_time_s"] > 0
    assert set(d["memory"]) >= {"per_device_bytes", "weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "fits"}


@pytest.mark.parametrize("body,field", [
    ({"tp": 3}, "tp"),  # 32 heads are not divisible by 3
    ({"devices": 4}, "devices"),  # devices must equal tp×pp×dp
    ({"weights": "int9"}, "weights"),
    ({"sparsity": "unstructured:1.5"}, "sparsity"),
    ({"batch": 0}, "batch"),
    ({"weightz": "int4"}, "weightz"),
    ({"hardware": "../etc/passwd"}, "hardware"),
])
def test_invalid_fields_are_named(client, body, field):
    r = client.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "l4", **body})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_unknown_ids_are_404(client):
    r = client.post("/v1/estimate", json={"model": "llama-9", "hardware": "l4"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"
    r = client.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "l9"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "hardware"


def test_malformed_json_is_400(client):
    r = client.post("/v1/estimate", content=b'{"model": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
