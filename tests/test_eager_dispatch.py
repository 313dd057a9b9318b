"""The eager runtime's kernel count per layer (planner.kernels.eager_layer_kernels) against the
kernels the installed transformers really launches.

A decoder layer's decode step is run on CPU under a TorchDispatchMode that records every ATen
operator; views and reshapes launch no kernel and are not counted. The layer's count is the
difference between a 3-layer and a 1-layer model, halved, so embeddings, the final norm and the LM
head drop out. The cost model prices one host dispatch per counted kernel (EAGER_DISPATCH_S).
"""

from __future__ import annotations

import collections

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from planner.costmodel import block_host_kernels  # noqa: E402
from planner.hfconfig import arch_from_config  # noqa: E402
from planner.kernels import eager_layer_kernels  # noqa: E402
from planner.workload import build_workload  # noqa: E402

# ATen operators that only make a new view of a tensor: no kernel launch.
_VIEWS = {
    "aten.view", "aten.t", "aten._unsafe_view", "aten.slice", "aten.transpose", "aten.unsqueeze", "aten.expand",
    "aten.permute", "aten.select", "aten.reshape", "aten.squeeze", "aten.split", "aten.split_with_sizes",
    "aten.alias", "aten.detach", "aten.as_strided", "aten.unbind", "aten.chunk", "aten.narrow", "aten._reshape_alias",
    "aten.lift_fresh", "aten.empty", "aten.new_empty", "aten.sym_size",
}


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def _decode_kernels(model_cls, config) -> collections.Counter:
    torch.manual_seed(0)
    model = model_cls(config).eval()
    ids = torch.randint(0, 100, (1, 8))
    with torch.no_grad():
        past = model(ids, use_cache=True).past_key_values
        count = _Count()
        with count:
            model(ids[:, :1], past_key_values=past, use_cache=True)
    return count.ops


def _layer_kernels(model_cls, config_cls, layers_key: str, attn: str, **kw) -> float:
    counts = []
    for n in (1, 3):
        cfg = config_cls(**kw, **{layers_key: n})
        cfg._attn_implementation = attn
        counts.append(_decode_kernels(model_cls, cfg))
    per_layer = {k: (counts[1][k] - counts[0][k]) / 2 for k in set(counts[1]) | set(counts[0])}
    return sum(v for k, v in per_layer.items() if k not in _VIEWS)


def _modelled(model_type: str, **cfg) -> int:
    arch = arch_from_config({"model_type": model_type, **cfg}, model_id=f"tiny-{model_type}", origin="test")
    layer = next(b for b in build_workload(arch).blocks if b.repeated)
    return eager_layer_kernels(arch, tuple(op.kind for op in layer.ops))


_LLAMA = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
              max_position_embeddings=128)


_MIXTRAL = dict(_LLAMA, num_local_experts=8, num_experts_per_tok=2)


@pytest.mark.parametrize(
    "name, attn, tolerance",
    # Exact where transformers runs SDPA; BLOOM has no SDPA path and its GELU is a Python formula of
    # several kernels, so the LayerNorm / no-rotary count is short of it.
    [("llama", "sdpa", 0.0), ("qwen2", "sdpa", 0.0), ("mixtral", "sdpa", 0.0), ("opt", "sdpa", 0.25),
     ("bloom", "eager", 0.45)],
)
def test_layer_kernel_count_matches_the_real_module(name, attn, tolerance):
    from transformers import (
        BloomConfig, BloomForCausalLM, LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM, OPTConfig,
        OPTForCausalLM, Qwen2Config, Qwen2ForCausalLM,
    )

    if name == "llama":
        real = _layer_kernels(LlamaForCausalLM, LlamaConfig, "num_hidden_layers", attn, **_LLAMA)
        modelled = _modelled("llama", num_hidden_layers=2, rms_norm_eps=1e-6, hidden_act="silu", **_LLAMA)
    elif name == "qwen2":
        real = _layer_kernels(Qwen2ForCausalLM, Qwen2Config, "num_hidden_layers", attn, **_LLAMA)
        modelled = _modelled("qwen2", num_hidden_layers=2, rms_norm_eps=1e-6, hidden_act="silu", **_LLAMA)
    elif name == "mixtral":
        real = _layer_kernels(MixtralForCausalLM, MixtralConfig, "num_hidden_layers", attn, **_MIXTRAL)
        modelled = _modelled("mixtral", num_hidden_layers=2, rms_norm_eps=1e-6, hidden_act="silu", **_MIXTRAL)
    elif name == "opt":
        kw = dict(hidden_size=64, ffn_dim=128, num_attention_heads=4, vocab_size=128, word_embed_proj_dim=64,
                  max_position_embeddings=128)
        real = _layer_kernels(OPTForCausalLM, OPTConfig, "num_hidden_layers", attn, **kw)
        modelled = _modelled("opt", num_hidden_layers=2, activation_function="relu", do_layer_norm_before=True, **kw)
    else:
        kw = dict(hidden_size=64, n_head=4, vocab_size=128)
        real = _layer_kernels(BloomForCausalLM, BloomConfig, "n_layer", attn, **kw)
        modelled = _modelled("bloom", n_layer=2, **kw)
    assert real > 0
    assert abs(modelled - real) <= tolerance * real, f"{name}: modelled {modelled} kernels per layer, real {real}"


def test_llama_count_is_exact_with_sdpa():
    from transformers import LlamaConfig, LlamaForCausalLM

    real = _layer_kernels(LlamaForCausalLM, LlamaConfig, "num_hidden_layers", "sdpa", **_LLAMA)
    # 7 matmuls + 12 (two RMSNorms) + 10 (rotary) + 2 KV appends + 1 attention + SiLU and product + 2 residual adds.
    assert real == 36


def test_eager_host_time_scales_with_kernels_not_operators():
    """A convolution network's operators are one kernel each; a Llama layer's average several."""
    from planner.arch import load_arch

    def per_op(model: str) -> list[float]:
        arch = load_arch(model)
        return [block_host_kernels(arch, b) for b in build_workload(arch).blocks]

    assert set(per_op("resnet-50")) == {1.0}
    llama, bloom = per_op("llama-2-7b"), per_op("bloom-176b")
    assert max(llama) > max(bloom) > 1.0
    assert min(llama) == min(bloom) == 1.0  # embedding, final norm and LM head: one kernel each
