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
from typing import Any, NamedTuple

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
from planner.queueing import DecodeCurve, ReplicaQueue, continuous_batching

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
    # Disaggregated serving: the link the KV cache crosses from prefill to decode
    # (auto: intra-node when a prefill and a decode instance fit in one node, else scale-out).
    kv_link: str = "auto"
    disaggregated: bool = False  # also search separate prefill and decode pools (planner.disagg)

    def __post_init__(self) -> None:
        _check(self.kv_link in ("auto", "intra_node", "scale_out"), "kv_link",
               f"--kv-link must be auto, intra_node or scale_out; got {self.kv_link!r}")
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
    engine: str = ""  # the serving engine priced ("" when the search was given no engine)

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
            **({"engine": self.engine} if self.engine else {}),
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
class EngineSetup:
    """How one serving engine runs on one hardware, as the capacity search prices it
    (built from its profile by :mod:`planner.request.capacity`)."""

    engine: str
    formats: tuple[tuple[str, str], ...]  # (weights, activations) pairs searched
    kv: str
    reserved_bytes: float = 0.0  # runtime context kept outside weights, KV and activations
    runtime: str | None = None  # graph / eager; None: the search's
    tp: bool = True  # the engine shards a replica by tensor parallelism
    pp: bool = True  # ... by pipeline parallelism
    # The engine's kernel and scheduler facts as RuntimeSettings fields (fused attention and
    # elementwise, step overhead, compute unit, prefill chunk, KV memory fraction), as for estimate.
    kernel: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServePair:
    """One (engine, hardware) row of a comparison: its setup, or why the engine does not run there."""

    device: DeviceSpec
    engine: str = ""
    setup: EngineSetup | None = None
    reason: str = ""  # not empty: the pair is not supported, and why


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeTask:
    archs: tuple[ArchSpec, ...]
    device: DeviceSpec
    target: ServeTarget
    search: ServeSearch
    weights: str
    shared: bool = True  # several models: one shared fleet (False: the model alone at its share)
    engine: str = ""
    activations: str | None = None  # None: chosen from the device (_activation_for)
    kv: str | None = None  # None: search.kv
    reserved_bytes: float = 0.0
    runtime: str | None = None  # None: search.runtime
    tp_ok: bool = True
    pp_ok: bool = True
    disaggregated: bool = False  # also search separate prefill and decode pools (planner.disagg)
    kernel: tuple[tuple[str, Any], ...] = ()  # EngineSetup.kernel

    def key(self) -> tuple:
        """What the search's result depends on: tasks of engines that price a hardware the
        same way share one search."""
        return (self.device.id, tuple(a.id for a in self.archs), self.target, self.search, self.weights, self.shared,
                self.activations, self.kv, self.reserved_bytes, self.runtime, self.tp_ok, self.pp_ok,
                self.disaggregated, self.kernel)


class ServeResult(NamedTuple):
    """What one task found: aggregated (fewest devices meeting the SLOs, else the closest)
    and, for a disaggregated task, the same for separate prefill / decode pools."""

    best: ServeOption | None
    closest: ServeOption | None
    disagg: Any = None  # planner.disagg.DisaggOption
    disagg_closest: Any = None


def _activation_for(device: DeviceSpec, weights: str) -> str:
    """Compute precision for a weight format: FP8 weights run W8A8 on FP8 units when the
    device has them natively; everything else computes in bf16 (fp16 where bf16 is not
    native, e.g. V100/T4)."""
    if weights.startswith("fp8") and device.supports("fp8") == "native":
        return "fp8"
    return "bf16" if device.supports("bf16") == "native" else "fp16"


def _serve_layouts(arch: ArchSpec, device: DeviceSpec, search: ServeSearch, *, tp_ok: bool = True,
                   pp_ok: bool = True) -> list[tuple[int, int]]:
    out = []
    g = max(device.devices_per_node, 1) if tp_ok else 1
    layers = num_layers(arch)
    tps = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= g and (arch.family == "cnn" and t == 1 or arch.family != "cnn" and arch.num_heads % t == 0)]
    for tp in tps:
        for pp in (1, 2, 4, 8, 16):
            if pp > search.max_pp or pp > layers or tp * pp > search.max_devices or (pp > 1 and not pp_ok):
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
    kv_seq_bytes: float = 0.0  # KV cache of one sequence (prompt + gen), whole model


def _settings(task: ServeTask | None, search: ServeSearch) -> RuntimeSettings:
    if task is None:
        return RuntimeSettings(runtime=search.runtime)
    return RuntimeSettings(runtime=task.runtime or search.runtime, reserved_bytes=task.reserved_bytes, **dict(task.kernel))


def _replica(arch: ArchSpec, device: DeviceSpec, tp: int, pp: int, choice: Choice, target: ServeTarget, search: ServeSearch,
             options: RuntimeSettings | None = None) -> _Replica | None:
    layout = Layout(tp=tp, pp=pp)
    serving = Serving(batch=1, prompt=target.prompt, gen=target.gen)
    options = options or RuntimeSettings(runtime=search.runtime)
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
        kv_seq_bytes=one.memory.kv_cache_bytes,
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


def task_choice(task: ServeTask) -> Choice:
    """Weights, compute and KV formats a task prices (the engine's, else the device's)."""
    acts = task.activations or _activation_for(task.device, task.weights)
    return Choice(weights=task.weights, activations=acts, kv=task.kv or task.search.kv)


def task_replicas(task: ServeTask, deadline: Deadline | None = None) -> list[_Replica]:
    """What one replica of each layout the task may use can do (its model alone)."""
    deadline = deadline or Deadline.unbounded()
    device, search, arch = task.device, task.search, task.archs[0]
    if device.supports(task.weights) == "unsupported":
        return []
    choice, options = task_choice(task), _settings(task, search)
    reps = []
    for tp, pp in _serve_layouts(arch, device, search, tp_ok=task.tp_ok, pp_ok=task.pp_ok):
        deadline.check("the capacity search")
        try:
            rep = _replica(arch, device, tp, pp, choice, task.target, search, options)
        except EstimateError:
            continue
        if rep is not None:
            reps.append(rep)
    return reps


def run_serve_task(task: ServeTask, deadline: Deadline | None = None) -> ServeResult:
    """(fewest-devices option meeting the SLOs, best option that does not) for one
    hardware and weight format; either may be None; a disaggregated task adds the same for
    separate prefill and decode pools. ``deadline`` is checked before each layout
    (:class:`~planner.deadline.DeadlineExceeded` / ``Cancelled`` when it is up)."""
    deadline = deadline or Deadline.unbounded()
    device, target, search = task.device, task.target, task.search
    if device.supports(task.weights) == "unsupported":
        return ServeResult(None, None)
    if len(task.archs) > 1 and task.shared:
        from planner.shared_fleet import run_shared

        return ServeResult(*run_shared(task, task_choice(task), deadline))
    best: ServeOption | None = None
    closest: ServeOption | None = None
    share = target.mix[0] if len(target.mix) == len(task.archs) and len(task.archs) == 1 else 1.0
    qps = target.qps * share
    models = (task.archs[0].id,)
    reps = task_replicas(task, deadline)
    for rep in reps:
        r_max = max(1, search.max_devices // (rep.tp * rep.pp))

        def evaluate(r: int, rep: _Replica = rep) -> ServeOption:
            q = continuous_batching(qps / r, rep.prefill_s, rep.curve, target.gen, rep.max_batch, target.percentile)
            return replace(_option_from_queue(rep, device, target, r, q, models, qps), engine=task.engine)

        ok, at_max = _min_replicas(evaluate, r_max)
        if ok is not None and (best is None or (ok.devices, ok.ttft_s) < (best.devices, best.ttft_s)):
            best = ok
        if ok is None and (closest is None or at_max.badness < closest.badness):
            closest = at_max
    if not task.disaggregated:
        return ServeResult(best, closest)
    from planner.disagg import search_disaggregated

    d_best, d_closest = search_disaggregated(reps, task, qps)
    return ServeResult(best, closest, d_best, d_closest)


# ---- task plumbing -----------------------------------------------------------------------


def _pair(d: DeviceSpec | ServePair) -> ServePair:
    return d if isinstance(d, ServePair) else ServePair(device=d)


def _sub_target(target: ServeTarget, share: float) -> ServeTarget:
    return ServeTarget(qps=target.qps * share, prompt=target.prompt, gen=target.gen, ttft_slo_s=target.ttft_slo_s,
                       tpot_slo_s=target.tpot_slo_s, percentile=target.percentile)


def serve_tasks(archs: Sequence[ArchSpec], devices: Sequence[DeviceSpec | ServePair], target: ServeTarget,
                search: ServeSearch = ServeSearch()) -> list[ServeTask]:
    """One task per (engine,) hardware × weight format (× model when several models are
    hosted separately, for the comparison). ``devices`` are hardware (priced without an
    engine) or :class:`ServePair` rows; a pair that is not supported gets no task."""
    _check(len(archs) >= 1, "model", "--model needs at least one model")
    _check(len(devices) >= 1, "hardware", "--hardware needs at least one hardware id")
    _check(len(target.mix) == len(archs), "mix", f"--mix needs one share per model ({len(archs)}); got {len(target.mix)}")
    tasks = []
    for pair in map(_pair, devices):
        if pair.reason:
            continue
        setup = pair.setup
        formats = setup.formats if setup else tuple((w, None) for w in search.formats)
        extra = {} if setup is None else dict(engine=pair.engine, kv=setup.kv, reserved_bytes=setup.reserved_bytes,
                                              runtime=setup.runtime, tp_ok=setup.tp, pp_ok=setup.pp, kernel=setup.kernel)
        for w, act in formats:
            common = dict(device=pair.device, search=search, weights=w, activations=act, **extra)
            tasks.append(ServeTask(archs=tuple(archs), target=target, shared=True,
                                   disaggregated=search.disaggregated and len(archs) == 1, **common))
            if len(archs) > 1:
                for i, a in enumerate(archs):
                    tasks.append(ServeTask(archs=(a,), target=_sub_target(target, target.mix[i]), shared=False, **common))
    return tasks


def dedupe_tasks(tasks: Sequence[ServeTask]) -> tuple[list[ServeTask], list[int]]:
    """(the distinct searches, index of each task's search): engines that price a hardware
    alike (same formats, reserved memory, runtime, layouts) share one search."""
    first: dict[tuple, int] = {}
    unique: list[ServeTask] = []
    index = []
    for t in tasks:
        k = t.key()
        if k not in first:
            first[k] = len(unique)
            unique.append(t)
        index.append(first[k])
    return unique, index


def expand_results(tasks: Sequence[ServeTask], index: Sequence[int], results: Sequence[ServeResult]) -> list[ServeResult]:
    """Each task's result from the shared searches', with its own engine named."""
    out = []
    for t, i in zip(tasks, index):
        r = ServeResult(*results[i])
        out.append(ServeResult(*(o if o is None or o.engine == t.engine else replace(o, engine=t.engine) for o in r)))
    return out


def run_serve_tasks(tasks: Sequence[ServeTask], map_fn: Callable[[Callable, Iterable], Iterable] = map) -> list[ServeResult]:
    """Every task's result, each distinct search run once (``map_fn``: builtin map, a pool's map, ...)."""
    unique, index = dedupe_tasks(tasks)
    return expand_results(tasks, index, list(map_fn(run_serve_task, unique)))


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareAnswer:
    hardware: str
    best: ServeOption | None
    closest: ServeOption | None
    separate_devices: int | None = None  # several models: each hosted alone, summed
    separate_usd_per_hour: float | None = None
    engine: str = ""
    disaggregated: bool = False  # separate prefill / decode pools were searched too
    disagg: Any = None  # planner.disagg.DisaggOption meeting the SLOs with the fewest devices
    disagg_closest: Any = None

    @property
    def cheapest(self) -> Any:
        """The cheaper of the aggregated and disaggregated answers meeting the SLOs (None: neither)."""
        opts = [o for o in (self.best, self.disagg) if o is not None]
        return min(opts, key=_cost_key) if opts else None

    def to_dict(self) -> dict:
        d = {
            "hardware": self.hardware,
            **({"engine": self.engine} if self.engine else {}),
            "meets_slo": self.best is not None,
            "best": self.best.to_dict() if self.best else None,
            "closest": self.closest.to_dict() if (self.best is None and self.closest) else None,
        }
        if self.separate_devices is not None:
            d["separate_devices"] = self.separate_devices
            d["separate_usd_per_hour"] = self.separate_usd_per_hour
        if self.disaggregated:
            from planner.disagg import compare

            d["disaggregated"] = {
                "meets_slo": self.disagg is not None,
                "best": self.disagg.to_dict() if self.disagg else None,
                "closest": self.disagg_closest.to_dict() if (self.disagg is None and self.disagg_closest) else None,
                "vs_aggregated": compare(self.disagg, self.best),
            }
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeAnswer:
    target: ServeTarget
    models: tuple[str, ...]
    ranked: tuple[HardwareAnswer, ...]  # feasible first, cheapest first; then infeasible by closeness
    complete: bool = True  # False: the search stopped at its time limit (some configurations not tried)
    unsupported: tuple[ServePair, ...] = ()  # (engine, hardware) pairs the engine does not run, with the reason
    serving: str = "aggregated"  # or "disaggregated": separate prefill / decode pools searched too

    @property
    def feasible(self) -> bool:
        return any(h.cheapest is not None for h in self.ranked)

    def to_dict(self) -> dict:
        t = self.target
        d = {
            "models": list(self.models),
            "mix": list(t.mix),
            "qps": t.qps,
            "prompt": t.prompt,
            "gen": t.gen,
            "ttft_slo_s": t.ttft_slo_s,
            "tpot_slo_s": t.tpot_slo_s,
            "percentile": t.percentile,
            "serving": self.serving,
            "feasible": self.feasible,
            "status": "complete" if self.complete else "time_limit",
            "hardware": [h.to_dict() for h in self.ranked],
        }
        if self.unsupported:
            d["unsupported"] = [{"engine": p.engine, "hardware": p.device.id, "reason": p.reason} for p in self.unsupported]
        return d


def _cost_key(o: Any) -> tuple:
    return (o.usd_per_hour if o.usd_per_hour is not None else math.inf, o.devices, o.ttft_s)


def _better(cur: Any, new: Any, key: Callable[[Any], Any]) -> Any:
    return new if new is not None and (cur is None or key(new) < key(cur)) else cur


def _separate(archs: Sequence[ArchSpec], seps: dict) -> tuple[int | None, float | None]:
    if len(archs) < 2 or len(seps) != len(archs):
        return None, None
    usd = [o.usd_per_hour for o in seps.values()]
    return sum(o.devices for o in seps.values()), (sum(usd) if all(u is not None for u in usd) else None)


def summarize_serve(archs: Sequence[ArchSpec], target: ServeTarget, tasks: Sequence[ServeTask],
                    results: Sequence[tuple], unsupported: Sequence[ServePair] = ()) -> ServeAnswer:
    """One row per (engine, hardware): its cheapest answer per mode; rows ranked by cost."""
    per_hw: dict[tuple[str, str], dict] = {}
    badness = lambda o: o.badness  # noqa: E731
    for task, res in zip(tasks, results):
        r = ServeResult(*res)
        h = per_hw.setdefault((task.engine, task.device.id), {"best": None, "closest": None, "separate": {},
                                                              "disagg": None, "disagg_closest": None, "d": False})
        if task.shared:
            h["best"] = _better(h["best"], r.best, _cost_key)
            h["closest"] = _better(h["closest"], r.closest, badness)
            h["d"] = h["d"] or task.disaggregated
            h["disagg"] = _better(h["disagg"], r.disagg, _cost_key)
            h["disagg_closest"] = _better(h["disagg_closest"], r.disagg_closest, badness)
        else:
            m = task.archs[0].id
            h["separate"][m] = _better(h["separate"].get(m), r.best, _cost_key)
    answers = []
    for (engine, hw), h in per_hw.items():
        seps = {m: o for m, o in h["separate"].items() if o is not None}
        sep_dev, sep_usd = _separate(archs, seps)
        answers.append(HardwareAnswer(hardware=hw, engine=engine, best=h["best"], closest=h["closest"],
                                      separate_devices=sep_dev, separate_usd_per_hour=sep_usd, disaggregated=h["d"],
                                      disagg=h["disagg"], disagg_closest=h["disagg_closest"]))
    feasible = sorted((a for a in answers if a.cheapest is not None), key=lambda a: _cost_key(a.cheapest))
    rest = sorted((a for a in answers if a.cheapest is None), key=lambda a: a.closest.badness if a.closest else math.inf)
    mode = "disaggregated" if any(t.disaggregated for t in tasks) else "aggregated"
    return ServeAnswer(target=target, models=tuple(a.id for a in archs), ranked=tuple(feasible + rest),
                       unsupported=tuple(unsupported), serving=mode)


def serve_infeasible_message(ans: ServeAnswer) -> tuple[str, dict]:
    """Reason and the best layout's numbers when no hardware meets the SLOs."""
    near = [h.closest for h in ans.ranked if h.closest is not None]
    if not near:
        why = "".join(f"; {p.engine} on {p.device.id}: {p.reason}" for p in ans.unsupported[:4])
        return ("the model does not fit any of the hardware at any layout within --max-devices" + why, {})
    o = min(near, key=lambda x: x.badness)
    why = "; ".join(o.failures) or "SLOs not met"
    engine = f" {o.engine}" if o.engine else ""
    msg = (
        f"no hardware meets the SLOs at {ans.target.qps:g} QPS; closest:{engine} {o.hardware} {o.weights} "
        f"tp={o.tp} pp={o.pp} × {o.replicas} replicas ({o.devices} devices): {why}"
    )
    return msg, o.to_dict()


def plan_serving(
    archs: Sequence[ArchSpec],
    devices: Sequence[DeviceSpec | ServePair],
    target: ServeTarget,
    search: ServeSearch = ServeSearch(),
    map_fn: Callable[[Callable, Iterable], Iterable] = map,
    deadline: Deadline | None = None,
) -> ServeAnswer:
    """Every (engine,) hardware × format task; with a ``deadline`` the tasks run here one
    after the other, each checking it between layouts. When the time is up, the answer
    covers the configurations searched so far (``complete=False``); nothing searched yet,
    or a cancel, raises :class:`~planner.deadline.DeadlineExceeded` / ``Cancelled``.
    ``search.disaggregated``: separate prefill and decode pools are searched too (:mod:`planner.disagg`)."""
    tasks = serve_tasks(archs, devices, target, search)
    unsupported = [p for p in map(_pair, devices) if p.reason]
    if deadline is None:
        return summarize_serve(archs, target, tasks, run_serve_tasks(tasks, map_fn), unsupported)
    unique, index = dedupe_tasks(tasks)
    done: list[ServeResult] = []
    for task in unique:
        try:
            done.append(run_serve_task(task, deadline))
        except DeadlineExceeded:
            if not done:
                raise
            break
    kept = [i for i, u in enumerate(index) if u < len(done)]
    ans = summarize_serve(archs, target, [tasks[i] for i in kept],
                          expand_results([tasks[i] for i in kept], [index[i] for i in kept], done), unsupported)
    return ans if len(done) == len(unique) else replace(ans, complete=False)


__all__ = [
    "DEFAULT_FORMATS",
    "EngineSetup",
    "HardwareAnswer",
    "InfeasibleError",
    "ServeAnswer",
    "ServeOption",
    "ServePair",
    "ServeResult",
    "ServeSearch",
    "ServeTarget",
    "ServeTask",
    "TrainAnswer",
    "TrainOption",
    "TrainTarget",
    "TrainTask",
    "dedupe_tasks",
    "device_grid",
    "expand_results",
    "plan_serving",
    "plan_training",
    "run_serve_task",
    "run_serve_tasks",
    "run_train_task",
    "serve_infeasible_message",
    "serve_tasks",
    "task_choice",
    "task_replicas",
    "summarize_serve",
    "summarize_train",
    "train_infeasible_message",
    "train_tasks",
]
