"""Parallel layouts over several devices, below the cost model: the :class:`Layout` itself,
its validation, where each parallel group's ranks sit on the node topology, which link a
group's traffic crosses, and the one pricing of the collectives each parallel dimension
needs. Inference (:mod:`planner.costmodel`) and training (:mod:`planner.training`) both call
these functions, so a link is chosen — or refused — the same way in every mode. Pure
functions, no I/O.

Rank placement follows Megatron-LM's default order (``tp-cp-ep-dp-pp``, Megatron-LM
``parallel_state.initialize_model_parallel``, https://github.com/NVIDIA/Megatron-LM): tensor
parallel ranks are innermost (consecutive ranks, so a TP group stays inside one node whenever
``tp`` ≤ devices per node), then context-parallel ranks ``tp`` apart, expert-parallel groups
carved from the TP×DP block, data-parallel replicas ``tp·cp`` apart, and pipeline stages
outermost, ``tp·cp·dp`` apart. A group of ``n`` ranks taken every ``stride`` ranks therefore
spans ``ceil(n·stride / per_node)`` nodes with ``per_node // stride`` of its ranks in each
(Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM", https://arxiv.org/abs/2104.04473, takeaway #1).

Which link a collective crosses follows from that placement: a group inside one node uses the
scale-up link (NVLink/NVSwitch, Infinity Fabric, ICI, the RDU network, or PCIe through the
host when the profile has no peer link); a group with one rank per node uses the scale-out
link (InfiniBand, RoCE, Ethernet); a group with several ranks in each of several nodes uses
the two-level algorithms of :mod:`planner.collectives`. A device whose profile has one device
per node and no scale-out link (a phone, a laptop SoC, an embedded board) has no path to a
peer, and any parallel group larger than one is refused naming the request field.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from hwmodels import DeviceSpec, Link
from planner.arch import ArchSpec
from planner.collectives import (
    LINK_EFFICIENCY,
    all_gather_s,
    all_to_all_s,
    allreduce_s,
    hierarchical_all_gather_s,
    hierarchical_all_to_all_s,
    hierarchical_allreduce_s,
    hierarchical_reduce_scatter_s,
    intra_node_allreduce_s,
    p2p_s,
    reduce_scatter_s,
)
from planner.errors import EstimateError

COLLECTIVES = ("allreduce", "reduce_scatter", "all_gather", "all_to_all")
DIMENSIONS = ("tp", "pp", "dp", "ep", "cp")
# Families whose attention can be split over a context-parallel ring (decoder and encoder
# stacks); CNNs have no sequence and encoder-decoder cross attention is not modelled.
CP_FAMILIES = ("decoder", "encoder", "vit")


# ---------------------------------------------------------------------------
# The layout and its validation
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """Parallel layout: tensor, pipeline, data (replica), expert and context parallel degrees.

    Devices = ``tp·cp·pp·dp``; expert parallelism lives inside the TP×DP block and adds no
    devices. Context parallelism splits each sequence over ``cp`` ranks (ring attention).
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    cp: int = 1

    @property
    def devices(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def model_parallel(self) -> int:
        """Devices that hold one replica of the model: ``tp·cp·pp``."""
        return self.tp * self.cp * self.pp


def num_layers(arch: ArchSpec) -> int:
    return arch.num_layers + (arch.num_decoder_layers or 0)


def _product_text(layout: Layout) -> str:
    if layout.cp > 1:
        return f"tp×cp×pp×dp = {layout.tp}×{layout.cp}×{layout.pp}×{layout.dp} = {layout.devices}"
    return f"tp×pp×dp = {layout.tp}×{layout.pp}×{layout.dp} = {layout.devices}"


def check_layout(arch: ArchSpec, layout: Layout, devices: int | None = None) -> None:
    """Raise :class:`EstimateError` naming the rule an impossible layout breaks.

    Rules: every degree a positive integer; ``devices = tp·cp·pp·dp`` (EP lives inside
    TP×DP); TP divides the attention heads (and is not used for CNNs); PP ≤ layers; EP divides
    the number of experts and TP×DP; CP only for decoder and encoder stacks.
    """
    for name in DIMENSIONS:
        v = getattr(layout, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise EstimateError(name, f"{{@{name}}} must be a positive integer; got {v!r}")
    if arch.family in ("decoder", "encoder", "encoder_decoder", "vit") and layout.tp > 1:
        if arch.num_heads % layout.tp:
            raise EstimateError("tp", f"{{@tp}} {layout.tp} must divide the number of attention heads ({arch.num_heads}) of {arch.id}")
    if arch.family == "cnn" and layout.tp > 1:
        raise EstimateError("tp", f"tensor parallelism is not modelled for CNNs ({arch.id}); use {{@dp}}")
    if layout.cp > 1 and arch.family not in CP_FAMILIES:
        raise EstimateError(
            "cp", f"context parallelism is modelled for decoder and encoder stacks, not for {arch.family} models ({arch.id}); use {{@cp}} 1"
        )
    layers = num_layers(arch)
    if layout.pp > max(layers, 1):
        raise EstimateError("pp", f"{{@pp}} {layout.pp} exceeds the number of layers ({layers}) of {arch.id}")
    if layout.ep > 1:
        if not arch.num_experts:
            raise EstimateError("ep", f"{{@ep}} {layout.ep} needs a mixture-of-experts model; {arch.id} has no experts")
        if arch.num_experts % layout.ep:
            raise EstimateError("ep", f"{{@ep}} {layout.ep} must divide the number of experts ({arch.num_experts})")
    # The count after the degrees the model cannot take: --ep 2 --devices 2 on a dense model names ep.
    if devices is not None and devices != layout.devices:
        raise EstimateError("devices", f"{{@devices}} ({devices}) must equal {_product_text(layout)}")
    if layout.ep > 1:
        if (layout.tp * layout.dp) % layout.ep:
            raise EstimateError("ep", f"{{@ep}} {layout.ep} must divide tp×dp = {layout.tp * layout.dp}")


def check_layout_on(arch: ArchSpec, device: DeviceSpec, layout: Layout, devices: int | None = None, *, training: bool = False) -> None:
    """:func:`check_layout`, then refuse a layout whose groups need a link ``device`` lacks —
    the same test the pricing functions make, done up front so that nothing is estimated for
    a layout that cannot run. Data-parallel replicas talk only in training (gradients);
    serving replicas are independent."""
    check_layout(arch, layout, devices)
    st = strides(layout)
    groups = [("tp", layout.tp, st.tp), ("cp", layout.cp, st.cp), ("ep", layout.ep, st.ep)]
    if training:
        groups.append(("dp", layout.dp * layout.cp, st.cp))
    for name, size, stride in groups:
        require_group(device, size, stride, field=name)
    if layout.pp > 1:
        pp_link(device, st.pp)
        # One replica's stages hold tp·cp·pp devices: more than a node holds, some stage sends to the
        # next node, whatever the placement of the replicas.
        g = max(device.devices_per_node, 1)
        span = layout.tp * layout.cp * layout.pp
        if span > g and device.inter_node_link is None:
            raise EstimateError(
                "pp",
                f"{{@pp}} {layout.pp} × tp {layout.tp}" + (f" × cp {layout.cp}" if layout.cp > 1 else "")
                + f" = {span} devices per replica span {math.ceil(span / g)} nodes but {device.id} has no inter-node "
                f"link in its profile ({g} devices per node); keep one replica inside one node or add links.inter_node",
            )


# ---------------------------------------------------------------------------
# Rank strides and placement of a group on nodes
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Strides:
    """Rank distance between members of each parallel group (Megatron order tp-cp-ep-dp-pp)."""

    tp: int
    cp: int
    ep: int
    dp: int
    pp: int


def strides(layout: Layout) -> Strides:
    """TP ranks are adjacent; CP ranks ``tp`` apart; EP groups are consecutive ranks of the
    TP×DP block (so an EP group of size ≤ tp stays inside a TP group); DP replicas ``tp·cp``
    apart; pipeline stages ``tp·cp·dp`` apart."""
    return Strides(tp=1, cp=layout.tp, ep=1, dp=layout.tp * layout.cp, pp=layout.tp * layout.cp * layout.dp)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpan:
    """Where the ``size`` ranks of one communication group sit.

    ``per_node``: ranks of the group inside one node; ``nodes``: nodes the group spans;
    ``intra`` / ``inter``: the links its traffic crosses inside / between nodes.
    """

    size: int
    stride: int
    per_node: int
    nodes: int
    intra: Link | None
    inter: Link | None

    def __post_init__(self) -> None:
        for name in ("size", "stride", "per_node", "nodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GroupSpan.{name} must be a positive integer; got {v!r}")

    @property
    def crosses_nodes(self) -> bool:
        return self.nodes > 1


def intra_link(device: DeviceSpec) -> Link | None:
    """The link between devices of one node: the peer link, else PCIe through the host.
    (With one device per node no group has two ranks in a node, so the host link is never
    taken as a peer link there.)"""
    return device.intra_node_link or device.host_link


@functools.lru_cache(maxsize=4096)
def group_span(device: DeviceSpec, size: int, stride: int = 1) -> GroupSpan:
    """Placement of a group of ``size`` ranks taken every ``stride`` ranks."""
    if size < 1 or stride < 1:
        raise ValueError(f"group size and stride must be ≥ 1; got size={size}, stride={stride}")
    g = max(device.devices_per_node, 1)
    if size == 1:
        per_node, nodes = 1, 1
    elif stride >= g:
        per_node, nodes = 1, size
    else:
        per_node = max(1, min(size, g // stride))
        nodes = math.ceil(size / per_node)
    return GroupSpan(size=size, stride=stride, per_node=per_node, nodes=nodes, intra=intra_link(device), inter=device.inter_node_link)


def max_group(device: DeviceSpec) -> int | None:
    """The largest group of devices ``device``'s profile can connect (None: no limit)."""
    if device.inter_node_link is not None:
        return None
    if device.devices_per_node > 1 and intra_link(device) is not None:
        return device.devices_per_node
    return 1


def _no_peer_message(device: DeviceSpec, field: str, size: int, what: str) -> str:
    return (
        f"{{@{field}}} {size} needs {what} between {size} devices, but {device.id} has no link to another device "
        f"in its profile ({device.devices_per_node} device per node, no links.intra_node or links.inter_node): "
        f"it supports only {{@{field}}} 1"
    )


def require_group(device: DeviceSpec, size: int, stride: int = 1, *, field: str = "devices", what: str = "a collective") -> GroupSpan:
    """The placement of a group, or :class:`EstimateError` naming ``field`` when a link its
    traffic must cross is missing from ``device``'s profile."""
    span = group_span(device, size, stride)
    if size <= 1:
        return span
    if max_group(device) == 1:
        raise EstimateError(field, _no_peer_message(device, field, size, what))
    if span.per_node > 1 and span.intra is None:
        raise EstimateError(field, f"{device.id} has no link between the devices of one node, so {what} over {{@{field}}} {size} cannot run")
    if span.crosses_nodes and span.inter is None:
        g = device.devices_per_node
        raise EstimateError(
            field,
            f"{what} over {{@{field}}} {size} spans {span.nodes} nodes but {device.id} has no inter-node link in its profile "
            f"({g} devices per node); keep the group inside one node (at most {g} devices) or add links.inter_node",
        )
    return span


# ---------------------------------------------------------------------------
# One pricing of collectives, for every mode
# ---------------------------------------------------------------------------


def collective_s(
    kind: str,
    device: DeviceSpec,
    nbytes: float,
    size: int,
    stride: int = 1,
    *,
    efficiency: float = LINK_EFFICIENCY,
    what: str = "a collective",
    field: str = "devices",
) -> float:
    """Time (s) of one collective of ``nbytes`` over a group placed as :func:`group_span`.

    ``nbytes`` is the full (gathered / reduced) array for all-reduce, reduce-scatter and
    all-gather, and each rank's send total for all-to-all (nccl-tests ``doc/PERFORMANCE.md``,
    https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md). Inside one node the
    group uses the scale-up link; one rank per node, the scale-out link; several ranks in each
    of several nodes, the two-level algorithms. A group whose link the profile lacks raises
    :class:`EstimateError` naming ``field``.
    """
    if kind not in COLLECTIVES:
        raise ValueError(f"collective must be one of {', '.join(COLLECTIVES)}; got {kind!r}")
    if size <= 1:
        return 0.0
    span = require_group(device, size, stride, field=field, what=what)
    if nbytes <= 0:
        return 0.0
    if not span.crosses_nodes or span.per_node == 1:
        link = span.inter if span.crosses_nodes else span.intra
        # One node: NCCL's tree is a chain there, so the all-reduce is the ring's (intra_node_allreduce_s).
        flat = {"allreduce": allreduce_s if span.crosses_nodes else intra_node_allreduce_s, "all_to_all": all_to_all_s,
                "reduce_scatter": reduce_scatter_s, "all_gather": all_gather_s}
        return flat[kind](nbytes, size, link, efficiency)
    two_level = {
        "allreduce": hierarchical_allreduce_s,
        "all_to_all": hierarchical_all_to_all_s,
        "reduce_scatter": hierarchical_reduce_scatter_s,
        "all_gather": hierarchical_all_gather_s,
    }
    return two_level[kind](nbytes, size, span.per_node, span.intra, span.inter, efficiency)


def pp_link(device: DeviceSpec, stride: int, *, field: str = "pp") -> Link:
    """The link between neighbouring ranks ``stride`` apart (pipeline stages, ring steps):
    inside the node when ``stride`` < devices per node, else the scale-out link."""
    g = max(device.devices_per_node, 1)
    link = intra_link(device) if stride < g else device.inter_node_link
    if link is None:
        if max_group(device) == 1:
            raise EstimateError(field, _no_peer_message(device, field, 2, "point-to-point sends"))
        raise EstimateError(
            field,
            f"{{@{field}}} ranks {stride} apart need an {'inter-node' if stride >= g else 'intra-node'} link, which {device.id} does not have",
        )
    return link


def p2p_stage_s(device: DeviceSpec, nbytes: float, stride: int, *, efficiency: float = LINK_EFFICIENCY, field: str = "pp") -> float:
    """Point-to-point send of ``nbytes`` between neighbouring ranks ``stride`` apart
    (pipeline stages are ``tp·cp·dp`` ranks apart): ``S/B + α`` on the link between them."""
    link = pp_link(device, stride, field=field)
    if nbytes <= 0:
        return 0.0
    return p2p_s(nbytes, link, efficiency)


def ring_exchange_s(device: DeviceSpec, chunk_bytes: float, layout: Layout, *, efficiency: float = LINK_EFFICIENCY) -> float:
    """Ring attention's K/V exchange for one attention layer: ``cp − 1`` steps, each sending
    one rank's K/V chunk to the next CP rank (CP ranks are ``tp`` apart) — Liu et al. 2023,
    "Ring Attention with Blockwise Transformers", https://arxiv.org/abs/2310.01889. A ring
    that spans nodes moves at the pace of its slowest hop, the scale-out link. The caller
    decides how much of it the attention compute hides."""
    if layout.cp <= 1:
        return 0.0
    span = require_group(device, layout.cp, strides(layout).cp, field="cp", what="ring-attention K/V exchange")
    if chunk_bytes <= 0:
        return 0.0
    link = span.inter if span.crosses_nodes else span.intra
    return (layout.cp - 1) * p2p_s(chunk_bytes, link, efficiency)


def cp_split(tokens: int, cp: int, *, causal: bool = True) -> tuple[int, float]:
    """Positions one context-parallel rank holds and the attended context that makes its
    (query, key) pairs 1/cp of the sequence's: with load-balanced causal chunks a rank's
    queries see on average half of the other ranks' keys; without a causal mask, all of them."""
    if cp <= 1:
        return tokens, 0.0
    local = max(1, tokens // cp)
    other = float(tokens - local)
    return local, other / 2.0 if causal else other


# ---------------------------------------------------------------------------
# Pipeline schedule
# ---------------------------------------------------------------------------


def microbatch_sizes(batch: int, pp: int) -> list[int]:
    """The batch split into ``m = min(batch, pp)`` near-equal pipeline micro-batches, largest
    first (batch 5 on 4 stages: 2, 1, 1, 1)."""
    if batch < 1 or pp < 1:
        raise ValueError(f"batch and pp must be ≥ 1; got batch={batch}, pp={pp}")
    m = min(batch, pp)
    q, r = divmod(batch, m)
    return [q + 1] * r + [q] * (m - r)


def pipeline_time_s(pass_times: list[float], pp: int) -> float:
    """Time for micro-batches to flow through ``pp`` equal stages when micro-batch ``i``'s
    whole forward pass takes ``pass_times[i]`` (``pass_times[i] / pp`` per stage): the fill
    and drain of a flow shop whose jobs take the same time on every stage,
    ``Σ tᵢ/pp + (pp − 1)·max tᵢ/pp`` (GPipe, Huang et al. 2019,
    https://arxiv.org/abs/1811.06965, bubble (pp−1)/(m+pp−1) with equal micro-batches)."""
    if not pass_times:
        return 0.0
    if pp <= 1:
        return sum(pass_times)
    return (sum(pass_times) + (pp - 1) * max(pass_times)) / pp


__all__ = [
    "COLLECTIVES",
    "CP_FAMILIES",
    "DIMENSIONS",
    "GroupSpan",
    "Layout",
    "Strides",
    "check_layout",
    "check_layout_on",
    "collective_s",
    "cp_split",
    "group_span",
    "intra_link",
    "max_group",
    "microbatch_sizes",
    "num_layers",
    "p2p_stage_s",
    "pipeline_time_s",
    "pp_link",
    "require_group",
    "ring_exchange_s",
    "strides",
]
