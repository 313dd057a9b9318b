"""Collective communication cost (α–β model), pure functions.

Formulas follow NCCL's own bandwidth definitions (nccl-tests ``doc/PERFORMANCE.md``,
https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md: bus bandwidth =
algorithm bandwidth × 2(n−1)/n for all-reduce, (n−1)/n for reduce-scatter, all-gather and
all-to-all), with ``n`` ranks, ``S`` bytes, per-direction link bandwidth ``B`` and per-step
latency ``α``:

- ring all-reduce        ``2(n−1)/n · S/B + 2(n−1)·α``
- tree all-reduce        ``2(n−1)/n · S/B + 2·log2(n)·α`` (latency-optimal for small S; between nodes
  only: inside a node NCCL's tree is a chain, priced as the ring)
- reduce-scatter / all-gather ``(n−1)/n · S/B + (n−1)·α`` (S = gathered size)
- all-to-all             ``(n−1)/n · S/B + (n−1)·α`` (S = per-rank send total)
- point-to-point         ``S/B + α``
- hierarchical all-reduce across nodes: intra-node reduce-scatter, inter-node all-reduce
  of S/g, intra-node all-gather.

``LINK_EFFICIENCY`` converts the line rate to achievable bus bandwidth: NCCL reaches about
80% of the per-direction NVLink rate (8×H100: ~370 of 450 GB/s ring busbw, NCCL maintainers in
https://github.com/NVIDIA/nccl-tests/issues/212; 8×A100: ~200 of 300 GB/s,
https://github.com/NVIDIA/nccl-tests/issues/149). The same fraction is used for every link unless a
calibrated value is given.
"""

from __future__ import annotations

import math

from hwmodels import Link

LINK_EFFICIENCY = 0.8


def _bw(link: Link, efficiency: float) -> float:
    return link.bandwidth_bytes_per_s * efficiency


def ring_allreduce_s(nbytes: float, n: int, link: Link, efficiency: float = LINK_EFFICIENCY) -> float:
    """Ring all-reduce time (s) of ``nbytes`` over ``n`` ranks on ``link``."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / _bw(link, efficiency) + 2.0 * (n - 1) * link.latency_s


def tree_allreduce_s(nbytes: float, n: int, link: Link, efficiency: float = LINK_EFFICIENCY) -> float:
    if n <= 1 or nbytes <= 0:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / _bw(link, efficiency) + 2.0 * math.log2(n) * link.latency_s


def allreduce_s(nbytes: float, n: int, link: Link, efficiency: float = LINK_EFFICIENCY) -> float:
    """Best of ring and tree (NCCL picks per message size), for ranks one per node: NCCL's trees
    connect nodes."""
    return min(ring_allreduce_s(nbytes, n, link, efficiency), tree_allreduce_s(nbytes, n, link, efficiency))


def intra_node_allreduce_s(nbytes: float, n: int, link: Link, efficiency: float = LINK_EFFICIENCY) -> float:
    """All-reduce among the ranks of one node: a ring. NCCL builds its trees between nodes only;
    inside a node the tree is a chain (NCCL maintainers: "the tree structure is only inter-node.
    Intra-node it's always a chain", https://github.com/NVIDIA/nccl/issues/672; "Within a single
    node, it is indeed just a chain", https://github.com/NVIDIA/nccl/issues/919), which reduces up
    and broadcasts down n−1 hops: the ring's 2(n−1)·α latency, not 2·log2(n)·α."""
    return ring_allreduce_s(nbytes, n, link, efficiency)


def reduce_scatter_s(nbytes: float, n: int, link: Link, efficiency: float = LINK_EFFICIENCY) -> float:
    if n <= 1 or nbytes <= 0:
        return 0.0
    return (n - 1) / n * nbytes / _bw(link, efficiency) + (n - 1) * link.latency_s


all_gather_s = reduce_scatter_s
all_to_all_s = reduce_scatter_s


def p2p_s(nbytes: float, link: Link, efficiency: float = LINK_EFFICIENCY) -> float:
    """A send to one peer: at the link's peer bandwidth (one xGMI link of a mesh, the whole link of a switch)."""
    if nbytes <= 0:
        return 0.0
    return nbytes / (link.p2p_bandwidth_bytes_per_s * efficiency) + link.latency_s


def hierarchical_allreduce_s(
    nbytes: float,
    n: int,
    per_node: int,
    intra: Link,
    inter: Link | None,
    efficiency: float = LINK_EFFICIENCY,
) -> float:
    """All-reduce over ``n`` ranks placed ``per_node`` to a node.

    Inside one node this is a plain all-reduce on the intra-node link; across nodes it is
    reduce-scatter (intra) → all-reduce of S/g across nodes (inter) → all-gather (intra).
    """
    if n <= 1 or nbytes <= 0:
        return 0.0
    if n <= per_node or inter is None:
        return intra_node_allreduce_s(nbytes, n, intra, efficiency)
    g = per_node
    nodes = math.ceil(n / g)
    return (
        reduce_scatter_s(nbytes, g, intra, efficiency)
        + allreduce_s(nbytes / g, nodes, inter, efficiency)
        + all_gather_s(nbytes, g, intra, efficiency)
    )


# ---------------------------------------------------------------------------
# Two-level (intra-node, inter-node) variants of the other collectives
# ---------------------------------------------------------------------------


def hierarchical_reduce_scatter_s(
    nbytes: float,
    n: int,
    per_node: int,
    intra: Link,
    inter: Link | None,
    efficiency: float = LINK_EFFICIENCY,
) -> float:
    """Reduce-scatter of ``nbytes`` (the full array) over ``n`` ranks, ``per_node`` to a node.

    Two levels, as NCCL's hierarchical algorithms: an intra-node reduce-scatter leaves each
    rank with S/g; an inter-node reduce-scatter of that shard across the ``n/g`` nodes
    leaves S/n. An all-gather is the same sequence reversed and costs the same.
    """
    if n <= 1 or nbytes <= 0:
        return 0.0
    if n <= per_node or inter is None:
        return reduce_scatter_s(nbytes, n, intra, efficiency)
    g = max(per_node, 1)
    nodes = math.ceil(n / g)
    return reduce_scatter_s(nbytes, g, intra, efficiency) + reduce_scatter_s(nbytes / g, nodes, inter, efficiency)


hierarchical_all_gather_s = hierarchical_reduce_scatter_s


def hierarchical_all_to_all_s(
    nbytes: float,
    n: int,
    per_node: int,
    intra: Link,
    inter: Link | None,
    efficiency: float = LINK_EFFICIENCY,
) -> float:
    """All-to-all where each rank sends ``nbytes`` in total, split evenly over ``n`` ranks.

    Of each rank's data, the share for its ``per_node − 1`` node peers crosses the
    intra-node link and the share for the ``n − per_node`` remote ranks crosses the
    rank's inter-node link; both run at once, so the slower of the two sets the time
    (nccl-tests PERFORMANCE.md: ``(n−1)/n · S/B + (n−1)·α`` on one link).
    """
    if n <= 1 or nbytes <= 0:
        return 0.0
    if n <= per_node or inter is None:
        return all_to_all_s(nbytes, n, intra, efficiency)
    g = max(per_node, 1)
    local = (g - 1) / n * nbytes / _bw(intra, efficiency) + (g - 1) * intra.latency_s
    remote = (n - g) / n * nbytes / _bw(inter, efficiency) + (n - g) * inter.latency_s
    return max(local, remote)
