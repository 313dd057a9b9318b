"""Reference noise of number formats: what the sensitivity prior charges per format.

Three measurements, each the real quantisation kernels of :mod:`planner.backends` applied
to a seeded reference tensor (see :mod:`planner.sensitivity` for why these tensors):

* :func:`weight_noise` — relative MSE ``‖W − Q(W)‖² / ‖W‖²`` of a 16 × 4096 N(0, 1) matrix
  (rounded to bf16 first) stored in a weight format after a sparsity pattern;
* :func:`activation_noise` — relative MSE on the ordinary channels of a 64 × 4096
  activation matrix whose 6 outlier channels are 100× larger (0 for 16/32-bit formats);
* :func:`kv_noise` — relative MSE of a 256 × 128 N(0, 1) KV-cache matrix;
* :func:`activation_noise` with ``smoothing=α`` — the same activation matrix quantized after
  SmoothQuant's migration of strength ``α`` (:func:`planner.backends.smoothing.smoothing_scales`,
  against a 1024 × 4096 N(0, 1) weight), plus what the migration adds to that weight's int8
  (per output row) noise: the recipe moves the outliers' range into the weight columns they meet.

The results are the same in every run (seeded tensors, deterministic kernels), so they are
computed once and shipped as package data (``planner/data/format_noise.json``): a plan never
imports torch or quantises anything for the prior. Keys the table lacks (an
``unstructured:S`` sparsity with an unusual ``S``, a format added to the registry later)
are measured live, once per process. ``tests/test_format_noise.py`` checks the table
against the live computation; ``python -m planner.format_noise`` rewrites it.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from planner.formats import get_format, list_formats, parse_sparsity

__all__ = [
    "REFERENCE",
    "TABLE_PATH",
    "TABLE_SPARSITIES",
    "activation_noise",
    "build_table",
    "kv_noise",
    "measure_activation_noise",
    "measure_smoothed_activation_noise",
    "smoothable",
    "smoothing_key",
    "table_smoothing",
    "measure_kv_noise",
    "measure_weight_noise",
    "weight_noise",
]

_REF_ROWS, _REF_COLS = 16, 4096
_ACT_TOKENS, _ACT_OUTLIERS, _ACT_OUTLIER_SCALE = 64, 6, 100.0
_KV_ROWS, _KV_HEAD_DIM = 256, 128
# Output channels of the weight a smoothed activation meets: SmoothQuant's scale divides by each input
# channel's largest weight, which a 16-row reference would understate.
_SMOOTH_ROWS = 1024
_SEED = 0
#: The reference tensors' shapes and seed; a table measured on other ones is ignored.
REFERENCE = {"weight": [_REF_ROWS, _REF_COLS], "activation": [_ACT_TOKENS, _REF_COLS, _ACT_OUTLIERS,
                                                              _ACT_OUTLIER_SCALE],
             "kv": [_KV_ROWS, _KV_HEAD_DIM], "smoothing_weight": [_SMOOTH_ROWS, _REF_COLS], "seed": _SEED, "version": 2}
#: Sparsity patterns the shipped table covers for every weight format.
TABLE_SPARSITIES = ("dense", "2:4", "unstructured:0.5")
TABLE_PATH = Path(__file__).with_name("data") / "format_noise.json"
#: Formats whose noise is 0 by construction (the reference is stored in 16 bits).
_HIGH_PRECISION = frozenset({"bf16", "fp16", "fp32"})


def _torch():
    import torch

    return torch


@functools.lru_cache(maxsize=1)
def _reference_weight():
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED)
    return torch.randn(_REF_ROWS, _REF_COLS, generator=g).to(torch.bfloat16).to(torch.float32)


def _relative_mse(ref, approx) -> float:
    num = float(((ref.double() - approx.double()) ** 2).sum())
    den = float((ref.double() ** 2).sum())
    return num / den if den > 0 else 0.0


def _apply(w, weights: str, sparsity: str):
    """Prune (magnitude) then quantise a 2-D tensor with the real backends."""
    from planner.backends import prune_2_4, prune_unstructured, quantize_tensor

    sp = parse_sparsity(sparsity)
    x = w
    if sp.name == "2:4":
        x = prune_2_4(x).to_dense().to(w.dtype)
    elif sp.name != "dense":
        x = prune_unstructured(x, sp).to_dense().to(w.dtype)
    fmt = get_format(weights)
    if fmt.kind == "float" and fmt.element_bits >= 16:
        torch = _torch()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[fmt.name]
        return x.to(dtype).to(w.dtype)
    return quantize_tensor(x, fmt).dequantize(w.dtype)


def measure_weight_noise(weights: str, sparsity: str = "dense") -> float:
    """:func:`weight_noise` computed now, by quantising the reference matrix."""
    ref = _reference_weight()
    return _relative_mse(ref, _apply(ref, weights, sparsity))


@functools.lru_cache(maxsize=1)
def _reference_activations():
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED + 1)
    x = torch.randn(_ACT_TOKENS, _REF_COLS, generator=g)
    idx = torch.randperm(_REF_COLS, generator=g)[:_ACT_OUTLIERS]
    x[:, idx] *= _ACT_OUTLIER_SCALE
    mask = torch.ones(_REF_COLS, dtype=torch.bool)
    mask[idx] = False
    return x.to(torch.bfloat16).to(torch.float32), mask


def measure_activation_noise(activations: str) -> float:
    """:func:`activation_noise` computed now."""
    fmt = get_format(activations)
    if fmt.name in _HIGH_PRECISION:
        return 0.0
    from planner.backends import quantize_tensor

    x, mask = _reference_activations()
    q = quantize_tensor(x, fmt).dequantize(x.dtype)
    return _relative_mse(x[:, mask], q[:, mask])


@functools.lru_cache(maxsize=1)
def _smoothing_weight():
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED + 3)
    return torch.randn(_SMOOTH_ROWS, _REF_COLS, generator=g).to(torch.bfloat16).to(torch.float32)


def smoothable(activations: str) -> bool:
    """Whether SmoothQuant's migration applies to ``activations``: an integer format (per-token
    int8, W8A8); float formats carry their own exponent and are not smoothed."""
    return get_format(activations).kind == "int"


def measure_smoothed_activation_noise(activations: str, alpha: float) -> float:
    """:func:`activation_noise` of ``activations`` after SmoothQuant's migration of strength
    ``alpha``, computed now: the activation noise on the ordinary channels, mapped back through the
    scales, plus the rise in the int8 weight noise of those channels' columns (the migrated weight
    ``W·diag(s)`` quantized per output row, mapped back by ``1/s``, against ``W`` quantized as is)."""
    from planner.backends import quantize_tensor
    from planner.backends.smoothing import smoothing_scales

    if not smoothable(activations):
        return measure_activation_noise(activations)
    x, mask = _reference_activations()
    w = _smoothing_weight()
    s = smoothing_scales(x.abs().amax(dim=0), w, alpha)
    act = _relative_mse(x[:, mask], (quantize_tensor(x / s, activations).dequantize(x.dtype) * s)[:, mask])
    migrated = quantize_tensor(w * s, "int8").dequantize(w.dtype) / s
    plain = quantize_tensor(w, "int8").dequantize(w.dtype)
    rise = _relative_mse(w[:, mask], migrated[:, mask]) - _relative_mse(w[:, mask], plain[:, mask])
    return act + max(rise, 0.0)


def smoothing_key(activations: str, alpha: float) -> str:
    """The shipped table's key of a smoothed activation noise (``int8|sq0.8``)."""
    return f"{get_format(activations).name}|sq{alpha:g}"


def measure_kv_noise(kv: str) -> float:
    """:func:`kv_noise` computed now (``kv`` must be a KV-cache format)."""
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED + 2)
    ref = torch.randn(_KV_ROWS, _KV_HEAD_DIM, generator=g).to(torch.bfloat16).to(torch.float32)
    return _relative_mse(ref, _apply(ref, get_format(kv).name, "dense"))


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, float]]:
    """The shipped table, or an empty one when it is missing or was measured differently."""
    try:
        data = json.loads(TABLE_PATH.read_text())
    except (OSError, ValueError):
        return {"weight": {}, "activation": {}, "kv": {}}
    if data.get("reference") != REFERENCE:
        return {"weight": {}, "activation": {}, "kv": {}}
    return {k: dict(data.get(k, {})) for k in ("weight", "activation", "kv")}


@functools.lru_cache(maxsize=512)
def weight_noise(weights: str, sparsity: str = "dense") -> float:
    """Relative MSE of storing the N(0, 1) reference matrix in ``weights`` with
    ``sparsity`` (the shipped table, else measured)."""
    name, sp = get_format(weights).name, parse_sparsity(sparsity).name
    hit = _table()["weight"].get(f"{name}|{sp}")
    return float(hit) if hit is not None else measure_weight_noise(name, sp)


@functools.lru_cache(maxsize=64)
def activation_noise(activations: str, smoothing: float | None = None) -> float:
    """Noise power on the ordinary channels, relative to their power, when activations
    are quantised to ``activations`` per token (int8) or per tensor (fp8); 0 for 16/32-bit.
    ``smoothing``: SmoothQuant's migration strength α applied first (integer formats only;
    :func:`measure_smoothed_activation_noise`), None for none."""
    name = get_format(activations).name
    if smoothing is not None and smoothable(name):
        hit = _table()["activation"].get(smoothing_key(name, smoothing))
        return float(hit) if hit is not None else measure_smoothed_activation_noise(name, smoothing)
    hit = _table()["activation"].get(name)
    return float(hit) if hit is not None else measure_activation_noise(name)


@functools.lru_cache(maxsize=64)
def kv_noise(kv: str) -> float:
    """Relative MSE of a KV-cache format on a (tokens·heads × head_dim) N(0, 1) matrix;
    scales run per token and head (int8) or per group along head_dim."""
    fmt = get_format(kv)
    if not fmt.is_kv:
        from planner.errors import SensitivityError

        raise SensitivityError(f"{fmt.name!r} is not a KV-cache format", field="kv")
    hit = _table()["kv"].get(fmt.name)
    return float(hit) if hit is not None else measure_kv_noise(fmt.name)


def table_smoothing() -> tuple[float, ...]:
    """The migration strengths the shipped engine profiles declare (``activation_smoothing``)."""
    from planner.engines import list_engines, load_engine

    alphas = {load_engine(e).runtime.smoothing_alpha for e in list_engines()}
    return tuple(sorted(a for a in alphas if a is not None))


def build_table() -> dict:
    """Measure every registry format (weights × :data:`TABLE_SPARSITIES`, activations — also after
    each shipped engine's SmoothQuant migration — and KV)."""
    weight = {f"{f.name}|{parse_sparsity(sp).name}": measure_weight_noise(f.name, sp)
              for f in list_formats(role="weight") for sp in TABLE_SPARSITIES}
    act = {f.name: measure_activation_noise(f.name) for f in list_formats(role="activation")}
    act.update({smoothing_key(f.name, alpha): measure_smoothed_activation_noise(f.name, alpha)
                for alpha in table_smoothing() for f in list_formats(role="activation") if smoothable(f.name)})
    kv = {f.name: measure_kv_noise(f.name) for f in list_formats() if f.is_kv}
    return {"reference": REFERENCE, "weight": weight, "activation": act, "kv": kv}


def main(argv: list[str] | None = None) -> int:
    """``python -m planner.format_noise [PATH]``: rewrite the shipped table."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else TABLE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
