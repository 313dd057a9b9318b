"""``apply_plan(model, plan)``: dispatch a plan's per-group choices to real torch modules.

One verb, one registry (adding an option type touches one handler): every group choice is classified into an
option type — ``quantize`` (a weight format, dense), ``prune`` (2:4 or unstructured
sparsity, then the weight format), ``low-rank`` (truncated SVD, both factors in the
weight format) — and the handler registered for that type builds the replacement module
from the original one. The plan's KV format goes to the model's KV cache through the
``kv`` handler. Adding an option type means one handler function and one
:func:`register_handler` call.

Plan group names (``bert.encoder.layer.2.attention.self.qkv``) are expanded to member module
paths with the workload of the torch model's architecture (``…attention.self.query``,
``…key``, ``…value``); a name that is itself a module path (a plain torch model) is used as
is. CNN workloads name convolutions under a ``model.`` prefix that a plain module lacks; the
prefix is dropped when the root has no ``model`` child.

The original model is never modified: the plan is checked in full first, then applied to
a deep copy, so an error leaves the caller's model untouched.

A plan made for an engine whose int8 recipe runs SmoothQuant first (its profile's
``activation_smoothing``: vLLM, SGLang) is applied with that recipe: for each group of linears that
alone reads a norm's output (:mod:`planner.smoothing_map`: q/k/v, gate/up or fc1 of the pre-norm
decoders it lists) and computes in int8 activations, the per-channel maximum of the group's input on
the calibration data (``calibrate``, a function that runs the model on sample inputs, like ModelOpt's
``forward_loop``) and the column maxima of the group's weights set one vector of SmoothQuant scales
(:func:`planner.backends.smoothing.smoothing_scales`); each weight is stored as ``W·diag(s)`` and the
layers divide their input by ``s`` before quantizing it, which a deployment folds into the norm. An
engine that quantizes int8 activations in blocks (``activation_blocks``: llama.cpp's CPU matmul, 32
or 256 features per scale by weight type) gets that granularity instead of one scale per token.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from planner.arch import ArchSpec
from planner.backends import low_rank as svd_low_rank
from planner.backends.smoothing import smoothing_scales
from planner.formats import FormatError, NumericsError, get_format, parse_sparsity
from planner.numerics import Numerics, is_rank
from planner.workload import LINEAR, LM_HEAD, build_workload
from planner.execution.errors import PlanApplyError
from planner.execution.modules import LowRankLinear, PackedConv2d, PackedEmbedding, PackedLinear, PackedModule
from planner.execution.storage import pack_weight

__all__ = [
    "HANDLERS",
    "KV_HANDLERS",
    "LayerOption",
    "PlanApplyError",
    "SPARSITY_PATTERNS",
    "apply_plan",
    "compressed_modules",
    "executable_formats",
    "option_type",
    "plan_targets",
    "register_handler",
    "register_kv_handler",
    "smoothed_targets",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerOption(Numerics):
    """What to do with one module: its :class:`~planner.numerics.Numerics` (weight format,
    sparsity, activation format, low rank); torch modules start in fp32."""

    weights: str = "fp32"
    activations: str = "fp32"

    def __post_init__(self) -> None:
        try:
            w, sp, a = self.resolved()
        except NumericsError as exc:
            raise PlanApplyError(str(exc), field=exc.field) from None
        if self.low_rank is not None:
            if not is_rank(self.low_rank):
                raise PlanApplyError(f"low_rank must be an int >= 1 or None; got {self.low_rank!r}", field="low_rank")
            if sp.name != "dense":
                raise PlanApplyError("low_rank and sparsity cannot be combined on one group", field="low_rank")
        object.__setattr__(self, "weights", w.name)
        object.__setattr__(self, "sparsity", sp.name)
        object.__setattr__(self, "activations", a.name)


def option_type(opt: LayerOption) -> str:
    """The handler key of an option: ``low-rank``, ``prune``, ``quantize`` or ``keep``."""
    if opt.low_rank is not None:
        return "low-rank"
    if opt.sparsity != "dense":
        return "prune"
    if opt.weights == "fp32" and opt.activations == "fp32":
        return "keep"
    return "quantize"


Handler = Callable[[nn.Module, LayerOption, str], nn.Module]
KVHandler = Callable[[nn.Module, str], bool]

#: Option type → handler building the replacement of one module.
HANDLERS: dict[str, Handler] = {}
#: Model class → handler that sets its KV-cache format (returns True when applied).
KV_HANDLERS: dict[type, KVHandler] = {}


def register_handler(kind: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return deco


def register_kv_handler(cls: type) -> Callable[[KVHandler], KVHandler]:
    def deco(fn: KVHandler) -> KVHandler:
        KV_HANDLERS[cls] = fn
        return fn

    return deco


#: Sparsity patterns the ``prune`` handler builds (besides ``dense``).
SPARSITY_PATTERNS = ("dense", "2:4", "unstructured")


def executable_formats() -> dict[str, tuple[str, ...]]:
    """What :func:`apply_plan` runs, by role: ``weights`` (every weight format of the format
    registry: :func:`~planner.execution.storage.pack_weight` packs each), ``activations``
    (every activation format: quantised per token by the same kernels), ``kv`` (every KV
    format: the decoder's ``KVCache``) and ``sparsity``. The ``torch`` engine profile
    (profiles/engines/torch.yaml) declares exactly these (tests/test_engine_torch.py)."""
    from planner.formats import list_formats

    return {
        "weights": tuple(f.name for f in list_formats(role="weight")),
        "activations": tuple(f.name for f in list_formats(role="activation")),
        "kv": tuple(f.name for f in list_formats(role="kv")),
        "sparsity": SPARSITY_PATTERNS,
    }


def _weight_2d(module: nn.Module) -> torch.Tensor:
    w = module.weight.detach()
    return w.reshape(w.shape[0], -1) if isinstance(module, nn.Conv2d) else w


_WEIGHTED = (nn.Linear, nn.Conv2d, nn.Embedding)


def _unsupported(module: nn.Module, fqn: str, what: str) -> PlanApplyError:
    return PlanApplyError(f"layer {fqn!r} is a {type(module).__name__}; {what} applies to nn.Linear, nn.Conv2d "
                          "and nn.Embedding layers only", field=fqn)


@register_handler("keep")
def _keep(module: nn.Module, opt: LayerOption, fqn: str) -> nn.Module:
    return module


@register_handler("quantize")
def _quantize(module: nn.Module, opt: LayerOption, fqn: str) -> nn.Module:
    return _packed(module, opt, fqn, "quantize")


@register_handler("prune")
def _prune(module: nn.Module, opt: LayerOption, fqn: str) -> nn.Module:
    if parse_sparsity(opt.sparsity).structured and _weight_2d(module).shape[1] % 4:
        raise PlanApplyError(f"layer {fqn!r}: 2:4 sparsity needs in_features divisible by 4; the weight is "
                             f"{tuple(module.weight.shape)}", field=fqn)
    return _packed(module, opt, fqn, "prune")


def _packed(module: nn.Module, opt: LayerOption, fqn: str, option: str) -> nn.Module:
    if not isinstance(module, _WEIGHTED):
        raise _unsupported(module, fqn, f"'{option}'")
    try:
        packed = pack_weight(_weight_2d(module), opt.weights, opt.sparsity)
    except ValueError as exc:
        raise PlanApplyError(f"layer {fqn!r}: {exc}", field=fqn) from None
    if isinstance(module, nn.Embedding):
        return PackedEmbedding(packed, module, option=option)
    if isinstance(module, nn.Conv2d):
        return PackedConv2d(packed, module, activations=opt.activations, option=option)
    return PackedLinear(packed, module.bias, activations=opt.activations, option=option)


@register_handler("low-rank")
def _low_rank(module: nn.Module, opt: LayerOption, fqn: str) -> nn.Module:
    if not isinstance(module, nn.Linear):
        raise PlanApplyError(f"layer {fqn!r} is a {type(module).__name__}; low rank applies to nn.Linear layers "
                             "only", field=fqn)
    w = module.weight.detach()
    limit = min(w.shape)
    if opt.low_rank > limit:  # type: ignore[operator]
        raise PlanApplyError(f"layer {fqn!r}: low_rank {opt.low_rank} exceeds min(out, in) = {limit}", field=fqn)
    a, b = svd_low_rank(w, int(opt.low_rank))  # type: ignore[arg-type]
    try:
        pa, pb = pack_weight(a, opt.weights), pack_weight(b, opt.weights)
    except ValueError as exc:
        raise PlanApplyError(f"layer {fqn!r}: {exc}", field=fqn) from None
    return LowRankLinear(pa, pb, module.bias, activations=opt.activations)


# -- plan normalisation -----------------------------------------------------------------------


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _layer_option(raw: Any, group: str) -> LayerOption:
    try:
        return LayerOption(weights=_get(raw, "weights", "fp32"), sparsity=_get(raw, "sparsity", "dense"),
                           activations=_get(raw, "activations", "fp32"), low_rank=_get(raw, "low_rank"))
    except PlanApplyError as exc:
        raise PlanApplyError(f"plan choice for {group!r}: {exc.message}", field=f"choices.{group}.{exc.field}") \
            from None


def _plan_parts(plan: Any) -> tuple[str | None, dict[str, LayerOption], str | None, str | None]:
    """(model id, group → option, KV format, model hash) of a Plan, a plan dict or a bare
    mapping of group → choice."""
    choices = _get(plan, "choices")
    if choices is None and isinstance(plan, Mapping):
        choices, plan = plan, {}
    if not isinstance(choices, Mapping) or not choices:
        raise PlanApplyError("the plan has no choices (expected a mapping of group name → choice)", field="choices")
    options = {str(g): _layer_option(c, str(g)) for g, c in choices.items()}
    kv = _get(plan, "kv")
    if kv is not None:
        try:
            spec = get_format(kv)
        except FormatError as exc:
            raise PlanApplyError(f"plan 'kv': {exc}", field="kv") from None
        if not spec.is_kv:
            raise PlanApplyError(f"plan 'kv': {spec.name!r} is not a KV-cache format", field="kv")
        kv = spec.name
    return _get(plan, "model"), options, kv, _get(plan, "model_hash")


def _resolve(root: nn.Module, path: str) -> nn.Module | None:
    """The module at ``path``; a group named under ``model.`` that the model holds at its top (a causal
    LM's ``lm_head`` beside its ``model``, or a bare encoder) is found there."""
    candidates = [path]
    if path.startswith("model."):
        candidates.append(path[len("model."):])
    for cand in candidates:
        try:
            return root.get_submodule(cand)
        except AttributeError:
            continue
    return None


def _group_members(arch: ArchSpec | None) -> dict[str, list[tuple[str, Any]]]:
    """Group FQN → [(member FQN, OpShape)] from the architecture's workload."""
    if arch is None:
        return {}
    out: dict[str, list[tuple[str, Any]]] = {}
    for group, _params, members in build_workload(arch).groups():
        rel = members[0].group
        base = group[: len(group) - len(rel)]
        out[group] = [(base + op.name, op) for op in members if op.tied_to is None]
    return out


def _check_shape(module: nn.Module, op: Any, fqn: str, plan_model: str | None) -> None:
    if op is None or op.kind not in (LINEAR, LM_HEAD) or not isinstance(module, nn.Linear):
        return
    want = (op.out_features, op.in_features)
    got = tuple(module.weight.shape)
    if op.experts:
        return
    if want != got:
        raise PlanApplyError(f"layer {fqn!r} has weight shape {got}, but the plan's model "
                             f"{plan_model or '(unnamed)'} expects {want}: the plan was made for a different model",
                             field=fqn)


def plan_targets(model: nn.Module, plan: Any, arch: ArchSpec | None = None) -> dict[str, tuple[str, LayerOption]]:
    """Member module FQN → (plan group, option), checked against ``model`` without changing it.

    Raises :class:`PlanApplyError` naming the first plan group the model lacks.
    """
    plan_model, options, _kv, _hash = _plan_parts(plan)
    members = _group_members(arch)
    targets: dict[str, tuple[str, LayerOption]] = {}
    for group, opt in options.items():
        if group in members:
            entries = members[group]
        else:
            entries = [(group, None)]
        for fqn, op in entries:
            module = _resolve(model, fqn)
            if module is None:
                example = next(iter(members), None) or next((n for n, m in model.named_modules()
                                                             if isinstance(m, _WEIGHTED)), "?")
                made_for = f"model {plan_model!r}" if plan_model else "a different model"
                raise PlanApplyError(
                    f"the plan names layer {group!r} (module {fqn!r}) but the torch model "
                    f"{(arch.id if arch else type(model).__name__)!r} has no such module; the plan was made for "
                    f"{made_for}. Layers of this model look like {example!r}", field=f"choices.{group}")
            if option_type(opt) != "keep" and not isinstance(module, _WEIGHTED):
                raise _unsupported(module, fqn, f"plan option '{option_type(opt)}'")
            _check_shape(module, op, fqn, plan_model)
            targets[fqn] = (group, opt)
    return targets


def _set_submodule(root: nn.Module, fqn: str, new: nn.Module) -> None:
    path = fqn if _has_path(root, fqn) else fqn[len("model."):]
    parent_name, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _has_path(root: nn.Module, fqn: str) -> bool:
    try:
        root.get_submodule(fqn)
        return True
    except AttributeError:
        return False


def _plan_recipe(plan: Any):
    """(engine id, its recipe for integer activations) of the plan (:func:`planner.plan.plan_activation_recipe`:
    the one the plan recorded, else its engine's catalog profile); (id or None, None) without one."""
    from planner.plan import PlanError, plan_activation_recipe

    try:
        return plan_activation_recipe(plan)
    except PlanError as exc:
        raise PlanApplyError(exc.message, field=exc.field) from None


def _plan_smoothing(plan: Any) -> tuple[str | None, float | None]:
    """(engine id, SmoothQuant strength of its int8 recipe) of the plan's engine; (None, None) without one."""
    engine, recipe = _plan_recipe(plan)
    return engine, (recipe.smoothing if recipe is not None else None)


def smoothed_targets(model: nn.Module, plan: Any, arch: ArchSpec | None = None) -> dict[str, str]:
    """Member module → plan group, for the modules the plan's engine applies SmoothQuant to: linears
    computing in integer activations whose group alone reads a norm's output
    (:mod:`planner.smoothing_map`; a model without ``arch`` has none)."""
    from planner.format_noise import smoothable
    from planner.options import decision_groups

    _engine, alpha = _plan_smoothing(plan)
    if alpha is None or arch is None:
        return {}
    reads_norm = {g.fqn for g in decision_groups(build_workload(arch)) if g.reads_norm}
    return {fqn: group for fqn, (group, opt) in plan_targets(model, plan, arch).items()
            if group in reads_norm and option_type(opt) == "quantize" and smoothable(opt.activations)
            and isinstance(_resolve(model, fqn), nn.Linear)}


def _group_scales(model: nn.Module, smoothed: Mapping[str, str], absmax: Mapping[str, torch.Tensor],
                  alpha: float) -> dict[str, torch.Tensor]:
    """One SmoothQuant scale vector per group, shared by its members (q, k and v read the same norm,
    which can fold one ``1/s`` only): the members' input maxima and their weights' column maxima."""
    by_group: dict[str, list[str]] = {}
    for fqn, group in smoothed.items():
        by_group.setdefault(group, []).append(fqn)
    out: dict[str, torch.Tensor] = {}
    for members in by_group.values():
        a = torch.stack([absmax[f] for f in members]).amax(dim=0)
        w = torch.cat([_resolve(model, f).weight.detach().to(torch.float32) for f in members])  # type: ignore[union-attr]
        s = smoothing_scales(a, w, alpha)
        out.update({f: s for f in members})
    return out


def _input_absmax(model: nn.Module, fqns: list[str], calibrate: Callable[[nn.Module], Any]) -> dict[str, torch.Tensor]:
    """Per-input-channel maximum magnitude of each module's input while ``calibrate(model)`` runs."""
    stats: dict[str, torch.Tensor] = {}
    hooks = []

    def hook_for(fqn: str):
        def hook(_m: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            a = x.reshape(-1, x.shape[-1]).abs().amax(dim=0).to(torch.float32)
            stats[fqn] = torch.maximum(stats[fqn], a) if fqn in stats else a
        return hook

    for fqn in fqns:
        hooks.append(_resolve(model, fqn).register_forward_pre_hook(hook_for(fqn)))  # type: ignore[union-attr]
    try:
        with torch.no_grad():
            calibrate(model)
    finally:
        for h in hooks:
            h.remove()
    missing = [f for f in fqns if f not in stats]
    if missing:
        raise PlanApplyError(f"the calibration run never reached {missing[0]!r} ({len(missing)} layer(s) in all), so "
                             "its SmoothQuant scales cannot be measured; calibrate must run the whole model",
                             field="calibrate")
    return stats


def apply_plan(model: nn.Module, plan: Any, *, arch: ArchSpec | None = None,
               calibrate: Callable[[nn.Module], Any] | None = None) -> nn.Module:
    """A compressed copy of ``model`` following ``plan``; ``model`` itself is not modified.

    ``plan`` is a :class:`planner.plan.Plan`, its dict form, or a mapping of group name →
    choice (anything with ``weights``, ``sparsity``, ``activations``, ``low_rank``). ``arch``
    maps plan group names to member modules (omit it when the plan names modules directly).
    ``calibrate`` runs ``model`` on sample inputs; it is needed when the plan's engine smooths int8
    activations (module docstring) and the plan has any.
    """
    if not isinstance(model, nn.Module):
        raise PlanApplyError(f"apply_plan needs a torch nn.Module; got {type(model).__name__}", field="model")
    targets = plan_targets(model, plan, arch)
    _plan_model, _options, kv, _hash = _plan_parts(plan)
    smooth: dict[str, torch.Tensor] = {}
    smoothed = smoothed_targets(model, plan, arch)
    if smoothed:
        engine, alpha = _plan_smoothing(plan)
        if calibrate is None:
            raise PlanApplyError(f"the plan's engine {engine!r} runs SmoothQuant (strength {alpha:g}) before quantizing "
                                 f"int8 activations, on {len(smoothed)} layer(s) here (first {next(iter(smoothed))!r}); pass "
                                 "calibrate=, a function that runs the model on sample inputs, so its scales can be "
                                 "measured", field="calibrate")
        absmax = _input_absmax(model, list(smoothed), calibrate)
        smooth = _group_scales(model, smoothed, absmax, alpha)  # type: ignore[arg-type]
    _engine, recipe = _plan_recipe(plan)
    blocks = dict(recipe.blocks) if recipe is not None else {}
    compressed = copy.deepcopy(model)
    for fqn, (_group, opt) in targets.items():
        original = _resolve(compressed, fqn)
        # the deep copy's weight takes the migration in place before it is packed
        replacement = packed_replacement(original, opt, fqn, smooth.get(fqn), blocks, copy_weight=False)  # type: ignore[arg-type]
        if replacement is not original:
            _set_submodule(compressed, fqn, replacement)
    _retie(model, compressed)
    if kv is not None:
        for cls, kv_handler in KV_HANDLERS.items():
            if isinstance(compressed, cls):
                kv_handler(compressed, kv)
                break
    compressed.eval()
    return compressed


def packed_replacement(module: nn.Module, opt: LayerOption, fqn: str, smooth: torch.Tensor | None = None,
                       blocks: Mapping[str, int] | None = None, *, copy_weight: bool = True) -> nn.Module:
    """The module ``module`` becomes under ``opt`` (its option type's handler), with the engine's recipe for
    integer activations: SmoothQuant scales ``smooth`` (the weight packed as ``W·diag(s)``, the input divided by
    ``s``; ``copy_weight=False`` migrates ``module``'s own weight in place) and, per weight format, the features
    one activation scale covers (``blocks``)."""
    kind = option_type(opt)
    handler = HANDLERS.get(kind)
    if handler is None:  # pragma: no cover - every option type has a handler
        raise PlanApplyError(f"no handler registered for option type {kind!r}", field=fqn)
    source = module
    if smooth is not None:
        source = copy.deepcopy(module) if copy_weight else module
        with torch.no_grad():
            source.weight.mul_(smooth.to(source.weight.dtype))  # type: ignore[union-attr, operator]
    replacement = handler(source, opt, fqn)  # type: ignore[arg-type]
    if smooth is not None:
        replacement.set_smoothing(smooth)  # type: ignore[union-attr, operator]
    if blocks and isinstance(replacement, PackedLinear) and opt.weights in blocks:
        replacement.activation_block = blocks[opt.weights]
    return replacement


def _retie(original: nn.Module, compressed: nn.Module) -> None:
    """An output head that shared its weight with a now packed embedding table shares the
    packed table instead (the workload prices tied weights once)."""
    head, emb = getattr(original, "lm_head", None), None
    body = getattr(original, "model", None)
    if body is not None:
        emb = getattr(body, "embed_tokens", None)
    if not isinstance(head, nn.Linear) or not isinstance(emb, nn.Embedding) or head.weight is not emb.weight:
        return
    packed_emb = compressed.model.embed_tokens  # type: ignore[union-attr]
    if isinstance(packed_emb, PackedEmbedding):
        compressed.lm_head = PackedLinear(packed_emb.store, None, activations="fp32", option="tied")  # type: ignore[assignment]


def compressed_modules(model: nn.Module) -> dict[str, PackedModule]:
    """FQN → compressed layer of a model returned by :func:`apply_plan`."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PackedModule)}


def _register_builtin_kv() -> None:
    from planner.execution.decoder import LlamaDecoder

    @register_kv_handler(LlamaDecoder)
    def _decoder_kv(model: nn.Module, fmt: str) -> bool:
        # fp32 is the model's own precision: no conversion, no quantised cache.
        model.set_kv_format(None if fmt == "fp32" else fmt)  # type: ignore[operator]
        return True


_register_builtin_kv()
