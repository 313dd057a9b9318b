"""FPGA compute roofs derived from fabric resources.

An FPGA has no fixed peak per precision: the designer builds multiply-accumulate
(MAC) units out of DSP slices and LUTs, and narrower operands make each MAC
cheaper. The roof is therefore

    ops/s = clock * (dsp_usable * dsps * macs_per_dsp
                     + usable LUTs / luts_per_mac) * 2          (2 ops per MAC)

with the usable fractions leaving room for control logic, memory controllers
and the platform shell.

MACs per DSP slice
------------------
* DSP48E2 (UltraScale+, 27x18 multiplier): two int8 x int8 products that share
  one operand fit in one multiply when the other operands are packed 18 bits
  apart — Xilinx WP486 "Deep Learning with INT8 Optimization on Xilinx Devices".
  With weights of at most 4 bits (activations up to 8), four products fit: the
  same packing with 4-bit lanes, as described for INT4 in Xilinx WP521
  "Convolutional Neural Network with INT4 Optimization on Xilinx Devices".
  Operands wider than 8 bits take one product per slice while they fit 27x18,
  and ceil(a/27)*ceil(b/18) slices beyond that.
* DSP58 (Versal, 27x24): an INT8 mode computes a 3-element dot product (three
  int8 MACs per slice, AMD AM004 "Versal ACAP DSP Engine Architecture Manual"),
  and a native FP32 mode performs one single-precision MAC per slice with no
  fabric logic; narrower floats are widened to FP32 for it.

LUT cost per MAC
----------------
* Integer: an n x m array multiplier maps to about n*m/2 LUT6s on Xilinx
  6-input-LUT fabrics (each LUT with the carry chain sums two partial-product
  bits: Walters, "Array Multipliers for High Throughput in Xilinx FPGAs with
  6-Input LUTs", Computers 5(4), 2016), plus a ripple accumulator of
  w + a + 10 bits (one LUT per bit; 10 guard bits cover 1024-term dot
  products). This is the b_w*b_a scaling used by the FINN/FINN-R cost models
  (Umuroglu et al. FPGA'17; Blott et al. TRETS 2018).
* Minifloat: the significand multiplier is smaller ((m_w+1)(m_a+1)/2 LUTs), but
  each product also needs an exponent adder (max(e)+1 bits), an alignment
  shifter and a normaliser (leading-zero count plus shifter) over the
  accumulator width A = (m_w+1)+(m_a+1)+10: a log shifter costs A*ceil(log2 A)
  2:1 muxes, i.e. A*ceil(log2 A)/2 LUT6s (a LUT6 is a 4:1 mux), plus an A-bit
  adder. This is the structure analysed by Aggarwal et al., "Shedding the Bits:
  Pushing the Boundaries of Quantization with Minifloats on FPGAs" (FPL 2024,
  arXiv:2311.12359), who conclude that integers usually remain Pareto-optimal
  for their smaller resource footprint. With this model a minifloat MAC costs
  1.6x (fp16) to 3.2x (fp4 e2m1) the LUTs of an integer MAC of the same widths;
  fp8 e4m3 costs 2.2x (bf16, e8m7, whose significand is short, comes out at
  1.25x). DSP packing does not apply to minifloats (each product
  carries its own exponent, so packed lanes could not share an accumulator): a
  float MAC on a DSP48E2 uses the slice for its significand product only and
  still spends the exponent/alignment/normalisation LUTs.
* Integer weights times float activations (weight-only int2..int8 or block-float
  mantissas with bf16/fp16/fp8 activations): the integer is the weight's whole
  significand and carries no exponent, so the same minifloat structure applies
  with ``m_w + 1 = b_w`` (a b_w x (m_a+1) array multiplier, Walters 2016) and the
  activation's exponent alone feeding the alignment and normalisation logic
  (Aggarwal et al. 2024). Pass ``weight_exponent_bits=0`` for such a weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._checks import check_fraction, check_positive, is_number
from .errors import SpecError
from .precision import default_float_split

# Multiplier operand widths (signed) of each DSP slice type.
DSP_MULTIPLIER_BITS: dict[str, tuple[int, int]] = {"DSP48E2": (27, 18), "DSP58": (27, 24)}

# Guard bits of the accumulator: log2 of the longest dot product summed exactly.
ACC_GUARD_BITS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class FpgaResources:
    """Fabric resources of one FPGA and the share a design can use."""

    dsp_slices: int
    luts: int
    bram_bytes: float
    uram_bytes: float
    clock_hz: float
    dsp_usable: float
    lut_usable: float
    dsp_type: str

    def __post_init__(self) -> None:
        for name in ("dsp_slices", "luts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SpecError(name, "a whole number >= 0", value)
        if self.dsp_slices == 0 and self.luts == 0:
            raise SpecError("luts", "positive when there are no DSP slices", self.luts)
        if not is_number(self.bram_bytes) or self.bram_bytes < 0:
            raise SpecError("bram_bytes", "a number >= 0", self.bram_bytes)
        if not is_number(self.uram_bytes) or self.uram_bytes < 0:
            raise SpecError("uram_bytes", "a number >= 0", self.uram_bytes)
        check_positive(self.clock_hz, "clock_hz")
        check_fraction(self.dsp_usable, "dsp_usable")
        check_fraction(self.lut_usable, "lut_usable")
        if self.dsp_type not in DSP_MULTIPLIER_BITS:
            raise SpecError("dsp_type", "one of " + ", ".join(DSP_MULTIPLIER_BITS), self.dsp_type)


def _check_bits(bits: int, field: str, minimum: int) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not minimum <= bits <= 64:
        raise ValueError(f"{field} must be a whole number in [{minimum}, 64]; got {bits!r}")


def _split(bits: int, exponent_bits: int | None, field: str) -> tuple[int, int]:
    """(exponent, mantissa) bits of a float MAC operand; exponent 0 is an integer operand
    (its ``bits`` two's-complement bits are the whole significand: mantissa = bits - 1)."""
    if exponent_bits is None:
        return default_float_split(bits)
    if exponent_bits == 0 and not isinstance(exponent_bits, bool):
        return 0, bits - 1
    if not isinstance(exponent_bits, int) or isinstance(exponent_bits, bool) or not 1 <= exponent_bits <= bits - 2:
        raise ValueError(f"{field} must be 0 (an integer operand) or a whole number in [1, {bits - 2}] for a "
                         f"{bits}-bit float; got {exponent_bits!r}")
    return exponent_bits, bits - 1 - exponent_bits


def _shifter_luts(width: int) -> float:
    # log shifter: ceil(log2 width) stages of `width` 2:1 muxes; a LUT6 is a 4:1 mux.
    return width * math.ceil(math.log2(width)) / 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MacCost:
    """Resources of one MAC at given operand widths (see module docstring)."""

    luts_per_lut_mac: float  # LUTs of a MAC built entirely from LUTs
    macs_per_dsp: float  # MACs one DSP slice performs per cycle
    luts_per_dsp_mac: float  # fabric LUTs a DSP-based MAC still needs


def mac_cost(
    dsp_type: str,
    weight_bits: int,
    act_bits: int,
    number_kind: str = "int",
    *,
    weight_exponent_bits: int | None = None,
    act_exponent_bits: int | None = None,
) -> MacCost:
    """Per-MAC resource cost for ``weight_bits`` x ``act_bits`` operands."""
    if dsp_type not in DSP_MULTIPLIER_BITS:
        raise ValueError(f"dsp_type must be one of {', '.join(DSP_MULTIPLIER_BITS)}; got {dsp_type!r}")
    if number_kind not in ("int", "float"):
        raise ValueError(f"number_kind must be 'int' or 'float'; got {number_kind!r}")
    # A float needs sign, exponent and mantissa bits; an integer operand (also one entering a
    # float MAC with exponent 0) needs one bit.
    _check_bits(weight_bits, "weight_bits", 1 if number_kind == "int" or weight_exponent_bits == 0 else 3)
    _check_bits(act_bits, "act_bits", 1 if number_kind == "int" or act_exponent_bits == 0 else 3)
    wide, narrow = DSP_MULTIPLIER_BITS[dsp_type]
    if number_kind == "int":
        luts = 0.5 * weight_bits * act_bits + (weight_bits + act_bits + ACC_GUARD_BITS)
        big, small = max(weight_bits, act_bits), min(weight_bits, act_bits)
        if dsp_type == "DSP58" and big <= 8:
            per_dsp = 3.0  # INT8 dot-product mode (AM004)
        elif dsp_type == "DSP48E2" and big <= 8 and small <= 4:
            per_dsp = 4.0  # WP521-style 4-bit lane packing
        elif dsp_type == "DSP48E2" and big <= 8:
            per_dsp = 2.0  # WP486 shared-operand packing
        else:
            per_dsp = 1.0 / (math.ceil(big / wide) * math.ceil(small / narrow))
        return MacCost(luts_per_lut_mac=luts, macs_per_dsp=per_dsp, luts_per_dsp_mac=0.0)

    ew, mw = _split(weight_bits, weight_exponent_bits, "weight_exponent_bits")
    ea, ma = _split(act_bits, act_exponent_bits, "act_exponent_bits")
    multiplier = 0.5 * (mw + 1) * (ma + 1)
    width = (mw + 1) + (ma + 1) + ACC_GUARD_BITS
    overhead = (
        max(ew, ea) + 1  # exponent adder
        + _shifter_luts(width)  # alignment shifter
        + width  # accumulator adder
        + width / 2  # leading-zero count
        + _shifter_luts(width)  # normalisation shifter
    )
    if dsp_type == "DSP58" and max(weight_bits, act_bits) <= 32:
        # native FP32 MAC mode: the whole float MAC lives in the slice.
        return MacCost(luts_per_lut_mac=multiplier + overhead, macs_per_dsp=1.0, luts_per_dsp_mac=0.0)
    big, small = max(mw + 1, ma + 1), min(mw + 1, ma + 1)
    per_dsp = 1.0 / (math.ceil(big / wide) * math.ceil(small / narrow))
    return MacCost(luts_per_lut_mac=multiplier + overhead, macs_per_dsp=per_dsp, luts_per_dsp_mac=overhead)


def fpga_peak_ops_per_s(
    res: FpgaResources,
    weight_bits: int,
    act_bits: int,
    number_kind: str = "int",
    *,
    weight_exponent_bits: int | None = None,
    act_exponent_bits: int | None = None,
) -> float:
    """Peak ops/s (2 per MAC) of a design filling the usable DSPs and LUTs with
    ``weight_bits`` x ``act_bits`` MACs of ``number_kind`` ("int" or "float").

    DSP-based MACs are placed first; when they need fabric LUTs (minifloats on
    DSP48E2) they are limited by the LUT budget, and the LUTs left over build
    LUT-only MACs.
    """
    cost = mac_cost(
        res.dsp_type,
        weight_bits,
        act_bits,
        number_kind,
        weight_exponent_bits=weight_exponent_bits,
        act_exponent_bits=act_exponent_bits,
    )
    lut_budget = res.lut_usable * res.luts
    dsp_macs = res.dsp_usable * res.dsp_slices * cost.macs_per_dsp
    if cost.luts_per_dsp_mac > 0:
        dsp_macs = min(dsp_macs, lut_budget / cost.luts_per_dsp_mac)
    lut_left = lut_budget - dsp_macs * cost.luts_per_dsp_mac
    lut_macs = max(lut_left, 0.0) / cost.luts_per_lut_mac
    return res.clock_hz * (dsp_macs + lut_macs) * 2.0
