"""An export for a training engine (Megatron-Core) refusing a plan suggests a `tierwise plan`
command that runs: `tierwise plan` takes no training engine, so the command re-plans with a
serving engine limited to the weight formats the training engine runs, and the plan it makes
exports. The refusal lists no empty KV set."""

from __future__ import annotations

import re
import shlex

import pytest

from hwmodels.errors import render_tokens
from planner.export.core import plan_view
from planner.export.rules import replan_hint
from planner.plan import load_plan
from tests.frontdoors import run


# H100: vLLM runs fp8 weights with bf16 compute too, which Megatron-Core does not train in, so
# the command offers bf16 and fp16 only; V100: vLLM runs fp16 only there.
@pytest.mark.parametrize("hardware, low_bit, offered", [("h100-sxm", "int8", "bf16,fp16"),
                                                        ("v100-16gb", "int4-g128", "fp16")])
def test_the_megatron_refusal_suggests_a_command_that_runs_and_exports(capsys, tmp_path, hardware, low_bit, offered):
    low = tmp_path / "low.yaml"
    code, _, err = run(capsys, "plan", "-m", "llama-3.2-1b", "-H", hardware, "--formats", low_bit, "--out", str(low))
    assert code == 0, err
    code, _, err = run(capsys, "export", str(low), "--format", "megatron", "--out", str(tmp_path / "refused"))
    assert code == 2
    err = " ".join(err.split())  # one line, however the terminal wrapped it
    assert f"weights {low_bit}" in err and "training engine" in err
    assert "--engine megatron-core" not in err
    assert "KV ;" not in err and "no KV cache (training engine)" in err
    commands = re.findall(r"`(tierwise plan [^`]*)`", err)
    assert len(commands) == 1, err
    argv = shlex.split(commands[0])[1:]
    assert argv[argv.index("--formats") + 1] == offered

    # what a user does next: run the suggested command, then the export again
    replanned = tmp_path / "replanned.yaml"
    code, _, err = run(capsys, *argv, "--out", str(replanned))
    assert code == 0, err
    code, out, err = run(capsys, "export", str(replanned), "--format", "megatron", "--out", str(tmp_path / "mg"))
    assert code == 0, err
    assert (tmp_path / "mg" / "train.sh").exists() and "pretrain_gpt.py" in out


def test_a_serving_engines_hint_keeps_its_kv_list_and_engine_flag(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    code, _, err = run(capsys, "plan", "-m", "llama-3.2-1b", "-H", "l4", "--out", str(path))
    assert code == 0, err
    hint = render_tokens(replan_hint(plan_view(load_plan(path)), "trtllm"), "cli")
    assert "--engine trtllm`" in hint and "; KV bf16, fp16, fp8-e4m3, int8;" in hint
