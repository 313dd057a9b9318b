"""Errors of Tierwise: one base class, :class:`TierwiseError` (defined in ``hwmodels.errors``,
the lowest layer, and re-exported here).

Every user-facing error carries ``field`` (the request field in Python syntax), ``kind``
(``bad_input``, ``not_found``, ``infeasible``, ``conflict``, ``unavailable``) and ``code``; the
CLI and the REST service map on those alone and render ``{@field}`` tokens in their own syntax
(``--kv`` on the command line, ``'kv'`` in REST).
"""

from __future__ import annotations

from hwmodels.errors import KINDS, TierwiseError, render_field

__all__ = ["KINDS", "TierwiseError", "render_field"]
