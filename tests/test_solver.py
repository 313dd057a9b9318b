"""The planner ILP (planner.solver): optimality against exhaustive enumeration, backends,
aggregated groups, status mapping and input validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.solver import AuxVar, InfeasibleError, Problem, Row, SolverError, solve

TOL = 1e-6  # the feasibility tolerance solve() checks returned points with


def brute_force(problem: Problem, tol: float = TOL) -> float | None:
    """Exhaustive optimum over one column per one-hot group (None when infeasible), points
    violating a row by at most ``tol`` (relative) counting as feasible."""
    per_group = [np.flatnonzero(problem.column_group == g) for g in range(len(problem.groups))]
    best = None
    for picks in itertools.product(*per_group):
        x = problem.point(picks)
        if problem.violations(x, tol=tol):
            continue
        obj, _ = problem.evaluate(x)
        best = obj if best is None or obj < best else best
    return best


@st.composite
def small_problems(draw):
    """≤ 8 groups × ≤ 4 options, 1–3 budget rows (knapsack-like, like memory / time / bits)."""
    g = draw(st.integers(1, 8))
    sizes = [draw(st.integers(1, 4)) for _ in range(g)]
    cg = np.repeat(np.arange(g), sizes)
    n = cg.size
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cost = np.round(rng.uniform(0.0, 1.0, n), 6)
    rows = []
    for r in range(draw(st.integers(1, 3))):
        coeffs = np.round(rng.uniform(0.1, 10.0, n), 4) * 10.0 ** rng.integers(-3, 10)
        lo = sum(coeffs[cg == i].min() for i in range(g))
        hi = sum(coeffs[cg == i].max() for i in range(g))
        frac = draw(st.floats(-0.1, 1.1))
        rows.append(Row(name=f"budget{r}", coeffs=coeffs, sense="<=", rhs=float(lo + frac * (hi - lo))))
    return Problem(groups=tuple(f"g{i}" for i in range(g)), column_group=cg, cost=cost, rows=tuple(rows))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_ilp_optimum_equals_exhaustive_enumeration(problem):
    # Issue "The compression planner", acceptance 3: ILP optimum == enumeration on ≤ 8 × ≤ 4.
    # The solver works to a feasibility tolerance: its optimum lies between the optimum over
    # points that are feasible outright and the one over points within the tolerance (the
    # two differ only when hypothesis puts a point a hair's breadth past a budget).
    best = brute_force(problem, tol=1e-12)
    loose = brute_force(problem)
    if loose is None:
        with pytest.raises(InfeasibleError):
            solve(problem, gap=0.0)
        return
    if best is None:
        return
    sol = solve(problem, gap=0.0)
    assert loose - 1e-9 * max(1.0, abs(loose)) <= sol.objective <= best + 1e-9 * max(1.0, abs(best))
    assert not problem.violations(sol.counts, tol=TOL)
    assert sol.status == "optimal"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cbc_and_highs_agree(seed):
    rng = np.random.default_rng(seed)
    cg = np.repeat(np.arange(6), 4)
    mem = rng.uniform(1, 10, cg.size) * 1e9
    p = Problem(groups=tuple(f"g{i}" for i in range(6)), column_group=cg, cost=rng.uniform(0, 1, cg.size),
                rows=(Row(name="memory", coeffs=mem, sense="<=", rhs=float(mem.reshape(6, 4).mean(1).sum())),))
    a = solve(p, backend="highs", gap=0.0)
    b = solve(p, backend="cbc", gap=0.0)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)
    assert a.objective == pytest.approx(brute_force(p), rel=1e-9)
    assert b.backend == "cbc" and a.backend == "highs"


def test_aggregated_group_equals_its_one_hot_expansion():
    # A group of size L with identical coefficients = L one-hot groups with those coefficients.
    rng = np.random.default_rng(7)
    k, size = 3, 4
    cost = rng.uniform(0, 1, k)
    mem = rng.uniform(1, 5, k)
    rhs = float(mem.mean() * size)
    agg = Problem(groups=("layers",), column_group=np.zeros(k, dtype=int), cost=cost, group_size=np.array([size]),
                  rows=(Row(name="memory", coeffs=mem, sense="<=", rhs=rhs),))
    flat = Problem(groups=tuple(f"l{i}" for i in range(size)), column_group=np.repeat(np.arange(size), k),
                   cost=np.tile(cost, size), rows=(Row(name="memory", coeffs=np.tile(mem, size), sense="<=", rhs=rhs),))
    a = solve(agg, gap=0.0)
    b = solve(flat, gap=0.0)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)
    assert a.objective == pytest.approx(brute_force(flat), rel=1e-9)
    assert sum(a.counts) == size
    c = solve(agg, backend="cbc", gap=0.0)
    assert c.objective == pytest.approx(a.objective, rel=1e-9)


def test_auxiliary_models_a_max_and_large_unit_gaps():
    # P ≥ Σ time and P ≥ Σ stream (a max); bytes ~1e10 next to a unit coefficient must not
    # be lost to the solver's small-coefficient threshold (auxiliaries are column-scaled).
    cg = np.array([0, 0, 1, 1])
    rows = (Row(name="device", coeffs=np.array([1.0, 2.0, 1.0, 2.0]), sense="<=", rhs=0.0, aux={"P": -1.0}),
            Row(name="stream", coeffs=np.array([3.0, 0.0, 3.0, 0.0]), sense="<=", rhs=0.0, aux={"P": -1.0}),
            Row(name="footprint", coeffs=np.array([4e10, 1e10, 4e10, 1e10]), sense="<=", rhs=-1e8,
                aux={"M": -1.0}))
    p = Problem(groups=("a", "b"), column_group=cg, cost=np.zeros(4), rows=rows,
                aux=(AuxVar(name="P", cost=1.0), AuxVar(name="M", cost=1e-12)))
    sol = solve(p, gap=0.0)
    # max(Σ time, Σ stream): all "slow" = max(2, 6) = 6; all "fast" = max(4, 0) = 4; mixed = max(3, 3) = 3.
    assert sol.aux_values["P"] == pytest.approx(3.0, rel=1e-7)
    assert sol.aux_values["M"] == pytest.approx(5e10 + 1e8, rel=1e-7)


def test_infeasible_maps_to_our_error_for_both_backends():
    p = Problem(groups=("a",), column_group=np.array([0, 0]), cost=np.array([1.0, 2.0]),
                rows=(Row(name="memory", coeffs=np.array([5.0, 6.0]), sense="<=", rhs=4.0),))
    for backend in ("highs", "cbc"):
        with pytest.raises(InfeasibleError) as err:
            solve(p, backend=backend)
        assert err.value.status == "infeasible" and err.value.backend == backend


def test_relaxation_bounds_the_ilp_and_warm_start_is_accepted():
    rng = np.random.default_rng(3)
    cg = np.repeat(np.arange(10), 5)
    mem = rng.uniform(1, 10, cg.size)
    p = Problem(groups=tuple(f"g{i}" for i in range(10)), column_group=cg, cost=rng.uniform(0, 1, cg.size),
                rows=(Row(name="memory", coeffs=mem, sense="<=", rhs=float(mem.reshape(10, 5).mean(1).sum())),))
    ilp = solve(p, gap=0.0)
    lp = solve(p, relax=True)
    assert lp.objective <= ilp.objective + 1e-9
    again = solve(p, gap=0.0, start=ilp.counts)
    assert again.objective == pytest.approx(ilp.objective, rel=1e-9)


def test_gap_and_statistics_are_reported():
    cg = np.repeat(np.arange(3), 2)
    p = Problem(groups=("a", "b", "c"), column_group=cg, cost=np.arange(6.0),
                rows=(Row(name="memory", coeffs=np.ones(6), sense="<=", rhs=3.0),))
    sol = solve(p)
    assert sol.status == "optimal" and sol.gap is not None and sol.gap <= 1e-3
    assert sol.variables == 6 and sol.constraints == 4  # 3 one-hot rows + 1 named row
    assert sol.time_s >= 0 and set(sol.row_activity) == {"memory"}
    assert sol.slack(p)["memory"] == pytest.approx(0.0)
    assert sol.picks == (0, 2, 4)


def test_highs_banner_does_not_reach_stdout(capfd):
    # --json output must stay parseable: HiGHS prints a banner on its first construction.
    p = Problem(groups=("a",), column_group=np.array([0]), cost=np.array([0.0]))
    solve(p)
    out, _ = capfd.readouterr()
    assert "HiGHS" not in out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(groups=(), column_group=np.array([0]), cost=np.array([0.0])), "at least one decision group"),
        (dict(groups=("a", "b"), column_group=np.array([0, 0]), cost=np.zeros(2)), "every group needs at least one"),
        (dict(groups=("a",), column_group=np.array([0]), cost=np.array([math.nan])), "finite"),
        (dict(groups=("a",), column_group=np.array([0]), cost=np.zeros(1),
              rows=(Row(name="r", coeffs=np.ones(2), sense="<=", rhs=1.0),)), "has 2 coefficients"),
        (dict(groups=("a",), column_group=np.array([0]), cost=np.zeros(1),
              rows=(Row(name="r", coeffs=np.ones(1), sense="<=", rhs=1.0, aux={"y": 1.0}),)), "unknown auxiliaries"),
        (dict(groups=("a",), column_group=np.array([0]), cost=np.zeros(1), group_size=np.array([0])), "group_size"),
    ],
)
def test_invalid_problems_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Problem(**kwargs)


def test_invalid_rows_and_parameters():
    with pytest.raises(ValueError, match="sense"):
        Row(name="r", coeffs=np.ones(1), sense="<", rhs=1.0)
    with pytest.raises(ValueError, match="rhs"):
        Row(name="r", coeffs=np.ones(1), sense="<=", rhs=math.inf)
    p = Problem(groups=("a",), column_group=np.array([0]), cost=np.zeros(1))
    with pytest.raises(ValueError, match="backend"):
        solve(p, backend="glpk")
    with pytest.raises(ValueError, match="time_limit_s"):
        solve(p, time_limit_s=0)
    with pytest.raises(ValueError, match="gap"):
        solve(p, gap=1.5)


def test_solver_error_is_not_infeasible():
    # Distinct types so that callers can map "proven infeasible" and "gave up" differently;
    # proven infeasibility is the one InfeasibleError that capacity searches raise too.
    from planner import capacity, errors

    assert InfeasibleError is errors.InfeasibleError is capacity.InfeasibleError
    assert not issubclass(InfeasibleError, SolverError) and issubclass(SolverError, errors.TierwiseError)
    e = SolverError("x", status="time_limit", backend="highs")
    assert not isinstance(e, InfeasibleError) and e.status == "time_limit"
    assert InfeasibleError("none", backend="cbc").exit_code == 3
