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
from planner.sensitivity import SMOOTHED_ROLES, PriorSensitivity, TableSensitivity
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


@pytest.mark.parametrize("bad", [1.5, "strong", -0.1, None])
def test_a_bad_strength_in_a_profile_names_the_field(bad):
    import pathlib

    data = yaml.safe_load(pathlib.Path("profiles/engines/vllm.yaml").read_text())
    data["activation_smoothing"]["alpha"] = bad
    with pytest.raises(Exception) as err:
        load_engine_from_dict(data, "vllm-copy.yaml")
    assert "activation_smoothing" in str(err.value) and "alpha" in str(err.value)


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
        if g.role in SMOOTHED_ROLES:
            assert s[0] < p[0] / 4, g.fqn
            seen.add(g.role)
        else:
            assert s[0] == p[0], g.fqn
    assert seen == SMOOTHED_ROLES
    assert activation_noise("int8", 0.8) < activation_noise("int8") / 4


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
    assert all(groups[g].role in SMOOTHED_ROLES for g in w8a8)
    assert vllm.predicted.ttft_s <= 3.0 and trt.predicted.ttft_s <= 3.0
    assert vllm.predicted.sensitivity < trt.predicted.sensitivity / 3
    note = [n for n in vllm.predicted.notes if "SmoothQuant" in n]
    assert note and f"{len(w8a8)} of the {len(w8a8)} groups" in note[0]
    assert not any("SmoothQuant" in n for n in trt.predicted.notes)


def _w8a8_plan(engine_picks="int8"):
    return make_plan("llama-3.2-1b", "a100-80gb-sxm",
                     lambda g: ("bf16", "bf16", "dense") if g.endswith(("embed_tokens", "lm_head"))
                     else ("int8", engine_picks, "dense"))


@pytest.mark.parametrize("engine", ["vllm", "sglang", None])
def test_compressed_tensors_recipe_smooths_before_quantizing(engine):
    plan = _w8a8_plan()
    ctx = dataclasses.replace(ctx_for(plan), engine=engine)
    out = export_plan(plan, "compressed-tensors", ctx)
    mods = yaml.safe_load(out.file("recipe.yaml").content)["quant_stage"]["quant_modifiers"]
    assert list(mods) == ["SmoothQuantModifier", "QuantizationModifier"]  # order matters: smooth, then quantize
    assert mods["SmoothQuantModifier"] == {"smoothing_strength": 0.8}
    assert "num_calibration_samples=512" in out.file("oneshot.py").content  # SmoothQuant calibrates
    assert any("SmoothQuantModifier" in n for n in out.notes)


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
def minilm():
    from planner.execution.models import load_torch_model

    return load_torch_model("all-minilm-l6-v2")


def _w8a8_choices(tm):
    groups = decision_groups(build_workload(tm.arch))
    return {g.fqn: ({"weights": "int8", "activations": "int8"} if g.role not in ("embedding", "lm_head", "head")
                    else {"weights": "fp32"}) for g in groups}


def test_applying_a_smoothing_engines_plan_needs_calibration_data(minilm):
    from planner.execution.apply import PlanApplyError, apply_plan, smoothed_targets

    plan = {"engine": "vllm", "choices": _w8a8_choices(minilm)}
    with pytest.raises(PlanApplyError) as err:
        apply_plan(minilm.module, plan, arch=minilm.arch)
    assert err.value.field == "calibrate" and "SmoothQuant" in err.value.message and "'vllm'" in err.value.message
    with pytest.raises(PlanApplyError, match="never reached") as err:
        apply_plan(minilm.module, plan, arch=minilm.arch, calibrate=lambda m: None)
    assert err.value.field == "calibrate"
    # an engine without the recipe, or no engine, applies as before
    assert smoothed_targets(minilm.module, {"engine": "trtllm", "choices": plan["choices"]}, minilm.arch) == []
    assert smoothed_targets(minilm.module, {"choices": plan["choices"]}, minilm.arch) == []


def test_validate_applies_smoothquant_and_it_halves_the_w8a8_error_of_a_real_model(minilm):
    """all-MiniLM-L6-v2 (pretrained) with every linear in W8A8: under vLLM's recipe the q/k/v and
    intermediate layers are smoothed, the others not, and the measured error is well below the same
    plan under TensorRT-LLM's per-token int8 (here 0.0009 against 0.0021 of cosine distance)."""
    from planner.execution.apply import apply_plan, compressed_modules, smoothed_targets
    from planner.execution.validate import validate

    choices = _w8a8_choices(minilm)
    smoothed = smoothed_targets(minilm.module, {"engine": "vllm", "choices": choices}, minilm.arch)
    assert smoothed and all(s.endswith(("query", "key", "value", "intermediate.dense")) for s in smoothed)
    assert len(smoothed) == 6 * 4  # six layers: query, key, value, intermediate
    vllm = validate(minilm, {"engine": "vllm", "choices": choices}, samples=16)
    trt = validate(minilm, {"engine": "trtllm", "choices": choices}, samples=16)
    assert vllm.degradation < 0.7 * trt.degradation
    assert vllm.output_sqnr_db > trt.output_sqnr_db + 2.0
    assert any("24 int8-activation layers ran vllm's SmoothQuant" in n for n in vllm.notes)
    assert not any("SmoothQuant" in n for n in trt.notes)

    calib = minilm.make_inputs(8, 1)
    packed = compressed_modules(apply_plan(minilm.module, {"engine": "vllm", "choices": choices}, arch=minilm.arch,
                                           calibrate=lambda m: m(*calib)))
    original = dict(minilm.module.named_modules())
    for fqn, mod in packed.items():
        name = fqn if fqn in original else fqn[len("model."):]
        assert (mod.smooth is not None) == (fqn in smoothed), fqn
        if mod.smooth is not None:
            # the effective weight is the original one, to int8 precision of the migrated weight
            w = original[name].weight.detach()
            err = float(((mod.dense_weight() - w) ** 2).sum() / (w ** 2).sum())
            assert err < 0.05, (fqn, err)


# ---------------------------------------------------------------------------
# llama.cpp on CPU cores: int8 activations in the weight type's vec_dot_type blocks
# ---------------------------------------------------------------------------

def test_llamacpp_states_its_cpu_activation_blocks():
    blocks = dict(load_engine("llamacpp").runtime.activation_blocks)
    assert blocks["int4-g32"] == blocks["int8-g32"] == blocks["int4-g32-zp"] == 32  # Q8_0 / Q8_1
    assert blocks["int4-g128"] == blocks["int2-g128"] == 256  # K-quants: Q8_K
    assert blocks["mxfp4"] == blocks["nf4"] == 32


@pytest.mark.parametrize("formats,expect", [({"int4-g33": 32}, "canonical"), ({"int4-g32": 0}, ">= 1"), ({}, "mapping")])
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
