"""What the planner is asked (:class:`PlanProblem`), which candidates it visits (parallel
layouts, KV formats) and how plans of different candidates compare under an objective."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwmodels import DeviceSpec
from hwmodels._checks import is_number
from planner.arch import ArchSpec
from planner.costmodel import EstimateError, Layout, Serving, check_layout
from planner.layout import check_layout_on, max_group
from planner.parallel import enumerate_layouts
from planner.formats import get_format, with_substitutes
from planner.options import parse_low_ranks
from planner.plan import OBJECTIVES, Plan, Predicted

__all__ = [
    "DEFAULT_KV_FORMATS",
    "OBJECTIVE_ORDER",
    "PlanProblem",
    "better",
    "compare_key",
    "kv_candidates",
    "min_opt",
    "objective_value",
    "ordered_layouts",
    "usd_per_million",
]

#: KV-cache formats tried when ``--kv`` is not given (the device's 16-bit format first).
DEFAULT_KV_FORMATS = ("fp8-e4m3", "int8", "int4-g64")
REPAIR_ROUNDS = 4
REL_TOL = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanProblem:
    """What to plan for (CLI flags / REST fields in snake case). ``tp``/``pp``/``dp`` left
    ``None`` are searched over; ``kv`` ``None`` searches the KV formats too; ``low_rank``
    lists absolute ranks to offer as low-rank factorisations of linear groups (``None``:
    none are offered)."""

    devices: int = 1
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    ep: int | None = None
    batch: int = 1
    prompt: int = 512
    gen: int = 128
    max_memory_per_device_bytes: float | None = None
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None
    # tpot_slo_s is the hardware's default, not the request's (a phone's reading-speed limit)
    tpot_slo_default: bool = False
    avg_bits: float | None = None
    allow_offload: bool = False
    objective: str = "accuracy"
    objective_weights: Mapping[str, float] = field(default_factory=dict)
    formats: tuple[str, ...] | None = None
    #: Weight-format sets solved one at a time, the best plan winning (``formats`` ignored):
    #: engines that apply a format to the whole model at once (ExecuTorch's one ``-qmode``,
    #: MLC's one ``--quantization``) run a plan of one set, never a mix across sets.
    format_sets: tuple[tuple[str, ...], ...] = ()
    sparsity: tuple[str, ...] | None = None
    kv: str | None = None
    activations: str | None = None
    pins: Mapping[str, str] = field(default_factory=dict)
    low_rank: tuple[int, ...] | None = None
    low_precision_compute: bool = True
    #: What the serving engine runs on the device (planner.engines.Support); None: any option.
    engine: Any = None
    backend: str = "highs"
    time_limit_s: float = 60.0
    gap: float = 1e-3

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> EstimateError:
            return EstimateError(name, f"--{name.replace('_', '-')} must be {expected}; got {getattr(self, name)!r}")

        for name in ("devices", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "a positive integer")
        for name in ("prompt", "gen"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(name, "an integer >= 0")
        for name in ("tp", "pp", "dp", "ep"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise bad(name, "a positive integer")
        for name in ("max_memory_per_device_bytes", "ttft_slo_s", "tpot_slo_s", "avg_bits"):
            v = getattr(self, name)
            if v is not None and (not is_number(v)
                                  or v <= 0):
                raise bad(name, "a positive number")
        if self.objective not in OBJECTIVES:
            raise EstimateError("objective", f"--objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}")
        unknown = set(self.objective_weights) - {"accuracy", "latency", "memory"}
        if unknown:
            raise EstimateError("objective_weights", f"--objective-weights knows accuracy, latency, memory; got "
                                f"{', '.join(sorted(unknown))}")
        for k, v in self.objective_weights.items():
            if not is_number(v) or v < 0:
                raise EstimateError("objective_weights", f"--objective-weights {k} must be a number >= 0; got {v!r}")
        if self.objective == "weighted" and not any(self.objective_weights.values()):
            raise EstimateError("objective_weights", "--objective weighted needs --objective-weights with a positive "
                                "weight, e.g. accuracy=1,latency=0.5")
        if not isinstance(self.time_limit_s, (int, float)) or self.time_limit_s <= 0:
            raise bad("time_limit_s", "a positive number of seconds")
        if self.low_rank is not None:
            if isinstance(self.low_rank, (str, bytes)) or not isinstance(self.low_rank, Sequence) or any(
                    isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in self.low_rank):
                raise bad("low_rank", "a list of integer ranks >= 1, e.g. [256, 512]")
            object.__setattr__(self, "low_rank", parse_low_ranks(tuple(self.low_rank)))

    @property
    def serving(self) -> Serving:
        return Serving(batch=self.batch, prompt=self.prompt, gen=self.gen)



def _why_no_layout(arch: ArchSpec, req: PlanProblem, fixed: dict[str, int]) -> None:
    """Raise the specific reason no layout of ``req.devices`` has the ``fixed`` degrees, naming the
    degree at fault (tp that does not divide the heads, ep the experts, tp×pp that does not
    divide the devices) as ``estimate`` names it; return when there is none more specific."""
    tp, pp = fixed.get("tp", 1), fixed.get("pp", 1)
    named = next((k for k in ("tp", "pp", "dp") if k in fixed), None)
    if named is not None and req.devices % (tp * pp * fixed.get("dp", 1)):
        given = " × ".join(f"{{@{k}}} {fixed[k]}" for k in ("tp", "pp", "dp") if k in fixed)
        raise EstimateError(named, f"{given} does not divide {{@devices}} {req.devices}: the devices are "
                            "tp×pp×dp (leave out devices and it is that product)")
    check_layout(arch, Layout(tp=tp, pp=pp, dp=fixed.get("dp", req.devices // (tp * pp)), ep=fixed.get("ep", 1)), None)


def ordered_layouts(arch: ArchSpec, device: DeviceSpec, req: PlanProblem) -> list[Layout]:
    """The parallel layouts of ``req.devices`` the search visits: those with the degrees the request
    fixes, whose dimensions the engine implements and whose groups ``device``'s links connect
    (:func:`~planner.layout.check_layout_on`; serving replicas need none). When none is left the
    error says why, naming the degree the caller gave (else ``devices``), and what would run."""
    fixed = {k: getattr(req, k) for k in ("tp", "pp", "dp", "ep") if getattr(req, k) is not None}
    if all(getattr(req, k) is not None for k in ("tp", "pp", "dp")):
        lay = Layout(tp=req.tp, pp=req.pp, dp=req.dp, ep=req.ep or 1)
        check_layout(arch, lay, req.devices)
        layouts = [lay]
    else:
        layouts = [lay for lay in enumerate_layouts(arch, req.devices)
                   if all(getattr(lay, k) == v for k, v in fixed.items())]
        if not layouts:
            _why_no_layout(arch, req, fixed)
            want = ", ".join(f"{k}={v}" for k, v in fixed.items())
            raise EstimateError("devices", f"no parallel layout of {{@devices}} {req.devices} for {arch.id} has {want} "
                                "(tp×pp×dp must equal {@devices}; tp must divide the attention heads)")
    engine_runs = _engine_layouts(req)
    out = [lay for lay in layouts if engine_runs(lay)]
    if not out:
        from planner.engines import ep_refusal

        dims_run = [lay for lay in layouts if _engine_dims(req)(lay)]
        if dims_run:  # the dimensions run, not with this expert-parallel degree beside this TP degree
            lay = dims_run[0]
            named = "ep" if "ep" in fixed else ("tp" if "tp" in fixed else "devices")
            raise EstimateError(named, ep_refusal(req.engine, lay.tp, lay.ep))
        if not req.engine.parallel:
            raise EstimateError("devices", f"{req.engine.engine} on {device.id} runs on a single device only (no "
                                f"tensor, pipeline or data parallelism): plan {{@devices}} 1, not {req.devices}")
        raise EstimateError("devices", f"{req.engine.engine} on {device.id} runs only {', '.join(req.engine.parallel)} "
                            f"parallelism, and no layout of {{@devices}} {req.devices} for {arch.id} uses only those")
    runs, refused = [], []
    for lay in out:
        try:
            check_layout_on(arch, device, lay)
        except EstimateError as exc:
            refused.append(exc)
            continue
        runs.append(lay)
    if not runs:
        raise _no_layout_runs(arch, device, req, fixed, refused)
    return runs


def _engine_dims(req: PlanProblem):
    """Whether the request's engine implements every parallel dimension a layout uses."""
    if req.engine is None:
        return lambda lay: True
    return lambda lay: all(getattr(lay, d) == 1 or d in req.engine.parallel for d in ("tp", "pp", "dp", "ep", "cp"))


def _engine_layouts(req: PlanProblem):
    """Whether the request's engine runs a layout: every dimension it uses, and its expert-parallel
    degree beside its TP degree (:func:`~planner.engines.ep_runs`)."""
    if req.engine is None:
        return lambda lay: True
    from planner.engines import ep_runs

    dims = _engine_dims(req)
    return lambda lay: dims(lay) and ep_runs(req.engine, lay.tp, lay.ep)


def _no_layout_runs(arch: ArchSpec, device: DeviceSpec, req: PlanProblem, fixed: Mapping[str, int],
                    refused: Sequence[EstimateError]) -> EstimateError:
    """No layout the request allows has the links it needs on ``device``: why, named by the degree
    the caller fixed (else ``devices``), and the layouts of as many devices that do run there, or
    that none does."""
    engine_runs = _engine_layouts(req)
    others = []
    for lay in enumerate_layouts(arch, req.devices):
        if not engine_runs(lay):
            continue
        try:
            check_layout_on(arch, device, lay)
        except EstimateError:
            continue
        others.append(lay)
    given = [d for d in ("tp", "pp", "ep") if fixed.get(d, 1) > 1]
    mine = [e for e in refused if e.field in given]
    first = (mine or list(refused))[0]
    named = first.field if first.field in given else "devices"
    engine = req.engine.engine if req.engine is not None else None
    no_dp = (f"{engine} runs no data parallelism (independent replicas)"
             if engine is not None and "dp" not in req.engine.parallel else None)
    if others:
        # the layouts nearest the degrees the caller gave first (sn40l --pp 32 → --pp 16 --dp 2 before --tp 16)
        others.sort(key=lambda lay: sum(abs(math.log2(getattr(lay, d)) - math.log2(v)) for d, v in fixed.items()
                                        if v and v > 0))
        shown = "; ".join(" ".join(f"{{@{d}}} {getattr(lay, d)}" for d in ("tp", "pp", "dp")) for lay in others[:4])
        more = f" (and {len(others) - 4} more)" if len(others) > 4 else ""
        return EstimateError(named, f"{first.template}; what runs on {device.id} with {{@devices}} {req.devices}: "
                                    f"{shown}{more}")
    if max_group(device) == 1:  # no link at all: the model is never split over devices there
        named = given[0] if given else "devices"
        what = f"{{@{named}}} {fixed[named]}" if named != "devices" else f"{{@devices}} {req.devices}"
        links = (f"{device.id} has no link to another device in its profile ({device.devices_per_node} device per node, "
                 "no links.intra_node or links.inter_node)")
        tail = f"; {no_dp}" if no_dp else ""
        without = (" without " + " or ".join(f"{{@{d}}}" for d in given)) if given else ""
        return EstimateError(named, f"{what} cannot run: {links}, so {arch.id} cannot be split over devices (tensor "
                             f"or pipeline parallelism){tail}; plan {{@devices}} 1{without}")
    tail = f" ({no_dp})" if no_dp else ""
    return EstimateError(named, f"{first.template}; no layout of {{@devices}} {req.devices} runs on {device.id}{tail}: its "
                         f"links connect at most {max_group(device)} devices")


def min_opt(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


# ---------------------------------------------------------------------------
# Objectives across candidates
# ---------------------------------------------------------------------------

OBJECTIVE_ORDER: dict[str, tuple[str, str | None]] = {
    "accuracy": ("accuracy", "latency"),
    "latency": ("latency", "accuracy"),
    "cost": ("cost", "accuracy"),
    "memory": ("memory", "accuracy"),
    "weighted": ("weighted", None),
}


def usd_per_million(device: DeviceSpec, layout: Layout, req: PlanProblem, latency_s: float) -> float:
    tokens = req.batch * (req.gen if req.gen > 0 else max(req.prompt, 1))
    tps = layout.dp * tokens / latency_s if latency_s > 0 else 0.0
    return device.usd_per_hour * layout.devices / 3600.0 / tps * 1e6 if tps > 0 else math.inf


def relative_weights(req: PlanProblem) -> dict[str, float]:
    """``objective_weights`` scaled so that the largest is 1: the weights are relative
    (``accuracy=2,latency=1`` is ``accuracy=1,latency=0.5``), and scaled they keep every
    objective coefficient finite however large the numbers given (``latency=1e308``)."""
    w = req.objective_weights
    top = max(w.values(), default=0.0)
    return {k: float(v) / top for k, v in w.items()} if top > 0 else dict(w)


def objective_value(objective: str, p: Predicted, req: PlanProblem, refs: Mapping[str, float]) -> float:
    if objective == "accuracy":
        return p.sensitivity
    if objective == "latency":
        return p.latency_s
    if objective == "memory":
        return p.per_device_bytes
    if objective == "cost":
        return p.usd_per_million_tokens if p.usd_per_million_tokens is not None else 1e300
    w = relative_weights(req)
    return (w.get("accuracy", 0.0) * p.sensitivity / refs["sensitivity"]
            + w.get("latency", 0.0) * p.latency_s / refs["latency"]
            + w.get("memory", 0.0) * p.per_device_bytes / refs["memory"])


def compare_key(objective: str, plan: Plan, req: PlanProblem, refs: Mapping[str, float]) -> tuple:
    p = plan.predicted
    primary = objective_value(objective, p, req, refs)
    secondary = {"accuracy": p.latency_s}.get(objective, p.sensitivity)
    return (primary, secondary, p.per_device_bytes)


def within_gap(x: float, best: float, gap: float) -> bool:
    """Whether ``x`` is no worse than ``best`` by more than the relative solver ``gap``:
    the solver cannot tell the two apart."""
    return x <= best + max(gap, REL_TOL) * max(abs(best), 1e-300)


def pick_best(keyed: list[tuple[tuple, Any]], gap: float) -> tuple[tuple, Any] | None:
    """The best of (``compare_key``, item) pairs: among those whose primary objective is
    within the solver ``gap`` of the lowest (the solver does not rank them), the best by
    the secondary objective and then memory; the first listed on a full tie."""
    if not keyed:
        return None
    lowest = min(k[0] for k, _ in keyed)
    best: tuple[tuple, Any] | None = None
    for key, item in keyed:
        if within_gap(key[0], lowest, gap) and (best is None or better(key[1:], best[0][1:])):
            best = (key, item)
    return best


def better(a: tuple, b: tuple) -> bool:
    for x, y in zip(a, b):
        tol = REL_TOL * max(abs(x), abs(y), 1e-300)
        if x < y - tol:
            return True
        if x > y + tol:
            return False
    return False



def kv_candidates(arch: ArchSpec, device: DeviceSpec, req: PlanProblem, base: str) -> list[str]:
    """KV-cache formats to try: the one asked for, or the 16-bit base and the defaults the
    device supports (only the base for models without a KV cache)."""
    if req.kv is not None:
        fmt = get_format(req.kv)
        if not fmt.is_kv:
            raise EstimateError("kv", f"--kv {req.kv!r} is not a KV-cache format")
        if device.supports(fmt.name) == "unsupported":
            raise EstimateError("kv", f"--kv {fmt.name} is not supported on {device.id}")
        return [fmt.name]
    if not arch.generative:
        return [base]
    out = [base]
    for k in DEFAULT_KV_FORMATS:
        if device.supports(k) != "unsupported" and get_format(k).name not in out:
            out.append(get_format(k).name)
    if req.engine is not None and req.engine.kv:  # only the KV formats the engine runs
        # A default the engine lacks is replaced by the engine's own KV format of that kind and width
        # (8-bit → llama.cpp's q8_0, int8-g32; 4-bit → q4_0, int4-g32) when none of that width is left,
        # as the weight formats are (planner.request.plan._engine_formats).
        kept = with_substitutes(out, [k for k in out if k in req.engine.kv],
                                [e for e in req.engine.kv if device.supports(e) != "unsupported"])
        out = kept or [base]
    return out
