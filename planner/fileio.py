"""Atomic file writes for the files Tierwise produces (plans, profiles, sensitivity tables), and
the strict reading of them back."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


class DuplicateKeyError(ValueError):
    """A document states one key twice in one mapping (JSON object or YAML mapping)."""

    def __init__(self, message: str, repeated: str) -> None:
        super().__init__(message)
        self.message = message
        #: ``'x' twice`` (with the line of the second for YAML)
        self.repeated = repeated


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {key!r} is given twice in one object; give each key once", f"{key!r} twice")
        out[key] = value
    return out


def parse_document(text: str, kind: str) -> Any:
    """Parse a plan or sensitivity file's text (``kind`` "json" or "yaml") as ``json.loads`` /
    ``yaml.safe_load`` do, except that a key given twice in one mapping is a
    :class:`DuplicateKeyError` rather than silently the last one. Syntax errors are the parsers' own
    (``json.JSONDecodeError``, ``yaml.YAMLError``)."""
    if kind == "json":
        return json.loads(text, object_pairs_hook=_unique_pairs)
    import yaml

    from hwmodels.safeyaml import DuplicateKeyError as YamlDuplicate
    from hwmodels.safeyaml import UniqueKeySafeLoader, duplicate_key, repeated_key

    try:
        return yaml.load(text, Loader=UniqueKeySafeLoader)  # noqa: S506 - the safe loader, refusing duplicate keys
    except YamlDuplicate as exc:
        raise DuplicateKeyError(str(duplicate_key(exc)), repeated_key(exc)) from None


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
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p
