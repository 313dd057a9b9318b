"""Model → layers and operators with shapes (pure, no I/O).

A :class:`Workload` is the format-agnostic description of what a model computes:
a list of :class:`Block` s (a block repeats ``count`` times, e.g. 80 decoder layers),
each holding :class:`OpShape` s with static shapes. Phase-dependent quantities
(FLOPs, weights read, activations, KV traffic) come from :func:`op_load` given a
:class:`Phase` (batch, new tokens per sequence, attended context).

Formulas:
- Linear: ``2·M·k·n`` FLOPs for ``M`` tokens (Kaplan et al. 2020, "C_fwd ≈ 2N per token").
- Attention core: ``QKᵀ`` and ``AV`` each cost ``2·heads·head_dim`` FLOPs per (query, key)
  pair; causal prefill of ``T`` new tokens after ``P`` cached ones attends
  ``T·(P + (T+1)/2)`` pairs (fused kernels skip the masked half).
- Multi-head Latent Attention (DeepSeek-V2, arXiv:2405.04434 §2.1): the cache holds
  ``kv_lora_rank + qk_rope_head_dim`` values per token and layer. The core runs in whichever
  form costs fewer FLOPs, as serving engines do: absorbed (decode; W_UK/W_UV folded into the
  query/output, whose per-token cost equals ``kv_b_proj`` 's, so the core attends over the
  latent: ``2·heads·(2·kv_lora_rank + qk_rope_head_dim)`` per pair) or non-absorbed (prefill;
  ``kv_b_proj`` expands the cached latents of the prior context, then ``2·heads·(qk + v)`` per pair).
- MoE: a batch of ``M`` tokens with top-k of E experts touches
  ``E·(1 − (1 − k/E)^M)`` distinct experts per layer under uniform routing
  (each expert is missed by one token with probability 1 − k/E), which sets the expert weight bytes read per step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from planner.arch import ArchSpec

# Operator kinds
LINEAR = "linear"
ATTENTION = "attention"
EMBEDDING = "embedding"
LM_HEAD = "lm_head"
NORM = "norm"
CONV = "conv"
ROUTER = "router"
POOL = "pool"

WEIGHTED_KINDS = frozenset({LINEAR, EMBEDDING, LM_HEAD, CONV, ROUTER})


@dataclass(frozen=True, slots=True, kw_only=True)
class OpShape:
    """One operator of a block with static shapes.

    ``name`` is the module path inside the block (``self_attn.q_proj``);
    ``group`` names the decision group whose members must share one compression
    choice (q/k/v, gate/up, all experts of an MoE block, tied embeddings).
    ``shard`` says how tensor parallelism splits it: ``col`` (output features),
    ``row`` (input features; its output needs an all-reduce), ``heads``
    (attention heads), ``vocab`` (vocabulary-parallel), ``none`` (replicated).
    """

    name: str
    kind: str
    group: str
    in_features: int = 0
    out_features: int = 0
    bias: bool = False
    experts: int = 0  # >0: one matrix per expert (MoE)
    experts_active: int = 0  # top-k
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    v_head_dim: int = 0  # value width per head (0: head_dim)
    kv_elems: int = 0  # values one token adds to the cache (0: 2·kv_heads·head_dim)
    latent: int = 0  # >0: MLA, the cache is a kv_lora_rank latent plus a shared RoPE key
    causal: bool = True
    # cross-attention over the encoder output: the attention core, and the K/V projections that read
    # the encoder output (run once per request, in the prefill; decode steps reuse their cache)
    cross: bool = False
    window: int | None = None
    window_share: float = 1.0  # fraction of the block's layers that use ``window`` (Gemma 2: 0.5)
    conv_macs_per_sample: int = 0
    conv_in_elems: int = 0
    conv_out_elems: int = 0
    hidden: int = 0  # norms / elementwise width
    shard: str = "none"
    allreduce_after: bool = False
    tied_to: str | None = None  # lm_head tied to the embedding (weights stored once)
    positions: int = 0  # >0: runs on the first ``positions`` positions only (a [CLS] pooler / head)

    @property
    def weight_params(self) -> int:
        """Parameters stored for this operator (all experts; 0 if tied to another op)."""
        if self.tied_to is not None:
            return 0
        if self.kind in (LINEAR, ROUTER, LM_HEAD, EMBEDDING):
            per = self.in_features * self.out_features + (self.out_features if self.bias else 0)
            return per * max(1, self.experts)
        if self.kind == CONV:
            return self.in_features  # conv stores its parameter count in in_features (see _conv_op)
        if self.kind == NORM:
            return self.hidden * (2 if self.bias else 1)
        return 0

    @property
    def cache_elems(self) -> int:
        """Values one token adds to this attention operator's KV cache (whole model width)."""
        return self.kv_elems or 2 * self.kv_heads * self.head_dim

    @property
    def cached(self) -> bool:
        """An attention operator whose keys and values outlive the pass: a decoder's self-attention
        and a cross-attention keep a KV cache; an encoder's self-attention (BERT, ViT, T5's encoder)
        reads its keys and values as activations of the same pass and keeps none."""
        return self.kind == ATTENTION and (self.causal or self.cross)

    @property
    def kv_row(self) -> int:
        """Width of one cached row (one KV head's key or value; MLA: latent plus RoPE key), the
        span a KV-cache format's per-row scales cover."""
        return self.kv_elems if self.latent else self.head_dim

    @property
    def is_weighted(self) -> bool:
        return self.kind in WEIGHTED_KINDS and self.weight_params > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A block of operators repeated ``count`` times; layer i's FQN is ``prefix.{i}``."""

    prefix: str  # "model.layers" (repeated) or "model" (once)
    count: int
    ops: tuple[OpShape, ...]
    stage: str  # "pre" | "layers" | "post" | "encoder" | "decoder"
    repeated: bool = True
    first: int = 0  # index of the block's first layer (MoE models: after the dense layers)

    def fqn(self, index: int, op: OpShape) -> str:
        return f"{self.prefix}.{self.first + index}.{op.name}" if self.repeated else f"{self.prefix}.{op.name}"

    def group_fqn(self, index: int, op: OpShape) -> str:
        return f"{self.prefix}.{self.first + index}.{op.group}" if self.repeated else f"{self.prefix}.{op.group}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    arch: ArchSpec
    blocks: tuple[Block, ...]

    @property
    def weight_params(self) -> int:
        return sum(b.count * sum(o.weight_params for o in b.ops) for b in self.blocks)

    @property
    def num_layers(self) -> int:
        return sum(b.count for b in self.blocks if b.repeated)

    def layer_names(self) -> list[str]:
        return [f"{b.prefix}.{b.first + i}" for b in self.blocks if b.repeated for i in range(b.count)]

    def groups(self) -> list[tuple[str, int, tuple[OpShape, ...]]]:
        """Decision groups in model order: (group FQN, weight params, member ops)."""
        out: list[tuple[str, int, tuple[OpShape, ...]]] = []
        for b in self.blocks:
            order: dict[str, list[OpShape]] = {}
            for op in b.ops:
                if op.is_weighted:
                    order.setdefault(op.group, []).append(op)
            for i in range(b.count):
                for g, members in order.items():
                    out.append(
                        (
                            f"{b.prefix}.{b.first + i}.{g}" if b.repeated else f"{b.prefix}.{g}",
                            sum(m.weight_params for m in members),
                            tuple(members),
                        )
                    )
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """What one forward pass processes.

    ``tokens``: new tokens per sequence (prompt length for prefill, 1 for a decode step,
    the input length for encoders; 1 "token" per image for CNNs); ``context``: tokens
    already in the KV cache before this pass (decode: the averaged context length).
    ``logits_tokens``: positions whose logits are computed (1 for serving engines' prefill).
    """

    name: str
    batch: int
    tokens: int
    context: float = 0.0
    logits_tokens: int = 1
    encoder_tokens: int = 0  # encoder-decoder cross-attention length
    # Attention gathers the KV cache from scattered (paged) blocks: a serving engine's decode
    # step. A prefill (even of one token) and training read their own K/V contiguously.
    kv_gather: bool = False


@dataclass(slots=True)
class OpLoad:
    """Phase-dependent work of one operator for the whole batch (one layer instance). Not frozen:
    it is built for every operator of every pass and never shared, and a frozen dataclass's
    ``__init__`` costs several times a plain one's."""

    flops: float
    weight_elems_read: float
    act_in_elems: float
    act_out_elems: float
    kv_read_elems: float = 0.0
    kv_write_elems: float = 0.0
    gemm_m: float = 0.0  # rows of the GEMM (tokens), for dequant amortisation


def expected_experts_touched(experts: int, top_k: int, tokens: float) -> float:
    """Distinct experts hit by ``tokens`` tokens under uniform top-k routing: ``E·(1 − (1 − k/E)^tokens)``."""
    if experts <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - top_k / experts) ** max(tokens, 0.0))


def op_load(op: OpShape, ph: Phase) -> OpLoad:
    """FLOPs and element traffic of ``op`` for phase ``ph`` (whole batch, one layer)."""
    b, t = ph.batch, ph.tokens
    m = b * t
    kind = op.kind
    if kind in (LINEAR, ROUTER):
        k, n = op.in_features, op.out_features
        if op.positions:
            m = b * min(t, op.positions)
        if op.cross and ph.name == "prefill":  # a cross-attention K/V projection reads the encoder output
            m = b * ph.encoder_tokens
        if op.experts:
            routed = m * op.experts_active
            touched = expected_experts_touched(op.experts, op.experts_active, m)
            return OpLoad(2.0 * routed * k * n, touched * k * n, routed * k, routed * n, gemm_m=routed / max(touched, 1.0))
        return OpLoad(2.0 * m * k * n, float(k * n), m * k, m * n, gemm_m=m)
    if kind == LM_HEAD:
        mt = b * min(t, ph.logits_tokens)
        k, n = op.in_features, op.out_features
        return OpLoad(2.0 * mt * k * n, float(k * n), mt * k, mt * n, gemm_m=mt)
    if kind == EMBEDDING:
        # A gather: only the looked-up rows are read.
        rows = min(float(m), float(op.in_features))
        return OpLoad(0.0, rows * op.out_features, m, m * op.out_features)
    if kind == ATTENTION:
        hd, h, kv = op.head_dim, op.heads, op.cache_elems
        if op.cross:
            keys_total = float(ph.encoder_tokens)
            pairs = t * keys_total
            kv_read = b * kv * keys_total
            kv_write = 0.0
        else:
            prior = ph.context
            if op.causal:
                pairs = t * (prior + (t + 1) / 2.0)
            else:
                pairs = t * (prior + t)
            keys_total = prior + t
            if op.window:
                # Local layers attend (and read) at most ``window`` keys; a block mixing local
                # and global layers gets the layer average (FLOPs and bytes are linear in it).
                s = op.window_share
                keys_total = s * min(keys_total, op.window) + (1.0 - s) * keys_total
                pairs = s * min(pairs, t * op.window) + (1.0 - s) * pairs
            kv_read = b * kv * keys_total
            kv_write = b * kv * t if op.causal else 0.0  # an encoder writes no cache
        flops = 2.0 * b * h * (hd + (op.v_head_dim or hd)) * pairs
        if op.latent:
            flops = min(flops + _mla_expand_flops(op, b, keys_total - t), 2.0 * b * h * (kv + op.latent) * pairs)
        return OpLoad(flops, 0.0, m * h * hd, m * h * (op.v_head_dim or hd), kv_read, kv_write)
    if kind == NORM:
        return OpLoad(5.0 * m * op.hidden, float(op.weight_params), m * op.hidden, m * op.hidden)
    if kind == CONV:
        return OpLoad(
            2.0 * b * op.conv_macs_per_sample,
            float(op.weight_params),
            b * op.conv_in_elems,
            b * op.conv_out_elems,
            gemm_m=b * op.conv_out_elems / max(op.out_features, 1),
        )
    if kind == POOL:
        return OpLoad(float(b * op.conv_in_elems), 0.0, b * op.conv_in_elems, b * op.conv_out_elems)
    raise ValueError(f"unknown op kind {kind!r}")


def _mla_expand_flops(op: OpShape, batch: int, prior: float) -> float:
    """Non-absorbed MLA: ``kv_b_proj`` rebuilds the no-RoPE keys and values of the ``prior``
    cached tokens from their latents (the new tokens' are counted by the ``kv_b_proj`` op)."""
    rope = op.kv_elems - op.latent
    return 2.0 * batch * max(prior, 0.0) * op.latent * op.heads * (op.head_dim - rope + op.v_head_dim)


# ---------------------------------------------------------------------------
# Builders per family
# ---------------------------------------------------------------------------


def _linear(name: str, group: str, k: int, n: int, *, bias: bool, shard: str, ar: bool = False, **kw) -> OpShape:
    return OpShape(name=name, kind=LINEAR, group=group, in_features=k, out_features=n, bias=bias, shard=shard, allreduce_after=ar, **kw)


def _norm(name: str, h: int, arch: ArchSpec) -> OpShape:
    bias = arch.norm_bias if arch.norm_bias is not None else arch.norm == "layernorm"
    return OpShape(name=name, kind=NORM, group=name, hidden=h, bias=bias)


def _norms_per_layer(a: ArchSpec) -> int:
    if a.norms_per_layer is not None:
        return a.norms_per_layer
    return 1 if a.parallel_attn_mlp else 2


def _window(a: ArchSpec, cross: bool) -> tuple[int | None, float]:
    """(window, fraction of the layers using it) of a self-attention stack."""
    windows = a.layer_windows()
    local = sum(1 for w in windows if w is not None)
    if cross or not local:
        return None, 1.0
    return a.sliding_window, local / len(windows)


def _mla_ops(a: ArchSpec, prefix: str) -> list[OpShape]:
    """Multi-head Latent Attention (HF DeepseekV2/V3Attention). The latent and the RoPE key are
    shared by all heads (one "KV head": replicated under tensor parallelism, as in vLLM)."""
    h, heads, qk, rope, lat = a.hidden_size, a.num_heads, a.head_dim, a.qk_rope_head_dim, a.kv_lora_rank
    bias, g = a.attn_bias, f"{prefix}.qkv"
    if a.q_lora_rank:
        ops = [
            _linear(f"{prefix}.q_a_proj", g, h, a.q_lora_rank, bias=bias, shard="none"),
            OpShape(name=f"{prefix}.q_a_layernorm", kind=NORM, group=f"{prefix}.q_a_layernorm", hidden=a.q_lora_rank),
            _linear(f"{prefix}.q_b_proj", g, a.q_lora_rank, heads * qk, bias=False, shard="col"),
        ]
    else:
        ops = [_linear(f"{prefix}.q_proj", g, h, heads * qk, bias=False, shard="col")]
    ops += [
        _linear(f"{prefix}.kv_a_proj_with_mqa", g, h, lat + rope, bias=bias, shard="none"),
        OpShape(name=f"{prefix}.kv_a_layernorm", kind=NORM, group=f"{prefix}.kv_a_layernorm", hidden=lat),
        _linear(f"{prefix}.kv_b_proj", g, lat, heads * (qk - rope + a.v_head_dim), bias=False, shard="col"),
        OpShape(name=f"{prefix}.core", kind=ATTENTION, group=f"{prefix}.core", heads=heads, kv_heads=1, head_dim=qk,
                v_head_dim=a.v_head_dim, kv_elems=a.kv_elems_per_layer, latent=lat, causal=True, shard="heads"),
        _linear(f"{prefix}.o_proj", f"{prefix}.o_proj", heads * a.v_head_dim, h, bias=bias, shard="row", ar=True),
    ]
    return ops


def _attention_ops(a: ArchSpec, prefix: str, *, causal: bool, cross: bool = False, kv_in: int | None = None) -> list[OpShape]:
    if a.is_mla:
        return _mla_ops(a, prefix)
    h, hd = a.hidden_size, a.head_dim
    q_out, kv_out = a.num_heads * hd, a.num_kv_heads * hd
    bias = a.attn_bias
    window, share = _window(a, cross)
    g = f"{prefix}.qkv"
    ops = [
        _linear(f"{prefix}.q_proj", g, h, q_out, bias=bias, shard="col"),
        replace(_linear(f"{prefix}.k_proj", g, kv_in or h, kv_out, bias=bias, shard="col"), cross=cross),
        replace(_linear(f"{prefix}.v_proj", g, kv_in or h, kv_out, bias=bias, shard="col"), cross=cross),
        OpShape(
            name=f"{prefix}.core",
            kind=ATTENTION,
            group=f"{prefix}.core",
            heads=a.num_heads,
            kv_heads=a.num_kv_heads,
            head_dim=hd,
            causal=causal,
            cross=cross,
            window=window,
            window_share=share,
            shard="heads",
        ),
        _linear(
            f"{prefix}.o_proj",
            f"{prefix}.o_proj",
            q_out,
            h,
            bias=bias if a.attn_out_bias is None else a.attn_out_bias,
            shard="row",
            ar=True,
        ),
    ]
    return ops


def _mlp_ops(a: ArchSpec, prefix: str = "mlp", *, moe: bool = True) -> list[OpShape]:
    h, f, bias = a.hidden_size, a.intermediate_size, a.mlp_bias
    if a.num_experts and moe:
        e, k, f = a.num_experts, a.experts_per_token, a.moe_intermediate_size or f
        ops = [OpShape(name=f"{prefix}.router", kind=ROUTER, group=f"{prefix}.router", in_features=h, out_features=e)]
        g = f"{prefix}.experts"
        ops.append(_linear(f"{prefix}.experts.gate_proj", g, h, f, bias=bias, shard="col", experts=e, experts_active=k))
        ops.append(_linear(f"{prefix}.experts.up_proj", g, h, f, bias=bias, shard="col", experts=e, experts_active=k))
        ops.append(_linear(f"{prefix}.experts.down_proj", g, f, h, bias=bias, shard="row", ar=True, experts=e, experts_active=k))
        if a.shared_expert_intermediate_size:
            # Shared experts (DeepSeekMoE; Qwen2-MoE's shared_expert): a dense MLP every token runs.
            ops += _ffn(f"{prefix}.shared_experts", h, a.shared_expert_intermediate_size, bias=bias, gated=a.gated_mlp,
                        gated_names=("gate_proj", "up_proj", "gate_up", "down_proj"), plain_names=("fc1", "fc2"))
            if a.shared_expert_gate:
                ops.append(_linear(f"{prefix}.shared_expert_gate", f"{prefix}.shared_expert_gate", h, 1, bias=False, shard="none"))
        return ops
    return _ffn(prefix, h, f, bias=bias, gated=a.gated_mlp, gated_names=("gate_proj", "up_proj", "gate_up", "down_proj"),
                plain_names=("fc1", "fc2"))


def _ffn(prefix: str, h: int, f: int, *, bias: bool, gated: bool, gated_names: tuple[str, str, str, str],
         plain_names: tuple[str, str]) -> list[OpShape]:
    """A dense feed-forward block: gated (two input matrices sharing one decision group, then
    the output matrix) or plain (input, output). Names are the model's module names."""
    if gated:
        in0, in1, group, out = gated_names
        return [
            _linear(f"{prefix}.{in0}", f"{prefix}.{group}", h, f, bias=bias, shard="col"),
            _linear(f"{prefix}.{in1}", f"{prefix}.{group}", h, f, bias=bias, shard="col"),
            _linear(f"{prefix}.{out}", f"{prefix}.{out}", f, h, bias=bias, shard="row", ar=True),
        ]
    inp, out = plain_names
    return [
        _linear(f"{prefix}.{inp}", f"{prefix}.{inp}", h, f, bias=bias, shard="col"),
        _linear(f"{prefix}.{out}", f"{prefix}.{out}", f, h, bias=bias, shard="row", ar=True),
    ]


def _embedding(a: ArchSpec, name: str = "embed_tokens") -> OpShape:
    return OpShape(name=name, kind=EMBEDDING, group=name, in_features=a.vocab_size, out_features=a.hidden_size, shard="vocab")


def _decoder(a: ArchSpec) -> tuple[Block, ...]:
    pre = [_embedding(a)]
    if a.learned_pos_emb:
        pre.append(
            OpShape(
                name="embed_positions",
                kind=EMBEDDING,
                group="embed_positions",
                in_features=a.max_position_embeddings + a.pos_emb_offset,
                out_features=a.hidden_size,
            )
        )
    if a.embedding_norm:
        pre.append(_norm("embed_layernorm", a.hidden_size, a))
    n_norms = _norms_per_layer(a)
    layer = [_norm("input_layernorm", a.hidden_size, a)]
    layer += _attention_ops(a, "self_attn", causal=True)
    # Extra norms (post-attention; Gemma 2 also normalises each sub-block's output).
    for k in range(1, n_norms):
        layer.append(_norm("post_attention_layernorm" if k == 1 else f"extra_layernorm_{k}", a.hidden_size, a))
    dense = a.dense_layers if a.num_experts else 0
    layers = []
    if dense:  # DeepSeek's first_k_dense_replace, Qwen2-MoE's leading mlp_only_layers
        layers.append(Block(prefix="model.layers", count=dense, ops=tuple(layer + _mlp_ops(a, moe=False)), stage="layers"))
    if a.num_layers > dense:
        layers.append(Block(prefix="model.layers", count=a.num_layers - dense, ops=tuple(layer + _mlp_ops(a)),
                            stage="layers", first=dense))
    post = [_norm("norm", a.hidden_size, a)] if a.final_norm else []
    post.append(
        OpShape(
            name="lm_head",
            kind=LM_HEAD,
            group="embed_tokens" if a.tie_word_embeddings else "lm_head",
            in_features=a.hidden_size,
            out_features=a.vocab_size,
            bias=a.lm_head_bias,
            shard="vocab",
            tied_to="embed_tokens" if a.tie_word_embeddings else None,
        )
    )
    return (
        Block(prefix="model", count=1, ops=tuple(pre), stage="pre", repeated=False),
        *layers,
        Block(prefix="model", count=1, ops=tuple(post), stage="post", repeated=False),
    )


def _encoder(a: ArchSpec) -> tuple[Block, ...]:
    pre = [_embedding(a, "embeddings.word_embeddings")]
    if a.learned_pos_emb:
        pre.append(
            OpShape(
                name="embeddings.position_embeddings",
                kind=EMBEDDING,
                group="embeddings.position_embeddings",
                in_features=a.max_position_embeddings,
                out_features=a.hidden_size,
            )
        )
    if a.type_vocab_size:
        pre.append(
            OpShape(
                name="embeddings.token_type_embeddings",
                kind=EMBEDDING,
                group="embeddings.token_type_embeddings",
                in_features=a.type_vocab_size,
                out_features=a.hidden_size,
            )
        )
    pre.append(_norm("embeddings.LayerNorm", a.hidden_size, a))
    h, f = a.hidden_size, a.intermediate_size
    g = "attention.self.qkv"
    layer = [
        _linear("attention.self.query", g, h, h, bias=a.attn_bias, shard="col"),
        _linear("attention.self.key", g, h, a.num_kv_heads * a.head_dim, bias=a.attn_bias, shard="col"),
        _linear("attention.self.value", g, h, a.num_kv_heads * a.head_dim, bias=a.attn_bias, shard="col"),
        OpShape(
            name="attention.self.core",
            kind=ATTENTION,
            group="attention.self.core",
            heads=a.num_heads,
            kv_heads=a.num_kv_heads,
            head_dim=a.head_dim,
            causal=False,
            shard="heads",
        ),
        _linear("attention.output.dense", "attention.output.dense", h, h, bias=a.attn_bias, shard="row", ar=True),
        _norm("attention.output.LayerNorm", h, a),
        _linear("intermediate.dense", "intermediate.dense", h, f, bias=a.mlp_bias, shard="col"),
        _linear("output.dense", "output.dense", f, h, bias=a.mlp_bias, shard="row", ar=True),
        _norm("output.LayerNorm", h, a),
    ]
    prefix = "bert" if a.model_type == "bert" else "model"
    blocks = [
        Block(prefix=prefix, count=1, ops=tuple(pre), stage="pre", repeated=False),
        Block(prefix=f"{prefix}.encoder.layer", count=a.num_layers, ops=tuple(layer), stage="layers"),
    ]
    if a.model_type == "bert":
        blocks.append(
            Block(
                prefix=prefix,
                count=1,
                # BertPooler: dense + tanh over the first ([CLS]) token only.
                ops=(_linear("pooler.dense", "pooler.dense", h, h, bias=True, shard="none", positions=1),),
                stage="post",
                repeated=False,
            )
        )
    return tuple(blocks)


def _t5(a: ArchSpec) -> tuple[Block, ...]:
    h, f = a.hidden_size, a.intermediate_size
    pre = [_embedding(a, "shared")]

    def ff(prefix: str) -> list[OpShape]:
        return _ffn(prefix, h, f, bias=False, gated=a.gated_mlp, gated_names=("wi_0", "wi_1", "wi", "wo"),
                    plain_names=("wi", "wo"))

    enc = [_norm("layer.0.layer_norm", h, a), *_attention_ops(a, "layer.0.SelfAttention", causal=False)]
    enc += [_norm("layer.1.layer_norm", h, a), *ff("layer.1.DenseReluDense")]
    dec = [_norm("layer.0.layer_norm", h, a), *_attention_ops(a, "layer.0.SelfAttention", causal=True)]
    dec += [_norm("layer.1.layer_norm", h, a), *_attention_ops(a, "layer.1.EncDecAttention", causal=False, cross=True)]
    dec += [_norm("layer.2.layer_norm", h, a), *ff("layer.2.DenseReluDense")]
    post = [
        _norm("decoder.final_layer_norm", h, a),
        OpShape(
            name="lm_head",
            kind=LM_HEAD,
            group="shared" if a.tie_word_embeddings else "lm_head",
            in_features=h,
            out_features=a.vocab_size,
            shard="vocab",
            tied_to="shared" if a.tie_word_embeddings else None,
        ),
    ]
    return (
        Block(prefix="model", count=1, ops=tuple(pre), stage="pre", repeated=False),
        Block(prefix="encoder.block", count=a.num_layers, ops=tuple(enc), stage="encoder"),
        Block(prefix="decoder.block", count=a.num_decoder_layers or a.num_layers, ops=tuple(dec), stage="decoder"),
        Block(prefix="model", count=1, ops=tuple(post), stage="post", repeated=False),
    )


def _cnn(a: ArchSpec) -> tuple[Block, ...]:
    ops: list[OpShape] = []
    for c in a.conv_layers:
        ops.append(
            OpShape(
                name=c.name,
                kind=CONV,
                group=c.name,
                # A conv op keeps its parameter count in in_features (see OpShape.weight_params) and
                # its output channels in out_features.
                in_features=c.params(),
                out_features=c.out_channels,
                conv_macs_per_sample=c.macs(),
                conv_in_elems=c.in_channels * c.out_h * c.stride * c.out_w * c.stride,
                conv_out_elems=c.out_channels * c.out_h * c.out_w,
            )
        )
    last = a.conv_layers[-1] if a.conv_layers else None
    if last is not None:
        feats = last.out_channels
        ops.append(
            OpShape(name="pooler", kind=POOL, group="pooler", conv_in_elems=feats * last.out_h * last.out_w, conv_out_elems=feats)
        )
        ops.append(_linear("classifier", "classifier", feats, max(a.num_labels, 1), bias=True, shard="none"))
    return (Block(prefix="model", count=1, ops=tuple(ops), stage="layers", repeated=False),)


def _vit(a: ArchSpec) -> tuple[Block, ...]:
    h = a.hidden_size
    patches = (a.image_size // a.patch_size) ** 2
    patch = OpShape(
        name="embeddings.patch_embeddings.projection",
        kind=CONV,
        group="embeddings.patch_embeddings.projection",
        # conv weights + bias, plus the [CLS] token and the learned position embeddings
        in_features=a.num_channels * a.patch_size**2 * h + h + h + (patches + 1) * h,
        out_features=h,
        conv_macs_per_sample=patches * a.num_channels * a.patch_size**2 * h,
        conv_in_elems=a.num_channels * a.image_size**2,
        conv_out_elems=patches * h,
    )
    enc = _encoder(a)
    layer_ops = tuple(op for op in enc[1].ops)
    # ViTForImageClassification classifies the [CLS] token only (sequence_output[:, 0, :]).
    head = _linear("classifier", "classifier", h, max(a.num_labels, 1), bias=True, shard="none", positions=1)
    return (
        Block(prefix="vit", count=1, ops=(patch,), stage="pre", repeated=False),
        Block(prefix="vit.encoder.layer", count=a.num_layers, ops=layer_ops, stage="layers"),
        Block(prefix="vit", count=1, ops=(_norm("layernorm", h, a), head), stage="post", repeated=False),
    )


@functools.lru_cache(maxsize=256)
def build_workload(arch: ArchSpec) -> Workload:
    """Operators of ``arch`` grouped in repeated blocks."""
    fam = arch.family
    if fam == "decoder":
        blocks = _decoder(arch)
    elif fam == "encoder":
        blocks = _encoder(arch)
    elif fam == "encoder_decoder":
        blocks = _t5(arch)
    elif fam == "cnn":
        blocks = _cnn(arch)
    elif fam == "vit":
        blocks = _vit(arch)
    else:  # pragma: no cover - ArchSpec validates family
        raise ValueError(f"unsupported model family {fam!r}")
    return Workload(arch=arch, blocks=blocks)


def tokens_per_sample(arch: ArchSpec, prompt: int) -> int:
    """Positions processed per sample by one forward pass of a non-generative model."""
    if arch.family == "cnn":
        return 1
    if arch.family == "vit":
        return (arch.image_size // arch.patch_size) ** 2 + 1
    return prompt


__all__ = [
    "Block",
    "OpLoad",
    "OpShape",
    "Phase",
    "Workload",
    "build_workload",
    "expected_experts_touched",
    "op_load",
    "tokens_per_sample",
]
