"""Capacity planning: how many devices of which hardware serve a load within latency SLOs,
or train a model on a token budget within a deadline, at least cost. Pure functions.

Searches are split into independent tasks (one per hardware × weight format for serving,
one per layout family for training) so that a caller can run them in a process pool or
on a Ray cluster: ``*_tasks`` builds them, ``run_*_task`` (module-level, picklable) runs
one, ``summarize_*`` combines the results. ``plan_serving`` / ``plan_training`` do all
three with the builtin ``map``.

Serving (see :mod:`planner.queueing` for the queueing model): for each hardware, weight
format and model-parallel layout (TP inside a node × PP), the cost model gives the
prefill time of one prompt, the decode step time at each batch size and the largest
batch whose KV cache fits; replicas are added until the per-replica load meets both SLOs
at the requested percentile. The answer per hardware is the configuration with the fewest
devices (then the lowest TTFT); hardware is ranked by USD per hour, cheapest first.

Several models on one fleet (composition of experts, fine-tuned variants): each replica
keeps the most requested models resident in device memory (the hot set) plus one swap
slot, and the rest in the slower tier (GPU host memory, SN40L DDR). A request for a cold
model waits for its weights to be switched in (resident bytes per device / slow-tier
bandwidth, as the cost model's ``switch_in_s``); switches queue on the slow-tier link as an
M/G/1 server. Decode iterations run one batch per live model, so the iteration time is
the sum of the models' step times. The fleet is compared with hosting each model on its
own replicas.

Training capacity lives in :mod:`planner.training_capacity` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.errors import InfeasibleError
from planner.costmodel import Choice, EstimateError, Layout, RuntimeSettings, Serving, estimate_inference, max_batch
from planner.deadline import Deadline, DeadlineExceeded
from planner.layout import num_layers
from planner.training_capacity import (  # training capacity, re-exported here
    TrainAnswer,
    TrainOption,
    TrainTarget,
    TrainTask,
    _check,
    device_grid,
    plan_training,
    run_train_task,
    summarize_train,
    train_infeasible_message,
    train_tasks,
)
from planner.queueing import DecodeCurve, ReplicaQueue, continuous_batching, md1_mean_wait_s, poisson_quantile, wait_quantile_s

DEFAULT_FORMATS: tuple[str, ...] = ("bf16", "fp8", "int4-g128")


# ---------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeTarget:
    """Offered load and SLOs. ``mix``: share of the QPS per model (sums to 1)."""

    qps: float
    prompt: int
    gen: int
    ttft_slo_s: float
    tpot_slo_s: float
    percentile: float = 0.95
    mix: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        _check(self.qps > 0 and math.isfinite(self.qps), "qps", f"--qps must be a positive number; got {self.qps!r}")
        _check(isinstance(self.prompt, int) and self.prompt >= 1, "prompt", f"--prompt must be a positive integer; got {self.prompt!r}")
        _check(isinstance(self.gen, int) and self.gen >= 1, "gen", f"--gen must be a positive integer; got {self.gen!r}")
        _check(self.ttft_slo_s > 0, "ttft_slo", f"--ttft-slo must be a positive number of seconds; got {self.ttft_slo_s!r}")
        _check(self.tpot_slo_s > 0, "tpot_slo", f"--tpot-slo must be a positive number of seconds; got {self.tpot_slo_s!r}")
        _check(0.5 <= self.percentile < 1.0, "percentile", f"--percentile must be in [50, 100); got {100 * self.percentile:g}")
        _check(len(self.mix) >= 1 and all(m > 0 for m in self.mix), "mix", f"--mix must be positive shares; got {self.mix!r}")
        _check(abs(sum(self.mix) - 1.0) < 1e-6, "mix", f"--mix shares must sum to 1; they sum to {sum(self.mix):g}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeSearch:
    """What the serving search may choose."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    kv: str = "bf16"
    max_devices: int = 1024
    max_pp: int = 4
    runtime: str = "graph"
    # Several models on one fleet: share of the KV room the most requested model alone would
    # have that stays reserved for KV when the hot set is chosen (the rest may hold more
    # resident models); the queueing check then verifies that the batch left suffices.
    kv_reserve: float = 0.25

    def __post_init__(self) -> None:
        _check(0.0 <= self.kv_reserve < 1.0, "kv_reserve", f"kv_reserve must be in [0, 1); got {self.kv_reserve!r}")
        _check(len(self.formats) >= 1, "formats", "--formats needs at least one weight format")
        _check(isinstance(self.max_devices, int) and self.max_devices >= 1, "max_devices", f"--max-devices must be a positive integer; got {self.max_devices!r}")
        _check(isinstance(self.max_pp, int) and self.max_pp >= 1, "max_pp", f"--max-pp must be a positive integer; got {self.max_pp!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOption:
    """One evaluated serving configuration (whether or not it meets the SLOs)."""

    hardware: str
    models: tuple[str, ...]
    weights: str
    activations: str
    kv: str
    tp: int
    pp: int
    replicas: int
    max_batch: int
    concurrency: float
    prefill_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_s: float  # at the target percentile
    tpot_p50_s: float
    tpot_p95_s: float
    tpot_s: float
    usd_per_hour: float | None
    usd_per_million_tokens: float | None
    meets_slo: bool
    failures: tuple[str, ...] = ()
    hot_models: tuple[str, ...] = ()
    cold_models: tuple[str, ...] = ()
    switch_s: float = 0.0

    @property
    def devices(self) -> int:
        return self.replicas * self.tp * self.pp

    ttft_slo_ratio: float = 0.0  # ttft_s / SLO
    tpot_slo_ratio: float = 0.0
    uncertainty: object = None  # p10-p90 error bars (planner.uncertainty), set by planner.request.capacity

    @property
    def badness(self) -> float:
        """How far the worse of the two SLOs is exceeded (≤ 1 when both are met)."""
        return max(self.ttft_slo_ratio, self.tpot_slo_ratio)

    def to_dict(self) -> dict:
        d = {
            "hardware": self.hardware,
            "models": list(self.models),
            "weights": self.weights,
            "activations": self.activations,
            "kv": self.kv,
            "tp": self.tp,
            "pp": self.pp,
            "replicas": self.replicas,
            "devices": self.devices,
            "max_batch": self.max_batch,
            "concurrency": self.concurrency,
            "prefill_s": self.prefill_s,
            "ttft_p50_s": self.ttft_p50_s,
            "ttft_p95_s": self.ttft_p95_s,
            "ttft_s": self.ttft_s,
            "tpot_p50_s": self.tpot_p50_s,
            "tpot_p95_s": self.tpot_p95_s,
            "tpot_s": self.tpot_s,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "meets_slo": self.meets_slo,
            "failures": list(self.failures),
            "uncertainty": self.uncertainty.to_dict() if self.uncertainty is not None else None,
        }
        if len(self.models) > 1:
            d.update({"hot_models": list(self.hot_models), "cold_models": list(self.cold_models), "switch_s": self.switch_s})
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeTask:
    archs: tuple[ArchSpec, ...]
    device: DeviceSpec
    target: ServeTarget
    search: ServeSearch
    weights: str
    shared: bool = True  # several models: one shared fleet (False: the model alone at its share)


def _activation_for(device: DeviceSpec, weights: str) -> str:
    """Compute precision for a weight format: FP8 weights run W8A8 on FP8 units when the
    device has them natively; everything else computes in bf16 (fp16 where bf16 is not
    native, e.g. V100/T4)."""
    if weights.startswith("fp8") and device.supports("fp8") == "native":
        return "fp8"
    return "bf16" if device.supports("bf16") == "native" else "fp16"


def _serve_layouts(arch: ArchSpec, device: DeviceSpec, search: ServeSearch) -> list[tuple[int, int]]:
    out = []
    g = max(device.devices_per_node, 1)
    layers = num_layers(arch)
    tps = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= g and (arch.family == "cnn" and t == 1 or arch.family != "cnn" and arch.num_heads % t == 0)]
    for tp in tps:
        for pp in (1, 2, 4, 8, 16):
            if pp > search.max_pp or pp > layers or tp * pp > search.max_devices:
                continue
            out.append((tp, pp))
    return out


@dataclass(frozen=True, slots=True)
class _Replica:
    """What one replica of a layout can do for one model."""

    arch: ArchSpec
    choice: Choice
    tp: int
    pp: int
    max_batch: int
    prefill_s: float
    curve: DecodeCurve
    weights_per_device: float
    switch_s: float
    usd_per_hour: float | None


def _replica(arch: ArchSpec, device: DeviceSpec, tp: int, pp: int, choice: Choice, target: ServeTarget, search: ServeSearch) -> _Replica | None:
    layout = Layout(tp=tp, pp=pp)
    serving = Serving(batch=1, prompt=target.prompt, gen=target.gen)
    options = RuntimeSettings(runtime=search.runtime)
    try:
        b_max = max_batch(arch, device, layout, serving, choice, options=options, limit=4096)
    except EstimateError:
        return None
    if b_max < 1:
        return None
    one = estimate_inference(arch, device, layout, serving, choice, options=options)
    sizes = sorted({1, *[2**k for k in range(1, 13) if 2**k < b_max], b_max})
    steps = []
    for n in sizes:
        est = one if n == 1 else estimate_inference(arch, device, layout, Serving(batch=n, prompt=target.prompt, gen=target.gen), choice, options=options)
        steps.append(est.tpot_s)
    return _Replica(
        arch=arch,
        choice=choice,
        tp=tp,
        pp=pp,
        max_batch=b_max,
        prefill_s=one.ttft_s,
        curve=DecodeCurve(batches=tuple(sizes), step_s=tuple(steps)),
        weights_per_device=one.memory.weights_bytes / (tp * pp),
        switch_s=one.switch_in_s or 0.0,
        usd_per_hour=one.usd_per_hour,
    )


def _slo_failures(ttft_s: float, tpot_s: float, target: ServeTarget, percentile: float) -> list[str]:
    """Which SLOs the predicted quantiles miss, and by how much."""
    pct = f"p{round(100 * percentile)}"
    out = []
    if ttft_s > target.ttft_slo_s:
        out.append(f"TTFT {pct} {ttft_s:.3g} s exceeds the {target.ttft_slo_s:g} s SLO by {100 * (ttft_s / target.ttft_slo_s - 1):.0f}%")
    if tpot_s > target.tpot_slo_s:
        out.append(f"TPOT {pct} {tpot_s:.3g} s exceeds the {target.tpot_slo_s:g} s SLO by {100 * (tpot_s / target.tpot_slo_s - 1):.0f}%")
    return out


def _fleet_cost(device: DeviceSpec, devices: int, tokens_per_s: float) -> tuple[float | None, float | None]:
    """(USD per hour, USD per million generated tokens) of ``devices`` devices; None without a price."""
    if device.usd_per_hour is None:
        return None, None
    usd_h = device.usd_per_hour * devices
    return usd_h, (usd_h / 3600.0 / tokens_per_s * 1e6 if tokens_per_s > 0 else None)


def _option_from_queue(rep: _Replica, device: DeviceSpec, target: ServeTarget, replicas: int, q: ReplicaQueue, models: tuple[str, ...], qps: float) -> ServeOption:
    failures = []
    if not q.stable:
        failures.append(q.reason)
    if q.stable:
        failures += _slo_failures(q.ttft_quantile_s, q.tpot_quantile_s, target, target.percentile)
    usd_h, usd_m = _fleet_cost(device, replicas * rep.tp * rep.pp, qps * target.gen)
    opt = ServeOption(
        hardware=device.id,
        models=models,
        weights=rep.choice.weights,
        activations=rep.choice.activations,
        kv=rep.choice.kv,
        tp=rep.tp,
        pp=rep.pp,
        replicas=replicas,
        max_batch=rep.max_batch,
        concurrency=q.concurrency,
        prefill_s=rep.prefill_s,
        ttft_p50_s=q.ttft_p50_s,
        ttft_p95_s=q.ttft_p95_s,
        ttft_s=q.ttft_quantile_s,
        tpot_p50_s=q.tpot_p50_s,
        tpot_p95_s=q.tpot_p95_s,
        tpot_s=q.tpot_quantile_s,
        usd_per_hour=usd_h,
        usd_per_million_tokens=usd_m,
        meets_slo=not failures,
        failures=tuple(failures),
        ttft_slo_ratio=q.ttft_quantile_s / target.ttft_slo_s,
        tpot_slo_ratio=q.tpot_quantile_s / target.tpot_slo_s,
    )
    return opt


def _min_replicas(evaluate: Callable[[int], ServeOption], r_max: int) -> tuple[ServeOption | None, ServeOption]:
    """Smallest replica count that meets the SLOs (metrics only improve as replicas are
    added, so a bisection finds it); also the option at ``r_max`` (the best reachable)."""
    at_max = evaluate(r_max)
    if not at_max.meets_slo:
        return None, at_max
    lo, hi = 0, r_max  # evaluate(lo) fails (or lo = 0), evaluate(hi) passes
    best = at_max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        o = evaluate(mid)
        if o.meets_slo:
            hi, best = mid, o
        else:
            lo = mid
    return best, at_max


def run_serve_task(task: ServeTask, deadline: Deadline | None = None) -> tuple[ServeOption | None, ServeOption | None]:
    """(fewest-devices option meeting the SLOs, best option that does not) for one
    hardware and weight format; either may be None. ``deadline`` is checked before each
    layout (:class:`~planner.deadline.DeadlineExceeded` / ``Cancelled`` when it is up)."""
    deadline = deadline or Deadline.unbounded()
    device, target, search = task.device, task.target, task.search
    if device.supports(task.weights) == "unsupported":
        return None, None
    choice = Choice(weights=task.weights, activations=_activation_for(device, task.weights), kv=search.kv)
    best: ServeOption | None = None
    closest: ServeOption | None = None
    if len(task.archs) == 1 or not task.shared:
        arch = task.archs[0]
        share = target.mix[0] if len(target.mix) == len(task.archs) and len(task.archs) == 1 else 1.0
        qps = target.qps * share
        models = (arch.id,)
        for tp, pp in _serve_layouts(arch, device, search):
            deadline.check("the capacity search")
            try:
                rep = _replica(arch, device, tp, pp, choice, target, search)
            except EstimateError:
                continue
            if rep is None:
                continue
            r_max = max(1, search.max_devices // (tp * pp))

            def evaluate(r: int, rep: _Replica = rep) -> ServeOption:
                q = continuous_batching(qps / r, rep.prefill_s, rep.curve, target.gen, rep.max_batch, target.percentile)
                return _option_from_queue(rep, device, target, r, q, models, qps)

            ok, at_max = _min_replicas(evaluate, r_max)
            if ok is not None and (best is None or (ok.devices, ok.ttft_s) < (best.devices, best.ttft_s)):
                best = ok
            if ok is None and (closest is None or at_max.badness < closest.badness):
                closest = at_max
        return best, closest
    return _run_shared(task, choice, deadline)


# ---- several models on one fleet ------------------------------------------------------


def _run_shared(task: ServeTask, choice: Choice, deadline: Deadline) -> tuple[ServeOption | None, ServeOption | None]:
    device, target, search = task.device, task.target, task.search
    order = sorted(range(len(task.archs)), key=lambda i: -target.mix[i])
    best: ServeOption | None = None
    closest: ServeOption | None = None
    lead = task.archs[order[0]]
    for tp, pp in _serve_layouts(lead, device, search):
        deadline.check("the capacity search")
        reps = []
        for i in order:
            try:
                rep = _replica(task.archs[i], device, tp, pp, choice, target, search)
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
        failures.append(f"prefill of all models needs {rho:.2f}× each replica's time")
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
        failures.append(f"switching cold models in needs {rho_sw:.2f}× the slow-tier link's time")
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
    usd_h, usd_m = _fleet_cost(device, r * lead.tp * lead.pp, target.qps * g)
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
        ttft_slo_ratio=ttftq / target.ttft_slo_s,
        tpot_slo_ratio=tpotq / target.tpot_slo_s,
    )
    return opt


# ---- task plumbing -----------------------------------------------------------------------


def serve_tasks(archs: Sequence[ArchSpec], devices: Sequence[DeviceSpec], target: ServeTarget, search: ServeSearch = ServeSearch()) -> list[ServeTask]:
    """One task per hardware × weight format (× model when several models are hosted
    separately, for the comparison)."""
    _check(len(archs) >= 1, "model", "--model needs at least one model")
    _check(len(devices) >= 1, "hardware", "--hardware needs at least one hardware id")
    _check(len(target.mix) == len(archs), "mix", f"--mix needs one share per model ({len(archs)}); got {len(target.mix)}")
    tasks = []
    for dev in devices:
        for w in search.formats:
            tasks.append(ServeTask(archs=tuple(archs), device=dev, target=target, search=search, weights=w, shared=True))
            if len(archs) > 1:
                for i, a in enumerate(archs):
                    sub = ServeTarget(
                        qps=target.qps * target.mix[i],
                        prompt=target.prompt,
                        gen=target.gen,
                        ttft_slo_s=target.ttft_slo_s,
                        tpot_slo_s=target.tpot_slo_s,
                        percentile=target.percentile,
                    )
                    tasks.append(ServeTask(archs=(a,), device=dev, target=sub, search=search, weights=w, shared=False))
    return tasks


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareAnswer:
    hardware: str
    best: ServeOption | None
    closest: ServeOption | None
    separate_devices: int | None = None  # several models: each hosted alone, summed
    separate_usd_per_hour: float | None = None

    def to_dict(self) -> dict:
        d = {
            "hardware": self.hardware,
            "meets_slo": self.best is not None,
            "best": self.best.to_dict() if self.best else None,
            "closest": self.closest.to_dict() if (self.best is None and self.closest) else None,
        }
        if self.separate_devices is not None:
            d["separate_devices"] = self.separate_devices
            d["separate_usd_per_hour"] = self.separate_usd_per_hour
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeAnswer:
    target: ServeTarget
    models: tuple[str, ...]
    ranked: tuple[HardwareAnswer, ...]  # feasible first, cheapest first; then infeasible by closeness
    complete: bool = True  # False: the search stopped at its time limit (some configurations not tried)

    @property
    def feasible(self) -> bool:
        return any(h.best is not None for h in self.ranked)

    def to_dict(self) -> dict:
        t = self.target
        return {
            "models": list(self.models),
            "mix": list(t.mix),
            "qps": t.qps,
            "prompt": t.prompt,
            "gen": t.gen,
            "ttft_slo_s": t.ttft_slo_s,
            "tpot_slo_s": t.tpot_slo_s,
            "percentile": t.percentile,
            "feasible": self.feasible,
            "status": "complete" if self.complete else "time_limit",
            "hardware": [h.to_dict() for h in self.ranked],
        }


def _cost_key(o: ServeOption) -> tuple:
    return (o.usd_per_hour if o.usd_per_hour is not None else math.inf, o.devices, o.ttft_s)


def summarize_serve(archs: Sequence[ArchSpec], target: ServeTarget, tasks: Sequence[ServeTask], results: Sequence[tuple[ServeOption | None, ServeOption | None]]) -> ServeAnswer:
    per_hw: dict[str, dict] = {}
    for task, (ok, near) in zip(tasks, results):
        h = per_hw.setdefault(task.device.id, {"best": None, "closest": None, "separate": {}})
        if task.shared:
            if ok is not None and (h["best"] is None or _cost_key(ok) < _cost_key(h["best"])):
                h["best"] = ok
            if near is not None and (h["closest"] is None or near.badness < h["closest"].badness):
                h["closest"] = near
        else:
            m = task.archs[0].id
            cur = h["separate"].get(m)
            if ok is not None and (cur is None or _cost_key(ok) < _cost_key(cur)):
                h["separate"][m] = ok
    answers = []
    for hw, h in per_hw.items():
        sep_dev = sep_usd = None
        if len(archs) > 1:
            seps = h["separate"]
            if len(seps) == len(archs):
                sep_dev = sum(o.devices for o in seps.values())
                usd = [o.usd_per_hour for o in seps.values()]
                sep_usd = sum(usd) if all(u is not None for u in usd) else None
        answers.append(HardwareAnswer(hardware=hw, best=h["best"], closest=h["closest"], separate_devices=sep_dev, separate_usd_per_hour=sep_usd))
    feasible = sorted((a for a in answers if a.best is not None), key=lambda a: _cost_key(a.best))
    rest = sorted((a for a in answers if a.best is None), key=lambda a: a.closest.badness if a.closest else math.inf)
    return ServeAnswer(target=target, models=tuple(a.id for a in archs), ranked=tuple(feasible + rest))


def serve_infeasible_message(ans: ServeAnswer) -> tuple[str, dict]:
    """Reason and the best layout's numbers when no hardware meets the SLOs."""
    near = [h.closest for h in ans.ranked if h.closest is not None]
    if not near:
        return ("the model does not fit any of the hardware at any layout within --max-devices", {})
    o = min(near, key=lambda x: x.badness)
    why = "; ".join(o.failures) or "SLOs not met"
    msg = (
        f"no hardware meets the SLOs at {ans.target.qps:g} QPS; closest: {o.hardware} {o.weights} "
        f"tp={o.tp} pp={o.pp} × {o.replicas} replicas ({o.devices} devices): {why}"
    )
    return msg, o.to_dict()


def plan_serving(
    archs: Sequence[ArchSpec],
    devices: Sequence[DeviceSpec],
    target: ServeTarget,
    search: ServeSearch = ServeSearch(),
    map_fn: Callable[[Callable, Iterable], Iterable] = map,
    deadline: Deadline | None = None,
) -> ServeAnswer:
    """Every hardware × format task; with a ``deadline`` the tasks run here one after the
    other, each checking it between layouts. When the time is up, the answer covers the
    configurations searched so far (``complete=False``); nothing searched yet, or a cancel,
    raises :class:`~planner.deadline.DeadlineExceeded` / ``Cancelled``."""
    tasks = serve_tasks(archs, devices, target, search)
    if deadline is None:
        results = list(map_fn(run_serve_task, tasks))
        return summarize_serve(archs, target, tasks, results)
    done: list[tuple[ServeOption | None, ServeOption | None]] = []
    for task in tasks:
        try:
            done.append(run_serve_task(task, deadline))
        except DeadlineExceeded:
            if not done:
                raise
            break
    ans = summarize_serve(archs, target, tasks[: len(done)], done)
    return ans if len(done) == len(tasks) else replace(ans, complete=False)


__all__ = [
    "DEFAULT_FORMATS",
    "HardwareAnswer",
    "InfeasibleError",
    "ServeAnswer",
    "ServeOption",
    "ServeSearch",
    "ServeTarget",
    "ServeTask",
    "TrainAnswer",
    "TrainOption",
    "TrainTarget",
    "TrainTask",
    "device_grid",
    "plan_serving",
    "plan_training",
    "run_serve_task",
    "run_train_task",
    "serve_infeasible_message",
    "serve_tasks",
    "summarize_serve",
    "summarize_train",
    "train_infeasible_message",
    "train_tasks",
]
