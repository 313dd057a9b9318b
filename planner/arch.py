"""Hugging Face style model configs → one normalized :class:`ArchSpec`.

A model reaches the planner as a catalog id (``profiles/models/<id>.json``) or as a path to
any local HF-style ``config.json`` / YAML file. Each supported ``model_type`` has a reader
that knows that family's field names (``n_embd`` vs ``hidden_size`` vs ``d_model``) and its
architectural defaults (biases, tied embeddings, norm placement, positional encoding), so
the rest of the planner sees one shape vocabulary.

Parameter counts are exact for the modules the Hugging Face implementation builds (or, for
PaLM, the paper describes): every weight, bias, norm scale, expert and router, plus the LM
head when it is not tied to the input embedding. They are checked against published totals
in ``tests/test_arch.py``.

Files are parsed with ``json.load`` or ``yaml.safe_load`` only.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from hwmodels import UnknownIdError
from hwmodels.errors import TierwiseError, describe_value

__all__ = [
    "ArchSpec",
    "ConvLayer",
    "FAMILIES",
    "ModelConfigError",
    "SUPPORTED_MODEL_TYPES",
    "UnknownIdError",
    "arch_from_config",
    "list_models",
    "load_arch",
    "load_config_dict",
    "model_config_path",
]

FAMILIES = ("decoder", "encoder", "encoder_decoder", "cnn", "vit")
_TRANSFORMER_FAMILIES = frozenset({"decoder", "encoder", "encoder_decoder", "vit"})
_NORMS = frozenset({"rmsnorm", "layernorm", "batchnorm"})
_POSITION_ENCODINGS = frozenset({"learned", "rope", "alibi", "relative", "none"})

# The input every CNN layer table is computed for (ImageNet evaluation resolution).
CNN_INPUT_SIZE = 224


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

_MISSING = object()


class ModelConfigError(TierwiseError, ValueError):
    """A model config that cannot be turned into an :class:`ArchSpec`.

    ``path`` is the file (or other origin) the config came from, ``field`` the offending key
    (``None`` when the whole file is at fault), ``expected`` what would have been accepted
    and ``got`` what was found.
    """

    def __init__(self, path: str, field: str | None, expected: str, got: Any = _MISSING) -> None:
        self.path = str(path)
        self.field = field
        self.expected = expected
        self.got = None if got is _MISSING else got
        self._missing = got is _MISSING
        TierwiseError.__init__(self, str(self), field=field, code="invalid_model_config")

    def __str__(self) -> str:
        if self.field is None:
            return f"{self.path}: {self.expected}; got {self.got}"
        if self._missing:
            return f"{self.path}: field '{self.field}' is missing; it must be {self.expected}"
        return f"{self.path}: field '{self.field}' must be {self.expected}; got {describe_value(self.got)}"

    def __reduce__(self):  # keep the error picklable (multiprocessing, pytest-xdist)
        return (_rebuild_model_config_error, (self.path, self.field, self.expected, self.got, self._missing))


def _rebuild_model_config_error(path, field, expected, got, missing):
    return ModelConfigError(path, field, expected, _MISSING if missing else got)


# ---------------------------------------------------------------------------
# Spec dataclasses
# ---------------------------------------------------------------------------


def _check_pos_int(owner: str, name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        expected = "a non-negative integer" if allow_zero else "a positive integer"
        raise ModelConfigError(owner, name, expected, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvLayer:
    """One 2-D convolution of a CNN, with its output size for a 224×224 input.

    ``params()`` counts the kernel plus the BatchNorm scale and shift when ``has_bn``
    (running mean/variance are buffers, not parameters). Convolutions here have no bias:
    the ResNet and MobileNetV2 implementations set ``bias=False`` before a BatchNorm.
    """

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    out_h: int
    out_w: int
    has_bn: bool

    def __post_init__(self) -> None:
        owner = f"ConvLayer({self.name})"
        for name in ("in_channels", "out_channels", "kernel", "stride", "groups", "out_h", "out_w"):
            _check_pos_int(owner, name, getattr(self, name))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ModelConfigError(
                owner,
                "groups",
                f"a divisor of in_channels ({self.in_channels}) and out_channels ({self.out_channels})",
                self.groups,
            )

    def weight_params(self) -> int:
        """Kernel weights only: ``out · in/groups · k²``."""
        return self.out_channels * (self.in_channels // self.groups) * self.kernel * self.kernel

    def params(self) -> int:
        """Kernel weights plus BatchNorm γ and β."""
        return self.weight_params() + (2 * self.out_channels if self.has_bn else 0)

    def macs(self) -> int:
        """Multiply-accumulates for one image: one per kernel weight per output pixel."""
        return self.weight_params() * self.out_h * self.out_w


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchSpec:
    """A model's architecture, normalized across Hugging Face ``model_type`` s.

    Shapes are per layer; ``num_layers`` repeats them. Fields beyond the common vocabulary
    (``norms_per_layer``, ``norm_bias``, ``attn_out_bias``, ``lm_head_bias``,
    ``embedding_norm``, ``final_norm``, ``pooler``, ``pos_emb_offset``, ``embed_proj_dim``,
    ``relative_attention_num_buckets``, ``sliding_window_layers``) carry the details that
    make :meth:`param_count` exact; their defaults fit a Llama-style decoder.
    """

    id: str
    model_type: str
    source: str
    family: str
    num_layers: int
    num_decoder_layers: int = 0
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    gated_mlp: bool
    activation: str
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    learned_pos_emb: bool
    num_experts: int = 0
    experts_per_token: int = 0
    parallel_attn_mlp: bool = False
    attn_bias: bool = False
    mlp_bias: bool = False
    norm: str = "rmsnorm"
    type_vocab_size: int = 0
    sliding_window: int | None = None
    conv_layers: tuple[ConvLayer, ...] = ()
    image_size: int = 0
    patch_size: int = 0
    num_channels: int = 0
    num_labels: int = 0
    # --- details for exact parameter counts (see class docstring) ---
    position_encoding: str = "rope"
    norms_per_layer: int | None = None  # None: 1 for a parallel block, else 2
    norm_bias: bool | None = None  # None: True for layernorm, False for rmsnorm
    attn_out_bias: bool | None = None  # None: same as attn_bias (Qwen2 has q/k/v bias only)
    lm_head_bias: bool = False  # GPT-J
    embedding_norm: bool = False  # BLOOM word_embeddings_layernorm, BERT embeddings.LayerNorm
    final_norm: bool = True  # False for post-LN encoders (BERT) and post-LN OPT
    pooler: bool = False  # BERT pooler.dense
    pos_emb_offset: int = 0  # OPT stores 2 extra position rows
    embed_proj_dim: int = 0  # OPT-350m: embeddings narrower than hidden, projected in/out
    relative_attention_num_buckets: int = 0  # T5 relative position bias (first layer of each stack)
    sliding_window_layers: int | None = None  # None: every layer when sliding_window is set
    # Which layers use the window: 0 → the last ``sliding_window_layers`` layers (Qwen2:
    # index >= max_window_layers; all of them for Mistral); p >= 2 → interleaved, layer i is
    # global when (i + 1) % p == 0 and local otherwise (Gemma 2: p = 2, local first).
    sliding_window_period: int = 0

    def __post_init__(self) -> None:
        owner = f"ArchSpec({self.id})"
        if self.family not in FAMILIES:
            raise ModelConfigError(owner, "family", f"one of {', '.join(FAMILIES)}", self.family)
        if self.norm not in _NORMS:
            raise ModelConfigError(owner, "norm", f"one of {', '.join(sorted(_NORMS))}", self.norm)
        if self.position_encoding not in _POSITION_ENCODINGS:
            raise ModelConfigError(
                owner, "position_encoding", f"one of {', '.join(sorted(_POSITION_ENCODINGS))}", self.position_encoding
            )
        for name in (
            "num_decoder_layers",
            "num_experts",
            "experts_per_token",
            "type_vocab_size",
            "image_size",
            "patch_size",
            "num_channels",
            "num_labels",
            "pos_emb_offset",
            "embed_proj_dim",
            "relative_attention_num_buckets",
            "vocab_size",
            "max_position_embeddings",
        ):
            _check_pos_int(owner, name, getattr(self, name), allow_zero=True)
        if self.family in _TRANSFORMER_FAMILIES:
            for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size"):
                _check_pos_int(owner, name, getattr(self, name))
            if self.num_heads % self.num_kv_heads:
                raise ModelConfigError(
                    owner, "num_kv_heads", f"a divisor of num_heads ({self.num_heads})", self.num_kv_heads
                )
            if self.family != "vit":
                _check_pos_int(owner, "vocab_size", self.vocab_size)
        else:
            _check_pos_int(owner, "num_layers", self.num_layers)
            _check_pos_int(owner, "hidden_size", self.hidden_size)
            if not self.conv_layers:
                raise ModelConfigError(owner, "conv_layers", "a non-empty tuple of ConvLayer for a CNN", self.conv_layers)
        if self.family == "encoder_decoder":
            _check_pos_int(owner, "num_decoder_layers", self.num_decoder_layers)
        if (self.num_experts == 0) != (self.experts_per_token == 0) or self.experts_per_token > self.num_experts:
            raise ModelConfigError(
                owner,
                "experts_per_token",
                f"between 1 and num_experts ({self.num_experts}) for a mixture of experts, or 0 with num_experts 0",
                self.experts_per_token,
            )
        if self.sliding_window is not None:
            _check_pos_int(owner, "sliding_window", self.sliding_window)
        _check_pos_int(owner, "sliding_window_period", self.sliding_window_period, allow_zero=True)
        if self.sliding_window_period == 1:
            raise ModelConfigError(owner, "sliding_window_period", "0 (trailing layers) or >= 2 (interleaved)", 1)
        if self.sliding_window_period:
            # Interleaved: the count follows from the period (kept consistent when layers change).
            n = self._cache_layers() or self.num_layers
            object.__setattr__(self, "sliding_window_layers", n - n // self.sliding_window_period)
        if self.sliding_window_layers is not None:
            _check_pos_int(owner, "sliding_window_layers", self.sliding_window_layers, allow_zero=True)
            if self.sliding_window_layers > self.num_layers:
                raise ModelConfigError(
                    owner, "sliding_window_layers", f"at most num_layers ({self.num_layers})", self.sliding_window_layers
                )
        if self.norms_per_layer is not None:
            _check_pos_int(owner, "norms_per_layer", self.norms_per_layer)

    # -- derived shape helpers ------------------------------------------------

    @property
    def q_dim(self) -> int:
        """Width of the query projection output (``num_heads · head_dim``; may differ from hidden)."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of each of the key and value projection outputs (``num_kv_heads · head_dim``)."""
        return self.num_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def _norm_params(self) -> int:
        bias = self.norm_bias if self.norm_bias is not None else self.norm == "layernorm"
        return self.hidden_size * (2 if bias else 1)

    def _norms_per_layer(self) -> int:
        if self.norms_per_layer is not None:
            return self.norms_per_layer
        return 1 if self.parallel_attn_mlp else 2

    def attention_params(self, kv_in: int | None = None) -> int:
        """One attention block: q, k, v, output projections and their biases."""
        h = self.hidden_size
        kv_in = h if kv_in is None else kv_in
        n = h * self.q_dim + 2 * kv_in * self.kv_dim + self.q_dim * h
        if self.attn_bias:
            n += self.q_dim + 2 * self.kv_dim
        out_bias = self.attn_bias if self.attn_out_bias is None else self.attn_out_bias
        if out_bias:
            n += h
        return n

    def expert_mlp_params(self) -> int:
        """One MLP (one expert for MoE): 3 matrices when gated, else 2, plus biases."""
        h, f = self.hidden_size, self.intermediate_size
        if self.gated_mlp:
            return 3 * h * f + ((2 * f + h) if self.mlp_bias else 0)
        return 2 * h * f + ((f + h) if self.mlp_bias else 0)

    def mlp_params(self) -> int:
        """All MLP parameters of one layer: every expert plus the router for MoE."""
        if self.num_experts:
            # Router ("gate"): a bias-free h×E linear (Mixtral, Jiang et al. 2024 §2.1).
            return self.num_experts * self.expert_mlp_params() + self.hidden_size * self.num_experts
        return self.expert_mlp_params()

    def layer_params(self) -> int:
        """One repeated transformer layer (decoder layer; encoder layer for encoders and T5)."""
        return self.attention_params() + self.mlp_params() + self._norms_per_layer() * self._norm_params()

    def _embedding_params(self) -> int:
        h = self.hidden_size
        if self.embed_proj_dim and self.embed_proj_dim != h:
            # OPT-350m: tokens embed at word_embed_proj_dim, then project_in / project_out (no bias).
            n = self.vocab_size * self.embed_proj_dim + 2 * h * self.embed_proj_dim
        else:
            n = self.vocab_size * h
        if self.learned_pos_emb:
            n += (self.max_position_embeddings + self.pos_emb_offset) * h
        n += self.type_vocab_size * h
        if self.embedding_norm:
            n += self._norm_params()
        return n

    def _lm_head_params(self) -> int:
        if self.tie_word_embeddings:
            return 0
        width = self.embed_proj_dim if self.embed_proj_dim and self.embed_proj_dim != self.hidden_size else self.hidden_size
        return self.vocab_size * width + (self.vocab_size if self.lm_head_bias else 0)

    # -- counts ------------------------------------------------------------------

    def param_count(self) -> int:
        """All parameters: embeddings, norms, biases, every expert, the LM head if untied."""
        if self.family == "cnn":
            convs = sum(c.params() for c in self.conv_layers)
            return convs + self._classifier_params()
        if self.family == "vit":
            return self._vit_params()
        if self.family == "encoder_decoder":
            return self._t5_params()
        n = self._embedding_params() + self.num_layers * self.layer_params()
        if self.final_norm:
            n += self._norm_params()
        if self.pooler:
            n += self.hidden_size * self.hidden_size + self.hidden_size
        return n + self._lm_head_params()

    def active_param_count(self) -> int:
        """Parameters one token touches: for MoE only ``experts_per_token`` of ``num_experts``."""
        total = self.param_count()
        if not self.num_experts:
            return total
        idle = (self.num_experts - self.experts_per_token) * self.expert_mlp_params()
        return total - self.num_layers * idle

    def kv_bytes_per_token(self, bytes_per_elem: float = 2.0) -> float:
        """KV-cache bytes one cached token adds: ``2 · layers · kv_heads · head_dim · bytes``.

        Counts the layers that keep a self-attention cache: decoder layers (T5: its decoder
        stack). Encoders, ViTs and CNNs generate no tokens and keep no cache (0.0).
        """
        if bytes_per_elem <= 0:
            raise ValueError(f"bytes_per_elem must be > 0; got {bytes_per_elem}")
        layers = {"decoder": self.num_layers, "encoder_decoder": self.num_decoder_layers}.get(self.family, 0)
        return 2.0 * layers * self.num_kv_heads * self.head_dim * bytes_per_elem

    def kv_cache_bytes(self, tokens: int, bytes_per_elem: float = 2.0) -> float:
        """KV-cache bytes for one sequence of ``tokens`` cached tokens.

        Layers with a sliding window keep at most ``sliding_window`` tokens (Mistral 7B,
        Gemma 2's local layers); the others keep all of them (:meth:`layer_windows`).
        """
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0; got {tokens}")
        per_layer = self.kv_bytes_per_token(bytes_per_elem) / max(self._cache_layers(), 1)
        return per_layer * sum(tokens if w is None else min(tokens, w) for w in self.layer_windows())

    def layer_windows(self) -> tuple[int | None, ...]:
        """Attention window of each layer that keeps a KV cache (``None``: global attention).

        Mistral windows every layer; Gemma 2 alternates local and global layers starting
        with local (HF ``Gemma2Attention``: window when ``layer_idx % 2 == 0``); Qwen2 windows
        the layers from ``max_window_layers`` on (HF ``Qwen2Attention``)."""
        n = self._cache_layers()
        w = self.sliding_window
        if w is None:
            return (None,) * n
        if self.sliding_window_period:
            p = self.sliding_window_period
            return tuple(None if (i + 1) % p == 0 else w for i in range(n))
        windowed = n if self.sliding_window_layers is None else min(self.sliding_window_layers, n)
        return (None,) * (n - windowed) + (w,) * windowed

    def _cache_layers(self) -> int:
        return {"decoder": self.num_layers, "encoder_decoder": self.num_decoder_layers}.get(self.family, 0)

    def _classifier_params(self) -> int:
        if not self.num_labels:
            return 0
        return self.hidden_size * self.num_labels + self.num_labels

    def _vit_params(self) -> int:
        # HF ViTForImageClassification: patch conv (with bias), [CLS] token, position
        # embeddings for patches + 1, pre-LN layers, final LayerNorm, linear head (no pooler).
        h = self.hidden_size
        patches = (self.image_size // self.patch_size) ** 2
        n = self.num_channels * self.patch_size**2 * h + h  # patch projection
        n += h + (patches + 1) * h  # cls token + position embeddings
        n += self.num_layers * self.layer_params()
        if self.final_norm:
            n += self._norm_params()
        return n + self._classifier_params()

    def _t5_params(self) -> int:
        # T5 (Raffel et al. 2020; HF T5ForConditionalGeneration): shared embedding; encoder
        # layer = self-attention + FF, 2 RMS norms; decoder layer = self + cross attention + FF,
        # 3 norms; a relative-position bias table (buckets × heads) in the first layer of each
        # stack; a final norm per stack; LM head only when untied (T5 v1.1).
        norm = self._norm_params()
        attn = self.attention_params()
        ff = self.expert_mlp_params()
        enc = self.num_layers * (attn + ff + 2 * norm) + norm
        dec = self.num_decoder_layers * (2 * attn + ff + 3 * norm) + norm
        rel = 2 * self.relative_attention_num_buckets * self.num_heads
        return self.vocab_size * self.hidden_size + enc + dec + rel + self._lm_head_params()

    def macs_per_image(self) -> int:
        """CNN forward multiply-accumulates for one 224×224 image, classifier included."""
        if self.family != "cnn":
            raise ValueError(f"macs_per_image is defined for CNNs; {self.id} is a {self.family}")
        return sum(c.macs() for c in self.conv_layers) + self.hidden_size * self.num_labels


# ---------------------------------------------------------------------------
# Reading configs
# ---------------------------------------------------------------------------


class _Cfg:
    """Typed, error-reporting access to one raw config mapping."""

    def __init__(self, raw: Mapping[str, Any], origin: str) -> None:
        self.raw = raw
        self.origin = origin

    def has(self, *names: str) -> bool:
        return any(self.raw.get(n) is not None for n in names)

    def _first(self, names: tuple[str, ...]) -> tuple[str, Any]:
        for n in names:
            if self.raw.get(n) is not None:
                return n, self.raw[n]
        return names[0], _MISSING

    def int(self, *names: str, default: Any = _MISSING, allow_zero: bool = False) -> int:
        """A positive integer under the first present name (aliases in HF order)."""
        name, value = self._first(names)
        if value is _MISSING:
            if default is _MISSING:
                raise ModelConfigError(self.origin, name, "a positive integer")
            return default
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            raise ModelConfigError(
                self.origin, name, "a non-negative integer" if allow_zero else "a positive integer", value
            )
        return value

    def number(self, *names: str, default: Any = _MISSING) -> float:
        name, value = self._first(names)
        if value is _MISSING:
            if default is _MISSING:
                raise ModelConfigError(self.origin, name, "a positive number")
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise ModelConfigError(self.origin, name, "a positive number", value)
        return float(value)

    def bool(self, *names: str, default: bool) -> bool:
        name, value = self._first(names)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise ModelConfigError(self.origin, name, "true or false", value)
        return value

    def str(self, *names: str, default: Any = _MISSING, choices: tuple[str, ...] | None = None) -> str:
        name, value = self._first(names)
        if value is _MISSING:
            if default is _MISSING:
                raise ModelConfigError(self.origin, name, "a string" if not choices else f"one of {', '.join(choices)}")
            return default
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise ModelConfigError(self.origin, name, "a string" if not choices else f"one of {', '.join(choices)}", value)
        return value

    def int_list(self, name: str) -> tuple[int, ...]:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING or value is None:
            raise ModelConfigError(self.origin, name, "a non-empty list of positive integers")
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise ModelConfigError(self.origin, name, "a non-empty list of positive integers", value)
        return tuple(value)

    def mapping(self, name: str) -> _Cfg:
        value = self.raw.get(name)
        if value is None:
            return _Cfg({}, self.origin)
        if not isinstance(value, Mapping):
            raise ModelConfigError(self.origin, name, "a mapping", value)
        return _Cfg(value, f"{self.origin} ({name})")

    def num_labels(self, default: int) -> int:
        """Classifier classes: ``id2label``'s size, else ``num_labels``, else ``default``."""
        id2label = self.raw.get("id2label")
        if id2label is not None:
            if not isinstance(id2label, Mapping) or not id2label:
                raise ModelConfigError(self.origin, "id2label", "a non-empty mapping of class index to name", id2label)
            return len(id2label)
        return self.int("num_labels", default=default, allow_zero=True)


def _head_dim(c: _Cfg, hidden: int, heads: int, *, explicit: tuple[str, ...] = ("head_dim",)) -> int:
    if c.has(*explicit):
        return c.int(*explicit)
    if hidden % heads:
        raise ModelConfigError(
            c.origin, "num_attention_heads", f"a divisor of the hidden size ({hidden}) when head_dim is not given", heads
        )
    return hidden // heads


def _kv_heads(c: _Cfg, heads: int, *names: str) -> int:
    kv = c.int(*names, default=heads)
    if heads % kv:
        raise ModelConfigError(c.origin, names[0], f"a divisor of the number of attention heads ({heads})", kv)
    return kv


# -- decoders -----------------------------------------------------------------

# HF defaults for fields a Llama-family config.json may leave out.
_LLAMA_LIKE_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"max_pos": 2048, "tie": False},
    "mistral": {"max_pos": 4096 * 32, "tie": False},
    "mixtral": {"max_pos": 4096 * 32, "tie": False},
    "qwen2": {"max_pos": 32768, "tie": False},
    "phi3": {"max_pos": 4096, "tie": False},
    "gemma": {"max_pos": 8192, "tie": True},
    "gemma2": {"max_pos": 8192, "tie": True},
}


def _llama_like(c: _Cfg, model_type: str) -> dict[str, Any]:
    d = _LLAMA_LIKE_DEFAULTS[model_type]
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    kw: dict[str, Any] = dict(
        family="decoder",
        num_layers=c.int("num_hidden_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=_kv_heads(c, heads, "num_key_value_heads"),
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("intermediate_size"),
        gated_mlp=True,
        activation=c.str("hidden_activation", "hidden_act", default="silu"),
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=d["tie"]),
        max_position_embeddings=c.int("max_position_embeddings", default=d["max_pos"]),
        learned_pos_emb=False,
        position_encoding="rope",
        norm="rmsnorm",
        attn_bias=c.bool("attention_bias", default=False),
        mlp_bias=c.bool("mlp_bias", default=False),
    )
    if model_type == "qwen2":
        # Qwen2Attention hard-codes bias=True on q/k/v and bias=False on o_proj.
        kw.update(attn_bias=True, attn_out_bias=False)
        if c.bool("use_sliding_window", default=False) and c.has("sliding_window"):
            # Layers at index >= max_window_layers use the window (HF Qwen2Attention).
            kw["sliding_window"] = c.int("sliding_window")
            kw["sliding_window_layers"] = max(0, kw["num_layers"] - c.int("max_window_layers", default=kw["num_layers"]))
    elif model_type in ("mistral", "mixtral", "phi3") and c.has("sliding_window"):
        kw["sliding_window"] = c.int("sliding_window")
    elif model_type == "gemma2":
        # Gemma 2 alternates local (sliding window) and global layers, starting with local
        # (Gemma Team 2024, "Gemma 2", §2); post-attention and post-FFN norms add 2 norms.
        kw["norms_per_layer"] = 4
        if c.has("sliding_window"):
            kw["sliding_window"] = c.int("sliding_window")
            kw["sliding_window_period"] = 2
    if model_type == "mixtral":
        kw["num_experts"] = c.int("num_local_experts")
        kw["experts_per_token"] = c.int("num_experts_per_tok")
        if kw["experts_per_token"] > kw["num_experts"]:
            raise ModelConfigError(
                c.origin, "num_experts_per_tok", f"at most num_local_experts ({kw['num_experts']})", kw["experts_per_token"]
            )
    return kw


def _falcon(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF FalconConfig / FalconModel; old "RefinedWeb" configs use n_layer, n_head, n_head_kv.
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads", "n_head")
    new_arch = c.bool("new_decoder_architecture", default=False)
    if new_arch:
        kv = _kv_heads(c, heads, "num_kv_heads", "n_head_kv")
    elif c.bool("multi_query", default=True):
        kv = 1
    else:
        kv = heads
    parallel = new_arch or c.bool("parallel_attn", default=True)
    if new_arch and c.int("num_ln_in_parallel_attn", default=2) == 2:
        norms = 2  # ln_attn and ln_mlp
    else:
        norms = 1 if parallel else 2
    bias = c.bool("bias", default=False)
    alibi = c.bool("alibi", default=False)
    return dict(
        family="decoder",
        num_layers=c.int("num_hidden_layers", "n_layer"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("ffn_hidden_size", default=4 * h),
        gated_mlp=False,
        activation=c.str("activation", default="gelu"),
        vocab_size=c.int("vocab_size"),
        # Falcon 7B/40B/180B configs have no tie_word_embeddings key: HF's default (True) applies
        # and the LM head shares the word embedding.
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        max_position_embeddings=c.int("max_position_embeddings", default=2048),
        learned_pos_emb=False,
        position_encoding="alibi" if alibi else "rope",
        parallel_attn_mlp=parallel,
        attn_bias=bias,
        mlp_bias=bias,
        norm="layernorm",
        norms_per_layer=norms,
    )


def _gptj(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF GPTJModel: q/k/v/out without bias, fc_in/fc_out with bias, one ln_1 feeding both
    # branches (parallel block), untied lm_head with bias.
    h = c.int("n_embd")
    heads = c.int("n_head")
    return dict(
        family="decoder",
        num_layers=c.int("n_layer"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("n_inner", default=4 * h),
        gated_mlp=False,
        activation=c.str("activation_function", default="gelu_new"),
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=False),
        max_position_embeddings=c.int("n_positions", default=2048),
        learned_pos_emb=False,
        position_encoding="rope",
        parallel_attn_mlp=True,
        attn_bias=False,
        mlp_bias=True,
        norm="layernorm",
        norms_per_layer=1,
        lm_head_bias=True,
    )


def _gpt2(c: _Cfg, model_type: str) -> dict[str, Any]:
    # GPT-2 / GPT-3 / Megatron GPT: learned positions, biases everywhere, pre-LN, tied head.
    h = c.int("n_embd", "hidden_size")
    heads = c.int("n_head", "num_attention_heads")
    return dict(
        family="decoder",
        num_layers=c.int("n_layer", "num_hidden_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("n_inner", default=4 * h),
        gated_mlp=False,
        activation=c.str("activation_function", default="gelu_new"),
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        max_position_embeddings=c.int("n_positions", "max_position_embeddings", default=1024),
        learned_pos_emb=True,
        position_encoding="learned",
        attn_bias=True,
        mlp_bias=True,
        norm="layernorm",
    )


def _gpt_neox(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF GPTNeoXLayer keeps input_layernorm and post_attention_layernorm even with
    # use_parallel_residual; embed_out is a separate (untied) matrix by default.
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    bias = c.bool("attention_bias", default=True)
    return dict(
        family="decoder",
        num_layers=c.int("num_hidden_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("intermediate_size"),
        gated_mlp=False,
        activation=c.str("hidden_act", default="gelu"),
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=False),
        max_position_embeddings=c.int("max_position_embeddings", default=2048),
        learned_pos_emb=False,
        position_encoding="rope",
        parallel_attn_mlp=c.bool("use_parallel_residual", default=True),
        attn_bias=bias,
        mlp_bias=True,
        norm="layernorm",
        norms_per_layer=2,
    )


def _opt(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF OPTDecoder: learned positions with 2 offset rows, biases (enable_bias), final
    # LayerNorm only when do_layer_norm_before; lm_head tied to embed_tokens.
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    bias = c.bool("enable_bias", default=True)
    proj = c.int("word_embed_proj_dim", default=h)
    return dict(
        family="decoder",
        num_layers=c.int("num_hidden_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("ffn_dim"),
        gated_mlp=False,
        activation=c.str("activation_function", default="relu"),
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        max_position_embeddings=c.int("max_position_embeddings", default=2048),
        learned_pos_emb=True,
        position_encoding="learned",
        pos_emb_offset=2,
        embed_proj_dim=proj if proj != h else 0,
        attn_bias=bias,
        mlp_bias=bias,
        norm="layernorm",
        norm_bias=bias,
        final_norm=c.bool("do_layer_norm_before", default=True),
    )


def _bloom(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF BloomModel: ALiBi, word_embeddings_layernorm, biases everywhere, FFN 4h, tied head.
    h = c.int("hidden_size", "n_embed")
    heads = c.int("n_head", "num_attention_heads")
    return dict(
        family="decoder",
        num_layers=c.int("n_layer", "num_hidden_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=4 * h,
        gated_mlp=False,
        activation="gelu",
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        # ALiBi has no position table; BLOOM trained on 2048-token sequences (Scao et al. 2022 §3).
        max_position_embeddings=c.int("seq_length", default=2048),
        learned_pos_emb=False,
        position_encoding="alibi",
        attn_bias=True,
        mlp_bias=True,
        norm="layernorm",
        embedding_norm=True,
    )


def _mpt(c: _Cfg, model_type: str) -> dict[str, Any]:
    # MosaicML MPT: d_model / n_heads / n_layers / expansion_ratio; no_bias drops linear and
    # LayerNorm biases; ALiBi (or RoPE) switches the learned position table off (llm-foundry
    # MPTConfig sets learned_pos_emb False then); the LM head is always tied.
    h = c.int("d_model")
    heads = c.int("n_heads")
    attn = c.mapping("attn_config")
    alibi = attn.bool("alibi", default=False)
    rope = attn.bool("rope", default=False)
    attn_type = attn.str("attn_type", default="multihead_attention")
    if attn_type == "multiquery_attention":
        kv = 1
    elif attn_type == "grouped_query_attention":
        kv = _kv_heads(attn, heads, "kv_n_heads")
    else:
        kv = heads
    ratio = c.number("expansion_ratio", default=4)
    no_bias = c.bool("no_bias", default=False)
    learned = c.bool("learned_pos_emb", default=True) and not (alibi or rope)
    return dict(
        family="decoder",
        num_layers=c.int("n_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=int(ratio * h),
        gated_mlp=False,
        activation="gelu",
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=True,
        max_position_embeddings=c.int("max_seq_len", default=2048),
        learned_pos_emb=learned,
        position_encoding="alibi" if alibi else ("rope" if rope else "learned"),
        attn_bias=not no_bias,
        mlp_bias=not no_bias,
        norm="layernorm",
        norm_bias=not no_bias,
    )


def _palm(c: _Cfg, model_type: str) -> dict[str, Any]:
    # PaLM (Chowdhery et al. 2022, §2): parallel block with one shared LayerNorm, multi-query
    # attention, SwiGLU, RoPE, no biases in dense kernels or layer norms, shared in/out embedding.
    # Fields are this project's own (no HF class exists); see docs/models.md.
    h = c.int("d_model")
    heads = c.int("num_heads")
    activation = c.str("activation", default="swiglu", choices=("swiglu", "geglu", "gelu", "relu"))
    bias = c.bool("use_bias", default=False)
    parallel = c.bool("parallel_block", default=True)
    return dict(
        family="decoder",
        num_layers=c.int("num_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=_kv_heads(c, heads, "num_kv_heads"),
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("ffn_dim"),
        gated_mlp=activation in ("swiglu", "geglu"),
        activation=activation,
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        max_position_embeddings=c.int("max_seq_len", default=2048),
        learned_pos_emb=False,
        position_encoding="rope",
        parallel_attn_mlp=parallel,
        attn_bias=bias,
        mlp_bias=bias,
        norm="layernorm",
        norm_bias=bias,
        norms_per_layer=1 if parallel else 2,
    )


# -- encoders -----------------------------------------------------------------


def _bert(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF BertModel: word + position + token-type embeddings and their LayerNorm, post-LN
    # layers (2 LayerNorms each, no final norm), pooler; the MLM head would tie to the embedding.
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    pos_type = c.str("position_embedding_type", default="absolute")
    return dict(
        family="encoder",
        num_layers=c.int("num_hidden_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("intermediate_size"),
        gated_mlp=False,
        activation=c.str("hidden_act", default="gelu"),
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=True,
        max_position_embeddings=c.int("max_position_embeddings", default=512),
        learned_pos_emb=True,
        position_encoding="learned" if pos_type == "absolute" else "relative",
        type_vocab_size=c.int("type_vocab_size", default=2, allow_zero=True),
        attn_bias=True,
        mlp_bias=True,
        norm="layernorm",
        embedding_norm=True,
        final_norm=False,
        pooler=True,
    )


_T5_FF = {"relu": ("relu", False), "gated-gelu": ("gelu_new", True), "gelu": ("gelu", False)}


def _t5(c: _Cfg, model_type: str) -> dict[str, Any]:
    h = c.int("d_model")
    heads = c.int("num_heads")
    proj = c.str("feed_forward_proj", default="relu")
    # HF T5Config: "gated-<act>" → gated (wi_0, wi_1, wo); "<act>" → plain (wi, wo).
    gated = proj.startswith("gated-")
    act = proj[len("gated-") :] if gated else proj
    if not act or "-" in act:
        raise ModelConfigError(c.origin, "feed_forward_proj", "'<act>' or 'gated-<act>' (e.g. 'relu', 'gated-gelu')", proj)
    if act == "gelu" and gated:
        act = "gelu_new"  # HF maps gated-gelu to the tanh approximation
    layers = c.int("num_layers")
    return dict(
        family="encoder_decoder",
        num_layers=layers,
        num_decoder_layers=c.int("num_decoder_layers", default=layers),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=c.int("d_kv"),
        intermediate_size=c.int("d_ff"),
        gated_mlp=gated,
        activation=act,
        vocab_size=c.int("vocab_size"),
        tie_word_embeddings=c.bool("tie_word_embeddings", default=True),
        max_position_embeddings=c.int("n_positions", default=512),
        learned_pos_emb=False,
        position_encoding="relative",
        relative_attention_num_buckets=c.int("relative_attention_num_buckets", default=32),
        attn_bias=False,
        mlp_bias=False,
        norm="rmsnorm",
    )


def _vit(c: _Cfg, model_type: str) -> dict[str, Any]:
    h = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    image, patch = c.int("image_size", default=224), c.int("patch_size", default=16)
    if image % patch:
        raise ModelConfigError(c.origin, "patch_size", f"a divisor of image_size ({image})", patch)
    qkv_bias = c.bool("qkv_bias", default=True)
    return dict(
        family="vit",
        num_layers=c.int("num_hidden_layers"),
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=_head_dim(c, h, heads),
        intermediate_size=c.int("intermediate_size"),
        gated_mlp=False,
        activation=c.str("hidden_act", default="gelu"),
        vocab_size=0,
        tie_word_embeddings=False,
        max_position_embeddings=(image // patch) ** 2 + 1,
        learned_pos_emb=True,
        position_encoding="learned",
        attn_bias=qkv_bias,
        attn_out_bias=True,
        mlp_bias=True,
        norm="layernorm",
        image_size=image,
        patch_size=patch,
        num_channels=c.int("num_channels", default=3),
        num_labels=c.num_labels(default=2),
    )


# -- CNNs -----------------------------------------------------------------------


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _resnet(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF ResNetModel (He et al. 2016; "v1.5" with the stride on the 3×3 conv unless
    # downsample_in_bottleneck): 7×7/2 stem + 3×3/2 max-pool, stages of bottleneck (1×1, 3×3,
    # 1×1 with 4× reduction) or basic (3×3, 3×3) blocks, 1×1 projection shortcuts when the
    # shape changes. Padding is kernel//2, so outputs are floor((n + 2p − k)/s) + 1.
    in_ch = c.int("num_channels", default=3)
    emb = c.int("embedding_size", default=64)
    sizes = c.int_list("hidden_sizes")
    depths = c.int_list("depths")
    if len(sizes) != len(depths):
        raise ModelConfigError(c.origin, "depths", f"a list as long as hidden_sizes ({len(sizes)})", list(depths))
    layer_type = c.str("layer_type", default="bottleneck", choices=("bottleneck", "basic"))
    first_stride = 2 if c.bool("downsample_in_first_stage", default=False) else 1
    stride_in_1x1 = c.bool("downsample_in_bottleneck", default=False)
    if layer_type == "bottleneck" and any(s % 4 for s in sizes):
        raise ModelConfigError(c.origin, "hidden_sizes", "multiples of 4 for bottleneck blocks (4× reduction)", list(sizes))

    layers: list[ConvLayer] = []

    def conv(name: str, cin: int, cout: int, k: int, s: int, size: int) -> int:
        out = _conv_out(size, k, s, k // 2)
        layers.append(
            ConvLayer(name=name, in_channels=cin, out_channels=cout, kernel=k, stride=s, groups=1, out_h=out, out_w=out, has_bn=True)
        )
        return out

    size = conv("resnet.embedder.embedder.convolution", in_ch, emb, 7, 2, CNN_INPUT_SIZE)
    size = _conv_out(size, 3, 2, 1)  # embedder.pooler: MaxPool2d(3, stride 2, padding 1)
    cin = emb
    for s, (cout, depth) in enumerate(zip(sizes, depths)):
        for i in range(depth):
            stride = (first_stride if s == 0 else 2) if i == 0 else 1
            prefix = f"resnet.encoder.stages.{s}.layers.{i}"
            if layer_type == "bottleneck":
                mid = cout // 4
                s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
                out = conv(f"{prefix}.layer.0.convolution", cin, mid, 1, s1, size)
                out = conv(f"{prefix}.layer.1.convolution", mid, mid, 3, s3, out)
                out = conv(f"{prefix}.layer.2.convolution", mid, cout, 1, 1, out)
            else:
                out = conv(f"{prefix}.layer.0.convolution", cin, cout, 3, stride, size)
                out = conv(f"{prefix}.layer.1.convolution", cout, cout, 3, 1, out)
            if cin != cout or stride != 1:
                # Listed in execution order: the projection runs on the block input after the
                # main path, right before the residual add.
                conv(f"{prefix}.shortcut.convolution", cin, cout, 1, stride, size)
            size, cin = out, cout
    return _cnn_kwargs(c, layers, activation=c.str("hidden_act", default="relu"), in_ch=in_ch, image=CNN_INPUT_SIZE)


def _make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    # MobileNet channel rounding (TF-slim mobilenet.py, as in HF modeling_mobilenet_v2).
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def _mobilenet_v2(c: _Cfg, model_type: str) -> dict[str, Any]:
    # HF MobileNetV2Model (Sandler et al. 2018, Table 2): 3×3/2 stem to 32, an expansion-free
    # first block, 16 inverted residual blocks (1×1 expand ×expand_ratio, 3×3 depthwise,
    # 1×1 project), a 1×1 conv to 1280, then the classifier. With tf_padding the output of a
    # stride-s conv is ceil(n/s); with output_stride < 32 later strides become dilation.
    in_ch = c.int("num_channels", default=3)
    image = c.int("image_size", default=CNN_INPUT_SIZE)
    mult = c.number("depth_multiplier", default=1.0)
    divisor = c.int("depth_divisible_by", default=8)
    min_depth = c.int("min_depth", default=8)
    expand = c.number("expand_ratio", default=6.0)
    output_stride = c.int("output_stride", default=32)
    first_is_expansion = c.bool("first_layer_is_expansion", default=True)
    tf_padding = c.bool("tf_padding", default=True)

    def ch(n: int) -> int:
        return _make_divisible(int(round(n * mult)), divisor, min_depth)

    def out_size(size: int, k: int, s: int) -> int:
        return -(-size // s) if tf_padding else _conv_out(size, k, s, (k - 1) // 2)

    layers: list[ConvLayer] = []

    def conv(name: str, cin: int, cout: int, k: int, s: int, size: int, groups: int = 1) -> int:
        out = out_size(size, k, s)
        layers.append(
            ConvLayer(
                name=name, in_channels=cin, out_channels=cout, kernel=k, stride=s, groups=groups, out_h=out, out_w=out, has_bn=True
            )
        )
        return out

    channels = [ch(x) for x in (16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320)]
    strides = (2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)
    stem = ch(32)
    p = "mobilenet_v2.conv_stem"
    size = conv(f"{p}.first_conv.convolution", in_ch, stem, 3, 2, image)
    if not first_is_expansion:
        size = conv(f"{p}.expand_1x1.convolution", stem, stem, 1, 1, size)
    size = conv(f"{p}.conv_3x3.convolution", stem, stem, 3, 1, size, groups=stem)
    size = conv(f"{p}.reduce_1x1.convolution", stem, channels[0], 1, 1, size)
    current_stride = 2
    for i in range(16):
        if current_stride == output_stride:
            stride = 1
        else:
            stride = strides[i]
            current_stride *= stride
        cin, cout = channels[i], channels[i + 1]
        mid = _make_divisible(int(round(cin * expand)), divisor, min_depth)
        p = f"mobilenet_v2.layer.{i}"
        size = conv(f"{p}.expand_1x1.convolution", cin, mid, 1, 1, size)
        size = conv(f"{p}.conv_3x3.convolution", mid, mid, 3, stride, size, groups=mid)
        size = conv(f"{p}.reduce_1x1.convolution", mid, cout, 1, 1, size)
    last = 1280 if c.bool("finegrained_output", default=True) and mult < 1.0 else ch(1280)
    conv("mobilenet_v2.conv_1x1.convolution", channels[-1], last, 1, 1, size)
    return _cnn_kwargs(c, layers, activation=c.str("hidden_act", default="relu6"), in_ch=in_ch, image=image)


def _cnn_kwargs(c: _Cfg, layers: list[ConvLayer], *, activation: str, in_ch: int, image: int) -> dict[str, Any]:
    return dict(
        family="cnn",
        num_layers=len(layers),
        hidden_size=layers[-1].out_channels,  # features entering the classifier
        num_heads=0,
        num_kv_heads=0,
        head_dim=0,
        intermediate_size=0,
        gated_mlp=False,
        activation=activation,
        vocab_size=0,
        tie_word_embeddings=False,
        max_position_embeddings=0,
        learned_pos_emb=False,
        position_encoding="none",
        norm="batchnorm",
        conv_layers=tuple(layers),
        image_size=image,
        num_channels=in_ch,
        num_labels=c.num_labels(default=2),
    )


_READERS: dict[str, Callable[[_Cfg, str], dict[str, Any]]] = {
    "llama": _llama_like,
    "mistral": _llama_like,
    "mixtral": _llama_like,
    "qwen2": _llama_like,
    "phi3": _llama_like,
    "gemma": _llama_like,
    "gemma2": _llama_like,
    "falcon": _falcon,
    "RefinedWeb": _falcon,
    "RefinedWebModel": _falcon,
    "gptj": _gptj,
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "opt": _opt,
    "bloom": _bloom,
    "mpt": _mpt,
    "palm": _palm,
    "bert": _bert,
    "t5": _t5,
    "vit": _vit,
    "resnet": _resnet,
    "mobilenet_v2": _mobilenet_v2,
}

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_READERS))


def arch_from_config(cfg: Mapping[str, Any], *, model_id: str, origin: str) -> ArchSpec:
    """Normalize one HF-style config mapping; ``origin`` names the file in error messages."""
    if not isinstance(cfg, Mapping):
        raise ModelConfigError(origin, None, "expected a mapping of config fields at the top level", type(cfg).__name__)
    c = _Cfg(cfg, origin)
    model_type = cfg.get("model_type", _MISSING)
    if model_type is _MISSING or model_type is None:
        raise ModelConfigError(origin, "model_type", f"one of {', '.join(SUPPORTED_MODEL_TYPES)}")
    if model_type not in _READERS:
        raise ModelConfigError(origin, "model_type", f"one of {', '.join(SUPPORTED_MODEL_TYPES)}", model_type)
    kw = _READERS[model_type](c, model_type)
    source = cfg.get("_source")
    if source is not None and not isinstance(source, str):
        raise ModelConfigError(origin, "_source", "a string citing where the config comes from", source)
    canonical_type = "falcon" if model_type in ("RefinedWeb", "RefinedWebModel") else model_type
    return ArchSpec(id=model_id, model_type=canonical_type, source=source or str(origin), **kw)


# ---------------------------------------------------------------------------
# Catalog and files
# ---------------------------------------------------------------------------

_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def _models_dir() -> Traversable:
    return resources.files("profiles") / "models"


def list_models() -> list[str]:
    """Catalog ids (file stems of ``profiles/models/*.json``), sorted."""
    return sorted(
        p.name.rsplit(".", 1)[0]
        for p in _models_dir().iterdir()
        if p.is_file() and p.name.endswith(_CONFIG_SUFFIXES)
    )


def _unknown(model_id: str) -> UnknownIdError:
    known = list_models()
    return UnknownIdError(model_id, "model", difflib.get_close_matches(model_id, known, n=3, cutoff=0.5), known=known)


def model_config_path(id: str) -> Traversable:
    """The packaged config file of catalog model ``id``."""
    if not isinstance(id, str) or not id or "/" in id or "\\" in id:
        raise _unknown(str(id))
    base = _models_dir()
    for suffix in _CONFIG_SUFFIXES:
        p = base / f"{id}{suffix}"
        if p.is_file():
            return p
    raise _unknown(id)


def _looks_like_path(s: str) -> bool:
    """A file or folder path rather than a catalog id (ids are bare names like ``llama-3.1-8b``)."""
    return s.endswith(_CONFIG_SUFFIXES) or os.sep in s or "/" in s or s.startswith((".", "~"))


def _parse_text(text: str, name: str, origin: str) -> dict[str, Any]:
    try:
        if name.endswith(".json"):
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ModelConfigError(origin, None, "expected valid JSON", f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ModelConfigError(origin, None, "expected valid YAML", f"{getattr(e, 'problem', None) or e}{where}") from None
    if not isinstance(data, dict):
        raise ModelConfigError(origin, None, "expected a mapping of config fields at the top level", type(data).__name__)
    return data


def _read_catalog(id: str) -> tuple[dict[str, Any], str]:
    p = model_config_path(id)
    return _parse_text(p.read_text(encoding="utf-8"), p.name, p.name), p.name


def _read_file(path_str: str) -> tuple[dict[str, Any], str]:
    path = Path(path_str).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        # A downloaded Hugging Face snapshot folder: its config.json describes the model.
        path = path / "config.json"
        path_str = str(path)
    if not path.is_file():
        raise ModelConfigError(path_str, None, "expected an existing config file (.json, .yaml or .yml)", "no such file")
    if not path.name.endswith(_CONFIG_SUFFIXES):
        raise ModelConfigError(path_str, None, "expected a .json, .yaml or .yml config file", path.suffix or "no suffix")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelConfigError(path_str, None, "expected a readable UTF-8 text file", str(e)) from None
    return _parse_text(text, path.name, path_str), path_str


def _file_model_id(cfg: Mapping[str, Any], path_str: str) -> str:
    """``_id`` when the file names itself, else the file stem (the folder name for config.json)."""
    if isinstance(cfg.get("_id"), str) and cfg["_id"]:
        return cfg["_id"]
    path = Path(path_str.rstrip("/\\")).expanduser()
    if path.is_dir() or path.name == "config.json":
        folder = path if path.is_dir() else path.parent
        return folder.resolve().name or path.name
    return path.name.rsplit(".", 1)[0]


def _read(id_or_path: str) -> tuple[dict[str, Any], str, str, bool]:
    """(config, origin, model id, from catalog)."""
    if not isinstance(id_or_path, str) or not id_or_path.strip():
        raise ModelConfigError("--model", None, "expected a catalog model id or a config file path", repr(id_or_path))
    if _looks_like_path(id_or_path):
        cfg, origin = _read_file(id_or_path)
        return cfg, origin, _file_model_id(cfg, id_or_path), False
    cfg, origin = _read_catalog(id_or_path)
    return cfg, origin, id_or_path, True


def load_config_dict(id_or_path: str) -> dict[str, Any]:
    """The raw config mapping of a catalog id or a local JSON/YAML file (a fresh copy)."""
    cfg, _, _, _ = _read(id_or_path)
    return cfg


@functools.lru_cache(maxsize=256)
def _catalog_arch(id: str) -> ArchSpec:
    cfg, origin = _read_catalog(id)
    return arch_from_config(cfg, model_id=id, origin=origin)


def load_arch(id_or_path: str) -> ArchSpec:
    """An :class:`ArchSpec` from a catalog id or a path to an HF-style config (JSON or YAML)."""
    if isinstance(id_or_path, str) and id_or_path.strip() and not _looks_like_path(id_or_path):
        return _catalog_arch(id_or_path)
    cfg, origin, model_id, _ = _read(id_or_path)
    return arch_from_config(cfg, model_id=model_id, origin=origin)
