"""Error bars on every estimate: how far the cost model has been off, out of sample, on
published measurements of the same kind.

``benchmarks/intervals.py`` predicts every row of ``benchmarks/data/published.csv`` with the
fitted constants chosen *without that row's source* (leave-one-source-out, as
``benchmarks/published.py --cv loso``) and turns each residual into a **speed factor**
``f = measured speed / predicted speed`` (for a throughput ``measured / predicted``, for a
time ``predicted / measured``; for memory ``measured / predicted`` bytes). It groups the
factors by kind — *category* (prefill, decode, throughput, training, memory) × *hardware
class* (gpu, tpu, phone, …) × *engine class* — and ships a band ``[f10, f90]`` per bucket as
``planner/data/intervals.json``. ``python benchmarks/intervals.py --write`` regenerates it
after any change to the cost model; ``tests/test_intervals.py`` fails until it is.

**The band** is meant to hold 80% of the measurements of a setup the table has not seen.
Rows of one source share its conditions and its bias, so the spread within a source says
little about a new one: the band is a jackknife+ interval over *sources* (:func:`_scores`):
centre = the bucket's median log factor, half-width = a quantile of each row's distance from
the median of the other sources' rows. The quantile's level is calibrated
(:func:`calibrate_level`): the smallest level at which 80% of the rows fall inside the band
built without their own source.

An estimate's figure ``x`` then gets the interval ``[x·f10, x·f90]`` for a throughput and
``[x/f90, x/f10]`` for a time. It is not centred on the estimate when the model is biased there.

**Back-off.** A bucket is used when it holds at least :data:`MIN_ROWS` rows from at least
:data:`MIN_SOURCES` sources; otherwise the next coarser one: ``category/hardware/engine`` →
``category/hardware`` → ``category`` → every time and throughput row (``*``; memory backs off
to ``memory`` only). The interval names the bucket it came from.

**Validated region.** An estimate is *validated* when at least one row shares its category,
hardware class, engine class and batch regime (:func:`batch_regime`); otherwise a note says
which of the four has no rows (a hardware or engine class without rows also means that the
interval comes from a coarser bucket; batch regimes are not bucket levels). Intervals cover times
and throughputs; memory has none (see :data:`INFERENCE_QUANTITIES`).

Engine class (:func:`engine_class`): the engine profile's ``kind`` (``serving``,
``on-device``, ``training``), or ``eager`` when the runtime is PyTorch eager (host dispatch
per operator). Pure functions; the table is read once.
"""

from __future__ import annotations

import dataclasses

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CATEGORIES",
    "INFERENCE_QUANTITIES",
    "Interval",
    "MIN_ROWS",
    "MIN_SOURCES",
    "QUANTILES",
    "Sample",
    "TABLE_PATH",
    "FRONTIER_POINT_QUANTITIES",
    "SERVE_OPTION_QUANTITIES",
    "TRAINING_QUANTITIES",
    "TRAIN_OPTION_QUANTITIES",
    "Uncertainty",
    "batch_regime",
    "bucket_chain",
    "build_table",
    "engine_class",
    "inference_speedup_caps",
    "inference_uncertainty",
    "load_table",
    "lookup",
    "phase_speedup_cap",
    "training_uncertainty",
    "estimate_uncertainty",
    "uncertainty_for",
    "uncertainty_from_dict",
    "uncertainty_of",
]

TABLE_PATH = Path(__file__).with_name("data") / "intervals.json"
REGENERATE = "python benchmarks/intervals.py --write"
CATEGORIES = ("prefill", "decode", "throughput", "training", "memory")
QUANTILES = (10.0, 90.0)
#: Fewest rows, and sources, a bucket needs before its percentiles are used.
MIN_ROWS = 6
MIN_SOURCES = 3
ALL = "*"
REGIMES = ("1", "2-32", "33+", "training")  # what batch_regime() answers

#: Estimate field → (category, kind): ``time`` (lower is faster) or ``rate`` (higher is
#: faster). Memory gets no interval: its 7 rows (process RSS on a phone, peak allocation under
#: LoRA) come from two unlike sources and none falls inside the out-of-sample band; the table
#: keeps their bucket for the record.
INFERENCE_QUANTITIES: Mapping[str, tuple[str, str]] = {
    "ttft_s": ("prefill", "time"),
    "prefill_tokens_per_s": ("prefill", "rate"),
    "tpot_s": ("decode", "time"),
    "decode_tokens_per_s": ("decode", "rate"),
    "latency_s": ("throughput", "time"),
    "output_tokens_per_s": ("throughput", "rate"),
    "samples_per_s": ("throughput", "rate"),
}
TRAINING_QUANTITIES: Mapping[str, tuple[str, str]] = {
    "step_time_s": ("training", "time"),
    "tokens_per_s": ("training", "rate"),
    "samples_per_s": ("training", "rate"),
    "mfu": ("training", "rate"),
}
#: A capacity row (``planner.capacity.ServeOption``): queueing percentiles scale with the model's times.
SERVE_OPTION_QUANTITIES: Mapping[str, tuple[str, str]] = {
    "prefill_s": ("prefill", "time"),
    "ttft_p50_s": ("prefill", "time"),
    "ttft_p95_s": ("prefill", "time"),
    "ttft_s": ("prefill", "time"),
    "tpot_p50_s": ("decode", "time"),
    "tpot_p95_s": ("decode", "time"),
    "tpot_s": ("decode", "time"),
}
#: A point of the throughput-latency frontier (``planner.frontier.FrontierPoint``): its TPOT holds the
#: decode step and the share of prefills between steps, and is banded as a decode time; both rates are
#: that one step inverted (per user 1/T, per device n/(T·devices)), so they share its band.
FRONTIER_POINT_QUANTITIES: Mapping[str, tuple[str, str]] = {
    "step_s": ("decode", "time"),
    "prefill_s": ("prefill", "time"),
    "tpot_s": ("decode", "time"),
    "tokens_per_s_per_user": ("decode", "rate"),
    "tokens_per_s_per_device": ("decode", "rate"),
}
#: A capacity row (``planner.training_capacity.TrainOption``); ``days`` to train the target tokens.
TRAIN_OPTION_QUANTITIES: Mapping[str, tuple[str, str]] = {
    "step_time_s": ("training", "time"),
    "tokens_per_s": ("training", "rate"),
    "mfu": ("training", "rate"),
    "days": ("training", "time"),
}


def batch_regime(batch: int | None, mode: str = "inference") -> str:
    """``1``, ``2-32`` or ``33+`` sequences per replica (``training`` for a training step,
    whose rows are compared by hardware and engine only)."""
    one, few, many, training = REGIMES
    if mode == "training":
        return training
    if batch is None or batch <= 1:
        return one
    return few if batch <= 32 else many


def engine_classes() -> tuple[str, ...]:
    """Every class :func:`engine_class` answers."""
    from planner.engines import KINDS

    return (*KINDS, "eager", "unknown")


@functools.lru_cache(maxsize=256)
def engine_class(engine: str | None, runtime: str | None = "graph") -> str:
    """The engine's class: ``eager`` under the PyTorch-eager runtime, else its profile's kind
    (``serving``, ``on-device``, ``training``); ``unknown`` for an engine without a catalog profile."""
    if runtime == "eager":
        return "eager"
    if not engine:
        return "unknown"
    from planner.engines import list_engines, load_engine

    if engine not in list_engines():
        return "unknown"
    return load_engine(engine).kind


def bucket_chain(category: str, hardware_class: str, eng_class: str) -> tuple[str, ...]:
    """Bucket keys from the finest to the coarsest (the back-off order)."""
    top = (category,) if category == "memory" else (category, ALL)
    return (f"{category}/{hardware_class}/{eng_class}", f"{category}/{hardware_class}", *top)


# ---------------------------------------------------------------------------
# Building the table (benchmarks/intervals.py gives the samples)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One published row's out-of-sample speed factor and its kind."""

    row_id: str
    source: str
    category: str
    hardware_class: str
    engine_class: str
    regime: str
    factor: float  # measured speed / predicted speed (bytes: measured / predicted)


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _keys(s: Sample) -> tuple[str, ...]:
    return bucket_chain(s.category, s.hardware_class, s.engine_class)


def _scores(samples: Iterable[Sample]) -> dict[str, dict]:
    """Per bucket: rows, sources, ids, the centre (median log factor) and the sorted
    jackknife+ scores — each row's distance from the median of the *other* sources' rows
    (Barber et al. 2021, https://arxiv.org/abs/1905.02928, with sources as the exchangeable
    units: rows of one document share its conditions and its bias). No scores with one source."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        for k in _keys(s):
            groups.setdefault(k, []).append(s)
    out = {}
    for k, ss in sorted(groups.items()):
        sources = sorted({s.source for s in ss})
        logs = [math.log(s.factor) for s in ss]
        b = {"rows": len(ss), "sources": len(sources), "ids": sorted(s.row_id for s in ss),
             "centre": _percentile(logs, 50.0), "scores": None}
        if len(sources) >= 2:
            scores = []
            for src in sources:
                others = _percentile([math.log(s.factor) for s in ss if s.source != src], 50.0)
                scores += [abs(math.log(s.factor) - others) for s in ss if s.source == src]
            b["scores"] = sorted(scores)
        out[k] = b
    return out


def _with_band(b: Mapping[str, Any]) -> bool:
    return b.get("scores") is not None or b.get("p10") is not None


def _pick(buckets: Mapping[str, Any], chain: tuple[str, ...]) -> tuple[str, Mapping[str, Any]] | None:
    """The back-off rule: the finest bucket with a band, ≥ MIN_ROWS rows and ≥ MIN_SOURCES
    sources; else the coarsest one with a band; None when none has one."""
    for key in chain:
        b = buckets.get(key)
        if b is not None and _with_band(b) and b["rows"] >= MIN_ROWS and b["sources"] >= MIN_SOURCES:
            return key, b
    for key in reversed(chain):
        b = buckets.get(key)
        if b is not None and _with_band(b):
            return key, b
    return None


def calibrate_level(samples: list[Sample], target: float = QUANTILES[1] - QUANTILES[0]) -> float:
    """The score quantile (%) that makes the band contain ``target``% of the time and
    throughput rows when each is checked against the buckets built *without its source*
    (the smallest such level on a 0.5% grid from 50 to 100). Chosen on ``samples`` only."""
    misses: list[tuple[float, list[float]]] = []  # (row's distance from the centre, the bucket's scores)
    for src in sorted({s.source for s in samples}):
        scored = _scores(s for s in samples if s.source != src)
        for s in samples:
            if s.source != src or s.category == "memory":
                continue
            found = _pick(scored, _keys(s))
            misses.append((math.inf, [0.0]) if found is None else
                          (abs(math.log(s.factor) - found[1]["centre"]), found[1]["scores"]))
    for step in range(101):
        level = 50.0 + step / 2
        inside = sum(d <= _percentile(sc, level) for d, sc in misses)
        if misses and 100.0 * inside / len(misses) >= target:
            return level
    return 100.0


def build_table(samples: Iterable[Sample]) -> dict:
    """Buckets (every level of every sample's chain) with their rows, sources and p10/p50/p90
    speed factors: ``exp(centre ± the level-quantile of the scores)`` at the level
    :func:`calibrate_level` gives (4 significant digits; ``None`` with one source), and the
    validated region: the batch regimes seen per ``category/hardware/engine``."""
    samples = list(samples)
    level = calibrate_level(samples)
    buckets = {}
    for k, b in _scores(samples).items():
        half = None if b["scores"] is None else _percentile(b["scores"], level)
        buckets[k] = {
            "rows": b["rows"],
            "sources": b["sources"],
            "p10": None if half is None else _sig(math.exp(b["centre"] - half)),
            "p50": _sig(math.exp(b["centre"])),
            "p90": None if half is None else _sig(math.exp(b["centre"] + half)),
            "ids": b["ids"],
        }
    regimes: dict[str, set[str]] = {}
    for s in samples:
        regimes.setdefault(_keys(s)[0], set()).add(s.regime)
    return {"schema": 2, "regenerate": REGENERATE, "quantiles": list(QUANTILES), "min_rows": MIN_ROWS,
            "min_sources": MIN_SOURCES, "score_level": level, "buckets": buckets,
            "regimes": {k: sorted(v) for k, v in sorted(regimes.items())}}


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def _usable(b: Mapping[str, Any] | None) -> bool:
    return b is not None and b["p10"] is not None and b["rows"] >= MIN_ROWS and b["sources"] >= MIN_SOURCES


def lookup(table: Mapping[str, Any], category: str, hardware_class: str, eng_class: str) -> tuple[str, Mapping[str, Any]] | None:
    """(bucket key, bucket) of the finest usable bucket; else the coarsest one with a band
    (rows from at least two sources); None when there is none."""
    return _pick(table["buckets"], bucket_chain(category, hardware_class, eng_class))


# ---------------------------------------------------------------------------
# Intervals of an estimate
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def load_table() -> dict:
    """The shipped table (``planner/data/intervals.json``)."""
    return json.loads(TABLE_PATH.read_text())


@dataclass(frozen=True, slots=True)
class Interval:
    """p10–p90 range of one figure of an estimate."""

    quantity: str
    category: str
    value: float
    p10: float
    p90: float
    bucket: str  # the bucket the factors came from (after back-off)
    rows: int
    validated: bool

    def to_dict(self) -> dict:
        return {"value": self.value, "p10": self.p10, "p90": self.p90, "category": self.category,
                "bucket": self.bucket, "rows": self.rows, "validated": self.validated}


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """The intervals of one estimate, whether it lies in the validated region, and why not."""

    intervals: Mapping[str, Interval]
    validated: bool
    hardware_class: str
    engine_class: str
    regime: str
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"validated": self.validated, "hardware_class": self.hardware_class, "engine_class": self.engine_class,
                "batch_regime": self.regime, "quantiles": list(QUANTILES), "notes": list(self.notes),
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()}}

    def get(self, quantity: str) -> Interval | None:
        return self.intervals.get(quantity)


def _range(value: float, kind: str, b: Mapping[str, Any]) -> tuple[float, float]:
    lo, hi = float(b["p10"]), float(b["p90"])
    if kind == "time":
        return (value / hi, value / lo) if lo > 0 else (value / hi, math.inf)
    return value * lo, value * hi


def _region_note(table: Mapping[str, Any], category: str, hw: str, eng: str, regime: str) -> str | None:
    """Why (category, hw, eng, regime) is outside the validated region, or None if inside."""
    buckets, regimes = table["buckets"], table["regimes"]
    if f"{category}/{hw}" not in buckets:
        return f"no published {category} rows the cost model predicts on {hw} hardware"
    if f"{category}/{hw}/{eng}" not in buckets:
        return f"no published {category} rows the cost model predicts for {eng} engines on {hw} hardware"
    if regime not in regimes.get(f"{category}/{hw}/{eng}", ()):
        seen = ", ".join(regimes.get(f"{category}/{hw}/{eng}", ())) or "none"
        return f"no published {category} rows the cost model predicts at batch {regime} for {eng} engines on {hw} (rows at batch {seen})"
    return None


def _resolve(table: Mapping[str, Any], category: str, hw: str, eng: str, regime: str) -> tuple[Any, str | None]:
    """(lookup result, region note) of one kind of figure."""
    return lookup(table, category, hw, eng), _region_note(table, category, hw, eng, regime)


@functools.lru_cache(maxsize=1024)
def _resolve_shipped(category: str, hw: str, eng: str, regime: str) -> tuple[Any, str | None]:
    return _resolve(load_table(), category, hw, eng, regime)


def _capped(value: float, kind: str, lo: float, hi: float, cap: float | None) -> tuple[float, float, bool]:
    """Clip ``[lo, hi]`` so that the figure is never more than ``cap`` times faster than
    estimated (``cap`` = estimated time / physical floor): a band from other setups' residuals
    must not promise a time below the bytes the device has to move."""
    if cap is None or not math.isfinite(cap) or cap <= 0:
        return lo, hi, False
    if kind == "time":
        floor = value / cap
        return max(lo, floor), max(hi, floor), lo < floor
    ceiling = value * cap
    return min(lo, ceiling), min(hi, ceiling), hi > ceiling


def _one_forward_band(out: dict, why: dict, clipped: dict, values: Mapping[str, float | None], forward_pass: bool,
                      prefill_cap: float | None) -> None:
    """Nothing generated after the first token (an encoder, a CNN, ``gen`` 0): the latency is the TTFT,
    the samples per second the batch over it and the tokens (patches, images) per second a constant
    times those — one figure, so one band for all four. For a model that generates nothing it is the
    samples' band (its throughput rows: a CNN's images/s) where only that one is validated; else the
    TTFT's (the prefill rows), which a decoder's forward pass keeps: the throughput rows of decoders
    measure generation. The TTFT band is clipped at the prefill's floor; the others follow it."""
    ttft, sps = out["ttft_s"], out.get("samples_per_s")
    if forward_pass and sps is not None and sps.validated and not ttft.validated and sps.p10 > 0:
        ttft = dataclasses.replace(sps, quantity="ttft_s", value=ttft.value,
                                   p10=ttft.value * sps.value / sps.p90, p90=ttft.value * sps.value / sps.p10)
        why["ttft_s"] = why.get("samples_per_s")
        lo, hi, clipped["ttft_s"] = _capped(ttft.value, "time", ttft.p10, ttft.p90, prefill_cap)
        ttft = dataclasses.replace(ttft, p10=lo, p90=hi)
    out["ttft_s"] = ttft  # the TTFT's own band was clipped at the prefill's floor when it was built
    out["latency_s"] = dataclasses.replace(ttft, quantity="latency_s")
    why["latency_s"], clipped["latency_s"] = why.get("ttft_s"), clipped["ttft_s"]
    if sps is not None and sps.value > 0 and ttft.p10 > 0:
        out["samples_per_s"] = sps = dataclasses.replace(ttft, quantity="samples_per_s", value=sps.value,
                                                         p10=sps.value * ttft.value / ttft.p90,
                                                         p90=sps.value * ttft.value / ttft.p10)
        why["samples_per_s"], clipped["samples_per_s"] = why.get("ttft_s"), clipped["ttft_s"]
    n = values.get("prefill_tokens_per_s")
    if sps is not None and n and sps.value and "prefill_tokens_per_s" in out:
        r = n / sps.value
        out["prefill_tokens_per_s"] = dataclasses.replace(sps, quantity="prefill_tokens_per_s", value=n,
                                                          p10=sps.p10 * r, p90=sps.p90 * r)
        why["prefill_tokens_per_s"], clipped["prefill_tokens_per_s"] = why.get("ttft_s"), clipped["ttft_s"]


def uncertainty_for(values: Mapping[str, float | None], quantities: Mapping[str, tuple[str, str]], *, hardware_class: str,
                    eng_class: str, regime: str, table: Mapping[str, Any] | None = None,
                    speedup_caps: Mapping[str, float] | None = None, forward_pass: bool = False) -> Uncertainty:
    """Intervals of ``values`` (estimate field → figure; ``None``, zero or non-finite figures
    get none) with the kind of each field in ``quantities``; ``table``: the shipped one when None.
    ``speedup_caps`` (category → estimated time / physical floor) clips each band at the floor.
    ``forward_pass``: the model generates nothing (an encoder, a ViT, a CNN), so its throughput rows
    (images/s) may stand for its forward pass (see :func:`_one_forward_band`)."""
    out: dict[str, Interval] = {}
    why: dict[str, str | None] = {}  # the note of each interval's band (None: validated)
    clipped: dict[str, bool] = {}
    for name, (category, kind) in quantities.items():
        value = values.get(name)
        if value is None or not math.isfinite(value) or value <= 0:
            continue
        if table is None:
            found, note = _resolve_shipped(category, hardware_class, eng_class, regime)
        else:
            found, note = _resolve(table, category, hardware_class, eng_class, regime)
        if found is None:
            continue
        key, b = found
        lo, hi = _range(value, kind, b)
        lo, hi, clipped[name] = _capped(value, kind, lo, hi, (speedup_caps or {}).get(category))
        why[name] = note
        out[name] = Interval(name, category, value, lo, hi, key, int(b["rows"]), note is None)
    if "latency_s" in out and "ttft_s" in out and values.get("latency_s") == values.get("ttft_s"):
        _one_forward_band(out, why, clipped, values, forward_pass, (speedup_caps or {}).get("prefill"))
    notes = list(dict.fromkeys(n for q, n in why.items() if n and q in out))
    clipped_names = [q for q in out if clipped.get(q)]
    if clipped_names:
        notes.append("the faster end of " + ", ".join(clipped_names) + " is clipped at the physical floor "
                     "(bytes moved / rated bandwidth of each memory tier)")
    validated = bool(out) and all(i.validated for i in out.values())
    if not out:
        notes.append("no published rows of this kind: no interval")
    return Uncertainty(out, validated, hardware_class, eng_class, regime, tuple(notes))


def _read(obj: Any, dotted: str) -> float | None:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return float(obj)


def uncertainty_of(obj: Any, quantities: Mapping[str, tuple[str, str]], *, hardware_class: str, eng_class: str,
                   regime: str, extra: Mapping[str, float | None] | None = None,
                   table: Mapping[str, Any] | None = None, speedup_caps: Mapping[str, float] | None = None,
                   forward_pass: bool = False) -> Uncertainty:
    """Intervals of the ``quantities`` read off ``obj`` (an estimate or a capacity row), plus
    ``extra`` figures computed by the caller (they override attributes of the same name)."""
    values = {name: _read(obj, name) for name in quantities}
    values.update(extra or {})
    return uncertainty_for(values, quantities, hardware_class=hardware_class, eng_class=eng_class, regime=regime,
                           table=table, speedup_caps=speedup_caps, forward_pass=forward_pass)


def phase_speedup_cap(phase: Any, bandwidth: Mapping[str, float]) -> float | None:
    """Estimated time of ``phase`` (a ``PhaseCost``) over its physical floor, the longest time
    any memory tier needs to move its bytes at the tier's rated bandwidth; None without bytes."""
    if phase is None or not phase.time_s or phase.time_s <= 0:
        return None
    floor = max((b / bandwidth[t] for t, b in phase.bytes_by_tier.items() if bandwidth.get(t)), default=0.0)
    return phase.time_s / floor if floor > 0 else None


def inference_speedup_caps(est: Any, bandwidth: Mapping[str, float]) -> dict[str, float]:
    """category → how much faster than estimated the figure could physically be."""
    caps = {"prefill": phase_speedup_cap(est.prefill, bandwidth), "decode": phase_speedup_cap(est.decode, bandwidth)}
    cp, cd = caps["prefill"], caps["decode"]
    latency = getattr(est, "latency_s", 0.0) or 0.0
    if cp is not None and cd is not None and latency > 0:
        # A request's latency is at least the sum of its phases' floors: its prefill time over the
        # prefill's cap plus its decode time over the decode's (the larger cap alone let the band of a
        # decode-bound request reach below what its tokens take at the rated bandwidth).
        t_pre = min(max(est.ttft_s, 0.0), latency)
        floor = t_pre / cp + (latency - t_pre) / cd
        caps["throughput"] = latency / floor if floor > 0 else None
    return {k: v for k, v in caps.items() if v is not None}


def inference_uncertainty(est: Any, hardware_class: str, eng_class: str, table: Mapping[str, Any] | None = None,
                          bandwidth: Mapping[str, float] | None = None) -> Uncertainty:
    """Intervals of an ``InferenceEstimate``'s times, throughputs and memory per device;
    ``bandwidth`` (tier name → bytes/s) clips them at the physical floor."""
    none = {"tpot_s": None, "decode_tokens_per_s": None} if est.decode is None else {}  # encoders, CNNs
    caps = inference_speedup_caps(est, bandwidth) if bandwidth else None
    return uncertainty_of(est, INFERENCE_QUANTITIES, hardware_class=hardware_class, eng_class=eng_class,
                          regime=batch_regime(est.serving.batch), extra=none, table=table, speedup_caps=caps,
                          forward_pass=not getattr(est, "generative", True))


def training_uncertainty(est: Any, hardware_class: str, eng_class: str, table: Mapping[str, Any] | None = None) -> Uncertainty:
    """Intervals of a ``TrainingEstimate``'s step time, throughput, MFU and memory per device."""
    return uncertainty_of(est, TRAINING_QUANTITIES, hardware_class=hardware_class, eng_class=eng_class,
                          regime=batch_regime(None, "training"), table=table)


def estimate_uncertainty(est: Any, device: Any, engine: str | None, runtime: str | None, *, training: bool = False) -> Uncertainty:
    """The p10–p90 error bars of ``est`` (an inference or a training estimate) made for ``engine``
    (its id) under ``runtime`` on ``device``: an estimate's and a plan's predicted figures get them
    from here, so the same configuration gets the same bands from both."""
    eng = engine_class(engine, runtime)
    if training:
        return training_uncertainty(est, device.device_class, eng)
    bandwidth = {t.name: t.bandwidth_bytes_per_s for t in device.tiers}
    return inference_uncertainty(est, device.device_class, eng, bandwidth=bandwidth)


_INTERVAL_KEYS = ("value", "p10", "p90", "category", "bucket", "rows", "validated")
_UNCERTAINTY_KEYS = ("validated", "hardware_class", "engine_class", "batch_regime", "quantiles", "notes", "intervals")
class _Missing:
    def __repr__(self) -> str:
        return "nothing (the key is missing)"


_MISSING = _Missing()
_FORWARD_PASS_FIGURES = ("ttft_s", "latency_s", "samples_per_s", "prefill_tokens_per_s")


def uncertainty_from_dict(d: Any, path: str, err: Any, quantities: Mapping[str, tuple[str, str]] | None = None) -> Uncertainty:
    """Strictly parse :meth:`Uncertainty.to_dict` (a plan file's ``predicted.uncertainty``); ``err(path,
    expected, got)`` builds the caller's error naming the field; ``quantities``: the figures it may bracket."""
    from hwmodels import DEVICE_CLASSES

    def num(v: Any, at: str) -> float:
        try:
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
        except OverflowError:  # an int past the largest float
            ok = False
        if not ok:
            raise err(at, "a finite number >= 0", v)
        return float(v)

    def text(v: Any, at: str, among: tuple[str, ...] = ()) -> str:
        if not isinstance(v, str) or not v:
            raise err(at, "a non-empty string", v)
        if among and v not in among:
            raise err(at, "one of " + ", ".join(among), v)
        return v

    def flag(v: Any, at: str) -> bool:
        if not isinstance(v, bool):
            raise err(at, "true or false", v)
        return v

    def keys(m: Any, at: str, names: tuple[str, ...]) -> None:
        if not isinstance(m, Mapping):
            raise err(at, "a mapping of " + ", ".join(names), m)
        for k in m:
            if k not in names:
                raise err(f"{at}.{k}", "absent (the keys are " + ", ".join(names) + ")", m[k])
        for k in names:
            if k not in m:
                raise err(f"{at}.{k}", "present", _MISSING)

    keys(d, path, _UNCERTAINTY_KEYS)
    q = d["quantiles"]
    if not isinstance(q, list) or len(q) != len(QUANTILES) or any(x != y for x, y in zip(q, QUANTILES)) \
            or any(isinstance(x, bool) for x in q):
        raise err(f"{path}.quantiles", str(list(QUANTILES)), q)
    notes = d["notes"]
    if not isinstance(notes, list):
        raise err(f"{path}.notes", "a list of strings", notes)
    notes_t = tuple(text(n, f"{path}.notes[{i}]") for i, n in enumerate(notes))
    raw = d["intervals"]
    if not isinstance(raw, Mapping):
        raise err(f"{path}.intervals", "a mapping of figure → interval", raw)
    out: dict[str, Interval] = {}
    for name, i in raw.items():
        at = f"{path}.intervals.{name}"
        if quantities is not None and name not in quantities:
            raise err(at, "an interval of one of " + ", ".join(quantities), name)
        keys(i, at, _INTERVAL_KEYS)
        rows = i["rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise err(f"{at}.rows", "an int >= 0", rows)
        lo, hi = num(i["p10"], f"{at}.p10"), num(i["p90"], f"{at}.p90")
        if lo > hi:
            raise err(f"{at}.p90", f"at least p10 ({lo:g})", hi)
        # a model's one forward pass bands its TTFT, latency and rates alike, from the prefill or throughput rows
        # (_one_forward_band); any other figure comes from rows of its own category
        kinds = CATEGORIES if quantities is None else (("prefill", "throughput") if name in _FORWARD_PASS_FIGURES
                                                       else (quantities[name][0],))
        out[text(name, at)] = Interval(name, text(i["category"], f"{at}.category", kinds), num(i["value"], f"{at}.value"),
                                       lo, hi, text(i["bucket"], f"{at}.bucket"), rows, flag(i["validated"], f"{at}.validated"))
    validated = flag(d["validated"], f"{path}.validated")
    if validated != (bool(out) and all(i.validated for i in out.values())):
        raise err(f"{path}.validated", f"{str(not validated).lower()}, as its intervals say", validated)
    return Uncertainty(out, validated, text(d["hardware_class"], f"{path}.hardware_class", DEVICE_CLASSES),
                       text(d["engine_class"], f"{path}.engine_class", engine_classes()),
                       text(d["batch_regime"], f"{path}.batch_regime", REGIMES), notes_t)
