"""The service under attack and under load, on the real ``tierwise serve`` process: bounded
YAML, bounded models, deadlines, cancellation, fairness, atomic ids and an exact queue cap."""

from __future__ import annotations

import concurrent.futures as cf
import json
import sqlite3
import threading
import time

import httpx
import pytest
from conftest import Server
from liveserver import LONG_CAPACITY

# The classic "billion laughs": 9 levels of 9 aliases, 525 bytes → 9⁹ strings once expanded.
ALIAS_BOMB = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
              + "".join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                        for p, c in zip("abcdefgh", "bcdefghi")))
NESTING_BOMB = "[" * 100_000
SMALL_CAPACITY = {"model": "llama-3.2-1b", "hardware": ["l4"], "qps": 1, "ttft_slo_s": 2, "tpot_slo_s": 0.2}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("hardening"), env={"TIERWISE_SYNC_WAIT_S": "0.5"}).start()
    yield s
    s.stop()


def _poll(c: httpx.Client, url: str, timeout_s: float) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        job = c.get(url).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{url} still unfinished after {timeout_s} s")


def test_yaml_bombs_are_refused_fast_while_healthz_answers(srv):
    assert len(ALIAS_BOMB) <= 525
    stop = threading.Event()
    health: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=srv.base, timeout=5) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                health.append(time.perf_counter() - t0)
                time.sleep(0.02)

    attacks = [("/v1/models", {"id": "bomb", "yaml": ALIAS_BOMB}), ("/v1/hardware", {"yaml": ALIAS_BOMB}),
               ("/v1/models", {"id": "nest", "yaml": NESTING_BOMB}), ("/v1/hardware", {"yaml": NESTING_BOMB}),
               ("/v1/models", {"id": "deep", "config": json.loads('{"a":' * 60 + "1" + "}" * 60)})]
    with srv.client() as c:  # a fresh server's first request starts its thread pool: not part of the attack
        assert c.post("/v1/models", json={"id": "warm", "yaml": "[1]"}).status_code == 422
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with srv.client() as c:
            time.sleep(0.2)
            for _ in range(3):
                for path, body in attacks:
                    t0 = time.perf_counter()
                    r = c.post(path, json=body)
                    took = time.perf_counter() - t0
                    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
                    assert r.json()["error"]["code"] in ("invalid_yaml", "invalid_field"), r.text
                    assert took < 1.0, (path, took)
            raw = c.post("/v1/models", content=b'{"id": "x", "config": ' + b"[" * 100_000 + b"}",
                         headers={"content-type": "application/json"})
            assert r.status_code < 500 and raw.status_code == 400 and raw.json()["error"]["code"] == "malformed_json", raw.text
    finally:
        stop.set()
        prober.join()
    # The old server froze for 46.8 s. Here /healthz stays fast throughout; the bound on the
    # slowest probe is looser than 100 ms because this test shares 2 cores with other work
    # (an idle server's slowest /healthz was 35-205 ms there); benchmarks/bench_hardening.py
    # reports the figures.
    health.sort()
    assert len(health) >= 5 and health[int(0.9 * len(health))] < 0.1 and health[-1] < 0.5, health[-5:]


def test_huge_models_are_refused_at_registration_naming_the_field(srv):
    from planner.arch import _models_dir

    cfg = json.loads((_models_dir() / "llama-3.1-8b.json").read_text())
    with srv.client() as c:
        for key, value in (("num_hidden_layers", 10**6), ("hidden_size", 2**22), ("vocab_size", 10**9)):
            t0 = time.perf_counter()
            r = c.post("/v1/models", json={"id": f"huge-{key}".replace("_", "-"), "config": {**cfg, key: value}})
            assert time.perf_counter() - t0 < 1.0
            assert r.status_code == 422, r.text
            err = r.json()["error"]
            assert err["code"] == "limit_exceeded" and err["field"] == f"config.{key}" and str(value) in err["message"], err
        assert c.post("/v1/models", json={"id": "deep-ok", "config": {**cfg, "num_hidden_layers": 200}}).status_code == 201


def test_same_plan_id_concurrently_is_one_success_and_seven_409(srv):
    body = {"id": "same-id", "model": "llama-3.2-1b", "hardware": "l4", "devices": 1, "kv": "bf16"}

    def post(_: int) -> httpx.Response:
        with srv.client() as c:
            return c.post("/v1/plans", json=body)

    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(409) == 7 and len([s for s in codes if s in (201, 202)]) == 1, [(r.status_code, r.text[:200]) for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"] == {"code": "duplicate_id", "field": "id", "message": r.json()["error"]["message"]}
    ok = next(r for r in answers if r.status_code in (201, 202))
    with srv.client() as c:
        if ok.status_code == 202:
            job = _poll(c, ok.headers["location"], 120)
            assert job["status"] == "succeeded", job
        plan = c.get("/v1/plans/same-id").json()
        assert plan["plan"]["model"] == "llama-3.2-1b" and plan["created_at"].endswith("+00:00")


def test_capacity_with_a_time_limit_returns_within_it(srv):
    with srv.client() as c:
        t0 = time.perf_counter()
        r = c.post("/v1/capacity", json={**LONG_CAPACITY, "time_limit_s": 10})
        assert r.status_code == 202, r.text
        job = _poll(c, r.headers["location"], 30)
        took = time.perf_counter() - t0
    assert took < 15.0, took
    assert job["kind"] == "capacity" and job["created_at"].endswith("+00:00"), job
    if job["status"] == "succeeded":  # the fleets found within the limit, marked incomplete
        assert job["result"]["status"] in ("time_limit", "complete"), job
    else:  # nothing found yet: said as the time limit, not as a proof that nothing fits
        assert job["status"] == "failed" and job["error"]["code"] == "time_limit", job
        assert "time limit stopped the search" in job["error"]["message"], job


def test_a_big_plan_with_a_time_limit_ends_within_it(srv):
    """405B on 4096 devices with a 10 s limit: the job has ended (a plan at its time limit,
    or a failure with code time_limit) within 15 s, and a worker is free again."""
    with srv.client() as c:
        t0 = time.perf_counter()
        r = c.post("/v1/plans", json={"model": "llama-3.1-405b", "hardware": "h100-sxm", "devices": 4096, "time_limit_s": 10})
        job = _poll(c, r.headers["location"], 30) if r.status_code == 202 else None
        took = time.perf_counter() - t0
    assert took < 15.0, took
    assert r.status_code in (201, 422) or job["status"] in ("succeeded", "failed"), (r.text, job)
    if job and job["status"] == "failed":
        assert job["error"]["code"] in ("time_limit", "infeasible"), job


def test_service_faults(srv):
    with srv.client() as c:
        assert c.get("/v1/models/llama-3.2-1b%0A").status_code == 404
        r = c.post("/v1/models", json={"id": "ok-id\n", "config": {}})
        assert r.status_code == 422 and r.json()["error"]["field"] == "id"
        r = c.post("/v1/hardware", json={"yaml": "id: \"lab\\n\"\nname: x\n"})
        assert r.status_code == 422 and "id" in r.json()["error"]["message"]
        r = c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "batch": True})
        assert r.status_code == 422 and r.json()["error"]["field"] == "batch"
        r = c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "prompt": "512"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "prompt"
        assert c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "flash_chunk_kib": 256}).status_code == 200
        r = c.post("/v1/estimate", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
        r = c.post("/v1/estimate", content=b"", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_body" and "None" not in r.text
        for path in ("/healthz", "/v1/models", "/v1/hardware/l4", "/v1/plans", "/metrics"):
            h, g = c.head(path), c.get(path)
            assert h.status_code == g.status_code == 200 and h.content == b"", path
        assert c.head("/v1/plans/nope").status_code == 404
        r = c.post("/v1/plans", json={"model": "llama-3.1-405b", "hardware": "l4", "devices": 1, "time_limit_s": 5})
        job = _poll(c, r.headers["location"], 60) if r.status_code == 202 else None
        assert r.status_code == 422 or job["status"] == "failed", r.text
    time.sleep(0.5)
    log = srv.log.read_text()
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]


def test_cancel_frees_the_worker_and_is_not_resumed(tmp_path):
    env = {"TIERWISE_WORKERS": "1", "TIERWISE_SHORT_WORKERS": "0", "TIERWISE_SYNC_WAIT_S": "0"}
    srv = Server(tmp_path, env=env).start()
    try:
        with srv.client() as c:
            long = c.post("/v1/capacity", json={**LONG_CAPACITY, "time_limit_s": 60})
            assert long.status_code == 202
            _wait_status(c, long.headers["location"], "running")
            queued = c.post("/v1/capacity", json={**SMALL_CAPACITY, "time_limit_s": 30})
            assert c.get(queued.headers["location"]).json()["status"] == "queued"
            t0 = time.perf_counter()
            r = c.delete(long.headers["location"])
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
            _wait_status(c, queued.headers["location"], "running", "succeeded", timeout_s=2.0)
            freed = time.perf_counter() - t0
            assert freed < 2.0, freed
            assert c.delete(long.headers["location"]).status_code == 409
            assert c.delete("/v1/jobs/nope").status_code == 404
            # a queued job is cancelled before it runs
            third = c.post("/v1/capacity", json={**LONG_CAPACITY, "time_limit_s": 60})
            assert c.delete(third.headers["location"]).json()["status"] == "cancelled"
        srv.kill()
        srv = Server(tmp_path, env=env, port=srv.port).start()
        with srv.client() as c:
            time.sleep(1.0)
            for r in (long, third):
                job = c.get(r.headers["location"]).json()
                assert job["status"] == "cancelled" and job["error"]["code"] == "cancelled", job
    finally:
        srv.stop()


def _wait_status(c: httpx.Client, url: str, *want: str, timeout_s: float = 60.0) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        job = c.get(url).json()
        if job["status"] in want:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{url} never reached {want} in {timeout_s} s: {job}")


def test_short_lane_and_exact_pending_cap(tmp_path):
    env = {"TIERWISE_WORKERS": "1", "TIERWISE_SHORT_WORKERS": "1", "TIERWISE_SYNC_WAIT_S": "0",
           "TIERWISE_MAX_PENDING_JOBS": "4", "TIERWISE_SHORT_JOB_S": "10"}
    srv = Server(tmp_path, env=env).start()
    try:
        with srv.client() as c:
            longs = [c.post("/v1/capacity", json={**LONG_CAPACITY, "time_limit_s": 60}) for _ in range(2)]
            assert [r.status_code for r in longs] == [202, 202]
            t0 = time.perf_counter()
            short = c.post("/v1/capacity", json={**SMALL_CAPACITY, "time_limit_s": 10})
            job = _poll(c, short.headers["location"], 30)
            assert job["status"] == "succeeded" and time.perf_counter() - t0 < 15, job
            # 2 long jobs pending; 6 concurrent requests for 2 free places: exactly 2 accepted
            with cf.ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda _: srv.client().post("/v1/capacity", json={**LONG_CAPACITY, "time_limit_s": 60}), range(6)))
            codes = sorted(r.status_code for r in answers)
            assert codes == [202, 202, 503, 503, 503, 503], codes
            busy = next(r for r in answers if r.status_code == 503)
            assert busy.headers["retry-after"] == "5" and busy.json()["error"]["code"] == "busy"
            for r in longs + [a for a in answers if a.status_code == 202]:
                c.delete(r.headers["location"])
    finally:
        srv.stop()


def test_capacity_stops_when_the_client_leaves(tmp_path):
    srv = Server(tmp_path, env={"TIERWISE_SYNC_WAIT_S": "30"}).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.base + "/v1/capacity", json={**LONG_CAPACITY, "time_limit_s": 60}, timeout=1.5)
        time.sleep(1.5)
        db = sqlite3.connect(tmp_path / "tierwise.db")
        rows = db.execute("SELECT kind, status FROM jobs").fetchall()
        db.close()
        assert rows == [("capacity", "cancelled")], rows
    finally:
        srv.stop()
