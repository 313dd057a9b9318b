"""Execution and validation in PyTorch: apply plans to real models, measure, calibrate.

Public entry points (imported lazily, so that ``import planner.execution`` does not load torch):

* :func:`apply_plan` — a compressed copy of a torch model following a plan;
* :func:`validate` / :func:`make_evaluator` — measured fidelity, bytes and latency;
* :func:`load_torch_model` — all-MiniLM-L6-v2, the digits CNN, Llama-shaped decoders;
* :func:`calibrate` / :func:`write_profile` — this machine's roofs as a hardware profile;
* :func:`measure_sensitivity` / :func:`write_sensitivity` — data-driven sensitivity files;
* :func:`apply_plan_torchao` — the same plan through torchao's kernels, when torchao is installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from planner.execution.errors import CalibrationError, ModelLoadError, PlanApplyError

_LAZY = {
    "apply_plan": "planner.execution.apply",
    "compressed_modules": "planner.execution.apply",
    "HANDLERS": "planner.execution.apply",
    "register_handler": "planner.execution.apply",
    "validate": "planner.execution.validate",
    "make_evaluator": "planner.execution.validate",
    "ValidationReport": "planner.execution.validate",
    "load_torch_model": "planner.execution.models",
    "TorchModel": "planner.execution.models",
    "calibrate": "planner.execution.calibrate",
    "write_profile": "planner.execution.calibrate",
    "measure_sensitivity": "planner.execution.sensitivity_data",
    "write_sensitivity": "planner.execution.sensitivity_data",
    "pack_weight": "planner.execution.storage",
    "PackedWeight": "planner.execution.storage",
    "apply_plan_torchao": "planner.execution.torchao_backend",
}

__all__ = ["CalibrationError", "ModelLoadError", "PlanApplyError", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'planner.execution' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
