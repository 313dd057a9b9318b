"""An export the plan's engine cannot run, asked over REST, names the re-plan as a REST request
(``POST /v1/plans`` and its JSON body, the plan's pins included) — not the `tierwise plan`
command the command line prints — and the request it names runs as given."""

from __future__ import annotations

import json
import re

import pytest
from conftest import make_settings
from fastapi.testclient import TestClient

from api.main import create_app
from planner.export import ExportError, export_plan
from planner.plan import plan_from_dict

# vLLM on an L4: one group pinned to int4-g128 (llama.cpp runs it: Q4_K), one to per-channel
# int8 (llama.cpp runs Q8_0, int8-g32, not int8): the llama.cpp export is refused.
PINNED = {"model": "llama-3.2-1b", "hardware": "l4", "devices": 1, "kv": "bf16", "max_memory_per_device": "20GB",
          "engine": "vllm", "pins": {"model.layers.3.mlp.gate_up": "int4-g128", "model.layers.0.self_attn.o_proj": "int8"}}


@pytest.fixture
def api(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, sync_wait_s=120.0))) as c:
        yield c


def _request(message: str) -> dict:
    m = re.search(r"`POST /v1/plans (\{[^`]*\})`", message)
    assert m, message
    return json.loads(m.group(1))


def test_an_export_refusal_over_rest_names_the_rest_request_that_replans(api):
    r = api.post("/v1/plans", json=PINNED)
    assert r.status_code == 201, r.text
    pid, plan = r.json()["id"], r.json()["plan"]
    r = api.get(f"/v1/plans/{pid}/export", params={"format": "llamacpp"})
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "export_unsupported", r.text
    msg = err["message"]
    assert "tierwise" not in msg and "--" not in msg.replace(" — ", " "), msg
    body = _request(msg)
    assert body == {"model": "llama-3.2-1b", "hardware": "l4", "max_memory_per_device": "20GB", "kv": "bf16",
                    "pins": {"model.layers.3.mlp.gate_up": "int4-g128"}, "engine": "llamacpp"}
    assert """the plan's 'pins' {"model.layers.0.self_attn.o_proj": "int8"} left out""" in msg
    # the command line keeps its command, from the same arguments
    with pytest.raises(ExportError) as e:
        export_plan(plan_from_dict(plan), "llamacpp")
    cli = e.value.render("cli")
    assert ("`tierwise plan --model llama-3.2-1b --hardware l4 --max-memory-per-device 20GB --kv bf16 "
            "--pin model.layers.3.mlp.gate_up=int4-g128 --engine llamacpp`") in cli and "POST /v1" not in cli
    assert "--pin model.layers.0.self_attn.o_proj=int8 left out" in cli
    # the request runs as given, and its plan exports
    r = api.post("/v1/plans", json=body)
    assert r.status_code == 201, r.text
    again = r.json()["plan"]
    assert again["engine"] == "llamacpp" and again["choices"]["model.layers.3.mlp.gate_up"]["weights"] == "int4-g128"
    r = api.get(f"/v1/plans/{r.json()['id']}/export")
    assert r.status_code == 200 and r.json()["format"] == "llamacpp", r.text


def test_a_training_engine_refusal_over_rest_names_the_plan_route_and_a_serving_request(api):
    r = api.post("/v1/plans", json=PINNED)
    assert r.status_code == 201, r.text
    r = api.get(f"/v1/plans/{r.json()['id']}/export", params={"format": "megatron"})
    msg = r.json()["error"]["message"]
    assert r.status_code == 422 and "tierwise" not in msg, r.text
    assert "megatron-core is a training engine, which POST /v1/plans does not take" in msg
    body = _request(msg)
    # a pin to a format Megatron-Core does not run is left out of the re-plan, not carried into it
    assert body["engine"] == "vllm" and "pins" not in body and set(body["formats"]) <= {"bf16", "fp16", "fp8-e4m3"}


def test_an_engine_off_its_hardware_over_rest_names_the_engine_route(api):
    r = api.post("/v1/plans", json=PINNED)
    r = api.get(f"/v1/plans/{r.json()['id']}/export", params={"format": "executorch"})
    msg = r.json()["error"]["message"]
    assert r.status_code == 422 and "GET /v1/engines/executorch" in msg and "tierwise" not in msg, r.text
