"""Measure this machine's roofs and write them as a hardware profile (``tierwise calibrate``).

What is measured (torch eager, the way validation runs models):

* **per-op overhead**: median wall time of a tiny elementwise op (dispatch + launch +
  synchronisation); the cost model adds it to every operator;
* **GEMM throughput** per precision and size: square ``n × n`` matmuls in fp32 for
  ``n = 64 … 2048``, plus bf16 and int8 (``torch._int_mm``) at the largest size. The fp32 peak is
  the *sustained* rate of large GEMMs — the median of the three largest sizes — not the best
  size: cache-friendly mid sizes can run faster than the large operands of real layers, and
  :class:`hwmodels.Efficiency` makes fractions non-decreasing in size, so a mid-size maximum
  would be applied to every larger op. The efficiency table is each size's rate over that
  peak, capped at 1;
* **memory bandwidth**: streaming reads of 1 MB … 512 MB fp32 matrices by a matrix-vector
  product (``torch.mv``, the access pattern of weights streamed through a decode step), counting
  the matrix bytes. The rated bandwidth is the best rate of reads at least four times the
  last-level cache, so the device tier is DRAM, not cache. Copies (``dst.copy_(src)``,
  read + write) are measured too and reported in the profile's notes: a copy moves data
  faster than a kernel that also computes on it, so it would overstate what weight streaming
  reaches;
* **small-batch GEMMs**: ``x @ W.T`` with ``x`` of 1 … 64 rows and a fp32 weight of at least
  64 MB and four times the last-level cache (4096 columns), the access pattern of a decode step
  with a few sequences. CPU BLAS streams such a weight at full speed for one row (a
  matrix-vector product) but runs a few-row GEMM far below both roofs (it packs the weight into
  panels; a few rows fill few vector lanes). The profile's ``gemm_rows_points`` hold, per row
  count, the share of the streaming bandwidth that makes the cost model's own prediction match
  the measurement (see :func:`gemm_rows_points`).

Op times have the measured per-op overhead subtracted before they become efficiencies,
because the cost model adds that overhead separately (op time = max(compute, memory) +
overhead; docs/costmodel.md). Efficiency tables are (size, fraction) points that
:class:`hwmodels.Efficiency` interpolates in log size.

The result is a profile that :func:`hwmodels.load_device` reads: every block cites the
``MEAS`` source (``measured on <host>, <date>``) with ``provenance: measured``; the power
entry, which calibration does not measure, is marked ``estimate``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hwmodels import Efficiency
from planner.fileio import atomic_write_text
from planner.execution.errors import CalibrationError

__all__ = [
    "CalibrationError",
    "CalibrationResult",
    "calibrate",
    "gemm_rows_points",
    "measure_seconds",
    "profile_dict",
    "write_profile",
]

ProgressFn = Callable[[str, int, int], None]

_GEMM_SIZES = (64, 128, 256, 384, 512, 768, 1024, 1536, 2048)
_GEMM_SIZES_QUICK = (64, 128, 256, 512, 1024)
_COPY_MB = (1, 4, 16, 64, 128, 256, 512)
_COPY_MB_QUICK = (1, 4, 16, 64, 256)  # the largest copy must exceed the LLC several times
# Row counts of the small-batch GEMMs: the powers of two to 64 and the 1.5x steps between them,
# because BLAS kernels change code path at some counts (3 rows ran slower than 4 here).
_GEMM_ROWS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_GEMM_ROWS_QUICK = (1, 2, 4, 8, 16, 64)
_GEMM_ROWS_COLS = 4096
_GEMM_ROWS_MIN_BYTES = 64e6
_CPU_TDP_W_PER_CORE = 10.0
_USD_PER_CORE_HOUR = 0.058


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationResult:
    """Measured roofs of one device. Rates are SI (FLOP/s, bytes/s); sizes are the op's FLOPs
    or bytes moved; ``gemm_flops_per_s`` maps precision → [(flops, FLOP/s)]. ``gemm_rows_s`` holds
    (rows, seconds) of ``x @ W.T`` for a fp32 weight ``W`` of shape ``gemm_rows_shape`` =
    (out_features, in_features), per-op overhead included."""

    device: str
    host: str
    date: str
    processor: str
    threads: int
    torch_version: str
    kernel_overhead_s: float
    gemm_flops_per_s: dict[str, list[tuple[float, float]]]
    read_bytes_per_s: list[tuple[float, float]]
    copy_bytes_per_s: list[tuple[float, float]]
    dram_min_bytes: float
    memory_capacity_bytes: float
    notes: list[str] = field(default_factory=list)
    gemm_rows_s: list[tuple[float, float]] = field(default_factory=list)
    gemm_rows_shape: tuple[int, int] = (0, 0)

    @property
    def peak_flops_per_s(self) -> dict[str, float]:
        """Sustained rate per precision: the median rate of the (up to) three largest GEMMs."""
        out = {}
        for p, pts in self.gemm_flops_per_s.items():
            if pts:
                largest = sorted(pts)[-3:]
                out[p] = statistics.median(r for _, r in largest)
        return out

    @property
    def bandwidth_bytes_per_s(self) -> float:
        dram = [r for size, r in self.read_bytes_per_s if size >= self.dram_min_bytes]
        return max(dram or [r for _, r in self.read_bytes_per_s])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_seconds(fn: Callable[[], Any], device: torch.device | str = "cpu", *, min_time_s: float = 0.05,
                    max_reps: int = 200, warmup: int = 2, stat: str = "min") -> float:
    """Wall time of ``fn()`` over repetitions filling about ``min_time_s`` (after warm-up).

    ``stat="min"`` (default) returns the fastest repetition: on a shared machine other
    processes only ever add time, so the minimum is the best estimate of what the hardware
    does; ``"median"`` is available for reporting typical times.
    """
    if stat not in ("min", "median"):
        raise ValueError(f"The 'stat' parameter of measure_seconds must be 'min' or 'median'. Got {stat!r} instead.")
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(dev)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (time.perf_counter() - start < min_time_s or len(times) < 3):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return min(times) if stat == "min" else statistics.median(times)


def _llc_bytes() -> float:
    """Largest CPU cache (bytes) from sysfs; 32 MB when unknown."""
    best = 0
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    if base.is_dir():
        for index in base.glob("index*"):
            try:
                text = (index / "size").read_text().strip()
            except OSError:
                continue
            m = re.fullmatch(r"(\d+)([KMG]?)", text)
            if m:
                best = max(best, int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)])
    return float(best or 32 * 1024**2)


def _memory_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16e9


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class _Sweep:
    """Settings and progress of one calibration run (quick or full)."""

    dev: torch.device
    min_time: float
    passes: int
    steps: int
    progress: ProgressFn | None
    done: int = 0

    def tick(self, what: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(what, self.done, self.steps)

    def best(self, fn, **kw) -> float:
        # Best of separate passes: a process that shares the cores only ever adds time.
        return min(measure_seconds(fn, self.dev, min_time_s=self.min_time, **kw) for _ in range(self.passes))


def _rate(work: float, t: float, overhead: float) -> float:
    return work / max(t - overhead, t * 0.05)


def _measure_gemms(sw: _Sweep, sizes: tuple[int, ...], overhead: float, notes: list[str]) -> dict:
    dev = sw.dev
    gemm: dict[str, list[tuple[float, float]]] = {"fp32": []}
    for n in sizes:
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        t = sw.best(lambda: torch.mm(a, b))
        flops = 2.0 * n**3
        gemm["fp32"].append((flops, _rate(flops, t, overhead)))
        sw.tick(f"fp32 GEMM {n}x{n}x{n}: {flops / t / 1e9:.1f} GFLOP/s")
    n = sizes[-1]
    flops = 2.0 * n**3
    try:
        a16 = torch.randn(n, n, device=dev).to(torch.bfloat16)
        b16 = torch.randn(n, n, device=dev).to(torch.bfloat16)
        t = measure_seconds(lambda: torch.mm(a16, b16), dev, min_time_s=sw.min_time)
        gemm["bf16"] = [(flops, _rate(flops, t, overhead))]
    except RuntimeError as exc:  # pragma: no cover - depends on the build
        notes.append(f"bf16 GEMM not measured: {exc}")
    sw.tick("bf16 GEMM")
    try:
        a8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=dev)
        b8 = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=dev)
        t = measure_seconds(lambda: torch._int_mm(a8, b8), dev, min_time_s=sw.min_time)
        gemm["int8"] = [(flops, _rate(flops, t, overhead))]
    except RuntimeError as exc:  # pragma: no cover - depends on the build
        notes.append(f"int8 GEMM (torch._int_mm) not measured: {exc}")
    sw.tick("int8 GEMM")
    return gemm


def _measure_bandwidth(sw: _Sweep, copy_mb: tuple, overhead: float) -> tuple[list, list]:
    reads: list[tuple[float, float]] = []
    copies: list[tuple[float, float]] = []
    width = 4096
    for mb in copy_mb:
        rows = max(1, int(mb * 1e6 // (4 * width)))
        w = torch.ones(rows, width, device=sw.dev)
        x = torch.ones(width, device=sw.dev)
        t = sw.best(lambda: torch.mv(w, x), warmup=1)
        size = float(w.numel() * 4)
        reads.append((size, _rate(size, t, overhead)))
        sw.tick(f"read {mb} MB (matrix-vector): {size / t / 1e9:.1f} GB/s")
        src = w.reshape(-1)
        dst = torch.empty_like(src)
        t = sw.best(lambda: dst.copy_(src), warmup=1)
        copies.append((2 * size, _rate(2 * size, t, overhead)))
        sw.tick(f"copy {mb} MB: {2 * size / t / 1e9:.1f} GB/s (read + write)")
        w = src = dst = None  # free the buffers before the next size
    return reads, copies


def _measure_gemm_rows(sw: _Sweep, device: str, gemm_rows: tuple[int, ...]) -> tuple[list, tuple[int, int]]:
    """Small-batch GEMMs on a weight that cannot stay in cache between repetitions."""
    if device == "cpu":
        cache = _llc_bytes()
    else:
        cache = float(getattr(torch.cuda.get_device_properties(sw.dev), "L2_cache_size", 0) or 0)
    cols = _GEMM_ROWS_COLS
    out_features = 256 * math.ceil(max(_GEMM_ROWS_MIN_BYTES, 4 * cache) / (4 * cols) / 256)
    weight = torch.ones(out_features, cols, device=sw.dev)
    w_bytes = float(weight.numel() * 4)
    rows_s: list[tuple[float, float]] = []
    for r in gemm_rows:
        x = torch.ones(r, cols, device=sw.dev)
        t = sw.best(lambda: x @ weight.T, warmup=2)
        rows_s.append((float(r), t))
        sw.tick(f"GEMM {r} rows x {cols} -> {out_features} fp32: {t * 1e3:.2f} ms, weights read at "
                f"{w_bytes / t / 1e9:.1f} GB/s")
    return rows_s, (out_features, cols)


def calibrate(device: str = "cpu", *, quick: bool = False, progress: ProgressFn | None = None) -> CalibrationResult:
    """Measure per-op overhead, GEMM throughput and read/copy bandwidth on ``device`` (cpu | cuda)."""
    if device not in ("cpu", "cuda"):
        raise CalibrationError(f"--device must be 'cpu' or 'cuda'; got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise CalibrationError("--device cuda: torch sees no CUDA device on this machine; use --device cpu")
    dev = torch.device(device)
    gemm_sizes = _GEMM_SIZES_QUICK if quick else _GEMM_SIZES
    copy_mb = _COPY_MB_QUICK if quick else _COPY_MB
    gemm_rows = _GEMM_ROWS_QUICK if quick else _GEMM_ROWS
    sw = _Sweep(dev=dev, min_time=0.02 if quick else 0.08, passes=1 if quick else 3, progress=progress,
                steps=1 + len(gemm_sizes) + 2 + 2 * len(copy_mb) + len(gemm_rows) + 1)
    notes: list[str] = []
    with torch.no_grad():
        tiny = torch.ones(8, device=dev)
        overhead = measure_seconds(lambda: tiny.add(1.0), dev, min_time_s=sw.min_time, max_reps=2000, warmup=20)
        sw.tick(f"per-op overhead {overhead * 1e6:.1f} us")
        gemm = _measure_gemms(sw, gemm_sizes, overhead, notes)
        reads, copies = _measure_bandwidth(sw, copy_mb, overhead)
        rows_s, rows_shape = _measure_gemm_rows(sw, device, gemm_rows)

    llc = _llc_bytes() if device == "cpu" else 0.0
    dram_min = 4 * llc if device == "cpu" else 0.0
    if not any(size >= dram_min for size, _ in reads):
        notes.append(f"no read reached 4x the last-level cache ({dram_min / 1e6:.0f} MB); bandwidth may be cache "
                     "bandwidth")
    name = torch.cuda.get_device_name(dev) if device == "cuda" else _processor()
    result = CalibrationResult(device=device, host=platform.node() or "unknown-host",
                               date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"), processor=name,
                               threads=torch.get_num_threads(), torch_version=torch.__version__,
                               kernel_overhead_s=overhead, gemm_flops_per_s=gemm, read_bytes_per_s=reads,
                               copy_bytes_per_s=copies, dram_min_bytes=dram_min,
                               memory_capacity_bytes=_memory_bytes(dev), notes=notes, gemm_rows_s=rows_s,
                               gemm_rows_shape=rows_shape)
    shares = ", ".join(f"{r:g}: {f:.2f}" for r, f in gemm_rows_points(result))
    sw.tick(f"small-batch GEMMs, share of streaming bandwidth by rows: {shares}")
    return result


def _points(samples: list[tuple[float, float]], peak: float) -> list[list[float]]:
    """(size, rate) → [size, fraction of peak] with strictly increasing sizes, fractions in (0, 1]."""
    out: list[list[float]] = []
    for size, rate in sorted(samples):
        if out and size <= out[-1][0]:
            continue
        out.append([float(f"{size:.6g}"), round(min(1.0, max(rate / peak, 1e-3)), 4)])
    return out


def _half_size(points: list[list[float]]) -> float:
    """Smallest measured size whose fraction reaches half of the best (the curve's knee)."""
    best = max(f for _, f in points)
    for size, frac in points:
        if frac >= best / 2:
            return size
    return points[-1][0]  # pragma: no cover - the best point always qualifies


def _efficiency(result: CalibrationResult) -> tuple[float, float, Efficiency, dict[str, Any]]:
    """fp32 peak (FLOP/s), rated bandwidth (bytes/s), the Efficiency the profile will carry
    (without the row table) and its YAML block's numbers."""
    fp32_peak = result.peak_flops_per_s["fp32"]
    bw = result.bandwidth_bytes_per_s
    compute_points = _points(result.gemm_flops_per_s["fp32"], fp32_peak)
    bandwidth_points = _points(result.read_bytes_per_s, bw)
    block = {
        "compute_max": max(f for _, f in compute_points),
        "compute_half_flops": _half_size(compute_points),
        "bandwidth_max": max(f for _, f in bandwidth_points),
        "bandwidth_half_bytes": _half_size(bandwidth_points),
        "kernel_overhead_us": round(result.kernel_overhead_s * 1e6, 3),
        "compute_points": compute_points,
        "bandwidth_points": bandwidth_points,
    }
    eff = Efficiency(
        compute_max=block["compute_max"], compute_half_flops=block["compute_half_flops"],
        bandwidth_max=block["bandwidth_max"], bandwidth_half_bytes=block["bandwidth_half_bytes"],
        kernel_overhead_s=block["kernel_overhead_us"] * 1e-6,
        compute_points=tuple(map(tuple, compute_points)), bandwidth_points=tuple(map(tuple, bandwidth_points)))
    return fp32_peak, bw, eff, block


def gemm_rows_points(result: CalibrationResult) -> list[list[float]]:
    """[rows, share] of the measured small-batch GEMMs, for ``Efficiency.gemm_rows_points``.

    The share is chosen so that the cost model reproduces the measurement: it prices a linear as
    ``max(compute_s, memory_s) + overhead`` with ``compute_s = flops / (peak · eff.compute(flops))``
    and ``memory_s = (weight_bytes / share + act_bytes) / (bw · eff.bandwidth(bytes))``
    (planner/costmodel.py ``op_cost``), so the share is the one for which ``memory_s`` equals the
    measured time less the overhead. Against the cost model's own streaming prediction rather than
    the measured one-row time, so that the table carries exactly the gap the rest of the profile
    leaves. When the compute roof already accounts for the time the share is 1 (the weight
    stream is not what limits the op); a one-row GEMM that beats the bandwidth table is capped
    at 1 too. Empty when no small-batch GEMM was measured.
    """
    out_features, cols = result.gemm_rows_shape
    if not result.gemm_rows_s or out_features <= 0 or cols <= 0:
        return []
    peak, bw, eff, _ = _efficiency(result)
    w_bytes = 4.0 * out_features * cols
    points: list[list[float]] = []
    for rows, t in sorted(result.gemm_rows_s):
        if points and rows <= points[-1][0]:
            continue
        t_op = max(t - result.kernel_overhead_s, t * 0.05)
        flops = 2.0 * rows * out_features * cols
        act_bytes = 4.0 * rows * (out_features + cols)
        compute_s = flops / (peak * eff.compute(flops))
        streamed = t_op * bw * eff.bandwidth(w_bytes + act_bytes) - act_bytes  # weight bytes the time allows
        share = 1.0 if compute_s >= t_op or streamed <= w_bytes else w_bytes / streamed
        # four significant digits: shares of a few percent keep their relative precision
        points.append([float(f"{rows:g}"), float(f"{max(share, 1e-3):.4g}")])
    return points


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "machine"


def profile_dict(result: CalibrationResult, device_id: str | None = None) -> dict[str, Any]:
    """The hardware profile (as :func:`hwmodels.load_device` reads it) of a calibration."""
    peaks = result.peak_flops_per_s
    _, bw, _, eff_block = _efficiency(result)
    rows_points = gemm_rows_points(result)
    if rows_points:
        eff_block["gemm_rows_points"] = rows_points
    cpu = result.device == "cpu"
    device_id = device_id or _slug(f"{result.host}-{result.device}")
    measured = (f"measured on {result.host}, {result.date} by tierwise calibrate ({result.processor}, "
                f"{result.threads} threads, torch {result.torch_version})")
    cores = os.cpu_count() or 1
    native = ["fp32", "bf16"] + (["int8"] if "int8" in peaks else [])
    emulated = ["fp16", "fp8-e4m3", "fp8-e5m2", "int4", "int3", "int2", "nf4", "mxfp8", "mxfp6", "mxfp4", "nvfp4",
                "fp6-e3m2", "fp4-e2m1", "bfp8", "bfp4", "codebook"]
    if "int8" not in peaks:
        emulated.insert(0, "int8")
    lines = [f"{p} GEMM {size:.3g} FLOP: {rate / 1e9:.2f} GFLOP/s" for p, pts in result.gemm_flops_per_s.items()
             for size, rate in pts]
    lines += [f"read {size / 1e6:.0f} MB (matrix-vector): {rate / 1e9:.2f} GB/s" for size, rate in result.read_bytes_per_s]
    lines += [f"copy {size / 2e6:.0f} MB: {rate / 1e9:.2f} GB/s (read + write)" for size, rate in result.copy_bytes_per_s]
    out_features, cols = result.gemm_rows_shape
    share_at = dict((rows, share) for rows, share in rows_points)
    lines += [f"GEMM {rows:g} rows x {cols} -> {out_features} fp32: {t * 1e3:.3f} ms, weights read at "
              f"{4 * out_features * cols / t / 1e9:.2f} GB/s, share of streaming bandwidth {share_at[rows]:.3f}"
              for rows, t in sorted(result.gemm_rows_s) if rows in share_at]
    lines += result.notes
    return {
        "schema_version": 1,
        "id": device_id,
        "name": f"{result.processor} ({result.host}, {result.threads} threads)",
        "class": "cpu" if cpu else "gpu",
        "vendor": "measured",
        "sources": {
            "MEAS": measured,
            "E-POWER": (f"Tierwise estimate, not measured by calibrate: {_CPU_TDP_W_PER_CORE:g} W per core "
                        "(server CPUs 3.75-13 W per core, e.g. AMD EPYC 9654 360 W / 96 cores, desktop 8-core "
                        "105 W); replace with the vendor TDP")
            if cpu else "Tierwise estimate, not measured by calibrate: replace with the board's TDP",
            "E-PRICE": (f"Tierwise estimate, not measured by calibrate: {_USD_PER_CORE_HOUR:g} USD per core-hour, "
                        "the on-demand price of general-purpose cloud vCPUs (AWS m7a.large, 2 vCPU, about "
                        "0.116 USD/h in us-east-1, 2024); replace with what this machine costs")
            if cpu else "Tierwise estimate, not measured by calibrate: 2.5 USD per GPU-hour (cloud on-demand order "
                        "of magnitude); replace with what this machine costs",
        },
        "compute": [{
            "unit": "cpu_cores" if cpu else "gpu",
            "peak_tflops": {p: round(v / 1e12, 6) for p, v in peaks.items()},
            "source": "MEAS",
            "provenance": "measured",
        }],
        "memory": [{
            "name": "dram" if cpu else "device_memory",
            "role": "device",
            "capacity_gb": round(result.memory_capacity_bytes / 1e9, 3),
            "bandwidth_gb_per_s": round(bw / 1e9, 3),
            "latency_us": 0.1,
            "source": "MEAS",
            "provenance": "measured",
        }],
        "power": {"tdp_w": _CPU_TDP_W_PER_CORE * cores if cpu else 300.0, "idle_w": 0.0, "source": "E-POWER",
                  "provenance": "estimate"},
        "price": {"usd_per_hour": round(_USD_PER_CORE_HOUR * cores, 4) if cpu else 2.5, "source": "E-PRICE",
                  "provenance": "estimate"},
        "efficiency": {
            **eff_block,
            "source": "MEAS",
            "provenance": "measured",
        },
        "formats": {"native": native, "emulated": emulated},
        "notes": "Calibration measurements:\n" + "\n".join(lines),
    }


def write_profile(result: CalibrationResult, path: str | os.PathLike[str], device_id: str | None = None) -> Path:
    """Write the profile YAML atomically; the id defaults to the file stem."""
    import yaml

    p = Path(path)
    if p.suffix.lower() not in (".yaml", ".yml"):
        raise CalibrationError(f"--out must end in .yaml or .yml; got {p.name!r}")
    data = profile_dict(result, device_id or _slug(p.stem))
    text = (f"# Hardware profile written by `tierwise calibrate` ({data['sources']['MEAS']}).\n"
            + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))
    return atomic_write_text(p, text)


