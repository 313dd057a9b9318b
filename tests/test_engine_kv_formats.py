"""KV-cache formats an engine profile lists are formats the request layer takes for ``kv``:
every engine × KV format of profiles/engines/*.yaml passes the generic format check and a
whole estimate request on hardware the engine runs; llama.cpp's q8_0 cache (int8-g32) plans,
estimates and exports from the command line, REST and the Python API alike, priced at 8.5 bits."""

from __future__ import annotations

import json

import pytest

import planner
from hwmodels import list_devices, load_device
from planner.engines import EngineSupportError, list_engines, load_engine
from planner.formats import get_format, list_formats
from planner.request.estimate import EstimateRequest, resolve_inference
from planner.request.fields import check_format
from tests.frontdoors import app_client, run


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path) as c:
        yield c

MODEL, HW = "llama-3.2-1b", "rtx-4090"
DEVICES = [load_device(d) for d in list_devices()]


def _engine_kv() -> list[tuple[str, int, str]]:
    """(engine, target index, KV format) for every KV format of every engine profile target."""
    return [(e, i, k) for e in list_engines() for i, t in enumerate(load_engine(e).targets) for k in t.kv]


def test_the_profiles_list_kv_formats_at_all():
    pairs = _engine_kv()
    assert ("llamacpp", 0, "int8-g32") in pairs and ("trtllm", 1, "nvfp4") in pairs
    assert len({e for e, _, _ in pairs}) >= 10


@pytest.mark.parametrize("engine, target, kv", _engine_kv())
def test_every_engine_kv_format_is_a_kv_format_of_the_request_layer(engine, target, kv):
    assert check_format("kv", kv, "kv") == kv
    assert get_format(kv).is_kv and kv in {f.name for f in list_formats(role="kv")}
    spec = load_engine(engine)
    if spec.kind == "training" or "decoder" not in spec.families:
        return  # no decoder to keep a KV cache for: the field check above is the request layer's answer
    t = spec.targets[target]
    device = next((d for d in DEVICES if t.matches(d)), None)
    assert device is not None, f"no catalog hardware matches {engine} target {target}"
    r = resolve_inference(EstimateRequest(model=MODEL, hardware=device.id, engine=engine, kv=kv))
    assert r.choice.kv == kv and r.engine.engine == engine


def test_llamacpp_q8_0_kv_cache_from_the_command_line(capsys, tmp_path):
    code, out, err = run(capsys, "estimate", "-m", MODEL, "-H", HW, "--engine", "llamacpp", "--kv", "int8-g32",
                         "--json")
    assert code == 0, err
    q8 = json.loads(out)
    code, out, err = run(capsys, "estimate", "-m", MODEL, "-H", HW, "--engine", "llamacpp", "--kv", "fp16", "--json")
    assert code == 0, err
    f16 = json.loads(out)
    assert q8["kv"] == "int8-g32"
    # Q8_0: 32 int8 codes + one fp16 scale = 8.5 bits a value against fp16's 16
    assert q8["memory"]["kv_cache_bytes"] == pytest.approx(f16["memory"]["kv_cache_bytes"] * 8.5 / 16, rel=1e-9)

    plan_path = tmp_path / "plan.yaml"
    code, out, err = run(capsys, "plan", "-m", MODEL, "-H", HW, "--engine", "llamacpp", "--kv", "int8-g32",
                         "--out", str(plan_path), "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["kv"] == "int8-g32" and plan["engine"] == "llamacpp"
    assert plan["predicted"]["kv_cache_bytes"] == pytest.approx(q8["memory"]["kv_cache_bytes"], rel=1e-9)
    # ... and the llama.cpp export runs its server with the q8_0 cache
    code, out, err = run(capsys, "export", str(plan_path), "--out", str(tmp_path / "gguf"))
    assert code == 0, err
    script = (tmp_path / "gguf" / "quantize.sh").read_text()
    assert "--cache-type-k q8_0" in script and "--cache-type-v q8_0" in script
    # a quantized V cache needs flash attention: without --flash-attn llama-server stops at load
    assert "--flash-attn" in script and "llama-server runs a quantized V cache only with flash attention" in " ".join((out + err).split())


def test_llamacpp_per_head_int8_kv_is_refused_naming_its_q8_0_format(capsys):
    code, _, err = run(capsys, "plan", "-m", MODEL, "-H", HW, "--engine", "llamacpp", "--kv", "int8")
    assert code == 2
    assert "--kv" in err and "'int8'" in err and "(its int8 format: int8-g32)" in err


def test_llamacpp_q8_0_kv_cache_over_rest(client):
    body = {"model": MODEL, "hardware": HW, "engine": "llamacpp", "kv": "int8-g32"}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 200, r.text
    est = r.json()
    assert est["kv"] == "int8-g32"
    r16 = client.post("/v1/estimate", json={**body, "kv": "fp16"})
    assert est["memory"]["kv_cache_bytes"] == pytest.approx(r16.json()["memory"]["kv_cache_bytes"] * 8.5 / 16,
                                                            rel=1e-9)
    r = client.post("/v1/plans", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["plan"]["kv"] == "int8-g32"
    r = client.post("/v1/estimate", json={**body, "kv": "int8"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "kv" and "int8-g32" in r.json()["error"]["message"]


def test_llamacpp_q8_0_kv_cache_from_python():
    est = planner.estimate(MODEL, HW, engine="llamacpp", kv="int8-g32")
    assert est.choice.kv == "int8-g32"
    base = planner.estimate(MODEL, HW, engine="llamacpp", kv="fp16")
    assert est.memory.kv_cache_bytes == pytest.approx(base.memory.kv_cache_bytes * 8.5 / 16, rel=1e-9)
    plan = planner.plan(MODEL, HW, engine="llamacpp", kv="int8-g32")
    assert plan.kv == "int8-g32" and plan.engine == "llamacpp"
    with pytest.raises(EngineSupportError) as e:
        planner.estimate(MODEL, HW, engine="llamacpp", kv="int8")
    assert e.value.field == "kv"


def test_a_plan_without_kv_searches_the_engines_own_kv_formats():
    # llama.cpp has no per-channel int8 or int4-g64 KV cache, the planner's defaults; its q8_0 and q4_0 caches
    # (int8-g32, int4-g32) are searched in their place, as its own weight formats replace the defaults.
    from planner.request.plan import PlanRequest, resolve_plan
    from planner.search_problem import kv_candidates

    for hw in ("ryzen-9-7950x", "rtx-4090"):
        arch, dev, problem, _ = resolve_plan(PlanRequest(model="llama-3.2-1b", hardware=hw, engine="llamacpp"))
        kvs = kv_candidates(arch, dev, problem, "bf16")
        assert {"int8-g32", "int4-g32"} <= set(kvs) and set(kvs) <= set(problem.engine.kv), (hw, kvs)
    arch, dev, problem, _ = resolve_plan(PlanRequest(model="llama-3.2-1b", hardware="h100-sxm", engine="vllm"))
    assert kv_candidates(arch, dev, problem, "bf16") == ["bf16", "fp8-e4m3"]  # vLLM's own: nothing replaced


def test_vllm_serves_an_fp8_e5m2_kv_cache_without_a_checkpoint_scheme():
    # vLLM on a T4 keeps its KV cache in FP8 E5M2 only: no scales to store, the flag sets it at run time.
    import json as _json

    from planner.export import export_plan
    from planner.request.plan import PlanRequest, run_plan
    from tests.test_export import ctx_for

    plan = run_plan(PlanRequest(model="phi-3-mini", hardware="t4", engine="vllm", kv="fp8-e5m2", formats=["fp16", "int8"],
                                max_memory_per_device="6GB", time_limit_s=30))
    out = export_plan(plan, "vllm", ctx_for(plan))
    assert "--kv-cache-dtype fp8_e5m2" in out.next_command
    ct = export_plan(plan, "compressed-tensors", ctx_for(plan))
    qc = _json.loads(next(f.content for f in ct.files if f.path.endswith("quantization_config.json")))
    assert qc.get("kv_cache_scheme") is None and any("fp8-e5m2" in n for n in ct.notes)
