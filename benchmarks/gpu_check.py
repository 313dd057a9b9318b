"""GPU-only execution paths, checked on a CUDA machine: fp8 GEMM via ``torch._scaled_mm`` and
2:4 semi-structured sparsity via ``torch.sparse.to_sparse_semi_structured``.

Self-contained (torch + this repository), about a minute on one GPU. Prints one line per check
with the numbers to copy into docs/validation.md; exits 0 when every check passes, 1 when one
fails, and 0 with "skipped" lines when there is no CUDA device.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner.backends import sqnr_db  # noqa: E402
from planner.execution.apply import apply_plan, compressed_modules  # noqa: E402
from planner.execution.calibrate import measure_seconds  # noqa: E402


def _line(name: str, ok: bool, **numbers: object) -> bool:
    parts = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items())
    print(f"{'PASS' if ok else 'FAIL'} {name}: {parts}", flush=True)
    return ok


def check_scaled_mm_fp8(dev: torch.device) -> bool:
    """fp8-e4m3 weights and activations through PackedLinear's native path vs the dequantised math."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4096, 4096, bias=False)
    layer = apply_plan(torch.nn.Sequential(lin), {"0": {"weights": "fp8-e4m3", "activations": "fp8-e4m3"}})
    layer = layer.to(dev)
    q = compressed_modules(layer)["0"]
    x = torch.randn(256, 4096, device=dev)
    with torch.no_grad():
        native = q(x)
        w = q.store.packed().dequantize().to(dev)
        sx = x.abs().amax() / 448.0
        xq = (x / sx).to(torch.float8_e4m3fn).float() * sx
        ref = F.linear(xq, w)
        t_native = measure_seconds(lambda: q(x), dev, min_time_s=0.2)
        w16 = lin.weight.to(dev, torch.bfloat16)
        x16 = x.to(torch.bfloat16)
        t_bf16 = measure_seconds(lambda: F.linear(x16, w16), dev, min_time_s=0.2)
    s = sqnr_db(ref.float(), native.float())
    # bf16 output rounding bounds the agreement: ~ 8 mantissa bits, > 35 dB
    return _line("torch._scaled_mm fp8-e4m3 256x4096x4096", s > 35.0, sqnr_vs_dequantized_db=s,
                 native_ms=t_native * 1e3, bf16_ms=t_bf16 * 1e3)


def check_semi_structured(dev: torch.device) -> bool:
    """2:4-pruned fp16 weights through to_sparse_semi_structured vs the dense pruned matmul."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4096, 4096, bias=False)
    layer = apply_plan(torch.nn.Sequential(lin), {"0": {"weights": "fp16", "sparsity": "2:4",
                                                         "activations": "fp16"}}).to(dev)
    q = compressed_modules(layer)["0"]
    x = torch.randn(512, 4096, device=dev)
    with torch.no_grad():
        native = q(x)
        w = q.store.packed().dequantize(torch.float16).to(dev)
        ref = F.linear(x.half(), w).float()
        from torch.sparse import to_sparse_semi_structured

        ws = to_sparse_semi_structured(w)
        xh = x.half()
        t_sparse = measure_seconds(lambda: F.linear(xh, ws), dev, min_time_s=0.2)
        t_dense = measure_seconds(lambda: F.linear(xh, w), dev, min_time_s=0.2)
    s = sqnr_db(ref, native.float())
    return _line("to_sparse_semi_structured 2:4 fp16 512x4096x4096", s > 40.0, sqnr_vs_dense_pruned_db=s,
                 sparse_ms=t_sparse * 1e3, dense_ms=t_dense * 1e3, speedup=t_dense / t_sparse)


def check_calibrate_cuda() -> bool:
    from planner.execution.calibrate import calibrate

    t0 = time.perf_counter()
    r = calibrate("cuda", quick=True)
    return _line("tierwise calibrate --device cuda --quick", r.peak_flops_per_s["fp32"] > 1e12,
                 fp32_tflops=r.peak_flops_per_s["fp32"] / 1e12,
                 bf16_tflops=r.peak_flops_per_s.get("bf16", 0.0) / 1e12,
                 bandwidth_gb_per_s=r.bandwidth_bytes_per_s / 1e9, seconds=time.perf_counter() - t0)


def main() -> int:
    if not torch.cuda.is_available():
        for name in ("torch._scaled_mm fp8-e4m3", "to_sparse_semi_structured 2:4", "calibrate --device cuda"):
            print(f"SKIP {name}: no CUDA device", flush=True)
        return 0
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    ok = True
    for check in (lambda: check_scaled_mm_fp8(dev), lambda: check_semi_structured(dev), check_calibrate_cuda):
        try:
            ok &= check()
        except Exception as exc:  # noqa: BLE001 - report every check, whatever fails
            ok &= _line(getattr(check, "__name__", "check"), False, error=f"{type(exc).__name__}: {exc}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
