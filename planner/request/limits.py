"""Bounds on the size of a model config, checked before any estimate, plan or capacity search
builds its workload (a config with a billion layers would otherwise run for minutes).

:data:`MODEL_LIMITS` is about 8–40× the largest shipped model in each dimension: generous for
any real or hypothetical model, finite so that no config makes one request build a million
layers. Every front end applies it through :func:`check_model_size` (the request layer's
:func:`~planner.request.estimate.load_specs`; the REST service also when a model is registered).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from hwmodels.errors import TierwiseError

__all__ = ["MAX_CONV_LAYERS", "MODEL_LIMITS", "Oversize", "check_model_size", "oversize"]

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


class Oversize(NamedTuple):
    """One dimension of a model over :data:`MODEL_LIMITS`."""

    attr: str  # the ArchSpec field ("conv_layers" for a CNN's convolution list)
    key: str  # the config's own key that carried it (the ArchSpec field when not found)
    value: int
    limit: int
    shipped: int | None  # the most in the shipped catalog


def _config_key(config: Any, attr: str, keys: tuple[str, ...], value: int) -> str:
    """The key of the config (or of a nested block such as ``text_config``) that carried ``value``."""
    blocks = [config] if isinstance(config, dict) else []
    if blocks:
        blocks += [v for v in config.values() if isinstance(v, dict)]
    for block in blocks:
        for k in keys:
            if block.get(k) == value:
                return k
    return attr


def oversize(arch: Any, config: dict | None = None) -> Oversize | None:
    """The first dimension of ``arch`` over :data:`MODEL_LIMITS`, else ``None``. ``config``
    (the mapping ``arch`` was built from) names the key as the user wrote it."""
    for attr, (limit, keys, shipped) in MODEL_LIMITS.items():
        value = getattr(arch, attr, 0) or 0
        if isinstance(value, int) and value > limit:
            return Oversize(attr, _config_key(config, attr, keys, value), value, limit, shipped)
    convs = len(getattr(arch, "conv_layers", ()) or ())
    if convs > MAX_CONV_LAYERS:
        return Oversize("conv_layers", "conv_layers", convs, MAX_CONV_LAYERS, None)
    return None


def check_model_size(arch: Any, config: dict | None = None, *, name: str = "model", source: str = "") -> Any:
    """``arch``, or a TierwiseError (exit 2 / HTTP 422 ``limit_exceeded``) naming the request
    field ``name`` and the config key over its limit, with the limit and the value given."""
    over = oversize(arch, config)
    if over is None:
        return arch
    where = f" {source}" if source else ""
    shipped = f"; the largest shipped model has {over.shipped}" if over.shipped is not None else ""
    raise TierwiseError(f"{{@{name}}}{where}: {over.key} must be at most {over.limit} (the most Tierwise accepts{shipped});"
                        f" got {over.value}", field=name, code="limit_exceeded",
                        details={"key": over.key, "limit": over.attr, "value": over.limit, "given": over.value})
