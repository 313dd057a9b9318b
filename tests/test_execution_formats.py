"""Common tests over the whole format registry for apply_plan.

For every registered weight format, dense and sparse: the applied layer stores no more than
the dense fp32 weight, its bytes equal the registry's prediction, its dequantised elements lie
on the format's grid, its state survives a save/load round trip, and its SQNR on a seeded
N(0, 1) weight clears a floor per format.

SQNR floors: an ideal uniform b-bit quantiser gains 6.02 dB per bit (Widrow & Kollár,
"Quantization Noise", 2008, ch. 5); absmax scaling of a Gaussian group costs ~10 dB at 4 bits
and more for larger groups. The floors are about 1 dB below this repository's measurements on
the seed-0 64×128 matrix (e.g. int8 per channel 43.5 dB, int4-g128 18.4 dB, nvfp4 20.4 dB,
fp8-e4m3 31.6 dB), so a regression of more than 1 dB fails.
"""

from __future__ import annotations

import io
import math
import re

import pytest
import torch
from torch import nn

from planner.backends.grids import NF4_LEVELS, decode_minifloat, minifloat_magnitudes
from planner.backends import sqnr_db
from planner.execution.apply import apply_plan, compressed_modules
from planner.formats import Format, list_formats

WEIGHT_FORMATS = [f.name for f in list_formats(role="weight")]
SPARSITIES = ["dense", "2:4", "unstructured:0.5"]

_FLOORS = [
    (r"fp32$", math.inf), (r"bf16$", 50.0), (r"fp16$", 70.0), (r"fp8-e4m3$", 29.0), (r"fp8-e5m2$", 23.0),
    (r"int8", 40.0), (r"int4-", 17.0), (r"int3-", 10.0), (r"int2-g\d+-zp$", 5.0), (r"int2-", 1.5),
    (r"nf4", 19.0), (r"mxfp8$", 29.0), (r"mxfp6$", 23.5), (r"mxfp6-e2m3$", 29.0), (r"mxfp4$", 17.0),
    (r"nvfp4$", 19.0), (r"bfp8$", 40.0), (r"bfp4$", 17.0), (r"fp6-e3m2$", 24.0), (r"fp4-e2m1$", 17.5),
    (r"cb2", 8.0), (r"cb3", 13.0), (r"cb4", 18.5), (r"cb6$", 27.5), (r"cb8$", 32.5),
]


def _floor(name: str) -> float:
    for pattern, floor in _FLOORS:
        if re.match(pattern, name):
            return floor
    raise AssertionError(f"no SQNR floor for format {name!r}: add one to _FLOORS")


def _weight() -> torch.Tensor:
    return torch.randn(64, 128, generator=torch.Generator().manual_seed(0))


def _model() -> nn.Sequential:
    lin = nn.Linear(128, 64)
    with torch.no_grad():
        lin.weight.copy_(_weight())
        lin.bias.zero_()
    return nn.Sequential(lin)


def _on_grid(fmt: Format, elements: torch.Tensor, centroids: torch.Tensor | None) -> bool:
    e = elements.reshape(-1)
    if fmt.kind == "int":
        lo, hi = (-(2 ** (fmt.element_bits - 1)), 2 ** (fmt.element_bits - 1) - 1) if fmt.is_symmetric \
            else (0, 2**fmt.element_bits - 1)
        return bool((e == e.round()).all() and (e >= lo).all() and (e <= hi).all())
    if fmt.kind == "float":
        dtype = {32: torch.float32}.get(fmt.element_bits)
        if dtype is None:
            dtype = {(8, 7): torch.bfloat16, (5, 10): torch.float16, (4, 3): torch.float8_e4m3fn,
                     (5, 2): torch.float8_e5m2}[(fmt.exponent_bits, fmt.mantissa_bits)]
        return bool((e.to(dtype).to(torch.float32) == e).all())
    if fmt.kind in ("minifloat", "mx", "nvfp"):
        grid = torch.tensor(minifloat_magnitudes(fmt.exponent_bits, fmt.mantissa_bits))
        return bool(torch.isin(e.abs(), grid).all())
    if fmt.kind == "nf":
        return bool(torch.isin(e, torch.tensor(NF4_LEVELS)).all())
    if fmt.kind == "bfp":
        m = fmt.mantissa_bits
        return bool((e == e.round()).all() and (e.abs() <= 2**m - 1).all())
    if fmt.kind == "codebook":
        assert centroids is not None
        return bool(torch.isin(e, centroids.reshape(-1).to(torch.float32)).all())
    raise AssertionError(f"unknown kind {fmt.kind}")


def test_every_weight_format_has_a_floor():
    for name in WEIGHT_FORMATS:
        _floor(name)
    assert decode_minifloat(torch.tensor([0b0111]), 2, 1).item() == 6.0  # E2M1 max, OCP MX v1.0 Table 4


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("name", WEIGHT_FORMATS)
def test_format_applies_with_exact_bytes_grid_round_trip_and_sqnr(name, sparsity):
    fmt = next(f for f in list_formats(role="weight") if f.name == name)
    model = _model()
    out = apply_plan(model, {"0": {"weights": name, "sparsity": sparsity, "activations": "fp32"}})
    w = model[0].weight.detach()
    if name == "fp32" and sparsity == "dense":
        # fp32 is the model's own precision: the 'keep' handler leaves the layer as it is.
        assert isinstance(out[0], nn.Linear) and torch.equal(out[0].weight, w)
        return
    layer = compressed_modules(out)["0"]

    measured, predicted = layer.weight_nbytes(), layer.predicted_weight_nbytes()
    assert measured == predicted, f"{name} {sparsity}: measured {measured} B, registry predicts {predicted} B"
    assert measured <= w.numel() * 4

    packed = layer.store.packed()
    q = packed.quantized()
    if packed.encoding == "dense":
        elements, _scale, _offset = q.decompose()
        assert _on_grid(fmt, elements, q.payload.get("centroids"))
        dense = packed.dequantize()
    else:
        mask = packed.mask()
        dense = packed.dequantize()
        assert bool((dense[~mask] == 0).all())
        # kept elements are the format's own quantisation of the pruned weight
        from planner.backends import quantize_tensor

        ref_q = quantize_tensor(w * mask, name)
        elements, _s, _o = ref_q.decompose()
        assert _on_grid(fmt, elements, ref_q.payload.get("centroids"))
        assert torch.equal(dense[mask], ref_q.dequantize()[mask])

    # Round trip: the state dict (packed payloads only) restores an identical layer.
    buf = io.BytesIO()
    torch.save(out.state_dict(), buf)
    buf.seek(0)
    again = apply_plan(_model(), {"0": {"weights": name, "sparsity": sparsity, "activations": "fp32"}})
    again.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(3, 128, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(out(x), again(x))

    s = sqnr_db(w, dense)
    if sparsity == "dense":
        floor = _floor(name)
        assert s == math.inf if floor == math.inf else s >= floor, f"{name}: SQNR {s:.2f} dB < floor {floor} dB"
    else:
        # Removing half of a Gaussian's entries by magnitude leaves a pruning noise of -8.8 dB (2:4) or
        # -11.5 dB (unstructured 50 %) measured here; quantising the kept values adds at most the format's own
        # noise, so SQNR >= -10·log10(10^(-prune/10) + 10^(-floor/10)), with 0.5 dB of margin.
        prune = 8.5 if sparsity == "2:4" else 11.0
        floor = _floor(name)
        quant = 0.0 if floor == math.inf else 10 ** (-floor / 10)
        bound = -10 * math.log10(10 ** (-prune / 10) + quant) - 0.5
        assert s >= bound, f"{name} {sparsity}: SQNR {s:.2f} dB < {bound:.2f} dB"
