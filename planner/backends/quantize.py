"""Real quantisation of 2-D torch weights into every registered :class:`~planner.formats.Format`.

``quantize_tensor(w, fmt)`` looks the format's ``kind`` up in :data:`HANDLERS` and
returns a :class:`QuantizedTensor` that holds only what a kernel would store: packed
codes (``uint8`` streams, or ``torch.float8_*`` / ``int8`` tensors where a native type
exists), scales in their stored dtype (fp16, fp32, ``float8_e4m3fn``, E8M0) and
zero-points. ``QuantizedTensor.nbytes()`` is the sum of those tensors' real sizes, so
measured storage can be compared with ``Format.nbytes``.

Layout: weights are ``[out_features, in_features]``; groups run along ``in_features``
within a row (ragged tail groups are padded with zeros for the statistics only); a
per-channel scale covers a whole row. Codebook tables cover the flattened tensor, or
contiguous chunks of ``group_size`` values.

Adding a format of an existing kind touches only :mod:`planner.formats`; a new kind
adds one :class:`KindHandler` entry here.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from planner.backends.grids import (
    NF4_LEVELS,
    decode_minifloat,
    minifloat_max,
    nearest_level,
    round_to_minifloat,
)
from planner.backends.packing import pack_bits, unpack_bits
from planner.formats import Format, get_format

__all__ = [
    "HANDLERS",
    "KindHandler",
    "QuantizedTensor",
    "check_weight",
    "dequantize",
    "fake_quantize",
    "quantize_tensor",
    "rows_independent",
    "sqnr_db",
]

_FP16_MAX = 65504.0
_FP8_DTYPES = {(4, 3): torch.float8_e4m3fn, (5, 2): torch.float8_e5m2}
_E8M0_BIAS = 127  # OCP MX v1.0 Sec. 5.4: E8M0 scale = 2^(code - 127), code 255 = NaN


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizedTensor:
    """A weight stored in ``format``: ``payload`` maps names to the stored tensors.

    ``decompose()`` returns ``(elements, scale, offset)``, each ``float32`` of ``shape``,
    with ``dequantize() == (elements - offset) * scale``; ``elements`` lie on the
    format's element grid (integer codes, minifloat values, NF4 levels, centroids).
    """

    format: str
    shape: tuple[int, int]
    payload: Mapping[str, torch.Tensor]

    @property
    def fmt(self) -> Format:
        return get_format(self.format)

    def nbytes(self) -> int:
        """Real storage in bytes: the sum over every payload tensor of ``numel × element_size``."""
        return sum(t.numel() * t.element_size() for t in self.payload.values())

    def decompose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fmt = self.fmt
        return HANDLERS[fmt.kind].decompose(self, fmt)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense ``[out, in]`` tensor this payload represents, in ``dtype``."""
        elements, scale, offset = self.decompose()
        return ((elements - offset) * scale).to(dtype)


@dataclass(frozen=True, slots=True, kw_only=True)
class KindHandler:
    """Quantise a float32 ``[out, in]`` weight into a payload, and decompose a payload back."""

    quantize: Callable[[torch.Tensor, Format], dict[str, torch.Tensor]]
    decompose: Callable[[QuantizedTensor, Format], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


# -- shared utilities ---------------------------------------------------------------------------


def check_weight(w: object, where: str) -> torch.Tensor:
    """``w`` as a float32 2-D tensor, or a clear error naming what is wrong."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor weight; got {type(w).__name__}")
    if w.dim() != 2:
        raise ValueError(f"{where} expects a 2-D [out_features, in_features] weight; got shape {tuple(w.shape)} "
                         "(reshape convolutions to [out, in·kh·kw] first)")
    if not w.is_floating_point():
        raise TypeError(f"{where} expects a floating-point weight; got dtype {w.dtype}")
    if w.numel() == 0:
        raise ValueError(f"{where} expects a non-empty weight; got shape {tuple(w.shape)}")
    w32 = w.detach().to(torch.float32)
    if not bool(torch.isfinite(w32).all()):
        raise ValueError(f"{where}: the weight holds {int((~torch.isfinite(w32)).sum())} NaN/inf values; "
                         "quantise finite weights only")
    return w32


def _group_size(fmt: Format, cols: int) -> int:
    return cols if fmt.per_channel else int(fmt.group_size)  # type: ignore[arg-type]


def _to_groups(w: torch.Tensor, g: int) -> torch.Tensor:
    """``[rows, cols]`` → ``[rows, ceil(cols/g), g]``, zero-padded on the right."""
    rows, cols = w.shape
    pad = (-cols) % g
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(rows, -1, g)


def _from_groups(x: torch.Tensor, cols: int) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)[:, :cols]


def _expand(per_group: torch.Tensor, g: int, cols: int) -> torch.Tensor:
    """A ``[rows, groups]`` statistic repeated over its group → ``[rows, cols]``."""
    return _from_groups(per_group.unsqueeze(-1).expand(*per_group.shape, g), cols)


def _safe_div(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x / scale`` with 0 where the scale is 0 (all-zero groups)."""
    return torch.where(scale > 0, x / torch.where(scale > 0, scale, torch.ones_like(scale)), torch.zeros_like(x))


def _fp16_scale(scale: torch.Tensor, fmt: Format) -> torch.Tensor:
    if bool((scale > _FP16_MAX).any()):
        raise ValueError(f"format {fmt.name!r}: a scale of {float(scale.max()):.4g} exceeds the fp16 maximum "
                         f"{_FP16_MAX:g}; the weight's magnitude is too large for fp16 scales, use bf16/fp32 "
                         "or a format with a wider scale")
    return scale.to(torch.float16)


def _floor_log2(x: torch.Tensor) -> torch.Tensor:
    """``floor(log2(x))`` exactly for ``x > 0`` (via frexp: x = m·2^e with 0.5 ≤ m < 1)."""
    return torch.frexp(x).exponent.to(torch.int32) - 1


# Set by :func:`fake_quantize` only: codes stay one per byte instead of being bit-packed, so
# the same handlers give the same dequantised values without the packing round trip.
_UNPACKED_CODES: contextvars.ContextVar[bool] = contextvars.ContextVar("unpacked_codes", default=False)


def _pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    if _UNPACKED_CODES.get():
        return codes.reshape(-1).to(torch.uint8)
    return pack_bits(codes.reshape(-1), bits)


def _unpack_stream(stream: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """``count`` codes of a stream written by :func:`_pack_codes` (1-D ``uint8``)."""
    if _UNPACKED_CODES.get():
        return stream
    return unpack_bits(stream, bits, count)


def _unpack_codes(qt: QuantizedTensor, key: str, bits: int) -> torch.Tensor:
    rows, cols = qt.shape
    return _unpack_stream(qt.payload[key], bits, rows * cols).reshape(rows, cols).to(torch.int64)


def _ones(qt: QuantizedTensor, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(qt.shape, dtype=torch.float32, device=like.device)


def _zeros(qt: QuantizedTensor, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros(qt.shape, dtype=torch.float32, device=like.device)


def _round_minifloat(x: torch.Tensor, exponent_bits: int, mantissa_bits: int) -> torch.Tensor:
    """:func:`~planner.backends.grids.round_to_minifloat`, code for code: E4M3 and E5M2 through
    torch's own float8 cast (round to nearest even, ~50x faster than the grid search) after
    clamping to the largest finite value (the grid saturates; the cast would give NaN/inf);
    ``+ 0.0`` turns a ``-0.0`` input into ``+0.0``, which the grid codes as +0. Other element
    types use the grid search. ``tests/test_quantize_fast.py`` checks both agree."""
    dtype = _FP8_DTYPES.get((exponent_bits, mantissa_bits))
    if dtype is None:
        return round_to_minifloat(x, exponent_bits, mantissa_bits)
    limit = minifloat_max(exponent_bits, mantissa_bits)
    return (x.to(torch.float32).clamp(-limit, limit) + 0.0).to(dtype).view(torch.uint8)


# -- float: fp32 / bf16 / fp16 stored as is; fp8 with one fp32 scale per tensor -------------------

def _plain_dtype(fmt: Format) -> torch.dtype | None:
    if fmt.element_bits == 32:
        return torch.float32
    if fmt.element_bits == 16:
        return torch.bfloat16 if fmt.exponent_bits == 8 else torch.float16
    return None


def _float_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    dtype = _plain_dtype(fmt)
    if dtype is not None:
        if dtype == torch.float16 and float(w.abs().max()) > _FP16_MAX:
            raise ValueError(f"format 'fp16': |w| reaches {float(w.abs().max()):.4g}, above the fp16 maximum "
                             f"{_FP16_MAX:g}; use bf16 or a scaled format")
        return {"values": w.to(dtype)}
    e, m = fmt.exponent_bits, fmt.mantissa_bits
    # Per-tensor scale maps amax onto the largest finite value (Micikevicius et al. 2022, Sec. 4).
    amax = w.abs().max()
    scale = (amax / minifloat_max(e, m)) if float(amax) > 0 else torch.ones((), device=w.device)
    codes = _round_minifloat(w / scale, e, m)
    return {"values": codes.view(_FP8_DTYPES[(e, m)]), "tensor_scale": scale.reshape(1).to(torch.float32)}


def _float_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    values = qt.payload["values"].to(torch.float32)
    scale = _ones(qt, values)
    if "tensor_scale" in qt.payload:
        scale = scale * qt.payload["tensor_scale"]
    return values, scale, _zeros(qt, values)


# -- int: symmetric (codes in [-2^(b-1), 2^(b-1)-1]) or asymmetric with a b-bit zero-point ---------


def _int_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    b = fmt.element_bits
    g = _group_size(fmt, w.shape[1])
    x = _to_groups(w, g)
    if fmt.is_symmetric:
        qmax = 2 ** (b - 1) - 1
        scale16 = _fp16_scale(x.abs().amax(dim=-1) / qmax, fmt)
        s = scale16.to(torch.float32).unsqueeze(-1)
        q = torch.round(_safe_div(x, s)).clamp(-qmax - 1, qmax)
        q = _from_groups(q, w.shape[1])
        codes = q.to(torch.int8) if b == 8 else _pack_codes((q + 2 ** (b - 1)).to(torch.uint8), b)
        return {"codes": codes, "scales": scale16}
    # Asymmetric (GPTQ): the range is widened to include 0 so that zero is exact.
    levels = 2**b - 1
    lo = x.amin(dim=-1).clamp(max=0)
    hi = x.amax(dim=-1).clamp(min=0)
    scale16 = _fp16_scale((hi - lo) / levels, fmt)
    s = scale16.to(torch.float32)
    zero = torch.round(_safe_div(-lo, s)).clamp(0, levels)
    q = (torch.round(_safe_div(x, s.unsqueeze(-1))) + zero.unsqueeze(-1)).clamp(0, levels)
    q = _from_groups(q, w.shape[1]).to(torch.uint8)
    return {"codes": _pack_codes(q, b), "scales": scale16, "zeros": _pack_codes(zero.to(torch.uint8), b)}


def _int_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b = fmt.element_bits
    rows, cols = qt.shape
    g = _group_size(fmt, cols)
    scales = qt.payload["scales"].to(torch.float32)
    scale = _expand(scales, g, cols)
    if fmt.is_symmetric:
        codes = qt.payload["codes"]
        if codes.dtype == torch.int8:
            q = codes.to(torch.float32)
        else:
            q = (_unpack_codes(qt, "codes", b) - 2 ** (b - 1)).to(torch.float32)
        return q, scale, _zeros(qt, q)
    q = _unpack_codes(qt, "codes", b).to(torch.float32)
    zeros = _unpack_stream(qt.payload["zeros"], b, scales.numel()).reshape(scales.shape).to(torch.float32)
    return q, scale, _expand(zeros, g, cols)


# -- minifloat: E/M elements with an fp16 scale per channel (or group) ------------------------------


def _minifloat_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    e, m = fmt.exponent_bits, fmt.mantissa_bits
    x = _to_groups(w, _group_size(fmt, w.shape[1]))
    scale16 = _fp16_scale(x.abs().amax(dim=-1) / minifloat_max(e, m), fmt)
    codes = _round_minifloat(_safe_div(x, scale16.to(torch.float32).unsqueeze(-1)), e, m)
    return {"codes": _pack_codes(_from_groups(codes, w.shape[1]), fmt.element_bits), "scales": scale16}


def _minifloat_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cols = qt.shape[1]
    elements = decode_minifloat(_unpack_codes(qt, "codes", fmt.element_bits), fmt.exponent_bits, fmt.mantissa_bits)
    scale = _expand(qt.payload["scales"].to(torch.float32), _group_size(fmt, cols), cols)
    return elements, scale, _zeros(qt, elements)


# -- MX: E8M0 power-of-two scale per 32 = 2^(floor(log2 amax) - emax_elem) (OCP MX v1.0 Sec. 6.3) ----


def _store_elements(codes: torch.Tensor, fmt: Format) -> torch.Tensor:
    """8-bit minifloat codes as the native float8 dtype; narrower ones packed."""
    if fmt.element_bits == 8:
        return codes.contiguous().view(_FP8_DTYPES[(fmt.exponent_bits, fmt.mantissa_bits)])
    return _pack_codes(codes, fmt.element_bits)


def _load_elements(qt: QuantizedTensor, fmt: Format) -> torch.Tensor:
    stored = qt.payload["codes"]
    if fmt.element_bits == 8:
        return stored.to(torch.float32)
    return decode_minifloat(_unpack_codes(qt, "codes", fmt.element_bits), fmt.exponent_bits, fmt.mantissa_bits)


def _mx_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    e, m = fmt.exponent_bits, fmt.mantissa_bits
    x = _to_groups(w, int(fmt.group_size))  # type: ignore[arg-type]
    amax = x.abs().amax(dim=-1)
    emax_elem = math.floor(math.log2(minifloat_max(e, m)))  # e2m1 2, e2m3 2, e3m2 4, e4m3 8
    shared = torch.where(amax > 0, _floor_log2(amax) - emax_elem, torch.full_like(amax, -_E8M0_BIAS, dtype=torch.int32))
    shared = shared.clamp(-_E8M0_BIAS, _E8M0_BIAS)
    codes = _round_minifloat(torch.ldexp(x, -shared.unsqueeze(-1).to(torch.float32)), e, m)
    e8m0 = (shared + _E8M0_BIAS).to(torch.uint8).view(torch.float8_e8m0fnu)
    return {"codes": _store_elements(_from_groups(codes, w.shape[1]), fmt), "scales": e8m0}


def _mx_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cols = qt.shape[1]
    exps = qt.payload["scales"].view(torch.uint8).to(torch.float32) - _E8M0_BIAS
    scale = _expand(torch.ldexp(torch.ones_like(exps), exps), int(fmt.group_size), cols)  # type: ignore[arg-type]
    elements = _load_elements(qt, fmt)
    return elements, scale, _zeros(qt, elements)


# -- NVFP4: E2M1 elements, E4M3 scale per 16 (= amax/6), fp32 per-tensor scale ---------------------


def _nvfp_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    e, m = fmt.exponent_bits, fmt.mantissa_bits
    elem_max = minifloat_max(e, m)          # 6
    scale_max = minifloat_max(4, 3)         # 448
    amax = w.abs().max()
    # Global scale puts the largest block scale at the top of E4M3 (NVIDIA NVFP4 blog, "two-level scaling").
    global_scale = amax / (elem_max * scale_max) if float(amax) > 0 else torch.ones((), device=w.device)
    global_scale = global_scale.to(torch.float32)
    x = _to_groups(w, int(fmt.group_size))  # type: ignore[arg-type]
    block_codes = _round_minifloat(x.abs().amax(dim=-1) / elem_max / global_scale, 4, 3)
    eff = decode_minifloat(block_codes, 4, 3) * global_scale
    codes = _round_minifloat(_safe_div(x, eff.unsqueeze(-1)), e, m)
    return {
        "codes": _pack_codes(_from_groups(codes, w.shape[1]), fmt.element_bits),
        "scales": block_codes.view(torch.float8_e4m3fn),
        "tensor_scale": global_scale.reshape(1),
    }


def _nvfp_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cols = qt.shape[1]
    eff = qt.payload["scales"].to(torch.float32) * qt.payload["tensor_scale"]
    elements = _load_elements(qt, fmt)
    return elements, _expand(eff, int(fmt.group_size), cols), _zeros(qt, elements)  # type: ignore[arg-type]


# -- NF4: 16 normal-float levels times an absmax per 64 (QLoRA), optionally double-quantised -------


def _nf_absmax_dq(absmax: torch.Tensor, fmt: Format) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """QLoRA double quantisation: centre the absmax values on their mean, store them as 8-bit
    floats (OCP E4M3 here) with one fp32 scale per ``scale_group_size`` of them."""
    flat = absmax.reshape(-1)
    mean = flat.mean()
    centred = flat - mean
    sg = int(fmt.scale_group_size)  # type: ignore[arg-type]
    pad = (-flat.numel()) % sg
    blocks = torch.nn.functional.pad(centred, (0, pad)).reshape(-1, sg)
    s2 = blocks.abs().amax(dim=-1) / minifloat_max(4, 3)
    codes = _round_minifloat(_safe_div(blocks, s2.unsqueeze(-1)), 4, 3).reshape(-1)[: flat.numel()]
    payload = {"absmax": codes.view(torch.float8_e4m3fn), "absmax_scale": s2.to(torch.float32),
               "absmax_mean": mean.reshape(1).to(torch.float32)}
    return payload, _nf_dq_absmax(payload, sg).reshape(absmax.shape)


def _nf_dq_absmax(payload: Mapping[str, torch.Tensor], sg: int) -> torch.Tensor:
    q = payload["absmax"].to(torch.float32)
    s2 = payload["absmax_scale"].repeat_interleave(sg)[: q.numel()]
    return q * s2 + payload["absmax_mean"]


def _nf_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    g = int(fmt.group_size)  # type: ignore[arg-type]
    x = _to_groups(w, g)
    absmax = x.abs().amax(dim=-1)
    if fmt.scale_group_size is None:
        payload: dict[str, torch.Tensor] = {"absmax": absmax.to(torch.float32)}
        used = absmax
    else:
        payload, used = _nf_absmax_dq(absmax, fmt)
    levels = torch.tensor(NF4_LEVELS, dtype=torch.float32, device=w.device)
    # A non-positive reconstructed absmax only happens for (near-)zero blocks: code 7 is 0.0.
    idx = torch.where(used.unsqueeze(-1) > 0, nearest_level(_safe_div(x, used.unsqueeze(-1)), levels),
                      torch.full_like(x, 7, dtype=torch.int64))
    payload["codes"] = _pack_codes(_from_groups(idx, w.shape[1]).to(torch.uint8), 4)
    return payload


def _nf_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, cols = qt.shape
    g = int(fmt.group_size)  # type: ignore[arg-type]
    groups = math.ceil(cols / g)
    if fmt.scale_group_size is None:
        absmax = qt.payload["absmax"].to(torch.float32)
    else:
        absmax = _nf_dq_absmax(qt.payload, int(fmt.scale_group_size)).reshape(rows, groups)
    levels = torch.tensor(NF4_LEVELS, dtype=torch.float32, device=absmax.device)
    elements = levels[_unpack_codes(qt, "codes", 4)]
    return elements, _expand(absmax, g, cols), _zeros(qt, elements)


# -- block floating point: shared 8-bit exponent per block, sign-magnitude mantissas (MSFP) ------


def _bfp_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    m = fmt.mantissa_bits
    x = _to_groups(w, int(fmt.group_size))  # type: ignore[arg-type]
    amax = x.abs().amax(dim=-1)
    shared = torch.where(amax > 0, _floor_log2(amax), torch.full_like(amax, -127, dtype=torch.int32)).clamp(-127, 127)
    # The largest magnitude lands in [2^(m-1), 2^m): its leading one is the top mantissa bit.
    lsb = (shared - (m - 1)).unsqueeze(-1).to(torch.float32)
    mag = torch.round(torch.ldexp(x.abs(), -lsb)).clamp(max=2**m - 1)
    codes = mag.to(torch.int64) | (((x < 0) & (mag > 0)).to(torch.int64) << m)
    return {"codes": _pack_codes(_from_groups(codes, w.shape[1]).to(torch.uint8), fmt.element_bits),
            "exponents": (shared + 127).to(torch.uint8)}


def _bfp_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = fmt.mantissa_bits
    cols = qt.shape[1]
    codes = _unpack_codes(qt, "codes", fmt.element_bits)
    mag = (codes & (2**m - 1)).to(torch.float32)
    elements = torch.where((codes >> m) & 1 == 1, -mag, mag)
    lsb = qt.payload["exponents"].to(torch.float32) - 127 - (m - 1)
    scale = _expand(torch.ldexp(torch.ones_like(lsb), lsb), int(fmt.group_size), cols)  # type: ignore[arg-type]
    return elements, scale, _zeros(qt, elements)


# -- codebook: 1-D k-means (Lloyd) with 2^b fp16 centroids per table ---------------------------------

# 100 Lloyd iterations bring a 16-level codebook on Gaussian data to within 0.05 dB of the
# Lloyd-Max optimum (20.22 dB; Max 1960, Table I); 12 stop about 1 dB short.
_KMEANS_ITERS = 100


def _nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted ``centroids [T, K]`` for ``x [T, L]``."""
    if centroids.shape[1] == 1:
        return torch.zeros_like(x, dtype=torch.int64)
    mids = ((centroids[:, 1:] + centroids[:, :-1]) / 2).contiguous()
    return torch.searchsorted(mids, x.contiguous())


def _kmeans_1d(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids (fp16 values, sorted, ``[T, k]``) and assignments (``[T, L]``) for each row of ``x``.

    Deterministic: initialised at the (i + 0.5)/k quantiles, then Lloyd iterations. In 1-D
    on sorted data every cluster is a contiguous run between centroid midpoints, so one
    iteration is k binary searches plus prefix-sum differences, not ``L × k`` distances.
    """
    tables, length = x.shape
    xs = x.sort(dim=1).values.contiguous()
    prefix = torch.nn.functional.pad(xs.to(torch.float64).cumsum(dim=1), (1, 0))
    pos = ((torch.arange(k, dtype=torch.float64) + 0.5) / k * length).long().clamp(max=length - 1)
    centroids = xs[:, pos.to(x.device)].to(torch.float64)
    ends = torch.full((tables, 1), length, dtype=torch.int64, device=x.device)
    for _ in range(_KMEANS_ITERS):
        mids = ((centroids[:, 1:] + centroids[:, :-1]) / 2).to(torch.float32).contiguous()
        # Values <= a midpoint go to the lower centroid (as _nearest_centroid assigns them).
        bounds = torch.cat([torch.searchsorted(xs, mids, right=True), ends], dim=1)
        starts = torch.nn.functional.pad(bounds[:, :-1], (1, 0))
        counts = bounds - starts
        sums = prefix.gather(1, bounds) - prefix.gather(1, starts)
        # Empty clusters keep their centroid.
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids).sort(dim=1).values
        if torch.equal(updated, centroids):
            break
        centroids = updated
    stored = centroids.to(torch.float16).to(torch.float32).sort(dim=1).values
    return stored, _nearest_centroid(x, stored)


def _codebook_tables(n: int, fmt: Format) -> list[tuple[int, int]]:
    """(start, length) of each table's chunk of the flattened tensor."""
    g = n if fmt.group_size is None else min(int(fmt.group_size), n)
    return [(start, min(g, n - start)) for start in range(0, n, g)]


def _codebook_quantize(w: torch.Tensor, fmt: Format) -> dict[str, torch.Tensor]:
    if float(w.abs().max()) > _FP16_MAX:
        raise ValueError(f"format {fmt.name!r}: |w| reaches {float(w.abs().max()):.4g}, above the fp16 maximum "
                         f"{_FP16_MAX:g} of the centroids")
    flat = w.reshape(-1)
    chunks = _codebook_tables(flat.numel(), fmt)
    full = [c for c in chunks if c[1] == chunks[0][1]]
    k = fmt.lut_entries
    centroids, codes = [], []
    # Equal-length chunks run as one batch; a shorter tail chunk runs alone.
    c_full, i_full = _kmeans_1d(flat[: len(full) * chunks[0][1]].reshape(len(full), -1), k)
    centroids.append(c_full)
    codes.append(i_full.reshape(-1))
    if len(full) < len(chunks):
        start, length = chunks[-1]
        c_tail, i_tail = _kmeans_1d(flat[start:].reshape(1, length), k)
        centroids.append(c_tail)
        codes.append(i_tail.reshape(-1))
    return {"centroids": torch.cat(centroids).to(torch.float16),
            "codes": _pack_codes(torch.cat(codes).to(torch.uint8), fmt.element_bits)}


def _codebook_decompose(qt: QuantizedTensor, fmt: Format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, cols = qt.shape
    n = rows * cols
    centroids = qt.payload["centroids"].to(torch.float32)
    idx = _unpack_stream(qt.payload["codes"], fmt.element_bits, n).to(torch.int64)
    table = torch.cat([torch.full((length,), t, dtype=torch.int64, device=idx.device)
                       for t, (_, length) in enumerate(_codebook_tables(n, fmt))])
    elements = centroids[table, idx].reshape(rows, cols)
    return elements, _ones(qt, elements), _zeros(qt, elements)


#: One handler per format kind: adding a kind touches this table, not the callers.
HANDLERS: dict[str, KindHandler] = {
    "float": KindHandler(quantize=_float_quantize, decompose=_float_decompose),
    "int": KindHandler(quantize=_int_quantize, decompose=_int_decompose),
    "minifloat": KindHandler(quantize=_minifloat_quantize, decompose=_minifloat_decompose),
    "mx": KindHandler(quantize=_mx_quantize, decompose=_mx_decompose),
    "nvfp": KindHandler(quantize=_nvfp_quantize, decompose=_nvfp_decompose),
    "nf": KindHandler(quantize=_nf_quantize, decompose=_nf_decompose),
    "bfp": KindHandler(quantize=_bfp_quantize, decompose=_bfp_decompose),
    "codebook": KindHandler(quantize=_codebook_quantize, decompose=_codebook_decompose),
}


def quantize_tensor(w: torch.Tensor, fmt: Format | str) -> QuantizedTensor:
    """Quantise a 2-D ``[out_features, in_features]`` float weight into ``fmt``."""
    spec = get_format(fmt)
    w32 = check_weight(w, f"quantize_tensor(format={spec.name!r})")
    handler = HANDLERS.get(spec.kind)
    if handler is None:
        raise NotImplementedError(f"no quantisation handler for format kind {spec.kind!r} ({spec.name!r}); "
                                  f"known kinds: {', '.join(HANDLERS)}")
    payload = handler.quantize(w32, spec)
    return QuantizedTensor(format=spec.name, shape=(int(w.shape[0]), int(w.shape[1])), payload=payload)


def fake_quantize(w: torch.Tensor, fmt: Format | str) -> torch.Tensor:
    """``quantize_tensor(w, fmt).dequantize()`` — the same values, bit for bit — without packing
    the codes into a bit stream and unpacking them again (codes stay one per byte in between).

    For measurements that need the weight a format computes with, not its storage
    (``tierwise sensitivity``); :meth:`QuantizedTensor.nbytes` of the packed form is the storage.
    """
    spec = get_format(fmt)
    w32 = check_weight(w, f"fake_quantize(format={spec.name!r})")
    handler = HANDLERS.get(spec.kind)
    if handler is None:
        raise NotImplementedError(f"no quantisation handler for format kind {spec.kind!r} ({spec.name!r}); "
                                  f"known kinds: {', '.join(HANDLERS)}")
    token = _UNPACKED_CODES.set(True)
    try:
        payload = handler.quantize(w32, spec)
        qt = QuantizedTensor(format=spec.name, shape=(int(w.shape[0]), int(w.shape[1])), payload=payload)
        return qt.dequantize()
    finally:
        _UNPACKED_CODES.reset(token)


def rows_independent(fmt: Format | str) -> bool:
    """Whether every row of a weight quantises to the same values alone as inside the whole
    tensor: true when all scales, zero-points and tables are per row or per group within a row
    (int, minifloat, MX, BFP, NF4 without double quantisation, plain 16/32-bit floats); false
    for per-tensor statistics (fp8's tensor scale, NVFP4's global scale, NF4's double-quantised
    absmax blocks, codebook tables over the flattened tensor)."""
    spec = get_format(fmt)
    if spec.kind in ("int", "minifloat", "mx", "bfp"):
        return True
    if spec.kind == "nf":
        return spec.scale_group_size is None
    if spec.kind == "float":
        return _plain_dtype(spec) is not None
    return False


def dequantize(qt: QuantizedTensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Function form of :meth:`QuantizedTensor.dequantize`."""
    return qt.dequantize(dtype)


def sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantisation-noise ratio ``10·log10(Σ ref² / Σ (ref − approx)²)`` in dB
    (``inf`` for an exact copy)."""
    if ref.shape != approx.shape:
        raise ValueError(f"sqnr_db needs tensors of one shape; got {tuple(ref.shape)} and {tuple(approx.shape)}")
    r = ref.detach().to(torch.float64)
    noise = float(((r - approx.detach().to(torch.float64)) ** 2).sum())
    signal = float((r**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
