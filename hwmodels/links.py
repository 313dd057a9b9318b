"""Links between devices and between a device and its host."""

from __future__ import annotations

from dataclasses import dataclass

from ._checks import check_name, check_non_negative, check_positive, is_number


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A link as seen by one device: bandwidth per direction (not the vendor's
    bidirectional aggregate) and a per-message latency (the alpha of an
    alpha-beta collective model)."""

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    # Bandwidth between one pair of devices when it is less than the device's whole link (a full
    # mesh or torus: MI300X's xGMI gives each peer one 64 GB/s link of its seven); None: a switched
    # fabric (NVSwitch, InfiniBand) where one peer gets the whole link.
    peer_bandwidth_bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        check_positive(self.bandwidth_bytes_per_s, "bandwidth_bytes_per_s")
        check_non_negative(self.latency_s, "latency_s")
        if self.peer_bandwidth_bytes_per_s is not None:
            check_positive(self.peer_bandwidth_bytes_per_s, "peer_bandwidth_bytes_per_s")
            if self.peer_bandwidth_bytes_per_s > self.bandwidth_bytes_per_s:
                raise ValueError("peer_bandwidth_bytes_per_s must be at most bandwidth_bytes_per_s")

    @property
    def p2p_bandwidth_bytes_per_s(self) -> float:
        """Bandwidth of a point-to-point send to one peer (pipeline stages, KV-cache transfer)."""
        return self.peer_bandwidth_bytes_per_s or self.bandwidth_bytes_per_s

    def p2p_time_s(self, nbytes: float) -> float:
        """Seconds to send ``nbytes`` to one peer: latency + bytes / the peer bandwidth."""
        if not is_number(nbytes) or nbytes < 0:
            raise ValueError(f"nbytes must be a number >= 0; got {nbytes!r}")
        return 0.0 if nbytes == 0 else self.latency_s + nbytes / self.p2p_bandwidth_bytes_per_s

    def transfer_time_s(self, nbytes: float) -> float:
        """Seconds to send ``nbytes`` one way: latency + bytes / bandwidth (0 for 0 bytes)."""
        if not is_number(nbytes) or nbytes < 0:
            raise ValueError(f"nbytes must be a number >= 0; got {nbytes!r}")
        if nbytes == 0:
            return 0.0
        return self.latency_s + nbytes / self.bandwidth_bytes_per_s
