"""Plan requests: what ``tierwise plan``, ``POST /v1/plans`` and :func:`planner.plan` solve.

:class:`PlanRequest` holds the fields as the front ends give them (``None``: not given);
:func:`resolve_plan` validates them, fills the defaults and translates them into the
solver's problem (``planner.search`` ``PlanProblem``); :func:`run_plan` solves it.
Layout degrees left out are searched; ``kv`` left out searches the KV-cache formats too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwmodels.errors import TierwiseError, echo_value

from planner.engines import EngineSupportError, check_request, low_rank_refusal
from planner.plan import MAX_DEVICES
from planner.request.engine import ENGINE_HELP, canonical, exporter_limits, format_key, resolve_engine
from planner.request.estimate import check_fields_apply, check_sequence, load_specs
from planner.request.fields import (
    PLAN_CLI_ALIASES,
    bad,
    check_bool,
    check_choice,
    check_format,
    check_int,
    check_list,
    check_number,
    float_from_text,
    check_with,
    fill_defaults,
    opt,
    parse_duration,
    time_limit,
    parse_size,
    usable_as,
)

if TYPE_CHECKING:
    from planner.deadline import Deadline

__all__ = ["CLI_ALIASES", "PlanRequest", "resolve_plan", "run_plan"]

#: Fields whose command-line flag is not the field name (declared with the fields).
CLI_ALIASES = PLAN_CLI_ALIASES


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRequest:
    """A compression + parallelism plan request (``None``: not given)."""

    model: Any = opt("Catalog id or path to an HF-style config.")
    hardware: Any = opt("Catalog id or path to a hardware YAML.")
    devices: int | None = opt("Devices in total; the layout is searched unless fixed.", 1)
    tp: int | None = opt("Fix the tensor-parallel degree (searched when left out).")
    pp: int | None = opt("Fix the pipeline-parallel degree (searched when left out).")
    dp: int | None = opt("Fix the data-parallel degree (searched when left out).")
    ep: int | None = opt("Fix the expert-parallel degree (MoE; searched when left out).")
    batch: int | None = opt("Sequences per replica.", 1)
    prompt: int | None = opt("Prompt tokens per request.", 512)
    gen: int | None = opt("Generated tokens per request.", 128)
    max_memory_per_device: float | str | None = opt("Device-memory budget per device: bytes or a size like 60GB.")
    ttft_slo_s: float | str | None = opt("Time-to-first-token target: seconds or a duration like 500ms.")
    tpot_slo_s: float | str | None = opt("Time-per-output-token target: seconds or a duration like 50ms (phones: "
                                         "200ms unless given; 'none' for no limit).")
    avg_bits: float | None = opt("Average weight bits at most (scales included).")
    allow_offload: bool | None = opt("Let weights live in host memory (slow).", False)
    objective: str | None = opt("What to minimise: accuracy, latency, memory, cost or weighted.", "accuracy",
                                choices=("accuracy", "latency", "memory", "cost", "weighted"))
    objective_weights: dict[str, float] | None = opt("For objective weighted: accuracy, latency, memory weights.")
    formats: list[str] | str | None = opt("Weight formats to choose from, e.g. bf16,fp8,int8,int4-g128.")
    sparsity: list[str] | str | None = opt("Sparsity patterns to offer, e.g. 2:4,unstructured:0.7 (dense: none).")
    kv: str | None = opt("Fix the KV-cache format (searched when left out).")
    activations: str | None = opt("Compute format outside the groups (default: the device's native 16-bit format).")
    pins: dict[str, str] | None = opt("Pin groups: PATTERN → OPTION, e.g. model.lm_head → bf16.")
    low_rank: list[int] | str | None = opt("Also offer low-rank factorisations of linear groups at these ranks.")
    sensitivity: str | None = opt("prior | weights:PATH.safetensors | a sensitivity YAML/JSON file.", "prior")
    backend: str | None = opt("ILP backend: highs or cbc.", "highs", choices=("highs", "cbc"))
    time_limit_s: float | str | None = opt("Wall-clock limit of the whole search: seconds, or e.g. 90s, 5min, 1h.", 60.0)
    gap: float | None = opt("Relative optimality gap to stop at.", 1e-3)
    engine: str | None = opt(ENGINE_HELP)


#: Default time-per-output-token limit of plans on phones, where an unconstrained plan can
#: stream a 16-bit model from flash at seconds per token: 0.2 s/token = 5 tokens/s, about
#: adult silent reading speed — 238 words/min for non-fiction (Brysbaert, "How many words do
#: we read per minute? A review and meta-analysis of reading rate", Journal of Memory and
#: Language 109, 2019) at ~1.33 tokens per word (OpenAI's rule of thumb, 100 tokens ≈ 75
#: words, https://help.openai.com/en/articles/4936856). A given ``tpot_slo_s`` replaces it;
#: ``none`` removes it.
PHONE_TPOT_S = 0.2
_NO_LIMIT = ("none", "off")


def _tpot(value: Any, arch: Any, dev: Any) -> float | None:
    if isinstance(value, str) and value.strip().lower() in _NO_LIMIT:
        return None
    if value is not None and not arch.generative:
        raise TierwiseError(f"{{@tpot_slo_s}} {value} does not apply to {arch.id} ({arch.family}): it generates no "
                            "tokens, so there is no time per output token; bound its latency with {@ttft_slo_s}",
                            field="tpot_slo_s", code="not_applicable", details={"family": arch.family})
    if value is not None:
        return parse_duration("tpot_slo_s", value)
    return PHONE_TPOT_S if dev.device_class == "phone" and arch.generative else None


def _degree(v: dict, name: str) -> int | None:
    return None if v[name] is None else check_int(name, v[name], hi=MAX_DEVICES)


def _sparsity(v: Any) -> tuple[str, ...]:
    from planner.formats import parse_sparsity

    items = check_list("sparsity", v, max_len=16, unique=lambda s: check_with("sparsity", s, parse_sparsity).name)
    return () if tuple(str(s).strip().lower() for s in items) == ("dense",) else items


def _mapping(name: str, v: Any, value_check, example: str) -> dict:
    """A mapping, also from command-line text: 'a=1,b=2' or a list of 'a=1' items."""
    if isinstance(v, str):
        v = [x for x in v.split(",") if x.strip()]
    if isinstance(v, (list, tuple)):
        pairs = {}
        for item in v:
            key, sep, val = str(item).partition("=")
            if not sep or not key.strip() or not val.strip():
                raise TierwiseError(f"{{@{name}}} takes KEY=VALUE pairs like {example}; got {echo_value(item)}",
                                    field=name, code="invalid_field")
            if key.strip() in pairs:  # a mapping has one value per key: the last one silently winning is a surprise
                raise TierwiseError(f"{{@{name}}} gives {key.strip()!r} more than once ({pairs[key.strip()]} and "
                                    f"{val.strip()}); give each once", field=name, code="invalid_field",
                                    details={"repeated": key.strip()})
            pairs[key.strip()] = val.strip()
        v = pairs
    if not isinstance(v, dict):
        raise bad(name, "a mapping", v)
    if len(v) > 10_000:
        raise bad(name, "a mapping of at most 10000 entries", f"{len(v)} entries")
    out = {}
    for k, x in v.items():
        if not isinstance(k, str) or not k.strip():
            raise bad(name, "a mapping with non-empty text keys", k)
        out[k.strip()] = value_check(k, x)
    return out


def _weight(key: str, x: Any) -> float:
    check_choice("objective_weights", key, ("accuracy", "latency", "memory"))
    if isinstance(x, str):
        v = float_from_text(x)
        if v is None:
            raise bad("objective_weights", f"a number >= 0 for {key}", x)
        x = v
    return check_number("objective_weights", x, lo=0.0, lo_open=False)


def _pin_value(key: str, x: Any) -> str:
    if not isinstance(x, str) or not x.strip():
        raise bad("pins", "GROUP_PATTERN → OPTION pairs such as model.lm_head → bf16", x)
    return x.strip()


def _rank(r: Any) -> int:
    """One absolute rank (an integer >= 1, or its text)."""
    if isinstance(r, str):
        if not r.strip().isdigit():
            raise TierwiseError(f"{{@low_rank}} takes ranks as integers >= 1 separated by commas, e.g. 256,512; "
                                f"got {echo_value(r)}", field="low_rank", code="invalid_field")
        r = int(r)
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 1 << 24:
        raise TierwiseError(f"{{@low_rank}}: a low rank must be an integer >= 1; got {echo_value(r)}",
                            field="low_rank", code="invalid_field")
    return r


def _ranks(v: Any) -> tuple[int, ...]:
    """Absolute ranks (integers >= 1), sorted; a rank given twice is an error, as a repeated item of
    every list field is."""
    items = check_list("low_rank", [v] if isinstance(v, int) else v, max_len=16, unique=_rank)
    return tuple(sorted(_rank(r) for r in items))


def resolve_plan(req: PlanRequest) -> tuple[Any, Any, Any, Any]:
    """(arch, device, solver problem, sensitivity spec) of a validated plan request."""
    from planner.plan import MAX_BATCH, MAX_TOKENS, OBJECTIVES
    from planner.search import PlanProblem
    from planner.search_problem import ordered_layouts
    from planner.solver import BACKENDS

    arch, dev = load_specs(req.model, req.hardware)
    sup = _exportable(resolve_engine(req.engine, dev, training=False, arch=arch), arch, req.kv, req.formats)
    v = fill_defaults(req, arch, dev)
    degrees = {n: _degree(v, n) for n in ("tp", "pp", "dp", "ep")}
    if req.devices is None and any(degrees[n] is not None for n in ("tp", "pp", "dp")):
        # devices left out beside fixed degrees: their product, as estimate takes it
        v["devices"] = math.prod(degrees[n] or 1 for n in ("tp", "pp", "dp"))
    devices = check_int("devices", v["devices"], hi=MAX_DEVICES)
    batch = check_int("batch", v["batch"], hi=MAX_BATCH)
    prompt = check_int("prompt", v["prompt"], lo=0, hi=MAX_TOKENS)
    gen = check_int("gen", v["gen"], lo=0, hi=MAX_TOKENS)
    check_sequence(arch, prompt, gen)
    budget = None if v["max_memory_per_device"] is None else parse_size("max_memory_per_device", v["max_memory_per_device"])
    ttft = None if v["ttft_slo_s"] is None else parse_duration("ttft_slo_s", v["ttft_slo_s"])
    tpot = _tpot(v["tpot_slo_s"], arch, dev)
    avg_bits = None if v["avg_bits"] is None else check_number("avg_bits", v["avg_bits"], hi=32)
    objective = check_choice("objective", getattr(v["objective"], "value", v["objective"]), OBJECTIVES)
    weights = _mapping("objective_weights", {} if v["objective_weights"] is None else v["objective_weights"], _weight,
                       "accuracy=1,latency=0.5")
    if objective == "weighted" and not any(weights.values()):
        raise TierwiseError("{@objective} weighted needs {@objective_weights} with a positive weight, e.g. "
                            "accuracy=1,latency=0.5", field="objective_weights", code="invalid_field")
    if weights and objective != "weighted":  # they would be ignored: the plan optimises one term
        raise TierwiseError(f"{{@objective_weights}} apply to {{@objective}} weighted only; the objective is "
                            f"{objective}: set {{@objective}} weighted or remove {{@objective_weights}}",
                            field="objective_weights", code="invalid_field")
    formats = None if v["formats"] is None else tuple(
        check_format("formats", f, "weight") for f in check_list("formats", v["formats"], unique=format_key))
    sparsity = () if v["sparsity"] is None else _sparsity(v["sparsity"])  # dense unless asked
    kv = None if v["kv"] is None else check_format("kv", v["kv"], "kv")
    check_fields_apply(arch, {"kv": kv})
    act = None if v["activations"] is None else check_format("activations", v["activations"], "activation")
    given_formats = formats is not None
    formats, act = _engine_formats(sup, dev, formats, act)
    format_sets = () if given_formats else _format_sets(sup, dev, formats)
    if v["activations"] is not None and canonical(act) not in sup.activations:
        raise EngineSupportError(f"{sup.engine} on {sup.device} does not compute in {{@activations}} {act!r}; it runs: "
                                 f"{', '.join(usable_as(sup.activations, 'activation'))}", field="activations")
    check_request(sup, kv=None if kv is None else canonical(kv), layout={n: d for n, d in degrees.items() if d})
    for pattern in sparsity:
        check_request(sup, sparsity=pattern)
    pins = _mapping("pins", {} if v["pins"] is None else v["pins"], _pin_value, "model.lm_head=bf16")
    _check_pins(sup, pins, act)
    pins = _engine_role_pins(sup, arch, pins, act)
    low_rank = None if v["low_rank"] is None else _ranks(v["low_rank"])
    check_request(sup, low_rank=low_rank)
    problem = PlanProblem(
        devices=devices, **degrees, batch=batch, prompt=prompt, gen=gen, max_memory_per_device_bytes=budget,
        ttft_slo_s=ttft, tpot_slo_s=tpot, tpot_slo_default=tpot is not None and v["tpot_slo_s"] is None, avg_bits=avg_bits,
        allow_offload=check_bool("allow_offload", v["allow_offload"]), objective=objective,
        objective_weights=weights, formats=formats, format_sets=format_sets, sparsity=sparsity, kv=kv, activations=act, pins=pins,
        low_rank=low_rank, engine=sup, backend=check_choice("backend", getattr(v["backend"], "value", v["backend"]), BACKENDS),
        time_limit_s=time_limit("time_limit_s", v["time_limit_s"]),
        gap=check_number("gap", v["gap"], lo=0.0, lo_open=False, hi=0.5),
    )
    if not isinstance(v["sensitivity"], str) or not v["sensitivity"].strip():
        raise bad("sensitivity", "prior, weights:PATH.safetensors or a sensitivity file", v["sensitivity"])
    # At least one parallel layout of the devices runs there (degrees, engine, the device's links):
    # refused now, naming the degree given, rather than as no format left for some group mid-search.
    ordered_layouts(arch, dev, problem)
    return arch, dev, problem, v["sensitivity"]


def _engine_formats(sup: Any, dev: Any, formats: tuple[str, ...] | None,
                    act: str | None) -> tuple[tuple[str, ...], str | None]:
    """The weight formats to search (given ones checked against the engine; by default the
    planner's default candidates that the engine runs on ``dev``) and the compute format
    (the device's 16-bit one unless the engine does not run it)."""
    from planner.formats import get_format, with_substitutes
    from planner.options import DEFAULT_WEIGHT_FORMATS, MIN_DEFAULT_BITS, base_activation_format

    if act is None:
        native = base_activation_format(dev)
        act = native if native in sup.activations or not sup.activations else sup.activations[0]
    if formats is not None:
        bad_ones = [f for f in formats if canonical(f) not in sup.weights]
        if bad_ones:
            raise EngineSupportError(
                f"{{@formats}} {', '.join(bad_ones)}: {sup.engine} does not run {'it' if len(bad_ones) == 1 else 'them'}"
                f" on {sup.device}; it runs: {', '.join(sup.weights)} (or re-plan with another {{@engine}})",
                field="formats", details={"engine": sup.engine, "supported": list(sup.weights)})
        _check_exclusive(sup, formats)
        return formats, act
    names = [base_activation_format(dev), *DEFAULT_WEIGHT_FORMATS]
    out = [get_format(n).name for n in names
           if get_format(n).element_bits >= MIN_DEFAULT_BITS and dev.supports(get_format(n).name) != "unsupported"]
    # Formats the engine applies to the whole model at once are searched only when asked for.
    wanted = list(dict.fromkeys(out))
    out = [n for n in wanted if n in sup.weights and n not in sup.exclusive]
    # A default the engine lacks is replaced by the engine's own format of that kind and width
    # (per-channel int8 → llama.cpp's Q8_0, int8-g32) when no default of that width is left.
    out = with_substitutes(wanted, out, [w for w in sup.weights
                                         if w not in sup.exclusive and dev.supports(w) != "unsupported"])
    if not out:
        out = [w for w in sup.weights if dev.supports(w) != "unsupported"] or list(sup.weights[:1])
    return tuple(out), act


def _format_sets(sup: Any, dev: Any, defaults: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """By default, an engine that applies some formats to the whole model at once (its
    ``exclusive`` formats: ExecuTorch's one ``-qmode``, MLC's one ``--quantization``,
    bitsandbytes nf4) gets one solve with its other defaults and one per such format alone;
    the best plan wins. Nothing to split: ``()`` (one solve over ``defaults``)."""
    alone = [f for f in sup.exclusive if f in sup.weights and dev.supports(f) != "unsupported" and f not in defaults]
    return (defaults, *((f,) for f in alone)) if alone else ()


def _check_pins(sup: Any, pins: Mapping[str, str], act: str) -> None:
    """Each pinned option against the engine, like a given format: its weights, its activations
    (the compute format ``act`` for a weight-only key) and its sparsity must be what the engine
    runs on the hardware, or the plan could not be exported for it. A key that does not parse is
    left to the planner's own pin check, which names it."""
    from planner.options import OptionError, parse_option_key

    if not sup.schemes:
        return
    where = f"{sup.engine} on {sup.device}"
    for pattern, key in pins.items():
        try:
            w, sp, a, rank = parse_option_key(key)
        except OptionError:
            continue
        if rank is not None and not sup.low_rank:
            raise EngineSupportError(f"{{@pins}} {pattern}={key}: {low_rank_refusal(sup)} (pin {w} without @r{rank}, "
                                     f"or plan for one of them with {{@engine}})",
                                     field="pins", details={"engine": sup.engine})
        acts = a or canonical(act)
        if w not in sup.weights:
            raise EngineSupportError(
                f"{{@pins}} {pattern}={key}: {where} does not run {w} weights; it runs: {', '.join(sup.weights)} "
                f"(pin one of them, or plan for another {{@engine}})",
                field="pins", details={"engine": sup.engine, "supported": list(sup.weights)})
        if not sup.runs(w, acts):
            raise EngineSupportError(
                f"{{@pins}} {pattern}={key}: {where} runs {w} weights with activations "
                f"{', '.join(sup.activations_for(w))}; the pin computes in {acts}",
                field="pins", details={"engine": sup.engine, "supported": list(sup.activations_for(w))})
        pattern_sp = "unstructured" if sp.startswith("unstructured") else sp
        if sp != "dense" and pattern_sp not in sup.sparsity:
            raise EngineSupportError(
                f"{{@pins}} {pattern}={key}: {where} does not run sparsity {sp}; it runs: {', '.join(sup.sparsity)}",
                field="pins", details={"engine": sup.engine, "supported": list(sup.sparsity)})


def _engine_role_pins(sup: Any, arch: Any, pins: dict, act: str) -> dict:
    """Embeddings and LM heads that the engine's exporter writes in 16 bit whatever the plan
    says (vLLM, SGLang and transformers quantize Linear layers only; TensorRT-LLM keeps the
    embedding table: ``ROLE_RULES`` of planner/export/rules.py) are pinned to the compute
    format, so the plan's memory is what the engine holds. A user's pin on them wins."""
    import fnmatch

    from planner.options import decision_groups
    from planner.request.engine import kept_float_roles
    from planner.workload import build_workload

    keep = set(kept_float_roles(sup))  # the profile's own exporter, also for a profile file the catalog lacks
    # 16 bit whatever the plan computes in: with --activations fp8 or nvfp4 the pin is the 16-bit
    # format the engine runs, computing in 16 bit (a weight-only key would compute in ``act``).
    a = canonical(act)
    if a in ("bf16", "fp16", "fp32"):
        key = a
    else:
        w16 = next((f for f in ("bf16", "fp16", "fp32") if sup.runs(f, f)), None)
        if w16 is None:
            return pins
        key = f"{w16}/{w16}"
    out = dict(pins)
    for g in decision_groups(build_workload(arch)) if keep else ():
        if g.role in keep and not any(fnmatch.fnmatchcase(g.fqn, p) for p in pins):
            out[g.fqn] = key
    return out


def _exportable(sup: Any, arch: Any, kv: Any, formats: Any) -> Any:
    """The engine's KV and weight formats less those its exporter cannot write for this model
    (planner.export.core.Exporter.limits: Optimum ExecuTorch's float cache and int4 groups of 32),
    so the plan exports; a ``kv`` or ``formats`` given among those left out is refused saying why. Weights it
    writes weight-only (export_llama's int8) are paired with float activations only."""
    from dataclasses import replace

    from planner.engines import Scheme

    limits = exporter_limits(sup, arch)
    if not limits:
        return sup

    def names(value: Any) -> list[str]:
        out = []
        for x in ([value] if isinstance(value, str) else list(value or ()) if isinstance(value, (list, tuple)) else []):
            try:
                out.append(canonical(str(x)))
            except Exception:  # noqa: BLE001 - an unknown name: the format check names it
                continue
        return out

    def refuse(field: str, name: str, kept: tuple[str, ...]) -> None:
        what = "KV cache" if field == "kv" else "weights"
        raise EngineSupportError(f"{{@{field}}} {name}: {sup.engine} runs it on {sup.device}, but its exporter writes "
                                 f"{arch.id}'s {what} in {', '.join(kept)} only, so a plan with it could not be "
                                 f"deployed; give one of those, or leave {{@{field}}} out",
                                 field=field, details={"engine": sup.engine, "supported": list(kept)})

    out = sup
    if "kv" in limits and sup.kv:
        kept = tuple(k for k in sup.kv if k in limits["kv"]) or sup.kv[:1]
        for k in names(kv):
            if k in sup.kv and k not in kept:
                refuse("kv", k, kept)
        out = replace(out, kv=kept)
    if "weights" in limits and sup.schemes:
        allowed = set(limits["weights"])
        for w in names(formats):
            if w in sup.weights and w not in allowed:
                refuse("formats", w, tuple(x for x in sup.weights if x in allowed))
        schemes = tuple(Scheme(weights=tuple(w for w in s.weights if w in allowed), activations=s.activations)
                        for s in sup.schemes)
        out = replace(out, schemes=tuple(s for s in schemes if s.weights) or sup.schemes,
                      exclusive=tuple(x for x in sup.exclusive if x in allowed))
    if limits.get("weight_only") and out.schemes:
        # Weights the exporter writes weight-only keep float activations whatever the plan says (export_llama's
        # int8 mode): a plan pairs them with float activations only, so what it prices is what is exported.
        only = set(limits["weight_only"])
        split = []
        for s in out.schemes:
            rest = tuple(w for w in s.weights if w not in only)
            mine = tuple(w for w in s.weights if w in only)
            floats = tuple(a for a in s.activations if not _integer_format(a))
            if rest:
                split.append(Scheme(weights=rest, activations=s.activations))
            if mine and floats:
                split.append(Scheme(weights=mine, activations=floats))
        out = replace(out, schemes=tuple(split) or out.schemes)
    return out


def _integer_format(name: str) -> bool:
    from planner.formats import get_format

    return get_format(name).kind == "int"


def _check_exclusive(sup: Any, formats: tuple[str, ...]) -> None:
    """A format the engine applies to a whole model at once (bitsandbytes nf4 in transformers)
    goes only with 16-bit formats: the plan could not be exported otherwise."""
    names = [canonical(f) for f in formats]
    quantized = [f for f in names if f not in ("bf16", "fp16", "fp32")]
    alone = [f for f in quantized if f in sup.exclusive]
    if alone and len(set(quantized)) > 1:
        raise EngineSupportError(
            f"{{@formats}}: {sup.engine} applies {alone[0]} to the whole model at once; it cannot mix it with "
            f"{', '.join(sorted(set(quantized) - {alone[0]}))} — give {alone[0]} with 16-bit formats only, or drop it",
            field="formats", details={"engine": sup.engine, "exclusive": list(sup.exclusive)})


def run_plan(req: PlanRequest, *, deadline: Deadline | None = None):
    """Solve ``req``: a :class:`planner.plan.Plan`. Nothing feasible raises the planner's
    ``NoFeasiblePlanError`` with its diagnosis (exit 3 / HTTP 422 ``infeasible``).

    ``deadline``: one shared with the caller (e.g. a service job that can be cancelled);
    it bounds the whole search, diagnosis included. By default ``time_limit_s`` from now."""
    from planner.plan import with_engine
    from planner.search import Planner

    arch, dev, problem, sens = resolve_plan(req)
    return with_engine(Planner(arch, dev, sensitivity=sens).solve(problem, deadline=deadline), problem.engine)
