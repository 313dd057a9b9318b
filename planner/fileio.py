"""Atomic file writes for the files Tierwise produces (plans, profiles, sensitivity tables), and
the strict reading of them back."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hwmodels.errors import Worded


class DuplicateKeyError(ValueError):
    """A document states one key twice in one mapping (JSON object or YAML mapping)."""

    def __init__(self, message: str, repeated: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        #: ``'x' twice`` (with the line of the second for YAML)
        self.repeated = repeated
        #: the repeated key's path in the document (``profile.memory.0.name``; the key alone for YAML)
        self.path = path


class NumberTooLongError(ValueError):
    """A JSON integer longer than Python converts (``sys.get_int_max_str_digits()``, 4300 digits), with its
    path in the document (``vocab_size``; ``profile.memory.0.bytes``) instead of the parser's bare
    ``ValueError``, which named no key and reached the command line as an internal error."""

    def __init__(self, path: str, digits: int) -> None:
        super().__init__(f"{path!r}: a number of {digits} digits; expected at most {_max_digits()}")
        self.path = path
        self.digits = digits


def _max_digits() -> int:
    import sys

    return sys.get_int_max_str_digits() or 4300


class _LongInt(str):
    """An integer's digits too long to convert, kept as text so that its place can be found."""


def _parse_int(text: str) -> int | _LongInt:
    limit = _max_digits()
    return _LongInt(text) if len(text.lstrip("-")) > limit else int(text)


class _Repeated(dict):
    """A JSON object that stated ``key`` twice, built whole so that its place can be found."""

    key: str = ""


def _mark_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    marked = _Repeated(out)
    marked.key = next(k for k, _ in pairs if k in seen or seen.add(k))
    return marked


class _LongPath(tuple):
    """The path of an integer too long to convert (:class:`NumberTooLongError`), with its digits."""

    digits: str = ""


def _find_repeated(root: Any) -> tuple | None:
    """The path of the first repeated key or too-long integer (a :class:`_LongPath`), walked without
    recursion (as deep as the parser went)."""
    stack: list[tuple[Any, tuple]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _LongInt):
            found = _LongPath(path or ("the document",))
            found.digits = str(node)
            return found
        if isinstance(node, _Repeated):
            return (*path, node.key)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend(reversed([(v, (*path, k)) for k, v in items]))
    return None


def parse_document(text: str | bytes, kind: str) -> Any:
    """Parse a plan or sensitivity file's text (``kind`` "json" or "yaml"), or a JSON request body,
    as ``json.loads`` / ``yaml.safe_load`` do, except that a key given twice in one mapping is a
    :class:`DuplicateKeyError` (naming the key's path for JSON) rather than silently the last one.
    Syntax errors are the parsers' own (``json.JSONDecodeError``, ``yaml.YAMLError``)."""
    if kind == "json":
        data = json.loads(text, object_pairs_hook=_mark_repeats, parse_int=_parse_int)
        found = _find_repeated(data)
        if found is None:
            return data
        path = ".".join(str(p) for p in found)
        if isinstance(found, _LongPath):
            raise NumberTooLongError(path, len(found.digits.lstrip("-")))
        raise DuplicateKeyError(f"key {path!r} is given twice in one object; give each key once",
                                Worded(f"{found[-1]!r} twice"), path)
    import yaml

    from hwmodels.safeyaml import DuplicateKeyError as YamlDuplicate
    from hwmodels.safeyaml import UniqueKeySafeLoader, duplicate_key, repeated_key

    try:
        return yaml.load(text, Loader=UniqueKeySafeLoader)  # noqa: S506 - the safe loader, refusing duplicate keys
    except YamlDuplicate as exc:
        raise DuplicateKeyError(duplicate_key(exc), repeated_key(exc), str(exc.key)) from None


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, which would race with
    other threads creating files): Linux reports it in /proc/self/status; elsewhere 022."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary file in the same directory is
    written, flushed and renamed over ``path``, so a reader never sees half a file and a
    failed write leaves any previous file intact."""
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates the file 0600; a plan or profile is an ordinary file, so it gets the
        # mode any other file written here would (0666 less the umask), as exports do.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        from planner.deadline import INTERRUPTED

        if INTERRUPTED.is_set():  # Ctrl-C came while the result was computed: nothing is committed
            raise KeyboardInterrupt
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p
