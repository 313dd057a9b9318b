"""Plans record the engine they were made for; `tierwise export` defaults to that engine's
exporter, takes --engine, and refuses a plan another engine cannot run with the groups, the
formats and the `tierwise plan ... --engine E` command that re-plans for it."""

from __future__ import annotations

import json
import re

import pytest

from planner.errors import TierwiseError
from planner.export import ExportError, export_plan
from planner.plan import PlanError, load_plan, plan_from_dict, plan_to_dict, save_plan, with_engine
from planner.request.plan import PlanRequest, run_plan
from tests.test_export import ctx_for, make_plan, mixed


@pytest.fixture(scope="module")
def vllm_plan():
    # int4-g128 / int8 / fp8 KV on an L4: what vLLM runs there, not what llama.cpp runs
    return with_engine(make_plan("llama-3.2-1b", "l4", mixed, kv="fp8-e4m3"), "vllm")


def test_a_solved_plan_records_its_engine_and_keeps_it_through_files(tmp_path):
    plan = run_plan(PlanRequest(model="llama-3.2-1b", hardware="m2-max", time_limit_s=20))
    assert plan.engine == "llamacpp"  # the laptop default
    d = plan_to_dict(plan)
    assert d["engine"] == "llamacpp"
    for suffix in (".yaml", ".json"):
        assert load_plan(save_plan(plan, tmp_path / f"p{suffix}")).engine == "llamacpp"
    explicit = run_plan(PlanRequest(model="llama-3.2-1b", hardware="l4", engine="sglang", time_limit_s=20))
    assert explicit.engine == "sglang"


def test_a_plan_written_before_engines_were_recorded_still_loads(tmp_path):
    plan = make_plan("llama-3.2-1b", "l4", mixed)
    d = plan_to_dict(plan)
    assert "engine" not in d  # no engine: the file is byte-for-byte what older versions wrote
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    assert load_plan(path).engine is None


@pytest.mark.parametrize("bad", ["", "  ", 7, ["vllm"], "vllm; rm -rf /"])
def test_a_malformed_engine_field_is_refused_by_name(bad):
    d = plan_to_dict(with_engine(make_plan("llama-3.2-1b", "l4", mixed), "vllm"))
    d["engine"] = bad
    d.pop("checksum")
    with pytest.raises(PlanError) as e:
        plan_from_dict(d)
    assert e.value.field == "engine"


def test_export_without_format_uses_the_plans_engine(vllm_plan, tmp_path):
    out = export_plan(vllm_plan, None, ctx_for(vllm_plan))
    assert out.format == "vllm" and "vllm serve" in out.next_command
    int4 = with_engine(make_plan("llama-3.2-1b", "l4", lambda g: ("int4-g128", "bf16", "dense")), "sglang")
    out = export_plan(int4, None, ctx_for(int4))  # SGLang's own launch command, not vLLM's
    assert out.format == "sglang" and "sglang.launch_server" in out.next_command
    with pytest.raises(ExportError) as e:  # SGLang has no W8A16 int8 kernel: checked against SGLang, not vLLM
        export_plan(with_engine(vllm_plan, "sglang"), None, ctx_for(vllm_plan))
    assert "sglang on l4 does not run int8" in str(e.value) and "--engine sglang" in str(e.value)
    with pytest.raises(ExportError) as e:
        export_plan(make_plan("llama-3.2-1b", "l4", mixed), None)
    assert e.value.field == "format" and "records no engine" in str(e.value)


def test_exporting_to_an_engine_that_cannot_run_the_plan_names_groups_formats_and_the_replan_command(vllm_plan):
    with pytest.raises(ExportError) as e:
        export_plan(vllm_plan, None, ctx_for(vllm_plan), engine="llamacpp")
    msg = str(e.value)
    # llama.cpp runs Q8_0 (int8-g32), not per-channel int8 (int4-g128 it approximates with Q4_K)
    assert "16 of 65 plan groups" in msg and "weights int8: 16 groups" in msg
    assert "model.layers.0.self_attn.o_proj" in msg
    assert re.search(r"`tierwise plan --model llama-3.2-1b --hardware l4 .*--engine llamacpp`", msg)
    assert e.value.field.startswith("choices.")
    # the same with the format of that engine named instead of the engine
    with pytest.raises(ExportError) as e2:
        export_plan(vllm_plan, "llamacpp", ctx_for(vllm_plan))
    assert "--engine llamacpp" in str(e2.value)


def test_a_format_that_does_not_serve_the_engine_is_refused(vllm_plan):
    with pytest.raises(ExportError) as e:
        export_plan(vllm_plan, "vllm", ctx_for(vllm_plan), engine="trtllm")
    assert e.value.field == "format" and "trtllm, modelopt-mixed" in str(e.value)
    with pytest.raises(TierwiseError) as e:
        export_plan(vllm_plan, None, ctx_for(vllm_plan), engine="vlm")
    assert e.value.field == "engine" and "vllm" in str(e.value)


def test_cli_export_defaults_and_engine_flag(vllm_plan, tmp_path, capsys):
    from planner.cli import main

    path = save_plan(vllm_plan, tmp_path / "plan.yaml")
    assert main(["export", str(path), "--out", str(tmp_path / "deploy")]) == 0
    assert (tmp_path / "deploy" / "serve.sh").exists()
    capsys.readouterr()
    assert main(["export", str(path), "--engine", "llamacpp", "--out", str(tmp_path / "gguf")]) == 2
    err = capsys.readouterr().err
    assert "--engine llamacpp" in err and "weights int8" in err
    assert not (tmp_path / "gguf").exists() or not any((tmp_path / "gguf").iterdir())
    old = save_plan(make_plan("llama-3.2-1b", "l4", mixed), tmp_path / "old.yaml")
    assert main(["export", str(old)]) == 2 and "--format" in capsys.readouterr().err


def test_transformers_export_writes_the_quantized_cache_and_refuses_fp8_kv():
    int4_kv = make_plan("llama-3.2-1b", "l4", mixed, kv="int4-g64")
    load = export_plan(int4_kv, "hf", ctx_for(int4_kv)).file("load.py").content
    assert 'cache_implementation = "quantized"' in load and '"nbits": 4' in load
    compile(load, "load.py", "exec")
    fp8_kv = make_plan("llama-3.2-1b", "l4", mixed, kv="fp8-e4m3")
    with pytest.raises(ExportError) as e:
        export_plan(fp8_kv, "hf", ctx_for(fp8_kv))
    assert e.value.field == "kv" and "--engine hf-transformers" in str(e.value)


def test_bitsandbytes_nf4_is_searched_only_when_asked_and_never_mixed():
    from planner.request.plan import resolve_plan

    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.2-1b", hardware="l40s", engine="hf-transformers"))
    assert "nf4" not in problem.formats
    _, _, problem, _ = resolve_plan(PlanRequest(model="llama-3.2-1b", hardware="l40s", engine="hf-transformers",
                                                formats="bf16,nf4"))
    assert "nf4" in problem.formats
    with pytest.raises(TierwiseError) as e:
        resolve_plan(PlanRequest(model="llama-3.2-1b", hardware="l40s", engine="hf-transformers", formats="nf4,int8"))
    assert e.value.field == "formats" and "whole model" in str(e.value)


DOC_CHECK = r'''
import re, sys, yaml
from pathlib import Path
text = Path("docs/engines.md").read_text()
part = text[text.index("## Adding an engine"):text.index("## Plans record their engine")]
profile = yaml.safe_load(re.search(r"```yaml\n(.*?)```", part, re.S).group(1))
module = re.search(r"```py\n(.*?)```", part, re.S).group(1)
exec(compile(module.replace("from .", "from planner.export."), "tiny_serve.py", "exec"), {})
path = Path(sys.argv[1]) / "tiny-serve.yaml"
path.write_text(yaml.safe_dump(profile))
from planner.engines import load_engine
from planner.export import ExportContext, export_plan
from planner.request.plan import PlanRequest, run_plan
from hwmodels import load_device
spec = load_engine(str(path))
plan = run_plan(PlanRequest(model="llama-3.2-1b", hardware="a100-80gb-sxm", engine=str(path),
                            max_memory_per_device="3GB", time_limit_s=30))
assert plan.engine == "tiny-serve"
assert {c.weights for c in plan.choices.values()} <= {"bf16", "fp16", "int8"}
dev = load_device("a100-80gb-sxm")
out = export_plan(plan, None, ExportContext(device_capacity_bytes=dev.memory_capacity_bytes), engine=str(path))
assert out.format == "tiny-serve" and out.files[0].path == "tiny_serve.json", out
print("ok", out.next_command)
'''


def test_the_documented_engine_is_one_yaml_and_one_exporter_module(tmp_path):
    # In a separate interpreter: the example registers an export target.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", DOC_CHECK, str(tmp_path)], cwd=root, capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0 and "ok tiny-serve launch" in r.stdout, r.stderr[-3000:]


@pytest.mark.parametrize("model,hardware,want,unwanted", [
    # Phi-3: fused qkv_proj → attn_qkv, fused gate_up_proj → ffn_up (gguf-py tensor_mapping.py)
    ("phi-3-mini", "rtx-4090", {"attn_qkv", "attn_output", "ffn_up", "ffn_down"}, {"attn_q", "ffn_gate"}),
    # Falcon: query_key_value → attn_qkv, dense_h_to_4h / dense_4h_to_h → ffn_up / ffn_down
    ("falcon-7b", "rtx-4090", {"attn_qkv", "attn_output", "ffn_up", "ffn_down"}, {"attn_q", "ffn_gate"}),
    # Mixtral: experts merged per kind, router is ffn_gate_inp
    ("mixtral-8x7b", "h100-sxm", {"attn_q", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_inp"}, {"ffn_gate"}),
    ("all-minilm-l6-v2", "rtx-4090", {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"}, {"attn_qkv"}),
])
def test_llamacpp_tensor_names_follow_the_gguf_conversion(model, hardware, want, unwanted):
    plan = make_plan(model, hardware, lambda g: ("int4-g32", "bf16", "dense"), kv="int8", batch=1)
    out = export_plan(plan, "llamacpp", ctx_for(plan))
    kinds = {m.group(1) for m in re.finditer(r"blk\\\.\([0-9|]+\)\\\.(\w+)\\\.weight=", out.file("tensor_types.txt").content)}
    assert want <= kinds and not (kinds & unwanted), kinds
    n_layers = {"phi-3-mini": 32, "falcon-7b": 32, "mixtral-8x7b": 32, "all-minilm-l6-v2": 6}[model]
    for line in out.file("tensor_types.txt").content.splitlines():  # every layer index once per tensor kind
        idx = re.match(r"blk\\\.\(([0-9|]+)\)", line).group(1).split("|")
        assert len(idx) == len(set(idx)) and {int(i) for i in idx} <= set(range(n_layers))
