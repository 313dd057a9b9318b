"""Errors of Tierwise: one base class, :class:`TierwiseError` (defined in ``hwmodels.errors``,
the lowest layer, and re-exported here), and the planner's shared error types.

Every user-facing error carries ``field`` (the request field in Python syntax), ``kind``
(``bad_input``, ``not_found``, ``infeasible``, ``conflict``, ``unavailable``) and ``code``; the
CLI and the REST service map on those alone and render ``{@field}`` tokens in their own syntax
(``--kv`` on the command line, ``'kv'`` in REST).
"""

from __future__ import annotations

from typing import Any

from hwmodels.errors import KINDS, TierwiseError, render_field, render_tokens


class EstimateError(TierwiseError, ValueError):
    """A configuration that cannot be estimated (an impossible layout, a format the device
    cannot run, a link the hardware does not have...). ``field`` names the offending request
    field; ``message`` is the text (``{@field}`` tokens rendered for Python/REST)."""

    code = "invalid_configuration"

    def __init__(self, field: str, message: str, *, kind: str | None = None, code: str | None = None, details=None) -> None:
        super().__init__(message, field=field, kind=kind, code=code, details=details)


class InfeasibleError(TierwiseError):
    """Nothing satisfies the request: no assignment of a solver problem, no capacity
    configuration meeting the target. ``details`` carries the best configuration's numbers or
    a diagnosis; ``backend`` names the solver when a solver proved it (``status`` is then
    ``"infeasible"``, like :class:`planner.solver.SolverError`)."""

    kind = "infeasible"
    code = "infeasible"
    status = "infeasible"

    def __init__(self, message: str, details: Any = None, *, field: str | None = None,
                 backend: str | None = None) -> None:
        super().__init__(message, field=field, details=details)
        self.backend = backend

    @property
    def payload(self) -> Any:
        """The same as ``details`` (the name capacity callers used)."""
        return self.details


class SensitivityError(TierwiseError, ValueError):
    """A bad sensitivity source or file (``field`` names the entry)."""

    def __init__(self, message: str, field: str = "sensitivity"):
        TierwiseError.__init__(self, message, field=field)


__all__ = ["EstimateError", "InfeasibleError", "KINDS", "SensitivityError", "TierwiseError", "render_field",
           "render_tokens"]
