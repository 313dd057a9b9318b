"""Real quantisation of real tensors, run over every registered weight format.

Each format is checked for: round trip (shape, dtype), values on the format's grid
(grids rebuilt here from the specs, not from the implementation), measured bytes equal
to ``Format.nbytes`` and never above dense, and an SQNR floor on a Gaussian tensor.
"""

from __future__ import annotations

import math

import pytest
import torch

from planner.backends import HANDLERS, QuantizedTensor, dequantize, quantize_tensor, sqnr_db
from planner.backends.grids import NF4_LEVELS, decode_minifloat, minifloat_max, round_to_minifloat
from planner.formats import KINDS, Format, FormatError, get_format, list_formats

ROWS, COLS = 256, 1024
WEIGHTS = list_formats(role="weight")

# SQNR floors (dB) on a 256×1024 standard Gaussian tensor (seed 0). Measured over seeds 0–3
# (spread < 0.4 dB), then floored with ≈ 1 dB margin. Reference points: int4-g128 ≈ 18.6,
# nf4 ≈ 20.7, fp8-e4m3 ≈ 31.5 (3 mantissa bits), bf16 ≈ 55.6 / fp16 ≈ 73.6 (8 / 11
# significant bits), cb2/cb3/cb4 within 0.1 dB of the Lloyd-Max optimum (see below).
# Symmetric int2 is ternary ({-1, 0, 1} × absmax), hence its low floor.
SQNR_FLOOR_DB = {
    "fp32": math.inf, "bf16": 54.5, "fp16": 72.5, "fp8-e4m3": 30.5, "fp8-e5m2": 24.5, "int8": 41.0,
    "int8-g32": 44.5, "int8-g64": 43.5, "int8-g128": 42.5,
    "int4-g32": 19.0, "int4-g32-zp": 20.5, "int4-g64": 18.0, "int4-g64-zp": 19.5,
    "int4-g128": 17.5, "int4-g128-zp": 19.0,
    "int3-g32": 12.0, "int3-g32-zp": 14.0, "int3-g64": 11.0, "int3-g64-zp": 13.0,
    "int3-g128": 10.0, "int3-g128-zp": 12.0,
    "int2-g32": 2.5, "int2-g32-zp": 6.5, "int2-g64": 2.0, "int2-g64-zp": 5.5,
    "int2-g128": 1.5, "int2-g128-zp": 5.0,
    "nf4": 19.5, "nf4-dq": 19.5, "mxfp8": 29.5, "mxfp6": 24.0, "mxfp6-e2m3": 30.0, "mxfp4": 17.5,
    "nvfp4": 19.5, "bfp8": 41.5, "bfp4": 17.5, "fp6-e3m2": 24.5, "fp4-e2m1": 17.5,
    "cb2": 9.0, "cb3": 14.0, "cb4": 19.5, "cb6": 28.5, "cb8": 36.5,
    "cb2-g4096": 9.0, "cb3-g4096": 14.0, "cb4-g4096": 19.5,
}


@pytest.fixture(scope="module")
def weight() -> torch.Tensor:
    return torch.randn(ROWS, COLS, generator=torch.Generator().manual_seed(0))


_CACHE: dict[str, QuantizedTensor] = {}


def quantized(fmt: Format, w: torch.Tensor) -> QuantizedTensor:
    if fmt.name not in _CACHE:
        _CACHE[fmt.name] = quantize_tensor(w, fmt)
    return _CACHE[fmt.name]


# -- independent grids ---------------------------------------------------------------------------


def minifloat_grid(e: int, m: int, finite_codes: int) -> set[float]:
    """All finite values of a sign/E/M minifloat with bias 2^(e-1)−1 (OCP MX v1.0 Sec. 5.3, OFP8)."""
    bias = 2 ** (e - 1) - 1
    out = set()
    for code in range(finite_codes):
        exp, man = divmod(code, 2**m)
        value = (man / 2**m) * 2.0 ** (1 - bias) if exp == 0 else (1 + man / 2**m) * 2.0 ** (exp - bias)
        out |= {value, -value}
    return out


def torch_fp8_grid(dtype: torch.dtype) -> set[float]:
    values = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(dtype).to(torch.float32)
    return {float(v) for v in values if math.isfinite(float(v))}


# OCP MX v1.0 Sec. 5.3.3: FP4 E2M1 magnitudes.
E2M1 = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0}
E2M1 = E2M1 | {-v for v in E2M1}
E3M2 = minifloat_grid(3, 2, 32)
E2M3 = minifloat_grid(2, 3, 32)
E4M3 = torch_fp8_grid(torch.float8_e4m3fn)
E5M2 = torch_fp8_grid(torch.float8_e5m2)
ELEMENT_GRIDS = {(2, 1): E2M1, (3, 2): E3M2, (2, 3): E2M3, (4, 3): E4M3, (5, 2): E5M2}
# QLoRA Appendix E, NF4 levels (4 decimals as printed).
NF4_PAPER = [-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0,
             0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0]


def test_independent_grids_match_the_specs() -> None:
    # OCP MX v1.0 Table: max normal e2m3 7.5, e3m2 28, e2m1 6; OFP8: e4m3 448, e5m2 57344.
    assert (max(E2M3), max(E3M2), max(E2M1), max(E4M3), max(E5M2)) == (7.5, 28.0, 6.0, 448.0, 57344.0)
    # Smallest subnormals: e2m3 0.125, e3m2 0.0625, e4m3 2^-9, e5m2 2^-16.
    assert min(v for v in E2M3 if v > 0) == 0.125 and min(v for v in E3M2 if v > 0) == 0.0625
    assert min(v for v in E4M3 if v > 0) == 2.0**-9 and min(v for v in E5M2 if v > 0) == 2.0**-16
    assert E4M3 == minifloat_grid(4, 3, 127)  # OFP8 E4M3: only S.1111.111 is NaN
    assert len(E2M1) == 15 and len(E3M2) == 63 and len(E2M3) == 63


def on_grid(values: torch.Tensor, grid: set[float]) -> bool:
    allowed = torch.tensor(sorted(grid), dtype=torch.float32)
    return bool(torch.isin(values.reshape(-1), allowed).all())


def constant_per_group(t: torch.Tensor, g: int) -> bool:
    rows, cols = t.shape
    groups = t.reshape(rows, cols // g, g)
    return bool((groups == groups[..., :1]).all())


# -- common tests over every weight format ------------------------------------------------------


def test_every_kind_has_a_handler_and_every_weight_format_a_floor() -> None:
    assert set(HANDLERS) == set(KINDS)
    assert set(SQNR_FLOOR_DB) == {f.name for f in WEIGHTS}


@pytest.mark.parametrize("fmt", WEIGHTS, ids=lambda f: f.name)
def test_round_trip_shape_and_dtype(fmt: Format, weight: torch.Tensor) -> None:
    qt = quantized(fmt, weight)
    assert qt.format == fmt.name and qt.shape == (ROWS, COLS)
    for dtype in (torch.float32, torch.bfloat16):
        out = qt.dequantize(dtype)
        assert out.shape == weight.shape and out.dtype == dtype
    assert torch.equal(dequantize(qt), qt.dequantize())
    elements, scale, offset = qt.decompose()
    assert torch.equal(qt.dequantize(), (elements - offset) * scale)
    # Quantising the dequantised tensor again is (close to) a fixed point for idempotent grids.
    if fmt.kind in ("float", "int", "minifloat", "bfp") and fmt.zero_point_bits == 0:
        again = quantize_tensor(qt.dequantize(), fmt).dequantize()
        assert sqnr_db(qt.dequantize(), again) > 40


@pytest.mark.parametrize("fmt", WEIGHTS, ids=lambda f: f.name)
def test_values_lie_on_the_format_grid(fmt: Format, weight: torch.Tensor) -> None:
    qt = quantized(fmt, weight)
    elements, scale, offset = qt.decompose()
    b = fmt.element_bits
    g = COLS if fmt.per_channel else fmt.group_size
    if fmt.kind in ("int", "minifloat", "mx", "nvfp", "nf", "bfp"):
        assert constant_per_group(scale, g) and constant_per_group(offset, g)
    if fmt.kind == "float":
        if b in (16, 32):
            dtype = {32: torch.float32, 16: torch.bfloat16 if fmt.exponent_bits == 8 else torch.float16}[b]
            assert torch.equal(qt.dequantize(), weight.to(dtype).to(torch.float32))
        else:
            assert on_grid(elements, ELEMENT_GRIDS[(fmt.exponent_bits, fmt.mantissa_bits)])
            # Per-tensor scale maps amax to the largest finite value (448 / 57344).
            assert float(scale[0, 0]) == pytest.approx(float(weight.abs().max()) / max(
                ELEMENT_GRIDS[(fmt.exponent_bits, fmt.mantissa_bits)]), rel=1e-6)
    elif fmt.kind == "int":
        assert torch.equal(elements, elements.round())
        if fmt.zero_point_bits == 0:
            assert int(elements.min()) >= -(2 ** (b - 1)) and int(elements.max()) <= 2 ** (b - 1) - 1
            assert not offset.any()
        else:
            for t in (elements, offset):
                assert int(t.min()) >= 0 and int(t.max()) <= 2**b - 1
            assert torch.equal(offset, offset.round())
        assert torch.equal(scale, scale.half().float())  # fp16 scales
    elif fmt.kind in ("minifloat", "mx", "nvfp"):
        assert on_grid(elements, ELEMENT_GRIDS[(fmt.exponent_bits, fmt.mantissa_bits)])
        if fmt.kind == "minifloat":
            assert torch.equal(scale, scale.half().float())
        if fmt.kind == "mx":
            # OCP MX v1.0 Sec. 6.3: X = 2^(floor(log2 amax) − emax_elem) per block of 32.
            emax = math.floor(math.log2(max(ELEMENT_GRIDS[(fmt.exponent_bits, fmt.mantissa_bits)])))
            amax = weight.reshape(ROWS, COLS // 32, 32).abs().amax(dim=-1).to(torch.float64)
            expected = torch.exp2(torch.floor(torch.log2(amax)) - emax)
            assert torch.equal(scale[:, ::32].to(torch.float64), expected)
        if fmt.kind == "nvfp":
            # NVFP4: fp32 tensor scale = amax/(6·448); block scale = E4M3(amax_block / 6 / tensor scale).
            tensor_scale = float(weight.abs().max()) / (6 * 448)
            assert float(qt.payload["tensor_scale"]) == pytest.approx(tensor_scale, rel=1e-6)
            block = qt.payload["scales"]
            assert block.dtype == torch.float8_e4m3fn
            assert torch.equal(scale[:, ::16], block.to(torch.float32) * qt.payload["tensor_scale"])
            amax = weight.reshape(ROWS, COLS // 16, 16).abs().amax(dim=-1)
            ref = (amax / 6 / qt.payload["tensor_scale"]).to(torch.float8_e4m3fn)
            assert torch.equal(block.view(torch.uint8), ref.view(torch.uint8))
    elif fmt.kind == "nf":
        assert on_grid(elements, set(NF4_LEVELS))
        levels = torch.unique(elements)
        assert len(levels) <= 16
        paper = torch.tensor(NF4_PAPER)
        assert (levels.unsqueeze(1) - paper).abs().min(dim=1).values.max() < 6e-5
        if fmt.scale_group_size is None:
            # QLoRA: absmax per block of 64, stored in fp32.
            amax = weight.reshape(ROWS, COLS // 64, 64).abs().amax(dim=-1)
            assert torch.equal(scale[:, ::64], amax)
        else:
            assert qt.payload["absmax"].dtype == torch.float8_e4m3fn
    elif fmt.kind == "bfp":
        m = fmt.mantissa_bits
        assert torch.equal(elements, elements.round()) and int(elements.abs().max()) <= 2**m - 1
        assert torch.equal(torch.log2(scale), torch.log2(scale).round())  # powers of two
    elif fmt.kind == "codebook":
        chunk = ROWS * COLS if fmt.group_size is None else fmt.group_size
        for part in elements.reshape(-1, chunk):
            assert len(torch.unique(part)) <= 2**b
        assert torch.equal(elements, elements.half().float())  # fp16 centroids
        assert not offset.any() and bool((scale == 1).all())
    else:  # pragma: no cover - a new kind must add its grid check here
        pytest.fail(f"no grid check for kind {fmt.kind!r}")


@pytest.mark.parametrize("fmt", WEIGHTS, ids=lambda f: f.name)
def test_measured_bytes_match_the_format_price(fmt: Format, weight: torch.Tensor) -> None:
    qt = quantized(fmt, weight)
    n = weight.numel()
    measured = qt.nbytes()
    assert measured == sum(t.numel() * t.element_size() for t in qt.payload.values())
    assert measured <= n * 4
    if fmt.name != "fp32":
        assert measured <= n * 2
    # Within 1 % of the price at the default 4096 × 4096 shape, exact at the real shape.
    assert measured == pytest.approx(fmt.nbytes(n), rel=0.01)
    assert measured == fmt.nbytes(n, ROWS, COLS)


@pytest.mark.parametrize("fmt", WEIGHTS, ids=lambda f: f.name)
def test_sqnr_floor_on_gaussian(fmt: Format, weight: torch.Tensor) -> None:
    assert sqnr_db(weight, quantized(fmt, weight).dequantize()) >= SQNR_FLOOR_DB[fmt.name]


@pytest.mark.parametrize("fmt", WEIGHTS, ids=lambda f: f.name)
def test_ragged_and_degenerate_shapes(fmt: Format) -> None:
    gen = torch.Generator().manual_seed(3)
    for shape in ((3, 100), (1, 1), (5, 33)):
        w = torch.randn(*shape, generator=gen)
        qt = quantize_tensor(w, fmt)
        assert qt.dequantize().shape == shape
        # Separately packed codes and zero-points may each round up to a whole byte.
        assert 0 <= qt.nbytes() - fmt.nbytes(w.numel(), *shape) <= 2
    zeros = torch.zeros(4, 64)
    assert torch.equal(quantize_tensor(zeros, fmt).dequantize(), zeros)


@pytest.mark.parametrize("fmt", WEIGHTS, ids=lambda f: f.name)
def test_payloads_use_real_storage_types(fmt: Format, weight: torch.Tensor) -> None:
    qt = quantized(fmt, weight)
    dtypes = {t.dtype for t in qt.payload.values()}
    if fmt.element_bits < 8:
        assert qt.payload["codes"].dtype == torch.uint8 and qt.payload["codes"].dim() == 1
    if fmt.name in ("fp8-e4m3", "mxfp8"):
        assert torch.float8_e4m3fn in dtypes
    if fmt.kind == "mx":
        assert qt.payload["scales"].dtype == torch.float8_e8m0fnu
    if fmt.name == "int8":
        assert qt.payload["codes"].dtype == torch.int8


# -- spec oracles -------------------------------------------------------------------------------


def test_lloyd_max_optimum_is_reached() -> None:
    # Max, "Quantizing for Minimum Distortion", IRE Trans. IT 1960, Table I: optimal MSE of a
    # unit Gaussian with 4 / 8 / 16 levels = 0.1175 / 0.03454 / 0.009497 → 9.30 / 14.62 /
    # 20.22 dB. k-means on 2^18 samples must land within 0.15 dB.
    w = torch.randn(256, 1024, generator=torch.Generator().manual_seed(0))
    for name, mse in (("cb2", 0.1175), ("cb3", 0.03454), ("cb4", 0.009497)):
        optimum_db = -10 * math.log10(mse)
        measured = sqnr_db(w, quantize_tensor(w, name).dequantize())
        assert measured == pytest.approx(optimum_db, abs=0.15), name


@pytest.mark.parametrize(("e", "m", "dtype"), [(4, 3, torch.float8_e4m3fn), (5, 2, torch.float8_e5m2)])
def test_minifloat_rounding_matches_torch_fp8_casts(e: int, m: int, dtype: torch.dtype) -> None:
    # torch's fp8 casts round to nearest even; inside the finite range ours must agree bit for bit.
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(1)) * 50
    x = x.clamp(-minifloat_max(e, m), minifloat_max(e, m))
    ours = round_to_minifloat(x, e, m).view(dtype)
    assert torch.equal(ours.view(torch.uint8), x.to(dtype).view(torch.uint8))


def test_e2m1_ties_to_even_and_saturates() -> None:
    # Midpoints of the E2M1 grid go to the even code; beyond 6 saturates (OCP MX v1.0 Sec. 6.3).
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, -5.0, 1e9])
    got = torch.tensor([0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, -4.0, 6.0])
    assert torch.equal(decode_minifloat(round_to_minifloat(x, 2, 1), 2, 1), got)


def test_int4_codes_and_scale_by_hand() -> None:
    # One group of 128: amax 7 → fp16 scale 1, codes = round(x).
    w = torch.linspace(-7, 7, 128).reshape(1, 128)
    elements, scale, _ = quantize_tensor(w, "int4-g128").decompose()
    assert torch.equal(scale, torch.ones_like(scale))
    assert torch.equal(elements, torch.round(w))


def test_sqnr_db_definition() -> None:
    ref = torch.ones(100)
    assert sqnr_db(ref, 0.9 * ref) == pytest.approx(20.0)  # 10·log10(1 / 0.01)
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(torch.zeros(3), torch.ones(3)) == -math.inf
    with pytest.raises(ValueError, match="one shape"):
        sqnr_db(ref, torch.ones(99))


# -- invalid inputs raise clearly ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "fmt", "error", "message"),
    [
        (torch.randn(16), "int4", ValueError, "2-D"),
        (torch.ones(4, 4, dtype=torch.int32), "int4", TypeError, "floating-point"),
        (torch.tensor([[1.0, float("nan")]]), "int8", ValueError, "NaN/inf"),
        (torch.zeros(0, 4), "int8", ValueError, "non-empty"),
        (torch.randn(2, 8), "int5", FormatError, "did you mean int4"),
        (torch.full((2, 2), 1e6), "fp16", ValueError, "fp16 maximum"),
        (torch.full((2, 128), 1e6), "int4-g128", ValueError, "fp16 maximum"),
        ([[1.0]], "int8", TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_raise(w: object, fmt: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        quantize_tensor(w, fmt)  # type: ignore[arg-type]


def test_bf16_input_and_format_objects_are_accepted(weight: torch.Tensor) -> None:
    w = weight[:8, :128].to(torch.bfloat16)
    a = quantize_tensor(w, get_format("int4-g64")).dequantize()
    b = quantize_tensor(w.float(), "int4-g64").dequantize()
    assert torch.equal(a, b)
