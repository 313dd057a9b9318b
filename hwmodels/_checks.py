"""Small validators shared by the spec dataclasses (raise SpecError)."""

from __future__ import annotations

import math
from typing import Any

from .errors import SpecError


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool); an int beyond float's range (a 400-digit literal) is not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_positive(value: Any, field: str) -> None:
    if not is_number(value) or value <= 0:
        raise SpecError(field, "a positive number", value)


def check_non_negative(value: Any, field: str) -> None:
    if not is_number(value) or value < 0:
        raise SpecError(field, "a number >= 0", value)


def check_fraction(value: Any, field: str) -> None:
    if not is_number(value) or not 0 < value <= 1:
        raise SpecError(field, "a number in (0, 1]", value)


def check_name(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(field, "a non-empty string", value)
