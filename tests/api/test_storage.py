"""The store on SQLite (always) and PostgreSQL (when TIERWISE_TEST_POSTGRES_URL is set)."""

from __future__ import annotations


import pytest

from api.db import DuplicateIdError, QueueFullError, Store
from planner.plan import plan_to_dict



@pytest.fixture(scope="module")
def plan_body():
    from test_export import make_plan

    return plan_to_dict(make_plan("llama-3.2-1b", "l4", lambda g: ("int8", "bf16", "dense")))


def test_sqlite_is_wal_with_full_sync(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'w.db'}")
    with s.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    s.close()


def test_plans_persist_across_store_instances(store_url, plan_body):
    s = Store(store_url)
    s.admit_job(id="j1", kind="plan", request={"id": "p1"}, max_pending=10, plan_id="p1")
    s.set_job("j1", status="running")
    s.add_plan(id="p1", body=plan_body, request={"model": "llama-3.2-1b"}, job_id="j1", solve_s=0.5)
    s.close()
    s2 = Store(store_url)
    row = s2.get_plan("p1")
    assert row.body == plan_body and row.model == "llama-3.2-1b" and row.hardware == "l4" and row.checksum == plan_body["checksum"]
    job = s2.get_job("j1")
    assert job.status == "succeeded" and job.plan_id == "p1" and job.solve_s == 0.5
    s2.close()


def test_duplicates_raise_and_leave_the_first(store_url, plan_body):
    s = Store(store_url)
    s.add_plan(id="p1", body=plan_body, request=None)
    with pytest.raises(DuplicateIdError):
        s.add_plan(id="p1", body={**plan_body, "model": "other"}, request=None)
    assert s.get_plan("p1").model == "llama-3.2-1b"
    s.add_hardware("hw", {"id": "hw"}, "sha256:x")
    with pytest.raises(DuplicateIdError):
        s.add_hardware("hw", {"id": "hw"}, "sha256:y")
    s.add_model("m", {"model_type": "llama"})
    with pytest.raises(DuplicateIdError):
        s.add_model("m", {})
    s.close()


def test_list_filters_pages_and_deletes(store_url, plan_body):
    s = Store(store_url)
    for i in range(7):
        s.add_plan(id=f"p{i}", body={**plan_body, "hardware": "l4" if i % 2 else "t4"}, request=None)
    total, rows = s.list_plans(model=None, hardware=None, limit=3, offset=0)
    assert total == 7 and len(rows) == 3
    seen = [r.id for off in (0, 3, 6) for r in s.list_plans(model=None, hardware=None, limit=3, offset=off)[1]]
    assert sorted(seen) == [f"p{i}" for i in range(7)]
    total, rows = s.list_plans(model="llama-3.2-1b", hardware="l4", limit=50, offset=0)
    assert total == 3 and {r.id for r in rows} == {"p1", "p3", "p5"}
    assert s.delete_plan("p1") and not s.delete_plan("p1") and s.get_plan("p1") is None
    s.close()


def test_unfinished_jobs_are_found_for_resumption(store_url):
    s = Store(store_url)
    s.admit_job(id="a", kind="plan", request={"id": "pa"}, max_pending=10, plan_id="pa")
    s.admit_job(id="b", kind="plan", request={"id": "pb"}, max_pending=10, plan_id="pb")
    s.set_job("b", status="failed", error={"code": "infeasible", "message": "x", "field": None})
    assert [j.id for j in s.unfinished_jobs()] == ["a"] and s.count_unfinished_jobs() == 1
    s.close()


def test_a_cancel_racing_the_worker_start_is_never_undone(store_url):
    """The worker marks a job running only while it is queued; a cancel ends it only while it is queued
    or running. Raced from two threads, a cancel that reports success must leave the job cancelled:
    a read-then-write update let the worker's "running" overwrite it, and a restart then resumed a
    job its client had cancelled."""
    import threading

    s = Store(store_url)
    lost = []
    for i in range(40):
        jid = f"race-{i}"
        s.admit_job(id=jid, kind="capacity", request={}, max_pending=1000)
        gate = threading.Barrier(2)
        got: dict[str, bool] = {}

        def start(jid=jid, gate=gate, got=got):
            gate.wait()
            got["running"] = s.set_job(jid, status="running", only_if=("queued",))

        def cancel(jid=jid, gate=gate, got=got):
            gate.wait()
            got["cancelled"] = s.set_job(jid, status="cancelled", only_if=("queued", "running"),
                                         error={"code": "cancelled", "message": "x", "field": None})

        threads = [threading.Thread(target=start), threading.Thread(target=cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = s.get_job(jid).status
        assert got["cancelled"], got  # queued or running: a cancel always ends it
        if final != "cancelled":
            lost.append((jid, got, final))
    s.close()
    assert not lost, lost


def test_admission_reserves_plan_ids_and_caps_pending_jobs(store_url, plan_body):
    """One transaction: a reserved or stored id is a DuplicateIdError, the pending cap is exact,
    and a job that ends without a plan (failed, cancelled) gives its id back."""
    s = Store(store_url)
    s.admit_job(id="j1", kind="plan", request={}, max_pending=2, plan_id="p1")
    with pytest.raises(DuplicateIdError):
        s.admit_job(id="j2", kind="plan", request={}, max_pending=2, plan_id="p1")
    s.admit_job(id="j3", kind="capacity", request={}, max_pending=2)
    with pytest.raises(QueueFullError):
        s.admit_job(id="j4", kind="plan", request={}, max_pending=2, plan_id="p4")
    assert s.get_job("j2") is None and s.get_job("j4") is None and s.count_unfinished_jobs() == 2
    assert s.set_job("j1", status="cancelled", only_if=("queued", "running"))
    assert not s.set_job("j1", status="running", only_if=("queued",))
    s.admit_job(id="j5", kind="plan", request={}, max_pending=3, plan_id="p1")  # released by the cancel
    s.set_job("j5", status="running")
    assert s.add_plan(id="p1", body=plan_body, request=None, job_id="j5") is not None
    with pytest.raises(DuplicateIdError):
        s.admit_job(id="j6", kind="plan", request={}, max_pending=9, plan_id="p1")
    assert s.delete_plan("p1")
    s.admit_job(id="j7", kind="plan", request={}, max_pending=9, plan_id="p1")
    s.set_job("j7", status="cancelled")
    s.set_job("j7", status="running")  # (forced) a cancelled job's late result is not stored
    s.set_job("j7", status="cancelled")
    assert s.add_plan(id="p1", body=plan_body, request=None, job_id="j7") is None and s.get_plan("p1") is None
    s.close()
