"""Sweeps built on the planner: the Pareto frontier over (sensitivity, memory, latency) and
the bisection of a compression ladder against a measured degradation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from planner.costmodel import EstimateError
from planner.deadline import Deadline, DeadlineExceeded
from planner.diagnose import NoFeasiblePlanError
from planner.plan import Plan
from planner.search_problem import PlanProblem, min_opt

if TYPE_CHECKING:  # pragma: no cover
    from planner.search import Planner

__all__ = ["BisectResult", "bisect_ladder", "non_dominated", "pareto_front"]


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


def pareto_front(planner: Planner, req: PlanProblem, n: int, *, deadline: Deadline | None = None) -> list[Plan]:
    """``n`` (or fewer, when fewer exist) non-dominated plans.

    ε-constraint sweep: the most accurate plan and the smallest plan bound the memory
    range; the budget is stepped between them, from the smallest up, and each step solved
    for accuracy (then latency), starting from the previous step's solution (feasible under
    the larger budget, so the solver begins with an incumbent). Gaps between neighbours are
    bisected until ``n`` distinct plans exist or the range is exhausted; a final dominance
    filter keeps only non-dominated plans. The whole sweep shares one ``deadline``
    (``req.time_limit_s`` when none is given): when it runs out the plans found so far are
    returned (the first one is required; without it the deadline's error is raised).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise EstimateError("pareto", f"--pareto must be a positive integer; got {n!r}")
    dl = deadline if deadline is not None else Deadline(req.time_limit_s)
    top = planner.solve(replace(req, objective="accuracy"), deadline=dl)
    if n == 1:
        return [top]
    plans = [top]
    tried: set[float] = set()

    def run(r: PlanProblem) -> None:
        if dl.cancelled:
            dl.check("the Pareto sweep")  # raises Cancelled
        if dl.expired():
            return
        try:
            plans.append(planner.solve(r, diagnose_failure=False, deadline=dl))
        except NoFeasiblePlanError:
            pass
        except DeadlineExceeded:
            return

    run(replace(req, objective="memory"))
    if len(plans) == 1:
        return plans
    lo, hi = plans[1].predicted.per_device_bytes, top.predicted.per_device_bytes

    def at(budget: float) -> None:
        key = round(budget, 3)
        if key in tried:
            return
        tried.add(key)
        run(replace(req, objective="accuracy", max_memory_per_device_bytes=min_opt(req.max_memory_per_device_bytes,
                                                                                    budget)))

    for k in range(n - 2, 0, -1):  # smallest budget first: each solution starts the next solve
        at(hi - (hi - lo) * k / (n - 1))
    for _ in range(3 * n):
        front = non_dominated(plans)
        if len(front) >= n or dl.expired():
            break
        mems = sorted({p.predicted.per_device_bytes for p in front})
        gaps = sorted(((b - a, a, b) for a, b in zip(mems, mems[1:])), reverse=True)
        todo = [(a + b) / 2 for width, a, b in gaps
                if width > max(1e-6 * b, 1.0) and round((a + b) / 2, 3) not in tried]
        if not todo:
            break
        at(todo[0])
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

