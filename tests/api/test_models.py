"""/v1/models: catalog, custom HF-style configs, errors."""

from __future__ import annotations

import json

from planner.arch import list_models, model_config_path


def _config(model_id: str) -> dict:
    return json.loads(model_config_path(model_id).read_text())


def test_list_and_get(client):
    items = client.get("/v1/models").json()["items"]
    assert [i["id"] for i in items] == sorted(list_models())
    m = client.get("/v1/models/llama-3.1-8b").json()
    # Llama 3.1 8B: 8.03e9 parameters (Llama 3 Herd of Models, Table 3), ±1 %
    assert abs(m["params"] - 8.03e9) / 8.03e9 < 0.01 and m["num_layers"] == 32 and not m["custom"]


def test_unknown_model_suggests(client):
    r = client.get("/v1/models/llama-3.1-8")
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"
    assert "llama-3.1-8b" in r.json()["error"]["details"]["suggestions"]


def test_register_config_and_estimate_with_it(client):
    cfg = _config("llama-3.1-8b")
    cfg["num_hidden_layers"] = 16  # a half-depth variant
    r = client.post("/v1/models", json={"id": "my-llama-16l", "config": cfg})
    assert r.status_code == 201, r.text
    full = client.get("/v1/models/llama-3.1-8b").json()
    half = r.json()
    assert half["custom"] and half["num_layers"] == 16 and half["params"] < full["params"]
    est = client.post("/v1/estimate", json={"model": "my-llama-16l", "hardware": "l4"}).json()
    assert est["model"] == "my-llama-16l"
    assert client.post("/v1/models", json={"id": "my-llama-16l", "config": cfg}).status_code == 409
    assert client.post("/v1/models", json={"id": "llama-3.1-8b", "config": cfg}).status_code == 409


def test_invalid_config_names_the_field(client):
    cfg = _config("llama-3.1-8b")
    cfg["num_attention_heads"] = -1
    r = client.post("/v1/models", json={"id": "broken", "config": cfg})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_model_config"
    assert "num_attention_heads" in r.json()["error"]["message"]


def test_yaml_config_with_tags_is_refused(client):
    r = client.post("/v1/models", json={"id": "evil", "yaml": "model_type: !!python/name:os.system\n"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_yaml"


def test_ids_cannot_be_paths(client):
    r = client.post("/v1/models", json={"id": "../x", "config": {}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "id"
