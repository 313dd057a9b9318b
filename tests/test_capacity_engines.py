"""Capacity serving across engines, disaggregated prefill/decode pools and the
throughput-latency frontier (issue 11, item 6)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

import planner
from hwmodels import list_devices, load_device
from hwmodels.links import Link
from planner.arch import load_arch
from planner.capacity import ServeSearch, ServeTarget, plan_serving
from planner.disagg import compare, kv_link_for, prompt_kv_bytes, transfer_s
from planner.engines import list_engines, load_engine
from planner.errors import TierwiseError
from planner.frontier import FrontierPoint, pareto
from planner.request.capacity import CapacityFrontierRequest, run_capacity_frontier, serve_pairs

H100 = load_device("h100-sxm")
L40S = load_device("l40s")
MI300X = load_device("mi300x")
LLAMA8 = load_arch("llama-3.1-8b")


def _pairs(engines, devices, formats=("bf16", "fp8", "int4-g128"), **kw):
    kw = {"given_formats": False, "given_kv": False, "runtime": None, **kw}
    return serve_pairs(tuple(engines), list(devices), formats, "bf16", **kw)


# ---------------------------------------------------------------------------
# engines side by side
# ---------------------------------------------------------------------------


def test_every_engine_on_every_catalog_hardware_is_a_row_or_a_reason():
    """Every engine profile × every catalog hardware through a real capacity search: each pair
    is a ranked row (the engine runs there) or listed as not supported with why — none dropped."""
    engines, hardware = list_engines(), list_devices()
    ans = planner.capacity_serve("llama-3.2-1b", list(hardware), engine=engines, qps=0.5, prompt=128, gen=32,
                                 ttft_slo_s=60.0, tpot_slo_s=10.0, max_devices=1, max_pp=1, formats=["bf16", "fp16", "int8"])
    rows = {(h.engine, h.hardware) for h in ans.ranked}
    missing = {(p.engine, p.device.id): p.reason for p in ans.unsupported if p.reason}
    # a pair that runs only some of the formats given is a row, and lists the others with why
    partly = {(p.engine, p.device.id) for p in ans.unsupported if not p.reason}
    assert partly <= rows and all(p.skipped for p in ans.unsupported if not p.reason)
    assert not rows & missing.keys()
    assert rows | missing.keys() == {(e, h) for e in engines for h in hardware}
    assert len(rows) + len(missing) == len(engines) * len(hardware)
    for (e, h), reason in missing.items():
        spec, dev = load_engine(e), load_device(h)
        assert e in reason and reason.strip()
        if spec.kind == "training":  # refused for serving wherever it runs or not (its kind comes first)
            assert "training engine" in reason and "serving engines on" in reason
        elif spec.support(dev) is None:
            assert f"does not run on {h}" in reason
        elif "decoder" not in spec.families:  # the Vitis AI DPU runs CNNs only
            assert "does not run decoder models" in reason
        else:  # runs there, but none of the asked formats
            assert "runs none of them" in reason and "it runs:" in reason
    for e, h in rows:
        assert load_engine(e).support(load_device(h)) is not None and load_engine(e).kind != "training"
    listed = ans.to_dict()["unsupported"]
    assert listed and all(set(u) == {"engine", "hardware", "reason"} for u in listed if "weights" not in u)
    for u in listed:  # a format given that the pair does not run: named with why, no activations
        if "weights" in u:
            assert set(u) == {"engine", "hardware", "weights", "reason"} and u["weights"] in ("bf16", "fp16", "int8")
            assert f"does not run 'formats' {u['weights']}; it runs:" in u["reason"], u


def test_engines_price_their_own_formats_and_memory():
    pairs = {(p.engine, p.device.id): p for p in _pairs(["vllm", "trtllm", "llamacpp"], [H100, load_device("a100-80gb-sxm")])}
    a100_trt = pairs[("trtllm", "a100-80gb-sxm")].setup
    assert "fp8" not in [w for w, _ in a100_trt.formats]  # TensorRT-LLM runs no FP8 on Ampere
    h100_trt = dict(pairs[("trtllm", "h100-sxm")].setup.formats)
    assert h100_trt["fp8"] == "fp8"  # W8A8 on Hopper
    llama = pairs[("llamacpp", "h100-sxm")].setup
    vllm = pairs[("vllm", "h100-sxm")].setup
    assert llama.reserved_bytes < vllm.reserved_bytes  # 0.3 GiB vs 1.5 GiB of runtime context
    assert vllm.reserved_bytes == load_engine("vllm").support(H100).runtime.context_bytes


def test_context_memory_lowers_the_batch():
    """The engine's runtime context (1.5 GiB for vLLM) is memory the KV cache cannot use: the
    same engine with it removed fits a larger batch."""
    target = ServeTarget(qps=2, prompt=2000, gen=200, ttft_slo_s=5, tpot_slo_s=0.2)
    search = ServeSearch(formats=("bf16",), max_devices=4, max_pp=1)
    pairs = _pairs(["vllm"], [L40S], ("bf16",))
    no_context = [replace(p, setup=replace(p.setup, reserved_bytes=0.0)) for p in pairs]
    vllm = plan_serving([LLAMA8], pairs, target, search).ranked[0].best
    bare = plan_serving([LLAMA8], no_context, target, search).ranked[0].best
    assert (vllm.weights, vllm.tp, bare.weights, bare.tp) == ("bf16", 1, "bf16", 1)
    assert vllm.max_batch < bare.max_batch


def test_engine_kernel_facts_reach_the_capacity_search():
    """Engines are priced with their own runtime facts, as an estimate is: SGLang's KV memory
    fraction (0.88) fits fewer sequences than vLLM's (0.9); a chunked-prefill engine's
    activations are one chunk's."""
    target = ServeTarget(qps=2, prompt=2000, gen=200, ttft_slo_s=5, tpot_slo_s=0.2)
    search = ServeSearch(formats=("bf16",), max_devices=4, max_pp=1)
    rows = {o.engine: o for o in (r.best for r in plan_serving(
        [LLAMA8], _pairs(["vllm", "sglang"], [L40S], ("bf16",)), target, search).ranked)}
    assert rows["sglang"].max_batch < rows["vllm"].max_batch
    setup = _pairs(["vllm"], [L40S], ("bf16",))[0].setup
    assert dict(setup.kernel)["prefill_chunk_tokens"] == 8192 and dict(setup.kernel)["kv_memory_fraction"] == 0.9


def test_single_engine_nowhere_is_an_error_naming_engine():
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_serve("llama-3.1-8b", ["mi300x"], engine="trtllm", qps=1, ttft_slo_s=1, tpot_slo_s=0.1)
    assert exc.value.field == "engine" and "--engine" in exc.value.render("cli")


@pytest.mark.parametrize("engine, code, words", [
    (["vllm", "vlm"], "not_found", ["'engine'", "'vlm'", "did you mean vllm", "sglang", "trtllm", "known engines"]),
    ("vllm,nosuch", "not_found", ["'nosuch'", "known engines", "vllm"]),
    (["vllm", "trtllm", "vllm"], "invalid_field", ["'vllm' more than once"]),
    ("trtllm, trtllm", "invalid_field", ["more than once"]),
    ([], "invalid_field", ["non-empty list"]),
    ("", "invalid_field", ["non-empty list"]),
    (",", "invalid_field", ["non-empty list"]),
    ([["vllm"]], "invalid_field", ["engine ids"]),
    ([None], "invalid_field", ["engine ids"]),
])
def test_bad_engine_lists(engine, code, words):
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_serve("llama-3.1-8b", ["h100-sxm"], engine=engine, qps=1, ttft_slo_s=1, tpot_slo_s=0.1)
    assert exc.value.field == "engine" and exc.value.code == code
    text = exc.value.render("rest")
    for w in words:
        assert w in text, (w, text)
    assert "--engine" in exc.value.render("cli")


def test_training_engine_is_not_a_serving_row():
    ans = planner.capacity_serve("llama-3.1-8b", ["h100-sxm"], engine=["vllm", "megatron-core"], qps=1,
                                 ttft_slo_s=1, tpot_slo_s=0.1, max_devices=8)
    (u,) = ans.unsupported
    assert u.engine == "megatron-core" and "training engine" in u.reason and "vllm" in u.reason


def test_given_formats_a_pair_does_not_run_make_it_unsupported_not_an_error():
    ans = planner.capacity_serve("llama-3.1-8b", ["h100-sxm", "a100-80gb-sxm"], engine="trtllm", formats=["fp8"],
                                 qps=1, ttft_slo_s=1, tpot_slo_s=0.1, max_devices=8)
    assert [h.hardware for h in ans.ranked] == ["h100-sxm"]
    (u,) = ans.unsupported
    assert u.device.id == "a100-80gb-sxm" and "fp8" in u.reason and "it runs:" in u.reason


# ---------------------------------------------------------------------------
# disaggregated prefill / decode
# ---------------------------------------------------------------------------

DIS = ServeSearch(formats=("fp8",), max_devices=64, disaggregated=True)


def _disagg(devices, prompt=2000, qps=4.0, ttft=2.0, tpot=0.05, search=DIS, arch=LLAMA8):
    target = ServeTarget(qps=qps, prompt=prompt, gen=200, ttft_slo_s=ttft, tpot_slo_s=tpot)
    return plan_serving([arch], devices, target, search)


def test_prompt_kv_bytes_is_the_kv_of_the_prompt():
    for arch in (LLAMA8, load_arch("mistral-7b"), load_arch("gemma-2-9b")):
        ans = _disagg([H100], arch=arch, ttft=5.0, tpot=0.2)
        d = ans.ranked[0].disagg
        assert d is not None and d.kv_bytes == pytest.approx(arch.kv_cache_bytes(2000, 2.0), rel=1e-9)


def test_kv_transfer_grows_with_the_prompt():
    short = _disagg([H100], prompt=500).ranked[0].disagg
    long = _disagg([H100], prompt=4000).ranked[0].disagg
    assert long.kv_bytes == pytest.approx(8 * short.kv_bytes)
    link, kind = kv_link_for(H100, 1, 1, "scale_out")
    assert kind == "scale_out" and link is H100.inter_node_link
    assert transfer_s(link, long.kv_bytes, 1, 1) > transfer_s(link, short.kv_bytes, 1, 1) > 0


def test_slow_link_makes_disaggregation_lose():
    slow = replace(H100, id="h100-slow-net", inter_node_link=Link(name="10 MB/s network", bandwidth_bytes_per_s=1e7, latency_s=5e-6))
    scale_out = replace(DIS, kv_link="scale_out")
    h = _disagg([slow], prompt=4000, search=scale_out).ranked[0]
    assert h.best is not None and h.best.meets_slo  # aggregated serving meets the SLOs
    assert h.disagg is None  # the KV of a 4000-token prompt takes seconds over 10 MB/s
    d = h.disagg_closest
    assert d.kv_link == "10 MB/s network" and d.kv_transfer_s > 2.0 and any("TTFT" in f or "prefill" in f for f in d.failures)
    assert compare(h.disagg, h.best)["winner"] == "aggregated"
    fast = _disagg([H100], prompt=4000, search=scale_out).ranked[0].disagg
    assert fast is not None and fast.kv_transfer_s < 0.1


def test_disaggregated_physical_floors_and_slos():
    ans = _disagg([H100, L40S, MI300X], prompt=3000, qps=8.0)
    seen = 0
    for h in ans.ranked:
        d = h.disagg
        if d is None:
            continue
        seen += 1
        assert d.meets_slo and d.ttft_s <= 2.0 and d.tpot_s <= 0.05
        assert d.ttft_p50_s >= d.prefill_s + d.kv_transfer_s  # no TTFT under prefill + transfer
        assert d.tpot_p50_s >= d.decode_step_1_s  # nor TPOT under a batch-1 decode step
        assert d.ttft_p95_s >= d.ttft_p50_s and d.tpot_p95_s >= d.tpot_p50_s
        assert d.devices == d.prefill_devices + d.decode_devices >= 2
        assert d.kv_transfer_s >= (H100.inter_node_link.latency_s if d.kv_link_kind == "scale_out" else 0.0)
        assert d.usd_per_hour == pytest.approx(load_device(h.hardware).usd_per_hour * d.devices)
        v = compare(d, h.best)
        assert v["disaggregated_devices"] == d.devices and v["winner"] in ("aggregated", "disaggregated", "tie")
        assert h.to_dict()["disaggregated"]["best"]["kv_transfer"]["bytes"] == d.kv_bytes
    assert seen >= 2


def test_disaggregated_pools_are_minimal():
    """One prefill instance fewer misses the TTFT SLO, one decode instance fewer the TPOT SLO."""
    from planner.capacity import ServeTask
    from planner.disagg import _Ctx, _option

    target = ServeTarget(qps=6, prompt=3000, gen=200, ttft_slo_s=1.0, tpot_slo_s=0.04)
    ans = plan_serving([LLAMA8], [L40S], target, replace(DIS, max_devices=128))
    d = ans.ranked[0].disagg
    assert d is not None
    task = ServeTask(archs=(LLAMA8,), device=L40S, target=target, search=DIS, weights="fp8", disaggregated=True)
    from planner.capacity import task_replicas

    reps = {(r.tp, r.pp): r for r in task_replicas(task)}
    pre, dec = reps[(d.prefill_tp, d.prefill_pp)], reps[(d.decode_tp, d.decode_pp)]
    link, kind = kv_link_for(L40S, d.prefill_tp * d.prefill_pp, d.decode_tp * d.decode_pp, "auto")
    ctx = _Ctx(task, 6.0, 0.95)
    kv = prompt_kv_bytes(pre, 3000, 200)
    again = _option(ctx, pre, d.prefill_replicas, dec, d.decode_replicas, link, kind, kv)
    assert again.meets_slo and again.devices == d.devices
    if d.prefill_replicas > 1:
        assert not _option(ctx, pre, d.prefill_replicas - 1, dec, d.decode_replicas, link, kind, kv).meets_slo
    if d.decode_replicas > 1:
        assert not _option(ctx, pre, d.prefill_replicas, dec, d.decode_replicas - 1, link, kind, kv).meets_slo


def test_disaggregated_needs_one_model():
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_serve(["llama-3.1-8b", "mistral-7b"], ["h100-sxm"], mix=[0.5, 0.5], serving="disaggregated",
                               qps=1, ttft_slo_s=1, tpot_slo_s=0.1)
    assert exc.value.field == "serving"
    for bad in ("split", "Disaggregated", 1):
        with pytest.raises(TierwiseError) as exc:
            planner.capacity_serve("llama-3.1-8b", ["h100-sxm"], serving=bad, qps=1, ttft_slo_s=1, tpot_slo_s=0.1)
        assert exc.value.field == "serving"
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_serve("llama-3.1-8b", ["h100-sxm"], kv_link="infiniband", qps=1, ttft_slo_s=1, tpot_slo_s=0.1)
    assert exc.value.field == "kv_link"


def test_python_api_disaggregated_answer():
    ans = planner.capacity_serve("llama-3.1-8b", ["h100-sxm"], engine=["vllm", "sglang"], serving="disaggregated",
                                 qps=4, prompt=2000, gen=200, ttft_slo_s=2, tpot_slo_s=0.05, max_devices=32)
    d = ans.to_dict()
    assert d["serving"] == "disaggregated" and {h["engine"] for h in d["hardware"]} == {"vllm", "sglang"}
    for h in d["hardware"]:
        v = h["disaggregated"]["vs_aggregated"]
        assert v["aggregated_devices"] == h["best"]["devices"]


# ---------------------------------------------------------------------------
# throughput-latency frontier
# ---------------------------------------------------------------------------


def _pt(user, dev, batch=1):
    return FrontierPoint(engine="e", hardware="h", weights="bf16", activations="bf16", kv="bf16", tp=1, pp=1,
                         batch=batch, step_s=1 / user, prefill_s=0.0, tpot_s=1 / user, tokens_per_s_per_user=user,
                         tokens_per_s_per_device=dev, usd_per_million_tokens=None)


def test_pareto_filter():
    pts = [_pt(100, 10), _pt(90, 50), _pt(90, 40), _pt(80, 50), _pt(50, 200), _pt(50, 200, batch=2), _pt(10, 150),
           _pt(100, 5)]
    front = pareto(pts)
    assert [(p.tokens_per_s_per_user, p.tokens_per_s_per_device) for p in front] == [(100, 10), (90, 50), (50, 200)]
    assert front[2].batch == 1  # of equal points the first is kept
    assert pareto([]) == []


def _dominated(p, q):
    return (q.tokens_per_s_per_user >= p.tokens_per_s_per_user and q.tokens_per_s_per_device >= p.tokens_per_s_per_device
            and (q.tokens_per_s_per_user > p.tokens_per_s_per_user or q.tokens_per_s_per_device > p.tokens_per_s_per_device))


def test_frontier_is_pareto_per_engine_and_hardware():
    ans = run_capacity_frontier(CapacityFrontierRequest(model="llama-3.1-8b", hardware=["h100-sxm", "l4", "mi300x"],
                                                        engine="vllm,trtllm", prompt=1024, gen=256, max_devices=8))
    assert {(s.engine, s.hardware) for s in ans.series} == {("vllm", "h100-sxm"), ("vllm", "l4"), ("vllm", "mi300x"),
                                                            ("trtllm", "h100-sxm"), ("trtllm", "l4")}
    assert [(u.engine, u.device.id) for u in ans.unsupported] == [("trtllm", "mi300x")]
    for s in ans.series:
        assert 2 <= len(s.points) <= s.evaluated
        for p in s.points:
            assert not any(_dominated(p, q) for q in s.points)
            assert p.tokens_per_s_per_user == pytest.approx(1 / p.tpot_s)
            assert p.tokens_per_s_per_device == pytest.approx(p.batch / p.tpot_s / (p.tp * p.pp))
            assert p.tpot_s >= p.step_s + p.batch * p.prefill_s / 256 - 1e-12
        users = [p.tokens_per_s_per_user for p in s.points]
        assert users == sorted(users, reverse=True)
        assert math.isclose(s.points[0].tokens_per_s_per_user, max(users))
    d = ans.to_dict()
    assert d["unsupported"][0]["reason"] and d["series"][0]["points"][0]["tokens_per_s_per_device"] > 0


def test_frontier_bad_input():
    with pytest.raises(TierwiseError) as exc:
        run_capacity_frontier(CapacityFrontierRequest(model="llama-3.1-8b", hardware=["h100-sxm"], engine=["vllm", "vllm"]))
    assert exc.value.field == "engine"
    with pytest.raises(TierwiseError) as exc:
        run_capacity_frontier(CapacityFrontierRequest(hardware=["h100-sxm"]))
    assert exc.value.field == "model"
    with pytest.raises(TierwiseError) as exc:
        run_capacity_frontier(CapacityFrontierRequest(model="llama-3.1-8b", hardware=["h100-sxm"], prompt=0))
    assert exc.value.field == "prompt"


@pytest.mark.parametrize("model", ["bert-base", "vit-h"])
def test_models_that_generate_no_tokens_are_refused_with_the_field(model):
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_serve(model, ["l4"], qps=1, ttft_slo_s=1, tpot_slo_s=0.1)
    assert exc.value.field == "model" and "generates no tokens" in str(exc.value)
    with pytest.raises(TierwiseError) as exc:
        planner.capacity_frontier(model, ["l4"])
    assert exc.value.field == "model"


def test_capacity_train_prices_the_chosen_training_engine():
    """`capacity train --engine` reaches the step estimate: Megatron-Core overlaps TP collectives
    with GEMMs and FSDP does not, so the same layout is priced differently."""
    from planner.request.capacity import CapacityTrainRequest, resolve_capacity_train

    for engine in ("megatron-core", "fsdp"):
        _, targets = resolve_capacity_train(CapacityTrainRequest(model="llama-3.1-70b", hardware="h100-sxm",
                                                                 tokens=2e12, days=30, engine=engine))
        assert [t.engine for _, t in targets] == [engine]
    fast = planner.capacity_train("llama-3.1-70b", ["h100-sxm"], tokens=2e12, days=30, engine="megatron-core")
    slow = planner.capacity_train("llama-3.1-70b", ["h100-sxm"], tokens=2e12, days=30, engine="fsdp")
    assert fast[0].best.tokens_per_s != slow[0].best.tokens_per_s
