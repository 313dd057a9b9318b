"""Compute units (tensor cores, matrix cores, NPUs, CPU vector units...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._checks import check_name, check_positive, is_number
from ._frozen import FrozenDict
from .errors import SpecError
from .precision import FALLBACK, PRECISIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeUnit:
    """One kind of compute engine on a device with its DENSE peaks.

    ``name`` is the profile's ``unit`` key (also readable as ``.unit``).
    ``peak_flops_per_s`` maps precision keys (fp64 fp32 tf32 bf16 fp16 fp8 fp6
    int8 int4 fp4) to FLOP/s (OP/s for integers). ``sparse_2to4_speedup`` is the
    datasheet ratio of 2:4-sparse to dense peak (1.0 without sparse hardware).
    """

    name: str
    peak_flops_per_s: Mapping[str, float] = field(default_factory=FrozenDict)
    sparse_2to4_speedup: float = 1.0

    def __post_init__(self) -> None:
        check_name(self.name, "unit")
        peaks = self.peak_flops_per_s
        if not isinstance(peaks, Mapping) or not peaks:
            raise SpecError("peak_tflops", "a non-empty mapping of precision -> peak", peaks)
        for key, value in peaks.items():
            if key not in FALLBACK:
                raise SpecError(f"peak_tflops.{key}", "a known precision (" + ", ".join(PRECISIONS) + ")", key)
            if not is_number(value) or value <= 0:
                raise SpecError(f"peak_tflops.{key}", "a positive number", value)
        if not isinstance(peaks, FrozenDict):
            object.__setattr__(self, "peak_flops_per_s", FrozenDict(peaks))
        check_positive(self.sparse_2to4_speedup, "sparse_2to4_speedup")
        if self.sparse_2to4_speedup < 1:
            raise SpecError("sparse_2to4_speedup", "a number >= 1", self.sparse_2to4_speedup)

    @property
    def unit(self) -> str:
        """The unit's name, under the profile's key."""
        return self.name

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions with a listed peak, in the canonical order."""
        return tuple(p for p in PRECISIONS if p in self.peak_flops_per_s)

    def resolve(self, precision: str) -> str | None:
        """The precision actually used for ``precision``: itself if listed, else the
        first wider one in the fallback chain (see hwmodels.precision); None if none."""
        if precision in self.peak_flops_per_s:
            return precision
        for wider in FALLBACK[precision]:
            if wider in self.peak_flops_per_s:
                return wider
        return None
