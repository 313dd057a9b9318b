"""Engines whose eager mode runs their own fused kernels (vLLM ``--enforce-eager``, SGLang
``--disable-cuda-graph``: profile ``runtime.eager_fused_ops``) pay the host dispatch of those kernels,
not of the Transformers modules' ATen kernels (planner.kernels.fused_eager_layer_kernels)."""

from __future__ import annotations

import json

import pytest

from planner.arch import load_arch
from planner.engines import load_engine
from planner.kernels import fused_eager_layer_kernels
from planner.serving import RUNTIME_OVERHEAD_S
from planner.workload import build_workload


def _layer_kernels(model: str) -> int:
    work = build_workload(load_arch(model))
    layer = next(b for b in work.blocks if b.repeated)
    return fused_eager_layer_kernels(work.arch, tuple((op.kind, op.group, bool(op.experts)) for op in layer.ops))


@pytest.mark.parametrize(("model", "kernels"), [
    # fused add+RMSNorm ×2, QKV, o_proj, gate_up, down, rotary, cache write, attention, SiluAndMul
    ("llama-3.1-8b", 10), ("qwen2.5-7b", 10),
    # LayerNorm ×2 and two residual adds, QKV, out_proj, fc1, fc2, cache write, attention, activation
    ("opt-6.7b", 11),
    # attention part as Llama (7) + router GEMM + fused_experts' six kernels
    ("mixtral-8x7b", 14),
])
def test_fused_eager_kernels_per_layer(model, kernels):
    assert _layer_kernels(model) == kernels


def test_profiles_declare_fused_eager_ops():
    assert load_engine("vllm").runtime.eager_fused_ops and load_engine("sglang").runtime.eager_fused_ops
    assert not load_engine("hf-transformers").runtime.eager_fused_ops


def _tpot(cli, engine: str, runtime: str) -> float:
    r = cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", engine, "--runtime", runtime,
            "--batch", "1", "--prompt", "512", "--gen", "128", "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)["tpot_s"]


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_eager_decode_step_pays_the_engines_own_kernels(cli, engine):
    """A decode step under --runtime eager costs the graph step plus one host dispatch per kernel:
    32 layers × 10 fused kernels and the embedding, final norm and LM head outside the layers."""
    extra = _tpot(cli, engine, "eager") - _tpot(cli, engine, "graph")
    expect = (32 * 10 + 3) * RUNTIME_OVERHEAD_S["eager"]
    assert extra == pytest.approx(expect, rel=0.02)
    # Transformers' modules launch 36 ATen kernels per Llama layer: eager costs it far more
    hf_extra = _tpot(cli, "hf-transformers", "eager") - _tpot(cli, "hf-transformers", "graph")
    assert hf_extra > 3 * extra
