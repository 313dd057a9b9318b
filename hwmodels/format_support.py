"""How numeric formats execute on a device: natively (hardware units consume the
format directly), emulated (stored in the format, dequantized to a wider compute
precision before the math) or not at all.

This module owns the one vocabulary of format *families*: the names hardware
profiles declare support with, and the ``family`` of every format in the planner's
registry (``planner.formats``). A format name with a group size, a zero-point or a
codebook width maps onto its family here: ``int4-g32`` -> ``int4``, ``fp8`` ->
``fp8-e4m3``, ``cb4`` -> ``codebook``. A profile may also name a *group* of
families at once: ``bfp`` (block floating point, MSFP) means ``bfp8`` and ``bfp4``,
``fp8`` in a profile means both OCP FP8 encodings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import SpecError

Support = Literal["native", "emulated", "unsupported"]

#: Every format family, in a stable order. A device supports a family and with it
#: every group size and asymmetric variant of that family.
FAMILIES: tuple[str, ...] = (
    "fp64", "fp32", "tf32", "bf16", "fp16",
    "fp8-e4m3", "fp8-e5m2", "fp6-e3m2", "fp6-e2m3", "fp4-e2m1",
    "int8", "int7", "int6", "int5", "int4", "int3", "int2",
    "nf4", "mxfp8", "mxfp6", "mxfp4", "mxint8", "nvfp4", "bfp8", "bfp4", "codebook",
)
KNOWN_FAMILIES: frozenset[str] = frozenset(FAMILIES)

#: Names a profile may use for several families at once.
FAMILY_GROUPS: dict[str, tuple[str, ...]] = {
    "bfp": ("bfp8", "bfp4"),
    "fp8": ("fp8-e4m3", "fp8-e5m2"),
}

_ALIASES: dict[str, str] = {
    "fp8": "fp8-e4m3",
    "e4m3": "fp8-e4m3",
    "e5m2": "fp8-e5m2",
    "fp6": "fp6-e3m2",
    "fp4": "fp4-e2m1",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
    "float64": "fp64",
}

_GROUPED_INT = re.compile(r"^(int[2-8])(?:-g\d+)?(?:-zp)?$")
# Variants that share their family's execution: double-quantized NF4, the E2M3 flavour of MXFP6.
_VARIANTS = {"nf4-dq": "nf4", "mxfp6-e2m3": "mxfp6"}
_CODEBOOK = re.compile(r"^(?:cb\d+(?:-g\d+)?|codebook(?:-\w+)?)$")


def format_family(name: str) -> str:
    """Map a format name (any case, aliases, group sizes) to its family name.

    Returns the lower-cased input unchanged when it is not a known spelling, so
    that callers can report it; ``FormatSupport.status`` treats it as unsupported.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    key = _VARIANTS.get(key, key)
    grouped = _GROUPED_INT.match(key)
    if grouped:
        return grouped.group(1)
    if _CODEBOOK.match(key):
        return "codebook"
    return key


def profile_families(names: Iterable[str]) -> frozenset[str]:
    """The families a profile's list of names declares: groups (``bfp``) expand to
    their members, every other name maps through :func:`format_family`."""
    out: set[str] = set()
    for name in names:
        key = str(name).strip().lower()
        out.update(FAMILY_GROUPS.get(key, (format_family(key),)))
    return frozenset(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatSupport:
    """Families that run natively and families that run emulated on a device."""

    native: frozenset[str]
    emulated: frozenset[str]

    def __post_init__(self) -> None:
        for field_name in ("native", "emulated"):
            values = getattr(self, field_name)
            unknown = sorted(v for v in values if v not in KNOWN_FAMILIES and v not in FAMILY_GROUPS)
            if unknown:
                raise SpecError(
                    field_name,
                    "a list of known format families (" + ", ".join(FAMILIES + tuple(FAMILY_GROUPS)) + ")",
                    unknown[0],
                )
            object.__setattr__(self, field_name, profile_families(values))
        both = self.native & self.emulated
        if both:
            raise SpecError("emulated", "disjoint from 'native'", sorted(both))

    def status(self, format_name: str) -> Support:
        family = format_family(format_name)
        if family in self.native:
            return "native"
        if family in self.emulated:
            return "emulated"
        return "unsupported"
