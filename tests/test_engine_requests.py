"""The ``engine`` field of the request layer: CLI (``--engine``), REST (``engine``) and the
Python API agree; defaults per hardware class; formats checked against the engine only when
given; plans search only what the engine runs; the engine's runtime context is memory."""

from __future__ import annotations

import json

import pytest
import yaml

import planner
from hwmodels import load_device
from planner.engines import EngineSupportError, support
from hwmodels.errors import UnknownIdError
from planner.errors import TierwiseError
from planner.request.estimate import EstimateRequest, resolve_inference
from tests.frontdoors import app_client, run


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path) as c:
        yield c


# ---------------------------------------------------------------- defaults per class


@pytest.mark.parametrize("hardware, engine, weights", [
    ("h100-sxm", "vllm", "bf16"),        # data-centre GPU → vLLM, native bf16
    ("v100-16gb", "vllm", "fp16"),       # Volta: no bf16, vLLM runs fp16 there
    ("m2-max", "llamacpp", "fp16"),      # Apple laptop → llama.cpp
    ("iphone-15-pro", "executorch", "fp16"),  # phone → ExecuTorch
])
def test_default_engine_per_class_is_in_the_estimate(capsys, hardware, engine, weights):
    model = "llama-3.2-1b"
    code, out, err = run(capsys, "estimate", "-m", model, "-H", hardware, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["engine"] == engine and d["weights"] == weights
    assert planner.estimate(model, hardware).engine == engine


def test_fpga_default_is_vitis_ai_and_its_int8_baseline():
    # The DPU runs int8 only: the defaults (native 16-bit) must not fail there.
    est = planner.estimate("resnet-50", "vck190")
    assert est.engine == "vitis-ai" and est.choice.weights == "int8" and est.choice.activations == "int8"


def test_training_estimate_names_its_training_engine(capsys):
    code, out, err = run(capsys, "estimate", "--mode", "training", "-m", "llama-3.2-1b", "-H", "h100-sxm",
                         "--finetune", "lora:8", "--seq", "512", "--json")
    assert code == 0, err
    assert json.loads(out)["engine"] == "megatron-core"
    code, out, err = run(capsys, "estimate", "--mode", "training", "-m", "llama-3.2-1b", "-H", "h100-sxm",
                         "--finetune", "lora:8", "--seq", "512", "--engine", "fsdp", "--json")
    assert code == 0, err
    assert json.loads(out)["engine"] == "fsdp"


def test_the_table_says_which_engine(capsys):
    code, out, _ = run(capsys, "estimate", "-m", "llama-3.2-1b", "-H", "l4", "--engine", "sglang")
    assert code == 0 and "engine" in out and "sglang" in out


# ---------------------------------------------------------------- bad engines and formats


def test_trtllm_does_not_run_on_apple(capsys):
    code, _, err = run(capsys, "estimate", "-m", "llama-3.2-1b", "-H", "m2-max", "--engine", "trtllm")
    assert code == 2 and "--engine" in err and "m2-max" in err and "llamacpp" in err


def test_vllm_has_no_int8_kv_on_hopper(capsys):
    code, _, err = run(capsys, "estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "vllm", "--kv", "int8")
    assert code == 2 and "--kv" in err and "fp8-e4m3" in err


def test_a_typo_in_the_engine_suggests_the_right_one():
    with pytest.raises(UnknownIdError) as exc:
        planner.estimate("llama-3.2-1b", "h100-sxm", engine="vlm")
    assert exc.value.field == "engine" and "vllm" in exc.value.suggestions


@pytest.mark.parametrize("fields, field", [
    ({"weights": "int2-g128"}, "weights"),              # no vLLM kernel for 2-bit
    ({"weights": "int4-g128", "activations": "int8"}, "activations"),  # W4A8 not run by vLLM on Hopper
    ({"sparsity": "unstructured:0.5"}, "sparsity"),
    ({"cp": 2, "prompt": 4096}, "cp"),                  # vLLM has no context parallelism
    ({"engine": "executorch"}, "engine"),               # a phone runtime on a data-centre GPU
    ({"engine": 7}, "engine"),
])
def test_what_the_engine_does_not_run_is_an_error_naming_the_field(fields, field):
    with pytest.raises(TierwiseError) as exc:
        planner.estimate("llama-3.1-8b", "h100-sxm", **fields)
    assert exc.value.field == field and exc.value.exit_code == 2


def test_defaults_never_fail_on_any_engine_that_runs_on_the_device():
    # Every engine × a few devices of different classes: the defaults resolve to formats it runs.
    from planner.engines import list_engines, load_engine

    for hw in ("h100-sxm", "v100-16gb", "t4", "m2-max", "iphone-15-pro", "mi300x"):
        dev = load_device(hw)
        for e in list_engines():
            spec = load_engine(e)
            if spec.kind == "training" or spec.support(dev) is None:
                continue
            r = resolve_inference(EstimateRequest(model="llama-3.2-1b", hardware=hw, engine=e))
            sup = support(e, dev)
            assert sup.runs(r.choice.weights, r.choice.activations), (hw, e, r.choice)
            assert not sup.kv or r.choice.kv in sup.kv, (hw, e, r.choice.kv)


# ---------------------------------------------------------------- memory


def test_the_engines_context_memory_counts_against_the_device():
    vllm = planner.estimate("llama-3.2-1b", "l4", engine="vllm")
    llamacpp = planner.estimate("llama-3.2-1b", "l4", engine="llamacpp")
    ctx = support("vllm", load_device("l4")).runtime.context_bytes - support("llamacpp", load_device("l4")).runtime.context_bytes
    assert ctx > 0
    assert vllm.memory.per_device_bytes - llamacpp.memory.per_device_bytes == pytest.approx(ctx)
    # --batch max leaves the context free: fewer sequences fit with the larger reservation.
    big = planner.estimate("llama-3.1-8b", "l4", engine="vllm", batch="max")
    small = planner.estimate("llama-3.1-8b", "l4", engine="llamacpp", batch="max")
    assert big.batch < small.batch
    cap = big.memory.device_capacity_bytes
    assert big.memory.per_device_bytes <= cap


# ---------------------------------------------------------------- plans


def _plan_cli(capsys, tmp_path, *extra):
    out = tmp_path / "plan.yaml"
    code, _, err = run(capsys, "plan", "--model", "llama-3.1-70b", "--hardware", "h100-sxm", "--devices", "2",
                       "--max-memory-per-device", "60GB", "--out", str(out), *extra)
    return code, out, err


def test_default_plan_runs_on_vllm_and_exports(capsys, tmp_path):
    code, out, err = _plan_cli(capsys, tmp_path)
    assert code == 0, err
    doc = yaml.safe_load(out.read_text())
    sup = support("vllm", load_device("h100-sxm"))
    text = json.dumps(doc)
    for key in ("choices", "groups"):
        if key in doc:
            break
    seen = set()

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "weights" and isinstance(v, str):
                    seen.add(("w", v))
                if k == "sparsity" and isinstance(v, str):
                    seen.add(("s", v))
                if k == "activations" and isinstance(v, str):
                    seen.add(("a", v))
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    weights = {v for k, v in seen if k == "w"}
    assert weights, text[:500]
    assert weights <= set(sup.weights), weights - set(sup.weights)
    assert {v for k, v in seen if k == "s"} <= {"dense"}
    assert doc.get("kv", "bf16") in sup.kv
    code, _, err = run(capsys, "export", str(out), "--format", "vllm", "--out", str(tmp_path / "deploy"))
    assert code == 0, err


def test_plan_formats_outside_the_engine_name_it(capsys, tmp_path):
    code, _, err = _plan_cli(capsys, tmp_path, "--formats", "bf16,bfp8")
    assert code == 2 and "--formats" in err and "bfp8" in err and "vllm" in err and "fp8-e4m3" in err


def test_plan_sparsity_only_when_asked_and_only_what_the_engine_runs():
    with pytest.raises(EngineSupportError) as exc:
        planner.plan("llama-3.2-1b", "h100-sxm", sparsity="unstructured:0.5", time_limit_s=20)
    assert exc.value.field == "sparsity"
    with pytest.raises(EngineSupportError) as exc:
        planner.plan("llama-3.2-1b", "h100-sxm", kv="int8", time_limit_s=20)
    assert exc.value.field == "kv"


def test_plan_on_llamacpp_layouts_stay_on_its_parallel_dims():
    p = planner.plan("llama-3.2-1b", "m2-max", engine="llamacpp", time_limit_s=20)
    sup = support("llamacpp", load_device("m2-max"))
    assert all(c.weights in sup.weights for c in p.choices.values())


# ---------------------------------------------------------------- REST and Python API


def test_rest_engine_field(client):
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "engine": "trtllm"})
    assert r.status_code == 200, r.text
    assert r.json()["engine"] == "trtllm"
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4"})
    assert r.json()["engine"] == "vllm"
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "engine": "vlm"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "engine" and "vllm" in r.text
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "m2-max", "engine": "trtllm"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "engine"
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "engine": ["vllm"]})
    assert r.status_code == 422 and "engine" in r.text


def test_rest_plan_refuses_formats_outside_the_engine(client):
    r = client.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "m2-max", "engine": "llamacpp",
                                       "formats": ["fp8"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "formats" and "llamacpp" in r.text


def test_python_api_llamacpp_on_m2_max():
    est = planner.estimate("llama-3.1-8b", "m2-max", engine="llamacpp", weights="int4-g32")
    assert est.engine == "llamacpp" and est.to_dict()["engine"] == "llamacpp"
    with pytest.raises(EngineSupportError) as exc:
        planner.estimate("llama-3.1-8b", "m2-max", engine="llamacpp", weights="fp8")
    assert exc.value.field == "weights"


def test_capacity_engine_field(capsys):
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_serve("llama-3.1-8b", ["h100-sxm"], qps=1, ttft_slo_s=1.0, tpot_slo_s=0.1,
                               engine="vllm", kv="int8")
    assert exc.value.field == "kv"
    code, _, err = run(capsys, "capacity", "serve", "-m", "llama-3.1-8b", "-H", "m2-max", "--qps", "1",
                       "--ttft-slo", "1", "--tpot-slo", "0.1", "--engine", "trtllm")
    assert code == 2 and "--engine" in err


def test_does_not_fit_on_a_cpu_suggests_the_engines_quantized_weights_with_their_activations(cli):
    # llama.cpp runs its quantized weights with int8 activations (ggml quantizes them to q8): the
    # suggestion names both, and it is the least lossy format that fits (q8_0 before 4-bit)
    code, _, err = cli("estimate", "--model", "codellama-34b", "--hardware", "ryzen-9-7950x")
    assert code == 3, err
    assert "--weights int8-g32 --activations int8" in err, err
    fix = "--weights int8-g32 --activations int8"
    args = fix.split()
    assert cli("estimate", "--model", "codellama-34b", "--hardware", "ryzen-9-7950x", *args).code == 0
    # on a GPU the least lossy 8-bit format is the device's native fp8
    code, _, err = cli("estimate", "--model", "llama-3.1-70b", "--hardware", "h100-sxm")
    assert code == 3 and "--weights fp8-e4m3 (" in err, err


def test_does_not_fit_prefers_a_change_that_fits_in_memory_over_one_that_streams_from_storage(cli):
    # a Jetson's eMMC can hold what its 64 GB do not, at seconds per token: the suggestion is the one that
    # fits in memory (int4 weights), not int8 spilling to storage
    code, _, err = cli("estimate", "--model", "llama-3.1-70b", "--hardware", "jetson-agx-orin")
    assert code == 3 and "--weights int4-g128 (" in err and "streamed" not in err, err
    # where nothing fits in memory, the change that fits only by streaming says so
    code, _, err = cli("estimate", "--model", "llama-3.1-70b", "--hardware", "iphone-15-pro")
    assert code == 3 and "weights streamed from storage" in err, err
