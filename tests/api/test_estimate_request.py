"""POST /v1/estimate goes through the one request layer: fields of the other mode are
refused, errors name fields (not flags), and a configuration that does not fit is a 422
``infeasible`` with the same details as the CLI and the Python API."""

from __future__ import annotations

import pytest

import planner
from planner.request import DoesNotFitError


def test_rest_refuses_fields_of_the_other_mode_in_rest_syntax(client):
    r = client.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "zero": 1})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "zero" and err["message"].startswith("'zero' applies to training") and "--" not in err["message"]
    r = client.post("/v1/estimate", json={"mode": "training", "model": "llama-3.1-8b", "hardware": "h100-sxm",
                                          "kv": "fp8"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "kv"

@pytest.mark.parametrize("body,field,text", [
    ({"tp": 3}, "tp", "'tp' 3 must divide the number of attention heads"),
    ({"kv_budget": 16, "kv_evicted": "nf4"}, "kv_evicted", "'kv_evicted' must be a format usable for the KV cache"),
    ({"devices": 4}, "devices", "'devices' (4) must equal tp×pp×dp"),
    ({"batch": "lots"}, "batch", "'batch' must be a positive integer or 'max'"),
])
def test_rest_errors_speak_field_names_not_flags(client, body, field, text):
    r = client.post("/v1/estimate", json={"model": "llama-2-7b", "hardware": "h100-sxm", **body})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field and text in err["message"] and "--" not in err["message"]

def test_rest_reports_does_not_fit_as_infeasible_with_the_same_details(client):
    body = {"model": "llama-2-70b", "hardware": "rtx-4090"}
    r = client.post("/v1/estimate", json=body)
    assert r.status_code == 422
    err = r.json()["error"]
    with pytest.raises(DoesNotFitError) as e:
        planner.estimate("llama-2-70b", "rtx-4090")
    assert err["code"] == "infeasible" and err["details"] == e.value.details
    assert err["message"] == e.value.render("rest") and "'tp' 8" in err["message"]


def test_nothing_feasible_is_one_outcome_on_every_front_end(client, capsys):
    """estimate, capacity serve and capacity train: exit 3 on the command line, 422
    ``infeasible`` in REST, a TierwiseError of kind ``infeasible`` in Python."""
    from planner.cli import main
    from planner.errors import TierwiseError

    serve = {"model": "llama-3.1-8b", "hardware": ["l4"], "qps": 5, "ttft_slo_s": 1.0, "tpot_slo_s": 1e-5}
    r = client.post("/v1/capacity", json=serve)
    assert r.status_code == 422 and r.json()["error"]["code"] == "infeasible", r.text
    with pytest.raises(TierwiseError) as e:
        planner.capacity_serve("llama-3.1-8b", "l4", qps=5, ttft_slo_s=1.0, tpot_slo_s=1e-5)
    assert e.value.kind == "infeasible" and e.value.render("rest") == r.json()["error"]["message"]
    assert main(["capacity", "serve", "-m", "llama-3.1-8b", "-H", "l4", "--qps", "5", "--ttft-slo", "1",
                 "--tpot-slo", "0.00001", "--prompt", "512", "--gen", "128", "--executor", "serial"]) == 3
    train = {"model": "llama-3.1-70b", "hardware": "l4", "tokens": 1e13, "days": 1, "max_devices": 8}
    r = client.post("/v1/capacity/train", json=train)
    assert r.status_code == 422 and r.json()["error"]["code"] == "infeasible", r.text
    assert main(["capacity", "train", "-m", "llama-3.1-70b", "-H", "l4", "--tokens", "1e13", "--days", "1",
                 "--max-devices", "8", "--executor", "serial"]) == 3
    r = client.post("/v1/estimate", json={"model": "llama-3.1-70b", "hardware": "l4"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "infeasible"
    assert main(["estimate", "-m", "llama-3.1-70b", "-H", "l4"]) == 3
    capsys.readouterr()
