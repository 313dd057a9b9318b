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
    # cut where the value is echoed ("...", hwmodels.errors.describe_value) or by the service ("…")
    assert ("…" in err["message"] or "..." in err["message"]) and len(err["message"]) < 4_100
    assert "a a a a" not in err["message"][200:], err["message"][:300]
    assert err["field"] is None or len(err["field"]) <= 120


SERVE = {"model": "llama-3.1-8b", "hardware": ["h100-sxm"], "qps": 1, "ttft_slo_s": 1, "tpot_slo_s": 0.05}
TRAIN = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "tokens": 1e9, "days": 1}


def _error(c, path: str, body: dict) -> dict:
    import json

    # json.dumps writes NaN and Infinity as Python's parser (and FastAPI's) reads them
    r = c.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    return r.json()["error"]


def test_a_type_message_speaks_of_the_field(c):
    err = _error(c, "/v1/capacity", {**SERVE, "hardware": "h100-sxm"})
    assert err["field"] == "hardware" and '["l4", "h100-sxm"]' in err["message"] and "bf16" not in err["message"]
    # a field of one id or a list of them: an empty list is a list that is too short, not "a string"
    err = _error(c, "/v1/capacity", {**SERVE, "engine": []})
    assert err["message"] == "field 'engine' must have at least 1 item; got []", err
    err = _error(c, "/v1/capacity", {**SERVE, "engine": 5})
    assert err["message"] == "field 'engine' expects a string or a list; got 5", err
    err = _error(c, "/v1/capacity/train", {**TRAIN, "hardware": []})
    assert err["field"] == "hardware" and err["message"] == "field 'hardware' must have at least 1 item; got []", err
    assert "[constrained" not in str(err)


@pytest.mark.parametrize("path,body,field", [("/v1/capacity", {**SERVE, "qps": float("nan")}, "qps"),
                                             ("/v1/capacity/train", {**TRAIN, "tokens": float("inf")}, "tokens")])
def test_nan_and_infinity_are_not_finite_numbers(c, path, body, field):
    err = _error(c, path, body)
    assert err["field"] == field and "expects a finite number" in err["message"], err


def test_an_engine_off_its_hardware_names_the_field_as_rest_does(c):
    r = c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "h100-sxm", "engine": "executorch"})
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "engine_unsupported" and err["field"] == "engine", r.text
    assert err["message"].startswith("'engine': ExecuTorch (executorch) does not run on h100-sxm"), err
    assert "--engine" not in err["message"]


def test_the_cli_names_it_as_a_flag():
    from planner.engines import EngineSupportError, support
    from hwmodels import load_device

    with pytest.raises(EngineSupportError) as exc:
        support("executorch", load_device("h100-sxm"), training=False)
    assert exc.value.render("cli").startswith("--engine: ExecuTorch (executorch) does not run on h100-sxm")


def test_the_api_pages_load_nothing_from_another_host(c):
    """/docs and /redoc work without a network: every script, style sheet and icon they load is
    served here (the error messages send users to /docs)."""
    import re

    for page in ("/docs", "/redoc"):
        r = c.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"], r.text
        assert not re.search(r"(https?:)?//[a-z0-9]", r.text, re.I), r.text  # no URL of another host
        local = re.findall(r'(?:src|href)="(/[^"]+)"', r.text)
        assert local, r.text
        for url in local:
            got = c.get(url)
            assert got.status_code == 200 and len(got.content) > 1000, (url, got.status_code)


def test_long_prose_between_short_quoted_names_is_kept_whole():
    from api.errors import bounded

    text = "'tp' 2 needs devices linked " + "within one node " * 10 + "; it supports only 'tp' 1"
    assert bounded(text) == text


@pytest.mark.parametrize("field, value, shown", [("batch", True, "true"), ("model", ["llama-3.1-8b"], '["llama-3.1-8b"]'),
                                                 ("prompt", {"n": 1}, '{"n": 1}'), ("gen", False, "false")])
def test_a_rejected_value_is_echoed_in_json_as_the_caller_wrote_it(c, field, value, shown):
    # Python's repr said "got True" and "got ['llama-3.1-8b']" to a JSON caller
    err = _error(c, "/v1/estimate", {**EST, field: value})
    assert err["field"] == field and err["message"].endswith(f"; got {shown}"), err


@pytest.mark.parametrize("body, shown", [("true", "a boolean, true"), ("[1, 2]", "an array, [1, 2]"), ("null", "null")])
def test_a_body_that_is_not_an_object_is_echoed_in_json(c, body, shown):
    r = c.post("/v1/estimate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["message"].endswith(f"got {shown}"), r.text
