"""``GET /v1/engines`` and ``GET /v1/engines/{id}`` over real HTTP (the ``tierwise serve``
process on a loopback port): the list, the default engine per hardware class, the formats a
request that names none gets — checked against what ``POST /v1/estimate`` and
``POST /v1/plans`` actually do with them — and the errors, which name their field."""

from __future__ import annotations

import httpx
import pytest
from conftest import Server, custom_profile

from hwmodels import list_devices, load_device
from planner.engines import default_engine, list_engines, load_engine

#: One device of every hardware class, and what docs/engines.md says a request there gets.
CLASS_DEFAULTS = {
    "h100-sxm": ("vllm", "megatron-core"),
    "t4": ("vllm", "megatron-core"),
    "tpu-v5e": ("vllm", "fsdp"),
    "iphone-15-pro": ("executorch", None),
    "m2-max": ("llamacpp", None),
    "cpu-host": ("llamacpp", None),
    "jetson-agx-orin": ("llamacpp", None),
    "sn40l": ("sambaflow", None),
    "zcu102": ("vitis-ai", None),
}


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("engines-route")).start()
    try:
        with httpx.Client(base_url=srv.base, timeout=120) as c:
            yield c
    finally:
        srv.stop()


def test_list_names_every_engine_profile_with_the_hardware_it_runs_on(http):
    r = http.get("/v1/engines")
    assert r.status_code == 200, r.text
    items = {i["id"]: i for i in r.json()["items"]}
    assert sorted(items) == list_engines()
    for eid, item in items.items():
        spec = load_engine(eid)
        assert item["exporter"] == spec.exporter and item["kind"] == spec.kind
        assert item["runs_on"] == sorted(d for d in list_devices() if spec.support(load_device(d)) is not None)
    # facts from the profiles' sources: vLLM is no phone runtime, the Vitis AI DPU only FPGAs
    assert "iphone-15-pro" not in items["vllm"]["runs_on"] and "h100-sxm" in items["vllm"]["runs_on"]
    assert items["vitis-ai"]["runs_on"] and all(load_device(d).device_class == "fpga" for d in items["vitis-ai"]["runs_on"])
    assert "iphone-15-pro" in items["executorch"]["runs_on"]


@pytest.mark.parametrize("hw", sorted(CLASS_DEFAULTS))
def test_per_hardware_list_and_defaults_are_the_request_layers(http, hw):
    r = http.get("/v1/engines", params={"hardware": hw})
    assert r.status_code == 200, r.text
    body = r.json()
    serving, training = CLASS_DEFAULTS[hw]
    assert (body["hardware"], body["default"], body["default_training"]) == (hw, serving, training)
    dev = load_device(hw)
    assert body["default"] == default_engine(dev).id
    listed = [i["id"] for i in body["items"]]
    assert listed == [e for e in list_engines() if load_engine(e).support(dev) is not None]
    assert body["default"] in listed


@pytest.mark.parametrize("hw", sorted(CLASS_DEFAULTS))
def test_engine_defaults_are_what_an_estimate_without_formats_uses_and_they_run(http, hw):
    """The page fills its format fields from ``defaults``: sending them back explicitly must
    give the same estimate as leaving them out, and every plan format must be accepted."""
    engine = CLASS_DEFAULTS[hw][0]
    info = http.get(f"/v1/engines/{engine}", params={"hardware": hw}).json()
    d = info["defaults"]
    sup = info["support"]
    assert d["weights"] in sup["weights"] and d["activations"] in sup["activations"]
    assert any(d["weights"] in s["weights"] and d["activations"] in s["activations"] for s in sup["schemes"])
    assert d["kv"] in sup["kv"]
    model = "llama-3.2-1b" if load_engine(engine).runs_family("decoder") else "mobilenet-v2"  # Vitis AI: CNNs
    base = {"model": model, "hardware": hw, "engine": engine, "batch": 1, "prompt": 64, "gen": 16}
    implicit = http.post("/v1/estimate", json=base)
    # A CNN keeps no KV cache: the page disables its KV field and sends none (a KV format is refused).
    sent = {k: v for k, v in d.items() if not (k == "kv" and model == "mobilenet-v2")}
    explicit = http.post("/v1/estimate", json={**base, **sent})
    assert implicit.status_code == explicit.status_code, (implicit.text, explicit.text)
    if implicit.status_code == 200:
        for k in ("weights", "activations", "kv"):
            # a CNN's answer has no KV format (null)
            assert explicit.json()[k] == implicit.json()[k] == (None if k == "kv" and model == "mobilenet-v2" else d[k])
        assert explicit.json()["engine"] == engine
    else:  # too small a device for even this model: the same does-not-fit answer, not a format error
        assert implicit.json()["error"]["code"] == explicit.json()["error"]["code"] == "infeasible"
    assert info["plan_formats"] and set(info["plan_formats"]) <= set(sup["weights"])
    for f in info["plan_formats"]:
        r = http.post("/v1/estimate", json={**base, "weights": f})
        assert r.status_code in (200, 422), r.text
        assert r.status_code == 200 or r.json()["error"]["code"] == "infeasible", (f, r.text)


def test_the_estimate_forms_old_bf16_on_a_phone_is_refused_naming_the_field(http):
    """What the page used to send on an iPhone (bf16 everywhere) is an engine error naming
    'weights' — the reason the page now fills the engine's defaults (fp16) instead."""
    info = http.get("/v1/engines/executorch", params={"hardware": "iphone-15-pro"}).json()
    assert info["defaults"]["weights"] == "fp16"
    r = http.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "iphone-15-pro", "weights": "bf16",
                                        "activations": "bf16", "kv": "bf16"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "engine_unsupported" and err["field"] == "weights" and "executorch" in err["message"]


def test_one_engine_without_hardware_has_its_runtime_and_sources(http):
    r = http.get("/v1/engines/llamacpp")
    assert r.status_code == 200, r.text
    body = r.json()
    spec = load_engine("llamacpp")
    assert body["runtime"]["context_bytes"] == spec.runtime.context_bytes
    assert body["sources"] == dict(spec.sources) and all(v.strip() for v in body["sources"].values())
    assert body.get("support") is None and body.get("defaults") is None
    assert body["activation_smoothing"] is None  # llama.cpp quantizes activations per ggml block, no SmoothQuant
    assert body["activation_blocks"] == dict(spec.runtime.activation_blocks) and body["activation_blocks"]["int4-g32"] == 32


def test_an_engine_that_smooths_int8_activations_says_so(http):
    body = http.get("/v1/engines/vllm").json()
    assert body["activation_smoothing"] == 0.8 == load_engine("vllm").runtime.smoothing_alpha
    listed = {e["id"]: e["activation_smoothing"] for e in http.get("/v1/engines").json()["items"]}
    assert listed["sglang"] == 0.8 and listed["trtllm"] is None


def test_custom_hardware_gets_the_engines_of_its_class(http):
    prof = custom_profile("lab-l4-engines")
    assert http.post("/v1/hardware", json={"profile": prof}).status_code == 201
    mine = http.get("/v1/engines", params={"hardware": "lab-l4-engines"}).json()
    l4 = http.get("/v1/engines", params={"hardware": "l4"}).json()
    assert [i["id"] for i in mine["items"]] == [i["id"] for i in l4["items"]]
    assert mine["default"] == l4["default"] == "vllm"
    one = http.get("/v1/engines/vllm", params={"hardware": "lab-l4-engines"}).json()
    assert one["support"]["hardware"] == "lab-l4-engines" and one["defaults"]["weights"] == "bf16"


@pytest.mark.parametrize(("path", "params", "status", "code", "field", "says"), [
    ("/v1/engines/vlm", None, 404, "not_found", "engine", "vllm"),
    ("/v1/engines/VLLM", None, 404, "not_found", "engine", "vllm"),
    # the engine is the path; the hardware the caller asked about is the field (both lists are in the message)
    ("/v1/engines/vllm", {"hardware": "iphone-15-pro"}, 422, "engine_unsupported", "hardware", "executorch"),
    ("/v1/engines/vitis-ai", {"hardware": "h100-sxm"}, 422, "engine_unsupported", "hardware", "vllm"),
    ("/v1/engines/vllm", {"hardware": "h100"}, 404, "not_found", "hardware", "h100-sxm"),
    ("/v1/engines", {"hardware": "nope-9000"}, 404, "not_found", "hardware", "GET /v1/hardware"),
    ("/v1/engines", {"hardware": "../../etc/passwd"}, 422, None, "hardware", ""),
    ("/v1/engines", {"hardware": "x" * 65}, 422, None, "hardware", ""),
    ("/v1/engines/vllm.yaml", None, 404, "not_found", "engine", ""),
    ("/v1/engines/profiles%2Fengines%2Fvllm.yaml", None, 404, None, None, ""),
])
def test_errors_name_the_field_and_never_read_a_path(http, path, params, status, code, field, says):
    r = http.get(path, params=params)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if code:
        assert err["code"] == code
    if field:
        assert err["field"] == field
    assert says in err["message"]


def test_engine_routes_are_in_the_openapi_description(http):
    paths = http.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/engines"] and "get" in paths["/v1/engines/{engine_id}"]
    params = {p["name"] for p in paths["/v1/engines"]["get"]["parameters"]}
    assert params == {"hardware", "model"}


def test_tierwise_torch_execution_engine_over_http(http):
    """The ``torch`` engine (Tierwise's own PyTorch execution): its CPU support is the execution
    registry, a plan for it on a CPU uses formats llama.cpp does not run, and a phone is refused."""
    from planner.execution.apply import executable_formats

    r = http.get("/v1/engines/torch", params={"hardware": "cpu-host"})
    assert r.status_code == 200, r.text
    sup = r.json()["support"]
    want = executable_formats()
    assert sorted({w for s in sup["schemes"] for w in s["weights"]}) == sorted(want["weights"])
    assert sup["kv"] == list(want["kv"]) and sup["sparsity"] == list(want["sparsity"])
    assert "torch" in [i["id"] for i in http.get("/v1/engines", params={"hardware": "cpu-host"}).json()["items"]]
    plan = http.post("/v1/plans", json={"model": "all-minilm-l6-v2", "hardware": "cpu-host", "engine": "torch",
                                        "batch": 16, "prompt": 128, "gen": 0, "avg_bits": 5,
                                        "formats": ["int8", "fp6-e3m2", "int4-g64", "int3-g32"]})
    assert plan.status_code == 201, plan.text
    body = plan.json()["plan"]
    assert body["engine"] == "torch" and body["predicted"]["avg_weight_bits"] <= 5 + 1e-6
    used = {c["weights"] for c in body["choices"].values()}
    assert used - {"int8-g32", "int4-g32", "int4-g32-zp", "int4-g128", "int3-g128"}, "formats llama.cpp does not run"
    same = http.post("/v1/plans", json={"model": "all-minilm-l6-v2", "hardware": "cpu-host", "batch": 16, "prompt": 128,
                                        "gen": 0, "avg_bits": 5, "formats": ["int8", "fp6-e3m2", "int4-g64", "int3-g32"]})
    assert same.status_code == 422 and same.json()["error"]["field"] == "formats"  # the CPU default, llama.cpp
    r = http.get("/v1/engines/torch", params={"hardware": "iphone-15-pro"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "hardware"


@pytest.mark.parametrize("hw", sorted(CLASS_DEFAULTS))
def test_runtime_eager_is_priced_or_refused_naming_the_field_for_every_engine_on_the_hardware(http, hw):
    from planner.engines import engines_for

    dev = load_device(hw)
    model = "resnet-50" if hw == "zcu102" else "llama-3.2-1b"
    for eng in engines_for(dev, training=False):
        sup = load_engine(eng).support(dev)
        if not load_engine(eng).runs_family(load_arch_family(model)):
            continue
        r = http.post("/v1/estimate", json={"model": model, "hardware": hw, "engine": eng, "runtime": "eager",
                                            "batch": 1, "prompt": 64, "gen": 16})
        err = r.json().get("error") or {}
        if "eager" in sup.runtime.runtimes:
            assert err.get("field") != "runtime", (eng, r.text)
            if r.status_code == 200:
                assert r.json()["engine_assumptions"]["runtime"] == "eager"
        else:
            assert r.status_code == 422, (eng, r.text)
            assert err["field"] == "runtime" and err["details"]["supported"] == ["graph"]
            assert "'runtime' must be graph; got 'eager'" in err["message"]


def load_arch_family(model: str) -> str:
    from planner.arch import load_arch

    return load_arch(model).family


@pytest.mark.parametrize("model, hardware", [
    ("resnet-50", "cpu-host"), ("resnet-50", "h100-sxm"), ("bert-base", "m2-max"), ("t5-3b", "h100-sxm"),
    ("llama-3.2-1b", "cpu-host"), ("mobilenet-v2", "iphone-15-pro"),
])
def test_the_defaults_for_a_model_are_what_a_request_naming_it_gets(http, model, hardware):
    """With ``model``, the default is the engine a request for that model and no engine gets (a CNN on a CPU:
    not llama.cpp, which runs no CNN), so the page's picker and the API agree."""
    listed = http.get("/v1/engines", params={"hardware": hardware, "model": model})
    assert listed.status_code == 200, listed.text
    est = http.post("/v1/estimate", json={"model": model, "hardware": hardware})
    assert est.status_code == 200, est.text
    assert listed.json()["default"] == est.json()["engine"], (listed.json()["default"], est.json()["engine"])
    assert listed.json()["model"] == model


def test_a_model_without_hardware_or_unknown_is_refused_naming_model(http):
    r = http.get("/v1/engines", params={"model": "resnet-50"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "model", r.text
    r = http.get("/v1/engines", params={"hardware": "cpu-host", "model": "resnet-5O"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "model", r.text
