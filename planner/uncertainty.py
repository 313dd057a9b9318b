"""Error bars on every estimate: how far the cost model has been off, out of sample, on
published measurements of the same kind.

``benchmarks/intervals.py`` predicts every row of ``benchmarks/data/published.csv`` with the
fitted constants chosen *without that row's source* (leave-one-source-out, as
``benchmarks/published.py --cv loso``) and turns each residual into a **speed factor**
``f = measured speed / predicted speed`` (for a throughput ``measured / predicted``, for a
time ``predicted / measured``; for memory ``measured / predicted`` bytes). It groups the
factors by kind — *category* (prefill, decode, throughput, training, memory) × *hardware
class* (gpu, tpu, phone, …) × *engine class* — and ships their 10th and 90th percentiles as
``planner/data/intervals.json``. ``python benchmarks/intervals.py --write`` regenerates it
after any change to the cost model; ``tests/test_intervals.py`` fails until it is.

An estimate's figure ``x`` then gets the interval ``[x·f10, x·f90]`` for a throughput and
``[x/f90, x/f10]`` for a time: the range the measured value fell in for 80% of the rows
nearest in kind. It is not centred on the estimate when the model is biased there.

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
    "SERVE_OPTION_QUANTITIES",
    "TRAINING_QUANTITIES",
    "TRAIN_OPTION_QUANTITIES",
    "Uncertainty",
    "batch_regime",
    "bucket_chain",
    "build_table",
    "engine_class",
    "inference_uncertainty",
    "load_table",
    "lookup",
    "training_uncertainty",
    "uncertainty_for",
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
    if mode == "training":
        return "training"
    if batch is None or batch <= 1:
        return "1"
    return "2-32" if batch <= 32 else "33+"


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


def _interval(ss: list[Sample]) -> tuple[float, float, float] | None:
    """(p10, p50, p90) speed factors of a bucket: a jackknife+ interval over sources
    (Barber et al. 2021, https://arxiv.org/abs/1905.02928, with sources as the exchangeable
    units). Centre: the median log factor of the bucket. Half-width: the
    ``min(1, 0.8·(1 + 1/n))`` quantile (n = sources; the finite-sample correction) of every
    row's distance from the median of the *other* sources' rows — so a source that sits apart
    from the rest widens the band as a new, unseen source would. None with one source."""
    sources = sorted({s.source for s in ss})
    if len(sources) < 2:
        return None
    logs = [math.log(s.factor) for s in ss]
    centre = _percentile(logs, 50.0)
    scores = []
    for src in sources:
        others = _percentile([math.log(s.factor) for s in ss if s.source != src], 50.0)
        scores += [abs(math.log(s.factor) - others) for s in ss if s.source == src]
    level = min(100.0, (QUANTILES[1] - QUANTILES[0]) * (1.0 + 1.0 / len(sources)))
    half = _percentile(scores, level)
    return math.exp(centre - half), math.exp(centre), math.exp(centre + half)


def build_table(samples: Iterable[Sample]) -> dict:
    """Buckets (every level of every sample's chain) with their rows, sources and p10/p50/p90
    speed factors (:func:`_interval`, 4 significant digits; ``None`` with one source), and the
    validated region: the batch regimes seen per ``category/hardware/engine``."""
    groups: dict[str, list[Sample]] = {}
    regimes: dict[str, set[str]] = {}
    for s in samples:
        for k in _keys(s):
            groups.setdefault(k, []).append(s)
        regimes.setdefault(_keys(s)[0], set()).add(s.regime)
    buckets = {}
    for k, ss in sorted(groups.items()):
        band = _interval(ss)
        p10, p50, p90 = (None, math.exp(_percentile([math.log(s.factor) for s in ss], 50.0)), None) if band is None else band
        buckets[k] = {
            "rows": len(ss),
            "sources": len({s.source for s in ss}),
            "p10": None if p10 is None else _sig(p10),
            "p50": _sig(p50),
            "p90": None if p90 is None else _sig(p90),
            "ids": sorted(s.row_id for s in ss),
        }
    return {"schema": 1, "regenerate": REGENERATE, "quantiles": list(QUANTILES), "min_rows": MIN_ROWS,
            "min_sources": MIN_SOURCES, "buckets": buckets,
            "regimes": {k: sorted(v) for k, v in sorted(regimes.items())}}


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def _usable(b: Mapping[str, Any] | None) -> bool:
    return b is not None and b["p10"] is not None and b["rows"] >= MIN_ROWS and b["sources"] >= MIN_SOURCES


def lookup(table: Mapping[str, Any], category: str, hardware_class: str, eng_class: str) -> tuple[str, Mapping[str, Any]] | None:
    """(bucket key, bucket) of the finest usable bucket; else the coarsest one with an
    interval (rows from at least two sources); None when there is none."""
    buckets = table["buckets"]
    chain = bucket_chain(category, hardware_class, eng_class)
    for key in chain:
        if _usable(buckets.get(key)):
            return key, buckets[key]
    for key in reversed(chain):
        if key in buckets and buckets[key]["p10"] is not None:
            return key, buckets[key]
    return None


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
        return f"no published {category} rows on {hw} hardware"
    if f"{category}/{hw}/{eng}" not in buckets:
        return f"no published {category} rows for {eng} engines on {hw} hardware"
    if regime not in regimes.get(f"{category}/{hw}/{eng}", ()):
        seen = ", ".join(regimes.get(f"{category}/{hw}/{eng}", ())) or "none"
        return f"no published {category} rows at batch {regime} for {eng} engines on {hw} (rows at batch {seen})"
    return None


def _resolve(table: Mapping[str, Any], category: str, hw: str, eng: str, regime: str) -> tuple[Any, str | None]:
    """(lookup result, region note) of one kind of figure."""
    return lookup(table, category, hw, eng), _region_note(table, category, hw, eng, regime)


@functools.lru_cache(maxsize=1024)
def _resolve_shipped(category: str, hw: str, eng: str, regime: str) -> tuple[Any, str | None]:
    return _resolve(load_table(), category, hw, eng, regime)


def uncertainty_for(values: Mapping[str, float | None], quantities: Mapping[str, tuple[str, str]], *, hardware_class: str,
                    eng_class: str, regime: str, table: Mapping[str, Any] | None = None) -> Uncertainty:
    """Intervals of ``values`` (estimate field → figure; ``None``, zero or non-finite figures
    get none) with the kind of each field in ``quantities``; ``table``: the shipped one when None."""
    out: dict[str, Interval] = {}
    notes: list[str] = []
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
        if note and note not in notes:
            notes.append(note)
        lo, hi = _range(value, kind, b)
        out[name] = Interval(name, category, value, lo, hi, key, int(b["rows"]), note is None)
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
                   table: Mapping[str, Any] | None = None) -> Uncertainty:
    """Intervals of the ``quantities`` read off ``obj`` (an estimate or a capacity row), plus
    ``extra`` figures computed by the caller (they override attributes of the same name)."""
    values = {name: _read(obj, name) for name in quantities}
    values.update(extra or {})
    return uncertainty_for(values, quantities, hardware_class=hardware_class, eng_class=eng_class, regime=regime,
                           table=table)


def inference_uncertainty(est: Any, hardware_class: str, eng_class: str, table: Mapping[str, Any] | None = None) -> Uncertainty:
    """Intervals of an ``InferenceEstimate``'s times, throughputs and memory per device."""
    none = {"tpot_s": None, "decode_tokens_per_s": None} if est.decode is None else {}  # encoders, CNNs
    return uncertainty_of(est, INFERENCE_QUANTITIES, hardware_class=hardware_class, eng_class=eng_class,
                          regime=batch_regime(est.serving.batch), extra=none, table=table)


def training_uncertainty(est: Any, hardware_class: str, eng_class: str, table: Mapping[str, Any] | None = None) -> Uncertainty:
    """Intervals of a ``TrainingEstimate``'s step time, throughput, MFU and memory per device."""
    return uncertainty_of(est, TRAINING_QUANTITIES, hardware_class=hardware_class, eng_class=eng_class,
                          regime=batch_regime(None, "training"), table=table)
