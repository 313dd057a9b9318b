"""Exact element grids: minifloats (E2M1, E2M3, E3M2, E4M3, E5M2) and the NF4 levels.

Codes are the formats' own bit patterns (sign bit on top, then exponent, then
mantissa), so an E4M3 code viewed as ``torch.float8_e4m3fn`` is the same number.
Rounding is to nearest, ties to even (even mantissa code), saturating at the largest
finite magnitude, as the OCP MX v1.0 spec (Sec. 6.3, "conversion ... saturate") asks
for MX element conversion.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "NF4_LEVELS",
    "decode_minifloat",
    "minifloat_magnitudes",
    "minifloat_max",
    "nearest_level",
    "round_to_minifloat",
]

# (exponent_bits, mantissa_bits) → (bias, largest finite magnitude code).
# OCP MX v1.0 Sec. 5.3: FP6 (E2M3, E3M2) and FP4 (E2M1) have no Inf/NaN, every code is finite.
# OCP OFP8 rev 1.0: E4M3 keeps only S.1111.111 for NaN (max 448 = code 0x7E);
# E5M2 reserves exponent 31 for Inf/NaN as IEEE does (max 57344 = code 0x7B).
_ELEMENT_TYPES: dict[tuple[int, int], tuple[int, int]] = {
    (2, 1): (1, 0b0111),
    (2, 3): (1, 0b11111),
    (3, 2): (3, 0b11111),
    (4, 3): (7, 0x7E),
    (5, 2): (15, 0x7B),
}

# NF4 levels: QLoRA (Dettmers et al., NeurIPS 2023), Appendix E, as shipped in bitsandbytes.
NF4_LEVELS: tuple[float, ...] = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)


def _spec(exponent_bits: int, mantissa_bits: int) -> tuple[int, int]:
    try:
        return _ELEMENT_TYPES[(exponent_bits, mantissa_bits)]
    except KeyError:
        known = ", ".join(f"e{e}m{m}" for e, m in _ELEMENT_TYPES)
        raise ValueError(f"no element grid for e{exponent_bits}m{mantissa_bits}; known: {known}") from None


def minifloat_magnitudes(exponent_bits: int, mantissa_bits: int) -> list[float]:
    """Non-negative finite values by magnitude code 0 … max code (increasing)."""
    bias, max_code = _spec(exponent_bits, mantissa_bits)
    values = []
    for code in range(max_code + 1):
        exp, man = code >> mantissa_bits, code & ((1 << mantissa_bits) - 1)
        if exp == 0:  # subnormal: no implicit one
            values.append(math.ldexp(man, 1 - bias - mantissa_bits))
        else:
            values.append(math.ldexp((1 << mantissa_bits) + man, exp - bias - mantissa_bits))
    return values


def minifloat_max(exponent_bits: int, mantissa_bits: int) -> float:
    """Largest finite magnitude: e2m1 6, e2m3 7.5, e3m2 28, e4m3 448, e5m2 57344."""
    return minifloat_magnitudes(exponent_bits, mantissa_bits)[-1]


def round_to_minifloat(x: torch.Tensor, exponent_bits: int, mantissa_bits: int) -> torch.Tensor:
    """Codes (``uint8``, sign-magnitude bit patterns) of ``x`` rounded to the element grid."""
    mags = torch.tensor(minifloat_magnitudes(exponent_bits, mantissa_bits), dtype=torch.float32, device=x.device)
    mids = (mags[1:] + mags[:-1]) / 2  # exact: grids have few mantissa bits
    a = x.abs().to(torch.float32).contiguous()
    code = torch.searchsorted(mids, a)  # first midpoint >= a → nearest, ties go low
    at_mid = code < mids.numel()
    tie = at_mid & (a == mids[code.clamp(max=mids.numel() - 1)]) & (code % 2 == 1)
    code = code + tie.to(code.dtype)  # ties to the even code
    # Negative values that round to zero keep their sign (-0), as IEEE-style casts do.
    sign = (x < 0).to(torch.int64) << (exponent_bits + mantissa_bits)
    return (code | sign).to(torch.uint8)


def decode_minifloat(codes: torch.Tensor, exponent_bits: int, mantissa_bits: int) -> torch.Tensor:
    """Values (float32) of sign-magnitude ``codes``."""
    mags = torch.tensor(minifloat_magnitudes(exponent_bits, mantissa_bits), dtype=torch.float32,
                        device=codes.device)
    shift = exponent_bits + mantissa_bits
    c = codes.to(torch.int64)
    mag = mags[c & ((1 << shift) - 1)]
    return torch.where((c >> shift) & 1 == 1, -mag, mag)


def nearest_level(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index (int64) of the nearest of the increasing ``levels`` for every element of ``x``."""
    mids = (levels[1:] + levels[:-1]) / 2
    return torch.searchsorted(mids, x.to(levels.dtype).contiguous())
