"""The public Python API of Tierwise, re-exported by :mod:`planner`.

Every function takes the same fields as the command line and REST (``tierwise estimate
--help``, ``POST /v1/estimate``) as keyword arguments, goes through the one request layer
(:mod:`planner.request`) and returns the cost model's or planner's own result objects
(each has ``to_dict()``, the exact JSON the CLI's ``--json`` and REST return). ``model``
and ``hardware`` are catalog ids (``"llama-3.1-8b"``, ``"h100-sxm"``), paths to a config or
profile file, or objects loaded with :func:`load_model` / :func:`load_hardware`.

Errors are :class:`planner.errors.TierwiseError`: ``field`` names the argument at fault,
``kind`` says what went wrong (``bad_input``, ``not_found``, ``infeasible`` …). A
configuration that does not fit raises :class:`planner.request.DoesNotFitError`, whose
``details["changes"]`` lists the single changes (computed, not guessed) that make it fit.
"""

from __future__ import annotations

from typing import Any

from hwmodels.errors import TierwiseError

__all__ = [
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


def _no_mode(fields: dict[str, Any], fn: str, mode: str) -> None:
    if fields.get("mode") is not None and fields["mode"] != mode:  # None: not given, as for every field
        other = "estimate_training" if mode == "inference" else "estimate"
        raise TierwiseError(f"{fn}() estimates {mode}; call {other}() for {fields['mode']!r}", field="mode",
                            code="invalid_field")


def estimate(model: Any, hardware: Any, **fields: Any):
    """Predict one inference configuration (prefill + decode) of ``model`` on ``hardware``.

    ``fields``: ``batch`` (an integer or ``"max"``), ``prompt``, ``gen``, ``tp``, ``pp``,
    ``dp``, ``ep``, ``devices``, ``weights``, ``activations``, ``kv`` (format names; the
    default is the device's native 16-bit format), ``sparsity``, ``low_rank``,
    ``allow_offload``, ``kv_budget``, ``kv_evicted``, ``kv_share``, ``flash_chunk_kib``,
    ``runtime``, ``per_op``. Training-only fields (``zero``, ``seq`` …) are refused.

    Returns a :class:`planner.costmodel.InferenceEstimate` (``ttft_s``, ``tpot_s``,
    ``memory`` …; ``to_dict()`` gives the CLI's ``--json``). Raises
    :class:`~planner.request.DoesNotFitError` when it does not fit in memory.
    """
    from planner.request import build_estimate_request, run_estimate

    _no_mode(fields, "estimate", "inference")
    return run_estimate(build_estimate_request({**fields, "mode": "inference", "model": model, "hardware": hardware}))


def estimate_training(model: Any, hardware: Any, **fields: Any):
    """Predict one training step of ``model`` on ``hardware``.

    ``fields``: ``tp``, ``pp``, ``dp``, ``ep``, ``cp``, ``devices``, ``global_batch``,
    ``micro_batch``, ``seq``, ``zero``, ``recompute``, ``sequence_parallel``, ``interleave``,
    ``optimizer``, ``finetune`` (``full``, ``lora:16``, ``qlora:64``), ``weights``,
    ``activations``, ``attention``, ``grad_accumulation``, ``dropout``, ``runtime``.
    Inference-only fields (``kv``, ``batch`` …) are refused.

    Returns a :class:`planner.training.TrainingEstimate` (``step_time_s``, ``mfu``,
    ``memory`` …). Raises :class:`~planner.request.DoesNotFitError` when it does not fit.
    """
    from planner.request import build_estimate_request, run_estimate

    _no_mode(fields, "estimate_training", "training")
    return run_estimate(build_estimate_request({**fields, "mode": "training", "model": model, "hardware": hardware}))


def plan(model: Any, hardware: Any, **fields: Any):
    """Solve a compression + parallelism plan of ``model`` on ``hardware``.

    ``fields`` (as ``tierwise plan``): ``devices``, ``tp``/``pp``/``dp``/``ep`` (searched
    when left out), ``batch``, ``prompt``, ``gen``, ``max_memory_per_device`` (bytes or
    ``"60GB"``), ``ttft_slo_s``/``tpot_slo_s`` (seconds or ``"500ms"``), ``avg_bits``,
    ``allow_offload``, ``objective``, ``objective_weights``, ``formats``, ``sparsity``,
    ``kv``, ``activations``, ``pins``, ``low_rank``, ``sensitivity``, ``backend``,
    ``time_limit_s``, ``gap``.

    Returns a :class:`planner.plan.Plan` (``choices``, ``layout``, ``predicted`` …;
    :func:`planner.plan.save_plan` writes it). Raises
    :class:`planner.diagnose.NoFeasiblePlanError` with a diagnosis when nothing fits.
    """
    from planner.request.fields import reject_unknown
    from planner.request.plan import PlanRequest, run_plan
    from planner.request import field_info

    reject_unknown(fields, field_info(PlanRequest), "a plan request")
    return run_plan(PlanRequest(**fields, model=model, hardware=hardware))


def capacity_serve(model: Any, hardware: Any = None, **fields: Any):
    """The fewest devices of each hardware that serve a load within latency SLOs, cheapest first.

    ``model``: one model, or a list of models sharing the fleet (with ``mix``, the share of
    the load per model). ``hardware``: one or several candidates (every catalog id when
    ``None``). ``fields``: ``qps``, ``ttft_slo_s``, ``tpot_slo_s`` (required), ``prompt``,
    ``gen``, ``percentile`` (0.95 or 95), ``formats``, ``activations`` (the compute format of every
    weight format; those an engine does not run with it are listed in ``unsupported``), ``kv``,
    ``max_devices``, ``max_pp``, ``runtime``, ``time_limit_s`` (the answer then covers what was searched in time),
    ``engine`` (one id, or a list compared side by side: one row per engine × hardware, the
    pairs an engine does not run in ``unsupported``), ``serving="disaggregated"`` (separate
    prefill and decode pools too, compared with the aggregated answer) and ``kv_link``.

    Returns a :class:`planner.capacity.ServeAnswer` (``ranked``, ``feasible``,
    ``to_dict()``). Raises TierwiseError of kind ``infeasible`` when no hardware meets the SLOs.
    """
    from planner.request import field_info
    from planner.request.capacity import CapacityServeRequest, run_capacity_serve
    from planner.request.fields import reject_unknown

    reject_unknown(fields, field_info(CapacityServeRequest), "a capacity request")
    key = "models" if isinstance(model, (list, tuple)) else "model"
    return run_capacity_serve(CapacityServeRequest(**fields, **{key: model}, hardware=hardware))


def capacity_frontier(model: Any, hardware: Any = None, **fields: Any):
    """Throughput-latency frontier: tokens/s per device against tokens/s per user over batch
    sizes, layouts and weight formats, Pareto-filtered per (engine, hardware).

    ``fields``: ``engine`` (one id or a list), ``prompt``, ``gen``, ``formats``, ``activations``, ``kv``,
    ``max_devices``, ``max_pp``, ``runtime``, ``time_limit_s`` (the answer then covers the pairs
    searched when it runs out: ``complete=False``). Returns a :class:`planner.frontier.FrontierAnswer`
    (``series``, each without a point giving its ``reason``; ``unsupported``; ``to_dict()``), as
    ``tierwise capacity frontier`` and ``POST /v1/capacity/frontier``; raises a TierwiseError of
    kind ``infeasible`` when no pair has a point.
    """
    from planner.request import field_info
    from planner.request.capacity import CapacityFrontierRequest, run_capacity_frontier
    from planner.request.fields import reject_unknown

    reject_unknown(fields, field_info(CapacityFrontierRequest), "a frontier request")
    return run_capacity_frontier(CapacityFrontierRequest(**fields, model=model, hardware=hardware))


def capacity_train(model: Any, hardware: Any, **fields: Any):
    """Devices of ``hardware`` needed to train ``model`` on ``tokens`` within ``days``.

    ``fields``: ``tokens``, ``days`` (required), ``seq``, ``global_batch_tokens``,
    ``activations``, ``optimizer``, ``max_devices``, ``engine``, ``time_limit_s``. ``hardware``:
    one id, or several (a list, or ids separated by commas as on the command line).

    Returns a :class:`planner.capacity.TrainAnswer` (``best``, ``fastest``, ``frontier``,
    ``to_dict()``) for one hardware, and a :class:`planner.capacity.TrainFleetAnswer`
    (``answers`` ranked cheapest first, ``skipped``, ``to_dict()``; it indexes like a list)
    for several, as ``POST /v1/capacity/train``. Raises TierwiseError of kind ``infeasible``
    when no hardware meets the deadline.
    """
    from planner.request import field_info
    from planner.request.capacity import CapacityTrainRequest, run_capacity_train
    from planner.request.fields import reject_unknown

    reject_unknown(fields, field_info(CapacityTrainRequest), "a training capacity request")
    fleet = run_capacity_train(CapacityTrainRequest(**fields, model=model, hardware=hardware))
    return fleet if several_ids(hardware) else fleet[0]


def several_ids(value: Any) -> bool:
    """Whether a hardware field names several ids: a list, or ids separated by commas."""
    return isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value)


def load_model(ref: str):
    """An :class:`planner.arch.ArchSpec` from a catalog id or a path to an HF-style config."""
    from planner.arch import load_arch

    return load_arch(ref)


def load_hardware(ref: str):
    """A ``hwmodels.DeviceSpec`` from a catalog id or a path to a hardware profile (YAML)."""
    from hwmodels import load_device

    return load_device(ref)


def list_models() -> list[str]:
    """Catalog model ids, sorted."""
    from planner.arch import list_models as _list

    return _list()


def list_hardware() -> list[str]:
    """Catalog hardware ids, sorted."""
    from hwmodels import list_devices

    return list_devices()
