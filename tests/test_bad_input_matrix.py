"""Acceptance: bad input never surfaces as "internal error".

A matrix of bad command lines (every command, every kind of mistake, several architectures)
and bad REST bodies (through the FastAPI app, as tests/api do): each is refused with exit 2/3
or a 4xx, and its message names the field at fault in the caller's syntax: ``--kv`` on the
command line, ``kv`` in REST answers (which never speak command-line flags for their field).
Written against behaviour only (command lines and bodies), not against internals.
"""

from __future__ import annotations

import re

import pytest

E = ["estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm"]
T = [*E, "--mode", "training"]
P = ["plan", "--model", "llama-3.2-1b", "--hardware", "l4"]
S = ["capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--qps", "1", "--prompt", "64", "--gen", "8",
     "--ttft-slo", "1"]
TR = ["capacity", "train", "--model", "llama-3.2-1b", "--hardware", "l4"]

# (command line, what the message must contain: the flag at fault)
CLI_CASES = [
    ([], None),
    (["estimat"], "estimat"),
    (["frobnicate"], "frobnicate"),
    ([*E, "--bach", "4"], "--bach"),
    ([*E, "--tp", "two"], "--tp"),
    ([*E, "--tp", "0"], "--tp"),
    ([*E, "--tp", "3"], "--tp"),
    ([*E, "--pp", "-1"], "--pp"),
    ([*E, "--pp", "64"], "--pp"),
    ([*E, "--devices", "3"], "--devices"),
    ([*E, "--batch", "0"], "--batch"),
    ([*E, "--batch", "lots"], "--batch"),
    ([*E, "--prompt", "-5"], "--prompt"),
    ([*E, "--prompt", "1e9"], "--prompt"),
    ([*E, "--gen", "x"], "--gen"),
    ([*E, "--mode", "train"], "--mode"),
    (["estimate", "--model", "llama-2-7b"], "--hardware"),
    (["estimate", "--hardware", "h100-sxm"], "--model"),
    ([*E, "--weights", "int5"], "--weights"),
    ([*E, "--kv", "fp7"], "--kv"),
    ([*E, "--kv-evicted", "2"], "--kv-evicted"),
    ([*E, "--activations", "int3"], "--activations"),
    ([*E, "--sparsity", "3:4"], "--sparsity"),
    ([*E, "--low-rank", "abc"], "--low-rank"),
    ([*E, "--kv-budget", "-3"], "--kv-budget"),
    ([*E, "--kv-share", "0"], "--kv-share"),
    ([*E, "--flash-chunk-kib", "-1"], "--flash-chunk-kib"),
    ([*E, "--runtime", "foo"], "--runtime"),
    ([*E, "--ep", "3"], "--ep"),
    ([*E, "--tp"], "--tp"),
    (["estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--tp", "2", "--ep", "3"], "--ep"),
    (["estimate", "--model", "bert-base", "--hardware", "h100-sxm", "--tp", "5"], "--tp"),
    (["estimate", "--model", "t5-3b", "--hardware", "h100-sxm", "--weights", "int9"], "--weights"),
    (["estimate", "--model", "llama-2-7b", "--hardware", "h100"], "h100"),
    (["estimate", "--model", "lama-2-7b", "--hardware", "h100-sxm"], "lama-2-7b"),
    ([*T, "--zero", "5"], "--zero"),
    ([*T, "--recompute", "some"], "--recompute"),
    ([*T, "--optimizer", "sgdx"], "--optimizer"),
    ([*T, "--finetune", "lora:x"], "--finetune"),
    ([*T, "--finetune", "dora:8"], "--finetune"),
    ([*T, "--global-batch", "3", "--micro-batch", "2"], "--global-batch"),
    ([*T, "--seq", "0"], "--seq"),
    ([*P, "--max-memory-per-device", "lots"], "--max-memory-per-device"),
    ([*P, "--objective", "speed"], "--objective"),
    ([*P, "--formats", "bf16,zz9"], "--formats"),
    ([*P, "--devices", "0"], "--devices"),
    ([*P, "--ttft-slo", "-1"], "--ttft-slo"),
    ([*P, "--time-limit", "abc"], "--time-limit"),
    ([*P, "--avg-bits", "0"], "--avg-bits"),
    ([*P, "--low-rank", "0.5"], "--low-rank"),
    ([*P, "--sensitivity", "nofile.json"], "--sensitivity"),
    ([*P, "--pins", "x=y"], "--pins"),
    ([*S, "--tpot-slo", "-1"], "--tpot-slo"),
    ([*S, "--tpot-slo", "0.1", "--executor", "gpu"], "--executor"),
    ([*S, "--tpot-slo", "0.1", "--models", "llama-3.2-1b,mistral-7b", "--mix", "1"], "--mix"),
    ([*S, "--tpot-slo", "0.1", "--engine", "vllm,vlm"], "--engine"),
    ([*S, "--tpot-slo", "0.1", "--engine", "vllm,vllm"], "--engine"),
    ([*S, "--tpot-slo", "0.1", "--serving", "split"], "--serving"),
    ([*S, "--tpot-slo", "0.1", "--kv-link", "ib"], "--kv-link"),
    (["capacity", "frontier", "--model", "bert-base", "--hardware", "l4"], "--model"),
    ([*TR, "--tokens", "-1", "--days", "1"], "--tokens"),
    ([*TR, "--tokens", "1e9", "--days", "0"], "--days"),
    (["export", "nofile.yaml", "--format", "zzz"], "--format"),
    (["export", "nofile.yaml", "--format", "vllm"], "nofile.yaml"),
    (["plan", "show", "nofile.yaml"], "nofile.yaml"),
    (["hardware", "show", "h1000"], "h1000"),
    (["models", "show", "lama"], "lama"),
    (["roofline", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--out", "x.txt"], "--out"),
    (["calibrate", "--out", "x.txt"], "--out"),
    (["sensitivity", "--torch-model", "all-minilm-l6-v2", "--out", "s.json"], "--formats"),
]


def _ids(cases):
    return [" ".join(c[0])[:70] or "(no arguments)" for c in cases]


@pytest.mark.parametrize("args, named", CLI_CASES, ids=_ids(CLI_CASES))
def test_bad_command_line(cli, tmp_path, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)  # relative paths name files that do not exist
    r = cli(*args)
    assert r.code in (2, 3), (r.code, r.err)
    assert "internal error" not in r.err and "Traceback" not in r.err, r.err
    if named is not None:
        assert named in r.err, (named, r.err)


def test_bad_hardware_profile_names_the_profile_field(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nname: Bad\nclass: gpu\nmemory:\n  - name: hbm\n    bandwidth_gb_per_s: -3\n")
    r = cli("estimate", "--model", "llama-2-7b", "--hardware", str(bad))
    assert r.code == 2 and "internal error" not in r.err and "bad.yaml" in r.err


def test_bad_model_config_names_the_config_key(cli, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": -1, "num_hidden_layers": 2, "num_attention_heads": 4, '
                   '"intermediate_size": 64, "vocab_size": 100}')
    r = cli("estimate", "--model", str(bad), "--hardware", "h100-sxm")
    assert r.code == 2 and "internal error" not in r.err and "hidden_size" in r.err


# -- REST ------------------------------------------------------------------------------------

B = {"model": "llama-2-7b", "hardware": "h100-sxm"}
PB = {"model": "llama-3.2-1b", "hardware": "l4"}
CB = {"model": "llama-3.2-1b", "hardware": ["l4"], "qps": 1, "prompt": 64, "gen": 8, "ttft_slo_s": 1, "tpot_slo_s": 0.1}

# (route, body, field the answer must name)
REST_CASES = [
    ("/v1/estimate", B | {"batch": 0}, "batch"),
    ("/v1/estimate", B | {"batch": "lots"}, "batch"),
    ("/v1/estimate", B | {"tp": 3}, "tp"),
    ("/v1/estimate", B | {"tp": "two"}, "tp"),
    ("/v1/estimate", B | {"pp": -1}, "pp"),
    ("/v1/estimate", B | {"devices": 3}, "devices"),
    ("/v1/estimate", B | {"weights": "int5"}, "weights"),
    ("/v1/estimate", B | {"kv": "fp7"}, "kv"),
    ("/v1/estimate", B | {"kv_evicted": "2"}, "kv_evicted"),
    ("/v1/estimate", B | {"activations": "int3"}, "activations"),
    ("/v1/estimate", B | {"sparsity": "3:4"}, "sparsity"),
    ("/v1/estimate", B | {"prompt": -5}, "prompt"),
    ("/v1/estimate", B | {"mode": "train"}, "mode"),
    ("/v1/estimate", B | {"mode": "training", "zero": 5}, "zero"),
    ("/v1/estimate", B | {"ep": 3}, "ep"),
    ("/v1/estimate", B | {"bach": 4}, "bach"),
    ("/v1/estimate", B | {"hardware": "h100"}, "hardware"),
    ("/v1/estimate", B | {"model": "nope"}, "model"),
    ("/v1/estimate", B | {"runtime": "foo"}, "runtime"),
    ("/v1/estimate", B | {"low_rank": "abc"}, "low_rank"),
    ("/v1/estimate", {"hardware": "h100-sxm"}, "model"),
    ("/v1/estimate", {"model": "mixtral-8x7b", "hardware": "h100-sxm", "tp": 2, "ep": 3}, "ep"),
    ("/v1/plans", PB | {"max_memory_per_device": "lots"}, "max_memory_per_device"),
    ("/v1/plans", PB | {"objective": "speed"}, "objective"),
    ("/v1/plans", PB | {"formats": ["bf16", "zz9"]}, "formats"),
    ("/v1/plans", PB | {"devices": 0}, "devices"),
    ("/v1/plans", PB | {"ttft_slo_s": -1}, "ttft_slo_s"),
    ("/v1/plans", PB | {"backend": "gurobi"}, "backend"),
    ("/v1/plans", PB | {"avg_bits": 0}, "avg_bits"),
    ("/v1/plans", PB | {"time_limit_s": -1}, "time_limit_s"),
    ("/v1/capacity", CB | {"qps": -1}, "qps"),
    ("/v1/capacity", CB | {"tpot_slo_s": -1}, "tpot_slo_s"),
    ("/v1/capacity", CB | {"hardware": ["l5"]}, "hardware"),
    ("/v1/capacity", CB | {"engine": ["vllm", "vlm"]}, "engine"),
    ("/v1/capacity", CB | {"engine": ["vllm", "vllm"]}, "engine"),
    ("/v1/capacity", CB | {"serving": "disaggregated", "models": ["llama-3.2-1b", "mistral-7b"], "model": None,
                          "mix": [0.5, 0.5]}, "serving"),
    ("/v1/capacity/frontier", {"model": "llama-3.2-1b", "hardware": ["l4"], "engine": "trtllm,"}, "engine"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import Settings

    db = tmp_path_factory.mktemp("api") / "tierwise.db"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}")), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("route, body, field", REST_CASES,
                         ids=[f"{r} {sorted(set(b) - {'model', 'hardware'}) or b}"[:70] for r, b, _ in REST_CASES])
def test_bad_rest_body(client, route, body, field):
    r = client.post(route, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] != "internal" and "internal error" not in err["message"]
    assert err["field"] == field, err
    assert re.search(rf"(?<![\w-]){re.escape(field)}(?![\w])", err["message"]), err["message"]
    flag = "--" + field.replace("_", "-")
    assert flag not in err["message"], err["message"]  # REST speaks field names, not CLI flags


def test_matrix_is_large_enough():
    assert len(CLI_CASES) + len(REST_CASES) >= 40 and len(CLI_CASES) >= 40
