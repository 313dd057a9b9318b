"""Capacity planning: queueing formulas, serving and training searches, and the invariant
that an answer meets the SLOs it claims under the same model."""

import math

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwmodels import load_device
from planner.arch import load_arch
from planner.capacity import (
    ServeSearch,
    ServeTarget,
    TrainTarget,
    device_grid,
    plan_serving,
    plan_training,
    serve_infeasible_message,
    train_infeasible_message,
)
from planner.costmodel import Choice, Serving, estimate_inference, max_batch
from planner.errors import EstimateError
from planner.layout import Layout
from planner.queueing import DecodeCurve, continuous_batching, md1_mean_wait_s, poisson_quantile, wait_quantile_s
from planner.training import TrainingConfig, estimate_training

SMALL = load_arch("llama-3.2-1b")
L4 = load_device("l4")
H100 = load_device("h100-sxm")


# ---------------------------------------------------------------------------
# queueing
# ---------------------------------------------------------------------------


def test_md1_pollaczek_khinchine():
    # M/D/1: W = ρ·D / (2(1−ρ)); ρ = 0.5, D = 1 s → 0.5 s
    assert md1_mean_wait_s(0.5, 1.0) == pytest.approx(0.5)
    assert md1_mean_wait_s(0.9, 1.0) == pytest.approx(4.5)
    assert math.isinf(md1_mean_wait_s(1.0, 1.0))


def test_wait_quantile_exponential_tail():
    # P(W > t) ≈ ρ·exp(−ρ t / W̄): the median of a queue with ρ = 0.4 is 0 (60% never wait)
    assert wait_quantile_s(1.0, 0.4, 0.5) == 0.0
    t95 = wait_quantile_s(1.0, 0.8, 0.95)
    assert 0.8 * math.exp(-0.8 * t95 / 1.0) == pytest.approx(0.05)


def test_poisson_quantile():
    # Poisson(3): P(K ≤ 5) = 0.916, P(K ≤ 6) = 0.966 → p95 = 6
    assert poisson_quantile(3.0, 0.95) == 6
    assert poisson_quantile(0.0, 0.95) == 0
    big = poisson_quantile(10000.0, 0.95)
    assert big == pytest.approx(10000 + 1.645 * 100, abs=2)


def test_continuous_batching_little_law_and_overload():
    curve = DecodeCurve(batches=(1, 16, 64), step_s=(0.02, 0.025, 0.05))
    q = continuous_batching(2.0, 0.05, curve, 100, 64)
    assert q.stable
    # Little's law: n = λ·G·τ(n)/(1−ρ)
    assert q.concurrency == pytest.approx(2.0 * 100 * curve(q.concurrency) / (1 - 0.1), rel=1e-6)
    assert q.ttft_p95_s >= q.ttft_p50_s >= 0.05 and q.tpot_p95_s >= q.tpot_p50_s >= curve(q.concurrency)
    heavier = continuous_batching(4.0, 0.05, curve, 100, 64)
    assert not heavier.stable or heavier.ttft_p95_s >= q.ttft_p95_s
    assert not continuous_batching(30.0, 0.05, curve, 100, 64).stable  # ρ_p = 1.5
    over = continuous_batching(20.0, 0.01, curve, 100, 64)
    assert not over.stable and "live sequences" in over.reason


def test_decode_curve_is_made_monotone():
    c = DecodeCurve(batches=(1, 2, 4), step_s=(0.02, 0.019, 0.03))
    assert c(2) == 0.02 and c(3) == pytest.approx(0.025)
    with pytest.raises(ValueError):
        DecodeCurve(batches=(2, 1), step_s=(0.1, 0.2))


# ---------------------------------------------------------------------------
# serving
# ---------------------------------------------------------------------------


def _recheck(opt, target, arch=SMALL):
    """Re-derive the option's latencies from the cost model and the queueing model."""
    dev = load_device(opt.hardware)
    choice = Choice(weights=opt.weights, activations=opt.activations, kv=opt.kv)
    lay = Layout(tp=opt.tp, pp=opt.pp)
    s1 = Serving(batch=1, prompt=target.prompt, gen=target.gen)
    b = max_batch(arch, dev, lay, s1, choice, limit=4096)
    assert b == opt.max_batch
    sizes = sorted({1, *[2**k for k in range(1, 13) if 2**k < b], b})
    steps = [estimate_inference(arch, dev, lay, Serving(batch=n, prompt=target.prompt, gen=target.gen), choice).tpot_s for n in sizes]
    pre = estimate_inference(arch, dev, lay, s1, choice).ttft_s
    curve = DecodeCurve(batches=tuple(sizes), step_s=tuple(steps))
    return lambda r: continuous_batching(target.qps / r, pre, curve, target.gen, b, target.percentile)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    qps=st.floats(0.5, 40.0),
    ttft=st.floats(0.2, 3.0),
    tpot=st.floats(0.004, 0.08),
    prompt=st.sampled_from([256, 1024, 2000]),
)
def test_capacity_answers_meet_the_slos_they_claim(qps, ttft, tpot, prompt):
    target = ServeTarget(qps=qps, prompt=prompt, gen=64, ttft_slo_s=ttft, tpot_slo_s=tpot)
    ans = plan_serving([SMALL], [L4, H100], target, ServeSearch(formats=("bf16", "fp8"), max_devices=64))
    for h in ans.ranked:
        if h.best is None:
            assert h.closest is None or not h.closest.meets_slo
            continue
        o = h.best
        assert o.meets_slo and o.ttft_s <= ttft and o.tpot_s <= tpot
        q = _recheck(o, target)(o.replicas)
        assert q.stable and q.ttft_quantile_s <= ttft * (1 + 1e-9) and q.tpot_quantile_s <= tpot * (1 + 1e-9)
        if o.replicas > 1:  # the fewest replicas for that layout: one fewer misses an SLO
            q1 = _recheck(o, target)(o.replicas - 1)
            assert not q1.stable or q1.ttft_quantile_s > ttft or q1.tpot_quantile_s > tpot


def test_serving_answer_is_ranked_cheapest_first():
    target = ServeTarget(qps=10, prompt=2000, gen=200, ttft_slo_s=2, tpot_slo_s=0.05)
    devs = [load_device(h) for h in ("h100-sxm", "a100-80gb-sxm", "l40s")]
    ans = plan_serving([load_arch("llama-3.1-70b")], devs, target)
    assert ans.feasible
    costs = [h.best.usd_per_hour for h in ans.ranked if h.best]
    assert costs == sorted(costs)
    for h in ans.ranked:
        o = h.best
        assert o.devices == o.replicas * o.tp * o.pp
        assert o.usd_per_million_tokens == pytest.approx(o.usd_per_hour / 3600 / (10 * 200) * 1e6)
    d = ans.to_dict()
    assert d["hardware"][0]["best"]["ttft_p95_s"] <= 2


def test_unreachable_slo_names_the_failing_slo():
    target = ServeTarget(qps=5, prompt=2000, gen=200, ttft_slo_s=0.05, tpot_slo_s=0.001)
    ans = plan_serving([load_arch("llama-3.1-8b")], [L4], target, ServeSearch(max_devices=16))
    assert not ans.feasible
    msg, payload = serve_infeasible_message(ans)
    assert "TPOT p95" in msg and "exceeds" in msg and payload["devices"] <= 16


def test_several_models_share_a_fleet_with_switching():
    archs = [load_arch(m) for m in ("llama-3.1-8b", "mistral-7b", "qwen2.5-7b")]
    target = ServeTarget(qps=6, prompt=512, gen=128, ttft_slo_s=3, tpot_slo_s=0.08, mix=(0.6, 0.3, 0.1))
    ans = plan_serving(archs, [L4, H100], target, ServeSearch(formats=("bf16",), max_devices=64))
    assert ans.feasible
    for h in ans.ranked:
        if h.best is None:
            continue
        o = h.best
        assert set(o.hot_models) | set(o.cold_models) == {a.id for a in archs}
        assert o.hot_models[0] == "llama-3.1-8b"  # the most requested model stays resident
        if o.cold_models:
            assert o.switch_s > 0
        assert h.separate_devices is not None and h.separate_devices >= 3


def test_bad_serving_input():
    with pytest.raises(EstimateError) as e:
        ServeTarget(qps=0, prompt=1, gen=1, ttft_slo_s=1, tpot_slo_s=1)
    assert e.value.field == "qps"
    with pytest.raises(EstimateError) as e:
        ServeTarget(qps=1, prompt=1, gen=1, ttft_slo_s=1, tpot_slo_s=1, mix=(0.5, 0.2))
    assert e.value.field == "mix"


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------


def test_device_grid_uses_whole_nodes():
    g = device_grid(H100, 1024)
    assert g[:3] == (1, 2, 4) and 8 in g and 1024 in g
    assert all(n % 8 == 0 for n in g if n >= 8)


def test_training_capacity_reaches_the_rate_with_the_fewest_devices():
    target = TrainTarget(tokens=2e11, days=30, seq=4096, max_devices=4096)
    ans = plan_training(load_arch("llama-3.1-8b"), H100, target)
    assert ans.feasible
    b = ans.best
    assert b.tokens_per_s >= target.tokens_per_s
    assert b.devices == b.tp * b.pp * b.dp and b.memory_per_device_bytes <= b.device_capacity_bytes
    # every smaller device count on the frontier falls short
    assert all(o.tokens_per_s < target.tokens_per_s for o in ans.frontier if o.devices < b.devices)
    # re-run the chosen configuration: same numbers
    cfg = TrainingConfig(
        global_batch=b.global_batch,
        micro_batch=b.micro_batch,
        seq=4096,
        tp=b.tp,
        pp=b.pp,
        dp=b.dp,
        zero=b.zero,
        recompute=b.recompute,
        sequence_parallel=b.sequence_parallel,
    )
    assert estimate_training(load_arch("llama-3.1-8b"), H100, cfg).tokens_per_s == pytest.approx(b.tokens_per_s)
    assert b.days_for(target.tokens) <= 30


def test_training_capacity_out_of_reach():
    ans = plan_training(load_arch("llama-3.1-8b"), L4, TrainTarget(tokens=1e13, days=1, max_devices=64))
    assert not ans.feasible and ans.fastest is not None
    msg, payload = train_infeasible_message(ans)
    assert "short" in msg and payload["devices"] <= 64


def test_device_grid_covers_the_powers_of_two_of_a_large_slice():
    """A TPU slice is one node of hundreds of chips: the grid must not jump from 4 to the slice."""
    tpu = load_device("tpu-v5e")
    g = device_grid(tpu, 4096)
    assert tpu.devices_per_node >= 64
    assert {1, 2, 4, 8, 16, 32, 64}.issubset(g)


def test_training_capacity_finds_a_layout_on_a_small_memory_accelerator():
    """llama-3.1-8b does not fit 16 GB without sharding: the search must reach the tensor-parallel /
    ZeRO-3 layouts that fit (tp=4 with ZeRO-1 and full recomputation fits 8 chips, ZeRO-3 16)."""
    tpu = load_device("tpu-v5e")
    target = TrainTarget(tokens=1e9, days=1, seq=4096, max_devices=65536)
    ans = plan_training(load_arch("llama-3.1-8b"), tpu, target)
    assert ans.feasible, train_infeasible_message(ans)
    b = ans.best
    assert b.memory_per_device_bytes <= b.device_capacity_bytes and b.tokens_per_s >= target.tokens_per_s
    assert b.tp * b.pp * b.dp == b.devices


def test_a_slow_target_rate_still_searches_the_counts_memory_needs():
    """A tiny rate makes the ideal device count ~1, but 405B parameters need ~80 H100s of training
    state: the search must reach them instead of answering 'does not fit'."""
    target = TrainTarget(tokens=1e8, days=30, seq=4096, max_devices=4096)
    ans = plan_training(load_arch("llama-3.1-405b"), H100, target)
    assert ans.feasible, train_infeasible_message(ans)
    assert ans.best.devices >= 405e9 * 16 / 80e9


def test_an_overloaded_fleet_has_no_price_per_token():
    # at 1e9 requests/s the closest row was a 1-device fleet at "USD/M tok 0.000": the offered tokens over
    # one device's price, which it cannot serve
    target = ServeTarget(qps=1e9, prompt=512, gen=128, ttft_slo_s=2, tpot_slo_s=0.1)
    ans = plan_serving([load_arch("llama-3.1-8b")], [load_device("l4")], target)
    assert not ans.feasible
    o = ans.ranked[0].closest
    assert o is not None and not o.meets_slo and o.usd_per_million_tokens is None and o.usd_per_hour > 0


def test_the_fleet_price_per_token_needs_a_fleet_that_serves_the_load():
    # one rule for every fleet (one model, a shared fleet, disaggregated pools): an overloaded one has none
    from planner.capacity_model import _fleet_cost

    dev = load_device("l4")
    assert _fleet_cost(dev, 2, 1000.0)[1] == pytest.approx(2 * dev.usd_per_hour / 3600 / 1000 * 1e6)
    usd_h, usd_m = _fleet_cost(dev, 2, 1e12, served=False)
    assert usd_h == pytest.approx(2 * dev.usd_per_hour) and usd_m is None
    for path in ("planner/shared_fleet.py", "planner/disagg.py"):
        src = (pathlib.Path(__file__).resolve().parents[1] / path).read_text()
        assert "_fleet_cost(" in src and "served=" in src, path
