"""REST: the default engine runs the model's family (vLLM runs no CNN); an engine named for
a family it does not run is a 422 naming 'engine', the family and the engines that run it."""

from __future__ import annotations

from planner.engines import load_engine

REPRESENTATIVES = {"decoder": "llama-3.2-1b", "encoder": "bert-base", "encoder_decoder": "t5-3b", "cnn": "resnet-50",
                   "vit": "vit-h"}


def test_rest_default_engine_and_explicit_mismatch(client):
    for family, model in REPRESENTATIVES.items():
        for hw in ("h100-sxm", "iphone-15-pro", "m2-max", "zcu102", "tpu-v4"):
            r = client.post("/v1/estimate", json={"model": model, "hardware": hw, "batch": 1, "prompt": 64, "gen": 8})
            assert r.status_code in (200, 409, 422), (model, hw, r.text)
            if r.status_code == 200:
                assert family in load_engine(r.json()["engine"]).families, (model, hw)
    r = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "engine": "vllm"})
    assert r.status_code == 422, r.text
    body = r.text
    assert "'engine'" in body and "cnn" in body and "hf-transformers" in body
