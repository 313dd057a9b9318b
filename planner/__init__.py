"""Tierwise: a hardware-aware cost model and compression planner.

The public Python API (see ``docs/python.md``)::

    import planner

    est = planner.estimate("llama-3.1-8b", "h100-sxm", batch=8, weights="fp8")
    print(est.ttft_s, est.tpot_s, est.memory.per_device_bytes)

:func:`estimate`, :func:`estimate_training`, :func:`plan`, :func:`capacity_serve`, :func:`capacity_frontier`,
:func:`capacity_train`, :func:`load_model`, :func:`load_hardware`, :func:`list_models` and
:func:`list_hardware` live in :mod:`planner.api` and are loaded on first use, so
``import planner`` stays light. :class:`TierwiseError` is the base of every error.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = [
    "DoesNotFitError",
    "TierwiseError",
    "capacity_frontier",
    "capacity_serve",
    "capacity_train",
    "estimate",
    "estimate_training",
    "list_hardware",
    "list_models",
    "load_hardware",
    "load_model",
    "plan",
]

_API = frozenset(__all__) - {"DoesNotFitError", "TierwiseError"}  # the functions of planner.api


def __getattr__(name: str) -> Any:
    # Lazy attributes (PEP 562). Submodules (planner.plan, planner.capacity …) take
    # precedence once imported, so the API functions that share a submodule's name are
    # bound here on first access instead of being looked up as attributes.
    if name in _API:
        from planner import api

        return getattr(api, name)
    if name == "TierwiseError":
        from planner.errors import TierwiseError

        return TierwiseError
    if name == "DoesNotFitError":
        from planner.request.fit import DoesNotFitError

        return DoesNotFitError
    raise AttributeError(f"module 'planner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# ``planner.plan`` is both the API function and the submodule that defines the Plan type.
# Importing a submodule rebinds the package attribute to the module, so the module is made
# callable: ``planner.plan(model, hardware, ...)`` solves a plan whichever was loaded first,
# and ``planner.plan.Plan`` / ``from planner.plan import load_plan`` keep working.


class _CallablePlanModule(types.ModuleType):
    def __call__(self, model: Any, hardware: Any, **fields: Any) -> Any:
        from planner.api import plan

        return plan(model, hardware, **fields)

    __call__.__doc__ = "Solve a compression + parallelism plan: see :func:`planner.api.plan`."


class _CallableLoader:
    """Wraps the real loader (duck-typed importlib Loader; importlib.abc is not imported to keep this light)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec):  # noqa: ANN001 - importlib protocol
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.inner.exec_module(module)
        module.__class__ = _CallablePlanModule


class _PlanModuleFinder:
    """A meta-path finder (duck-typed) for ``planner.plan`` only."""

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 - importlib protocol
        if fullname != "planner.plan":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _CallableLoader(spec.loader)
                return spec
        return None


if not any(isinstance(f, _PlanModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _PlanModuleFinder())
