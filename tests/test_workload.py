"""The operator graph must account for exactly the parameters of the architecture."""

import pytest

from planner.arch import list_models, load_arch
from planner.workload import Phase, build_workload, expected_experts_touched, op_load


@pytest.mark.parametrize("model", list_models())
def test_operators_hold_every_parameter(model):
    # Each catalog architecture's parameter count (planner.arch, checked against papers and
    # transformers) must equal the weights the cost model moves: ±0.001% (T5's relative
    # attention bias tables are not modelled as operators).
    arch = load_arch(model)
    work = build_workload(arch)
    assert work.weight_params == pytest.approx(arch.param_count(), rel=1e-5)


def test_decision_groups_share_qkv_and_gate_up():
    work = build_workload(load_arch("llama-2-7b"))
    groups = {g for g, _, _ in work.groups()}
    assert "model.layers.0.self_attn.qkv" in groups
    assert "model.layers.31.mlp.gate_up" in groups
    assert "model.layers.31.mlp.down_proj" in groups
    # 32 layers × (qkv, o_proj, gate_up, down_proj); norms stay in 16-bit and are no decision
    assert len([g for g in groups if g.startswith("model.layers.")]) == 32 * 4
    assert len(groups) == 32 * 4 + 2  # + embed_tokens, lm_head (untied)


def test_causal_prefill_attention_flops():
    # Causal prefill of T tokens attends T(T+1)/2 (query, key) pairs; QKᵀ and AV cost
    # 2·heads·head_dim FLOPs per pair each (Kaplan et al. 2020, arXiv:2001.08361, Table 1).
    arch = load_arch("llama-2-7b")
    core = next(op for op in build_workload(arch).blocks[1].ops if op.kind == "attention")
    t = 2048
    load = op_load(core, Phase(name="prefill", batch=1, tokens=t))
    assert load.flops == pytest.approx(4 * 32 * 128 * t * (t + 1) / 2)


def test_moe_experts_touched():
    # Uniform top-2 of 8 routing: one token touches 2 experts; many tokens touch all 8.
    assert expected_experts_touched(8, 2, 1) == pytest.approx(2.0)
    assert expected_experts_touched(8, 2, 1000) == pytest.approx(8.0)
    assert 2 < expected_experts_touched(8, 2, 4) < 8
