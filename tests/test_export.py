"""Exporters: every registered target on real plans, checked against the target's own
config models (compressed-tensors, transformers) or its documented argument names."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from hwmodels import load_device
from planner.arch import load_arch
from planner.costmodel import Choice, Layout, Serving, estimate_inference
from planner.export import (
    EXPORTERS,
    ExportContext,
    ExportError,
    export_formats,
    export_plan,
    group_modules,
    write_export,
)
from planner.formats import get_format
from planner.plan import (
    GroupChoice,
    Plan,
    PlanConstraints,
    PlanLayout,
    PlanWorkload,
    Predicted,
    SolverStats,
    TierPrediction,
    content_hash,
    plan_from_dict,
    plan_to_dict,
    tool_version,
)


def make_plan(model: str, hardware: str, pick, *, kv: str = "bf16", tp: int = 1, pp: int = 1, dp: int = 1,
              batch: int = 8, prompt: int = 512, gen: int = 128) -> Plan:
    """A Plan whose choices come from ``pick(group) -> (weights, activations, sparsity)`` and
    whose predictions come from the cost model for exactly those choices."""
    arch, dev = load_arch(model), load_device(hardware)
    groups = group_modules(arch)
    picks = {g: pick(g) for g in groups}
    overrides = {g: Choice(weights=w, activations=a, kv=kv, sparsity=s) for g, (w, a, s) in picks.items()}
    layout = Layout(tp=tp, pp=pp, dp=dp)
    est = estimate_inference(arch, dev, layout, Serving(batch=batch, prompt=prompt, gen=gen), Choice(kv=kv), overrides=overrides)
    m = est.memory
    tiers = {t.name: TierPrediction(role=t.role, capacity_bytes=t.capacity_bytes, used_bytes=t.used_bytes,
                                    weights_bytes=t.weights_bytes, kv_cache_bytes=t.kv_cache_bytes,
                                    activations_bytes=t.activations_bytes) for t in m.tiers}
    device_tier = dev.device_tier.name
    bits = [get_format(w).bits_per_value() for w, _, _ in picks.values()]
    predicted = Predicted(
        ttft_s=est.ttft_s, tpot_s=est.tpot_s, latency_s=est.latency_s, output_tokens_per_s=est.output_tokens_per_s,
        decode_tokens_per_s=est.decode_tokens_per_s, per_device_bytes=m.per_device_bytes, weights_bytes=m.weights_bytes,
        kv_cache_bytes=m.kv_cache_bytes, activations_bytes=m.activations_bytes, offloaded_weights_bytes=m.offloaded_weights_bytes,
        fits=m.fits, tiers=tiers, avg_weight_bits=sum(bits) / len(bits), sensitivity=0.0,
    )
    return Plan(
        tool_version=tool_version(), created_at="2026-01-01T00:00:00Z", model=arch.id, hardware=dev.id,
        model_hash=content_hash(arch), hardware_hash=content_hash(dev), layout=PlanLayout(tp=tp, pp=pp, dp=dp, ep=1),
        devices=tp * pp * dp, workload=PlanWorkload(batch=batch, prompt=prompt, gen=gen),
        constraints=PlanConstraints(max_memory_per_device_bytes=dev.memory_capacity_bytes), objective="accuracy", kv=kv,
        choices={g: GroupChoice(weights=w, activations=a, sparsity=s, tier=device_tier) for g, (w, a, s) in picks.items()},
        predicted=predicted, solver=SolverStats(backend="highs", status="optimal", objective=0.0, gap=0.0, time_s=0.0,
                                                variables=0, constraints=0),
        sensitivity_source="prior",
    )


def ctx_for(plan: Plan) -> ExportContext:
    arch, dev = load_arch(plan.model), load_device(plan.hardware)
    return ExportContext(modules=group_modules(arch), arch=arch, device_capacity_bytes=dev.memory_capacity_bytes,
                         devices_per_node=dev.devices_per_node)


def mixed(g: str) -> tuple[str, str, str]:
    """bf16 embeddings and head; int8 attention output; int4-g128 elsewhere."""
    if g.endswith(("embed_tokens", "lm_head")):
        return "bf16", "bf16", "dense"
    if g.endswith("o_proj"):
        return "int8", "bf16", "dense"
    return "int4-g128", "bf16", "dense"


@pytest.fixture(scope="module")
def mixed_plan() -> Plan:
    # llama-3.1-8b: 32 layers, untied LM head (Llama 3 config.json "tie_word_embeddings": false)
    return make_plan("llama-3.1-8b", "l4", mixed, kv="int8")


# ---------------------------------------------------------------------------
# common checks over every registered exporter
# ---------------------------------------------------------------------------


def test_registry_has_every_target_named_in_the_design():
    assert set(export_formats()) == {"vllm", "compressed-tensors", "hf", "modelopt-mixed", "trtllm", "llamacpp",
                                     "megatron", "yaml", "json", "executorch", "mlc", "sglang"}


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_every_exporter_writes_relative_files_and_a_next_command(fmt, tmp_path):
    # fp8 KV: the one KV format vLLM, TensorRT-LLM and compressed-tensors all take; llama.cpp gets int8,
    # transformers (no fp8 cache: 16-bit or QuantizedCache int4 / int2) int4-g64
    kv = {"llamacpp": "int8", "hf": "int4-g64", "executorch": "fp16", "mlc": "fp16"}.get(fmt, "fp8-e4m3")
    # ExecuTorch and MLC LLM take one quantization for the whole model (a mixed plan is refused there)
    pick = (lambda g: ("int4-g32", "fp16", "dense")) if fmt in ("executorch", "mlc") else mixed
    if fmt == "sglang":  # SGLang has no W8A16 int8 kernel (profiles/engines/sglang.yaml): int4 where mixed has int8
        pick = lambda g: ("int4-g128", "bf16", "dense") if mixed(g)[0] == "int8" else mixed(g)  # noqa: E731
    plan = make_plan("llama-3.2-1b", "l4", pick, kv=kv)
    out = export_plan(plan, fmt, ctx_for(plan))
    assert out.format == fmt and out.files and out.next_command.strip()
    json.dumps(out.to_dict())
    written = write_export(out, tmp_path / "o")
    assert sorted(p.name for p in written) == sorted(f.path for f in out.files)
    for p, f in zip(written, out.files):
        assert p.read_text() == f.content and f.content.strip()
        if p.suffix == ".json":
            json.loads(f.content)
        if p.suffix in (".yaml", ".yml"):
            yaml.safe_load(f.content)
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".tierwise-export")]


def test_unknown_format_names_the_choices():
    plan = make_plan("llama-3.2-1b", "l4", mixed)
    with pytest.raises(ExportError) as e:
        export_plan(plan, "onnx")
    assert e.value.field == "format" and "vllm" in str(e.value)


def test_plan_dict_and_plan_object_export_alike(mixed_plan):
    ctx = ctx_for(mixed_plan)
    assert export_plan(mixed_plan, "modelopt-mixed", ctx) == export_plan(plan_to_dict(mixed_plan), "modelopt-mixed", ctx)


# ---------------------------------------------------------------------------
# yaml / json: the plan itself, round trip with checksum
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,loader", [("yaml", yaml.safe_load), ("json", json.loads)])
def test_plan_round_trips_with_its_checksum(mixed_plan, fmt, loader):
    out = export_plan(mixed_plan, fmt)
    back = plan_from_dict(loader(out.files[0].content), require_checksum=True)
    assert plan_to_dict(back) == plan_to_dict(mixed_plan)


# ---------------------------------------------------------------------------
# compressed-tensors: validated by the compressed-tensors package's pydantic models
# ---------------------------------------------------------------------------


def _quantized_modules(plan: Plan, ctx: ExportContext) -> dict[str, str]:
    return {m: c.weights for g, c in plan.choices.items() if c.weights not in ("bf16", "fp16", "fp32") for m in ctx.modules[g]}


def test_compressed_tensors_config_validates_and_targets_every_module_once(mixed_plan):
    ct = pytest.importorskip("compressed_tensors")
    from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme
    from compressed_tensors.utils.match import match_name

    ctx = ctx_for(mixed_plan)
    out = export_plan(mixed_plan, "compressed-tensors", ctx)
    cfg = QuantizationConfig.model_validate(json.loads(out.file("quantization_config.json").content))
    assert cfg.format == "pack-quantized"  # weight-only int4 and int8 both pack into int32 words
    quantized = _quantized_modules(mixed_plan, ctx)
    assert len(quantized) == 32 * 7  # q,k,v,o,gate,up,down per layer
    for module, fmt in quantized.items():
        hits = [name for name, s in cfg.config_groups.items() if any(match_name(module, t) for t in s.targets)]
        assert len(hits) == 1, (module, hits)
        w = cfg.config_groups[hits[0]].weights
        f = get_format(fmt)
        assert w.num_bits == f.element_bits and w.type == "int" and w.group_size == f.group_size
    for module in ("model.embed_tokens", "lm_head"):
        assert any(match_name(module, t) for t in cfg.ignore)
        assert not any(match_name(module, t) for s in cfg.config_groups.values() for t in s.targets)
    assert cfg.kv_cache_scheme.num_bits == 8 and cfg.kv_cache_scheme.type == "int"
    recipe = yaml.safe_load(out.file("recipe.yaml").content)
    mod = recipe["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
    for scheme in mod["config_groups"].values():
        QuantizationScheme.model_validate(scheme)
    assert ct is not None


@pytest.mark.parametrize("w,a,expect", [
    ("fp8-e4m3", "fp8-e4m3", {"num_bits": 8, "type": "float"}),
    ("nvfp4", "bf16", {"num_bits": 4, "type": "float", "group_size": 16, "strategy": "tensor_group"}),
    ("mxfp4", "bf16", {"num_bits": 4, "type": "float", "group_size": 32}),
    ("int8", "int8", {"num_bits": 8, "type": "int", "strategy": "channel"}),
])
def test_compressed_tensors_schemes_match_the_library_presets(w, a, expect):
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.quantization import QuantizationConfig

    plan = make_plan("llama-3.2-1b", "h100-sxm", lambda g: ("bf16", "bf16", "dense") if g.endswith("embed_tokens") else (w, a, "dense"))
    cfg = QuantizationConfig.model_validate(json.loads(export_plan(plan, "compressed-tensors", ctx_for(plan)).file("quantization_config.json").content))
    (scheme,) = cfg.config_groups.values()
    for k, v in expect.items():
        got = getattr(scheme.weights, k)
        assert (got.value if hasattr(got, "value") else got) == v, k
    assert (scheme.input_activations is None) == (a == "bf16")


def test_sparsity_becomes_a_sparsegpt_stage():
    plan = make_plan("llama-3.2-1b", "l4", lambda g: ("bf16", "bf16", "dense") if g.endswith("embed_tokens") else ("int4-g128", "bf16", "2:4"))
    recipe = yaml.safe_load(export_plan(plan, "compressed-tensors", ctx_for(plan)).file("recipe.yaml").content)
    sgpt = recipe["sparsity_stage_0"]["sparsity_modifiers"]["SparseGPTModifier"]
    # llm-compressor SparseGPTModifier: sparsity 0.5 with mask_structure "2:4" for semi-structured
    assert sgpt["sparsity"] == 0.5 and sgpt["mask_structure"] == "2:4"


def test_format_without_a_compressed_tensors_scheme_names_the_group():
    plan = make_plan("llama-3.2-1b", "l4", lambda g: ("nf4", "bf16", "dense"))
    with pytest.raises(ExportError) as e:
        export_plan(plan, "compressed-tensors", ctx_for(plan))
    assert e.value.field.startswith("choices.") and e.value.field.endswith(".weights") and "nf4" in str(e.value)


# ---------------------------------------------------------------------------
# transformers quantization_config: validated by transformers' own config classes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("w,a,method", [("nf4", "bf16", "bitsandbytes"), ("int8", "bf16", "bitsandbytes"),
                                        ("fp8-e4m3", "fp8-e4m3", "fp8"), ("fp8-e4m3", "bf16", "compressed-tensors"),
                                        ("int4-g128", "bf16", "compressed-tensors")])
def test_hf_quantization_config_loads_in_transformers(w, a, method):
    pytest.importorskip("transformers")
    from transformers.quantizers.auto import AutoQuantizationConfig

    plan = make_plan("llama-3.2-1b", "h100-sxm", lambda g: ("bf16", "bf16", "dense") if g.endswith("embed_tokens") else (w, a, "dense"))
    raw = json.loads(export_plan(plan, "hf", ctx_for(plan)).file("quantization_config.json").content)
    assert raw["quant_method"] == method
    if method == "compressed-tensors" and w == "fp8-e4m3":  # weight-only fp8 stays weight-only (never W8A8)
        assert all(g["input_activations"] is None for g in raw["config_groups"].values())
    cfg = AutoQuantizationConfig.from_dict(dict(raw))
    if w == "nf4":  # QLoRA NF4 without double quantization (nf4-dq would set bnb_4bit_use_double_quant)
        assert cfg.load_in_4bit and cfg.bnb_4bit_quant_type == "nf4" and not cfg.bnb_4bit_use_double_quant
        assert "model.embed_tokens" in cfg.llm_int8_skip_modules
    if w == "int8":
        assert cfg.load_in_8bit


def test_hf_bf16_plan_has_no_quantization_config():
    plan = make_plan("llama-3.2-1b", "l4", lambda g: ("bf16", "bf16", "dense"))
    assert json.loads(export_plan(plan, "hf", ctx_for(plan)).file("quantization_config.json").content) is None


# ---------------------------------------------------------------------------
# vLLM: engine argument names documented at docs.vllm.ai ("Engine Arguments")
# ---------------------------------------------------------------------------

# vLLM EngineArgs (vllm/engine/arg_utils.py; docs.vllm.ai/en/latest/configuration/engine_args.html)
VLLM_ENGINE_ARGS = {"model", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "enable_expert_parallel",
                    "quantization", "dtype", "kv_cache_dtype", "max_model_len", "max_num_seqs", "gpu_memory_utilization",
                    "cpu_offload_gb", "max_num_batched_tokens"}
# --kv-cache-dtype choices documented by vLLM: auto, fp8, fp8_e4m3, fp8_e5m2
VLLM_KV_DTYPES = {"auto", "fp8", "fp8_e4m3", "fp8_e5m2"}


def test_vllm_args_match_the_plan(mixed_plan):
    plan = make_plan("llama-3.1-70b", "h100-sxm", mixed, kv="fp8-e4m3", tp=4, batch=32, prompt=1024, gen=256)
    out = export_plan(plan, "vllm", ctx_for(plan))
    args = json.loads(out.file("vllm_args.json").content)
    assert set(args) <= VLLM_ENGINE_ARGS
    assert args["tensor_parallel_size"] == 4 and args["pipeline_parallel_size"] == 1
    assert args["max_model_len"] == 1024 + 256 and args["max_num_seqs"] == 32
    assert args["kv_cache_dtype"] in VLLM_KV_DTYPES and args["kv_cache_dtype"] == "fp8_e4m3"
    assert args["quantization"] == "compressed-tensors"
    # chunked prefill (profiles/engines/vllm.yaml: 8192 tokens): passes of 8192 of the 32 × 1024 prompt tokens
    assert args["max_num_batched_tokens"] == 8192
    # the memory budget covers the predicted footprint with one pass's activations (H100 SXM: 80 GB HBM3, NVIDIA datasheet)
    p = plan.predicted
    share = (p.per_device_bytes - p.activations_bytes * (1 - 8192 / (32 * 1024))) / 80e9
    assert share < args["gpu_memory_utilization"] <= share + 0.06
    cmd = shlex.split(out.next_command)
    assert cmd[:3] == ["vllm", "serve", args["model"]]
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "4"


def test_vllm_bf16_and_fp8_checkpoints_need_no_conversion():
    bf16 = make_plan("llama-3.2-1b", "l4", lambda g: ("bf16", "bf16", "dense"))
    args = json.loads(export_plan(bf16, "vllm", ctx_for(bf16)).file("vllm_args.json").content)
    assert "quantization" not in args and args["model"] == "meta-llama/Llama-3.2-1B"
    fp8 = make_plan("llama-3.2-1b", "l4", lambda g: ("fp8-e4m3", "fp8-e4m3", "dense"))
    assert json.loads(export_plan(fp8, "vllm", ctx_for(fp8)).file("vllm_args.json").content)["quantization"] == "fp8"


def test_vllm_refuses_a_kv_cache_it_cannot_hold(mixed_plan):
    with pytest.raises(ExportError) as e:
        export_plan(mixed_plan, "vllm", ctx_for(mixed_plan))  # int8 KV
    assert e.value.field == "kv"


# ---------------------------------------------------------------------------
# ModelOpt / TensorRT-LLM: QuantAlgo names from tensorrt_llm/quantization/mode.py
# ---------------------------------------------------------------------------

TRT_QUANT_ALGOS = {"W8A16", "W4A16", "W4A16_AWQ", "W4A8_AWQ", "W8A16_GPTQ", "W4A16_GPTQ", "W8A8_SQ_PER_CHANNEL",
                   "W8A8_SQ_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN",
                   "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN", "W4A8_QSERVE_PER_GROUP", "W4A8_QSERVE_PER_CHANNEL", "FP8",
                   "FP8_PER_CHANNEL_PER_TOKEN", "FP8_BLOCK_SCALES", "INT8", "MIXED_PRECISION", "NVFP4", "W4A8_NVFP4_FP8",
                   "W4A8_MXFP4_FP8", "W4A8_MXFP4_MXFP8", "W4A16_MXFP4", "NO_QUANT"}
TRT_KV_ALGOS = {"FP8", "INT8", "NVFP4"}  # KV_CACHE_QUANT_ALGO_LIST in the same file
# trtllm-serve options (TensorRT-LLM docs, "trtllm-serve" command reference)
TRTLLM_SERVE_FLAGS = {"--tp_size", "--pp_size", "--ep_size", "--max_batch_size", "--max_seq_len",
                      "--kv_cache_free_gpu_memory_fraction", "--extra_llm_api_options", "--backend", "--host", "--port"}
# examples/quantization/quantize.py --qformat choices
TRT_QFORMATS = {"fp8", "nvfp4", "int4_awq", "w4a8_awq", "int8_wo", "int4_wo", "int8_sq", "full_prec", "w4a16_mxfp4",
                "w4a8_mxfp4_fp8", "w4a8_nvfp4_fp8"}


def test_modelopt_mixed_lists_every_layer_with_a_known_algorithm(mixed_plan):
    ctx = ctx_for(mixed_plan)
    cfg = json.loads(export_plan(mixed_plan, "modelopt-mixed", ctx).file("hf_quant_config.json").content)["quantization"]
    assert cfg["quant_algo"] == "MIXED_PRECISION" and cfg["kv_cache_quant_algo"] == "INT8"
    layers = cfg["quantized_layers"]
    assert set(layers) == set(_quantized_modules(mixed_plan, ctx))
    assert {v["quant_algo"] for v in layers.values()} == {"W4A16_AWQ", "W8A16"} <= TRT_QUANT_ALGOS
    assert layers["model.layers.0.self_attn.q_proj"]["group_size"] == 128
    assert set(cfg["exclude_modules"]) == {"model.embed_tokens", "lm_head"}


def test_trtllm_uniform_plan_uses_one_quant_algo_and_documented_flags():
    # quantize.py --qformat quantizes every linear layer but the LM head: the plan keeps the head in bf16
    plan = make_plan("llama-3.1-8b", "h100-sxm", lambda g: ("bf16", "bf16", "dense") if g.endswith("lm_head")
                     else ("fp8-e4m3", "fp8-e4m3", "dense"), kv="fp8-e4m3", tp=2)
    out = export_plan(plan, "trtllm", ctx_for(plan))
    opts = yaml.safe_load(out.file("extra_llm_api_options.yaml").content)
    assert {k: opts["quant_config"][k] for k in ("quant_algo", "kv_cache_quant_algo")} == {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}
    assert set(opts["quant_config"]["exclude_modules"]) == {"model.embed_tokens", "lm_head"}
    assert opts["tensor_parallel_size"] == 2 and opts["max_seq_len"] == 640
    script = out.file("trtllm.sh").content
    q = shlex.split(out.next_command)
    assert q[q.index("--qformat") + 1] in TRT_QFORMATS and q[q.index("--kv_cache_dtype") + 1] == "fp8"
    serve = shlex.split(script.replace("\\\n", " ").splitlines()[-1])
    assert serve[0] == "trtllm-serve"
    assert {a for a in serve if a.startswith("--")} <= TRTLLM_SERVE_FLAGS


def test_trtllm_mixed_plan_writes_the_per_layer_map(mixed_plan):
    out = export_plan(mixed_plan, "trtllm", ctx_for(mixed_plan))
    q = json.loads(out.file("quant_cfg.json").content)
    assert q["quant_algo"] == "MIXED_PRECISION" and set(v["quant_algo"] for v in q["quantized_layers"].values()) <= TRT_QUANT_ALGOS


# ---------------------------------------------------------------------------
# llama.cpp: llama-quantize --tensor-type NAME=TYPE (tools/quantize/quantize.cpp);
# overrides are regexes searched in GGUF tensor names (src/llama-quant.cpp)
# ---------------------------------------------------------------------------

GGML_TYPES = {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
              "iq4_nl", "mxfp4"}
LLAMA_FTYPES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL",
                "MXFP4_MOE", "BF16", "F16", "F32"}


def test_llamacpp_overrides_give_each_tensor_the_planned_type(mixed_plan):
    out = export_plan(mixed_plan, "llamacpp", ctx_for(mixed_plan))
    cmd = shlex.split(out.next_command)
    assert cmd[0] == "llama-quantize" and cmd[-1] in LLAMA_FTYPES
    overrides = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--tensor-type"]
    rules = []
    for o in overrides:
        pat, typ = o.rsplit("=", 1)
        assert typ in GGML_TYPES and pat == pat.lower()
        rules.append((re.compile(pat), typ))
    kinds = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    for layer in range(32):
        for hf, gguf in kinds.items():
            name = f"blk.{layer}.{gguf}.weight"
            hits = [t for r, t in rules if r.search(name)]
            expect = "q8_0" if hf == "o_proj" else "q4_k"  # int8 → q8_0; int4 g128 → q4_k (nearest, noted)
            assert hits == [expect], (name, hits)
    assert cmd[cmd.index("--token-embedding-type") + 1] == "bf16" and cmd[cmd.index("--output-tensor-type") + 1] == "bf16"
    assert any("q4_k" in n for n in out.notes)
    assert "--cache-type-k q8_0" in out.file("quantize.sh").content.replace(" \\\n  ", " ")


# ---------------------------------------------------------------------------
# Megatron-LM: names from megatron/training/arguments.py
# ---------------------------------------------------------------------------

MEGATRON_ARGS = {"--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--expert-model-parallel-size",
                 "--micro-batch-size", "--global-batch-size", "--seq-length", "--num-layers", "--hidden-size",
                 "--ffn-hidden-size", "--num-attention-heads", "--max-position-embeddings", "--group-query-attention",
                 "--num-query-groups", "--swiglu", "--normalization", "--position-embedding-type",
                 "--untie-embeddings-and-output-weights", "--disable-bias-linear", "--num-experts", "--moe-router-topk",
                 "--recompute-granularity", "--recompute-method", "--recompute-num-layers", "--sequence-parallel",
                 "--num-layers-per-virtual-pipeline-stage", "--use-distributed-optimizer", "--bf16", "--fp16",
                 "--fp8-format"}


def test_megatron_args_match_the_layout():
    plan = make_plan("llama-3.1-70b", "h100-sxm", lambda g: ("bf16", "bf16", "dense"), tp=8, pp=2, dp=4, batch=2, prompt=4096, gen=0)
    out = export_plan(plan, "megatron", ctx_for(plan))
    cmd = shlex.split(out.next_command)
    flags = [a for a in cmd if a.startswith("--") and a not in ("--nproc_per_node", "--nnodes")]
    assert set(flags) <= MEGATRON_ARGS
    val = {f: cmd[cmd.index(f) + 1] for f in ("--tensor-model-parallel-size", "--pipeline-model-parallel-size",
                                              "--micro-batch-size", "--global-batch-size", "--seq-length", "--num-query-groups")}
    assert val == {"--tensor-model-parallel-size": "8", "--pipeline-model-parallel-size": "2", "--micro-batch-size": "2",
                   "--global-batch-size": "8", "--seq-length": "4096", "--num-query-groups": "8"}
    # world size = tp × pp × dp = 64: 8 per node (H100 SXM HGX) × 8 nodes
    assert cmd[cmd.index("--nproc_per_node") + 1] == "8" and cmd[cmd.index("--nnodes") + 1] == "8"


# ---------------------------------------------------------------------------
# tierwise export
# ---------------------------------------------------------------------------


def test_cli_writes_the_export_and_names_the_next_command(tmp_path, capsys):
    from planner.cli import main
    from planner.plan import save_plan

    plan = make_plan("llama-3.2-1b", "l4", mixed, kv="fp8-e4m3")
    path = save_plan(plan, tmp_path / "plan.yaml")
    assert main(["export", str(path), "--format", "vllm", "--out", str(tmp_path / "deploy")]) == 0
    args = json.loads((tmp_path / "deploy" / "vllm_args.json").read_text())
    assert args["max_num_seqs"] == 8 and (tmp_path / "deploy" / "serve.sh").stat().st_mode & 0o111
    assert "next: vllm serve" in capsys.readouterr().out
    # a target that cannot hold the plan's KV cache: exit 2, nothing written
    assert main(["export", str(path), "--format", "llamacpp", "--out", str(tmp_path / "gguf")]) == 2
    assert not (tmp_path / "gguf").exists() or not any((tmp_path / "gguf").iterdir())
    assert main(["export", str(path), "--format", "onnx"]) == 2


def test_llamacpp_cpu_plan_with_int8_activations_exports_without_activation_notes():
    """On CPU cores llama.cpp quantizes activations to 8-bit blocks for every quantized matmul,
    so a CPU plan's int8 activations with quantized weights need no note; int8 activations
    beside 16-bit weights (nothing ggml does) still get one."""

    def pick(g: str) -> tuple[str, str, str]:
        if g.endswith("embed_tokens"):
            return "bf16", "bf16", "dense"
        if g.endswith("o_proj"):
            return "bf16", "int8", "dense"
        return "int8-g32", "int8", "dense"

    plan = make_plan("llama-3.2-1b", "ryzen-9-7950x", pick, kv="fp16", batch=1)
    out = export_plan(plan, "llamacpp", ctx_for(plan))
    noted = [n for n in out.notes if "activations are not set" in n]
    assert noted and all("o_proj" in n for n in noted)
