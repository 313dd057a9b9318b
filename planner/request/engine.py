"""The ``engine`` field of every request: which serving or training runtime runs the model.

An engine (``planner.engines``) runs a set of weight / activation / KV formats, sparsity
patterns and parallel dimensions on each hardware family. A request names its engine (or
gets the documented default of the hardware class, :func:`planner.engines.default_engine`);
formats the user *gave* are checked against it (an error names the field), defaults are
taken from what the engine runs so a default never fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ENGINE_HELP", "RUNTIMES", "TRAINING_ENGINE_HELP", "canonical", "check_given", "check_runtime",
           "check_training_kernels", "engine_defaults", "exporter_limits", "format_key", "kept_float_roles",
           "resolve_engine"]

#: Launch modes the cost model prices (``--runtime`` / ``runtime``): a captured or compiled program, or
#: eager PyTorch paying the host's dispatch per kernel.
RUNTIMES = ("graph", "eager")

ENGINE_HELP = ("Serving or training engine (vllm, trtllm, sglang, llamacpp, executorch, ...; `tierwise engines list`); "
               "default: the hardware class's engine (docs/engines.md).")
#: For capacity train, which takes training engines only (capacity serve: ``ENGINES_HELP``).
TRAINING_ENGINE_HELP = ("Training engine (megatron-core, fsdp; `tierwise engines list`); default: the hardware "
                        "class's training engine (docs/engines.md).")


def resolve_engine(value: Any, device: Any, *, training: bool, arch: Any = None) -> Any:
    """The :class:`~planner.engines.Support` of ``value`` (an engine id, YAML path or spec;
    ``None``: the default for ``device``'s class and ``arch``'s model family) on ``device``.
    A bad id is an ``UnknownIdError`` with suggestions, an engine that does not run there (or
    does not run ``arch``'s family: vLLM runs no CNN) an ``EngineSupportError``; both name
    ``engine``."""
    from planner.engines import default_engine, load_engine, support

    from hwmodels.errors import UnknownIdError, close_ids

    family = getattr(arch, "family", None)
    try:
        spec = default_engine(device, training=training, kind=family) if value is None else load_engine(
            value.strip() if isinstance(value, str) else value)
    except UnknownIdError as exc:  # suggest 'vllm' for 'VLLM' and 'trtllm' for 'TRT-LLM' too
        raise UnknownIdError(exc.id, "engine", close_ids(exc.id, exc.known, n=3), known=exc.known) from None
    if training and spec.kind != "training":
        _not_a_training_engine(spec, device)
    if not training and spec.kind == "training":
        _not_a_serving_engine(spec, device)
    found = support(spec, device, training=training, family=family)
    if family is not None and not spec.runs_family(family):
        _wrong_family(spec, device, family, arch, training)
    if not spec.builds(getattr(arch, "model_type", None)):
        _not_built(spec, device, arch, training)
    return _exported_runtime(found, arch)


def _exported_runtime(sup: Any, arch: Any) -> Any:
    """``sup`` with the runtime facts its exporter fixes for ``arch``: the integer weight formats it writes
    weight-only (export_llama's int8 mode), which keep their float activations where the engine would
    quantize them at run time (``runtime.dynamic_act_quant``), and the operator kinds it keeps in 16 bit
    whatever the scheme (:func:`kept_float_roles`)."""
    from dataclasses import replace

    changes: dict[str, Any] = {}
    kept = kept_float_roles(sup)
    if kept:
        changes["float_weight_kinds"] = kept
    if sup.runtime.dynamic_act_quant is not None:
        only = tuple((exporter_limits(sup, arch) or {}).get("weight_only", ()))
        if only:
            changes["weight_only_formats"] = only
    return replace(sup, runtime=replace(sup.runtime, **changes)) if changes else sup


def kept_float_roles(sup: Any) -> tuple[str, ...]:
    """The roles (``embedding``, ``lm_head``: also the cost model's operator kinds) that the engine's
    exporter writes, and the engine holds, in 16 bit whatever format the linear layers get
    (``ROLE_RULES`` of planner/export/rules.py: vLLM, SGLang and transformers quantize Linear
    layers only; TensorRT-LLM keeps the embedding table), or those its profile declares
    (``runtime.float_weight_kinds``: an engine whose exporter has no rule for them, such as one exported as
    plain YAML). Estimates price them so, and plans pin them."""
    from planner.export.rules import ROLE_RULES

    declared = tuple(sup.runtime.float_weight_kinds)
    if declared:
        return tuple(sorted(declared))
    return tuple(sorted(role for role, how in ROLE_RULES.get(sup.exporter, {}).items() if how == "keep16"))


def _not_built(spec: Any, device: Any, arch: Any, training: bool) -> None:
    """An engine named for a model type it does not build (MLC LLM has no model code for Falcon):
    an ``EngineSupportError`` naming ``engine``, the types it builds and the engines that run the
    model there."""
    from planner.engines import EngineSupportError, engines_for

    fits = engines_for(device, training=training, family=getattr(arch, "family", None), model_type=arch.model_type)
    raise EngineSupportError(
        f"{{@engine}}: {spec.name} ({spec.id}) does not build model type {arch.model_type!r} ({arch.id}); it builds "
        f"{', '.join(sorted(spec.model_types))}. {'Training' if training else 'Serving'} engines that run {arch.id} on "
        f"{device.id}: {', '.join(fits) or 'none'}", field="engine",
        details={"model_type": arch.model_type, "builds": sorted(spec.model_types), "engines": fits})


def _wrong_family(spec: Any, device: Any, family: str, arch: Any, training: bool) -> None:
    """An engine named for a model family it does not run (vLLM for ResNet-50): an
    ``EngineSupportError`` naming ``engine``, the family and the engines that run it there."""
    from planner.engines import EngineSupportError, engines_for

    fits = engines_for(device, training=training, family=family)
    raise EngineSupportError(
        f"{{@engine}}: {spec.name} ({spec.id}) does not run {family} models such as {getattr(arch, 'id', family)} "
        f"(it runs {', '.join(spec.families)}); {'training' if training else 'serving'} engines that run {family} "
        f"models on {device.id}: {', '.join(fits) or 'none'}", field="engine")


def _not_a_training_engine(spec: Any, device: Any) -> None:
    """A serving or on-device engine named for a training step (vLLM runs no backward pass):
    an ``EngineSupportError`` naming ``engine`` and the training engines on ``device``."""
    from planner.engines import EngineSupportError, engines_for

    fits = engines_for(device, training=True)
    article = "an" if spec.kind[:1] in "aeiou" else "a"  # an on-device engine
    raise EngineSupportError(f"{{@engine}}: {spec.name} ({spec.id}) is {article} {spec.kind} engine, not a training one; "
                             f"training engines on {device.id}: {', '.join(fits) or 'none'}", field="engine")


def _not_a_serving_engine(spec: Any, device: Any) -> None:
    """A training engine (``kind: training``: Megatron-Core, FSDP) named for inference (an
    estimate, a plan, a serving fleet): an ``EngineSupportError`` naming ``engine`` and the
    serving and on-device engines on ``device`` (docs/engines.md: they are not serving engines)."""
    from planner.engines import EngineSupportError, engines_for

    fits = engines_for(device, training=False)
    raise EngineSupportError(f"{{@engine}}: {spec.name} ({spec.id}) is a training engine, not a serving one; "
                             f"serving engines on {device.id}: {', '.join(fits) or 'none'}", field="engine")


def exporter_limits(sup: Any, arch: Any) -> Mapping[str, tuple[str, ...]] | None:
    """The formats the engine's exporter writes for ``arch``, where it writes fewer than the engine
    runs (:attr:`planner.export.core.Exporter.limits`: Optimum ExecuTorch's float cache and int4 in
    groups of 32); ``None`` when it writes whatever the engine runs."""
    from planner.export import EXPORTERS

    exporter = EXPORTERS.get(getattr(sup, "exporter", "") or "")
    if exporter is None or exporter.limits is None or arch is None:
        return None
    return exporter.limits(arch) or None


def canonical(name: str) -> str:
    """A format's registered name ('fp8' → 'fp8-e4m3', 'int4' → 'int4-g128')."""
    from planner.formats import get_format

    try:
        return get_format(name).name
    except (ValueError, KeyError):
        return name


def format_key(x: Any) -> Any:
    """A format's identity in a list (``fp8`` and ``fp8-e4m3`` are one format), for
    :func:`~planner.request.fields.check_list`'s ``unique``."""
    from planner.request.fields import item_key

    return canonical(x.strip()) if isinstance(x, str) else item_key(x)


def _baseline_weights(sup: Any, native: str) -> str:
    """The engine's first 16-bit (else first) weight format, the native one when it runs it."""
    from planner.formats import get_format

    if native in sup.weights:
        return native
    sixteen = [w for w in sup.weights if get_format(w).element_bits == 16]
    return sixteen[0] if sixteen else sup.schemes[0].weights[0]


def engine_defaults(sup: Any, given: Mapping[str, Any], v: dict[str, Any], *, kv: bool) -> dict[str, Any]:
    """``v`` with the weight / activation (/ KV) formats the user left out replaced by ones
    the engine runs: the declared default when the engine runs it, else its baseline."""
    out = dict(v)
    if not sup.schemes:
        return out
    if "weights" not in given:
        out["weights"] = _baseline_weights(sup, canonical(v["weights"]))
    w = canonical(out["weights"])
    if "activations" not in given:
        acts = sup.activations_for(w)
        native = canonical(v["activations"])
        if acts and native not in acts:
            out["activations"] = acts[0]
    if kv and "kv" not in given and sup.kv and canonical(v["kv"]) not in sup.kv:
        native = canonical(v["kv"])
        sixteen = [k for k in sup.kv if k in ("bf16", "fp16")]
        out["kv"] = native if native in sup.kv else (sixteen or list(sup.kv))[0]
    return out


def check_given(sup: Any, given: Mapping[str, Any], v: Mapping[str, Any],
                layout: Mapping[str, int] | None = None, zero: int | None = None) -> None:
    """Check the fields the user gave (and the layout) against the engine; raises
    ``EngineSupportError`` naming the first field it does not run."""
    from planner.engines import check_request

    def pick(name: str) -> Any:
        return canonical(v[name]) if name in given and v.get(name) is not None else None

    weights, acts = pick("weights"), pick("activations")
    if acts is not None and weights is None:  # activations given alone: check against the weights used
        weights_used = canonical(v["weights"])
        if not sup.runs(weights_used, acts):
            from planner.engines import EngineSupportError

            raise EngineSupportError(
                f"{sup.engine} on {sup.device} runs {weights_used} weights with {{@activations}} "
                f"{', '.join(sup.activations_for(weights_used)) or 'none'}; got {v['activations']!r}",
                field="activations")
    sparsity = v.get("sparsity") if "sparsity" in given else None
    check_request(sup, weights=weights, activations=acts, kv=pick("kv") if "kv" in v else None,
                  sparsity=sparsity, layout=layout, zero=zero,
                  low_rank=v.get("low_rank") if "low_rank" in given else None)


def check_runtime(sup: Any, value: Any, device: Any) -> str:
    """The launch mode of a request: the engine's default when not given, else the given one if the
    engine has it (an engine that only runs a compiled program of its own has no eager mode); the
    refusal lists the engines on ``device`` that do have one."""
    from planner.engines import EngineSupportError, engines_for, load_engine
    from planner.request.fields import check_choice

    if value is None:
        return sup.runtime.default_runtime
    runtime = check_choice("runtime", value, RUNTIMES)
    if runtime not in sup.runtime.runtimes:
        training = sup.kind == "training"
        others = [e for e in engines_for(device, training=training)
                  if runtime in load_engine(e).support(device).runtime.runtimes]
        what = ("runs its own compiled program and has no eager PyTorch mode" if runtime == "eager" else
                "runs eager PyTorch only, with no CUDA-graph or compiled mode")
        raise EngineSupportError(
            f"{sup.engine} on {sup.device} {what}, so "
            f"{{@runtime}} must be {' or '.join(sup.runtime.runtimes)}; got {value!r}. Engines on {sup.device} with "
            f"{'an' if runtime == 'eager' else 'a'} {runtime} mode: {', '.join(others) or 'none'}",
            field="runtime", details={"engine": sup.engine, "supported": list(sup.runtime.runtimes)})
    return runtime


#: Named fused attention kernels and where they run: CUDA / ROCm GPU kernels (FlashAttention 2 and its
#: Triton port run on NVIDIA and AMD GPUs); FlashAttention-3 is written for Hopper's wgmma and TMA
#: (Shah et al. 2024, arXiv:2407.08608; its README requires H100 / H800).
_GPU_KERNELS = ("flash2", "flash3", "flash-triton")


def check_training_kernels(sup: Any, device: Any, attention: str | None, optimizer: str | None) -> None:
    """Check a training request's ``attention`` kernel and ``optimizer`` against the device and the
    engine (its profile's ``attention`` / ``optimizers``; all when it lists none). Raises naming the
    field, with the alternatives that do run there."""
    from planner.engines import ATTENTION_KERNELS, OPTIMIZER_NAMES, EngineSupportError
    from planner.errors import TierwiseError
    from planner.request.fields import check_choice

    has_attention = sup.attention
    if attention is not None:
        check_choice("attention", attention, ATTENTION_KERNELS)
        def runs_on_device(k: str) -> bool:
            return k not in _GPU_KERNELS or (device.device_class == "gpu" and (k != "flash3" or device.arch == "hopper"))

        runs_here = [k for k in has_attention if runs_on_device(k)]
        if not runs_on_device(attention):
            where = ("Hopper GPUs only" if attention == "flash3" and device.device_class == "gpu"
                     else "GPUs only (a CUDA / ROCm kernel)")
            kind = device.arch if device.device_class == "gpu" and device.arch else f"a {device.device_class}"
            raise TierwiseError(f"{{@attention}} {attention} runs on {where}; {device.id} is {kind}: use "
                                f"{', '.join(runs_here)}",
                                field="attention", code="invalid_field")
        if attention != "fused" and attention not in has_attention:  # "fused" is the engine's own kernel
            raise EngineSupportError(f"{sup.engine} has no {{@attention}} {attention!r}; it has: "
                                     f"{', '.join(has_attention)}", field="attention",
                                     details={"engine": sup.engine, "supported": list(has_attention)})
    if optimizer is not None:
        check_choice("optimizer", optimizer, OPTIMIZER_NAMES)
        if optimizer not in sup.optimizers:
            raise EngineSupportError(f"{sup.engine} has no {{@optimizer}} {optimizer!r}; it has: "
                                     f"{', '.join(sup.optimizers)}", field="optimizer",
                                     details={"engine": sup.engine, "supported": list(sup.optimizers)})
