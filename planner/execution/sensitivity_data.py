"""Data-driven sensitivity: measured per (decision group, option) scores for the planner.

Two measurements on calibration batches of a real torch model (``tierwise sensitivity``):

``kl`` (output perturbation, the default): apply one option to one group, leave every
other layer as is, run the calibration batch and measure the model's degradation against
the original — 1 − cosine similarity of sentence embeddings for encoders, mean
KL(original ‖ compressed) of the output distribution for classifiers and decoders. This is
the per-layer output-error table HAWQ-V3 (Yao et al., ICML 2021) / ModelOpt AutoQuantize approximate,
measured directly; it needs no backward pass.

``fisher`` (diagonal Fisher): one backward pass per calibration sample gives per-sample
gradients ``g`` of the log-likelihood; the diagonal Fisher ``F = E[g²]`` weights the
weight perturbation of each option, ``score = ½ Σ F ⊙ (W − Q(W))²`` — the second-order
expansion of the KL divergence (Amari 1998; the OBD/HAWQ-style diagonal approximation).
Likelihoods: classifiers and decoders sample the label from the model's own prediction
(the true Fisher); sentence encoders use the in-batch contrastive distribution
``p(j | i) = softmax_j(e_i · e_j / τ)`` with τ = 0.05 (scale 20, sentence-transformers'
MultipleNegativesRankingLoss that all-MiniLM-L6-v2 was trained with) and target ``i``.

Scores are written in the planner's sensitivity file format (:mod:`planner.sensitivity`)::

    version: 1
    metric: ...
    source: ...
    groups: {group FQN: {option key: score}}
    kv: {format: score}            # decoders with a KV cache
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from planner.backends.quantize import fake_quantize, rows_independent
from planner.deadline import Deadline
from planner.fileio import atomic_write_text
from planner.execution.apply import (
    PlanApplyError,
    _resolve,
    _set_submodule,
    apply_plan,
    packed_replacement,
    plan_targets,
)
from planner.execution.models import TorchModel, load_torch_model
from planner.execution.replay import ForwardTrace
from planner.execution.storage import pack_weight
from planner.execution.validate import _degradation, _fidelity, _run
from planner.formats import get_format, parse_sparsity
from planner.options import option_key
from planner.workload import build_workload

__all__ = ["METHODS", "SensitivityTable", "default_threads", "measure_sensitivity", "write_sensitivity"]

METHODS = ("kl", "fisher")
_BUCKET_MAX = 32  # texts per encoder batch at most
_CONTRASTIVE_TAU = 0.05
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SensitivityTable:
    """Measured scores: ``scores[group][option key]`` and ``kv[format]`` (decoders)."""

    model: str
    method: str
    metric: str
    samples: int
    scores: dict[str, dict[str, float]]
    kv: dict[str, float] = field(default_factory=dict)
    # Options with low-precision activations were measured: the engine whose recipe quantized them
    # (None: per token, as they come) and that recipe (planner.format_noise.ActivationRecipe).
    activations: tuple[str, ...] = ()
    engine: str | None = None  # as given: a catalog id or a profile file's path
    recipe: Any = None  # what the int8-activation scores went through (the part of the engine's recipe applied)
    notes: tuple[str, ...] = ()

    def to_file_dict(self) -> dict[str, Any]:
        """The dict :func:`planner.sensitivity.load_sensitivity_file` reads."""
        acts = f" --activations {','.join(self.activations)}" if self.activations else ""
        eng = f" --engine {self.engine}" if self.activations and self.engine else ""
        d: dict[str, Any] = {
            "version": 1,
            "metric": self.metric,
            "source": f"tierwise sensitivity --torch-model {self.model} --method {self.method}{acts}{eng} "
                      f"({self.samples} calibration samples)",
            "groups": {g: {k: float(f"{v:.6g}") for k, v in table.items()} for g, table in self.scores.items()},
        }
        if self.kv:
            d["kv"] = {k: float(f"{v:.6g}") for k, v in self.kv.items()}
        if self.activations:
            from planner.format_noise import ActivationRecipe

            d["activation_recipe"] = (self.recipe or ActivationRecipe()).to_dict()
        return d


def default_threads() -> int:
    """CPU threads for the measurement: the cores this process may use less the 1-minute load
    average (rounded), at least 1. The forward passes are many small GEMMs and elementwise ops;
    on a core another process is using, a second thread mostly waits at each op's barrier
    (measured on a shared 2-core machine: an elementwise op 10-20x and a GEMM 1.8x slower with
    2 threads than with 1), while an idle core speeds them up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # pragma: no cover - no load average
        busy = 0
    return max(1, cores - busy)


def _metric_name(method: str, kind: str) -> str:
    if method == "fisher":
        return "diagonal Fisher: 0.5 * sum F * (W - Q(W))^2 (nats, second-order KL)"
    return {"cosine": "1 - mean cosine similarity of sentence embeddings (one group compressed at a time)",
            "kl": "mean KL(original || compressed) of output distributions, nats (one group compressed at a time)"}[
        "cosine" if kind == "encoder" else "kl"]


def _options(formats: Sequence[str], sparsity: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for f in dict.fromkeys(formats):
        spec = get_format(f)
        if not spec.is_weight:
            raise ValueError(f"--formats: {spec.name!r} is not a weight format")
        for s in sparsity:
            out.append((spec.name, parse_sparsity(s).name))
    out = list(dict.fromkeys(out))  # int8 and INT8, or a name given twice: measured once
    if not out:
        raise ValueError("--formats needs at least one weight format")
    return out


def _activation_options(options: list[tuple[str, str]], activations: Sequence[str]) -> list[tuple[str, str, str]]:
    """Each (weights, sparsity) option with each low-precision compute format of ``activations``."""
    if isinstance(activations, str):
        raise ValueError(f"activations must be a list of compute formats such as ['int8']; got the string {activations!r}")
    out = []
    for a in dict.fromkeys(get_format(a).name for a in activations):
        spec = get_format(a)
        if not spec.is_activation:
            raise ValueError(f"--activations: {spec.name!r} is not an activation (compute) format")
        if spec.name in ("fp32", "bf16", "fp16"):
            raise ValueError(f"--activations: {spec.name} is the reference compute format, which every weight-only "
                             "score already uses; give low-precision formats such as int8 or fp8-e4m3")
        out += [(w, sp, spec.name) for w, sp in options]
    return out


def _engine_recipe(engine: str | None):
    """(engine id, its recipe for integer activations) of ``engine`` (an id or profile path); (None, None)."""
    if engine is None:
        return None, None
    from planner.engines import load_engine
    from planner.format_noise import recipe_of

    spec = load_engine(engine)
    if spec.kind == "training":
        raise ValueError(f"--engine: {spec.id} is a training engine; give the serving engine whose int8 recipe the scores "
                         "should follow (vllm, sglang, llamacpp, trtllm, ...)")
    return spec.id, recipe_of(spec.runtime)


def _applied_recipe(recipe: Any, engine: str | None, smooth: dict, options: list[tuple[str, str, str]]):
    """(the part of the engine's recipe the measured scores went through, notes on the rest): SmoothQuant only when
    some group was smoothed, blocks only for the measured weight formats with integer activations."""
    from planner.engines import activation_blocks_text
    from planner.format_noise import ActivationRecipe, smoothable

    if recipe is None:
        return None, ()
    ints = [(w, a) for w, _sp, a in options if smoothable(a)]
    notes = []
    smoothing = recipe.smoothing if smooth and ints else None
    if recipe.smoothing is not None and ints and not smooth:
        notes.append(f"{engine}'s recipe runs SmoothQuant, but no group of this model alone reads a norm's output it "
                     "could fold into (planner/smoothing_map.py): its int8 activations were measured per token")
    measured_w = {w for w, _ in ints}
    blocks = tuple((f, b) for f, b in recipe.blocks if f in measured_w)
    unblocked = sorted(measured_w - {f for f, _ in recipe.blocks})
    if recipe.blocks and unblocked:
        notes.append(f"{engine} quantizes int8 activations in blocks with {', '.join(f for f, _ in recipe.blocks)} "
                     f"weights only ({activation_blocks_text(recipe.blocks)}); with {', '.join(unblocked)} weights they "
                     "were measured per token")
    return ActivationRecipe(smoothing=smoothing, blocks=blocks), tuple(notes)


def _smoothing_scales(tm: TorchModel, groups: list[str], engine: str | None, recipe: Any, samples: int,
                      seed: int) -> dict[str, torch.Tensor]:
    """Member → SmoothQuant scale vector, for every member of ``groups`` that the engine's recipe smooths
    when its group computes with integer activations (:func:`planner.execution.apply.smoothed_targets`):
    one vector per group from the input maxima of a calibration run on inputs drawn apart from the
    measured ones (``seed + 1``, as ``validate`` does) and the group's weights."""
    from planner.execution.apply import _group_scales, _input_absmax, smoothed_targets

    if recipe is None or recipe.smoothing is None:
        return {}
    plan = {"engine": engine, "activation_recipe": recipe,
            "choices": {g: {"weights": "int8", "activations": "int8"} for g in groups}}
    targets = smoothed_targets(tm.module, plan, tm.arch)
    if not targets:
        return {}
    calib = tm.make_inputs(samples, seed + 1)
    absmax = _input_absmax(tm.module, list(targets), lambda m: _run(tm, m, calib))
    return _group_scales(tm.module, targets, absmax, recipe.smoothing)


def _full_pass_scores(tm: TorchModel, groups: list[str], options: list[tuple[str, str, str]], inputs: tuple,
                      labels: Any, progress: ProgressFn | None, deadline: Deadline,
                      smooth: dict[str, torch.Tensor] | None = None, recipe: Any = None) -> dict[str, dict[str, float]]:
    """Scores by one full forward pass of the model with the group's packed layers per (group, option
    ``(weights, sparsity, activations)``), integer activations quantized by the engine's ``recipe``
    (:func:`_swapped`): the definition :func:`_output_scores` computes faster for weight-only options, and
    how options with low-precision activations are measured."""
    metric = "cosine" if tm.kind == "encoder" else "kl"
    batches = _batches(tm, inputs)
    reference = _run_batches(tm, tm.module, batches)
    scores: dict[str, dict[str, float]] = {}
    total = len(groups) * len(options)
    done = 0
    for group in groups:
        row: dict[str, float] = {}
        for w, sp, a in options:
            deadline.check("the sensitivity measurement", "before it finished; no file was written")
            key = option_key(w, sp, a)
            done += 1
            try:
                with _swapped(tm, {group: {"weights": w, "sparsity": sp, "activations": a}}, smooth,
                              recipe) as compressed:
                    out = _run_batches(tm, compressed, batches)
            except PlanApplyError:
                continue  # e.g. 2:4 on a layer whose width is not a multiple of 4: no entry
            row[key] = max(0.0, _degradation(metric, _fidelity(tm.kind, reference, out, labels)))
            if progress is not None:
                progress(f"{group} {key}", done, total)
        scores[group] = row
    return scores


def _groups(tm: TorchModel) -> list[str]:
    """Decision groups of the model that have a module to compress."""
    out = []
    for group, _params, members in build_workload(tm.arch).groups():
        if all(m.tied_to is not None for m in members):
            continue
        try:
            plan_targets(tm.module, {group: {"weights": "fp32"}}, tm.arch)
        except PlanApplyError:
            continue
        out.append(group)
    return out


def _batches(tm: TorchModel, inputs: tuple) -> list[tuple[torch.Tensor | None, tuple]]:
    """(rows, inputs) of the calibration batch as it is run: sentence encoders run texts of
    similar length together with the padding trimmed (padding positions are masked out of
    attention and pooling, so they cannot change an embedding, only cost time); other models
    run the batch as one (rows None)."""
    if tm.kind != "encoder" or len(inputs) != 2:
        return [(None, inputs)]
    ids, mask = inputs
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True).tolist()
    buckets: list[list[int]] = []
    for i in order:
        bucket = buckets[-1] if buckets else None
        # Sorted by length, so i is the longest: keep the padding within 10% of the real tokens.
        if bucket and len(bucket) < _BUCKET_MAX and \
                (len(bucket) + 1) * int(lengths[i]) <= 1.1 * (sum(int(lengths[j]) for j in bucket) + int(lengths[i])):
            bucket.append(i)
        else:
            buckets.append([i])
    out = []
    for bucket in buckets:
        rows = torch.tensor(sorted(bucket))
        width = max(1, int(lengths[rows].max()))
        out.append((rows, (ids[rows, :width], mask[rows, :width])))
    return out


def _assemble(batches: list[tuple[torch.Tensor | None, tuple]], outs: list[torch.Tensor]) -> torch.Tensor:
    """The per-batch outputs in the calibration batch's row order."""
    if len(outs) == 1 and batches[0][0] is None:
        return outs[0]
    n = sum(int(rows.numel()) for rows, _ in batches)  # type: ignore[union-attr]
    full = outs[0].new_empty((n, *outs[0].shape[1:]))
    for (rows, _), out in zip(batches, outs):
        full[rows] = out
    return full


def _run_batches(tm: TorchModel, module: nn.Module, batches: list[tuple[torch.Tensor | None, tuple]]) -> torch.Tensor:
    return _assemble(batches, [_run(tm, module, b).out for _, b in batches])


def _output_scores(tm: TorchModel, groups: list[str], options: list[tuple[str, str]], inputs: tuple,
                   labels: Any, progress: ProgressFn | None, deadline: Deadline) -> dict[str, dict[str, float]]:
    """Scores by forward passes that recompute only what each group can change.

    The reference forward pass of every batch (:func:`_batches`) is recorded once
    (:class:`ForwardTrace`; decoders, whose forward pass carries a KV cache across calls, run
    whole). Per group, the modules that finished before the group's first member started
    return their recorded outputs; per option, the members compute with the option's weights
    (quantised once per group × format by the kernels the packed layers use) and the model
    runs from the group on. A group the forward pass never calls (BERT's pooler under mean
    pooling) leaves the output as it is. ``tests/test_sensitivity_fast.py`` checks the scores
    equal those of :func:`_output_scores_reference`.
    """
    metric = "cosine" if tm.kind == "encoder" else "kl"
    batches = _batches(tm, inputs)
    traces = [ForwardTrace(tm.module, b) for _, b in batches] if tm.kind != "decoder" else []
    reference = _assemble(batches, [t.out for t in traces]) if traces else _run(tm, tm.module, inputs).out
    shared = _shared_weights(tm.module)
    scores: dict[str, dict[str, float]] = {}
    total = len(groups) * len(options)
    done = 0
    for group in groups:
        members = {fqn: _resolve(tm.module, fqn) for fqn in plan_targets(tm.module, {group: {"weights": "fp32"}},
                                                                          tm.arch)}
        row: dict[str, float] = {}
        for w, s in options:
            deadline.check("the sensitivity measurement", "before it finished; no file was written")
            key = option_key(w, s, "fp32")
            choice = {group: {"weights": w, "sparsity": s, "activations": "fp32"}}
            done += 1
            try:
                with _perturbed(tm, traces, members, shared, choice) as model:
                    if not traces:
                        out = _run(tm, model, inputs).out
                    elif model is tm.module:
                        out = _assemble(batches, [_rerun(t, members.values()) for t in traces])
                    else:
                        out = _run_batches(tm, model, batches)
            except PlanApplyError:
                continue  # e.g. 2:4 on a layer whose width is not a multiple of 4: no entry
            row[key] = max(0.0, _degradation(metric, _fidelity(tm.kind, reference, out, labels)))
            if progress is not None:
                progress(f"{group} {key}", done, total)
        scores[group] = row
    return scores


def _rerun(trace: ForwardTrace, changed: Any) -> torch.Tensor:
    """The traced forward pass again with ``changed`` modules altered: the unchanged prefix
    replayed, the recorded output when none of them takes part."""
    changed = list(changed)
    if not trace.reaches(changed):
        return trace.out
    with trace.replaying(changed):
        return trace.run()


def _output_scores_reference(tm: TorchModel, groups: list[str], options: list[tuple[str, str]], inputs: tuple,
                             labels: Any, progress: ProgressFn | None,
                             deadline: Deadline) -> dict[str, dict[str, float]]:
    """Scores by one full forward pass of the compressed model per (group, option), with the
    packed layers :func:`apply_plan` builds: the definition :func:`_output_scores` computes faster."""
    return _full_pass_scores(tm, groups, [(w, sp, "fp32") for w, sp in options], inputs, labels, progress, deadline)


def _shared_weights(model: nn.Module) -> set[int]:
    """ids of parameters that more than one module holds (tied weights)."""
    seen: dict[int, int] = {}
    for _name, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    return {k for k, n in seen.items() if n > 1}


def _swappable(module: nn.Module | None, shared: set[int]) -> bool:
    """A plain layer whose forward pass with a dense weight ``W'`` is what the packed layer
    computes with ``W'`` (fp32 activations): the same ``F.linear`` / ``F.embedding`` / ``F.conv2d``."""
    if type(module) is nn.Linear:
        ok = True
    elif type(module) is nn.Embedding:
        ok = module.max_norm is None  # type: ignore[union-attr]
    elif type(module) is nn.Conv2d:
        ok = module.padding_mode == "zeros"  # type: ignore[union-attr]
    else:
        return False
    return ok and id(module.weight) not in shared  # type: ignore[union-attr]


def _dense_weight(traces: list[ForwardTrace], fqn: str, module: nn.Module, fmt: str) -> torch.Tensor:
    """The weight ``module`` computes with under ``fmt`` (dense): ``fake_quantize`` — the values
    of the packed layer's ``dequantize()``. An embedding table whose format quantises rows
    independently gets only the rows the forward pass reads quantised (the others are never
    read, so the output is the one of the fully quantised table)."""
    w = module.weight.detach()
    w2 = w.reshape(w.shape[0], -1)
    try:
        # Ids of an embedding called once were computed before it ran: its weights cannot change them.
        seen = [t.embedding_ids.get(t.name_of(module)) if t.calls.get(t.name_of(module)) == 1 else None
                for t in traces]
        if isinstance(module, nn.Embedding) and seen and all(i is not None for i in seen) and rows_independent(fmt):
            rows = torch.unique(torch.cat([i.reshape(-1) for i in seen]))  # type: ignore[union-attr]
            dense = w2.clone()
            dense[rows] = fake_quantize(w2[rows], fmt)
        else:
            dense = fake_quantize(w2, fmt)
    except ValueError as exc:
        raise PlanApplyError(f"layer {fqn!r}: {exc}", field=fqn) from None
    return dense.reshape(w.shape)


@contextlib.contextmanager
def _perturbed(tm: TorchModel, traces: list[ForwardTrace], members: dict[str, nn.Module], shared: set[int],
               choice: dict):
    """The model with one group's option applied: dense options on plain layers swap in the
    quantised weight tensors; anything else (sparsity, tied weights, other layers) swaps in the
    packed layers themselves (:func:`_swapped`)."""
    (opt,) = choice.values()
    if opt["sparsity"] != "dense" or not all(_swappable(m, shared) for m in members.values()):
        with _swapped(tm, choice) as model:
            yield model
        return
    weights = {fqn: _dense_weight(traces, fqn, m, opt["weights"]) for fqn, m in members.items()}
    saved = [(m, m.weight) for m in members.values()]
    try:
        for fqn, m in members.items():
            m.weight = nn.Parameter(weights[fqn], requires_grad=False)
        yield tm.module
    finally:
        for m, original in saved:
            m.weight = original


@contextlib.contextmanager
def _swapped(tm: TorchModel, choice: dict, smooth: dict[str, torch.Tensor] | None = None, recipe: Any = None):
    """The model with one group compressed as :func:`apply_plan` would (the same packed
    modules, :func:`planner.execution.apply.packed_replacement`), swapped into ``tm.module`` in place
    and swapped back afterwards: no copy of the whole model per (group, option). With an engine's
    ``recipe``, integer activations of a member with SmoothQuant scales in ``smooth`` are divided by
    them (its weight packed as ``W·diag(s)``), and quantized in the recipe's blocks where it has them.
    An embedding table an output head is tied to goes through :func:`apply_plan` itself (the head
    follows the packed table; a lookup has no activations to quantize)."""
    from planner.format_noise import smoothable

    smooth = smooth or {}
    blocks = dict(recipe.blocks) if recipe is not None else {}
    targets = plan_targets(tm.module, choice, tm.arch)
    head, body = getattr(tm.module, "lm_head", None), getattr(tm.module, "model", None)
    emb = getattr(body, "embed_tokens", None) if body is not None else None
    if (isinstance(head, nn.Linear) and isinstance(emb, nn.Embedding) and head.weight is emb.weight
            and any(_resolve(tm.module, f) is emb for f in targets)):
        yield apply_plan(tm.module, choice, arch=tm.arch)
        return
    swapped: list[tuple[str, nn.Module]] = []
    try:
        for fqn, (_group, opt) in targets.items():
            original = _resolve(tm.module, fqn)
            s = smooth.get(fqn) if smoothable(opt.activations) else None
            replacement = packed_replacement(original, opt, fqn, s, blocks)  # type: ignore[arg-type]
            if hasattr(replacement, "dense_cache"):
                replacement.dense_cache = {}  # unpacked once for the option's forward passes, not once per call
            if replacement is not original:
                _set_submodule(tm.module, fqn, replacement.eval())
                swapped.append((fqn, original))
        yield tm.module
    finally:
        for fqn, original in reversed(swapped):
            _set_submodule(tm.module, fqn, original)


def _log_likelihood(tm: TorchModel, module: nn.Module, inputs: tuple, gen: torch.Generator) -> list[torch.Tensor]:
    """Per-sample log-likelihood terms whose gradients estimate the Fisher."""
    if tm.kind == "encoder":
        e = module(*inputs)
        logits = e @ e.T / _CONTRASTIVE_TAU
        logp = F.log_softmax(logits, dim=-1)
        return [logp[i, i] for i in range(e.shape[0])]
    if tm.kind == "decoder":
        out = module(inputs[0])
    else:
        out = module(*inputs)
    logp = F.log_softmax(out.reshape(out.shape[0], -1, out.shape[-1]), dim=-1)
    with torch.no_grad():
        y = torch.multinomial(logp.exp().reshape(-1, logp.shape[-1]), 1, generator=gen).reshape(logp.shape[:-1])
    picked = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return [picked[i].sum() for i in range(picked.shape[0])]


def _fisher_scores(tm: TorchModel, groups: list[str], options: list[tuple[str, str]], inputs: tuple,
                   seed: int, progress: ProgressFn | None, deadline: Deadline) -> dict[str, dict[str, float]]:
    import copy

    model = copy.deepcopy(tm.module)
    targets: dict[str, list[str]] = {}
    named = dict(model.named_modules())
    for group in groups:
        members = plan_targets(tm.module, {group: {"weights": "fp32"}}, tm.arch)
        targets[group] = [m if m in named else m[len("model."):] for m in members]
    params = {m: named[m].weight for ms in targets.values() for m in ms}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    fisher = {m: torch.zeros_like(p) for m, p in params.items()}
    gen = torch.Generator().manual_seed(seed)
    terms = _log_likelihood(tm, model, inputs, gen)
    n = len(terms)
    for i, term in enumerate(terms):
        deadline.check("the sensitivity measurement", "before it finished; no file was written")
        grads = torch.autograd.grad(term, list(params.values()), retain_graph=i < n - 1, allow_unused=True)
        for (m, _p), g in zip(params.items(), grads):
            if g is not None:
                fisher[m] += g.detach() ** 2 / n
        if progress is not None:
            progress(f"Fisher: sample {i + 1}/{n}", i + 1, n + len(groups) * len(options))
    scores: dict[str, dict[str, float]] = {}
    done = n
    for group in groups:
        row: dict[str, float] = {}
        for w, s in options:
            deadline.check("the sensitivity measurement", "before it finished; no file was written")
            key = option_key(w, s, "fp32")
            total = 0.0
            ok = True
            for m in targets[group]:
                weight = params[m].detach()
                w2 = weight.reshape(weight.shape[0], -1)
                try:
                    # Dense: the same values as the packed weight's dequantize(), without packing.
                    dq = (fake_quantize(w2, w) if s == "dense" else pack_weight(w2, w, s).dequantize())
                    dq = dq.reshape(weight.shape)
                except ValueError:
                    ok = False
                    break
                total += 0.5 * float((fisher[m] * (weight - dq) ** 2).sum())
            if ok:
                row[key] = total
            done += 1
            if progress is not None:
                progress(f"{group} {key}", done, n + len(groups) * len(options))
        scores[group] = row
    return scores


def _kv_scores(tm: TorchModel, kv_formats: Sequence[str], inputs: tuple, labels: Any,
               deadline: Deadline) -> dict[str, float]:
    if tm.kind != "decoder" or not kv_formats:
        return {}
    reference = _run(tm, tm.module, inputs).out
    out = {}
    first = build_workload(tm.arch).groups()[0][0]
    for fmt in kv_formats:
        deadline.check("the sensitivity measurement", "before it finished; no file was written")
        spec = get_format(fmt)
        if not spec.is_kv:
            raise ValueError(f"--kv-formats: {spec.name!r} is not a KV-cache format")
        compressed = apply_plan(tm.module, {"choices": {first: {"weights": "fp32"}}, "kv": spec.name}, arch=tm.arch)
        got = _run(tm, compressed, inputs).out
        out[spec.name] = max(0.0, _degradation("kl", _fidelity(tm.kind, reference, got, labels)))
    return out


def measure_sensitivity(torch_model: TorchModel | str, formats: Sequence[str], sparsity: Sequence[str] = ("dense",),
                        *, method: str = "kl", samples: int = 8, seed: int = 0, kv_formats: Sequence[str] = (),
                        groups: Sequence[str] | None = None, progress: ProgressFn | None = None,
                        deadline: Deadline | None = None, fast: bool = True, activations: Sequence[str] = (),
                        engine: str | None = None) -> SensitivityTable:
    """Measure a sensitivity table for every decision group × (format, sparsity).

    ``activations`` (``kl`` only): low-precision compute formats (``int8``, ``fp8-e4m3``) also measured
    with every (format, sparsity), keys ``int8/int8``; integer activations quantized by ``engine``'s
    recipe (an id or profile path: SmoothQuant for vLLM and SGLang, scale blocks for llama.cpp; none:
    per token), whose scales are calibrated on inputs drawn apart from the measured ones.

    ``deadline`` is checked before every (group, option) (:class:`~planner.deadline.Cancelled` /
    :class:`~planner.deadline.DeadlineExceeded`). ``fast=False`` measures ``kl`` with one full
    forward pass of the packed model per (group, option) — the reference the default path is
    tested against; it gives the same scores, slower.
    """
    if method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"--samples must be an int >= 2; got {samples!r}")
    if activations and method != "kl":
        raise ValueError("--activations is measured by --method kl only (the diagonal Fisher scores weight "
                         "perturbations)")
    if engine is not None and not activations:
        raise ValueError("--engine chooses how the integer activations of --activations are quantized; give "
                         "--activations too")
    tm = load_torch_model(torch_model) if isinstance(torch_model, str) else torch_model
    options = _options(formats, sparsity)
    act_options = _activation_options(options, activations)
    engine_id, recipe = _engine_recipe(engine) if act_options else (None, None)
    all_groups = _groups(tm)
    if groups is not None:
        unknown = [g for g in groups if g not in all_groups]
        if unknown:
            raise ValueError(f"groups {unknown[:3]} are not decision groups of {tm.arch.id}; known: "
                             f"{', '.join(all_groups[:4])} …")
        all_groups = list(groups)
    inputs = tm.make_inputs(samples, seed)
    labels = tm.labels(samples, seed) if tm.labels is not None else None
    deadline = deadline if deadline is not None else Deadline.unbounded()
    if method == "kl":
        measure = _output_scores if fast else _output_scores_reference
        scores = measure(tm, all_groups, options, inputs, labels, progress, deadline)
    else:
        scores = _fisher_scores(tm, all_groups, options, inputs, seed, progress, deadline)
    applied, notes = recipe, ()
    if act_options:
        smooth = _smoothing_scales(tm, all_groups, engine_id, recipe, samples, seed)
        measured = _full_pass_scores(tm, all_groups, act_options, inputs, labels, progress, deadline, smooth, recipe)
        for g, row in measured.items():
            scores.setdefault(g, {}).update(row)
        applied, notes = _applied_recipe(recipe, engine_id, smooth, act_options)
    kv = _kv_scores(tm, kv_formats, inputs, labels, deadline)
    return SensitivityTable(model=tm.name, method=method, metric=_metric_name(method, tm.kind),
                            samples=int(inputs[0].shape[0]), scores=scores, kv=kv,
                            activations=tuple(dict.fromkeys(a for *_, a in act_options)), engine=engine,
                            recipe=applied, notes=notes)


def write_sensitivity(table: SensitivityTable, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` as YAML (or JSON by suffix) atomically."""
    import json

    import yaml

    p = Path(path)
    data = table.to_file_dict()
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    elif p.suffix.lower() in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False, width=120)
    else:
        raise ValueError(f"--out must end in .yaml, .yml or .json; got {p.name!r}")
    return atomic_write_text(p, text)


