"""Prometheus text exposition (format 0.0.4) of request counts, latencies and solve times.

Kept dependency-free: a counter per (method, route, status) and cumulative histograms
with fixed buckets, guarded by one lock. ``GET /metrics`` renders them.
"""

from __future__ import annotations

import threading
from collections import defaultdict

# Latency buckets (seconds): 1 ms … 60 s, as Prometheus' client defaults extended for solves.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SOLVE_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class _Histogram:
    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, cum = [], 0
        sep = "," if labels else ""
        for b, c in zip(self.buckets, self.counts):
            cum += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {cum}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        lab = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{lab} {self.sum:.6f}")
        out.append(f"{name}_count{lab} {self.count}")
        return out


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._solves: dict[str, _Histogram] = {}
        self._jobs: dict[str, int] = defaultdict(int)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            h = self._latency.get((method, route))
            if h is None:
                h = self._latency[(method, route)] = _Histogram(LATENCY_BUCKETS_S)
            h.observe(seconds)

    def observe_solve(self, outcome: str, seconds: float) -> None:
        with self._lock:
            h = self._solves.get(outcome)
            if h is None:
                h = self._solves[outcome] = _Histogram(SOLVE_BUCKETS_S)
            h.observe(seconds)
            self._jobs[outcome] += 1

    def render(self, *, pending_jobs: int | None = None) -> str:
        with self._lock:
            lines = [
                "# HELP tierwise_http_requests_total HTTP requests by method, route template and status.",
                "# TYPE tierwise_http_requests_total counter",
            ]
            for (m, r, s), n in sorted(self._requests.items()):
                lines.append(f'tierwise_http_requests_total{{method="{_esc(m)}",route="{_esc(r)}",status="{s}"}} {n}')
            lines += [
                "# HELP tierwise_http_request_duration_seconds Time from request received to response sent.",
                "# TYPE tierwise_http_request_duration_seconds histogram",
            ]
            for (m, r), h in sorted(self._latency.items()):
                lines += h.lines("tierwise_http_request_duration_seconds", f'method="{_esc(m)}",route="{_esc(r)}"')
            lines += [
                "# HELP tierwise_solve_duration_seconds Plan solve wall time by outcome.",
                "# TYPE tierwise_solve_duration_seconds histogram",
            ]
            for outcome, h in sorted(self._solves.items()):
                lines += h.lines("tierwise_solve_duration_seconds", f'outcome="{_esc(outcome)}"')
            if pending_jobs is not None:
                lines += [
                    "# HELP tierwise_jobs_pending Plan solves queued or running.",
                    "# TYPE tierwise_jobs_pending gauge",
                    f"tierwise_jobs_pending {pending_jobs}",
                ]
        return "\n".join(lines) + "\n"
