"""Errors of plan execution, importable without torch (the CLI maps them to exit codes)."""

from __future__ import annotations

__all__ = ["CalibrationError", "ModelLoadError", "PlanApplyError"]


class PlanApplyError(ValueError):
    """A plan that cannot be applied to a model; ``field`` names the plan entry at fault."""

    user_facing = True

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ModelLoadError(ValueError):
    """A torch model that cannot be built: unknown name, missing package, corrupt weights."""

    user_facing = True


class CalibrationError(RuntimeError):
    """A measurement that cannot run here (no CUDA device, a failing kernel)."""
