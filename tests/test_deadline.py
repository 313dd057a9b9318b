import threading
import time

import pytest

from planner.deadline import Cancelled, Deadline, DeadlineExceeded
from planner.errors import TierwiseError


def test_child_never_outlives_parent_and_sees_cancel():
    parent = Deadline(0.3)
    child = parent.child(seconds=10.0)
    assert child.remaining() <= 0.3
    assert parent.child(fraction=0.5).remaining() <= 0.16
    threading.Timer(0.05, parent.cancel).start()
    time.sleep(0.1)
    assert child.expired() and child.cancelled
    with pytest.raises(Cancelled) as info:
        child.check("the solve")
    assert isinstance(info.value, TierwiseError) and info.value.code == "cancelled"


def test_expired_deadline_names_its_field_per_front_end():
    d = Deadline(0.0, field="time_limit_s")
    with pytest.raises(DeadlineExceeded) as info:
        d.check("the diagnosis")
    assert info.value.kind == "infeasible" and info.value.exit_code == 3
    assert "--time-limit-s" in info.value.render("cli")
    assert "'time_limit_s'" in info.value.render("rest")


def test_unbounded_and_bad_budget():
    assert Deadline.unbounded().remaining() == float("inf")
    with pytest.raises(TierwiseError) as info:
        Deadline(-1)
    assert info.value.field == "time_limit_s"


def test_running_out_names_the_limit_the_caller_set():
    """The message says the limit as given (a child's share is not what the caller set) in each
    front end's syntax, and what to do."""
    dl = Deadline(0.0)
    with pytest.raises(DeadlineExceeded) as e:
        dl.child(fraction=0.5).check("the capacity search")
    assert e.value.code == "time_limit" and e.value.field == "time_limit_s"
    assert e.value.render("cli", {"time_limit_s": "--time-limit"}) == (
        "the capacity search ran out of time before anything was found (the limit is --time-limit 0 s; raise it)")
    assert "'time_limit_s' 0 s" in e.value.render("rest")
