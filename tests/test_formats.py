"""Format registry: prices in bits, names, sparsity and low rank.

Published numbers checked here come from torchao's published checkpoint sizes
(github.com/pytorch/ao, torchao/quantization/README.md), GPTQ/AWQ layouts, the QLoRA paper,
the OCP MX spec and NVIDIA's NVFP4 description.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from planner.formats import (
    DEFAULT_COLS,
    FAMILIES,
    HW_PRECISIONS,
    KINDS,
    Format,
    FormatError,
    LowRank,
    Sparsity,
    SparsityError,
    combined_bits_per_weight,
    format_names,
    get_format,
    list_formats,
    parse_sparsity,
)

ALL = list_formats()
WEIGHTS = list_formats(role="weight")


# -- known values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bits", "why"),
    [
        ("int4-g128", 4.125, "GPTQ/AWQ layout: 4 + 16/128"),
        ("mxfp4", 4.25, "OCP MX v1.0 Table 1: E2M1 + E8M0 per 32 = 4 + 8/32"),
        ("mxfp6", 6.25, "OCP MX v1.0: 6 + 8/32"),
        ("mxfp8", 8.25, "OCP MX v1.0: 8 + 8/32"),
        ("nf4", 4.5, "QLoRA Sec. 3: fp32 absmax per 64 = 32/64 = 0.5 bit overhead"),
        ("int4-g128-zp", 4.15625, "GPTQ qzeros: fp16 scale + 4-bit zero per 128 = 4.156"),
        ("int4-g32", 4.5, "GPTQ/AWQ layout: 4 + 16/32"),
        ("int3-g128", 3.125, "GPTQ/AWQ layout: 3 + 16/128"),
        ("int2-g64", 2.25, "AutoRound W2A16G64 (github.com/intel/auto-round): 2 + 16/64"),
        ("bfp4", 4.5, "MSFP12: 4 + 8/16"),
        ("bfp8", 8.5, "MSFP16: 8 + 8/16"),
        ("bf16", 16.0, "no overhead"),
        ("cb4-g4096", 4.0625, "16 fp16 centroids per 4096 values: 4 + 256/4096"),
    ],
)
def test_known_bits_are_exact(name: str, bits: float, why: str) -> None:
    # Exact (no per-tensor term in these formats), tolerance 0.
    assert get_format(name).bits_per_value() == bits, why


def test_nvfp4_is_4_5_bits_plus_a_per_tensor_fp32_scale() -> None:
    # NVIDIA NVFP4 blog: E2M1 + E4M3 scale per 16 = 4.5 bits; the fp32 tensor scale adds 32/N.
    fmt = get_format("nvfp4")
    assert fmt.bits_per_value() == pytest.approx(4.5, abs=1e-5)
    assert fmt.bits_per_value(256, 1024) == 4.5 + 32 / (256 * 1024)


def test_nf4_double_quantisation_is_4_127_bits() -> None:
    # QLoRA Sec. 3: double quantisation cuts 32/64 = 0.5 to 8/64 + 32/(64·256) = 0.127 bits.
    fmt = get_format("nf4-dq")
    assert fmt.bits_per_value() == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=1e-5)
    assert round(fmt.bits_per_value(), 3) == 4.127


def test_int8_per_channel_overhead_depends_on_row_length() -> None:
    # int8 per-channel ≈ 8.004 bits (16/4096, torchao int8 weight-only); default cols = 4096.
    fmt = get_format("int8")
    assert fmt.bits_per_value() == 8 + 16 / DEFAULT_COLS
    assert round(fmt.bits_per_value(), 3) == 8.004
    assert fmt.bits_per_value(rows=10, cols=1024) == 8 + 16 / 1024
    # KV: one fp16 scale per head per token over head_dim = 128 values.
    assert fmt.bits_per_value(cols=128) == 8.125


def test_fp8_per_tensor_scale_is_negligible() -> None:
    # fp8 e4m3 with one fp32 scale per tensor = 8.00 bits (ModelOpt FP8_DEFAULT_CFG).
    fmt = get_format("fp8")
    assert fmt.name == "fp8-e4m3"
    assert fmt.bits_per_value() == pytest.approx(8.0, abs=1e-5)
    assert fmt.nbytes(1000, rows=10, cols=100) == 1000 + 4


def test_codebook_table_overhead() -> None:
    # Per-tensor LUT: 2^b fp16 centroids over the tensor, b + 2^b·16/N.
    fmt = get_format("cb4")
    assert fmt.bits_per_value(256, 1024) == 4 + 16 * 16 / (256 * 1024)
    # Ragged flattened chunks: 1000 values in chunks of 4096 → one table.
    assert get_format("cb2-g4096").nbytes(1000, 10, 100) == math.ceil((1000 * 2 + 4 * 16) / 8)


def test_torchao_published_checkpoint_sizes() -> None:
    # torchao quantization README (github.com/pytorch/ao, Llama-3.1-8B checkpoints): linears excluding lm_head
    # 6.98e9 params plus 2.10 GB of bf16 embedding + lm_head; published mxfp8 9.32 GB,
    # nvfp4 6.05 GB; tolerance ±1 %.
    linear_params, embed_bytes = 6.98e9, 2.10e9
    for name, published_gb in (("mxfp8", 9.32), ("nvfp4", 6.05)):
        predicted = get_format(name).nbytes(int(linear_params)) + embed_bytes
        assert predicted / 1e9 == pytest.approx(published_gb, rel=0.01), name


def test_nbytes_never_rounds_bits_per_value_to_whole_bytes() -> None:
    # bytes = ceil(n·bits/8), never an integer bytes-per-value.
    assert get_format("int4-g128").nbytes(100) == math.ceil(100 * 4.125 / 8) == 52  # 51.56 bytes
    assert get_format("int3-g128").nbytes(3) == 2  # ceil(3 · 3.125 / 8) = ceil(1.17)
    assert get_format("int4-g128").nbytes(0) == 0


# -- common tests over the registry ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_every_format_is_complete_and_consistent(fmt: Format) -> None:
    assert fmt.kind in KINDS and fmt.hw_precision in HW_PRECISIONS and fmt.family in FAMILIES
    assert fmt.source.strip() and fmt.description.strip()
    assert get_format(fmt.name) is fmt
    assert get_format(fmt.name.upper()) is fmt
    bits = fmt.bits_per_value()
    assert fmt.element_bits <= bits < fmt.element_bits + 1.01
    assert fmt.overhead_bits() == pytest.approx(bits - fmt.element_bits)
    for rows, cols in ((1, 1), (3, 100), (256, 1024), (4096, 4096)):
        assert fmt.bits_per_value(rows, cols) >= fmt.element_bits
        n = rows * cols
        assert fmt.nbytes(n, rows, cols) == math.ceil(n * fmt.bits_fraction(rows, cols) / 8)


@pytest.mark.parametrize("fmt", WEIGHTS, ids=lambda f: f.name)
def test_every_weight_format_is_smaller_than_dense(fmt: Format) -> None:
    n = 256 * 1024
    assert fmt.nbytes(n, 256, 1024) <= get_format("fp32").nbytes(n)
    if fmt.name != "fp32":
        assert fmt.nbytes(n, 256, 1024) <= get_format("bf16").nbytes(n)


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("zp", ["", "-zp"])
def test_bits_are_monotone_in_element_width(group: int, zp: str) -> None:
    bits = [get_format(f"int{b}-g{group}{zp}").bits_per_value() for b in (2, 3, 4)]
    assert bits == sorted(bits) and len(set(bits)) == 3
    assert bits[-1] < get_format("int8").bits_per_value()


@pytest.mark.parametrize("b", [2, 3, 4])
def test_finer_groups_and_zero_points_cost_more_bits(b: int) -> None:
    g32, g64, g128 = (get_format(f"int{b}-g{g}").bits_per_value() for g in (32, 64, 128))
    assert g32 > g64 > g128
    for g in (32, 64, 128):
        assert get_format(f"int{b}-g{g}-zp").bits_per_value() > get_format(f"int{b}-g{g}").bits_per_value()


def test_other_families_are_monotone() -> None:
    def bits(name: str) -> float:
        return get_format(name).bits_per_value()

    assert bits("mxfp4") < bits("mxfp6") < bits("mxfp8")
    assert bits("cb2") < bits("cb3") < bits("cb4") < bits("cb6") < bits("cb8")
    assert bits("cb4") < bits("cb4-g4096")
    assert bits("bfp4") < bits("bfp8")
    assert bits("nf4-dq") < bits("nf4")
    assert bits("fp4-e2m1") < bits("fp6-e3m2") < bits("fp8-e4m3") < bits("bf16") < bits("fp32")


# -- names, aliases, listing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("fp8", "fp8-e4m3"), ("int4", "int4-g128"), ("int3", "int3-g128"), ("int2", "int2-g128"),
     ("int4-zp", "int4-g128-zp"), ("INT4", "int4-g128"), (" nf4 ", "nf4")],
)
def test_aliases(alias: str, canonical: str) -> None:
    assert get_format(alias).name == canonical


def test_unknown_format_error_lists_names_and_suggests() -> None:
    with pytest.raises(FormatError) as info:
        get_format("int5")
    text = str(info.value)
    assert text.startswith("unknown format 'int5'; expected one of: fp32, bf16, fp16,")
    assert text.endswith("(did you mean int4?)")
    assert isinstance(info.value, ValueError)
    with pytest.raises(FormatError, match="did you mean nvfp4"):
        get_format("nvfp5")
    with pytest.raises(FormatError, match="expected one of"):
        get_format(4)  # type: ignore[arg-type]


def test_design_md_names_are_all_registered() -> None:
    # docs/formats.md "Aliases".
    for name in ("fp32", "bf16", "fp16", "fp8-e4m3", "fp8", "fp8-e5m2", "int8", "int4-g32", "int4-g64",
                 "int4-g128", "int4", "int3-g64", "int2-g32", "nf4", "mxfp8", "mxfp6", "mxfp4", "nvfp4",
                 "fp6-e3m2", "fp4-e2m1", "bfp8", "bfp4"):
        get_format(name)


def test_list_formats_by_role_and_kind() -> None:
    acts = {f.name for f in list_formats(role="activation")}
    assert {"bf16", "fp16", "fp8-e4m3", "int8", "int4-g128"} <= acts
    kv = {f.name for f in list_formats(role="kv")}
    assert {"fp16", "bf16", "fp8-e4m3", "int8", "int4-g32", "int4-g64", "int4-g128"} <= kv
    assert "nf4" not in kv and "cb4" not in acts
    assert {f.name for f in list_formats(kind="mx")} == {"mxfp8", "mxfp6", "mxfp6-e2m3", "mxfp4"}
    assert [f.name for f in list_formats()] == list(format_names())
    with pytest.raises(FormatError, match="'role' parameter of list_formats"):
        list_formats(role="gradient")
    with pytest.raises(FormatError, match="'kind' parameter of list_formats"):
        list_formats(kind="posit")


def test_families_group_variants() -> None:
    assert {f.family for f in ALL if f.name.startswith("int4-")} == {"int4"}
    assert {f.family for f in ALL if f.kind == "codebook"} == {"codebook"}
    assert get_format("nvfp4").hw_precision == "fp4" and get_format("mxfp8").hw_precision == "fp8"


# -- invalid parameters raise clearly ----------------------------------------------------------


def _replace(base: str, /, **changes: object) -> Format:
    return dataclasses.replace(get_format(base), **changes)


@pytest.mark.parametrize(
    ("base", "changes", "message"),
    [
        ("int4-g128", {"group_size": 0}, "The 'group_size' parameter of Format 'int4-g128' must be an int in "
                                         r"\[1, inf\) or None. Got 0 instead."),
        ("int4-g128", {"element_bits": 0}, "'element_bits' parameter .* Got 0"),
        ("int4-g128", {"kind": "posit"}, "'kind' parameter .* Got 'posit'"),
        ("int4-g128", {"scale_bits": 0}, "'scale_bits' parameter"),
        ("int4-g128", {"per_channel": True}, "'group_size' parameter .*per_channel"),
        ("int4-g128", {"hw_precision": "int3"}, "'hw_precision' parameter"),
        ("int4-g128", {"family": "int9"}, "'family' parameter"),
        ("int4-g128", {"is_weight": False, "is_activation": False, "is_kv": False}, "needs a role"),
        ("int4-g128", {"source": " "}, "'source' parameter"),
        ("int4-g128", {"name": "Int4"}, "'name' parameter"),
        ("mxfp4", {"mantissa_bits": 2}, "1 \\+ E \\+ M = element_bits"),
        ("mxfp4", {"zero_point_bits": 4}, "'zero_point_bits' parameter"),
        ("cb4", {"lut_entries": 15}, "'lut_entries' parameter .* 16"),
        ("bf16", {"scale_bits": 16}, "'scale_bits' parameter"),
        ("nf4-dq", {"scale_scale_bits": 0}, "'scale_scale_bits' parameter"),
        ("bfp4", {"mantissa_bits": 2}, "'mantissa_bits' parameter"),
    ],
)
def test_invalid_format_parameters_raise(base: str, changes: dict, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        _replace(base, **changes)


@pytest.mark.parametrize(("args", "param"), [((0, 10), "rows"), ((10, -1), "cols"), ((2.5, None), "rows")])
def test_invalid_shapes_raise(args: tuple, param: str) -> None:
    with pytest.raises(FormatError, match=f"'{param}' parameter"):
        get_format("int4").bits_per_value(*args)


def test_invalid_nbytes_count_raises() -> None:
    with pytest.raises(FormatError, match="'n' parameter"):
        get_format("int4").nbytes(-1)


# -- sparsity ----------------------------------------------------------------------------------


def test_sparsity_known_values() -> None:
    # Mishra et al., arXiv:2104.08378: 2:4 on bf16 = 0.5·16 + 1 = 9 bits;
    # bitmap at 70 % on bf16 = 1 + 0.3·16 = 5.8 bits.
    assert parse_sparsity("2:4").bits_per_weight(16) == 9.0
    assert parse_sparsity("2:4").bits_per_weight(8) == 5.0  # int8/fp8 → 62.5 % of dense
    assert parse_sparsity("unstructured:0.7").bits_per_weight(16) == 5.8
    assert parse_sparsity("unstructured:0.7").encoding(16) == "bitmap"
    assert parse_sparsity("dense").bits_per_weight(4.125) == 4.125


def test_unstructured_picks_the_cheapest_encoding() -> None:
    # Bitmap beats dense from s > 1/b (6.25 % for bf16); CSR16 (16 index bits per kept value)
    # beats the bitmap once (1−s)·16 < 1, i.e. s > 93.75 % (CSR16: d·(b + 16) per kept value).
    assert parse_sparsity("unstructured:0.05").encoding(16) == "dense"
    assert parse_sparsity("unstructured:0.05").bits_per_weight(16) == 16.0
    assert parse_sparsity("unstructured:0.5").encoding(16) == "bitmap"
    sp = parse_sparsity("unstructured:0.95")
    assert sp.encoding(16) == "csr16"
    assert sp.bits_per_weight(16, rows=4096, cols=4096) == pytest.approx(0.05 * 32 + 32 * 4097 / 4096**2)
    assert sp.encoding(16, rows=4, cols=70000) == "bitmap"  # 16-bit indices cannot address 70000 columns
    assert parse_sparsity("unstructured:0.999").encoding(16, rows=4, cols=70000) == "csr32"


def test_combined_format_and_sparsity_reproduces_sparse_marlin() -> None:
    # Sparse-Marlin (github.com/IST-DASLab/Sparse-Marlin): int4 + 2:4 + g64 fp16 scales = 2 + 1 + 0.25 = 3.25 bits;
    # × 7.505e9 non-embedding params of Llama-3-8B = torchao's published 3.05 GB.
    bits = combined_bits_per_weight("int4-g64", "2:4")
    assert bits == 3.25
    assert 7.505e9 * bits / 8 / 1e9 == pytest.approx(3.05, rel=0.01)


@pytest.mark.parametrize(
    ("text", "message"),
    [("3:4", "only 2:4"), ("unstructured:1.5", r"\[0, 1\)"), ("unstructured:-0.1", r"\[0, 1\)"),
     ("foo", "unknown sparsity 'foo'"), ("unstructured:abc", "not a number"), ("", "unknown sparsity")],
)
def test_bad_sparsity_raises(text: str, message: str) -> None:
    with pytest.raises(SparsityError, match=message):
        parse_sparsity(text)


def test_sparsity_objects_validate() -> None:
    assert parse_sparsity(" Unstructured:0.70 ").name == "unstructured:0.7"
    assert parse_sparsity("unstructured:0.7").density == pytest.approx(0.3)
    with pytest.raises(SparsityError, match="'density' parameter"):
        Sparsity(name="2:4", density=0.0, structured=True)
    with pytest.raises(SparsityError, match="does not match"):
        Sparsity(name="2:4", density=0.7, structured=True)
    with pytest.raises(SparsityError, match="'b' parameter"):
        parse_sparsity("2:4").bits_per_weight(0)


def test_low_rank_params() -> None:
    assert LowRank(rank=8).params(4096, 4096) == 8 * 8192
    assert LowRank(rank=8).compresses(4096, 4096)
    assert not LowRank(rank=64).compresses(100, 100)
    with pytest.raises(ValueError, match="'rank' parameter of LowRank"):
        LowRank(rank=0)
    with pytest.raises(ValueError, match="'cols' parameter"):
        LowRank(rank=2).params(10, 0)


def test_docs_table_lists_every_format() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
    text = docs.read_text(encoding="utf-8")
    for fmt in ALL:
        assert f"`{fmt.name}`" in text, f"docs/formats.md lacks {fmt.name}"
