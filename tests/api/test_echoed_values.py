"""A bad value is echoed as the caller typed it: text in it that looks like the messages' own
field tokens (``{@kv_budget}``) is not turned into a flag or field name."""

from __future__ import annotations

import pytest

from hwmodels.errors import TierwiseError
from planner import api as planner


@pytest.mark.parametrize("value", ["{@kv_budget}", "{!engines}", "{$e30}", "x{@tp}y"])
def test_cli_echoes_token_like_text_as_given(cli, value):
    code, out, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--batch", value)
    assert code == 2 and f"got {value!r}" in err, err
    assert "--kv-budget" not in err and "tierwise engines list" not in err, err


def test_rest_and_python_echo_it_too(client):
    r = client.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "l4", "batch": "{@kv_budget}"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "batch" and "'{@kv_budget}'" in err["message"] and "'kv_budget'" not in err["message"], err
    with pytest.raises(TierwiseError) as e:
        planner.estimate("llama-3.2-1b", "l4", batch="{@kv_budget}")
    assert "'{@kv_budget}'" in str(e.value) and e.value.field == "batch"
