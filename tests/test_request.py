"""The one request layer (planner.request): fields of the wrong mode, defaults filled in one
place, errors naming the field in each front end's syntax, the model's context, the
phones' native 16-bit default, and configurations that do not fit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import planner
from planner.cli import main
from planner.errors import TierwiseError
from planner.request import (
    DoesNotFitError,
    EstimateRequest,
    TrainingRequest,
    build_estimate_request,
    field_info,
    run_estimate,
)

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------
# fields of the other mode
# ---------------------------------------------------------------------------

TRAINING_ONLY = {"zero": 1, "recompute": "full", "seq": 1024, "optimizer": "sgd", "micro_batch": 2,
                 "global_batch": 8, "sequence_parallel": True, "interleave": 2, "finetune": "lora:8",
                 "attention": "unfused", "grad_accumulation": "fused", "dropout": True}
INFERENCE_ONLY = {"sparsity": "2:4", "kv": "fp8", "low_rank": 64, "allow_offload": True, "batch": 4, "prompt": 100,
                  "gen": 10, "kv_budget": 64, "kv_evicted": "int4-g32", "kv_share": 2, "flash_chunk_kib": 64.0,
                  "per_op": True}


def test_every_field_belongs_to_exactly_the_modes_that_declare_it():
    inf, trn = set(field_info(EstimateRequest)), set(field_info(TrainingRequest))
    assert set(TRAINING_ONLY) == trn - inf
    assert set(INFERENCE_ONLY) == inf - trn


@pytest.mark.parametrize("name,value", sorted(TRAINING_ONLY.items()))
def test_training_fields_are_refused_for_inference(name, value):
    with pytest.raises(TierwiseError) as e:
        build_estimate_request({"model": "llama-3.1-8b", "hardware": "h100-sxm", name: value})
    assert e.value.field == name and e.value.code == "not_applicable"
    cli = e.value.render("cli")
    assert cli.startswith("--" + name.replace("_", "-") + " applies to training")
    assert e.value.render("rest").startswith(f"'{name}' applies to training") and "--" not in e.value.render("rest")


@pytest.mark.parametrize("name,value", sorted(INFERENCE_ONLY.items()))
def test_inference_fields_are_refused_for_training(name, value):
    with pytest.raises(TierwiseError) as e:
        planner.estimate_training("llama-3.1-8b", "h100-sxm", **{name: value})
    assert e.value.field == name and "applies to inference" in str(e.value)


@pytest.mark.parametrize("flag", ["--zero", "--recompute", "--seq", "--optimizer"])
def test_cli_refuses_training_flags_in_inference_mode(capsys, flag):
    value = {"--zero": "1", "--recompute": "full", "--seq": "1024", "--optimizer": "sgd"}[flag]
    code, _, err = run(capsys, "estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", flag, value)
    assert code == 2 and f"{flag} applies to training estimates only" in err


@pytest.mark.parametrize("args", [["--sparsity", "2:4"], ["--kv", "fp8"], ["--low-rank", "64"], ["--allow-offload"]])
def test_cli_refuses_inference_flags_in_training_mode(capsys, args):
    code, _, err = run(capsys, "estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", *args)
    assert code == 2 and f"{args[0]} applies to inference estimates only" in err


def test_python_api_names_unknown_fields_with_suggestions():
    with pytest.raises(TierwiseError) as e:
        planner.estimate("llama-3.1-8b", "h100-sxm", bach=4)
    assert e.value.field == "bach" and "'batch'" in str(e.value)
    with pytest.raises(TierwiseError) as e:
        planner.estimate("llama-3.1-8b", "h100-sxm", mode="training")
    assert e.value.field == "mode"


def test_declared_optimizer_choices_match_the_training_model():
    from planner.request.estimate import OPTIMIZER_NAMES
    from planner.training_config import OPTIMIZERS

    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)


# ---------------------------------------------------------------------------
# context length
# ---------------------------------------------------------------------------


def test_bert_prompt_beyond_512_positions_is_refused(capsys):
    code, _, err = run(capsys, "estimate", "-m", "bert-base", "-H", "l4", "--prompt", "513")
    assert code == 2 and "--prompt = 513 tokens is beyond the context of bert-base (512 positions" in err
    assert planner.estimate("bert-base", "l4", prompt=512).ttft_s > 0


def test_decoder_prompt_plus_gen_beyond_the_context_is_refused():
    with pytest.raises(TierwiseError) as e:
        planner.estimate("llama-2-7b", "h100-sxm", prompt=4000, gen=97)
    assert e.value.field == "prompt" and "'prompt' + 'gen' = 4097 tokens" in str(e.value)
    assert planner.estimate("llama-2-7b", "h100-sxm", prompt=4000, gen=96).ttft_s > 0


def test_training_sequence_beyond_the_context_is_refused(capsys):
    code, _, err = run(capsys, "estimate", "--mode", "training", "-m", "gpt3-175b", "-H", "h100-sxm", "--seq", "4096")
    assert code == 2 and "--seq = 4096 tokens is beyond the context of gpt3-175b (2048 positions" in err


def test_plan_and_capacity_refuse_prompts_beyond_the_context():
    with pytest.raises(TierwiseError) as e:
        planner.plan("opt-1.3b", "l4", prompt=2000, gen=100)
    assert e.value.field == "prompt"
    with pytest.raises(TierwiseError) as e:
        planner.capacity_serve("opt-1.3b", "l4", qps=1, prompt=2000, gen=100, ttft_slo_s=1, tpot_slo_s=0.1)
    assert e.value.field == "prompt"
    with pytest.raises(TierwiseError) as e:
        planner.capacity_train("bert-base", "h100-sxm", tokens=1e9, days=1, seq=1024)
    assert e.value.field == "seq"


# ---------------------------------------------------------------------------
# the device's native 16-bit default
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("hw", ["iphone-15-pro", "snapdragon-8-gen-3", "t4", "m2-max"])
def test_default_formats_are_the_devices_native_16bit(hw):
    default = planner.estimate("llama-3.2-1b", hw)
    fp16 = planner.estimate("llama-3.2-1b", hw, weights="fp16", activations="fp16", kv="fp16")
    assert (default.choice.activations, default.choice.kv) == ("fp16", "fp16")
    assert default.ttft_s == fp16.ttft_s and default.tpot_s == fp16.tpot_s


def test_iphone_default_runs_fp16_on_the_cpu_cores_as_executorch_exports_it():
    # Before the request layer the default was bf16, which the phone does not run natively: the
    # estimate fell back to fp32 (TTFT 7.8x worse than fp16). With engines, bf16 is refused outright
    # (ExecuTorch runs fp16/fp32 there). ExecuTorch's programs lower to XNNPACK, on the CPU cores
    # (docs/engines.md), so the prefill is priced at the CPU's rates, where fp32 runs at half fp16's.
    from hwmodels import load_device
    from planner.arch import load_arch

    default = planner.estimate("llama-3.2-1b", "iphone-15-pro")
    fp32 = planner.estimate("llama-3.2-1b", "iphone-15-pro", activations="fp32")
    assert default.engine == "executorch" and default.choice.activations == "fp16"
    cpu_fp16 = load_device("iphone-15-pro").compute_unit("cpu").peak_flops_per_s["fp16"]
    flops = 2 * load_arch("llama-3.2-1b").param_count() * default.serving.prompt
    assert default.ttft_s >= flops / cpu_fp16  # no faster than the CPU cores' peak (the NPU's is 23x higher)
    assert 1.5 * default.ttft_s < fp32.ttft_s < 2.5 * default.ttft_s
    with pytest.raises(TierwiseError) as exc:
        planner.estimate("llama-3.2-1b", "iphone-15-pro", activations="bf16")
    assert exc.value.field == "activations"


def test_training_default_formats_are_native_16bit_too():
    est = planner.estimate_training("llama-3.2-1b", "v100-16gb", finetune="lora:8", seq=512)
    assert est.to_dict()["activations"] == "fp16"


# ---------------------------------------------------------------------------
# configurations that do not fit
# ---------------------------------------------------------------------------


def _applies(fields: dict, change: dict) -> dict:
    return {**fields, **change["set"]}


def test_full_finetune_of_8b_on_one_h100_exits_3_with_changes_that_fit(capsys):
    args = ["estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--seq", "4096"]
    code, _, err = run(capsys, *args)
    assert code == 3
    # 154.74 GB of model state and activations, and Megatron-Core's 2 GiB runtime context
    assert "does not fit: it needs 156.89 GB per device, 76.89 GB more than the 80.00 GB h100-sxm holds" in err
    code, out, _ = run(capsys, *args, "--json")
    details = json.loads(out)["error"]["details"]
    assert code == 3 and details["shortfall_bytes"] == pytest.approx(76.89e9, rel=1e-3)
    assert details["changes"] and details["estimate"]["memory"]["fits"] is False
    for ch in details["changes"]:  # each change, applied literally on the command line, fits
        flags = []
        for k, v in ch["set"].items():
            flags += ["--" + k.replace("_", "-")] + ([] if v is True else [str(v)])
        code, out, _ = run(capsys, *args, *flags, "--json")
        assert code == 0 and json.loads(out)["memory"]["fits"], ch


INFEASIBLE = [
    {"model": "llama-2-70b", "hardware": "rtx-4090"},
    {"model": "llama-2-7b", "hardware": "h100-sxm", "batch": 64, "prompt": 2048, "gen": 2000},
    {"model": "llama-3.1-70b", "hardware": "h100-sxm", "devices": 1, "batch": 4},
    {"model": "mixtral-8x7b", "hardware": "l4", "batch": 8, "kv": "bf16"},
    {"model": "llama-3.1-8b", "hardware": "l4", "batch": 32, "prompt": 8000, "gen": 2000, "weights": "fp8"},
    {"mode": "training", "model": "llama-3.1-8b", "hardware": "h100-sxm", "seq": 4096},
    {"mode": "training", "model": "llama-2-13b", "hardware": "a100-80gb-sxm", "micro_batch": 8, "seq": 4096},
    {"mode": "training", "model": "llama-3.1-70b", "hardware": "h100-sxm", "tp": 8, "seq": 2048, "devices": 8},
]


@pytest.mark.parametrize("fields", INFEASIBLE, ids=lambda f: f"{f['model']}-{f['hardware']}-{f.get('mode', 'inf')}")
def test_every_suggested_change_makes_it_fit(fields):
    with pytest.raises(DoesNotFitError) as e:
        run_estimate(build_estimate_request(fields))
    d = e.value.details
    assert e.value.kind == "infeasible" and e.value.exit_code == 3 and e.value.http_status == 422
    assert d["shortfall_bytes"] == pytest.approx(d["per_device_bytes"] - d["device_capacity_bytes"])
    assert d["changes"], "an infeasible request with no suggestion"
    for ch in d["changes"]:
        est = run_estimate(build_estimate_request(_applies(fields, ch)))
        assert est.memory.fits
        assert est.memory.per_device_bytes == pytest.approx(ch["per_device_bytes"])


@pytest.mark.parametrize("fields", [
    {"model": "llama-3.1-8b", "hardware": "iphone-15-pro", "batch": 64},
    {"model": "llama-3.2-1b", "hardware": "iphone-15-pro", "batch": 128},
], ids=["8b-batch64", "1b-batch128"])
def test_a_change_that_streams_weights_from_flash_says_so_and_comes_last(fields):
    """streams_from_storage is true exactly when the changed configuration places weights on a storage
    tier (a phone's flash); changes that fit in memory come first. llama-3.1-8b at batch 64 on an iPhone
    offered batch 40, 'not streaming', with 15.95 GB of its weights on flash."""
    with pytest.raises(DoesNotFitError) as e:
        run_estimate(build_estimate_request(fields))
    changes = e.value.details["changes"]
    assert changes
    flags = []
    for ch in changes:
        est = run_estimate(build_estimate_request(_applies(fields, ch)))
        on_flash = sum(t.weights_bytes for t in est.memory.tiers if t.role == "storage")
        assert ch["streams_from_storage"] is (on_flash > 0), (ch, on_flash)
        flags.append(ch["streams_from_storage"])
    assert flags == sorted(flags), changes  # in-memory changes before streaming ones


def test_batch_max_that_fits_nothing_is_infeasible():
    with pytest.raises(DoesNotFitError) as e:
        planner.estimate("llama-2-70b", "rtx-4090", batch="max")
    assert {c["kind"] for c in e.value.details["changes"]} >= {"devices"}


# ---------------------------------------------------------------------------
# one translation, one import
# ---------------------------------------------------------------------------


def test_no_second_translation_of_estimate_requests():
    """Only planner/request builds the cost model's inputs from a request."""
    pattern = re.compile(r"(?<!def )\b(estimate_inference|estimate_training|TrainingConfig|Serving|Choice|Options|RuntimeSettings|PlanProblem|solve_plan|ServeTarget|TrainTarget|ServeSearch)\(")
    offenders = []
    for path in [*ROOT.glob("planner/cli/*.py"), *ROOT.glob("api/**/*.py"), ROOT / "planner" / "api.py"]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_import_planner_is_light():
    code = ("import sys, planner; heavy = [m for m in ('planner.costmodel', 'planner.search', 'torch', 'pulp', "
            "'highspy', 'pandas', 'matplotlib', 'numpy') if m in sys.modules]; print(heavy); assert not heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_plan_is_callable_and_a_module():
    import planner.plan as plan_module

    assert callable(planner.plan) and planner.plan is plan_module and hasattr(plan_module, "load_plan")


def test_per_op_is_honoured_by_the_cli_json(capsys):
    base = ["estimate", "-m", "llama-3.2-1b", "-H", "l4", "--json"]
    code, out, _ = run(capsys, *base)
    assert code == 0 and "ops" not in json.loads(out)["prefill"]
    code, out, _ = run(capsys, *base, "--per-op")
    assert code == 0 and json.loads(out)["prefill"]["ops"]


def test_context_parallelism_applies_to_inference_now(tmp_path):
    # vLLM (the GPU default) has no context parallelism; a serving engine profile that declares
    # it does (Megatron-Core has cp, but it is a training engine: refused for inference).
    text = (Path(planner.__file__).parent.parent / "profiles" / "engines" / "vllm.yaml").read_text()
    assert "parallel: [tp, pp, dp, ep]" in text
    engine = tmp_path / "vllm-cp.yaml"
    engine.write_text(text.replace("id: vllm", "id: vllm-cp").replace("parallel: [tp, pp, dp, ep]",
                                                                      "parallel: [tp, pp, dp, ep, cp]"))
    est = planner.estimate("llama-3.1-8b", "h100-sxm", cp=2, prompt=16000, gen=100, engine=str(engine))
    assert est.layout.cp == 2 and est.to_dict()["devices"] == 2
    with pytest.raises(TierwiseError) as exc:
        planner.estimate("llama-3.1-8b", "h100-sxm", cp=2, prompt=16000, gen=100, engine="megatron-core")
    assert exc.value.field == "engine" and "training engine" in str(exc.value)
    with pytest.raises(TierwiseError) as exc:
        planner.estimate("llama-3.1-8b", "h100-sxm", cp=2, prompt=16000, gen=100)
    assert exc.value.field == "cp"


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much])
@given(model=st.sampled_from(["llama-3.1-70b", "mixtral-8x7b", "llama-2-13b", "qwen2.5-72b", "falcon-40b", "opt-66b"]),
       hardware=st.sampled_from(["l4", "rtx-4090", "a100-40gb-sxm", "h100-sxm", "t4", "mi250x-gcd"]),
       batch=st.integers(1, 64), prompt=st.integers(128, 2048), gen=st.integers(1, 1024),
       weights=st.sampled_from([None, "bf16", "fp8", "int8"]), kv=st.sampled_from([None, "bf16", "fp8"]),
       devices_given=st.booleans())
def test_property_every_change_of_a_random_infeasible_request_fits(model, hardware, batch, prompt, gen, weights, kv,
                                                                    devices_given):
    fields = {"model": model, "hardware": hardware, "batch": batch, "prompt": prompt, "gen": gen, "weights": weights,
              "kv": kv, "devices": 1 if devices_given else None}
    try:
        run_estimate(build_estimate_request(fields))
    except DoesNotFitError as exc:
        for ch in exc.details["changes"]:
            fixed = run_estimate(build_estimate_request(_applies(fields, ch)))
            assert fixed.memory.fits and fixed.memory.per_device_bytes == pytest.approx(ch["per_device_bytes"])
        return
    except TierwiseError:
        assume(False)  # a request refused for another reason (e.g. a format the device lacks)
    assume(False)  # it fits: nothing to check


@pytest.mark.parametrize("fields,field", [
    ({"batch": True}, "batch"), ({"tp": 2.0}, "tp"), ({"weights": ["fp8"]}, "weights"), ({"prompt": 10**12}, "prompt"),
    ({"kv_budget": 0}, "kv_budget"), ({"sparsity": 5}, "sparsity"), ({"flash_chunk_kib": float("nan")}, "flash_chunk_kib"),
    ({"low_rank": -1}, "low_rank"), ({"devices": 3}, "devices"), ({"runtime": "jit"}, "runtime"),
    ({"allow_offload": "yes"}, "allow_offload"), ({"kv": "nf4"}, "kv"), ({"activations": "cb4"}, "activations"),
])
def test_python_api_bad_values_name_the_field(fields, field):
    with pytest.raises(TierwiseError) as e:
        planner.estimate("llama-3.2-1b", "l4", **fields)
    assert e.value.field == field and e.value.kind == "bad_input" and f"'{field}'" in str(e.value)


# ---------------------------------------------------------------------------
# one deadline, shared with the caller (a service job that can be cancelled)
# ---------------------------------------------------------------------------

def _plan(d):
    from planner.request.plan import PlanRequest, run_plan

    return run_plan(PlanRequest(model="llama-3.2-1b", hardware="l4"), deadline=d)


def _serve(d, **extra):
    from planner.request.capacity import CapacityServeRequest, run_capacity_serve

    return run_capacity_serve(CapacityServeRequest(model="llama-3.2-1b", hardware=["l4", "h100-sxm"], qps=1.0,
                                                   ttft_slo_s=1.0, tpot_slo_s=0.1, **extra), deadline=d)


def _train(d, **extra):
    from planner.request.capacity import CapacityTrainRequest, run_capacity_train

    return run_capacity_train(CapacityTrainRequest(model="llama-3.2-1b", hardware="l4", tokens=1e9, days=10.0, **extra),
                              deadline=d)


@pytest.mark.parametrize("run_request", [_plan, _serve, _train], ids=["plan", "capacity_serve", "capacity_train"])
def test_a_cancelled_or_spent_deadline_stops_the_request(run_request):
    from planner.deadline import Cancelled, Deadline, DeadlineExceeded

    cancelled = Deadline(60.0)
    cancelled.cancel()
    with pytest.raises(Cancelled):
        run_request(cancelled)
    with pytest.raises(DeadlineExceeded) as exc:
        run_request(Deadline(0.0))
    assert exc.value.field == "time_limit_s" and exc.value.code == "time_limit"


def test_capacity_time_limit_s_is_a_checked_request_field():
    from planner.request.capacity import CapacityServeRequest, CapacityTrainRequest

    assert "time_limit_s" in field_info(CapacityServeRequest) and "time_limit_s" in field_info(CapacityTrainRequest)
    for run_request in (_serve, _train):
        with pytest.raises(TierwiseError) as exc:
            run_request(None, time_limit_s=-1)
        assert exc.value.field == "time_limit_s" and exc.value.kind == "bad_input"
    # a generous limit answers in full, as without one
    assert _serve(None, time_limit_s=600.0).to_dict()["status"] == "complete"
    assert _train(None, time_limit_s=600.0)[0].to_dict()["status"] == "complete"
