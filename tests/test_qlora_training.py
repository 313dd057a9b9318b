"""QLoRA: a 4-bit frozen base that `--weights` and `--finetune` agree on, and the dequantization it pays.

qlora with `--weights fp32` was reported as fp32 and priced as nf4; lora with `--weights nf4` was priced otherwise
than the QLoRA it is; and a QLoRA step took exactly a LoRA step's time, although bitsandbytes dequantizes every
4-bit weight before the forward GEMM and again before the backward's data-gradient GEMM.
"""

from __future__ import annotations

import json

import pytest

import planner
from hwmodels import load_device
from planner.arch import load_arch
from planner.training import estimate_training
from planner.training_config import TrainingConfig


def test_without_weights_qlora_reports_the_nf4_base_it_prices(cli):
    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "fsdp",
            "--finetune", "qlora:16", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["weights"] == "nf4" and d["memory"]["weights_bytes"] < 6e9


@pytest.mark.parametrize("weights", ["fp32", "bf16", "fp8-e4m3"])
def test_qlora_with_a_wider_base_is_refused_naming_weights(cli, weights):
    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "fsdp",
            "--finetune", "qlora:16", "--weights", weights)
    assert r.code == 2 and "--weights" in r.err and repr(weights) in r.err and "lora:16" in r.err, r.err
    with pytest.raises(planner.TierwiseError) as exc:
        planner.estimate_training("llama-3.1-8b", "h100-sxm", engine="fsdp", finetune="qlora:16", weights=weights)
    assert exc.value.field == "weights" and "'weights'" in str(exc.value)


def test_lora_on_a_4_bit_base_is_refused_pointing_at_qlora(cli):
    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "fsdp",
            "--finetune", "lora:16", "--weights", "nf4")
    assert r.code == 2 and "--finetune qlora:16" in r.err, r.err


def test_fsdp_runs_double_quantization_and_no_zero_1(cli):
    ok = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "fsdp",
             "--finetune", "qlora:16", "--weights", "nf4-dq", "--json")
    assert ok.code == 0 and json.loads(ok.out)["weights"] == "nf4-dq", ok.err
    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "fsdp", "--dp", "8",
            "--zero", "1")
    assert r.code == 2 and "--zero" in r.err and "0, 2, 3" in r.err, r.err


def _step(finetune: str, **kw) -> float:
    arch, dev = load_arch("llama-3.2-1b"), load_device("h100-sxm")
    cfg = TrainingConfig(global_batch=4, micro_batch=1, seq=1024, finetune=finetune, runtime="eager",
                         weights="nf4" if finetune.startswith("qlora") else "bf16", **kw)
    return estimate_training(arch, dev, cfg)


def test_a_qlora_step_pays_two_dequantizing_passes_per_weight_per_micro_batch():
    lora, qlora = _step("lora:8"), _step("qlora:8")
    extra = qlora.step_time_s - lora.step_time_s
    from planner.workload import LINEAR, LM_HEAD, build_workload

    work = build_workload(load_arch("llama-3.2-1b"))
    # every Linear's own weights (the tied head reads the embedding table's and is no 4-bit Linear)
    linear = sum(b.count * op.weight_params for b in work.blocks for op in b.ops if op.kind in (LINEAR, LM_HEAD))
    bw = load_device("h100-sxm").device_tier.bandwidth_bytes_per_s
    one_pass = linear * (4.5 / 8 + 2.0) / bw  # read the 4-bit values and fp32 scales per 64, write the bf16 copy
    assert 2 * 4 * one_pass * 0.8 < extra < 2 * 4 * one_pass * 2.5  # 4 micro-batches, forward + backward
    # a copy made in fp16 and cast to bf16 (LitGPT's Fabric plugin) costs more again
    assert _step("qlora:8", dequant_copy_dtype="fp16").step_time_s > qlora.step_time_s
    assert _step("qlora:8", dequant_copy_dtype="bf16").step_time_s == pytest.approx(qlora.step_time_s, rel=1e-12)


def test_qlora_on_an_engine_without_nf4_names_the_engines_that_run_it(cli):
    """The default GPU training engine (Megatron-Core) runs no nf4 base, and the error did not say which does."""
    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--finetune", "qlora:16")
    assert r.code == 2 and "--finetune" in r.err and "run qlora there: fsdp" in r.err and "--engine fsdp" in r.err, r.err
