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


def test_ctrl_c_stops_a_plan_solve_with_a_message_and_writes_nothing(tmp_path):
    """Ctrl-C during a long solve: HiGHS polls a Python callback, which swallowed the KeyboardInterrupt, so
    the plan solved on to its time limit and wrote its file (rc 0); typer's own Ctrl-C exit (130) printed
    nothing. Now the interrupt cancels every deadline of the process: exit 130, one line, no file."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "p.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner", "plan", "--model", "llama-3.1-405b", "--hardware", "h100-sxm",
         "--devices", "4096", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "120"})
    time.sleep(4.0)  # past start-up, inside the search (the solve alone takes tens of seconds)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "aborted (Ctrl-C)" in err and "Traceback" not in err and "internal error" not in err
    assert time.monotonic() - started < 15
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_interrupted_process_commits_no_file(tmp_path):
    from planner.deadline import INTERRUPTED
    from planner.fileio import atomic_write_text

    INTERRUPTED.set()
    try:
        assert Deadline(None).cancelled and Deadline(None).remaining() == 0.0
        with pytest.raises(KeyboardInterrupt):
            atomic_write_text(tmp_path / "x.yaml", "a: 1\n")
    finally:
        INTERRUPTED.clear()
    assert not list(tmp_path.iterdir())
    atomic_write_text(tmp_path / "x.yaml", "a: 1\n")
    assert (tmp_path / "x.yaml").read_text() == "a: 1\n"
