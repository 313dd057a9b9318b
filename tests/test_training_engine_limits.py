"""A training engine's own limits — its parallel dimensions and the ZeRO stages its sharding offers —
hold at every front door and in every answer that proposes a configuration: the capacity search,
the does-not-fit suggestions, the request layer (CLI, REST, Python) and a direct estimate.
llm-foundry (Composer + FSDP1) runs data parallel only, with FSDP's NO_SHARD / SHARD_GRAD_OP /
FULL_SHARD (ZeRO 0, 2, 3) and no 4-bit base weights."""

from __future__ import annotations

import copy

import pytest
from frontdoors import app_client, run

import planner
from hwmodels import load_device
from planner.arch import load_arch
from planner.engines import EngineSupportError, load_engine, load_engine_from_dict, support
from planner.errors import TierwiseError
from planner.training import TrainingConfig, estimate_training

H100 = load_device("h100-sxm")


def test_the_profile_states_its_zero_stages_and_others_offer_all():
    assert load_engine("llm-foundry").zero == (0, 2, 3) and support("llm-foundry", H100).zero == (0, 2, 3)
    # PyTorch FSDP shards as NO_SHARD, SHARD_GRAD_OP or FULL_SHARD: no ZeRO-1 either
    assert load_engine("fsdp").zero == support("fsdp", H100).zero == (0, 2, 3)
    assert support("megatron-core", H100).zero == (0, 1, 2, 3)


@pytest.mark.parametrize("bad", [[1, 5], [], "0,2,3", [2, 2], [True]])
def test_a_bad_zero_list_in_an_engine_profile_is_refused_naming_it(bad):
    import yaml
    from importlib import resources

    data = yaml.safe_load((resources.files("profiles") / "engines" / "llm-foundry.yaml").read_text())
    data = copy.deepcopy(data)
    data["zero"] = bad
    with pytest.raises(TierwiseError, match="zero"):
        load_engine_from_dict(data, "llm-foundry.yaml")


def test_a_direct_estimate_refuses_what_the_engine_does_not_run():
    arch = load_arch("llm-foundry-mpt-1b")
    base = dict(global_batch=64, micro_batch=4, seq=2048, weights="bf16", activations="bf16", engine="llm-foundry")
    estimate_training(arch, H100, TrainingConfig(**base, dp=8, zero=3))
    with pytest.raises(EngineSupportError) as exc:
        estimate_training(arch, H100, TrainingConfig(**base, dp=8, zero=1))
    assert exc.value.field == "zero"
    with pytest.raises(EngineSupportError) as exc:
        estimate_training(arch, H100, TrainingConfig(**base, tp=2, dp=4))
    assert exc.value.field == "tp"


def test_capacity_train_proposes_only_layouts_and_stages_the_engine_runs():
    ans = planner.capacity_train("llama-3.1-70b", "a10g", tokens=1e10, days=30, engine="llm-foundry")
    options = [ans.best, ans.fastest, *ans.frontier]
    assert all(o.tp == 1 and o.pp == 1 and o.zero in (0, 2, 3) for o in options), options
    small = planner.capacity_train("llm-foundry-mpt-7b", "h100-sxm", tokens=1e11, days=7, engine="llm-foundry")
    assert all(o.tp == 1 and o.pp == 1 and o.zero != 1 for o in (small.best, small.fastest, *small.frontier))
    # the same search without the engine still uses tensor parallelism and ZeRO-1 where they pay
    free = planner.capacity_train("llama-3.1-70b", "a10g", tokens=1e10, days=30, engine="fsdp")
    assert any(o.tp > 1 or o.pp > 1 for o in (free.best, free.fastest, *free.frontier))


def test_does_not_fit_suggests_only_changes_the_engine_runs(capsys):
    code, out, err = run(capsys, "estimate", "--mode", "training", "--engine", "llm-foundry", "--model", "llm-foundry-mpt-1b",
                         "--hardware", "a10g")
    assert code == 3, err
    assert "Changes that fit" in err and "--tp" not in err and "--pp" not in err and "--zero 1" not in err, err
    code, out, err = run(capsys, "estimate", "--mode", "training", "--engine", "fsdp", "--model", "llm-foundry-mpt-1b",
                         "--hardware", "a10g")
    assert code == 3 and "--tp 2" in err, err  # an engine with tensor parallelism is offered it


def test_zero_and_qlora_refusals_name_the_field_on_every_front_door(capsys, tmp_path):
    args = ["estimate", "--mode", "training", "--engine", "llm-foundry", "--model", "llm-foundry-mpt-1b", "--hardware",
            "h100-sxm", "--dp", "8"]
    code, out, err = run(capsys, *args, "--zero", "1")
    assert code == 2 and "--zero" in err and "0, 2, 3" in err, err
    code, out, err = run(capsys, *args, "--finetune", "qlora:8")
    assert code == 2 and "--finetune" in err and "nf4" in err, err
    body = {"model": "llm-foundry-mpt-1b", "hardware": "h100-sxm", "mode": "training", "engine": "llm-foundry", "dp": 8}
    with app_client(tmp_path) as c:
        r = c.post("/v1/estimate", json={**body, "zero": 1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "zero", r.text
        r = c.post("/v1/estimate", json={**body, "finetune": "qlora:8"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "finetune", r.text
        r = c.post("/v1/estimate", json={**body, "zero": 2})
        assert r.status_code == 200 and r.json()["zero"] == 2, r.text
    with pytest.raises(TierwiseError) as exc:
        planner.estimate_training("llm-foundry-mpt-1b", "h100-sxm", engine="llm-foundry", dp=8, zero=1)
    assert exc.value.field == "zero"


def test_an_estimate_far_outside_the_fitted_micro_batch_range_says_so(capsys):
    """512 micro-batches per step (the fit split has 1-16): the fitted time is most of the step, and the
    estimate says it is an extrapolation, in its notes (JSON, REST) and on the command line."""
    arch = load_arch("llm-foundry-mpt-125m")
    dev = load_device("a100-40gb-sxm")
    base = dict(micro_batch=1, seq=2048, dp=8, zero=3, weights="bf16", activations="bf16", engine="llm-foundry")
    far = estimate_training(arch, dev, TrainingConfig(global_batch=4096, **base))
    assert far.microbatches == 512 and any("extrapolation" in n for n in far.notes), far.notes
    near = estimate_training(arch, dev, TrainingConfig(global_batch=64, micro_batch=8, **{k: v for k, v in base.items()
                                                                                             if k != "micro_batch"}))
    assert near.microbatches == 1 and not any("extrapolation" in n for n in near.notes), near.notes
    code, out, err = run(capsys, "estimate", "--mode", "training", "--engine", "llm-foundry", "--model", "llm-foundry-mpt-125m",
                         "--hardware", "a100-40gb-sxm", "--dp", "8", "--global-batch", "4096")
    assert code == 0 and "note:" in out and "extrapolation" in out, out


def test_engine_listings_state_the_zero_stages_and_the_fitted_time(capsys, tmp_path):
    import json

    code, out, _ = run(capsys, "engines", "show", "llm-foundry", "--json")
    d = json.loads(out)
    assert code == 0 and d["zero"] == [0, 2, 3] and d["microbatch_overhead_s"] > 0
    with app_client(tmp_path) as c:
        j = c.get("/v1/engines/llm-foundry").json()
        assert j["zero"] == [0, 2, 3] and j["microbatch_overhead_s"] == d["microbatch_overhead_s"]
        items = {i["id"]: i for i in c.get("/v1/engines").json()["items"]}
        assert items["megatron-core"]["zero"] == [0, 1, 2, 3] and items["megatron-core"]["microbatch_overhead_s"] == 0.0
        assert items["vllm"].get("zero") is None  # a serving engine shards nothing


def test_flash_attention_3_is_refused_off_hopper_naming_the_field(capsys, tmp_path):
    """FlashAttention-3 runs on Hopper only; asked for on an A100 it would be priced as FlashAttention-2."""
    args = ["estimate", "--mode", "training", "--model", "llm-foundry-mpt-1b", "--dp", "8", "--attention", "flash3"]
    code, out, err = run(capsys, *args, "--hardware", "a100-40gb-sxm")
    assert code == 2 and "--attention" in err and "Hopper" in err, err
    code, out, err = run(capsys, *args, "--hardware", "h100-sxm")
    assert code == 0, err
    body = {"model": "llm-foundry-mpt-1b", "hardware": "a100-80gb-sxm", "mode": "training", "dp": 8, "attention": "flash3"}
    with app_client(tmp_path) as c:
        r = c.post("/v1/estimate", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "attention", r.text


def test_engines_show_names_the_hardware_option_for_a_pair_the_engine_does_not_run(capsys, tmp_path):
    """The engine is the command's argument and fixed; the device is what the caller chose."""
    code, out, err = run(capsys, "engines", "show", "llm-foundry", "--hardware", "mi300x")
    assert code == 2 and "--hardware" in err and "ENGINE_ID" not in err and "mi300x" in err, err
    code, out, err = run(capsys, "engines", "show", "nosuch-engine")
    assert code == 2 and "unknown engine id 'nosuch-engine'" in err and "--hardware" not in err, err
    with app_client(tmp_path) as c:
        r = c.get("/v1/engines/llm-foundry", params={"hardware": "mi300x"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "hardware", r.text
    with pytest.raises(EngineSupportError) as exc:
        support("llm-foundry", load_device("mi300x"))
    assert exc.value.field == "engine"  # a request that names an engine: the engine is the choice


def test_sequence_parallel_without_tensor_parallelism_is_off_and_says_so(capsys):
    """Megatron turns sequence parallelism off at tp 1; the estimate does the same and says it."""
    arch, dev = load_arch("llama-3.2-1b"), load_device("h100-sxm")
    base = dict(global_batch=64, micro_batch=2, seq=2048, dp=8, zero=1)
    sp = estimate_training(arch, dev, TrainingConfig(sequence_parallel=True, **base))
    plain = estimate_training(arch, dev, TrainingConfig(**base))
    assert sp.step_time_s == plain.step_time_s and any("sequence parallelism" in n for n in sp.notes), sp.notes
    assert not any("sequence parallelism" in n for n in plain.notes)
    with_tp = estimate_training(arch, dev, TrainingConfig(sequence_parallel=True, tp=2, **{**base, "dp": 4}))
    assert not any("sequence parallelism" in n for n in with_tp.notes)


@pytest.mark.parametrize(("engine", "field", "value", "listed"), [
    ("llm-foundry", "attention", "flash3", "fused, unfused, flash2, flash-triton"),  # attn_impl torch / flash / triton
    ("llm-foundry", "optimizer", "adamw-fp8", "adamw"),
    ("llm-foundry", "optimizer", "adamw-8bit", "adamw"),
    ("megatron-core", "attention", "flash-triton", "fused, unfused, flash2, flash3"),
    ("megatron-core", "optimizer", "adamw-8bit", "adamw, adamw-fp8, sgd"),
])
def test_attention_kernels_and_optimizers_an_engine_lacks_are_refused_on_every_front_door(capsys, tmp_path, engine,
                                                                                            field, value, listed):
    model = "llm-foundry-mpt-1b" if engine == "llm-foundry" else "llama-3.2-1b"
    code, _, err = run(capsys, "estimate", "--mode", "training", "--engine", engine, "--model", model,
                       "--hardware", "h100-sxm", "--dp", "8", f"--{field}", value)
    assert code == 2 and f"--{field} '{value}'" in err and listed in err and "Traceback" not in err, err
    body = {"model": model, "hardware": "h100-sxm", "mode": "training", "engine": engine, "dp": 8, field: value}
    with app_client(tmp_path) as c:
        r = c.post("/v1/estimate", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
        assert r.json()["error"]["details"]["supported"] == listed.split(", ")
    with pytest.raises(EngineSupportError) as exc:
        planner.estimate_training(model, "h100-sxm", engine=engine, dp=8, **{field: value})
    assert exc.value.field == field
    # a plain PyTorch FSDP loop can run any of them
    assert run(capsys, "estimate", "--mode", "training", "--engine", "fsdp", "--model", model, "--hardware", "h100-sxm",
               "--dp", "8", f"--{field}", value)[0] == 0


def test_does_not_fit_never_suggests_an_optimizer_the_engine_lacks(capsys):
    # 1,024 tokens: with Megatron-Core's 2 GiB runtime context counted, FP8 moments fit a T4 at this length
    args = ["estimate", "--mode", "training", "--model", "llama-3.2-1b", "--hardware", "t4", "--micro-batch", "1",
            "--recompute", "full", "--seq", "1024"]
    code, _, err = run(capsys, *args, "--engine", "megatron-core")  # no bitsandbytes: its FP8 moments instead
    assert code == 3 and "adamw-8bit" not in err and "--optimizer adamw-fp8" in err, err
    code, _, err = run(capsys, *args, "--engine", "fsdp")
    assert code == 3 and "--optimizer adamw-8bit" in err, err
    code, _, err = run(capsys, *args, "--engine", "llm-foundry")  # AdamW only
    assert "--optimizer" not in err, err


def test_engines_show_lists_the_attention_kernels_and_optimizers(capsys):
    import json

    code, out, _ = run(capsys, "engines", "show", "llm-foundry", "--json")
    d = json.loads(out)
    assert d["attention"] == ["fused", "unfused", "flash2", "flash-triton"] and d["optimizers"] == ["adamw"]
    d = json.loads(run(capsys, "engines", "show", "fsdp", "--json")[1])
    assert "flash3" in d["attention"] and "adamw-8bit" in d["optimizers"]  # unlisted: all


@pytest.mark.parametrize("bad", [["flash4"], "adamw-16bit", [], [1]])
def test_a_bad_attention_or_optimizer_list_in_an_engine_profile_is_refused_naming_it(bad):
    import importlib.resources as resources

    import yaml

    data = yaml.safe_load((resources.files("profiles") / "engines" / "llm-foundry.yaml").read_text())
    key = "attention" if isinstance(bad, list) and bad and bad[0] == "flash4" else "optimizers"
    with pytest.raises(TierwiseError) as exc:
        load_engine_from_dict({**copy.deepcopy(data), key: bad})
    assert key in str(exc.value)


def test_engine_profiles_are_checked_against_the_optimizers_the_cost_model_prices():
    from planner.engines import OPTIMIZER_NAMES
    from planner.training_config import OPTIMIZERS

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES


def test_capacity_train_refuses_an_optimizer_the_engine_lacks_on_every_front_door(capsys, tmp_path):
    args = ["capacity", "train", "-m", "llama-3-8b", "-H", "h100-sxm,a100-80gb-sxm", "--tokens", "1e11", "--days", "7"]
    code, _, err = run(capsys, *args, "--engine", "megatron-core", "--optimizer", "adamw-8bit")
    assert code == 2 and "--optimizer 'adamw-8bit'" in err and "adamw, adamw-fp8, sgd" in err, err
    code, _, err = run(capsys, *args, "--optimizer", "adamw-8bit")  # the GPUs' default engine is megatron-core
    assert code == 2 and "--optimizer" in err, err
    assert run(capsys, *args, "--engine", "fsdp", "--optimizer", "adamw-8bit")[0] == 0
    body = {"model": "llama-3-8b", "hardware": ["h100-sxm"], "tokens": 1e11, "days": 7, "engine": "llm-foundry",
            "optimizer": "sgd"}
    with app_client(tmp_path) as c:
        r = c.post("/v1/capacity/train", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "optimizer", r.text


@pytest.mark.parametrize(("hardware", "attention", "where"), [
    ("a100-80gb-sxm", "flash3", "Hopper GPUs only"), ("tpu-v5e", "flash2", "GPUs only"),
    ("tpu-v5e", "flash-triton", "GPUs only"), ("mi300x", "flash3", "Hopper GPUs only"),
])
def test_a_named_attention_kernel_off_its_hardware_is_refused_listing_what_runs_there(capsys, hardware, attention,
                                                                                     where):
    code, _, err = run(capsys, "estimate", "--mode", "training", "-m", "llama-3.2-1b", "-H", hardware,
                       "--attention", attention)
    assert code == 2 and "--attention" in err and where in err, err
    offered = err.split("use ")[-1].strip().split(", ")
    for k in offered:  # every alternative offered is accepted there (0, or 3 where the model does not fit)
        assert run(capsys, "estimate", "--mode", "training", "-m", "llama-3.2-1b", "-H", hardware,
                   "--attention", k)[0] in (0, 3), (k, err)


def test_megatron_core_tensor_parallelism_must_divide_the_kv_heads(capsys, tmp_path):
    # Megatron-Core splits whole KV head groups over the TP ranks (num_query_groups % tp == 0):
    # Llama-3.1-70B's 8 KV heads allow tp 8, not 16 — neither requested nor suggested nor searched
    args = ["estimate", "--mode", "training", "-m", "llama-3.1-70b", "-H", "h100-sxm"]
    code, _, err = run(capsys, *args, "--engine", "megatron-core", "--tp", "16")
    assert code == 2 and "--tp 16 must divide the 8 KV heads" in err, err
    code, _, err = run(capsys, *args, "--engine", "megatron-core", "--tp", "8", "--dp", "2")
    assert code == 3 and "--tp 16" not in err and "--tp 32" not in err, err
    assert run(capsys, *args, "--engine", "fsdp", "--tp", "16")[0] in (0, 3)  # no such rule stated for FSDP
    with app_client(tmp_path) as c:
        r = c.post("/v1/estimate", json={"mode": "training", "model": "llama-3.1-70b", "hardware": "h100-sxm",
                                         "engine": "megatron-core", "tp": 16})
        assert r.status_code == 422 and r.json()["error"]["field"] == "tp", r.text
    from planner.training_capacity import TrainTarget, train_tasks

    target = TrainTarget(tokens=1e11, days=7, seq=2048, global_batch_tokens=4e6, max_devices=1024,
                         engine="megatron-core")
    tasks = train_tasks(load_arch("llama-3.1-70b"), H100, target)
    assert tasks and all(8 % t.tp == 0 for t in tasks)


def test_training_on_a_tpu_has_no_eager_mode(cli):
    """PyTorch/XLA compiles lazily recorded graphs: --runtime eager on a TPU is refused for training as
    for inference (it was priced as eager PyTorch's per-kernel host dispatch)."""
    r = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "tpu-v4", "--runtime", "eager")
    assert r.code == 2 and r.err.startswith("error: fsdp on tpu-v4") and "--runtime must be graph" in r.err, r.err
    assert cli("estimate", "--mode", "training", "-m", "llama-3.2-1b", "-H", "tpu-v4").code == 0
