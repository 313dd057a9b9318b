"""Versioned plans (planner.plan): lossless round trips, strict parsing, tamper detection."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import yaml

from planner.plan import (
    PLAN_VERSION,
    GroupChoice,
    Plan,
    PlanError,
    load_plan,
    plan_checksum,
    plan_from_dict,
    plan_to_dict,
    save_plan,
)
from planner.search import solve_plan


@pytest.fixture(scope="module")
def plan() -> Plan:
    # A real solve: Llama-3.2-1B on an L4 squeezed to 1.5 GB, so the plan mixes formats.
    return solve_plan("llama-3.2-1b", "l4", max_memory_per_device_bytes=1.5e9, pins={"model.embed_tokens": "int8"})


def test_plan_contract_fields(plan):
    assert plan.version == PLAN_VERSION == 1
    assert plan.created_at.endswith("Z") and plan.model == "llama-3.2-1b" and plan.hardware == "l4"
    assert plan.model_hash.startswith("sha256:") and plan.hardware_hash.startswith("sha256:")
    assert plan.layout.devices == plan.devices == 1 and plan.layout["tp"] == plan.layout.tp
    assert plan.workload.to_dict() == {"batch": 1, "prompt": 512, "gen": 128}
    assert plan.constraints.max_memory_per_device_bytes == 1.5e9
    assert plan.objective == "accuracy" and plan.sensitivity_source == "prior"
    # Ordered in model order: embedding first, head last; 16 layers × 4 groups + embedding
    # (the head of Llama-3.2-1B is tied to it).
    names = list(plan.choices)
    assert names[0] == "model.embed_tokens" and names[1] == "model.layers.0.self_attn.qkv"
    assert len(names) == 1 + 16 * 4
    assert plan.choices["model.layers.3.mlp.gate_up"].tier == "gddr6"
    assert plan.choices["model.embed_tokens"].key == "int8"  # the pin
    assert plan.predicted["per_device_bytes"] <= 1.5e9
    assert plan.solver["status"] in ("optimal", "feasible")


def test_round_trip_yaml_and_json_is_lossless(plan, tmp_path):
    for name in ("plan.yaml", "plan.yml", "plan.json"):
        path = save_plan(plan, tmp_path / name)
        back = load_plan(path)
        assert back == plan
        assert plan_to_dict(back) == plan_to_dict(plan)
        assert list(back.choices) == list(plan.choices)
    d = plan_to_dict(plan)
    assert plan_from_dict(json.loads(json.dumps(d))) == plan
    assert d["checksum"] == plan_checksum(plan)


def test_save_is_atomic_and_leaves_no_temporary_files(plan, tmp_path):
    target = tmp_path / "deep" / "plan.yaml"
    save_plan(plan, target)
    save_plan(plan, target)  # overwrite in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["plan.yaml"]
    with pytest.raises(PlanError, match="end in .yaml, .yml or .json"):
        save_plan(plan, tmp_path / "plan.txt")


def test_tampered_file_is_refused(plan, tmp_path):
    path = save_plan(plan, tmp_path / "plan.yaml")
    text = path.read_text().replace("objective: accuracy", "objective: latency", 1)
    path.write_text(text)
    with pytest.raises(PlanError, match=r"^plan\.yaml was modified after it was written: checksum mismatch$"):
        load_plan(path)


def test_edited_choice_is_refused(plan, tmp_path):
    path = save_plan(plan, tmp_path / "plan.json")
    d = json.loads(path.read_text())
    first = next(iter(d["choices"]))
    d["choices"][first]["weights"] = "int2-g64"
    path.write_text(json.dumps(d))
    with pytest.raises(PlanError, match="checksum mismatch"):
        load_plan(path)


def test_future_version_is_refused_with_a_clear_message(plan, tmp_path):
    d = plan_to_dict(plan)
    d["version"] = 7
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(PlanError, match=r"^plan\.yaml: 'version' 7 is newer than this tierwise supports \(1\)"):
        load_plan(path)


def test_missing_checksum_is_refused_for_files(plan, tmp_path):
    d = plan_to_dict(plan)
    del d["checksum"]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(d))
    with pytest.raises(PlanError, match="has no 'checksum'"):
        load_plan(path)
    assert plan_from_dict(d) == plan  # in-memory dicts (the REST API) may omit it


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
        (lambda d: d["layout"].update(tp=0), "'layout.tp' must be an int >= 1"),
        (lambda d: d["layout"].update(zz=1), "unknown key 'layout.zz'"),
        (lambda d: d["workload"].pop("gen"), "missing key 'workload.gen'"),
        (lambda d: d.update(objective="fastest"), "'objective' must be one of accuracy"),
        (lambda d: d.update(kv="int5"), "'kv'"),
        (lambda d: d["choices"][next(iter(d["choices"]))].update(weights="int5"), "unknown format 'int5'"),
        (lambda d: d["choices"][next(iter(d["choices"]))].update(colour="red"), "unknown key 'choices."),
        (lambda d: d["predicted"].update(ttft_s="fast"), "'predicted.ttft_s' must be a finite number"),
        (lambda d: d["solver"].update(status="great"), "'solver.status' must be one of optimal, feasible"),
        (lambda d: d.update(created_at="yesterday"), "'created_at' must be an ISO 8601"),
        (lambda d: d.update(model_hash="md5:abc"), "'model_hash' must be 'sha256:'"),
        (lambda d: d.update(devices=3), "'devices' \\(3\\) must equal tp×pp×dp"),
        (lambda d: d.update(version="1"), "'version' must be an int >= 1"),
        (lambda d: d.update(sensitivity_source="guess"), "'sensitivity_source'"),
    ],
)
def test_strict_parsing_names_the_field(plan, edit, message):
    d = copy.deepcopy(plan_to_dict(plan))
    del d["checksum"]
    edit(d)
    with pytest.raises(PlanError, match=message):
        plan_from_dict(d)


def test_malformed_files_are_refused(tmp_path):
    bad = tmp_path / "plan.yaml"
    bad.write_text("version: 1\nchoices: [unclosed\n")
    with pytest.raises(PlanError, match="not valid YAML at line"):
        load_plan(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(PlanError, match="holds one mapping"):
        load_plan(bad)
    bad.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(bad)  # yaml.safe_load: no tags
    js = tmp_path / "plan.json"
    js.write_text("{")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_plan(js)
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "missing.yaml")


def test_group_choice_canonical_names_and_validation():
    c = GroupChoice(weights="FP8", sparsity="2:4", activations="fp8", tier="hbm3")
    assert (c.weights, c.activations, c.key) == ("fp8-e4m3", "fp8-e4m3", "fp8-e4m3+2:4/fp8-e4m3")
    assert GroupChoice(weights="int4", tier="hbm3").key == "int4-g128"
    assert c["tier"] == "hbm3"
    with pytest.raises(PlanError, match="not an activation format"):
        GroupChoice(weights="bf16", activations="nf4", tier="hbm3")
    with pytest.raises(PlanError, match="low_rank"):
        GroupChoice(weights="bf16", tier="hbm3", low_rank=0)
    assert GroupChoice(weights="bf16", tier="hbm3", low_rank=64).to_dict()["low_rank"] == 64


def test_plan_views_feed_the_cost_model(plan):
    over = plan.overrides()
    assert set(over) == set(plan.choices)
    c = over["model.layers.0.mlp.down_proj"]
    assert c.kv == plan.kv and c.weights == plan.choices["model.layers.0.mlp.down_proj"].weights
    assert plan.default_choice().kv == plan.kv
    assert plan.placement() is None  # everything on the device tier
    assert replace(plan, kv="int8").kv == "int8"
