"""An engine's own setting for the share of memory its KV pool takes (``memory_fraction_setting``)
is named where the engine has one — MLC LLM's ``gpu_memory_utilization`` (EngineConfig, python/
mlc_llm/serve/config.py) — and left unset where it has none: TVM sizes its paged KV cache in tokens
(python/tvm/relax/frontend/nn/llm/kv_cache.py), DeepSpeed-FastGen reserves bytes
(deepspeed/inference/v2/ragged/manager_configs.py). Messages about the KV pool say which."""

from __future__ import annotations

import json

import pytest

from planner.engines import load_engine

# Llama 3.1 8B in fp16 on an L4: the largest batch each engine's KV pool holds is 66 (TVM) / 77 (MLC
# LLM); one more is short of the pool though the device would hold it (tierwise estimate --batch max).
L4_FP16 = ("-m", "llama-3.1-8b", "-H", "l4", "--weights", "fp16", "--activations", "fp16", "--kv", "fp16")


def test_the_profiles_name_the_setting_only_where_the_engine_has_one():
    mlc = load_engine("mlc-llm")
    assert mlc.runtime.memory_fraction_setting == "gpu_memory_utilization"
    assert mlc.runtime.memory_fraction == 0.85  # MLC's default gpu_memory_utilization
    assert "python/mlc_llm/serve/config.py" in mlc.sources["M-MEM"] and "0.85" in mlc.sources["M-MEM"]
    for engine, key, path in (("tvm", "V-KV", "python/tvm/relax/frontend/nn/llm/kv_cache.py"),
                              ("deepspeed-inference", "D-MEM", "deepspeed/inference/v2/ragged/manager_configs.py")):
        spec = load_engine(engine)
        assert spec.runtime.paged_kv and spec.runtime.memory_fraction < 1.0
        assert spec.runtime.memory_fraction_setting is None and path in spec.sources[key], engine


@pytest.mark.parametrize("engine, batch, says", [
    ("mlc-llm", 78, "mlc-llm's KV pool (85% of the memory weights, activations and its runtime context leave, "
                    "its gpu_memory_utilization)"),
    ("tvm", 67, "tvm's KV pool (90% of the memory weights, activations and its runtime context leave; tvm has no "
                "setting for that share, profiles/engines/tvm.yaml estimates it)"),
])
def test_a_short_kv_pool_names_the_engines_setting_or_that_it_has_none(cli, engine, batch, says):
    r = cli("estimate", *L4_FP16, "--engine", engine, "--batch", batch)
    assert r.code == 3, r.err
    text = " ".join(r.err.split())  # one line, however the terminal wrapped it
    assert says in text and "None" not in text, text


@pytest.mark.parametrize("engine, share", [("mlc-llm", "(its gpu_memory_utilization)"),
                                           ("tvm", "(its share of memory)"),
                                           ("vllm", "(its --gpu-memory-utilization)")])
def test_batch_max_names_what_sets_the_kv_pool(cli, engine, share):
    r = cli("estimate", *L4_FP16, "--engine", engine, "--batch", "max", "--json")
    assert r.code == 0, r.err
    limit = json.loads(r.out)["batch_limit"]
    assert limit["bound"] == "kv_fraction" and f"{engine}'s KV pool {share}" in limit["text"], limit
