"""POST /v1/capacity/frontier: no point anywhere is 422 ``infeasible`` with every pair's reason; the
search runs under ``time_limit_s`` (capped by the server's solve limit) and a client that leaves
cancels it."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings


def _client(tmp_path, **changes):
    return TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'tierwise.db'}", **changes)))


def test_nothing_fits_is_422_infeasible_with_the_reason(tmp_path):
    with _client(tmp_path) as c:
        r = c.post("/v1/capacity/frontier", json={"model": "llama-3.1-405b", "hardware": ["l4"], "max_devices": 8})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "infeasible" and "does not fit l4" in err["message"]
    assert err["details"]["series"][0]["reason"].startswith("llama-3.1-405b does not fit l4")


def test_time_limit_is_taken_capped_and_a_short_one_answers_time_limit(tmp_path):
    body = {"model": "llama-3.2-1b", "hardware": ["l4"]}
    with _client(tmp_path, solve_time_limit_s=30.0) as c:
        r = c.post("/v1/capacity/frontier", json={**body, "time_limit_s": 20})
        assert r.status_code == 200 and r.json()["status"] == "complete", r.text
        r = c.post("/v1/capacity/frontier", json={**body, "time_limit_s": 31})
        assert r.status_code == 422 and r.json()["error"]["code"] == "limit_exceeded"
        r = c.post("/v1/capacity/frontier", json={**body, "time_limit_s": 1e-6})  # up before the first layout
        assert r.status_code == 422 and r.json()["error"]["code"] == "time_limit"
        assert r.json()["error"]["field"] == "time_limit_s"


def test_a_client_that_leaves_cancels_the_search(tmp_path, monkeypatch):
    import api.routes.capacity as route
    from starlette.requests import Request

    seen = {}
    stopped = threading.Event()

    def search(catalog, req, deadline):
        seen["limit"] = deadline.remaining()
        stopped.wait(30)  # stands for a long search: it ends when the deadline is cancelled
        seen["cancelled"] = deadline.cancelled
        return {}

    async def gone(self):
        return True

    monkeypatch.setattr(route, "frontier", search)
    monkeypatch.setattr(Request, "is_disconnected", gone)
    from planner.deadline import Deadline

    real_cancel = Deadline.cancel

    def cancel(self):
        real_cancel(self)
        stopped.set()

    monkeypatch.setattr(Deadline, "cancel", cancel)
    with _client(tmp_path, solve_time_limit_s=45.0) as c:
        c.post("/v1/capacity/frontier", json={"model": "llama-3.2-1b", "hardware": ["l4"]})
    assert seen["cancelled"] is True and 40 < seen["limit"] <= 45  # the server's limit by default
