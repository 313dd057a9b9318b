"""Roofline helpers (Williams, Waterman & Patterson, "Roofline", CACM 2009)."""

from __future__ import annotations

from ._checks import is_number
from .device import DeviceSpec
from .memory import MemoryTier


def ridge_point(
    dev: DeviceSpec,
    precision: str,
    *,
    unit: str | None = None,
    sparse_2to4: bool = False,
    tier: MemoryTier | None = None,
) -> float:
    """Critical arithmetic intensity in FLOP/byte: peak FLOP/s over the bandwidth of
    ``tier`` (default: the device tier). Ops below it are memory-bound.

    H100 SXM dense bf16: 989.4e12 / 3.35e12 = 295 FLOP/byte.
    """
    memory = dev.device_tier if tier is None else tier
    return dev.peak_flops_per_s(precision, unit=unit, sparse_2to4=sparse_2to4) / memory.bandwidth_bytes_per_s


def attainable_flops_per_s(
    dev: DeviceSpec,
    intensity_flops_per_byte: float,
    precision: str,
    *,
    unit: str | None = None,
    sparse_2to4: bool = False,
    tier: MemoryTier | None = None,
) -> float:
    """Roofline bound min(peak, intensity * bandwidth) in FLOP/s, from peaks only
    (apply Efficiency separately)."""
    if not is_number(intensity_flops_per_byte) or intensity_flops_per_byte < 0:
        raise ValueError(f"intensity_flops_per_byte must be a number >= 0; got {intensity_flops_per_byte!r}")
    memory = dev.device_tier if tier is None else tier
    peak = dev.peak_flops_per_s(precision, unit=unit, sparse_2to4=sparse_2to4)
    return min(peak, intensity_flops_per_byte * memory.bandwidth_bytes_per_s)
