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


@pytest.mark.parametrize("flag", ["--weights", "--kv", "--activations", "--sparsity", "--kv-evicted"])
def test_format_and_sparsity_errors_echo_it_as_given(cli, flag):
    code, out, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", flag, "{@kv_budget}")
    assert code == 2 and "'{@kv_budget}'" in err and "'kv_budget'" not in err and "--kv-budget" not in err, err


@pytest.mark.parametrize("args", [("--activations", "{@kv_budget}"), ("--formats", "{@kv_budget}"),
                                  ("--engine", "{@kv_budget}"), ("--hardware", "{@kv_budget}")])
def test_capacity_serve_echoes_it_as_given(cli, args):
    code, out, err = cli("capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "b200", "--qps", "10",
                         "--ttft-slo", "500ms", "--tpot-slo", "50ms", *args)
    assert code == 2 and "{@kv_budget}" in err and "kv-budget" not in err and "'kv_budget'" not in err, err


@pytest.mark.parametrize("field", ["activations", "kv", "formats", "engine"])
def test_capacity_rest_and_python_echo_format_values(client, field):
    value = ["{@kv_budget}"] if field == "formats" else "{@kv_budget}"
    r = client.post("/v1/capacity", json={"model": "llama-3.1-8b", "hardware": ["b200"], "qps": 10,
                                          "ttft_slo_s": 0.5, "tpot_slo_s": 0.05, field: value})
    assert r.status_code in (404, 422), r.text
    err = r.json()["error"]
    assert err["field"].startswith(field) and "'kv_budget'" not in err["message"], err
    with pytest.raises(TierwiseError) as e:
        planner.capacity_serve("llama-3.1-8b", hardware=["b200"], qps=10, ttft_slo_s=0.5, tpot_slo_s=0.05,
                               **{field: value})
    assert "{@kv_budget}" in str(e.value) and "'kv_budget'" not in str(e.value), str(e.value)


@pytest.mark.parametrize("flag", ["--low-rank", "--sensitivity"])
def test_plan_echoes_it_as_given(cli, flag):
    code, out, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", flag, "{@kv_budget}")
    assert code == 2 and "{@kv_budget}" in err and "kv-budget" not in err, err


def test_export_format_echoes_it_as_given(cli, tmp_path):
    plan = tmp_path / "p.json"
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "-o", str(plan))
    assert code == 0, err
    code, out, err = cli("export", str(plan), "--format", "{@kv_budget}")
    assert code == 2 and "got '{@kv_budget}'" in err and "kv-budget" not in err, err


def test_paths_are_echoed_as_typed(cli, tmp_path):
    """A path holding token-like text ('{@kv_budget}.json') is named as given: a model config, a plan
    file, and a --csv / --out target that cannot be written."""
    missing = str(tmp_path / "{@kv_budget}.json")
    code, _, err = cli("estimate", "--model", missing, "--hardware", "l4")
    assert code == 2 and missing in err and "kv-budget" not in err, err
    code, out, err = cli("export", missing)
    assert code == 2 and missing in err + out and "kv-budget" not in err + out, (out, err)
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where a folder would go: nothing can be written under it
    target = str(blocked / "{@kv_budget}.csv")
    code, _, err = cli("capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "b200", "--qps", "1",
                       "--ttft-slo", "1", "--tpot-slo", "50ms", "--csv", target)
    assert code == 2 and target in " ".join(err.split()) and "kv-budget" not in err, err
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "-o", str(blocked / "{@kv_budget}.json"))
    assert code == 2 and "{@kv_budget}.json" in err and "kv-budget" not in err, err


def test_a_hardware_path_is_echoed_as_typed(cli, tmp_path):
    missing = str(tmp_path / "{@kv_budget}.yaml")
    code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", missing)
    assert code == 2 and missing in " ".join(err.split()) and "kv-budget" not in err, err
