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
