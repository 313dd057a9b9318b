"""Hugging Face style config mappings → :class:`~planner.archspec.ArchSpec`.

Each supported ``model_type`` has a reader that knows that family's field names (``n_embd`` vs
``hidden_size`` vs ``d_model``) and its architectural defaults (biases, tied embeddings, norm
placement, positional encoding), so the rest of the planner sees one shape vocabulary.
"""

from __future__ import annotations

import functools

from hwmodels._checks import is_number
from collections.abc import Callable, Mapping
from typing import Any


from planner.archspec import (
    _MISSING,
    CNN_INPUT_SIZE,
    ArchSpec,
    ConvLayer,
    ModelConfigError,
)

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
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            value = int(value)  # 2048.0 is the integer 2048, as JSON Schema and the REST API read it
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
        if not is_number(value) or not value > 0:
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

# DeepSeek-V2/V3 and Qwen2-MoE (planner.hfconfig_moe) read with this module's Llama-like reader.
from planner.hfconfig_moe import READERS as _MOE_READERS  # noqa: E402

_READERS.update({name: functools.partial(fn, llama_like=_llama_like) for name, fn in _MOE_READERS.items()})

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(sorted(_READERS))


def arch_from_config(cfg: Mapping[str, Any], *, model_id: str, origin: str) -> ArchSpec:
    """Normalize one HF-style config mapping; ``origin`` names the file in error messages."""
    if not isinstance(cfg, Mapping):
        raise ModelConfigError(origin, None, "expected a mapping of config fields at the top level", type(cfg).__name__)
    c = _Cfg(cfg, origin)
    model_type = cfg.get("model_type", _MISSING)
    if model_type is _MISSING or model_type is None:
        raise ModelConfigError(origin, "model_type", f"one of {', '.join(SUPPORTED_MODEL_TYPES)}")
    if not isinstance(model_type, str) or model_type not in _READERS:  # a list or mapping is no type name (unhashable)
        raise ModelConfigError(origin, "model_type", f"one of {', '.join(SUPPORTED_MODEL_TYPES)}", model_type)
    kw = _READERS[model_type](c, model_type)
    source = cfg.get("_source")
    if source is not None and not isinstance(source, str):
        raise ModelConfigError(origin, "_source", "a string citing where the config comes from", source)
    canonical_type = "falcon" if model_type in ("RefinedWeb", "RefinedWebModel") else model_type
    return ArchSpec(id=model_id, model_type=canonical_type, source=source or str(origin), **kw)
