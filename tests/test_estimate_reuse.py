"""The estimate reuses what a configuration does not owe to the batch or sequence (operator rows,
KV bytes per layer, group spans): reused answers must equal freshly computed ones, and the
uniform fast path must equal the per-layer path it short-cuts."""

from __future__ import annotations

import math

import pytest
from benchscripts import load_benchmark

from hwmodels import load_device
from planner import costmodel
from planner.arch import load_arch
from planner.costmodel import Choice, RuntimeSettings, Serving, estimate_inference
from planner.layout import Layout, group_span
from planner.workload import build_workload

# Every architecture family (dense and MoE decoders, sliding-window, encoder, encoder-decoder,
# CNN, ViT) on a GPU node, a dataflow RDU and a CPU.
CASES = [
    ("llama-3.1-70b", "h100-sxm", Layout(tp=4)),
    ("mixtral-8x7b", "h100-sxm", Layout(tp=2, ep=2)),
    ("deepseek-v2-lite", "a100-80gb-sxm", Layout(tp=1)),
    ("gemma-2-9b", "l40s", Layout(tp=1)),
    ("bert-base", "t4", Layout()),
    ("t5-3b", "a100-40gb-sxm", Layout(tp=2)),
    ("resnet-50", "v100-16gb", Layout()),
    ("vit-h", "h100-pcie", Layout()),
    ("llama-3.2-1b", "sn40l", Layout(tp=2)),
    ("llama-3.2-1b", "ryzen-9-7950x", Layout()),
]


def _clear_caches() -> None:
    costmodel._uniform_op_rows_cached.cache_clear()
    costmodel._kv_layer_bytes_cached.cache_clear()
    costmodel._uniform_weight_bytes.cache_clear()
    group_span.cache_clear()


def _numbers(est) -> list:
    out = [est.ttft_s, est.tpot_s, est.memory.per_device_bytes, est.memory.kv_cache_bytes, est.energy_j_per_token]
    for ph in (est.prefill, est.decode):
        if ph is None:
            continue
        out += [ph.time_s, ph.comm_s, ph.flops, ph.bound]
        out += [(o.name, o.time_s, o.compute_s, o.memory_s, o.comm_s, o.overhead_s, o.bound, o.kv_bytes) for o in ph.ops]
    return out


@pytest.mark.parametrize("model,hw,layout", CASES, ids=[f"{m}-{h}" for m, h, _ in CASES])
def test_reused_terms_equal_fresh_ones(model, hw, layout):
    arch, dev = load_arch(model), load_device(hw)
    opts = RuntimeSettings(fused_elementwise=False, kv_token_budget=64)
    runs = []
    for fresh in (True, False, True):
        if fresh:
            _clear_caches()
        # A sweep over the batch between the two: the cached rows serve every batch.
        for b in (1, 3, 17):
            estimate_inference(arch, dev, layout, Serving(batch=b, prompt=96, gen=8), Choice(), options=opts)
        runs.append(_numbers(estimate_inference(arch, dev, layout, Serving(batch=5, prompt=96, gen=8), Choice(), options=opts)))
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.parametrize("model,hw,layout", CASES[:8], ids=[f"{m}-{h}" for m, h, _ in CASES[:8]])
def test_uniform_rows_equal_per_layer_rows(model, hw, layout):
    """Overrides that repeat the default choice for every group take the per-layer path (one row
    per layer instance); the totals must equal the uniform path's (one row per repeated block)."""
    arch, dev = load_arch(model), load_device(hw)
    serving = Serving(batch=4, prompt=64, gen=4)
    base = Choice()
    work = build_workload(arch)
    overrides = {b.group_fqn(i, op): base for b in work.blocks for i in range(b.count) for op in b.ops}
    uniform = estimate_inference(arch, dev, layout, serving, base)
    per_layer = estimate_inference(arch, dev, layout, serving, base, overrides=overrides)
    assert len(per_layer.prefill.ops) >= len(uniform.prefill.ops)
    for a, b in ((uniform.ttft_s, per_layer.ttft_s), (uniform.tpot_s, per_layer.tpot_s),
                 (uniform.memory.per_device_bytes, per_layer.memory.per_device_bytes)):
        assert math.isclose(a, b, rel_tol=1e-9), (a, b)


def test_a_refused_choice_is_refused_on_every_call():
    """A refused configuration is not cached as an answer: the second call refuses it again."""
    arch, dev = load_arch("llama-3.2-1b"), load_device("t4")
    for _ in range(2):
        with pytest.raises(costmodel.EstimateError) as exc:
            estimate_inference(arch, dev, Layout(), Serving(batch=1, prompt=16, gen=4), Choice(kv="nf4"))
        assert exc.value.field == "kv"


def test_operator_records_compare_and_hash_by_value():
    arch, dev = load_arch("llama-3.2-1b"), load_device("h100-sxm")
    a = estimate_inference(arch, dev, Layout(), Serving(batch=2, prompt=32, gen=4), Choice())
    _clear_caches()
    b = estimate_inference(arch, dev, Layout(), Serving(batch=2, prompt=32, gen=4), Choice())
    assert a.prefill.ops == b.prefill.ops
    assert {hash(o) for o in a.prefill.ops} == {hash(o) for o in b.prefill.ops}


def test_a_fitted_constant_set_for_a_run_reaches_the_reused_rows():
    """Cross-validation sets fitted constants per fold (benchmarks/fitted.py); the reused operator
    rows must not serve a value computed under the previous setting."""
    fitted = load_benchmark("fitted")
    settings = fitted.settings

    arch, dev = load_arch("llama-3.2-1b"), load_device("ryzen-9-7950x")
    opts = RuntimeSettings(runtime="eager")
    serving = Serving(batch=1, prompt=32, gen=8)

    def tpot() -> float:
        return estimate_inference(arch, dev, Layout(), serving, Choice(), options=opts).tpot_s

    before = tpot()
    with settings({"EAGER_DISPATCH_S": 30e-6}):
        slower = tpot()
    assert slower > before
    assert tpot() == before
