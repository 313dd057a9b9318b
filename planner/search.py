"""Joint search: parallel layout × KV-cache format × per-group compression ILP, plus the
Pareto frontier and the measured-accuracy bisection built on it.

For one candidate (layout, KV format) the planner builds the ILP of :mod:`planner.solver`
from the cost model's additive per-group costs (:func:`planner.costmodel.group_costs`):

* a column per (decision group, option, memory tier for its weights); layers are identical
  in shape, so coefficients are computed once per (block, group) and option and reused
  for every layer;
* ``memory_<tier>[_stage<s>]``: weights placed on a tier of a pipeline stage, plus the KV
  cache (at the target batch and context) and peak activations the cost model puts
  there, within the tier's capacity (the device tier also within
  ``--max-memory-per-device``);
* ``prefill_time`` / ``decode_time``: auxiliaries ``P ≥ Σ group time + fixed time`` —
  the fixed part (attention core, norms, pipeline transfers) is the cost model's phase
  time minus its group times for a uniform configuration — and, when weights stream from
  a slower tier, ``P ≥ Σ streamed bytes / tier bandwidth + communication`` (the cost
  model overlaps streaming with compute: ``max``);
* ``ttft_slo``: ``a·P_prefill + step ≤ TTFT`` with the pipeline factor ``a`` and per-pass
  overhead ``step`` read off the cost model; ``tpot_slo``: ``P_decode + step ≤ TPOT``;
* ``avg_bits``: Σ params·bits ≤ target · Σ params (bits as the format registry prices them;
  a low-rank option's bits are scaled by the fraction of weights its factors keep).

Low-rank options (``PlanRequest.low_rank``, off by default) are ordinary columns: their
memory and time coefficients come from the cost model's ``Choice(low_rank=r)``, their
sensitivity from the source's truncation error (:mod:`planner.sensitivity`).

Objectives: ``accuracy`` (Σ sensitivity, then latency), ``latency`` (request latency
TTFT + (gen − 1)·TPOT, then sensitivity), ``memory`` (largest per-device footprint, then
sensitivity), ``cost`` (USD per million tokens: latency within a layout, devices / replicas
across layouts, then sensitivity) and ``weighted`` (a normalised mix). The secondary
objective is solved lexicographically: a second ILP keeps the primary within the gap.

Every candidate's solution is re-evaluated by :func:`planner.costmodel.estimate_inference`
with the plan's per-group overrides — the predictions a plan carries are that independent
evaluation, not the linearisation. Where they disagree on a constraint (streaming
latencies are linearised) the violated row is tightened by the excess and the ILP
re-solved, so a returned plan never violates a constraint under re-evaluation.

Candidates are visited in order of their LP-relaxation bound and skipped once the bound
cannot beat the best plan found ("pruned by bounds").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.costmodel import (
    Choice,
    EstimateError,
    InferenceEstimate,
    Layout,
    RuntimeSettings,
    Serving,
    allowed_tiers,
    check_layout,
    estimate_inference,
    group_costs,
    low_rank_factor,
    stream_time_s,
)
from planner.diagnose import NoFeasiblePlanError, diagnose
from planner.formats import combined_bits_per_weight, get_format
from planner.options import (
    GroupInfo,
    Option,
    OptionError,
    apply_pins,
    base_activation_format,
    candidate_options,
    decision_groups,
    low_rank_fits,
    max_low_rank,
    options_for_group,
    parse_low_ranks,
)
from planner.plan import (
    OBJECTIVES,
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
from planner.sensitivity import Sensitivity, sensitivity_from_spec
from planner.solver import AuxVar, InfeasibleError, Problem, Row, Solution, SolverError, solve
from planner.workload import build_workload

__all__ = [
    "DEFAULT_KV_FORMATS",
    "BisectResult",
    "PlanRequest",
    "Planner",
    "bisect_ladder",
    "pareto_front",
    "solve_plan",
]

#: KV-cache formats tried when ``--kv`` is not given (the device's 16-bit format first).
DEFAULT_KV_FORMATS = ("fp8-e4m3", "int8", "int4-g64")
_REPAIR_ROUNDS = 4
_REL_TOL = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRequest:
    """What to plan for (CLI flags / REST fields in snake case). ``tp``/``pp``/``dp`` left
    ``None`` are searched over; ``kv`` ``None`` searches the KV formats too; ``low_rank``
    lists absolute ranks to offer as low-rank factorisations of linear groups (``None``:
    none are offered)."""

    devices: int = 1
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    ep: int | None = None
    batch: int = 1
    prompt: int = 512
    gen: int = 128
    max_memory_per_device_bytes: float | None = None
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None
    avg_bits: float | None = None
    allow_offload: bool = False
    objective: str = "accuracy"
    objective_weights: Mapping[str, float] = field(default_factory=dict)
    formats: tuple[str, ...] | None = None
    sparsity: tuple[str, ...] | None = None
    kv: str | None = None
    activations: str | None = None
    pins: Mapping[str, str] = field(default_factory=dict)
    low_rank: tuple[int, ...] | None = None
    low_precision_compute: bool = True
    backend: str = "highs"
    time_limit_s: float = 60.0
    gap: float = 1e-3

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> EstimateError:
            return EstimateError(name, f"--{name.replace('_', '-')} must be {expected}; got {getattr(self, name)!r}")

        for name in ("devices", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "a positive integer")
        for name in ("prompt", "gen"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(name, "an integer >= 0")
        for name in ("tp", "pp", "dp", "ep"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise bad(name, "a positive integer")
        for name in ("max_memory_per_device_bytes", "ttft_slo_s", "tpot_slo_s", "avg_bits"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v <= 0):
                raise bad(name, "a positive number")
        if self.objective not in OBJECTIVES:
            raise EstimateError("objective", f"--objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}")
        unknown = set(self.objective_weights) - {"accuracy", "latency", "memory"}
        if unknown:
            raise EstimateError("objective_weights", f"--objective-weights knows accuracy, latency, memory; got "
                                f"{', '.join(sorted(unknown))}")
        for k, v in self.objective_weights.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                raise EstimateError("objective_weights", f"--objective-weights {k} must be a number >= 0; got {v!r}")
        if self.objective == "weighted" and not any(self.objective_weights.values()):
            raise EstimateError("objective_weights", "--objective weighted needs --objective-weights with a positive "
                                "weight, e.g. accuracy=1,latency=0.5")
        if not isinstance(self.time_limit_s, (int, float)) or self.time_limit_s <= 0:
            raise bad("time_limit_s", "a positive number of seconds")
        if self.low_rank is not None:
            if isinstance(self.low_rank, (str, bytes)) or not isinstance(self.low_rank, Sequence) or any(
                    isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in self.low_rank):
                raise bad("low_rank", "a list of integer ranks >= 1, e.g. [256, 512]")
            object.__setattr__(self, "low_rank", parse_low_ranks(tuple(self.low_rank)))

    @property
    def serving(self) -> Serving:
        return Serving(batch=self.batch, prompt=self.prompt, gen=self.gen)


# ---------------------------------------------------------------------------
# One candidate: coefficients and the ILP
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Class:
    """Decision groups that are interchangeable in the ILP: same block, group name,
    pipeline stage, options and coefficients, and sensitivities proportional to one
    vector (``score[g] = alpha[g] · sigma``). ``members`` are sorted by ``alpha``,
    largest first; a class of one is an ordinary one-hot group."""

    name: str
    stage: int
    members: tuple[int, ...]
    options: tuple[Option, ...]
    sigma: np.ndarray
    alpha: np.ndarray
    coeffs: np.ndarray  # (options, 5): bytes, prefill s, decode s, decode bytes read, Σ params·bits


@dataclass(slots=True)
class _Formulation:
    layout: Layout
    kv: str
    base: str
    groups: tuple[GroupInfo, ...]
    classes: tuple[_Class, ...]
    tiers: tuple[str, ...]  # allowed weight tiers, fastest first; tiers[0] is the device tier
    col_class: np.ndarray
    col_option: np.ndarray
    col_tier: np.ndarray
    col_stage: np.ndarray
    bytes_: np.ndarray
    pre_s: np.ndarray
    dec_s: np.ndarray
    stream_pre_s: np.ndarray
    stream_dec_s: np.ndarray
    bits_params: np.ndarray
    sens_col: np.ndarray  # sensitivity per unit of a one-member class's column (0 for aggregated classes)
    sens_key: np.ndarray  # the option's unit sensitivity (ties for the lexicographic step)
    sens_rows: tuple[Row, ...]
    sens_aux: tuple[AuxVar, ...]
    sens_const: float
    params_total: float
    kv_sens: float
    fixed_pre_s: float
    fixed_dec_s: float
    comm_pre_s: float
    comm_dec_s: float
    pipe_factor: float
    step_s: float
    generative: bool
    gen: int
    fixed_bytes: dict[str, float]
    caps: dict[str, float]
    base_estimate: InferenceEstimate
    notes: tuple[str, ...]
    offered: int = 0  # (group, option) pairs before dominated options were removed
    stage_fixed: tuple[float, ...] = ()  # per stage: stored bytes outside the groups (norms)
    problem: Problem | None = None


def _undominated(rows: list[tuple]) -> list[int]:
    """Indices of options no other option of the same group beats or ties on every
    coefficient (bytes, prefill time, decode time, bytes read, bits, sensitivity). Every
    row and objective of the ILP is non-decreasing in these, so the optimum is unchanged;
    ties keep the first (registry order)."""
    m = np.array([r[1:] for r in rows], dtype=np.float64)
    k = len(rows)
    # le[i, j]: option j is no worse than option i on every coefficient; lt: strictly better on one.
    le = np.all(m[None, :, :] <= m[:, None, :] * (1 + 1e-12) + 1e-300, axis=2)
    lt = np.any(m[None, :, :] < m[:, None, :] * (1 - 1e-12), axis=2)
    earlier = np.tri(k, k, -1, dtype=bool)  # j < i
    beaten = (le & lt).any(axis=1) | (le & ~lt & earlier).any(axis=1)
    return [i for i in range(k) if not beaten[i]]


def _proportional(scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(sigma, alpha) with ``scores[i] = alpha[i] · sigma`` when the vectors are
    proportional (the prior's role × depth × noise always is), else None."""
    ref = max(scores, key=lambda v: float(np.max(np.abs(v))) if v.size else 0.0)
    norm = float(ref @ ref)
    if norm == 0.0:
        return ref.copy(), np.ones(len(scores))
    alpha = np.array([float(v @ ref) / norm for v in scores])
    for v, a in zip(scores, alpha):
        if a < 0 or np.max(np.abs(v - a * ref)) > 1e-9 * max(float(np.max(np.abs(v))), 1e-300):
            return None
    return ref.copy(), alpha


def _expand(sol: Solution, columns: np.ndarray, col_class: np.ndarray) -> Solution:
    """A solution of ``problem.subset(columns)`` as counts of the full column set."""
    full = np.zeros(col_class.size, dtype=np.int64)
    full[columns] = np.asarray(sol.counts)
    return replace(sol, counts=tuple(int(c) for c in full), column_group=tuple(int(g) for g in col_class))


def _proportional_parts(members: Sequence[int], vecs: Sequence[np.ndarray]) -> list[tuple[list[int], tuple]]:
    """Split a bucket of interchangeable groups into classes whose score vectors are
    proportional: (members, (sigma, alpha)). Measured scores for a few layers leave the
    other layers (prior scores) in one class; fully measured tables give one class each."""
    whole = _proportional(list(vecs)) if len(members) > 1 else (vecs[0].copy(), np.ones(1))
    if whole is not None:
        return [(list(members), whole)]
    keyed: dict[tuple, list[int]] = {}
    for k, v in enumerate(vecs):
        top = float(np.max(np.abs(v))) if v.size else 0.0
        keyed.setdefault(tuple(np.round(v / top, 9)) if top > 0 else ("zero",), []).append(k)
    parts = []
    for ks in keyed.values():
        sub = [vecs[k] for k in ks]
        prop = _proportional(sub) if len(ks) > 1 else (sub[0].copy(), np.ones(1))
        if prop is None:  # rounding put non-proportional vectors together: keep them apart
            parts.extend(([members[k]], (vecs[k].copy(), np.ones(1))) for k in ks)
        else:
            parts.append(([members[k] for k in ks], prop))
    return parts


def _primary_keys(f: _Formulation, objective: str) -> np.ndarray:
    """Per column, the coefficients through which it enters the primary objective."""
    if objective == "accuracy":
        return f.sens_key[:, None]
    if objective in ("latency", "cost"):
        return np.stack([f.pre_s, f.dec_s, f.stream_pre_s, f.stream_dec_s], axis=1)
    if objective == "memory":
        return f.bytes_[:, None]
    return np.stack([f.sens_key, f.pre_s, f.dec_s, f.stream_pre_s, f.stream_dec_s, f.bytes_], axis=1)


def _ordered_layouts(arch: ArchSpec, device: DeviceSpec, req: PlanRequest) -> list[Layout]:
    fixed = {k: getattr(req, k) for k in ("tp", "pp", "dp", "ep") if getattr(req, k) is not None}
    if all(getattr(req, k) is not None for k in ("tp", "pp", "dp")):
        lay = Layout(tp=req.tp, pp=req.pp, dp=req.dp, ep=req.ep or 1)
        check_layout(arch, lay, req.devices)
        return [lay]
    try:
        from planner.parallel import enumerate_layouts
    except ImportError:  # pragma: no cover - the layout module ships with tierwise
        enumerate_layouts = None
    if enumerate_layouts is not None:
        layouts = enumerate_layouts(arch, req.devices)
    else:  # pragma: no cover
        layouts = []
        for tp in range(1, req.devices + 1):
            if req.devices % tp:
                continue
            for pp in range(1, req.devices // tp + 1):
                if (req.devices // tp) % pp:
                    continue
                lay = Layout(tp=tp, pp=pp, dp=req.devices // tp // pp)
                try:
                    check_layout(arch, lay, req.devices)
                except EstimateError:
                    continue
                layouts.append(lay)
    out = [lay for lay in layouts if all(getattr(lay, k) == v for k, v in fixed.items())]
    if not out:
        want = ", ".join(f"{k}={v}" for k, v in fixed.items())
        raise EstimateError("devices", f"no parallel layout of {req.devices} device(s) for {arch.id} has {want} "
                            "(tp×pp×dp must equal --devices; tp must divide the attention heads)")
    return out


class Planner:
    """Plans for one model on one device type. Coefficients are cached per layout so that
    the Pareto sweep, the bisection and the diagnosis re-solve cheaply."""

    def __init__(self, arch: ArchSpec, device: DeviceSpec, *, sensitivity: Sensitivity | str | None = None):
        self.arch = arch
        self.device = device
        self.work = build_workload(arch)
        self.sensitivity = sensitivity_from_spec(sensitivity)
        self._group_cache: dict[int, tuple[GroupInfo, ...]] = {}
        self._coef_cache: dict[tuple, dict] = {}
        self._sens_cache: dict[tuple, Any] = {}
        self._bits_cache: dict[tuple, float] = {}
        self._col_cache: dict[tuple, tuple] = {}

    # -- coefficients ----------------------------------------------------------------------

    def _groups(self, pp: int) -> tuple[GroupInfo, ...]:
        if pp not in self._group_cache:
            self._group_cache[pp] = decision_groups(self.work, pp)
        return self._group_cache[pp]

    def _option_sets(self, req: PlanRequest, groups: Sequence[GroupInfo], base: str) -> list[tuple[Option, ...]]:
        cands = candidate_options(self.device, formats=req.formats, sparsity=req.sparsity,
                                  low_precision_compute=req.low_precision_compute, base_activations=base,
                                  low_rank=req.low_rank)
        for r in req.low_rank or ():
            if not any(low_rank_fits(g, r) for g in groups):
                widest = max((max_low_rank(g) for g in groups), default=0)
                raise OptionError(f"--low-rank {r} compresses no linear layer of {self.arch.id} (a rank r compresses "
                                  f"a k×n layer when r·(k+n) < k·n; the largest useful rank here is {widest})",
                                  field="low_rank")
        per = [options_for_group(g, cands, base_activations=base) for g in groups]
        return apply_pins(groups, per, req.pins, self.device, base)

    def _type_costs(self, layout: Layout, serving: Serving, option: Option, kv: str) -> dict[tuple[str, str], tuple]:
        """(block, group) → (weight bytes, prefill s, decode s, decode bytes read) under one option.
        Weighted operators do not read the KV cache, so the KV format does not change these
        and the cache ignores it."""
        key = (layout, serving, option)
        if key not in self._coef_cache:
            choice = Choice(weights=option.weights, activations=option.activations, kv=kv, sparsity=option.sparsity,
                            low_rank=option.low_rank)
            out: dict[tuple[str, str], list[float]] = {}
            for gc in group_costs(self.arch, self.device, layout, serving, choice):
                acc = out.setdefault((gc.block, gc.group), [0.0, 0.0, 0.0, 0.0])
                acc[0] += gc.weight_bytes
                acc[1] += gc.prefill_s
                acc[2] += gc.decode_s
                acc[3] += gc.decode_weight_bytes_read
            self._coef_cache[key] = {k: tuple(v) for k, v in out.items()}
        return self._coef_cache[key]

    def _bits(self, g: GroupInfo, o: Option) -> float:
        """Σ params × bits per weight of a group under ``o`` (the registry's price; a
        low-rank option stores the fraction ``r·(k+n)/(k·n)`` of each linear's weights)."""
        key = (g.block, g.name, o.weights, o.sparsity, o.low_rank)
        v = self._bits_cache.get(key)
        if v is None:
            lr = Choice(low_rank=o.low_rank)
            v = sum(m.weight_params * low_rank_factor(m, lr)
                    * combined_bits_per_weight(o.weights, o.sparsity, m.out_features or 1,
                                               (m.in_features or 1) if m.kind != "conv" else 1)
                    for m in g.members)
            self._bits_cache[key] = v
        return v

    def _scores(self, groups: Sequence[GroupInfo], options: Sequence[tuple[Option, ...]]):
        key = (tuple(g.fqn for g in groups), tuple(options))
        if key not in self._sens_cache:
            self._sens_cache[key] = self.sensitivity.scores(groups, options)
        return self._sens_cache[key]

    def _columns(self, req: PlanRequest, layout: Layout, base: str, kv: str, tiers: tuple[str, ...],
                 per_byte: Mapping[str, float]) -> tuple:
        """Classes and column arrays of one layout (independent of the KV format, which
        only moves the fixed costs): cached, because every KV candidate and every re-solve
        reuses them."""
        serving = req.serving
        key = (layout, serving, base, tiers, tuple(sorted(per_byte.items())), req.formats, req.sparsity,
               req.low_precision_compute, tuple(sorted(req.pins.items())), req.low_rank)
        hit = self._col_cache.get(key)
        if hit is not None:
            return hit
        dev = self.device
        groups = self._groups(layout.pp)
        options = self._option_sets(req, groups, base)
        all_opts = sorted({o for opts_ in options for o in opts_}, key=lambda o: o.key)
        costs: dict[Option, dict] = {}
        notes: list[str] = []
        for o in all_opts:
            try:
                costs[o] = self._type_costs(layout, serving, o, kv)
            except EstimateError as exc:
                notes.append(f"option {o.key} dropped: {exc.message}")
        scores = self._scores(groups, options)

        # Candidate classes: same block, group name, stage and option list.
        buckets: dict[tuple, list[int]] = {}
        for gi, g in enumerate(groups):
            buckets.setdefault((g.block, g.name, g.stage, options[gi]), []).append(gi)
        classes: list[_Class] = []
        offered = 0
        for (block, name, stage, opts_), members in buckets.items():
            usable = [i for i, o in enumerate(opts_) if o in costs]
            if not usable:
                raise OptionError(f"no option is left for {groups[members[0]].fqn} on {dev.id}", field="formats")
            g0 = groups[members[0]]
            coeffs = np.array([[*costs[opts_[i]][(block, name)], self._bits(g0, opts_[i])] for i in usable])
            vecs = [np.asarray(scores.values[gi], dtype=np.float64)[usable] for gi in members]
            offered += len(usable) * len(members)
            parts = _proportional_parts(members, vecs)
            for mem, (sigma, alpha) in parts:
                # Dominance on (coefficients, sigma): scaling sigma by alpha > 0 keeps it valid.
                keep = _undominated([(None, *coeffs[i], sigma[i]) for i in range(len(usable))])
                order = np.argsort(-alpha, kind="stable")
                label = groups[mem[0]].fqn if len(mem) == 1 else f"{block}.*.{name}[stage {stage}]×{len(mem)}"
                classes.append(_Class(name=label, stage=stage, members=tuple(mem[i] for i in order),
                                      options=tuple(opts_[usable[i]] for i in keep), sigma=sigma[keep],
                                      alpha=alpha[order], coeffs=coeffs[keep]))

        # Streaming: the cost model keeps one fraction of the weights off the device tier and
        # streams that fraction of every operator's reads each pass (its placement is per tier,
        # not per group). A byte stored off-device therefore costs ρ streamed bytes per pass,
        # ρ = bytes read / bytes stored of the whole model (decode reads one embedding row;
        # prefill reads a few), taken at the 16-bit baseline.
        base_c = self._type_costs(layout, serving, Option(weights=base, activations=base), kv)
        stored = read = emb = 0.0
        for g in groups:
            c0 = base_c[(g.block, g.name)]
            stored += c0[0]
            read += c0[3]
            if g.role == "embedding":
                emb += c0[0]
        rho_dec = read / stored if stored > 0 and read > 0 else 1.0
        rho_pre = (stored - emb) / stored if stored > 0 else 1.0
        cols: dict[str, list] = {k: [] for k in ("cls", "opt", "tier", "stage", "by", "pr", "de", "sp", "sd", "bp",
                                                 "sc", "sk")}
        sens_rows: list[Row] = []
        sens_aux: list[AuxVar] = []
        sens_const = 0.0
        col_of: list[list[int]] = []  # per class: column indices
        for ci, c in enumerate(classes):
            mine = []
            single = len(c.members) == 1
            for oi, o in enumerate(c.options):
                wb, ps, ds, _rb, bits = c.coeffs[oi]
                for ti, tname in enumerate(tiers):
                    mine.append(len(cols["cls"]))
                    for k, v in (("cls", ci), ("opt", oi), ("tier", ti), ("stage", c.stage), ("by", wb), ("pr", ps),
                                 ("de", ds), ("sp", wb * rho_pre * per_byte.get(tname, 0.0)),
                                 ("sd", wb * rho_dec * per_byte.get(tname, 0.0)), ("bp", bits),
                                 ("sc", c.alpha[0] * c.sigma[oi] if single else 0.0), ("sk", c.sigma[oi])):
                        cols[k].append(v)
            col_of.append(mine)
        n = len(cols["cls"])
        col_opt = np.asarray(cols["opt"], dtype=np.int64)
        for ci, c in enumerate(classes):
            if len(c.members) == 1:
                continue
            # Sensitivity of a class with counts per option: the most important members take
            # the least noisy options (exchange argument), so with options ranked by sigma and
            # N_k = members on the k least noisy options,
            #   S = σ_1 · A(L) + Σ_k (σ_{k+1} − σ_k) · (A(L) − A(N_k)),  A(N) = Σ_{i<N} α_i,
            # A is concave, so each term is convex in N_k: an epigraph z_k ≥ 0 over its
            # segments. (Every term is non-negative: no large constants cancel, so the
            # solver's relative gap stays meaningful.)
            rank = np.argsort(c.sigma, kind="stable")
            sig = c.sigma[rank]
            big_l = len(c.members)
            a_cum = np.concatenate([[0.0], np.cumsum(c.alpha)])
            sens_const += float(sig[0] * a_cum[-1])
            mine = np.asarray(col_of[ci], dtype=np.int64)
            for k in range(len(sig) - 1):
                d = float(sig[k + 1] - sig[k])
                if d <= 0:
                    continue
                lower = set(int(x) for x in rank[: k + 1])
                coeffs = np.zeros(n)
                sel = mine[np.isin(col_opt[mine], list(lower))]
                coeffs[sel] = 1.0
                nk, zk = f"N_{ci}_{k}", f"z_{ci}_{k}"
                sens_aux.append(AuxVar(name=nk, lb=0.0, ub=float(big_l)))
                sens_aux.append(AuxVar(name=zk, lb=0.0, ub=d * float(a_cum[-1])))
                sens_rows.append(Row(name=f"sens_count_{ci}_{k}", coeffs=coeffs, sense="==", rhs=0.0, aux={nk: -1.0}))
                zero = np.zeros(n)
                for j in range(big_l):
                    # z ≥ d·(A(L) − line_j(N)), line_j through (j, A(j)) and (j + 1, A(j + 1)).
                    slope = float(c.alpha[j])
                    sens_rows.append(Row(name=f"sens_{ci}_{k}_{j}", coeffs=zero, sense="<=",
                                         rhs=d * (float(a_cum[j]) - slope * j - float(a_cum[-1])),
                                         aux={zk: -1.0, nk: -d * slope}))
        arr = np.asarray
        out = (groups, tuple(classes), arr(cols["cls"], dtype=np.int64), col_opt, arr(cols["tier"], dtype=np.int64),
               arr(cols["stage"], dtype=np.int64), arr(cols["by"], dtype=float), arr(cols["pr"], dtype=float),
               arr(cols["de"], dtype=float), arr(cols["sp"], dtype=float), arr(cols["sd"], dtype=float),
               arr(cols["bp"], dtype=float), arr(cols["sc"], dtype=float), arr(cols["sk"], dtype=float),
               tuple(sens_rows), tuple(sens_aux), sens_const, tuple(notes) + tuple(scores.notes), offered)
        self._col_cache[key] = out
        return out

    def _formulate(self, req: PlanRequest, layout: Layout, kv: str) -> _Formulation:
        dev = self.device
        base = req.activations or base_activation_format(dev)
        serving = req.serving
        generative = self.arch.family in ("decoder", "encoder_decoder") and serving.gen > 0
        dev_tier = dev.device_tier

        allowed = [t for t in allowed_tiers(dev, RuntimeSettings(allow_offload=req.allow_offload))
                   if t.role != "on_chip" or dev.device_class == "fpga"]
        allowed.sort(key=lambda t: 0 if t.name == dev_tier.name else 1)  # the device tier first
        tiers = tuple(t.name for t in allowed)
        # Seconds per streamed byte for each off-device tier (secant over 1–2 GB: the
        # efficiency curve is flat there; the per-access latency is left to the repair step).
        per_byte: dict[str, float] = {}
        opts = RuntimeSettings(allow_offload=req.allow_offload)
        for t in allowed[1:]:
            if t.role == "on_chip":
                per_byte[t.name] = 0.0
                continue
            n = 1e9
            per_byte[t.name] = (stream_time_s(dev, t, 2 * n, opts) - stream_time_s(dev, t, n, opts)) / n
        (groups, classes, ccls, copt, ctier, cstage, by, pr, de, spre, sdec, bp, sc, sk, srows, saux, sconst, notes,
         offered) = self._columns(req, layout, base, kv, tiers, per_byte)

        # Baseline: every group at the 16-bit format, weights forced onto the device tier so
        # that no streaming hides inside the fixed costs.
        base_choice = Choice(weights=base, activations=base, kv=kv, sparsity="dense")
        est0 = estimate_inference(self.arch, dev, layout, serving, base_choice,
                                  options=RuntimeSettings(placement={dev_tier.name: 1.0}))
        base_costs = self._type_costs(layout, serving, Option(weights=base, activations=base), kv)
        counts: dict[tuple[str, str], int] = {}
        for g in groups:
            counts[(g.block, g.name)] = counts.get((g.block, g.name), 0) + 1
        for k in base_costs:
            if k not in counts:
                raise EstimateError("model", f"cost model group {k} has no decision group")
        sum_pre = sum(base_costs[k][1] * n for k, n in counts.items())
        sum_dec = sum(base_costs[k][2] * n for k, n in counts.items())
        # One synchronisation per forward pass (costmodel.estimate_inference); TTFT =
        # a·prefill + step with a = (m + pp − 1)/pp for m micro-batches, read off the baseline.
        step = dev.efficiency.kernel_overhead_s
        p0_pre = est0.prefill.time_s
        fixed_pre = p0_pre - sum_pre
        pipe = (est0.ttft_s - step) / p0_pre if p0_pre > 0 else 1.0
        fixed_dec = est0.decode.time_s - sum_dec if (est0.decode is not None and generative) else 0.0

        fixed_bytes = {t.name: 0.0 for t in dev.tiers}
        for tu in est0.memory.tiers:
            fixed_bytes[tu.name] = tu.kv_cache_bytes + tu.activations_bytes
        stage_fixed = self._norm_bytes(layout)  # 16-bit norm weights: stored, but not a decision
        caps = {}
        for t in allowed:
            cap = dev.memory_capacity_bytes if t.name == dev_tier.name else t.capacity_bytes
            if t.name == dev_tier.name and req.max_memory_per_device_bytes is not None:
                cap = min(cap, req.max_memory_per_device_bytes)
            caps[t.name] = cap
        return _Formulation(
            layout=layout, kv=get_format(kv).name, base=base, groups=groups, classes=classes, tiers=tiers,
            col_class=ccls, col_option=copt, col_tier=ctier, col_stage=cstage, bytes_=by, pre_s=pr, dec_s=de,
            stream_pre_s=spre, stream_dec_s=sdec, bits_params=bp, sens_col=sc, sens_key=sk, sens_rows=srows,
            sens_aux=saux, sens_const=sconst, params_total=float(sum(g.params for g in groups)),
            kv_sens=float(self.sensitivity.kv_score(kv, groups)), fixed_pre_s=fixed_pre, fixed_dec_s=fixed_dec,
            comm_pre_s=est0.prefill.comm_s, comm_dec_s=est0.decode.comm_s if est0.decode is not None else 0.0,
            pipe_factor=pipe, step_s=step, generative=generative, gen=serving.gen, fixed_bytes=fixed_bytes,
            caps=caps, base_estimate=est0, notes=notes, offered=offered, stage_fixed=stage_fixed,
        )

    def _norm_bytes(self, layout: Layout) -> tuple[float, ...]:
        """Per pipeline stage, bytes of weights outside every decision group (norms, kept in
        16 bits by the cost model), placed like the groups: layers split evenly, the pre
        block on the first stage, the post block on the last."""
        pp = layout.pp
        out = [0.0] * pp
        n_layers = sum(b.count for b in self.work.blocks if b.repeated)
        base = 0
        for b in self.work.blocks:
            per = sum(op.weight_params * 2.0 for op in b.ops if not op.is_weighted and op.weight_params)
            if not per:
                base += b.count if b.repeated else 0
                continue
            if b.repeated:
                for i in range(b.count):
                    layer = base + i
                    s = next(k for k in range(pp) if (n_layers * k) // pp <= layer < (n_layers * (k + 1)) // pp)
                    out[s] += per
                base += b.count
            else:
                out[0 if b.stage == "pre" or n_layers == 0 else pp - 1] += per * b.count
        return tuple(out)

    # -- the ILP ---------------------------------------------------------------------------

    def _problem(self, f: _Formulation, req: PlanRequest, tighten: Mapping[str, float]) -> Problem:
        n = f.col_class.size
        rows: list[Row] = list(f.sens_rows)
        aux = [AuxVar(name="P_prefill", lb=0.0)] + list(f.sens_aux)
        stage = f.col_stage
        pp = f.layout.pp
        for ti, tname in enumerate(f.tiers):
            on_t = f.col_tier == ti
            for s in range(pp):
                name = f"memory_{tname}" + (f"_stage{s}" if pp > 1 else "")
                coeffs = np.where(on_t & (stage == s), f.bytes_, 0.0)
                rhs = f.caps[tname] - f.fixed_bytes.get(tname, 0.0) - tighten.get(f"memory_{tname}", 0.0)
                if ti == 0 and f.stage_fixed:
                    rhs -= f.stage_fixed[s]
                rows.append(Row(name=name, coeffs=coeffs, sense="<=", rhs=rhs))
        streams = len(f.tiers) > 1
        rows.append(Row(name="prefill_time", coeffs=f.pre_s, sense="<=", rhs=-f.fixed_pre_s, aux={"P_prefill": -1.0}))
        if streams:
            rows.append(Row(name="prefill_stream", coeffs=f.stream_pre_s, sense="<=", rhs=-f.comm_pre_s,
                            aux={"P_prefill": -1.0}))
        if f.generative:
            aux.append(AuxVar(name="P_decode", lb=0.0))
            rows.append(Row(name="decode_time", coeffs=f.dec_s, sense="<=", rhs=-f.fixed_dec_s, aux={"P_decode": -1.0}))
            if streams:
                rows.append(Row(name="decode_stream", coeffs=f.stream_dec_s, sense="<=", rhs=-f.comm_dec_s,
                                aux={"P_decode": -1.0}))
        zeros = np.zeros(n)
        if req.ttft_slo_s is not None:
            rhs = (req.ttft_slo_s - f.step_s) / f.pipe_factor - tighten.get("ttft_slo", 0.0)
            rows.append(Row(name="ttft_slo", coeffs=zeros, sense="<=", rhs=rhs, aux={"P_prefill": 1.0}))
        if req.tpot_slo_s is not None and f.generative:
            rhs = req.tpot_slo_s - f.step_s - tighten.get("tpot_slo", 0.0)
            rows.append(Row(name="tpot_slo", coeffs=zeros, sense="<=", rhs=rhs, aux={"P_decode": 1.0}))
        if req.avg_bits is not None:
            rows.append(Row(name="avg_bits", coeffs=f.bits_params, sense="<=",
                            rhs=req.avg_bits * f.params_total - tighten.get("avg_bits", 0.0)))
        # Largest per-device footprint (all tiers): for the memory objective.
        aux.append(AuxVar(name="M_max", lb=0.0))
        fixed_all = sum(f.fixed_bytes.values())
        for s in range(pp):
            rows.append(Row(name=f"footprint_stage{s}", coeffs=np.where(stage == s, f.bytes_, 0.0), sense="<=",
                            rhs=-fixed_all - (f.stage_fixed[s] if f.stage_fixed else 0.0), aux={"M_max": -1.0}))
        sizes = np.array([len(c.members) for c in f.classes], dtype=np.int64)
        return Problem(groups=tuple(c.name for c in f.classes), column_group=f.col_class, cost=f.sens_col,
                       rows=tuple(rows), aux=tuple(aux), group_size=sizes)

    def _latency_terms(self, f: _Formulation) -> dict[str, float]:
        """Request latency = a·P_prefill + (gen − 1)·P_decode + constant."""
        terms = {"P_prefill": f.pipe_factor}
        if f.generative:
            terms["P_decode"] = float(max(f.gen - 1, 0))
        return terms

    def _objective(self, f: _Formulation, problem: Problem, which: str, req: PlanRequest,
                   refs: Mapping[str, float], cols: np.ndarray | None = None) -> tuple[np.ndarray, list[AuxVar]]:
        """Cost vector and auxiliaries (with costs) of an objective; constants are dropped
        (sensitivity: ``f.sens_const``; latency: the per-pass overheads). ``cols``: the
        formulation's columns ``problem`` keeps (after :meth:`Problem.subset`)."""
        n = problem.num_columns
        aux_cost: dict[str, float] = {}
        cost = np.zeros(n)
        sens_col = f.sens_col if cols is None else f.sens_col[cols]
        if sens_col.size != n:
            raise ValueError(f"objective over {n} columns needs the matching column subset ({sens_col.size} given)")

        def add_sens(weight: float) -> None:
            nonlocal cost
            cost = cost + weight * sens_col
            for a in f.sens_aux:
                if a.name.startswith("z_"):
                    aux_cost[a.name] = aux_cost.get(a.name, 0.0) + weight

        if which == "accuracy":
            add_sens(1.0)
        elif which in ("latency", "cost"):
            aux_cost.update(self._latency_terms(f))
        elif which == "memory":
            aux_cost["M_max"] = 1.0
        elif which == "weighted":
            w = req.objective_weights
            if w.get("accuracy"):
                add_sens(w["accuracy"] / refs["sensitivity"])
            if w.get("latency"):
                for k, v in self._latency_terms(f).items():
                    aux_cost[k] = aux_cost.get(k, 0.0) + w["latency"] * v / refs["latency"]
            if w.get("memory"):
                aux_cost["M_max"] = aux_cost.get("M_max", 0.0) + w["memory"] / refs["memory"]
        else:  # pragma: no cover - validated by PlanRequest
            raise ValueError(which)
        aux = [replace(a, cost=aux_cost.get(a.name, 0.0)) for a in problem.aux]
        return cost, aux

    def _solve_candidate(self, f: _Formulation, req: PlanRequest, refs: Mapping[str, float],
                         deadline: float) -> tuple[Plan, InferenceEstimate, Solution] | None:
        """ILP → plan → re-evaluation, tightening rows the re-evaluation finds violated."""
        primary, secondary = _OBJECTIVE_ORDER[req.objective]
        for device_only in (False, True):
            if device_only and len(f.tiers) == 1:
                break
            tighten: dict[str, float] = {}
            for _round in range(_REPAIR_ROUNDS + 1):
                problem = self._problem(f, req, tighten)
                cols = np.arange(f.col_class.size)
                if device_only:
                    # Fallback where the streaming linearisation disagrees with the cost model:
                    # every weight on the device tier, where the ILP's times are exact.
                    cols = np.flatnonzero(f.col_tier == 0)
                    problem = problem.subset(cols)
                f.problem = problem
                left = max(deadline - time.perf_counter(), 0.5)
                cost, aux = self._objective(f, problem, primary, req, refs, cols)
                try:
                    sol = solve(problem.with_cost(cost, aux), backend=req.backend, time_limit_s=left, gap=req.gap)
                    if secondary is not None:
                        sol = self._lexicographic(f, problem, sol, cost, aux, secondary, req, refs, deadline, cols)
                except InfeasibleError:
                    break
                if device_only:
                    sol = _expand(sol, cols, f.col_class)
                plan, est, bad = self._assemble(f, req, sol, refs)
                if not bad:
                    return plan, est, sol
                # Tighten each violated row by its excess as the ILP saw it: the ILP's own value
                # minus what the re-evaluation says is left (5 % margin).
                for name, excess in bad.items():
                    if name == "ttft_slo":
                        tighten[name] = tighten.get(name, 0.0) + excess / f.pipe_factor * 1.05 + 1e-9
                    elif name in ("tpot_slo", "avg_bits"):
                        tighten[name] = tighten.get(name, 0.0) + excess * 1.05 + 1e-9
                    else:
                        tighten[name] = tighten.get(name, 0.0) + excess * 1.05 + 1.0
        return None

    def _lexicographic(self, f: _Formulation, problem: Problem, first: Solution, cost: np.ndarray,
                       aux: Sequence[AuxVar], secondary: str, req: PlanRequest, refs: Mapping[str, float],
                       deadline: float, cols: np.ndarray | None = None) -> Solution:
        """Break ties of the primary objective with the secondary one.

        Only exact ties are considered: within a class, the columns whose coefficients in
        the primary objective equal those of a column the first solution uses (for
        accuracy: the same option on another memory tier). The second ILP keeps the count
        of every such tie set, so the primary objective cannot change; it runs over those
        columns only, starts from the first solution and can only improve the secondary
        objective (request latency breaks the remaining ties)."""
        base_cols = np.arange(f.col_class.size) if cols is None else np.asarray(cols)
        keys = _primary_keys(f, req.objective)[base_cols]
        col_class = f.col_class[base_cols]
        counts = np.asarray(first.counts)
        tie_of: dict[tuple, list[int]] = {}
        for j in range(base_cols.size):
            tie_of.setdefault((int(col_class[j]), *np.round(keys[j], 15)), []).append(j)
        used = [cols for cols in tie_of.values() if counts[cols].sum() > 0]
        if all(len(cols) == 1 for cols in used):
            return first
        keep = np.array(sorted(j for cols in used for j in cols), dtype=np.int64)
        where = {int(j): k for k, j in enumerate(keep)}
        sub = problem.subset(keep)
        fix = []
        for i, cols in enumerate(used):
            if len(cols) > 1:
                coeffs = np.zeros(keep.size)
                coeffs[[where[j] for j in cols]] = 1.0
                fix.append(Row(name=f"tie_{i}", coeffs=coeffs, sense="==", rhs=float(counts[cols].sum())))
        sub = sub.with_rows(fix)
        cost2, aux2 = self._objective(f, sub, secondary, req, refs, base_cols[keep])
        if secondary != "latency":
            lat_cost, lat_aux = self._objective(f, sub, "latency", req, refs, base_cols[keep])
            scale2 = max(float(np.max(np.abs(cost2))), max((abs(a.cost) for a in aux2), default=0.0), 1e-300)
            lat_scale = max(abs(a.cost) for a in lat_aux) or 1.0
            aux2 = [replace(a, cost=a.cost + 1e-6 * scale2 * b.cost / lat_scale) for a, b in zip(aux2, lat_aux)]
            cost2 = cost2 + 1e-6 * scale2 * lat_cost / lat_scale
        left = max(min(deadline - time.perf_counter(), 2.0 * first.time_s + 1.0), 0.2)
        try:
            second = solve(sub.with_cost(cost2, aux2), backend=req.backend, time_limit_s=left, gap=req.gap,
                           start=counts[keep], aux_start=first.aux_values)
        except (InfeasibleError, SolverError):
            return first
        full = np.zeros(base_cols.size, dtype=np.int64)
        full[keep] = np.asarray(second.counts)
        obj, act = problem.with_cost(cost, aux).evaluate(full, second.aux_values)
        gaps = [g for g in (first.gap, second.gap) if g is not None]
        return Solution(counts=tuple(int(c) for c in full), aux_values=second.aux_values, objective=obj,
                        bound=first.bound, gap=max(gaps) if gaps else None,
                        status="optimal" if first.status == second.status == "optimal" else "feasible",
                        backend=second.backend, time_s=first.time_s + second.time_s, variables=first.variables,
                        constraints=first.constraints, row_activity=act, column_group=first.column_group)

    # -- plan assembly and independent re-evaluation ---------------------------------------

    def _assignment(self, f: _Formulation, sol: Solution) -> dict[int, tuple[int, int, int]]:
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

    def _choices(self, f: _Formulation, assign: Mapping[int, tuple[int, int, int]]) -> dict[str, GroupChoice]:
        out = {}
        for gi, g in enumerate(f.groups):
            ci, oi, ti = assign[gi]
            o = f.classes[ci].options[oi]
            out[g.fqn] = GroupChoice(weights=o.weights, sparsity=o.sparsity, activations=o.activations,
                                     tier=f.tiers[ti], low_rank=o.low_rank)
        return out

    def _placement(self, f: _Formulation, assign: Mapping[int, tuple[int, int, int]]) -> dict[str, float] | None:
        """Weight fraction per tier of the heaviest pipeline stage (the one the cost model
        reports), or None when every weight is on the device tier."""
        if all(ti == 0 for _, _, ti in assign.values()):
            return None
        per = np.zeros((f.layout.pp, len(f.tiers)))
        for gi, (ci, oi, ti) in assign.items():
            c = f.classes[ci]
            per[c.stage, ti] += c.coeffs[oi][0]
        s = int(np.argmax(per.sum(axis=1)))
        total = float(per[s].sum())
        if total <= 0:
            return None
        return {tname: float(per[s, ti]) / total for ti, tname in enumerate(f.tiers) if per[s, ti] > 0}

    def evaluate(self, plan: Plan) -> InferenceEstimate:
        """Independent re-evaluation of a plan by the cost model (its overrides and tier
        placement); what :attr:`Plan.predicted` records."""
        return estimate_inference(self.arch, self.device, plan.layout.to_layout(), plan.workload.to_serving(),
                                  plan.default_choice(), overrides=plan.overrides(),
                                  options=RuntimeSettings(allow_offload=plan.constraints.allow_offload,
                                                  placement=plan.placement()))

    def _assemble(self, f: _Formulation, req: PlanRequest, sol: Solution,
                  refs: Mapping[str, float]) -> tuple[Plan, InferenceEstimate, dict[str, float]]:
        assign = self._assignment(f, sol)
        choices = self._choices(f, assign)
        placement = self._placement(f, assign)
        layout = f.layout
        serving = req.serving
        default = Choice(weights="bf16", activations=f.base, kv=f.kv, sparsity="dense")
        est = estimate_inference(self.arch, self.device, layout, serving, default,
                                 overrides={k: c.to_choice(f.kv) for k, c in choices.items()},
                                 options=RuntimeSettings(allow_offload=req.allow_offload, placement=placement))
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
        if req.ttft_slo_s is not None and est.ttft_s > req.ttft_slo_s * (1 + 1e-9):
            bad["ttft_slo"] = est.ttft_s - req.ttft_slo_s
        if req.tpot_slo_s is not None and f.generative and est.tpot_s > req.tpot_slo_s * (1 + 1e-9):
            bad["tpot_slo"] = est.tpot_s - req.tpot_slo_s
        if req.avg_bits is not None and avg_bits > req.avg_bits * (1 + 1e-9):
            bad["avg_bits"] = (avg_bits - req.avg_bits) * f.params_total
        per_layer = self._per_layer(f, assign, group_sens)
        notes = list(est.notes) + list(f.notes)
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
        )
        primary = _objective_value(req.objective, predicted, req, refs)
        stats = SolverStats(backend=sol.backend, status=sol.status, objective=primary, gap=sol.gap,
                            time_s=sol.time_s, variables=sol.variables, constraints=sol.constraints)
        plan = Plan(
            tool_version=tool_version(), created_at=utc_now(), model=self.arch.id, hardware=self.device.id,
            model_hash=content_hash(self.arch), hardware_hash=_hardware_hash(self.device),
            layout=PlanLayout.from_layout(layout), devices=layout.devices,
            workload=PlanWorkload(batch=req.batch, prompt=req.prompt, gen=req.gen),
            constraints=PlanConstraints(max_memory_per_device_bytes=req.max_memory_per_device_bytes,
                                        ttft_slo_s=req.ttft_slo_s, tpot_slo_s=req.tpot_slo_s, avg_bits=req.avg_bits,
                                        allow_offload=req.allow_offload, pins=dict(req.pins)),
            objective=req.objective, kv=f.kv, activations=f.base, choices=choices, predicted=predicted,
            solver=stats, sensitivity_source=self.sensitivity.source,
        )
        return plan, est, bad

    def _per_layer(self, f: _Formulation, assign: Mapping[int, tuple[int, int, int]],
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


    # -- the search ------------------------------------------------------------------------

    def _kv_candidates(self, req: PlanRequest, base: str) -> list[str]:
        if req.kv is not None:
            fmt = get_format(req.kv)
            if not fmt.is_kv:
                raise EstimateError("kv", f"--kv {req.kv!r} is not a KV-cache format")
            if self.device.supports(fmt.name) == "unsupported":
                raise EstimateError("kv", f"--kv {fmt.name} is not supported on {self.device.id}")
            return [fmt.name]
        if self.arch.family not in ("decoder", "encoder_decoder"):
            return [base]
        out = [base]
        for k in DEFAULT_KV_FORMATS:
            if self.device.supports(k) != "unsupported" and get_format(k).name not in out:
                out.append(get_format(k).name)
        return out

    def _refs(self, req: PlanRequest, f: _Formulation) -> dict[str, float]:
        smax = sum(float(c.alpha.sum() * c.sigma.max()) for c in f.classes)
        lat = f.base_estimate.latency_s
        return {"sensitivity": max(smax, 1e-12), "latency": max(lat, 1e-12),
                "memory": self.device.memory_capacity_bytes}

    def _bound(self, f: _Formulation, req: PlanRequest, refs: Mapping[str, float], deadline: float) -> float | None:
        """LP-relaxation lower bound of the candidate's primary objective (None = infeasible)."""
        problem = self._problem(f, req, {})
        primary = _OBJECTIVE_ORDER[req.objective][0]
        cost, aux = self._objective(f, problem, primary, req, refs)
        try:
            lp = solve(problem.with_cost(cost, aux), backend="highs", relax=True,
                       time_limit_s=max(deadline - time.perf_counter(), 0.5))
        except InfeasibleError:
            return None
        except SolverError:
            return -math.inf
        value = lp.bound if lp.bound is not None else lp.objective
        if req.objective == "accuracy":
            return value + f.sens_const + f.kv_sens
        if req.objective == "latency":
            return value + f.step_s * (1 + (max(f.gen - 1, 0) if f.generative else 0))
        if req.objective == "cost":
            lat = value + f.step_s * (1 + (max(f.gen - 1, 0) if f.generative else 0))
            return _usd_per_million(self.device, f.layout, req, lat)
        if req.objective == "memory":
            return value
        w = req.objective_weights
        steps = f.step_s * (1 + (max(f.gen - 1, 0) if f.generative else 0))
        return (value + w.get("accuracy", 0.0) * (f.sens_const + f.kv_sens) / refs["sensitivity"]
                + w.get("latency", 0.0) * steps / refs["latency"])

    def solve(self, req: PlanRequest, *, diagnose_failure: bool = True) -> Plan:
        """The best plan for ``req`` over layouts and KV formats (see the module docstring).
        Raises :class:`~planner.diagnose.NoFeasiblePlanError` (with a diagnosis) when
        nothing satisfies the constraints."""
        t0 = time.perf_counter()
        deadline = t0 + req.time_limit_s
        base = req.activations or base_activation_format(self.device)
        layouts = _ordered_layouts(self.arch, self.device, req)
        kvs = self._kv_candidates(req, base)
        forms: list[_Formulation] = []
        for lay in layouts:
            for kv in kvs:
                forms.append(self._formulate(req, lay, kv))
        refs = self._refs(req, forms[0])
        bounded = []
        for f in forms:
            b = self._bound(f, req, refs, deadline)
            if b is not None:
                bounded.append((b, len(bounded), f))
        bounded.sort(key=lambda t: (t[0], t[1]))
        best: tuple[tuple, Plan, Solution] | None = None
        solved = 0
        statuses: list[str] = []
        for b, _, f in bounded:
            if best is not None and b > best[0][0] + _REL_TOL * max(abs(best[0][0]), 1e-12):
                break
            if time.perf_counter() > deadline and best is not None:
                statuses.append("time_limit")
                break
            got = self._solve_candidate(f, req, refs, deadline)
            solved += 1
            if got is None:
                continue
            plan, est, sol = got
            key = _compare_key(req.objective, plan, req, refs)
            if best is None or _better(key, best[0]):
                best = (key, plan, sol)
        if best is None:
            if not diagnose_failure:
                raise NoFeasiblePlanError("no plan satisfies the constraints", diagnosis=None)
            raise NoFeasiblePlanError.from_diagnosis(diagnose(self, req))
        _, plan, sol = best
        status = plan.solver.status if "time_limit" not in statuses else "feasible"
        stats = replace(plan.solver, status=status, time_s=time.perf_counter() - t0, candidates_solved=max(solved, 1))
        return replace(plan, solver=stats)

    # -- minimal footprints for the diagnosis --------------------------------------------

    def minimum(self, req: PlanRequest, what: str) -> tuple[float, Plan | None]:
        """Smallest achievable ``memory`` (device-tier bytes per device), ``ttft`` or
        ``tpot`` over layouts and KV formats, ignoring every other constraint."""
        relaxed = replace(req, max_memory_per_device_bytes=None, ttft_slo_s=None, tpot_slo_s=None, avg_bits=None,
                          objective={"memory": "memory", "ttft": "latency", "tpot": "latency"}[what],
                          allow_offload=req.allow_offload if what != "memory" else False)
        best = (math.inf, None)
        base = relaxed.activations or base_activation_format(self.device)
        deadline = time.perf_counter() + relaxed.time_limit_s
        for lay in _ordered_layouts(self.arch, self.device, relaxed):
            for kv in self._kv_candidates(relaxed, base):
                f = self._formulate(relaxed, lay, kv)
                refs = self._refs(relaxed, f)
                problem = self._problem_uncapped(f, relaxed)
                cost, aux = self._objective(f, problem, "memory" if what == "memory" else "latency", relaxed, refs)
                try:
                    sol = solve(problem.with_cost(cost, aux), backend=relaxed.backend,
                                time_limit_s=max(deadline - time.perf_counter(), 1.0), gap=relaxed.gap)
                except (InfeasibleError, SolverError):
                    continue
                plan, est, _ = self._assemble(f, relaxed, sol, refs)
                value = {"memory": est.memory.per_device_bytes, "ttft": est.ttft_s, "tpot": est.tpot_s}[what]
                if value < best[0]:
                    best = (value, plan)
        return best

    def _problem_uncapped(self, f: _Formulation, req: PlanRequest) -> Problem:
        problem = self._problem(f, req, {})
        return problem.without_rows([r.name for r in problem.rows if r.name.startswith("memory_")])

    # -- Pareto and bisection ------------------------------------------------------------

    def pareto(self, req: PlanRequest, n: int) -> list[Plan]:
        """Up to ``n`` non-dominated plans over (sensitivity, per-device memory, request
        latency), from the most accurate to the smallest (see :func:`pareto_front`)."""
        return pareto_front(self, req, n)

    def bisect(self, req: PlanRequest, evaluator: Callable[[Plan], float], band: tuple[float, float], *,
               levels: int = 16, max_rounds: int | None = None) -> BisectResult:
        """Most compressed plan whose *measured* degradation (``evaluator``) is at most
        ``band[1]``, stopping early inside ``band``; the memory budget is bisected over
        ``levels`` steps between the most accurate and the smallest plan."""
        hi_plan = self.solve(replace(req, objective="accuracy"))
        lo_mem, _ = self.minimum(req, "memory")
        top = hi_plan.predicted.per_device_bytes
        budgets = [top - (top - lo_mem) * i / max(levels - 1, 1) for i in range(levels)]

        def make(i: int) -> Plan | None:
            if i == 0:
                return hi_plan
            try:
                return self.solve(replace(req, objective="accuracy",
                                          max_memory_per_device_bytes=_min_opt(req.max_memory_per_device_bytes,
                                                                               budgets[i] * (1 + 1e-9))),
                                  diagnose_failure=False)
            except NoFeasiblePlanError:
                return None

        return bisect_ladder(levels, make, evaluator, band, max_rounds=max_rounds)


def _min_opt(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


# ---------------------------------------------------------------------------
# Objectives across candidates
# ---------------------------------------------------------------------------

_OBJECTIVE_ORDER: dict[str, tuple[str, str | None]] = {
    "accuracy": ("accuracy", "latency"),
    "latency": ("latency", "accuracy"),
    "cost": ("cost", "accuracy"),
    "memory": ("memory", "accuracy"),
    "weighted": ("weighted", None),
}


def _usd_per_million(device: DeviceSpec, layout: Layout, req: PlanRequest, latency_s: float) -> float:
    tokens = req.batch * (req.gen if req.gen > 0 else max(req.prompt, 1))
    tps = layout.dp * tokens / latency_s if latency_s > 0 else 0.0
    return device.usd_per_hour * layout.devices / 3600.0 / tps * 1e6 if tps > 0 else math.inf


def _objective_value(objective: str, p: Predicted, req: PlanRequest, refs: Mapping[str, float]) -> float:
    if objective == "accuracy":
        return p.sensitivity
    if objective == "latency":
        return p.latency_s
    if objective == "memory":
        return p.per_device_bytes
    if objective == "cost":
        return p.usd_per_million_tokens if p.usd_per_million_tokens is not None else 1e300
    w = req.objective_weights
    return (w.get("accuracy", 0.0) * p.sensitivity / refs["sensitivity"]
            + w.get("latency", 0.0) * p.latency_s / refs["latency"]
            + w.get("memory", 0.0) * p.per_device_bytes / refs["memory"])


def _compare_key(objective: str, plan: Plan, req: PlanRequest, refs: Mapping[str, float]) -> tuple:
    p = plan.predicted
    primary = _objective_value(objective, p, req, refs)
    secondary = {"accuracy": p.latency_s}.get(objective, p.sensitivity)
    return (primary, secondary, p.per_device_bytes)


def _better(a: tuple, b: tuple) -> bool:
    for x, y in zip(a, b):
        tol = _REL_TOL * max(abs(x), abs(y), 1e-300)
        if x < y - tol:
            return True
        if x > y + tol:
            return False
    return False


def _hardware_hash(device: DeviceSpec) -> str:
    h = getattr(device, "content_hash", "")
    if isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h):
        return "sha256:" + h
    from hwmodels import device_to_dict

    return content_hash(device_to_dict(device))


# ---------------------------------------------------------------------------
# Pareto frontier
# ---------------------------------------------------------------------------


def _metrics(plan: Plan) -> tuple[float, float, float]:
    p = plan.predicted
    return (p.sensitivity, p.per_device_bytes, p.latency_s)


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated(plans: Sequence[Plan]) -> list[Plan]:
    """Plans no other plan dominates on (sensitivity, memory, latency); duplicates dropped."""
    out: list[Plan] = []
    seen: set[tuple] = set()
    for p in plans:
        m = _metrics(p)
        if any(_dominates(_metrics(q), m) for q in plans):
            continue
        sig = tuple(round(v, 12) for v in m)
        if sig in seen:
            continue
        seen.add(sig)
        out.append(p)
    return sorted(out, key=_metrics)


def pareto_front(planner: Planner, req: PlanRequest, n: int) -> list[Plan]:
    """``n`` (or fewer, when fewer exist) non-dominated plans.

    ε-constraint sweep: the most accurate plan and the smallest plan bound the memory
    range; the budget is stepped between them and each step solved for accuracy (then
    latency). Gaps between neighbours are bisected until ``n`` distinct plans exist or
    the range is exhausted; a final dominance filter keeps only non-dominated plans.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise EstimateError("pareto", f"--pareto must be a positive integer; got {n!r}")
    top = planner.solve(replace(req, objective="accuracy"))
    if n == 1:
        return [top]
    smallest = planner.solve(replace(req, objective="memory"), diagnose_failure=False)
    lo, hi = smallest.predicted.per_device_bytes, top.predicted.per_device_bytes
    plans = [top, smallest]
    budgets = [hi - (hi - lo) * k / (n - 1) for k in range(1, n - 1)]
    tried: set[float] = set()

    def run(budget: float) -> None:
        key = round(budget, 3)
        if key in tried:
            return
        tried.add(key)
        cap = _min_opt(req.max_memory_per_device_bytes, budget)
        try:
            plans.append(planner.solve(replace(req, objective="accuracy", max_memory_per_device_bytes=cap),
                                       diagnose_failure=False))
        except NoFeasiblePlanError:
            pass

    for b in budgets:
        run(b)
    for _ in range(3 * n):
        front = non_dominated(plans)
        if len(front) >= n:
            break
        mems = sorted({p.predicted.per_device_bytes for p in front})
        gaps = sorted(((b - a, a, b) for a, b in zip(mems, mems[1:])), reverse=True)
        progressed = False
        for width, a, b in gaps:
            if width <= max(1e-6 * b, 1.0) or round((a + b) / 2, 3) in tried:
                continue
            run((a + b) / 2)
            progressed = True
            break
        if not progressed:
            break
    front = non_dominated(plans)
    if len(front) > n:
        # Keep the end points and spread the rest evenly along memory.
        idx = sorted({round(i * (len(front) - 1) / (n - 1)) for i in range(n)})
        front = [front[i] for i in idx]
    return front


# ---------------------------------------------------------------------------
# Bisection against a measured degradation
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BisectResult:
    """Outcome of :func:`bisect_ladder`: the chosen plan (most compressed with a measured
    degradation ≤ the band's upper end; ``None`` if even the least compressed plan fails),
    its degradation, whether it lies inside the band, and every evaluation made
    (ladder index, degradation)."""

    plan: Any
    degradation: float | None
    inside_band: bool
    evaluations: tuple[tuple[int, float], ...]
    index: int | None


def bisect_ladder(n: int, make: Callable[[int], Any], evaluator: Callable[[Any], float],
                  band: tuple[float, float], *, max_rounds: int | None = None) -> BisectResult:
    """Bisect a ladder of ``n`` candidates ordered from least to most compressed.

    ``make(i)`` builds candidate ``i`` (``None`` when infeasible: treated as failing);
    ``evaluator(candidate)`` returns its measured degradation, assumed non-decreasing
    along the ladder. Searches for the largest ``i`` with degradation ≤ ``band[1]``,
    stopping as soon as one lands inside ``[band[0], band[1]]``. At most
    ``⌈log₂(n + 1)⌉`` evaluations (or ``max_rounds``); identical candidates are evaluated
    once. The best feasible candidate seen is always kept.
    """
    lo_t, hi_t = band
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"The 'n' parameter of bisect_ladder must be an int in [1, inf). Got {n!r} instead.")
    if not (math.isfinite(lo_t) and math.isfinite(hi_t) and lo_t <= hi_t):
        raise ValueError(f"The 'band' parameter of bisect_ladder must be (lo, hi) with lo <= hi. Got {band!r} instead.")
    limit = max_rounds if max_rounds is not None else math.ceil(math.log2(n + 1))
    evals: list[tuple[int, float]] = []
    memo: dict[Any, float] = {}
    built: dict[int, Any] = {}
    best: tuple[int, Any, float] | None = None

    def measure(i: int) -> float:
        if i not in built:
            built[i] = make(i)
        cand = built[i]
        if cand is None:
            return math.inf
        sig = _signature(cand)
        if sig in memo:
            return memo[sig]
        d = float(evaluator(cand))
        memo[sig] = d
        evals.append((i, d))
        return d

    lo, hi = -1, n  # invariant: candidates <= lo pass (degradation <= hi_t), >= hi fail
    while hi - lo > 1 and len(evals) < limit:
        mid = (lo + hi) // 2
        d = measure(mid)
        if d <= hi_t:
            lo = mid
            if best is None or mid > best[0]:
                best = (mid, built[mid], d)
            if d >= lo_t:
                break
        else:
            hi = mid
    if best is None:
        return BisectResult(plan=None, degradation=None, inside_band=False, evaluations=tuple(evals), index=None)
    i, cand, d = best
    return BisectResult(plan=cand, degradation=d, inside_band=lo_t <= d <= hi_t, evaluations=tuple(evals), index=i)


def _signature(candidate: Any) -> Any:
    if isinstance(candidate, Plan):
        return (candidate.layout, candidate.kv, tuple((k, c.weights, c.sparsity, c.activations, c.tier, c.low_rank)
                                                      for k, c in candidate.choices.items()))
    try:
        hash(candidate)
        return candidate
    except TypeError:
        return id(candidate)


# ---------------------------------------------------------------------------
# Library entry point
# ---------------------------------------------------------------------------


def solve_plan(model: str | ArchSpec, hardware: str | DeviceSpec, *, sensitivity: Sensitivity | str | None = None,
               **request: Any) -> Plan:
    """Solve a compression + parallelism plan.

    ``model`` / ``hardware``: catalog ids, config/profile paths, or loaded specs.
    ``request``: the fields of :class:`PlanRequest` (``devices``, ``tp``, ``pp``, ``dp``,
    ``batch``, ``prompt``, ``gen``, ``max_memory_per_device_bytes``, ``ttft_slo_s``,
    ``tpot_slo_s``, ``avg_bits``, ``allow_offload``, ``objective``, ``objective_weights``,
    ``formats``, ``sparsity``, ``kv``, ``activations``, ``pins``, ``low_rank``, ``backend``,
    ``time_limit_s``, ``gap``). Raises :class:`~planner.diagnose.NoFeasiblePlanError`
    with a diagnosis when nothing fits.
    """
    arch = model if isinstance(model, ArchSpec) else _load_arch(model)
    device = hardware if isinstance(hardware, DeviceSpec) else _load_device(hardware)
    for k in ("formats", "sparsity", "low_rank"):
        if request.get(k) is not None and not isinstance(request[k], (str, bytes)):
            request[k] = tuple(request[k])
    return Planner(arch, device, sensitivity=sensitivity).solve(PlanRequest(**request))


def _load_arch(ref: str) -> ArchSpec:
    from planner.arch import load_arch

    return load_arch(ref)


def _load_device(ref: str) -> DeviceSpec:
    from hwmodels import load_device

    return load_device(ref)

