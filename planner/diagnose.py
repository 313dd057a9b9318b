"""Why nothing fits, and the cheapest changes that would make it fit.

When no (layout, KV format, compression) satisfies a request, :func:`diagnose` reports:

* the smallest achievable device memory per device (every group at its smallest option,
  the best layout and KV format) against the device's capacity and the user's budget;
* the fastest achievable TTFT / TPOT that still fits in memory (when SLOs were asked for);
* which constraints bind: the request is re-solved with each family dropped in turn
  (memory budget, TTFT SLO, TPOT SLO, average bits);
* the cheapest changes, each re-solved so its numbers are the cost model's: streaming the
  remainder from the next memory tier (at its stated speed), lower-precision formats,
  a shorter context or a smaller batch, relaxed SLOs, more devices.

The CLI turns :class:`NoFeasiblePlanError` into exit code 3 with the message on stderr and
:meth:`Diagnosis.to_dict` under ``error.details`` in ``--json`` mode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from planner.errors import InfeasibleError

__all__ = ["Change", "Diagnosis", "NoFeasiblePlanError", "diagnose"]

#: Device counts tried for the "more devices" change, as multiples of the request's.
_DEVICE_MULTIPLES = (2, 4, 8, 16, 32, 64)
_MAX_DEVICES = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One change that makes the request feasible, with the cost model's prediction for
    the plan it yields (``predicted``: ttft_s, tpot_s, decode_tokens_per_s,
    per_device_bytes ... as available)."""

    kind: str  # offload | formats | context | batch | slo | devices | budget
    description: str
    predicted: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "predicted": dict(self.predicted)}


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

    def to_dict(self) -> dict[str, Any]:
        def fin(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        return {
            "message": self.message,
            "binding": list(self.binding),
            "min_per_device_bytes": fin(self.min_per_device_bytes),
            "device_capacity_bytes": self.device_capacity_bytes,
            "budget_bytes": self.budget_bytes,
            "min_ttft_s": fin(self.min_ttft_s),
            "min_tpot_s": fin(self.min_tpot_s),
            "changes": [c.to_dict() for c in self.changes],
        }


class NoFeasiblePlanError(InfeasibleError):
    """No plan satisfies the request. ``diagnosis`` explains why (``None`` when the caller
    asked for no diagnosis); ``details`` is its dict. The CLI exits with code 3."""

    def __init__(self, message: str, *, diagnosis: Diagnosis | None):
        super().__init__(message, diagnosis.to_dict() if diagnosis is not None else None, field="constraints")
        self.diagnosis = diagnosis

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
    changes: list[Change] = []
    slo_free = replace(req, ttft_slo_s=None, tpot_slo_s=None)
    memory_only_ok = _try(planner, slo_free, dl) if (req.ttft_slo_s or req.tpot_slo_s) else None

    if memory_binds and not req.allow_offload:
        binding.append("memory")
    elif memory_binds and req.allow_offload:
        binding.append("memory (device and offload tiers together)")
    if req.avg_bits is not None and _try(planner, replace(req, avg_bits=None), dl) is not None:
        binding.append("avg_bits")
    min_ttft = min_tpot = None
    if req.ttft_slo_s is not None or req.tpot_slo_s is not None:
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
        if memory_only_ok is not None:
            relaxed = []
            if req.ttft_slo_s is not None and min_ttft is not None and min_ttft > req.ttft_slo_s:
                relaxed.append(f"--ttft-slo {min_ttft:.4g}")
            if req.tpot_slo_s is not None and min_tpot is not None and min_tpot > req.tpot_slo_s:
                relaxed.append(f"--tpot-slo {min_tpot:.4g}")
            if relaxed:
                fast = _try(planner, replace(req, objective="latency", ttft_slo_s=None, tpot_slo_s=None), dl)
                changes.append(Change(kind="slo", description="relax the latency targets to what the hardware can "
                                      "do: " + " ".join(relaxed), predicted=_summary(fast) if fast else {}))
    if not binding:
        binding.append("constraints together")

    if memory_binds or "memory" in binding:
        changes += _offload_changes(planner, req, dl)
        changes += _format_changes(planner, req, dl)
        changes += _context_changes(planner, req, dl, budget, min_mem, min_plan)
        changes += _device_changes(planner, req, dl)
    message = _message(planner, req, dl, budget, min_mem, min_plan, memory_binds, min_ttft, min_tpot, binding, changes)
    return Diagnosis(message=message, binding=tuple(binding),
                     min_per_device_bytes=min_mem if math.isfinite(min_mem) else None,
                     device_capacity_bytes=capacity, budget_bytes=budget, min_ttft_s=min_ttft, min_tpot_s=min_tpot,
                     changes=tuple(changes))


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
            changes.append(Change(kind="offload", description=(
                f"--allow-offload: keep {_gb(p.offloaded_weights_bytes)} of weights per device in {host.name} "
                f"and stream them over {bw / 1e9:.0f} GB/s each pass; {speed}"), predicted=_summary(plan)))
    return changes


def _format_changes(planner, req, dl) -> list[Change]:
    """Lower-precision formats than the set searched."""
    changes: list[Change] = []
    device = planner.device
    if req.formats is not None:
        plan = _try(planner, replace(req, formats=None), dl)
        if plan is not None:
            changes.append(Change(kind="formats", description=(
                f"search the default format set instead of --formats {','.join(req.formats)} "
                f"(plan: {_formats_text(plan)})"), predicted=_summary(plan)))
    else:
        from planner.formats import list_formats

        low = tuple(f.name for f in list_formats(role="weight")
                    if f.element_bits <= 2 and device.supports(f.name) != "unsupported")
        if low:
            from planner.options import DEFAULT_WEIGHT_FORMATS

            plan = _try(planner, replace(req, formats=DEFAULT_WEIGHT_FORMATS + low), dl)
            if plan is not None:
                changes.append(Change(kind="formats", description=(
                    f"allow 2-bit weights (--formats with {', '.join(low[:3])}); round-to-nearest 2-bit "
                    f"costs much accuracy (plan: {_formats_text(plan)})"), predicted=_summary(plan)))
    return changes


def _context_changes(planner, req, dl, budget, min_mem, min_plan) -> list[Change]:
    """A shorter context or a smaller batch: the KV cache of the smallest plan."""
    changes: list[Change] = []
    if min_plan is not None and planner.arch.family in ("decoder", "encoder_decoder"):
        kv_dev = sum(t.kv_cache_bytes for t in min_plan.predicted.tiers.values() if t.role == "device")
        tokens = req.prompt + req.gen
        if kv_dev > 0 and tokens > 0:
            per_token = kv_dev / (req.batch * tokens)
            room = budget - (min_mem - kv_dev)
            fit_tokens = int(room // (per_token * req.batch)) if room > 0 else 0
            if 0 < fit_tokens < tokens:
                scale = fit_tokens / tokens
                prompt, gen = max(int(req.prompt * scale), 0), max(int(req.gen * scale), 1 if req.gen else 0)
                plan = _try(planner, replace(req, prompt=prompt, gen=gen), dl)
                if plan is not None:
                    changes.append(Change(kind="context", description=(
                        f"shorter context: --prompt {prompt} --gen {gen} ({fit_tokens} tokens per request "
                        f"instead of {tokens}; KV cache {min_plan.kv})"), predicted=_summary(plan)))
            if req.batch > 1:
                fit_batch = int(room // (per_token * tokens)) if room > 0 else 0
                if 1 <= fit_batch < req.batch:
                    plan = _try(planner, replace(req, batch=fit_batch), dl)
                    if plan is not None:
                        changes.append(Change(kind="batch", description=f"--batch {fit_batch} instead of "
                                              f"{req.batch}", predicted=_summary(plan)))
    return changes


def _device_changes(planner, req, dl) -> list[Change]:
    """More devices (the planner picks the layout)."""
    changes: list[Change] = []
    for mult in _DEVICE_MULTIPLES:
        n = req.devices * mult
        if n > _MAX_DEVICES:
            break
        try:
            plan = _try(planner, replace(req, devices=n, tp=None, pp=None, dp=None), dl)
        except Exception as exc:  # noqa: BLE001 - an impossible layout count is not a diagnosis
            from planner.costmodel import EstimateError

            if isinstance(exc, EstimateError):
                continue
            raise
        if plan is not None:
            changes.append(Change(kind="devices", description=(
                f"--devices {n} ({_layout_text(plan)}): {_gb(plan.predicted.per_device_bytes)} per device"),
                predicted=_summary(plan)))
            break
    return changes


def _message(planner, req, dl, budget, min_mem, min_plan, memory_binds, min_ttft, min_tpot, binding,
             changes) -> str:
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
        lines.extend(f"  {i}. {c.description}" for i, c in enumerate(changes, 1))
    else:
        lines.append("no single change (offload, formats, context, batch, up to "
                     f"{min(req.devices * _DEVICE_MULTIPLES[-1], _MAX_DEVICES)} devices) makes it fit")
    return "\n".join(lines)
