"""A pin is checked against the plan's engine like a given format (exit 2 naming --pin), and the
re-plan command an export prints keeps the plan's pins."""

from __future__ import annotations

import shlex

import pytest

from planner.export import ExportError, export_plan
from planner.export.core import plan_view
from planner.export.rules import replan_command
from planner.plan import load_plan


def test_a_pin_the_engine_does_not_run_is_refused_at_plan_time(cli, tmp_path):
    # Was: a vLLM plan with int2-g32 written (rc 0), which `tierwise export` then refused.
    out_file = tmp_path / "p.yaml"
    r = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--pin",
            "model.layers.3.mlp.gate_up=int2-g32", "--out", out_file)
    assert r.code == 2 and not out_file.exists()
    assert "--pin model.layers.3.mlp.gate_up=int2-g32" in r.err
    assert "vllm on h100-sxm does not run int2-g32" in r.err and "int4-g128" in r.err and "nvfp4" in r.err


@pytest.mark.parametrize("pin, message", [
    # vLLM on an H100 runs int4-g128 weights with 16-bit compute only (its profile's schemes)
    ("model.layers.3.mlp.gate_up=int4-g128/fp8-e4m3", "runs int4-g128 weights with activations bf16, fp16"),
    ("model.layers.3.mlp.gate_up=int4-g128+unstructured:0.5", "does not run sparsity unstructured:0.5"),
])
def test_a_pin_whose_activations_or_sparsity_the_engine_does_not_run(cli, pin, message):
    r = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--pin", pin)
    assert r.code == 2 and f"--pin {pin}" in r.err and message in r.err, r.err


def test_a_pin_the_engine_runs_is_planned(cli, tmp_path):
    out_file = tmp_path / "p.yaml"
    r = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--pin",
            "model.layers.3.mlp.gate_up=int4-g128", "--out", out_file)
    assert r.code == 0, r.err
    assert load_plan(out_file).choices["model.layers.3.mlp.gate_up"].weights == "int4-g128"


def test_the_export_replan_hint_keeps_the_pins_the_engine_runs(cli, tmp_path):
    # A torch plan with an int2-g32 pin exported for vLLM: refused; the re-plan command keeps the
    # pin vLLM runs and names the one it does not (it used to drop every pin silently).
    out_file = tmp_path / "p.yaml"
    r = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", "torch",
            "--pin", "model.layers.3.mlp.gate_up=int2-g32", "--pin", "model.layers.*.self_attn.o_proj=int4-g128",
            "--out", out_file)
    assert r.code == 0, r.err
    with pytest.raises(ExportError) as e:
        export_plan(load_plan(out_file), "vllm")
    msg = e.value.render("cli")
    cmd = msg[msg.index("`tierwise plan") + 1: msg.index("`", msg.index("`tierwise plan") + 1)]
    argv = shlex.split(cmd)
    assert argv[argv.index("--pin") + 1] == "model.layers.*.self_attn.o_proj=int4-g128"
    assert "int2-g32" not in cmd and "--pin model.layers.3.mlp.gate_up=int2-g32 left out" in msg
    r2 = cli(*argv[1:], "--out", tmp_path / "v.yaml")  # the printed command runs as given
    assert r2.code == 0, r2.err
    assert load_plan(tmp_path / "v.yaml").choices["model.layers.5.self_attn.o_proj"].weights == "int4-g128"


def test_replan_command_leaves_out_the_planners_own_embedding_pins(cli, tmp_path):
    out_file = tmp_path / "p.yaml"
    assert cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--pin",
               "model.layers.3.mlp.gate_up=int4-g128", "--out", out_file).code == 0
    v = plan_view(load_plan(out_file))
    assert "model.embed_tokens" in v.raw["constraints"]["pins"]  # added for vLLM, which loads it in 16 bit
    cmd = replan_command(v, "vllm")
    assert "--pin model.layers.3.mlp.gate_up=int4-g128" in cmd and "embed_tokens" not in cmd


@pytest.fixture(scope="module")
def l4_plan_dict(tmp_path_factory):
    from planner.cli import main

    path = tmp_path_factory.mktemp("edited") / "p.yaml"
    assert main(["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--out", str(path)]) == 0
    from planner.plan import plan_to_dict

    return plan_to_dict(load_plan(path))


def _resigned(d: dict, tmp_path):
    """The edited dict written with its checksum recomputed, as a tool that edits plans would."""
    import json

    from planner.plan import _checksum_of

    d = json.loads(json.dumps(d))
    d["checksum"] = _checksum_of(d)
    p = tmp_path / "edited.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["choices"].pop("model.layers.0.mlp.gate_up"), "no choice for 'model.layers.0.mlp.gate_up'"),
    (lambda d: d["choices"]["model.layers.3.mlp.gate_up"].__setitem__("tier", "sram"),
     "puts weights in 'sram', which l4 does not have"),
])
def test_an_edited_and_resigned_plan_is_refused_by_export(cli, tmp_path, l4_plan_dict, edit, needle):
    """A plan file edited by hand and given a recomputed checksum passed `export` with a group left out or
    its weights on a tier the GPU does not have, and the exporter wrote its files."""
    import json

    d = json.loads(json.dumps(l4_plan_dict))
    edit(d)
    r = cli("export", _resigned(d, tmp_path), "--format", "vllm", "--out", tmp_path / "deploy")
    assert r.code == 2 and needle in r.err and "re-plan" in r.err, r.err
    assert not (tmp_path / "deploy").exists()
