"""Queueing model of one serving replica under continuous batching (pure functions).

A replica (``tp × pp`` devices holding one copy of the model) runs iteration-level
continuous batching as vLLM / TensorRT-LLM do (Yu et al. 2022, Orca; Kwon et al. 2023):
every iteration runs one decode step for all live sequences, and a newly arrived request
is prefilled at the next iteration boundary, ahead of decode. Requests arrive as a
Poisson stream of rate λ (a fleet of ``r`` replicas behind a load balancer splits the
offered QPS evenly: λ = QPS / r).

Service times come from the cost model: ``t_p`` = prefill of one prompt, ``τ(n)`` = one
decode step with ``n`` live sequences (non-decreasing in n).

* **Prefill** is an M/D/1 queue: arrivals λ, deterministic service ``t_p``, utilisation
  ``ρ_p = λ·t_p``. Mean wait by Pollaczek–Khinchine, ``W = ρ_p·t_p / (2(1−ρ_p))``; its tail by
  the usual exponential approximation of M/G/1 waiting times,
  ``P(W > t) ≈ ρ·exp(−ρ·t / W)``, so the p-quantile is ``(W/ρ)·ln(ρ/(1−p))`` (0 when
  ``1−p ≥ ρ``).
* **Decode**: prefills take ``ρ_p`` of the replica's time, so a decode step effectively
  lasts ``τ(n)/(1−ρ_p)``. By Little's law the live sequences are
  ``n = λ·G·τ(n)/(1−ρ_p)`` (G generated tokens per request); the least fixed point is
  found by iteration and must not exceed the batch the memory holds (KV cache).
* **TTFT** = prefill wait + residual of the running decode step (uniform on [0, τ]) +
  ``t_p``. Quantiles of the parts are added, which over-states the quantile of the sum
  (conservative).
* **TPOT** of one request = ``τ(n) + K·t_p/G`` where ``K`` ~ Poisson(λ·G·τ_eff) counts the
  prefills that interrupt its G decode steps; its quantiles come from K's.

Overload (``ρ_p ≥ 1`` or no fixed point within the memory's batch) is reported with the
reason rather than as infinite numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def md1_mean_wait_s(arrival_per_s: float, service_s: float) -> float:
    """Mean queueing delay of an M/D/1 queue (Pollaczek–Khinchine); inf when ρ ≥ 1."""
    rho = arrival_per_s * service_s
    if rho >= 1.0:
        return math.inf
    return rho * service_s / (2.0 * (1.0 - rho))


def wait_quantile_s(mean_wait_s: float, rho: float, p: float) -> float:
    """p-quantile of an M/G/1 wait under the exponential-tail approximation
    ``P(W > t) ≈ ρ·exp(−ρ·t/W̄)``."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile must be in (0, 1); got {p!r}")
    if rho <= 0.0 or mean_wait_s <= 0.0:
        return 0.0
    if rho >= 1.0 or math.isinf(mean_wait_s):
        return math.inf
    if 1.0 - p >= rho:
        return 0.0
    return mean_wait_s / rho * math.log(rho / (1.0 - p))


def poisson_quantile(mean: float, p: float) -> int:
    """Smallest k with P(K ≤ k) ≥ p for K ~ Poisson(mean)."""
    if mean <= 0.0:
        return 0
    if mean > 500.0:
        # normal approximation with continuity correction for large means
        z = _norm_ppf(p)
        return max(0, int(math.ceil(mean + z * math.sqrt(mean) - 0.5)))
    term = math.exp(-mean)
    cdf = term
    k = 0
    while cdf < p and k < 100000:
        k += 1
        term *= mean / k
        cdf += term
    return k


def _norm_ppf(p: float) -> float:
    # Acklam's rational approximation (relative error < 1.2e-9)
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - lo:
        q = math.sqrt(-2 * math.log(1 - p))
        return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def times(x: float) -> str:
    """A load factor as text: 2 decimals, or 3 significant digits beyond a million (1e300 QPS
    gives ``1e+303×``, not 300 digits)."""
    return f"{x:.2f}×" if x < 1e6 else f"{x:.3g}×"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeCurve:
    """Decode step time τ(n) sampled at increasing batch sizes; linear in between."""

    batches: tuple[int, ...]
    step_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.batches or len(self.batches) != len(self.step_s):
            raise ValueError("DecodeCurve needs as many step times as batch sizes, at least one")
        if any(b2 <= b1 for b1, b2 in zip(self.batches, self.batches[1:])):
            raise ValueError(f"DecodeCurve batches must increase; got {self.batches}")
        if any(not (s > 0) for s in self.step_s):
            raise ValueError("DecodeCurve step times must be positive")
        # A larger batch can always be run as the smaller one plus more work: τ never falls.
        mono = []
        best = 0.0
        for s in self.step_s:
            best = max(best, s)
            mono.append(best)
        object.__setattr__(self, "step_s", tuple(mono))

    @property
    def max_batch(self) -> int:
        return self.batches[-1]

    def __call__(self, n: float) -> float:
        bs, ss = self.batches, self.step_s
        if n <= bs[0]:
            return ss[0]
        if n >= bs[-1]:
            return ss[-1]
        for i in range(1, len(bs)):
            if n <= bs[i]:
                f = (n - bs[i - 1]) / (bs[i] - bs[i - 1])
                return ss[i - 1] + f * (ss[i] - ss[i - 1])
        return ss[-1]  # pragma: no cover


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaQueue:
    """Predicted behaviour of one replica at arrival rate ``arrival_per_s``."""

    arrival_per_s: float
    stable: bool
    reason: str
    concurrency: float  # mean live sequences
    prefill_utilization: float
    decode_step_s: float  # τ(n) at the mean concurrency
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_quantile_s: float  # at the requested percentile
    tpot_p50_s: float
    tpot_p95_s: float
    tpot_quantile_s: float
    percentile: float

    def to_dict(self) -> dict:
        return {
            "arrival_per_s": self.arrival_per_s,
            "stable": self.stable,
            "reason": self.reason,
            "concurrency": self.concurrency,
            "prefill_utilization": self.prefill_utilization,
            "decode_step_s": self.decode_step_s,
            "ttft_p50_s": self.ttft_p50_s,
            "ttft_p95_s": self.ttft_p95_s,
            "tpot_p50_s": self.tpot_p50_s,
            "tpot_p95_s": self.tpot_p95_s,
            "percentile": self.percentile,
        }


def _overloaded(lam: float, rho: float, reason: str, p: float) -> ReplicaQueue:
    inf = math.inf
    return ReplicaQueue(
        arrival_per_s=lam,
        stable=False,
        reason=reason,
        concurrency=inf,
        prefill_utilization=rho,
        decode_step_s=inf,
        ttft_p50_s=inf,
        ttft_p95_s=inf,
        ttft_quantile_s=inf,
        tpot_p50_s=inf,
        tpot_p95_s=inf,
        tpot_quantile_s=inf,
        percentile=p,
    )


def continuous_batching(
    arrival_per_s: float,
    prefill_s: float,
    decode: DecodeCurve | Callable[[float], float],
    gen: int,
    max_batch: int,
    percentile: float = 0.95,
) -> ReplicaQueue:
    """Queueing behaviour of one replica (see the module docstring for the model)."""
    lam = float(arrival_per_s)
    if lam < 0 or prefill_s < 0 or gen < 0:
        raise ValueError("arrival rate, prefill time and generated tokens must be ≥ 0")
    if not 0.5 <= percentile < 1.0:
        raise ValueError(f"percentile must be in [0.5, 1); got {percentile!r}")
    rho = lam * prefill_s
    if rho >= 1.0:
        return _overloaded(lam, rho, f"prefill alone needs {times(rho)} the replica's time (λ·t_prefill ≥ 1)", percentile)
    tau = decode
    g = max(gen, 0)
    n = 0.0
    if g > 0 and lam > 0:
        n = lam * g * tau(1.0) / (1.0 - rho)
        for _ in range(200):
            nxt = lam * g * tau(max(n, 1.0)) / (1.0 - rho)
            if nxt > max_batch * 1.000001:
                return _overloaded(
                    lam,
                    rho,
                    f"needs more than {max_batch} live sequences (the batch its memory holds) at this load",
                    percentile,
                )
            if abs(nxt - n) <= 1e-9 * max(1.0, n):
                n = nxt
                break
            n = nxt
    step = tau(max(n, 1.0)) if g > 0 else 0.0
    wait = md1_mean_wait_s(lam, prefill_s)

    def ttft(p: float) -> float:
        return wait_quantile_s(wait, rho, p) + p * step + prefill_s

    def tpot(p: float) -> float:
        if g == 0:
            return 0.0
        tau_eff = step / (1.0 - rho)
        k = poisson_quantile(lam * g * tau_eff, p)
        return step + k * prefill_s / g

    return ReplicaQueue(
        arrival_per_s=lam,
        stable=True,
        reason="",
        concurrency=n,
        prefill_utilization=rho,
        decode_step_s=step,
        ttft_p50_s=ttft(0.5),
        ttft_p95_s=ttft(0.95),
        ttft_quantile_s=ttft(percentile),
        tpot_p50_s=tpot(0.5),
        tpot_p95_s=tpot(0.95),
        tpot_quantile_s=tpot(percentile),
        percentile=percentile,
    )


def split_load(qps: float, replicas: int) -> float:
    """Per-replica arrival rate when a balancer spreads Poisson arrivals evenly."""
    if replicas < 1:
        raise ValueError(f"replicas must be ≥ 1; got {replicas}")
    return qps / replicas


__all__ = [
    "DecodeCurve",
    "ReplicaQueue",
    "continuous_batching",
    "md1_mean_wait_s",
    "poisson_quantile",
    "split_load",
    "wait_quantile_s",
]
