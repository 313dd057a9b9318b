"""Collective cost (α–β model) against the formulas of nccl-tests doc/PERFORMANCE.md
(NCCL's own bandwidth definitions, nccl-tests doc/PERFORMANCE.md)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import Link
from planner.collectives import (
    LINK_EFFICIENCY,
    all_gather_s,
    all_to_all_s,
    allreduce_s,
    hierarchical_all_to_all_s,
    hierarchical_allreduce_s,
    hierarchical_reduce_scatter_s,
    p2p_s,
    reduce_scatter_s,
    ring_allreduce_s,
    tree_allreduce_s,
)

NVLINK = Link(name="nvlink", bandwidth_bytes_per_s=450e9, latency_s=1e-6)
IB = Link(name="ib", bandwidth_bytes_per_s=50e9, latency_s=5e-6)


@pytest.mark.parametrize("n", [2, 4, 8, 64])
@pytest.mark.parametrize("nbytes", [1e3, 1e6, 1e9])
def test_ring_allreduce_formula(n, nbytes):
    # §B.6: ring all-reduce = 2(n−1)/n · S/B + 2(n−1)·α; with efficiency 1 it is the formula exactly
    expect = 2 * (n - 1) / n * nbytes / NVLINK.bandwidth_bytes_per_s + 2 * (n - 1) * NVLINK.latency_s
    assert ring_allreduce_s(nbytes, n, NVLINK, efficiency=1.0) == pytest.approx(expect, rel=1e-12)
    # the default uses achievable bus bandwidth: 80% of the line rate (nccl-tests #212: ~370 of 450 GB/s)
    expect_eff = 2 * (n - 1) / n * nbytes / (0.8 * 450e9) + 2 * (n - 1) * 1e-6
    assert LINK_EFFICIENCY == 0.8
    assert ring_allreduce_s(nbytes, n, NVLINK) == pytest.approx(expect_eff, rel=1e-12)


def test_worked_tp_allreduce_example():
    # §B.1 worked example: b=1, s=4096, h=8192, t=8, BF16 → 8·b·s·h·(t−1)/t elements ≈ 470 MB per
    # layer per micro-batch, "about 1.3 ms at 365 GB/s" (4 all-reduces of b·s·h·2 bytes).
    per_ar = 4096 * 8192 * 2
    link = Link(name="busbw", bandwidth_bytes_per_s=365e9, latency_s=0.0)
    total = 4 * ring_allreduce_s(per_ar, 8, link, efficiency=1.0)
    assert 4 * 2 * 7 / 8 * per_ar == pytest.approx(470e6, rel=0.01)
    assert total == pytest.approx(1.3e-3, rel=0.03)


def test_tree_has_log_latency_and_allreduce_takes_the_best():
    n, small, large = 64, 1e3, 1e9
    assert tree_allreduce_s(small, n, IB, 1.0) == pytest.approx(2 * 63 / 64 * small / 50e9 + 2 * math.log2(64) * 5e-6)
    assert allreduce_s(small, n, IB) == min(ring_allreduce_s(small, n, IB), tree_allreduce_s(small, n, IB))
    assert allreduce_s(small, n, IB) < ring_allreduce_s(small, n, IB)  # latency-bound: tree wins
    # for large messages the bandwidth term dominates and both algorithms agree within 2%
    assert allreduce_s(large, n, IB) == pytest.approx(ring_allreduce_s(large, n, IB), rel=0.02)


def test_reduce_scatter_all_gather_all_to_all_and_p2p():
    n, s = 8, 1e8
    one = (n - 1) / n * s / NVLINK.bandwidth_bytes_per_s + (n - 1) * NVLINK.latency_s
    assert reduce_scatter_s(s, n, NVLINK, 1.0) == pytest.approx(one)
    assert all_gather_s(s, n, NVLINK, 1.0) == pytest.approx(one)
    assert all_to_all_s(s, n, NVLINK, 1.0) == pytest.approx(one)
    # a ring all-reduce is a reduce-scatter followed by an all-gather (§B.2: SP adds no volume)
    assert reduce_scatter_s(s, n, NVLINK, 1.0) + all_gather_s(s, n, NVLINK, 1.0) == pytest.approx(ring_allreduce_s(s, n, NVLINK, 1.0))
    assert p2p_s(s, IB, 1.0) == pytest.approx(s / 50e9 + 5e-6)


def test_a_small_all_reduce_inside_a_node_pays_the_chain_latency_not_the_tree_one():
    """NCCL builds trees between nodes only; inside a node its tree is a chain (nccl #672, #919)."""
    from hwmodels import load_device
    from planner.layout import collective_s

    small = 16e3  # one decode step's activations at batch 1
    dev = load_device("a10g")  # 8 GPUs on PCIe in one node
    link = dev.intra_node_link
    inside = collective_s("allreduce", dev, small, 8)
    assert inside == pytest.approx(ring_allreduce_s(small, 8, link))
    assert inside > tree_allreduce_s(small, 8, link)
    assert inside == pytest.approx(2 * 7 / 8 * small / (link.bandwidth_bytes_per_s * 0.8) + 14 * link.latency_s)


def test_degenerate_groups_cost_nothing():
    for f in (ring_allreduce_s, tree_allreduce_s, allreduce_s, reduce_scatter_s, all_to_all_s):
        assert f(1e9, 1, NVLINK) == 0.0
        assert f(0.0, 8, NVLINK) == 0.0
    assert p2p_s(0.0, NVLINK) == 0.0


def test_hierarchical_allreduce_decomposes_into_three_phases():
    s, n, g = 1e9, 32, 8
    expect = reduce_scatter_s(s, g, NVLINK) + allreduce_s(s / g, n // g, IB) + all_gather_s(s, g, NVLINK)
    assert hierarchical_allreduce_s(s, n, g, NVLINK, IB) == pytest.approx(expect)
    # inside one node it is the ring: NCCL's tree is a chain there (no log2(n) latency)
    assert hierarchical_allreduce_s(s, 8, 8, NVLINK, IB) == ring_allreduce_s(s, 8, NVLINK)
    # two levels beat a flat ring over the slow link for large messages
    assert hierarchical_allreduce_s(s, n, g, NVLINK, IB) < ring_allreduce_s(s, n, IB)


def test_hierarchical_reduce_scatter_and_all_to_all():
    s, n, g = 1e9, 32, 8
    expect = reduce_scatter_s(s, g, NVLINK) + reduce_scatter_s(s / g, n // g, IB)
    assert hierarchical_reduce_scatter_s(s, n, g, NVLINK, IB) == pytest.approx(expect)
    assert hierarchical_reduce_scatter_s(s, 8, 8, NVLINK, IB) == reduce_scatter_s(s, 8, NVLINK)
    local = (g - 1) / n * s / (0.8 * 450e9) + (g - 1) * 1e-6
    remote = (n - g) / n * s / (0.8 * 50e9) + (n - g) * 5e-6
    assert hierarchical_all_to_all_s(s, n, g, NVLINK, IB) == pytest.approx(max(local, remote))


links = st.builds(
    lambda bw, lat: Link(name="l", bandwidth_bytes_per_s=bw, latency_s=lat),
    st.floats(1e9, 1e12),
    st.floats(0.0, 1e-5),
)


@settings(max_examples=40, deadline=None)
@given(
    nbytes=st.floats(1.0, 1e10),
    n=st.integers(2, 256),
    per_node=st.sampled_from([1, 2, 4, 8]),
    intra=links,
    inter=links,
    factor=st.floats(1.0, 10.0),
)
def test_more_bandwidth_never_slows_a_collective(nbytes, n, per_node, intra, inter, factor):
    def faster(link):
        return Link(name=link.name, bandwidth_bytes_per_s=link.bandwidth_bytes_per_s * factor, latency_s=link.latency_s)

    for f in (hierarchical_allreduce_s, hierarchical_reduce_scatter_s, hierarchical_all_to_all_s):
        slow = f(nbytes, n, per_node, intra, inter)
        fast = f(nbytes, n, per_node, faster(intra), faster(inter))
        assert fast <= slow * (1 + 1e-12)
    assert allreduce_s(nbytes, n, faster(intra)) <= allreduce_s(nbytes, n, intra) * (1 + 1e-12)
