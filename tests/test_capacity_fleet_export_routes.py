"""A fleet of several models under one engine prices each model as its exporter writes it: under
ExecuTorch, export_llama writes a Llama's int8 weights weight-only (W8A16) while Optimum ExecuTorch
writes an OPT's as dynamic int8 (8da8w). The answer does not depend on the order the models are given."""

from __future__ import annotations

import pytest

import planner
from planner.capacity import serve_tasks
from planner.request.capacity import CapacityServeRequest, resolve_capacity_serve

LOAD = dict(engine="executorch", formats=["int8"], qps=0.02, ttft_slo_s=20, tpot_slo_s=1)


def _fleet(models, mix):
    return planner.capacity_serve(None, "snapdragon-8-gen-3", models=models, mix=mix, **LOAD).to_dict()["hardware"][0]


def test_the_fleet_does_not_depend_on_the_order_of_its_models():
    a = _fleet(["llama-3.2-1b", "opt-1.3b"], [1, 2])
    b = _fleet(["opt-1.3b", "llama-3.2-1b"], [2, 1])
    assert a["best"] is not None and b["best"] is not None
    for k in ("devices", "ttft_s", "tpot_s", "ttft_p50_s", "tpot_p50_s"):
        assert a["best"][k] == pytest.approx(b["best"][k], rel=1e-12), k
    assert a["separate_devices"] == b["separate_devices"]


def test_each_model_of_the_fleet_gets_its_own_export_route():
    archs, pairs, (target,), search = resolve_capacity_serve(CapacityServeRequest(
        models=["llama-3.2-1b", "opt-1.3b"], mix=[1, 1], hardware="snapdragon-8-gen-3", **LOAD))
    shared = next(t for t in serve_tasks(archs, pairs, target, search) if t.shared)
    llama, opt = (dict(shared.kernel_of(a)) for a in archs)
    assert "int8" in llama["weight_only_formats"] and "int8" not in opt["weight_only_formats"]
    alone = {t.archs[0].id: dict(t.kernel) for t in serve_tasks(archs, pairs, target, search) if not t.shared}
    assert alone == {"llama-3.2-1b": llama, "opt-1.3b": opt}


def test_a_fleet_of_one_export_route_keeps_one_kernel():
    archs, pairs, (target,), search = resolve_capacity_serve(CapacityServeRequest(
        models=["llama-3.2-1b", "llama-3.2-3b"], mix=[1, 1], hardware="snapdragon-8-gen-3", **LOAD))
    shared = next(t for t in serve_tasks(archs, pairs, target, search) if t.shared)
    assert shared.kernels == ()


@pytest.mark.parametrize("models, hardware, fields", [
    (["llama-3.1-8b", "opt-6.7b"], "a10g", dict(qps=20, ttft_slo_s=3, tpot_slo_s=0.15, prompt=1024, gen=1000)),
    (["opt-1.3b", "llama-3.2-1b", "llama-3.2-3b"], "snapdragon-8-gen-3", LOAD),
])
def test_equally_requested_models_lead_by_size_not_by_the_order_given(models, hardware, fields):
    """Equal shares: the largest model leads the fleet (its layouts, the KV room beside it), whatever
    the order of --models; before, the first one listed did, and a10g went from 33 to 50 devices."""
    import itertools

    answers = []
    for order in itertools.permutations(models):
        h = planner.capacity_serve(None, hardware, models=list(order), mix=[1] * len(models), **fields).to_dict()["hardware"][0]
        o = h["best"] or h["closest"]
        answers.append((o["models"], o["devices"], o["tp"], o["pp"], o["max_batch"], o["ttft_s"], o["tpot_s"]))
    assert all(a == answers[0] for a in answers), answers
    by_size = sorted(models, key=lambda m: -planner.load_model(m).param_count())
    assert list(answers[0][0]) == by_size
