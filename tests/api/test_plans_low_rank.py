"""POST /v1/plans forwards `low_rank` (the CLI's --low-rank) to the planner."""


def test_low_rank_plan_over_http(client):
    # Llama-3.2-1B on an L4 with a budget 3% below the smallest plan without factors (every group at
    # its smallest format) only fits with low-rank factors (docs/planner.md, "Low-rank factorisation").
    # Low-rank layers run on Tierwise's own execution (engine torch).
    from planner.arch import load_arch
    from planner.request.plan import PlanRequest, resolve_plan
    from planner.search import Planner

    arch, dev, problem, _ = resolve_plan(PlanRequest(model="llama-3.2-1b", hardware="l4", kv="bf16",
                                                     objective="memory", engine="torch"))
    smallest = Planner(load_arch("llama-3.2-1b"), dev).solve(problem).predicted.per_device_bytes
    body = {"model": "llama-3.2-1b", "hardware": "l4", "devices": 1, "kv": "bf16", "engine": "torch",
            "max_memory_per_device": f"{0.97 * smallest:.0f}B"}
    r = client.post("/v1/plans", json=body)
    if r.status_code == 202:  # the diagnosis outlasted the sync wait: the job carries the error
        import time

        for _ in range(1200):
            job = client.get(r.headers["Location"]).json()
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert job["status"] == "failed" and job["error"]["code"] == "infeasible", job
    else:
        assert r.status_code == 422 and r.json()["error"]["code"] == "infeasible"
    r = client.post("/v1/plans", json={**body, "low_rank": [256, 512]})
    assert r.status_code in (201, 202), r.text
    if r.status_code == 202:
        import time

        url = r.headers["Location"]
        for _ in range(600):
            job = client.get(url).json()
            if job.get("status") in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        plan = client.get(f"/v1/plans/{job['plan_id']}").json()
    else:
        plan = r.json()
    body_plan = plan.get("plan", plan)
    assert any(c.get("low_rank") for c in body_plan["choices"].values())


def test_low_rank_for_an_engine_without_model_code_for_it_is_refused(client):
    r = client.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "l4", "low_rank": [256]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "low_rank" and "vllm on l4 does not run low-rank" in err["message"] and "torch" in err["message"]
    r = client.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "l4",
                                       "pins": {"model.layers.3.mlp.gate_up": "bf16@r256"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "pins", r.text


def test_low_rank_must_be_positive(client):
    r = client.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "l4", "low_rank": [0]})
    assert r.status_code == 422
    assert "low_rank" in r.text


def test_pins_take_option_keys_as_the_command_line_does(client):
    # weights[+sparsity][@rRANK][/activations]: the value pattern refused '@', '+' and '/' before,
    # so no REST pin could name an activation format, a sparsity or a rank.
    body = {"model": "llama-3.2-1b", "hardware": "h100-sxm"}
    r = client.post("/v1/plans", json={**body, "pins": {"model.layers.3.mlp.gate_up": "int4-g128/fp8-e4m3"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "pins", r.text
    assert "runs int4-g128 weights with activations bf16, fp16" in r.json()["error"]["message"]
    r = client.post("/v1/plans", json={**body, "engine": "torch", "pins": {"model.layers.3.mlp.gate_up": "bf16@r256"}})
    assert r.status_code in (201, 202), r.text
    if r.status_code == 201:
        assert r.json()["plan"]["choices"]["model.layers.3.mlp.gate_up"]["low_rank"] == 256
    r = client.post("/v1/plans", json={**body, "pins": {"model.layers.3.mlp.gate_up": "bf16;rm -rf"}})
    assert r.status_code == 422 and r.json()["error"]["field"].startswith("pins"), r.text


def test_engines_say_whether_they_run_low_rank_layers(client):
    assert client.get("/v1/engines/torch").json()["low_rank"] is True
    assert client.get("/v1/engines/vllm").json()["low_rank"] is False
    assert {e["id"] for e in client.get("/v1/engines").json()["items"] if e["low_rank"]} == {"torch"}
    # where no engine that runs them runs at all, the refusal says so instead of naming torch
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "iphone-15-pro", "low_rank": 256})
    assert r.status_code == 422 and r.json()["error"]["field"] == "low_rank"
    assert "engines that do on iphone-15-pro: none" in r.json()["error"]["message"]
