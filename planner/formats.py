"""Numeric formats, sparsity and low-rank factorisation priced in bits (pure, no torch).

One registry holds every storage/compute format the planner may choose. Each
:class:`Format` prices itself in *effective bits per value*, counting the shared
scales, zero-points, look-up tables and per-tensor scales that real kernels store:

    bits/value = b + (scale_bits + zero_point_bits) · scales / N
                   + second-level scale bits / N + tensor_scale_bits / N
                   + lut_entries · lut_entry_bits · tables / N

for ``N = rows · cols`` values (the group-wise layouts of GPTQ/AWQ, OCP MX v1.0 and NVFP4
give b + (s_bits + z_bits)/g + global/N). Groups run along the input dimension (``cols``)
of each output row, so a row of ``cols`` values holds ``ceil(cols / group_size)``
scales; a per-channel format holds one scale per row. Codebook look-up tables cover
the whole tensor, or ``ceil(N / group_size)`` contiguous chunks of the flattened
tensor for the ``cbB-gN`` variants.

When ``rows`` / ``cols`` are not given the prices use a 4096 × 4096 matrix
(:data:`DEFAULT_ROWS`, :data:`DEFAULT_COLS`), a typical hidden size of 7–8 B
parameter LLMs. Only per-channel, per-tensor and look-up-table overheads depend on
it, and for those the default changes the price by less than 0.01 bit.

Bytes are ``ceil(n · bits / 8)`` computed with exact fractions: sub-byte formats
never round to an integer number of bytes per value.

Sparsity (:class:`Sparsity`) and low rank (:class:`LowRank`) are priced the same
way; :func:`combined_bits_per_weight` prices a format stored sparsely.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hwmodels.format_support import FAMILIES
from hwmodels.errors import TierwiseError, echo_value

__all__ = [
    "DEFAULT_COLS",
    "DEFAULT_ROWS",
    "FAMILIES",
    "HW_PRECISIONS",
    "KINDS",
    "ROLES",
    "Format",
    "FormatError",
    "LowRank",
    "NumericsError",
    "resolve_numerics",
    "SPARSE_ENCODINGS",
    "Sparsity",
    "SparsityError",
    "combined_bits_per_weight",
    "format_names",
    "get_format",
    "list_formats",
    "parse_sparsity",
]

#: Matrix shape assumed when a price needs ``rows``/``cols`` and none is given.
DEFAULT_ROWS = 4096
DEFAULT_COLS = 4096

KINDS = ("float", "int", "nf", "mx", "nvfp", "bfp", "minifloat", "codebook")
#: Keys of a hardware profile's ``peak_flops`` table that a format can run at.
HW_PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
ROLES = ("weight", "activation", "kv")
# The float types an engine can dequantize a weight into before a GEMM (planner.engines.Runtime.dequant_copy_dtype).
DEQUANT_COPY_DTYPES = ("fp32", "fp16", "bf16")


def cast_copy_bits(copy_dtype: str | None, compute: str) -> float:
    """Bits per weight value of the copy a dequantize-then-GEMM matmul casts from: bitsandbytes dequantizes to
    the dtype a weight was quantized from (``copy_dtype``) and then casts to the ``compute`` type
    (``dequantize_4bit(B, quant_state).to(A.dtype)``), so both copies are alive while the cast runs. 0 when the
    copy is made in the compute type (``copy_dtype`` None or the same; tf32 computes on fp32 values)."""
    if copy_dtype is None or copy_dtype == ("fp32" if compute == "tf32" else compute):
        return 0.0
    return get_format(copy_dtype).bits_per_value()
# FAMILIES (re-exported) is the one family vocabulary, owned by hwmodels.format_support: each
# format's ``family`` is the name hardware profiles declare support with.

# Kinds whose elements are sign + exponent + mantissa (1 + E + M = element_bits).
_FLOAT_LIKE = frozenset({"float", "mx", "nvfp", "minifloat"})


class FormatError(TierwiseError, ValueError):
    """An unknown format name or an invalid format parameter."""

    code = "invalid_format"


class SparsityError(TierwiseError, ValueError):
    """An unknown or invalid sparsity specification."""

    code = "invalid_format"


def _param_error(cls: type[Exception], param: str, owner: str, expected: str, got: object) -> Exception:
    # One template for every bad parameter (scikit-learn's parameter constraints).
    return cls(f"The '{param}' parameter of {owner} must be {expected}. Got {got!r} instead.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_shape_arg(name: str, value: int | None, owner: str, cls: type[Exception]) -> int | None:
    if value is not None and (not _is_int(value) or value < 1):
        raise _param_error(cls, name, owner, "an int in [1, inf) or None", value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Format:
    """A numeric storage/compute format and its price in bits.

    Fields follow the encoding: ``element_bits`` per stored element; one
    ``scale_bits`` scale (and ``zero_point_bits`` zero-point) per ``group_size``
    values along a row, or per row when ``per_channel``; ``tensor_scale_bits`` once
    per tensor (fp8's fp32 scale, NVFP4's fp32 global scale, NF4-DQ's fp32 mean);
    a second level of ``scale_scale_bits`` per ``scale_group_size`` scales (NF4
    double quantisation); ``lut_entries`` look-up-table entries of
    ``lut_entry_bits`` each per table (codebooks).
    """

    name: str
    kind: str
    element_bits: int
    group_size: int | None
    scale_bits: int
    zero_point_bits: int
    per_channel: bool
    exponent_bits: int
    mantissa_bits: int
    lut_entries: int
    hw_precision: str
    family: str
    is_weight: bool
    is_activation: bool
    is_kv: bool
    source: str
    tensor_scale_bits: int = 0
    scale_group_size: int | None = None
    scale_scale_bits: int = 0
    lut_entry_bits: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        owner = f"Format {self.name!r}"
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise _param_error(FormatError, "name", "Format", "a non-empty lower-case string without spaces", self.name)
        if self.kind not in KINDS:
            raise _param_error(FormatError, "kind", owner, f"one of {', '.join(KINDS)}", self.kind)
        if not _is_int(self.element_bits) or not 1 <= self.element_bits <= 32:
            raise _param_error(FormatError, "element_bits", owner, "an int in [1, 32]", self.element_bits)
        if self.group_size is not None and (not _is_int(self.group_size) or self.group_size < 1):
            raise _param_error(FormatError, "group_size", owner, "an int in [1, inf) or None", self.group_size)
        for flag in ("per_channel", "is_weight", "is_activation", "is_kv"):
            if not isinstance(getattr(self, flag), bool):
                raise _param_error(FormatError, flag, owner, "a bool", getattr(self, flag))
        for field in ("scale_bits", "zero_point_bits", "exponent_bits", "mantissa_bits", "lut_entries",
                      "tensor_scale_bits", "scale_scale_bits", "lut_entry_bits"):
            value = getattr(self, field)
            if not _is_int(value) or value < 0:
                raise _param_error(FormatError, field, owner, "an int in [0, inf)", value)
        if self.per_channel and self.group_size is not None:
            raise _param_error(FormatError, "group_size", owner,
                               "None when per_channel is True (a per-channel scale covers the whole row)",
                               self.group_size)
        grouped = self.per_channel or self.group_size is not None
        if self.kind == "codebook":
            if self.lut_entries != 2**self.element_bits:
                raise _param_error(FormatError, "lut_entries", owner,
                                   f"2**element_bits = {2**self.element_bits} for a codebook", self.lut_entries)
            if self.lut_entry_bits < 1:
                raise _param_error(FormatError, "lut_entry_bits", owner, "an int in [1, inf) for a codebook",
                                   self.lut_entry_bits)
            if self.scale_bits or self.zero_point_bits or self.per_channel:
                raise _param_error(FormatError, "scale_bits", owner,
                                   "0 for a codebook (its look-up table replaces scales)", self.scale_bits)
        else:
            if self.lut_entries or self.lut_entry_bits:
                raise _param_error(FormatError, "lut_entries", owner, "0 unless kind is 'codebook'",
                                   self.lut_entries)
            if grouped and self.scale_bits < 1:
                raise _param_error(FormatError, "scale_bits", owner,
                                   "an int in [1, inf) when values share a group or channel scale", self.scale_bits)
            if not grouped and (self.scale_bits or self.zero_point_bits):
                raise _param_error(FormatError, "scale_bits", owner,
                                   "0 without group_size or per_channel (use tensor_scale_bits for one scale "
                                   "per tensor)", self.scale_bits)
        if self.zero_point_bits and self.kind != "int":
            raise _param_error(FormatError, "zero_point_bits", owner, "0 unless kind is 'int'", self.zero_point_bits)
        if self.kind in _FLOAT_LIKE:
            if 1 + self.exponent_bits + self.mantissa_bits != self.element_bits or self.exponent_bits < 1:
                raise _param_error(FormatError, "exponent_bits", owner,
                                   f"E >= 1 with 1 + E + M = element_bits ({self.element_bits}) for a "
                                   f"{self.kind} format", (self.exponent_bits, self.mantissa_bits))
        elif self.kind == "bfp":
            # Sign-magnitude mantissas under a shared exponent (MSFP).
            if self.exponent_bits != 0 or self.mantissa_bits != self.element_bits - 1:
                raise _param_error(FormatError, "mantissa_bits", owner,
                                   f"element_bits - 1 = {self.element_bits - 1} with exponent_bits 0 for "
                                   "block floating point", self.mantissa_bits)
        elif self.exponent_bits or self.mantissa_bits:
            raise _param_error(FormatError, "exponent_bits", owner, f"0 for a {self.kind} format",
                               (self.exponent_bits, self.mantissa_bits))
        if self.scale_group_size is not None:
            if not _is_int(self.scale_group_size) or self.scale_group_size < 1:
                raise _param_error(FormatError, "scale_group_size", owner, "an int in [1, inf) or None",
                                   self.scale_group_size)
            if not grouped or self.scale_scale_bits < 1:
                raise _param_error(FormatError, "scale_scale_bits", owner,
                                   "an int in [1, inf) on a grouped format when scale_group_size is set",
                                   self.scale_scale_bits)
        elif self.scale_scale_bits:
            raise _param_error(FormatError, "scale_scale_bits", owner, "0 when scale_group_size is None",
                               self.scale_scale_bits)
        if self.hw_precision not in HW_PRECISIONS:
            raise _param_error(FormatError, "hw_precision", owner, f"one of {', '.join(HW_PRECISIONS)}",
                               self.hw_precision)
        if self.family not in FAMILIES:
            raise _param_error(FormatError, "family", owner, f"one of {', '.join(FAMILIES)}", self.family)
        if not (self.is_weight or self.is_activation or self.is_kv):
            raise _param_error(FormatError, "is_weight", owner,
                               "True, or is_activation / is_kv True (a format needs a role)", self.is_weight)
        if not isinstance(self.source, str) or not self.source.strip():
            raise _param_error(FormatError, "source", owner, "a non-empty citation", self.source)

    # -- pricing -----------------------------------------------------------------------------

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles this format may fill: a subset of ``ROLES``."""
        flags = (self.is_weight, self.is_activation, self.is_kv)
        return tuple(role for role, flag in zip(ROLES, flags) if flag)

    @property
    def is_symmetric(self) -> bool:
        return self.zero_point_bits == 0

    def scales_per_tensor(self, rows: int | None = None, cols: int | None = None) -> int:
        """Number of first-level scales of a ``rows × cols`` tensor (0 for ungrouped formats)."""
        r, c = self._shape(rows, cols)
        if self.per_channel:
            return r
        if self.group_size is not None and self.kind != "codebook":
            return r * math.ceil(c / self.group_size)
        return 0

    def luts_per_tensor(self, rows: int | None = None, cols: int | None = None) -> int:
        """Number of codebook look-up tables of a ``rows × cols`` tensor (0 unless a codebook)."""
        if self.kind != "codebook":
            return 0
        r, c = self._shape(rows, cols)
        return 1 if self.group_size is None else math.ceil(r * c / self.group_size)

    def bits_fraction(self, rows: int | None = None, cols: int | None = None) -> Fraction:
        """Exact effective bits per value (see the module docstring for the formula)."""
        r, c = self._shape(rows, cols)
        n = r * c
        scales = self.scales_per_tensor(r, c)
        total = self.element_bits * n + scales * (self.scale_bits + self.zero_point_bits)
        if self.scale_group_size is not None:
            total += math.ceil(scales / self.scale_group_size) * self.scale_scale_bits
        total += self.luts_per_tensor(r, c) * self.lut_entries * self.lut_entry_bits
        total += self.tensor_scale_bits
        return Fraction(total, n)

    def bits_per_value(self, rows: int | None = None, cols: int | None = None) -> float:
        """Effective bits per value including every overhead; ``rows × cols`` is the matrix
        (default 4096 × 4096). int4-g128 → 4.125, nvfp4 → 4.5 (+32/N), mxfp4 → 4.25."""
        return float(self.bits_fraction(rows, cols))

    def overhead_bits(self, rows: int | None = None, cols: int | None = None) -> float:
        """Bits per value spent on scales, zero-points and tables (``bits_per_value - element_bits``)."""
        return float(self.bits_fraction(rows, cols) - self.element_bits)

    def nbytes(self, n: int, rows: int | None = None, cols: int | None = None) -> int:
        """Bytes to store ``n`` values: ``ceil(n · bits_per_value / 8)``, exact."""
        if not _is_int(n) or n < 0:
            raise _param_error(FormatError, "n", f"Format.nbytes ({self.name!r})", "an int in [0, inf)", n)
        return math.ceil(n * self.bits_fraction(rows, cols) / 8)

    def _shape(self, rows: int | None, cols: int | None) -> tuple[int, int]:
        owner = f"Format.bits_per_value ({self.name!r})"
        _check_shape_arg("rows", rows, owner, FormatError)
        _check_shape_arg("cols", cols, owner, FormatError)
        return (DEFAULT_ROWS if rows is None else rows, DEFAULT_COLS if cols is None else cols)


# -- the registry -----------------------------------------------------------------------------

_SRC_IEEE = "IEEE 754-2008 binary32/binary16; bfloat16 as in Kalamkar et al., arXiv:1905.12322"
_SRC_FP8 = ("OCP 8-bit Floating Point Specification (OFP8) rev 1.0, 2023; Micikevicius et al., "
            "'FP8 Formats for Deep Learning', arXiv:2209.05433 (per-tensor fp32 scale)")
_SRC_INT8 = ("Dettmers et al., 'LLM.int8()', NeurIPS 2022; Xiao et al., 'SmoothQuant', ICML 2023 "
             "(int8 weights per output channel, activations per token, fp16 scales); KV per head per token")
_SRC_INT_G = ("Frantar et al., 'GPTQ', ICLR 2023; Lin et al., 'AWQ', MLSys 2024: group-wise int with an fp16 "
              "scale per group (int4 g128 = 4 + 16/128 = 4.125 bits)")
_SRC_INT_G_ZP = ("GPTQ/AWQ asymmetric packing: fp16 scale plus a zero-point of the element width per group "
                 "(qzeros) (int4 g128 + 4-bit zero = 4 + 20/128 = 4.156 bits)")
_SRC_NF4 = ("Dettmers et al., 'QLoRA: Efficient Finetuning of Quantized LLMs', NeurIPS 2023, Sec. 3 and "
            "Appendix E (NF4 levels, block 64 with fp32 absmax)")
_SRC_NF4_DQ = ("Dettmers et al., 'QLoRA', NeurIPS 2023, Sec. 3 'Double Quantization': 8-bit float absmax per "
               "block of 64, one fp32 second-level scale per 256 absmax values (4 + 8/64 + 32/16384 = 4.127 bits)")
_SRC_MX = ("OCP Microscaling Formats (MX) Specification v1.0, 2023, Sec. 5 and Table 1 (block 32, E8M0 "
           "shared scale = 2^(floor(log2 amax) - emax_elem))")
_SRC_NVFP4 = ("NVIDIA, 'Introducing NVFP4 for Efficient and Accurate Low-Precision Inference', developer blog, "
              "2025: E2M1 elements, E4M3 scale per 16 values, fp32 per-tensor scale (4.5 bits)")
_SRC_BFP = ("Darvish Rouhani et al., 'Pushing the Limits of Narrow Precision Inferencing at Cloud Scale with "
            "Microsoft Floating Point', NeurIPS 2020 (MSFP: 8-bit shared exponent per bounding box of 16, "
            "sign-magnitude mantissas; bfp4 = MSFP12, bfp8 = MSFP16)")
_SRC_FP6 = ("Xia et al., 'FP6-LLM', arXiv:2401.14112 (e3m2 weights, per-channel fp16 scale; torchao fp6); "
            "element grid per OCP MX v1.0 Sec. 5.3")
_SRC_FP4 = "E2M1 element grid per OCP MX v1.0 Sec. 5.3, with a per-channel fp16 scale as torchao's fpx weights"
_SRC_CB = ("Han et al., 'Deep Compression', ICLR 2016 (k-means weight sharing); Apple coremltools palettization "
           "(per-tensor or grouped look-up table of fp16 centroids)")

_ALL_ROLES = {"is_weight": True, "is_activation": True, "is_kv": True}
_WEIGHT_ONLY = {"is_weight": True, "is_activation": False, "is_kv": False}
# Weight formats that some engine also stores its KV cache in (profiles/engines/*.yaml ``kv``,
# each citing its runtime); every format an engine profile lists for ``kv`` must have the role.
_WEIGHT_KV = {"is_weight": True, "is_activation": False, "is_kv": True}


def _build_registry() -> dict[str, Format]:
    formats: list[Format] = []
    add = formats.append
    plain = dict(group_size=None, scale_bits=0, zero_point_bits=0, per_channel=False, lut_entries=0)

    # IEEE-like types stored as is. fp32 also serves as activation/KV precision because the
    # CPU validation path runs in fp32.
    for name, e, m, bits in (("fp32", 8, 23, 32), ("bf16", 8, 7, 16), ("fp16", 5, 10, 16)):
        add(Format(name=name, kind="float", element_bits=bits, exponent_bits=e, mantissa_bits=m,
                   hw_precision=name, family=name, source=_SRC_IEEE, **plain, **_ALL_ROLES,
                   description=f"{name} stored as is"))
    # fp8 with one fp32 scale per tensor (amax / max representable).
    add(Format(name="fp8-e4m3", kind="float", element_bits=8, exponent_bits=4, mantissa_bits=3,
               tensor_scale_bits=32, hw_precision="fp8", family="fp8-e4m3", source=_SRC_FP8, **plain, **_ALL_ROLES,
               description="OCP E4M3 (max 448, no inf), fp32 per-tensor scale"))
    # e5m2 is the format vLLM offers as 'fp8_e5m2' KV cache; kept for weights/activations as well.
    add(Format(name="fp8-e5m2", kind="float", element_bits=8, exponent_bits=5, mantissa_bits=2,
               tensor_scale_bits=32, hw_precision="fp8", family="fp8-e5m2", source=_SRC_FP8, **plain, **_ALL_ROLES,
               description="OCP E5M2 (max 57344, IEEE inf/NaN), fp32 per-tensor scale"))

    # int8 with one fp16 scale per row: per output channel for weights, per token for
    # activations, per head per token for the KV cache (pass cols = head_dim to price it).
    add(Format(name="int8", kind="int", element_bits=8, group_size=None, scale_bits=16, zero_point_bits=0,
               per_channel=True, exponent_bits=0, mantissa_bits=0, lut_entries=0, hw_precision="int8",
               family="int8", source=_SRC_INT8, **_ALL_ROLES,
               description="symmetric, codes in [-128, 127], fp16 scale per row (channel/token/head)"))

    # Group-wise int8 (llama.cpp Q8_0 = int8-g32: 8-bit codes + fp16 scale per 32 → 8.5 bits).
    # KV role: llama.cpp stores the KV cache in q8_0 (--cache-type-k/-v q8_0, tools/server/README.md),
    # groups running along head_dim.
    for group in (32, 64, 128):
        add(Format(name=f"int8-g{group}", kind="int", element_bits=8, group_size=group,
                   scale_bits=16, zero_point_bits=0, per_channel=False, exponent_bits=0, mantissa_bits=0,
                   lut_entries=0, hw_precision="int8", family="int8", source=_SRC_INT_G, **_WEIGHT_KV,
                   description=f"symmetric, codes in [-128, 127], fp16 scale per {group}"))

    # Group-wise ints. int3/int2 codes fit int4 MACs, so their native peak is the int4 one.
    # KV role: int4 symmetric and asymmetric (llama.cpp q4_0 / q4_1 cache, tools/server/README.md;
    # KIVI, Liu et al., ICML 2024, asymmetric 4- and 2-bit) and int2 (Transformers QuantizedCache,
    # quanto nbits 2 or 4, https://huggingface.co/docs/transformers/main/en/kv_cache).
    for bits in (4, 3, 2):
        for group in (32, 64, 128):
            roles = dict(_WEIGHT_ONLY)
            roles["is_kv"] = bits in (4, 2)
            if bits == 4:
                roles["is_activation"] = group == 128
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            add(Format(name=f"int{bits}-g{group}", kind="int", element_bits=bits, group_size=group,
                       scale_bits=16, zero_point_bits=0, per_channel=False, exponent_bits=0, mantissa_bits=0,
                       lut_entries=0, hw_precision="int4", family=f"int{bits}", source=_SRC_INT_G, **roles,
                       description=f"symmetric, codes in [{lo}, {hi}], fp16 scale per {group}"))
            # Asymmetric: a zero-point as wide as the element, packed like the codes (GPTQ qzeros).
            add(Format(name=f"int{bits}-g{group}-zp", kind="int", element_bits=bits, group_size=group,
                       scale_bits=16, zero_point_bits=bits, per_channel=False, exponent_bits=0, mantissa_bits=0,
                       lut_entries=0, hw_precision="int4", family=f"int{bits}", source=_SRC_INT_G_ZP,
                       **(_WEIGHT_KV if bits == 4 else _WEIGHT_ONLY),
                       description=f"asymmetric, codes in [0, {2**bits - 1}], fp16 scale + {bits}-bit zero "
                                   f"per {group}"))

    # NF4: no NF4 MAC exists; QLoRA dequantises to bf16 and computes there.
    add(Format(name="nf4", kind="nf", element_bits=4, group_size=64, scale_bits=32, zero_point_bits=0,
               per_channel=False, exponent_bits=0, mantissa_bits=0, lut_entries=0, hw_precision="bf16",
               family="nf4", source=_SRC_NF4, **_WEIGHT_ONLY,
               description="16 NF4 levels, fp32 absmax per 64"))
    add(Format(name="nf4-dq", kind="nf", element_bits=4, group_size=64, scale_bits=8, zero_point_bits=0,
               per_channel=False, exponent_bits=0, mantissa_bits=0, lut_entries=0, hw_precision="bf16",
               family="nf4", scale_group_size=256, scale_scale_bits=32, tensor_scale_bits=32,
               source=_SRC_NF4_DQ, **_WEIGHT_ONLY,
               description="NF4 with double quantisation: fp8-e4m3 absmax per 64, fp32 scale per 256 "
                           "absmax, fp32 absmax mean per tensor"))

    # MX: E8M0 scale per 32. FP6 runs at the FP8 rate on Blackwell (B200 datasheet), so mxfp6
    # maps to the fp8 peak.
    for name, e, m, hw in (("mxfp8", 4, 3, "fp8"), ("mxfp6", 3, 2, "fp8"), ("mxfp6-e2m3", 2, 3, "fp8"),
                           ("mxfp4", 2, 1, "fp4")):
        family = "mxfp6" if name.startswith("mxfp6") else name
        add(Format(name=name, kind="mx", element_bits=1 + e + m, group_size=32, scale_bits=8, zero_point_bits=0,
                   per_channel=False, exponent_bits=e, mantissa_bits=m, lut_entries=0, hw_precision=hw,
                   family=family, source=_SRC_MX, **_WEIGHT_ONLY,
                   description=f"E{e}M{m} elements, E8M0 scale per 32"))
    # KV role: TensorRT-LLM's NVFP4 KV cache on Blackwell (TensorRT-LLM docs, Quantization,
    # https://nvidia.github.io/TensorRT-LLM/features/quantization.html). Activation role: W4A4
    # NVFP4 GEMMs, activations quantized on the fly in blocks of 16 along the reduction dimension
    # with an E4M3 scale each and one fp32 per-tensor scale (TensorRT-LLM quant_algo NVFP4;
    # compressed-tensors "nvfp4-pack-quantized" input_activations, strategy tensor_group).
    add(Format(name="nvfp4", kind="nvfp", element_bits=4, group_size=16, scale_bits=8, zero_point_bits=0,
               per_channel=False, exponent_bits=2, mantissa_bits=1, lut_entries=0, tensor_scale_bits=32,
               hw_precision="fp4", family="nvfp4", source=_SRC_NVFP4, **_ALL_ROLES,
               description="E2M1 elements, E4M3 scale per 16 (amax/6), fp32 per-tensor scale"))

    # Block floating point: integer mantissa products, so int8/int4 peaks.
    for bits, hw in ((8, "int8"), (4, "int4")):
        add(Format(name=f"bfp{bits}", kind="bfp", element_bits=bits, group_size=16, scale_bits=8,
                   zero_point_bits=0, per_channel=False, exponent_bits=0, mantissa_bits=bits - 1, lut_entries=0,
                   hw_precision=hw, family=f"bfp{bits}", source=_SRC_BFP, **_WEIGHT_ONLY,
                   description=f"sign + {bits - 1}-bit magnitude, 8-bit shared exponent per 16"))

    # Scaled minifloats with one fp16 scale per output channel.
    add(Format(name="fp6-e3m2", kind="minifloat", element_bits=6, group_size=None, scale_bits=16,
               zero_point_bits=0, per_channel=True, exponent_bits=3, mantissa_bits=2, lut_entries=0,
               hw_precision="fp8", family="fp6-e3m2", source=_SRC_FP6, **_WEIGHT_ONLY,
               description="E3M2 (max 28), fp16 scale per row"))
    add(Format(name="fp4-e2m1", kind="minifloat", element_bits=4, group_size=None, scale_bits=16,
               zero_point_bits=0, per_channel=True, exponent_bits=2, mantissa_bits=1, lut_entries=0,
               hw_precision="fp4", family="fp4-e2m1", source=_SRC_FP4, **_WEIGHT_ONLY,
               description="E2M1 (max 6), fp16 scale per row"))

    # Codebooks (palettisation): indices of b bits into 2^b fp16 centroids; dequantised to fp16.
    for bits in (2, 3, 4, 6, 8):
        add(Format(name=f"cb{bits}", kind="codebook", element_bits=bits, group_size=None, scale_bits=0,
                   zero_point_bits=0, per_channel=False, exponent_bits=0, mantissa_bits=0, lut_entries=2**bits,
                   lut_entry_bits=16, hw_precision="fp16", family="codebook", source=_SRC_CB, **_WEIGHT_ONLY,
                   description=f"k-means, {2**bits} fp16 centroids per tensor"))
    for bits in (2, 3, 4):
        add(Format(name=f"cb{bits}-g4096", kind="codebook", element_bits=bits, group_size=4096, scale_bits=0,
                   zero_point_bits=0, per_channel=False, exponent_bits=0, mantissa_bits=0, lut_entries=2**bits,
                   lut_entry_bits=16, hw_precision="fp16", family="codebook", source=_SRC_CB, **_WEIGHT_ONLY,
                   description=f"k-means, {2**bits} fp16 centroids per 4096 values"))
    return {fmt.name: fmt for fmt in formats}


_REGISTRY: dict[str, Format] = _build_registry()

_ALIASES: dict[str, str] = {
    "fp8": "fp8-e4m3",
    "int4": "int4-g128",
    "int3": "int3-g128",
    "int2": "int2-g128",
    "int4-zp": "int4-g128-zp",
    "int3-zp": "int3-g128-zp",
    "int2-zp": "int2-g128-zp",
}


def format_names() -> tuple[str, ...]:
    """Canonical names of every registered format, in registry order."""
    return tuple(_REGISTRY)


def _first_number(text: str) -> int | None:
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


def _suggest(name: str) -> str | None:
    """Closest known name; ties go to the name whose first number is nearest ('int5' → 'int4'). None
    for a name longer than any format's (matching costs time in its length)."""
    if len(name) > 100:
        return None
    candidates = list(_REGISTRY) + list(_ALIASES)
    scored = [(difflib.SequenceMatcher(None, name, cand).ratio(), cand) for cand in candidates]
    scored = [item for item in scored if item[0] >= 0.6]
    if not scored:
        return None
    wanted = _first_number(name)

    def key(item: tuple[float, str]) -> tuple[float, float]:
        ratio, cand = item
        number = _first_number(cand)
        distance = abs(number - wanted) if wanted is not None and number is not None else math.inf
        return (-round(ratio, 9), distance)

    return min(scored, key=key)[1]


def get_format(name: str | Format) -> Format:
    """The registered format called ``name`` (case-insensitive; aliases ``fp8``, ``int4``,
    ``int3``, ``int2`` and their ``-zp`` forms accepted). A :class:`Format` passes through."""
    if isinstance(name, Format):
        return name
    expected = ", ".join(_REGISTRY)
    if not isinstance(name, str):
        raise FormatError(f"format must be a name (str); got {type(name).__name__} {name!r}; "
                          f"expected one of: {expected}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    hint = _suggest(key)
    tail = f" (did you mean {hint}?)" if hint else ""
    raise FormatError(f"unknown format {echo_value(name)}; expected one of: {expected}{tail}")


def list_formats(kind: str | None = None, role: str | None = None) -> list[Format]:
    """Registered formats, optionally only one ``kind`` and/or one ``role`` ('weight',
    'activation', 'kv'), in registry order."""
    if kind is not None and kind not in KINDS:
        raise _param_error(FormatError, "kind", "list_formats", f"None or one of {', '.join(KINDS)}", kind)
    if role is not None and role not in ROLES:
        raise _param_error(FormatError, "role", "list_formats", f"None or one of {', '.join(ROLES)}", role)
    return [fmt for fmt in _REGISTRY.values()
            if (kind is None or fmt.kind == kind) and (role is None or role in fmt.roles)]


# -- sparsity ---------------------------------------------------------------------------------

#: Encodings a sparse tensor may be stored in (see :meth:`Sparsity.encoding`).
SPARSE_ENCODINGS = ("dense", "2:4", "bitmap", "csr16", "csr32")

_SPARSITY_HELP = "expected 'dense', '2:4' or 'unstructured:S' with S a fraction in [0, 1), e.g. 'unstructured:0.7'"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sparsity:
    """Fraction of weights kept (``density``) and whether the pattern is structured (2:4).

    Storage per dense weight position for ``b`` value bits (Mishra et al., arXiv:2104.08378, for 2:4):
    dense ``b``; 2:4 ``0.5·b + 1`` (a 2-bit position index per kept value, NVIDIA sparse
    tensor cores); unstructured the cheapest of

    * dense storage of the zeros, ``b`` (pays off below ``s = 1/b``),
    * a bitmap plus packed kept values, ``1 + d·b``,
    * CSR with 16-bit column indices, ``d·(b + 16) + 32/cols`` (an int32 row pointer per
      row; only when ``cols <= 65536``), or with 32-bit indices, ``d·(b + 32) + 32/cols``.

    For bf16 the bitmap wins from 6.25 % to about 94 % sparsity, then CSR16.
    """

    name: str
    density: float
    structured: bool

    def __post_init__(self) -> None:
        owner = f"Sparsity {self.name!r}"
        if not isinstance(self.density, (int, float)) or isinstance(self.density, bool) \
                or not 0.0 < self.density <= 1.0:
            raise _param_error(SparsityError, "density", owner, "a float in (0, 1]", self.density)
        if self.name == "dense":
            ok = self.density == 1.0 and not self.structured
        elif self.name == "2:4":
            ok = self.density == 0.5 and self.structured
        elif self.name.startswith("unstructured:"):
            ok = not self.structured
        else:
            raise SparsityError(f"unknown sparsity {echo_value(self.name)}; {_SPARSITY_HELP}")
        if not ok:
            raise SparsityError(f"Sparsity {self.name!r} does not match density={self.density!r}, "
                                f"structured={self.structured!r}; build it with parse_sparsity({self.name!r})")

    @property
    def sparsity(self) -> float:
        """Fraction of weights removed (1 − density)."""
        return 1.0 - self.density

    def _candidates(self, b: float, rows: int | None, cols: int | None) -> dict[str, Fraction]:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b <= 64:
            raise _param_error(SparsityError, "b", f"Sparsity.bits_per_weight ({self.name!r})",
                               "a number of value bits in (0, 64]", b)
        owner = f"Sparsity.bits_per_weight ({self.name!r})"
        _check_shape_arg("rows", rows, owner, SparsityError)
        _check_shape_arg("cols", cols, owner, SparsityError)
        bits = Fraction(b)
        if self.name == "dense":
            return {"dense": bits}
        if self.name == "2:4":
            return {"2:4": bits / 2 + 1}
        r = DEFAULT_ROWS if rows is None else rows
        c = DEFAULT_COLS if cols is None else cols
        # limit_denominator undoes binary rounding (1 - 0.7 = 0.30000000000000004 → 3/10).
        d = Fraction(self.density).limit_denominator(10**9)
        row_ptr = Fraction(32 * (r + 1), r * c)
        out = {"dense": bits, "bitmap": 1 + d * bits, "csr32": d * (bits + 32) + row_ptr}
        if c <= 65536:
            out["csr16"] = d * (bits + 16) + row_ptr
        return out

    def encoding(self, b: float, rows: int | None = None, cols: int | None = None) -> str:
        """The cheapest storage encoding for ``b``-bit values (one of :data:`SPARSE_ENCODINGS`);
        ties go to the simpler encoding (dense, then bitmap, then CSR)."""
        cands = self._candidates(b, rows, cols)
        order = {name: i for i, name in enumerate(SPARSE_ENCODINGS)}
        return min(cands, key=lambda name: (cands[name], order[name]))

    def bits_per_weight(self, b: float, rows: int | None = None, cols: int | None = None) -> float:
        """Bits per dense weight position, index/metadata included, for ``b``-bit values.
        2:4 on bf16 → 9.0; unstructured 70 % on bf16 → 1 + 0.3·16 = 5.8."""
        cands = self._candidates(b, rows, cols)
        return float(min(cands.values()))


def base60_hint(value: Any) -> str:
    """`` (YAML reads an unquoted 2:4 as the base-60 number 124: quote it, '2:4')`` for an int that an
    unquoted N:M pattern becomes in YAML 1.1 (PyYAML), else ``""``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 60 and 0 < value // 60 < value % 60:
        n, m = divmod(value, 60)
        return f" (YAML reads an unquoted {n}:{m} as the base-60 number {value}: quote it, '{n}:{m}')"
    return ""


def parse_sparsity(text: str | Sparsity) -> Sparsity:
    """``'dense'``, ``'2:4'`` or ``'unstructured:S'`` (S = fraction removed, 0 <= S < 1)."""
    if isinstance(text, Sparsity):
        return text
    if not isinstance(text, str):
        raise SparsityError(f"sparsity must be a string; got {type(text).__name__} {text!r}{base60_hint(text)}; "
                            f"{_SPARSITY_HELP}")
    key = text.strip().lower()
    if key == "dense":
        return Sparsity(name="dense", density=1.0, structured=False)
    if re.fullmatch(r"\d+:\d+", key):
        if key != "2:4":
            raise SparsityError(f"unsupported N:M pattern {text!r}: only 2:4 (2 kept of every 4) is supported; "
                                f"{_SPARSITY_HELP}")
        return Sparsity(name="2:4", density=0.5, structured=True)
    if key.startswith("unstructured:"):
        raw = key.split(":", 1)[1]
        try:
            s = float(raw)
        except ValueError:
            raise SparsityError(f"sparsity {text!r}: {raw!r} is not a number; {_SPARSITY_HELP}") from None
        # the name keeps six significant digits, so a fraction that would read as 1 (0.9999999) is out of range too
        if not 0.0 <= s < 1.0 or float(f"{s:g}") >= 1.0:
            raise SparsityError(f"sparsity {text!r}: the fraction removed must be in [0, 1) (at most 0.99999), got "
                                f"{s!r}; {_SPARSITY_HELP}")
        return Sparsity(name=f"unstructured:{s:g}", density=1.0 - s, structured=False)
    raise SparsityError(f"unknown sparsity {echo_value(text)}; {_SPARSITY_HELP}")


def combined_bits_per_weight(fmt: Format | str, sparsity: Sparsity | str,
                             rows: int | None = None, cols: int | None = None) -> float:
    """Bits per dense weight of ``fmt`` stored with ``sparsity``.

    Sparsity thins the elements; scales, zero-points and tables stay per dense group, as
    in Sparse-Marlin: int4 g64 + 2:4 = 0.5·4 + 1 + 16/64 = 3.25 bits, which reproduces
    torchao's published 3.05 GB for Llama-3-8B (github.com/pytorch/ao, torchao/quantization/README.md).
    """
    fmt = get_format(fmt)
    sp = parse_sparsity(sparsity)
    overhead = fmt.bits_fraction(rows, cols) - fmt.element_bits
    return sp.bits_per_weight(fmt.element_bits, rows, cols) + float(overhead)


# -- low rank ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LowRank:
    """A ``rows × cols`` matrix replaced by ``B (rows × rank) @ A (rank × cols)``."""

    rank: int

    def __post_init__(self) -> None:
        if not _is_int(self.rank) or self.rank < 1:
            raise _param_error(ValueError, "rank", "LowRank", "an int in [1, inf)", self.rank)

    def params(self, rows: int, cols: int) -> int:
        """Parameters of the two factors: ``rank · (rows + cols)``."""
        for name, value in (("rows", rows), ("cols", cols)):
            if not _is_int(value) or value < 1:
                raise _param_error(ValueError, name, f"LowRank(rank={self.rank}).params", "an int in [1, inf)",
                                   value)
        return self.rank * (rows + cols)

    def compresses(self, rows: int, cols: int) -> bool:
        """True when the factors hold fewer parameters than the dense matrix."""
        return self.params(rows, cols) < rows * cols


class NumericsError(TierwiseError, ValueError):
    """A bad weights / sparsity / activations triple; ``field`` names the offending one."""

    code = "invalid_format"

    def __init__(self, message: str, field: str):
        TierwiseError.__init__(self, message, field=field)


def resolve_numerics(weights: str, sparsity: str = "dense", activations: str = "bf16") -> tuple[Format, Sparsity, Format]:
    """Canonical (weight format, sparsity, activation format) of one choice, checking roles:
    the one place plans, torch handlers and options validate a numeric choice."""
    try:
        w = get_format(weights)
    except FormatError as exc:
        raise NumericsError(str(exc), "weights") from None
    if not w.is_weight:
        raise NumericsError(f"'weights' {w.name!r} is not a weight format", "weights")
    try:
        sp = parse_sparsity(sparsity)
    except SparsityError as exc:
        raise NumericsError(str(exc), "sparsity") from None
    try:
        a = get_format(activations)
    except FormatError as exc:
        raise NumericsError(str(exc), "activations") from None
    if not a.is_activation:
        raise NumericsError(f"'activations' {a.name!r} is not an activation format", "activations")
    return w, sp, a


def with_substitutes(wanted: Sequence[str], kept: Sequence[str], runs: Sequence[str]) -> list[str]:
    """``kept`` plus, for every format of ``wanted`` with no format of its kind and width in the
    result, the first of ``runs`` of that kind and width: an engine's own format in place of a
    default it lacks (per-channel int8 → llama.cpp's Q8_0, int8-g32)."""

    def width(name: str) -> tuple[str, int]:
        f = get_format(name)
        return f.kind, f.element_bits

    out = list(kept)
    for n in wanted:
        if n in out or any(width(o) == width(n) for o in out):
            continue
        alt = [r for r in runs if width(r) == width(n)]
        if alt:
            out.append(alt[0])
    return out
