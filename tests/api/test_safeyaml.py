"""hwmodels.safeyaml and api.limits: the bounds every untrusted document and model meets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from api.errors import ApiError
from api.limits import check_depth, check_model_size, group_count
from hwmodels.safeyaml import UnsafeYamlError, load_untrusted
from test_hardening import ALIAS_BOMB


@pytest.mark.parametrize("text, says", [
    (ALIAS_BOMB, "anchors (&a)"),
    ("a: 1\nb: *a\n", "aliases (*a)"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", "anchors (&b)"),
    ("[" * 100_000, "nest"),
    ("{" * 100_000, "nest"),
    ("- " * 100 + "x", "nest"),
    ("".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v", "nest"),
    ("x: " + "1" * 10_000, "cannot be read"),
    ("!!python/object/apply:os.system ['true']", "tags such as !!python"),
    ("a: [1,", "not valid YAML"),
    ("a: \x1b", "not valid YAML"),
    ("x: 1\n" * 30_000, "bytes of YAML"),
    ("[" + "1, " * 20_000 + "1]", "more than 10000 YAML nodes"),
])
def test_refused_fast_and_named(text, says):
    t0 = time.perf_counter()
    with pytest.raises(UnsafeYamlError) as e:
        load_untrusted(text, field="yaml")
    assert time.perf_counter() - t0 < 1.0
    assert says in str(e.value) and e.value.field == "yaml" and e.value.code == "invalid_yaml", str(e.value)
    assert e.value.render("cli").startswith("--yaml")


def test_plain_documents_load():
    assert load_untrusted("id: x\nmemory:\n  - {name: hbm, capacity_gb: 80}\nflags: [1, 2.5, true, null]\n") == {
        "id": "x", "memory": [{"name": "hbm", "capacity_gb": 80}], "flags": [1, 2.5, True, None]}
    deep = "".join("  " * i + f"k{i}:\n" for i in range(30)) + "  " * 30 + "v"
    assert load_untrusted(deep)["k0"]["k1"]


def test_group_count_matches_group_modules_for_every_catalog_model():
    from planner.arch import list_models, load_arch
    from planner.export import group_modules

    for m in list_models():
        arch = load_arch(m)
        assert group_count(arch) == len(group_modules(arch)), m


def test_a_million_layers_is_counted_without_building_them():
    from dataclasses import replace

    from planner.arch import load_arch

    arch = replace(load_arch("llama-3.1-8b"), num_layers=1_000_000)
    t0 = time.perf_counter()
    n = group_count(arch)
    assert time.perf_counter() - t0 < 0.5 and n > 1_000_000
    with pytest.raises(ApiError) as e:
        check_model_size(arch, {"num_hidden_layers": 1_000_000})
    assert e.value.field == "config.num_hidden_layers" and e.value.code == "limit_exceeded"
    check_model_size(load_arch("llama-3.1-405b"), None)


def test_json_depth():
    check_depth({"a": [{"b": 1}]}, "config")
    nested: dict = {}
    cur = nested
    for _ in range(40):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(ApiError) as e:
        check_depth(nested, "config")
    assert e.value.field == "config"


def test_rest_yaml_with_a_key_given_twice_is_422(client):
    text = yaml.safe_dump(yaml.safe_load((Path(__file__).resolve().parents[2] / "profiles/hardware/a100-80gb-sxm.yaml").read_text()) | {"id": "lab-dup"})
    r = client.post("/v1/hardware", json={"yaml": text + "id: lab-dup\n"})
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "invalid_yaml" and err["field"] == "yaml", r.text
    assert "key 'id' is given twice" in err["message"]
    assert client.get("/v1/hardware/lab-dup").status_code == 404


def test_rest_json_body_with_a_key_given_twice_is_422(client):
    """json.loads keeps the last of a repeated key: {"devices": 1, "devices": 2} would plan for 2 devices. The
    service refuses it, naming the key, before any route reads the body; nested objects are checked too."""
    raw = b'{"model": "llama-3.2-1b", "hardware": "l4", "devices": 1, "devices": 2}'
    r = client.post("/v1/plans", content=raw, headers={"content-type": "application/json"})
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "invalid_field" and err["field"] == "devices", r.text
    assert "'devices' is given more than once" in err["message"]
    assert client.get("/v1/plans").json()["total"] == 0
    nested = b'{"profile": {"id": "lab-x", "id": "lab-y"}}'
    r = client.post("/v1/hardware", content=nested, headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "profile.id", r.text  # the key's path in the body
    # a well-formed body is unaffected, and malformed JSON is still the parser's 400
    ok = client.post("/v1/estimate", content=b'{"model": "llama-3.2-1b", "hardware": "l4"}',
                     headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text
    bad = client.post("/v1/estimate", content=b'{"model": ', headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_json", bad.text


def test_rest_query_parameter_given_twice_is_422(client):
    r = client.get("/v1/plans", params=[("limit", "5"), ("limit", "7")])
    err = r.json()["error"]
    assert r.status_code == 422 and err["field"] == "limit" and "more than once" in err["message"], r.text
    assert client.get("/v1/plans", params={"limit": "5"}).status_code == 200


def test_rest_profile_with_a_400_digit_number_is_422(client):
    hw = yaml.safe_load((Path(__file__).resolve().parents[2] / "profiles/hardware/l4.yaml").read_text())
    hw["id"], hw["memory"][0]["capacity_gb"] = "lab-huge", int("1" + "0" * 400)
    for body in ({"yaml": yaml.safe_dump(hw)}, {"profile": hw}):
        r = client.post("/v1/hardware", json=body)
        assert r.status_code == 422 and "capacity_gb" in r.json()["error"]["message"], r.text
    assert client.get("/v1/hardware/lab-huge").status_code == 404


def test_rest_unknown_query_parameter_is_422(client):
    """An unknown query parameter is refused as an unknown body field is, with the route's own and a suggestion
    (`?fromat=json` used to export the default format); the page and /healthz take what browsers add."""
    r = client.get("/v1/plans", params={"limt": "5"})
    err = r.json()["error"]
    assert r.status_code == 422 and err["field"] == "limt" and "did you mean 'limit'" in err["message"], r.text
    r = client.get("/v1/hardware", params={"FORMAT": "json"})
    assert r.status_code == 422 and "it takes none" in r.json()["error"]["message"], r.text
    assert client.get("/v1/engines", params={"hardware": "l4"}).status_code == 200
    assert client.get("/healthz", params={"probe": "1"}).status_code == 200
