"""Achievable fractions of peak compute and bandwidth, kept apart from the peaks.

Small operations reach a smaller fraction of peak than large ones (a small GEMM
cannot fill every SM; a small copy is dominated by ramp-up). The default curve
is a saturating one, ``max * x / (x + half)``: it reaches half of ``max`` at
``x = half`` and tends to ``max`` for large x — the same shape as the
"latency + size / bandwidth" model (effective rate = size / (size/peak + t0)),
with ``half = peak * t0``. Measured tables (from calibration) replace the curve.

A third, optional table is keyed by a GEMM's row count (tokens) rather than its size:
``gemm_rows_points`` gives the fraction of the streaming bandwidth that a GEMM which streams
its weights reaches with that many rows. CPU BLAS libraries read a weight at full speed for a
matrix-vector product (one row) but run GEMMs with a few rows far below both the compute and
the bandwidth roof (the weight is packed into panels first, and a few rows fill few vector
lanes): a 4-row fp32 GEMM on a 4096 × 4096 weight takes twice as long as the 1-row one, while
its FLOPs alone would rate it a well-behaved mid-size GEMM. Without a table the fraction is 1
(GPU GEMM kernels stream weights at full bandwidth for small batches).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace

from ._checks import check_fraction, check_non_negative, check_positive, is_number
from ._frozen import FrozenDict
from .errors import SpecError

# A fraction never drops below this share of its maximum: even a tiny op makes
# some progress, and a zero would make predicted times infinite.
FLOOR_SHARE_OF_MAX = 0.01


def _check_points(points: tuple[tuple[float, float], ...], field: str) -> tuple[tuple[float, float], ...]:
    clean = tuple((float(x), float(f)) for x, f in points)
    previous = 0.0
    for index, (size, fraction) in enumerate(clean):
        check_positive(size, f"{field}[{index}][0]")
        check_fraction(fraction, f"{field}[{index}][1]")
        if size <= previous:
            raise SpecError(f"{field}[{index}][0]", "larger than the previous size", size)
        previous = size
    return clean


def _interpolate_log(points: tuple[tuple[float, float], ...], x: float) -> float:
    """Value at ``x`` from a (x, value) table: linear in log(x), clamped at the ends."""
    xs = [p for p, _ in points]
    if x <= xs[0]:
        return points[0][1]
    if x >= xs[-1]:
        return points[-1][1]
    hi = bisect.bisect_right(xs, x)
    (x0, v0), (x1, v1) = points[hi - 1], points[hi]
    t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return v0 + t * (v1 - v0)


def _interpolate(points: tuple[tuple[float, float], ...], size: float) -> float:
    """Fraction at ``size`` from a measured table: linear in log(size), clamped at
    the ends, and made non-decreasing (a larger op can always be run as several
    smaller ones, so its achievable fraction is at least theirs)."""
    sizes = [s for s, _ in points]
    envelope: list[float] = []
    best = 0.0
    for _, fraction in points:
        best = max(best, fraction)
        envelope.append(best)
    return _interpolate_log(tuple(zip(sizes, envelope)), size)


@dataclass(frozen=True, slots=True, kw_only=True)
class Efficiency:
    """Size-aware achievable fractions of a device's peaks.

    compute_max: fraction of peak FLOP/s a large GEMM reaches.
    compute_half_flops: op size (FLOPs) that reaches half of compute_max.
    bandwidth_max: fraction of rated memory bandwidth a large stream reaches.
    bandwidth_half_bytes: transfer size (bytes) that reaches half of bandwidth_max.
    kernel_overhead_s: fixed launch/synchronisation cost per op.
    compute_points / bandwidth_points: optional measured (size, fraction) tables
    that override the curves.
    gemm_rows_points: optional measured (rows, fraction) table: the fraction of the
    streaming bandwidth a weight-streaming GEMM with that many rows reaches (see
    :meth:`gemm_rows`); empty means 1 for every row count.
    cores: streaming multiprocessors / compute units that GEMM tiles are spread over (a
    datasheet fact); 0 when not declared (no wave quantization, see planner.kernels).
    precision_max: best-shape fraction per compute precision where it differs from
    ``compute_max`` (measured MAMF, e.g. FP8 GEMMs reach a smaller share of their peak than BF16).
    """

    compute_max: float
    compute_half_flops: float
    bandwidth_max: float
    bandwidth_half_bytes: float
    kernel_overhead_s: float
    compute_points: tuple[tuple[float, float], ...] = ()
    bandwidth_points: tuple[tuple[float, float], ...] = ()
    gemm_rows_points: tuple[tuple[float, float], ...] = ()
    cores: int = 0
    precision_max: FrozenDict = FrozenDict()

    def __post_init__(self) -> None:
        check_fraction(self.compute_max, "compute_max")
        check_positive(self.compute_half_flops, "compute_half_flops")
        check_fraction(self.bandwidth_max, "bandwidth_max")
        check_positive(self.bandwidth_half_bytes, "bandwidth_half_bytes")
        check_non_negative(self.kernel_overhead_s, "kernel_overhead_s")
        if isinstance(self.cores, bool) or not isinstance(self.cores, int) or self.cores < 0:
            raise SpecError("cores", "a whole number of cores >= 0", self.cores)
        for key, value in dict(self.precision_max).items():
            check_fraction(value, f"precision_max.{key}")
        object.__setattr__(self, "precision_max", FrozenDict(dict(self.precision_max)))
        object.__setattr__(self, "compute_points", _check_points(self.compute_points, "compute_points"))
        object.__setattr__(self, "bandwidth_points", _check_points(self.bandwidth_points, "bandwidth_points"))
        object.__setattr__(self, "gemm_rows_points", _check_points(self.gemm_rows_points, "gemm_rows_points"))

    def max_for(self, precision: str) -> float:
        """Best-shape fraction of the peak at compute ``precision``."""
        return self.precision_max.get(precision, self.compute_max)

    @staticmethod
    def _curve(size: float, maximum: float, half: float, what: str) -> float:
        # Fast path for the cost model's finite float sizes; anything else is validated.
        if not ((type(size) is float or type(size) is int) and 0 <= size < math.inf) and (not is_number(size) or size < 0):
            raise ValueError(f"{what} must be a number >= 0; got {size!r}")
        return max(maximum * size / (size + half), FLOOR_SHARE_OF_MAX * maximum)

    def compute(self, flops: float) -> float:
        """Achievable fraction of peak FLOP/s for one op of ``flops`` FLOPs, in (0, 1]."""
        if self.compute_points:
            if not is_number(flops) or flops < 0:
                raise ValueError(f"flops must be a number >= 0; got {flops!r}")
            return _interpolate(self.compute_points, max(flops, 1.0))
        return self._curve(flops, self.compute_max, self.compute_half_flops, "flops")

    def bandwidth(self, nbytes: float) -> float:
        """Achievable fraction of rated bandwidth for one transfer of ``nbytes``, in (0, 1]."""
        if self.bandwidth_points:
            if not is_number(nbytes) or nbytes < 0:
                raise ValueError(f"nbytes must be a number >= 0; got {nbytes!r}")
            return _interpolate(self.bandwidth_points, max(nbytes, 1.0))
        return self._curve(nbytes, self.bandwidth_max, self.bandwidth_half_bytes, "nbytes")

    def gemm_rows(self, rows: float) -> float:
        """Fraction of the streaming bandwidth, in (0, 1], that a GEMM streaming its weights
        reaches with ``rows`` rows (tokens). The cost model divides such an op's weight-read
        time by it. From ``gemm_rows_points``: linear in log(rows), clamped at the table's ends
        (not made monotone: BLAS kernels switch code paths at some row counts, and the
        measurement says where); 1.0 without a table.
        """
        if not ((type(rows) is float or type(rows) is int) and 0 <= rows < math.inf) and (not is_number(rows) or rows < 0):
            raise ValueError(f"rows must be a number >= 0; got {rows!r}")
        if not self.gemm_rows_points:
            return 1.0
        return _interpolate_log(self.gemm_rows_points, max(rows, self.gemm_rows_points[0][0]))

    def with_points(
        self,
        *,
        compute_points: tuple[tuple[float, float], ...] | list | None = None,
        bandwidth_points: tuple[tuple[float, float], ...] | list | None = None,
        gemm_rows_points: tuple[tuple[float, float], ...] | list | None = None,
    ) -> "Efficiency":
        """A copy with measured tables; a table left as None keeps the current one."""
        changes = {}
        if compute_points is not None:
            changes["compute_points"] = tuple(tuple(p) for p in compute_points)
        if bandwidth_points is not None:
            changes["bandwidth_points"] = tuple(tuple(p) for p in bandwidth_points)
        if gemm_rows_points is not None:
            changes["gemm_rows_points"] = tuple(tuple(p) for p in gemm_rows_points)
        return replace(self, **changes)
