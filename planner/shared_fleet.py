"""Several models on one fleet (composition of experts, fine-tuned variants): the shared-fleet
search of :mod:`planner.capacity` (see its docstring and docs/capacity.md).

Each replica keeps the most requested models resident in device memory (the hot set) plus
one swap slot, and the rest in the slower tier (GPU host memory, SN40L DDR). A request for
a cold model waits for its weights to be switched in; switches queue on the slow-tier link
as an M/G/1 server. Decode iterations run one batch per live model, so the iteration time
is the sum of the models' step times.
"""

from __future__ import annotations

import math

from hwmodels import DeviceSpec
from planner.capacity_model import (
    ServeOption,
    ServeTask,
    _fleet_cost,
    _min_replicas,
    _replica,
    _Replica,
    _serve_layouts,
    _settings,
    _slo_failures,
)
from planner.costmodel import Choice, EstimateError
from planner.deadline import Deadline
from planner.queueing import md1_mean_wait_s, poisson_quantile, times, wait_quantile_s

__all__ = ["run_shared"]


def run_shared(task: ServeTask, choice: Choice, deadline: Deadline) -> tuple[ServeOption | None, ServeOption | None]:
    device, target, search = task.device, task.target, task.search
    # Most requested first; among equally requested models the largest leads (its layouts are searched and the KV
    # room is what is left beside it), then by id: the order --models lists them in changes nothing.
    order = sorted(range(len(task.archs)), key=lambda i: (-target.mix[i], -task.archs[i].param_count(), task.archs[i].id))
    best: ServeOption | None = None
    closest: ServeOption | None = None
    lead = task.archs[order[0]]
    options = [_settings(task, search, a) for a in task.archs]  # each model as its exported program runs
    for tp, pp in _serve_layouts(lead, device, search, tp_ok=task.tp_ok, pp_ok=task.pp_ok):
        deadline.check("the capacity search")
        reps = []
        for i in order:
            try:
                rep = _replica(task.archs[i], device, tp, pp, choice, target, search, options[i])
            except EstimateError:
                rep = None
            reps.append(rep)
        if any(r is None for r in reps):
            continue
        plan = _hot_cold(reps, device, search.kv_reserve)
        if plan is None:
            continue
        hot, cold, kv_batch = plan
        r_max = max(1, search.max_devices // (tp * pp))

        def evaluate(r: int, reps=reps, hot=hot, cold=cold, kv_batch=kv_batch) -> ServeOption:
            return _shared_option(task, reps, order, hot, cold, kv_batch, r)

        ok, at_max = _min_replicas(evaluate, r_max)
        if ok is not None and (best is None or (ok.devices, ok.ttft_s) < (best.devices, best.ttft_s)):
            best = ok
        if ok is None and (closest is None or at_max.badness < closest.badness):
            closest = at_max
    return best, closest


def _hot_cold(reps: list[_Replica], device: DeviceSpec, kv_reserve: float) -> tuple[list[int], list[int], int] | None:
    """Hot set (indices into ``reps``, most requested first) that fits the device tier with
    one swap slot for the cold models and room for KV; None when not even one model fits
    or the cold models do not fit the slow tier."""
    cap = device.memory_capacity_bytes
    lead = reps[0]
    # KV room: what the most requested model's max batch uses beyond its weights
    kv_room = max(0.0, cap - lead.weights_per_device)
    hot: list[int] = []
    used = 0.0
    for i, rep in enumerate(reps):
        rest = [r.weights_per_device for j, r in enumerate(reps) if j > i]
        slot = max(rest) if rest else 0.0
        if used + rep.weights_per_device + slot <= cap - kv_reserve * kv_room:
            hot.append(i)
            used += rep.weights_per_device
        else:
            break
    if not hot:
        return None
    cold = [i for i in range(len(reps)) if i not in hot]
    if cold:
        slow = [t for t in device.tiers if t.role in ("device_ext", "host")]
        if not slow or sum(reps[i].weights_per_device for i in cold) > slow[0].capacity_bytes:
            return None
        used += max(reps[i].weights_per_device for i in cold)
    free = max(0.0, cap - used)
    # sequences the remaining memory holds, scaled from the lead model's max batch
    per_seq = kv_room / max(lead.max_batch, 1)
    kv_batch = int(free // per_seq) if per_seq > 0 else lead.max_batch
    if kv_batch < 1:
        return None
    return hot, cold, kv_batch


def _shared_concurrency(reps: list[_Replica], lam: list[float], g: int, rho: float, kv_batch: int,
                        failures: list[str]) -> tuple[list[float], float]:
    """Live sequences per model and the decode step time of one replica (fixed point of
    Little's law over the summed step time), or a failure when the KV cache cannot hold them."""
    n = [0.0] * len(reps)
    step = math.inf
    if rho >= 1.0:
        failures.append(f"prefill of all models needs {times(rho)} each replica's time")
        return n, step
    for _ in range(200):
        step = sum(reps[k].curve(max(n[k], 1.0)) for k in range(len(reps)) if lam[k] > 0)
        nxt = [lam[k] * g * step / (1.0 - rho) for k in range(len(reps))]
        if sum(nxt) > kv_batch * 1.000001:
            failures.append(f"needs more than {kv_batch} live sequences (the KV cache left beside the resident models)")
            break
        if max(abs(a - b) for a, b in zip(nxt, n)) <= 1e-9 * max(1.0, sum(n)):
            n = nxt
            break
        n = nxt
    return n, step


def _switch_load(reps: list[_Replica], lam: list[float], cold: list[int], failures: list[str]) -> tuple[float, float, float]:
    """(switch-in rate, second moment of the switch time, link utilisation) for the cold
    models: an M/G/1 server on the slow-tier link."""
    lam_cold = sum(lam[k] for k in cold)
    sw_mean = sw_m2 = 0.0
    lam_sw = 0.0
    for k in cold:
        share = lam[k] / lam_cold if lam_cold else 0.0
        rate = lam[k] * (1.0 - share)  # the slot already holds this model with prob ``share``
        lam_sw += rate
        sw_mean += rate * reps[k].switch_s
        sw_m2 += rate * reps[k].switch_s**2
    rho_sw = sw_mean  # Σ λ_k·S_k
    if lam_sw > 0:
        sw_m2 /= lam_sw
    if rho_sw >= 1.0:
        failures.append(f"switching cold models in needs {times(rho_sw)} the slow-tier link's time")
    return lam_sw, sw_m2, rho_sw


def _shared_option(task: ServeTask, reps: list[_Replica], order: list[int], hot: list[int], cold: list[int], kv_batch: int, r: int) -> ServeOption:
    device, target = task.device, task.target
    lam = [target.qps * target.mix[order[k]] / r for k in range(len(reps))]
    g = target.gen
    rho = sum(lam[k] * reps[k].prefill_s for k in range(len(reps)))
    failures: list[str] = []
    n, step = _shared_concurrency(reps, lam, g, rho, kv_batch, failures)
    lam_sw, sw_m2, rho_sw = _switch_load(reps, lam, cold, failures)
    p = target.percentile
    inf = math.inf
    if failures:
        ttft50 = ttft95 = ttftq = tpot50 = tpot95 = tpotq = inf
        switch_q = inf
    else:
        wait = md1_mean_wait_s(sum(lam), sum(lam[k] * reps[k].prefill_s for k in range(len(reps))) / sum(lam))
        w_sw = lam_sw * sw_m2 / (2.0 * (1.0 - rho_sw)) if lam_sw > 0 else 0.0

        def ttft_of(k: int, q: float) -> float:
            base = wait_quantile_s(wait, rho, q) + q * step + reps[k].prefill_s
            if k in cold:
                base += wait_quantile_s(w_sw, rho_sw, q) + reps[k].switch_s
            return base

        def tpot_of(q: float) -> float:
            tau_eff = step / (1.0 - rho)
            kq = poisson_quantile(sum(lam) * g * tau_eff, q)
            worst_pf = max(rep.prefill_s for rep in reps)
            return step + kq * worst_pf / g

        ttft50 = max(ttft_of(k, 0.5) for k in range(len(reps)))
        ttft95 = max(ttft_of(k, 0.95) for k in range(len(reps)))
        ttftq = max(ttft_of(k, p) for k in range(len(reps)))
        tpot50, tpot95, tpotq = tpot_of(0.5), tpot_of(0.95), tpot_of(p)
        switch_q = max((reps[k].switch_s for k in cold), default=0.0)
        failures += _slo_failures(ttftq, tpotq, target, p)
    lead = reps[0]
    usd_h, usd_m = _fleet_cost(device, r * lead.tp * lead.pp, target.qps * g, served=math.isfinite(tpotq))
    names = tuple(task.archs[i].id for i in order)
    opt = ServeOption(
        hardware=device.id,
        models=names,
        weights=lead.choice.weights,
        activations=lead.choice.activations,
        kv=lead.choice.kv,
        tp=lead.tp,
        pp=lead.pp,
        replicas=r,
        max_batch=kv_batch,
        concurrency=sum(n) if not failures or math.isfinite(sum(n)) else inf,
        prefill_s=max(rep.prefill_s for rep in reps),
        ttft_p50_s=ttft50,
        ttft_p95_s=ttft95,
        ttft_s=ttftq,
        tpot_p50_s=tpot50,
        tpot_p95_s=tpot95,
        tpot_s=tpotq,
        usd_per_hour=usd_h,
        usd_per_million_tokens=usd_m,
        meets_slo=not failures,
        failures=tuple(failures),
        hot_models=tuple(names[k] for k in hot),
        cold_models=tuple(names[k] for k in cold),
        switch_s=switch_q,
        engine=task.engine,
        runtime=task.launch,
        ttft_slo_ratio=ttftq / target.ttft_slo_s,
        tpot_slo_ratio=tpotq / target.tpot_slo_s,
        percentile=target.percentile,
    )
    return opt


