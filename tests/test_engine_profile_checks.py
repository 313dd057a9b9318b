"""An engine profile that says something the cost model cannot honour is refused naming the key.

Each was accepted: ``kv: []`` on a serving target of decoders (its estimates priced a bf16 cache the engine
"does not run"), ``dequant_copy_dtype`` without the formats it types, a float format among
``dequant_copy_formats``, a format listed twice, and ``paged_kv`` with blocks of 0 tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwmodels.errors import ProfileError
from planner.engines import load_engine, load_engine_from_dict

ENGINES = Path(__file__).resolve().parents[1] / "profiles" / "engines"


def _profile(name: str) -> dict:
    return yaml.safe_load((ENGINES / f"{name}.yaml").read_text(encoding="utf-8"))


def _refused(data: dict, key: str) -> str:
    with pytest.raises(ProfileError) as exc:
        load_engine_from_dict(data, "custom.yaml")
    assert key in str(exc.value), str(exc.value)
    return str(exc.value)


def test_a_serving_target_of_decoders_without_a_kv_format_is_refused():
    data = _profile("vllm")
    data["targets"][0]["kv"] = []
    assert "targets" in _refused(data, "kv")
    # a training engine keeps no KV cache: its targets list none
    assert load_engine("fsdp").targets[0].kv == ()


def test_the_copy_type_needs_the_formats_it_types_and_those_are_quantized_once_each():
    data = _profile("hf-transformers")
    data["runtime"]["dequant_copy_dtype"] = "fp16"
    assert load_engine_from_dict(data, "custom.yaml").runtime.dequant_copy_dtype == "fp16"
    alone = _profile("hf-transformers")
    del alone["runtime"]["dequant_copy_formats"]
    alone["runtime"]["dequant_copy_dtype"] = "fp16"
    _refused(alone, "dequant_copy_dtype")
    for bad in (["bf16"], ["nf4", "nf4"]):
        data = _profile("hf-transformers")
        data["runtime"]["dequant_copy_formats"] = bad
        _refused(data, "dequant_copy_formats")


def test_paged_kv_needs_blocks_of_some_tokens():
    data = _profile("vllm")
    data["runtime"]["kv_block_tokens"] = 0
    _refused(data, "kv_block_tokens")


def test_a_profile_exported_as_yaml_declares_the_tables_it_keeps_in_16_bit(tmp_path):
    """An engine without an exporter rule for its tables (exported as plain YAML, such as LitGPT, whose
    bitsandbytes swap replaces nn.Linear only) had its embedding priced and planned in nf4, with no way to say
    otherwise."""
    import planner

    data = _profile("hf-transformers")
    data["id"], data["exporter"] = "litgpt-like", "yaml"
    plain = tmp_path / "litgpt-like.yaml"
    plain.write_text(yaml.safe_dump(data), encoding="utf-8")
    data["runtime"]["float_weight_kinds"] = ["embedding"]
    kept = tmp_path / "litgpt-kept.yaml"
    data["id"] = "litgpt-kept"
    kept.write_text(yaml.safe_dump(data), encoding="utf-8")
    kw = dict(weights="nf4", batch=1, prompt=8, gen=8)
    a = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine=str(plain), **kw)
    b = planner.estimate("llama-2-7b", "a100-40gb-sxm", engine=str(kept), **kw)
    table = 32_000 * 4_096
    assert b.memory.weights_bytes - a.memory.weights_bytes == pytest.approx(table * (2.0 - 4.5 / 8), rel=0.01)  # nf4: 4 bits + an fp32 scale per 64
    assert b.engine_assumptions["float_weight_kinds"] == ["embedding"]
    data["runtime"]["float_weight_kinds"] = ["embeddings"]
    _refused(data, "float_weight_kinds")
