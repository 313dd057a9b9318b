"""Defects a user trial found, checked on the real ``tierwise serve`` process: diagnoses in
REST syntax, hardware lists for training capacity, cancellations counted once."""

from __future__ import annotations

import re

import pytest
from conftest import Server

#: An 8B model on a 24 GB L4 held to 1 GB per device: offloading or 8 devices fit.
NO_FIT = {"model": "llama-3.1-8b", "hardware": "l4", "max_memory_per_device": "1GB"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("trial")).start()
    yield s
    s.stop()


def test_a_rest_diagnosis_names_request_fields_not_command_line_flags(srv):
    with srv.client() as c:
        r = c.post("/v1/plans", json=NO_FIT)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
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
