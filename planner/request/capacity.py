"""Capacity requests: fleet sizing for a serving load (``tierwise capacity serve``,
``POST /v1/capacity``, :func:`planner.capacity_serve`) or a training deadline
(``tierwise capacity train``, ``POST /v1/capacity/train``, :func:`planner.capacity_train`).

:func:`resolve_capacity_serve` / :func:`resolve_capacity_train` validate the fields, fill
the defaults and translate them into ``planner.capacity`` targets; the ``run_*`` functions
search serially (the CLI runs the same tasks in a process pool or on Ray).
"""

from __future__ import annotations

import math

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwmodels.errors import TierwiseError, UnknownIdError, close_ids, echo_value

from planner.deadline import Deadline
from planner.request.engine import (
    RUNTIMES,
    TRAINING_ENGINE_HELP,
    canonical,
    check_runtime,
    check_training_kernels,
    format_key,
    resolve_engine,
)
from planner.request.estimate import OPTIMIZER_NAMES, check_context, check_fields_apply, load_specs
from planner.request.fields import (
    bad,
    check_choice,
    check_format,
    check_int,
    check_list,
    check_number,
    float_from_text,
    fill_defaults,
    given_fields,
    check_distinct_ids,
    is_number,
    item_key,
    opt,
    parse_duration,
    time_limit,
    within_context,
)

__all__ = ["CAPACITY_CLI_ALIASES", "CapacityFrontierRequest", "CapacityServeRequest", "CapacityTrainRequest", "check_generative",
           "check_frontier", "engine_ids", "resolve_capacity_frontier", "resolve_capacity_serve", "resolve_capacity_train",
           "request_deadline", "resolve_training_fleet", "run_capacity_frontier", "run_capacity_serve", "run_capacity_train", "serve_intervals", "serve_pairs", "frontier_intervals",
           "train_intervals"]

CAPACITY_CLI_ALIASES = {"ttft_slo_s": "--ttft-slo", "tpot_slo_s": "--tpot-slo", "time_limit_s": "--time-limit"}
SERVING_MODES = ("aggregated", "disaggregated")
KV_LINKS = ("auto", "intra_node", "scale_out")



def check_generative(archs: Sequence[Any]) -> None:
    """Serving capacity and the frontier size models that generate tokens: an encoder's, ViT's or CNN's
    request is refused naming ``model`` (``models`` for several), before any other field is asked for."""
    for a in archs:
        if not a.generative:
            name = "models" if len(archs) > 1 else "model"
            raise TierwiseError(f"{{@{name}}} {a.id} ({a.family}) generates no tokens: serving capacity and the "
                                "frontier size token-generating models (TTFT / TPOT); price it with {!estimate}",
                                field=name, code="invalid_field")

def _all_hardware(arch: Any, device: Any) -> tuple[str, ...]:
    from hwmodels import list_devices

    return tuple(list_devices())


ENGINES_HELP = ("Serving engine, or several (a list; comma separated on the command line) compared side by side: "
                "each (engine, hardware) pair is a row, pairs the engine does not run on are listed with the reason "
                "(vllm, trtllm, sglang, ...; `tierwise engines list`); default: the hardware class's engine "
                "(docs/engines.md).")


ACTIVATIONS_HELP = ("Compute (activation) format of every weight format searched, e.g. fp8-e4m3 (W8A8), nvfp4 "
                    "(W4A4), int8: a weight format the engine does not run with it on a hardware is skipped with "
                    "the reason (default: per weight format, the engine's kernels: FP8 weights in FP8 where the "
                    "device has it natively, else 16 bits).")


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityServeRequest:
    """A serving load to size a fleet for (``None``: not given)."""

    model: Any = opt("Catalog id or path to an HF-style config (or use models).")
    models: Any = opt("Several models on one fleet (with mix).")
    mix: Any = opt("Share of the QPS per model (with models), e.g. 0.5,0.3,0.2: relative weights, "
                   "normalised to sum to 1 (0.5,0.7 gives 41.7% and 58.3%).")
    hardware: Any = opt("Candidate hardware ids (every catalog id when left out).", _all_hardware)
    qps: Any = opt("Requests per second (several, with the CLI, sweep the load).")
    prompt: int | None = opt("Prompt tokens per request.", 512)
    gen: int | None = opt("Generated tokens per request.", 128)
    ttft_slo_s: float | str | None = opt("Time-to-first-token SLO at the percentile: seconds or e.g. 500ms.")
    tpot_slo_s: float | str | None = opt("Time-per-output-token SLO at the percentile: seconds or e.g. 50ms.")
    percentile: float | None = opt("Percentile the SLOs apply to: a fraction (0.95) or a percentage (95).", 0.95)
    formats: Any = opt("Weight formats to consider.", ("bf16", "fp8", "int4-g128"))
    activations: str | None = opt(ACTIVATIONS_HELP)
    kv: str | None = opt("KV-cache format.", "bf16")
    max_devices: int | None = opt("Largest fleet considered per hardware.", 1024)
    max_pp: int | None = opt("Deepest pipeline considered.", 4)
    runtime: str | None = opt("graph (CUDA graphs / compiled engine) or eager (default: the engine's: eager for "
                              "the PyTorch-eager engines hf-transformers and torch, else graph).",
                              choices=RUNTIMES)
    time_limit_s: float | str | None = opt("Wall-clock limit of the search: seconds or e.g. 5min (unbounded when left out); when it "
                                     "runs out the answer covers the configurations searched so far.")
    engine: Any = opt(ENGINES_HELP)
    serving: str | None = opt("aggregated (prefill and decode on the same replicas) or disaggregated (also search "
                              "separate prefill and decode pools, the KV cache sent between them, and compare).",
                              "aggregated", choices=SERVING_MODES)
    kv_link: str | None = opt("Disaggregated serving: the link the KV cache crosses from prefill to decode: auto "
                              "(intra-node when a prefill and a decode instance fit in one node, else scale-out), "
                              "intra_node or scale_out.", "auto", choices=KV_LINKS)


#: The fields of a serving fleet that the throughput-latency frontier shares (declared above, once).
FRONTIER_FIELDS = ("model", "hardware", "prompt", "gen", "formats", "activations", "kv", "max_devices", "max_pp", "runtime",
                   "engine", "time_limit_s")


def _frontier_request() -> type:
    from dataclasses import field as dc_field
    from dataclasses import fields as dc_fields
    from dataclasses import make_dataclass

    decl = {f.name: f for f in dc_fields(CapacityServeRequest)}
    cls = make_dataclass("CapacityFrontierRequest",
                         [(n, decl[n].type, dc_field(default=None, metadata=decl[n].metadata)) for n in FRONTIER_FIELDS],
                         frozen=True, slots=True, kw_only=True)
    cls.__module__ = __name__
    cls.__doc__ = ("The throughput-latency frontier of a model on hardware and engines (``None``: not given); its "
                   "fields are those of :class:`CapacityServeRequest` named in ``FRONTIER_FIELDS``.")
    return cls


CapacityFrontierRequest = _frontier_request()


def _global_batch_default(arch: Any, device: Any) -> float:
    """Tokens per optimizer step when not given: 4 × 1024² tokens for a language model; for an
    image model, whose tokens are images (CNN) or patches (ViT), the batch its recipe trains at:
    8192 images for a CNN (Goyal et al. 2017, arXiv:1706.02677: ResNet-50 at 8k images per step
    keeps its accuracy), 4096 images for a ViT (Dosovitskiy et al. 2021, arXiv:2010.11929)."""
    from planner.workload import tokens_per_sample

    family = getattr(arch, "family", None)
    if family == "cnn":
        return 8192.0
    if family == "vit":
        return 4096.0 * tokens_per_sample(arch, 1)
    return 4 * 1024 * 1024


def _train_seq_default(arch: Any, device: Any) -> int:
    """Training sequence length when not given: 4096 (or the model's context when shorter); a
    CNN's sample is one image, counted as one token; a ViT's is its patches and class token."""
    family = getattr(arch, "family", None)
    if family in ("cnn", "vit"):
        from planner.workload import tokens_per_sample

        return tokens_per_sample(arch, 1)
    return within_context(4096)(arch, device)


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityTrainRequest:
    """A training run to size a cluster for (``None``: not given)."""

    model: Any = opt("Catalog id or path to an HF-style config.")
    hardware: Any = opt("Hardware id (or several, comma separated, with the CLI).")
    tokens: float | None = opt("Training tokens (e.g. 2e12).")
    days: float | None = opt("Deadline in days.")
    seq: int | None = opt("Sequence length (default 4096, or the model's context when shorter). Not for a CNN (one "
                          "image per sample, counted as one token) or a ViT (its patches).", _train_seq_default)
    global_batch_tokens: float | None = opt("Tokens per optimizer step (default 4 × 1024² for language models; "
                                            "8192 images for a CNN, 4096 images for a ViT).", _global_batch_default)
    activations: str | None = opt("Compute precision (default: the device's native 16-bit format; fp8).")
    optimizer: str | None = opt("adamw | adamw-8bit | adamw-fp8 | sgd.", "adamw", choices=OPTIMIZER_NAMES)
    max_devices: int | None = opt("Largest cluster considered.", 65536)
    time_limit_s: float | str | None = opt("Wall-clock limit of the search: seconds or e.g. 5min (unbounded when left out); when it "
                                     "runs out the answer covers the layouts searched so far.")
    engine: str | None = opt(TRAINING_ENGINE_HELP)


def _required(name: str, v: Any) -> Any:
    if v is None:
        raise TierwiseError(f"{{@{name}}} is required", field=name, code="missing_field")
    return v


def _percentile(v: Any) -> float:
    if not is_number(v):
        raise bad("percentile", "a fraction in [0.5, 1) or a percentage in [50, 100)", v)
    p = float(v)
    if 50 <= p < 100:
        p = round(p / 100.0, 12)  # 99.9 is 0.999, not 0.9990000000000001
    if not 0.5 <= p < 1.0:
        raise bad("percentile", "a fraction in [0.5, 1) or a percentage in [50, 100)", v)
    return p


def _ids(name: str, v: Any, *, unique: bool = False, key: Any = None) -> tuple[Any, ...]:
    """One or several items (a list, or comma separated text); ``unique``: a repeated one (the
    same hardware twice) is an error naming the field and the item; ``key``: what makes two
    items the same (a load of 5 and 5.0)."""
    key = key or (item_key if unique else None)
    return (v,) if not isinstance(v, (str, list, tuple)) else check_list(name, v, unique=key)


def _qps(q: Any) -> Any:
    """A load as a number (command-line text '5' → 5.0); anything else as given, for check_number."""
    return _float("qps", q) if isinstance(q, str) else q


def _load_key(q: Any) -> Any:
    """Two loads are the same when their numbers are (5, '5' and 5.0); other items never are."""
    x = _qps(q)
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else id(q)


def resolve_capacity_serve(req: CapacityServeRequest) -> tuple[list, list, list, Any]:
    """(archs, (engine, hardware) pairs, one ServeTarget per QPS, ServeSearch) of a validated request."""
    from planner.capacity import ServeSearch, ServeTarget

    v = fill_defaults(req, None, None)
    if (v["model"] is None) == (v["models"] is None):
        raise TierwiseError("give exactly one of {@model} or {@models} (several models, with {@mix} for their shares)",
                            field="model", code="invalid_field")
    names = (v["model"],) if v["model"] is not None else _ids("models", v["models"], unique=True)
    shares = [1.0] * len(names) if v["mix"] is None else [check_number("mix", x if not isinstance(x, str) else _float("mix", x))
                                                          for x in _ids("mix", v["mix"])]
    if len(shares) != len(names):
        raise TierwiseError(f"{{@mix}} needs one share per model ({len(names)}); got {len(shares)}", field="mix",
                            code="invalid_field")
    serving = check_choice("serving", v["serving"], SERVING_MODES)
    if serving == "disaggregated" and len(names) > 1:
        raise TierwiseError("{@serving} disaggregated sizes pools for one model; got several {@models}",
                            field="serving", code="invalid_field")
    archs, pairs, prompt, gen, search = _resolve_fleet(req, v, names)
    qps = [check_number("qps", _qps(q)) for q in _ids("qps", _required("qps", v["qps"]), key=_load_key)]
    ttft = parse_duration("ttft_slo_s", _required("ttft_slo_s", v["ttft_slo_s"]))
    tpot = parse_duration("tpot_slo_s", _required("tpot_slo_s", v["tpot_slo_s"]))
    pct = _percentile(v["percentile"])
    top = max(shares)  # scaled by the largest first: shares of 1e308 would sum to inf and normalise to 0
    total = sum(s / top for s in shares)
    targets = [ServeTarget(qps=q, prompt=prompt, gen=gen, ttft_slo_s=ttft, tpot_slo_s=tpot, percentile=pct,
                           mix=tuple(s / top / total for s in shares)) for q in qps]
    kv_link = check_choice("kv_link", v["kv_link"], KV_LINKS)
    if getattr(req, "kv_link", None) is not None and kv_link != "auto" and serving != "disaggregated":  # auto: the default
        raise TierwiseError("{@kv_link} is the link a disaggregated fleet's KV cache crosses from prefill to decode; "
                            "it changes nothing unless {@serving} is disaggregated", field="kv_link", code="invalid_field")
    search = ServeSearch(formats=search.formats, kv=search.kv, max_devices=search.max_devices, max_pp=search.max_pp,
                         runtime=search.runtime, kv_link=kv_link, disaggregated=serving == "disaggregated")
    return archs, pairs, targets, search


def _resolve_fleet(req: Any, v: dict, names: tuple) -> tuple[list, list, int, int, Any]:
    """(archs, (engine, hardware) pairs, prompt, gen, ServeSearch) of the fields a serving
    fleet question shares (:class:`_ServeFleet`)."""
    from planner.capacity import ServeSearch

    engines = engine_ids(req.engine)
    hw = _ids("hardware", v["hardware"], unique=True)
    try:
        loaded = [load_specs(names[0], h) for h in hw]
        archs = [loaded[0][0]] + [load_specs(n, loaded[0][1])[0] for n in names[1:]]
    except UnknownIdError as exc:
        if exc.catalog == "model" and getattr(req, "models", None) is not None:
            exc.field = "models"  # the id came through the list of models
        raise
    devices = [d for _, d in loaded]
    check_distinct_ids("hardware", hw, [d.id for d in devices])
    if req.engine is not None and req.hardware is None:  # every catalog device one of the engines runs on
        devices = [d for d in devices if any(_runs_on(e, d) for e in engines)] or devices
    prompt = check_int("prompt", v["prompt"], hi=1 << 26)
    gen = check_int("gen", v["gen"], hi=1 << 26)
    check_generative(archs)
    for a in archs:
        check_context(a, prompt + gen, ("prompt", "gen"))
    formats = tuple(check_format("formats", f, "weight") for f in check_list("formats", v["formats"], max_len=16,
                                                                                   unique=format_key))
    acts = None if v["activations"] is None else check_format("activations", v["activations"], "activation")
    kv = check_format("kv", v["kv"], "kv")
    runtime = None if v["runtime"] is None else check_choice("runtime", v["runtime"], RUNTIMES)
    pairs = serve_pairs(engines, devices, formats, kv, given_formats=req.formats is not None,
                        given_kv=req.kv is not None, runtime=runtime, archs=archs, activations=acts)
    search = ServeSearch(formats=formats, kv=kv, max_devices=check_int("max_devices", v["max_devices"], hi=1 << 20),
                         max_pp=check_int("max_pp", v["max_pp"], hi=64), runtime=runtime or "graph")
    return archs, pairs, prompt, gen, search


def _runs_on(engine: Any, device: Any) -> bool:
    from planner.engines import load_engine

    return engine is None or load_engine(engine).support(device) is not None


def engine_ids(value: Any) -> tuple[Any, ...]:
    """The engines of a request: ``(None,)`` (each hardware's default) when left out, else
    one id or path per engine (a list, or comma separated text). An unknown id, a repeated
    one or an empty list is an error naming ``engine`` (an unknown one lists the known ids)."""
    from planner.engines import EngineSpec, list_engines

    if value is None:
        return (None,)
    if isinstance(value, EngineSpec):
        return (value,)
    known = list_engines()
    items = check_list("engine", value, max_len=len(known) + 16)
    out: list[Any] = []
    for x in items:
        if isinstance(x, EngineSpec):
            out.append(x)
            continue
        if not isinstance(x, str) or not x.strip():
            raise bad("engine", "engine ids such as vllm, trtllm, sglang (a list, or comma separated)", value)
        x = x.strip()
        if x not in known and not (x.endswith((".yaml", ".yml")) and Path(x).is_file()):
            close = close_ids(x, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise TierwiseError(f"{{@engine}}: unknown engine id {echo_value(x)}{hint}; known engines: {', '.join(known)}",
                                field="engine", kind="not_found", code="not_found",
                                details={"suggestions": close, "known": known})
        if x in out:
            raise TierwiseError(f"{{@engine}} lists {echo_value(x)} more than once; give each engine once", field="engine",
                                code="invalid_field")
        out.append(x)
    if len(out) > 1:
        from planner.engines import load_engine

        check_distinct_ids("engine", out, [load_engine(x).id for x in out])
    return tuple(out)


def serve_pairs(engines: tuple, devices: list, formats: tuple[str, ...], kv: str, *, given_formats: bool,
                given_kv: bool, runtime: str | None, archs: list | None = None, activations: str | None = None) -> list:
    """One :class:`~planner.capacity.ServePair` per engine × hardware: the formats, KV
    format, reserved memory, runtime and layouts the engine runs there, or why it does not
    run there (not run at all; none of the given formats; not the given KV format; none of
    the formats with the given ``activations``). A weight format the engine runs, but not
    with the given ``activations``, is left out of the pair's search and listed in its
    ``skipped``. When no pair runs, the first pair's error is raised (naming ``engine``,
    ``formats`` or ``kv``); when pairs fail for ``activations``, an error naming it with
    what each pair runs instead."""
    from planner.capacity import ServePair

    pairs, errors = [], []
    for e in engines:
        for d in devices:
            try:
                pairs.append(_pair(e, d, formats, kv, given_formats, given_kv, runtime, archs or (), activations))
            except TierwiseError as exc:
                errors.append(exc)
                pairs.append(ServePair(device=d, engine=_engine_name(e, d), reason=exc.template))
    if not any(not p.reason for p in pairs):
        raise _no_pair_error(errors, activations)
    return pairs


def _no_pair_error(errors: list, activations: str | None) -> TierwiseError:
    """The error when no (engine, hardware) pair runs: the first pair's, unless pairs failed on
    the given ``activations`` (then one error naming it, with what each of those pairs runs
    instead and the weight formats that do compute in it)."""
    from planner.engines import EngineSupportError

    acts = [e for e in errors if e.field == "activations"]
    if not acts:
        return errors[0]
    if len(errors) == 1:
        return acts[0]
    d = [e.details or {} for e in acts]
    why = "; ".join(f"{x.get('engine')} on {x.get('hardware')}: {x.get('instead') or 'no kernels for it'}" for x in d)
    add = list(dict.fromkeys(w for x in d for w in x.get("add_formats", ())))
    others = len(errors) - len(acts)
    rest = f"; {others} other pair{'s' if others != 1 else ''} not run for other reasons" if others else ""
    hint = (f"; {', '.join(add)} weights compute in it (add them to {{@formats}})" if add else
            f"; none of the pairs runs {canonical(activations or '')} with any weight format")
    return EngineSupportError(f"no (engine, hardware) pair computes in {{@activations}} {activations!r} with the weight "
                              f"formats searched{hint}{rest}. What they run instead: {why}", field="activations",
                              details={"pairs": d, "add_formats": add})


def _engine_name(engine: Any, device: Any) -> str:
    """The id of a pair's engine: the one named, else the device's default serving engine."""
    if engine is not None:
        return engine if isinstance(engine, str) else engine.id
    from planner.engines import default_engine

    try:
        return default_engine(device, training=False).id
    except TierwiseError:
        return ""


def _pair(engine: Any, device: Any, formats: tuple[str, ...], kv: str, given_formats: bool, given_kv: bool,
          runtime: str | None, archs: Any = (), activations: str | None = None) -> Any:
    from planner.capacity import EngineSetup, ServePair, _activation_for
    from planner.engines import EngineSupportError
    from planner.request.engine import _baseline_weights

    sup = resolve_engine(engine, device, training=False, arch=archs[0] if archs else None)
    # every model of the fleet: the engine must run its family (vLLM runs no T5), and its exporter may write the
    # model's program otherwise (export_llama's weight-only int8 for a Llama, dynamic int8 for an OPT)
    others = [(a, resolve_engine(sup.engine if engine is None else engine, device, training=False, arch=a))
              for a in archs[1:]]
    runs = [f for f in formats if canonical(f) in sup.weights]
    if given_formats and not runs:
        raise EngineSupportError(f"{{@formats}} {', '.join(formats)}: {sup.engine} runs none of them on {sup.device}; "
                                 f"it runs: {', '.join(sup.weights)}", field="formats",
                                 details={"engine": sup.engine, "supported": list(sup.weights)})
    # formats given that the engine does not run here: listed with the reason, not dropped silently
    unrun = tuple((f, None, f"{sup.engine} on {sup.device} does not run {{@formats}} {f}; it runs: "
                   f"{', '.join(sup.weights)}") for f in formats if given_formats and runs and f not in runs)
    if not runs:
        runs = [_baseline_weights(sup, "bf16" if device.supports("bf16") == "native" else "fp16")]
    if sup.kv and canonical(kv) not in sup.kv:
        if given_kv:
            raise EngineSupportError(f"{sup.engine} on {sup.device} has no {{@kv}} cache format {kv!r}; it runs: "
                                     f"{', '.join(sup.kv)}", field="kv")
        kv = next((k for k in ("bf16", "fp16") if k in sup.kv), sup.kv[0])

    def act(w: str) -> str:
        acts = sup.activations_for(canonical(w))
        pref = _activation_for(device, w)
        if not acts or canonical(pref) in acts:
            return pref
        return next((a for a in ("bf16", "fp16") if a in acts), acts[0])

    skipped: tuple = ()
    if activations is not None:
        runs, skipped = _with_activations(sup, device, runs, activations)
    skipped = unrun + skipped
    launch = check_runtime(sup, runtime, device)
    pairs = tuple((w, act(w) if activations is None else canonical(activations)) for w in runs)
    kernel = _kernel(sup, launch)
    own = [(archs[0].id, kernel)] + [(a.id, _kernel(s, launch)) for a, s in others] if archs else []
    setup = EngineSetup(engine=sup.engine, formats=pairs, kv=kv,
                        reserved_bytes=sup.runtime.context_bytes, runtime=launch,
                        tp="tp" in sup.parallel, pp="pp" in sup.parallel, kernel=kernel,
                        kernels=tuple(own) if any(k != kernel for _, k in own) else ())
    return ServePair(device=device, engine=sup.engine, setup=setup, skipped=skipped)


def _with_activations(sup: Any, device: Any, runs: list, activations: str) -> tuple[list, tuple]:
    """(the weight formats of ``runs`` the engine computes in ``activations`` with on ``device``,
    the others as (weights, activations, reason)). None of them: an ``EngineSupportError`` naming
    ``activations``, with the activations it runs for those weights and the weights it runs with
    ``activations`` (to add to ``formats``). An engine that declares no formats runs any the
    device has."""
    from planner.engines import EngineSupportError

    a = canonical(activations)
    if device.supports(a) == "unsupported":
        raise EngineSupportError(f"{device.id} cannot compute in {{@activations}} {activations!r}", field="activations",
                                 details={"engine": sup.engine, "hardware": device.id, "instead": "", "add_formats": []})
    if not sup.schemes:
        return list(runs), ()

    def acts_for(w: str) -> str:
        return ", ".join(sup.activations_for(canonical(w))) or "none"

    kept = [w for w in runs if sup.runs(canonical(w), a)]
    skipped = tuple((w, a, f"{sup.engine} on {sup.device} does not compute {w} weights in {{@activations}} {a}; it "
                           f"runs them with {acts_for(w)}") for w in runs if w not in kept)
    if kept:
        return kept, skipped
    instead = "; ".join(f"{w} weights with {acts_for(w)}" for w in runs)
    with_a = [w for w in sup.weights if sup.runs(w, a)]
    hint = (f"; it computes in {a} with {', '.join(with_a)} weights (add them to {{@formats}})" if with_a else
            f"; it runs no weight format with {a} activations there")
    raise EngineSupportError(f"{sup.engine} on {sup.device} does not compute in {{@activations}} {activations!r} with "
                             f"the weight formats searched: it runs {instead}{hint}", field="activations",
                             details={"engine": sup.engine, "hardware": sup.device, "instead": instead,
                                      "add_formats": with_a})


def _kernel(sup: Any, runtime: str) -> tuple[tuple[str, Any], ...]:
    """The engine's runtime facts the cost model prices, as for an estimate
    (:func:`planner.serving.engine_settings`); its context memory travels as ``reserved_bytes``. Which
    kernels eager dispatch launches matters only under eager launch: left out under graph launch, so
    engines that price a hardware alike still share one search."""
    from planner.serving import engine_settings

    drop = {"reserved_bytes"} | ({"eager_fused_ops"} if runtime != "eager" else set())
    return tuple(sorted((k, v) for k, v in engine_settings(sup.runtime).items() if k not in drop))


def _float(name: str, x: str) -> float:
    v = float_from_text(x)
    if v is None:
        raise bad(name, "numbers (separated by commas on the command line)", x)
    return v


def resolve_capacity_train(req: CapacityTrainRequest) -> tuple[Any, list[tuple[Any, Any]]]:
    """(arch, [(device, TrainTarget)]) of a validated request: one target per hardware that
    can train (the default compute format is each device's native 16-bit one); devices that
    cannot are left out (:func:`resolve_training_fleet` says why)."""
    arch, pairs, _skipped = resolve_training_fleet(req)
    return arch, pairs


def resolve_training_fleet(req: CapacityTrainRequest) -> tuple[Any, list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    """(arch, [(device, TrainTarget)], [(device, EngineSupportError)]): a hardware that no training engine
    (or not the given one) runs on — a phone, an FPGA — is skipped with the reason, as
    ``capacity serve`` lists the pairs an engine does not run; the others are answered. When
    none can train: without an engine, an error naming ``hardware`` with every device's reason;
    with one, the first device's error (naming ``engine``)."""
    from planner.engines import EngineSupportError

    hw = _ids("hardware", _required("hardware", req.hardware), unique=True)
    specs = [load_specs(_required("model", req.model), h) for h in hw]
    check_distinct_ids("hardware", hw, [d.id for _, d in specs])
    arch = specs[0][0]
    check_fields_apply(arch, given_fields(req))
    out, skipped = [], []
    for _, dev in specs:
        try:
            sup = resolve_engine(req.engine, dev, training=True, arch=arch)
        except EngineSupportError as exc:
            skipped.append((dev, exc))
            continue
        out.append((dev, _train_target(req, arch, dev, sup)))
    if not out:
        if req.engine is not None or len(skipped) == 1:
            raise skipped[0][1]
        why = "; ".join(f"{d.id}: {exc.template}" for d, exc in skipped)
        raise EngineSupportError(f"none of the {{@hardware}} can train {arch.id}: {why}", field="hardware",
                                 details={"skipped": [{"hardware": d.id, "reason": str(e)} for d, e in skipped]})
    return arch, out, skipped


def _train_target(req: CapacityTrainRequest, arch: Any, dev: Any, sup: Any) -> Any:
    from planner.capacity import TrainTarget
    from planner.request.estimate import native_16bit

    v = fill_defaults(req, arch, dev)
    if v["activations"] is not None:  # a format name first (a typo gets its suggestion), then the engine
        check_format("activations", v["activations"], "activation")
    if v["activations"] is not None and sup.activations and canonical(v["activations"]) not in sup.activations:
        from planner.engines import EngineSupportError

        from planner.request.fields import usable_as

        raise EngineSupportError(f"{sup.engine} on {sup.device} does not compute in {{@activations}} "
                                 f"{echo_value(v['activations'])}; it runs: "
                                 f"{', '.join(usable_as(sup.activations, 'activation'))}", field="activations")
    seq = check_int("seq", v["seq"], hi=1 << 26)
    check_context(arch, seq, ("seq",))
    gbt = check_number("global_batch_tokens", v["global_batch_tokens"], hi=1e13)
    if gbt < seq:
        raise TierwiseError(f"{{@global_batch_tokens}} must be at least {{@seq}} ({seq}); got {gbt:g}",
                            field="global_batch_tokens", code="invalid_field")
    act = native_16bit(arch, dev) if v["activations"] is None else check_format("activations", v["activations"], "activation")
    check_training_kernels(sup, dev, None, v["optimizer"])  # the optimizer, if the engine has it
    return TrainTarget(
        tokens=check_number("tokens", _required("tokens", v["tokens"]), hi=1e17),
        days=check_number("days", _required("days", v["days"]), hi=36500.0), seq=seq, global_batch_tokens=gbt,
        activations=act, optimizer=v["optimizer"],
        max_devices=check_int("max_devices", v["max_devices"], hi=1 << 24), engine=sup.engine)


def _infeasible(message: str, payload: dict, *, complete: bool = True) -> TierwiseError:
    """Nothing feasible (exit 3 / HTTP 422 ``infeasible``, as plans and estimates report it);
    flags in the capacity search's message become field tokens. When the time limit stopped the
    search first (``complete=False``) the code is ``time_limit``: nothing was found, but nothing
    was proven infeasible either, and a longer limit may find an answer."""
    from planner.request.fields import json_safe

    text = re.sub(r"--([a-z][a-z-]*)", lambda m: "{@" + m.group(1).replace("-", "_") + "}", message)
    return _CapacityError(text, kind="infeasible", code="infeasible" if complete else "time_limit",
                          details=json_safe(payload) or None)


class _CapacityError(TierwiseError):
    """A capacity search's error whose ``details`` hold texts with ``{@field}`` tokens (each pair's reason),
    rendered in the front end's syntax as the message is; ``details`` itself is the Python API's rendering."""

    def __init__(self, *args: Any, details: Any = None, **kw: Any) -> None:
        super().__init__(*args, details=details, **kw)
        self._raw_details = details
        self.details = self.render_details("python")

    def render_details(self, style: str = "python", aliases: Any = None) -> Any:
        from hwmodels.errors import render_tokens

        def walk(x: Any) -> Any:
            if isinstance(x, str):
                return render_tokens(x, style, aliases if aliases is not None else
                                     (CAPACITY_CLI_ALIASES if style == "cli" else None))
            if isinstance(x, dict):
                return {k: walk(v) for k, v in x.items()}
            if isinstance(x, list):
                return [walk(v) for v in x]
            return x

        return walk(getattr(self, "_raw_details", self.details))


def serve_infeasible(ans: Any) -> TierwiseError:
    """The error of a serving answer with no configuration meeting the SLOs: ``infeasible``, or
    ``time_limit`` when the time limit stopped the search first (the command line and REST alike)."""
    from planner.capacity import serve_infeasible_message

    return _infeasible(*serve_infeasible_message(ans), complete=ans.complete)


def _deadline(req: Any, deadline: Deadline | None) -> Deadline | None:
    """The caller's deadline, else one of ``req.time_limit_s`` (None: unbounded, searched in one go)."""
    if deadline is not None or req.time_limit_s is None:
        return deadline
    return Deadline(time_limit("time_limit_s", req.time_limit_s))


def request_deadline(req: Any) -> Deadline | None:
    """The :class:`~planner.deadline.Deadline` of a capacity request's ``time_limit_s`` from now
    (``None``: unbounded): what the REST service's runner and the command line both bound the
    search with. A negative, NaN or over-a-day limit is an error naming ``time_limit_s``."""
    return _deadline(req, None)


def run_capacity_serve(req: CapacityServeRequest, *, deadline: Deadline | None = None):
    """The cheapest fleet per hardware (``planner.capacity.ServeAnswer``) for the first QPS.
    Raises TierwiseError of kind ``infeasible`` when no hardware meets the SLOs.

    ``deadline`` (default: ``time_limit_s`` from now, if given) is checked between
    configurations: when it runs out the answer covers those searched (``complete=False``);
    nothing searched yet raises ``DeadlineExceeded``, a cancel ``Cancelled``."""
    from planner.capacity import plan_serving

    deadline = _deadline(req, deadline)
    archs, devices, targets, search = resolve_capacity_serve(req)
    ans = serve_intervals(plan_serving(archs, devices, targets[0], search, deadline=deadline), devices, search.runtime)
    if not ans.feasible:
        raise serve_infeasible(ans)
    return ans


def resolve_capacity_frontier(req: CapacityFrontierRequest) -> tuple[Any, list, int, int, Any]:
    """(arch, (engine, hardware) pairs, prompt, gen, ServeSearch) of a validated frontier request."""
    v = fill_defaults(req, None, None)
    archs, pairs, prompt, gen, search = _resolve_fleet(req, v, (_required("model", v["model"]),))
    return archs[0], pairs, prompt, gen, search


def run_capacity_frontier(req: CapacityFrontierRequest, *, deadline: Deadline | None = None):
    """The throughput-latency frontier per (engine, hardware) (``planner.frontier.FrontierAnswer``).
    Raises TierwiseError of kind ``infeasible`` when no pair has a point (every pair's reason in
    the message and ``details``).

    ``deadline`` (default: ``time_limit_s`` from now, if given) is checked between
    configurations: when it runs out the answer covers the pairs searched (``complete=False``,
    ``status: "time_limit"``); nothing searched yet raises ``DeadlineExceeded``, a cancel
    ``Cancelled``."""
    from planner.frontier import plan_frontier

    deadline = _deadline(req, deadline)
    arch, pairs, prompt, gen, search = resolve_capacity_frontier(req)
    ans = frontier_intervals(plan_frontier(arch, pairs, prompt, gen, search, deadline=deadline), pairs, search.runtime)
    check_frontier(ans)
    return ans


def check_frontier(ans: Any) -> None:
    """Raise the ``infeasible`` error of a frontier answer with no point (CLI exit 3, HTTP 422;
    code ``time_limit`` when the time limit stopped the search first)."""
    from planner.frontier import frontier_infeasible_message
    from planner.request.fields import json_safe

    if not ans.feasible:
        msg, details = frontier_infeasible_message(ans)
        raise TierwiseError(msg, kind="infeasible", code="infeasible" if ans.complete else "time_limit",
                            details=json_safe(details))


def run_capacity_train(req: CapacityTrainRequest, *, deadline: Deadline | None = None):
    """A ``planner.capacity.TrainFleetAnswer``: one ``TrainAnswer`` per hardware that can
    train (those meeting the deadline first, cheapest first; it indexes like a list), and the
    hardware skipped with the reason. Raises TierwiseError of kind ``infeasible`` when no
    hardware meets the deadline.

    ``deadline`` (default: ``time_limit_s`` from now, if given) bounds the whole search,
    every hardware's, as in :func:`run_capacity_serve`."""
    from planner.capacity import TrainFleetAnswer, plan_training, train_infeasible_message

    deadline = _deadline(req, deadline)
    arch, pairs, skipped = resolve_training_fleet(req)
    answers = [train_intervals(plan_training(arch, dev, target, deadline=deadline), dev, req.engine)
               for dev, target in pairs]
    fleet = TrainFleetAnswer.ranked(answers, [(d.id, exc.render("rest")) for d, exc in skipped])
    if not fleet.feasible:
        raise _infeasible(*train_infeasible_message(fleet.closest()))
    return fleet


# ---------------------------------------------------------------------------
# Error bars per row (planner.uncertainty)
# ---------------------------------------------------------------------------


def _pair_classes(pairs: Any, runtime: str) -> Any:
    """``classes(engine, hardware, launch=None)``: the (hardware class, engine class) a row of that
    (engine, hardware) pair is banded by (planner.uncertainty: the engine the pair priced, at ``launch``,
    else the pair's runtime, else ``runtime``), or None for a pair not priced."""
    import planner.uncertainty as u

    ok = [p for p in pairs if not getattr(p, "reason", "")]
    by_key = {(p.engine, p.device.id): p for p in ok}
    by_hw = {p.device.id: p for p in ok}

    def classes(engine: str, hardware: str, launch: str | None = None) -> tuple[str, str] | None:
        p = by_key.get((engine, hardware)) or by_hw.get(hardware)
        if p is None:
            return None
        rt = launch or (p.setup.runtime if p.setup is not None else None) or runtime
        return p.device.device_class, u.engine_class(p.setup.engine if p.setup is not None else p.engine, rt)

    return classes


def serve_intervals(ans: Any, pairs: Any, runtime: str) -> Any:
    """``ans`` (a ``ServeAnswer``) with every row's p10-p90 error bars: TTFT and TPOT of the
    row's hardware class and engine class (the engine its (engine, hardware) pair priced, with
    that pair's runtime) at its batch; a disaggregated answer's at its decode pool's batch."""
    from dataclasses import replace

    import planner.uncertainty as u

    classes = _pair_classes(pairs, runtime)

    def band(o: Any, engine: str) -> Any:
        found = None if o is None else classes(o.engine or engine, o.hardware)
        if found is None:
            return o
        # the batch the row runs at: its mean live sequences per replica (the memory cap only bounds it)
        running = o.max_batch if not math.isfinite(o.concurrency) else min(o.max_batch, max(1, math.ceil(o.concurrency)))
        return replace(o, uncertainty=u.uncertainty_of(o, u.SERVE_OPTION_QUANTITIES, hardware_class=found[0],
                                                      eng_class=found[1], regime=u.batch_regime(running)))

    ranked = tuple(replace(h, best=band(h.best, h.engine), closest=band(h.closest, h.engine),
                           disagg=band(h.disagg, h.engine), disagg_closest=band(h.disagg_closest, h.engine))
                   for h in ans.ranked)
    return replace(ans, ranked=ranked)


def frontier_intervals(ans: Any, pairs: Any, runtime: str) -> Any:
    """``ans`` (a ``FrontierAnswer``) with every point's p10-p90 error bars: its decode step, prefill,
    TPOT and rates, from the rows of its hardware class and engine class (the engine its pair priced,
    at the launch mode the point was priced with) at its batch."""
    from dataclasses import replace

    import planner.uncertainty as u

    classes = _pair_classes(pairs, runtime)

    def band(o: Any) -> Any:
        found = classes(o.engine, o.hardware, o.runtime)
        if found is None:
            return o
        return replace(o, uncertainty=u.uncertainty_of(o, u.FRONTIER_POINT_QUANTITIES, hardware_class=found[0],
                                                      eng_class=found[1], regime=u.batch_regime(o.batch)))

    return replace(ans, series=tuple(replace(s, points=tuple(band(o) for o in s.points)) for s in ans.series))


def train_intervals(ans: Any, device: Any, engine: Any) -> Any:
    """``ans`` (a ``TrainAnswer``) with every row's p10-p90 error bars (step time, tokens/s,
    MFU and the days to train the target tokens)."""
    from dataclasses import replace

    import planner.uncertainty as u

    eng = u.engine_class(resolve_engine(engine, device, training=True).engine, "graph")
    tokens = ans.target.tokens
    done: dict[int, Any] = {}

    def band(o: Any) -> Any:
        if o is None:
            return None
        if id(o) not in done:
            done[id(o)] = replace(o, uncertainty=u.uncertainty_of(
                o, u.TRAIN_OPTION_QUANTITIES, hardware_class=device.device_class, eng_class=eng,
                regime=u.batch_regime(None, "training"), extra={"days": o.days_for(tokens)}))
        return done[id(o)]

    return replace(ans, best=band(ans.best), fastest=band(ans.fastest), frontier=tuple(band(o) for o in ans.frontier))
