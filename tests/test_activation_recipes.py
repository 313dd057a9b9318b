"""Engines' recipes for int8 activations in the prior, the planner, the exports and execution: SmoothQuant
first (vLLM, SGLang), one scale per block of features (llama.cpp on CPU cores).

vLLM and SGLang make int8 W8A8 checkpoints with llm-compressor's SmoothQuantModifier (strength 0.8)
before quantizing; their profiles say so (``activation_smoothing``), the prior prices int8
activations after that migration on the linears that read a norm, and the compressed-tensors
export writes the modifier. Engines without it (TensorRT-LLM's ModelOpt path here, ExecuTorch's
8da4w) keep per-token int8 as it comes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from planner.api import plan as plan_api
from planner.arch import load_arch
from planner.backends.smoothing import smoothing_scales
from planner.engines import load_engine, load_engine_from_dict
from planner.export import export_plan
from planner.format_noise import ActivationRecipe, activation_noise
from planner.options import Option, decision_groups
from planner.sensitivity import PriorSensitivity, TableSensitivity
from planner.workload import build_workload
from tests.test_export import ctx_for, make_plan


def test_smoothing_scales_follow_the_paper_and_keep_the_product():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 64, generator=g)
    x[:, 5] *= 50.0
    w = torch.randn(16, 64, generator=g)
    s = smoothing_scales(x.abs().amax(0), w, 0.5)
    expect = (x.abs().amax(0) ** 0.5) / (w.abs().amax(0) ** 0.5)
    assert torch.allclose(s, expect)
    # the migration is exact before quantization: (X / s)(W s)^T = X W^T
    assert torch.allclose((x / s) @ (w * s).T, x @ w.T, rtol=1e-4, atol=1e-3)
    # the outlier channel is divided down the most
    assert int(torch.argmax(s)) == 5
    with pytest.raises(ValueError, match="alpha"):
        smoothing_scales(x.abs().amax(0), w, 1.5)
    with pytest.raises(ValueError, match="in_features"):
        smoothing_scales(x.abs().amax(0)[:10], w, 0.5)


def test_engine_profiles_state_their_recipe():
    assert load_engine("vllm").runtime.smoothing_alpha == 0.8
    assert load_engine("sglang").runtime.smoothing_alpha == 0.8
    for other in ("trtllm", "executorch", "llamacpp", "torch"):
        assert load_engine(other).runtime.smoothing_alpha is None


@pytest.mark.parametrize("bad", [1.5, "strong", -0.1, 0, None, True])
def test_a_bad_strength_in_a_profile_names_the_field(bad):
    import pathlib

    data = yaml.safe_load(pathlib.Path("profiles/engines/vllm.yaml").read_text())
    data["activation_smoothing"]["alpha"] = bad
    with pytest.raises(Exception) as err:
        load_engine_from_dict(data, "vllm-copy.yaml")
    msg = str(err.value)
    assert "activation_smoothing.alpha" in msg and ("in (0, 1]" in msg or (bad is None and "must be present" in msg))


def _groups(model: str = "llama-3.1-8b"):
    return decision_groups(build_workload(load_arch(model)))


def test_prior_smooths_only_the_linears_that_read_a_norm():
    groups = _groups()
    w8a8, w8a16 = Option(weights="int8", activations="int8"), Option(weights="int8", activations="bf16")
    plain = PriorSensitivity().scores(groups, [(w8a8, w8a16)] * len(groups)).values
    smooth = PriorSensitivity(recipe=ActivationRecipe(smoothing=0.8)).scores(groups, [(w8a8, w8a16)] * len(groups)).values
    seen = set()
    for g, p, s in zip(groups, plain, smooth):
        assert s[1] == p[1]  # 16-bit activations: nothing to smooth
        if g.reads_norm:
            assert s[0] < p[0] / 4, g.fqn
            seen.add(g.name)
        else:
            assert s[0] == p[0], g.fqn
    assert seen == {"self_attn.qkv", "mlp.gate_up"}
    assert activation_noise("int8", 0.8) < activation_noise("int8") / 4


@pytest.mark.parametrize("model,smoothed", [
    ("llama-3.1-8b", {"self_attn.qkv", "mlp.gate_up"}),
    ("opt-6.7b", {"self_attn.qkv", "mlp.fc1"}),
    ("falcon-40b", {"self_attn.qkv", "mlp.fc1"}),  # ln_attn and ln_mlp
    ("falcon-7b", set()),  # one norm feeds both q/k/v and the MLP (parallel attention)
    ("gpt-j-6b", set()),
    ("mixtral-8x7b", {"self_attn.qkv"}),  # the experts share their norm with the router
    ("gemma-2-9b", {"self_attn.qkv", "mlp.gate_up"}),
    ("bert-base", set()),  # post-norm: the norm's output is also the residual
    ("all-minilm-l6-v2", set()),
    ("t5-3b", set()),
])
def test_which_groups_read_a_norm_alone(model, smoothed):
    assert {g.name for g in _groups(model) if g.reads_norm} == smoothed


def test_table_fallback_scores_use_the_smoothing_too():
    groups = _groups()
    opts = [(Option(weights="int8", activations="int8"),)] * len(groups)
    table = TableSensitivity(entries=())
    assert [float(v[0]) for v in table.with_recipe(ActivationRecipe(smoothing=0.8)).scores(groups, opts).values] == \
        [float(v[0]) for v in PriorSensitivity(recipe=ActivationRecipe(smoothing=0.8)).scores(groups, opts).values]


_REQ = dict(devices=1, batch=32, prompt=2048, gen=128, formats=["bf16", "int8"], ttft_slo_s=3.0)


def test_a_vllm_plan_spends_int8_activations_where_they_are_smoothed():
    """The same request, vLLM (SmoothQuant recipe) against TensorRT-LLM (ModelOpt's, priced per
    token as it comes): both need W8A8 somewhere to meet the TTFT on an A100; vLLM's accuracy cost
    of it is far lower, and every group it runs in W8A8 reads a norm's output."""
    vllm = plan_api("llama-3.1-8b", "a100-80gb-sxm", engine="vllm", **_REQ)
    trt = plan_api("llama-3.1-8b", "a100-80gb-sxm", engine="trtllm", **_REQ)
    groups = {g.fqn: g for g in _groups()}
    w8a8 = [g for g, c in vllm.choices.items() if c.activations == "int8"]
    assert w8a8, "the TTFT target needs int8 compute somewhere"
    assert all(groups[g].reads_norm for g in w8a8)
    assert vllm.predicted.ttft_s <= 3.0 and trt.predicted.ttft_s <= 3.0
    assert vllm.predicted.sensitivity < trt.predicted.sensitivity / 3
    note = [n for n in vllm.predicted.notes if "SmoothQuant" in n]
    assert note and f"{len(w8a8)} of the {len(w8a8)} groups" in note[0]
    assert not any("SmoothQuant" in n for n in trt.predicted.notes)


def _w8a8_plan(engine_picks="int8", engine="vllm"):
    plan = make_plan("llama-3.2-1b", "a100-80gb-sxm",
                     lambda g: ("bf16", "bf16", "dense") if g.endswith(("embed_tokens", "lm_head"))
                     else ("int8", engine_picks, "dense"))
    return dataclasses.replace(plan, engine=engine)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_compressed_tensors_recipe_smooths_before_quantizing(engine):
    plan = _w8a8_plan(engine=engine)
    out = export_plan(plan, "compressed-tensors", ctx_for(plan))
    mods = yaml.safe_load(out.file("recipe.yaml").content)["quant_stage"]["quant_modifiers"]
    assert list(mods) == ["SmoothQuantModifier", "QuantizationModifier"]  # order matters: smooth, then quantize
    sq = mods["SmoothQuantModifier"]
    assert sq["smoothing_strength"] == 0.8
    # explicit mappings: every layer's q/k/v to its input_layernorm, gate/up to post_attention_layernorm
    layers = load_arch("llama-3.2-1b").num_layers
    assert len(sq["mappings"]) == 2 * layers
    assert ["model.layers.3.self_attn.q_proj", "model.layers.3.self_attn.k_proj", "model.layers.3.self_attn.v_proj"] \
        in [m[0] for m in sq["mappings"]]
    assert dict((m[1], tuple(m[0])) for m in sq["mappings"])["model.layers.3.post_attention_layernorm"] == \
        ("model.layers.3.mlp.gate_proj", "model.layers.3.mlp.up_proj")
    assert "num_calibration_samples=512" in out.file("oneshot.py").content  # SmoothQuant calibrates
    assert any("SmoothQuantModifier" in n and f"{engine}'s recipe" in n for n in out.notes)


@pytest.mark.parametrize("engine", ["trtllm", None])
def test_a_plan_priced_without_smoothing_exports_without_it(engine):
    """A plan whose engine quantizes int8 activations as they come (or that records none) was priced
    so; its compressed-tensors recipe, served by vLLM, does not smooth either."""
    plan = _w8a8_plan(engine=engine)
    out = export_plan(plan, "compressed-tensors", ctx_for(plan))
    assert "SmoothQuantModifier" not in yaml.safe_load(out.file("recipe.yaml").content)["quant_stage"]["quant_modifiers"]


def test_only_the_w8a8_groups_that_read_a_norm_are_mapped():
    """q/k/v in W8A16 next to gate/up in W8A8: llm-compressor's default mappings would smooth q/k/v
    too; the export names the gate/up mappings only, as the prior priced them."""
    plan = make_plan("llama-3.2-1b", "a100-80gb-sxm",
                     lambda g: ("bf16", "bf16", "dense") if g.endswith(("embed_tokens", "lm_head")) else
                     ("int8", "int8" if g.endswith("gate_up") else "bf16", "dense"))
    plan = dataclasses.replace(plan, engine="vllm")
    out = export_plan(plan, "compressed-tensors", ctx_for(plan))
    sq = yaml.safe_load(out.file("recipe.yaml").content)["quant_stage"]["quant_modifiers"]["SmoothQuantModifier"]
    assert sq["mappings"] and all(m[1].endswith("post_attention_layernorm") for m in sq["mappings"])


@pytest.mark.parametrize("model,norms", [
    ("opt-6.7b", ("model.decoder.layers.0.self_attn_layer_norm", "model.decoder.layers.0.final_layer_norm")),
    ("falcon-40b", ("transformer.h.0.ln_attn", "transformer.h.0.ln_mlp")),
    ("gemma-2-9b", ("model.layers.0.input_layernorm", "model.layers.0.pre_feedforward_layernorm")),
])
def test_mappings_use_each_architectures_own_norm_names(model, norms):
    plan = make_plan(model, "h100-sxm", lambda g: ("bf16", "bf16", "dense") if g.endswith(("embed_tokens", "lm_head"))
                     else ("int8", "int8", "dense"))
    plan = dataclasses.replace(plan, engine="vllm")
    out = export_plan(plan, "compressed-tensors", ctx_for(plan))
    sq = yaml.safe_load(out.file("recipe.yaml").content)["quant_stage"]["quant_modifiers"]["SmoothQuantModifier"]
    assert set(norms) <= {m[1] for m in sq["mappings"]}


def test_smoothing_norms_exist_in_the_real_module_trees():
    """Every norm the map names exists in the transformers module tree (built on the meta device) of the
    catalog models that have one, at a path next to the linears it feeds."""
    from tests.test_export_names import _CLASS_ALIASES, KNOWN, _raw, _small

    transformers = pytest.importorskip("transformers")
    from planner.arch import arch_from_config
    from planner.smoothing_map import smoothing_norm

    checked = set()
    for model_id in KNOWN:
        raw = {k: v for k, v in _small(_raw(model_id)).items() if not k.startswith("_")}
        arch = arch_from_config(_small(_raw(model_id)), model_id=model_id, origin="test")
        norms = {g: smoothing_norm(arch, g) for g in ("self_attn.qkv", "mlp.gate_up", "mlp.fc1")}
        norms = {g: n for g, n in norms.items() if n}
        if not norms or raw["model_type"] in checked:
            continue
        cfg = transformers.AutoConfig.for_model(**raw)
        cls_name = (raw.get("architectures") or [""])[0]
        cls = getattr(transformers, _CLASS_ALIASES.get(cls_name, cls_name), None)
        with torch.device("meta"):
            model = cls(cfg) if cls is not None else transformers.AutoModel.from_config(cfg)
        names = {n for n, _ in model.named_modules()}
        for n in norms.values():
            assert n.format(i=1) in names, (model_id, n)
        checked.add(raw["model_type"])
    assert {"llama", "opt", "falcon", "gemma2", "bloom", "gpt_neox", "mixtral", "phi3", "qwen2"} <= checked


@pytest.mark.parametrize("acts", ["bf16"])
def test_weight_only_and_float_activation_recipes_have_no_smoothing(acts):
    for plan in (_w8a8_plan(acts), make_plan("llama-3.2-1b", "h100-sxm", lambda g: ("fp8-e4m3", "fp8-e4m3", "dense"))):
        out = export_plan(plan, "compressed-tensors", ctx_for(plan))
        mods = yaml.safe_load(out.file("recipe.yaml").content)["quant_stage"]["quant_modifiers"]
        assert "SmoothQuantModifier" not in mods


# ---------------------------------------------------------------------------
# Execution: the plan's engine recipe applied to a real pretrained model
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def outlier_decoder():
    """A two-layer Llama-shaped decoder whose norms give 6 of 2,048 channels a 50× gain: the
    concentrated outlier channels of trained LLMs (LLM.int8() §4, SmoothQuant §3) that per-token int8
    activations lose their ordinary channels to."""
    from planner.execution.models import load_torch_model

    tm = load_torch_model("llama-3.2-1b@layers=2,vocab=1000")
    g = torch.Generator().manual_seed(7)
    idx = torch.randperm(2048, generator=g)[:6]
    with torch.no_grad():
        for layer in tm.module.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[idx] *= 50.0
    return tm


def _w8a8_choices(tm):
    groups = decision_groups(build_workload(tm.arch))
    return {g.fqn: ({"weights": "int8", "activations": "int8"} if g.role not in ("embedding", "lm_head", "head")
                    else {"weights": "fp32"}) for g in groups}


def test_applying_a_smoothing_engines_plan_needs_calibration_data(outlier_decoder):
    from planner.execution.apply import PlanApplyError, apply_plan, smoothed_targets

    tm = outlier_decoder
    plan = {"engine": "vllm", "choices": _w8a8_choices(tm)}
    with pytest.raises(PlanApplyError) as err:
        apply_plan(tm.module, plan, arch=tm.arch)
    assert err.value.field == "calibrate" and "SmoothQuant" in err.value.message and "'vllm'" in err.value.message
    with pytest.raises(PlanApplyError, match="never reached") as err:
        apply_plan(tm.module, plan, arch=tm.arch, calibrate=lambda m: None)
    assert err.value.field == "calibrate"
    # an engine without the recipe, or no engine, or a post-norm encoder: nothing to smooth
    assert smoothed_targets(tm.module, {"engine": "trtllm", "choices": plan["choices"]}, tm.arch) == {}
    assert smoothed_targets(tm.module, {"choices": plan["choices"]}, tm.arch) == {}
    from planner.execution.models import load_torch_model

    minilm = load_torch_model("all-minilm-l6-v2")
    assert smoothed_targets(minilm.module, {"engine": "vllm", "choices": _w8a8_choices(minilm)}, minilm.arch) == {}


def test_validate_applies_smoothquant_with_one_scale_per_norm(outlier_decoder):
    """Every linear in W8A8 on a decoder with outlier channels: under vLLM's recipe q/k/v and gate/up
    are smoothed with one scale vector per norm (what folding into the norm can do), o_proj and
    down_proj are not, and the measured error is well below the same plan under TensorRT-LLM's
    per-token int8."""
    from planner.execution.apply import apply_plan, compressed_modules, smoothed_targets
    from planner.execution.validate import validate

    tm = outlier_decoder
    choices = _w8a8_choices(tm)
    smoothed = smoothed_targets(tm.module, {"engine": "vllm", "choices": choices}, tm.arch)
    assert sorted(smoothed) == sorted(f"model.layers.{i}.{m}" for i in range(2) for m in
                                      ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"))
    vllm = validate(tm, {"engine": "vllm", "choices": choices, "kv": "bf16"}, samples=4)
    trt = validate(tm, {"engine": "trtllm", "choices": choices, "kv": "bf16"}, samples=4)
    assert vllm.degradation < 0.5 * trt.degradation, (vllm.degradation, trt.degradation)
    assert vllm.output_sqnr_db > trt.output_sqnr_db + 3.0
    assert any("10 int8-activation layers ran vllm's SmoothQuant" in n for n in vllm.notes)
    assert not any("SmoothQuant" in n for n in trt.notes)

    calib = tm.make_inputs(2, 1)
    packed = compressed_modules(apply_plan(tm.module, {"engine": "vllm", "choices": choices}, arch=tm.arch,
                                           calibrate=lambda m: m(calib[0][:, :8], m.new_cache())))
    original = dict(tm.module.named_modules())
    for fqn, mod in packed.items():
        assert (mod.smooth is not None) == (fqn in smoothed), fqn
        if mod.smooth is not None:
            # the effective weight is the original one, to int8 precision of the migrated weight
            w = original[fqn].weight.detach()
            err = float(((mod.dense_weight() - w) ** 2).sum() / (w ** 2).sum())
            assert err < 0.05, (fqn, err)
    for i in range(2):
        q, k, v = (packed[f"model.layers.{i}.self_attn.{m}_proj"].smooth for m in "qkv")
        assert torch.equal(q, k) and torch.equal(q, v)
        assert torch.equal(packed[f"model.layers.{i}.mlp.gate_proj"].smooth, packed[f"model.layers.{i}.mlp.up_proj"].smooth)


def test_validate_says_when_the_plans_engine_is_unknown(outlier_decoder):
    from planner.execution.validate import validate

    rep = validate(outlier_decoder, {"engine": "my-engine", "choices": _w8a8_choices(outlier_decoder), "kv": "bf16"},
                   samples=2)
    assert any("'my-engine' is not one this installation knows" in n for n in rep.notes)


# ---------------------------------------------------------------------------
# llama.cpp on CPU cores: int8 activations in the weight type's vec_dot_type blocks
# ---------------------------------------------------------------------------

def test_llamacpp_states_its_cpu_activation_blocks():
    blocks = dict(load_engine("llamacpp").runtime.activation_blocks)
    assert blocks["int4-g32"] == blocks["int8-g32"] == blocks["int4-g32-zp"] == 32  # Q8_0 / Q8_1
    assert blocks["int4-g128"] == blocks["int2-g128"] == 256  # K-quants: Q8_K
    assert blocks["mxfp4"] == blocks["nf4"] == 32


@pytest.mark.parametrize("formats,expect", [({"int4-g33": 32}, "canonical"), ({"int4-g32": 0}, "power of two"),
                                            ({"int4-g32": 7}, "power of two"), ({"int4-g32": 100000}, "power of two"),
                                            ({"int4-g32": "32"}, "power of two"), ({}, "mapping")])
def test_bad_activation_blocks_in_a_profile_name_the_field(formats, expect):
    import pathlib

    data = yaml.safe_load(pathlib.Path("profiles/engines/llamacpp.yaml").read_text())
    data["activation_blocks"]["formats"] = formats
    with pytest.raises(Exception) as err:
        load_engine_from_dict(data, "llamacpp-copy.yaml")
    assert "activation_blocks" in str(err.value) and expect in str(err.value)


def test_a_llamacpp_cpu_plan_prices_int8_activations_per_block():
    """Every quantized weight llama.cpp runs on CPU cores computes with int8 activations; priced per
    token they would add 16.7% noise to each, per Q8_0 block 0.25%."""
    groups = _groups()
    nf4 = Option(weights="nf4", activations="int8")
    recipe = ActivationRecipe(blocks=load_engine("llamacpp").runtime.activation_blocks)
    per_token = PriorSensitivity().scores(groups, [(nf4,)] * len(groups)).values
    blocked = PriorSensitivity(recipe=recipe).scores(groups, [(nf4,)] * len(groups)).values
    assert all(b[0] < p[0] / 5 for b, p in zip(blocked, per_token))
    plan = plan_api("llama-3.1-8b", "ryzen-9-7950x", engine="llamacpp", max_memory_per_device=7e9, tpot_slo_s=None)
    assert any(c.activations == "int8" for c in plan.choices.values())
    note = [n for n in plan.predicted.notes if "one scale per block" in n]
    assert note and "32 with" in note[0]
    assert plan.predicted.sensitivity < 3.0  # about 30 with 16.7% per quantized group


def test_execution_quantizes_llamacpp_activations_per_block():
    from planner.execution.apply import apply_plan, compressed_modules
    from planner.execution.models import load_torch_model
    from planner.execution.modules import quantize_activation

    tm = load_torch_model("llama-3.2-1b@layers=1,vocab=512")
    groups = decision_groups(build_workload(tm.arch))
    choices = {g.fqn: ({"weights": "int4-g32", "activations": "int8"} if g.role not in ("embedding", "lm_head")
                       else {"weights": "fp32"}) for g in groups}
    packed = compressed_modules(apply_plan(tm.module, {"engine": "llamacpp", "choices": choices}, arch=tm.arch))
    linear = [m for m in packed.values() if hasattr(m, "activation_block")]
    assert linear and all(m.activation_block == 32 for m in linear)
    plain = compressed_modules(apply_plan(tm.module, {"choices": choices}, arch=tm.arch))
    assert all(m.activation_block is None for m in plain.values() if hasattr(m, "activation_block"))
    x = torch.randn(3, 64)
    x[:, 7] *= 100.0
    by_block = quantize_activation(x, "int8", 32)
    # the outlier's block absorbs it; the other block keeps int8's own precision
    assert float(((by_block - x)[:, 32:] ** 2).mean()) < 1e-3 * float((x[:, 32:] ** 2).mean())
    assert float(((quantize_activation(x, "int8") - x)[:, 32:] ** 2).mean()) > 10 * float(((by_block - x)[:, 32:] ** 2).mean())


# ---------------------------------------------------------------------------
# Layouts the catalog does not ship, and models given as config files
# ---------------------------------------------------------------------------

def _arch_variant(model_id: str, **changes):
    import json
    import pathlib

    from planner.arch import arch_from_config

    raw = json.loads(pathlib.Path(f"profiles/models/{model_id}.json").read_text())
    raw.update(changes, _id=f"{model_id}-variant")
    return arch_from_config(raw, model_id=f"{model_id}-variant", origin="test")


def test_post_norm_opt_and_sequential_falcon():
    from planner.smoothing_map import smoothing_norm

    # OPT-350m's layout (do_layer_norm_before false): q/k/v read the residual stream, nothing folds
    post = _arch_variant("opt-1.3b", do_layer_norm_before=False)
    assert smoothing_norm(post, "self_attn.qkv") is None and smoothing_norm(post, "mlp.fc1") is None
    # Falcon-RW style (neither parallel nor the new decoder architecture): two sequential LayerNorms
    rw = _arch_variant("falcon-7b", parallel_attn=False, new_decoder_architecture=False)
    assert smoothing_norm(rw, "self_attn.qkv") == "transformer.h.{i}.input_layernorm"
    assert smoothing_norm(rw, "mlp.fc1") == "transformer.h.{i}.post_attention_layernorm"
    assert smoothing_norm(load_arch("falcon-40b"), "mlp.fc1") == "transformer.h.{i}.ln_mlp"


def test_a_plan_with_nothing_to_fold_says_so():
    plan = plan_api("falcon-7b", "h100-sxm", engine="vllm", formats=["bf16", "int8"], ttft_slo_s=2.0,
                    pins={"model.layers.*": "int8/int8"})
    note = [n for n in plan.predicted.notes if "SmoothQuant" in n]
    assert note and "none of the" in note[0] and "per token as they come" in note[0] and "mappings" not in note[0]


def test_cli_export_of_a_config_file_model_needs_its_config_for_the_mappings(tmp_path, cli):
    import json
    import pathlib

    raw = json.loads(pathlib.Path("profiles/models/llama-3.2-1b.json").read_text())
    raw.update(num_hidden_layers=2, _id="tiny-llama")
    cfg = tmp_path / "tiny-llama.json"
    cfg.write_text(json.dumps(raw))
    plan_file = tmp_path / "p.yaml"
    code, _, err = cli("plan", "--model", cfg, "--hardware", "h100-sxm", "--engine", "vllm", "--formats", "bf16,int8",
                       "--pin", "model.layers.*=int8/int8", "-o", plan_file)
    assert code == 0, err
    code, _, err = cli("export", plan_file, "--format", "compressed-tensors", "--out", tmp_path / "a")
    assert code == 2 and "--model-path" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "recipe.yaml").exists()
    code, _, err = cli("export", plan_file, "--format", "compressed-tensors", "--model-path", cfg, "--out", tmp_path / "b")
    assert code == 0, err
    sq = yaml.safe_load((tmp_path / "b" / "recipe.yaml").read_text())["quant_stage"]["quant_modifiers"]["SmoothQuantModifier"]
    assert {m[1] for m in sq["mappings"]} == {f"model.layers.{i}.{n}" for i in range(2)
                                               for n in ("input_layernorm", "post_attention_layernorm")}


@pytest.mark.parametrize("engine,hardware,alpha,blocks", [
    ("llamacpp", "l4", None, {}),  # GPU kernels: 16-bit activations, no int8 recipe to show
    ("llamacpp", "ryzen-9-7950x", None, {"int4-g32": 32, "int4-g128": 256}),
    ("vllm", "a100-80gb-sxm", 0.8, {}),
    ("trtllm", "a100-80gb-sxm", None, {}),
])
def test_engines_show_gives_the_int8_recipe_where_int8_activations_run(cli, engine, hardware, alpha, blocks):
    import json

    code, out, err = cli("engines", "show", engine, "--hardware", hardware, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["activation_smoothing"] == alpha
    assert blocks.items() <= body["activation_blocks"].items() and bool(body["activation_blocks"]) == bool(blocks)
    code, out, _ = cli("engines", "show", engine, "--hardware", hardware)
    assert ("SmoothQuant" in out) == (alpha is not None) and ("one scale per" in out) == bool(blocks)


# ---------------------------------------------------------------------------
# The plan records the recipe it was priced with; export and execution follow the record
# ---------------------------------------------------------------------------

def test_a_plan_records_its_engines_recipe():
    from planner.plan import plan_from_dict, plan_to_dict

    plan = plan_api("llama-3.1-8b", "a100-80gb-sxm", engine="vllm", **_REQ)
    assert plan.activation_recipe == ActivationRecipe(smoothing=0.8)
    d = plan_to_dict(plan)
    assert d["activation_recipe"] == {"smoothing_alpha": 0.8, "blocks": {}}
    assert plan_from_dict(d, require_checksum=True) == plan
    cpu = plan_api("llama-3.1-8b", "ryzen-9-7950x", engine="llamacpp", devices=1, batch=1, prompt=512, gen=64,
                   formats=["bf16", "int4-g32", "int4-g128"], max_memory_per_device="7GB")
    rec = plan_to_dict(cpu)["activation_recipe"]
    assert rec["smoothing_alpha"] is None and rec["blocks"]["int4-g32"] == 32 and rec["blocks"]["int4-g128"] == 256


def _engine_copy(tmp_path, engine_id: str, alpha: float):
    import pathlib

    text = pathlib.Path("profiles/engines/vllm.yaml").read_text()
    assert "\nid: vllm\n" in text and "alpha: 0.8" in text
    path = tmp_path / f"{engine_id}.yaml"
    path.write_text(text.replace("\nid: vllm\n", f"\nid: {engine_id}\n").replace("alpha: 0.8", f"alpha: {alpha}"))
    return path


@pytest.mark.parametrize("engine_id", ["vllm-sq05", "vllm"])
def test_a_custom_engine_files_strength_reaches_the_export(tmp_path, cli, engine_id):
    """A profile file given by path (a new id, or the catalog's id with another strength): the plan
    records the strength the planner priced, and the export writes that one, not the catalog's."""
    import json

    profile = _engine_copy(tmp_path, engine_id, 0.5)
    plan_file = tmp_path / "p.json"
    code, out, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--engine", profile,
                         "--formats", "bf16,int8", "--pin", "model.layers.*=int8/int8", "-o", plan_file)
    assert code == 0, err
    assert json.loads(plan_file.read_text())["activation_recipe"] == {"smoothing_alpha": 0.5, "blocks": {}}
    code, out, err = cli("export", plan_file, "--format", "compressed-tensors", "--out", tmp_path / "out")
    assert code == 0, err
    sq = yaml.safe_load((tmp_path / "out" / "recipe.yaml").read_text())["quant_stage"]["quant_modifiers"]
    assert sq["SmoothQuantModifier"]["smoothing_strength"] == 0.5
    # `plan diff` against the same request on the catalog's vLLM shows the recipe (and the id when it differs)
    catalog = tmp_path / "catalog.json"
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--engine", "vllm",
                       "--formats", "bf16,int8", "--pin", "model.layers.*=int8/int8", "-o", catalog)
    assert code == 0, err
    code, out, err = cli("plan", "diff", plan_file, catalog, "--json")
    fields = json.loads(out)["fields"]
    assert code == 0 and [r["smoothing_alpha"] for r in fields["activation_recipe"]] == [0.5, 0.8]
    assert ("engine" in fields) == (engine_id != "vllm")
    code, out, err = cli("plan", "diff", plan_file, catalog)
    text = " ".join(out.split())
    assert code == 0 and "after SmoothQuant (strength 0.5)" in text and "smoothing_alpha" not in text, out


def test_execution_follows_the_recorded_recipe(outlier_decoder):
    from planner.execution.apply import apply_plan, compressed_modules
    from planner.execution.validate import validate

    tm = outlier_decoder
    choices = _w8a8_choices(tm)
    calib = tm.make_inputs(2, 1)

    def run(m):
        m(calib[0][:, :8], m.new_cache())

    def smooth(plan):
        return compressed_modules(apply_plan(tm.module, plan, arch=tm.arch, calibrate=run))["model.layers.0.self_attn.q_proj"].smooth

    catalog = smooth({"engine": "vllm", "choices": choices})  # a plan written before recipes were recorded
    assert torch.equal(smooth({"engine": "vllm", "activation_recipe": {"smoothing_alpha": 0.8, "blocks": {}},
                               "choices": choices}), catalog)
    half = smooth({"engine": "vllm", "activation_recipe": {"smoothing_alpha": 0.5, "blocks": {}}, "choices": choices})
    assert not torch.equal(half, catalog)
    # an engine this installation lacks, whose plan recorded its recipe: applied, and no note that it could not be
    assert torch.equal(smooth({"engine": "my-engine", "activation_recipe": {"smoothing_alpha": 0.5, "blocks": {}},
                               "choices": choices}), half)
    rep = validate(tm, {"engine": "my-engine", "activation_recipe": {"smoothing_alpha": 0.8, "blocks": {}},
                        "choices": choices, "kv": "bf16"}, samples=2)
    assert not any("not one this installation knows" in n for n in rep.notes)
    assert any("int8-activation layers ran my-engine's SmoothQuant (strength 0.8)" in n for n in rep.notes)
    # recorded as per token: nothing smoothed even though the catalog's vLLM would
    none = compressed_modules(apply_plan(tm.module, {"engine": "vllm", "activation_recipe": {"smoothing_alpha": None,
                                                                                             "blocks": {}},
                                                     "choices": choices}, arch=tm.arch))
    assert all(m.smooth is None for m in none.values())


@pytest.mark.parametrize("recipe,field", [
    ({"smoothing_alpha": 1.5, "blocks": {}}, "activation_recipe.smoothing_alpha"),
    ({"smoothing_alpha": "strong", "blocks": {}}, "activation_recipe.smoothing_alpha"),
    ({"smoothing_alpha": 0, "blocks": {}}, "activation_recipe.smoothing_alpha"),
    ({"smoothing_alpha": None, "blocks": {"int4-g32": 12}}, "activation_recipe.blocks.int4-g32"),
    ({"smoothing_alpha": None, "blocks": {"int4-g32": 8192}}, "activation_recipe.blocks.int4-g32"),
    ({"smoothing_alpha": None, "blocks": {"q4_0": 32}}, "activation_recipe.blocks"),
    ({"smoothing_alpha": None, "blocks": {None: 32}}, "activation_recipe.blocks"),
    ({"smoothing_alpha": None, "blocks": {"int8": 32}}, None),  # fine: a weight format by its canonical name
    ({"smoothing_alpha": None, "blocks": [32]}, "activation_recipe.blocks"),
    ({"smoothing_alpha": 0.5}, "activation_recipe.blocks"),  # both keys, as written: {} is not "per token"
    ({}, "activation_recipe.smoothing_alpha"),
    ({"alpha": 0.5}, "activation_recipe.alpha"),
    ("0.5", "activation_recipe"),
])
def test_a_bad_recorded_recipe_is_refused_naming_the_field(recipe, field):
    from planner.execution.apply import PlanApplyError, apply_plan
    from planner.plan import PlanError, plan_from_dict, plan_to_dict

    d = plan_to_dict(_w8a8_plan())
    d.pop("checksum")
    d["activation_recipe"] = recipe
    if field is None:
        assert plan_from_dict(d).activation_recipe == ActivationRecipe(blocks=(("int8", 32),))
        return
    with pytest.raises(PlanError) as err:
        plan_from_dict(d)
    assert err.value.field == field and field in str(err.value)
    with pytest.raises(PlanApplyError) as err:
        apply_plan(torch.nn.Sequential(torch.nn.Linear(8, 8)),
                   {"engine": "vllm", "activation_recipe": recipe, "choices": {"0": {"weights": "int8"}}})
    assert err.value.field == field


# ---------------------------------------------------------------------------
# `tierwise sensitivity --activations`: measured scores of int8-activation options, by the engine's recipe
# ---------------------------------------------------------------------------

_QKV, _DOWN = "model.layers.0.self_attn.qkv", "model.layers.0.mlp.down_proj"


@pytest.fixture(scope="module")
def measured(outlier_decoder):
    from planner.execution.sensitivity_data import measure_sensitivity

    return {engine: measure_sensitivity(outlier_decoder, ["int8"], activations=["int8"], engine=engine, samples=4,
                                        groups=[_QKV, _DOWN])
            for engine in (None, "vllm")}


def test_measured_int8_activation_scores_follow_the_engines_recipe(measured):
    plain, vllm = measured[None].scores, measured["vllm"].scores
    for table in (plain, vllm):
        assert set(table[_QKV]) == set(table[_DOWN]) == {"int8", "int8/int8"}
    assert vllm[_QKV]["int8/int8"] < 0.5 * plain[_QKV]["int8/int8"]  # q/k/v read a norm: smoothed
    assert vllm[_DOWN]["int8/int8"] == plain[_DOWN]["int8/int8"]  # down_proj reads none: per token in both
    assert vllm[_QKV]["int8"] == plain[_QKV]["int8"]  # weight-only scores do not depend on the recipe
    assert plain[_QKV]["int8/int8"] > plain[_QKV]["int8"]  # int8 activations cost something on outlier channels


def test_a_measured_score_is_what_apply_plan_and_the_same_metric_give(outlier_decoder, measured):
    """The measurement is the definition: the group's packed layers as apply_plan builds them for a plan of
    that engine (scales calibrated on the next seed's inputs), one forward pass, KL against the original."""
    from planner.execution.apply import apply_plan
    from planner.execution.sensitivity_data import _batches, _run_batches
    from planner.execution.validate import _degradation, _fidelity, _run

    tm = outlier_decoder
    inputs = tm.make_inputs(4, 0)
    batches = _batches(tm, inputs)
    reference = _run_batches(tm, tm.module, batches)
    plan = {"engine": "vllm", "choices": {_QKV: {"weights": "int8", "activations": "int8"}}}
    compressed = apply_plan(tm.module, plan, arch=tm.arch, calibrate=lambda m: _run(tm, m, tm.make_inputs(4, 1)))
    expected = max(0.0, _degradation("kl", _fidelity(tm.kind, reference, _run_batches(tm, compressed, batches), None)))
    assert measured["vllm"].scores[_QKV]["int8/int8"] == pytest.approx(expected, rel=1e-6)


def test_a_measured_file_records_its_recipe_and_a_plan_for_another_engine_says_so(measured, tmp_path):
    from planner.execution.sensitivity_data import write_sensitivity
    from planner.sensitivity import load_sensitivity_file

    path = write_sensitivity(measured["vllm"], tmp_path / "sens.yaml")
    raw = yaml.safe_load(path.read_text())
    assert raw["activation_recipe"] == {"smoothing_alpha": 0.8, "blocks": {}}
    assert "--activations int8 --engine vllm" in raw["source"]
    table = load_sensitivity_file(path)
    assert table.measured_recipe == ActivationRecipe(smoothing=0.8)
    groups = [g for g in _groups("llama-3.2-1b") if g.fqn in (_QKV, _DOWN)]
    opts = [(Option(weights="int8", activations="int8"), Option(weights="int8", activations="bf16"))] * len(groups)
    same = table.with_recipe(ActivationRecipe(smoothing=0.8)).scores(groups, opts)
    assert not any("measured with" in n for n in same.notes)
    other = table.with_recipe(None).scores(groups, opts)  # a TensorRT-LLM plan: per token
    note = [n for n in other.notes if "measured with" in n]
    assert note and "after SmoothQuant (strength 0.8)" in note[0] and "per token" in note[0]
    assert [list(v) for v in other.values] == [list(v) for v in same.values]  # used as measured
    # without --activations the file states no recipe, and a hand-written bad one is refused naming the field
    assert "activation_recipe" not in dataclasses.replace(measured["vllm"], activations=()).to_file_dict()
    raw["activation_recipe"] = {"smoothing_alpha": 2, "blocks": {}}
    path.write_text(yaml.safe_dump(raw))
    from planner.errors import SensitivityError

    with pytest.raises(SensitivityError) as err:
        load_sensitivity_file(path)
    assert err.value.field == "activation_recipe.smoothing_alpha"


@pytest.mark.parametrize("args,field,text", [
    (["--activations", "bf16"], "activations", "reference compute format"),
    (["--activations", "int9"], "activations", "unknown format 'int9'"),
    (["--activations", "int8", "--method", "fisher"], "activations", "--method kl only"),
    (["--engine", "vllm"], "engine", "give --activations too"),
    (["--activations", "int8", "--engine", "nope"], "engine", "unknown engine id 'nope'"),
])
def test_sensitivity_activation_flags_are_checked(cli, tmp_path, args, field, text):
    code, _, err = cli("sensitivity", "--torch-model", "llama-3.2-1b@layers=1,vocab=100", "--formats", "int8",
                       "--out", tmp_path / "s.yaml", *args)
    assert code == 2 and text in err and "Traceback" not in err, err
    assert f"--{field}" in err
    assert not (tmp_path / "s.yaml").exists()


def test_cli_sensitivity_with_activations_feeds_the_planner(cli, tmp_path):
    out = tmp_path / "s.json"
    code, _, err = cli("sensitivity", "--torch-model", "llama-3.2-1b@layers=1,vocab=100", "--formats", "int8",
                       "--activations", "int8", "--engine", "vllm", "--samples", "2", "--out", out)
    assert code == 0, err
    import json

    data = json.loads(out.read_text())
    assert data["activation_recipe"]["smoothing_alpha"] == 0.8
    assert all("int8/int8" in row for g, row in data["groups"].items() if not g.endswith("embed_tokens"))
    code, stdout, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--engine", "trtllm",
                            "--formats", "bf16,int8", "--pin", "model.layers.0.*=int8/int8", "--sensitivity", out)
    assert code == 0, err
    assert "after SmoothQuant (strength 0.8)" in " ".join(stdout.split())


def test_a_recipe_without_an_engine_is_refused():
    from planner.execution.apply import PlanApplyError, apply_plan
    from planner.plan import PlanError, plan_from_dict, plan_to_dict

    d = plan_to_dict(_w8a8_plan())
    d.pop("checksum")
    d.pop("engine")
    d["activation_recipe"] = {"smoothing_alpha": 0.5, "blocks": {}}
    with pytest.raises(PlanError) as err:
        plan_from_dict(d)
    assert err.value.field == "activation_recipe" and "no 'engine'" in err.value.message
    with pytest.raises(PlanApplyError) as err:
        apply_plan(torch.nn.Sequential(torch.nn.Linear(8, 8)),
                   {"activation_recipe": {"smoothing_alpha": 0.5, "blocks": {}}, "choices": {"0": {"weights": "int8"}}})
    assert err.value.field == "activation_recipe"


def test_export_says_when_it_cannot_know_the_engines_recipe(tmp_path):
    """A plan that records no recipe (written before plans did) for an engine this installation lacks: the
    export cannot know its SmoothQuant, writes none, and says so."""
    plan = _w8a8_plan(engine="my-vllm")
    out = export_plan(plan, "compressed-tensors", ctx_for(plan))
    assert "SmoothQuantModifier" not in out.file("recipe.yaml").content
    assert any("'my-vllm' is not one this installation knows" in n and "per token" in n for n in out.notes)
    assert not any("not one this installation knows" in n for n in
                   export_plan(_w8a8_plan(engine="trtllm"), "compressed-tensors", ctx_for(plan)).notes)


def test_the_closed_loop_measures_each_plan_with_its_engines_recipe(cli, tmp_path):
    """`plan --max-degradation --validate-with` measures every round as the plan is written (its engine's
    SmoothQuant), so round 1 is what `tierwise validate` measures on the plan it keeps."""
    import json
    import pathlib

    raw = json.loads(pathlib.Path("profiles/models/llama-3.2-1b.json").read_text())
    raw.update(num_hidden_layers=2, hidden_size=256, intermediate_size=512, num_attention_heads=4,
               num_key_value_heads=2, head_dim=64, vocab_size=1000, _id="tiny-cl")
    cfg = tmp_path / "tiny-cl.json"
    cfg.write_text(json.dumps(raw))
    profile = _engine_copy(tmp_path, "vllm-cl", 0.5)
    plan_file = tmp_path / "cl.json"
    code, out, err = cli("plan", "--model", cfg, "--hardware", "h100-sxm", "--engine", profile, "--formats", "bf16,int8",
                         "--pin", "model.layers.*=int8/int8", "--max-degradation", "0.05", "--validate-with", cfg,
                         "--metric", "kl", "--rounds", "1", "-o", plan_file, "--json")
    assert code == 0, err
    loop = json.loads(out)["closed_loop"]
    code, out, err = cli("validate", plan_file, "--torch-model", cfg, "--metric", "kl", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert any("SmoothQuant (strength 0.5)" in n for n in report["notes"])
    assert loop["rounds"][0]["measured_degradation"] == pytest.approx(report["degradation"], rel=1e-9)


def test_bad_plan_files_are_refused_not_crashed(tmp_path, cli):
    """NaN or non-string keys in a signed file, absurd nesting and huge values: exit 2 naming the problem."""
    import json

    from planner.plan import plan_to_dict

    base = plan_to_dict(_w8a8_plan())
    cases = {}
    nan = dict(base)
    nan["activation_recipe"] = {"smoothing_alpha": float("nan"), "blocks": {}}
    cases["nan.json"] = json.dumps(nan)  # json writes NaN, which save_plan never does
    cases["mixed.yaml"] = yaml.safe_dump(base) + "1: 2\n"  # an int key beside the string ones
    cases["deep.json"] = "[" * 5000 + "]" * 5000
    huge = dict(base)
    huge["objective"] = "x" * 100_000
    cases["huge.json"] = json.dumps(huge)
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        code, _, err = cli("plan", "show", path)
        assert code == 2 and "Traceback" not in err and "internal error" not in err, (name, err)
        assert len(err) < 2000, (name, len(err))


def test_the_file_records_what_the_scores_went_through(tmp_path, cli):
    """Only the part of the engine's recipe that was applied: no SmoothQuant on an encoder none of whose
    groups alone reads a norm, no blocks for weight formats llama.cpp has none for; the command says so."""
    import json

    from planner.execution.sensitivity_data import measure_sensitivity

    bert = measure_sensitivity("all-minilm-l6-v2", ["int8"], activations=["int8"], engine="vllm", samples=2,
                               groups=["bert.encoder.layer.0.attention.self.qkv"])
    assert bert.recipe == ActivationRecipe() and any("measured per token" in n for n in bert.notes)
    out = tmp_path / "l.json"
    code, stdout, err = cli("sensitivity", "--torch-model", "llama-3.2-1b@layers=1,vocab=100", "--formats", "int8,int4-g32",
                            "--activations", "int8", "--engine", "llamacpp", "--samples", "2", "--out", out)
    assert code == 0, err
    assert json.loads(out.read_text())["activation_recipe"] == {"smoothing_alpha": None, "blocks": {"int4-g32": 32}}
    assert "with int8 weights they were measured per token" in " ".join(stdout.split())


def test_the_mismatch_note_counts_only_scores_the_plans_engine_quantizes_otherwise():
    from planner.sensitivity import TableSensitivity

    groups = [g for g in _groups("llama-3.2-1b") if g.fqn in (_QKV, _DOWN)]
    opts = [(Option(weights="int8", activations="int8"),)] * len(groups)
    table = TableSensitivity(entries=(("*", {"int8/int8": 0.01}),), source="file:s.yaml",
                             measured_recipe=ActivationRecipe(smoothing=0.8))
    note = [n for n in table.with_recipe(None).scores(groups, opts).notes if "measured with" in n]
    assert note and note[0].startswith("1 integer-activation scores")  # q/k/v only: down_proj reads no norm
    per_token = TableSensitivity(entries=(("*", {"int8/int8": 0.01}),), source="file:s.yaml",
                                 measured_recipe=ActivationRecipe())
    assert not any("measured with" in n for n in per_token.with_recipe(ActivationRecipe(blocks=(("int4-g32", 32),)))
                   .scores(groups, opts).notes)  # int8 weights: no block in that recipe either


def test_sensitivity_engine_flags_a_user_might_get_wrong(cli, tmp_path):
    import pathlib

    base = ["sensitivity", "--torch-model", "llama-3.2-1b@layers=1,vocab=100", "--formats", "int8", "--activations",
            "int8", "--samples", "2", "--out", tmp_path / "s.yaml"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(pathlib.Path("profiles/engines/vllm.yaml").read_text().replace("alpha: 0.8", "alpha: 1.5"))
    for engine, text in ((str(bad), "activation_smoothing.alpha"), (str(tmp_path / "none.yaml"), "no such engine profile"),
                         ("fsdp", "training engine")):
        code, _, err = cli(*base, "--engine", engine)
        assert code == 2 and "--engine" in err and text in err and "Traceback" not in err, err
    # a profile file: the file's source names it as given, so the command can be run again
    good = _engine_copy(tmp_path, "my-vllm", 0.5)
    code, _, err = cli(*base, "--engine", good)
    assert code == 0, err
    raw = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert f"--engine {good}" in raw["source"] and raw["activation_recipe"]["smoothing_alpha"] == 0.5


def test_measure_sensitivity_api_checks_and_dedupes():
    from planner.execution.sensitivity_data import _activation_options, _options, measure_sensitivity

    with pytest.raises(ValueError, match="--activations too"):
        measure_sensitivity("llama-3.2-1b@layers=1,vocab=100", ["int8"], engine="vllm")
    with pytest.raises(ValueError, match="list of compute formats"):
        _activation_options([("int8", "dense")], "int8")
    assert _options(["int8", "INT8", "int8"], ["dense"]) == [("int8", "dense")]
    assert _activation_options([("int8", "dense")], ["int8", "int8"]) == [("int8", "dense", "int8")]


def test_prior_prices_dynamic_int8_where_the_engine_quantizes_16bit_activations_at_run_time():
    # ExecuTorch's phone target runs int4 / int8 weights beside 16-bit activations as 8da4w / 8da8w: the
    # activations are int8 per token, so the prior scores them as int8 activations, not as fp16.
    groups = _groups("llama-3.2-1b")
    w4a16, w4a8, fp16 = (Option(weights="int4-g32", activations="fp16"), Option(weights="int4-g32", activations="int8"),
                         Option(weights="fp16", activations="fp16"))
    opts = [(w4a16, w4a8, fp16)] * len(groups)
    plain = PriorSensitivity().scores(groups, opts).values
    dyn = PriorSensitivity(recipe=ActivationRecipe(dynamic="int8")).scores(groups, opts).values
    for p, d in zip(plain, dyn):
        assert d[0] == pytest.approx(d[1]) and d[0] > p[0]  # W4A16 now carries int8 activation noise
        assert d[1] == p[1] and d[2] == p[2]  # int8 already, and float weights: unchanged
    # The phone target's runtime says so; the base profile (laptops and CPUs) does not.
    from planner.engines import support
    from planner.serving import RuntimeSettings, engine_settings
    from hwmodels import load_device

    sup = support(load_engine("executorch"), load_device("snapdragon-8-gen-3"))
    assert RuntimeSettings(**engine_settings(sup.runtime)).activation_recipe().dynamic == "int8"
    assert load_engine("executorch").runtime.dynamic_act_quant is None
    # It is not part of the recorded (measurement) recipe's dict form.
    assert ActivationRecipe(dynamic="int8").to_dict() == ActivationRecipe().to_dict()


def test_prior_keeps_float_activations_for_weights_the_exporter_writes_weight_only():
    # export_llama writes int8 weights weight-only: a Llama plan's int8 layers keep their fp16 activations.
    groups = _groups("llama-3.2-1b")
    w8a16 = Option(weights="int8", activations="fp16")
    plain = PriorSensitivity().scores(groups, [(w8a16,)] * len(groups)).values
    llama = PriorSensitivity(recipe=ActivationRecipe(dynamic="int8", weight_only=("int8",))).scores(
        groups, [(w8a16,)] * len(groups)).values
    other = PriorSensitivity(recipe=ActivationRecipe(dynamic="int8")).scores(groups, [(w8a16,)] * len(groups)).values
    for p, l, o in zip(plain, llama, other):
        assert l[0] == p[0] and o[0] > p[0]
