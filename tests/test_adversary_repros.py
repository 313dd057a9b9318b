"""Regressions found by trying the tool as a demanding user and as an adversary would: each
test is the smallest command line, Python call or HTTP request that once went wrong (a field
named as another front end spells it, a misleading message, an impossible figure), asserting
the answer now names the field in the caller's syntax and says what was expected and given.
REST cases run against a live ``tierwise serve`` over real HTTP.
"""

from __future__ import annotations

import pytest
from liveserver import checked_server

import planner
from hwmodels.errors import TierwiseError


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from checked_server(tmp_path_factory, "repro-serve")


# -- pins: the request field is ``pins`` (CLI ``--pin``); a bad pin was reported as ``pin`` -----

def test_bad_pin_names_pins_in_python():
    with pytest.raises(TierwiseError) as info:
        planner.plan("llama-3.2-1b", "l4", pins={"no.such.group": "bf16"})
    assert info.value.field == "pins"
    assert str(info.value).startswith("'pins' no.such.group=bf16: no decision group matches")


def test_bad_pin_names_the_flag_on_the_command_line(cli):
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--pin", "no.such.group=bf16")
    assert r.code == 2 and r.err.startswith("error: --pin no.such.group=bf16: no decision group"), r.err
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--pin", "model.lm_head=fp9", "--json")
    assert r.code == 2 and '"field": "pins"' in r.out and "--pin model.lm_head=fp9: option 'fp9'" in r.out, r.out


def test_bad_pin_names_pins_over_http(server):
    with server.client() as c:
        for pins, said in (({"no.such.group": "bf16"}, "no decision group matches"),
                           ({"model.lm_head": "zz9"}, "unknown format 'zz9'")):
            r = c.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "l4", "pins": pins})
            assert r.status_code == 422, r.text
            err = r.json()["error"]
            assert err["field"] == "pins" and err["message"].startswith("'pins' ") and said in err["message"], err
            assert "--pin" not in err["message"], err


# -- 405: the Allow header and the message listed no method at all (routers FastAPI wraps) ----

@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/v1/estimate", "POST"),
    ("GET", "/v1/capacity/frontier", "POST"),
    ("PUT", "/v1/plans", "GET, HEAD, POST"),
    ("PATCH", "/v1/plans/some-id", "DELETE, GET, HEAD"),
    ("POST", "/healthz", "GET, HEAD"),
    ("DELETE", "/", "GET, HEAD"),
])
def test_405_lists_the_allowed_methods_over_http(server, method, path, allowed):
    with server.client() as c:
        r = c.request(method, path)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allowed
    err = r.json()["error"]
    assert err["code"] == "method_not_allowed" and err["message"] == f"{method} is not allowed here; use {allowed}"


# -- capacity: "hardware": [] was read as "every catalog device" (a search over all of them) ----

@pytest.mark.parametrize("route, body", [
    ("/v1/capacity", {"model": "llama-3.2-1b", "hardware": [], "qps": 1, "prompt": 64, "gen": 8, "ttft_slo_s": 1,
                      "tpot_slo_s": 0.1}),
    ("/v1/capacity", {"model": "llama-3.2-1b", "hardware": [], "engine": "vllm", "qps": 1, "prompt": 64, "gen": 8,
                      "ttft_slo_s": 1, "tpot_slo_s": 0.1}),
    ("/v1/capacity/frontier", {"model": "llama-3.2-1b", "hardware": []}),
])
def test_empty_hardware_list_is_refused_over_http(server, route, body):
    with server.client() as c:
        r = c.post(route, json=body, timeout=120)
    assert r.status_code == 422, (r.status_code, r.text[:500])
    err = r.json()["error"]
    assert err["field"] == "hardware" and err["message"].startswith("'hardware' must be a non-empty list"), err


# -- training on hardware no training engine runs on: "engines that run on it: none — pass
#    --engine" sent the user to a flag with no valid value; the hardware is what must change ----

@pytest.mark.parametrize("hardware", ["iphone-15-pro", "alveo-u50"])
def test_training_where_no_engine_trains_names_the_hardware(cli, hardware):
    with pytest.raises(TierwiseError) as info:
        planner.estimate_training("llama-3.1-8b", hardware)
    assert info.value.field == "hardware" and "no training engine runs on " + hardware in str(info.value)
    r = cli("capacity", "train", "--model", "llama-3.1-8b", "--hardware", hardware, "--tokens", "1e9", "--days", "1")
    assert r.code == 2 and "pass other --hardware" in r.err and "--engine" not in r.err, r.err


# -- capacity: an SLO far below what any fleet reaches printed a 300-digit percentage ----------

def test_slo_miss_far_beyond_reach_is_a_factor_not_a_300_digit_percentage():
    with pytest.raises(TierwiseError) as info:
        planner.capacity_serve("llama-3.2-1b", ["l4"], qps=1, prompt=64, gen=8, ttft_slo_s=1e-300, tpot_slo_s=0.1)
    text = str(info.value)
    assert info.value.kind == "infeasible" and "exceeds the 1e-300 s SLO by " in text and "e+297×" in text, text
    assert len(text) < 600 and "0000000000" not in text, text
    with pytest.raises(TierwiseError) as info:  # a near miss stays a percentage
        planner.capacity_serve("llama-3.2-1b", ["l4"], qps=1, prompt=64, gen=8, ttft_slo_s=1, tpot_slo_s=0.003,
                               max_devices=1)
    assert "SLO by " in str(info.value) and "%" in str(info.value).split("SLO by ")[1][:6], str(info.value)


# -- export --engine E for an engine whose files are the plan itself (vitis-ai, sambaflow, fsdp,
#    tvm, deepspeed-inference) wrote them with no check that E runs on the plan's hardware ----

@pytest.mark.parametrize("engine", ["vitis-ai", "sambaflow"])
def test_export_for_an_engine_that_does_not_run_on_the_plans_hardware_is_refused(cli, tmp_path, engine):
    plan_file = tmp_path / "plan.yaml"
    assert cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--out", plan_file).code == 0
    r = cli("export", plan_file, "--engine", engine, "--out", tmp_path / "deploy")
    assert r.code == 2 and f"({engine}) does not run on h100-sxm, the plan's hardware" in r.err, r.err
    assert not (tmp_path / "deploy").exists() or not any((tmp_path / "deploy").iterdir())
    r = cli("export", plan_file, "--engine", engine, "--format", "json")
    assert r.code == 2 and "does not run on h100-sxm" in r.err, r.err
    # an engine that runs there still gets its plan file
    assert cli("export", plan_file, "--engine", "deepspeed-inference", "--out", tmp_path / "ds").code == 0
    assert (tmp_path / "ds" / "plan.yaml").is_file()


# -- a blank or non-string model / hardware reference: the Python answer spoke CLI syntax
#    ("--model: expected ...") with no field, or looked None / 5 up as a hardware id ----------

@pytest.mark.parametrize("ref", ["", "   ", None, 5, ["llama-3.1-8b"]])
def test_bad_model_reference_names_model(ref):
    with pytest.raises(TierwiseError) as info:
        planner.load_model(ref)
    assert info.value.field == "model" and str(info.value).startswith("'model' must be a catalog model id or a config")
    assert "--model" not in str(info.value)


@pytest.mark.parametrize("ref", [None, 5, {"id": "l4"}])
def test_bad_hardware_reference_names_hardware(ref):
    with pytest.raises(TierwiseError) as info:
        planner.load_hardware(ref)
    assert info.value.field == "hardware" and "unknown hardware id" not in str(info.value)
    assert str(info.value).startswith("'hardware' must be a catalog hardware id or a profile file path; got ")


def test_blank_model_names_model_in_python_and_on_the_command_line(cli):
    with pytest.raises(TierwiseError) as info:
        planner.estimate("", "l4")
    assert info.value.field == "model" and "--model" not in str(info.value)
    r = cli("estimate", "--model", "", "--hardware", "l4", "--json")
    assert r.code == 2 and '"field": "model"' in r.out and "--model must be a catalog model id" in r.out, r.out


# -- a sequence length the user did not give was refused as beyond the model's context
#    (bert-base, 512 positions, under the 2048 default; OPT, 2048, under capacity's 4096) ------

def test_default_seq_fits_the_models_context(cli):
    assert planner.estimate_training("bert-base", "h100-sxm").config.seq == 512
    r = cli("estimate", "--mode", "training", "--model", "bert-base", "--hardware", "h100-sxm", "--json")
    assert r.code == 0 and '"seq": 512' in r.out, (r.code, r.err)
    r = cli("capacity", "train", "--model", "opt-1.3b", "--hardware", "h100-sxm", "--tokens", "1e9", "--days", "1")
    assert r.code == 0 and "seq 2048" in r.out, (r.code, r.err)
    # given, it is still checked
    r = cli("estimate", "--mode", "training", "--model", "bert-base", "--hardware", "h100-sxm", "--seq", "1024")
    assert r.code == 2 and "--seq = 1024 tokens is beyond the context of bert-base" in r.err
    # a model with a longer context keeps the documented default
    assert planner.capacity_train("llama-3.2-1b", "l4", tokens=1e9, days=1).target.seq == 4096


def test_default_seq_fits_the_models_context_over_http(server):
    with server.client() as c:
        r = c.post("/v1/capacity/train", json={"model": "opt-1.3b", "hardware": "h100-sxm", "tokens": 1e9, "days": 1},
                   timeout=120)
        assert r.status_code in (200, 202), r.text
        r = c.post("/v1/estimate", json={"model": "bert-base", "hardware": "h100-sxm", "mode": "training"})
        assert r.status_code == 200 and r.json()["seq"] == 512, r.text


# -- a rule across fields ("exactly one of 'config' or 'yaml'") was answered "the request body
#    must be a JSON object ... got dict" with no field: its own message is the answer now ------

@pytest.mark.parametrize("route, body, field, got", [
    ("/v1/models", {"id": "my-model"}, "config", "neither"),
    ("/v1/models", {"id": "my-model", "config": {"model_type": "llama"}, "yaml": "model_type: llama"}, "config", "both"),
    ("/v1/hardware", {}, "profile", "neither"),
    ("/v1/capacity", {"hardware": ["l4"], "qps": 1, "ttft_slo_s": 1, "tpot_slo_s": 0.1}, "model", "neither"),
    ("/v1/capacity", {"model": "llama-3.2-1b", "models": ["llama-3.2-1b"], "hardware": ["l4"], "qps": 1,
                      "ttft_slo_s": 1, "tpot_slo_s": 0.1}, "model", "both"),
])
def test_exactly_one_of_two_fields_is_named_over_http(server, route, body, field, got):
    with server.client() as c:
        r = c.post(route, json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_field" and err["field"] == field, err
    assert err["message"].startswith(f"give exactly one of '{field}'") and err["message"].endswith(f"got {got}"), err


# -- a mistyped format got two "did you mean" lists that disagreed ('fp9': "fp32, fp16, bfp8"
#    after the name, "fp8" after the list of every format) ------------------------------------

@pytest.mark.parametrize("typed, first", [("fp9", "fp8"), ("int5", "int4"), ("mxfp3", "mxfp4")])
def test_mistyped_format_gets_one_suggestion_list(cli, typed, first):
    r = cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--weights", typed)
    assert r.code == 2 and r.err.count("did you mean") == 1, r.err
    assert r.err.startswith(f"error: --weights: unknown format '{typed}' (did you mean {first}, "), r.err
    with pytest.raises(TierwiseError) as info:
        planner.estimate("llama-3.1-8b", "h100-sxm", kv=typed)
    assert info.value.field == "kv" and str(info.value).count("did you mean") == 1


# -- an output path that cannot be written (its folder is a file, or the export folder is a
#    file) was an "internal error" with exit 1; it is now exit 2 naming the flag ---------------

def test_unwritable_outputs_name_their_flag(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    plan_file = tmp_path / "plan.yaml"
    assert cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--out", plan_file).code == 0
    cases = [
        (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--out", blocker / "p.yaml"], "--out"),
        (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--pareto", "2", "--csv", blocker / "p.csv"], "--csv"),
        (["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--pareto", "2", "--plot", blocker / "p.png"], "--plot"),
        (["roofline", "--model", "llama-3.2-1b", "--hardware", "l4", "--out", blocker / "r.png"], "--out"),
        (["export", plan_file, "--format", "vllm", "--out", blocker / "deploy"], "--out"),
    ]
    for args, flag in cases:
        r = cli(*args)
        assert r.code == 2 and r.err.startswith(f"error: {flag}: cannot write {blocker}"), (args, r.code, r.err)
        assert "internal error" not in r.err
    r = cli("export", plan_file, "--format", "vllm", "--out", blocker)
    assert r.code == 2 and "--out" in r.err and "is a file; expected a folder" in r.err, r.err
    assert blocker.read_text() == "not a folder\n"


# -- the terminal output turned emoji codes in the user's own input into emoji: "got '😄'" for
#    --weights ':smile:', "unknown model id '❌'" for ':x:' -------------------------------------

def test_errors_echo_the_input_as_typed(cli):
    r = cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--weights", ":smile:")
    assert r.code == 2 and "unknown format ':smile:'" in r.err, r.err
    r = cli("estimate", "--model", ":x:", "--hardware", "h100-sxm")
    assert r.code == 2 and "unknown model id ':x:'" in r.err and "\u274c" not in r.err, r.err


# -- --kv-share larger than the model's layer count was accepted and priced a KV cache smaller
#    than one layer's (33 on the 32-layer Llama 3.1 8B: less KV than --kv-share 32) ------------

def test_kv_share_beyond_the_layer_count_is_refused(cli, server):
    assert planner.estimate("llama-3.1-8b", "h100-sxm", kv_share=32).memory.kv_cache_bytes > 0
    with pytest.raises(TierwiseError) as info:
        planner.estimate("llama-3.1-8b", "h100-sxm", kv_share=33)
    assert info.value.field == "kv_share" and "more layers than llama-3.1-8b has (32); at most 32" in str(info.value)
    r = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--kv-share", "17")
    assert r.code == 2 and r.err.startswith("error: --kv-share 17 shares one KV cache across more layers"), r.err
    with server.client() as c:
        r = c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "kv_share": 1000})
    assert r.status_code == 422 and r.json()["error"]["field"] == "kv_share", r.text
    assert r.json()["error"]["message"].startswith("'kv_share' 1000 shares one KV cache")


# -- estimate --low-rank R with a rank that compresses no layer priced every layer dense and
#    reported it as factorised; tierwise plan refuses such a rank, and so does estimate now ----

def test_low_rank_that_compresses_nothing_is_refused(cli):
    # low-rank layers run on Tierwise's own execution (engine torch), not on the serving engines
    dense = planner.estimate("llama-3.2-1b", "l4", engine="torch").memory.weights_bytes
    assert planner.estimate("llama-3.2-1b", "l4", engine="torch", low_rank=1638).memory.weights_bytes < dense
    for rank in (1639, 100000):
        with pytest.raises(TierwiseError) as info:
            planner.estimate("llama-3.2-1b", "l4", engine="torch", low_rank=rank)
        assert info.value.field == "low_rank" and "the largest useful rank here is 1638" in str(info.value)
    r = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--engine", "torch", "--low-rank", "4096")
    assert r.code == 2 and r.err.startswith("error: --low-rank 4096 compresses no linear layer of llama-3.2-1b"), r.err


# -- tierwise serve on a port already taken exited 3 (uvicorn's startup failure, which the
#    command line reserves for "nothing feasible"); a bad --log-level was an internal error ----

def test_serve_refuses_a_taken_port_and_a_bad_log_level(cli):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = cli("serve", "--port", port)
    assert r.code == 2 and r.err.startswith(f"error: --port {port} on 127.0.0.1 cannot be used"), (r.code, r.err)
    r = cli("serve", "--port", "0", "--log-level", "loud")
    assert r.code == 2 and "--log-level must be one of critical, error, warning, info, debug" in r.err, r.err
    assert "internal error" not in r.err


# -- objective weights without --objective weighted were accepted and silently ignored (the
#    plan optimised accuracy alone) --------------------------------------------------------------

def test_objective_weights_without_the_weighted_objective_are_refused(cli, server):
    with pytest.raises(TierwiseError) as info:
        planner.plan("llama-3.2-1b", "l4", objective="latency", objective_weights={"latency": 1.0})
    assert info.value.field == "objective_weights" and "the objective is latency" in str(info.value)
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--objective-weights", "latency=1")
    assert r.code == 2 and r.err.startswith("error: --objective-weights apply to --objective weighted only"), r.err
    with server.client() as c:
        r = c.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "l4", "objective_weights": {"latency": 1}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "objective_weights", r.text
    assert r.json()["error"]["message"].startswith("'objective_weights' apply to 'objective' weighted only")
    assert planner.plan("llama-3.2-1b", "l4", objective="weighted", objective_weights={"latency": 1.0}) is not None


# -- a model or hardware *file* that is missing or of the wrong kind named no field (CLI:
#    "./nope/: expected ...") or a pseudo-field ("field '<file>'"); it names --model / --hardware ---

def test_missing_model_and_hardware_files_name_the_flag(cli, tmp_path):
    r = cli("estimate", "--model", tmp_path / "nope" / "config.json", "--hardware", "l4", "--json")
    assert r.code == 2 and '"field": "model"' in r.out, r.out
    assert f"--model {tmp_path / 'nope' / 'config.json'}: expected an existing config file" in r.out
    r = cli("estimate", "--model", "llama-3.2-1b", "--hardware", tmp_path / "nope.yaml")
    assert r.code == 2 and r.err.startswith("error: --hardware ") and "expected an existing hardware profile file" in r.err
    assert "<file>" not in r.err
    with pytest.raises(TierwiseError) as info:
        planner.estimate(str(tmp_path / "nope.json"), "l4")
    assert info.value.field == "model" and str(info.value).startswith("'model' ")
    bad = tmp_path / "config.json"  # an error inside the file still names the file's key
    bad.write_text('{"model_type": "llama", "hidden_size": -1, "num_hidden_layers": 2, "num_attention_heads": 4, '
                   '"intermediate_size": 64, "vocab_size": 100}')
    with pytest.raises(TierwiseError) as info:
        planner.estimate(str(bad), "l4")
    assert info.value.field == "hidden_size"


def test_on_device_engine_for_training_reads_an_on_device_engine(cli):
    r = cli("estimate", "--mode", "training", "--model", "llama-3.2-1b", "--hardware", "iphone-15-pro", "--engine",
            "executorch")
    assert r.code == 2 and "ExecuTorch (executorch) is an on-device engine, not a training one" in r.err, r.err


# -- a profile file that reuses a catalog id (an L4 profile with id h100-sxm): its plan exported
#    against the catalog device (vLLM's gpu_memory_utilization over 80 GB instead of 24 GB) ----

def test_export_of_a_plan_for_a_profile_that_reuses_a_catalog_id_uses_the_plans_device(cli, tmp_path):
    from pathlib import Path

    l4 = (Path(__file__).resolve().parents[1] / "profiles" / "hardware" / "l4.yaml").read_text()
    profile = tmp_path / "lab.yaml"
    profile.write_text(l4.replace("\nid: l4\n", "\nid: h100-sxm\n"))
    plan_file = tmp_path / "plan.yaml"
    assert cli("plan", "--model", "llama-3.2-1b", "--hardware", profile, "--out", plan_file).code == 0
    r = cli("export", plan_file, "--format", "vllm", "--json")
    assert r.code == 0, r.err
    assert "/ 24.00 GB" in r.out and "/ 80.00 GB" not in r.out, r.out
