"""Error bodies over real HTTP: bounded echoes of the input, and messages that say what the
field itself takes."""

from __future__ import annotations

import pytest
from conftest import make_settings
from fastapi.testclient import TestClient

from api.main import create_app

EST = {"model": "llama-3.1-8b", "hardware": "h100-sxm"}


@pytest.fixture
def c(tmp_path):
    with TestClient(create_app(make_settings(tmp_path))) as client:
        yield client


@pytest.mark.parametrize("extra", [{"k" * 900_000: 1}, {"weights": "a" * 900_000},
                                   {"sparsity": "unstructured:" + "9" * 500_000},
                                   {"weights": "a " * 400_000}])
def test_an_error_echoes_a_long_input_cut_short(c, extra):
    r = c.post("/v1/estimate", json={**EST, **extra})
    assert r.status_code == 422, r.text[:300]
    assert len(r.content) < 8_000, len(r.content)
    err = r.json()["error"]
    assert "…" in err["message"] and len(err["message"]) < 4_100
    assert err["field"] is None or len(err["field"]) <= 120
