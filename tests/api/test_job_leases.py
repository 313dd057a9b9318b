"""Several servers on one database: each job is held by its server under a lease that the
server renews; another server resumes a job only once that lease has expired (its server is
gone), and of servers claiming one job at once exactly one gets it."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient
from liveserver import LONG_CAPACITY, Server
from sqlalchemy import update

from api.db import JobRow, Store, utcnow
from api.main import create_app
from api.settings import Settings

SMALL_CAPACITY = {"model": "llama-3.2-1b", "hardware": ["l4"], "qps": 1, "ttft_slo_s": 2, "tpot_slo_s": 0.2}




def _url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'tierwise.db'}"


def _expire(store: Store, job_id: str) -> None:
    """What a dead owner leaves behind: a lease that ended a minute ago."""
    with store.session() as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(lease_until=utcnow() - dt.timedelta(seconds=60)))


def _wait(pred, timeout_s: float, what: str):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout_s} s")


def test_a_live_owners_job_is_not_claimed_and_an_expired_one_is_claimed_once(store_url):
    a = Store(store_url, owner="server-a")
    b = Store(store_url, owner="server-b")
    a.admit_job(id="j", kind="plan", request={"id": "p"}, max_pending=10, plan_id="p")
    assert a.set_job("j", status="running", only_if=("queued",), mine=True)
    assert b.expired_jobs() == [] and not b.claim_job("j")
    assert a.renew_leases() == {"j"} and b.renew_leases() == set()
    _expire(a, "j")
    assert [j.id for j in b.expired_jobs()] == ["j"]
    assert b.claim_job("j", note="resumed") and not b.claim_job("j")
    job = b.get_job("j")
    assert (job.owner, job.status, job.note) == ("server-b", "queued", "resumed")
    # the old owner's late writes change nothing: it no longer holds the job
    assert a.renew_leases() == set()
    assert not a.set_job("j", status="running", only_if=("queued",), mine=True)
    assert b.set_job("j", status="running", only_if=("queued",), mine=True)
    assert a.add_plan(id="p", body={"model": "m", "hardware": "h"}, request=None, job_id="j") is None
    assert not a.set_job("j", status="failed", only_if=("running",), mine=True,
                         error={"code": "internal", "message": "x", "field": None})
    assert b.get_job("j").status == "running" and a.get_plan("p") is None
    # a released lease (clean shutdown) is claimable at once; finished jobs never are
    assert b.release_leases() == 1 and a.claim_job("j")
    assert a.set_job("j", status="cancelled", error={"code": "cancelled", "message": "x", "field": None})
    assert b.expired_jobs() == [] and not b.claim_job("j")
    a.close()
    b.close()


def test_concurrent_claims_of_one_job_are_exclusive(store_url):
    seed = Store(store_url, owner="dead")
    stores = [Store(store_url, owner=f"s{i}") for i in range(6)]
    for round_ in range(10):
        jid = f"job-{round_}"
        seed.admit_job(id=jid, kind="capacity", request={}, max_pending=1000)
        _expire(seed, jid)
        gate = threading.Barrier(len(stores))
        won: list[str] = []

        def claim(s: Store, jid=jid, gate=gate, won=won) -> None:
            gate.wait()
            if s.claim_job(jid):
                won.append(s.owner)

        threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, (jid, won)
        assert seed.get_job(jid).owner == won[0]
    for s in (seed, *stores):
        s.close()


def _settings(tmp_path, **changes) -> Settings:
    base = dict(database_url=_url(tmp_path), workers=1, short_workers=0, sync_wait_s=0.0)
    return Settings(**{**base, **changes})


@pytest.fixture
def gated_capacity(monkeypatch):
    """Capacity jobs run the real search only once the returned event is set; until then they
    stay ``running`` (checking their deadline, so a cancel or a shutdown still stops them)."""
    from api import services

    gate = threading.Event()
    real = services.capacity

    def capacity(catalog, request, deadline):
        while not gate.wait(0.05):
            deadline.check()
        return real(catalog, request, deadline=deadline)

    monkeypatch.setattr(services, "capacity", capacity)
    return gate


def test_a_second_server_leaves_a_live_servers_jobs_alone(tmp_path, gated_capacity):
    """Two apps on one SQLite file: B starting while A runs one job and holds another queued
    resumes neither (the trial's second ``tierwise serve`` re-ran A's running job); once A
    stops cleanly, releasing its leases, the next server takes both at once."""
    body = {**SMALL_CAPACITY, "time_limit_s": 60}
    with TestClient(create_app(_settings(tmp_path, job_lease_s=1.5))) as ca:
        running = ca.post("/v1/capacity", json=body).headers["location"]
        _wait(lambda: ca.get(running).json()["status"] == "running", 60, "A running the job")
        queued = ca.post("/v1/capacity", json=body).headers["location"]
        owner_a = ca.app.state.store.owner
        with TestClient(create_app(_settings(tmp_path, job_lease_s=1.5))) as cb:
            runner_b, store_b = cb.app.state.runner, cb.app.state.store
            assert runner_b.resume() == 0
            time.sleep(3 * 1.5)  # several of A's renewals and of B's claim rounds go by
            for u, status in ((running, "running"), (queued, "queued")):
                job = store_b.get_job(u.rsplit("/", 1)[1])
                assert (job.status, job.owner, job.note) == (status, owner_a, None)
                assert runner_b.future(job.id) is None
    with TestClient(create_app(_settings(tmp_path, job_lease_s=60))) as cc:
        store_c = cc.app.state.store
        for u in (running, queued):
            row = store_c.get_job(u.rsplit("/", 1)[1])
            assert row.owner == store_c.owner and row.note.startswith("resumed"), (row.owner, row.note)
        gated_capacity.set()
        for u in (running, queued):
            job = _wait(lambda u=u: (j := cc.get(u).json())["status"] not in ("queued", "running") and j, 120, u)
            assert job["status"] == "succeeded", job


def test_a_killed_servers_jobs_are_resumed_once_their_lease_expires(tmp_path):
    """A real ``tierwise serve`` (A) runs a long search with more queued behind it; an app (B)
    on the same database leaves them alone while A lives, and claims those A left unfinished
    once A is SIGKILLed (no lease released) and its lease ends."""
    env = {"TIERWISE_WORKERS": "1", "TIERWISE_SHORT_WORKERS": "0", "TIERWISE_SYNC_WAIT_S": "0",
           "TIERWISE_JOB_LEASE_S": "2"}
    a = Server(tmp_path, env=env).start()
    try:
        with a.client() as c:
            urls = [c.post("/v1/capacity", json={**LONG_CAPACITY, "time_limit_s": 40}) for _ in range(3)]
            assert [r.status_code for r in urls] == [202] * 3, urls[0].text
            ids = [r.headers["location"].rsplit("/", 1)[1] for r in urls]
            _wait(lambda: c.get(f"/v1/jobs/{ids[0]}").json()["status"] == "running", 60, "A running the first job")
        with TestClient(create_app(_settings(tmp_path, job_lease_s=2.0))) as cb:
            store_b = cb.app.state.store
            owner_a = store_b.get_job(ids[0]).owner
            time.sleep(2 * 2.0)
            rows = [store_b.get_job(i) for i in ids]
            assert all(r.owner == owner_a and r.note is None for r in rows), [(r.status, r.owner, r.note) for r in rows]
            a.kill()
            left = [i for i in ids if store_b.get_job(i).status in ("queued", "running")]
            assert left, "A finished every job before the kill: nothing left to resume"
            for i in left:
                row = _wait(lambda i=i: (j := store_b.get_job(i)).owner == store_b.owner and j, 30, f"B claiming {i}")
                assert row.note.startswith("resumed") and row.status in ("queued", "running")
            for i in left:  # the searches themselves are not under test
                assert cb.delete(f"/v1/jobs/{i}").json()["status"] == "cancelled"
    finally:
        a.kill()


# The tables exactly as the previous release created them on SQLite (no job leases).
PREVIOUS_SCHEMA = """
CREATE TABLE hardware_profiles (id VARCHAR(64) NOT NULL, body JSON NOT NULL, content_hash VARCHAR(80) NOT NULL,
    created_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE TABLE model_configs (id VARCHAR(64) NOT NULL, config JSON NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE TABLE plans (id VARCHAR(64) NOT NULL, model VARCHAR(128) NOT NULL, hardware VARCHAR(128) NOT NULL,
    created_at DATETIME NOT NULL, checksum VARCHAR(80) NOT NULL, body JSON NOT NULL, request JSON, PRIMARY KEY (id));
CREATE INDEX ix_plans_hardware_created ON plans (hardware, created_at);
CREATE INDEX ix_plans_created ON plans (created_at);
CREATE INDEX ix_plans_model_created ON plans (model, created_at);
CREATE TABLE plan_ids (id VARCHAR(64) NOT NULL, job_id VARCHAR(64), PRIMARY KEY (id));
CREATE TABLE jobs (id VARCHAR(64) NOT NULL, kind VARCHAR(32) NOT NULL, status VARCHAR(16) NOT NULL, request JSON NOT NULL,
    plan_id VARCHAR(64), error JSON, solve_s FLOAT, note TEXT, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
    result JSON, client VARCHAR(128), PRIMARY KEY (id));
CREATE INDEX ix_jobs_status ON jobs (status);
"""


def test_a_database_of_the_previous_release_gains_leases_and_its_jobs_resume(tmp_path):
    db = tmp_path / "tierwise.db"
    con = sqlite3.connect(db)
    con.executescript(PREVIOUS_SCHEMA)
    now = "2026-01-02 03:04:05.000000"
    import json

    con.execute("INSERT INTO jobs (id, kind, status, request, created_at, updated_at, client) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("old-job", "capacity", "running", json.dumps({**SMALL_CAPACITY, "time_limit_s": 30}), now, now, "1.2.3.4"))
    con.commit()
    con.close()
    with TestClient(create_app(_settings(tmp_path))) as c:
        job = _wait(lambda: (j := c.get("/v1/jobs/old-job").json())["status"] not in ("queued", "running") and j,
                    120, "the old job finishing")
        assert job["status"] == "succeeded", job
        row = c.app.state.store.get_job("old-job")
        assert row.owner == c.app.state.store.owner and row.note.startswith("resumed")
    cols = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(jobs)")}
    assert {"owner", "lease_until"} <= cols


def test_the_lease_setting_is_read_and_checked():
    assert Settings.from_env({"TIERWISE_DATABASE_URL": "sqlite://", "TIERWISE_JOB_LEASE_S": "4.5"}).job_lease_s == 4.5
    for bad in ("0", "-1", "soon"):
        try:
            Settings.from_env({"TIERWISE_DATABASE_URL": "sqlite://", "TIERWISE_JOB_LEASE_S": bad})
        except ValueError as exc:
            assert "TIERWISE_JOB_LEASE_S" in str(exc)
        else:
            raise AssertionError(bad)

