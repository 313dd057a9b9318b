"""The serving capacity search's model of one replica and one fleet: targets, search
settings, engine setups, tasks and options, the layouts searched, one replica's batch and
decode curve under the cost model, SLO checks and fleet cost. :mod:`planner.capacity`
searches over it; :mod:`planner.shared_fleet` and :mod:`planner.disagg` build on it too.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.costmodel import Choice, EstimateError, Layout, RuntimeSettings, Serving, estimate_inference, max_batch
from planner.layout import num_layers
from planner.training_capacity import (  # training capacity, re-exported here
    _check,
)
from planner.queueing import DecodeCurve, ReplicaQueue


DEFAULT_FORMATS: tuple[str, ...] = ("bf16", "fp8", "int4-g128")


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


def slo_figures(o: Any) -> dict:
    """The latency, cost and SLO keys every serving answer's ``to_dict`` shares (a
    :class:`ServeOption`, a disaggregated option of :mod:`planner.disagg`): ``ttft_s`` and
    ``tpot_s`` are at ``percentile``, the quantile the SLOs are checked at (p50 and p95 beside
    them whatever it is)."""
    return {"percentile": o.percentile, "ttft_p50_s": o.ttft_p50_s, "ttft_p95_s": o.ttft_p95_s, "ttft_s": o.ttft_s,
            "tpot_p50_s": o.tpot_p50_s, "tpot_p95_s": o.tpot_p95_s, "tpot_s": o.tpot_s,
            "usd_per_hour": o.usd_per_hour, "usd_per_million_tokens": o.usd_per_million_tokens,
            "meets_slo": o.meets_slo, "failures": list(o.failures)}


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
    runtime: str = ""  # the launch mode priced: graph, or eager PyTorch ("" when not known)
    percentile: float = 0.95  # the quantile of ttft_s and tpot_s: the one the SLOs are checked at

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
            **({"runtime": self.runtime} if self.runtime else {}),
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
            **slo_figures(self),
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
    # (model id, kernel) for each model of a fleet whose exported program the engine runs otherwise (export_llama
    # writes int8 weights weight-only for a Llama, Optimum ExecuTorch as dynamic int8 for an OPT); empty when all
    # models share ``kernel``.
    kernels: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServePair:
    """One (engine, hardware) row of a comparison: its setup, or why the engine does not run there."""

    device: DeviceSpec
    engine: str = ""
    setup: EngineSetup | None = None
    reason: str = ""  # not empty: the pair is not supported, and why ({@field} tokens: render with reason_text)
    # Weight formats given that the engine does not run there (activations None), or runs but not with
    # the request's activations: (weights, activations, why), left out of the pair's search
    skipped: tuple[tuple[str, str | None, str], ...] = ()

    def reason_text(self, style: str = "rest", aliases: Any = None) -> str:
        """Why the pair is not supported, its fields in one front end's syntax (``cli``: ``--runtime``)."""
        from hwmodels.errors import render_tokens

        return render_tokens(self.reason, style, aliases)

    @property
    def listed(self) -> bool:
        """The pair has an entry under an answer's ``unsupported``: it does not run at all, or
        some of its weight formats were skipped."""
        return bool(self.reason or self.skipped)

    def unsupported_rows(self, style: str = "rest", aliases: Any = None) -> list[dict]:
        """The pair's entries under ``unsupported``: ``{engine, hardware, reason}`` when it does not
        run; ``{engine, hardware, weights, activations, reason}`` per weight format skipped (no
        ``activations`` for a format given that the engine does not run there at all)."""
        from hwmodels.errors import render_tokens

        rows = ([{"engine": self.engine, "hardware": self.device.id, "reason": self.reason_text(style, aliases)}]
                if self.reason else [])
        rows += [{"engine": self.engine, "hardware": self.device.id, "weights": w,
                  **({} if a is None else {"activations": a}), "reason": render_tokens(why, style, aliases)}
                 for w, a, why in self.skipped]
        return rows


def unsupported_rows(pairs: Any, style: str = "rest", aliases: Any = None) -> list[dict]:
    """Every entry of an answer's ``unsupported`` (:meth:`ServePair.unsupported_rows`)."""
    return [r for p in pairs for r in p.unsupported_rows(style, aliases)]


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
    kernels: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # EngineSetup.kernels (per model)

    def kernel_of(self, arch: ArchSpec) -> tuple[tuple[str, Any], ...]:
        """The engine's runtime facts for ``arch``: its own where its exported program differs."""
        return next((k for mid, k in self.kernels if mid == arch.id), self.kernel)

    @property
    def launch(self) -> str:
        """The launch mode priced: the engine's (``runtime``), else the search's."""
        return self.runtime or self.search.runtime

    def key(self) -> tuple:
        """What the search's result depends on: tasks of engines that price a hardware the
        same way share one search."""
        return (self.device.id, tuple(a.id for a in self.archs), self.target, self.search, self.weights, self.shared,
                self.activations, self.kv, self.reserved_bytes, self.runtime, self.tp_ok, self.pp_ok,
                self.disaggregated, self.kernel, self.kernels)


class ServeResult(NamedTuple):
    """What one task found: aggregated (fewest devices meeting the SLOs, else the closest)
    and, for a disaggregated task, the same for separate prefill / decode pools."""

    best: ServeOption | None
    closest: ServeOption | None
    disagg: Any = None  # planner.disagg.DisaggOption
    disagg_closest: Any = None
    disagg_reason: str = ""  # neither: why no prefill / decode pools could be formed at all


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


def _settings(task: ServeTask | None, search: ServeSearch, arch: ArchSpec | None = None) -> RuntimeSettings:
    """How ``task``'s engine prices ``arch`` (default: the task's first model)."""
    if task is None:
        return RuntimeSettings(runtime=search.runtime)
    kernel = task.kernel_of(arch if arch is not None else task.archs[0])
    return RuntimeSettings(runtime=task.runtime or search.runtime, reserved_bytes=task.reserved_bytes, **dict(kernel))


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
        out.append(f"TTFT {pct} {ttft_s:.3g} s exceeds the {target.ttft_slo_s:g} s SLO by {_excess(ttft_s, target.ttft_slo_s)}")
    if tpot_s > target.tpot_slo_s:
        out.append(f"TPOT {pct} {tpot_s:.3g} s exceeds the {target.tpot_slo_s:g} s SLO by {_excess(tpot_s, target.tpot_slo_s)}")
    return out


def _excess(value: float, limit: float) -> str:
    """How far ``value`` is over ``limit``: a percentage, or a factor once that is over 100×
    (a 1e-300 s SLO is not a 300-digit percentage)."""
    ratio = value / limit
    return f"{100 * (ratio - 1):.0f}%" if ratio < 100 else f"{ratio:.3g}×"


def _fleet_cost(device: DeviceSpec, devices: int, tokens_per_s: float,
                served: bool = True) -> tuple[float | None, float | None]:
    """(USD per hour, USD per million generated tokens) of ``devices`` devices; None without a price.
    A fleet the load overwhelms (``served`` false) has no price per token: it does not produce the
    offered tokens, and pricing them gave an overloaded single device "0.000 USD per million"."""
    if device.usd_per_hour is None:
        return None, None
    usd_h = device.usd_per_hour * devices
    return usd_h, (usd_h / 3600.0 / tokens_per_s * 1e6 if tokens_per_s > 0 and served else None)


def _option_from_queue(rep: _Replica, device: DeviceSpec, target: ServeTarget, replicas: int, q: ReplicaQueue, models: tuple[str, ...], qps: float) -> ServeOption:
    failures = []
    if not q.stable:
        failures.append(q.reason)
    if q.stable:
        failures += _slo_failures(q.ttft_quantile_s, q.tpot_quantile_s, target, target.percentile)
    usd_h, usd_m = _fleet_cost(device, replicas * rep.tp * rep.pp, qps * target.gen, served=q.stable)
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
        percentile=target.percentile,
    )
    return opt


#: A miss within this factor of the closest any fleet reaches counts as as close (the closest miss is
#: reported at the fewest devices that come that close, not at --max-devices).
NEAR_MISS = 1.05


def closer(cur: ServeOption | None, new: ServeOption | None) -> ServeOption | None:
    """The closer of two misses: the one nearer the SLOs, or, within NEAR_MISS of each other, the one
    on fewer devices."""
    if new is None or cur is None:
        return cur if new is None else new
    if new.badness * NEAR_MISS < cur.badness:
        return new
    if cur.badness * NEAR_MISS < new.badness:
        return cur
    return new if (new.devices, new.badness) < (cur.devices, cur.badness) else cur


def fewest_replicas_within(evaluate: Callable[[int], ServeOption], r_max: int, badness: float,
                           top: ServeOption | None = None) -> ServeOption | None:
    """The option with the fewest replicas (≤ ``r_max``) whose worse SLO ratio is at most ``badness``, or
    None (``top``: the option at ``r_max`` when already evaluated)."""
    return _fewest(evaluate, r_max, lambda o: o.badness <= badness, top or evaluate(r_max))


def _min_replicas(evaluate: Callable[[int], ServeOption], r_max: int) -> tuple[ServeOption | None, ServeOption]:
    """Smallest replica count that meets the SLOs; also the option at ``r_max`` (the best reachable)."""
    at_max = evaluate(r_max)
    return _fewest(evaluate, r_max, lambda o: o.meets_slo, at_max), at_max


def _fewest(evaluate: Callable[[int], ServeOption], r_max: int, ok: Callable[[ServeOption], bool],
            top: ServeOption) -> ServeOption | None:
    """The option with the fewest replicas that is ``ok``, given ``top`` at ``r_max``: metrics only improve
    as replicas are added, so a bisection finds it."""
    if not ok(top):
        return None
    lo, hi, best = 0, r_max, top  # evaluate(lo) fails (or lo = 0), evaluate(hi) passes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        o = evaluate(mid)
        if ok(o):
            hi, best = mid, o
        else:
            lo = mid
    return best
