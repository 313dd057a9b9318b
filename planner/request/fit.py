"""A configuration that does not fit: the shortfall and the cheapest changes that fit.

:class:`DoesNotFitError` is a :class:`~planner.errors.TierwiseError` of kind
``infeasible`` (exit 3 on the command line, HTTP 422 with code ``infeasible`` in REST), as
``tierwise plan`` and ``tierwise capacity`` report nothing feasible. Its ``details``:

* ``per_device_bytes``, ``device_capacity_bytes``, ``shortfall_bytes`` of the request;
* ``changes``: each a single change of request fields (``set``, applied literally to the
  request) with the memory per device it gives. Every change listed was computed with the
  cost model and fits; none is a guess. For inference: more devices (``tp``, else ``pp``),
  a smaller ``batch``, a smaller ``weights`` or ``kv`` format the device runs,
  ``allow_offload`` where the device has a host tier. For training: a higher ``zero`` stage on
  the same devices (the lowest that fits, of the engine's stages) first, then ``tp``, ``dp`` with
  the engine's highest ZeRO stage, a smaller ``micro_batch``, activation recomputation, an 8-bit
  optimizer.
  ``streams_from_storage`` is true when the changed configuration places weights on the
  device's storage tier (a phone's flash, read every step); such changes come after those that
  fit in memory.
* ``estimate``: the full estimate of the request as given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hwmodels.errors import TierwiseError
from planner.engines import ZERO_STAGES, load_engine, tp_allowed
from planner.request.engine import canonical

__all__ = ["DoesNotFitError", "Fix", "inference_does_not_fit", "training_does_not_fit"]

#: Multiples of the current degree tried for "more devices".
_MULTIPLES = (2, 4, 8, 16, 32, 64)
#: Smaller weight formats tried, least lossy first.
_WEIGHT_LADDER = ("fp8-e4m3", "int8", "int4-g128", "int3-g128", "int2-g128")
#: Smaller KV-cache formats tried, least lossy first.
_KV_LADDER = ("fp8-e4m3", "int8", "int4-g64")


@dataclass(frozen=True, slots=True)
class Fix:
    """One change of request fields that makes the request fit."""

    kind: str  # devices | batch | weights | kv | offload | zero | micro_batch | recompute | optimizer | combined
    set: dict[str, Any]
    per_device_bytes: float
    #: the change fits only with weights streamed from the device's storage tier (a phone's flash)
    streams: bool = False
    #: weights per device the changed configuration keeps in host memory, streamed every step (offload)
    host_weights_bytes: float = 0.0

    def _where(self) -> str:
        """Where the weights that do not fit go: without it an offload change of 27.75 GB on a 24 GB
        device reads as not fitting."""
        where = ", weights streamed from storage" if self.streams else ""
        if self.host_weights_bytes > 0:
            where += f", {self.host_weights_bytes / 1e9:.2f} GB of weights streamed from host memory each step"
        return where

    def text(self) -> str:
        parts = []
        for k, v in self.set.items():
            parts.append("{@" + k + "}" if v is True else "{@" + k + "} " + str(v))
        return " ".join(parts) + f" ({self.per_device_bytes / 1e9:.2f} GB per device{self._where()})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "set": dict(self.set), "per_device_bytes": self.per_device_bytes,
                "streams_from_storage": self.streams, "host_weights_bytes": self.host_weights_bytes,
                "description": ", ".join(f"{k}={v}" for k, v in self.set.items())
                + f": {self.per_device_bytes / 1e9:.2f} GB per device{self._where()}"}


class DoesNotFitError(TierwiseError):
    """The configuration needs more memory than the device holds (see the module docstring)."""

    kind = "infeasible"
    code = "infeasible"

    def __init__(self, *, what: str, needed: float, capacity: float, device_id: str, fixes: list[Fix],
                 estimate: dict | None, result: Any = None, shortfall: float | None = None,
                 limit: str | None = None, limit_details: dict | None = None) -> None:
        """``shortfall``: the bytes the configuration is short by (the estimate's
        ``memory.shortfall_bytes``; default needed - capacity); ``limit``: the sentence naming what
        binds when it is not the device's capacity (an engine's KV pool, weights streamed from slower
        tiers), with ``limit_details`` for the JSON details."""
        short = max(needed - capacity, 0.0) if shortfall is None else shortfall
        if limit is None:
            msg = (f"{what} does not fit: it needs {needed / 1e9:.2f} GB per device, {short / 1e9:.2f} GB more than "
                   f"the {capacity / 1e9:.2f} GB {device_id} holds")
        else:
            msg = f"{what} does not fit: {limit}"
        if fixes:
            msg += ". Changes that fit (each replaces the values it sets): " + "; ".join(f.text() for f in fixes)
        else:
            msg += "; no single change of devices, batch or formats makes it fit"
        self.fixes = tuple(fixes)
        self.estimate = estimate
        self.result = result  # the estimate object (InferenceEstimate / TrainingEstimate), for printing
        super().__init__(msg, field=None, details={
            "reason": "does_not_fit",
            "per_device_bytes": needed,
            "device_capacity_bytes": capacity,
            "shortfall_bytes": short,
            "limited_by": (limit_details or {}).get("limited_by", "device_memory"),
            **{k: v for k, v in (limit_details or {}).items() if k != "limited_by"},
            "changes": [f.to_dict() for f in fixes],
            "estimate": estimate,
        })


def _json(d: dict) -> dict:
    from planner.request.fields import json_safe

    return json_safe(d)


# ---------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------


def _layout_ok(arch: Any, device: Any, training: bool, **degrees: int) -> bool:
    """Whether a layout passes the same checks as a request (model and links)."""
    from planner.request.fields import check_layout_fields

    v = {"tp": 1, "pp": 1, "dp": 1, "ep": 1, "cp": 1, "devices": None, **degrees}
    try:
        check_layout_fields(arch, device, v, training=training)
    except TierwiseError:
        return False
    return True


def _smaller(names: tuple[str, ...], current: str, device: Any) -> list[str]:
    from planner.formats import get_format

    cur = get_format(current).bits_per_value()
    return [n for n in names if get_format(n).bits_per_value() < cur and device.supports(n) != "unsupported"]


def _engine_ladder(names: tuple[str, ...], preferred: tuple[str, ...], device: Any) -> tuple[str, ...]:
    """An engine's formats, least lossy first: by whole bits per value, then the device's native
    formats, then the order of ``preferred`` (fp8 before int8 at eight bits), then finer scales."""
    import math

    from planner.formats import get_format

    def key(n: str) -> tuple:
        bits = get_format(n).bits_per_value()
        return (-math.floor(bits), device.supports(n) != "native",
                preferred.index(n) if n in preferred else len(preferred), -bits)

    return tuple(sorted(names, key=key))


def inference_does_not_fit(r: Any, est: Any) -> DoesNotFitError:
    """The error for a resolved inference request ``r`` whose estimate ``est`` does not fit."""
    from planner.costmodel import max_batch, memory_report

    arch, dev, lay = r.arch, r.device, r.layout

    def fitting(kind: str, change: dict[str, Any], layout=lay, serving=r.serving, choice=r.choice,
                options=r.options) -> Fix | None:
        """The change as a :class:`Fix` when the configuration it gives fits (marked when its weights
        stream from the device's storage tier), else None."""
        try:
            m = memory_report(arch, dev, layout, serving, choice, None, options)[0]
        except (TierwiseError, ValueError):
            return None  # a candidate the cost model refuses is not suggested
        if not m.fits:
            return None
        streams = any(t.role == "storage" and t.weights_bytes > 0 for t in m.tiers)
        host = sum(t.weights_bytes for t in m.tiers if t.role == "host")
        return Fix(kind, change, m.per_device_bytes, streams=streams, host_weights_bytes=host)

    sup = r.engine  # changes the engine cannot run are not suggested
    capacity = est.memory.device_capacity_bytes
    fixes: list[Fix] = []

    def first_fit(candidates) -> Fix | None:
        """The first candidate that fits in the device's own memory, else the first that fits at all (a
        phone or a Jetson streaming weights from its flash storage, seconds per token)."""
        spill = None
        for make in candidates:
            fix = make()
            if fix is None:
                continue
            if fix.per_device_bytes <= capacity and not fix.streams:
                return fix
            spill = spill or fix
        return spill

    for name in ("tp", "pp"):
        if sup is not None and name not in sup.parallel:
            continue

        def grown(k: int, name: str = name):
            def make() -> Fix | None:
                new = replace(lay, **{name: getattr(lay, name) * k})
                s = {name: getattr(new, name)}
                if r.values.get("devices") is not None:
                    s["devices"] = new.devices
                return fitting("devices", s, layout=new)
            return make

        sizes = []
        for k in _MULTIPLES:
            new = replace(lay, **{name: getattr(lay, name) * k})
            if not _layout_ok(arch, dev, False, tp=new.tp, pp=new.pp, dp=new.dp, ep=new.ep, cp=new.cp):
                break
            sizes.append(grown(k))
        fix = first_fit(sizes)
        if fix is not None:
            fixes.append(fix)
            break
    if r.serving.batch > 1 and not r.batch_max:
        b = max_batch(arch, dev, lay, replace(r.serving, batch=1), r.choice, options=r.options)
        fix = fitting("batch", {"batch": b}, serving=replace(r.serving, batch=b)) if b >= 1 else None
        if fix is not None:
            fixes.append(fix)
    for field, ladder in (("weights", _WEIGHT_LADDER), ("kv", _KV_LADDER)):
        if field == "kv" and not arch.generative:
            continue
        if sup is not None:  # the engine's own formats, least lossy first (llama.cpp: int8-g32, int4-g32, ...)
            ladder = _engine_ladder(sup.kv if field == "kv" else sup.weights, ladder, dev)

        def smaller(name: str, field: str = field):
            def make() -> Fix | None:
                change: dict[str, Any] = {field: name}
                if field == "weights" and sup is not None and not sup.runs(name, canonical(r.choice.activations)):
                    # the engine runs these weights with other activations (llama.cpp's quantized matmuls
                    # take int8 activations): suggest the pair
                    acts = [a for a in sup.activations_for(name) if dev.supports(a) != "unsupported"]
                    if not acts:
                        return None
                    change["activations"] = acts[0]
                return fitting(field, change, choice=replace(r.choice, **change))
            return make

        fix = first_fit([smaller(n) for n in _smaller(ladder, getattr(r.choice, field), dev)])
        if fix is not None:
            fixes.append(fix)
    if not r.options.allow_offload and any(t.role == "host" for t in dev.tiers):
        fix = fitting("offload", {"allow_offload": True}, options=replace(r.options, allow_offload=True))
        if fix is not None:
            fixes.append(fix)
    # changes that fit in memory first; those that fit only by streaming weights from storage after them
    fixes.sort(key=lambda f: f.streams)
    m = est.memory
    limit, limit_details = _inference_limit(m, r.options, sup, dev)
    return DoesNotFitError(what=f"{arch.id} on {lay.devices}× {dev.id}", needed=m.per_device_bytes,
                           capacity=m.device_capacity_bytes, device_id=dev.id, fixes=fixes,
                           estimate=_json(est.to_dict(ops=r.per_op)), result=est, shortfall=m.shortfall_bytes,
                           limit=limit, limit_details=limit_details)


def pool_setting(sup: Any) -> str:
    """What sets the share of memory an engine's KV pool takes, to follow that share in a message:
    ', its --gpu-memory-utilization' (the engine's own setting, ``memory_fraction_setting``), or for an
    engine with none (TVM sizes its KV cache in tokens, DeepSpeed-FastGen reserves bytes) that the share
    is the profile's; '' without an engine."""
    if sup is None:
        return ""
    setting = getattr(sup.runtime, "memory_fraction_setting", None)
    if setting:
        return f", its {setting}"
    return f"; {sup.engine} has no setting for that share, {sup.profile_file} estimates it"


def _inference_limit(m: Any, options: Any, sup: Any, dev: Any) -> tuple[str | None, dict]:
    """The sentence naming what an inference configuration does not fit, when it is not simply the
    device's capacity, and its JSON details."""
    gb = 1e9
    if m.limited_by == "kv_pool":
        engine = sup.engine if sup is not None else "the engine"
        frac = options.kv_memory_fraction
        text = (f"its KV cache needs {m.kv_on_device_bytes / gb:.2f} GB per device but {engine}'s KV pool "
                f"({frac:.0%} of the memory weights, activations and its runtime context leave"
                f"{pool_setting(sup)}) holds {m.kv_pool_bytes / gb:.2f} GB: "
                f"{m.shortfall_bytes / gb:.2f} GB short, although the whole configuration takes "
                f"{m.per_device_bytes / gb:.2f} GB of the {m.device_capacity_bytes / gb:.2f} GB {dev.id} holds")
        return text, {"limited_by": "kv_pool", "kv_pool_bytes": m.kv_pool_bytes,
                      "kv_cache_on_device_bytes": m.kv_on_device_bytes, "kv_memory_fraction": frac}
    slow = [t for t in m.tiers if t.role not in ("device", "on_chip") and t.weights_bytes + t.kv_cache_bytes > 0]
    if slow and m.shortfall_bytes < m.per_device_bytes - m.device_capacity_bytes - 1.0:
        where = ", ".join(t.name for t in slow)
        text = (f"it needs {m.per_device_bytes / gb:.2f} GB per device; with what may go to slower tiers placed "
                f"there ({where}), what stays on the device (KV cache, activations, runtime context) is still "
                f"{m.shortfall_bytes / gb:.2f} GB more than the {m.device_capacity_bytes / gb:.2f} GB {dev.id} holds")
        return text, {"limited_by": "device_memory"}
    return None, {"limited_by": "device_memory"}


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def _training_combined(arch: Any, dev: Any, cfg: Any, per_device, devices) -> list[Fix]:
    """When no single change fits: more devices (tp, else dp with ZeRO-3) together with
    full recomputation and one sequence per micro-batch — the fewest devices that fit."""
    lean = {"recompute": "full", "micro_batch": 1}
    lean_set = {k: v for k, v in lean.items() if getattr(cfg, k) != v}
    for k in (1,) + _MULTIPLES:
        tp = cfg.tp * k
        if not _layout_ok(arch, dev, True, tp=tp, pp=cfg.pp, dp=cfg.dp, ep=cfg.ep, cp=cfg.cp) or \
                not tp_allowed(cfg.engine, arch, tp):
            break
        got = per_device(tp=tp, **lean)
        if got is not None:
            return [Fix("combined", {**({"tp": tp, **devices(tp, cfg.dp)} if k > 1 else {}), **lean_set}, got)]
    top = max(_engine_zero_stages(cfg.engine, cfg.pp), default=cfg.zero)
    if cfg.pp == 1:
        for k in _MULTIPLES + (128, 256, 512):
            dp = cfg.dp * k
            if not _layout_ok(arch, dev, True, tp=cfg.tp, pp=cfg.pp, dp=dp, ep=cfg.ep, cp=cfg.cp):
                continue
            got = per_device(dp=dp, zero=top, global_batch=dp, **lean)
            if got is not None:
                s = {"dp": dp, "zero": top, **devices(cfg.tp, dp), "global_batch": dp, **lean_set}
                return [Fix("combined", s, got)]
    return []


def _engine_zero_stages(engine: str | None, pp: int) -> tuple[int, ...]:
    """The ZeRO stages the training engine offers (its profile's ``zero``), lowest first; stages 2 and 3
    shard gradients, which pipeline parallelism accumulates, so not with ``pp`` > 1."""
    stages = ZERO_STAGES if engine is None else load_engine(engine).zero
    return tuple(sorted(s for s in stages if pp == 1 or s < 2))


def _engine_has_optimizer(engine: str | None, optimizer: str) -> bool:
    """Whether the training engine has ``optimizer`` (its profile's ``optimizers``)."""
    return engine is None or optimizer in load_engine(engine).optimizers


def training_does_not_fit(arch: Any, dev: Any, cfg: Any, est: Any, given: dict | None = None) -> DoesNotFitError:
    """The error for a training configuration ``cfg`` whose estimate ``est`` does not fit.
    ``given``: the request's given fields (a changed layout updates ``devices`` if given)."""
    from planner.training import estimate_training

    given = given or {}

    def per_device(**changes: Any) -> float | None:
        try:
            m = estimate_training(arch, dev, replace(cfg, **changes)).memory
        except (TierwiseError, ValueError):
            return None
        return m.per_device_bytes if m.fits else None

    def devices(tp: int, dp: int) -> dict[str, int]:
        return {"devices": tp * cfg.cp * cfg.pp * dp} if given.get("devices") is not None else {}

    fixes: list[Fix] = []
    stages = _engine_zero_stages(cfg.engine, cfg.pp)
    if cfg.dp > 1:
        # a higher ZeRO stage on the same devices: the lowest that fits (least communication) comes first
        for z in (s for s in stages if s > cfg.zero):
            got = per_device(zero=z)
            if got is not None:
                fixes.append(Fix("zero", {"zero": z}, got))
                break
    for k in _MULTIPLES:
        tp = cfg.tp * k
        if not _layout_ok(arch, dev, True, tp=tp, pp=cfg.pp, dp=cfg.dp, ep=cfg.ep, cp=cfg.cp) or \
                not tp_allowed(cfg.engine, arch, tp):
            break
        got = per_device(tp=tp)
        if got is not None:
            fixes.append(Fix("devices", {"tp": tp, **devices(tp, cfg.dp)}, got))
            break
    top = max(stages, default=cfg.zero)
    if cfg.pp == 1 and top >= cfg.zero:
        for k in _MULTIPLES:
            dp = cfg.dp * k
            gb = cfg.global_batch if given.get("global_batch") is not None else cfg.micro_batch * dp
            if gb % (cfg.micro_batch * dp) or not _layout_ok(arch, dev, True, tp=cfg.tp, pp=cfg.pp, dp=dp, ep=cfg.ep,
                                                              cp=cfg.cp):
                continue
            got = per_device(dp=dp, zero=top, global_batch=gb)
            if got is not None:
                s = {"dp": dp, **({"zero": top} if cfg.zero != top else {}), **devices(cfg.tp, dp)}
                fixes.append(Fix("devices", s, got))
                break
    mb = cfg.micro_batch // 2
    while mb >= 1:
        got = per_device(micro_batch=mb)
        if got is not None:
            fixes.append(Fix("micro_batch", {"micro_batch": mb}, got))
            break
        mb //= 2
    order = ("none", "selective", "full")
    for mode in order[order.index(cfg.recompute) + 1:] if cfg.recompute in order else ():
        got = per_device(recompute=mode)
        if got is not None:
            fixes.append(Fix("recompute", {"recompute": mode}, got))
            break
    # an optimizer with 8-bit moments the engine has: bitsandbytes' (Dettmers et al. 2022), else FP8 moments
    # (Megatron's precision-aware optimizer)
    lean_opt = next((o for o in ("adamw-8bit", "adamw-fp8") if _engine_has_optimizer(cfg.engine, o)), None)
    if cfg.optimizer == "adamw" and lean_opt is not None:
        got = per_device(optimizer=lean_opt)
        if got is not None:
            fixes.append(Fix("optimizer", {"optimizer": lean_opt}, got))
    if not fixes:
        fixes = _training_combined(arch, dev, cfg, per_device, devices)
    m = est.memory
    return DoesNotFitError(what=f"training {arch.id} on {cfg.tp * cfg.cp * cfg.pp * cfg.dp}× {dev.id}",
                           needed=m.per_device_bytes, capacity=m.device_capacity_bytes, device_id=dev.id,
                           fixes=fixes, estimate=_json(est.to_dict()), result=est)
