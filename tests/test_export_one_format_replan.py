"""ExecuTorch and MLC LLM apply one weight format to the whole model: a plan that mixes formats is
refused with a re-plan limited to one of them (the plan's most used) that runs as given — the
command used to read `tierwise plan MODEL …`, a positional model `tierwise plan` does not take, and
`--formats <one format>`, a placeholder."""

from __future__ import annotations

import re
import shlex

import pytest

from planner.export import ExportError, export_plan
from planner.plan import load_plan, with_engine
from tests.test_export import ctx_for, make_plan


def _int8_o_proj(g: str) -> tuple[str, str, str]:
    if g.endswith(("embed_tokens", "lm_head")):
        return "fp16", "fp16", "dense"
    return ("int8", "fp16", "dense") if g.endswith("o_proj") else ("int4-g32", "fp16", "dense")


def test_a_mixed_executorch_plan_names_a_one_format_replan_that_runs(cli, tmp_path):
    plan = with_engine(make_plan("llama-3.2-1b", "iphone-15-pro", _int8_o_proj, kv="fp16", batch=1), "executorch")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "executorch", ctx_for(plan))
    cli_text, rest = e.value.render("cli"), e.value.render("rest")
    cmd = re.search(r"`(tierwise plan [^`]*)`", cli_text).group(1)
    argv = shlex.split(cmd)
    assert argv[argv.index("--model") + 1] == "llama-3.2-1b" and argv[argv.index("--formats") + 1] == "int4-g32"
    assert argv[argv.index("--engine") + 1] == "executorch"
    assert '`POST /v1/plans {"model": "llama-3.2-1b", "hardware": "iphone-15-pro"' in rest and "tierwise" not in rest
    r = cli(*argv[1:], "--out", tmp_path / "one.yaml")
    assert r.code == 0, r.err
    assert {c.weights for g, c in load_plan(tmp_path / "one.yaml").choices.items() if ".layers." in g} == {"int4-g32"}
    r = cli("export", tmp_path / "one.yaml", "--format", "executorch", "--out", tmp_path / "et")
    assert r.code == 0, r.err


def test_a_mixed_mlc_plan_names_a_one_format_replan():
    plan = with_engine(make_plan("llama-3.2-1b", "l4", lambda g: ("int3-g32", "fp16", "dense") if g.endswith("o_proj")
                                 else ("int4-g32", "fp16", "dense"), kv="fp16"), "mlc-llm")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "mlc", ctx_for(plan))
    text = e.value.render("cli")
    assert "applies one --quantization" in text and "--formats int4-g32 --engine mlc-llm`" in text, text
    assert "`tierwise plan --model llama-3.2-1b --hardware l4 " in text and "<one format>" not in text
    assert '"formats": ["int4-g32"], "engine": "mlc-llm"}`' in e.value.render("rest")
