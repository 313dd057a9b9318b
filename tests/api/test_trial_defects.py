"""Defects a user trial found, checked on the real ``tierwise serve`` process: diagnoses in
REST syntax, hardware lists for training capacity, cancellations counted once."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, Server
from liveserver import LONG_CAPACITY

#: An 8B model on a 24 GB L4 held to 1 GB per device: offloading or 8 devices fit.
NO_FIT = {"model": "llama-3.1-8b", "hardware": "l4", "max_memory_per_device": "2.7GB"}  # 1.6 GB is vLLM's context


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("trial")).start()
    yield s
    s.stop()


def test_a_rest_diagnosis_names_request_fields_not_command_line_flags(srv):
    import time

    with srv.client() as c:
        r = c.post("/v1/plans", json=NO_FIT)
        if r.status_code == 202:  # a loaded machine: the diagnosis outlasts the synchronous wait
            job = r.json()
            while job["status"] in ("queued", "running"):
                time.sleep(0.2)
                job = c.get(job["url"]).json()
            assert job["status"] == "failed", job
            err = job["error"]
        else:
            assert r.status_code == 422, r.text
            err = r.json()["error"]
    assert err["code"] == "infeasible", err
    texts = [err["message"], err["details"]["message"], *(ch["description"] for ch in err["details"]["changes"])]
    for text in texts:
        assert not re.search(r"(?<![\w-])--[a-z]", text), text
        assert "{@" not in text, text
    changes = {ch["kind"]: ch for ch in err["details"]["changes"]}
    assert changes["offload"]["description"].startswith("'allow_offload'")
    assert changes["offload"]["set"] == {"allow_offload": True}
    n = changes["devices"]["set"]["devices"]
    assert changes["devices"]["description"].startswith(f"'devices' {n}")
    assert "'allow_offload'" in err["message"] and f"'devices' {n}" in err["message"]


TRAIN = {"model": "llama-3.2-1b", "tokens": 1e9, "days": 1, "max_devices": 64}


def _answer(c, r) -> dict:
    import time

    while r.status_code == 202:
        time.sleep(0.2)
        job = c.get(r.headers["location"]).json()
        if job["status"] not in ("queued", "running"):
            assert job["status"] == "succeeded", job
            return job["result"]
    assert r.status_code == 200, r.text
    return r.json()


def test_rest_training_capacity_takes_a_list_of_hardware_like_the_command_line(srv):
    import json
    import subprocess
    import sys

    with srv.client() as c:
        many = _answer(c, c.post("/v1/capacity/train", json={**TRAIN, "hardware": ["h100-sxm", "l4", "snapdragon-8-gen-3"]}))
        one = _answer(c, c.post("/v1/capacity/train", json={**TRAIN, "hardware": "h100-sxm"}))
        empty = c.post("/v1/capacity/train", json={**TRAIN, "hardware": []})
        comma = c.post("/v1/capacity/train", json={**TRAIN, "hardware": "h100-sxm,l4"})
        nested = c.post("/v1/capacity/train", json={**TRAIN, "hardware": [["l4"]]})
        typo = c.post("/v1/capacity/train", json={**TRAIN, "hardware": ["h100-sxm", "h100-sxn"]})
    assert sorted(h["hardware"] for h in many["hardware"]) == ["h100-sxm", "l4"]
    assert [s["hardware"] for s in many["skipped"]] == ["snapdragon-8-gen-3"] and "--" not in many["skipped"][0]["reason"]
    assert one["hardware"] == "h100-sxm" and one["feasible"]
    for r in (empty, comma, nested):
        assert r.status_code == 422 and r.json()["error"]["field"].startswith("hardware"), r.text
    assert typo.status_code == 404 and "h100-sxm" in typo.json()["error"]["message"], typo.text
    # the same answer as `tierwise capacity train --hardware h100-sxm,l4,snapdragon-8-gen-3 --json`
    cli = subprocess.run([sys.executable, "-c", "from planner.cli import run; run()", "capacity", "train", "--model",
                          TRAIN["model"], "--hardware", "h100-sxm,l4,snapdragon-8-gen-3", "--tokens", "1e9", "--days", "1",
                          "--max-devices", "64", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT, env=srv.env)
    assert cli.returncode == 0, cli.stderr
    doc = json.loads(cli.stdout)
    assert [h["hardware"] for h in doc["hardware"]] == [h["hardware"] for h in many["hardware"]]
    assert [h["best"]["devices"] for h in doc["hardware"]] == [h["best"]["devices"] for h in many["hardware"]]


def test_python_training_capacity_for_several_hardware_has_the_capacity_result_type():
    import planner.api as planner

    fields = {k: v for k, v in TRAIN.items() if k != "model"}
    for hardware in (["h100-sxm", "l4"], "h100-sxm,l4"):
        fleet = planner.capacity_train("llama-3.2-1b", hardware, **fields)
        doc = fleet.to_dict()
        assert sorted(h["hardware"] for h in doc["hardware"]) == ["h100-sxm", "l4"]
        assert len(fleet) == 2 and {a.hardware for a in fleet} == {"h100-sxm", "l4"} and fleet[0].feasible
    assert planner.capacity_train("llama-3.2-1b", "l4", **fields).to_dict()["hardware"] == "l4"




def _cancelled_count(c) -> float:
    text = c.get("/metrics").text
    m = re.search(r'^tierwise_solve_duration_seconds_count\{outcome="cancelled"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_client_that_leaves_counts_one_cancelled_solve(srv):
    # `curl --max-time 0.2 -X POST /v1/capacity`: the client hangs up, the job is cancelled,
    # and the cancellation is counted once — not again when the search's worker stops.
    import time

    import httpx

    with srv.client() as c:
        before = _cancelled_count(c)
        for n in (1, 2):
            with pytest.raises(httpx.TimeoutException):
                with httpx.Client(base_url=srv.base, timeout=0.2) as quick:
                    quick.post("/v1/capacity", json=LONG_CAPACITY)
            end = time.monotonic() + 30
            while _cancelled_count(c) < before + n and time.monotonic() < end:
                time.sleep(0.1)
            # the search's worker sees the cancel within a fraction of a second and stops
            time.sleep(3)
            assert _cancelled_count(c) == before + n
