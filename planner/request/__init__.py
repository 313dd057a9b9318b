"""The one request layer of Tierwise.

Every front end — the ``tierwise`` command line, the REST service and the Python API
(:mod:`planner`) — builds one of these requests from what it received and calls the same
functions, so a request means the same thing everywhere:

* :class:`EstimateRequest` (inference) and :class:`TrainingRequest` (one training step),
  built by :func:`build_estimate_request` and run by :func:`run_estimate`;
* :class:`PlanRequest` (compression + parallelism plan), run by :func:`run_plan`;
* :class:`CapacityServeRequest` and :class:`CapacityTrainRequest` (fleet sizing), run by
  :func:`run_capacity_serve` and :func:`run_capacity_train`; :class:`CapacityFrontierRequest`
  (the throughput-latency frontier; its fields are CapacityServeRequest's), run by
  :func:`run_capacity_frontier` (all in :mod:`planner.request.capacity`).

A field is declared once, on its request dataclass (default, help text, the modes it
applies to); its value is ``None`` until given. Validation errors are
:class:`~planner.errors.TierwiseError` with ``field`` set to the field's Python name.

Adding a field (say ``engine``): declare it once with :func:`~planner.request.fields.opt` on
the request dataclass(es) (on ``_Common`` in :mod:`planner.request.estimate` for both
estimate modes), check it and pass it on in that module's ``resolve_*`` function. The REST
bodies (``api.schemas``) and the Python API take it from the declaration; the command line
adds one ``typer.Option`` line whose help is the declaration's (``field_info(...)[name]``).
"""

from __future__ import annotations

from planner.request.estimate import (
    EstimateRequest,
    TrainingRequest,
    build_estimate_request,
    estimate_result_dict,
    run_estimate,
)
from planner.request.fields import field_info, json_safe
from planner.request.fit import DoesNotFitError, Fix

__all__ = [
    "DoesNotFitError",
    "EstimateRequest",
    "Fix",
    "TrainingRequest",
    "build_estimate_request",
    "estimate_result_dict",
    "field_info",
    "json_safe",
    "run_estimate",
]
