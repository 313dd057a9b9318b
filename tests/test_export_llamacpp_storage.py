"""llama.cpp prices what its export stores: the ggml type planner/export/llamacpp.py writes for each
format, at that type's block size (profiles/engines/llamacpp.yaml ``storage``), not the catalog
format's price. int4-g32-zp is written as q4_1, an fp16 scale and an fp16 min per 32 values (5.0 bits,
where the catalog prices an fp16 scale and a 4-bit zero point: 4.625)."""

from __future__ import annotations

import copy

import pytest
import yaml

from hwmodels import ProfileError, load_device
from planner.arch import load_arch
from planner.costmodel import Choice, Layout, RuntimeSettings, Serving, estimate_inference, memory_report
from planner.engines import list_engines, load_engine, load_engine_from_dict
from planner.export.llamacpp import _GGML_KV, _ggml_type
from planner.formats import get_format
from planner.opcost import kv_bits, stored_bits
from planner.serving import engine_settings
from planner.workload import LINEAR, LM_HEAD, NORM, build_workload

# Values and bytes per block of the ggml types, from the block structs of ggml/src/ggml-common.h
# (github.com/ggml-org/llama.cpp), each size checked there by a static_assert: block_q8_0 = fp16 d +
# 32 int8; block_q4_0 = fp16 d + 16 bytes of nibbles; block_q4_1 = fp16 d + fp16 m + 16; block_q5_0 =
# fp16 d + 4 bytes of high bits + 16; block_iq4_nl = fp16 d + 16; block_mxfp4 = E8M0 e + 16; per
# QK_K = 256 values: block_q2_K = 16 + 64 + 2 fp16, block_q3_K = 32 + 64 + 12 + fp16, block_q4_K =
# 2 fp16 + 12 + 128, block_q5_K = 2 fp16 + 12 + 32 + 128, block_q6_K = 128 + 64 + 16 + fp16.
GGML_BLOCKS = {
    "q8_0": (32, 34), "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "iq4_nl": (32, 18), "mxfp4": (32, 17),
    "q2_k": (256, 84), "q3_k": (256, 110), "q4_k": (256, 144), "q5_k": (256, 176), "q6_k": (256, 210),
    "f16": (1, 2), "bf16": (1, 2), "f32": (1, 4),
}

LLAMACPP = load_engine("llamacpp")
OPTIONS = RuntimeSettings(**engine_settings(LLAMACPP.runtime))
ARCH = load_arch("llama-3.1-8b")  # 4096 hidden, 14336 FFN, 128 head dim: every row a whole number of blocks


def _ggml_bits(t: str) -> float:
    values, nbytes = GGML_BLOCKS[t]
    return 8.0 * nbytes / values


def _profile_formats(role: str) -> list[str]:
    names = []
    for target in LLAMACPP.targets:
        if role == "weights":
            names += [w for s in target.schemes for w in s.weights]
        else:
            names += list(target.kv)
    return list(dict.fromkeys(names))


def _weight_bits(fmt: str, row: int) -> float:
    from planner.opcost import _weight_bits as priced

    return priced(fmt, "dense", 4096, row, stored_bits(OPTIONS, row))


def test_q4_1_model_is_priced_at_20_bytes_per_32_weights():
    """llama-3.1-8b (untied head) in int4-g32-zp under llama.cpp: every matrix at ggml's q4_1 block,
    20 bytes per 32 weights; the norms stay 16-bit."""
    dev = load_device("rtx-4090")
    choice = Choice(weights="int4-g32-zp", activations="bf16", kv="fp16")
    serving = Serving(batch=1, prompt=512, gen=128)
    rep, _ = memory_report(ARCH, dev, Layout(), serving, choice, options=OPTIONS)
    matrices = norms = 0
    for b in build_workload(ARCH).blocks:
        for op in b.ops:
            if op.kind == NORM:
                norms += op.weight_params * b.count
            else:
                matrices += op.weight_params * b.count
    assert matrices > 7.9e9 and matrices % 32 == 0
    assert rep.weights_bytes == pytest.approx(matrices // 32 * 20 + 2 * norms, rel=1e-12)
    # The catalog's price (no engine) is the fp16 scale + 4-bit zero point per 32: 4.625 bits.
    catalog, _ = memory_report(ARCH, dev, Layout(), serving, choice)
    assert catalog.weights_bytes == pytest.approx(matrices * 4.625 / 8 + 2 * norms, rel=1e-12)
    # Decode streams the stored bytes: the matrices a decode step reads grow by the same 5.0 / 4.625.
    est = estimate_inference(ARCH, dev, Layout(), serving, choice, options=OPTIONS)
    base = estimate_inference(ARCH, dev, Layout(), serving, choice, options=RuntimeSettings(**{
        **engine_settings(LLAMACPP.runtime), "stored_formats": ()}))
    read = sum(o.weight_bytes * o.count for o in est.decode.ops if o.kind in (LINEAR, LM_HEAD))
    read_catalog = sum(o.weight_bytes * o.count for o in base.decode.ops if o.kind in (LINEAR, LM_HEAD))
    assert read / read_catalog == pytest.approx(5.0 / 4.625, rel=1e-6)
    assert est.tpot_s > base.tpot_s


@pytest.mark.parametrize("fmt", [f for f in _profile_formats("weights") if get_format(f).kind != "float"])
def test_every_weight_format_is_priced_at_the_block_of_the_type_exported(fmt):
    """The profile's type for each weight format is the exporter's, and its price is that type's
    ggml block: a mapping changed in the exporter without the profile (or the reverse) fails here."""
    notes: list[str] = []
    exported = _ggml_type(fmt, "weights", notes)
    stored = dict(LLAMACPP.runtime.storage)[fmt]
    assert stored[0][0] == exported
    assert stored[0][1:] == GGML_BLOCKS[exported]
    assert _weight_bits(fmt, 4096) == _ggml_bits(exported)


@pytest.mark.parametrize("fmt", _profile_formats("kv"))
def test_every_kv_format_is_priced_at_the_block_of_the_cache_type(fmt):
    """--cache-type-k / --cache-type-v: the same check for the KV cache (rows of one head)."""
    t = _GGML_KV[fmt]
    assert kv_bits(fmt, 128, stored_bits(OPTIONS, 128)) == _ggml_bits(t)
    if get_format(fmt).kind != "float":
        assert dict(LLAMACPP.runtime.storage)[fmt][0][0] == t


def test_float_formats_are_stored_as_they_are():
    for fmt in _profile_formats("weights"):
        if get_format(fmt).kind == "float":
            assert fmt not in dict(LLAMACPP.runtime.storage)
            assert _weight_bits(fmt, 4096) == _ggml_bits(_ggml_type(fmt, "weights", []))


@pytest.mark.parametrize("fmt,row,bits", [
    # Falcon-7B's 4544-wide rows are no whole number of 256-value super-blocks: q4_K falls back to
    # q5_0, q3_K / q2_K to q4_0 (llama-quant.cpp tensor_type_fallback); rows of 4096 keep the K-quant.
    ("int4-g128", 4544, 5.5), ("int3-g128", 4544, 4.5), ("int2-g128", 4544, 4.5),
    ("int4-g128", 4096, 4.5), ("int3-g128", 4096, 3.4375), ("int2-g128", 4096, 2.625),
    # A row that is no multiple of 32 either: f16.
    ("int4-g128", 100, 16.0),
])
def test_k_quants_fall_back_on_rows_that_are_no_whole_number_of_super_blocks(fmt, row, bits):
    assert _weight_bits(fmt, row) == bits


def test_falcon_plan_prices_the_fallback_of_its_hidden_size_rows():
    arch = load_arch("falcon-7b")
    dev = load_device("rtx-4090")
    serving = Serving(batch=1, prompt=128, gen=16)
    rep, _ = memory_report(arch, dev, Layout(), serving, Choice(weights="int4-g128", kv="fp16"), options=OPTIONS)
    expect = 0.0
    for b in build_workload(arch).blocks:
        for op in b.ops:
            row = op.out_features if op.kind == "embedding" else op.in_features
            if op.kind == NORM:
                expect += 2 * op.weight_params * b.count
            else:
                expect += op.weight_params * b.count * (4.5 if row % 256 == 0 else 5.5) / 8
    assert arch.hidden_size % 256 and rep.weights_bytes == pytest.approx(expect, rel=1e-12)


def test_other_engines_keep_the_catalog_price():
    for e in list_engines():
        if e != "llamacpp":
            assert load_engine(e).runtime.storage == ()
            assert engine_settings(load_engine(e).runtime)["stored_formats"] == ()
    dev = load_device("h100-sxm")
    vllm = RuntimeSettings(**engine_settings(load_engine("vllm").support(dev).runtime))
    choice = Choice(weights="int4-g128", kv="bf16")
    rep, _ = memory_report(ARCH, dev, Layout(), Serving(batch=1, prompt=512, gen=128), choice, options=vllm)
    params = sum(op.weight_params * b.count for b in build_workload(ARCH).blocks for op in b.ops if op.kind != NORM)
    norms = sum(op.weight_params * b.count for b in build_workload(ARCH).blocks for op in b.ops if op.kind == NORM)
    assert rep.weights_bytes == pytest.approx(params * 4.125 / 8 + 2 * norms, rel=1e-12)


@pytest.mark.parametrize("path,value,field", [
    (("formats", "int4-g32-zp"), ["q4_2"], "storage.formats.int4-g32-zp"),
    (("formats", "int4"), ["q4_0"], "storage.formats.int4"),
    (("types", "q4_1"), {"values": 32, "bytes": 0}, "storage.types.q4_1.bytes"),
    (("types", "q4_1"), {"values": 32, "bytes": 20, "bits": 5}, "storage.types.q4_1.bits"),
])
def test_bad_storage_facts_name_the_field(path, value, field):
    data = copy.deepcopy(yaml.safe_load(open("profiles/engines/llamacpp.yaml")))
    data["storage"][path[0]][path[1]] = value
    with pytest.raises(ProfileError) as info:
        load_engine_from_dict(data, "llamacpp-custom.yaml")
    assert field in str(info.value), str(info.value)


@pytest.mark.parametrize("engine,noted", [("vllm", True), (None, True), ("llamacpp", False)])
def test_export_of_a_plan_priced_elsewhere_says_what_ggml_stores(engine, noted):
    """A plan made for llama.cpp prices q4_1's bytes; one made for another engine (or none) priced the
    catalog's 4.625 bits, and the export says by how much the GGUF tensors differ."""
    from planner.export.core import PlanView
    from planner.export.llamacpp import _size_notes

    raw = {} if engine is None else {"engine": engine}
    view = PlanView(model="llama-3.1-8b", hardware="rtx-4090", tp=1, pp=1, dp=1, ep=1, batch=1, prompt=512, gen=128,
                    kv="fp16", choices={}, predicted={}, raw=raw)
    notes = _size_notes(view, {"int4-g32-zp": "q4_1", "int4-g32": "q4_0", "bf16": "bf16"})
    if noted:
        assert notes == ["int4-g32-zp: ggml q4_1 stores 5 bits per value, the plan priced 4.625 (+8.1% for those "
                         "tensors); `tierwise plan ... --engine llamacpp` prices what llama.cpp stores"]
    else:
        assert notes == []


def test_estimate_says_which_ggml_type_it_priced():
    import planner

    est = planner.estimate(model="llama-3.1-8b", hardware="rtx-4090", engine="llamacpp", weights="int4-g32-zp",
                           kv="int4-g32-zp", batch=1, prompt=512, gen=128)
    said = [n for n in est.notes if "priced as" in n]
    assert said == [f"{what} int4-g32-zp priced as llamacpp's q4_1, 5 bits per value (the catalog format: 4.625; "
                    "profiles/engines/llamacpp.yaml storage)" for what in ("weights", "KV cache")]
    # q4_0 stores what the catalog's int4-g32 prices (18 bytes per 32): nothing to say.
    est = planner.estimate(model="llama-3.1-8b", hardware="rtx-4090", engine="llamacpp", weights="int4-g32", kv="fp16",
                           batch=1, prompt=512, gen=128)
    assert not [n for n in est.notes if "priced as" in n]


def test_estimate_note_gives_the_share_priced_as_the_fallback_type():
    """Falcon-7B's 4544-wide rows are priced as q5_0, not q4_K (the note said q4_K alone): the note
    says which share of the weights fell back and the average the estimate's bytes hold."""
    import planner

    est = planner.estimate(model="falcon-7b", hardware="rtx-4090", engine="llamacpp", weights="int4-g128",
                           kv="fp16", batch=1, prompt=128, gen=16)
    said = [n for n in est.notes if "priced as" in n]
    assert len(said) == 1 and "62% of them, in rows of 4544 values" in said[0] and "as q5_0, 5.5 bits" in said[0], said
    params = sum(op.weight_params * b.count for b in build_workload(load_arch("falcon-7b")).blocks for op in b.ops
                 if op.kind != NORM)
    norms = est.memory.weights_bytes - sum(
        op.weight_params * b.count * (4.5 if (op.out_features if op.kind == "embedding" else op.in_features) % 256 == 0
                                      else 5.5) / 8
        for b in build_workload(load_arch("falcon-7b")).blocks for op in b.ops if op.kind != NORM)
    avg = (est.memory.weights_bytes - norms) * 8 / params
    assert f"{avg:.3g} bits per weight on average" in said[0], (avg, said)
    # llama-3.1-8b's rows all hold whole super-blocks: no share to name
    est = planner.estimate(model="llama-3.1-8b", hardware="rtx-4090", engine="llamacpp", weights="int4-g128", batch=1)
    assert [n for n in est.notes if "priced as" in n] == [
        "weights int4-g128 priced as llamacpp's q4_k, 4.5 bits per value (the catalog format: 4.125; "
        "profiles/engines/llamacpp.yaml storage)"]


def test_export_of_a_plan_priced_elsewhere_names_the_rows_written_as_a_fallback(tmp_path, cli):
    """A vLLM int4-g128 plan of Falcon-7B exported to llama.cpp: q4_K's +9.1% is not the whole
    story, llama-quantize writes the 4544-wide rows as q5_0 (5.5 bits, +33.3% over the 4.125 priced)."""
    plan = tmp_path / "falcon.json"
    code, _, err = cli("plan", "--model", "falcon-7b", "--hardware", "rtx-4090", "--engine", "vllm", "--formats",
                       "int4-g128", "-o", str(plan))
    assert code == 0, err
    code, out, err = cli("export", str(plan), "--format", "llamacpp", "-o", str(tmp_path / "gguf"))
    text = " ".join((out + err).split())
    assert code == 0, text
    assert ("int4-g128: ggml q4_k stores 4.5 bits per value, the plan priced 4.125 (+9.1% for those tensors), and "
            "llama-quantize writes the model's tensors with rows of 4544 values (no whole number of q4_k's 256-value "
            "blocks) as q5_0, 5.5 bits (+33.3%)") in text, text


def test_avg_bits_of_a_llamacpp_plan_counts_what_it_stores():
    """--avg-bits bounds the bits the plan's bytes hold: for llama.cpp the ggml types (int4-g128 as
    q4_K, 4.5 bits), so a llama-3.1-8b plan under --avg-bits 4 reports and stores ~4 bits per weight,
    not 4.0 by the catalog's 4.125 while its GGUF holds 4.4."""
    import planner

    matrices = sum(op.weight_params * b.count for b in build_workload(ARCH).blocks for op in b.ops if op.kind != NORM)
    norms = sum(op.weight_params * b.count for b in build_workload(ARCH).blocks for op in b.ops if op.kind == NORM)
    plan = planner.plan(model="llama-3.1-8b", hardware="m2-max", engine="llamacpp",
                        formats=["int4-g128", "int2-g128"], avg_bits=4.0, batch=1)
    p = plan.predicted
    assert p.avg_weight_bits <= 4.0 + 1e-9
    assert (p.weights_bytes - 2 * norms) * 8 / matrices == pytest.approx(p.avg_weight_bits, rel=1e-6)


def test_avg_bits_diagnosis_of_a_llamacpp_plan_speaks_in_stored_bits(cli):
    """Asked --avg-bits 4.2 with int4-g128 alone: the fix offered counts q4_K's 4.5 bits, as the
    constraint does (it said 'formats below 4.12 bits', the catalog's price)."""
    code, _, err = cli("plan", "--model", "llama-3.1-8b", "--hardware", "m2-max", "--engine", "llamacpp",
                       "--formats", "int4-g128", "--avg-bits", "4.2")
    text = " ".join(err.split())
    assert code == 3 and "add formats below 4.5 bits" in text and "--avg-bits 4.5" in text, text


def test_a_llamacpp_plan_notes_the_ggml_types_it_priced():
    """A plan made for llama.cpp says, as its estimate does, that its formats were priced as ggml
    types (its bytes are q4_K's and q2_K's, not the catalog's int4-g128 / int2-g128)."""
    import planner

    plan = planner.plan(model="llama-3.1-8b", hardware="m2-max", engine="llamacpp",
                        formats=["int4-g128", "int2-g128"], avg_bits=4.0, batch=1)
    said = [n for n in plan.predicted.notes if "priced as" in n]
    assert said == [f"weights {f} priced as llamacpp's {t}, {b:g} bits per value (the catalog format: {c:g}; "
                    "profiles/engines/llamacpp.yaml storage)"
                    for f, t, b, c in (("int2-g128", "q2_k", 2.625, 2.125), ("int4-g128", "q4_k", 4.5, 4.125))], said
    vllm = planner.plan(model="llama-3.1-8b", hardware="rtx-4090", engine="vllm", formats=["int4-g128"], batch=1)
    assert not [n for n in vllm.predicted.notes if "priced as" in n]
