"""One candidate (parallel layout, KV format) as an integer program.

Coefficients come from the cost model's additive per-group costs
(:func:`planner.costmodel.group_costs`), computed once per (layout, option) and shared by
every KV format, re-solve, Pareto point and diagnosis phase (the caches live on the
:class:`~planner.search.Planner`). Interchangeable decision groups (identical layers)
are aggregated into one class whose columns count how many members take each option; the
sensitivity of such a class is convex in those counts and enters through an epigraph
whose segment rows are generated lazily (:class:`SensitivitySteps`): a solve starts with a
few of them and adds the ones its point violates, which leaves the optimum unchanged.
See :mod:`planner.search` for the rows and objectives.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from planner.costmodel import (
    Choice,
    EstimateError,
    InferenceEstimate,
    Layout,
    RuntimeSettings,
    Serving,
    allowed_tiers,
    estimate_inference,
    group_costs,
    low_rank_factor,
    stream_time_s,
)
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
)
from planner.search_problem import PlanProblem, relative_weights
from planner.serving import engine_settings
from planner.solver import AuxVar, Problem, Row, Solution

__all__ = ["Formulation", "FormulationMixin", "OptionClass", "SensitivitySteps", "expand_subset", "primary_keys"]



def engine_options(req: PlanProblem) -> RuntimeSettings:
    """The serving engine's runtime facts (its profile's runtime block: runtime context, fused
    kernels, step overhead, compute unit, separate dequantization, ...) that a plan for it is
    priced with — the same settings ``tierwise estimate --engine`` uses, so the ILP's
    coefficients, its baseline and the assembled plan's estimate agree with an estimate of the
    plan's configuration. No engine: the cost model's defaults."""
    return RuntimeSettings() if req.engine is None else _runtime_options(req.engine.runtime)


@functools.lru_cache(maxsize=64)
def _runtime_options(runtime) -> RuntimeSettings:
    """One engine runtime block's settings, built once (the planner asks per option and candidate). The
    embedding and LM head the engine keeps in 16 bit are the plan's pins (planner.request.plan), so each
    option is priced as given (``float_weight_kinds`` left out)."""
    return RuntimeSettings(runtime=runtime.default_runtime, **{**engine_settings(runtime), "float_weight_kinds": ()})


@dataclass(slots=True)
class OptionClass:
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
class Formulation:
    layout: Layout
    kv: str
    base: str
    groups: tuple[GroupInfo, ...]
    classes: tuple[OptionClass, ...]
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
    sens: SensitivitySteps
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
    # Device-tier bytes an engine that gives its KV cache only a share f of the free memory
    # (RuntimeSettings.kv_memory_fraction) holds back beyond the cache itself: kv·(1/f − 1).
    kv_headroom: float = 0.0
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


def expand_subset(sol: Solution, columns: np.ndarray, col_class: np.ndarray) -> Solution:
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


def primary_keys(f: Formulation, objective: str) -> np.ndarray:
    """Per column, the coefficients through which it enters the primary objective."""
    if objective == "accuracy":
        return f.sens_key[:, None]
    if objective in ("latency", "cost"):
        return np.stack([f.pre_s, f.dec_s, f.stream_pre_s, f.stream_dec_s], axis=1)
    if objective == "memory":
        return f.bytes_[:, None]
    return np.stack([f.sens_key, f.pre_s, f.dec_s, f.stream_pre_s, f.stream_dec_s, f.bytes_], axis=1)



#: Segment rows of each sensitivity step a formulation starts with (the rest come lazily).
_INITIAL_SEGMENTS = 8


@dataclass(frozen=True, slots=True)
class _Step:
    """One step ``k`` of an aggregated class's sensitivity: ``z ≥ d·(A(L) − A(N))``, with
    ``N`` the members on the ``k + 1`` least noisy options and ``A`` the concave sum of the
    largest ``N`` weights ``alpha``."""

    ci: int
    k: int
    d: float
    a_cum: np.ndarray  # A(0), A(1), …, A(L)
    alpha: np.ndarray  # slopes of A, largest first


class SensitivitySteps:
    """Sensitivity of aggregated classes as an epigraph over member counts.

    Within a class the most important members take the least noisy options (exchange
    argument), so with options ranked by sigma and N_k = members on the k least noisy
    options::

        S = σ_1 · A(L) + Σ_k (σ_{k+1} − σ_k) · (A(L) − A(N_k)),  A(N) = Σ_{i<N} α_i.

    A is concave, so each term is convex in N_k: an epigraph z_k ≥ 0 over its L segments
    (every term is non-negative: no large constants cancel, so the solver's relative gap
    stays meaningful). Only some segment rows are in a problem at first (:attr:`active`,
    shared by every problem of the layout); :meth:`violated` names the segments a
    solution's ``(N_k, z_k)`` breaks, to be added and re-solved. Fewer segments can only
    lower z, so a problem with some of them is a relaxation: its LP bound stays a valid
    bound and a solution that breaks no segment is optimal for the full epigraph."""

    def __init__(self, steps: Sequence[_Step], count_rows: Sequence[Row], aux: Sequence[AuxVar], const: float):
        self.steps = tuple(steps)
        self.count_rows = tuple(count_rows)
        self.aux = tuple(aux)
        self.const = const
        self.active: set[tuple[int, int]] = set()
        for si, st in enumerate(self.steps):
            n_seg = st.alpha.size
            stride = max(1, n_seg // _INITIAL_SEGMENTS)
            self.active.update((si, j) for j in range(0, n_seg, stride))
            self.active.add((si, n_seg - 1))
        self._rows: dict[tuple[int, int, int], Row] = {}

    @classmethod
    def build(cls, classes: Sequence[OptionClass], col_class: np.ndarray, col_opt: np.ndarray) -> SensitivitySteps:
        n = col_class.size
        steps: list[_Step] = []
        count_rows: list[Row] = []
        aux: list[AuxVar] = []
        const = 0.0
        for ci, c in enumerate(classes):
            if len(c.members) == 1:
                continue
            rank = np.argsort(c.sigma, kind="stable")
            sig = c.sigma[rank]
            a_cum = np.concatenate([[0.0], np.cumsum(c.alpha)])
            const += float(sig[0] * a_cum[-1])
            mine = np.flatnonzero(col_class == ci)
            for k in range(len(sig) - 1):
                d = float(sig[k + 1] - sig[k])
                if d <= 0:
                    continue
                coeffs = np.zeros(n)
                coeffs[mine[np.isin(col_opt[mine], rank[: k + 1])]] = 1.0
                nk, zk = f"N_{ci}_{k}", f"z_{ci}_{k}"
                aux.append(AuxVar(name=nk, lb=0.0, ub=float(len(c.members))))
                aux.append(AuxVar(name=zk, lb=0.0, ub=d * float(a_cum[-1])))
                count_rows.append(Row(name=f"sens_count_{ci}_{k}", coeffs=coeffs, sense="==", rhs=0.0,
                                      aux={nk: -1.0}))
                steps.append(_Step(ci=ci, k=k, d=d, a_cum=a_cum, alpha=np.asarray(c.alpha, dtype=np.float64)))
        return cls(steps, count_rows, aux, const)

    def segment(self, key: tuple[int, int], n: int) -> Row:
        """Segment ``j`` of step ``si`` (``key``) as a row over ``n`` columns:
        z ≥ d·(A(L) − line_j(N)), line_j through (j, A(j)) and (j + 1, A(j + 1))."""
        hit = self._rows.get((*key, n))
        if hit is None:
            si, j = key
            st = self.steps[si]
            slope = float(st.alpha[j])
            hit = Row(name=f"sens_{st.ci}_{st.k}_{j}", coeffs=np.zeros(n), sense="<=",
                      rhs=st.d * (float(st.a_cum[j]) - slope * j - float(st.a_cum[-1])),
                      aux={f"z_{st.ci}_{st.k}": -1.0, f"N_{st.ci}_{st.k}": -st.d * slope})
            self._rows[(*key, n)] = hit
        return hit

    def rows(self, n: int) -> list[Row]:
        """Count rows and the active segment rows of a problem over ``n`` columns (count
        rows only fit the full column set)."""
        return list(self.count_rows) + [self.segment(key, n) for key in sorted(self.active)]

    def violated(self, aux_values: Mapping[str, float]) -> list[tuple[int, int]]:
        """Segments not yet active that the point's ``(N_k, z_k)`` breaks."""
        out = []
        for si, st in enumerate(self.steps):
            big_n = float(aux_values.get(f"N_{st.ci}_{st.k}", 0.0))
            z = float(aux_values.get(f"z_{st.ci}_{st.k}", 0.0))
            j = min(max(int(np.floor(big_n + 1e-9)), 0), st.alpha.size - 1)
            need = st.d * (float(st.a_cum[-1]) - float(st.a_cum[j]) - float(st.alpha[j]) * (big_n - j))
            if z < need - 1e-7 * st.d * float(st.a_cum[-1]) and (si, j) not in self.active:
                out.append((si, j))
        return out

    def activate_all(self) -> None:
        self.active.update((si, j) for si, st in enumerate(self.steps) for j in range(st.alpha.size))


class FormulationMixin:
    """The :class:`~planner.search.Planner`'s coefficient side: decision groups, options,
    per-(layout, option) costs and sensitivities (cached on the planner), one candidate's
    :class:`Formulation`, its ILP rows (:meth:`_problem`) and objectives (:meth:`_objective`)."""

    # -- coefficients ----------------------------------------------------------------------

    def _groups(self, pp: int) -> tuple[GroupInfo, ...]:
        if pp not in self._group_cache:
            self._group_cache[pp] = decision_groups(self.work, pp)
        return self._group_cache[pp]

    def _option_sets(self, req: PlanProblem, groups: Sequence[GroupInfo], base: str) -> list[tuple[Option, ...]]:
        cands = candidate_options(self.device, formats=req.formats, sparsity=req.sparsity,
                                  low_precision_compute=req.low_precision_compute, base_activations=base,
                                  low_rank=req.low_rank)
        if req.engine is not None:  # only weight/activation pairs the engine's kernels run
            ran = tuple(o for o in cands if req.engine.runs(o.weights, o.activations))
            # A weight format the engine runs only with its own compute format (llama.cpp's Q8_0 /
            # Q4_0 weights against Q8_0-quantized activations on CPU cores) is offered with it,
            # not dropped: its profile's scheme says which activations its kernels take.
            have = {o.weights for o in ran}
            extra: list[Option] = []
            for o in cands:
                if o.weights in have or o.low_rank is not None:
                    continue
                for a in req.engine.activations_for(o.weights):
                    if self.device.supports(a) == "unsupported":
                        continue
                    try:
                        alt = replace(o, activations=a)
                    except OptionError:  # a compute format the catalog cannot express (NVFP4 activations)
                        continue
                    if alt not in extra:
                        extra.append(alt)
                    break
            cands = ran + tuple(extra)
        for r in req.low_rank or ():
            if not any(low_rank_fits(g, r) for g in groups):
                widest = max((max_low_rank(g) for g in groups), default=0)
                raise OptionError(f"--low-rank {r} compresses no linear layer of {self.arch.id} (a rank r compresses "
                                  f"a k×n layer when r·(k+n) < k·n; the largest useful rank here is {widest})",
                                  field="low_rank")
        conv = req.engine.conv if req.engine is not None else ()  # what the exporter writes for a convolution
        per = [options_for_group(g, cands, base_activations=base, conv=conv) for g in groups]
        pinned = apply_pins(groups, per, req.pins, self.device, base)
        for g, opts in zip(groups, pinned) if conv else ():
            if g.role == "conv" and len(opts) == 1 and opts[0].weights not in conv:
                pattern = next((p for p in req.pins if fnmatch.fnmatchcase(g.fqn, p)), g.fqn)
                raise OptionError(f"{{@pins}} {pattern}={req.pins.get(pattern, opts[0].weights)}: {req.engine.engine} "
                                  f"writes convolutions ({g.fqn}) in {', '.join(conv)} only; pin one of those",
                                  field="pins")
        return pinned

    def _type_costs(self, layout: Layout, serving: Serving, option: Option, kv: str,
                    opts: RuntimeSettings) -> dict[tuple[str, str], tuple]:
        """(block, group) → (weight bytes, prefill s, decode s, decode bytes read) under one option,
        priced with the engine's runtime settings ``opts``. Weighted operators do not read the KV
        cache, so the KV format does not change these and the cache ignores it."""
        key = (layout, serving, option, opts)
        if key not in self._coef_cache:
            choice = Choice(weights=option.weights, activations=option.activations, kv=kv, sparsity=option.sparsity,
                            low_rank=option.low_rank)
            out: dict[tuple[str, str], list[float]] = {}
            for gc in group_costs(self.arch, self.device, layout, serving, choice, opts):
                acc = out.setdefault((gc.block, gc.group), [0.0, 0.0, 0.0, 0.0])
                acc[0] += gc.weight_bytes
                acc[1] += gc.prefill_s
                acc[2] += gc.decode_s
                acc[3] += gc.decode_weight_bytes_read
            self._coef_cache[key] = {k: tuple(v) for k, v in out.items()}
        return self._coef_cache[key]

    def _bits(self, g: GroupInfo, o: Option, opts: RuntimeSettings | None = None) -> float:
        """Σ params × bits per weight of a group under ``o`` (the registry's price, or the engine's
        own type where its profile states one: llama.cpp's q4_K for int4-g128, 4.5 bits, as the
        plan's bytes price it; a low-rank option stores the fraction ``r·(k+n)/(k·n)`` of each
        linear's weights)."""
        from planner.opcost import _weight_bits, matrix_shape, stored_bits, stored_row

        stored_formats = opts.stored_formats if opts is not None else ()
        key = (g.block, g.name, o.weights, o.sparsity, o.low_rank, stored_formats)
        v = self._bits_cache.get(key)
        if v is None:
            lr = Choice(low_rank=o.low_rank)
            v = 0.0
            for m in g.members:
                # the weight as quantized (a conv's out_channels × fan-in, as the estimate prices it;
                # its params over 1 column gave every weight its own scale: 22.7 bits at int8)
                rows, cols = matrix_shape(m)
                rows, cols = rows or 1, cols or 1
                bits = (_weight_bits(o.weights, o.sparsity, rows, cols, stored_bits(opts, stored_row(m)))
                        if stored_formats else combined_bits_per_weight(o.weights, o.sparsity, rows, cols))
                v += m.weight_params * low_rank_factor(m, lr) * bits
            self._bits_cache[key] = v
        return v

    def _scores(self, groups: Sequence[GroupInfo], options: Sequence[tuple[Option, ...]], recipe=None):
        """Scores of every (group, option); ``recipe``: the engine's for integer activations
        (:class:`planner.format_noise.ActivationRecipe`), passed to a sensitivity that prices it
        (``with_recipe``; a user's own object is asked as is)."""
        key = (tuple(g.fqn for g in groups), tuple(options), recipe)
        if key not in self._sens_cache:
            sens = self.sensitivity
            if recipe is not None and not recipe.empty and hasattr(sens, "with_recipe"):
                sens = sens.with_recipe(recipe)
            self._sens_cache[key] = sens.scores(groups, options)
        return self._sens_cache[key]

    def _classes(self, req: PlanProblem, layout: Layout, base: str, kv: str) -> tuple:
        """Decision groups bucketed into :class:`OptionClass` es (dominated options dropped)."""
        serving = req.serving
        groups = self._groups(layout.pp)
        options = self._option_sets(req, groups, base)
        all_opts = sorted({o for opts_ in options for o in opts_}, key=lambda o: o.key)
        costs: dict[Option, dict] = {}
        notes: list[str] = []
        opts = engine_options(req)
        for o in all_opts:
            try:
                costs[o] = self._type_costs(layout, serving, o, kv, opts)
            except EstimateError as exc:
                notes.append(f"option {o.key} dropped: {exc.message}")
        scores = self._scores(groups, options, opts.activation_recipe() if opts is not None else None)
        # Candidate classes: same block, group name, stage and option list.
        buckets: dict[tuple, list[int]] = {}
        for gi, g in enumerate(groups):
            buckets.setdefault((g.block, g.name, g.stage, options[gi]), []).append(gi)
        classes: list[OptionClass] = []
        labels: dict[str, int] = {}
        offered = 0
        for (block, name, stage, opts_), members in buckets.items():
            usable = [i for i, o in enumerate(opts_) if o in costs]
            if not usable:
                raise OptionError(f"no option is left for {groups[members[0]].fqn} on {self.device.id}",
                                  field="formats")
            g0 = groups[members[0]]
            coeffs = np.array([[*costs[opts_[i]][(block, name)], self._bits(g0, opts_[i], opts)] for i in usable])
            vecs = [np.asarray(scores.values[gi], dtype=np.float64)[usable] for gi in members]
            offered += len(usable) * len(members)
            for mem, (sigma, alpha) in _proportional_parts(members, vecs):
                # Dominance on (coefficients, sigma): scaling sigma by alpha > 0 keeps it valid.
                keep = _undominated([(None, *coeffs[i], sigma[i]) for i in range(len(usable))])
                order = np.argsort(-alpha, kind="stable")
                label = groups[mem[0]].fqn if len(mem) == 1 else f"{block}.*.{name}[stage {stage}]×{len(mem)}"
                # One (block, name, stage) can make several classes (other option lists, or scores
                # that are not proportional, as a sensitivity pattern over some layers gives): each
                # keeps a distinct name.
                labels[label] = labels.get(label, 0) + 1
                if labels[label] > 1:
                    label = f"{label} #{labels[label]}"
                classes.append(OptionClass(name=label, stage=stage, members=tuple(mem[i] for i in order),
                                           options=tuple(opts_[usable[i]] for i in keep), sigma=sigma[keep],
                                           alpha=alpha[order], coeffs=coeffs[keep]))
        return groups, tuple(classes), tuple(notes) + tuple(scores.notes), offered

    def _stream_ratios(self, layout: Layout, serving: Serving, base: str, kv: str,
                       groups: Sequence[GroupInfo], opts: RuntimeSettings) -> tuple[float, float]:
        """Streamed bytes per stored byte off the device tier (prefill, decode).

        The cost model keeps one fraction of the weights off the device tier and streams
        that fraction of every operator's reads each pass (its placement is per tier, not
        per group). A byte stored off-device therefore costs ρ streamed bytes per pass, ρ =
        bytes read / bytes stored of the whole model (decode reads one embedding row;
        prefill reads a few), taken at the 16-bit baseline."""
        base_c = self._type_costs(layout, serving, Option(weights=base, activations=base), kv, opts)
        stored = read = emb = 0.0
        for g in groups:
            c0 = base_c[(g.block, g.name)]
            stored += c0[0]
            read += c0[3]
            if g.role == "embedding":
                emb += c0[0]
        rho_dec = read / stored if stored > 0 and read > 0 else 1.0
        rho_pre = (stored - emb) / stored if stored > 0 else 1.0
        return rho_pre, rho_dec

    def _columns(self, req: PlanProblem, layout: Layout, base: str, kv: str, tiers: tuple[str, ...],
                 per_byte: Mapping[str, float]) -> tuple:
        """Classes and column arrays of one layout (independent of the KV format, which
        only moves the fixed costs): cached, because every KV candidate and every re-solve
        reuses them. Columns run class by class, option by option, tier by tier."""
        serving = req.serving
        key = (layout, serving, base, tiers, tuple(sorted(per_byte.items())), req.formats, req.sparsity,
               req.low_precision_compute, tuple(sorted(req.pins.items())), req.low_rank)
        hit = self._col_cache.get(key)
        if hit is not None:
            return hit
        groups, classes, notes, offered = self._classes(req, layout, base, kv)
        rho_pre, rho_dec = self._stream_ratios(layout, serving, base, kv, groups, engine_options(req))
        nt = len(tiers)
        speed = np.array([per_byte.get(t, 0.0) for t in tiers])
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("cls", "opt", "tier", "stage", "coef", "sc", "sk")}
        for ci, c in enumerate(classes):
            k = len(c.options)
            oi = np.repeat(np.arange(k), nt)
            parts["cls"].append(np.full(k * nt, ci))
            parts["opt"].append(oi)
            parts["tier"].append(np.tile(np.arange(nt), k))
            parts["stage"].append(np.full(k * nt, c.stage))
            parts["coef"].append(c.coeffs[oi])
            parts["sk"].append(c.sigma[oi])
            parts["sc"].append(c.alpha[0] * c.sigma[oi] if len(c.members) == 1 else np.zeros(k * nt))
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        coef = cat["coef"]
        per_col_speed = speed[cat["tier"]]
        col_class = cat["cls"].astype(np.int64)
        col_opt = cat["opt"].astype(np.int64)
        sens = SensitivitySteps.build(classes, col_class, col_opt)
        out = (groups, classes, col_class, col_opt, cat["tier"].astype(np.int64), cat["stage"].astype(np.int64),
               coef[:, 0].copy(), coef[:, 1].copy(), coef[:, 2].copy(), coef[:, 0] * rho_pre * per_col_speed,
               coef[:, 0] * rho_dec * per_col_speed, coef[:, 4].copy(), cat["sc"].astype(float),
               cat["sk"].astype(float), sens, notes, offered)
        self._col_cache[key] = out
        return out

    def _formulate(self, req: PlanProblem, layout: Layout, kv: str) -> Formulation:
        dev = self.device
        base = req.activations or base_activation_format(dev)
        serving = req.serving
        generative = self.arch.generative and serving.gen > 0
        dev_tier = dev.device_tier

        eng_opts = engine_options(req)
        allowed = [t for t in allowed_tiers(dev, replace(eng_opts, allow_offload=req.allow_offload))
                   if t.role != "on_chip" or dev.device_class == "fpga"]
        allowed.sort(key=lambda t: 0 if t.name == dev_tier.name else 1)  # the device tier first
        tiers = tuple(t.name for t in allowed)
        # Seconds per streamed byte for each off-device tier (secant over 1–2 GB: the
        # efficiency curve is flat there; the per-access latency is left to the repair step).
        per_byte: dict[str, float] = {}
        opts = replace(eng_opts, allow_offload=req.allow_offload)
        for t in allowed[1:]:
            if t.role == "on_chip":
                per_byte[t.name] = 0.0
                continue
            n = 1e9
            per_byte[t.name] = (stream_time_s(dev, t, 2 * n, opts) - stream_time_s(dev, t, n, opts)) / n
        (groups, classes, ccls, copt, ctier, cstage, by, pr, de, spre, sdec, bp, sc, sk, sens, notes,
         offered) = self._columns(req, layout, base, kv, tiers, per_byte)

        # Baseline: every group at the 16-bit format, weights forced onto the device tier so
        # that no streaming hides inside the fixed costs.
        base_choice = Choice(weights=base, activations=base, kv=kv, sparsity="dense")
        est0 = estimate_inference(self.arch, dev, layout, serving, base_choice,
                                  options=replace(eng_opts, placement={dev_tier.name: 1.0}))
        base_costs = self._type_costs(layout, serving, Option(weights=base, activations=base), kv, eng_opts)
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
        # The estimate fits the device-resident KV cache kv into a share f of what weights,
        # activations and the runtime context leave free (costmodel.memory_report):
        # kv ≤ f·(C − w − act − ctx)  ⇔  w + act + ctx + kv/f ≤ C; the device row carries kv/f.
        kv_headroom = 0.0
        if eng_opts.kv_memory_fraction < 1.0:
            kv_dev = next((tu.kv_cache_bytes for tu in est0.memory.tiers if tu.name == dev_tier.name), 0.0)
            kv_headroom = kv_dev * (1.0 / eng_opts.kv_memory_fraction - 1.0)
        caps = {}
        for t in allowed:
            cap = dev.memory_capacity_bytes if t.name == dev_tier.name else t.capacity_bytes
            if t.name == dev_tier.name and req.max_memory_per_device_bytes is not None:
                cap = min(cap, req.max_memory_per_device_bytes)
            caps[t.name] = cap
        return Formulation(
            layout=layout, kv=get_format(kv).name, base=base, groups=groups, classes=classes, tiers=tiers,
            col_class=ccls, col_option=copt, col_tier=ctier, col_stage=cstage, bytes_=by, pre_s=pr, dec_s=de,
            stream_pre_s=spre, stream_dec_s=sdec, bits_params=bp, sens_col=sc, sens_key=sk, sens=sens,
            sens_const=sens.const, params_total=float(sum(g.params for g in groups)),
            kv_sens=float(self.sensitivity.kv_score(kv, groups)), fixed_pre_s=fixed_pre, fixed_dec_s=fixed_dec,
            comm_pre_s=est0.prefill.comm_s, comm_dec_s=est0.decode.comm_s if est0.decode is not None else 0.0,
            pipe_factor=pipe, step_s=step, generative=generative, gen=serving.gen, fixed_bytes=fixed_bytes,
            caps=caps, base_estimate=est0, notes=notes, offered=offered, stage_fixed=stage_fixed,
            kv_headroom=kv_headroom,
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

    def _problem(self, f: Formulation, req: PlanProblem, tighten: Mapping[str, float]) -> Problem:
        n = f.col_class.size
        rows: list[Row] = f.sens.rows(n)
        aux = [AuxVar(name="P_prefill", lb=0.0)] + list(f.sens.aux)
        stage = f.col_stage
        pp = f.layout.pp
        for ti, tname in enumerate(f.tiers):
            on_t = f.col_tier == ti
            for s in range(pp):
                name = f"memory_{tname}" + (f"_stage{s}" if pp > 1 else "")
                coeffs = np.where(on_t & (stage == s), f.bytes_, 0.0)
                rhs = f.caps[tname] - f.fixed_bytes.get(tname, 0.0) - tighten.get(f"memory_{tname}", 0.0)
                if ti == 0:
                    rhs -= (f.stage_fixed[s] if f.stage_fixed else 0.0) + f.kv_headroom
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

    def _latency_terms(self, f: Formulation) -> dict[str, float]:
        """Request latency = a·P_prefill + (gen − 1)·P_decode + constant."""
        terms = {"P_prefill": f.pipe_factor}
        if f.generative:
            terms["P_decode"] = float(max(f.gen - 1, 0))
        return terms

    def _objective(self, f: Formulation, problem: Problem, which: str, req: PlanProblem,
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
            for a in f.sens.aux:
                if a.name.startswith("z_"):
                    aux_cost[a.name] = aux_cost.get(a.name, 0.0) + weight

        if which == "accuracy":
            add_sens(1.0)
        elif which in ("latency", "cost"):
            aux_cost.update(self._latency_terms(f))
        elif which == "memory":
            aux_cost["M_max"] = 1.0
        elif which == "weighted":
            w = relative_weights(req)
            if w.get("accuracy"):
                add_sens(w["accuracy"] / refs["sensitivity"])
            if w.get("latency"):
                for k, v in self._latency_terms(f).items():
                    aux_cost[k] = aux_cost.get(k, 0.0) + w["latency"] * v / refs["latency"]
            if w.get("memory"):
                aux_cost["M_max"] = aux_cost.get("M_max", 0.0) + w["memory"] / refs["memory"]
        else:  # pragma: no cover - validated by PlanProblem
            raise ValueError(which)
        aux = [replace(a, cost=aux_cost.get(a.name, 0.0)) for a in problem.aux]
        return cost, aux
