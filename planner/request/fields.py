"""Field declarations and value checks shared by every request of :mod:`planner.request`.

A request field is declared once, on its request dataclass, with :func:`opt`: its default
(a constant, or a function of the loaded model and hardware such as "the device's native
16-bit format"), the modes it applies to and its help text. The field's value in a request
is ``None`` until a front end gives it, so the request layer can tell "given" from "left
out": a field given for a mode it does not apply to is an error, and defaults are filled
in one place (:func:`fill_defaults`).

Every check raises :class:`~planner.errors.TierwiseError` with ``field`` set to the
request field's Python name and the message naming it with a ``{@field}`` token, so the
CLI prints ``--kv-budget`` and REST ``'kv_budget'``.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from hwmodels.errors import SUGGEST_MAX_LEN, TierwiseError, echo_value
from hwmodels._checks import is_number

__all__ = [
    "FieldInfo",
    "bad",
    "check_bool",
    "check_choice",
    "check_format",
    "check_int",
    "check_layout_fields",
    "check_number",
    "field_info",
    "fill_defaults",
    "given_fields",
    "check_distinct_ids",
    "item_key",
    "int_from_text",
    "opt",
    "reject_unknown",
]


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What the request layer knows of one field besides its value."""

    name: str
    help: str
    default: Any = None  # a value, or a callable (arch, device) -> value
    modes: frozenset[str] | None = None  # None: every mode of the request
    choices: tuple[str, ...] | None = None  # the accepted values of a closed set

    @property
    def help_text(self) -> str:
        """The help with the default, for ``--help`` (the command line shows no default
        itself: a flag left out is "not given")."""
        d = self.default
        if d is None or callable(d) or d is False:
            return self.help
        shown = ",".join(map(str, d)) if isinstance(d, (tuple, list)) else f"{d:g}" if isinstance(d, float) else d
        return f"{self.help} (default {shown})"  # not [..]: the help is rich markup

    def default_for(self, arch: Any, device: Any) -> Any:
        return self.default(arch, device) if callable(self.default) else self.default

#: Plan request fields whose command-line flag is not the field name (the plan command, and
#: the diagnosis that prints its cheapest changes as flags, read them here).
PLAN_CLI_ALIASES = {"ttft_slo_s": "--ttft-slo", "tpot_slo_s": "--tpot-slo", "backend": "--solver",
                    "time_limit_s": "--time-limit", "pins": "--pin"}



def within_context(n: int) -> Any:
    """A sequence-length default: ``n``, or the model's trained context when that is shorter
    (bert-base: 512 positions, OPT: 2048), so a length the user did not give never fails the
    context check (:func:`planner.request.estimate.check_context`)."""

    def default(arch: Any, device: Any) -> int:
        limit = getattr(arch, "max_position_embeddings", 0) or 0
        return min(n, limit) if limit > 0 and getattr(arch, "family", None) in ("decoder", "encoder") else n

    return default


def opt(help: str, default: Any = None, *, modes: Iterable[str] | None = None,
        choices: Iterable[str] | None = None) -> Any:
    """A request field: ``None`` (not given) in the dataclass, ``default`` once filled."""
    meta = {"tierwise": (help, default, frozenset(modes) if modes is not None else None,
                         tuple(choices) if choices is not None else None)}
    return field(default=None, metadata=meta)


def field_info(cls: type) -> dict[str, FieldInfo]:
    """Field name → :class:`FieldInfo` of a request dataclass, in declaration order."""
    return dict(_field_info(cls))


@functools.cache
def _field_info(cls: type) -> dict[str, FieldInfo]:
    out: dict[str, FieldInfo] = {}
    for f in fields(cls):
        meta = f.metadata.get("tierwise")
        if meta is None:
            out[f.name] = FieldInfo(f.name, "", None if f.default is MISSING else f.default)
        else:
            out[f.name] = FieldInfo(f.name, *meta)
    return out


def given_fields(req: Any) -> dict[str, Any]:
    """The fields a front end gave (not ``None``)."""
    return {f.name: getattr(req, f.name) for f in fields(req) if getattr(req, f.name) is not None}


def fill_defaults(req: Any, arch: Any, device: Any) -> dict[str, Any]:
    """Every field of ``req``: given values, else the declared default for this model and
    hardware. The one place defaults are filled."""
    out: dict[str, Any] = {}
    for name, info in _field_info(type(req)).items():
        v = getattr(req, name)
        out[name] = info.default_for(arch, device) if v is None else v
    return out


def reject_unknown(names: Iterable[str], known: Iterable[str], what: str) -> None:
    """A field name that no request declares is an error naming it (with close names)."""
    known = list(known)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6) if len(name) <= SUGGEST_MAX_LEN else []
            hint = f"; did you mean {', '.join('{@' + c + '}' for c in close)}?" if close else ""
            raise TierwiseError(f"{what} has no field {name!r}{hint}", field=name, code="unknown_field")


# ---------------------------------------------------------------------------
# Value checks
# ---------------------------------------------------------------------------


def bad(name: str, expected: str, got: Any, *, code: str = "invalid_field") -> TierwiseError:
    return TierwiseError(f"{{@{name}}} must be {expected}; got {echo_value(got)}", field=name, code=code)


def check_int(name: str, v: Any, *, lo: int = 1, hi: int | None = None) -> int:
    """An integer in [lo, hi]. As in JSON Schema (docs/api.md), an integral number such as 8.0
    is an integer, ``bool`` is not, and neither is text ("8"): every front end agrees (REST
    converts 8.0 before this check, the Python API gets it here)."""
    if isinstance(v, float):
        if not v.is_integer():  # 2.5 is shown as 2.5
            raise TierwiseError(f"{{@{name}}} must be {_int_text(lo, hi)}; got the number {v!r}", field=name,
                                code="invalid_field")
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(name, _int_text(lo, hi), v)
    if v < lo or (hi is not None and v > hi):
        raise bad(name, _int_text(lo, hi), v)
    return v


def int_from_text(v: Any) -> Any:
    """Command-line text of an integer ("8", " 8", "+8") as the int, anything else unchanged: the
    command line's own parsing (typer does it for typed flags; ``--batch`` also takes 'max'). A
    request built elsewhere gets no such conversion: "8" is not an integer (docs/api.md)."""
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,30}\s*", v):
        return int(v)
    return v


def float_from_text(text: str) -> float | None:
    """A number written in ASCII ("0.5", "1e3", " 2 ") as a float, else ``None``. Python's own
    ``float`` also reads other scripts' digits ("١٠"); the command line's integer flags, sizes and
    durations take ASCII digits only, and so does every number field read from text."""
    if not text.isascii():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _int_text(lo: int, hi: int | None) -> str:
    if hi is not None:
        return f"an integer from {lo} to {hi}"
    return {0: "an integer >= 0", 1: "a positive integer"}.get(lo, f"an integer >= {lo}")


def check_number(name: str, v: Any, *, lo: float = 0.0, lo_open: bool = True, hi: float | None = None) -> float:
    if not is_number(v):
        raise bad(name, "a finite number", v)
    if (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
        rng = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
        raise bad(name, f"a number {rng}", v)
    return float(v)


def check_bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise bad(name, "true or false", v)
    return v


def did_you_mean(typed: Any, known: Iterable[str]) -> str:
    """' (did you mean X?)' for a mistyped name close to known ones, else ''."""
    from hwmodels.errors import close_ids

    if not isinstance(typed, str) or not typed.strip():
        return ""
    close = [k for k in close_ids(typed, list(known), n=3) if k != typed]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def check_choice(name: str, v: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(v, str) or v not in choices:
        raise TierwiseError(f"{{@{name}}} must be one of {', '.join(choices)}; got {echo_value(v)}"
                            f"{did_you_mean(v, choices)}", field=name, code="invalid_field")
    return v


def check_format(name: str, v: Any, role: str) -> str:
    """A registered format name usable as ``role`` (weight, activation, kv); returns the
    name as given (the cost model resolves aliases itself)."""
    from planner.formats import get_format, list_formats

    from hwmodels.errors import close_ids

    if not isinstance(v, str):
        raise bad(name, "a format name such as bf16, fp8 or int4-g128", v)
    try:
        fmt = get_format(v)
    except ValueError as exc:
        # The registry's message lists every format; this field takes only those of its role (no
        # codebook format is a KV format), so the list and the suggestions are the role's.
        names = [f.name for f in list_formats(role=role)]
        head = f"unknown format {echo_value(v)}"  # as typed: str(exc) has rendered any token-like text in it
        _, _, rest = str(exc).partition(";")
        _, _, alias = rest.partition(" (did you mean ")  # the registry's own guess knows aliases ('fp8')
        close = [a.strip() for a in alias.removesuffix("?)").split(",") if a.strip() and _usable(a.strip(), role)]
        close += [c for c in close_ids(v, names, n=3) if c not in (v, *close)]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""  # one hint, not two
        raise TierwiseError(f"{{@{name}}}: {head}{hint}; expected one of the formats for {_ROLE_TEXT[role]}: "
                            f"{', '.join(names)}", field=name, code="invalid_format",
                            details={"suggestions": close[:3], "known": names}) from None
    if role not in fmt.roles:
        names = ", ".join(f.name for f in list_formats(role=role))
        raise TierwiseError(f"{{@{name}}} must be a format usable for {_ROLE_TEXT[role]} ({names}); got {echo_value(v)}",
                            field=name, code="invalid_format")
    return v


def usable_as(names: Iterable[str], role: str) -> list[str]:
    """The names of ``names`` that the request's format fields take for ``role`` (an engine profile
    may list a compute format, Megatron's mxfp8, that no request can name: not offered)."""
    return [n for n in names if _usable(n, role)]


def _usable(fmt_name: str, role: str) -> bool:
    from planner.formats import get_format

    try:
        return role in get_format(fmt_name).roles
    except ValueError:
        return False


_ROLE_TEXT = {"weight": "weights", "activation": "activations (compute)", "kv": "the KV cache"}


def check_with(name: str, v: Any, parse: Callable[[Any], Any]) -> Any:
    """Run a parser of the library (sparsity, fine-tuning method…) and re-raise its error
    as a TierwiseError naming ``name``."""
    try:
        return parse(v)
    except TierwiseError as exc:
        if exc.field is not None:
            raise
        raise TierwiseError(f"{{@{name}}}: {exc.template}", field=name, kind=exc.kind, code=exc.code,
                            details=exc.details) from None
    except (ValueError, TypeError) as exc:
        text = getattr(exc, "message", None) or str(exc)
        raise TierwiseError(f"{{@{name}}}: {text}", field=name, code="invalid_field") from None


def as_mapping(obj: Any) -> Mapping[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def json_safe(obj: Any) -> Any:
    """A result made JSON-safe: inf/nan → null, tuples → lists, numpy scalars → Python.
    The one conversion every front end's answer goes through."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return json_safe(obj.item())
    return obj


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtTpP]i?[bB]?|[bB])?\s*$")
_SIZE_UNITS = {"": 1.0, "b": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15,
               "ki": 1024.0, "mi": 1024.0**2, "gi": 1024.0**3, "ti": 1024.0**4, "pi": 1024.0**5}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(s|ms|us|µs|min|h)?\s*$")
_DURATION_UNITS = {"s": 1.0, None: 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0, "h": 3600.0}


def parse_size(name: str, v: Any) -> float:
    """Bytes from a number or a size text: '60GB' → 60e9, '24GiB' → 24·2^30, '1.5e9'."""
    given = v
    if isinstance(v, str):
        m = _SIZE.match(v)
        if not m:
            raise bad(name, "a size like 60GB, 24GiB or 1.5e9 (bytes)", v)
        unit = (m.group(2) or "").lower().rstrip("b")
        v = float(m.group(1)) * _SIZE_UNITS[unit]
        if not 0 < v < math.inf:
            raise bad(name, "a positive, finite size", v)
        if unit or v >= _BARE_SIZE_MIN:
            return v
    else:
        v = check_number(name, v)
    if v < _BARE_SIZE_MIN:
        # a bare 60 is 60 bytes, no device holds a model in that: almost surely 60GB was meant
        like = f"{_g(float(v))}GB or {_g(float(v))}GiB" if v < 1e4 else "60GB or 24GiB"  # 60 meant 60GB; 5e5 meant nothing clear
        raise bad(name, f"a size with a unit, such as {like} (a number alone is bytes, and at least 1e6 of them)", given)
    return v


#: The least bytes a size given without a unit may be (a number alone counts bytes).
_BARE_SIZE_MIN = 1e6


def _g(x: float) -> str:
    return f"{x:g}"


def time_limit(name: str, v: Any) -> float:
    """A time limit: seconds, or a duration text on the command line and in Python ('90', '500ms', '5min', '1h'),
    at most a day."""
    return check_number(name, parse_duration(name, v) if isinstance(v, str) else v, hi=86400.0)


def parse_duration(name: str, v: Any) -> float:
    """Seconds from a number or a duration text: '0.5', '500ms', '50us'."""
    if isinstance(v, str):
        m = _DURATION.match(v)
        if not m:
            raise bad(name, "a duration like 0.5, 500ms, 50us, 5min or 1h", v)
        v = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        if not 0 < v < math.inf:
            raise bad(name, "a positive, finite duration", v)
        return v
    return check_number(name, v)


def check_list(name: str, v: Any, *, max_len: int = 64, unique: Callable[[Any], Any] | None = None) -> tuple:
    """A list from a sequence or a comma-separated text ('bf16,fp8'). ``unique``: items with
    the same key (``unique(item)``) are an error naming the field and the repeated item."""
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    if not isinstance(v, (list, tuple)) or not v:
        raise bad(name, "a non-empty list", v)  # (Python and the command line also take "bf16,fp8")
    if len(v) > max_len:
        raise bad(name, f"a list of at most {max_len} items", f"{len(v)} items")
    if unique is not None:
        seen: dict[Any, Any] = {}
        for x in v:
            key = unique(x)
            if key in seen:
                first = seen[key]
                same = not isinstance(x, str) or not isinstance(first, str) or first.strip() == x.strip()
                what = (f"{echo_value(key)} more than once" if same else
                        f"{echo_value(first)} and {echo_value(x)}, both {echo_value(key)}")
                raise TierwiseError(f"{{@{name}}} lists {what}; give each once", field=name, code="invalid_field",
                                    details={"repeated": str(key)})
            seen[key] = x
    return tuple(v)


def _label(v: Any) -> str:
    return echo_value(v) if isinstance(v, str) else echo_value(getattr(v, "id", v))


def check_distinct_ids(name: str, given: Sequence[Any], ids: Sequence[str]) -> None:
    """Items of a list field (``given``, as the caller wrote them) that load to profiles of one
    id (``ids``): a profile file that kept a catalog id beside that id, or two files of one id,
    would answer under one name, one silently in place of the other."""
    seen: dict[str, Any] = {}
    for x, pid in zip(given, ids):
        if pid in seen:
            first = seen[pid]
            raise TierwiseError(f"{{@{name}}} lists {_label(first)} and {_label(x)}, both profiles of id {echo_value(pid)}; "
                                "give each profile its own id", field=name, code="invalid_field",
                                details={"repeated": str(pid)})
        seen[pid] = x


def item_key(x: Any) -> Any:
    """The identity of a list item for :func:`check_list`'s ``unique``: an id as text (stripped),
    a loaded spec by its ``id``."""
    if isinstance(x, str):
        return x.strip()
    return getattr(x, "id", None) or id(x)


def check_layout_fields(arch: Any, device: Any, v: Mapping[str, Any], *, training: bool) -> Any:
    """The layout of ``v`` (tp, cp, pp, dp, ep, devices) checked against the model (heads,
    layers, experts), ``devices`` and the links of ``device`` (``planner.layout``'s rules,
    the ones the cost model applies); returns the :class:`~planner.layout.Layout`."""
    from planner.layout import Layout, check_layout_on

    for name in ("tp", "cp", "pp", "dp", "ep"):
        check_int(name, v[name], hi=1 << 20)
    devices = None if v.get("devices") is None else check_int("devices", v["devices"], hi=1 << 20)
    layout = Layout(tp=v["tp"], pp=v["pp"], dp=v["dp"], ep=v["ep"], cp=v["cp"])
    check_layout_on(arch, device, layout, devices, training=training)
    return layout


# What a value of the wrong type was expected to be, in plain words, by pydantic's error type (typer
# checks the command line's typed options with pydantic, FastAPI the REST bodies): each front end
# words the message in its own syntax around it (`--tokens` / 'tokens').
EXPECTED_BY_ERROR = {
    "float_parsing": "a number", "float_type": "a number", "finite_number": "a finite number",
    "int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
    "int_parsing_size": "a whole number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "a string", "list_type": "a list", "dict_type": "an object",
}
