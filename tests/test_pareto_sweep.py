"""The Pareto sweep runs from the smallest budget up, each solve starting from the previous
point (feasible under the larger budget), and stops at its one deadline."""

from __future__ import annotations

import time

import pytest

from hwmodels import load_device
from planner.arch import load_arch
from planner.deadline import Deadline
from planner.search import Planner, PlanProblem, non_dominated


@pytest.fixture()
def planner():
    return Planner(load_arch("llama-3.2-1b"), load_device("l4"))


def test_sweep_warm_starts_and_matches_cold_solves(planner, monkeypatch):
    import planner.search as search

    starts = []
    real = search.solve

    def spy(problem, **kw):
        if not kw.get("relax"):
            starts.append(kw.get("start") is not None)
        return real(problem, **kw)

    monkeypatch.setattr(search, "solve", spy)
    req = PlanProblem(kv="bf16", max_memory_per_device_bytes=2.0e9)
    front = planner.pareto(req, 4)
    assert any(starts)
    assert front == non_dominated(front)
    # Each point is what a fresh planner finds for its budget (warm starts change nothing).
    for p in front[1:-1]:
        cold = Planner(load_arch("llama-3.2-1b"), load_device("l4")).solve(
            PlanProblem(kv="bf16", max_memory_per_device_bytes=p.constraints.max_memory_per_device_bytes))
        assert cold.predicted.sensitivity == pytest.approx(p.predicted.sensitivity, rel=1e-3, abs=1e-12)


def test_sweep_stops_at_its_deadline(planner):
    req = PlanProblem(kv="bf16", max_memory_per_device_bytes=2.0e9, time_limit_s=60.0)
    dl = Deadline(1.0)
    t0 = time.monotonic()
    try:
        front = planner.pareto(req, 16, deadline=dl)
    except Exception as exc:  # noqa: BLE001 - only the deadline's own error is acceptable
        from planner.deadline import DeadlineExceeded

        assert isinstance(exc, DeadlineExceeded)
    else:
        assert 1 <= len(front) <= 16
    assert time.monotonic() - t0 < 1.0 + 3.0
