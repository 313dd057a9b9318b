"""ZeRO shards an expert's weights over the ranks that hold that expert, not over the whole DP group.

Expert parallelism carves its groups out of TP × DP: with ep 8 and dp 8, each expert slice is held by one rank,
so ZeRO has nothing to shard it over. Mixtral with AdamW at --ep 8 --dp 8 --zero 1 was priced at 10.9 GB of
optimizer state per device — 87 GB over the 8 devices for a model whose AdamW state is 560 GB — and "fit".
Summed over the ranks, every state must be the model's once (pipeline 1, so one stage holds it all).
"""

from __future__ import annotations

import pytest

from hwmodels import load_device
from planner.arch import load_arch
from planner.training import estimate_training
from planner.training_config import TrainingConfig

ADAMW = 4.0 + 8.0  # fp32 master weight + two fp32 moments, bytes per bf16 parameter


def _est(model: str, **kw):
    cfg = TrainingConfig(global_batch=kw.pop("global_batch", 64), seq=1024, recompute="full", **kw)
    return estimate_training(load_arch(model), load_device("h100-sxm"), cfg)


@pytest.mark.parametrize("model", ["mixtral-8x7b", "qwen1.5-moe-a2.7b", "deepseek-v2-lite"])
@pytest.mark.parametrize("ep, dp, tp", [(8, 8, 1), (4, 8, 1), (2, 8, 1), (4, 4, 2), (2, 2, 4)])
def test_optimizer_state_summed_over_ranks_is_the_models_once(model, ep, dp, tp):
    arch = load_arch(model)
    if arch.num_experts % ep:
        pytest.skip(f"{model} has {arch.num_experts} experts")
    est = _est(model, ep=ep, dp=dp, tp=tp, zero=1)
    # every rank holds its TP slice of the dense weights and its EP slice of the experts; the ranks of one
    # TP group hold different slices, so the TP group's state is the whole model's over the DP replicas
    total = est.memory.optimizer_bytes * tp * dp
    assert total == pytest.approx(est.params * ADAMW, rel=0.02)


def test_zero_2_and_3_shard_experts_only_over_their_own_group():
    one = _est("mixtral-8x7b", ep=8, dp=8, zero=1)
    two = _est("mixtral-8x7b", ep=8, dp=8, zero=2)
    three = _est("mixtral-8x7b", ep=8, dp=8, zero=3)
    # bf16 gradients of every parameter, once over the 8 ranks
    assert two.memory.gradients_bytes * 8 == pytest.approx(two.params * 2.0, rel=0.02)
    assert one.memory.gradients_bytes > two.memory.gradients_bytes
    # ZeRO-3: the weight shards add up to the model once, plus the two gathered layers each rank holds
    assert three.memory.weights_bytes * 8 >= three.params * 2.0 * 0.99
    assert not one.memory.fits  # 560 GB of AdamW state does not fit on 8 × 80 GB
    # twice the data ranks: each expert slice now has two holders to shard over
    wider = _est("mixtral-8x7b", ep=8, dp=16, zero=1, global_batch=128)
    assert wider.memory.optimizer_bytes == pytest.approx(one.memory.optimizer_bytes / 2, rel=0.02)


def test_dense_models_are_unchanged_by_the_expert_groups():
    est = _est("llama-3.1-8b", dp=8, zero=1)
    assert est.memory.optimizer_bytes * 8 == pytest.approx(est.params * ADAMW, rel=0.01)
