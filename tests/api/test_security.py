"""API key, body limit, solver limits, CORS, loopback binding."""

from __future__ import annotations

import pytest
from conftest import make_settings
from fastapi.testclient import TestClient

from api.main import create_app

KEY = "s3cret-key-for-tests"


@pytest.fixture
def keyed(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, api_key=KEY))) as c:
        yield c


def _concrete(path: str) -> str:
    return (path.replace("{hardware_id}", "l4").replace("{model_id}", "llama-3.1-8b").replace("{plan_id}", "p1")
            .replace("{job_id}", "j1"))


def _routes(client) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    out = [(m.upper(), _concrete(p)) for p, ops in spec["paths"].items() for m in ops]
    return out + [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no/such/route")]


def test_every_route_but_healthz_needs_the_key(keyed):
    routes = _routes(keyed)
    assert len(routes) >= 16
    for method, path in routes:
        if path == "/healthz":
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}):
            r = keyed.request(method, path, headers=headers, json={} if method == "POST" else None)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.json()["error"]["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
        ok = keyed.request(method, path, headers={"Authorization": f"Bearer {KEY}"}, json={} if method == "POST" else None)
        assert ok.status_code != 401, (method, path)
    assert keyed.get("/healthz").status_code == 200


def test_openapi_declares_the_bearer_scheme(keyed):
    spec = keyed.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/estimate"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_oversized_body_is_413(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, max_body_bytes=10_000))) as c:
        r = c.post("/v1/estimate", content=b'{"model": "' + b"x" * 20_000 + b'"}', headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert r.json()["error"]["details"]["limit"] == "max_body_bytes"

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(30):
                yield b" " * 1000

        r = c.post("/v1/estimate", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


@pytest.mark.parametrize("changes,body,limit,field", [
    ({"solve_time_limit_s": 5.0}, {"time_limit_s": 60}, "solve_time_limit_s", "time_limit_s"),
    ({"max_devices": 8}, {"devices": 16}, "max_devices", "devices"),
    # llama-3.1-70b has 80 layers × 4 groups + embeddings and head = 322 decision groups
    ({"max_groups": 100}, {}, "max_groups", "model"),
])
def test_solver_limits_are_422_naming_the_limit(tmp_path, changes, body, limit, field):
    with TestClient(create_app(make_settings(tmp_path, **changes))) as c:
        r = c.post("/v1/plans", json={"model": "llama-3.1-70b", "hardware": "h100-sxm", **body})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "limit_exceeded" and err["field"] == field and err["details"]["limit"] == limit
        assert limit in err["message"]
        assert c.get("/v1/plans").json()["total"] == 0  # nothing queued or stored


def test_no_paths_accepted_for_ids(client):
    for body in ({"model": "/etc/passwd", "hardware": "l4"}, {"model": "llama-3.1-8b", "hardware": "profiles/hardware/l4.yaml"},
                 {"model": "x.json", "hardware": "l4"}):
        r = client.post("/v1/estimate", json=body)
        assert r.status_code in (404, 422) and r.status_code != 200, body


def test_cors_is_off_unless_configured(client, tmp_path):
    r = client.get("/v1/hardware", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(make_settings(tmp_path / "c", cors_origins=("https://ui.example",)))) as c:
        r = c.get("/v1/hardware", headers={"Origin": "https://ui.example"})
        assert r.headers["access-control-allow-origin"] == "https://ui.example"
        r = c.get("/v1/hardware", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_serve_binds_loopback_by_default():
    import inspect

    from planner.cli.serve import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
