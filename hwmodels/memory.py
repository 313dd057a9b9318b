"""Memory tiers: on-chip SRAM, device memory (HBM/GDDR/LPDDR/DDR), extended device
memory, host memory reached over a link, and storage (flash/SSD)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from ._checks import check_name, check_non_negative, check_positive, is_number
from .errors import SpecError

# Ordered fastest -> slowest; a profile lists its tiers in this role order.
ROLES: tuple[str, ...] = ("on_chip", "device", "device_ext", "host", "storage")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryTier:
    """One level of the memory hierarchy, per device.

    ``bandwidth_bytes_per_s`` is the rated (peak) bandwidth. ``read_curve`` is an
    optional table of (chunk_bytes, bytes_per_s) for storage whose throughput
    depends on the read size (flash: "LLM in a flash", Alizadeh et al. 2023, §2.2).
    """

    name: str
    role: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    latency_s: float
    energy_j_per_byte: float | None = None
    read_curve: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        if self.role not in ROLES:
            raise SpecError("role", "one of " + ", ".join(ROLES), self.role)
        check_positive(self.capacity_bytes, "capacity_bytes")
        check_positive(self.bandwidth_bytes_per_s, "bandwidth_bytes_per_s")
        check_non_negative(self.latency_s, "latency_s")
        if self.energy_j_per_byte is not None:
            check_positive(self.energy_j_per_byte, "energy_j_per_byte")
        curve = tuple((float(c), float(b)) for c, b in self.read_curve)
        object.__setattr__(self, "read_curve", curve)
        previous_chunk, previous_bw = 0.0, 0.0
        for index, (chunk, bw) in enumerate(curve):
            check_positive(chunk, f"read_curve[{index}][0]")
            check_positive(bw, f"read_curve[{index}][1]")
            if chunk <= previous_chunk:
                raise SpecError(f"read_curve[{index}][0]", "larger than the previous chunk size", chunk)
            # Reading a larger chunk can always be done as several smaller reads
            # issued together, so throughput never falls as chunks grow.
            if bw < previous_bw:
                raise SpecError(f"read_curve[{index}][1]", "at least the previous point's bandwidth", bw)
            if bw > self.bandwidth_bytes_per_s * (1 + 1e-9):
                raise SpecError(
                    f"read_curve[{index}][1]",
                    f"at most the rated bandwidth {self.bandwidth_bytes_per_s:g} B/s",
                    bw,
                )
            previous_chunk, previous_bw = chunk, bw

    def read_bandwidth(self, chunk_bytes: float | None = None) -> float:
        """Read throughput in bytes/s for reads of ``chunk_bytes`` each.

        With no curve or no chunk size: the rated bandwidth. Otherwise log-log
        interpolation between curve points (throughput follows a power law in
        chunk size between measured points), clamped to the end points.
        """
        if chunk_bytes is None or not self.read_curve:
            return self.bandwidth_bytes_per_s
        if not is_number(chunk_bytes) or chunk_bytes <= 0:
            raise ValueError(f"chunk_bytes must be a positive number; got {chunk_bytes!r}")
        chunks = [c for c, _ in self.read_curve]
        if chunk_bytes <= chunks[0]:
            return self.read_curve[0][1]
        if chunk_bytes >= chunks[-1]:
            return self.read_curve[-1][1]
        hi = bisect.bisect_right(chunks, chunk_bytes)
        (c0, b0), (c1, b1) = self.read_curve[hi - 1], self.read_curve[hi]
        t = (math.log(chunk_bytes) - math.log(c0)) / (math.log(c1) - math.log(c0))
        return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))

    def read_time_s(self, nbytes: float, chunk_bytes: float | None = None) -> float:
        """Seconds to read ``nbytes`` from this tier.

        * no chunk size: one access latency plus ``nbytes`` at the rated bandwidth;
        * a chunk size and a read curve: the curve's throughput already contains
          the per-read latency at the queue depth it was measured with, so only
          the first read's latency is added (adding it per chunk would count it twice);
        * a chunk size and no curve: reads are issued one after another, each
          paying ``latency_s``: ``nbytes / bandwidth + ceil(nbytes / chunk) * latency``.
        """
        if not is_number(nbytes) or nbytes < 0:
            raise ValueError(f"nbytes must be a number >= 0; got {nbytes!r}")
        if nbytes == 0:
            return 0.0
        if chunk_bytes is None:
            return self.latency_s + nbytes / self.bandwidth_bytes_per_s
        bandwidth = self.read_bandwidth(chunk_bytes)
        if self.read_curve:
            return self.latency_s + nbytes / bandwidth
        return nbytes / bandwidth + math.ceil(nbytes / chunk_bytes) * self.latency_s
