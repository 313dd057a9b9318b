"""One request, three front doors: ``tierwise estimate --json``, ``POST /v1/estimate`` and the
Python API (:func:`planner.estimate` / :func:`planner.estimate_training`) give identical
answers — the same numbers, or the same error (field, kind, details) — for the same request."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import planner
from planner.cli import main
from planner.errors import TierwiseError
from planner.request import json_safe

MODELS = ["llama-3.2-1b", "mistral-7b", "mixtral-8x7b", "gemma-2-9b", "phi-3-mini", "opt-1.3b", "bert-base",
          "t5-3b", "qwen2.5-7b", "falcon-7b"]
HARDWARE = ["l4", "h100-sxm", "t4", "mi300x", "iphone-15-pro", "cpu-host", "sn40l", "alveo-u280", "tpu-v5e", "m2-max"]
WEIGHTS = [None, "bf16", "fp16", "fp8", "int8", "int4-g128", "nf4", "mxfp4"]
KV = [None, "bf16", "fp8", "int8", "int4-g64"]
ACTIVATIONS = [None, "bf16", "fp16", "fp8", "int8"]


@st.composite
def inference_requests(draw):
    req = {"model": draw(st.sampled_from(MODELS)), "hardware": draw(st.sampled_from(HARDWARE))}
    optional = {
        "batch": st.one_of(st.integers(1, 64), st.just("max")),
        "prompt": st.integers(1, 4096),
        "gen": st.integers(0, 512),
        "tp": st.sampled_from([1, 2, 4, 8]),
        "pp": st.sampled_from([1, 2]),
        "weights": st.sampled_from(WEIGHTS),
        "kv": st.sampled_from(KV),
        "activations": st.sampled_from(ACTIVATIONS),
        "sparsity": st.sampled_from(["dense", "2:4", "unstructured:0.5"]),
        "allow_offload": st.booleans(),
        "runtime": st.sampled_from(["graph", "eager"]),
        "kv_budget": st.integers(16, 2048),
        "per_op": st.booleans(),
    }
    for name, strat in optional.items():
        if draw(st.booleans()):
            req[name] = draw(strat)
    return {k: v for k, v in req.items() if v is not None}


@st.composite
def training_requests(draw):
    req = {"mode": "training", "model": draw(st.sampled_from(["llama-3.2-1b", "opt-1.3b", "mistral-7b", "bert-base"])),
           "hardware": draw(st.sampled_from(["h100-sxm", "a100-80gb-sxm", "l4", "mi300x", "v100-16gb"]))}
    optional = {
        "tp": st.sampled_from([1, 2, 4]),
        "dp": st.sampled_from([1, 2, 8]),
        "micro_batch": st.integers(1, 8),
        "seq": st.sampled_from([256, 512, 2048]),
        "zero": st.integers(0, 3),
        "recompute": st.sampled_from(["none", "selective", "full"]),
        "optimizer": st.sampled_from(["adamw", "adamw-8bit", "sgd"]),
        "finetune": st.sampled_from(["full", "lora:16", "qlora:8"]),
    }
    for name, strat in optional.items():
        if draw(st.booleans()):
            req[name] = draw(strat)
    return req


def _cli_args(req: dict) -> list[str]:
    args = ["estimate", "--json"]
    for k, v in req.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            args.append(flag)
        elif v is False:
            continue  # a flag left out is the default (false)
        else:
            args += [flag, str(v)]
    return args


def _python(req: dict):
    fields = {k: v for k, v in req.items() if k not in ("model", "hardware", "mode")}
    if req.get("allow_offload") is False:
        fields.pop("allow_offload")
    if req.get("per_op") is False:
        fields.pop("per_op")
    fn = planner.estimate_training if req.get("mode") == "training" else planner.estimate
    try:
        est = fn(req["model"], req["hardware"], **fields)
    except TierwiseError as exc:
        return "error", exc
    if req.get("mode") == "training":
        return "ok", json_safe(est.to_dict())
    return "ok", json_safe(est.to_dict(ops=bool(req.get("per_op"))))


def _rest_body(req: dict) -> dict:
    return {k: v for k, v in req.items() if v is not False}


def _check_same(client, capsys, req: dict) -> None:
    kind, py = _python(req)
    code = main(_cli_args(req))
    out = capsys.readouterr()
    cli = json.loads(out.out)
    r = client.post("/v1/estimate", json=_rest_body(req))
    if kind == "ok":
        assert code == 0, out.err
        assert r.status_code == 200, r.text
        assert cli == py
        assert r.json() == py
        return
    exc: TierwiseError = py
    assert code == exc.exit_code, (req, out.err)
    assert r.status_code == exc.http_status, (req, r.text)
    rest = r.json()["error"]
    assert cli["error"]["field"] == rest["field"] == exc.field
    assert rest["code"] == exc.code
    assert rest["message"] == exc.render("rest")
    assert exc.render("cli") in out.err.replace("\n", " ") or exc.render("cli")[:60] in out.err
    if exc.details is not None:
        assert cli["error"]["details"] == rest["details"] == json_safe(exc.details)


PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@PROPERTY
@given(req=inference_requests())
def test_inference_cli_rest_and_python_agree(client, capsys, req):
    _check_same(client, capsys, req)


@PROPERTY
@given(req=training_requests())
def test_training_cli_rest_and_python_agree(client, capsys, req):
    _check_same(client, capsys, req)
