"""Parallel layouts: validation rules, enumeration, rank placement and which link each
collective crosses; invariants as property tests."""

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwmodels import Link, load_device
from planner.arch import load_arch
from planner.collectives import allreduce_s, hierarchical_allreduce_s, p2p_s, ring_allreduce_s
from planner.costmodel import Choice, Serving, estimate_inference, max_batch, memory_report
from planner.errors import EstimateError
from planner.layout import Layout, collective_s, group_span, p2p_stage_s, strides
from planner.layout import check_layout as validate_layout
from planner.parallel import enumerate_layouts
from planner.training import TrainingConfig, estimate_training

H100 = load_device("h100-sxm")
L40S = load_device("l40s")


def test_group_span_places_tp_inside_a_node_first():
    # Megatron order tp-ep-dp-pp: a TP group of 8 on 8-GPU nodes stays in one node
    s = group_span(H100, 8, 1)
    assert (s.per_node, s.nodes, s.crosses_nodes) == (8, 1, False)
    # DP replicas are tp apart: with tp=8 each replica is in another node
    s = group_span(H100, 4, 8)
    assert (s.per_node, s.nodes) == (1, 4)
    # tp=2 → 4 DP ranks share a node, 16 ranks span 4 nodes
    s = group_span(H100, 16, 2)
    assert (s.per_node, s.nodes) == (4, 4)
    assert group_span(H100, 1, 64).nodes == 1


def test_collectives_cross_the_link_their_placement_implies():
    nbytes = 256e6
    nv, ib = H100.intra_node_link, H100.inter_node_link
    # inside one node NCCL's tree is a chain: the ring's latency (collectives.intra_node_allreduce_s)
    assert collective_s("allreduce", H100, nbytes, 8, 1) == pytest.approx(ring_allreduce_s(nbytes, 8, nv))
    assert collective_s("allreduce", H100, nbytes, 4, 8) == pytest.approx(allreduce_s(nbytes, 4, ib))
    assert collective_s("allreduce", H100, nbytes, 16, 2) == pytest.approx(hierarchical_allreduce_s(nbytes, 16, 4, nv, ib))
    # pipeline neighbours tp·dp apart: inside the node when that is < 8, else over InfiniBand
    assert p2p_stage_s(H100, nbytes, 4) == pytest.approx(p2p_s(nbytes, nv))
    assert p2p_stage_s(H100, nbytes, 8) == pytest.approx(p2p_s(nbytes, ib))
    # a device without a peer link talks over PCIe through the host
    assert collective_s("allreduce", L40S, nbytes, 4, 1) == pytest.approx(ring_allreduce_s(nbytes, 4, L40S.intra_node_link))
    with pytest.raises(ValueError):
        collective_s("broadcast", H100, nbytes, 8)


def test_strides_follow_megatron_order():
    st_ = strides(Layout(tp=4, pp=8, dp=16))
    assert (st_.tp, st_.dp, st_.pp) == (1, 4, 64)


def test_enumerated_layouts_are_all_valid_and_complete():
    arch = load_arch("llama-3.1-70b")  # 64 heads, 80 layers
    lays = enumerate_layouts(arch, 64)
    assert lays and all(l.devices == 64 for l in lays)
    assert all(arch.num_heads % l.tp == 0 and l.pp <= 80 for l in lays)
    # every factorisation tp·pp·dp = 64 with tp | 64 heads is present: 7 tp values × pp | 64/tp
    expected = sum(len([p for p in range(1, 64 // tp + 1) if (64 // tp) % p == 0]) for tp in (1, 2, 4, 8, 16, 32, 64))
    assert len(lays) == expected
    capped = enumerate_layouts(arch, 64, max_tp=8)
    assert capped and max(l.tp for l in capped) == 8


def test_enumerate_includes_expert_parallel_for_moe():
    arch = load_arch("mixtral-8x7b")  # 8 experts
    lays = enumerate_layouts(arch, 8)
    assert {l.ep for l in lays} == {1, 2, 4, 8}
    assert all((l.tp * l.dp) % l.ep == 0 for l in lays)


@pytest.mark.parametrize(
    "layout, devices, rule",
    [
        (Layout(tp=5), None, "attention heads"),
        (Layout(pp=200), None, "number of layers"),
        (Layout(tp=2, dp=2), 3, "tp×pp×dp"),
        (Layout(ep=3), None, "experts"),
        (Layout(tp=0), None, "positive integer"),
    ],
)
def test_impossible_layouts_name_the_rule(layout, devices, rule):
    with pytest.raises(EstimateError) as e:
        validate_layout(load_arch("llama-3.1-70b"), layout, devices)
    assert rule in e.value.message


def test_multi_node_without_inter_node_link_is_refused():
    solo = replace(H100, inter_node_link=None, content_hash=H100.content_hash + "-nolink")
    with pytest.raises(EstimateError) as e:
        collective_s("allreduce", solo, 1e6, 16, 1)
    assert "inter-node" in e.value.message


# ---------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------


def _faster(dev, factor):
    def scale(link):
        return None if link is None else Link(name=link.name, bandwidth_bytes_per_s=link.bandwidth_bytes_per_s * factor, latency_s=link.latency_s)

    return replace(
        dev,
        intra_node_link=scale(dev.intra_node_link),
        inter_node_link=scale(dev.inter_node_link),
        content_hash=f"{dev.content_hash}-links×{factor}",
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2, 4]),
    dp=st.sampled_from([1, 2, 8]),
    factor=st.floats(1.0, 8.0),
    zero=st.sampled_from([0, 1]),
)
def test_more_bandwidth_never_slows_a_layout(tp, pp, dp, factor, zero):
    arch = load_arch("llama-3.1-8b")
    cfg = TrainingConfig(global_batch=8 * dp, micro_batch=1, seq=2048, tp=tp, pp=pp, dp=dp, zero=zero, sequence_parallel=tp > 1)
    slow = estimate_training(arch, H100, cfg)
    fast = estimate_training(arch, _faster(H100, factor), cfg)
    assert fast.step_time_s <= slow.step_time_s * (1 + 1e-9)
    serving = Serving(batch=4, prompt=512, gen=32)
    a = estimate_inference(arch, H100, Layout(tp=tp, pp=pp), serving)
    b = estimate_inference(arch, _faster(H100, factor), Layout(tp=tp, pp=pp), serving)
    assert b.ttft_s <= a.ttft_s * (1 + 1e-9) and b.tpot_s <= a.tpot_s * (1 + 1e-9)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tp=st.sampled_from([1, 2, 4]),
    pp=st.sampled_from([1, 2, 4]),
    dp=st.sampled_from([1, 2, 4]),
    grow=st.sampled_from(["tp", "pp", "dp"]),
    recompute=st.sampled_from(["none", "selective", "full"]),
)
def test_adding_devices_never_lowers_the_memory_available(tp, pp, dp, grow, recompute):
    arch = load_arch("llama-3.1-8b")
    base = dict(tp=tp, pp=pp, dp=dp)
    more = dict(base)
    more[grow] *= 2
    m_per_replica = 16  # same micro-batches per replica either way

    def need(lay):
        cfg = TrainingConfig(
            global_batch=m_per_replica * lay["dp"],
            micro_batch=1,
            seq=2048,
            zero=1 if lay["dp"] > 1 else 0,
            recompute=recompute,
            sequence_parallel=lay["tp"] > 1,
            **lay,
        )
        return estimate_training(arch, H100, cfg).memory.per_device_bytes

    # the memory a layout needs per device never grows when a dimension doubles
    assert need(more) <= need(base) * (1 + 1e-9)
    # serving: more tensor/pipeline parallelism never lowers the batch that fits
    if grow in ("tp", "pp"):
        s = Serving(batch=1, prompt=1024, gen=256)
        b0 = max_batch(arch, L40S, Layout(tp=tp, pp=pp), s, limit=4096)
        b1 = max_batch(arch, L40S, Layout(tp=more["tp"], pp=more["pp"]), s, limit=4096)
        assert b1 >= b0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hw=st.sampled_from(["h100-sxm", "l4", "sn40l", "m2-max"]),
    tp=st.sampled_from([1, 2, 4]),
    batch=st.integers(1, 256),
    weights=st.sampled_from(["bf16", "int4-g128", "int8"]),
)
def test_a_layout_reported_as_fitting_fits_in_every_tier(hw, tp, batch, weights):
    dev = load_device(hw)
    arch = load_arch("llama-3.1-8b")
    if dev.supports(weights) == "unsupported" or tp > max(dev.devices_per_node, 1):
        return
    rep, _ = memory_report(arch, dev, Layout(tp=tp), Serving(batch=batch, prompt=1024, gen=128), Choice(weights=weights))
    if rep.fits:
        for t in rep.tiers:
            assert t.used_bytes <= t.capacity_bytes * (1 + 1e-9), (t.name, t.used_bytes, t.capacity_bytes)
    cfg = TrainingConfig(global_batch=batch, micro_batch=1, seq=1024, tp=tp, finetune="qlora:16" if weights != "bf16" else "lora:16")
    mem = estimate_training(arch, dev, cfg).memory
    if mem.fits:
        for t in mem.to_dict()["tiers"].values():
            assert t["used_bytes"] <= t["capacity_bytes"]


def test_training_layout_search_ranks_fitting_layouts():
    from planner.parallel import search_training_layouts

    arch = load_arch("llama-3.1-8b")
    ranked = search_training_layouts(arch, H100, 16, global_batch=64, seq=4096)
    assert ranked
    times = [r.score for r in ranked]
    assert times == sorted(times)
    for r in ranked:
        assert r.estimate.memory.fits and r.estimate.devices == 16
        assert r.estimate.step_time_s == r.score
    # nothing that fits was left out: the 16-GPU pure data-parallel AdamW layout needs ZeRO
    assert any(r.layout.tp == 1 and r.layout.pp == 1 and r.config.zero >= 1 for r in ranked)
    assert not any(r.layout.tp == 1 and r.layout.pp == 1 and r.config.zero == 0 and r.config.recompute == "none" and r.config.micro_batch == 4 for r in ranked)
    by_mem = search_training_layouts(arch, H100, 16, global_batch=64, seq=4096, objective="memory", limit=3)
    assert len(by_mem) == 3 and by_mem[0].score <= ranked[0].estimate.memory.per_device_bytes
    with pytest.raises(EstimateError):
        search_training_layouts(arch, H100, 16, global_batch=64, seq=4096, objective="cost")


def test_serving_layout_search():
    from planner.parallel import search_serving_layouts

    arch = load_arch("llama-3.1-70b")
    ranked = search_serving_layouts(arch, H100, 8, Serving(batch=8, prompt=2000, gen=200))
    assert ranked and all(r.estimate.memory.fits for r in ranked)
    assert [r.score for r in ranked] == sorted(r.score for r in ranked)
    assert ranked[0].layout.tp >= 2  # 70B bf16 (141 GB) does not fit one 80 GB device
    assert "estimate" in ranked[0].to_dict()
