"""No plan contains a sparsity pattern or a lossy structural option (2:4, unstructured, low
rank, codebooks, shared KV caches) that the request did not ask for — across models, hardware
classes, engines and budgets tight enough that the solver would reach for them. The export
matrix (tests/export_matrix.py) checks the same on every plan it makes."""

from __future__ import annotations

import pytest

from planner.diagnose import NoFeasiblePlanError
from planner.request.plan import PlanRequest, run_plan
from tests.export_matrix import unasked_structure

# hardware where the structures would pay: H100 / A100 have 2:4 sparse tensor cores
CASES = [
    ("llama-3.2-1b", "h100-sxm", None), ("llama-3.2-1b", "a100-80gb-sxm", "trtllm"),
    ("mixtral-8x7b", "h100-sxm", "sglang"), ("phi-3-mini", "l4", "hf-transformers"),
    ("falcon-7b", "rtx-4090", "llamacpp"), ("qwen2.5-7b", "iphone-15-pro", None),
    ("gemma-2-9b", "snapdragon-8-gen-3", "mlc-llm"), ("llama-3.2-1b", "sn40l", None),
    ("mobilenet-v2", "zcu102", None), ("resnet-50", "jetson-agx-orin", "tvm"),  # the Vitis AI DPU runs CNNs
]


@pytest.mark.parametrize("model,hardware,engine", CASES)
@pytest.mark.parametrize("squeeze", [1.0, 0.3])
def test_no_plan_has_structure_nobody_asked_for(model, hardware, engine, squeeze):
    from hwmodels import load_device

    from planner.arch import load_arch
    from planner.costmodel import Choice, Layout, Serving, memory_report

    arch, dev = load_arch(model), load_device(hardware)
    weights16 = memory_report(arch, dev, Layout(), Serving(batch=1, prompt=1, gen=0), Choice(weights="bf16"))[0].weights_bytes
    budget = None if squeeze == 1.0 else min(squeeze * weights16, dev.memory_capacity_bytes)
    try:
        plan = run_plan(PlanRequest(model=model, hardware=hardware, engine=engine, max_memory_per_device=budget,
                                    tpot_slo_s="none", time_limit_s=10))
    except NoFeasiblePlanError:
        pytest.skip("no plan fits: nothing to inspect")
    assert unasked_structure(plan) == []


def test_asked_for_structures_are_allowed_so_the_check_can_fail():
    # Tierwise's own execution on a CPU (engine torch) runs 2:4 sparsity and low-rank layers; 1.1 GB
    # is less than every group in int8 (1.24 B parameters), so some group must be pruned or factored.
    plan = run_plan(PlanRequest(model="llama-3.2-1b", hardware="cpu-host", engine="torch", sparsity="2:4",
                                low_rank=[256], max_memory_per_device="1.1GB", formats="bf16,int8", time_limit_s=20))
    found = unasked_structure(plan)
    assert found and any("2:4" in f or "low rank" in f for f in found)
