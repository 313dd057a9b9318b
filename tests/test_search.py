"""Joint search (planner.search): independent re-evaluation, exact aggregation, hardware
awareness, Pareto frontier and bisection. The issue's acceptance commands 1 and 5 run as
written in test_plan_cli.py."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwmodels import load_device
from planner.arch import load_arch
from planner.costmodel import RuntimeSettings, estimate_inference
from planner.diagnose import NoFeasiblePlanError
from planner.search import (
    Planner,
    PlanProblem,
    bisect_ladder,
    non_dominated,
)
from planner.sensitivity import PriorSensitivity, SensitivityScores
from planner.solver import solve


def reevaluate(plan):
    """The cost model's own estimate of a plan, built only from the plan's data."""
    return estimate_inference(load_arch(plan.model), load_device(plan.hardware), plan.layout.to_layout(),
                              plan.workload.to_serving(), plan.default_choice(), overrides=plan.overrides(),
                              options=RuntimeSettings(allow_offload=plan.constraints.allow_offload,
                                              placement=plan.placement()))


def assert_respects_constraints(plan, est=None):
    est = est or reevaluate(plan)
    c = plan.constraints
    dev = load_device(plan.hardware)
    for t in est.memory.tiers:
        assert t.used_bytes <= t.capacity_bytes * (1 + 1e-9), t.name
        if t.role == "device":
            cap = dev.memory_capacity_bytes if c.max_memory_per_device_bytes is None else \
                min(dev.memory_capacity_bytes, c.max_memory_per_device_bytes)
            assert t.used_bytes <= cap * (1 + 1e-9)
    if c.ttft_slo_s is not None:
        assert est.ttft_s <= c.ttft_slo_s * (1 + 1e-9)
    if c.tpot_slo_s is not None:
        assert est.tpot_s <= c.tpot_slo_s * (1 + 1e-9)
    if c.avg_bits is not None:
        assert plan.predicted.avg_weight_bits <= c.avg_bits * (1 + 1e-9)
    assert plan.predicted.fits


@pytest.fixture(scope="module")
def small():
    """Llama-3.2-1B (16 layers) on an L4: small enough to re-solve many times."""
    return Planner(load_arch("llama-3.2-1b"), load_device("l4"))


def test_linearisation_is_exact_without_streaming(small):
    # The ILP's memory row and decode/prefill auxiliaries equal the cost model's numbers
    # for the chosen configuration (group costs are additive; fixed costs are exact).
    req = PlanProblem(max_memory_per_device_bytes=1.3e9, kv="bf16")
    lay = small._formulate(req, load_layout(1), "bf16")
    refs = small._refs(req, lay)
    problem = small._problem(lay, req, {})
    cost, aux = small._objective(lay, problem, "accuracy", req, refs)
    sol = solve(problem.with_cost(cost, aux))
    _, est, bad = small._assemble(lay, req, sol, refs)
    assert not bad
    dev_tier = small.device.device_tier.name
    assert sol.row_activity[f"memory_{dev_tier}"] + lay.fixed_bytes[dev_tier] + lay.stage_fixed[0] == pytest.approx(
        est.memory.per_device_bytes, rel=1e-12)
    assert sol.aux_values["P_decode"] == pytest.approx(est.decode.time_s, rel=1e-6)
    assert sol.aux_values["P_prefill"] == pytest.approx(est.prefill.time_s, rel=1e-6)


def load_layout(tp):
    from planner.costmodel import Layout

    return Layout(tp=tp)


class _Jittered:
    """Prior scores × (1 + tiny noise): no longer proportional across layers, so every
    group becomes its own one-hot class (the plain per-group formulation)."""

    source = "data"

    def scores(self, groups, options):
        base = PriorSensitivity().scores(groups, options)
        rng = np.random.default_rng(0)
        return SensitivityScores(values=tuple(v * (1 + 1e-6 * rng.random(v.size)) for v in base.values))

    def kv_score(self, kv, groups):
        return PriorSensitivity().kv_score(kv, groups)


def test_aggregated_classes_match_the_per_group_formulation():
    arch, dev = load_arch("llama-3.2-1b"), load_device("l4")
    req = PlanProblem(max_memory_per_device_bytes=1.2e9, kv="bf16", gap=1e-6)
    agg = Planner(arch, dev).solve(req)
    flat_planner = Planner(arch, dev, sensitivity=_Jittered())
    flat = flat_planner.solve(req)
    form = flat_planner._formulate(req, load_layout(1), "bf16")
    assert all(len(c.members) == 1 for c in form.classes)  # really the per-group model
    assert agg.predicted.sensitivity == pytest.approx(flat.predicted.sensitivity, rel=1e-4)
    assert agg.predicted.per_device_bytes <= 1.2e9 and flat.predicted.per_device_bytes <= 1.2e9


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(budget=st.floats(1.0e9, 3.0e9), ttft=st.one_of(st.none(), st.floats(0.05, 0.4)),
       tpot=st.one_of(st.none(), st.floats(0.005, 0.05)), bits=st.one_of(st.none(), st.floats(4.0, 12.0)),
       objective=st.sampled_from(["accuracy", "latency", "memory", "cost"]))
def test_every_returned_plan_satisfies_its_constraints(small, budget, ttft, tpot, bits, objective):
    # Issue acceptance 3: no returned plan violates a constraint under an independent
    # re-evaluation by the cost model.
    req = PlanProblem(max_memory_per_device_bytes=budget, ttft_slo_s=ttft, tpot_slo_s=tpot, avg_bits=bits,
                      objective=objective, kv="bf16")
    try:
        plan = small.solve(req, diagnose_failure=False)
    except NoFeasiblePlanError:
        return
    assert_respects_constraints(plan)


def test_objectives_order_the_plans(small):
    base = PlanProblem(max_memory_per_device_bytes=2.0e9, kv="bf16")
    acc = small.solve(base)
    fast = small.solve(replace(base, objective="latency"))
    tiny = small.solve(replace(base, objective="memory"))
    mix = small.solve(replace(base, objective="weighted", objective_weights={"accuracy": 1.0, "latency": 1.0}))
    assert acc.predicted.sensitivity <= min(fast.predicted.sensitivity, tiny.predicted.sensitivity) + 1e-12
    assert fast.predicted.latency_s <= min(acc.predicted.latency_s, tiny.predicted.latency_s) * (1 + 1e-6)
    assert tiny.predicted.per_device_bytes <= min(acc.predicted.per_device_bytes, fast.predicted.per_device_bytes)
    assert fast.predicted.latency_s <= mix.predicted.latency_s * (1 + 1e-6) <= acc.predicted.latency_s * (1 + 1e-3)


def test_formats_pins_and_offload_ties(small):
    plan = small.solve(PlanProblem(max_memory_per_device_bytes=1.6e9, formats=("bf16", "int8", "int4-g128"),
                                   pins={"model.layers.0.*": "bf16"}, kv="bf16"))
    keys = Counter(c.key for c in plan.choices.values())
    assert set(keys) <= {"bf16", "int8", "int4-g128", "int8/int8", "int4-g128/int8"}
    assert all(c.key == "bf16" for k, c in plan.choices.items() if k.startswith("model.layers.0."))
    # With room on the device tier, offloading is allowed but never chosen: tier ties are
    # broken by latency.
    roomy = small.solve(PlanProblem(allow_offload=True, kv="bf16"))
    assert {c.tier for c in roomy.choices.values()} == {small.device.device_tier.name}
    assert roomy.predicted.sensitivity == 0.0


def test_hardware_awareness_follows_the_profiles():
    # Issue acceptance 4: the same model and memory budget on four kinds of hardware.
    arch = load_arch("llama-3.1-8b")
    req = PlanProblem(max_memory_per_device_bytes=6e9)
    plans = {hw: Planner(arch, load_device(hw)).solve(req) for hw in ("t4", "h100-sxm", "iphone-15-pro", "sn40l")}
    tiers = {hw: Counter(c.tier for c in p.choices.values()) for hw, p in plans.items()}
    # GPUs without --allow-offload must compress 16 GB of bf16 into 6 GB of device memory.
    for hw, tier in (("t4", "gddr6"), ("h100-sxm", "hbm3")):
        assert set(tiers[hw]) == {tier} and plans[hw].predicted.avg_weight_bits < 7
    # T4: no bf16 units (fp16 tensor cores), so it computes in fp16.
    assert plans["t4"].activations == "fp16" and plans["h100-sxm"].activations == "bf16"
    # The phone may stream weights from flash ("LLM in a flash") and the RDU from its DDR
    # tier: both keep full precision (zero sensitivity) where the GPUs must quantise.
    assert tiers["iphone-15-pro"]["nvme_flash"] > 0 and tiers["sn40l"]["ddr5"] > 0
    assert plans["sn40l"].predicted.sensitivity == 0.0 and plans["iphone-15-pro"].predicted.avg_weight_bits == 16
    # The phone's device tier is capped by what iOS lets one app use (6 GB of 8 GB).
    assert plans["iphone-15-pro"].predicted.tiers["lpddr5"].used_bytes <= 6e9

    # A TTFT target at 60 % of each GPU's own accuracy plan forces low-precision compute:
    # fp8 tensor cores on the H100; the T4 has none and must use int8 activations.
    for hw in ("t4", "h100-sxm"):
        p = Planner(arch, load_device(hw)).solve(replace(req, prompt=2048, ttft_slo_s=None))
        fast = Planner(arch, load_device(hw)).solve(replace(req, prompt=2048, ttft_slo_s=0.6 * p.predicted.ttft_s))
        acts = Counter(c.activations for c in fast.choices.values())
        if hw == "t4":
            assert "fp8-e4m3" not in acts and acts["int8"] > 0
        else:
            assert acts["fp8-e4m3"] > acts["int8"]
        assert_respects_constraints(fast)
    # The phone under a TPOT target keeps most weights in DRAM at int8, its NPU's native width.
    phone = Planner(arch, load_device("iphone-15-pro")).solve(replace(req, tpot_slo_s=0.5))
    assert_respects_constraints(phone)
    weights = Counter(c.weights for c in phone.choices.values())
    assert weights.most_common(1)[0][0] == "int8"


def test_pareto_points_are_non_dominated(small):
    req = PlanProblem(kv="bf16", max_memory_per_device_bytes=3e9)
    front = small.pareto(req, 5)
    assert 3 <= len(front) <= 5
    pts = [(p.predicted.sensitivity, p.predicted.per_device_bytes, p.predicted.latency_s) for p in front]
    for i, a in enumerate(pts):
        for j, b in enumerate(pts):
            if i != j:
                assert not (all(x <= y for x, y in zip(b, a)) and any(x < y for x, y in zip(b, a)))
    assert non_dominated(front) == sorted(front, key=lambda p: (p.predicted.sensitivity, p.predicted.per_device_bytes,
                                                               p.predicted.latency_s))
    for p in front:
        assert_respects_constraints(p)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_bisection_converges_within_log2_plus_two(n, data):
    # Issue acceptance 3: ⌈log₂ N⌉ + 2 evaluations on monotone synthetic evaluators.
    steps = sorted(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    lo = data.draw(st.floats(0, 1))
    hi = data.draw(st.floats(lo, 1.2))
    calls = []

    def evaluator(i):
        calls.append(i)
        return steps[i]

    res = bisect_ladder(n, lambda i: i, evaluator, (lo, hi))
    assert len(calls) <= math.ceil(math.log2(n)) + 2
    ok = [i for i in range(n) if steps[i] <= hi]
    if not ok:
        assert res.plan is None and not res.inside_band
        return
    assert res.plan is not None and steps[res.plan] <= hi
    if not res.inside_band:
        assert res.plan == max(ok)  # no early stop: the most compressed acceptable candidate
    else:
        assert lo <= steps[res.plan] <= hi


def test_bisection_keeps_the_best_feasible_and_skips_duplicates():
    seen = []
    res = bisect_ladder(8, lambda i: min(i, 3), lambda c: (seen.append(c), c / 10)[1], (0.9, 1.0))
    assert res.plan == 3 and res.degradation == 0.3 and not res.inside_band
    assert len(seen) == len(set(seen))  # identical candidates evaluated once
    assert bisect_ladder(4, lambda i: None, lambda c: 0.0, (0, 1)).plan is None


def test_planner_bisect_on_a_measured_proxy(small):
    # Evaluator: the plan's summed sensitivity (monotone in the memory budget); band chosen
    # around a mid-ladder plan.
    req = PlanProblem(kv="bf16", max_memory_per_device_bytes=3e9)
    evaluations = []

    def measured(plan):
        evaluations.append(plan.predicted.sensitivity)
        return plan.predicted.sensitivity

    res = small.bisect(req, measured, (0.02, 0.05), levels=16)
    assert len(evaluations) <= math.ceil(math.log2(16)) + 2
    assert res.plan is not None and res.degradation <= 0.05
    assert_respects_constraints(res.plan)


def test_primaries_within_the_gap_are_ranked_by_the_secondary_objective():
    from planner.search_problem import pick_best

    a, b, c = (1.0, 5.0, 10.0), (1.0 + 5e-4, 3.0, 10.0), (1.01, 1.0, 10.0)
    keyed = [(a, "a"), (b, "b"), (c, "c")]
    # b is within the 1e-3 gap of a (the solver cannot rank them) and faster: b. c is not.
    assert pick_best(keyed, 1e-3)[1] == "b"
    assert pick_best(list(reversed(keyed)), 1e-3)[1] == "b"
    assert pick_best(keyed, 1e-4)[1] == "a"  # a tighter gap ranks by the primary again
    assert pick_best([((0.0, 2.0, 5.0), "x"), ((0.0, 2.0, 4.0), "y")], 1e-3)[1] == "y"  # then memory
    assert pick_best([((0.0, 2.0, 5.0), "x"), ((0.0, 2.0, 5.0), "y")], 1e-3)[1] == "x"  # the first on a full tie
    assert pick_best([], 1e-3) is None


def test_the_search_ranks_near_ties_across_layouts_by_latency(small, monkeypatch):
    # int8 everywhere: every layout has the same sensitivity. Noise below the solver gap
    # (what a MIP stopped at a 0.1 % gap leaves) makes the slowest layout look best by the
    # primary objective; the search must still return the fastest.
    import planner.search as search

    req = PlanProblem(devices=2, formats=("int8",), kv="bf16", prompt=256, gen=64, gap=1e-3)
    by_layout = {(tp, pp, dp): small.solve(replace(req, tp=tp, pp=pp, dp=dp), diagnose_failure=False)
                 for tp, pp, dp in ((2, 1, 1), (1, 2, 1), (1, 1, 2))}
    assert len({p.predicted.sensitivity for p in by_layout.values()}) == 1
    slowest = max(by_layout, key=lambda k: by_layout[k].predicted.latency_s)
    fastest = min(by_layout, key=lambda k: by_layout[k].predicted.latency_s)
    assert by_layout[slowest].predicted.latency_s > 1.2 * by_layout[fastest].predicted.latency_s
    real = search.compare_key

    def noisy(objective, plan, r, refs):
        key = real(objective, plan, r, refs)
        lay = (plan.layout.tp, plan.layout.pp, plan.layout.dp)
        return (key[0] * (1 - 4e-4 if lay == slowest else 1 + 4e-4), *key[1:])

    monkeypatch.setattr(search, "compare_key", noisy)
    joint = small.solve(req)
    assert (joint.layout.tp, joint.layout.pp, joint.layout.dp) == fastest
    # Outside the gap the primary objective decides again.
    joint = small.solve(replace(req, gap=1e-4))
    assert (joint.layout.tp, joint.layout.pp, joint.layout.dp) == slowest
