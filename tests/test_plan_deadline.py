"""One deadline bounds a whole plan search: the time limit holds on a huge search space,
cancellation from another thread stops a running search, and a request with a single
candidate is solved without a bound solve."""

from __future__ import annotations

import threading
import time

import pytest

from hwmodels import load_device
from planner.arch import load_arch
from planner.deadline import Cancelled, Deadline, DeadlineExceeded
from planner.diagnose import NoFeasiblePlanError
from planner.search import Planner, PlanProblem


@pytest.fixture(scope="module")
def big():
    return Planner(load_arch("llama-3.1-405b"), load_device("h100-sxm"))


def test_time_limit_holds_on_4096_devices(big):
    limit = 2.0
    t0 = time.monotonic()
    try:
        plan = big.solve(PlanProblem(devices=4096, max_memory_per_device_bytes=60e9, time_limit_s=limit))
    except DeadlineExceeded as exc:
        assert exc.field == "time_limit_s"
    else:
        assert plan.solver.status in ("optimal", "feasible", "time_limit")
    # The limit bounds everything, formulation and diagnosis included (slack: a busy CI box).
    assert time.monotonic() - t0 < limit + 3.0


def test_cancel_from_another_thread_stops_the_search(big):
    dl = Deadline(60.0)
    out: dict = {}

    def run():
        t = time.monotonic()
        try:
            out["plan"] = big.solve(PlanProblem(devices=4096, max_memory_per_device_bytes=60e9), deadline=dl)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out["error"] = exc
        out["t"] = time.monotonic() - t

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.5)
    cancelled_at = time.monotonic()
    dl.cancel()
    th.join(10.0)
    assert not th.is_alive()
    assert isinstance(out.get("error"), Cancelled)
    assert time.monotonic() - cancelled_at < 2.0


def test_diagnosis_shares_the_callers_deadline():
    planner = Planner(load_arch("llama-3.1-70b"), load_device("h100-sxm"))
    limit = 1.5
    t0 = time.monotonic()
    with pytest.raises((NoFeasiblePlanError, DeadlineExceeded)):
        planner.solve(PlanProblem(devices=1, max_memory_per_device_bytes=10e9, kv="bf16", time_limit_s=limit))
    assert time.monotonic() - t0 < limit + 3.0


def test_one_candidate_needs_no_bound_solve(monkeypatch):
    import planner.search as search

    calls = []
    real = search.solve

    def spy(problem, **kw):
        calls.append(kw.get("relax", False))
        return real(problem, **kw)

    monkeypatch.setattr(search, "solve", spy)
    planner = Planner(load_arch("llama-3.2-1b"), load_device("l4"))
    plan = planner.solve(PlanProblem(kv="bf16", max_memory_per_device_bytes=1.5e9))
    assert plan.solver.status == "optimal"
    assert calls and not any(calls)  # no LP relaxation for a single (layout, KV) candidate


def test_expired_deadline_is_refused_up_front():
    planner = Planner(load_arch("llama-3.2-1b"), load_device("l4"))
    dl = Deadline(0.0)
    with pytest.raises(DeadlineExceeded):
        planner.solve(PlanProblem(kv="bf16"), deadline=dl)


def test_a_diagnosis_cut_short_does_not_claim_that_no_change_works():
    """When the time limit stops the diagnosis before its changes are tried, the answer says a longer
    limit may find one, not that no single change makes the request fit."""
    from planner.diagnose import diagnose

    planner = Planner(load_arch("llama-3.1-70b"), load_device("h100-sxm"))
    req = PlanProblem(devices=1, max_memory_per_device_bytes=10e9, kv="bf16")
    dl = Deadline(600.0)
    real = planner.minimum

    def minimum_then_time_is_up(*args, **kw):
        out = real(*args, **kw)
        dl._end = 0.0  # the limit runs out right after the memory bound
        return out

    planner.minimum = minimum_then_time_is_up
    d = diagnose(planner, req, deadline=dl)
    text = d.render("cli")
    assert "cut short by the time limit" in text
    assert "makes it fit" not in text and "before the time limit" in text and "--time-limit" in text, text
