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
* ``avg_bits``: Σ params·bits ≤ target · Σ params (bits as the format registry prices them, or
  as the engine stores them where its profile states a type of its own: llama.cpp's ggml q4_K for
  int4-g128; a low-rank option's bits are scaled by the fraction of weights its factors keep).

Low-rank options (``PlanProblem.low_rank``, off by default) are ordinary columns: their
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
Candidates (layout × KV format) are formulated one at a time and checked against the
deadline in between; with several, each gets an LP-relaxation bound, they are visited in
bound order, and a candidate whose bound cannot beat the best plan found is skipped
("pruned by bounds"); a single candidate is solved directly. Every solve, bound, repair
round, Pareto step and diagnosis phase of one request shares one
:class:`~planner.deadline.Deadline`: when it runs out the best plan found so far is
returned with solver status ``time_limit``, or :class:`~planner.deadline.DeadlineExceeded`
is raised when there is none (``cancel()`` from another thread stops a running solve).

The planner is split by concern: :mod:`planner.search_problem` (the request, candidates,
comparisons), :mod:`planner.search_formulation` (coefficients and the ILP),
:mod:`planner.search_assemble` (plans and their re-evaluation), this module (the solve
loop) and :mod:`planner.search_pareto` (Pareto frontier and bisection).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.costmodel import InferenceEstimate
from planner.deadline import Deadline, DeadlineExceeded
from planner.formats import get_format
from planner.diagnose import NoFeasiblePlanError, diagnose
from planner.errors import TierwiseError
from planner.options import GroupInfo, OptionError, base_activation_format
from planner.plan import Plan
from planner.search_assemble import AssemblyMixin
from planner.search_formulation import Formulation, FormulationMixin, engine_options, expand_subset, primary_keys
from planner.search_pareto import BisectResult, bisect_ladder, non_dominated, pareto_front
from planner.search_problem import (
    DEFAULT_KV_FORMATS,
    OBJECTIVE_ORDER,
    REPAIR_ROUNDS,
    PlanProblem,
    compare_key,
    kv_candidates,
    min_opt,
    ordered_layouts,
    pick_best,
    relative_weights,
    usd_per_million,
    within_gap,
)
from planner.sensitivity import Sensitivity, sensitivity_from_spec
from planner.solver import AuxVar, InfeasibleError, Problem, Row, Solution, SolverError, solve
from planner.workload import build_workload

__all__ = [
    "DEFAULT_KV_FORMATS",
    "BisectResult",
    "PlanProblem",
    "Planner",
    "bisect_ladder",
    "non_dominated",
    "pareto_front",
    "solve_plan",
]

#: Rounds of lazily added sensitivity segments before every segment is switched on.
_SEGMENT_ROUNDS = 6
#: Share of the deadline the bounding phase may use when there are several candidates.
_BOUND_SHARE = 0.5
#: Seconds (at most a tenth of the limit) kept back from the solves for the last assembly.
_ASSEMBLY_RESERVE_S = 1.0


class Planner(FormulationMixin, AssemblyMixin):
    """Plans for one model on one device type. Coefficients, formulations and the last
    solution of every candidate are cached, so that the Pareto sweep, the bisection and
    the diagnosis re-solve cheaply (and start from a known point where it is feasible)."""

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
        self._form_cache: dict[tuple, Formulation] = {}
        self._incumbent: dict[tuple, tuple[tuple[int, ...], Mapping[str, float]]] = {}

    # -- one ILP ---------------------------------------------------------------------------

    def _solve_ilp(self, f: Formulation, problem: Problem, cost: np.ndarray, aux: Sequence[AuxVar],
                   req: PlanProblem, deadline: Deadline, start: Sequence[float] | None = None,
                   aux_start: Mapping[str, float] | None = None) -> Solution:
        """Solve ``problem`` under an objective, adding the sensitivity segments its
        solution violates until none is (see :class:`~planner.search_formulation.SensitivitySteps`)."""
        priced = any(a.cost and a.name.startswith("z_") for a in aux)
        prob = problem.with_cost(cost, aux)
        for rnd in range(_SEGMENT_ROUNDS + 1):
            sol = solve(prob, backend=req.backend, time_limit_s=req.time_limit_s, gap=req.gap, deadline=deadline,
                        start=start, aux_start=aux_start)
            missing = f.sens.violated(sol.aux_values) if priced else []
            if not missing:
                return sol
            if rnd == _SEGMENT_ROUNDS - 1:
                missing = [(si, j) for si, st in enumerate(f.sens.steps) for j in range(st.alpha.size)
                           if (si, j) not in f.sens.active]
            f.sens.active.update(missing)
            prob = prob.with_rows([f.sens.segment(k, prob.num_columns) for k in missing])
            # The previous point breaks the new rows; it stays a valid start only without them.
            start = aux_start = None
        return sol

    def _solve_candidate(self, f: Formulation, req: PlanProblem, refs: Mapping[str, float],
                         deadline: Deadline) -> tuple[Plan, InferenceEstimate, Solution] | None:
        """ILP → plan → re-evaluation, tightening rows the re-evaluation finds violated."""
        for device_only in (False, True):
            if device_only and len(f.tiers) == 1:
                break
            tighten: dict[str, float] = {}
            for _round in range(REPAIR_ROUNDS + 1):
                problem = self._problem(f, req, tighten)
                cols = np.arange(f.col_class.size)
                if device_only:
                    # Fallback where the streaming linearisation disagrees with the cost model:
                    # every weight on the device tier, where the ILP's times are exact.
                    cols = np.flatnonzero(f.col_tier == 0)
                    problem = problem.subset(cols)
                try:
                    sol = self._solve_objectives(f, problem, req, refs, deadline, cols, warm=not device_only)
                except InfeasibleError:
                    break
                if device_only:
                    sol = expand_subset(sol, cols, f.col_class)
                plan, est, bad = self._assemble(f, req, sol, refs)
                if not bad:
                    return plan, est, sol
                deadline.check("the plan search")
                _tighten(tighten, bad, f.pipe_factor)
        return None

    def _solve_objectives(self, f: Formulation, problem: Problem, req: PlanProblem, refs: Mapping[str, float],
                          deadline: Deadline, cols: np.ndarray, warm: bool) -> Solution:
        """The primary objective, then the secondary one over the primary's ties. ``warm``:
        start from this candidate's last solution when it satisfies the rows."""
        primary, secondary = OBJECTIVE_ORDER[req.objective]
        cost, aux = self._objective(f, problem, primary, req, refs, cols)
        start = aux_start = None
        key = (*_form_key(f), req.objective, tuple(sorted(req.objective_weights.items())))
        if warm and key in self._incumbent:
            counts, values = self._incumbent[key]
            if len(counts) == problem.num_columns and not problem.violations(counts, values):
                start, aux_start = counts, values
        sol = self._solve_ilp(f, problem, cost, aux, req, deadline, start, aux_start)
        if warm:
            self._incumbent[key] = (sol.counts, sol.aux_values)
        if secondary is not None:
            sol = self._lexicographic(f, problem, sol, cost, aux, secondary, req, refs, deadline, cols)
        return sol

        return None

    def _lexicographic(self, f: Formulation, problem: Problem, first: Solution, cost: np.ndarray,
                       aux: Sequence[AuxVar], secondary: str, req: PlanProblem, refs: Mapping[str, float],
                       deadline: Deadline, cols: np.ndarray | None = None) -> Solution:
        """Break ties of the primary objective with the secondary one.

        Only exact ties are considered: within a class, the columns whose coefficients in
        the primary objective equal those of a column the first solution uses (for
        accuracy: the same option on another memory tier). The second ILP keeps the count
        of every such tie set, so the primary objective cannot change; it runs over those
        columns only, starts from the first solution and can only improve the secondary
        objective (request latency breaks the remaining ties)."""
        base_cols = np.arange(f.col_class.size) if cols is None else np.asarray(cols)
        keys = primary_keys(f, req.objective)[base_cols]
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
        if deadline.expired():
            return first
        try:
            second = self._solve_ilp(f, sub, cost2, aux2, req, deadline.child(seconds=2.0 * first.time_s + 1.0),
                                     start=counts[keep], aux_start=first.aux_values)
        except (InfeasibleError, SolverError, DeadlineExceeded):
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


    # -- the search ------------------------------------------------------------------------

    def _refs(self, req: PlanProblem, f: Formulation) -> dict[str, float]:
        smax = sum(float(c.alpha.sum() * c.sigma.max()) for c in f.classes)
        lat = f.base_estimate.latency_s
        return {"sensitivity": max(smax, 1e-12), "latency": max(lat, 1e-12),
                "memory": self.device.memory_capacity_bytes}

    def _candidate(self, req: PlanProblem, layout, kv: str) -> Formulation:
        """The formulation of one (layout, KV format), cached per request shape (its rows'
        right-hand sides are rebuilt from the request on every solve)."""
        key = (layout, kv, req.serving, req.activations, req.allow_offload, req.max_memory_per_device_bytes,
               req.formats, req.sparsity, req.low_precision_compute, tuple(sorted(req.pins.items())), req.low_rank,
               engine_options(req))
        hit = self._form_cache.get(key)
        if hit is None:
            hit = self._form_cache[key] = self._formulate(req, layout, kv)
        return hit

    def _bound(self, f: Formulation, req: PlanProblem, refs: Mapping[str, float],
               deadline: Deadline) -> float | None:
        """LP-relaxation lower bound of the candidate's primary objective (None = infeasible)."""
        problem = self._problem(f, req, {})
        primary = OBJECTIVE_ORDER[req.objective][0]
        cost, aux = self._objective(f, problem, primary, req, refs)
        try:
            lp = solve(problem.with_cost(cost, aux), backend="highs", relax=True, deadline=deadline,
                       time_limit_s=req.time_limit_s)
        except InfeasibleError:
            return None
        except SolverError:
            return -math.inf
        value = lp.bound if lp.bound is not None else lp.objective
        steps = f.step_s * (1 + (max(f.gen - 1, 0) if f.generative else 0))
        if req.objective == "accuracy":
            return value + f.sens_const + f.kv_sens
        if req.objective == "latency":
            return value + steps
        if req.objective == "cost":
            return usd_per_million(self.device, f.layout, req, value + steps)
        if req.objective == "memory":
            return value
        w = relative_weights(req)
        return (value + w.get("accuracy", 0.0) * (f.sens_const + f.kv_sens) / refs["sensitivity"]
                + w.get("latency", 0.0) * steps / refs["latency"])

    def _ranked(self, req: PlanProblem, deadline: Deadline) -> tuple[list[tuple[float, Formulation]], dict, bool]:
        """Candidates with their bounds, best first, and whether the deadline cut the
        bounding short. One candidate is not bounded (its solve says everything); several
        are formulated and bounded one at a time within a share of the deadline."""
        base = req.activations or base_activation_format(self.device)
        layouts = ordered_layouts(self.arch, self.device, req)
        kvs = kv_candidates(self.arch, self.device, req, base)
        pairs = [(lay, kv) for lay in layouts for kv in kvs]
        first = self._candidate(req, *pairs[0])
        refs = self._refs(req, first)
        if len(pairs) == 1:
            return [(-math.inf, first)], refs, False
        share = deadline.child(fraction=_BOUND_SHARE)
        bounded: list[tuple[float, int, Formulation]] = []
        cut = False
        for i, (lay, kv) in enumerate(pairs):
            if share.expired():
                cut = True
                break
            f = first if i == 0 else self._candidate(req, lay, kv)
            try:
                b = self._bound(f, req, refs, share)
            except DeadlineExceeded:
                cut = True
                break
            if b is not None:
                bounded.append((b, i, f))
        if deadline.cancelled:
            deadline.check("the plan search")
        bounded.sort(key=lambda t: (t[0], t[1]))
        return [(b, f) for b, _, f in bounded], refs, cut

    def solve(self, req: PlanProblem, *, diagnose_failure: bool = True, deadline: Deadline | None = None) -> Plan:
        """The best plan for ``req`` over layouts and KV formats (see the module docstring).

        ``deadline`` (default: ``req.time_limit_s`` from now) bounds everything, the
        diagnosis included. Raises :class:`~planner.diagnose.NoFeasiblePlanError` (with a
        diagnosis) when nothing satisfies the constraints,
        :class:`~planner.deadline.DeadlineExceeded` when time ran out before any plan was
        found, and :class:`~planner.deadline.Cancelled` when the deadline was cancelled."""
        t0 = time.perf_counter()
        dl = deadline if deadline is not None else Deadline(req.time_limit_s)
        dl.check("the plan search")
        if req.format_sets:
            return self._solve_sets(req, diagnose_failure, dl)
        ranked, refs, timed_out = self._ranked(req, dl)
        # Solves stop a little early: turning the last solution into a plan (re-evaluation
        # by the cost model) must fit in the deadline too.
        solve_dl = dl.child(seconds=max(dl.remaining() - min(_ASSEMBLY_RESERVE_S, 0.1 * req.time_limit_s), 0.0))
        found: list[tuple[tuple, tuple[Plan, Solution]]] = []
        solved = 0
        for b, f in ranked:
            # A candidate whose bound is within the gap of the best found may tie with it
            # and win on the secondary objective: it is solved too.
            if found and not within_gap(b, min(k[0] for k, _ in found), req.gap):
                break
            if solve_dl.expired():
                timed_out = True
                break
            try:
                got = self._solve_candidate(f, req, refs, solve_dl)
            except (DeadlineExceeded, SolverError) as exc:
                if isinstance(exc, SolverError) and exc.status not in ("time_limit", "cancelled"):
                    raise
                timed_out = True
                break
            solved += 1
            if got is not None:
                plan, _est, sol = got
                timed_out = timed_out or sol.status == "feasible" and solve_dl.expired()
                found.append((compare_key(req.objective, plan, req, refs), (plan, sol)))
        picked = pick_best(found, req.gap)
        best = None if picked is None else (picked[0], *picked[1])
        if dl.cancelled:
            dl.check("the plan search")
        if best is None:
            if timed_out:
                raise DeadlineExceeded(f"no plan was found within the time limit of {req.time_limit_s:g} s; "
                                       "raise the time limit", field="time_limit_s")
            if not diagnose_failure:
                raise NoFeasiblePlanError("no plan satisfies the constraints", diagnosis=None)
            raise NoFeasiblePlanError.from_diagnosis(diagnose(self, req, deadline=dl))
        _, plan, _ = best
        status = "time_limit" if timed_out else plan.solver.status
        stats = replace(plan.solver, status=status, time_s=time.perf_counter() - t0, candidates_solved=max(solved, 1))
        return replace(plan, solver=stats)

    def _solve_sets(self, req: PlanProblem, diagnose_failure: bool, dl: Deadline) -> Plan:
        """One solve per weight-format set (``req.format_sets``) under one deadline; the best
        plan by the objective (then latency or sensitivity, then memory) wins. When no set
        fits, the diagnosis is the one of the set with the fewest bits (the likeliest to fit)."""
        found: list[tuple[tuple, Plan]] = []
        last: TierwiseError | None = None
        usable: list[tuple[str, ...]] = []
        for formats in req.format_sets:
            try:
                plan = self.solve(replace(req, formats=formats, format_sets=()), diagnose_failure=False, deadline=dl)
            except OptionError as exc:  # a set that leaves some group without an option: not a plan of this engine
                last = last or exc
                continue
            except NoFeasiblePlanError as exc:
                last, usable = exc, [*usable, formats]
                continue
            usable.append(formats)
            p = plan.predicted
            primary = {"latency": p.latency_s, "memory": p.per_device_bytes}.get(req.objective, p.sensitivity)
            secondary = p.latency_s if req.objective in ("accuracy", "memory") else p.sensitivity
            found.append(((primary, secondary, p.per_device_bytes), plan))
        picked = pick_best(found, req.gap)
        if picked is not None:
            return picked[1]
        if not usable and last is not None:
            raise last
        if not diagnose_failure:
            raise NoFeasiblePlanError("no plan satisfies the constraints", diagnosis=None)
        fewest = min(usable, key=lambda fs: min(get_format(f).element_bits for f in fs))
        raise NoFeasiblePlanError.from_diagnosis(diagnose(self, replace(req, formats=fewest, format_sets=()), deadline=dl))

    # -- minimal footprints for the diagnosis --------------------------------------------

    def minimum(self, req: PlanProblem, what: str, *, deadline: Deadline | None = None) -> tuple[float, Plan | None]:
        """Smallest achievable ``memory`` (device-tier bytes per device, with the room the engine's
        KV-cache share holds back: what must fit the capacity), ``ttft`` or
        ``tpot`` over layouts and KV formats, ignoring every other constraint (the best
        found when ``deadline`` runs out)."""
        relaxed = replace(req, max_memory_per_device_bytes=None, ttft_slo_s=None, tpot_slo_s=None, avg_bits=None,
                          objective={"memory": "memory", "ttft": "latency", "tpot": "latency"}[what],
                          allow_offload=req.allow_offload if what != "memory" else False)
        dl = deadline if deadline is not None else Deadline(relaxed.time_limit_s)
        best = (math.inf, None)
        base = relaxed.activations or base_activation_format(self.device)
        objective = "memory" if what == "memory" else "latency"
        for lay in ordered_layouts(self.arch, self.device, relaxed):
            for kv in kv_candidates(self.arch, self.device, relaxed, base):
                if dl.expired():
                    return best
                f = self._candidate(relaxed, lay, kv)
                refs = self._refs(relaxed, f)
                problem = self._problem_uncapped(f, relaxed)
                cost, aux = self._objective(f, problem, objective, relaxed, refs)
                try:
                    sol = self._solve_ilp(f, problem, cost, aux, relaxed, dl)
                except (InfeasibleError, SolverError, DeadlineExceeded):
                    continue
                plan, est, _ = self._assemble(f, relaxed, sol, refs)
                # Memory as the fit counts it: with the room an engine's KV-cache share holds back
                # (Formulation.kv_headroom), so the smallest need compares with the capacity.
                value = {"memory": est.memory.per_device_bytes + f.kv_headroom, "ttft": est.ttft_s, "tpot": est.tpot_s}[what]
                if value < best[0]:
                    best = (value, plan)
        return best

    def _problem_uncapped(self, f: Formulation, req: PlanProblem) -> Problem:
        problem = self._problem(f, req, {})
        return problem.without_rows([r.name for r in problem.rows if r.name.startswith("memory_")])

    # -- Pareto and bisection ------------------------------------------------------------

    def pareto(self, req: PlanProblem, n: int, *, deadline: Deadline | None = None) -> list[Plan]:
        """Up to ``n`` non-dominated plans over (sensitivity, per-device memory, request
        latency), from the most accurate to the smallest (see :func:`pareto_front`)."""
        return pareto_front(self, req, n, deadline=deadline)

    def bisect(self, req: PlanProblem, evaluator: Callable[[Plan], float], band: tuple[float, float], *,
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
                                          max_memory_per_device_bytes=min_opt(req.max_memory_per_device_bytes,
                                                                              budgets[i] * (1 + 1e-9))),
                                  diagnose_failure=False)
            except NoFeasiblePlanError:
                return None

        return bisect_ladder(levels, make, evaluator, band, max_rounds=max_rounds)


def _form_key(f: Formulation) -> tuple:
    return (f.layout, f.kv, f.tiers, id(f.sens))


def _tighten(tighten: dict[str, float], bad: Mapping[str, float], pipe_factor: float) -> None:
    """Tighten each violated row by its excess as the ILP saw it: the ILP's own value minus
    what the re-evaluation says is left (5 % margin)."""
    for name, excess in bad.items():
        if name == "ttft_slo":
            tighten[name] = tighten.get(name, 0.0) + excess / pipe_factor * 1.05 + 1e-9
        elif name in ("tpot_slo", "avg_bits"):
            tighten[name] = tighten.get(name, 0.0) + excess * 1.05 + 1e-9
        else:
            tighten[name] = tighten.get(name, 0.0) + excess * 1.05 + 1.0


# ---------------------------------------------------------------------------
# Library entry point
# ---------------------------------------------------------------------------


def solve_plan(model: str | ArchSpec, hardware: str | DeviceSpec, *, sensitivity: Sensitivity | str | None = None,
               deadline: Deadline | None = None, **request: Any) -> Plan:
    """Solve a compression + parallelism plan.

    ``model`` / ``hardware``: catalog ids, config/profile paths, or loaded specs.
    ``request``: the fields of :class:`PlanProblem` (``devices``, ``tp``, ``pp``, ``dp``,
    ``batch``, ``prompt``, ``gen``, ``max_memory_per_device_bytes``, ``ttft_slo_s``,
    ``tpot_slo_s``, ``avg_bits``, ``allow_offload``, ``objective``, ``objective_weights``,
    ``formats``, ``sparsity``, ``kv``, ``activations``, ``pins``, ``low_rank``, ``backend``,
    ``time_limit_s``, ``gap``). ``deadline``: one shared by the caller (e.g. a job that can
    be cancelled); by default ``time_limit_s`` from now. Raises
    :class:`~planner.diagnose.NoFeasiblePlanError` with a diagnosis when nothing fits.
    """
    arch = model if isinstance(model, ArchSpec) else _load_arch(model)
    device = hardware if isinstance(hardware, DeviceSpec) else _load_device(hardware)
    for k in ("formats", "sparsity", "low_rank"):
        if request.get(k) is not None and not isinstance(request[k], (str, bytes)):
            request[k] = tuple(request[k])
    return Planner(arch, device, sensitivity=sensitivity).solve(PlanProblem(**request), deadline=deadline)


def _load_arch(ref: str) -> ArchSpec:
    from planner.arch import load_arch

    return load_arch(ref)


def _load_device(ref: str) -> DeviceSpec:
    from hwmodels import load_device

    return load_device(ref)
