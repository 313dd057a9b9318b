"""Shared CLI plumbing: exit codes, error reporting, JSON output, flag parsing.

Exit codes (the public contract in README.md, "Use"): 0 success, 2 bad input, 3 nothing feasible.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from hwmodels.errors import TierwiseError, per_front_end

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INFEASIBLE = 3

# Piped output (files, tests, CI logs) gets a wide console so ids and numbers are never cut.
# No emoji codes: text the user typed is echoed as typed (':x:' is not ❌).
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200, emoji=False)


_KIND_OF_EXIT = {EXIT_BAD_INPUT: "bad_input", EXIT_INFEASIBLE: "infeasible", 1: "unavailable"}


class CliError(TierwiseError):
    """An error found by the command line itself: printed as one message; ``exit_code``
    (2 bad input, 3 nothing feasible) selects the error kind. ``payload`` becomes ``details``."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT, *, field: str | None = None,
                 payload: dict | None = None):
        if exit_code not in _KIND_OF_EXIT:
            raise ValueError(f"CliError exit code must be one of {sorted(_KIND_OF_EXIT)}; got {exit_code!r}")
        kind = _KIND_OF_EXIT[exit_code]
        super().__init__(message, field=field, kind=kind, code="infeasible" if kind == "infeasible" else None,
                         details=payload)


def fail(message: str, code: int = EXIT_BAD_INPUT, *, field: str | None = None) -> NoReturn:
    raise CliError(message, code, field=field)


@contextmanager
def writing(field: str, path: Any) -> Iterator[None]:
    """Writing the file or folder a flag names (``--out``, ``--csv``, ``--plot``): an OSError
    (no such folder, permission denied, a file where a folder goes) is an error naming the
    flag and the reason, exit 2 — not an internal error."""
    try:
        yield
    except OSError as exc:
        shown = per_front_end(str(path), str(path))  # the path as typed, never read as a field token
        raise CliError(f"--{field.replace('_', '-')}: cannot write {shown}: {exc.strerror or exc}", field=field) from None


def clean_json(obj: Any) -> Any:
    """Make a result JSON-safe: inf/nan → null, tuples → lists, dataclass dicts kept."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return clean_json(obj.item())
    return obj


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(clean_json(obj), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtTpP]i?[bB]?|[bB])?\s*$")
_UNITS = {
    "": 1.0,
    "b": 1.0,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "p": 1e15,
    "ki": 1024.0,
    "mi": 1024.0**2,
    "gi": 1024.0**3,
    "ti": 1024.0**4,
    "pi": 1024.0**5,
}


def parse_bytes(text: str | float | int, field: str) -> float:
    """'60GB' → 60e9, '24GiB' → 24·2^30, '1.5e9' → 1.5e9 (decimal SI unless 'i')."""
    if isinstance(text, (int, float)):
        if text <= 0:
            fail(f"--{field.replace('_', '-')} must be a positive size; got {text}", field=field)
        return float(text)
    m = _SIZE.match(str(text))
    if not m:
        fail(f"--{field.replace('_', '-')} must be a size like 60GB, 24GiB or 1.5e9; got {text!r}", field=field)
    unit = (m.group(2) or "").lower().rstrip("b")
    val = float(m.group(1)) * _UNITS[unit]
    if val <= 0:
        fail(f"--{field.replace('_', '-')} must be a positive size; got {text!r}", field=field)
    return val


def parse_positive_int(text: str, flag: str, *, allow_zero: bool = False) -> int:
    try:
        v = int(str(text).strip())
    except ValueError:
        fail(f"{flag} must be a {'non-negative' if allow_zero else 'positive'} integer; got {text!r}", field=flag.lstrip("-"))
    if v < 0 or (v == 0 and not allow_zero):
        fail(f"{flag} must be a {'non-negative' if allow_zero else 'positive'} integer; got {text!r}", field=flag.lstrip("-"))
    return v


def human_bytes(n: float | None) -> str:
    if n is None or not math.isfinite(n):
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def human_time(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def human_num(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    a = abs(x)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"


@contextmanager
def positional_id(kind: str) -> Iterator[None]:
    """An unknown ``kind`` id given as the command's argument (``models show ID``), not through a
    flag: its message is not prefixed with ``--model``."""
    from hwmodels.errors import UnknownIdError

    try:
        yield
    except UnknownIdError as exc:
        if exc.catalog == kind:
            exc.positional = True
        raise


def load_model_or_fail(ref: str):
    from planner.arch import load_arch

    return load_arch(ref)


def load_hardware_or_fail(ref: str):
    from hwmodels import load_device

    return load_device(ref)


def option_batch(value: str) -> int | str:
    if str(value).strip().lower() == "max":
        return "max"
    return parse_positive_int(value, "--batch")


def exit_with(code: int) -> NoReturn:
    raise typer.Exit(code)


def check_writable(flag: str, path: Path | None, *, folder: bool = False) -> Path | None:
    """Check, before any work, that ``--FLAG PATH`` can be written, by one rule for every command: missing
    folders on the way are created when the file is written; a file where a folder must be, a folder where
    the file must be (``folder``: PATH is itself the folder written into), or a place that cannot take a
    new file (a read-only or virtual file system: a file is created and removed there to see) is an exit-2
    error naming the flag — not a message after the search, nor one that blames a missing folder."""
    if path is None:
        return None
    import os
    import tempfile

    shown = per_front_end(str(path), str(path))
    field = flag.lstrip("-").replace("-", "_")
    if str(path).strip() == "":
        raise CliError(f"{flag}: expected a path to write to; got an empty one", EXIT_BAD_INPUT, field=field)
    if path.exists():
        if folder and not path.is_dir():
            raise CliError(f"{flag}: {shown} is a file; expected a folder to write into", EXIT_BAD_INPUT, field=field)
        if not folder and path.is_dir():
            raise CliError(f"{flag}: {shown} is a folder; expected the name of a file to write", EXIT_BAD_INPUT,
                           field=field)
    ancestor = path if (folder and path.is_dir()) else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        a = per_front_end(str(ancestor), str(ancestor))
        raise CliError(f"{flag}: cannot write {shown}: {a} is a file, not a folder", EXIT_BAD_INPUT, field=field)
    try:
        fd, probe = tempfile.mkstemp(prefix=".tierwise-", suffix=".probe", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        a = per_front_end(str(ancestor), str(ancestor))
        raise CliError(f"{flag}: cannot write {shown}: no new file can be made in {a} ({exc.strerror or exc})",
                       EXIT_BAD_INPUT, field=field) from None
    return path


def plot_target(given: str | Path | None, name: str) -> Path | None:
    """The file ``--plot PATH`` writes, checked before the search runs: a directory (an existing one,
    or any path ending in a slash, created when written) gets ``NAME.png`` inside it; a file path keeps
    its name, ``.png`` added when it has no suffix (as matplotlib does); a suffix matplotlib cannot
    write, or a place that cannot be written (:func:`check_writable`), is an exit-2 error naming ``--plot``."""
    if given is None:
        return None
    import os

    raw = str(given)
    path = Path(raw)
    if path.is_dir() or raw.endswith(("/", os.sep)):
        target = path / f"{name}.png"
        check_writable("--plot", target)
        return target
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if not suffix:
        path = path.with_name(path.name + ".png")
    elif suffix not in kinds:
        raise CliError(f"--plot: cannot write a {path.suffix!r} image ({path}); expected a directory or a file "
                       f"ending in one of: {', '.join('.' + k for k in sorted(kinds))}", EXIT_BAD_INPUT, field="plot")
    check_writable("--plot", path)
    return path
