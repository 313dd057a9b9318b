"""One deadline for a long-running job: a time budget plus a cancel switch.

Every long-running path (a plan solve, its diagnosis, a Pareto sweep, a capacity search)
takes one :class:`Deadline` and checks it between units of work; sub-steps get a share of it
with :meth:`Deadline.child` and can never outlive it. ``cancel()`` (from another thread, e.g.
``DELETE /v1/jobs/{id}``) makes every holder stop at its next check.
"""

from __future__ import annotations

import math
import threading
import time

from hwmodels.errors import TierwiseError


#: Set by the command line's Ctrl-C (SIGINT) handler: every deadline of the process counts as cancelled, so a
#: solve whose solver swallowed the KeyboardInterrupt (HiGHS polls a Python callback) stops at its next check,
#: and nothing is written after it (:func:`planner.fileio.atomic_write_text` refuses to commit a file).
INTERRUPTED = threading.Event()


class DeadlineExceeded(TierwiseError):
    """The time budget ran out before anything usable was found."""

    kind = "infeasible"
    code = "time_limit"


class Cancelled(TierwiseError):
    """The job was cancelled by its owner."""

    kind = "conflict"
    code = "cancelled"


class Deadline:
    """A wall-clock budget (``seconds``; ``None`` = unbounded) with a shared cancel event."""

    __slots__ = ("_end", "_event", "_parent", "field", "_limit")

    def __init__(self, seconds: float | None = None, *, event: threading.Event | None = None,
                 field: str = "time_limit_s", _parent: "Deadline | None" = None) -> None:
        if seconds is not None and (not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0):
            raise TierwiseError(f"{{@{field}}} must be a non-negative number of seconds; got {seconds!r}", field=field)
        self._end = math.inf if seconds is None else time.monotonic() + float(seconds)
        self._event = event if event is not None else (_parent._event if _parent else threading.Event())
        self._parent = _parent
        self.field = field
        # the caller's limit, named when it runs out (a child's share is not what the caller set)
        self._limit = _parent._limit if _parent is not None else (None if seconds is None else float(seconds))

    @classmethod
    def unbounded(cls) -> "Deadline":
        return cls(None)

    def remaining(self) -> float:
        """Seconds left (``inf`` when unbounded, 0 when cancelled or past)."""
        if self._event.is_set() or INTERRUPTED.is_set():
            return 0.0
        left = self._end - time.monotonic()
        if self._parent is not None:
            left = min(left, self._parent.remaining())
        return max(left, 0.0)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or INTERRUPTED.is_set()

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def cancel(self) -> None:
        self._event.set()

    def check(self, what: str = "the job", unfinished: str = "before anything was found") -> None:
        """Raise :class:`Cancelled` or :class:`DeadlineExceeded` if the job must stop now; ``unfinished``
        says what the user is left without (a search: nothing found; a measurement: no file)."""
        if self._event.is_set() or INTERRUPTED.is_set():
            raise Cancelled(f"{what} was cancelled")
        if self.expired():
            given = "" if self._limit is None else f" {self._limit:g} s"
            raise DeadlineExceeded(f"{what} ran out of time {unfinished} (the limit is {{@{self.field}}}"
                                   f"{given}; raise it)", field=self.field)

    def child(self, seconds: float | None = None, fraction: float | None = None) -> "Deadline":
        """A sub-deadline: at most ``seconds`` or ``fraction`` of what is left, never past this one."""
        left = self.remaining()
        budget = left
        if seconds is not None:
            budget = min(budget, seconds)
        if fraction is not None and math.isfinite(left):
            budget = min(budget, left * fraction)
        return Deadline(None if math.isinf(budget) else budget, field=self.field, _parent=self)


__all__ = ["INTERRUPTED", "Cancelled", "Deadline", "DeadlineExceeded"]
