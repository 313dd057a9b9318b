"""Input defects found in a user trial, fixed once in the request layer (planner/request/)
and checked here through the command line and the Python API (tests/api/test_request_inputs.py
checks the same requests over real HTTP):

1. a model config over the size limits (a billion layers) is refused at once, naming --model
   and the config's own key — the command line used to run for minutes;
2. a request that processes no token (prompt 0 and gen 0; an encoder with prompt 0) is refused;
3. a training engine (Megatron-Core, FSDP) is refused for inference, and engine suggestions
   list only engines of the request's kind;
4. integer fields: an integral number (8.0) is an integer everywhere, text ("8") nowhere;
5. a repeated hardware, model or format is refused naming the flag; --mix is weights, normalised.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

import planner
from hwmodels import load_device
from planner.arch import _models_dir, load_arch
from planner.engines import load_engine
from planner.errors import TierwiseError

INTERNAL = "internal error"


def _config(model: str = "llama-3.1-8b", **changes) -> dict:
    cfg = json.loads((_models_dir() / f"{model}.json").read_text())
    cfg.pop("_id", None)
    return {**cfg, **changes}


def _write(tmp_path: Path, name: str, cfg: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


# ------------------------------------------------------------------ 1. huge model configs

HUGE = [("llama-3.1-8b", "num_hidden_layers", 10**9, 1024), ("llama-3.1-8b", "hidden_size", 10**7, 262_144),
        ("llama-3.1-8b", "vocab_size", 10**9, 4_194_304), ("mixtral-8x7b", "num_local_experts", 10**6, 4096),
        ("llama-3.1-8b", "intermediate_size", 10**8, 1_048_576)]


@pytest.mark.parametrize("model, key, value, limit", HUGE)
def test_cli_refuses_a_huge_config_at_once_naming_the_flag_and_the_key(tmp_path, user_env, model, key, value, limit):
    path = _write(tmp_path, f"huge-{key}", _config(model, **{key: value}))
    # a hang guard, not a timing: the old command line ran for minutes on a billion layers
    r = subprocess.run(["tierwise", "estimate", "--model", str(path), "--hardware", "h100-sxm"], env=user_env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--model" in r.stderr and key in r.stderr and str(value) in r.stderr and str(limit) in r.stderr, r.stderr
    assert INTERNAL not in r.stderr and "Traceback" not in r.stderr


def test_every_command_refuses_a_config_over_the_layer_limit(tmp_path, cli):
    path = _write(tmp_path, "layers-1025", _config(num_hidden_layers=1025))
    for args in (["estimate"], ["estimate", "--mode", "training"], ["plan"],
                 ["capacity", "serve", "--qps", "1", "--ttft-slo", "1", "--tpot-slo", "0.1"],
                 ["capacity", "train", "--tokens", "1e9", "--days", "1"]):
        code, _, err = cli(*args, "--model", path, "--hardware", "h100-sxm")
        assert code == 2 and "--model" in err and "num_hidden_layers must be at most 1024" in err, (args, err)
        assert "got 1025" in err, err


def test_python_refuses_a_huge_config_path_or_spec_naming_model(tmp_path):
    path = _write(tmp_path, "huge", _config(num_hidden_layers=10**9))
    for call in (lambda m: planner.estimate(m, "h100-sxm"), lambda m: planner.plan(m, "h100-sxm"),
                 lambda m: planner.estimate_training(m, "h100-sxm")):
        with pytest.raises(TierwiseError) as exc:
            call(str(path))
        assert exc.value.field == "model" and exc.value.code == "limit_exceeded"
        assert exc.value.details["key"] == "num_hidden_layers" and exc.value.details["given"] == 10**9
    spec = dataclasses.replace(load_arch("llama-3.1-8b"), num_layers=10**9)  # a spec built in Python
    with pytest.raises(TierwiseError) as exc:
        planner.estimate(spec, "h100-sxm")
    assert exc.value.field == "model" and "num_layers" in str(exc.value)


def test_a_big_but_bounded_config_still_estimates(tmp_path, cli):
    path = _write(tmp_path, "deep", _config(num_hidden_layers=200))
    code, out, err = cli("estimate", "--model", path, "--hardware", "h100-sxm", "--tp", "8", "--json")
    assert code in (0, 3), err
    assert "limit" not in err


# ------------------------------------------------------------------ 2. no token to process


def test_cli_refuses_prompt_0_and_gen_0_for_generative_models(cli):
    for model in ("llama-3.1-8b", "mixtral-8x7b", "t5-3b"):
        code, out, err = cli("estimate", "--model", model, "--hardware", "h100-sxm", "--prompt", "0", "--gen", "0")
        assert code == 2 and "--prompt" in err and "no token" in err, (model, err)
        assert "latency" not in out


def test_prompt_0_with_gen_still_prices_decode_alone_like_llama_bench_tg(cli):
    code, out, err = cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--prompt", "0",
                         "--gen", "128", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["prompt"] == 0 and d["gen"] == 128 and d["decode"]["time_s"] > 0 and d["tpot_s"] > 0


def test_an_encoder_needs_a_prompt_and_cnns_ignore_it(cli):
    code, _, err = cli("estimate", "--model", "bert-base", "--hardware", "l4", "--prompt", "0")
    assert code == 2 and "--prompt" in err and "encoder" in err, err
    for model in ("resnet-50", "vit-h"):  # one image per sample: the prompt does not apply (a note says so)
        code, out, err = cli("estimate", "--model", model, "--hardware", "l4", "--prompt", "0", "--gen", "0")
        assert code == 0, err
        assert "does not apply" in out


def test_python_plan_and_estimate_refuse_no_token_naming_prompt():
    for call in (lambda: planner.estimate("llama-3.2-1b", "l4", prompt=0, gen=0),
                 lambda: planner.plan("llama-3.2-1b", "l4", prompt=0, gen=0),
                 lambda: planner.estimate("all-minilm-l6-v2", "l4", prompt=0)):
        with pytest.raises(TierwiseError) as exc:
            call()
        assert exc.value.field == "prompt"


# ------------------------------------------------------------------ 3. engines of the right kind


@pytest.mark.parametrize("engine", ["megatron-core", "fsdp"])
def test_cli_inference_refuses_a_training_engine_listing_serving_ones(cli, engine):
    code, out, err = cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", engine)
    assert code == 2 and "--engine" in err and "training engine" in err, err
    listed = err.split("serving engines on h100-sxm:")[1]
    assert "vllm" in listed and "trtllm" in listed and "fsdp" not in listed and "megatron-core" not in listed, err
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--engine", engine)
    assert code == 2 and "--engine" in err and "training engine" in err, err


def test_python_inference_refuses_training_engines_and_training_refuses_serving_ones():
    with pytest.raises(TierwiseError) as exc:
        planner.estimate("llama-3.2-1b", "h100-sxm", engine="fsdp")
    assert exc.value.field == "engine"
    with pytest.raises(TierwiseError) as exc:
        planner.estimate_training("llama-3.2-1b", "h100-sxm", engine="sglang")
    assert exc.value.field == "engine" and "fsdp" in str(exc.value)
    assert planner.estimate_training("llama-3.2-1b", "h100-sxm", engine="fsdp", seq=512).engine == "fsdp"


def test_engine_suggestions_list_engines_of_the_requests_kind(cli):
    tpu = load_device("tpu-v5e")
    assert load_engine("fsdp").support(tpu) is not None  # the trial's "engines that do: fsdp, vllm"
    code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "tpu-v5e", "--engine", "trtllm")
    assert code == 2 and "--engine" in err and "serving engines for decoder models that do: vllm" in err and "fsdp" not in err, err
    code, _, err = cli("estimate", "--mode", "training", "--model", "llama-3.2-1b", "--hardware", "tpu-v5e",
                       "--engine", "trtllm")
    assert code == 2 and "fsdp" in err and "vllm" not in err.split("training engines")[-1], err


# ------------------------------------------------------------------ 4. integers


def test_python_takes_integral_numbers_and_refuses_text_for_integers():
    base = planner.estimate("llama-3.2-1b", "l4", batch=8, prompt=256)
    same = planner.estimate("llama-3.2-1b", "l4", batch=8.0, prompt=256.0)
    assert same.serving.batch == 8 and same.serving.prompt == 256 and same.decode.time_s == base.decode.time_s
    for field, value in (("batch", "8"), ("batch", " 8"), ("batch", "08"), ("prompt", "512"), ("batch", 8.5),
                         ("batch", True)):
        with pytest.raises(TierwiseError) as exc:
            planner.estimate("llama-3.2-1b", "l4", **{field: value})
        assert exc.value.field == field, (field, value)
    assert planner.estimate("llama-3.2-1b", "l4", batch="max").serving.batch > 1


def test_cli_batch_text_is_an_integer_or_max(cli):
    for text in ("8", "max"):
        code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--batch", text)
        assert code == 0, err
    code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--batch", "8.5")
    assert code == 2 and "--batch" in err, err


# ------------------------------------------------------------------ 5. repeated items, --mix

SERVE = ["capacity", "serve", "--qps", "1", "--ttft-slo", "2", "--tpot-slo", "0.2", "--max-devices", "1"]


@pytest.mark.parametrize("args, flag, item", [
    (["--model", "llama-3.2-1b", "--hardware", "h100-sxm,h100-sxm"], "--hardware", "'h100-sxm'"),
    (["--model", "llama-3.2-1b", "--hardware", "l4, l4"], "--hardware", "'l4'"),
    (["--models", "llama-3.2-1b,llama-3.2-1b", "--hardware", "l4"], "--models", "'llama-3.2-1b'"),
    (["--model", "llama-3.2-1b", "--hardware", "l4", "--formats", "bf16,bf16"], "--formats", "'bf16'"),
    (["--model", "llama-3.2-1b", "--hardware", "l4", "--formats", "fp8,fp8-e4m3"], "--formats", "'fp8-e4m3'"),
])
def test_cli_capacity_refuses_a_repeated_item_naming_flag_and_item(cli, args, flag, item):
    code, _, err = cli(*SERVE, *args)
    assert code == 2 and flag in err and item in err and ("more than once" in err or "both" in err), err


def test_plan_and_capacity_train_refuse_repeats_too(cli):
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--formats", "int8,bf16,int8")
    assert code == 2 and "--formats" in err and "'int8'" in err, err
    code, _, err = cli("capacity", "train", "--model", "llama-3.2-1b", "--hardware", "h100-sxm,a100-80gb-sxm,h100-sxm",
                       "--tokens", "1e9", "--days", "1")
    assert code == 2 and "--hardware" in err and "'h100-sxm'" in err, err
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_serve("llama-3.2-1b", ["l4", "l4"], qps=1, ttft_slo_s=2, tpot_slo_s=0.2)
    assert exc.value.field == "hardware"


def test_mix_is_weights_normalised_and_the_answer_says_so(cli):
    args = [*SERVE, "--models", "llama-3.2-1b,opt-1.3b", "--mix", "0.5,0.7", "--hardware", "l4"]
    code, out, err = cli(*args)
    assert code in (0, 3), err
    assert "normalised to sum to 1" in out and "41.7%" in out and "58.3%" in out, out
    code, out, err = cli(*args, "--json")
    mix = json.loads(out)["answers"][0]["mix"] if "answers" in json.loads(out) else json.loads(out)["mix"]
    assert mix == pytest.approx([0.5 / 1.2, 0.7 / 1.2])
