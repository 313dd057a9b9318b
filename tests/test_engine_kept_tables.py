"""What an engine holds in 16 bit whatever the scheme, and the 16-bit copies bitsandbytes makes.

vLLM, SGLang and transformers quantize Linear layers only, so the embedding table and the LM head stay in
16 bit; TensorRT-LLM keeps the embedding table; llama.cpp has a GGUF type for every tensor
(planner.export.rules.ROLE_RULES). An estimate prices what the engine holds — it priced a vLLM int4
Llama-3.1-8B at 4.14 GB of weights, every table at 4 bits, while a plan of the same configuration pinned
them to bf16 — and an estimate and a plan of one configuration agree.

Under transformers, bitsandbytes' 4-bit matmul dequantizes a whole weight into a bf16 copy for an input of
more than one row (MatMul4Bit); one row at batch 1 runs the fused gemv_4bit (profiles/engines/hf-transformers.yaml
H-BNB): the largest copy is a transient beside the activations, and a prompt pays the pass.
"""

from __future__ import annotations

import pytest

import planner
from planner.arch import load_arch
from planner.costmodel import Choice, RuntimeSettings, Serving, estimate_inference
from hwmodels.errors import ProfileError
from planner.engines import load_engine
from planner.request.engine import kept_float_roles
from hwmodels import load_device

GB = 1e9
# Llama-3.1-8B: 128,256 × 4,096 embedding table and an untied LM head of the same shape.
TABLE = 128_256 * 4_096


def _weights(engine: str, weights: str = "int4-g128", **kw) -> float:
    est = planner.estimate("llama-3.1-8b", "h100-sxm", engine=engine, weights=weights, batch=1, prompt=8, gen=8, **kw)
    return est.memory.weights_bytes


def test_each_engine_keeps_the_tables_its_exporter_writes_in_16_bit():
    assert kept_float_roles(load_engine("vllm").support(load_device("h100-sxm"))) == ("embedding", "lm_head")
    assert kept_float_roles(load_engine("trtllm").support(load_device("h100-sxm"))) == ("embedding",)
    assert kept_float_roles(load_engine("llamacpp").support(load_device("h100-sxm"))) == ()
    int4 = 4.125 / 8  # int4-g128: 4 bits + a 16-bit scale per 128
    both = 2 * TABLE * (2.0 - int4)
    assert _weights("vllm") == pytest.approx(_weights("sglang"), rel=1e-12)
    assert _weights("vllm") - _weights("trtllm") == pytest.approx(TABLE * (2.0 - int4), rel=1e-9)
    assert _weights("hf-transformers") == pytest.approx(_weights("vllm"), rel=1e-12)
    # the same model with every table at 4 bits (what was priced) is `both` lighter: 1.57 GB
    assert both / GB == pytest.approx(1.560, abs=1e-3)
    assert _weights("vllm") / GB == pytest.approx(5.70, abs=0.01)  # an AWQ int4 Llama-3.1-8B checkpoint: 5.73 GB


def test_a_16_bit_scheme_is_unchanged_and_a_user_pin_on_the_table_wins():
    assert _weights("vllm", "bf16") == pytest.approx(_weights("llamacpp", "bf16"), rel=1e-12)
    arch, dev = load_arch("llama-3.1-8b"), load_device("h100-sxm")
    opts = RuntimeSettings(float_weight_kinds=("embedding", "lm_head"))
    int4 = Choice(weights="int4-g128", activations="bf16", kv="bf16")
    free = estimate_inference(arch, dev, serving=Serving(batch=1, prompt=8, gen=8), choice=int4)
    kept = estimate_inference(arch, dev, serving=Serving(batch=1, prompt=8, gen=8), choice=int4, options=opts)
    pinned = estimate_inference(arch, dev, serving=Serving(batch=1, prompt=8, gen=8), choice=int4, options=opts,
                                overrides={"model.lm_head": int4, "model.embed_tokens": int4})
    assert kept.memory.weights_bytes > free.memory.weights_bytes
    assert pinned.memory.weights_bytes == pytest.approx(free.memory.weights_bytes, rel=1e-12)
    # the kept LM head is read at 16 bits every decode step
    assert kept.tpot_s > free.tpot_s


@pytest.mark.parametrize("engine, hardware, weights", [
    ("vllm", "h100-sxm", "int4-g128"), ("sglang", "h100-sxm", "fp8-e4m3"), ("trtllm", "h100-sxm", "fp8-e4m3"),
    ("hf-transformers", "a100-80gb-sxm", "int8"),
])
def test_an_estimate_and_a_plan_of_one_configuration_hold_the_same_weights(engine, hardware, weights):
    plan = planner.plan("llama-3.1-8b", hardware, engine=engine, formats=[weights], batch=1, prompt=512, gen=64)
    # the plan pins the kept tables to 16 bit, every other group takes the one format offered
    chosen = plan.overrides()
    assert chosen["model.embed_tokens"].weights == "bf16"
    linear = chosen["model.layers.0.mlp.down_proj"]
    assert linear.weights == weights and {c.weights for c in chosen.values()} <= {weights, "bf16"}
    est = planner.estimate("llama-3.1-8b", hardware, engine=engine, weights=weights,
                           activations=linear.activations, batch=1, prompt=512, gen=64)
    assert est.memory.weights_bytes == pytest.approx(plan.predicted.weights_bytes, rel=1e-9)


def test_bitsandbytes_4_bit_holds_a_16_bit_copy_of_its_largest_weight_beside_a_prompt():
    one_row = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine="hf-transformers", weights="nf4",
                               batch=1, prompt=1, gen=1)
    prompt = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine="hf-transformers", weights="nf4",
                              batch=1, prompt=64, gen=1)
    # Llama-2-7B's largest Linear under transformers' nf4 is an MLP projection (11008 × 4096): the LM head
    # stays bf16 and is no copy
    copy = 11_008 * 4_096 * 2
    grown = prompt.memory.activations_bytes - one_row.memory.activations_bytes
    assert grown >= copy and grown - copy < 0.05 * copy + 64 * 4_096 * 2 * 64
    bf16 = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine="hf-transformers", weights="bf16",
                            batch=1, prompt=64, gen=1)
    bf16_one = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine="hf-transformers", weights="bf16",
                                batch=1, prompt=1, gen=1)
    assert (bf16.memory.activations_bytes - bf16_one.memory.activations_bytes) < copy / 10
    # the prompt pays the dequantizing pass: slower prefill than the same GEMMs without it
    arch, dev = load_arch("llama-2-7b"), load_device("a100-40gb-sxm")
    nf4 = Choice(weights="nf4", activations="bf16", kv="bf16")
    with_copy = estimate_inference(arch, dev, serving=Serving(batch=1, prompt=64, gen=1), choice=nf4,
                                   options=RuntimeSettings(dequant_copy_formats=("nf4",)))
    without = estimate_inference(arch, dev, serving=Serving(batch=1, prompt=64, gen=1), choice=nf4)
    assert with_copy.prefill.time_s > without.prefill.time_s
    # one row per step at batch 1 runs the fused kernel: decode is unchanged
    assert with_copy.decode.time_s == pytest.approx(without.decode.time_s, rel=1e-12)
    batched = estimate_inference(arch, dev, serving=Serving(batch=4, prompt=64, gen=2), choice=nf4,
                                 options=RuntimeSettings(dequant_copy_formats=("nf4",)))
    plain = estimate_inference(arch, dev, serving=Serving(batch=4, prompt=64, gen=2), choice=nf4)
    assert batched.decode.time_s > plain.decode.time_s  # four rows per step dequantize too


def test_a_profile_naming_an_unknown_copy_format_is_refused_naming_the_key(tmp_path):
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "profiles" / "engines" / "hf-transformers.yaml"
    text = src.read_text(encoding="utf-8")
    assert "dequant_copy_formats: [nf4]" in text
    bad = tmp_path / "hf.yaml"
    bad.write_text(text.replace("dequant_copy_formats: [nf4]", "dequant_copy_formats: [nf5]"), encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_engine(str(bad))
    assert "dequant_copy_formats" in str(exc.value) and "nf5" in str(exc.value)


@pytest.mark.parametrize("model, hardware, engine, weights, sparsity", [
    ("llama-3.2-1b", "l4", "trtllm", "int4-g128", None),  # a tied head is its (kept) table: was TPOT 3.66 vs 5.15 ms
    ("llama-3.1-8b", "h100-sxm", "vllm", "bf16", "2:4"),  # a 2:4 16-bit scheme keeps the tables dense, as plans pin
])
def test_an_estimate_and_a_plan_agree_on_time_too(model, hardware, engine, weights, sparsity):
    kw = {"sparsity": [sparsity], "objective": "memory"} if sparsity else {}
    plan = planner.plan(model, hardware, engine=engine, formats=[weights], batch=1, prompt=512, gen=64, **kw)
    layer = next(c for g, c in plan.overrides().items() if ".layers.0." in g)
    assert layer.weights == weights and (sparsity is None or layer.sparsity == sparsity)
    est = planner.estimate(model, hardware, engine=engine, weights=weights, activations=layer.activations,
                           kv=plan.kv, batch=1, prompt=512, gen=64, **({"sparsity": sparsity} if sparsity else {}))
    assert est.memory.weights_bytes == pytest.approx(plan.predicted.weights_bytes, rel=1e-9)
    assert est.tpot_s == pytest.approx(plan.predicted.tpot_s, rel=1e-6)
    assert est.ttft_s == pytest.approx(plan.predicted.ttft_s, rel=1e-6)


def test_the_16_bit_copy_of_an_moe_weight_is_one_experts():
    """Mixtral under transformers' nf4 held 0.98 GB of copies: all 8 experts of a projection at once, while
    bitsandbytes dequantizes one expert's Linear at a time (14336 × 4096 × 2 bytes = 117 MB)."""
    nf4 = planner.estimate("mixtral-8x7b", "h100-sxm", engine="hf-transformers", weights="nf4", batch=1, prompt=64, gen=1)
    int4 = planner.estimate("mixtral-8x7b", "h100-sxm", engine="hf-transformers", weights="int4-g128", batch=1, prompt=64,
                            gen=1)
    copy = nf4.memory.activations_bytes - int4.memory.activations_bytes
    assert copy == pytest.approx(14_336 * 4_096 * 2, rel=0.05)


def test_a_copy_dequantized_to_another_float_type_is_cast_and_both_copies_are_held():
    """bitsandbytes dequantizes to the dtype a weight was quantized from: Lightning Fabric's plugin (LitGPT)
    quantizes from fp16, so a bf16 run makes an fp16 copy and casts it, two whole copies at once. LitGPT's
    resource tables (Llama 2 7B … Falcon 40B in nf4) were 3-7% above an estimate with one copy."""
    arch, dev = load_arch("llama-2-7b"), load_device("a100-40gb-sxm")
    serving = Serving(batch=1, prompt=8, gen=50)
    head = 32_000 * 4_096  # the largest Linear: LitGPT quantizes the LM head too

    def est(activations: str, cast: str | None):
        opts = RuntimeSettings(dequant_copy_formats=("nf4",), dequant_copy_dtype=cast, runtime="eager")
        return estimate_inference(arch, dev, serving=serving, choice=Choice(weights="nf4", activations=activations, kv=activations),
                                  options=opts)

    one, cast = est("bf16", None), est("bf16", "fp16")
    assert cast.memory.activations_bytes - one.memory.activations_bytes == pytest.approx(head * 2, rel=1e-9)
    assert cast.prefill.time_s > one.prefill.time_s  # the cast reads the fp16 copy and writes the bf16 one
    assert cast.decode.time_s == pytest.approx(one.decode.time_s, rel=1e-12)  # one row: gemv_4bit, no copy
    # fp16 activations: the copy is already the compute type
    same = est("fp16", "fp16")
    assert same.memory.activations_bytes == pytest.approx(est("fp16", None).memory.activations_bytes, rel=1e-12)
    from planner.errors import EstimateError

    with pytest.raises(EstimateError) as exc:
        RuntimeSettings(dequant_copy_dtype="int4")
    assert exc.value.field == "dequant_copy_dtype" and "int4" in str(exc.value)


def test_a_profile_names_the_copy_type_and_a_bad_one_is_refused_naming_the_key(tmp_path):
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "profiles" / "engines" / "hf-transformers.yaml"
    text = src.read_text(encoding="utf-8").replace("dequant_copy_formats: [nf4]", "dequant_copy_formats: [nf4]\n  dequant_copy_dtype: TYPE")
    good = tmp_path / "hf.yaml"
    good.write_text(text.replace("TYPE", "fp16"), encoding="utf-8")
    sup = load_engine(str(good)).support(load_device("a100-40gb-sxm"))
    assert sup.runtime.dequant_copy_dtype == "fp16"
    from planner.request.estimate import engine_assumptions

    assert engine_assumptions(sup, load_device("a100-40gb-sxm"))["dequant_copy_dtype"] == "fp16"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("TYPE", "fp8"), encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_engine(str(bad))
    assert "dequant_copy_dtype" in str(exc.value) and "fp8" in str(exc.value)


def test_qlora_holds_both_copies_when_its_weights_were_quantized_from_another_type():
    from planner.errors import EstimateError
    from planner.training import estimate_training
    from planner.training_config import TrainingConfig

    arch, dev = load_arch("llama-2-7b"), load_device("a100-40gb-sxm")

    def peak(activations: str = "bf16", cast: str | None = None) -> float:
        cfg = TrainingConfig(global_batch=1, micro_batch=1, seq=512, finetune="qlora:8", weights="nf4-dq",
                             activations=activations, runtime="eager", dequant_copy_dtype=cast)
        return estimate_training(arch, dev, cfg).memory.per_device_bytes

    head = 32_000 * 4_096
    assert peak(cast="fp16") - peak() == pytest.approx(head * 2, rel=1e-9)
    assert peak(cast="bf16") == pytest.approx(peak(), rel=1e-12)
    assert peak("fp16", "fp16") == pytest.approx(peak("fp16"), rel=1e-12)
    with pytest.raises(EstimateError) as exc:
        TrainingConfig(global_batch=1, finetune="qlora:8", dequant_copy_dtype="int8")
    assert exc.value.field == "dequant_copy_dtype" and "int8" in str(exc.value)


def test_the_copy_note_names_the_compute_type_and_says_when_no_copy_is_made():
    one = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine="hf-transformers", weights="nf4", batch=1, prompt=1, gen=1)
    note = next(n for n in one.notes if "gemv_4bit" in n)
    assert "no dequantized copy is made" in note
    prompt = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine="hf-transformers", weights="nf4", batch=1, prompt=64,
                              gen=1)
    note = next(n for n in prompt.notes if "gemv_4bit" in n)
    assert "into a bf16 copy" in note and "16-bit" not in note
