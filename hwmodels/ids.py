"""The one rule for the ids of hardware, engine and model profiles, and of plans.

An id is a bare name — never a path, never more than one line — because it becomes part of file names
(``<model>.pte``, ``<model>-tierwise/``) and of the scripts an export writes (``# vLLM server for plan of
<model>``): an id with a newline or a ``/`` would write outside the export folder or run as a shell command.
"""

from __future__ import annotations

import re
from typing import Any

#: 1-64 letters, digits and ``_ . + -``, starting with a letter or digit (REST's ``Id`` uses the same).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
#: ``ID_RE.fullmatch`` (``$`` in ``re.match`` also matches before a trailing newline).
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
ID_EXPECTED = "an id of 1-64 letters, digits and _ . + - starting with a letter or digit (no spaces, slashes or newlines)"

_OTHER = re.compile(r"[^A-Za-z0-9_.+-]+")


def is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def id_from_name(name: str, fallback: str = "model") -> str:
    """An id made from a file or folder name: every run of other characters becomes ``-`` (``my model
    (v2)`` → ``my-model-v2``), cut to 64; ``fallback`` when nothing is left."""
    out = _OTHER.sub("-", name).strip("-._+")[:64].rstrip("-._+")
    return out if is_id(out) else fallback
