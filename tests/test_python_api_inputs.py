"""The Python API as a caller meets it: what the CLI and REST accept through the same request layer is accepted
the same way (a layout's devices inferred, sparsity spelled in any case, path objects), and what is wrong is a
TierwiseError naming the keyword, never a bare TypeError or a value silently dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

import planner
from hwmodels.errors import TierwiseError
from planner.plan import PlanError, load_plan, plan_to_dict, save_plan

ROOT = Path(__file__).resolve().parents[1]


def test_plan_infers_devices_from_fixed_degrees_as_estimate_does():
    p = planner.plan("llama-3.2-1b", "l4", tp=2)
    assert p.devices == 2 and p.layout.tp == 2
    est = planner.estimate("llama-3.2-1b", "l4", tp=2).to_dict()
    assert est["devices"] == 2 and est["tp"] == 2


@pytest.mark.parametrize("model, kw, field, says", [
    ("llama-3.2-1b", dict(tp=3, devices=3), "tp", "must divide the number of attention heads"),
    ("mixtral-8x7b", dict(ep=3, devices=3), "ep", "must divide the number of experts"),
    ("llama-3.2-1b", dict(tp=2, devices=3), "tp", "does not divide"),
])
def test_plan_names_the_degree_at_fault(model, kw, field, says):
    hw = "h100-sxm" if model.startswith("mixtral") else "l4"
    with pytest.raises(TierwiseError) as e:
        planner.plan(model, hw, **kw)
    assert e.value.field == field and says in str(e.value), str(e.value)


@pytest.mark.parametrize("value", [0, -0.0, 3, True])
@pytest.mark.parametrize("name", ["pins", "objective_weights"])
def test_a_mapping_field_given_a_number_is_refused_not_dropped(name, value):
    with pytest.raises(TierwiseError) as e:
        planner.plan("llama-3.2-1b", "l4", **{name: value})
    assert e.value.field == name


@pytest.mark.parametrize("text", ["DENSE", " dense ", " 2:4 "])
def test_sparsity_in_any_case_and_spacing(text):
    r = planner.estimate("llama-3.1-8b", "h100-sxm", sparsity=text)
    assert r.to_dict()["tpot_s"] > 0


def test_path_objects_name_files():
    assert planner.estimate(ROOT / "profiles/models/llama-3.1-8b.json", "l4").to_dict()["tpot_s"] > 0
    assert planner.estimate("llama-3.2-1b", ROOT / "profiles/hardware/l4.yaml").to_dict()["tpot_s"] > 0


def test_mode_none_is_not_given():
    assert planner.estimate("llama-3.2-1b", "l4", mode=None).to_dict()["tpot_s"] > 0


def test_plan_file_helpers_name_their_argument(tmp_path):
    p = planner.plan("llama-3.2-1b", "l4")
    for call, field in ((lambda: save_plan(p, None), "path"), (lambda: save_plan(p, 3), "path"),
                        (lambda: load_plan(None), "path"), (lambda: save_plan({"a": 1}, tmp_path / "x.json"), "plan"),
                        (lambda: plan_to_dict(None), "plan")):
        with pytest.raises(PlanError) as e:
            call()
        assert e.value.field == field, str(e.value)
    assert not (tmp_path / "x.json").exists()
    save_plan(p, tmp_path / "ok.json")
    assert load_plan(tmp_path / "ok.json").devices == p.devices


def test_to_dict_follows_per_op_as_the_cli_json_does(cli):
    # Was: to_dict() kept the per-operator tables whatever per_op said, unlike --json.
    import json

    import planner

    plain = planner.estimate("llama-3.2-1b", "l4").to_dict()
    assert "ops" not in plain["prefill"] and "ops" not in plain["decode"]
    r = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--json")
    assert r.code == 0 and json.loads(r.out) == json.loads(json.dumps(plain))
    full = planner.estimate("llama-3.2-1b", "l4", per_op=True).to_dict()
    assert full["prefill"]["ops"] and full["decode"]["ops"]
    assert "ops" in planner.estimate("llama-3.2-1b", "l4").to_dict(ops=True)["prefill"]
