"""Bounds on what a client may register or ask for, checked cheaply before any real work.

- :func:`check_model_size`: a registered model config may not exceed :data:`MODEL_LIMITS`
  (:mod:`planner.request.limits`, which every front end applies to every request's model).
- :func:`group_count`: the number of decision groups of a model, from its workload blocks
  (``count`` × groups per block) without building the per-layer list.
- :func:`check_depth`: a JSON mapping nested at most so deep (a config is flat in practice).
"""

from __future__ import annotations

from typing import Any

from api.errors import ApiError
from planner.request.limits import MAX_CONV_LAYERS, MODEL_LIMITS, oversize

MAX_CONFIG_DEPTH = 32


def check_model_size(arch: Any, config: dict | None, field: str = "config") -> None:
    """Refuse a model over :data:`MODEL_LIMITS` (422 ``limit_exceeded`` naming the config key);
    the limits are the request layer's (:mod:`planner.request.limits`), which every front end applies."""
    over = oversize(arch, config)
    if over is None:
        return
    if over.attr == "conv_layers":
        raise ApiError(422, "limit_exceeded", f"'{field}' has {over.value} convolution layers; this server accepts at "
                       f"most {MAX_CONV_LAYERS}", field, {"limit": "conv_layers", "value": MAX_CONV_LAYERS})
    raise ApiError(422, "limit_exceeded",
                   f"'{field}.{over.key}' is {over.value}; this server accepts at most {over.limit} "
                   f"(the largest shipped model has {over.shipped})",
                   f"{field}.{over.key}", {"limit": over.attr, "value": over.limit})


def group_count(arch: Any) -> int:
    """Decision groups of ``arch`` (as ``planner.export.group_modules`` would list them),
    counted per workload block: O(operators per block), not O(layers)."""
    from planner.workload import WEIGHTED_KINDS, build_workload

    total = 0
    for block in build_workload(arch).blocks:
        groups = {op.group for op in block.ops if op.kind in WEIGHTED_KINDS and op.tied_to is None}
        total += len(groups) * (block.count if block.repeated else 1)
    return total


def check_depth(data: Any, field: str, max_depth: int = MAX_CONFIG_DEPTH) -> None:
    """Refuse JSON data nested deeper than ``max_depth`` (iterative: no recursion)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise ApiError(422, "invalid_field", f"'{field}' is nested deeper than {max_depth} levels", field)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


__all__ = ["MAX_CONFIG_DEPTH", "MODEL_LIMITS", "check_depth", "check_model_size", "group_count"]
