"""The KV-cache format of a plan in the on-device exports (ExecuTorch, MLC LLM): written as the
target runs it or refused naming ``kv``, never dropped; and the engine of ``--format F`` checked
against the plan's hardware when the plan was made for another engine."""

from __future__ import annotations

import pytest

from planner.export import ExportError, export_plan
from planner.plan import plan_to_dict, with_engine
from tests.test_export import ctx_for, make_plan
from tests.test_export_ondevice import command, mlc_steps, uniform


def _no_engine(plan) -> dict:
    """The plan as written before plans recorded their engine: only the target's own checks apply."""
    d = plan_to_dict(plan)
    d.pop("engine", None)
    return d


# ---------------------------------------------------------------------------
# executorch: --dtype-override float cache, or --quantize_kv_cache (int8); nothing else
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kv", ["fp8-e4m3", "int4-g64", "int8-g32"])
@pytest.mark.parametrize("hw,engine", [("l4", None), ("m2-max", None), ("iphone-15-pro", "executorch")])
def test_executorch_refuses_a_kv_cache_export_llama_cannot_write(kv, hw, engine):
    plan = make_plan("llama-3.2-1b", hw, uniform("int4-g32", "int8"), kv=kv, batch=1, prompt=256, gen=256)
    d = plan_to_dict(with_engine(plan, engine)) if engine else _no_engine(plan)
    with pytest.raises(ExportError) as e:
        export_plan(d, "executorch", ctx_for(plan))
    assert e.value.field == "kv" and e.value.exit_code == 2
    msg = str(e.value)
    assert repr(kv) in msg and "int8" in msg and "fp16" in msg


@pytest.mark.parametrize("kv,flag", [("int8", True), ("fp16", False), ("fp32", False)])
def test_executorch_writes_the_kv_cache_it_runs(kv, flag):
    plan = make_plan("llama-3.2-1b", "m2-max", uniform("int4-g32", "int8"), kv=kv, batch=1, prompt=256, gen=256)
    out = export_plan(_no_engine(plan), "executorch", ctx_for(plan))
    assert ("--quantize_kv_cache" in command(out)) is flag
    if flag:
        assert any("per token" in n for n in out.notes)


def test_executorch_kv_refusal_off_its_hardware_does_not_suggest_a_plan_it_cannot_make():
    # a plan without an engine on an L4: the refusal must not offer `tierwise plan --hardware l4 --engine executorch`
    plan = make_plan("llama-3.2-1b", "l4", uniform("int4-g32", "int8"), kv="fp8-e4m3")
    with pytest.raises(ExportError) as e:
        export_plan(_no_engine(plan), "executorch", ctx_for(plan))
    msg = str(e.value)
    assert e.value.field == "kv" and "executorch does not run on l4" in msg and "--engine executorch" not in msg


# ---------------------------------------------------------------------------
# mlc: the KV cache is stored in the quantization mode's model dtype
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kv", ["fp8-e4m3", "int8", "int4-g64", "int4-g32"])
def test_mlc_refuses_a_quantized_kv_cache(kv):
    plan = make_plan("llama-3.2-1b", "l4", uniform("int4-g32", "fp16"), kv=kv)
    with pytest.raises(ExportError) as e:
        export_plan(_no_engine(plan), "mlc", ctx_for(plan))
    assert e.value.field == "kv" and e.value.exit_code == 2
    msg = str(e.value)
    assert repr(kv) in msg and "q4f16_1" in msg and "fp32" in msg


def test_mlc_plan_for_mlc_llm_with_a_kv_cache_it_does_not_run_is_refused():
    plan = with_engine(make_plan("llama-3.2-1b", "iphone-15-pro", uniform("int4-g32", "fp16"), kv="int8", batch=1),
                       "mlc-llm")
    with pytest.raises(ExportError) as e:
        export_plan(plan, None, ctx_for(plan))
    assert e.value.field == "kv" and "'int8'" in str(e.value)


@pytest.mark.parametrize("w,a,kv,note", [("int4-g32", "fp16", "fp16", None), ("int4-g32", "fp16", "bf16", "fp16"),
                                         ("int4-g32", "fp32", "fp32", None), ("int4-g32", "fp32", "fp16", "twice"),
                                         ("fp16", "fp16", "fp32", "fp16")])
def test_mlc_float_kv_cache_follows_the_mode_with_a_note_when_it_differs(w, a, kv, note):
    plan = make_plan("llama-3.2-1b", "iphone-15-pro", uniform(w, a), kv=kv, batch=1, prompt=1024, gen=256)
    out = export_plan(_no_engine(plan), "mlc", ctx_for(plan))
    kv_notes = [n for n in out.notes if "KV cache" in n]
    if note is None:
        assert kv_notes == []
    else:
        assert len(kv_notes) == 1 and note in kv_notes[0] and kv in kv_notes[0]
    assert mlc_steps(out)[0][:2] == ["mlc_llm", "convert_weight"]


# ---------------------------------------------------------------------------
# --format of another engine: that engine's hardware is checked
# ---------------------------------------------------------------------------


def _vllm_l4_plan(kv: str = "fp8-e4m3", w: str = "bf16", a: str = "bf16"):
    return with_engine(make_plan("llama-3.1-8b", "l4", uniform(w, a), kv=kv), "vllm")


def test_executorch_format_of_a_vllm_l4_plan_is_refused_naming_the_format():
    plan = _vllm_l4_plan()
    with pytest.raises(ExportError) as e:
        export_plan(plan, "executorch", ctx_for(plan))
    assert e.value.field == "format" and e.value.exit_code == 2
    msg = e.value.render("cli")
    assert "ExecuTorch (executorch) does not run on l4" in msg and "vllm" in msg.split("engines that do:")[1]
    assert "executorch" not in msg.split("engines that do:")[1].split(".")[0]


def test_executorch_engine_asked_for_a_vllm_l4_plan_is_refused_naming_the_engine():
    plan = _vllm_l4_plan()
    with pytest.raises(ExportError) as e:
        export_plan(plan, None, ctx_for(plan), engine="executorch")
    assert e.value.field == "engine" and "does not run on l4" in str(e.value)


def test_mlc_format_of_a_vllm_l4_plan_is_checked_against_mlc_llm():
    # MLC LLM runs on an L4 (fp16, int4/int3, fp8 weights; KV fp16): the plan's fp8 KV cache is refused
    plan = _vllm_l4_plan(kv="fp8-e4m3", w="fp16", a="fp16")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "mlc", ctx_for(plan))
    assert e.value.field == "kv" and "mlc-llm on l4" in str(e.value) and "--engine mlc-llm" in str(e.value)
    ok = _vllm_l4_plan(kv="fp16", w="fp16", a="fp16")
    steps = mlc_steps(export_plan(ok, "mlc", ctx_for(ok)))
    assert steps[0][steps[0].index("--quantization") + 1] == "q0f16"


def test_cli_export_of_a_vllm_l4_plan_to_executorch_exits_2_and_writes_nothing(tmp_path, capsys):
    from planner.cli import main

    plan_file = tmp_path / "plan.yaml"
    assert main(["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--kv", "fp8", "--out", str(plan_file)]) == 0
    capsys.readouterr()
    out = tmp_path / "deploy"
    assert main(["export", str(plan_file), "--format", "executorch", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--format" in err and "does not run on l4" in err and "{@" not in err
    assert not (out / "export_executorch.sh").exists()
