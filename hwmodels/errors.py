"""Errors raised by hwmodels, and the one error base class of Tierwise.

Every error a user can cause derives from :class:`TierwiseError`. It carries

- ``field``: the request field at fault, in the request layer's own (Python) names, dotted for
  nested fields (``kv``, ``layout.tp``, ``memory[0].bandwidth_gb_per_s``), or ``None``;
- ``kind``: what went wrong, which each front end maps to its own status
  (:data:`KINDS`: ``bad_input`` → exit 2 / HTTP 422, ``not_found`` → exit 2 / 404,
  ``infeasible`` → exit 3 / 422, ``conflict`` → exit 2 / 409, ``unavailable`` → exit 1 / 503);
- ``code``: a stable machine-readable code for REST bodies (``invalid_format``, ``infeasible``…);
- ``details``: an optional JSON-safe payload (suggestions, a diagnosis).

Messages name fields with ``{@name}`` tokens so that each front end renders them in its own
syntax: ``{@kv_budget}`` reads ``--kv-budget`` on the command line and ``'kv_budget'`` in REST
and Python. Use :meth:`TierwiseError.render` to get the text for one front end; ``str(exc)``
gives the Python rendering.

This module lives in ``hwmodels`` (the lowest layer) so that hardware errors share the base;
``planner.errors`` re-exports it with the planner's own error types.

Every error says which field is wrong, what was expected and what was given, so
that a person reading a CLI message or an API response can fix the input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Mapping


KINDS: dict[str, tuple[int, int]] = {
    # kind: (CLI exit code, HTTP status)
    "bad_input": (2, 422),
    "not_found": (2, 404),
    "infeasible": (3, 422),
    "conflict": (2, 409),
    "unavailable": (1, 503),
}

_TOKEN = re.compile(r"\{@([A-Za-z_][A-Za-z0-9_.\[\]]*)\}")


_SIMPLE_FIELD = re.compile(r"^[a-z][a-z0-9_]*$")


def _flag_pattern(field: str) -> re.Pattern:
    flag = "--" + field.replace("_", "-")
    return re.compile(rf"(?<![\w-]){re.escape(flag)}(?![\w-])")


def _tokenize_own_flag(message: str, field: str | None) -> str:
    """A message written in command-line syntax (``--tp 3 must divide …``) names its own field
    as a flag: make that a ``{@tp}`` token so that REST answers read ``'tp'``."""
    if not field or "{@" in message or not _SIMPLE_FIELD.match(field):
        return message
    return _flag_pattern(field).sub("{@" + field + "}", message)


def _names(text: str, field: str, style: str, aliases: Mapping[str, str] | None) -> bool:
    """Whether ``text`` names ``field`` (as the front end shows it, or by its plain name)."""
    leaf = field.split(".")[-1]
    shown = render_field(field, style, aliases)
    return shown in text or re.search(rf"(?<![\w-]){re.escape(leaf)}(?![\w])", text) is not None


def render_field(name: str, style: str, aliases: Mapping[str, str] | None = None) -> str:
    """A request field name in one front end's syntax.

    ``style`` is ``cli`` (``--kv-budget``), ``rest`` or ``python`` (``kv_budget``).
    ``aliases`` maps a field to the exact spelling of one front end (a CLI flag whose name
    differs from the field).
    """
    if aliases and name in aliases:
        return aliases[name]
    if style == "cli":
        leaf = name.split(".")[-1]
        return "--" + leaf.replace("_", "-")
    return name


# ``{!name}``: where a front end's user looks something up (the command line's listing command,
# the REST route).
_WHERE = {
    "engines": ("`tierwise engines list`", "GET /v1/engines"),
    "hardware": ("`tierwise hardware list`", "GET /v1/hardware"),
    "models": ("`tierwise models list`", "GET /v1/models"),
    "estimate": ("`tierwise estimate`", "POST /v1/estimate"),
    "plan": ("`tierwise plan`", "POST /v1/plans"),
}
_WHERE_TOKEN = re.compile(r"\{!(\w+)\}")

# ``{$…}``: a text that differs per front end (a command to run: ``tierwise plan --model m …`` on
# the command line, ``POST /v1/plans {"model": "m", …}`` in REST), made by :func:`per_front_end`.
# The payload is base64 (standard alphabet, no padding): it holds no ``{@``, ``{!``, ``}`` or
# ``--flag`` that another rule would read.
_EACH_TOKEN = re.compile(r"\{\$([A-Za-z0-9+/]+)\}")


def per_front_end(cli: str, rest: str) -> str:
    """A token that renders as ``cli`` on the command line and in Python, and as ``rest`` in REST
    answers (:func:`render_tokens`): for a command whose form depends on the front end, built
    once from the same arguments."""
    import base64
    import json

    payload = base64.b64encode(json.dumps([cli, rest]).encode()).decode().rstrip("=")
    return "{$" + payload + "}"


def _each(m: re.Match, style: str) -> str:
    import base64
    import json

    data = m.group(1)
    try:
        cli, rest = json.loads(base64.b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, TypeError):  # not a token of per_front_end: left as written
        return m.group(0)
    return str(rest if style == "rest" else cli)


def render_tokens(template: str, style: str, aliases: Mapping[str, str] | None = None) -> str:
    """``template`` with every ``{@field}`` token in ``style``'s syntax (``--kv-budget`` for
    ``cli``, ``'kv_budget'`` for ``rest`` and ``python``), every ``{!name}`` reference to a
    listing or command as that front end reaches it (``tierwise engines list`` / ``GET /v1/engines``)
    and every ``{$…}`` text (:func:`per_front_end`) in that front end's form. The ``{$…}`` texts
    are put in last, as given: a pin pattern in a command is never read as a token."""

    def sub(m: re.Match) -> str:
        shown = render_field(m.group(1), style, aliases)
        return shown if style == "cli" else f"'{shown}'"

    def where(m: re.Match) -> str:
        pair = _WHERE.get(m.group(1))
        return m.group(0) if pair is None else pair[1 if style == "rest" else 0]

    text = _WHERE_TOKEN.sub(where, _TOKEN.sub(sub, template))
    return _EACH_TOKEN.sub(lambda m: _each(m, style), text)


class TierwiseError(Exception):
    """Base of every user-facing error (see the module docstring)."""

    kind: ClassVar[str] = "bad_input"
    code: ClassVar[str] = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        kind: str | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        if kind is not None:
            if kind not in KINDS:
                raise ValueError(f"unknown error kind {kind!r}; expected one of {sorted(KINDS)}")
            self.kind = kind  # type: ignore[misc]
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.template = _tokenize_own_flag(message, field)
        self.field = field
        self.details = details
        super().__init__(self.render("python"))

    def render(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> str:
        """The message with every ``{@field}`` token in ``style``'s syntax.

        For the ``cli`` and ``rest`` front ends a message that does not name its field at all
        (``unknown format 'int5'`` raised for ``weights``) is prefixed with it
        (``--weights: unknown format 'int5'``), so every answer says which input is wrong.
        """

        if style == "cli" and aliases is None:
            aliases = getattr(self, "aliases", None)  # set by the command line's error translation
        text = render_tokens(self.template, style, aliases)
        # (Not for "nothing is feasible": the whole request is at fault, its field is a hint.)
        if (style in ("cli", "rest") and self.field and self.kind != "infeasible"
                and not _names(text, self.field, style, aliases)):
            shown = render_field(self.field, style, aliases)
            text = f"{shown if style == 'cli' else repr(shown)}: {text}"
        return text

    @property
    def message(self) -> str:
        return self.render("python")

    def render_details(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> Any:
        """``details`` for one front end (texts in it with ``{@field}`` tokens rendered in
        ``style``'s syntax); the same as ``details`` unless a subclass carries such texts."""
        return self.details

    def __reduce__(self):  # picklable whatever a subclass's __init__ takes (process pools)
        return (_restore, (type(self), self.args, self.__dict__))

    @property
    def exit_code(self) -> int:
        return KINDS[self.kind][0]

    @property
    def http_status(self) -> int:
        return KINDS[self.kind][1]


def _restore(cls: type, args: tuple, state: dict) -> "TierwiseError":
    exc = cls.__new__(cls, *args)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class Worded(str):
    """A "got" already worded for a message (``'id' twice (again at line 2, column 1)``): shown as
    it is, not quoted as a value."""


def describe_value(value: Any) -> str:
    """Render a bad value for an error message (strings quoted, long values cut)."""
    if isinstance(value, Worded):
        return str(value)
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


def echo_value(value: Any) -> str:
    """:func:`describe_value` for a message template (rendered by :func:`render_tokens`): a value
    that holds token syntax of its own (``--batch '{@kv_budget}'``) is put in as given, never read
    as a field name or a listing reference."""
    text = describe_value(value)
    if any(t in text for t in ("{@", "{!", "{$")):
        return per_front_end(text, text)
    return text


class SpecError(TierwiseError, ValueError):
    """A hardware spec object was built with an invalid value.

    ``field`` is relative to the object (for example ``bandwidth_bytes_per_s``);
    the loader prefixes it with the position in the profile file.
    """

    def __init__(self, field: str, expected: str, got: Any) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        TierwiseError.__init__(self, f"field '{field}' must be {expected}; got {describe_value(got)}",
                               field=field, code="invalid_profile")


class ProfileError(TierwiseError, ValueError):
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
        text = f"{name}: field '{field}' must be {expected}; got {describe_value(got)}"
        TierwiseError.__init__(self, per_front_end(text, text), field=field, code="invalid_profile")

    def named(self, request_field: str) -> "ProfileError":
        """This error as reported for the request field that gave the file: led by the field and
        the path as given (``--hardware cfg/x.json: field 'sources' must be present; …``). An
        error about the whole file (``<document>``, ``<file>``) becomes the request field's own."""
        new = ProfileError.__new__(ProfileError)
        new.path, new.expected, new.got = self.path, self.expected, self.got
        whole = self.field.startswith(("<", "("))
        what = f"expected {self.expected}" if whole else f"field '{self.field}' must be {self.expected}"
        text = f"{self.path}: {what}; got {describe_value(self.got)}"  # as written: a path is no field token
        TierwiseError.__init__(new, "{@" + request_field + "} " + per_front_end(text, text),
                               field=request_field if whole else self.field, code=self.code)
        return new


_LIST_COMMANDS = {"hardware": "tierwise hardware list", "model": "tierwise models list",
                  "engine": "tierwise engines list"}


#: Longer input gets no "did you mean": no id, format or field name is this long, and fuzzy matching
#: costs time in the input's length (a 900,000-character format name took 14 s to answer).
SUGGEST_MAX_LEN = 100


def close_ids(typed: Any, known: list[str], n: int = 5) -> list[str]:
    """Known ids close to ``typed``, best first: the same id up to case and punctuation
    ('VLLM', 'TRT-LLM' → vllm, trtllm), then ids that start with or contain it, then
    spelling neighbours (difflib). None for input longer than :data:`SUGGEST_MAX_LEN`."""
    import difflib

    if len(str(typed)) > SUGGEST_MAX_LEN:
        return []

    def norm(x: str) -> str:
        return re.sub(r"[^a-z0-9]", "", x.lower())

    needle = str(typed).strip().lower()
    squashed = norm(needle)
    same = [k for k in known if squashed and norm(k) == squashed]
    if same:  # 'VLLM' means vllm: no spelling neighbours beside it
        return same[:n]
    prefix = [k for k in known if needle and k.startswith(needle) and k not in same]
    contains = [k for k in known if needle and needle in k and k not in same + prefix]
    seen = same + prefix + contains
    close = [k for k in difflib.get_close_matches(needle, known, n=n, cutoff=0.5) if k not in seen]
    return (seen + close)[:n]


class UnknownIdError(TierwiseError, LookupError):
    """A catalog id is not known. ``suggestions`` lists close ids (best first)."""

    def __init__(self, id: str, kind: str, suggestions: list[str], known: list[str] | None = None) -> None:
        self.id = id
        self.catalog = kind  # "hardware" or "model"; ``kind`` is the error kind (not_found)
        self.suggestions = list(suggestions)
        self.known = list(known or [])
        TierwiseError.__init__(self, str(self), field=kind, kind="not_found", code="not_found",
                               details={"suggestions": self.suggestions} if self.suggestions else None)

    def __str__(self) -> str:
        return self.render("python")

    def render(self, style: str = "python", aliases: Mapping[str, str] | None = None) -> str:
        """The message; the command that lists the ids is named except in REST answers."""
        message = f"unknown {self.catalog} id {self.id!r}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(self.suggestions) + "?"
        elif self.known:
            message += "; known ids: " + ", ".join(self.known)
        command = _LIST_COMMANDS.get(self.catalog)
        if command and style != "rest":
            message += f" (see `{command}`)"
        if style == "cli" and self.field and not getattr(self, "positional", False):
            # the command line names the flag the id came through (--engine, --models, -H's --hardware)
            if aliases is None:
                aliases = getattr(self, "aliases", None)
            message = f"{render_field(self.field, 'cli', aliases)}: {message}"
        return message


class UnsupportedPrecisionError(TierwiseError, ValueError):
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
