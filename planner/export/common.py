"""Helpers several exporters share: decision groups → module names, shell and JSON
text, and the device-memory figures engines are sized with."""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from typing import Any

from hwmodels.errors import TierwiseError

from .core import ExportContext, PlanView, weights_of

#: Fraction of device memory kept free above the plan's predicted footprint when
#: setting vLLM's ``gpu_memory_utilization`` / TensorRT-LLM's KV-cache fraction:
#: CUDA context, NCCL buffers and CUDA graphs live outside the engine's budget.
HEADROOM_FRACTION = 0.05


# Decision groups that bundle several modules (planner/workload.py): q/k/v share one
# choice, gate/up share one choice.
_GROUP_MEMBERS = {"qkv": ("q_proj", "k_proj", "v_proj"), "gate_up": ("gate_proj", "up_proj")}


def _hf_module(name: str) -> str:
    # Hugging Face *ForCausalLM keeps the LM head at the top level ("lm_head"), not
    # under the base model ("model.lm_head").
    return "lm_head" if name == "model.lm_head" else name


def group_modules(arch: Any, architectures: tuple[str, ...] | None = None, *,
                  canonical: bool = False) -> dict[str, tuple[str, ...]]:
    """Decision-group FQN → the module names of the architecture's Hugging Face checkpoint
    (:mod:`.names`): fused projections appear once, MoE experts once per expert. With
    ``canonical`` the planner's own Llama-like names (what GGUF tensor kinds are keyed by)."""
    from planner.workload import WEIGHTED_KINDS, build_workload

    from .names import renamer

    rename = (lambda n: (n,)) if canonical else renamer(arch, architectures)
    out: dict[str, dict[str, None]] = {}
    for block in build_workload(arch).blocks:
        for i in range(block.count):
            for op in block.ops:
                if op.kind not in WEIGHTED_KINDS or op.tied_to is not None:
                    continue
                mods = out.setdefault(block.group_fqn(i, op), {})
                mods.update(dict.fromkeys(rename(_hf_module(block.fqn(i, op)))))
    return {g: tuple(m) for g, m in out.items()}


def group_kinds(arch: Any) -> dict[str, str]:
    """Decision-group FQN → the kind of its operator (``linear``, ``conv``, ``embedding``,
    ``lm_head``, ``router``; planner/workload.py)."""
    from planner.workload import WEIGHTED_KINDS, build_workload

    kinds: dict[str, str] = {}
    for block in build_workload(arch).blocks:
        for i in range(block.count):
            for op in block.ops:
                if op.kind in WEIGHTED_KINDS and op.tied_to is None:
                    kinds.setdefault(block.group_fqn(i, op), op.kind)
    return kinds


def quantized_convs(v: PlanView, kinds: Mapping[str, str]) -> list[str]:
    """The plan's convolution groups (``kinds``: :func:`group_kinds`) given weights below 16 bits."""
    return [g for g in v.choices if kinds.get(g) == "conv" and weights_of(v, g) not in ("bf16", "fp16", "fp32")]


def modules_of(group: str, ctx: ExportContext) -> tuple[str, ...]:
    if ctx.modules is not None and group in ctx.modules:
        return tuple(ctx.modules[group])
    head, _, last = group.rpartition(".")
    if last in _GROUP_MEMBERS and head:
        return tuple(f"{head}.{m}" for m in _GROUP_MEMBERS[last])
    return (_hf_module(group),)


_LAYER = re.compile(r"^(.*?)\.(\d+)\.(.+)$")


def compact_targets(names: list[str], *, anchor_end: bool = True) -> list[str]:
    """Module names → compressed-tensors targets: exact names, or one ``re:`` pattern
    per (prefix, suffix) covering several layer indices."""
    buckets: dict[tuple[str, str], list[int]] = {}
    singles: list[str] = []
    for n in names:
        m = _LAYER.match(n)
        if m:
            buckets.setdefault((m.group(1), m.group(3)), []).append(int(m.group(2)))
        else:
            singles.append(n)
    out = list(dict.fromkeys(singles))
    for (head, tail), idx in buckets.items():
        idx = sorted(set(idx))
        if len(idx) == 1:
            out.append(f"{head}.{idx[0]}.{tail}")
        else:
            alt = "|".join(str(i) for i in idx)
            out.append(f"re:^{re.escape(head)}\\.({alt})\\.{re.escape(tail)}{'$' if anchor_end else ''}")
    return out


def plan_arch(v: PlanView, ctx: ExportContext) -> Any:
    """The plan's architecture: the context's, else the catalog's or file's of ``v.model``; None
    when it does not load (exporters then assume a decoder, as plans of unknown models are)."""
    if ctx.arch is not None:
        return ctx.arch
    from planner.arch import load_arch

    try:
        return load_arch(v.model)
    except (TierwiseError, OSError, ValueError):
        return None


def arch_family(arch: Any) -> str:
    """An architecture's family; "decoder" for one that did not load (plans of unknown models)."""
    return getattr(arch, "family", None) or "decoder"


def plan_family(v: PlanView, ctx: ExportContext) -> str:
    return arch_family(plan_arch(v, ctx))


def plan_generative(v: PlanView, ctx: ExportContext) -> bool:
    """Whether the plan's model generates and keeps a KV cache (a model that does not load: assume so)."""
    arch = plan_arch(v, ctx)
    return arch is None or arch.generative


def max_sequence(v: PlanView, ctx: ExportContext) -> int:
    """The longest sequence the engine must hold: prompt and generated tokens for a model that
    generates; the prompt alone for an encoder, whose context (``max_position_embeddings``, 512 for
    BERT) a ``max_model_len`` of prompt + gen would exceed, and vLLM refuses a length beyond it."""
    return max(1, v.prompt + v.gen if plan_generative(v, ctx) else v.prompt)


def model_path(v: PlanView, ctx: ExportContext) -> str:
    if ctx.model_path:
        return ctx.model_path
    src = getattr(ctx.arch, "source", "") or ""
    m = re.match(r"^\s*([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)\s+config\.json", src)
    return m.group(1) if m else v.model


def shell_quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def shell_lines(args: list[str]) -> str:
    """A shell command with one flag (and its value) per line."""
    parts: list[str] = []
    for a in args:
        if a.startswith("--") or not parts:
            parts.append(shlex.quote(a))
        else:
            parts[-1] += " " + shlex.quote(a)
    return " \\\n  ".join(parts)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def device_capacity(v: PlanView, ctx: ExportContext) -> float | None:
    if ctx.device_capacity_bytes:
        return float(ctx.device_capacity_bytes)
    tiers = v.predicted.get("tiers")
    if isinstance(tiers, Mapping):
        for t in tiers.values():
            if isinstance(t, Mapping) and t.get("role") == "device" and t.get("capacity_bytes"):
                return float(t["capacity_bytes"])
    cap = (v.raw.get("constraints") or {}).get("max_memory_per_device_bytes")
    return float(cap) if cap else None


def engine_context_bytes(engine: str) -> float | None:
    """Memory the engine holds beyond weights, KV cache and activations (CUDA context,
    communication buffers, captured graphs): ``runtime.context_gib`` of its profile."""
    try:
        from planner.engines import load_engine

        return float(load_engine(engine).runtime.context_bytes)
    except Exception:  # noqa: BLE001 - an engine without a profile: the fixed headroom applies
        return None


def memory_need(v: PlanView, ctx: ExportContext, *, extra_weight_bytes: float = 0.0,
                engine: str | None = None, extra_device_bytes: float = 0.0,
                off_device_bytes: float = 0.0) -> dict[str, float] | None:
    """Per-device bytes the engine will hold on the device: the plan's predicted footprint with
    weights as the target writes them (``extra_weight_bytes`` over the plan, whole model, e.g.
    embeddings kept in 16 bit), less ``off_device_bytes`` the engine keeps elsewhere (weights it
    offloads to host memory, vLLM's ``cpu_offload_gb``), plus the target engine's context from its
    profile (else the fixed headroom). The plan's own engine context, which its
    ``per_device_bytes`` already counts (``predicted.runtime_context_bytes``), is taken out first:
    it is counted once, the target's."""
    cap = device_capacity(v, ctx)
    need = v.predicted.get("per_device_bytes")
    if not cap or not need:
        return None
    shards = max(1, v.tp * v.pp)
    context = engine_context_bytes(engine) if engine else None
    if context is None:
        context = HEADROOM_FRACTION * cap
    counted = float(v.predicted.get("runtime_context_bytes") or 0.0)
    plan_bytes = float(need) - counted + extra_weight_bytes / shards + extra_device_bytes - off_device_bytes
    return {"capacity": float(cap), "plan": plan_bytes, "context": context, "total": plan_bytes + context}


def memory_fraction(v: PlanView, ctx: ExportContext, *, extra_weight_bytes: float = 0.0,
                    engine: str | None = None, extra_device_bytes: float = 0.0,
                    off_device_bytes: float = 0.0) -> float | None:
    """:func:`memory_need` as a fraction of device memory, rounded up to 0.01 (at least 0.05).
    Not clamped: above 1 the plan does not load, which the caller refuses (an engine given less
    than the plan needs would run out of memory)."""
    m = memory_need(v, ctx, extra_weight_bytes=extra_weight_bytes, engine=engine, extra_device_bytes=extra_device_bytes,
                    off_device_bytes=off_device_bytes)
    if m is None:
        return None
    return max(math.ceil(m["total"] / m["capacity"] * 100) / 100, 0.05)


def prefill_chunk(engine: str | None) -> int | None:
    """Tokens per forward pass of an engine with chunked prefill (its profile's
    ``runtime.chunk_tokens``), else None."""
    try:
        from planner.engines import load_engine

        rt = load_engine(engine).runtime if engine else None
    except Exception:  # noqa: BLE001 - an engine without a profile: no chunk known
        return None
    return rt.chunk_tokens if rt is not None and rt.chunked_prefill and rt.chunk_tokens > 0 else None


def batched_tokens(v: PlanView, engine: str | None) -> tuple[int | None, float]:
    """(tokens per forward pass the engine is told to run, extra activation bytes per device
    over the plan's prediction). With chunked prefill the engine profiles and runs passes of
    ``min(chunk, batch × prompt)`` tokens (at least one per sequence); activations scale with
    the tokens of a pass, so the plan's activation peak (the whole batch's prompts at once) is
    rescaled to it."""
    chunk = prefill_chunk(engine)
    if chunk is None:
        return None, 0.0
    tokens = max(1, v.batch * max(1, v.prompt))
    per_pass = max(min(chunk, tokens), v.batch)
    act = float(v.predicted.get("activations_bytes") or 0.0)
    return per_pass, act * (per_pass / tokens) - act


def host_offload_bytes(v: PlanView) -> float:
    tiers = v.predicted.get("tiers")
    total = 0.0
    if isinstance(tiers, Mapping):
        for t in tiers.values():
            if isinstance(t, Mapping) and t.get("role") == "host":
                total += float(t.get("weights_bytes") or 0.0)
    return total


#: Plan KV format → ``--kv-cache-dtype`` of vLLM and SGLang (the same names in both: "auto" keeps
#: the model's 16-bit dtype).
KV_CACHE_DTYPE = {"bf16": "auto", "fp16": "auto", "fp32": "auto", "fp8-e4m3": "fp8_e4m3", "fp8-e5m2": "fp8_e5m2"}


def server_start(v: PlanView, ctx: ExportContext, fmt: str, what: str, ct_note: str = "") -> tuple[Any, ...]:
    """What a server exporter (vLLM, SGLang) checks and reads first: ``(v, kept, notes, acts, model,
    engine, quantization)``. The plan as the server runs it (rules.as_exported), its activation formats,
    the engine it was planned for, every group the server runs (rules.engine_runs), the quantization
    choice (rules.serving_quantization: a compressed-tensors plan is served from the checkpoint that
    export writes, ``{model}-tierwise``, each group it cannot express named), and the KV cache's
    ``--kv-cache-dtype`` (:data:`KV_CACHE_DTYPE`; any other is an ExportError naming ``kv``)."""
    from .core import ExportError, acts_of
    from .rules import as_exported, engine_runs, replan_hint, serving_quantization
    from .schemes import ct_quantization_config

    v, kept, notes = as_exported(v, fmt)
    acts = {acts_of(v, g) for g in v.choices}
    model = model_path(v, ctx)
    engine = ctx.engine or fmt
    engine_runs(v, fmt, engine, ctx=ctx)
    quantization = serving_quantization(v)
    if quantization == "compressed-tensors":
        ct_quantization_config(v, ctx, fmt)  # names every group the checkpoint cannot express
        model = f"{v.model}-tierwise"
        notes.append(f"serve the compressed-tensors checkpoint: run `tierwise export PLAN --format compressed-tensors` "
                     f"and its oneshot.py first; it writes {model}/{ct_note}")
    if v.kv not in KV_CACHE_DTYPE:
        raise ExportError("kv", f"{what}'s --kv-cache-dtype supports auto (16-bit), fp8_e4m3 and fp8_e5m2; the plan's KV "
                          f"cache is {v.kv!r}; {replan_hint(v, fmt, engine)}")
    return v, kept, notes, acts, model, engine, quantization


def server_memory(v: PlanView, ctx: ExportContext, kept: Any, engine: str) -> tuple[int | None, float, float, float,
                                                                                     dict | None]:
    """``(per_pass, act_extra, extra, offload, need)`` of a server launch: the tokens one batched pass
    takes and the activation bytes beyond the plan's (:func:`batched_tokens`), the bytes of groups kept
    at another format (rules.kept_extra_bytes), the weights kept in host memory
    (:func:`host_offload_bytes`, the server's cpu_offload_gb) and the device memory it needs
    (:func:`memory_need`; None: no capacity known)."""
    from .rules import kept_extra_bytes

    per_pass, act_extra = batched_tokens(v, engine)
    extra = kept_extra_bytes(v, ctx, kept)
    offload = host_offload_bytes(v)
    need = memory_need(v, ctx, extra_weight_bytes=extra, engine=engine, extra_device_bytes=act_extra,
                       off_device_bytes=offload)
    return per_pass, act_extra, extra, offload, need


def server_export(fmt: str, what: str, v: PlanView, args: dict[str, Any], command: list[str],
                  notes: list[str], *, positional: str | None = None) -> Any:
    """The two files of a server launch: ``<fmt>_args.json`` (``args``) and ``serve.sh`` running
    ``command`` with every argument as ``--flag value`` (``True``: the bare flag; ``positional``:
    the argument given without a flag, right after ``command``)."""
    from .core import Export, ExportFile

    cli = list(command)
    if positional is not None:
        cli.append(str(args[positional]))
    for k, val in args.items():
        if k == positional:
            continue
        flag = "--" + k.replace("_", "-")
        cli += [flag] if val is True else [flag, str(val)]
    script = (f"#!/usr/bin/env bash\n# {what} server for plan of {v.model} on {v.hardware}\nset -euo pipefail\n"
              + shell_lines(cli) + "\n")
    return Export(
        format=fmt,
        files=(
            ExportFile(path=f"{fmt}_args.json", content=to_json(args), media_type="application/json"),
            ExportFile(path="serve.sh", content=script, media_type="text/x-shellscript"),
        ),
        next_command=shell_quote(cli),
        notes=tuple(notes),
    )
