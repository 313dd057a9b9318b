"""Errors raised by hwmodels.

Every error says which field is wrong, what was expected and what was given, so
that a person reading a CLI message or an API response can fix the input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def describe_value(value: Any) -> str:
    """Render a bad value for an error message (strings quoted, long values cut)."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool) or value is None:
        text = str(value).lower() if value is not None else "nothing (missing)"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value)) if abs(value) < 1e15 else repr(value)
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (dict, list, tuple)):
        text = f"{type(value).__name__} {value!r}"
    else:
        text = f"{type(value).__name__} {value!r}"
    return text if len(text) <= 120 else text[:117] + "..."


class SpecError(ValueError):
    """A hardware spec object was built with an invalid value.

    ``field`` is relative to the object (for example ``bandwidth_bytes_per_s``);
    the loader prefixes it with the position in the profile file.
    """

    def __init__(self, field: str, expected: str, got: Any) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"field '{field}' must be {expected}; got {describe_value(got)}")


class ProfileError(ValueError):
    """A hardware profile (file or dict) is malformed.

    ``str()`` reads like ``h100.yaml: field 'memory[0].bandwidth_gb_per_s' must be a
    positive number; got -3``.
    """

    def __init__(self, path: str | Path, field: str, expected: str, got: Any) -> None:
        self.path = str(path)
        self.field = field
        self.expected = expected
        self.got = got
        name = Path(self.path).name if self.path and not self.path.startswith("<") else self.path
        super().__init__(f"{name}: field '{field}' must be {expected}; got {describe_value(got)}")


_LIST_COMMANDS = {"hardware": "tierwise hardware list", "model": "tierwise models list"}


class UnknownIdError(LookupError):
    """A catalog id is not known. ``suggestions`` lists close ids (best first)."""

    def __init__(self, id: str, kind: str, suggestions: list[str], known: list[str] | None = None) -> None:
        self.id = id
        self.kind = kind
        self.suggestions = list(suggestions)
        self.known = list(known or [])
        super().__init__(id)

    def __str__(self) -> str:
        message = f"unknown {self.kind} id {self.id!r}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(self.suggestions) + "?"
        elif self.known:
            message += "; known ids: " + ", ".join(self.known)
        command = _LIST_COMMANDS.get(self.kind)
        if command:
            message += f" (see `{command}`)"
        return message


class UnsupportedPrecisionError(ValueError):
    """No compute unit considered has a peak for a precision nor for any wider one."""

    def __init__(self, device_id: str, unit: str, precision: str, available: list[str]) -> None:
        self.device_id = device_id
        self.unit = unit
        self.precision = precision
        self.available = list(available)
        super().__init__(
            f"{device_id}: no compute unit ({unit}) has a peak for {precision!r} or a wider "
            f"precision; available: {', '.join(self.available) or 'none'}. Choose one of those "
            f"precisions for compute on this device."
        )
