"""Bounds on what a client may register or ask for, checked cheaply before any real work.

- :func:`check_model_size`: a registered model config may not exceed :data:`MODEL_LIMITS`
  (about 8–40× the largest shipped model in each dimension: generous for any real or
  hypothetical model, finite so that a config cannot make one estimate build a million
  layers).
- :func:`group_count`: the number of decision groups of a model, from its workload blocks
  (``count`` × groups per block) without building the per-layer list.
- :func:`check_depth`: a JSON mapping nested at most so deep (a config is flat in practice).
"""

from __future__ import annotations

from typing import Any

from api.errors import ApiError

#: ArchSpec field → (most accepted, config keys that may carry it, most in the shipped catalog).
MODEL_LIMITS: dict[str, tuple[int, tuple[str, ...], int]] = {
    "num_layers": (1024, ("num_hidden_layers", "n_layer", "num_layers", "n_layers"), 128),
    "num_decoder_layers": (1024, ("num_decoder_layers",), 24),
    "hidden_size": (262_144, ("hidden_size", "n_embd", "d_model", "dim"), 25_600),
    "intermediate_size": (1_048_576, ("intermediate_size", "n_inner", "ffn_dim", "d_ff"), 102_400),
    "num_heads": (4096, ("num_attention_heads", "n_head", "num_heads"), 232),
    "head_dim": (4096, ("head_dim", "d_kv"), 256),
    "vocab_size": (4_194_304, ("vocab_size",), 256_000),
    "num_experts": (4096, ("num_local_experts", "num_experts", "n_routed_experts"), 8),
    "max_position_embeddings": (16_777_216, ("max_position_embeddings", "n_positions", "max_seq_len"), 131_072),
    "image_size": (16_384, ("image_size",), 224),
}
MAX_CONV_LAYERS = 1024
MAX_CONFIG_DEPTH = 32


def _config_key(config: dict | None, attr: str, keys: tuple[str, ...], value: int) -> str:
    """The key of the client's config that carried ``value`` (for the error's field)."""
    if isinstance(config, dict):
        for k in keys:
            if config.get(k) == value:
                return k
    return attr


def check_model_size(arch: Any, config: dict | None, field: str = "config") -> None:
    """Refuse a model over :data:`MODEL_LIMITS` (422 ``limit_exceeded`` naming the config key)."""
    for attr, (limit, keys, shipped) in MODEL_LIMITS.items():
        value = getattr(arch, attr, 0) or 0
        if isinstance(value, int) and value > limit:
            key = _config_key(config, attr, keys, value)
            raise ApiError(422, "limit_exceeded",
                           f"'{field}.{key}' is {value}; this server accepts at most {limit} "
                           f"(the largest shipped model has {shipped})",
                           f"{field}.{key}", {"limit": attr, "value": limit})
    convs = len(getattr(arch, "conv_layers", ()) or ())
    if convs > MAX_CONV_LAYERS:
        raise ApiError(422, "limit_exceeded", f"'{field}' has {convs} convolution layers; this server accepts at most "
                       f"{MAX_CONV_LAYERS}", field, {"limit": "conv_layers", "value": MAX_CONV_LAYERS})


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
