"""Compute precisions: the keys of a compute unit's peak table and how a missing
precision falls back to a wider one.

A unit that lacks hardware for a precision still runs it by converting operands
to a wider type that it does have (e.g. int4 weights are unpacked to int8 on
Hopper, which has no int4 tensor cores). So the fallback chain lists, in order,
the *narrowest types that can represent every value of the requested type*:

* int4 -> int8 -> fp16 -> bf16 -> tf32 -> fp32: an int4/int8 value is exact in
  fp16 (11-bit significand) and in bf16 (8-bit significand holds |x| <= 256).
* fp4 (e2m1) -> fp6 -> fp8 -> fp16 ...: each OCP minifloat is exact in the next
  wider one (e2m1 in e3m2 in e4m3/e5m2 in fp16).
* fp16 and bf16 are not subsets of each other (5 vs 8 exponent bits), so both
  fall back to tf32 (e8m10), which holds both exactly, then fp32.
* fp32 -> fp64.
"""

from __future__ import annotations

PRECISIONS: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "int8", "int4", "fp4")

FALLBACK: dict[str, tuple[str, ...]] = {
    "fp64": (),
    "fp32": ("fp64",),
    "tf32": ("fp32", "fp64"),
    "bf16": ("tf32", "fp32", "fp64"),
    "fp16": ("tf32", "fp32", "fp64"),
    "fp8": ("fp16", "bf16", "tf32", "fp32", "fp64"),
    "fp6": ("fp8", "fp16", "bf16", "tf32", "fp32", "fp64"),
    "fp4": ("fp6", "fp8", "fp16", "bf16", "tf32", "fp32", "fp64"),
    "int8": ("fp16", "bf16", "tf32", "fp32", "fp64"),
    "int4": ("int8", "fp16", "bf16", "tf32", "fp32", "fp64"),
}

# Storage bits and (exponent, mantissa) bits of each float precision; used to
# derive FPGA roofs from resources. int precisions have exponent 0.
BITS: dict[str, int] = {
    "fp64": 64, "fp32": 32, "tf32": 19, "bf16": 16, "fp16": 16,
    "fp8": 8, "fp6": 6, "fp4": 4, "int8": 8, "int4": 4,
}
FLOAT_SPLIT: dict[str, tuple[int, int]] = {
    "fp64": (11, 52), "fp32": (8, 23), "tf32": (8, 10), "bf16": (8, 7), "fp16": (5, 10),
    "fp8": (4, 3), "fp6": (3, 2), "fp4": (2, 1),
}

# Common spellings accepted by DeviceSpec.peak_flops_per_s.
ALIASES: dict[str, str] = {
    "float64": "fp64", "double": "fp64",
    "float32": "fp32", "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16",
    "fp8-e4m3": "fp8", "fp8-e5m2": "fp8", "e4m3": "fp8", "e5m2": "fp8",
    "fp6-e3m2": "fp6", "fp6-e2m3": "fp6",
    "fp4-e2m1": "fp4",
}


def normalize_precision(name: str) -> str:
    """Lower-case ``name`` and map an alias to its precision key; unknown names raise ValueError."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in FALLBACK:
        raise ValueError(
            f"unknown compute precision {name!r}; expected one of {', '.join(PRECISIONS)}"
        )
    return key


def is_float_precision(precision: str) -> bool:
    return precision in FLOAT_SPLIT


def default_float_split(bits: int) -> tuple[int, int]:
    """(exponent, mantissa) bits of the usual float of a given width.

    OCP minifloats put about half the bits into the exponent (e2m1, e3m2, e4m3);
    16 bits -> IEEE half (e5m10); 32 -> IEEE single (e8m23); 64 -> IEEE double.
    """
    if bits < 3:
        raise ValueError(f"a float needs at least 3 bits (sign, exponent, mantissa); got {bits}")
    if bits <= 8:
        exponent = bits // 2
    elif bits <= 16:
        exponent = 5
    elif bits <= 32:
        exponent = 8
    else:
        exponent = 11
    return exponent, bits - 1 - exponent
