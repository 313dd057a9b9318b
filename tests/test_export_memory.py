"""vLLM's gpu_memory_utilization gives the engine what the plan needs on the GPU: never a
silently clamped share, and never the weights the plan offloads to host memory."""

from __future__ import annotations

import json
import re

import pytest

from planner.engines import load_engine
from planner.export import ExportError, export_plan
from planner.plan import load_plan
from tests.test_export import ctx_for, make_plan


def test_a_plan_that_needs_more_than_the_device_is_refused_not_clamped():
    # Llama-3.1-8B in fp16 (16.06 GB of weights) on a 16 GB T4: no gpu_memory_utilization holds it.
    plan = make_plan("llama-3.1-8b", "t4", lambda g: ("fp16", "fp16", "dense"), kv="fp16", batch=1)
    with pytest.raises(ExportError) as e:
        export_plan(plan, "vllm", ctx_for(plan))
    msg = e.value.render("cli")
    assert e.value.field == "predicted.per_device_bytes"
    assert "16.00 GB gpu_memory_utilization 1.0 can give" in msg and "GB more than" in msg, msg
    assert "engine context" in msg and "--max-memory-per-device" in msg


def test_a_plan_that_fills_the_device_gets_all_of_it(cli, tmp_path):
    # 405B on 4 H100s: the plan fills 79.99 of 80 GB; 0.98 of the device would be short.
    plan_file = tmp_path / "p.yaml"
    assert cli("plan", "--model", "llama-3.1-405b", "--hardware", "h100-sxm", "--devices", 4, "--out", plan_file).code == 0
    out = export_plan(load_plan(plan_file), "vllm", ctx_for(load_plan(plan_file)))
    frac = json.loads(out.file("vllm_args.json").content)["gpu_memory_utilization"]
    note = next(n for n in out.notes if n.startswith("gpu_memory_utilization"))
    plan_gb, ctx_gb, cap_gb = (float(x) for x in re.search(
        r"\(([\d.]+) GB per device.* \+ ([\d.]+) GB engine context.*\) / ([\d.]+) GB", note).groups())
    assert frac <= 1.0 and frac * cap_gb >= plan_gb + ctx_gb - 0.01


def test_offloaded_weights_are_cpu_offload_gb_not_gpu_memory(cli, tmp_path):
    plan_file = tmp_path / "p.yaml"
    r = cli("plan", "--model", "llama-3.1-70b", "--hardware", "l4", "--allow-offload", "--out", plan_file)
    assert r.code == 0, r.err
    plan = load_plan(plan_file)
    off = plan.predicted.offloaded_weights_bytes
    assert off > 20e9
    out = export_plan(plan, "vllm", ctx_for(plan))
    args = json.loads(out.file("vllm_args.json").content)
    assert args["cpu_offload_gb"] >= off / 2**30
    note = next(n for n in out.notes if n.startswith("gpu_memory_utilization"))
    plan_gb = float(re.search(r"\(([\d.]+) GB per device", note).group(1))
    ctxb = load_engine("vllm").runtime.context_bytes
    # GPU bytes: the plan's footprint less the offloaded weights (was 70.39 GB on a 24 GB L4)
    assert plan_gb < 24.0 and f"less {off / 1e9:.2f} GB of weights offloaded" in note
    assert args["gpu_memory_utilization"] * 24e9 >= plan_gb * 1e9 + ctxb - 1e7
