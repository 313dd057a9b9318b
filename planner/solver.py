"""The planner's integer program: a multiple-choice knapsack with named side constraints.

This is the only module that talks to an ILP solver. It knows
nothing about models or hardware: :mod:`planner.search` turns costs into a
:class:`Problem`; this module solves it and maps the solver's status onto our errors.

Formulation (the one HAWQ-V3, Yao et al. ICML 2021, and NVIDIA Model Optimizer's AutoQuantize
use, generalised to several budgets)::

    minimise    Σ_j cost_j · x_j + Σ_k aux_cost_k · y_k
    subject to  Σ_{j ∈ group g} x_j = size_g              for every group g
                Σ_j a_rj · x_j + Σ_k b_rk · y_k  (≤ | ≥ | =)  rhs_r   for every named row r
                x_j ∈ {0, 1, …, size_g},  lb_k ≤ y_k ≤ ub_k  (continuous auxiliaries)

With ``size_g = 1`` (the default) a column ``j`` is one binary (decision group, option,
tier placement) and the groups are one-hot: the multiple-choice knapsack. A group of
``size_g > 1`` stands for ``size_g`` interchangeable decision groups (identical layers):
its columns count how many of them take each (option, tier) — an exact aggregation that
removes the symmetry between identical layers. Continuous auxiliaries model a ``max``
(a phase time that is the larger of on-device time and streaming time), epigraphs, or
elastic slacks.

Backends, chosen explicitly by name:

* ``"highs"`` — HiGHS through ``highspy``: the matrix is built once with numpy and
  passed whole, which keeps model building far below the solve time.
* ``"cbc"`` — COIN-OR CBC through PuLP's bundled binary, built with PuLP's list
  constructors (``LpAffineExpression``). CBC does not report its best bound through PuLP,
  so the gap of a time-limited CBC run is measured against the LP relaxation.

Both run to a relative MIP gap (default 1e-3 = 0.1 %) or a wall-clock limit; the result
states which happened.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from planner.errors import InfeasibleError, TierwiseError

__all__ = [
    "BACKENDS",
    "AuxVar",
    "InfeasibleError",
    "Problem",
    "Row",
    "Solution",
    "SolverError",
    "solve",
]

#: Solver backends by name.
BACKENDS = ("highs", "cbc")
SENSES = ("<=", ">=", "==")
#: Default relative optimality gap: 0.1 %. Layers of one model are near-identical, so
#: the last 0.1 % of a tight memory budget is a combinatorial tail (proving 0.01 % on
#: Llama-3.1-70B under a tight budget takes ~5× longer and moved the objective by 2e-6).
DEFAULT_GAP = 1e-3
DEFAULT_TIME_LIMIT_S = 30.0
# Feasibility tolerance applied when checking a returned point against the rows.
_FEAS_TOL = 1e-6


class SolverError(TierwiseError, RuntimeError):
    """The solver stopped without a usable solution (time limit without an incumbent,
    numerical trouble, a backend failure). ``status`` is our status name. Proven
    infeasibility is :class:`planner.errors.InfeasibleError` instead."""

    kind = "infeasible"
    code = "solver_failed"

    def __init__(self, message: str, *, status: str, backend: str):
        TierwiseError.__init__(self, message)
        self.status = status
        self.backend = backend


def _num(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number; got {type(value).__name__} {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuxVar:
    """A continuous auxiliary variable ``lb ≤ y ≤ ub`` with objective coefficient ``cost``."""

    name: str
    lb: float = 0.0
    ub: float = math.inf
    cost: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"AuxVar 'name' must be a non-empty string; got {self.name!r}")
        lb = _num(self.lb, f"AuxVar {self.name!r} 'lb'")
        ub = _num(self.ub, f"AuxVar {self.name!r} 'ub'")
        if math.isnan(lb) or math.isnan(ub) or lb > ub or lb == math.inf or ub == -math.inf:
            raise ValueError(f"AuxVar {self.name!r} needs lb <= ub with finite lb or ub; got [{lb}, {ub}]")
        if not math.isfinite(_num(self.cost, f"AuxVar {self.name!r} 'cost'")):
            raise ValueError(f"AuxVar {self.name!r} 'cost' must be finite; got {self.cost!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """A named linear constraint over the binary columns (``coeffs``, one per column)
    and the auxiliaries (``aux``: name → coefficient)."""

    name: str
    coeffs: np.ndarray
    sense: str
    rhs: float
    aux: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Row 'name' must be a non-empty string; got {self.name!r}")
        if self.sense not in SENSES:
            raise ValueError(f"Row {self.name!r} 'sense' must be one of {', '.join(SENSES)}; got {self.sense!r}")
        coeffs = np.asarray(self.coeffs, dtype=np.float64)
        if coeffs.ndim != 1:
            raise ValueError(f"Row {self.name!r} 'coeffs' must be one-dimensional; got shape {coeffs.shape}")
        if not np.all(np.isfinite(coeffs)):
            raise ValueError(f"Row {self.name!r} 'coeffs' must be finite numbers")
        coeffs.setflags(write=False)
        object.__setattr__(self, "coeffs", coeffs)
        rhs = _num(self.rhs, f"Row {self.name!r} 'rhs'")
        if not math.isfinite(rhs):
            raise ValueError(f"Row {self.name!r} 'rhs' must be finite; got {rhs} (drop the row instead)")
        object.__setattr__(self, "rhs", rhs)
        aux = {str(k): _num(v, f"Row {self.name!r} aux coefficient {k!r}") for k, v in dict(self.aux).items()}
        object.__setattr__(self, "aux", MappingProxyType(aux))


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One option per group member, a cost per column, named rows and auxiliaries.

    ``column_group[j]`` is the index (into ``groups``) of the group column ``j`` belongs to;
    ``group_size[g]`` how many members group ``g`` has (1 when omitted: one-hot);
    ``labels[j]`` (optional) names the column for messages. A point is a vector of
    column counts (:meth:`point` turns one pick per one-hot group into one).
    """

    groups: tuple[str, ...]
    column_group: np.ndarray
    cost: np.ndarray
    rows: tuple[Row, ...] = ()
    aux: tuple[AuxVar, ...] = ()
    labels: tuple[str, ...] = ()
    group_size: np.ndarray | None = None

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        object.__setattr__(self, "groups", groups)
        if not groups:
            raise ValueError("Problem 'groups' must name at least one decision group")
        if len(set(groups)) != len(groups):
            raise ValueError("Problem 'groups' must be unique")
        cg = np.asarray(self.column_group)
        if cg.ndim != 1 or cg.size == 0 or not np.issubdtype(cg.dtype, np.integer):
            raise ValueError("Problem 'column_group' must be a non-empty 1-D array of group indices")
        if cg.min() < 0 or cg.max() >= len(groups):
            raise ValueError(f"Problem 'column_group' entries must be in [0, {len(groups) - 1}]")
        counts = np.bincount(cg, minlength=len(groups))
        empty = [groups[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(f"every group needs at least one option; none for {', '.join(empty[:5])}"
                             + (" ..." if len(empty) > 5 else ""))
        cg = cg.astype(np.int64)
        cg.setflags(write=False)
        object.__setattr__(self, "column_group", cg)
        size = np.ones(len(groups), dtype=np.int64) if self.group_size is None else np.asarray(self.group_size)
        if size.shape != (len(groups),) or not np.issubdtype(size.dtype, np.integer) or np.any(size < 1):
            raise ValueError(f"Problem 'group_size' must hold one int >= 1 per group ({len(groups)})")
        size = size.astype(np.int64)
        size.setflags(write=False)
        object.__setattr__(self, "group_size", size)
        cost = np.asarray(self.cost, dtype=np.float64)
        if cost.shape != cg.shape or not np.all(np.isfinite(cost)):
            raise ValueError(f"Problem 'cost' must hold one finite number per column ({cg.size}); "
                             f"got shape {cost.shape}")
        cost.setflags(write=False)
        object.__setattr__(self, "cost", cost)
        rows = tuple(self.rows)
        object.__setattr__(self, "rows", rows)
        aux = tuple(self.aux)
        object.__setattr__(self, "aux", aux)
        aux_names = [a.name for a in aux]
        if len(set(aux_names)) != len(aux_names):
            raise ValueError("Problem 'aux' variable names must be unique")
        names = [r.name for r in rows]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Problem row names must be unique; repeated: {', '.join(dup)}")
        known = set(aux_names)
        for r in rows:
            if r.coeffs.shape != cg.shape:
                raise ValueError(f"Row {r.name!r} has {r.coeffs.size} coefficients; the problem has {cg.size} columns")
            unknown = set(r.aux) - known
            if unknown:
                raise ValueError(f"Row {r.name!r} uses unknown auxiliaries: {', '.join(sorted(unknown))}")
        labels = tuple(self.labels)
        if labels and len(labels) != cg.size:
            raise ValueError(f"Problem 'labels' must name every column ({cg.size}); got {len(labels)}")
        object.__setattr__(self, "labels", labels)

    @property
    def num_columns(self) -> int:
        return int(self.column_group.size)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row named {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    @property
    def binary(self) -> bool:
        """True when every group is one-hot (size 1)."""
        return bool(np.all(self.group_size == 1))

    def _copy(self, **changes) -> Problem:
        kw = dict(groups=self.groups, column_group=self.column_group, cost=self.cost, rows=self.rows, aux=self.aux,
                  labels=self.labels, group_size=self.group_size)
        kw.update(changes)
        return Problem(**kw)

    def without_rows(self, names: Sequence[str]) -> Problem:
        """The same problem with the named rows dropped."""
        drop = set(names)
        return self._copy(rows=tuple(r for r in self.rows if r.name not in drop))

    def with_cost(self, cost: np.ndarray, aux: Sequence[AuxVar] | None = None) -> Problem:
        """The same constraints with another objective."""
        return self._copy(cost=cost, aux=self.aux if aux is None else tuple(aux))

    def with_rows(self, rows: Sequence[Row], aux: Sequence[AuxVar] = ()) -> Problem:
        """The problem with extra rows (and auxiliaries) added."""
        return self._copy(rows=self.rows + tuple(rows), aux=self.aux + tuple(aux))

    def subset(self, columns: Sequence[int]) -> Problem:
        """The problem over ``columns`` only (every group must keep at least one column);
        column ``k`` of the result is column ``columns[k]`` of this problem."""
        cols = np.asarray(columns, dtype=np.int64)
        return self._copy(column_group=self.column_group[cols], cost=self.cost[cols],
                          rows=tuple(Row(name=r.name, coeffs=r.coeffs[cols], sense=r.sense, rhs=r.rhs, aux=r.aux)
                                     for r in self.rows),
                          labels=tuple(self.labels[c] for c in cols) if self.labels else ())

    def point(self, picks: Sequence[int]) -> np.ndarray:
        """Column counts of one pick (column index) per one-hot group."""
        picks = np.asarray(picks, dtype=np.int64)
        if picks.shape != (len(self.groups),):
            raise ValueError(f"need one pick per group ({len(self.groups)}); got {picks.shape}")
        if np.any(self.column_group[picks] != np.arange(len(self.groups))):
            raise ValueError("each pick must be a column of its own group")
        if not self.binary:
            raise ValueError("picks describe one-hot groups only; pass column counts for groups of size > 1")
        x = np.zeros(self.num_columns)
        x[picks] = 1.0
        return x

    def _counts(self, counts: Sequence[float]) -> np.ndarray:
        x = np.asarray(counts, dtype=np.float64)
        if x.shape != (self.num_columns,):
            raise ValueError(f"need one count per column ({self.num_columns}); got shape {x.shape}")
        return x

    def evaluate(self, counts: Sequence[float], aux_values: Mapping[str, float] | None = None) -> tuple[float, dict[str, float]]:
        """Objective and row activities of a point (column counts, auxiliaries)."""
        x = self._counts(counts)
        y = dict(aux_values or {})
        obj = float(self.cost @ x) + sum(a.cost * y.get(a.name, 0.0) for a in self.aux)
        act = {r.name: float(r.coeffs @ x) + sum(c * y.get(k, 0.0) for k, c in r.aux.items()) for r in self.rows}
        return obj, act

    def violations(self, counts: Sequence[float], aux_values: Mapping[str, float] | None = None,
                   tol: float = _FEAS_TOL) -> dict[str, float]:
        """Rows (and group sizes, as ``group:<name>``) a point violates → by how much
        (relative to max(1, |rhs|))."""
        x = self._counts(counts)
        out = {}
        sums = np.bincount(self.column_group, weights=x, minlength=len(self.groups))
        for g in np.flatnonzero(np.abs(sums - self.group_size) > tol):
            out[f"group:{self.groups[g]}"] = float(abs(sums[g] - self.group_size[g]))
        if np.any(x < -tol) or np.any(np.abs(x - np.round(x)) > tol):
            out["integrality"] = float(np.max(np.abs(x - np.round(x))))
        _, act = self.evaluate(x, aux_values)
        for r in self.rows:
            scale = max(1.0, abs(r.rhs))
            a = act[r.name]
            over = (a - r.rhs) if r.sense == "<=" else (r.rhs - a) if r.sense == ">=" else abs(a - r.rhs)
            if over > tol * scale:
                out[r.name] = over / scale
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Solution:
    """A solved problem: the count of every column (for one-hot groups, :attr:`picks` is
    the column chosen in each group) and the solver's statistics.

    ``status`` is ``"optimal"`` (within the requested gap) or ``"feasible"`` (the time
    limit stopped the search with an incumbent; ``gap`` says how far from optimal it
    can be). ``bound`` is the best proven lower bound on the objective.
    """

    counts: tuple[int, ...]
    aux_values: Mapping[str, float]
    objective: float
    bound: float | None
    gap: float | None
    status: str
    backend: str
    time_s: float
    variables: int
    constraints: int
    row_activity: Mapping[str, float]
    column_group: tuple[int, ...] = ()

    @property
    def picks(self) -> tuple[int, ...]:
        """Per group, the column with the largest count (the choice of a one-hot group)."""
        best: dict[int, tuple[int, int]] = {}
        for j, (g, c) in enumerate(zip(self.column_group, self.counts)):
            if g not in best or c > best[g][0]:
                best[g] = (c, j)
        return tuple(best[g][1] for g in sorted(best))

    def slack(self, problem: Problem) -> dict[str, float]:
        """Slack of every named row at this solution (≥ 0 when satisfied; 0 = binding)."""
        out = {}
        for r in problem.rows:
            a = self.row_activity[r.name]
            out[r.name] = r.rhs - a if r.sense == "<=" else a - r.rhs if r.sense == ">=" else -abs(a - r.rhs)
        return out


# ---------------------------------------------------------------------------
# Shared preparation
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Matrix:
    """The named rows as arrays, scaled for the solver (built once per solve, vectorised).

    ``coeffs`` (rows × columns) and ``aux`` (rows × auxiliaries) are divided by each row's
    scale; ``aux`` is also multiplied by each auxiliary's column scale ``ys``; ``lower`` /
    ``upper`` are the scaled row bounds (±inf where open)."""

    coeffs: np.ndarray
    aux: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    row_scale: np.ndarray
    ys: np.ndarray


def _matrix(problem: Problem) -> _Matrix:
    """Rows mix bytes (~1e10) and seconds (~1e-3); dividing each by its largest magnitude
    keeps the solver's absolute feasibility tolerance meaningful for all of them. After row
    scaling, an auxiliary that stands for bytes (~1e10) next to binaries has a coefficient
    ~1e-10 that solvers drop as zero: solving for ``y' = y / s`` with
    ``s = 1 / max_r |b_rk| / row_scale_r`` brings it to O(1)."""
    rows, n = problem.rows, problem.num_columns
    m, na = len(rows), len(problem.aux)
    index = {a.name: k for k, a in enumerate(problem.aux)}
    coeffs = np.vstack([r.coeffs for r in rows]) if m else np.zeros((0, n))
    aux = np.zeros((m, na))
    ri = [i for i, r in enumerate(rows) for _ in r.aux]
    ki = [index[k] for r in rows for k in r.aux]
    aux[ri, ki] = [c for r in rows for c in r.aux.values()]
    rhs = np.array([r.rhs for r in rows], dtype=np.float64)
    scale = np.abs(rhs)
    if n and m:
        scale = np.maximum(scale, np.abs(coeffs).max(axis=1))
    if na and m:
        scale = np.maximum(scale, np.abs(aux).max(axis=1))
    scale = np.where(scale > 0, scale, 1.0)
    aux = aux / scale[:, None]
    col = np.abs(aux).max(axis=0) if m else np.zeros(na)
    ys = np.where(col > 0, 1.0 / np.where(col > 0, col, 1.0), 1.0)
    sense = np.array([r.sense for r in rows], dtype=object)
    lower = np.where(sense == "<=", -np.inf, rhs / scale) if m else np.zeros(0)
    upper = np.where(sense == ">=", np.inf, rhs / scale) if m else np.zeros(0)
    return _Matrix(coeffs=coeffs / scale[:, None], aux=aux * ys[None, :], lower=lower, upper=upper,
                   row_scale=scale, ys=ys)


def _scale(problem: Problem, ys: np.ndarray | None = None) -> float:
    """Divide the objective by its largest coefficient (auxiliaries in their scaled units)
    so solver tolerances act on O(1) numbers whatever the unit (seconds, bytes, sensitivity)."""
    ys = _matrix(problem).ys if ys is None else ys
    aux_cost = np.array([a.cost for a in problem.aux], dtype=np.float64)
    m = max(float(np.max(np.abs(problem.cost))), float(np.max(np.abs(aux_cost * ys), initial=0.0)))
    return m if m > 0 else 1.0


def _row_scale(r: Row) -> float:
    """The scale :func:`_matrix` gives one row (its largest magnitude)."""
    m = max([abs(r.rhs), float(np.max(np.abs(r.coeffs))) if r.coeffs.size else 0.0]
            + [abs(c) for c in r.aux.values()])
    return m if m > 0 else 1.0


def _aux_scales(problem: Problem) -> dict[str, float]:
    """Column scale of each auxiliary (see :func:`_matrix`), by name."""
    ys = _matrix(problem).ys
    return {a.name: float(ys[k]) for k, a in enumerate(problem.aux)}


def _relative_gap(obj: float, bound: float | None) -> float | None:
    if bound is None or not math.isfinite(bound):
        return None
    return max(0.0, obj - bound) / max(abs(obj), 1e-12) if obj != bound else 0.0


def _finish(problem: Problem, x: np.ndarray, y: Mapping[str, float], *, bound: float | None,
            status: str, backend: str, t0: float, n_rows: int) -> Solution:
    counts = np.round(np.clip(x, 0.0, None)).astype(np.int64)
    # Report the objective of the integral point (identical up to solver tolerances).
    obj, act = problem.evaluate(counts, y)
    gap = _relative_gap(obj, bound)
    if status == "optimal" and gap is None:
        gap = 0.0
    return Solution(counts=tuple(int(c) for c in counts), aux_values=MappingProxyType(dict(y)), objective=obj,
                    bound=bound, gap=gap, status=status, backend=backend, time_s=time.perf_counter() - t0,
                    variables=problem.num_columns + len(problem.aux), constraints=n_rows,
                    row_activity=MappingProxyType(act), column_group=tuple(int(g) for g in problem.column_group))


# ---------------------------------------------------------------------------
# HiGHS via highspy
# ---------------------------------------------------------------------------

_HIGHS_LOCK = threading.Lock()
_HIGHS_BANNER_DONE = False


def _new_highs():
    """A silent ``highspy.Highs``. The first construction in a process prints a banner on
    the C-level stdout, which would corrupt ``--json`` output; it is sent to /dev/null."""
    global _HIGHS_BANNER_DONE
    import highspy

    with _HIGHS_LOCK:
        if _HIGHS_BANNER_DONE:
            h = highspy.Highs()
        else:
            try:
                sys.stdout.flush()
                saved = os.dup(1)
            except (OSError, ValueError, AttributeError):
                saved = None
            if saved is None:
                h = highspy.Highs()
            else:
                null = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(null, 1)
                    h = highspy.Highs()
                    try:
                        ctypes.CDLL(None).fflush(None)
                    except (OSError, AttributeError):
                        pass
                finally:
                    os.dup2(saved, 1)
                    os.close(saved)
                    os.close(null)
            _HIGHS_BANNER_DONE = True
    h.setOptionValue("output_flag", False)
    return h


def _highs_lp(problem: Problem, mat: _Matrix, scale: float, relax: bool):
    """The problem as a ``highspy.HighsLp``: one-hot rows per group, then the named rows,
    passed column-wise (CSC) straight from numpy (scipy.sparse would cost more to import
    than the matrix costs to build)."""
    import highspy

    n, g, aux, ys = problem.num_columns, len(problem.groups), problem.aux, mat.ys
    na = len(aux)
    dense = np.zeros((g + len(problem.rows), n + na))
    dense[problem.column_group, np.arange(n)] = 1.0
    if problem.rows:
        dense[g:, :n] = mat.coeffs
        dense[g:, n:] = mat.aux
    cols_nz, rows_nz = np.nonzero(dense.T)
    size = problem.group_size.astype(np.float64)
    lower = np.concatenate([size, mat.lower])
    upper = np.concatenate([size, mat.upper])
    lp = highspy.HighsLp()
    lp.num_col_ = n + na
    lp.num_row_ = dense.shape[0]
    lp.col_cost_ = np.concatenate([problem.cost, np.array([x.cost for x in aux], dtype=np.float64) * ys]) / scale
    lp.col_lower_ = np.concatenate([np.zeros(n), np.array([x.lb for x in aux], dtype=np.float64) / ys])
    lp.col_upper_ = np.concatenate([size[problem.column_group], np.array([x.ub for x in aux], dtype=np.float64) / ys])
    inf = highspy.kHighsInf
    lp.row_lower_ = np.where(np.isfinite(lower), lower, -inf)
    lp.row_upper_ = np.where(np.isfinite(upper), upper, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(cols_nz, np.arange(n + na + 1)).astype(np.int32)
    lp.a_matrix_.index_ = rows_nz.astype(np.int32)
    lp.a_matrix_.value_ = dense[rows_nz, cols_nz]
    lp.a_matrix_.num_col_ = n + na
    lp.a_matrix_.num_row_ = dense.shape[0]
    if not relax:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n + [highspy.HighsVarType.kContinuous] * na
    return lp


def _highs_options(h, time_limit_s: float, gap: float, threads: int | None) -> None:
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(gap))
    h.setOptionValue("mip_abs_gap", 1e-9)
    # Rows are scaled by their largest magnitude, which can be a coefficient far above the
    # right-hand side; tighter tolerances keep HiGHS's points within the 1e-6 (relative to
    # the right-hand side) that every returned point is checked against.
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("random_seed", 0)
    if threads is not None:
        h.setOptionValue("threads", int(threads))


def _highs_status(h, time_limit_s: float) -> str:
    """Our status for HiGHS's model status ("optimal" / "feasible"), or the matching error."""
    import highspy

    ms = h.getModelStatus()
    M = highspy.HighsModelStatus
    has_point = h.getInfo().primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
    if ms == M.kInfeasible:
        raise InfeasibleError("no assignment of one option per group satisfies every constraint", backend="highs")
    if ms in (M.kUnboundedOrInfeasible, M.kUnbounded):
        raise InfeasibleError("the problem is infeasible or unbounded (HiGHS could not tell which)", backend="highs")
    if ms == M.kOptimal:
        return "optimal"
    if ms in (M.kTimeLimit, M.kIterationLimit, M.kInterrupt, M.kSolutionLimit, M.kObjectiveBound,
              M.kObjectiveTarget) and has_point:
        return "feasible"
    if ms == M.kTimeLimit:
        raise SolverError(f"HiGHS found no feasible point within the time limit of {time_limit_s:g} s; "
                          "raise --time-limit", status="time_limit", backend="highs")
    if ms == M.kInterrupt:
        raise SolverError("the solve was cancelled before a feasible point was found", status="cancelled",
                          backend="highs")
    raise SolverError(f"HiGHS stopped with status {h.modelStatusToString(ms)!r}", status="error", backend="highs")


def _solve_highs(problem: Problem, time_limit_s: float, gap: float, threads: int | None,
                 relax: bool = False, start: Sequence[float] | None = None,
                 aux_start: Mapping[str, float] | None = None, objective_scale: float | None = None,
                 cancel: Callable[[], bool] | None = None) -> Solution:
    import highspy

    t0 = time.perf_counter()
    n, aux = problem.num_columns, problem.aux
    mat = _matrix(problem)
    ys = mat.ys
    scale = objective_scale if objective_scale else _scale(problem, ys)
    lp = _highs_lp(problem, mat, scale, relax)
    n_rows = lp.num_row_
    h = _new_highs()
    _highs_options(h, time_limit_s, gap, threads)
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise SolverError("HiGHS rejected the model (see the row/column bounds)", status="error", backend="highs")
    if start is not None and not relax:
        # A known feasible point (e.g. the previous solve's) as the first incumbent.
        x0 = problem._counts(start)
        y0 = [float((aux_start or {}).get(a.name, 0.0)) / ys[k] for k, a in enumerate(aux)]
        warm = highspy.HighsSolution()
        warm.col_value = list(np.concatenate([x0, y0]))
        warm.value_valid = True
        h.setSolution(warm)
    if cancel is not None:
        # Another thread may cancel the job: HiGHS polls these callbacks during the solve.
        def interrupt(event) -> None:
            if cancel():
                event.interrupt()

        h.cbSimplexInterrupt += interrupt
        h.cbMipInterrupt += interrupt
    h.run()
    ours = _highs_status(h, time_limit_s)
    info = h.getInfo()
    sol = np.asarray(h.getSolution().col_value)
    y = {x.name: float(sol[n + k]) * ys[k] for k, x in enumerate(aux)}
    if relax:
        # The LP optimum itself is the bound; the rounded point is only indicative.
        obj = info.objective_function_value * scale
        counts = tuple(int(c) for c in np.round(sol[:n]))
        return Solution(counts=counts, aux_values=MappingProxyType(y), objective=obj, bound=obj, gap=0.0,
                        status="optimal", backend="highs", time_s=time.perf_counter() - t0, variables=n + len(aux),
                        constraints=n_rows, row_activity=MappingProxyType({}),
                        column_group=tuple(int(g) for g in problem.column_group))
    bound = info.mip_dual_bound * scale if math.isfinite(info.mip_dual_bound) else None
    return _finish(problem, sol[:n], y, bound=bound, status=ours, backend="highs", t0=t0, n_rows=n_rows)


# ---------------------------------------------------------------------------
# CBC via PuLP
# ---------------------------------------------------------------------------


def _pulp_model(problem: Problem, relax: bool):
    import pulp

    scale = _scale(problem)
    m = pulp.LpProblem("tierwise_plan", pulp.LpMinimize)
    size = problem.group_size
    # PuLP ≥ 3.3 attaches variables to the model (add_variable); older releases build them free.
    var = m.add_variable if hasattr(m, "add_variable") else pulp.LpVariable
    xs = [var(f"x{j}", lowBound=0, upBound=int(size[gi]),
              cat=pulp.LpContinuous if relax else (pulp.LpBinary if size[gi] == 1 else pulp.LpInteger))
          for j, gi in enumerate(problem.column_group)]
    sc = _aux_scales(problem)
    ys = {a.name: var(f"y{k}", lowBound=None if a.lb == -math.inf else a.lb / sc[a.name],
                      upBound=None if a.ub == math.inf else a.ub / sc[a.name], cat=pulp.LpContinuous)
          for k, a in enumerate(problem.aux)}
    obj = [(xs[j], c / scale) for j, c in enumerate(problem.cost) if c != 0.0]
    obj += [(ys[a.name], a.cost * sc[a.name] / scale) for a in problem.aux if a.cost != 0.0]
    m.setObjective(pulp.LpAffineExpression(obj))
    by_group: list[list] = [[] for _ in problem.groups]
    for j, gi in enumerate(problem.column_group):
        by_group[gi].append((xs[j], 1.0))
    for gi, terms in enumerate(by_group):
        m.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), pulp.LpConstraintEQ, name=f"group_{gi}",
                                          rhs=float(size[gi])))
    sense = {"<=": pulp.LpConstraintLE, ">=": pulp.LpConstraintGE, "==": pulp.LpConstraintEQ}
    for i, r in enumerate(problem.rows):
        nz = np.flatnonzero(r.coeffs)
        rs = _row_scale(r)
        terms = [(xs[j], float(r.coeffs[j]) / rs) for j in nz] + [(ys[k], c * sc[k] / rs) for k, c in r.aux.items()]
        m.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), sense[r.sense], name=f"row_{i}",
                                          rhs=r.rhs / rs))
    return m, xs, ys, scale, sc


def _cbc(**kwargs):
    """PuLP's bundled CBC binary. PuLP 3.3 marks PULP_CBC_CMD deprecated in favour of a
    separately installed CBC (COIN_CMD); the bundled one is what a plain install has."""
    import pulp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(**kwargs)


def _solve_cbc(problem: Problem, time_limit_s: float, gap: float, threads: int | None) -> Solution:
    import pulp

    t0 = time.perf_counter()
    m, xs, ys, scale, sc = _pulp_model(problem, relax=False)
    kwargs = dict(msg=False, timeLimit=float(time_limit_s), gapRel=float(gap))
    if threads is not None:
        kwargs["threads"] = int(threads)
    try:
        m.solve(_cbc(**kwargs))
    except pulp.PulpSolverError as exc:
        raise SolverError(f"CBC failed: {exc}", status="error", backend="cbc") from None
    st = m.status
    sol_st = getattr(m, "sol_status", None)
    if st == pulp.LpStatusInfeasible or sol_st == pulp.LpSolutionInfeasible:
        raise InfeasibleError("no assignment of one option per group satisfies every constraint", backend="cbc")
    if st == pulp.LpStatusUnbounded:
        raise InfeasibleError("the problem is unbounded", backend="cbc")
    x = np.array([v.varValue if v.varValue is not None else 0.0 for v in xs])
    if st != pulp.LpStatusOptimal or sol_st not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        raise SolverError(f"CBC found no feasible point within the time limit of {time_limit_s:g} s "
                          f"(status {pulp.LpStatus.get(st, st)!r})", status="time_limit", backend="cbc")
    y = {k: float(v.varValue or 0.0) * sc[k] for k, v in ys.items()}
    if sol_st == pulp.LpSolutionOptimal:
        ours = "optimal"
        bound = None  # set from the objective below (within gapRel)
    else:
        ours = "feasible"
        # CBC's best bound is not exposed through PuLP: bound the gap with the LP relaxation.
        lp, _, _, _, _ = _pulp_model(problem, relax=True)
        lp.solve(_cbc(msg=False, timeLimit=float(time_limit_s)))
        bound = pulp.value(lp.objective) * scale if lp.status == pulp.LpStatusOptimal else None
    sol = _finish(problem, x, y, bound=bound, status=ours, backend="cbc", t0=t0,
                  n_rows=len(problem.groups) + len(problem.rows))
    if ours == "optimal":
        # CBC stopped within gapRel of its bound; report that guarantee.
        obj = sol.objective
        return replace(sol, bound=obj - abs(obj) * gap, gap=0.0 if obj == 0 else gap)
    return sol


def solve(problem: Problem, *, backend: str = "highs", time_limit_s: float = DEFAULT_TIME_LIMIT_S,
          gap: float = DEFAULT_GAP, threads: int | None = None, relax: bool = False,
          start: Sequence[float] | None = None, aux_start: Mapping[str, float] | None = None,
          deadline=None) -> Solution:
    """Solve ``problem`` with the named backend (``"highs"`` or ``"cbc"``).

    Raises :class:`InfeasibleError` when no point satisfies the rows, and
    :class:`SolverError` when the solver stops without a feasible point. A point returned
    is checked against every row (rounding of the relaxation cannot slip through).

    ``relax=True`` solves the LP relaxation (HiGHS only): its ``objective``/``bound`` is a
    lower bound on the ILP optimum, used to prune candidates; its ``picks`` are a rounding
    of the fractional point and may violate rows. ``start`` (column counts, with
    ``aux_start``; see :meth:`Problem.point`) hands HiGHS a feasible point as its first
    incumbent. ``deadline`` (a :class:`planner.deadline.Deadline`) caps the time limit at
    what it has left and stops the solve when it is cancelled (HiGHS): the incumbent so far
    comes back as ``"feasible"``, or :class:`SolverError` (status ``cancelled`` /
    ``time_limit``) when there is none; a deadline already spent raises its own error.
    """
    if backend not in BACKENDS:
        raise ValueError(f"The 'backend' parameter of solve must be one of {', '.join(BACKENDS)}. Got {backend!r} instead.")
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)) or not time_limit_s > 0:
        raise ValueError(f"The 'time_limit_s' parameter of solve must be a number in (0, inf). Got {time_limit_s!r} instead.")
    if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap < 1:
        raise ValueError(f"The 'gap' parameter of solve must be a number in [0, 1). Got {gap!r} instead.")
    cancel = None
    if deadline is not None:
        deadline.check("the solve")
        time_limit_s = max(min(float(time_limit_s), deadline.remaining()), 1e-3)

        def cancel() -> bool:
            return deadline.cancelled
    if relax:
        if backend != "highs":
            raise ValueError("The 'relax' parameter of solve needs backend='highs'.")
        return _solve_highs(problem, float(time_limit_s), float(gap), threads, relax=True, cancel=cancel)
    if backend == "highs":
        sol = _solve_highs(problem, float(time_limit_s), float(gap), threads, start=start, aux_start=aux_start,
                           cancel=cancel)
        left = float(time_limit_s) - sol.time_s
        if (sol.status == "optimal" and sol.gap is not None and sol.gap > gap and sol.objective and left > 0
                and not (cancel is not None and cancel())):
            # HiGHS also stops on absolute tolerances of the scaled objective (~1e-6). When
            # the optimum lies far below the largest cost coefficient (a few very noisy
            # options, e.g. low-rank truncations, set the scale), that stops it before the
            # relative gap is reached. Re-solve with the incumbent's objective as the unit,
            # starting from the incumbent, so the relative gap asked for holds.
            again = _solve_highs(problem, left, float(gap), threads, start=sol.counts, aux_start=sol.aux_values,
                                 objective_scale=abs(sol.objective), cancel=cancel)
            # The first solve's dual bound is not trusted: nodes pruned within the absolute
            # tolerance can leave it above the true optimum.
            best = again if again.objective <= sol.objective else sol
            sol = replace(best, status=again.status, bound=again.bound,
                          gap=_relative_gap(best.objective, again.bound), time_s=sol.time_s + again.time_s)
        left = float(time_limit_s) - sol.time_s
        if (start is not None and sol.status == "optimal" and sol.gap is not None and sol.gap > gap and left > 0
                and not (cancel is not None and cancel())):
            # HiGHS can stop at a start point it was handed without closing the gap (seen
            # when the start's continuous values sit far from their optimum): solve afresh.
            cold = _solve_highs(problem, left, float(gap), threads, cancel=cancel)
            sol = replace(cold, time_s=sol.time_s + cold.time_s) if cold.objective <= sol.objective else sol
    else:
        sol = _solve_cbc(problem, float(time_limit_s), float(gap), threads)
    bad = problem.violations(sol.counts, sol.aux_values, tol=1e-6)
    if bad:
        worst = max(bad, key=bad.get)
        raise SolverError(f"{backend} returned a point that violates {worst!r} by {bad[worst]:.3g} (relative); "
                          "the problem is numerically ill-conditioned", status="numerical", backend=backend)
    return sol
