"""The sglang export: `tierwise export` of an SGLang plan writes SGLang's own server arguments
(sglang_args.json) and a `python -m sglang.launch_server` serve.sh, never vLLM's command."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from planner.engines import load_engine
from planner.export import ExportError, export_plan
from planner.plan import load_plan, plan_to_dict, with_engine
from tests.test_export import ctx_for, make_plan, mixed

#: SGLang ``ServerArgs`` fields the export may write (python/sglang/srt/server_args.py,
#: https://github.com/sgl-project/sglang; the flag of ``name_x`` is ``--name-x``), with the values
#: their ``choices`` allow where they have some.
SERVER_ARGS = {"model_path", "tp_size", "pp_size", "dp_size", "ep_size", "dtype", "kv_cache_dtype", "quantization",
               "context_length", "max_running_requests", "chunked_prefill_size", "mem_fraction_static", "cpu_offload_gb"}
DTYPES = {"auto", "half", "float16", "bfloat16", "float", "float32"}
KV_CACHE_DTYPES = {"auto", "fp8_e5m2", "fp8_e4m3"}  # the 8- and 16-bit choices of ServerArgs.kv_cache_dtype
QUANTIZATION = {"fp8", "compressed-tensors", "modelopt_fp4", "w8a8_fp8", "w8a8_int8", "awq", "gptq"}  # QUANTIZATION_CHOICES (part)


def _plan(cli, tmp_path, *args):
    path = tmp_path / "plan.yaml"
    r = cli("plan", "--hardware", "h100-sxm", "--engine", "sglang", *args, "--out", path)
    assert r.code == 0, r.err
    return load_plan(path)


def _flags(script: str) -> dict[str, str]:
    words = shlex.split(script.split("set -euo pipefail\n", 1)[1].replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "sglang.launch_server"], words
    flags = dict(zip(words[3::2], words[4::2]))
    assert all(f.startswith("--") for f in flags), flags
    return {f[2:].replace("-", "_"): v for f, v in flags.items()}


def _check_against_server_args(out) -> dict:
    args = json.loads(out.file("sglang_args.json").content)
    assert set(args) <= SERVER_ARGS, set(args) - SERVER_ARGS
    flags = _flags(out.file("serve.sh").content)
    assert flags == {k: str(v) for k, v in args.items()}  # serve.sh says what sglang_args.json says
    assert args["dtype"] in DTYPES and args["kv_cache_dtype"] in KV_CACHE_DTYPES
    assert args.get("quantization", "fp8") in QUANTIZATION
    assert "vllm" not in out.file("serve.sh").content and "gpu-memory-utilization" not in out.next_command
    return args


def test_an_sglang_plan_exports_the_sglang_launch_command(cli, tmp_path):
    plan = _plan(cli, tmp_path, "--model", "llama-3.2-1b", "--batch", 16, "--prompt", 2000, "--gen", 200)
    out = export_plan(plan, None, ctx_for(plan))  # the engine's exporter: profiles/engines/sglang.yaml
    assert out.format == "sglang" and out.next_command.startswith("python -m sglang.launch_server")
    assert "sglang.launch_server" in out.file("serve.sh").content
    args = _check_against_server_args(out)
    assert args["model_path"] == "meta-llama/Llama-3.2-1B" and "quantization" not in args
    assert (args["tp_size"], args["pp_size"]) == (1, 1) and "dp_size" not in args and "ep_size" not in args
    assert args["context_length"] == 2200 and args["max_running_requests"] == 16
    assert args["kv_cache_dtype"] == "auto" and args["dtype"] == "bfloat16"
    # chunked prefill of the profile's chunk (8192 tokens; the batch's prompts are 32000)
    assert args["chunked_prefill_size"] == load_engine("sglang").runtime.chunk_tokens == 8192
    # mem_fraction_static: weights + KV cache pool (+ the engine's context, held before the pool is sized)
    p = plan.predicted
    cap = 80e9
    static = p.weights_bytes + p.kv_cache_bytes + load_engine("sglang").runtime.context_bytes
    frac = args["mem_fraction_static"]
    assert static <= frac * cap < static + 0.01 * cap
    note = next(n for n in out.notes if n.startswith("mem_fraction_static"))
    assert "profiles/engines/sglang.yaml" in note and "chunked-prefill pass" in note


def test_fp8_w8a8_plan_with_an_fp8_kv_cache(cli, tmp_path):
    plan = _plan(cli, tmp_path, "--model", "llama-3.1-8b", "--formats", "fp8-e4m3", "--activations", "fp8-e4m3",
                 "--kv", "fp8-e4m3", "--batch", 8)
    out = export_plan(plan, None, ctx_for(plan))
    args = _check_against_server_args(out)
    # online fp8 (W8A8) on the 16-bit checkpoint; the embedding and LM head stay 16 bit
    assert args["quantization"] == "fp8" and args["model_path"] == "meta-llama/Llama-3.1-8B"
    assert args["kv_cache_dtype"] == "fp8_e4m3"
    assert any("--quantization-param-path" in n for n in out.notes)  # no calibrated KV scales: SGLang uses 1.0


def test_fp8_e5m2_kv_and_tensor_parallel_2(cli, tmp_path):
    plan = _plan(cli, tmp_path, "--model", "llama-3.1-8b", "--devices", 2, "--tp", 2, "--kv", "fp8-e5m2",
                 "--formats", "bf16")
    args = _check_against_server_args(export_plan(plan, None, ctx_for(plan)))
    assert args["tp_size"] == 2 and args["kv_cache_dtype"] == "fp8_e5m2"
    # per device: half the weights
    assert args["mem_fraction_static"] * 80e9 < plan.predicted.weights_bytes


def test_a_mixed_plan_serves_its_compressed_tensors_checkpoint_without_a_quantization_flag(cli, tmp_path):
    plan = _plan(cli, tmp_path, "--model", "llama-3.2-1b", "--formats", "int4-g128,bf16", "--avg-bits", 8)
    out = export_plan(plan, None, ctx_for(plan))
    args = _check_against_server_args(out)
    # SGLang reads quant_method from the checkpoint's config.json (docs: no --quantization for pre-quantized models)
    assert args["model_path"] == "llama-3.2-1b-tierwise" and "quantization" not in args
    assert any("--format compressed-tensors" in n for n in out.notes)
    ct = export_plan(plan, "compressed-tensors", ctx_for(plan))  # a format of the sglang engine: checked against it
    assert "sglang.launch_server --model-path llama-3.2-1b-tierwise" in ct.next_command


def test_a_plan_that_does_not_fit_is_refused_naming_the_footprint():
    # Llama-3.1-70B in bf16 (141 GB of weights) on one 80 GB H100
    plan = make_plan("llama-3.1-70b", "h100-sxm", lambda g: ("bf16", "bf16", "dense"), batch=1)
    with pytest.raises(ExportError) as e:
        export_plan(with_engine(plan, "sglang"), None, ctx_for(plan))
    msg = e.value.render("cli")
    assert e.value.field == "predicted.per_device_bytes"
    assert "does not load under SGLang on h100-sxm" in msg and "80.00 GB of the device" in msg
    assert "--max-memory-per-device" in msg and "--devices" in msg


def test_a_vllm_plan_exported_for_sglang_is_checked_against_sglang():
    # int8 weight-only (W8A16) runs on vLLM on an L4; SGLang has no kernel for it there
    vllm_plan = with_engine(make_plan("llama-3.2-1b", "l4", mixed, kv="fp8-e4m3"), "vllm")
    with pytest.raises(ExportError) as e:
        export_plan(vllm_plan, "sglang", ctx_for(vllm_plan))
    msg = str(e.value)
    assert "sglang on l4 does not run int8 weights with bf16 activations" in msg
    assert "model.layers.0.self_attn.o_proj" in msg and "--engine sglang" in msg
    # a plan SGLang runs exports, sized with SGLang's context (profiles/engines/sglang.yaml)
    ok = with_engine(make_plan("llama-3.2-1b", "l4", lambda g: ("int4-g128", "bf16", "dense"), kv="fp8-e5m2"), "vllm")
    out = export_plan(ok, "sglang", ctx_for(ok))
    args = _check_against_server_args(out)
    assert args["kv_cache_dtype"] == "fp8_e5m2"
    assert any("profiles/engines/sglang.yaml" in n for n in out.notes)
    # the quantized embedding and LM head are written in 16 bit (SGLang quantizes Linear layers only)
    assert any(n.startswith("sglang keeps embeddings in 16 bit") for n in out.notes)


def test_expert_parallel_wider_than_tensor_parallel_is_refused():
    # SGLang's EP groups split the TP group (moe_ep_rank = tp_rank // (tp_size // ep_size))
    plan = make_plan("mixtral-8x7b", "h100-sxm", lambda g: ("fp8-e4m3", "fp8-e4m3", "dense"), dp=2, batch=4)
    d = plan_to_dict(with_engine(plan, "sglang"))
    d["layout"] = {**d["layout"], "ep": 2}
    with pytest.raises(ExportError) as e:
        export_plan(d, None, ctx_for(plan))
    assert e.value.field == "layout.ep" and "ep=2 with tp=1" in str(e.value)
    assert "--tp 2 --ep 2" in e.value.render("cli")  # a layout SGLang runs (the planner's EP may span replicas)
    d["layout"] = {**d["layout"], "tp": 2, "dp": 1}
    assert re.search(r"--ep-size 2\b", export_plan(d, None, ctx_for(plan)).next_command)
