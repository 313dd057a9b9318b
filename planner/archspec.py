"""The normalized model description, :class:`ArchSpec` (and :class:`ConvLayer`), and
:class:`ModelConfigError`: what every HF-style config becomes (``planner.hfconfig`` reads the
configs, ``planner.arch`` finds and loads them).

Parameter counts are exact for the modules the Hugging Face implementation builds (or, for
PaLM, the paper describes); they are checked against published totals in ``tests/test_arch.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwmodels.errors import TierwiseError, describe_value, per_front_end


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
        # the text as written: a path or a value in it ('{@kv_budget}.json') is not read as a field token
        TierwiseError.__init__(self, per_front_end(str(self), str(self)), field=field, code="invalid_model_config")

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
    # --- Multi-head Latent Attention (DeepSeek-V2, arXiv:2405.04434 §2.1) ---
    # kv_lora_rank > 0 selects MLA: keys and values are rebuilt from a per-token latent of
    # kv_lora_rank values plus one shared RoPE key of qk_rope_head_dim, and only those are
    # cached. head_dim is then the query/key head width (qk_nope_head_dim + qk_rope_head_dim),
    # num_kv_heads equals num_heads, v_head_dim the value head width; q_lora_rank 0: a plain q_proj.
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # --- fine-grained MoE (DeepSeekMoE, Qwen2-MoE) ---
    moe_intermediate_size: int = 0  # one routed expert's width (0: intermediate_size)
    shared_expert_intermediate_size: int = 0  # width of the always-on shared expert MLP (0: none)
    shared_expert_gate: bool = False  # Qwen2-MoE: a sigmoid h→1 gate scales the shared expert
    dense_layers: int = 0  # the first dense_layers layers have a dense MLP (intermediate_size)

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
            "q_lora_rank",
            "kv_lora_rank",
            "qk_rope_head_dim",
            "v_head_dim",
            "moe_intermediate_size",
            "shared_expert_intermediate_size",
            "dense_layers",
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
        if self.kv_lora_rank:
            _check_pos_int(owner, "v_head_dim", self.v_head_dim)
            if self.qk_rope_head_dim >= self.head_dim:
                raise ModelConfigError(
                    owner, "qk_rope_head_dim", f"less than head_dim ({self.head_dim})", self.qk_rope_head_dim
                )
        if self.dense_layers > self.num_layers:
            raise ModelConfigError(owner, "dense_layers", f"at most num_layers ({self.num_layers})", self.dense_layers)
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
    def generative(self) -> bool:
        """Whether the model generates tokens and so keeps a KV cache (a decoder, T5); an encoder,
        a ViT and a CNN run one forward pass per sample and keep none."""
        return self.family in ("decoder", "encoder_decoder")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        """Multi-head Latent Attention (a compressed latent KV cache)."""
        return self.kv_lora_rank > 0

    @property
    def kv_elems_per_layer(self) -> int:
        """Values one token adds to one layer's cache: ``kv_lora_rank + qk_rope_head_dim`` for
        MLA (DeepSeek-V2 §2.1.2: the latent c_KV and the shared RoPE key), else ``2·kv_dim``."""
        return self.kv_lora_rank + self.qk_rope_head_dim if self.is_mla else 2 * self.kv_dim

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is a mixture of experts (0 for dense models)."""
        return self.num_layers - self.dense_layers if self.num_experts else 0

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
        if self.is_mla:
            return self._mla_params()
        kv_in = h if kv_in is None else kv_in
        n = h * self.q_dim + 2 * kv_in * self.kv_dim + self.q_dim * h
        if self.attn_bias:
            n += self.q_dim + 2 * self.kv_dim
        out_bias = self.attn_bias if self.attn_out_bias is None else self.attn_out_bias
        if out_bias:
            n += h
        return n

    def _mla_params(self) -> int:
        # HF DeepseekV2/V3Attention: q_a_proj → q_a_layernorm → q_b_proj (or one q_proj when
        # q_lora_rank is 0), kv_a_proj_with_mqa (latent + RoPE key), kv_a_layernorm, kv_b_proj
        # (latent → per-head no-RoPE key and value), o_proj; biases only with attention_bias.
        h, heads, qk = self.hidden_size, self.num_heads, self.head_dim
        nope = qk - self.qk_rope_head_dim
        b = 1 if self.attn_bias else 0
        if self.q_lora_rank:
            n = h * self.q_lora_rank + b * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * heads * qk
        else:
            n = h * heads * qk
        kv_a = self.kv_lora_rank + self.qk_rope_head_dim
        n += h * kv_a + b * kv_a + self.kv_lora_rank
        n += self.kv_lora_rank * heads * (nope + self.v_head_dim)
        return n + heads * self.v_head_dim * h + b * h

    def _mlp(self, f: int) -> int:
        h = self.hidden_size
        if self.gated_mlp:
            return 3 * h * f + ((2 * f + h) if self.mlp_bias else 0)
        return 2 * h * f + ((f + h) if self.mlp_bias else 0)

    def expert_mlp_params(self) -> int:
        """One MLP (one routed expert for MoE): 3 matrices when gated, else 2, plus biases."""
        if self.num_experts and self.moe_intermediate_size:
            return self._mlp(self.moe_intermediate_size)
        return self._mlp(self.intermediate_size)

    def mlp_params(self, moe: bool = True) -> int:
        """All MLP parameters of one layer: for an MoE layer every routed expert, the router,
        the shared expert (and its gate); ``moe=False``: a dense layer (``dense_layers``)."""
        if not self.num_experts or not moe:
            return self._mlp(self.intermediate_size)
        h, e = self.hidden_size, self.num_experts
        # Router ("gate"): a bias-free h×E linear (Mixtral, Jiang et al. 2024 §2.1).
        n = e * self.expert_mlp_params() + h * e
        if self.shared_expert_intermediate_size:
            n += self._mlp(self.shared_expert_intermediate_size) + (h if self.shared_expert_gate else 0)
        return n

    def layer_params(self, moe: bool = True) -> int:
        """One repeated transformer layer (decoder layer; encoder layer for encoders and T5);
        ``moe=False``: one of the first ``dense_layers`` layers of an MoE model."""
        return self.attention_params() + self.mlp_params(moe) + self._norms_per_layer() * self._norm_params()

    def _decoder_layers_params(self) -> int:
        if not self.num_experts:
            return self.num_layers * self.layer_params()
        return self.dense_layers * self.layer_params(False) + self.moe_layers * self.layer_params()

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
        n = self._embedding_params() + self._decoder_layers_params()
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
        return total - self.moe_layers * idle

    def kv_bytes_per_token(self, bytes_per_elem: float = 2.0) -> float:
        """KV-cache bytes one cached token adds: ``2 · layers · kv_heads · head_dim · bytes``;
        for MLA ``layers · (kv_lora_rank + qk_rope_head_dim) · bytes`` (:attr:`kv_elems_per_layer`).

        Counts the layers that keep a self-attention cache: decoder layers (T5: its decoder
        stack). Encoders, ViTs and CNNs generate no tokens and keep no cache (0.0).
        """
        if bytes_per_elem <= 0:
            raise ValueError(f"bytes_per_elem must be > 0; got {bytes_per_elem}")
        layers = {"decoder": self.num_layers, "encoder_decoder": self.num_decoder_layers}.get(self.family, 0)
        return float(layers * self.kv_elems_per_layer) * bytes_per_elem

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
