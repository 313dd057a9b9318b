"""Disaggregated prefill / decode serving: separate pools of prefill and decode instances,
the KV cache of each prompt sent from the one to the other (pure functions).

The method follows DistServe (Zhong et al., "DistServe: Disaggregating Prefill and Decoding
for Goodput-optimized Large Language Model Serving", OSDI 2024) and Splitwise (Patel et
al., "Splitwise: Efficient Generative LLM Inference Using Phase Splitting", ISCA 2024), in
the form NVIDIA's aiconfigurator offers as its disaggregated mode (a prefill worker
configuration and a decode worker configuration, each with its own parallel layout, and
the number of workers of each kind meeting the TTFT / TPOT targets;
https://github.com/ai-dynamo/aiconfigurator, and NVIDIA Dynamo's "Disaggregated Serving
Guide", https://docs.nvidia.com/dynamo/user-guides/disaggregated-serving). Papers:
arXiv:2401.09670 (DistServe), arXiv:2311.18677 (Splitwise).

* **Prefill pool**: ``r_p`` instances of layout ``tp_p × pp_p``; each is an M/D/1 queue of
  prompts (service ``t_p``, the cost model's prefill of one prompt) — DistServe models a
  prefill instance the same way. No decode step ever delays a prompt.
* **KV transfer**: when a prompt is prefilled its KV cache (bytes = the KV of the prompt's
  tokens at the KV format, the cost model's per-sequence KV scaled to the prompt) goes to a
  decode instance over the link between them: the hardware profile's intra-node link when a
  prefill and a decode instance share a node (``kv_link: auto`` when ``n_p + n_d`` devices
  fit in one node, or ``intra_node``), else its scale-out link (``scale_out``). Every
  device of the smaller instance sends or receives its shard in parallel, so one transfer
  takes ``latency + KV / min(n_p, n_d) / bandwidth``. An instance's links are a second
  M/D/1 server (utilisation ``λ·t_x``). Splitwise overlaps the transfer with the prefill
  layer by layer; Tierwise counts it in full (conservative).
* **Decode pool**: ``r_d`` instances of layout ``tp_d × pp_d`` running continuous batching
  of decode steps only (:func:`planner.queueing.continuous_batching` with no prefill): the
  live sequences follow Little's law ``n = λ·G·τ(n)`` within the batch its memory holds,
  and TPOT is the step time ``τ(n)`` — no prefill interrupts it.
* **TTFT** = prefill wait + ``t_p`` + transfer wait + transfer (quantiles added, as in the
  aggregated model); **TPOT** = ``τ(n)``.

The search takes every prefill layout × decode layout the hardware and engine allow,
gives each pool the fewest instances meeting its SLO (TTFT for prefill, TPOT for decode;
both only improve as instances are added, so a bisection finds them), and keeps the pair
with the fewest devices, then the lowest cost and TTFT. Both pools use the same hardware
(Splitwise also mixes hardware generations; not modelled).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hwmodels import DeviceSpec

from planner.queueing import continuous_batching, md1_mean_wait_s, times, wait_quantile_s
from planner.capacity_model import slo_figures

KV_LINKS = ("auto", "intra_node", "scale_out")

__all__ = ["KV_LINKS", "DisaggOption", "compare", "kv_link_for", "prompt_kv_bytes", "search_disaggregated",
           "transfer_s"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DisaggOption:
    """Separate prefill and decode pools serving the load, and what they achieve."""

    hardware: str
    engine: str
    weights: str
    activations: str
    kv: str
    prefill_tp: int
    prefill_pp: int
    prefill_replicas: int
    decode_tp: int
    decode_pp: int
    decode_replicas: int
    decode_max_batch: int
    kv_bytes: float  # KV cache of one prompt, sent from prefill to decode
    kv_link: str  # the link's name in the hardware profile
    kv_link_kind: str  # intra_node | scale_out
    kv_transfer_s: float
    prefill_s: float
    concurrency: float  # live sequences per decode instance
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_s: float  # at the target percentile
    tpot_p50_s: float
    tpot_p95_s: float
    tpot_s: float
    decode_step_1_s: float  # decode step at batch 1: the TPOT floor
    usd_per_hour: float | None
    usd_per_million_tokens: float | None
    meets_slo: bool
    failures: tuple[str, ...] = ()
    ttft_slo_ratio: float = 0.0
    tpot_slo_ratio: float = 0.0
    percentile: float = 0.95  # the quantile of ttft_s and tpot_s: the one the SLOs are checked at
    uncertainty: object = None  # p10-p90 error bars (planner.uncertainty), set by planner.request.capacity

    @property
    def max_batch(self) -> int:
        """The batch one decode instance holds: ServeOption.max_batch's counterpart (what its rows run at)."""
        return self.decode_max_batch

    @property
    def prefill_devices(self) -> int:
        return self.prefill_replicas * self.prefill_tp * self.prefill_pp

    @property
    def decode_devices(self) -> int:
        return self.decode_replicas * self.decode_tp * self.decode_pp

    @property
    def devices(self) -> int:
        return self.prefill_devices + self.decode_devices

    @property
    def badness(self) -> float:
        return max(self.ttft_slo_ratio, self.tpot_slo_ratio)

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            **({"engine": self.engine} if self.engine else {}),
            "weights": self.weights,
            "activations": self.activations,
            "kv": self.kv,
            "devices": self.devices,
            "prefill": {"tp": self.prefill_tp, "pp": self.prefill_pp, "replicas": self.prefill_replicas,
                        "devices": self.prefill_devices, "prefill_s": self.prefill_s},
            "decode": {"tp": self.decode_tp, "pp": self.decode_pp, "replicas": self.decode_replicas,
                       "devices": self.decode_devices, "max_batch": self.decode_max_batch,
                       "concurrency": self.concurrency, "step_batch1_s": self.decode_step_1_s},
            "kv_transfer": {"bytes": self.kv_bytes, "link": self.kv_link, "link_kind": self.kv_link_kind,
                            "seconds": self.kv_transfer_s},
            **slo_figures(self),
            "uncertainty": self.uncertainty.to_dict() if self.uncertainty is not None else None,
        }


def prompt_kv_bytes(rep: Any, prompt: int, gen: int) -> float:
    """KV cache of one prompt (whole model): the cost model's per-sequence KV (prompt + gen
    tokens, at the KV format) scaled to the prompt's tokens by the architecture's layout of
    windows (a sliding window keeps at most its width)."""
    arch = rep.arch
    total = arch.kv_cache_bytes(prompt + gen)
    return rep.kv_seq_bytes * arch.kv_cache_bytes(prompt) / total if total > 0 else 0.0


def kv_link_for(device: DeviceSpec, n_prefill: int, n_decode: int, mode: str) -> tuple[Any, str]:
    """(link, kind) the KV cache crosses between a prefill and a decode instance; link is
    None when the hardware has no such link (or ``intra_node`` is asked for and the two
    instances do not fit in one node)."""
    same_node = n_prefill + n_decode <= max(device.devices_per_node, 1)
    if mode == "intra_node" or (mode == "auto" and same_node and device.intra_node_link is not None):
        return (device.intra_node_link if same_node else None), "intra_node"
    return device.inter_node_link, "scale_out"


def transfer_s(link: Any, kv_bytes: float, n_prefill: int, n_decode: int) -> float:
    """One prompt's KV transfer: every device of the smaller instance moves its shard at once, each to
    one peer (over one link of a mesh such as MI300X's xGMI, :attr:`hwmodels.Link.p2p_bandwidth_bytes_per_s`)."""
    return link.p2p_time_s(kv_bytes / max(1, min(n_prefill, n_decode)))


def _least(ok: Callable[[int], bool], r_max: int) -> int | None:
    """Smallest r in [1, r_max] with ok(r) (ok is monotone in r); None when not even r_max."""
    if r_max < 1 or not ok(r_max):
        return None
    lo, hi = 0, r_max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _prefill_ttft(rep: Any, lam: float, t_x: float, q: float) -> float:
    rho, rho_x = lam * rep.prefill_s, lam * t_x
    if rho >= 1.0 or rho_x >= 1.0:
        return math.inf
    w, wx = md1_mean_wait_s(lam, rep.prefill_s), md1_mean_wait_s(lam, t_x)
    return wait_quantile_s(w, rho, q) + rep.prefill_s + wait_quantile_s(wx, rho_x, q) + t_x


@dataclass(frozen=True, slots=True)
class _Ctx:
    task: Any
    qps: float
    p: float

    @property
    def target(self) -> Any:
        return self.task.target


def _decode_queue(ctx: _Ctx, rep: Any, r: int) -> Any:
    return continuous_batching(ctx.qps / r, 0.0, rep.curve, ctx.target.gen, rep.max_batch, ctx.p)


def _option(ctx: _Ctx, pre: Any, r_p: int, dec: Any, r_d: int, link: Any, kind: str, kv_bytes: float) -> DisaggOption:
    from planner.capacity_model import _fleet_cost, _slo_failures

    target, device = ctx.target, ctx.task.device
    n_p, n_d = pre.tp * pre.pp, dec.tp * dec.pp
    t_x = transfer_s(link, kv_bytes, n_p, n_d)
    lam_p = ctx.qps / r_p
    ttft = {q: _prefill_ttft(pre, lam_p, t_x, q) for q in (0.5, 0.95, ctx.p)}
    dq = _decode_queue(ctx, dec, r_d)
    failures = []
    if math.isinf(ttft[ctx.p]):
        failures.append(f"prefill (or its KV transfer) needs {times(lam_p * max(pre.prefill_s, t_x))} each prefill "
                        "instance's time")
    if not dq.stable:
        failures.append("decode: " + dq.reason)
    if not failures:
        failures += _slo_failures(ttft[ctx.p], dq.tpot_quantile_s, target, ctx.p)
    usd_h, usd_m = _fleet_cost(device, r_p * n_p + r_d * n_d, ctx.qps * target.gen,
                               served=dq.stable and not math.isinf(ttft[ctx.p]))
    return DisaggOption(
        hardware=device.id, engine=ctx.task.engine, weights=pre.choice.weights, activations=pre.choice.activations,
        kv=pre.choice.kv, prefill_tp=pre.tp, prefill_pp=pre.pp, prefill_replicas=r_p, decode_tp=dec.tp,
        decode_pp=dec.pp, decode_replicas=r_d, decode_max_batch=dec.max_batch, kv_bytes=kv_bytes, kv_link=link.name,
        kv_link_kind=kind, kv_transfer_s=t_x, prefill_s=pre.prefill_s, concurrency=dq.concurrency,
        ttft_p50_s=ttft[0.5], ttft_p95_s=ttft[0.95], ttft_s=ttft[ctx.p], tpot_p50_s=dq.tpot_p50_s,
        tpot_p95_s=dq.tpot_p95_s, tpot_s=dq.tpot_quantile_s, decode_step_1_s=dec.curve(1.0), usd_per_hour=usd_h,
        usd_per_million_tokens=usd_m, meets_slo=not failures, failures=tuple(failures),
        ttft_slo_ratio=ttft[ctx.p] / target.ttft_slo_s, tpot_slo_ratio=dq.tpot_quantile_s / target.tpot_slo_s,
        percentile=ctx.p)


def _decode_pools(ctx: _Ctx, reps: list, max_devices: int) -> dict[int, int | None]:
    """Fewest decode instances meeting the TPOT SLO, per layout (index into ``reps``)."""
    slo = ctx.target.tpot_slo_s

    def ok(rep: Any, r: int) -> bool:
        q = _decode_queue(ctx, rep, r)
        return q.stable and q.tpot_quantile_s <= slo

    return {i: _least(lambda r, rep=rep: ok(rep, r), max_devices // (rep.tp * rep.pp)) for i, rep in enumerate(reps)}


def search_disaggregated(reps: list, task: Any, qps: float) -> tuple[DisaggOption | None, DisaggOption | None]:
    """(fewest-devices prefill / decode pools meeting both SLOs, closest pools when none do)
    over every prefill layout × decode layout of ``reps`` (``planner.capacity`` replicas of
    one model on one hardware)."""
    if not reps or not reps[0].arch.kv_bytes_per_token():
        return None, None
    target, search, device = task.target, task.search, task.device
    ctx = _Ctx(task, qps, target.percentile)
    kv_bytes = prompt_kv_bytes(reps[0], target.prompt, target.gen)
    mode = getattr(search, "kv_link", "auto")
    dec_r = _decode_pools(ctx, reps, search.max_devices)
    best: DisaggOption | None = None
    pairs = []
    for pre in reps:
        n_p = pre.tp * pre.pp
        for j, dec in enumerate(reps):
            n_d = dec.tp * dec.pp
            link, kind = kv_link_for(device, n_p, n_d, mode)
            if link is None:
                continue
            pairs.append((pre, dec, link, kind))
            if dec_r[j] is None:
                continue
            t_x = transfer_s(link, kv_bytes, n_p, n_d)
            room = search.max_devices - dec_r[j] * n_d
            r_p = _least(lambda r, pre=pre, t_x=t_x: _prefill_ttft(pre, qps / r, t_x, ctx.p) <= target.ttft_slo_s,
                         room // n_p)
            if r_p is None:
                continue
            o = _option(ctx, pre, r_p, dec, dec_r[j], link, kind, kv_bytes)
            if o.meets_slo and (best is None or (o.devices, o.usd_per_hour or 0.0, o.ttft_s)
                                < (best.devices, best.usd_per_hour or 0.0, best.ttft_s)):
                best = o
    if best is not None or not pairs:
        return best, None
    closest = None
    for pre, dec, link, kind in pairs:  # half the device budget to each pool
        half = max(1, search.max_devices // 2)
        o = _option(ctx, pre, max(1, half // (pre.tp * pre.pp)), dec, max(1, half // (dec.tp * dec.pp)), link, kind,
                    kv_bytes)
        if closest is None or o.badness < closest.badness:
            closest = o
    return None, closest


def no_pools_reason(reps: list, task: Any) -> str:
    """Why :func:`search_disaggregated` found no prefill / decode pools at all, not even a
    closest miss ("" when it can form some): no layout fits, no KV cache to hand over, or no
    link between a prefill and a decode instance."""
    device, arch = task.device, task.archs[0]
    if not reps:
        return f"{arch.id} fits no layout of {device.id} within the device limits, so no prefill or decode pool can be formed"
    if not reps[0].arch.kv_bytes_per_token():
        return f"{arch.id} keeps no KV cache: there is nothing to send from a prefill to a decode pool"
    mode = getattr(task.search, "kv_link", "auto")
    if any(kv_link_for(device, p.tp * p.pp, d.tp * d.pp, mode)[0] is not None for p in reps for d in reps):
        return ""
    dpn = max(device.devices_per_node, 1)
    if dpn <= 1:
        inside = "it has one device per node"
    elif device.intra_node_link is None:
        inside = "its profile has no link between the devices of a node"
    else:
        inside = f"no prefill and decode instance fit together in one node of {dpn} devices"
    if mode == "intra_node":
        return f"the KV cache cannot stay within one node of {device.id} ({inside}) and kv_link is intra_node"
    if mode == "scale_out":
        return f"{device.id} has no scale-out network in its profile to send the KV cache over (kv_link scale_out)"
    return (f"{device.id} has no link to send the KV cache from a prefill to a decode instance: {inside} and its "
            "profile has no scale-out network")


def compare(disagg: DisaggOption | None, aggregated: Any) -> dict:
    """The disaggregated answer against the aggregated one on the same hardware and engine."""
    def usd(o: Any) -> float | None:
        return None if o is None else o.usd_per_hour

    out: dict[str, Any] = {
        "aggregated_devices": None if aggregated is None else aggregated.devices,
        "disaggregated_devices": None if disagg is None else disagg.devices,
        "aggregated_usd_per_hour": usd(aggregated),
        "disaggregated_usd_per_hour": usd(disagg),
    }
    if disagg is None and aggregated is None:
        out["winner"] = None
    elif disagg is None or aggregated is None:
        out["winner"] = "aggregated" if disagg is None else "disaggregated"
    else:
        out["devices_saved"] = aggregated.devices - disagg.devices
        a, d = (aggregated.usd_per_hour or 0.0, aggregated.devices), (disagg.usd_per_hour or 0.0, disagg.devices)
        out["winner"] = "tie" if a == d else ("disaggregated" if d < a else "aggregated")
    return out
