"""Training capacity for a CNN: its token is an image, it trains data-parallel at tens to hundreds
of images per device, and the device counts searched are bounded by its own FLOPs per image (not
6N, which undercounts a convolution's reuse of its weights), so the search reaches the fleet a
deadline needs instead of stopping at 16 devices."""

from __future__ import annotations

from hwmodels import load_device
from planner.arch import load_arch
from planner.request.capacity import CapacityTrainRequest, run_capacity_train
from planner.training import TrainingConfig, estimate_training
from planner.training_capacity import training_flops_per_token

REQ = dict(model="resnet-50", hardware="h100-sxm", tokens=2e12, days=30)


def test_resnet50_deadline_is_met_with_a_data_parallel_fleet():
    ans = run_capacity_train(CapacityTrainRequest(**REQ))[0]
    assert ans.feasible and ans.target.seq == 1 and ans.target.global_batch_tokens == 8192
    b = ans.best
    assert b.devices > 16 and b.tp == b.pp == 1 and b.dp == b.devices
    assert b.micro_batch >= 32 and b.global_batch <= 2 * 8192
    assert b.tokens_per_s >= ans.target.tokens_per_s
    # the row is the training estimate of its own layout
    cfg = TrainingConfig(global_batch=b.global_batch, micro_batch=b.micro_batch, seq=1, dp=b.dp, zero=b.zero,
                         recompute=b.recompute, engine=ans.target.engine)
    est = estimate_training(load_arch("resnet-50"), load_device("h100-sxm"), cfg)
    assert abs(est.tokens_per_s - b.tokens_per_s) < 1e-6 * b.tokens_per_s and est.samples_per_s == est.tokens_per_s


def test_the_flops_that_bound_the_search_are_the_estimates():
    arch, dev = load_arch("resnet-50"), load_device("h100-sxm")
    est = estimate_training(arch, dev, TrainingConfig(global_batch=2, micro_batch=2, seq=1))
    assert abs(training_flops_per_token(arch) * 2 - est.model_flops_per_step) < 1e-6 * est.model_flops_per_step
    # at two images a step the cost model is latency-bound (MFU about 1%), at 256 it is not
    big = estimate_training(arch, dev, TrainingConfig(global_batch=256, micro_batch=256, seq=1))
    assert est.mfu < 0.05 < big.mfu

