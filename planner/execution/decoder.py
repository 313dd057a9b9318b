"""A Llama-shaped decoder in plain torch with a KV cache, module paths as in Hugging Face.

``model.embed_tokens``, ``model.layers.{i}.self_attn.{q,k,v,o}_proj``,
``model.layers.{i}.mlp.{gate,up,down}_proj``, ``model.norm`` and ``lm_head`` — the names
the planner's workload gives a ``model_type: llama`` config, so a plan addresses its
linears directly. Pre-norm RMSNorm blocks, rotary position embeddings (Su et al. 2021,
RoFormer, half-split rotation as in HF ``rotate_half``), grouped-query attention
(Ainslie et al. 2023) and a SwiGLU MLP (Shazeer 2020).

The KV cache (:class:`KVCache`) stores keys and values per layer either as float tensors
or, when a KV format is set (:meth:`LlamaDecoder.set_kv_format`), as real
:class:`~planner.backends.QuantizedTensor` payloads with one row per (token, head) of
``head_dim`` values — the "per head per token" scaling the int8 KV format prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from planner.arch import ArchSpec
from planner.backends import QuantizedTensor, quantize_tensor
from planner.formats import get_format, list_formats

__all__ = ["DecoderConfig", "KVCache", "LlamaDecoder", "init_decoder_weights"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"The '{name}' parameter of DecoderConfig must be an int in [1, inf). "
                                 f"Got {value!r} instead.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"DecoderConfig: num_kv_heads ({self.num_kv_heads}) must divide num_heads "
                             f"({self.num_heads})")
        if self.head_dim % 2:
            raise ValueError(f"DecoderConfig: rotary embeddings need an even head_dim; got {self.head_dim}")

    @classmethod
    def from_arch(cls, arch: ArchSpec) -> "DecoderConfig":
        if arch.family != "decoder" or arch.num_experts or not arch.gated_mlp:
            raise ValueError(f"model {arch.id!r} ({arch.model_type}, {arch.family}) is not a dense Llama-shaped "
                             "decoder (gated MLP, no experts); pick a llama/mistral/qwen2-style config")
        return cls(vocab_size=arch.vocab_size, hidden_size=arch.hidden_size, num_layers=arch.num_layers,
                   num_heads=arch.num_heads, num_kv_heads=arch.num_kv_heads, head_dim=arch.head_dim,
                   intermediate_size=arch.intermediate_size, tie_word_embeddings=arch.tie_word_embeddings)


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class KVCache:
    """Keys and values of every layer; quantised per (token, head) when ``kv_format`` is set.

    Float mode keeps one ``[batch, kv_heads, tokens, head_dim]`` tensor per layer; quantised
    mode keeps a list of :class:`QuantizedTensor` chunks (one per forward call) whose
    payloads are the only stored copy.
    """

    def __init__(self, num_layers: int, kv_format: str | None = None) -> None:
        self.kv_format = None if kv_format is None else get_format(kv_format).name
        self._float: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers
        self._chunks: list[list[tuple[QuantizedTensor, QuantizedTensor, tuple[int, int, int, int]]]] = [
            [] for _ in range(num_layers)
        ]
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's ``k, v`` (``[b, kvh, t, d]``) and return the whole cache for ``layer``."""
        if self.kv_format is None:
            prev = self._float[layer]
            if prev is not None:
                k = torch.cat([prev[0], k], dim=2)
                v = torch.cat([prev[1], v], dim=2)
            self._float[layer] = (k, v)
            return k, v
        shape = tuple(k.shape)
        d = shape[-1]
        qk = quantize_tensor(k.reshape(-1, d), self.kv_format)
        qv = quantize_tensor(v.reshape(-1, d), self.kv_format)
        self._chunks[layer].append((qk, qv, shape))  # type: ignore[arg-type]
        ks = [c[0].dequantize().reshape(c[2]) for c in self._chunks[layer]]
        vs = [c[1].dequantize().reshape(c[2]) for c in self._chunks[layer]]
        return torch.cat(ks, dim=2), torch.cat(vs, dim=2)

    def snapshot(self) -> tuple:
        """State to :meth:`restore` later (timing one decode step repeatedly at a fixed context)."""
        return (list(self._float), [list(c) for c in self._chunks], self.length)

    def restore(self, state: tuple) -> None:
        floats, chunks, length = state
        self._float, self._chunks, self.length = list(floats), [list(c) for c in chunks], length

    def nbytes(self) -> int:
        """Stored bytes of every layer's keys and values (payloads only)."""
        total = 0
        for entry in self._float:
            if entry is not None:
                total += sum(t.numel() * t.element_size() for t in entry)
        for chunks in self._chunks:
            for qk, qv, _ in chunks:
                total += qk.nbytes() + qv.nbytes()
        return total


class LlamaAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer_index: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.layer_index = layer_index
        h, hd = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(h, cfg.num_heads * hd, bias=False)
        self.k_proj = nn.Linear(h, cfg.num_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(h, cfg.num_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * hd, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        cfg = self.cfg
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, cfg.num_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        prior = 0
        if cache is not None:
            prior = cache.length
            k, v = cache.append(self.layer_index, k, v)
        groups = cfg.num_heads // cfg.num_kv_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        if t == 1:
            out = F.scaled_dot_product_attention(q, k, v)
        elif prior == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            total = prior + t
            allowed = torch.ones(t, total, dtype=torch.bool, device=x.device).tril(diagonal=prior)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, cfg.num_heads * cfg.head_dim))


class LlamaMLP(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig, index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg, index)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = LlamaMLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(LlamaLayer(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaDecoder(nn.Module):
    """Causal LM: ``forward(input_ids, cache=None) -> logits [batch, tokens, vocab]``.

    Pass a :class:`KVCache` from :meth:`new_cache` to generate step by step: a prefill call
    with the prompt, then one call per new token.
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = LlamaBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)
        self.kv_format: str | None = None

    def set_kv_format(self, fmt: str | None) -> None:
        """Store the KV cache in ``fmt`` (a registered KV format) from the next :meth:`new_cache` on."""
        if fmt is not None:
            spec = get_format(fmt)
            if not spec.is_kv:
                kv = ", ".join(f.name for f in list_formats(role="kv"))
                raise ValueError(f"format {spec.name!r} is not a KV-cache format; KV formats: {kv}")
            fmt = spec.name
        self.kv_format = fmt

    def new_cache(self) -> KVCache:
        return KVCache(self.config.num_layers, self.kv_format)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None, *, last_only: bool = False) -> torch.Tensor:
        """Logits ``[batch, tokens, vocab]``; ``last_only`` computes them for the last position only,
        as serving engines do in prefill (the cost model's ``logits_tokens = 1``)."""
        b, t = input_ids.shape
        start = cache.length if cache is not None else 0
        pos = torch.arange(start, start + t, dtype=torch.float32, device=input_ids.device)
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, cache)
        if cache is not None:
            cache.length += t
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x))


def init_decoder_weights(model: LlamaDecoder, seed: int = 0, std: float = 0.02) -> None:
    """Normal(0, std) weights as HF ``initializer_range``, unit norms; seeded for repeatability.

    Output projections (o_proj, down_proj) are scaled by ``1/sqrt(2·layers)`` (GPT-2's
    residual scaling) so that random activations stay O(1) through the stack.
    """
    gen = torch.Generator().manual_seed(seed)
    layers = model.config.num_layers
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.fill_(1.0)
                continue
            scale = std / (2 * layers) ** 0.5 if name.endswith(("o_proj.weight", "down_proj.weight")) else std
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
