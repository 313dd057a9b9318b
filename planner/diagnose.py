"""Why nothing fits, and the cheapest changes that would make it fit.

When no (layout, KV format, compression) satisfies a request, :func:`diagnose` reports:

* the smallest achievable device memory per device (every group at its smallest option,
  the best layout and KV format) against the device's capacity and the user's budget;
* the fastest achievable TTFT / TPOT that still fits in memory (when SLOs were asked for);
* which constraints bind: the request is re-solved with each family dropped in turn
  (memory budget, TTFT SLO, TPOT SLO, average bits);
* the cheapest changes, each re-solved so its numbers are the cost model's: streaming the
  remainder from the next memory tier (at its stated speed), lower-precision formats,
  a shorter context or a smaller batch, relaxed SLOs or ``--avg-bits``, more devices.

Every change is a set of request fields (:attr:`Change.set`, named by ``{@field}`` tokens
at the start of its description, which each front end renders in its own syntax:
``--allow-offload`` on the command line, ``'allow_offload'`` in REST and Python) and was
solved with exactly those values: applied
literally to the request, it makes it feasible. Numbers are rounded in the feasible
direction (a latency target or ``--avg-bits`` up, a batch or context down).

The CLI turns :class:`NoFeasiblePlanError` into exit code 3 with the message on stderr and
:meth:`Diagnosis.to_dict` (rendered for the command line) under ``error.details`` in
``--json`` mode; REST answers 422 with both rendered the REST way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from planner.errors import InfeasibleError, render_tokens

__all__ = ["Change", "Diagnosis", "NoFeasiblePlanError", "diagnose"]

#: Device counts tried for the "more devices" change, as multiples of the request's.
_DEVICE_MULTIPLES = (2, 4, 8, 16, 32, 64)
_MAX_DEVICES = 512
#: Device counts solved at most per diagnosis (the others are skipped by a lower bound).
_DEVICE_SOLVES = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One change that makes the request feasible, with the cost model's prediction for
    the plan it yields (``predicted``: ttft_s, tpot_s, decode_tokens_per_s,
    per_device_bytes ... as available)."""

    kind: str  # budget | offload | formats | context | batch | slo | avg_bits | devices
    #: The description with ``{@field}`` tokens (see :meth:`render`).
    template: str
    predicted: Mapping[str, float] = field(default_factory=dict)
    #: Request fields (``PlanRequest`` names) and the values that were solved, as typed on
    #: the command line; the description starts with them (:func:`flags`).
    set: Mapping[str, Any] = field(default_factory=dict)

    def render(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> str:
        """The description in one front end's syntax (``cli``: ``--devices 8``; ``rest``,
        ``python``: ``'devices' 8``)."""
        return render_tokens(self.template, style, _aliases(style, aliases))

    @property
    def description(self) -> str:
        return self.render("python")

    def to_dict(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.render(style, aliases), "predicted": dict(self.predicted),
                "set": dict(self.set)}


def _aliases(style: str, aliases: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """The command line's flag names for the request fields whose flag differs (``--ttft-slo``)."""
    if style != "cli":
        return aliases
    from planner.request.fields import PLAN_CLI_ALIASES

    return {**PLAN_CLI_ALIASES, **(aliases or {})}


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    """What makes a request infeasible (see the module docstring)."""

    message: str
    binding: tuple[str, ...]
    min_per_device_bytes: float | None
    device_capacity_bytes: float
    budget_bytes: float
    min_ttft_s: float | None
    min_tpot_s: float | None
    changes: tuple[Change, ...]

    def render(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> str:
        """The message in one front end's syntax (field names as ``--flags`` or ``'fields'``)."""
        return render_tokens(self.message, style, _aliases(style, aliases))

    def to_dict(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
        def fin(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        return {
            "message": self.render(style, aliases),
            "binding": list(self.binding),
            "min_per_device_bytes": fin(self.min_per_device_bytes),
            "device_capacity_bytes": self.device_capacity_bytes,
            "budget_bytes": self.budget_bytes,
            "min_ttft_s": fin(self.min_ttft_s),
            "min_tpot_s": fin(self.min_tpot_s),
            "changes": [c.to_dict(style, aliases) for c in self.changes],
        }


class NoFeasiblePlanError(InfeasibleError):
    """No plan satisfies the request. ``diagnosis`` explains why (``None`` when the caller
    asked for no diagnosis); ``details`` is its dict. The CLI exits with code 3."""

    def __init__(self, message: str, *, diagnosis: Diagnosis | None):
        super().__init__(message, diagnosis.to_dict() if diagnosis is not None else None, field="constraints")
        self.diagnosis = diagnosis
        if diagnosis is not None:  # its changes name fields; on the command line, by their flags
            self.aliases = dict(_aliases("cli", None))

    def render_details(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> Any:
        if self.diagnosis is None:
            return self.details
        if style == "cli" and aliases is None:
            aliases = getattr(self, "aliases", None)
        return self.diagnosis.to_dict(style, aliases)

    @classmethod
    def from_diagnosis(cls, diagnosis: Diagnosis) -> NoFeasiblePlanError:
        return cls(diagnosis.message, diagnosis=diagnosis)


def _gb(x: float) -> str:
    return f"{x / 1e9:.1f} GB"


def _ms(x: float) -> str:
    return f"{x * 1e3:.3g} ms" if x < 1 else f"{x:.3g} s"


def _summary(plan) -> dict[str, float]:
    p = plan.predicted
    out = {"ttft_s": p.ttft_s, "tpot_s": p.tpot_s, "per_device_bytes": p.per_device_bytes,
           "avg_weight_bits": p.avg_weight_bits, "sensitivity": p.sensitivity}
    if p.decode_tokens_per_s:
        out["decode_tokens_per_s"] = p.decode_tokens_per_s
    if p.offloaded_weights_bytes:
        out["offloaded_weights_bytes"] = p.offloaded_weights_bytes
    return out


def _layout_text(plan) -> str:
    lay = plan.layout
    return f"tp={lay.tp} pp={lay.pp} dp={lay.dp}"


def _try(planner, req, deadline):
    """The plan for ``req``, or None when there is none (or the shared deadline ran out)."""
    from planner.deadline import DeadlineExceeded

    if deadline.cancelled:
        deadline.check("the diagnosis")  # raises Cancelled
    if deadline.expired():
        return None
    try:
        return planner.solve(req, diagnose_failure=False, deadline=deadline)
    except (NoFeasiblePlanError, DeadlineExceeded):
        if deadline.cancelled:
            deadline.check("the diagnosis")
        return None


def _formats_text(plan) -> str:
    counts: dict[str, int] = {}
    for c in plan.choices.values():
        counts[c.key] = counts.get(c.key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k}×{n}" for k, n in top)


def flags(fields: Mapping[str, Any]) -> str:
    """Request fields as ``{@field}`` tokens with their values (``{@ttft_slo_s} 0.085``), which
    the command line renders as the flags that set them (``--ttft-slo 0.085``)."""
    parts = []
    for name, value in fields.items():
        token = "{@" + name + "}"
        parts.append(token if value is True else f"{token} {value}")
    return " ".join(parts)


def round_up(x: float, digits: int = 3) -> float:
    """``x`` rounded up to ``digits`` significant digits: the printed number is never below it."""
    if not math.isfinite(x) or x <= 0:
        return x
    q = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    k = math.ceil(x / q)
    while True:
        v = float(f"{k * q:.{digits + 1}g}")
        if v >= x:
            return v
        k += 1


def _verified(planner, req, fields: dict[str, Any], dl, bump=None, tries: int = 3):
    """(fields, plan) for the first of ``fields``, ``bump(fields)``, ... (up to ``tries``)
    that makes ``req`` feasible when applied as they will be printed; None otherwise."""
    for _ in range(tries):
        plan = _try(planner, replace(req, **_problem_fields(fields)), dl)
        if plan is not None:
            return fields, plan
        if bump is None:
            return None
        fields = bump(fields)
    return None


def _problem_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Request fields → the solver problem's (``PlanProblem``) fields."""
    out = dict(fields)
    if "formats" in out:
        out["formats"] = tuple(out["formats"].split(","))
    return out


def diagnose(planner, req, *, deadline=None) -> Diagnosis:
    """Explain why ``req`` is infeasible for ``planner`` (a :class:`planner.search.Planner`).

    Every phase shares ``deadline`` (the caller's; ``req.time_limit_s`` from now when
    none): phases it leaves no time for are skipped and the message says so. The
    planner's caches make each re-solve reuse the request's formulations."""
    from planner.deadline import Deadline

    dl = deadline if deadline is not None else Deadline(req.time_limit_s)
    device = planner.device
    capacity = device.memory_capacity_bytes
    budget = capacity if req.max_memory_per_device_bytes is None else min(capacity, req.max_memory_per_device_bytes)
    min_mem, min_plan = planner.minimum(req, "memory", deadline=dl)
    memory_binds = min_mem > budget * (1 + 1e-9)

    binding: list[str] = []
    slo_free = replace(req, ttft_slo_s=None, tpot_slo_s=None)
    memory_only_ok = _try(planner, slo_free, dl) if (req.ttft_slo_s or req.tpot_slo_s) else None

    if memory_binds and not req.allow_offload:
        binding.append("memory")
    elif memory_binds and req.allow_offload:
        binding.append("memory (device and offload tiers together)")
    if req.avg_bits is not None and _try(planner, replace(req, avg_bits=None), dl) is not None:
        binding.append("avg_bits")
    min_ttft, min_tpot = _latency_binding(planner, req, dl, slo_free, memory_only_ok, binding)
    if not binding:
        binding.append("constraints together")

    changes: list[Change] = []
    if memory_only_ok is not None and ("ttft_slo" in binding or "tpot_slo" in binding):
        changes += _slo_changes(planner, req, dl)
    if "avg_bits" in binding:
        changes += _avg_bits_changes(planner, req, dl)
    if memory_binds or "memory" in binding:
        changes += _budget_changes(planner, req, dl, capacity, min_mem)
        changes += _offload_changes(planner, req, dl)
        changes += _format_changes(planner, req, dl)
        changes += _context_changes(planner, req, dl, budget, min_plan)
    if binding != ["avg_bits"]:  # more devices do not lower the average bits
        bounds = [(min_mem, budget, 1 + 1e-9)] if memory_binds else []
        # Latency scales at best as 1 / devices; a quarter more is allowed for effects the
        # fastest plan at the request's count does not show.
        bounds += [(best, slo, 1.25) for best, slo in ((min_ttft, req.ttft_slo_s), (min_tpot, req.tpot_slo_s))
                   if best is not None and slo is not None]
        # For latency alone, up to 8 times the devices (one node's tensor parallelism).
        found, tried = _device_changes(planner, req, dl, bounds, _DEVICE_SOLVES,
                                       _DEVICE_MULTIPLES[-1] if memory_binds else 8)
        changes += found
    else:
        tried = req.devices
    message = _message(planner, req, dl, budget, min_mem, min_plan, memory_binds, min_ttft, min_tpot, binding, changes,
                       tried)
    return Diagnosis(message=message, binding=tuple(binding),
                     min_per_device_bytes=min_mem if math.isfinite(min_mem) else None,
                     device_capacity_bytes=capacity, budget_bytes=budget, min_ttft_s=min_ttft, min_tpot_s=min_tpot,
                     changes=tuple(changes))


def _latency_binding(planner, req, dl, slo_free, memory_only_ok, binding: list[str]):
    """(fastest TTFT, fastest TPOT) that fit (None when no target was asked); appends the
    latency targets that bind to ``binding``."""
    min_ttft = min_tpot = None
    if req.ttft_slo_s is None and req.tpot_slo_s is None:
        return min_ttft, min_tpot
    base = slo_free if memory_only_ok is not None else replace(slo_free, max_memory_per_device_bytes=None)
    if req.ttft_slo_s is not None:
        fastest = _try(planner, replace(base, objective="latency", tpot_slo_s=req.tpot_slo_s), dl)
        min_ttft = planner.minimum(base, "ttft", deadline=dl)[0] if fastest is None else fastest.predicted.ttft_s
        if _try(planner, replace(req, ttft_slo_s=None), dl) is not None or min_ttft > req.ttft_slo_s:
            binding.append("ttft_slo")
    if req.tpot_slo_s is not None:
        fastest = _try(planner, replace(base, objective="latency", ttft_slo_s=None), dl)
        min_tpot = planner.minimum(base, "tpot", deadline=dl)[0] if fastest is None else fastest.predicted.tpot_s
        if _try(planner, replace(req, tpot_slo_s=None), dl) is not None or min_tpot > req.tpot_slo_s:
            binding.append("tpot_slo")
    return min_ttft, min_tpot


def _slo_changes(planner, req, dl) -> list[Change]:
    """Latency targets relaxed to what the fastest plan that fits reaches (rounded up)."""
    fast = _try(planner, replace(req, objective="latency", ttft_slo_s=None, tpot_slo_s=None), dl)
    if fast is None:
        return []
    fields: dict[str, Any] = {}
    for name, got in (("ttft_slo_s", fast.predicted.ttft_s), ("tpot_slo_s", fast.predicted.tpot_s)):
        asked = getattr(req, name)
        if asked is not None and got is not None and got > asked:
            fields[name] = round_up(got)
    if not fields:
        return []
    found = _verified(planner, req, fields, dl, bump=lambda f: {k: round_up(v * 1.01) for k, v in f.items()})
    if found is None:
        return []
    fields, plan = found
    asked = ", ".join(f"{k.split('_')[0].upper()} {_ms(getattr(req, k))}" for k in fields)
    return [Change(kind="slo", set=fields, predicted=_summary(plan), template=(
        f"{flags(fields)}: relax the latency targets to what the hardware can do (asked {asked})"))]


def _avg_bits_changes(planner, req, dl) -> list[Change]:
    """Lower-bit formats that meet ``--avg-bits``, or the smallest ``--avg-bits`` that fits."""
    changes: list[Change] = []
    extra = _lower_formats(planner, req)
    if extra:
        found = _verified(planner, req, {"formats": ",".join((*_current_formats(req), *extra))}, dl)
        if found is not None:
            fields, plan = found
            changes.append(Change(kind="formats", set=fields, predicted=_summary(plan), template=(
                f"{flags(fields)}: add formats below {_min_bits(_current_formats(req), req.engine):.3g} bits "
                f"(plan: {_formats_text(plan)})")))
    low = _try(planner, replace(req, avg_bits=None, objective="memory"), dl)
    if low is not None and low.predicted.avg_weight_bits > req.avg_bits:
        bits = math.ceil(low.predicted.avg_weight_bits * 100 - 1e-9) / 100
        found = _verified(planner, req, {"avg_bits": bits}, dl,
                          bump=lambda f: {"avg_bits": math.ceil(f["avg_bits"] * 101) / 100})
        if found is not None:
            fields, plan = found
            changes.append(Change(kind="avg_bits", set=fields, predicted=_summary(plan), template=(
                f"{flags(fields)}: the fewest average weight bits that fit with these formats "
                f"(asked {req.avg_bits:g}; plan: {_formats_text(plan)})")))
    return changes


def _budget_changes(planner, req, dl, capacity: float, min_mem: float) -> list[Change]:
    """The user's own budget binds while the device has room: a budget of what the smallest plan needs
    (rounded up to 0.1 GB), when that is within the device's memory."""
    budget = req.max_memory_per_device_bytes
    if budget is None or budget >= capacity or min_mem > capacity:
        return []
    need = min(capacity, math.ceil(min_mem / 1e8 * (1 + 1e-9)) * 1e8)
    plan = _try(planner, replace(req, max_memory_per_device_bytes=need), dl)
    if plan is None:
        return []
    fields = {"max_memory_per_device": f"{need / 1e9:g}GB"}
    return [Change(kind="budget", set=fields, predicted=_summary(plan), template=(
        f"{flags(fields)}: the budget is what binds; the {planner.device.id} holds {_gb(capacity)}"))]


def _offload_changes(planner, req, dl) -> list[Change]:
    """Offload the remainder to the next tier (host memory / storage), at its speed."""
    changes: list[Change] = []
    device = planner.device
    host = device.host_tier
    if not req.allow_offload and host is not None:
        plan = _try(planner, replace(req, allow_offload=True), dl)
        if plan is not None:
            link = device.host_link
            bw = min(host.bandwidth_bytes_per_s, link.bandwidth_bytes_per_s) if link is not None else \
                host.bandwidth_bytes_per_s
            p = plan.predicted
            speed = f"decode {p.decode_tokens_per_s:.3g} tokens/s (TPOT {_ms(p.tpot_s)})" if p.tpot_s else \
                f"latency {_ms(p.latency_s)}"
            fields = {"allow_offload": True}
            changes.append(Change(kind="offload", set=fields, predicted=_summary(plan), template=(
                f"{flags(fields)}: keep {_gb(p.offloaded_weights_bytes)} of weights per device in {host.name} "
                f"and stream them over {bw / 1e9:.0f} GB/s each pass; {speed}")))
    return changes


def _current_formats(req) -> tuple[str, ...]:
    from planner.options import DEFAULT_WEIGHT_FORMATS

    return tuple(req.formats) if req.formats else tuple(DEFAULT_WEIGHT_FORMATS)


def _min_bits(names, engine=None) -> float:
    """The fewest bits per value of ``names``: the catalog's price, or the type the engine stores a
    format as where its profile states one (llama.cpp's int4-g128 is q4_K, 4.5 bits), as --avg-bits
    counts them."""
    from planner.formats import get_format

    stored = {} if engine is None else {f: 8.0 * chain[0][2] / chain[0][1] for f, chain in engine.runtime.storage}
    return min(stored.get(get_format(n).name, get_format(n).bits_per_value()) for n in names)


def _lower_formats(planner, req) -> tuple[str, ...]:
    """Weight formats below the fewest bits of the searched set that the engine (else the
    device) runs, fewest bits last."""
    from planner.formats import get_format, list_formats

    current = _current_formats(req)
    floor = _min_bits(current)
    names = req.engine.weights if req.engine is not None else [f.name for f in list_formats(role="weight")]
    out = [n for n in names if n not in current and planner.device.supports(n) != "unsupported"
           and get_format(n).bits_per_value() < floor - 1e-9]
    return tuple(sorted(dict.fromkeys(out), key=lambda n: -get_format(n).bits_per_value()))


def _format_changes(planner, req, dl) -> list[Change]:
    """Lower-precision formats than the set searched (those the engine runs)."""
    extra = _lower_formats(planner, req)
    if not extra:
        return []
    found = _verified(planner, req, {"formats": ",".join((*_current_formats(req), *extra))}, dl)
    if found is None:
        return []
    fields, plan = found
    low = [n for n in extra if _min_bits([n]) <= 2.5]
    caveat = "; round-to-nearest at 2 bits costs much accuracy" if low else ""
    return [Change(kind="formats", set=fields, predicted=_summary(plan), template=(
        f"{flags(fields)}: allow formats below {_min_bits(_current_formats(req), req.engine):.3g} bits "
        f"(plan: {_formats_text(plan)}){caveat}"))]


def _largest(make, hi: int, guess: int):
    """(k, plan) for the largest ``k`` in [1, hi) found with ``make(k)`` feasible: ``guess``
    first, then halving, refined by up to three bisection steps; None when even 1 fails."""
    bad, k, found = hi, guess if 1 <= guess < hi else hi // 2, None
    while k >= 1:
        plan = make(k)
        if plan is not None:
            found = (k, plan)
            break
        bad, k = k, (k // 2 if k > 1 else 0)
    if found is None:
        return None
    for _ in range(3):
        if bad - found[0] <= 1:
            break
        mid = (found[0] + bad) // 2
        plan = make(mid)
        if plan is not None:
            found = (mid, plan)
        else:
            bad = mid
    return found


def _context_changes(planner, req, dl, budget, min_plan) -> list[Change]:
    """A shorter context or a smaller batch, when the KV cache and activations are what
    does not fit (the memory that does not shrink with them already fits)."""
    if min_plan is None:
        return []
    dev = [t for t in min_plan.predicted.tiers.values() if t.role == "device"]
    varying = sum(t.kv_cache_bytes + t.activations_bytes for t in dev)
    fixed = sum(t.used_bytes for t in dev) - varying
    room = budget - fixed
    if varying <= 0 or room <= 0:
        return []
    changes: list[Change] = []
    tokens = req.prompt + req.gen
    if tokens > 1:
        def shorter(k: int):
            prompt, gen = _scaled(req, k)
            return _try(planner, replace(req, prompt=prompt, gen=gen), dl)

        got = _largest(shorter, tokens, int(tokens * room / varying))
        if got is not None:
            k, plan = got
            prompt, gen = _scaled(req, k)
            fields = {"prompt": prompt, "gen": gen}
            changes.append(Change(kind="context", set=fields, predicted=_summary(plan), template=(
                f"{flags(fields)}: a shorter context ({prompt + gen} tokens per request instead of {tokens}; "
                f"KV cache {plan.kv})")))
    if req.batch > 1:
        got = _largest(lambda b: _try(planner, replace(req, batch=b), dl), req.batch, int(req.batch * room / varying))
        if got is not None:
            fields = {"batch": got[0]}
            changes.append(Change(kind="batch", set=fields, predicted=_summary(got[1]),
                                  template=f"{flags(fields)} instead of {req.batch}"))
    return changes


def _scaled(req, k: int) -> tuple[int, int]:
    """(prompt, gen) with ``k`` tokens in all, in the request's proportion."""
    tokens = req.prompt + req.gen
    gen = min(max(round(req.gen * k / tokens), 1 if req.gen else 0), k)
    return k - gen, gen


def _device_changes(planner, req, dl, bounds, max_solves: int, max_mult: int) -> tuple[list[Change], int]:
    """More devices (the planner picks the layout; degrees the request fixed are printed
    with the ones that were solved), and the largest count tried. ``bounds``: (best at the
    request's count, limit, slack) triples; a count at which the best scaled ideally
    (1 / multiple) still exceeds ``limit × slack`` cannot meet it and is skipped. At most
    ``max_solves`` counts, and none above ``max_mult`` times the request's, are solved."""
    from planner.costmodel import EstimateError

    fixed = [n for n in ("tp", "pp", "dp", "ep") if getattr(req, n) is not None]
    tried = req.devices
    for mult in _DEVICE_MULTIPLES:
        n = req.devices * mult
        if n > _MAX_DEVICES or mult > max_mult or max_solves <= 0 or dl.expired():
            break
        if any(best / mult > limit * slack for best, limit, slack in bounds):
            tried = n
            continue
        max_solves -= 1
        tried = n
        try:
            plan = _try(planner, replace(req, devices=n, tp=None, pp=None, dp=None, ep=None), dl)
        except EstimateError:  # an impossible layout count is not a diagnosis
            continue
        if plan is None:
            continue
        fields: dict[str, Any] = {"devices": n}
        if fixed:
            lay = plan.layout
            fields.update({k: getattr(lay, k) for k in ("tp", "pp", "dp")})
            if "ep" in fixed or getattr(lay, "ep", 1) > 1:
                fields["ep"] = lay.ep
            got = _verified(planner, req, fields, dl)
            if got is None:
                continue
            plan = got[1]
        return [Change(kind="devices", set=fields, predicted=_summary(plan), template=(
            f"{flags(fields)} ({_layout_text(plan)}): {_gb(plan.predicted.per_device_bytes)} per device"))], n
    return [], tried


def _kv_share_headroom(plan, fraction: float) -> float:
    """Device bytes beyond ``plan``'s device-resident KV cache that an engine giving the cache a
    share ``fraction`` of the free memory holds back (kv·(1/f − 1), as the plan search counts it)."""
    if plan is None or fraction >= 1.0:
        return 0.0
    kv = sum(t.kv_cache_bytes for t in plan.predicted.tiers.values() if t.role == "device")
    return kv * (1.0 / fraction - 1.0)


def _message(planner, req, dl, budget, min_mem, min_plan, memory_binds, min_ttft, min_tpot, binding,
             changes, tried: int) -> str:
    device = planner.device
    capacity = device.memory_capacity_bytes
    dev_tier = device.device_tier
    lines = []
    if math.isfinite(min_mem):
        where = f"a {_gb(capacity)} {device.id}"
        if budget < capacity:
            where += f" with a {_gb(budget)} budget"
        smallest = f" (smallest plan: {_formats_text(min_plan)}, KV {min_plan.kv}, {_layout_text(min_plan)})" \
            if min_plan is not None else ""
        if memory_binds:
            lines.append(f"nothing fits: needs at least {_gb(min_mem)} per device on {where}{smallest}")
            from planner.search_formulation import engine_options

            opts = engine_options(req)
            reserved = opts.reserved_bytes  # the engine's runtime context, as the plan priced it
            if reserved > 0:
                left = budget - reserved
                lines.append(f"of which {_gb(reserved)} is {req.engine.engine}'s runtime context (CUDA context, "
                             f"buffers, graphs: its profile's context_gib), on every device"
                             + (f"; the budget leaves {_gb(left)} for the model" if left > 0 else
                                "; the budget does not even hold that"))
            held = _kv_share_headroom(min_plan, opts.kv_memory_fraction)
            if held >= 0.05e9:  # shown to 0.1 GB
                lines.append(f"and {_gb(held)} that {req.engine.engine}'s KV-cache share holds back (the cache may take "
                             f"{opts.kv_memory_fraction:.0%} of the memory weights, activations and context leave free)")
        else:
            lines.append(f"memory alone fits ({_gb(min_mem)} per device at the smallest on {where}), but the "
                         f"constraints together do not")
    else:
        lines.append(f"nothing fits on {device.id}: no option set can be placed in {dev_tier.name}")
    if min_ttft is not None:
        lines.append(f"fastest TTFT that fits: {_ms(min_ttft)} (asked {_ms(req.ttft_slo_s)})")
    if min_tpot is not None:
        lines.append(f"fastest TPOT that fits: {_ms(min_tpot)} (asked {_ms(req.tpot_slo_s)})")
    lines.append("binding: " + ", ".join(binding))
    if dl.expired():
        lines.append("(the diagnosis was cut short by the time limit: some phases were skipped)")
    if changes:
        lines.append("cheapest changes:")
        lines.extend(f"  {i}. {c.template}" for i, c in enumerate(changes, 1))
    elif dl.expired():
        lines.append(f"no single change was found before the time limit (offload, formats, context, batch, latency "
                     f"targets, up to {tried} devices were tried as far as it allowed); a longer {{@time_limit_s}} may find one")
    else:
        lines.append(f"no single change (offload, formats, context, batch, latency targets, up to {tried} devices) "
                     "makes it fit")
    return "\n".join(lines)
