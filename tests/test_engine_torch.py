"""The ``torch`` engine profile (Tierwise's own PyTorch execution) declares exactly what
planner/execution runs: its CPU target is derived from the execution registry and every
declared pair is run through ``apply_plan`` here, so the profile cannot drift from the code."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from hwmodels import load_device
from planner.engines import EngineSupportError, check_request, load_engine, support
from planner.execution.apply import HANDLERS, SPARSITY_PATTERNS, apply_plan, compressed_modules, executable_formats
from planner.execution.decoder import DecoderConfig, LlamaDecoder, init_decoder_weights
from planner.formats import list_formats

CPU = load_device("cpu-host")
GPU = load_device("h100-sxm")


def _target(cls: str):
    spec = load_engine("torch")
    hits = [t for t in spec.targets if cls in t.match.get("class", ())]
    assert len(hits) == 1, f"one torch target for class {cls}"
    return hits[0]


def test_cpu_target_is_exactly_the_execution_registry():
    want = executable_formats()
    t = _target("cpu")
    assert len(t.schemes) == 1, "one scheme: every weight format runs with every activation format"
    assert t.schemes[0].weights == want["weights"]
    assert t.schemes[0].activations == want["activations"]
    assert t.kv == want["kv"]
    assert t.sparsity == want["sparsity"]
    # ... and the registry view itself is the whole format registry, by role (a format added to
    # planner/formats.py must be implemented by the execution and then appears in the profile).
    assert set(want["weights"]) == {f.name for f in list_formats(role="weight")}
    assert set(want["kv"]) == {f.name for f in list_formats(role="kv")}
    # the option types the execution dispatches: sparsity needs the 'prune' handler
    assert {"keep", "quantize", "prune", "low-rank"} <= set(HANDLERS)
    assert set(SPARSITY_PATTERNS) == {"dense", "2:4", "unstructured"}


def test_gpu_target_claims_a_subset_of_the_cpu_one():
    cpu, gpu = _target("cpu"), _target("gpu")
    assert set(gpu.schemes[0].weights) <= set(cpu.schemes[0].weights)
    assert set(gpu.schemes[0].activations) == {"fp32", "bf16", "fp16"}  # no native fp8 / int8 GEMM claimed
    assert "2:4" not in gpu.sparsity and set(gpu.kv) <= set(cpu.kv)


def test_every_declared_weight_activation_pair_runs():
    sup = support("torch", CPU)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 16))
    x = torch.randn(3, 128)
    with torch.no_grad():
        ref = model(x)
        for w in sup.weights:
            for a in sup.activations_for(w):
                out = apply_plan(model, {"0": {"weights": w, "activations": a}})
                y = out(x)
                assert y.shape == ref.shape and torch.isfinite(y).all(), (w, a)
                if w != "fp32" or a != "fp32":
                    assert compressed_modules(out), f"{w}/{a} built no packed module"


@pytest.mark.parametrize("sparsity", ["2:4", "unstructured:0.5"])
def test_declared_sparsity_runs(sparsity):
    sup = support("torch", CPU)
    check_request(sup, sparsity=sparsity)
    model = nn.Sequential(nn.Linear(128, 16))
    out = apply_plan(model, {"0": {"weights": "int4-g32", "sparsity": sparsity}})
    packed = next(iter(compressed_modules(out).values()))
    assert packed.weight_nbytes() < 128 * 16 * 4
    assert torch.isfinite(out(torch.randn(2, 128))).all()


def test_every_declared_kv_format_runs_in_the_decoder():
    sup = support("torch", CPU)
    cfg = DecoderConfig(vocab_size=97, hidden_size=64, num_layers=1, num_heads=4, num_kv_heads=2, head_dim=16,
                        intermediate_size=128)
    model = LlamaDecoder(cfg)
    init_decoder_weights(model, seed=1)
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for kv in sup.kv:
            out = apply_plan(model, {"choices": {"model.layers.0.mlp.down_proj": {"weights": "bf16"}}, "kv": kv})
            cache = out.new_cache()
            assert torch.isfinite(out(ids, cache)).all() and cache.nbytes() > 0, kv


def test_torch_runs_on_cpu_and_gpu_but_not_elsewhere():
    assert support("torch", CPU).engine == "torch"
    assert "bf16" in support("torch", GPU).activations
    for other in ("iphone-15-pro", "tpu-v5e", "sn40l", "zcu102"):
        with pytest.raises(EngineSupportError) as exc:
            support("torch", load_device(other))
        assert exc.value.field == "engine"


def test_torch_runs_the_families_the_execution_loads():
    # planner/execution/models.py builds TorchModel(kind=...) for exactly these three
    import inspect

    import planner.execution.models as models

    kinds = set(re.findall(r'kind="(\w+)"', inspect.getsource(models)))
    assert kinds == {"encoder", "decoder", "cnn"}
    assert set(load_engine("torch").families) == {"encoder", "decoder", "cnn"}


def test_torch_is_nobodys_default():
    from planner.engines import default_engine

    assert default_engine(CPU).id == "llamacpp"
    assert not load_engine("torch").default_for and not load_engine("torch").default_for_training


def test_torch_engine_refuses_a_typo_and_a_parallel_layout():
    sup = support("torch", CPU)
    with pytest.raises(EngineSupportError) as exc:
        check_request(sup, layout={"tp": 2})
    assert exc.value.field == "tp"
    with pytest.raises(EngineSupportError) as exc:
        check_request(sup, weights="int5-g32")
    assert exc.value.field == "weights"
