"""The sensitivity prior scales with group size and role: embeddings and the LM head are not
the first groups crushed (planner/sensitivity.py, ``size_factor`` and ``ROLE_FACTORS``), and
engines that hold them in 16 bit whatever the plan says get them pinned there."""

from __future__ import annotations

import statistics

import pytest

from planner.formats import get_format
from planner.options import decision_groups
from planner.request.plan import PlanRequest, resolve_plan, run_plan
from planner.sensitivity import PriorSensitivity, active_params, size_reference
from planner.workload import build_workload
from planner.arch import load_arch
from planner.options import Option


def _bits(plan) -> dict[str, float]:
    return {g: get_format(c.weights).bits_per_value() for g, c in plan.choices.items()}


@pytest.mark.parametrize("engine", [None, "trtllm", "llamacpp"])
def test_tight_70b_plan_on_one_h100_keeps_embeddings_and_head_at_least_at_the_median(engine):
    # 45 GB for 70.6 B weights: the interior sits at 4–4.5 bits per weight
    plan = run_plan(PlanRequest(model="llama-3.1-70b", hardware="h100-sxm", max_memory_per_device="45GB",
                                engine=engine, time_limit_s=30))
    bits = _bits(plan)
    interior = statistics.median(b for g, b in bits.items() if ".layers." in g)
    assert interior < 8.0  # tight: the interior is compressed
    for g in ("model.embed_tokens", "model.lm_head"):
        assert bits[g] >= interior, (engine, g, plan.choices[g].weights, interior)


def test_vllm_plans_pin_embeddings_and_head_to_16_bit_unless_the_user_pins_them():
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.1-8b", hardware="h100-sxm"))
    assert problem.pins == {"model.embed_tokens": "bf16", "model.lm_head": "bf16"}
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.1-8b", hardware="h100-sxm",
                                                pins={"model.lm_head": "int8"}))
    assert problem.pins == {"model.lm_head": "int8", "model.embed_tokens": "bf16"}
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.1-8b", hardware="v100-16gb"))
    assert set(problem.pins.values()) == {"fp16"}  # V100 computes in fp16: that is what vLLM keeps
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.1-8b", hardware="h100-sxm", engine="llamacpp"))
    assert problem.pins == {}  # llama.cpp quantizes token_embd and output
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.1-8b", hardware="h100-sxm", engine="trtllm"))
    assert problem.pins == {"model.embed_tokens": "bf16"}  # TensorRT-LLM quantizes the LM head only


def test_size_factor_counts_the_experts_a_token_passes_through():
    groups = decision_groups(build_workload(load_arch("mixtral-8x7b")))
    experts = next(g for g in groups if g.role == "experts")
    # 2 of 8 experts per token: a quarter of the block's weights
    assert active_params(experts) == pytest.approx(experts.params / 4)
    ref = size_reference(groups)
    opts = [(Option(weights="int4-g128"),)] * len(groups)
    s = {g.fqn: v[0] for g, v in zip(groups, PriorSensitivity().scores(groups, opts).values)}
    mid = len([g for g in groups if g.role == "experts"]) // 2
    e, q = f"model.layers.{mid}.mlp.experts", f"model.layers.{mid}.self_attn.qkv"
    info = {g.fqn: g for g in groups}
    assert s[e] / s[q] == pytest.approx((active_params(info[e]) / active_params(info[q])) ** 0.5)
    assert ref > 0


def test_embedding_role_and_size_make_it_costlier_per_byte_than_an_interior_group():
    groups = decision_groups(build_workload(load_arch("llama-3.1-70b")))
    opts = [(Option(weights="int4-g128"),)] * len(groups)
    s = {g.fqn: (v[0], g.params) for g, v in zip(groups, PriorSensitivity().scores(groups, opts).values)}
    per_byte = {k: score / params for k, (score, params) in s.items()}
    interior = statistics.median(v for k, v in per_byte.items() if ".layers." in k)
    assert per_byte["model.embed_tokens"] > interior and per_byte["model.lm_head"] > interior


def test_phone_plans_get_an_interactive_tpot_limit_unless_the_user_gives_one():
    from planner.request.plan import PHONE_TPOT_S

    plan = run_plan(PlanRequest(model="llama-3.1-8b", hardware="iphone-15-pro", time_limit_s=20))
    assert plan.constraints.tpot_slo_s == PHONE_TPOT_S == 0.2
    assert plan.predicted.tpot_s <= PHONE_TPOT_S * (1 + 1e-9)
    free = run_plan(PlanRequest(model="llama-3.1-8b", hardware="iphone-15-pro", tpot_slo_s="none", time_limit_s=20))
    assert free.constraints.tpot_slo_s is None and free.predicted.tpot_s > 1.0  # streamed from flash
    given = run_plan(PlanRequest(model="llama-3.1-8b", hardware="iphone-15-pro", tpot_slo_s="400ms", time_limit_s=20))
    assert given.constraints.tpot_slo_s == pytest.approx(0.4)
    # not on other classes, and not for encoders (no decode)
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.1-8b", hardware="m2-max"))
    assert problem.tpot_slo_s is None
    _, _, problem, _ = resolve_plan(PlanRequest(model="all-minilm-l6-v2", hardware="iphone-15-pro"))
    assert problem.tpot_slo_s is None
