"""On-device exports: the plan files' next command follows the plan's engine, and the
ExecuTorch export_llama exporter (planner/export/executorch.py)."""

from __future__ import annotations

import re
import shlex

import pytest

from planner.export import ExportError, export_plan
from planner.export.executorch import FLAGS
from planner.plan import plan_to_dict, with_engine
from tests.test_export import ctx_for, make_plan

# export_llama's flags as documented in the Llama example README and export_llama_lib.py,
# https://github.com/pytorch/executorch/tree/main/examples/models/llama
# (https://github.com/pytorch/executorch/blob/main/examples/models/llama/export_llama_lib.py).
EXPORT_LLAMA_FLAGS = {"--checkpoint", "-c", "--params", "-p", "--model", "--use_kv_cache", "-kv", "--use_sdpa_with_kv_cache",
                      "--xnnpack", "-X", "--quantization_mode", "-qmode", "--group_size", "--embedding-quantize", "-E",
                      "--dtype-override", "-d", "--quantize_kv_cache", "--max_seq_length", "--output_name", "--metadata"}
# export_llama's -qmode values and -d choices (same sources).
QMODES = {"int8", "8da4w", "8da4w-gptq", "vulkan_4w", "4w"}
DTYPES = {"fp32", "fp16", "bf16"}


def uniform(w: str, a: str = "fp16"):
    return lambda g: (w, a, "dense")


def et_plan(w: str, a: str = "fp16", *, kv: str = "fp16", model: str = "llama-3.2-1b", hw: str = "iphone-15-pro"):
    return with_engine(make_plan(model, hw, uniform(w, a), kv=kv, batch=1, prompt=256, gen=256), "executorch")


def command(out) -> list[str]:
    text = out.file("export_executorch.sh").content
    body = text.split("set -euo pipefail\n", 1)[1].replace("\\\n", " ")
    return shlex.split(body, posix=True)


# ---------------------------------------------------------------------------
# yaml / json: next command for the plan's engine
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_plan_file_next_command_uses_the_engines_own_exporter(fmt):
    plan = et_plan("int4-g32")
    out = export_plan(plan, fmt)
    assert out.next_command == f"tierwise export plan.{fmt} --format executorch --out deploy"
    assert "vllm" not in out.next_command


@pytest.mark.parametrize("engine", ["tvm", "vitis-ai", "sambaflow"])
def test_plan_file_of_an_engine_without_its_own_exporter_says_so(engine):
    d = plan_to_dict(et_plan("fp16"))
    d["engine"] = engine
    nxt = export_plan(d, "yaml").next_command
    assert "vllm" not in nxt and "--format" not in nxt
    assert nxt.startswith("# tierwise writes no ") and engine in nxt


def test_plan_file_next_command_for_vllm_and_for_no_engine():
    plan = make_plan("llama-3.2-1b", "l4", uniform("bf16", "bf16"), kv="bf16")
    assert export_plan(with_engine(plan, "vllm"), "yaml").next_command == "tierwise export plan.yaml --format vllm --out deploy"
    d = plan_to_dict(plan)
    d.pop("engine", None)
    nxt = export_plan(d, "json").next_command
    assert nxt.startswith("tierwise export plan.json --engine ENGINE") and "vllm" not in nxt


def test_plan_file_of_an_unknown_engine_asks_for_one():
    d = plan_to_dict(et_plan("fp16"))
    d["engine"] = "no-such-engine"
    nxt = export_plan(d, "yaml").next_command
    assert "--engine ENGINE" in nxt and "'no-such-engine'" in nxt


# ---------------------------------------------------------------------------
# executorch
# ---------------------------------------------------------------------------


def test_exporter_flags_are_documented_export_llama_flags():
    assert set(FLAGS) <= EXPORT_LLAMA_FLAGS


@pytest.mark.parametrize("w,group", [("int4-g32", "32"), ("int4-g128", "128")])
def test_int4_plan_becomes_8da4w_with_its_group_size(w, group):
    plan = et_plan(w, "int8")
    out = export_plan(plan, None, ctx_for(plan))  # the plan's engine picks the target
    assert out.format == "executorch"
    args = command(out)
    assert args[:3] == ["python", "-m", "examples.models.llama.export_llama"]
    flags = [a for a in args[3:] if a.startswith("-")]
    assert set(flags) <= EXPORT_LLAMA_FLAGS
    assert args[args.index("--quantization_mode") + 1] == "8da4w" and args[args.index("--group_size") + 1] == group
    assert args[args.index("--embedding-quantize") + 1] == f"4,{group}"
    assert args[args.index("--dtype-override") + 1] in DTYPES
    assert args[args.index("--max_seq_length") + 1] == "512"
    assert args[args.index("--model") + 1] == "llama3_2"
    assert "--use_kv_cache" in args and "--xnnpack" in args and "--quantize_kv_cache" not in args


def test_fp16_activations_with_int4_weights_are_noted():
    plan = et_plan("int4-g32", "fp16")
    out = export_plan(plan, "executorch", ctx_for(plan))
    assert any("8da4w" in n and "dynamic int8" in n for n in out.notes)


def test_float_plan_has_no_quantization_and_its_dtype():
    plan = et_plan("fp16")
    args = command(export_plan(plan, "executorch", ctx_for(plan)))
    assert "--quantization_mode" not in args and "--embedding-quantize" not in args
    assert args[args.index("--dtype-override") + 1] == "fp16"


def test_int8_plan_and_int8_kv_cache():
    plan = et_plan("int8", "int8", kv="int8")
    out = export_plan(plan, "executorch", ctx_for(plan))
    args = command(out)
    assert args[args.index("--quantization_mode") + 1] == "int8" and args[args.index("--quantization_mode") + 1] in QMODES
    assert args[args.index("--embedding-quantize") + 1] == "8,0"
    assert "--quantize_kv_cache" in args
    assert any("weight-only" in n for n in out.notes)


def test_mixed_linear_formats_are_refused_naming_the_groups():
    def pick(g):
        return ("int4-g32", "fp16", "dense") if g.endswith("mlp.gate_up") else ("fp16", "fp16", "dense")

    plan = with_engine(make_plan("llama-3.2-1b", "iphone-15-pro", pick, kv="fp16", batch=1), "executorch")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "executorch", ctx_for(plan))
    msg = str(e.value)
    assert re.match(r"choices\..+\.weights$", e.value.field)
    assert "int4-g32: model.layers.0.mlp.gate_up" in msg and "fp16:" in msg and "--engine executorch" in msg


def test_format_export_llama_cannot_write_is_refused():
    plan = make_plan("llama-3.2-1b", "l4", uniform("fp8-e4m3", "fp8-e4m3"), kv="fp16")
    with pytest.raises(ExportError, match="no quantization mode for 'fp8-e4m3'"):
        export_plan(plan, "executorch", ctx_for(plan))


@pytest.mark.parametrize("model,hw,w", [("falcon-7b", "m2-max", "int4-g32"), ("mixtral-8x7b", "m2-max", "int4-g32")])
def test_decoder_outside_export_llama_is_refused(model, hw, w):
    # export_llama builds a Llama decoder: Falcon's or Mixtral's tensors do not fit it (encoders, ViTs
    # and CNNs export through the generic flow: tests/test_export_executorch_program.py)
    plan = et_plan(w, "int8" if w.startswith("int") else "fp16", model=model, hw=hw)
    for ctx in (ctx_for(plan), None):  # with the architecture at hand, and read from the catalog
        with pytest.raises(ExportError) as e:
            export_plan(plan, "executorch", ctx)
        assert e.value.field == "model" and e.value.exit_code == 2
        msg = e.value.render("cli")
        assert f"the plan's model {model}" in msg and "Llama 2/3" in msg and "Optimum ExecuTorch" in msg


@pytest.mark.parametrize("model,name", [("llama-3.2-1b", "llama3_2"), ("qwen2.5-7b", "qwen2_5"),
                                        ("phi-3-mini", "phi_4_mini")])
def test_the_recipes_models_get_their_model_flag(model, name):
    plan = et_plan("int4-g32", "int8", model=model, hw="m2-max")
    args = command(export_plan(plan, "executorch", ctx_for(plan)))
    assert args[args.index("--model") + 1] == name and "--use_kv_cache" in args


def _cli_plan_and_export(model: str, hw: str, tmp_path, capsys):
    """`tierwise plan … --engine executorch --out plan.yaml`, then `tierwise export plan.yaml --format
    executorch --out deploy`: (export's exit code, its captured output, the deploy folder)."""
    from planner.cli import main

    plan_file = tmp_path / "plan.yaml"
    assert main(["plan", "--model", model, "--hardware", hw, "--engine", "executorch", "--out", str(plan_file)]) == 0
    capsys.readouterr()
    out = tmp_path / "deploy"
    code = main(["export", str(plan_file), "--format", "executorch", "--out", str(out)])
    return code, capsys.readouterr(), out


@pytest.mark.parametrize("model,hw", [("bert-base", "snapdragon-8-gen-3"), ("vit-h", "iphone-15-pro")])
def test_cli_export_of_an_encoder_or_vit_plan_to_executorch_writes_its_script(model, hw, tmp_path, capsys):
    code, captured, out = _cli_plan_and_export(model, hw, tmp_path, capsys)
    assert code == 0
    assert (out / "export_executorch.py").is_file() and "next: pip install executorch transformers" in captured.out


@pytest.mark.parametrize("model,hw", [("falcon-7b", "m2-max")])
def test_cli_export_of_a_non_llama_plan_to_executorch_exits_2_and_writes_nothing(model, hw, tmp_path, capsys):
    code, captured, out = _cli_plan_and_export(model, hw, tmp_path, capsys)
    assert code == 2
    assert "next:" not in captured.out and not (out / "export_executorch.sh").exists()
    assert f"the plan's model {model}" in captured.err and "export_llama" in captured.err
    assert "--format" in captured.err and "{@" not in captured.err


# ---------------------------------------------------------------------------
# executorch through Optimum ExecuTorch: decoders outside export_llama's recipe
# ---------------------------------------------------------------------------

# `optimum-cli export executorch` arguments and choices (optimum/commands/export/executorch.py,
# https://github.com/huggingface/optimum-executorch).
OPTIMUM_FLAGS = {"--model", "-m", "--gguf_file", "--output_dir", "-o", "--task", "--recipe", "--use_custom_sdpa",
                 "--use_custom_kv_cache", "--disable_dynamic_shapes", "--qlinear", "--qlinear_group_size",
                 "--qlinear_packing_format", "--qlinear_encoder", "--qlinear_encoder_group_size",
                 "--qlinear_encoder_packing_format", "--qembedding", "--qembedding_group_size", "--qembedding_encoder",
                 "--qembedding_encoder_group_size", "--max_seq_len", "--dtype", "--device", "--image_size"}
QLINEAR = {"8da4w", "4w", "8w", "8da8w", "8da4w,8da8w", "fpa4w"}
QEMBEDDING = {"4w", "8w"}
OPT_DTYPES = {"float32", "float16", "bfloat16"}


def optimum_args(out) -> list[str]:
    text = out.file("export_executorch.sh").content
    body = text.split("set -euo pipefail\n", 1)[1].replace("\\\n", " ")
    args = shlex.split(body, posix=True)
    assert args[:3] == ["optimum-cli", "export", "executorch"]
    return args[3:]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.mark.parametrize("model,w,a,qlinear,custom", [("mistral-7b", "int4-g32", "int8", "8da4w", 2),
                                                       ("gemma-2-9b", "int4-g32", "fp16", "8da4w", 1),
                                                       ("gpt-j-6b", "int8", "int8", "8da8w", 0),
                                                       ("gpt-neox-20b", "int8", "fp16", "8da8w", 2),
                                                       ("mistral-7b", "fp16", "fp16", None, 2)])
def test_a_decoder_optimum_exports_gets_its_command(model, w, a, qlinear, custom):
    # the phone target runs int8 / int4 weights with fp16 activations, the laptop target with int8 ones
    plan = et_plan(w, a, kv="fp16", model=model, hw="m2-max" if a != "fp16" or w == "fp16" else "snapdragon-8-gen-3")
    out = export_plan(plan, "executorch", ctx_for(plan))
    args = optimum_args(out)
    assert {x for x in args if x.startswith("-")} <= OPTIMUM_FLAGS
    assert flag(args, "--task") == "text-generation" and flag(args, "--recipe") == "xnnpack"
    # the custom ops only where Optimum's tests use them (GPT-J: neither; Gemma 2: SDPA only)
    assert ["--use_custom_sdpa" in args, "--use_custom_kv_cache" in args].count(True) == custom
    assert flag(args, "--qlinear") == qlinear and "--qlinear_group_size" not in args
    assert flag(args, "--qlinear") in QLINEAR | {None} and flag(args, "--qembedding") in QEMBEDDING | {None}
    # the float type: the weights' when they are float, else the plan's compute format
    expected = "fp16" if qlinear is None else plan.activations
    assert flag(args, "--dtype") == {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}[expected]
    assert flag(args, "--dtype") in OPT_DTYPES
    assert flag(args, "--max_seq_len") == "512" and flag(args, "--output_dir") == f"{model}-executorch"
    assert out.next_command == "pip install optimum-executorch && ./export_executorch.sh"
    if w != "fp16" and a != "int8":
        assert any("dynamic int8" in n for n in out.notes)


def test_optimum_embeddings_and_an_int8_cache():
    def pick(g):
        return ("int8", "int8", "dense") if "embed" in g else ("int4-g32", "int8", "dense")

    plan = with_engine(make_plan("mistral-7b", "m2-max", pick, kv="fp16", batch=1, prompt=256, gen=256), "executorch")
    args = optimum_args(export_plan(plan, "executorch", ctx_for(plan)))
    assert flag(args, "--qembedding") == "8w" and flag(args, "--qlinear") == "8da4w"
    # its text-generation task passes no group size (tasks/causal_lm.py): none is written, an int4 table is per row
    assert "--qlinear_group_size" not in args and "--qembedding_group_size" not in args
    plan = with_engine(make_plan("mistral-7b", "m2-max", uniform("int4-g32", "int8"), kv="fp16", batch=1), "executorch")
    out = export_plan(plan, "executorch", ctx_for(plan))
    assert flag(optimum_args(out), "--qembedding") == "4w" and any("one scale per row" in n for n in out.notes)
    plan = et_plan("int4-g32", "int8", kv="int8", model="mistral-7b", hw="m2-max")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "executorch", ctx_for(plan))
    msg = e.value.render("cli")
    assert e.value.field == "kv" and "no flag for a 'int8' cache" in msg and "--kv int8" not in msg
    # the program's dtype (the plan's float type) where the engine has such a KV format, else fp32
    assert f"--kv {plan.activations if plan.activations in ('fp16', 'fp32') else 'fp32'}" in msg


def test_optimum_applies_one_linear_config():
    def pick(g):
        return ("int8", "int8", "dense") if g.endswith("o_proj") else ("int4-g32", "int8", "dense")

    plan = with_engine(make_plan("mistral-7b", "m2-max", pick, kv="fp16", batch=1), "executorch")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "executorch", ctx_for(plan))
    assert re.match(r"choices\..+\.weights$", e.value.field) and "--qlinear applies one config" in str(e.value)


# ---------------------------------------------------------------------------
# mlc
# ---------------------------------------------------------------------------

# mlc_llm's flags and quantization modes as documented in
# https://llm.mlc.ai/docs/compilation/compile_models.html,
# https://llm.mlc.ai/docs/compilation/convert_weights.html and
# https://llm.mlc.ai/docs/compilation/configure_quantization.html.
MLC_FLAGS = {"--quantization", "--conv-template", "--context-window-size", "--prefill-chunk-size", "--sliding-window-size",
             "--tensor-parallel-shards", "--max-batch-size", "--device", "--model-lib", "-o", "--output"}
MLC_MODES = {"q0f16", "q0f32", "q3f16_1", "q4f16_1", "q4f32_1", "q4f16_awq", "e4m3_e4m3_f16", "e5m2_e5m2_f16"}


def mlc_plan(w: str, a: str = "fp16", *, hw: str = "iphone-15-pro", model: str = "llama-3.2-1b", tp: int = 1):
    return with_engine(make_plan(model, hw, uniform(w, a), kv="fp16", batch=1, prompt=1024, gen=256, tp=tp), "mlc-llm")


def mlc_steps(out) -> list[list[str]]:
    text = out.file("build_mlc.sh").content.split("set -euo pipefail\n", 1)[1].replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


def test_mlc_flags_are_documented():
    from planner.export.mlc import _MODE, FLAGS as MLC_USED

    assert set(MLC_USED) <= MLC_FLAGS and set(_MODE.values()) <= MLC_MODES


@pytest.mark.parametrize("w,a,mode", [("int4-g32", "fp16", "q4f16_1"), ("int4-g32", "fp32", "q4f32_1"),
                                      ("int3-g32", "fp16", "q3f16_1"), ("fp16", "fp16", "q0f16"), ("fp32", "fp32", "q0f32")])
def test_mlc_commands_carry_the_plans_quantization(w, a, mode):
    plan = mlc_plan(w, a)
    out = export_plan(plan, None, ctx_for(plan))  # the plan's engine picks the target
    assert out.format == "mlc"
    convert, gen, comp = mlc_steps(out)
    assert convert[:2] == ["mlc_llm", "convert_weight"] and gen[:2] == ["mlc_llm", "gen_config"]
    assert comp[:2] == ["mlc_llm", "compile"]
    for step in (convert, gen, comp):
        assert {a for a in step if a.startswith("-")} <= MLC_FLAGS
    assert convert[convert.index("--quantization") + 1] == mode == gen[gen.index("--quantization") + 1]
    assert gen[gen.index("--context-window-size") + 1] == "1280"
    assert gen[gen.index("--conv-template") + 1] == "llama-3"
    assert int(gen[gen.index("--prefill-chunk-size") + 1]) <= 1024
    assert "--tensor-parallel-shards" not in gen
    assert comp[comp.index("--device") + 1] == "iphone" and comp[2].endswith("/mlc-chat-config.json")
    assert "vllm" not in out.next_command and "mlc_llm chat" in out.next_command


@pytest.mark.parametrize("hw,device", [("snapdragon-8-gen-3", "android"), ("m2-max", "metal"), ("l4", "cuda")])
def test_mlc_compile_device_follows_the_hardware(hw, device):
    plan = mlc_plan("int4-g32", "fp16", hw=hw)
    comp = mlc_steps(export_plan(plan, "mlc", ctx_for(plan)))[2]
    assert comp[comp.index("--device") + 1] == device


def test_mlc_tensor_parallel_and_fp8():
    plan = mlc_plan("fp8-e4m3", "fp8-e4m3", hw="h100-sxm", model="llama-3.1-8b", tp=2)
    gen = mlc_steps(export_plan(plan, "mlc", ctx_for(plan)))[1]
    assert gen[gen.index("--tensor-parallel-shards") + 1] == "2"
    assert gen[gen.index("--quantization") + 1] == "e4m3_e4m3_f16"


def test_mlc_mixed_formats_are_refused_naming_the_groups():
    def pick(g):
        return ("int4-g32", "fp16", "dense") if g.endswith("o_proj") else ("fp16", "fp16", "dense")

    plan = with_engine(make_plan("llama-3.2-1b", "iphone-15-pro", pick, kv="fp16", batch=1), "mlc-llm")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "mlc", ctx_for(plan))
    assert e.value.field.endswith(".weights") and "q4f16_1 (int4-g32): model.layers.0.self_attn.o_proj" in str(e.value)
    assert "--engine mlc-llm" in str(e.value)


def test_mlc_format_without_a_mode_is_refused():
    plan = make_plan("llama-3.2-1b", "l4", uniform("int8", "fp16"), kv="fp16")
    with pytest.raises(ExportError, match="no quantization mode for int8"):
        export_plan(plan, "mlc", ctx_for(plan))


@pytest.mark.parametrize("model", ["gpt-j-6b", "qwen1.5-moe-a2.7b"])
def test_mlc_architecture_without_a_template_gets_lm_and_says_what_to_pass(model):
    # MLC LLM builds gptj and qwen2_moe (python/mlc_llm/model/model.py) but names no conversation
    # template for them: the note used to read "no chat template known", with nothing to do about it
    from planner.export.mlc import CONV_TEMPLATES

    plan = mlc_plan("fp16", model=model, hw="m2-max")
    out = export_plan(plan, "mlc", ctx_for(plan))
    gen = mlc_steps(out)[1]
    assert gen[gen.index("--conv-template") + 1] == "LM"
    note = next(n for n in out.notes if "conversation template" in n)
    assert "base model" in note and "chat-tuned checkpoint" in note and "mlc_llm gen_config --conv-template takes" in note
    assert all(t in note for t in CONV_TEMPLATES) and "no chat template known" not in note


@pytest.mark.parametrize("model, template", [("deepseek-v3", "deepseek_v3"), ("deepseek-v2-lite", "deepseek_v2"),
                                             ("megatron-gpt-1.7b", "gpt2"), ("llama-3.2-1b", "llama-3")])
def test_mlc_architectures_with_a_template_of_their_own_get_it(model, template):
    from planner.export.mlc import CONV_TEMPLATES

    plan = mlc_plan("fp16", model=model, hw="m2-max")
    out = export_plan(plan, "mlc", ctx_for(plan))
    gen = mlc_steps(out)[1]
    assert gen[gen.index("--conv-template") + 1] == template and template in CONV_TEMPLATES
    assert not any("conversation template" in n for n in out.notes)


@pytest.mark.parametrize("model", ["llama-2-7b", "codellama-34b"])
def test_mlc_llama_2_and_code_llama_get_the_plain_template_not_llama_3s(model):
    from planner.export.mlc import PLAIN

    plan = mlc_plan("int4-g32", model=model, hw="m2-max")
    out = export_plan(plan, "mlc", ctx_for(plan))
    gen = mlc_steps(out)[1]
    assert gen[gen.index("--conv-template") + 1] == PLAIN == "LM"
    assert any("Llama 2 / Code Llama" in n and "--conv-template llama-2" in n for n in out.notes), out.notes
    plan = mlc_plan("int4-g32", model="llama-3-8b", hw="m2-max")  # Llama 3 keeps its own
    gen = mlc_steps(export_plan(plan, "mlc", ctx_for(plan)))[1]
    assert gen[gen.index("--conv-template") + 1] == "llama-3"


@pytest.mark.parametrize("model, model_type", [("falcon-7b", "falcon"), ("opt-1.3b", "opt"), ("mpt-7b", "mpt")])
def test_mlc_refuses_an_architecture_it_does_not_build(model, model_type):
    # mlc_llm convert_weight stops with "Unknown model type" (python/mlc_llm/support/auto_config.py)
    from planner.export.core import UnsupportedModelError

    plan = mlc_plan("fp16", model=model, hw="m2-max")
    with pytest.raises(UnsupportedModelError) as e:
        export_plan(plan, "mlc", ctx_for(plan))
    msg = e.value.render("cli")
    assert e.value.field == "model" and e.value.exit_code == 2 and e.value.code == "export_unsupported"
    assert f"model type {model_type!r}" in msg and "gpt_neox" in msg and "--format" in msg


def test_plan_file_next_command_follows_the_engine_asked_for():
    """``--engine llm-foundry`` on a vLLM plan writes the plan file for llm-foundry: the next step
    is llm-foundry's, not ``--format vllm`` (the plan's own engine)."""
    plan = with_engine(make_plan("llama-3.2-1b", "h100-sxm", uniform("bf16", "bf16"), kv="bf16"), "vllm")
    nxt = export_plan(plan, None, engine="llm-foundry").next_command
    assert nxt.startswith("# tierwise writes no ") and "llm-foundry" in nxt and "vllm" not in nxt


def test_plans_for_an_optimum_decoder_keep_a_float_cache_and_export():
    # the matrix found plans with an int8 KV cache (which export_llama writes for Llama) that Optimum cannot write
    from planner.request.plan import PlanRequest, run_plan

    # on the CPU cores (XNNPACK) a 9B model decodes in about 270 ms a token at best: the default 200 ms is relaxed
    plan = run_plan(PlanRequest(model="gemma-2-9b", hardware="snapdragon-8-gen-3", engine="executorch",
                                max_memory_per_device="6.5GB", tpot_slo_s=0.5, time_limit_s=60))
    assert plan.kv in ("fp16", "fp32")
    args = optimum_args(export_plan(plan, "executorch"))
    assert flag(args, "--qlinear") == "8da4w"
    with pytest.raises(Exception) as e:
        run_plan(PlanRequest(model="gemma-2-9b", hardware="snapdragon-8-gen-3", engine="executorch", kv="int8"))
    assert e.value.field == "kv" and "writes gemma-2-9b's KV cache in fp16, fp32 only" in str(e.value)
    llama = run_plan(PlanRequest(model="llama-3.2-1b", hardware="snapdragon-8-gen-3", engine="executorch", kv="int8",
                                 time_limit_s=60))
    assert llama.kv == "int8"  # export_llama writes it (--quantize_kv_cache)


def test_a_plan_of_a_model_outside_the_catalog_says_so():
    # was ExecuTorch's Llama-recipe refusal ("its architecture could not be read … not one of them")
    d = plan_to_dict(et_plan("fp16", "fp16"))
    d["model"] = "mobilenet-v3"
    with pytest.raises(ExportError) as e:
        export_plan(d, "executorch")
    msg = e.value.render("cli")
    assert e.value.field == "model" and "not in the catalog" in msg and "--model-path" in msg and "Llama" not in msg


def test_optimum_plans_use_int4_in_groups_of_32():
    # Optimum's text-generation task quantizes int4 in groups of 32 whatever --qlinear_group_size says
    from planner.request.plan import PlanRequest, run_plan

    with pytest.raises(Exception) as e:
        run_plan(PlanRequest(model="mistral-7b", hardware="snapdragon-8-gen-3", engine="executorch",
                             formats=["int4-g128"]))
    assert e.value.field == "formats" and "int4-g32 only" in str(e.value)
    plan = et_plan("int4-g128", "int8", kv="fp16", model="mistral-7b", hw="m2-max")
    with pytest.raises(ExportError) as e:
        export_plan(plan, "executorch", ctx_for(plan))
    assert "groups of 32" in str(e.value) and "--formats int4-g32" in e.value.render("cli")


def test_an_estimate_of_what_the_optimum_route_cannot_write_says_so():
    # estimates are what-ifs: they price an int8 cache or int4-g128 weights for Mistral under ExecuTorch,
    # and say that a plan would not choose them nor the export write them; export_llama's Llama writes both
    from planner.request.estimate import EstimateRequest, run_estimate

    kv = run_estimate(EstimateRequest(model="mistral-7b", hardware="snapdragon-8-gen-3", engine="executorch", kv="int8"))
    w = run_estimate(EstimateRequest(model="mistral-7b", hardware="snapdragon-8-gen-3", engine="executorch",
                                     weights="int4-g128"))
    llama = run_estimate(EstimateRequest(model="llama-3.2-3b", hardware="snapdragon-8-gen-3", engine="executorch",
                                         kv="int8", weights="int4-g128"))
    note = [n for n in kv.notes if "exporter writes" in n]
    assert note == ["what-if: KV cache in int8: executorch runs it, but its exporter writes mistral-7b's KV cache in "
                    "fp32, fp16, bf16 only, so `tierwise plan` would not choose it and `tierwise export` could not "
                    "write it"]
    assert any("weights in int4-g128" in n and "int4-g32" in n for n in w.notes)
    assert not any("exporter writes" in n for n in llama.notes)
