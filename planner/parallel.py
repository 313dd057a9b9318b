"""Parallel layouts over several devices: validation, enumeration, rank placement and the
cost of the collectives each parallel dimension needs. Pure functions, no I/O.

Rank placement follows Megatron-LM's default order (``tp-cp-ep-dp-pp``): tensor-parallel
ranks are innermost (consecutive ranks, so a TP group stays inside one node whenever
``tp`` ≤ devices per node), then expert-parallel groups carved from the TP×DP block, then
data-parallel replicas, and pipeline stages outermost. A group of ``n`` ranks taken every
``stride`` ranks therefore spans ``ceil(n·stride / per_node)`` nodes with
``per_node // stride`` of its ranks in each (Narayanan et al. 2021, takeaway #1:
"tensor model parallelism should generally be used up to degree g when using g-GPU
servers, and then pipeline model parallelism ... across servers").

Which link a collective crosses follows from that placement: a group inside one node uses
the scale-up link (NVLink/NVSwitch, Infinity Fabric, the RDU network, or PCIe through the
host when the device has no peer link); a group with one rank per node uses the scale-out
link (InfiniBand/RoCE/ICI); a group with several ranks in each of several nodes uses the
two-level (hierarchical) algorithms of :mod:`planner.collectives`.
"""

from __future__ import annotations

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
    p2p_s,
    reduce_scatter_s,
)
from planner.costmodel import EstimateError, Layout, check_layout

COLLECTIVES = ("allreduce", "reduce_scatter", "all_gather", "all_to_all")


# ---------------------------------------------------------------------------
# Placement of a group of ranks on nodes
# ---------------------------------------------------------------------------


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
    """The link between devices of one node: the peer link, else PCIe through the host."""
    return device.intra_node_link or device.host_link


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
    return GroupSpan(
        size=size,
        stride=stride,
        per_node=per_node,
        nodes=nodes,
        intra=intra_link(device),
        inter=device.inter_node_link,
    )


def _require_links(span: GroupSpan, device: DeviceSpec, what: str) -> None:
    if span.size <= 1:
        return
    if span.per_node > 1 and span.intra is None:
        raise EstimateError("devices", f"{device.id} has no link between devices, so {what} over {span.size} devices cannot run")
    if span.crosses_nodes and span.inter is None:
        raise EstimateError(
            "devices",
            f"{what} spans {span.nodes} nodes but {device.id} has no inter-node link in its profile "
            f"({device.devices_per_node} devices per node); use at most {device.devices_per_node} devices or add links.inter_node",
        )


def collective_s(
    kind: str,
    device: DeviceSpec,
    nbytes: float,
    size: int,
    stride: int = 1,
    *,
    efficiency: float = LINK_EFFICIENCY,
    what: str = "a collective",
) -> float:
    """Time (s) of one collective of ``nbytes`` over a group placed as :func:`group_span`.

    ``nbytes`` is the full (gathered / reduced) array for all-reduce, reduce-scatter and
    all-gather, and each rank's send total for all-to-all (nccl-tests doc/PERFORMANCE.md, github.com/NVIDIA/nccl-tests).
    """
    if kind not in COLLECTIVES:
        raise ValueError(f"collective must be one of {', '.join(COLLECTIVES)}; got {kind!r}")
    if size <= 1 or nbytes <= 0:
        return 0.0
    span = group_span(device, size, stride)
    _require_links(span, device, what)
    if not span.crosses_nodes:
        link = span.intra
        if kind == "allreduce":
            return allreduce_s(nbytes, size, link, efficiency)
        if kind == "all_to_all":
            return all_to_all_s(nbytes, size, link, efficiency)
        return reduce_scatter_s(nbytes, size, link, efficiency) if kind == "reduce_scatter" else all_gather_s(nbytes, size, link, efficiency)
    if span.per_node == 1:
        link = span.inter
        if kind == "allreduce":
            return allreduce_s(nbytes, size, link, efficiency)
        if kind == "all_to_all":
            return all_to_all_s(nbytes, size, link, efficiency)
        return reduce_scatter_s(nbytes, size, link, efficiency)
    if kind == "allreduce":
        return hierarchical_allreduce_s(nbytes, size, span.per_node, span.intra, span.inter, efficiency)
    if kind == "all_to_all":
        return hierarchical_all_to_all_s(nbytes, size, span.per_node, span.intra, span.inter, efficiency)
    if kind == "reduce_scatter":
        return hierarchical_reduce_scatter_s(nbytes, size, span.per_node, span.intra, span.inter, efficiency)
    return hierarchical_all_gather_s(nbytes, size, span.per_node, span.intra, span.inter, efficiency)


def p2p_stage_s(device: DeviceSpec, nbytes: float, stride: int, *, efficiency: float = LINK_EFFICIENCY) -> float:
    """Point-to-point send of ``nbytes`` between neighbouring ranks ``stride`` apart
    (pipeline stages are ``tp·dp`` ranks apart): ``S/B + α`` on the link between them."""
    if nbytes <= 0:
        return 0.0
    g = max(device.devices_per_node, 1)
    if stride < g:
        link = intra_link(device)
    else:
        link = device.inter_node_link
    if link is None:
        raise EstimateError(
            "pp",
            f"pipeline stages {stride} ranks apart need an {'inter-node' if stride >= g else 'intra-node'} link, "
            f"which {device.id} does not have",
        )
    return p2p_s(nbytes, link, efficiency)


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Strides:
    """Rank distance between members of each parallel group (Megatron order tp-ep-dp-pp)."""

    tp: int
    ep: int
    dp: int
    pp: int


def strides(layout: Layout) -> Strides:
    """TP ranks are adjacent; EP groups are consecutive ranks of the TP×DP block (so an EP
    group of size ≤ tp stays inside a TP group); DP replicas are ``tp`` apart; pipeline
    stages are ``tp·dp`` apart."""
    return Strides(tp=1, ep=1, dp=layout.tp, pp=layout.tp * layout.dp)


def validate_layout(arch: ArchSpec, layout: Layout, devices: int | None = None) -> None:
    """Raise :class:`EstimateError` naming the rule an impossible layout breaks.

    Rules: every degree a positive integer; ``devices = tp × pp × dp`` (EP lives inside
    TP×DP); TP divides the attention heads (and is not used for CNNs); PP ≤ layers; EP
    divides the number of experts and TP×DP.
    """
    check_layout(arch, layout, devices)


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def num_layers(arch: ArchSpec) -> int:
    return arch.num_layers + (arch.num_decoder_layers or 0)


def enumerate_layouts(
    arch: ArchSpec,
    devices: int,
    *,
    max_tp: int | None = None,
    max_pp: int | None = None,
    expert_parallel: bool = True,
) -> list[Layout]:
    """Every valid (tp, pp, dp, ep) with ``tp·pp·dp = devices`` for ``arch``.

    ``max_tp`` caps tensor parallelism (e.g. at the devices of one node); ``max_pp`` caps
    pipeline depth. Ordered by (tp, pp, ep) ascending.
    """
    if not isinstance(devices, int) or devices < 1:
        raise EstimateError("devices", f"--devices must be a positive integer; got {devices!r}")
    out: list[Layout] = []
    for tp in _divisors(devices):
        if max_tp is not None and tp > max_tp:
            continue
        rest = devices // tp
        for pp in _divisors(rest):
            if max_pp is not None and pp > max_pp:
                continue
            dp = rest // pp
            eps = [1]
            if expert_parallel and arch.num_experts:
                eps = [e for e in _divisors(arch.num_experts) if (tp * dp) % e == 0]
            for ep in eps:
                lay = Layout(tp=tp, pp=pp, dp=dp, ep=ep)
                try:
                    validate_layout(arch, lay, devices)
                except EstimateError:
                    continue
                out.append(lay)
    return out


# ---------------------------------------------------------------------------
# Searches over layouts (ranked data the compression planner can consume)
# ---------------------------------------------------------------------------

TRAIN_OBJECTIVES = ("step_time", "memory")
SERVE_OBJECTIVES = ("latency", "throughput", "memory")


@dataclass(frozen=True, slots=True, kw_only=True)
class RankedLayout:
    """One layout that fits, with the estimate it was ranked by (``score``: lower is better)."""

    layout: Layout
    score: float
    estimate: object  # TrainingEstimate or InferenceEstimate
    config: object | None = None  # TrainingConfig for training searches

    def to_dict(self) -> dict:
        d = {"tp": self.layout.tp, "pp": self.layout.pp, "dp": self.layout.dp, "ep": self.layout.ep, "score": self.score}
        if self.config is not None:
            c = self.config
            d.update({"micro_batch": c.micro_batch, "recompute": c.recompute, "zero": c.zero, "sequence_parallel": c.sequence_parallel})
        est = self.estimate.to_dict()
        d["estimate"] = {k: v for k, v in est.items() if not isinstance(v, (dict, list))}
        d["estimate"]["memory"] = est.get("memory")
        return d


def search_training_layouts(
    arch: ArchSpec,
    device: DeviceSpec,
    devices: int,
    *,
    global_batch: int,
    seq: int,
    micro_batches: tuple[int, ...] = (1, 2, 4),
    recompute: tuple[str, ...] = ("none", "selective", "full"),
    zero: tuple[int, ...] = (0, 1, 2, 3),
    max_tp: int | None = None,
    objective: str = "step_time",
    limit: int | None = None,
    **fixed,
) -> list[RankedLayout]:
    """Every valid (TP, PP, DP, EP, micro-batch, recompute, ZeRO) on ``devices`` devices,
    estimated, pruned to those that fit memory, ranked by ``objective`` (step time or
    memory per device). ``fixed`` passes further TrainingConfig fields (optimizer,
    weights, finetune, ...). Combinations that break a rule (ZeRO-2/3 with PP, a global
    batch that micro-batches × DP do not divide) are skipped."""
    from planner.training import TrainingConfig, estimate_training

    if objective not in TRAIN_OBJECTIVES:
        raise EstimateError("objective", f"objective must be one of {', '.join(TRAIN_OBJECTIVES)}; got {objective!r}")
    g = max(device.devices_per_node, 1)
    out: list[RankedLayout] = []
    for lay in enumerate_layouts(arch, devices, max_tp=max_tp or g):
        for mb in micro_batches:
            for rc in recompute:
                for z in zero:
                    if z and lay.dp == 1:
                        continue
                    try:
                        cfg = TrainingConfig(
                            global_batch=global_batch,
                            micro_batch=mb,
                            seq=seq,
                            tp=lay.tp,
                            pp=lay.pp,
                            dp=lay.dp,
                            ep=lay.ep,
                            zero=z,
                            recompute=rc,
                            sequence_parallel=lay.tp > 1,
                            **fixed,
                        )
                        est = estimate_training(arch, device, cfg)
                    except EstimateError:
                        continue
                    if not est.memory.fits:
                        continue
                    score = est.step_time_s if objective == "step_time" else est.memory.per_device_bytes
                    out.append(RankedLayout(layout=lay, score=score, estimate=est, config=cfg))
    out.sort(key=lambda r: (r.score, r.layout.tp, r.layout.pp))
    return out[:limit] if limit else out


def search_serving_layouts(
    arch: ArchSpec,
    device: DeviceSpec,
    devices: int,
    serving,
    choice=None,
    *,
    objective: str = "latency",
    max_tp: int | None = None,
    limit: int | None = None,
) -> list[RankedLayout]:
    """Every valid (TP, PP, DP, EP) on ``devices`` devices for inference, pruned to those
    whose memory fits, ranked by request latency, by (negated) output throughput, or by
    memory per device."""
    from planner.costmodel import Choice, estimate_inference

    if objective not in SERVE_OBJECTIVES:
        raise EstimateError("objective", f"objective must be one of {', '.join(SERVE_OBJECTIVES)}; got {objective!r}")
    choice = choice or Choice()
    out: list[RankedLayout] = []
    for lay in enumerate_layouts(arch, devices, max_tp=max_tp or max(device.devices_per_node, 1)):
        try:
            est = estimate_inference(arch, device, lay, serving, choice)
        except EstimateError:
            continue
        if not est.memory.fits:
            continue
        if objective == "latency":
            score = est.latency_s
        elif objective == "throughput":
            score = -(est.output_tokens_per_s or est.samples_per_s)
        else:
            score = est.memory.per_device_bytes
        out.append(RankedLayout(layout=lay, score=score, estimate=est))
    out.sort(key=lambda r: (r.score, r.layout.tp, r.layout.pp))
    return out[:limit] if limit else out


__all__ = [
    "COLLECTIVES",
    "GroupSpan",
    "RankedLayout",
    "SERVE_OBJECTIVES",
    "TRAIN_OBJECTIVES",
    "Strides",
    "collective_s",
    "enumerate_layouts",
    "group_span",
    "intra_link",
    "num_layers",
    "p2p_stage_s",
    "search_serving_layouts",
    "search_training_layouts",
    "strides",
    "validate_layout",
]
