"""A solved candidate as a :class:`~planner.plan.Plan`: the ILP's counts become one choice
per decision group, and the plan's predictions are the cost model's independent
re-evaluation of those choices (:func:`planner.costmodel.estimate_inference`), not the
linearisation; rows the re-evaluation finds violated are reported for the repair step."""

from __future__ import annotations

import math
from dataclasses import replace
from collections.abc import Mapping

import numpy as np

from hwmodels import DeviceSpec
from planner.costmodel import Choice, InferenceEstimate, RuntimeSettings, estimate_inference
from planner.plan import (
    GroupChoice,
    LayerPrediction,
    Plan,
    PlanConstraints,
    PlanLayout,
    PlanWorkload,
    Predicted,
    SolverStats,
    TierPrediction,
    content_hash,
    tool_version,
    utc_now,
)
from planner.search_formulation import Formulation, engine_options
from planner.search_problem import PlanProblem, objective_value
from planner.solver import Solution, SolverError
from planner.uncertainty import estimate_uncertainty

__all__ = ["AssemblyMixin", "hardware_hash"]


class AssemblyMixin:
    """The :class:`~planner.search.Planner`'s plan side: assignment of counts to groups,
    the plan's choices and placement, and the cost model's re-evaluation."""

    # -- plan assembly and independent re-evaluation ---------------------------------------

    def _assignment(self, f: Formulation, sol: Solution) -> dict[int, tuple[int, int, int]]:
        """Group index → (class index, option index, tier index): within a class the most
        important members take the least noisy options (how the ILP priced them)."""
        counts = np.asarray(sol.counts)
        out: dict[int, tuple[int, int, int]] = {}
        for ci, c in enumerate(f.classes):
            cols = np.flatnonzero(f.col_class == ci)
            slots: list[tuple[int, int]] = []
            for oi in np.argsort(c.sigma, kind="stable"):
                for j in cols[f.col_option[cols] == oi]:
                    slots.extend([(int(oi), int(f.col_tier[j]))] * int(counts[j]))
            if len(slots) != len(c.members):  # pragma: no cover - guaranteed by the group rows
                raise SolverError(f"class {c.name} got {len(slots)} assignments for {len(c.members)} groups",
                                  status="numerical", backend=sol.backend)
            for gi, (oi, ti) in zip(c.members, slots):
                out[gi] = (ci, oi, ti)
        return out

    def _choices(self, f: Formulation, assign: Mapping[int, tuple[int, int, int]]) -> dict[str, GroupChoice]:
        out = {}
        for gi, g in enumerate(f.groups):
            ci, oi, ti = assign[gi]
            o = f.classes[ci].options[oi]
            out[g.fqn] = GroupChoice(weights=o.weights, sparsity=o.sparsity, activations=o.activations,
                                     tier=f.tiers[ti], low_rank=o.low_rank)
        return out

    def _placement(self, f: Formulation, assign: Mapping[int, tuple[int, int, int]]) -> dict[str, float] | None:
        """Weight fraction per tier of the heaviest pipeline stage (the one the cost model
        reports), or None when every weight is on the device tier."""
        if all(ti == 0 for _, _, ti in assign.values()):
            return None
        per = np.zeros((f.layout.pp, len(f.tiers)))
        for ci, oi, ti in assign.values():
            c = f.classes[ci]
            per[c.stage, ti] += c.coeffs[oi][0]
        s = int(np.argmax(per.sum(axis=1)))
        total = float(per[s].sum())
        if total <= 0:
            return None
        return {tname: float(per[s, ti]) / total for ti, tname in enumerate(f.tiers) if per[s, ti] > 0}

    def evaluate(self, plan: Plan, options: RuntimeSettings | None = None) -> InferenceEstimate:
        """Independent re-evaluation of a plan by the cost model (its overrides and tier
        placement) with the serving engine's runtime settings ``options`` (the request's
        :func:`~planner.search_formulation.engine_options`; None: the cost model's defaults);
        what :attr:`Plan.predicted` records."""
        base = options if options is not None else RuntimeSettings()
        return estimate_inference(self.arch, self.device, plan.layout.to_layout(), plan.workload.to_serving(),
                                  plan.default_choice(), overrides=plan.overrides(),
                                  options=replace(base, allow_offload=plan.constraints.allow_offload,
                                                  placement=plan.placement()))

    def _assemble(self, f: Formulation, req: PlanProblem, sol: Solution,
                  refs: Mapping[str, float]) -> tuple[Plan, InferenceEstimate, dict[str, float]]:
        assign = self._assignment(f, sol)
        choices = self._choices(f, assign)
        placement = self._placement(f, assign)
        layout = f.layout
        serving = req.serving
        default = Choice(weights="bf16", activations=f.base, kv=f.kv, sparsity="dense")
        opts = engine_options(req)
        est = estimate_inference(self.arch, self.device, layout, serving, default,
                                 overrides={k: c.to_choice(f.kv) for k, c in choices.items()},
                                 options=replace(opts, allow_offload=req.allow_offload, placement=placement))
        group_sens = {gi: float(f.classes[ci].alpha[f.classes[ci].members.index(gi)] * f.classes[ci].sigma[oi])
                      for gi, (ci, oi, _) in assign.items()}
        sens_total = sum(group_sens.values()) + f.kv_sens
        bits = sum(float(f.classes[ci].coeffs[oi][4]) for ci, oi, _ in assign.values())
        avg_bits = bits / f.params_total if f.params_total else 0.0
        bad: dict[str, float] = {}
        tiers = {}
        dev_name = self.device.device_tier.name
        for tu in est.memory.tiers:
            tiers[tu.name] = TierPrediction(role=tu.role, capacity_bytes=tu.capacity_bytes, used_bytes=tu.used_bytes,
                                            weights_bytes=tu.weights_bytes, kv_cache_bytes=tu.kv_cache_bytes,
                                            activations_bytes=tu.activations_bytes)
            cap = f.caps.get(tu.name, tu.capacity_bytes)
            if tu.used_bytes > cap * (1 + 1e-9) and (tu.name == dev_name or tu.weights_bytes > 0):
                bad[f"memory_{tu.name}"] = tu.used_bytes - cap
        dev_row = f"memory_{dev_name}"
        if not est.memory.fits and est.memory.shortfall_bytes > bad.get(dev_row, 0.0):
            # The estimate's own verdict (KV-cache share of an engine, tiers beyond the device):
            # a plan it calls short is repaired or refused, never written as fitting.
            bad[dev_row] = est.memory.shortfall_bytes
        if req.ttft_slo_s is not None and est.ttft_s > req.ttft_slo_s * (1 + 1e-9):
            bad["ttft_slo"] = est.ttft_s - req.ttft_slo_s
        if req.tpot_slo_s is not None and f.generative and est.tpot_s > req.tpot_slo_s * (1 + 1e-9):
            bad["tpot_slo"] = est.tpot_s - req.tpot_slo_s
        if req.avg_bits is not None and avg_bits > req.avg_bits * (1 + 1e-9):
            bad["avg_bits"] = (avg_bits - req.avg_bits) * f.params_total
        per_layer = self._per_layer(f, assign, group_sens)
        from planner.request.estimate import shape_notes  # what prompt and gen mean for this model, as estimate says

        groups = self._groups(1)
        notes = (list(est.notes) + list(f.notes) + _storage_notes(req, choices, f.kv, self.arch)
                 + _activation_recipe_notes(req, choices, groups, self.sensitivity.source)
                 + shape_notes(self.arch, serving) + _conv_notes(req, groups))
        if est.memory.offloaded_weights_bytes > 0 and est.decode is not None:
            notes.append(f"{est.memory.offloaded_weights_bytes / 1e9:.2f} GB of weights per device live outside "
                         f"{dev_name}; decode runs at {est.decode_tokens_per_s:.3g} tokens/s "
                         f"(TPOT {est.tpot_s * 1e3:.4g} ms)")
        usd = est.usd_per_million_tokens
        predicted = Predicted(
            ttft_s=est.ttft_s, tpot_s=est.tpot_s, latency_s=est.latency_s,
            output_tokens_per_s=est.output_tokens_per_s, decode_tokens_per_s=est.decode_tokens_per_s,
            per_device_bytes=est.memory.per_device_bytes, weights_bytes=est.memory.weights_bytes,
            kv_cache_bytes=est.memory.kv_cache_bytes, activations_bytes=est.memory.activations_bytes,
            offloaded_weights_bytes=est.memory.offloaded_weights_bytes, fits=not bad, tiers=tiers,
            avg_weight_bits=avg_bits, sensitivity=sens_total,
            energy_j_per_token=est.energy_j_per_token if est.energy_j_per_token is not None
            and math.isfinite(est.energy_j_per_token) else None,
            usd_per_million_tokens=usd if usd is not None and math.isfinite(usd) else None,
            decode_bound=est.decode.bound if est.decode is not None else "",
            per_layer=per_layer, notes=tuple(notes),
            runtime_context_bytes=float(opts.reserved_bytes),
            per_token_basis=est.per_token,
            generative=est.generative,
            # the error bars an estimate of this configuration on this engine carries
            uncertainty=estimate_uncertainty(est, self.device, getattr(req.engine, "engine", None), opts.runtime),
        )
        primary = objective_value(req.objective, predicted, req, refs)
        stats = SolverStats(backend=sol.backend, status=sol.status, objective=primary, gap=sol.gap,
                            time_s=sol.time_s, variables=sol.variables, constraints=sol.constraints)
        plan = Plan(
            tool_version=tool_version(), created_at=utc_now(), model=self.arch.id, hardware=self.device.id,
            model_hash=content_hash(self.arch), hardware_hash=hardware_hash(self.device),
            layout=PlanLayout.from_layout(layout), devices=layout.devices,
            workload=PlanWorkload(batch=req.batch, prompt=req.prompt, gen=req.gen),
            constraints=PlanConstraints(max_memory_per_device_bytes=req.max_memory_per_device_bytes,
                                        tpot_slo_default=req.tpot_slo_default,
                                        ttft_slo_s=req.ttft_slo_s, tpot_slo_s=req.tpot_slo_s, avg_bits=req.avg_bits,
                                        allow_offload=req.allow_offload, pins=dict(req.pins)),
            objective=req.objective, kv=f.kv, activations=f.base, choices=choices, predicted=predicted,
            solver=stats, sensitivity_source=self.sensitivity.source,
        )
        return plan, est, bad

    def _per_layer(self, f: Formulation, assign: Mapping[int, tuple[int, int, int]],
                   group_sens: Mapping[int, float]) -> tuple[LayerPrediction, ...]:
        layers: dict[str, list[float]] = {}
        for gi, g in enumerate(f.groups):
            if g.layer is None:
                continue
            ci, oi, _ = assign[gi]
            wb, ps, ds = f.classes[ci].coeffs[oi][:3]
            name = g.fqn[: len(g.fqn) - len(g.name) - 1]
            acc = layers.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += wb
            acc[1] += ds if f.generative else ps
            acc[2] += group_sens[gi]
        return tuple(LayerPrediction(layer=k, weights_bytes=v[0], decode_s=v[1], sensitivity=v[2])
                     for k, v in layers.items())




def hardware_hash(device: DeviceSpec) -> str:
    h = getattr(device, "content_hash", "")
    if isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h):
        return "sha256:" + h
    from hwmodels import device_to_dict

    return content_hash(device_to_dict(device))



def _activation_recipe_notes(req: PlanProblem, choices: Mapping[str, GroupChoice], groups=(),
                             source: str = "prior") -> list[str]:
    """How the plan's int8 activations were priced where its engine quantizes them its own way
    (SmoothQuant first; one scale per block of features)."""
    if req.engine is None:
        return []
    from planner.format_noise import smoothable

    rt = req.engine.runtime
    info = {g.fqn: g for g in groups}
    # linear groups computing in int8 (an embedding table's gather has no activations to quantize)
    acts = [g for g, c in choices.items() if smoothable(c.activations) and getattr(info.get(g), "role", "") != "embedding"]
    if not acts:
        return []
    priced = ("the accuracy prior priced them so" if source == "prior" else
              f"their scores come from the {source} sensitivity where it has them (the accuracy prior priced the others so)")
    out = []
    if rt.smoothing_alpha is not None:
        smoothed = sum(1 for g in acts if getattr(info.get(g), "reads_norm", False))
        if not smoothed:
            out.append(f"int8 activations: {req.engine.engine}'s recipe runs SmoothQuant before quantizing them, but none "
                       f"of the {len(acts)} groups with int8 activations here alone reads a norm's output it could fold "
                       "into (planner/smoothing_map.py), so they are priced, exported and validated per token as they come")
            return out + _block_notes(req, choices, acts, priced)
        out.append(f"int8 activations: {req.engine.engine}'s recipe runs SmoothQuant (strength {rt.smoothing_alpha:g}) "
                   f"before quantizing them on the linears that alone read a norm's output ({smoothed} of the {len(acts)} "
                   f"groups with int8 activations here{'; the others are quantized per token as they come' if smoothed < len(acts) else ''}); "
                   f"{priced}, and the compressed-tensors export writes the same SmoothQuantModifier mappings")
    return out + _block_notes(req, choices, acts, priced)


def _block_notes(req: PlanProblem, choices: Mapping[str, GroupChoice], acts: list[str], priced: str) -> list[str]:
    """The activation blocks the plan's int8 groups use where the engine quantizes in blocks."""
    from planner.engines import activation_blocks_text

    blocks = dict(req.engine.runtime.activation_blocks)
    used = sorted({(choices[g].weights, blocks[choices[g].weights]) for g in acts if choices[g].weights in blocks})
    if not used:
        return []
    return [f"int8 activations: {req.engine.engine} quantizes them with one scale per block of features, not per "
            f"token ({activation_blocks_text(used, unit='')}), so an outlier channel costs its own block only; {priced}"]


def _conv_notes(req: PlanProblem, groups=()) -> list[str]:
    """Weight formats searched that the engine's exporter cannot write for a convolution (the profile's
    ``conv`` list): those groups were offered the others only."""
    conv = req.engine.conv if req.engine is not None else ()
    n = sum(1 for g in groups if g.role == "conv")
    dropped = [f for f in (req.formats or ()) if f not in conv]
    if not conv or not n or not dropped:
        return []
    return [f"{req.engine.engine} writes convolutions in {', '.join(conv)} only (profile `conv`): its {n} convolution "
            f"group{'s' if n > 1 else ''} were not offered {', '.join(dropped)}"]


def _storage_notes(req: PlanProblem, choices: Mapping[str, GroupChoice], kv: str, arch=None) -> list[str]:
    """What the plan's engine stores its formats as where that type's size is not the catalog
    format's (llama.cpp: int4-g128 as q4_K, 4.5 bits), as an estimate for that engine says."""
    if req.engine is None or not req.engine.runtime.storage:
        return []
    from types import SimpleNamespace

    from planner.request.estimate import _storage_notes as storage_notes

    weights = sorted({c.weights for c in choices.values()})
    out = [n for w in weights for n in storage_notes(req.engine, SimpleNamespace(weights=w, kv=None), arch)]
    return out + list(storage_notes(req.engine, SimpleNamespace(weights=None, kv=kv)))
