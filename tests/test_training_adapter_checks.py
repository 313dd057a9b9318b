"""LoRA / QLoRA need linear layers to adapt and a rank no larger than the matrices they factor: a CNN
or a rank-100000 adapter is refused naming the field, not priced with 0 or 42 billion trainable
parameters."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("model", "finetune", "words"), [
    ("resnet-50", "lora:8", "resnet-50 (cnn) has none"),
    ("mobilenet-v2", "qlora:4", "mobilenet-v2 (cnn) has none"),
    ("llama-3.1-8b", "lora:100000", "the rank is at most 1024"),
])
def test_adapters_that_cannot_exist_are_refused(cli, model, finetune, words):
    r = cli("estimate", "--mode", "training", "-m", model, "-H", "h100-sxm", "--finetune", finetune)
    assert r.code == 2 and r.err.startswith(f"error: --finetune {finetune}") and words in r.err, r.err


def test_rest_names_the_fields_in_its_own_syntax(tmp_path):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import Settings

    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 't.db'}"))) as c:
        r = c.post("/v1/estimate", json={"mode": "training", "model": "resnet-50", "hardware": "h100-sxm", "finetune": "lora:8"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "finetune"
        assert "--" not in r.json()["error"]["message"]
        r = c.post("/v1/estimate", json={"mode": "training", "model": "llama-3.1-8b", "hardware": "h100-sxm", "pp": 3,
                                         "interleave": 2, "global_batch": 6})
        msg = r.json()["error"]["message"]
        assert r.status_code == 422 and "'interleave' 2 × 'pp' 3" in msg and "--" not in msg, msg


def test_a_rank_at_the_limit_is_priced(cli):
    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--finetune", "lora:1024", "--json")
    assert r.code == 0, r.err


def test_listing_references_follow_the_front_end(cli, tmp_path):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import Settings

    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "iphone-15-pro")
    assert r.code == 2 and "`tierwise engines list`" in r.err, r.err
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 't.db'}"))) as c:
        r = c.post("/v1/estimate", json={"mode": "training", "model": "llama-3.1-8b", "hardware": "iphone-15-pro"})
        msg = r.json()["error"]["message"]
        assert r.status_code == 422 and "GET /v1/engines" in msg and "tierwise" not in msg, msg
        r = c.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "kv_budget": 0})
        msg = r.json()["error"]["message"]
        assert r.status_code == 422 and "--" not in msg, msg
