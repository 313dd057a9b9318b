"""Validate a plan on a real torch model: fidelity, bytes and latency beside the predictions.

:func:`validate` applies the plan (:func:`planner.execution.apply.apply_plan`), runs the
original and the compressed model on the same inputs and reports

* per layer: weight SQNR (dense weight the layer computes with vs the original), output SQNR
  at that layer (errors of earlier layers included), stored vs predicted bytes;
* end to end: output SQNR, cosine similarity, and by model kind — sentence encoders:
  nearest-neighbour agreement of the embeddings; classifiers: accuracy and logit KL;
  decoders: logit KL and top-1 agreement over a prefill and decode steps that read the
  (possibly quantised) KV cache;
* bytes: the packed weights of the layers the plan covers against the format registry's
  prediction for the same matrices (like with like), and the plan's whole-model figure;
* latency (optional): best-of-N wall time of the original and compressed forward passes
  against :func:`planner.costmodel.estimate_inference` on a (calibrated) device profile, priced
  for the engine that ran them (``torch``, profiles/engines/torch.yaml) whatever engine the plan
  was made for; a plan made for another engine also gets that engine's prediction of the same
  configuration, shown beside the measurement but not compared with it.

Degradation metrics, larger is worse: ``cosine`` = 1 − mean cosine similarity of outputs,
``accuracy`` = accuracy drop (fraction, classifiers), ``kl`` = mean KL(original ‖ compressed)
of the output distributions (nats), ``top1`` = 1 − top-1 agreement.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from planner.backends import sqnr_db
from planner.execution.apply import _plan_recipe, apply_plan, compressed_modules, plan_targets
from planner.execution.calibrate import measure_seconds
from planner.execution.models import TorchModel, load_torch_model

__all__ = [
    "METRICS",
    "EXECUTION_ENGINE",
    "LatencyReport",
    "LayerReport",
    "ValidationReport",
    "default_metric",
    "engine_runtime",
    "make_evaluator",
    "validate",
]

METRICS = ("cosine", "accuracy", "kl", "top1")
#: The engine whose profile describes what validate runs: Tierwise's eager PyTorch execution
#: (profiles/engines/torch.yaml). Latency predictions compared with the measurement are priced for it.
EXECUTION_ENGINE = "torch"
_DECODE_STEPS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerReport:
    """One compressed layer: ``option`` is ``weights[+sparsity][/activations][@rank]``."""

    name: str
    group: str
    option: str
    weight_sqnr_db: float
    output_sqnr_db: float | None
    measured_bytes: int
    predicted_bytes: int
    dense_fp32_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "option": self.option,
                "weight_sqnr_db": _finite(self.weight_sqnr_db), "output_sqnr_db": _finite(self.output_sqnr_db),
                "measured_bytes": self.measured_bytes, "predicted_bytes": self.predicted_bytes,
                "dense_fp32_bytes": self.dense_fp32_bytes}


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyReport:
    """Best-of-N wall times and the cost model's predictions (None without a device profile).
    ``phase`` is ``forward`` (encoders, CNNs), ``prefill`` or ``decode`` (one step).

    ``predicted_*`` are priced for ``engine``, the engine that ran (``torch``). When the plan
    was made for another engine, ``plan_engine_predicted_compressed_s`` is that engine's
    prediction of the same configuration on the same profile: what the plan expects where it
    was meant to run, not a prediction of this measurement."""

    phase: str
    batch: int
    tokens: int
    measured_original_s: float
    measured_compressed_s: float
    predicted_original_s: float | None
    predicted_compressed_s: float | None
    engine: str = EXECUTION_ENGINE
    plan_engine: str | None = None
    plan_engine_predicted_compressed_s: float | None = None

    @property
    def error_original(self) -> float | None:
        """(predicted − measured) / measured for the uncompressed model."""
        if self.predicted_original_s is None:
            return None
        return (self.predicted_original_s - self.measured_original_s) / self.measured_original_s

    @property
    def error_compressed(self) -> float | None:
        if self.predicted_compressed_s is None:
            return None
        return (self.predicted_compressed_s - self.measured_compressed_s) / self.measured_compressed_s

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "batch": self.batch, "tokens": self.tokens,
                "measured_original_s": self.measured_original_s,
                "measured_compressed_s": self.measured_compressed_s,
                "predicted_original_s": self.predicted_original_s,
                "predicted_compressed_s": self.predicted_compressed_s,
                "error_original": self.error_original, "error_compressed": self.error_compressed,
                "engine": self.engine, "plan_engine": self.plan_engine,
                "plan_engine_predicted_compressed_s": self.plan_engine_predicted_compressed_s}


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    torch_model: str
    model_kind: str
    plan_model: str | None
    plan_engine: str | None = None
    samples: int
    metric: str
    degradation: float
    output_sqnr_db: float
    cosine_mean: float
    cosine_min: float
    kl_mean: float | None
    top1_agreement: float | None
    nn_agreement: float | None
    accuracy_original: float | None
    accuracy_compressed: float | None
    measured_weight_bytes: int
    predicted_weight_bytes: int
    dense_fp32_weight_bytes: int
    plan_predicted_weights_bytes: float | None
    measured_model_bytes: int
    kv_cache_bytes: int | None
    layers: tuple[LayerReport, ...]
    latency: tuple[LatencyReport, ...]
    apply_s: float
    total_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def bytes_error(self) -> float:
        """(measured − predicted) / predicted over the covered layers."""
        return (self.measured_weight_bytes - self.predicted_weight_bytes) / self.predicted_weight_bytes \
            if self.predicted_weight_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "torch_model": self.torch_model, "model_kind": self.model_kind, "plan_model": self.plan_model,
            "plan_engine": self.plan_engine, "engine": EXECUTION_ENGINE,
            "samples": self.samples, "metric": self.metric, "degradation": self.degradation,
            "output_sqnr_db": _finite(self.output_sqnr_db), "cosine_mean": self.cosine_mean,
            "cosine_min": self.cosine_min, "kl_mean": self.kl_mean, "top1_agreement": self.top1_agreement,
            "nn_agreement": self.nn_agreement, "accuracy_original": self.accuracy_original,
            "accuracy_compressed": self.accuracy_compressed,
            "measured_weight_bytes": self.measured_weight_bytes,
            "predicted_weight_bytes": self.predicted_weight_bytes, "bytes_error": self.bytes_error,
            "dense_fp32_weight_bytes": self.dense_fp32_weight_bytes,
            "plan_predicted_weights_bytes": self.plan_predicted_weights_bytes,
            "measured_model_bytes": self.measured_model_bytes, "kv_cache_bytes": self.kv_cache_bytes,
            "layers": [layer.to_dict() for layer in self.layers],
            "latency": [lat.to_dict() for lat in self.latency],
            "apply_s": self.apply_s, "total_s": self.total_s, "notes": list(self.notes),
        }


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def default_metric(kind: str) -> str:
    """``cosine`` for sentence encoders, ``accuracy`` for classifiers, ``kl`` for decoders."""
    return {"encoder": "cosine", "cnn": "accuracy", "decoder": "kl"}.get(kind, "cosine")


def _module_bytes(model: nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


# -- running models ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Outputs:
    out: torch.Tensor  # encoder: embeddings [n, h]; cnn: logits [n, c]; decoder: logits [n, steps, vocab]
    layer_outputs: dict[str, torch.Tensor]
    kv_bytes: int | None


def _run(tm: TorchModel, module: nn.Module, inputs: tuple[torch.Tensor, ...],
         capture: list[str] | None = None) -> _Outputs:
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    if capture:
        named = dict(module.named_modules())
        for name in capture:
            target = named.get(name) or named.get(name[len("model."):] if name.startswith("model.") else name)
            if target is None:
                continue

            def hook(_m: nn.Module, _i: Any, out: torch.Tensor, key: str = name) -> None:
                prev = captured.get(key)
                captured[key] = out.detach() if prev is None else torch.cat([prev, out.detach()], dim=-2)

            hooks.append(target.register_forward_hook(hook))
    try:
        with torch.no_grad():
            kv = None
            if tm.kind == "decoder":
                ids = inputs[0]
                steps = min(_DECODE_STEPS, ids.shape[1] - 1)
                cache = module.new_cache()  # type: ignore[operator]
                logits = [module(ids[:, : ids.shape[1] - steps], cache, last_only=True)]
                for s in range(steps, 0, -1):
                    pos = ids.shape[1] - s
                    logits.append(module(ids[:, pos: pos + 1], cache))
                out = torch.cat(logits, dim=1)
                kv = cache.nbytes()
            else:
                out = module(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return _Outputs(out=out, layer_outputs=captured, kv_bytes=kv)


def _calibration(tm: TorchModel, samples: int, seed: int) -> Callable[[nn.Module], Any]:
    """Runs a model on calibration inputs drawn apart from the evaluation inputs (the next seed),
    for recipes that measure activations first (SmoothQuant's scales, :func:`apply_plan`)."""
    def calibrate(module: nn.Module) -> None:
        _run(tm, module, tm.make_inputs(samples, seed + 1))
    return calibrate


def _fidelity(kind: str, ref: torch.Tensor, out: torch.Tensor, labels: torch.Tensor | None) -> dict[str, Any]:
    r = ref.reshape(-1, ref.shape[-1]).to(torch.float64)
    o = out.reshape(-1, out.shape[-1]).to(torch.float64)
    cos = F.cosine_similarity(r, o, dim=-1)
    res: dict[str, Any] = {"sqnr": sqnr_db(r, o), "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                           "kl": None, "top1": None, "nn": None, "acc0": None, "acc1": None}
    if kind in ("cnn", "decoder"):
        lp, lq = F.log_softmax(r, dim=-1), F.log_softmax(o, dim=-1)
        res["kl"] = float((lp.exp() * (lp - lq)).sum(-1).mean())
        res["top1"] = float((r.argmax(-1) == o.argmax(-1)).double().mean())
    if kind == "encoder" and r.shape[0] > 2:
        def nearest(e: torch.Tensor) -> torch.Tensor:
            sim = e @ e.T
            sim.fill_diagonal_(-math.inf)
            return sim.argmax(-1)

        res["nn"] = float((nearest(F.normalize(r, dim=-1)) == nearest(F.normalize(o, dim=-1))).double().mean())
    if kind == "cnn" and labels is not None:
        res["acc0"] = float((r.argmax(-1) == labels).double().mean())
        res["acc1"] = float((o.argmax(-1) == labels).double().mean())
    return res


def _degradation(metric: str, fid: dict[str, Any]) -> float:
    if metric == "cosine":
        return max(0.0, 1.0 - fid["cos_mean"])
    if metric == "accuracy":
        if fid["acc0"] is None:
            raise ValueError("metric 'accuracy' needs a model with task labels (digits-cnn); use cosine or kl")
        return fid["acc0"] - fid["acc1"]
    if metric == "kl":
        if fid["kl"] is None:
            raise ValueError("metric 'kl' needs a model whose outputs are logits (digits-cnn, decoders); "
                             "use cosine for sentence encoders")
        return fid["kl"]
    if metric == "top1":
        if fid["top1"] is None:
            raise ValueError("metric 'top1' needs logits; use cosine for sentence encoders")
        return 1.0 - fid["top1"]
    raise ValueError(f"unknown degradation metric {metric!r}; expected one of {', '.join(METRICS)}")


def _option_label(opt: Any) -> str:
    label = opt.weights
    if opt.sparsity != "dense":
        label += f"+{opt.sparsity}"
    if opt.activations != "fp32":
        label += f"/{opt.activations}"
    if opt.low_rank is not None:
        label += f"@r{opt.low_rank}"
    return label


# -- latency ----------------------------------------------------------------------------------


def engine_runtime(engine: str, arch: Any, device: Any, serving: Any) -> Any:
    """The cost model's :class:`~planner.serving.RuntimeSettings` for ``engine`` on ``device``,
    exactly as an estimate request for that engine gets them
    (:func:`planner.request.estimate.resolve_inference`: the profile's runtime block — separate
    dequantizing kernels, unfused elementwise kernels, reserved memory — on the request's
    defaults). Raises the request layer's error (naming ``engine``) when the engine does not
    run ``arch``'s family on ``device``."""
    from planner.request.estimate import EstimateRequest, resolve_inference

    req = EstimateRequest(model=arch, hardware=device, engine=engine, batch=serving.batch, prompt=serving.prompt,
                          gen=serving.gen)
    return resolve_inference(req).options


def _plan_field(plan: Any, name: str) -> Any:
    return plan.get(name) if isinstance(plan, dict) else getattr(plan, name, None)


def _latency(tm: TorchModel, compressed: nn.Module, inputs: tuple[torch.Tensor, ...], plan: Any,
             targets: dict[str, Any], device: Any, min_time_s: float) -> tuple[list[LatencyReport], list[str]]:
    from hwmodels.errors import TierwiseError

    from planner.costmodel import Choice, EstimateError, Serving, estimate_inference

    notes: list[str] = []
    # The torch models run in fp32: operators outside the plan's groups compute in fp32.
    kv = _plan_field(plan, "kv") or "fp32"
    base = Choice(weights="fp32", activations="fp32", kv="fp32", sparsity="dense")
    plan_choice = Choice(weights="fp32", activations="fp32", kv=kv, sparsity="dense")
    overrides = {group: Choice(weights=opt.weights, activations=opt.activations, kv=kv, sparsity=opt.sparsity)
                 for group, opt in targets.values()}
    plan_engine = _plan_field(plan, "engine")
    other = plan_engine if isinstance(plan_engine, str) and plan_engine != EXECUTION_ENGINE else None
    failed: set[str] = set()  # one note per engine that cannot be priced

    def predict(engine: str, serving: Serving, choice: Choice, ov: Any) -> Any:
        if device is None or engine in failed:
            return None
        try:
            options = engine_runtime(engine, tm.arch, device, serving)
            return estimate_inference(tm.arch, device, serving=serving, choice=choice, overrides=ov, options=options)
        except (EstimateError, TierwiseError, ValueError) as exc:
            failed.add(engine)
            what = "no latency prediction" if engine == EXECUTION_ENGINE else \
                f"no prediction for the plan's engine {engine}"
            notes.append(f"{what}: {exc}")
            return None

    def row(phase: str, b: int, tokens: int, measured: list[float], pick: Callable[[Any], float],
            e0: Any, e1: Any, e_plan: Any) -> LatencyReport:
        return LatencyReport(phase=phase, batch=b, tokens=tokens, measured_original_s=measured[0],
                             measured_compressed_s=measured[1],
                             predicted_original_s=pick(e0) if e0 else None,
                             predicted_compressed_s=pick(e1) if e1 else None,
                             plan_engine=plan_engine,
                             plan_engine_predicted_compressed_s=pick(e_plan) if e_plan else None)

    def estimates(serving: Serving) -> tuple[Any, Any, Any]:
        return (predict(EXECUTION_ENGINE, serving, base, None), predict(EXECUTION_ENGINE, serving, plan_choice, overrides),
                predict(other, serving, plan_choice, overrides) if other else None)

    out: list[LatencyReport] = []
    with torch.no_grad():
        if tm.kind == "decoder":
            ids = inputs[0]
            b, t = ids.shape

            def prefill(m: nn.Module) -> Callable[[], Any]:
                return lambda: m(ids, m.new_cache(), last_only=True)  # type: ignore[operator]

            mp = [measure_seconds(prefill(m), min_time_s=min_time_s, warmup=1) for m in (tm.module, compressed)]
            e0, e1, ep = estimates(Serving(batch=b, prompt=t, gen=1))
            out.append(row("prefill", b, t, mp, lambda e: e.ttft_s, e0, e1, ep))
            md = []
            for m in (tm.module, compressed):
                cache = m.new_cache()  # type: ignore[operator]
                m(ids, cache, last_only=True)
                state = cache.snapshot()
                nxt = ids[:, -1:]

                def step(m: nn.Module = m, cache: Any = cache, state: Any = state) -> None:
                    cache.restore(state)
                    m(nxt, cache)

                md.append(measure_seconds(step, min_time_s=min_time_s, warmup=1))
            # A decode step after a t-token prompt: tpot with gen = 1 prices context t exactly.
            out.append(row("decode", b, 1, md, lambda e: e.tpot_s, e0, e1, ep))
        else:
            mf = [measure_seconds(lambda m=m: m(*inputs), min_time_s=min_time_s, warmup=1)
                  for m in (tm.module, compressed)]
            b = inputs[0].shape[0]
            t = inputs[0].shape[1] if tm.kind == "encoder" else 1
            e0, e1, ep = estimates(Serving(batch=b, prompt=t, gen=0))
            out.append(row("forward", b, t, mf, lambda e: e.ttft_s, e0, e1, ep))
    return out, notes


# -- entry points -----------------------------------------------------------------------------


def _as_torch_model(torch_model: TorchModel | str) -> TorchModel:
    return load_torch_model(torch_model) if isinstance(torch_model, str) else torch_model


def validate(torch_model: TorchModel | str, plan: Any, *, samples: int = 16, seed: int = 0,
             metric: str | None = None, device: Any = None, latency: bool = False,
             latency_min_time_s: float = 0.3) -> ValidationReport:
    """Apply ``plan`` to ``torch_model`` and measure it against the original (see module doc).

    ``device`` is a :class:`hwmodels.DeviceSpec` (a calibrated profile of this machine) for
    latency predictions; ``latency=True`` measures wall times.
    """
    start = time.perf_counter()
    tm = _as_torch_model(torch_model)
    metric = metric or default_metric(tm.kind)
    if metric not in METRICS:
        raise ValueError(f"unknown degradation metric {metric!r}; expected one of {', '.join(METRICS)}")
    targets = plan_targets(tm.module, plan, tm.arch)
    t0 = time.perf_counter()
    compressed = apply_plan(tm.module, plan, arch=tm.arch, calibrate=_calibration(tm, samples, seed))
    apply_s = time.perf_counter() - t0
    inputs = tm.make_inputs(samples, seed)
    labels = tm.labels(samples, seed) if tm.labels is not None else None
    names = list(targets)
    ref = _run(tm, tm.module, inputs, names)
    got = _run(tm, compressed, inputs, names)
    fid = _fidelity(tm.kind, ref.out, got.out, labels)

    originals = dict(tm.module.named_modules())
    packed = compressed_modules(compressed)
    layers: list[LayerReport] = []
    seen_stores: set[int] = set()
    meas = pred = dense = 0
    for fqn, (group, opt) in targets.items():
        key = fqn if fqn in packed else fqn[len("model."):]
        module = packed.get(key)
        orig = originals.get(key)
        if module is None or orig is None:
            continue  # a 'keep' option: the layer is unchanged
        w0 = orig.weight.detach()
        w1 = module.dense_weight().reshape(w0.shape)
        store_ids = {id(s) for s in (getattr(module, "store", None), getattr(module, "a", None)) if s is not None}
        shared = bool(store_ids & seen_stores)
        seen_stores |= store_ids
        mb = 0 if shared else module.weight_nbytes()
        pb = 0 if shared else module.predicted_weight_nbytes()
        out_sqnr = None
        if fqn in ref.layer_outputs and fqn in got.layer_outputs \
                and ref.layer_outputs[fqn].shape == got.layer_outputs[fqn].shape:
            out_sqnr = sqnr_db(ref.layer_outputs[fqn], got.layer_outputs[fqn])
        layers.append(LayerReport(name=fqn, group=group, option=_option_label(opt), weight_sqnr_db=sqnr_db(w0, w1),
                                  output_sqnr_db=out_sqnr, measured_bytes=mb, predicted_bytes=pb,
                                  dense_fp32_bytes=w0.numel() * 4))
        meas += mb
        pred += pb
        dense += w0.numel() * 4

    notes: list[str] = []
    plan_model = _plan_field(plan, "model")
    engine = _plan_field(plan, "engine")
    plan_pred = None
    predicted = getattr(plan, "predicted", None)
    if predicted is not None and getattr(predicted, "weights_bytes", None) is not None:
        plan_pred = float(predicted.weights_bytes)
    lat: list[LatencyReport] = []
    lat_notes: list[str] = []
    if latency:
        lat, lat_notes = _latency(tm, compressed, inputs, plan, targets, device, latency_min_time_s)
    if engine not in (None, EXECUTION_ENGINE):  # profiles/engines/torch.yaml is what runs here
        priced = ""
        if any(x.predicted_compressed_s is not None for x in lat):
            priced = (f"; the latency predictions compared with it are priced for engine {EXECUTION_ENGINE} too "
                      f"(profiles/engines/{EXECUTION_ENGINE}.yaml)")
            if any(x.plan_engine_predicted_compressed_s is not None for x in lat):
                priced += f", and {engine}'s own prediction of the same configuration is shown beside them, not compared"
        notes.append(f"the plan was made for engine {engine}; validate runs it on Tierwise's PyTorch execution "
                     f"(engine {EXECUTION_ENGINE}), so the measured latency is torch's, not that engine's{priced} "
                     "(plan with --engine torch to plan for what runs here)")
    recipe = _plan_recipe(plan)[1]
    if engine not in (None, EXECUTION_ENGINE) and recipe is None:
        notes.append(f"the plan's engine {engine!r} is not one this installation knows and the plan records no recipe of it, so its recipe for int8 "
                     "activations (SmoothQuant, activation blocks) could not be applied: they ran per token as they come")
    packed = compressed_modules(compressed).values()
    smoothed = [m for m in packed if getattr(m, "smooth", None) is not None]
    if smoothed:
        notes.append(f"{len(smoothed)} int8-activation layers ran {engine}'s SmoothQuant (strength {recipe.smoothing:g}), its scales "
                     f"measured on {samples} "
                     f"calibration inputs drawn apart from the evaluation ones (seed {seed + 1})")
    blocked = sorted({b for m in packed if (b := getattr(m, "activation_block", None))})
    if blocked:
        notes.append(f"int8 activations quantized with one scale per {' or '.join(map(str, blocked))} features, as "
                     f"{engine} does on CPU cores, not per token")
    notes.extend(lat_notes)
    return ValidationReport(
        torch_model=tm.name, model_kind=tm.kind, plan_model=plan_model, plan_engine=engine,
        samples=int(inputs[0].shape[0]),
        metric=metric, degradation=_degradation(metric, fid), output_sqnr_db=fid["sqnr"], cosine_mean=fid["cos_mean"],
        cosine_min=fid["cos_min"], kl_mean=fid["kl"], top1_agreement=fid["top1"], nn_agreement=fid["nn"],
        accuracy_original=fid["acc0"], accuracy_compressed=fid["acc1"], measured_weight_bytes=meas,
        predicted_weight_bytes=pred, dense_fp32_weight_bytes=dense, plan_predicted_weights_bytes=plan_pred,
        measured_model_bytes=_module_bytes(compressed), kv_cache_bytes=got.kv_bytes, layers=tuple(layers),
        latency=tuple(lat), apply_s=apply_s, total_s=time.perf_counter() - start, notes=tuple(notes))


def make_evaluator(torch_model_name: str, metric: str | None = None, *, samples: int = 16,
                   seed: int = 0) -> Callable[[Any], float]:
    """A ``Callable[[Plan], float]`` returning the measured degradation of a plan.

    The torch model, its evaluation inputs and the original model's outputs are built once;
    each call applies a plan to a fresh copy and measures ``metric`` (default by model kind:
    ``cosine`` for sentence encoders, ``accuracy`` for classifiers, ``kl`` for decoders).
    """
    tm = _as_torch_model(torch_model_name)
    metric = metric or default_metric(tm.kind)
    if metric not in METRICS:
        raise ValueError(f"unknown degradation metric {metric!r}; expected one of {', '.join(METRICS)}")
    inputs = tm.make_inputs(samples, seed)
    labels = tm.labels(samples, seed) if tm.labels is not None else None
    reference = _run(tm, tm.module, inputs).out
    _degradation(metric, _fidelity(tm.kind, reference, reference, labels))  # metric fits this model

    calibrate = _calibration(tm, samples, seed)

    def evaluate(plan: Any) -> float:
        compressed = apply_plan(tm.module, plan, arch=tm.arch, calibrate=calibrate)
        out = _run(tm, compressed, inputs).out
        return _degradation(metric, _fidelity(tm.kind, reference, out, labels))

    evaluate.metric = metric  # type: ignore[attr-defined]
    evaluate.torch_model = tm  # type: ignore[attr-defined]
    return evaluate
