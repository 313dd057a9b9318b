"""A plan made for an engine is priced with that engine's runtime facts, exactly as
`tierwise estimate --engine` prices the same configuration: the runtime context it keeps on
the device (vLLM 1.5 GiB), fused or separate kernels, its step overhead, the compute unit and
quantized CPU matmul (llama.cpp), separate dequantization (DeepSpeed). A plan that ignores them
promises memory and latency the engine does not deliver, and fits budgets it does not fit."""

from __future__ import annotations

import pytest

from planner.engines import EngineSupportError

from planner.request.estimate import EstimateRequest, run_estimate
from planner.request.plan import PlanRequest, run_plan

# (engine, hardware, model, weight format): one uniform format, so the plan's configuration is
# exactly one `estimate` configuration.
CASES = [
    ("vllm", "h100-sxm", "llama-3.1-8b", "bf16"),
    ("hf-transformers", "a100-80gb-sxm", "llama-3.2-1b", "bf16"),
    ("torch", "cpu-host", "llama-3.2-1b", "bf16"),
    ("llamacpp", "ryzen-9-7950x", "llama-3.2-1b", "bf16"),
    ("deepspeed-inference", "a100-80gb-sxm", "opt-6.7b", "int8"),
]


@pytest.mark.parametrize(("engine", "hardware", "model", "fmt"), CASES, ids=[c[0] for c in CASES])
def test_a_plan_predicts_what_estimate_predicts_for_its_engine(engine, hardware, model, fmt):
    plan = run_plan(PlanRequest(model=model, hardware=hardware, engine=engine, formats=[fmt], batch=2, prompt=256,
                                gen=32, time_limit_s=30))
    assert plan.engine == engine
    kv = plan.default_choice().kv
    layer_choices = {c.activations for g, c in plan.choices.items() if ".layers." in g}
    assert len(layer_choices) == 1, layer_choices
    est = run_estimate(EstimateRequest(model=model, hardware=hardware, engine=engine, weights=fmt,
                                       activations=layer_choices.pop(), kv=kv, batch=2, prompt=256,
                                       gen=32, tp=plan.layout.tp, pp=plan.layout.pp, dp=plan.layout.dp))
    p = plan.predicted
    assert p.per_device_bytes == pytest.approx(est.memory.per_device_bytes, rel=1e-6)
    assert p.ttft_s == pytest.approx(est.ttft_s, rel=1e-6)
    assert p.tpot_s == pytest.approx(est.tpot_s, rel=1e-6)


def test_the_engines_runtime_context_counts_against_the_memory_budget():
    # Llama-3.1-8B in bf16 at batch 8 needs 16.9 GB of weights, KV and activations; vLLM keeps
    # 1.5 GiB more (its profile's runtime context), 18.5 GB in all: a 17.5 GB budget does not hold it.
    req = dict(model="llama-3.1-8b", hardware="h100-sxm", batch=8, prompt=512, gen=128, formats=["bf16"],
               kv="bf16", max_memory_per_device="17.5GB", time_limit_s=30)
    with pytest.raises(Exception) as e:
        run_plan(PlanRequest(engine="vllm", **req))
    assert "17.5" in str(e.value) and "budget" in str(e.value)
    roomy = run_plan(PlanRequest(engine="vllm", **{**req, "max_memory_per_device": "19GB"}))
    est = run_estimate(EstimateRequest(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm", weights="bf16",
                                       kv="bf16", batch=8, prompt=512, gen=128))
    assert roomy.predicted.per_device_bytes == pytest.approx(est.memory.per_device_bytes, rel=1e-6)
    assert roomy.predicted.per_device_bytes > 17.5e9


def test_llamacpp_on_cpu_cores_plans_its_quantized_formats_with_its_own_activations():
    # llama.cpp runs Q8_0 / Q4_0 weights on CPU cores only against Q8_0-quantized activations (its
    # profile: int8-g32, int4-g32, ... with int8). The planner offers them so, instead of pairing them
    # with the 16-bit compute format, which the engine does not run, and finding nothing left.
    plan = run_plan(PlanRequest(model="llama-3.2-1b", hardware="ryzen-9-7950x", engine="llamacpp",
                                formats=["int8-g32", "int4-g32"], batch=1, prompt=128, gen=32, time_limit_s=30))
    layers = {(c.weights, c.activations) for g, c in plan.choices.items() if ".layers." in g}
    assert layers and all(a == "int8" and w in ("int8-g32", "int4-g32") for w, a in layers), layers


def test_a_budget_below_the_engines_runtime_context_is_diagnosed_as_such():
    from planner.diagnose import NoFeasiblePlanError

    with pytest.raises(NoFeasiblePlanError) as e:
        run_plan(PlanRequest(model="llama-3.1-8b", hardware="l4", engine="vllm", max_memory_per_device="1GB",
                             time_limit_s=30))
    text = str(e.value)
    assert "vllm's runtime context" in text and "does not even hold that" in text
    with pytest.raises(NoFeasiblePlanError) as e:
        run_plan(PlanRequest(model="llama-3.1-8b", hardware="l4", engine="vllm", max_memory_per_device="2.7GB",
                             time_limit_s=30))
    assert "the budget leaves 1.1 GB for the model" in str(e.value)


def test_the_vllm_export_counts_the_runtime_context_once():
    import re

    from planner.export import export_plan
    from tests.test_export import ctx_for

    plan = run_plan(PlanRequest(model="llama-3.1-8b", hardware="l4", engine="vllm", formats=["bf16", "int8"], kv="fp8",
                                max_memory_per_device="14GB", time_limit_s=30))
    ctx_bytes = plan.predicted.runtime_context_bytes
    assert ctx_bytes == pytest.approx(1.5 * 2**30)  # vLLM's profile: context_gib 1.5, counted in the plan
    out = export_plan(plan, "vllm", ctx_for(plan))
    note = next(n for n in out.notes if "gpu_memory_utilization" in n)
    model_gb, context_gb = (float(x) for x in re.search(r"= \((\S+) GB per device.*\+ (\S+) GB engine context", note).groups())
    assert context_gb == pytest.approx(ctx_bytes / 1e9, abs=0.01)
    # the plan's footprint without its context, plus the activations of one chunked-prefill pass at most
    assert plan.predicted.per_device_bytes / 1e9 - context_gb - 0.01 <= model_gb <= plan.predicted.per_device_bytes / 1e9


@pytest.mark.parametrize(("engine", "hardware", "want"), [
    ("hf-transformers", "a100-80gb-sxm", "eager"), ("torch", "cpu-host", "eager"),
    ("llamacpp", "ryzen-9-7950x", "graph"), ("vllm", "h100-sxm", "graph"),
])
def test_estimate_and_plan_take_the_engines_launch_mode(engine, hardware, want):
    # One default for every front door: eager PyTorch dispatch for the engines that run operators from
    # Python (their profiles' eager_dispatch), graph launch for captured, compiled or native engines
    # (llama.cpp's ggml has no graph capture but no PyTorch dispatch either).
    from planner.request.estimate import resolve_inference
    from planner.request.plan import resolve_plan
    from planner.search_formulation import engine_options

    r = resolve_inference(EstimateRequest(model="llama-3.2-1b", hardware=hardware, engine=engine))
    assert r.options.runtime == want
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.2-1b", hardware=hardware, engine=engine))
    assert engine_options(problem).runtime == want
    other = "graph" if want == "eager" else "eager"
    # ggml runs its own graph: there is no eager PyTorch mode to switch to; Tierwise's torch execution
    # runs eager PyTorch only: no graph mode
    if engine in ("llamacpp", "torch"):
        with pytest.raises(EngineSupportError) as err:
            resolve_inference(EstimateRequest(model="llama-3.2-1b", hardware=hardware, engine=engine, runtime=other))
        assert err.value.field == "runtime"
        return
    forced = resolve_inference(EstimateRequest(model="llama-3.2-1b", hardware=hardware, engine=engine, runtime=other))
    assert forced.options.runtime != want  # --runtime still overrides
