"""Per-target rules every exporter applies before writing a file: what happens to quantized
embeddings and LM heads, and how a plan the target cannot express is refused (every group
and format named, with the re-plan for the target's engine: the ``tierwise plan`` command on the
command line, the ``POST /v1/plans`` request in REST answers, both from :func:`replan_args`).

Embeddings and LM heads (one table, :data:`ROLE_RULES`):

* vLLM, compressed-tensors and transformers quantize ``Linear`` layers only: vLLM's
  ``VocabParallelEmbedding`` / ``ParallelLMHead`` run unquantized under compressed-tensors
  (vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors.py,
  ``get_quant_method`` handles LinearBase, Attention and FusedMoE only), and llm-compressor
  recipes ignore ``lm_head``. A plan that quantizes them is exported with them in 16 bit and
  a note; the memory settings count them in 16 bit.
* SGLang likewise: its ``CompressedTensorsConfig.get_quant_method`` quantizes ``LinearBase`` and
  ``FusedMoE`` layers only (python/sglang/srt/layers/quantization/compressed_tensors/compressed_tensors.py),
  and its online fp8 (``Fp8Config``) the same; ``VocabParallelEmbedding`` / ``ParallelLMHead`` stay
  unquantized.
* TensorRT-LLM / ModelOpt quantize the LM head as a linear layer (``quantize.py
  --quantize_lm_head``) but keep the embedding table in 16 bit.
* llama.cpp has a GGUF type for every tensor, ``token_embd`` and ``output`` included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from dataclasses import replace

from hwmodels.errors import TierwiseError, per_front_end

from .common import plan_arch
from .core import FLOAT16, ExportContext, ExportError, PlanView, acts_of, format_of, sparsity_of, weights_of

#: Export target → the engine that loads it (profiles/engines/*.yaml): the engine a plan made for
#: another engine is checked against when exported with ``--format`` (:func:`resolve_target`), and
#: the re-plan hint. Every exporter that writes an engine's files is here (the plan files are not).
TARGET_ENGINE = {"vllm": "vllm", "sglang": "sglang", "compressed-tensors": "vllm", "hf": "hf-transformers", "modelopt-mixed": "trtllm",
                 "trtllm": "trtllm", "llamacpp": "llamacpp", "megatron": "megatron-core", "executorch": "executorch",
                 "mlc": "mlc-llm"}

#: Exporter → the checkpoint targets its serve command may load (the sglang export serves the
#: compressed-tensors checkpoint of a quantized plan, like vllm's, which TARGET_ENGINE already ties to vllm).
CHECKPOINT_TARGETS: dict[str, tuple[str, ...]] = {"sglang": ("compressed-tensors",)}

#: (target, role) → "keep16" (written in 16 bit, with a note) or "export" (as planned).
ROLE_RULES: dict[str, dict[str, str]] = {
    "vllm": {"embedding": "keep16", "lm_head": "keep16"},
    "sglang": {"embedding": "keep16", "lm_head": "keep16"},
    "compressed-tensors": {"embedding": "keep16", "lm_head": "keep16"},
    "hf": {"embedding": "keep16", "lm_head": "keep16"},
    "modelopt-mixed": {"embedding": "keep16", "lm_head": "export"},
    "trtllm": {"embedding": "keep16", "lm_head": "export"},
    "llamacpp": {"embedding": "export", "lm_head": "export"},
}

_EMBEDDING = re.compile(r"(^|\.)(embed_tokens|embed_positions|shared|word_embeddings|position_embeddings|"
                        r"token_type_embeddings|wte|wpe)$")
_LM_HEAD = re.compile(r"(^|\.)lm_head$")


def role_of(group: str) -> str:
    """"embedding", "lm_head" or "linear" for a plan group name (planner/workload.py naming)."""
    if _EMBEDDING.search(group):
        return "embedding"
    return "lm_head" if _LM_HEAD.search(group) else "linear"


def float_router(v: PlanView, g: str) -> bool:
    """A mixture-of-experts router (gate) kept in a float format: the planner never quantizes
    it (it is tiny and its logits pick the experts), and whole-model quantizers skip it too."""
    return g.rsplit(".", 1)[-1] in ("router", "gate") and weights_of(v, g) in (*FLOAT16, "fp32")


def _quantized(v: PlanView, g: str) -> bool:
    return weights_of(v, g) not in FLOAT16 or acts_of(v, g) not in FLOAT16


def as_exported(v: PlanView, target: str) -> tuple[PlanView, dict[str, str], list[str]]:
    """The plan as ``target`` writes it: (view, {group: planned weights} kept in 16 bit, notes)."""
    rules = ROLE_RULES.get(target, {})
    kept = {g: weights_of(v, g) for g in v.choices if rules.get(role_of(g)) == "keep16" and _quantized(v, g)}
    if not kept:
        return v, {}, []
    # 16 bit = the plan's compute format (fp16 on V100 / T4 / phones, where bf16 does not run)
    half = str(v.raw.get("activations") or "bf16")
    half = half if half in FLOAT16 else "bf16"
    choices = {g: ({**c, "weights": half, "activations": half} if g in kept else c) for g, c in v.choices.items()}
    by: dict[tuple[str, str], list[str]] = {}
    for g, w in kept.items():
        by.setdefault((role_of(g), w), []).append(g)
    label = {"embedding": "embeddings", "lm_head": "the LM head"}
    notes = [f"{target} keeps {label[role]} in 16 bit: {', '.join(gs)} planned as {w} "
             f"{'is' if len(gs) == 1 else 'are'} written as {half} (memory settings count {'it' if len(gs) == 1 else 'them'} in 16 bit)"
             for (role, w), gs in by.items()]
    return replace(v, choices=choices), kept, notes


def kept_extra_bytes(v: PlanView, ctx: ExportContext, kept: dict[str, str]) -> float:
    """Bytes the groups kept in 16 bit add over the plan's weights (whole model)."""
    if not kept or ctx.arch is None:
        return 0.0
    from planner.workload import build_workload

    params: dict[str, int] = {}
    for block in build_workload(ctx.arch).blocks:
        for i in range(block.count):
            for op in block.ops:
                g = block.group_fqn(i, op)
                if g in kept:
                    params[g] = params.get(g, 0) + op.weight_params
    return sum(n * max(0.0, 16.0 - format_of(kept[g]).bits_per_value()) / 8 for g, n in params.items())


def _describe(v: PlanView, g: str) -> str:
    c = v.choices[g]
    parts = [f"weights {c.get('weights') or 'bf16'}"]
    if (c.get("activations") or "bf16") not in FLOAT16:
        parts.append(f"activations {c.get('activations')}")
    if sparsity_of(v, g) not in ("dense", ""):
        parts.append(f"sparsity {sparsity_of(v, g)}")
    if c.get("low_rank"):
        parts.append(f"low rank {c.get('low_rank')}")
    return ", ".join(parts)


def _size(b: float) -> str | int:
    """A byte count as the plan request takes it: '20GB' when whole megabytes of GB, else bytes."""
    return f"{b / 1e9:g}GB" if abs(b / 1e9 - round(b / 1e9, 3)) < 1e-9 else int(b)


def user_pins(v: PlanView) -> dict[str, str]:
    """The plan's pins (``constraints.pins``) less those the planner adds by itself: an
    embedding or LM head pinned to the plan's compute format because the engine's exporter
    keeps it in 16 bit (planner/request/plan.py ``_engine_role_pins``); a re-plan adds them again
    where its engine needs them."""
    pins = (v.raw.get("constraints") or {}).get("pins") or {}
    out = {}
    for pattern, key in pins.items():
        if not isinstance(pattern, str) or not isinstance(key, str):
            continue
        auto = (role_of(pattern) in ("embedding", "lm_head") and not any(c in pattern for c in "*?[")
                and key == v.raw.get("activations"))
        if not auto:
            out[pattern] = key
    return out


def _pin_runs(sup: Any, key: str, act: str | None) -> bool:
    """Whether engine support ``sup`` runs the option ``key`` of a pin (weights, activations,
    sparsity); a key that does not parse is kept for the planner to name."""
    from planner.options import OptionError, parse_option_key

    try:
        w, sp, a, rank = parse_option_key(key)
    except OptionError:
        return True
    pattern = "unstructured" if sp.startswith("unstructured") else sp
    return (w in sup.weights and ((a or act) is None or sup.runs(w, a or act))
            and (sp == "dense" or pattern in sup.sparsity) and (rank is None or sup.low_rank))


def _generative(v: PlanView) -> bool:
    """Whether the plan's model keeps a KV cache (a re-plan of an encoder, ViT or CNN takes no ``kv``)."""
    from .common import plan_generative
    from .core import ExportContext

    return plan_generative(v, ExportContext())


def replan_args(v: PlanView, engine: str | None, formats: tuple[str, ...] = (),
                pins: dict[str, str] | None = None) -> dict[str, Any]:
    """The plan request (``planner.request.PlanRequest`` fields, JSON values) that re-makes the
    plan — same model, hardware, devices, workload, limits and pins — for ``engine`` (``None``: the
    hardware's default serving engine), choosing among ``formats`` (the weight formats, when
    given; an ``avg_bits`` limit none of them can meet is left out). ``pins``: default the plan's
    own (:func:`user_pins`). The one source of :func:`replan_command` (command line) and
    :func:`replan_request` (REST)."""
    args: dict[str, Any] = {"model": v.model, "hardware": v.hardware}
    if v.devices > 1:
        args["devices"] = v.devices
    workload = v.raw.get("workload") or {}
    for key, default in (("batch", 1), ("prompt", 512), ("gen", 128)):
        if workload.get(key) not in (None, default):
            args[key] = workload[key]
    cons = v.raw.get("constraints") or {}
    if cons.get("max_memory_per_device_bytes"):
        args["max_memory_per_device"] = _size(float(cons["max_memory_per_device_bytes"]))
    for key in ("ttft_slo_s", "tpot_slo_s"):
        if cons.get(key):
            args[key] = float(cons[key])
    if cons.get("avg_bits") and (not formats or min(format_of(f).bits_per_value() for f in formats)
                                 <= float(cons["avg_bits"])):
        args["avg_bits"] = float(cons["avg_bits"])
    if cons.get("allow_offload"):
        args["allow_offload"] = True
    objective = v.raw.get("objective")
    if isinstance(objective, str) and objective not in ("", "accuracy"):
        args["objective"] = objective
    if isinstance(v.raw.get("kv"), str) and _generative(v) and _engine_runs_kv(engine, v.hardware, v.kv):
        args["kv"] = v.kv
    if formats:
        args["formats"] = list(formats)
    pins = user_pins(v) if pins is None else pins
    if pins:
        args["pins"] = dict(pins)
    if engine is not None:
        args["engine"] = engine
    return args


def _engine_runs_kv(engine: str | None, hardware: str, kv: str) -> bool:
    """Whether ``engine`` runs the KV format ``kv`` on ``hardware`` (a re-plan keeps the plan's KV
    format only then; unknown engine or hardware: no)."""
    if engine is None:
        return False
    try:
        from hwmodels import load_device
        from planner.engines import load_engine

        sup = load_engine(engine).support(load_device(hardware))
    except Exception:  # noqa: BLE001 - an engine or hardware file outside the catalog
        return False
    return sup is not None and kv in sup.kv


#: Plan request fields whose ``tierwise plan`` flag is not ``--field-name``.
_PLAN_FLAGS = {"ttft_slo_s": "--ttft-slo", "tpot_slo_s": "--tpot-slo", "pins": "--pin"}


def plan_command(args: dict[str, Any]) -> str:
    """The ``tierwise plan`` command for plan request fields ``args`` (:func:`replan_args`)."""
    import shlex

    out = ["tierwise plan"]
    for key, value in args.items():
        flag = _PLAN_FLAGS.get(key, "--" + key.replace("_", "-"))
        if value is True:
            out.append(flag)
        elif key == "pins":
            out += [f"{flag} {shlex.quote(f'{p}={k}')}" for p, k in value.items()]
        elif key in ("ttft_slo_s", "tpot_slo_s"):
            out.append(f"{flag} {value * 1e3:g}ms")
        elif isinstance(value, list):
            out.append(f"{flag} {shlex.quote(','.join(map(str, value)))}")
        elif isinstance(value, float):
            out.append(f"{flag} {value:g}")
        else:
            out.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(out)


def plan_request(args: dict[str, Any]) -> str:
    """The REST request for plan request fields ``args``: ``POST /v1/plans`` and its JSON body."""
    import json

    return f"POST /v1/plans {json.dumps(args)}"


def replan_command(v: PlanView, engine: str | None, formats: tuple[str, ...] = (),
                   pins: dict[str, str] | None = None) -> str:
    """The `tierwise plan` command that re-makes the plan for ``engine`` (:func:`replan_args`)."""
    return plan_command(replan_args(v, engine, formats, pins))


def replan_request(v: PlanView, engine: str | None, formats: tuple[str, ...] = (),
                   pins: dict[str, str] | None = None) -> str:
    """The ``POST /v1/plans`` request that re-makes the plan for ``engine`` (:func:`replan_args`)."""
    return plan_request(replan_args(v, engine, formats, pins))


def replan_text(v: PlanView, engine: str | None, formats: tuple[str, ...] = (),
                pins: dict[str, str] | None = None) -> str:
    """The re-plan, quoted, for every front end: the `tierwise plan` command on the command line,
    the ``POST /v1/plans`` request in REST answers (one :func:`replan_args` for both)."""
    args = replan_args(v, engine, formats, pins)
    return per_front_end(f"`{plan_command(args)}`", f"`{plan_request(args)}`")


def _pins_of_formats(pins: dict[str, str], formats: tuple[str, ...]) -> dict[str, str]:
    """The pins whose weight format is one of ``formats`` (a pin to another format would bring it
    back into a re-plan limited to those; a key that does not parse is kept for the planner to name)."""
    from planner.options import OptionError, parse_option_key

    def keep(key: str) -> bool:
        try:
            return parse_option_key(key)[0] in formats
        except OptionError:
            return True

    return {p: k for p, k in pins.items() if keep(k)}


def _left_out(pins: dict[str, str], kept: dict[str, str], engine: str, hardware: str) -> str:
    """' — the plan's --pin P=K left out: …' for the pins a re-plan leaves out ('' for none);
    ``'pins' {"P": "K"}`` in REST answers."""
    import json

    dropped = {p: k for p, k in pins.items() if p not in kept}
    if not dropped:
        return ""
    shown = per_front_end("--pin " + ", ".join(f"{p}={k}" for p, k in dropped.items()), f"'pins' {json.dumps(dropped)}")
    return (f" — the plan's {shown} left out: {engine} does not run {'that option' if len(dropped) == 1 else 'those options'} "
            f"on {hardware}; pin a format it runs")


def one_format_replan(v: PlanView, engine: str, fmt: str) -> str:
    """The re-plan (:func:`replan_text`) for an engine that applies one weight format to the whole
    model: choosing ``fmt`` only, with the plan's pins of that format (a pin to another format
    would mix formats again)."""
    return replan_text(v, engine, (fmt,), _pins_of_formats(user_pins(v), (fmt,)))


def engine_show(engine: str) -> str:
    """Where one engine's profile (and the hardware it runs on) is shown, for every front end."""
    return per_front_end(f"`tierwise engines show {engine}`", f"GET /v1/engines/{engine}")


def target_engine(target: str, engine: str | None = None) -> str | None:
    """The engine whose support a ``target`` export is checked against: the one asked for
    (``--engine`` or the plan's, see :func:`resolve_target`), else the target's own."""
    return engine or TARGET_ENGINE.get(target)


def _runs_text(sup: Any, training: bool) -> str:
    """'E on H runs weights …; KV …; sparsity …; parallel …' (no KV part for an engine that
    lists none: a training engine keeps no KV cache)."""
    parts = [f"{sup.engine} on {sup.device} runs weights {', '.join(sup.weights)}"]
    if sup.kv:
        parts.append(f"KV {', '.join(sup.kv)}")
    elif training:
        parts.append("no KV cache (training engine)")
    parts += [f"sparsity {', '.join(sup.sparsity)}", f"parallel {', '.join(sup.parallel) or 'single device'}"]
    return "; ".join(parts)


def _serving_engine(v: PlanView, device: Any) -> tuple[str | None, Any]:
    """(engine to name, its support on ``device``) for a re-plan: the serving engine the plan
    was made for when it runs there (named), else the hardware's default (not named)."""
    from planner.engines import default_engine, load_engine

    planned = v.raw.get("engine")
    if isinstance(planned, str):
        try:
            spec = load_engine(planned)
            sup = spec.support(device) if spec.kind != "training" else None
        except Exception:  # noqa: BLE001 - an engine this tierwise does not know: use the default
            sup = None
        if sup is not None:
            return planned, sup
    try:
        from planner.arch import load_arch

        family: str | None = load_arch(v.model).family
    except Exception:  # noqa: BLE001 - a custom model: any family
        family = None
    return None, default_engine(device, training=False, kind=family).support(device)


def _training_hint(v: PlanView, spec: Any, sup: Any, device: Any) -> str:
    """How to get a plan a training engine's export takes: `tierwise plan` makes serving plans
    (a training engine is refused there), so the command re-plans with a serving engine, choosing
    only weight formats the training engine runs with every compute format that engine pairs them
    with (vLLM runs fp8 weights with bf16 compute too; Megatron-Core only with fp8)."""
    head = f"{spec.id} is a training engine, which {{!plan}} does not take"
    try:
        serving, ssup = _serving_engine(v, device)
    except Exception:  # noqa: BLE001 - no serving engine runs here
        return f"{head} ({_runs_text(sup, True)})"
    formats = tuple(w for w in sup.weights
                    if device.supports(w) != "unsupported" and ssup.activations_for(w)
                    and set(ssup.activations_for(w)) <= set(sup.activations_for(w)))
    if not formats:
        return f"{head}; no serving engine on {v.hardware} runs the weight formats it does ({_runs_text(sup, True)})"
    pins = user_pins(v)
    kept = _pins_of_formats(pins, formats)
    return (f"{head}; re-plan with the weight formats it runs: {replan_text(v, serving, formats, kept)}"
            f"{_left_out(pins, kept, spec.id, v.hardware)} ({_runs_text(sup, True)})")


def replan_hint(v: PlanView, target: str, engine: str | None = None) -> str:
    """The re-plan for the target's engine (:func:`replan_text`: the `tierwise plan` command on the
    command line, the ``POST /v1/plans`` request in REST answers), with what it runs there (for a
    training engine, a serving re-plan limited to the weight formats it runs)."""
    engine = target_engine(target, engine)
    if engine is None:
        return ""
    from hwmodels import load_device
    from planner.engines import load_engine

    try:
        spec = load_engine(engine)
    except Exception:  # noqa: BLE001 - an engine file outside the profiles: name it as given
        spec = None
    try:
        device = load_device(v.hardware)
        sup = spec.support(device) if spec is not None else None
    except Exception:  # noqa: BLE001 - hardware outside the catalog
        device, sup = None, None
    if spec is not None and spec.kind != "training" and device is not None and sup is None:
        # no `tierwise plan --engine E` on hardware E does not run on: say so instead
        return (f"{engine} does not run on {v.hardware}, so no plan for it can be made there ({engine_show(engine)} "
                "lists where it runs)")
    if spec is not None and spec.kind == "training":
        if sup is None:
            return f"{spec.id} is a training engine, which {{!plan}} does not take"
        return _training_hint(v, spec, sup, device)
    if sup is None:
        return f"re-plan for it: {replan_text(v, engine)}"
    pins = user_pins(v)
    act = v.raw.get("activations") if isinstance(v.raw.get("activations"), str) else None
    kept = {p: k for p, k in pins.items() if _pin_runs(sup, k, act)}
    return (f"re-plan for it: {replan_text(v, engine, pins=kept)}{_left_out(pins, kept, engine, v.hardware)} "
            f"({_runs_text(sup, False)})")


def refuse(v: PlanView, target: str, bad: list[tuple[str, ExportError]], engine: str | None = None) -> ExportError:
    """One error naming every group ``target`` cannot express, by format, and the re-plan flag."""
    by: dict[str, list[str]] = {}
    for g, _ in bad:
        by.setdefault(_describe(v, g), []).append(g)
    listed = "; ".join(f"{what}: {len(gs)} group{'s' * (len(gs) > 1)} ({', '.join(gs[:3])}{', …' if len(gs) > 3 else ''})"
                       for what, gs in by.items())
    first = bad[0][1]
    msg = (f"the {target} export cannot express {len(bad)} of {len(v.choices)} plan groups — {listed}. "
           f"{getattr(first, 'template', str(first))}")
    hint = replan_hint(v, target, engine)
    return ExportError(first.field or f"choices.{bad[0][0]}", f"{msg}; {hint}" if hint else msg)


def check_groups(v: PlanView, target: str, check: Callable[[str], object], engine: str | None = None) -> None:
    """Run ``check(group)`` on every group; raise one :func:`refuse` error for all that fail."""
    bad: list[tuple[str, ExportError]] = []
    for g in v.choices:
        try:
            check(g)
        except ExportError as e:
            bad.append((g, e))
    if bad:
        raise refuse(v, target, bad, engine)


def dense_only(v: PlanView, target: str, why: str) -> None:
    """Refuse sparse groups for a target whose format has no field for sparsity."""

    def check(g: str) -> None:
        if sparsity_of(v, g) not in ("dense", ""):
            raise ExportError(f"choices.{g}.sparsity", f"{why} has no field for sparsity; the plan prunes it "
                              f"({sparsity_of(v, g)}) — export with {{@format}} compressed-tensors (SparseGPT + "
                              "sparse-24 checkpoints) or re-plan without {@sparsity}")

    check_groups(v, target, check)


def engine_runs(v: PlanView, target: str, engine: str | None = None, *, field: str = "engine",
                ctx: ExportContext | None = None) -> None:
    """Refuse what the target's engine (``engine``, else :data:`TARGET_ENGINE`) does not run
    on the plan's hardware (profiles/engines/<engine>.yaml): the hardware itself (an error naming
    ``field``: ``format`` where the engine is the one of the format asked for, and the engines
    that do run there), every group whose weight / activation pair or sparsity it has no kernel
    for (one error naming them all, by format), else the KV-cache format, else a parallel
    dimension it does not implement. Each error names the `tierwise plan ... --engine E` command
    that re-plans for it. No check for hardware outside the catalog (the target's own format
    checks still apply). ``ctx``: the export's context, whose architecture (when set) is the
    plan's model's, checked for its family and whether it keeps a KV cache."""
    engine = target_engine(target, engine)
    try:
        from hwmodels import load_device
        from planner.engines import load_engine

        from planner.engines import low_rank_refusal

        spec = load_engine(engine) if engine else None
        dev = load_device(v.hardware)
    except Exception:  # noqa: BLE001 - custom hardware or engine file: the format checks of the target still apply
        return
    if spec is None:
        return
    sup = spec.support(dev)
    if sup is None:
        from planner.engines import engines_for

        here = engines_for(dev, training=spec.kind == "training")
        raise ExportError(field, f"{spec.name} ({engine}) does not run on {v.hardware}, the plan's hardware "
                          f"({dev.device_class}); engines that do: {', '.join(here) or 'none'}. Export for one of "
                          f"them ({{@engine}} E), or re-plan on hardware {engine} runs on ({engine_show(engine)})")

    arch = plan_arch(v, ctx or ExportContext())  # None: not loadable here, no family check
    family = getattr(arch, "family", None)
    if family is not None and not spec.runs_family(family):
        from planner.engines import engines_for

        fits = engines_for(dev, training=spec.kind == "training", family=family)
        raise ExportError(field, f"{spec.name} ({engine}) does not run {family} models such as {v.model} (it runs "
                          f"{', '.join(spec.families)}); engines that run {family} models on {v.hardware}: "
                          f"{', '.join(fits) or 'none'}. Export for one of them ({{@engine}} E)")

    def check(g: str) -> None:
        w, a, s = weights_of(v, g), acts_of(v, g), sparsity_of(v, g)
        if not sup.runs(w, a):
            raise ExportError(f"choices.{g}.weights", f"{engine} on {v.hardware} does not run {w} weights with {a} "
                              "activations")
        pattern = "unstructured" if s.startswith("unstructured") else (s or "dense")
        if pattern not in sup.sparsity:
            raise ExportError(f"choices.{g}.sparsity", f"{engine} on {v.hardware} does not run {s} sparsity")
        if v.choices[g].get("low_rank") and not sup.low_rank:
            raise ExportError(f"choices.{g}.low_rank", low_rank_refusal(sup))

    check_groups(v, target, check, engine)
    if spec.kind != "training" and (arch is None or arch.generative) and v.kv not in sup.kv and not (v.kv in FLOAT16 and not sup.kv):
        raise ExportError("kv", f"{engine} on {v.hardware} has no KV-cache format {v.kv!r} (it runs "
                          f"{', '.join(sup.kv) or 'none'}); {replan_hint(v, target, engine)}")
    for dim in ("tp", "pp", "dp", "ep"):
        degree = getattr(v, dim)
        if degree > 1 and dim not in sup.parallel:
            raise ExportError(f"layout.{dim}", f"{engine} has no {dim} parallelism; the plan uses {dim}={degree}; "
                              f"{replan_hint(v, target, engine)}")


def engine_formats(engine: str) -> tuple[str, ...]:
    """Export targets that write deployment files ``engine`` loads: its profile's exporter,
    the targets loaded by the same engine (compressed-tensors beside vllm, modelopt-mixed
    beside trtllm), the checkpoints the exporter's command serves (:data:`CHECKPOINT_TARGETS`:
    compressed-tensors beside sglang), and the plan files (yaml, json)."""
    from planner.engines import load_engine

    spec = load_engine(engine)
    exporter = spec.exporter
    loads = {spec.id, TARGET_ENGINE.get(exporter)}
    out = [exporter, *CHECKPOINT_TARGETS.get(exporter, ()), *(t for t, e in TARGET_ENGINE.items() if e in loads),
           "yaml", "json"]
    return tuple(dict.fromkeys(out))


def resolve_target(plan_engine: str | None, fmt: str | None, engine: str | None) -> tuple[str, str | None]:
    """(export target, engine it is checked against) for ``tierwise export``.

    ``fmt`` left out: the exporter of ``engine`` (``--engine``), else of the engine the plan
    was made for. ``engine`` left out: the plan's engine when ``fmt`` writes files for it,
    else the target's own engine (:data:`TARGET_ENGINE`). A ``fmt`` that does not write
    files for the given ``engine`` is an error naming both."""
    from planner.engines import load_engine

    if engine is not None:
        load_engine(engine)  # an unknown id is an error naming the engine (a profile path stays a path)
    wanted = engine or plan_engine
    if fmt is None:
        if wanted is None:
            raise ExportError("format", "the plan records no engine (it was written before plans did): pass "
                              "{@format} (vllm, trtllm, llamacpp, …) or {@engine}")
        try:
            fmt = load_engine(wanted).exporter
        except TierwiseError:
            raise ExportError("engine", f"the plan was made for engine {wanted!r}, which this tierwise does not know; "
                              "pass {@format} or {@engine}") from None
        return fmt, wanted
    if engine is not None:
        if fmt not in engine_formats(engine):
            raise ExportError("format", f"{{@format}} {fmt!r} does not write files {engine} loads; for {engine} use "
                              f"{', '.join(engine_formats(engine))}")
        return fmt, engine
    if plan_engine is not None:
        try:
            if fmt in engine_formats(plan_engine):
                return fmt, plan_engine
        except TierwiseError:
            pass
    return fmt, TARGET_ENGINE.get(fmt)


def serving_quantization(v: PlanView) -> str | None:
    """How vLLM and SGLang get the plan's numerics (as exported): None for a 16-bit dense model;
    "fp8" when every linear layer is fp8 W8A8 (both quantize a 16-bit checkpoint that way on load:
    fp8-e4m3 weights, dynamic activations; vLLM's Fp8Config, SGLang's Fp8Config with
    is_checkpoint_fp8_serialized false); else "compressed-tensors", the checkpoint
    ``tierwise export --format compressed-tensors`` writes (mixtures, weight-only fp8 — the
    engines' "fp8" would make it W8A8 — int, fp4, 2:4)."""
    linear = [g for g in v.choices if role_of(g) == "linear"]
    if any(sparsity_of(v, g) not in ("dense", "") for g in v.choices):
        return "compressed-tensors"
    if all(weights_of(v, g) in FLOAT16 and acts_of(v, g) in FLOAT16 for g in v.choices):
        return None
    if linear and all(weights_of(v, g) == "fp8-e4m3" and acts_of(v, g) == "fp8-e4m3" for g in linear):
        return "fp8"
    return "compressed-tensors"
