"""Every plan feature is exported or refused with a message that names the groups, their
formats and the `tierwise plan --engine` flag that re-plans for the target; embeddings and
LM heads follow one per-target rule; memory settings count the weights as exported."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from planner.export import ExportError, export_plan
from planner.export.rules import ROLE_RULES, role_of
from tests.test_export import ctx_for, make_plan

LINEAR16 = ("bf16", "bf16", "dense")


def _except_embed(fmt):
    return lambda g: LINEAR16 if role_of(g) != "linear" else fmt


@pytest.mark.parametrize("target", ["trtllm", "modelopt-mixed", "hf"])
def test_two_four_sparsity_is_refused_naming_the_groups_where_the_format_has_no_field(target):
    plan = make_plan("llama-3.2-1b", "h100-sxm", lambda g: ("int4-g128", "bf16", "2:4") if g.endswith("mlp.down_proj")
                     else (LINEAR16 if role_of(g) != "linear" else ("int4-g128", "bf16", "dense")))
    with pytest.raises(ExportError) as e:
        export_plan(plan, target, ctx_for(plan))
    msg = e.value.render("cli")
    assert e.value.field.endswith(".sparsity")
    assert "sparsity 2:4: 16 groups" in msg and "model.layers.0.mlp.down_proj" in msg
    assert "--engine" in msg


def test_two_four_sparsity_is_exported_by_compressed_tensors_and_served_from_its_checkpoint():
    from compressed_tensors.config import SparsityCompressionConfig
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils.match import match_name

    plan = make_plan("llama-3.2-1b", "h100-sxm", _except_embed(("fp8-e4m3", "fp8-e4m3", "2:4")))
    out = export_plan(plan, "compressed-tensors", ctx_for(plan))
    recipe = yaml.safe_load(out.file("recipe.yaml").content)
    assert recipe["sparsity_stage_0"]["sparsity_modifiers"]["SparseGPTModifier"]["mask_structure"] == "2:4"
    raw = json.loads(out.file("quantization_config.json").content)
    QuantizationConfig.model_validate(raw)
    sc = SparsityCompressionConfig.load_from_registry(raw["sparsity_config"]["format"], **raw["sparsity_config"])
    assert sc.sparsity_structure == "2:4" and sc.format == "sparse-24-bitmask"
    assert any(match_name("model.layers.7.mlp.down_proj", t) for t in sc.targets)
    assert not any(match_name("lm_head", t) for t in sc.targets)
    args = json.loads(export_plan(plan, "vllm", ctx_for(plan)).file("vllm_args.json").content)
    assert args["quantization"] == "compressed-tensors"


def test_trtllm_never_runs_one_qformat_for_a_mixed_plan():
    # fp8 everywhere but the MLP down projections: one --qformat fp8 would quantize those too
    plan = make_plan("llama-3.2-1b", "h100-sxm", lambda g: LINEAR16 if role_of(g) != "linear" or g.endswith("down_proj")
                     else ("fp8-e4m3", "fp8-e4m3", "dense"))
    out = export_plan(plan, "trtllm", ctx_for(plan))
    assert "--qformat" not in out.file("trtllm.sh").content
    q = json.loads(out.file("quant_cfg.json").content)
    assert q["quant_algo"] == "MIXED_PRECISION"
    assert "model.layers.0.mlp.down_proj" in q["exclude_modules"]
    assert q["quantized_layers"]["model.layers.0.self_attn.q_proj"]["quant_algo"] == "FP8"


def test_fp8_weight_only_is_never_exported_as_w8a8():
    from compressed_tensors.quantization import QuantizationConfig

    plan = make_plan("llama-3.2-1b", "h100-sxm", _except_embed(("fp8-e4m3", "bf16", "dense")))
    ctx = ctx_for(plan)
    cfg = QuantizationConfig.model_validate(json.loads(export_plan(plan, "compressed-tensors", ctx).file("quantization_config.json").content))
    (scheme,) = cfg.config_groups.values()
    assert scheme.weights.type == "float" and scheme.weights.num_bits == 8 and scheme.input_activations is None
    args = json.loads(export_plan(plan, "vllm", ctx).file("vllm_args.json").content)
    assert args["quantization"] == "compressed-tensors"  # vLLM's "fp8" would quantize activations too
    w8a8 = make_plan("llama-3.2-1b", "h100-sxm", _except_embed(("fp8-e4m3", "fp8-e4m3", "dense")))
    assert json.loads(export_plan(w8a8, "vllm", ctx_for(w8a8)).file("vllm_args.json").content)["quantization"] == "fp8"
    with pytest.raises(ExportError, match="weight-only"):
        export_plan(plan, "trtllm", ctx)


@pytest.mark.parametrize("target", ["vllm", "sglang", "compressed-tensors", "hf", "trtllm", "modelopt-mixed"])
def test_quantized_embeddings_follow_the_targets_rule(target):
    plan = make_plan("llama-3.1-8b", "h100-sxm", lambda g: ("fp8-e4m3", "fp8-e4m3", "dense"))
    out = export_plan(plan, target, ctx_for(plan))
    assert ROLE_RULES[target]["embedding"] == "keep16"
    assert any("embeddings in 16 bit: model.embed_tokens planned as fp8-e4m3 is written as bf16" in n for n in out.notes), out.notes
    text = "".join(f.content for f in out.files)
    if target in ("compressed-tensors", "hf"):
        cfg = json.loads(out.file("quantization_config.json").content)
        assert "model.embed_tokens" in (cfg.get("ignore") or cfg.get("modules_to_not_convert"))
    if target == "modelopt-mixed":
        q = json.loads(out.file("hf_quant_config.json").content)["quantization"]
        assert "model.embed_tokens" not in q["quantized_layers"] and q["quantized_layers"]["lm_head"]["quant_algo"] == "FP8"
    assert text


def test_gpu_memory_utilization_counts_the_weights_as_exported_and_the_engine_context():
    from planner.engines import load_engine

    q = make_plan("llama-3.1-8b", "h100-sxm", lambda g: ("nvfp4", "bf16", "dense"))  # embeddings planned nvfp4
    k = make_plan("llama-3.1-8b", "h100-sxm", _except_embed(("nvfp4", "bf16", "dense")))
    fq = json.loads(export_plan(q, "vllm", ctx_for(q)).file("vllm_args.json").content)["gpu_memory_utilization"]
    fk = json.loads(export_plan(k, "vllm", ctx_for(k)).file("vllm_args.json").content)["gpu_memory_utilization"]
    # the nvfp4 embedding and LM head are loaded in 16 bit: both plans hold the same bytes, so the same fraction
    assert fq == fk
    cap = ctx_for(k).device_capacity_bytes
    ctxb = load_engine("vllm").runtime.context_bytes
    assert fk * cap >= k.predicted.per_device_bytes + ctxb > (fk - 0.01) * cap


def test_an_unexportable_plan_names_every_group_its_formats_and_the_replan_flag():
    plan = make_plan("llama-3.2-1b", "h100-sxm", lambda g: ("bfp8", "bf16", "dense") if ".mlp." in g else
                     (("cb4", "bf16", "dense") if g.endswith("o_proj") else ("int4-g128", "bf16", "dense")))
    for target in ("vllm", "sglang", "compressed-tensors", "trtllm", "modelopt-mixed", "hf"):
        with pytest.raises(ExportError) as e:
            export_plan(plan, target, ctx_for(plan))
        msg = e.value.render("cli")
        assert "weights bfp8: 32 groups" in msg and "weights cb4: 16 groups" in msg, msg
        engine = {"hf": "hf-transformers", "trtllm": "trtllm", "modelopt-mixed": "trtllm", "sglang": "sglang"}.get(target, "vllm")
        flag = f"--engine {engine}"
        assert flag in msg
        cmd = msg[msg.index("`") + 1: msg.index("`", msg.index("`") + 1)]
        assert shlex.split(cmd)[:2] == ["tierwise", "plan"]
        if engine == "vllm":
            assert "runs weights" in msg and "int4-g128" in msg  # planner.engines.support(vllm, h100-sxm)


def test_a_plan_mixing_two_sparsity_structures_is_refused_by_compressed_tensors():
    plan = make_plan("llama-3.2-1b", "h100-sxm", lambda g: LINEAR16 if role_of(g) != "linear" else
                     (("int4-g128", "bf16", "unstructured:0.5") if g.endswith("o_proj") else ("int4-g128", "bf16", "2:4")))
    with pytest.raises(ExportError) as e:
        export_plan(plan, "compressed-tensors", ctx_for(plan))
    assert "sparsity unstructured:0.5: 16 groups" in e.value.render("cli") and e.value.field.endswith(".sparsity")


# vLLM EngineArgs names (vllm/engine/arg_utils.py; docs.vllm.ai/en/stable/configuration/engine_args/):
# the CLI flag is the name with "-" for "_".
VLLM_ENGINE_ARGS = {"model", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "enable_expert_parallel",
                    "quantization", "dtype", "kv_cache_dtype", "max_model_len", "max_num_seqs", "gpu_memory_utilization",
                    "cpu_offload_gb", "max_num_batched_tokens"}
# vLLM --quantization choices used here (vllm/model_executor/layers/quantization/__init__.py QUANTIZATION_METHODS)
VLLM_QUANTIZATION = {"fp8", "compressed-tensors", "modelopt", "modelopt_fp4", "modelopt_mixed"}


@pytest.mark.parametrize("pick", [_except_embed(("fp8-e4m3", "fp8-e4m3", "dense")), _except_embed(("fp8-e4m3", "bf16", "dense")),
                                  _except_embed(("int4-g128", "bf16", "2:4")), lambda g: LINEAR16])
def test_vllm_serve_flags_are_documented_engine_arguments(pick):
    plan = make_plan("mixtral-8x7b", "h100-sxm", pick, tp=4, kv="fp8-e4m3")
    out = export_plan(plan, "vllm", ctx_for(plan))
    args = json.loads(out.file("vllm_args.json").content)
    assert set(args) <= VLLM_ENGINE_ARGS
    assert args.get("quantization", "fp8") in VLLM_QUANTIZATION
    script = out.file("serve.sh").content.replace("\\\n", " ")
    flags = {a for a in shlex.split(script, comments=True) if a.startswith("--")}
    assert flags == {"--" + k.replace("_", "-") for k in args if k != "model"}


def test_vllm_refuses_formats_vllm_does_not_run_on_the_hardware_even_if_compressed_tensors_has_them():
    # int3 has a compressed-tensors scheme but vLLM has no kernel for it (profiles/engines/vllm.yaml)
    plan = make_plan("llama-3.2-1b", "h100-sxm", _except_embed(("int3-g128", "bf16", "dense")))
    export_plan(plan, "compressed-tensors", ctx_for(plan))
    with pytest.raises(ExportError) as e:
        export_plan(plan, "vllm", ctx_for(plan))
    msg = e.value.render("cli")
    assert "weights int3-g128: 64 groups" in msg and "--engine vllm" in msg


def test_the_replan_keeps_the_objective_and_a_kv_format_the_engine_runs(cli, tmp_path):
    # Was: a latency plan with an fp8 KV cache, refused by another engine's export, named a re-plan
    # that optimised accuracy with the engine's default KV cache.
    plan = tmp_path / "p.json"
    r = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--objective", "latency", "--kv", "fp8",
            "--out", plan)
    assert r.code == 0, r.err
    r = cli("export", plan, "--format", "trtllm", "--out", tmp_path / "t")
    if r.code == 0:
        pytest.skip("the plan happens to be one TensorRT-LLM runs")
    assert "--objective latency --kv fp8-e4m3" in r.err and "--engine trtllm" in r.err, r.err
    r = cli("export", plan, "--format", "llamacpp", "--out", tmp_path / "l")
    assert r.code == 2 and "--objective latency" in r.err and "--kv" not in r.err.split("re-plan for it")[1].split("`")[1]
