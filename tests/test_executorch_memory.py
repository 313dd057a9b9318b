"""ExecuTorch's memory facts (profiles/engines/executorch.yaml runtime): a static KV cache and an
upper-bound memory plan at the export's max_seq_length, fp32 tensors between the operators of a
dynamically quantized scheme, and a quantized LM head stored beside the embedding table."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import yaml

from hwmodels import ProfileError, load_device
from planner.arch import load_arch
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, memory_report
from planner.engines import load_engine, load_engine_from_dict
from planner.errors import EstimateError, TierwiseError
from planner.serving import engine_settings

ARCH = load_arch("llama-3.2-1b")
PHONE = load_device("snapdragon-8-gen-3")
INT4 = Choice(weights="int4-g32", activations="int8", kv="fp32")
BF16 = Choice(weights="bf16", activations="bf16", kv="bf16")
# Llama 3.2 1B: 16 layers x (K and V) x 8 KV heads x 64 head dim values per cached token.
KV_VALUES_PER_TOKEN = 16 * 2 * 8 * 64


def _executorch(**extra) -> RuntimeSettings:
    return RuntimeSettings(**{**engine_settings(load_engine("executorch").runtime), **extra})


def _mem(choice: Choice, options: RuntimeSettings, prompt: int = 64, gen: int = 0):
    rep, _ = memory_report(ARCH, PHONE, Layout(), Serving(batch=1, prompt=prompt, gen=gen), choice, options=options)
    return rep


def test_profile_states_the_facts_with_their_sources():
    rt = load_engine("executorch").runtime
    assert rt.static_memory_plan and rt.untie_quantized_head and rt.quantized_act_storage == "fp32"
    raw = yaml.safe_load(open("profiles/engines/executorch.yaml"))
    for key in ("X-KV", "X-PLAN", "X-DQ", "X-FREE", "X-HEAD"):
        assert key in raw["runtime"]["source"] and "github.com/pytorch/executorch" in raw["sources"][key]
    # Engines that do not declare them keep the request-sized memory; vLLM quantizes activations
    # inside each linear and holds 16-bit tensors between operators (its V-DQ source).
    vllm = load_engine("vllm").runtime
    assert not vllm.static_memory_plan and not vllm.untie_quantized_head and vllm.quantized_act_storage == "bf16"
    assert load_engine("llamacpp").runtime.quantized_act_storage is None


def test_static_kv_cache_is_sized_at_the_exports_max_seq_length():
    rep = _mem(INT4, _executorch(static_tokens=2048))
    assert rep.kv_cache_bytes == pytest.approx(KV_VALUES_PER_TOKEN * 2048 * 4)  # fp32: 128 MiB
    assert rep.kv_cache_bytes == pytest.approx(128 * 2**20)


def test_static_capacity_never_shrinks_the_cache_below_the_request():
    small = _mem(INT4, _executorch(static_tokens=16), prompt=100, gen=28)
    assert small.kv_cache_bytes == pytest.approx(KV_VALUES_PER_TOKEN * 128 * 4)
    # No capacity given: the request's prompt + gen, what Tierwise's own export writes.
    assert _mem(INT4, _executorch(), prompt=100, gen=28).kv_cache_bytes == pytest.approx(small.kv_cache_bytes)


def test_engines_without_a_static_plan_ignore_the_capacity():
    plain = RuntimeSettings(static_tokens=2048)
    assert _mem(INT4, plain).kv_cache_bytes == pytest.approx(KV_VALUES_PER_TOKEN * 64 * 4)


def test_activations_are_planned_at_the_upper_bound_of_the_token_dimension():
    at_prompt = _mem(INT4, _executorch()).activations_bytes
    at_bound = _mem(INT4, _executorch(static_tokens=2048)).activations_bytes
    # Residual stream and the largest operator's input and output grow with the tokens (2047 / 64);
    # the single position of logits does not.
    assert 25 < at_bound / at_prompt < 2047 / 64 + 1


def test_dynamically_quantized_activations_are_stored_in_fp32():
    fp32_store = _mem(INT4, _executorch(static_tokens=2048)).activations_bytes
    int8_store = _mem(INT4, _executorch(static_tokens=2048, quantized_act_storage_bits=0.0)).activations_bytes
    logits = 128256 * 4.0  # fp32 logits of the last position, in both
    assert (fp32_store - logits) == pytest.approx(4 * (int8_store - logits), rel=1e-9)
    # Float schemes keep their own activation format.
    bf16 = _mem(BF16, _executorch()).activations_bytes
    bf16_plain = _mem(BF16, _executorch(quantized_act_storage_bits=0.0)).activations_bytes
    assert bf16 == pytest.approx(bf16_plain)


def test_quantized_tied_head_is_a_second_copy_and_a_float_one_is_not():
    head = 128256 * 2048  # vocab x d, one byte each at int8
    eight = {"embed_tokens": Choice(weights="int8", activations="int8", kv="fp32")}
    from planner.workload import EMBEDDING, LM_HEAD, build_workload
    work = build_workload(ARCH)
    overrides = {b.group_fqn(0, op): eight["embed_tokens"] for b in work.blocks if not b.repeated for op in b.ops
                 if op.kind in (EMBEDDING, LM_HEAD)}

    def weights(options):
        rep, _ = memory_report(ARCH, PHONE, Layout(), Serving(batch=1, prompt=64, gen=0), INT4, overrides=overrides,
                               options=options)
        return rep.weights_bytes

    # One byte per weight plus a 16-bit scale per output row (int8 per channel).
    extra = weights(_executorch()) - weights(_executorch(untie_quantized_head=False))
    assert extra == pytest.approx(head + 128256 * 2, rel=1e-9)
    float_untied = memory_report(ARCH, PHONE, Layout(), Serving(batch=1, prompt=64), BF16, options=_executorch())[0]
    float_tied = memory_report(ARCH, PHONE, Layout(), Serving(batch=1, prompt=64), BF16,
                               options=_executorch(untie_quantized_head=False))[0]
    assert float_untied.weights_bytes == pytest.approx(float_tied.weights_bytes)


def test_untied_architectures_are_not_counted_twice():
    arch = load_arch("llama-3.1-8b")  # untied LM head already stored
    a = memory_report(arch, PHONE, Layout(), Serving(batch=1, prompt=64), INT4, options=_executorch())[0]
    b = memory_report(arch, PHONE, Layout(), Serving(batch=1, prompt=64), INT4,
                      options=_executorch(untie_quantized_head=False))[0]
    assert a.weights_bytes == pytest.approx(b.weights_bytes)


def test_encoders_and_cnns_keep_their_request_sized_activations():
    for model in ("bert-base", "resnet-50"):
        arch = load_arch(model)
        ch = Choice(weights="fp16", activations="fp16", kv="fp16")
        a = memory_report(arch, PHONE, Layout(), Serving(batch=1, prompt=128), ch, options=_executorch(static_tokens=2048))[0]
        b = memory_report(arch, PHONE, Layout(), Serving(batch=1, prompt=128), ch, options=RuntimeSettings())[0]
        assert a.activations_bytes == pytest.approx(b.activations_bytes) and a.kv_cache_bytes == b.kv_cache_bytes == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2048"])
def test_bad_static_capacity_names_the_field(bad):
    with pytest.raises(EstimateError) as info:
        RuntimeSettings(static_tokens=bad)
    assert isinstance(info.value, TierwiseError) and info.value.field == "static_tokens"


@pytest.mark.parametrize("key,value", [
    ("quantized_act_storage", "int8"),
    ("quantized_act_storage", 32),
    ("static_memory_plan", "yes"),
    ("untie_quantized_head", 1),
    ("static_memory_plans", True),
])
def test_bad_runtime_facts_name_the_field(key, value):
    data = copy.deepcopy(yaml.safe_load(open("profiles/engines/executorch.yaml")))
    data["runtime"][key] = value
    with pytest.raises(ProfileError) as info:
        load_engine_from_dict(data, "executorch-custom.yaml")
    assert f"runtime.{key}" in str(info.value), str(info.value)


def test_published_rows_read_the_exports_capacity_and_mib():
    import csv
    import sys
    sys.path.insert(0, "benchmarks")
    import published

    rows = {r["id"]: r for r in csv.DictReader(open("benchmarks/data/published.csv"))}
    opts = published.engine_options(rows["M11"], PHONE)
    assert opts.static_memory_plan and opts.static_tokens == 2048
    assert published.engine_options(rows["M10"], PHONE).static_tokens == 128
    assert rows["M11"]["unit"] == "MiB" and published.kv_format(rows["M11"]["kv_dtype"], "int8") == "fp32"
    pred, _ = published.predict_inference(rows["M11"])
    est_bytes = pred * 2**20
    assert 1.2e9 < est_bytes < 1.6e9  # weights ~1.02 GiB + KV 128 MiB + activations + context, in bytes
    # A row naming no export capacity keeps the request-sized cache.
    plain = replace(opts, static_tokens=0)
    assert plain.static_tokens == 0


def test_an_unfused_gated_ffn_holds_three_ffn_wide_tensors():
    # At 2047 planned tokens the product's act(gate), up and output (3 x 8192 wide) outweigh the
    # largest GEMM's input and output (2048 + 8192).
    opts = _executorch(static_tokens=2048)
    unfused = _mem(INT4, opts).activations_bytes
    fused = _mem(INT4, replace(opts, fused_elementwise=True)).activations_bytes
    logits = 128256 * 4.0
    assert (unfused - logits) / 4 == pytest.approx(2047 * (2048 + 3 * 8192))
    assert (fused - logits) / 4 == pytest.approx(2047 * (2048 + 2048 + 8192))
    # Without a static plan an unfused engine keeps the general peak (llama.cpp reuses buffers in place).
    general = _mem(INT4, replace(opts, static_memory_plan=False)).activations_bytes
    assert (general - logits) / 4 == pytest.approx(64 * (2048 + 2048 + 8192))


def test_elementwise_passes_move_the_stored_fp32_activations():
    from planner.costmodel import _elementwise_cost
    from planner.workload import Phase, build_workload

    work = build_workload(ARCH)
    ph = Phase(name="prefill", batch=1, tokens=64, context=0.0)
    fp32 = _elementwise_cost(work, ph, PHONE, Layout(), INT4, _executorch())
    int8 = _elementwise_cost(work, ph, PHONE, Layout(), INT4, _executorch(quantized_act_storage_bits=0.0))
    assert fp32.activation_bytes == pytest.approx(4 * int8.activation_bytes)
