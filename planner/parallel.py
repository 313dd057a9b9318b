"""Searches over parallel layouts: every valid (TP, PP, DP, EP) on a number of devices,
estimated for training or serving, pruned to those that fit and ranked. Pure functions, no I/O.

The layout itself, its validation, rank placement, link choice and the pricing of
collectives live in :mod:`planner.layout`, below both estimates; this module sits above
them (it calls :func:`planner.costmodel.estimate_inference` and
:func:`planner.training.estimate_training`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.costmodel import Choice, estimate_inference
from planner.engines import ZERO_STAGES
from planner.errors import EstimateError
from planner.layout import Layout, check_layout
from planner.training import TrainingConfig, estimate_training


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


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
        raise EstimateError("devices", f"{{@devices}} must be a positive integer; got {devices!r}")
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
                    check_layout(arch, lay, devices)
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
    zero: tuple[int, ...] = ZERO_STAGES,
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
    "RankedLayout",
    "SERVE_OBJECTIVES",
    "TRAIN_OBJECTIVES",
    "enumerate_layouts",
    "search_serving_layouts",
    "search_training_layouts",
]
