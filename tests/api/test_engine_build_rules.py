"""Two facts an engine profile states that a plan must respect before it is exported, on every
front door (command line, REST, Python):

- SGLang's expert-parallel ranks split its tensor-parallel group (``runtime.ep_divides_tp``), so
  ``ep`` must divide ``tp``: the planner never picks ``tp=2 ep=4``, and asking for it is refused
  naming ``--ep`` / ``ep``. vLLM, whose expert-parallel group spans its data-parallel ranks, is
  unchanged.
- MLC LLM compiles each model type from its own model code (``models.types``): a plan for a model
  type it does not build (Falcon, OPT, MPT, BLOOM) is refused at plan time naming ``--engine`` /
  ``engine``, with the engines that do run the model, instead of only when it is exported."""

from __future__ import annotations

import json

import pytest

from hwmodels import load_device
from hwmodels.errors import TierwiseError
from planner.arch import list_models, load_arch
from planner.engines import load_engine, load_engine_from_dict
from planner.request.plan import PlanRequest, resolve_plan


def test_sglang_refuses_ep_wider_than_tp_on_the_command_line(cli):
    code, out, err = cli("plan", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--engine", "sglang",
                         "--devices", "8", "--tp", "2", "--ep", "4")
    assert code == 2 and "Traceback" not in err, err
    assert "--ep must divide --tp; got --ep 4 with --tp 2" in err and "--tp 4 --ep 4" in err, err
    code, out, err = cli("estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--engine", "sglang",
                         "--tp", "2", "--dp", "2", "--ep", "4")
    assert code == 2 and "--ep must divide --tp" in err, err
    # vLLM runs the same layout (its EP group spans the DP ranks)
    code, out, err = cli("estimate", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--engine", "vllm",
                         "--tp", "2", "--dp", "2", "--ep", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["ep"] == 4


@pytest.mark.parametrize("devices", [4, 8, 16])
def test_sglang_plans_only_layouts_it_runs_and_they_export(devices):
    from planner.export import export_plan
    from planner.plan import with_engine
    from planner.search import Planner

    arch, dev = load_arch("mixtral-8x7b"), load_device("h100-sxm")
    _, _, problem, sens = resolve_plan(PlanRequest(model=arch, hardware=dev, engine="sglang", devices=devices))
    from planner.search_problem import ordered_layouts

    layouts = ordered_layouts(arch, dev, problem)
    assert layouts and all(lay.ep == 1 or lay.tp % lay.ep == 0 for lay in layouts), layouts
    plan = with_engine(Planner(arch, dev, sensitivity=sens).solve(problem, diagnose_failure=False), "sglang")
    assert plan.layout.ep == 1 or plan.layout.tp % plan.layout.ep == 0
    from tests.test_export import ctx_for

    assert export_plan(plan, None, ctx_for(plan)).files


def test_sglang_ep_rule_over_rest(client):
    r = client.post("/v1/plans", json={"model": "mixtral-8x7b", "hardware": "h100-sxm", "engine": "sglang",
                                       "devices": 8, "tp": 2, "ep": 4})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "ep" and "'ep' must divide 'tp'" in err["message"] and "--" not in err["message"], err
    assert 'send "tp": 4, "ep": 4, or "ep": 1' in err["message"], err
    r = client.post("/v1/estimate", json={"model": "mixtral-8x7b", "hardware": "h100-sxm", "engine": "sglang",
                                          "tp": 2, "dp": 2, "ep": 4})
    assert r.status_code == 422 and r.json()["error"]["field"] == "ep", r.text
    r = client.post("/v1/estimate", json={"model": "mixtral-8x7b", "hardware": "h100-sxm", "engine": "sglang",
                                          "tp": 4, "dp": 1, "ep": 4})
    assert r.status_code == 200, r.text


def test_the_ep_rule_is_read_from_the_profile():
    assert load_engine("sglang").runtime.ep_divides_tp and not load_engine("vllm").runtime.ep_divides_tp
    raw = _raw("sglang")
    raw["runtime"]["ep_divides_tp"] = "yes"
    with pytest.raises(TierwiseError) as e:
        load_engine_from_dict(raw, "bad.yaml")
    assert "ep_divides_tp" in str(e.value)


def _raw(engine_id: str) -> dict:
    from importlib import resources

    import yaml

    return yaml.safe_load((resources.files("profiles") / "engines" / f"{engine_id}.yaml").read_text())


#: Catalog models whose Hugging Face model type MLC LLM has no model code for.
NOT_BUILT = sorted(m for m in list_models() if load_arch(m).family == "decoder"
                   and not load_engine("mlc-llm").builds(load_arch(m).model_type))


def test_some_catalog_decoders_are_not_built_by_mlc():
    types = {load_arch(m).model_type for m in NOT_BUILT}
    assert {"falcon", "bloom", "opt", "mpt"} <= types, types


@pytest.mark.parametrize("model", NOT_BUILT)
def test_mlc_plan_for_a_model_type_it_does_not_build_is_refused_naming_engine(cli, model):
    code, out, err = cli("plan", "--model", model, "--hardware", "h100-sxm", "--engine", "mlc-llm")
    mt = load_arch(model).model_type
    assert code == 2 and "Traceback" not in err, err
    assert f"--engine: MLC LLM (mlc-llm) does not build model type {mt!r}" in err, err
    assert "vllm" in err.split("run " + model)[-1], err  # the engines that do run it there


def test_mlc_model_type_rule_over_rest_and_capacity(client):
    r = client.post("/v1/plans", json={"model": "falcon-7b", "hardware": "m2-max", "engine": "mlc-llm"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "engine" and "does not build model type 'falcon'" in err["message"], err
    assert err["details"]["model_type"] == "falcon" and "llama" in err["details"]["builds"]
    r = client.post("/v1/estimate", json={"model": "opt-1.3b", "hardware": "m2-max", "engine": "mlc-llm"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "engine", r.text
    # a capacity search over several engines lists MLC LLM's pair as one it does not run, with the reason
    r = client.post("/v1/capacity", json={"model": "falcon-7b", "hardware": ["l4"], "engine": ["vllm", "mlc-llm"],
                                          "qps": 1, "ttft_slo_s": 2, "tpot_slo_s": 0.2})
    assert r.status_code == 200, r.text
    body = r.json()
    un = [u for u in body.get("unsupported", []) if u["engine"] == "mlc-llm"]
    assert un and "does not build model type 'falcon'" in un[0]["reason"], body.get("unsupported")
    # a model type it builds plans as before
    r = client.post("/v1/plans", json={"model": "llama-3.2-1b", "hardware": "m2-max", "engine": "mlc-llm"})
    assert r.status_code in (200, 201), r.text


def test_engines_show_and_rest_say_which_model_types_mlc_builds(cli, client):
    code, out, err = cli("engines", "show", "mlc-llm", "--json")
    assert code == 0 and "falcon" not in json.loads(out)["model_types"] and "llama" in json.loads(out)["model_types"]
    code, out, err = cli("engines", "show", "vllm", "--json")
    assert json.loads(out)["model_types"] == []  # every model of its families
    r = client.get("/v1/engines/mlc-llm")
    assert r.status_code == 200 and "qwen2" in r.json()["model_types"], r.text


def test_model_types_must_be_a_list_of_names():
    raw = _raw("mlc-llm")
    for bad in ([], "llama", ["Llama 3"], ["llama", "llama"]):
        raw["models"]["types"] = bad
        with pytest.raises(TierwiseError) as e:
            load_engine_from_dict(raw, "bad.yaml")
        assert "types" in str(e.value), bad


@pytest.mark.parametrize("devices, ep, tp", [(8, 4, 4), (8, 8, 8), (4, 4, 4)])
def test_sglang_plan_with_ep_alone_searches_a_tp_it_divides(cli, devices, ep, tp):
    """--ep without --tp: the plan searches TP degrees (it was refused as if --tp 1 had been given)."""
    code, out, err = cli("plan", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--engine", "sglang", "--formats",
                         "fp8", "--devices", str(devices), "--ep", str(ep), "--json")
    assert code == 0, err
    layout = json.loads(out)["layout"]
    assert (layout["ep"], layout["tp"]) == (ep, tp), layout
    code, _, err = cli("plan", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--engine", "sglang", "--formats",
                       "fp8", "--devices", "8", "--dp", "8", "--ep", "8")  # fixed degrees that leave tp 1: refused
    assert code == 2 and "--ep must divide --tp; got --ep 8 with --tp 1" in " ".join(err.split()), err
