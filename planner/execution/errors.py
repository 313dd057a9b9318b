"""Errors of plan execution, importable without torch (the CLI maps them to exit codes)."""

from __future__ import annotations

from hwmodels.errors import TierwiseError

__all__ = ["CalibrationError", "ModelLoadError", "PlanApplyError"]


class PlanApplyError(TierwiseError, ValueError):
    """A plan that cannot be applied to a model; ``field`` names the plan entry at fault."""

    code = "invalid_plan"

    def __init__(self, message: str, field: str | None = None) -> None:
        TierwiseError.__init__(self, message, field=field)


class ModelLoadError(TierwiseError, ValueError):
    """A torch model that cannot be built: unknown name, missing package, corrupt weights."""

    code = "invalid_model_config"


class CalibrationError(TierwiseError, RuntimeError):
    """A measurement that cannot run here (no CUDA device, a failing kernel)."""

    code = "calibration_failed"
