"""/v1/hardware: catalog, custom profiles (JSON or safe YAML), every error path."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import custom_profile


def test_list_has_every_catalog_profile(client):
    from hwmodels import list_devices

    items = client.get("/v1/hardware").json()["items"]
    assert [i["id"] for i in items] == sorted(list_devices())
    l4 = next(i for i in items if i["id"] == "l4")
    # NVIDIA L4 datasheet: 24 GB GDDR6, 300 GB/s
    assert l4["memory_capacity_bytes"] == 24e9 and l4["device_bandwidth_bytes_per_s"] == 300e9 and not l4["custom"]


def test_get_one_and_unknown_id(client):
    r = client.get("/v1/hardware/h100-sxm")
    assert r.status_code == 200 and r.json()["class"] == "gpu" and r.json()["profile"]["id"] == "h100-sxm"
    r = client.get("/v1/hardware/h100")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "not_found" and err["field"] == "hardware" and "h100-sxm" in err["details"]["suggestions"]


def test_register_custom_profile_then_use_it(client):
    r = client.post("/v1/hardware", json={"profile": custom_profile()})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == "lab-accel" and body["custom"] and body["memory_capacity_bytes"] == 48e9
    assert client.get("/v1/hardware/lab-accel").json()["memory_capacity_bytes"] == 48e9
    assert "lab-accel" in [i["id"] for i in client.get("/v1/hardware").json()["items"]]
    est = client.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "lab-accel"})
    assert est.status_code == 200 and est.json()["hardware"] == "lab-accel"
    assert est.json()["memory"]["device_capacity_bytes"] == 48e9


def test_yaml_profile_is_accepted(client):
    text = yaml.safe_dump(custom_profile("lab-yaml"))
    r = client.post("/v1/hardware", json={"yaml": text})
    assert r.status_code == 201 and r.json()["id"] == "lab-yaml"


def test_duplicate_and_catalog_ids_conflict(client):
    assert client.post("/v1/hardware", json={"profile": custom_profile()}).status_code == 201
    r = client.post("/v1/hardware", json={"profile": custom_profile()})
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_id"
    r = client.post("/v1/hardware", json={"profile": custom_profile("l4")})
    assert r.status_code == 409 and "catalog" in r.json()["error"]["message"]


def test_invalid_profile_names_the_field(client):
    bad = custom_profile("lab-bad")
    bad["memory"][0]["bandwidth_gb_per_s"] = -3
    r = client.post("/v1/hardware", json={"profile": bad})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_profile" and "bandwidth" in err["field"]


def _bad_id(p: dict) -> None:
    p["id"] = "lab accel!"


def _sources_not_a_mapping(p: dict) -> None:
    p["sources"] = ["NVIDIA L4 datasheet"]


def _no_sources(p: dict) -> None:
    del p["sources"]


def _empty_citation(p: dict) -> None:
    p["sources"]["S5"] = ""


def _negative_tier_bandwidth(p: dict) -> None:
    p["memory"][1]["bandwidth_gb_per_s"] = -3


def _tier_capacity_text(p: dict) -> None:
    p["memory"][0]["capacity_gb"] = "lots"


def _tier_not_a_mapping(p: dict) -> None:
    p["memory"][0] = 5


def _unknown_top_field(p: dict) -> None:
    p["colour"] = "green"


# Every field of POST /v1/hardware is named by its path in the body the caller sent: 'profile.…'
# for JSON, 'yaml.…' for YAML text (list items as '.N', as in every other 422): the id's error
# said 'profile.id' while the profile loader's said a bare 'sources' or 'memory[1].…'.
@pytest.mark.parametrize("spoil, path", [
    (_bad_id, "id"),
    (_sources_not_a_mapping, "sources"),
    (_no_sources, "sources"),
    (_empty_citation, "sources.S5"),
    (_negative_tier_bandwidth, "memory.1.bandwidth_gb_per_s"),
    (_tier_capacity_text, "memory.0.capacity_gb"),
    (_tier_not_a_mapping, "memory.0"),
    (_unknown_top_field, "colour"),
])
def test_every_invalid_profile_field_is_named_by_its_path_in_the_body(client, spoil, path):
    bad = copy.deepcopy(custom_profile("lab-bad"))
    spoil(bad)
    for src, body in (("profile", {"profile": bad}), ("yaml", {"yaml": yaml.safe_dump(bad)})):
        r = client.post("/v1/hardware", json=body)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == f"{src}.{path}", (src, r.text)
        assert f"'{src}.{path}'" in err["message"] and "<hardware" not in err["message"], (src, r.text)


def test_conflicting_ids_are_named_by_their_path_in_the_body(client):
    for src, body in (("profile", lambda p: {"profile": p}), ("yaml", lambda p: {"yaml": yaml.safe_dump(p)})):
        r = client.post("/v1/hardware", json=body(custom_profile("l4")))
        assert r.status_code == 409 and r.json()["error"]["field"] == f"{src}.id", r.text
    assert client.post("/v1/hardware", json={"profile": custom_profile()}).status_code == 201
    r = client.post("/v1/hardware", json={"yaml": yaml.safe_dump(custom_profile())})
    assert r.status_code == 409 and r.json()["error"]["field"] == "yaml.id", r.text
    r = client.post("/v1/hardware", json={"yaml": "- a list\n"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "yaml", r.text


def test_python_yaml_tags_are_refused(client):
    text = "!!python/object/apply:os.system ['echo pwned']\n"
    r = client.post("/v1/hardware", json={"yaml": text})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_yaml" and "tags" in r.json()["error"]["message"]


def test_body_shape_is_checked(client):
    r = client.post("/v1/hardware", json={"profile": custom_profile(), "path": "/etc/passwd"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "path"
    r = client.post("/v1/hardware", json={})
    assert r.status_code == 422
    r = client.post("/v1/hardware", json={"profile": {**custom_profile(), "id": "../../etc"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "profile.id"
