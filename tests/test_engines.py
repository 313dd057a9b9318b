"""Engine profiles: every file loads, every fact has a source, and support is consistent
with the hardware catalog (every engine format runs on the device it is declared for)."""

from __future__ import annotations

import copy

import pytest
import yaml

from hwmodels import ProfileError, UnknownIdError, list_devices, load_device
from planner.engines import (
    EngineSupportError,
    check_request,
    default_engine,
    list_engines,
    load_engine,
    load_engine_from_dict,
    support,
)
from planner.export import export_formats

REQUIRED = {"vllm", "sglang", "trtllm", "llamacpp", "executorch", "mlc-llm", "deepspeed-inference",
            "hf-transformers", "tvm", "megatron-core", "fsdp", "sambaflow", "vitis-ai"}


def _raw(engine_id: str) -> dict:
    from importlib import resources

    return yaml.safe_load((resources.files("profiles") / "engines" / f"{engine_id}.yaml").read_text())


def test_required_engines_ship_and_load():
    assert REQUIRED <= set(list_engines())
    for e in list_engines():
        spec = load_engine(e)
        assert spec.id == e and spec.exporter in export_formats()
        assert all(t.sources for t in spec.targets)
        assert all(spec.sources[k].strip() for t in spec.targets for k in t.sources)


@pytest.mark.parametrize("device_id", list_devices())
def test_every_catalog_device_has_a_default_serving_engine_that_runs_bf16_or_its_native_16_bit(device_id):
    dev = load_device(device_id)
    engine = default_engine(dev)
    sup = engine.support(dev)
    assert sup is not None and sup.schemes
    # the engine's own baseline scheme must exist: a 16/32-bit pair, or int8 on an int8-only DPU
    assert any(w in ("bf16", "fp16", "fp32", "int8") for w in sup.weights)


def test_documented_defaults_per_class():
    expect = {"h100-sxm": "vllm", "mi300x": "vllm", "tpu-v5e": "vllm", "iphone-15-pro": "executorch",
              "snapdragon-8-gen-3": "executorch", "m2-max": "llamacpp", "cpu-host": "llamacpp",
              "jetson-agx-orin": "llamacpp", "sn40l": "sambaflow", "alveo-u280": "vitis-ai", "zcu102": "vitis-ai"}
    for device_id, engine_id in expect.items():
        assert default_engine(load_device(device_id)).id == engine_id, device_id
    assert default_engine(load_device("h100-sxm"), training=True).id == "megatron-core"
    assert default_engine(load_device("tpu-v4"), training=True).id == "fsdp"
    with pytest.raises(EngineSupportError) as info:
        default_engine(load_device("iphone-15-pro"), training=True)
    assert info.value.field == "hardware"  # no training engine runs there: no --engine would help


@pytest.mark.parametrize("engine_id", sorted(REQUIRED))
def test_every_declared_format_runs_on_every_matching_catalog_device(engine_id):
    """An engine never claims a format the hardware profile says the device cannot hold or run."""
    spec = load_engine(engine_id)
    matched = 0
    for device_id in list_devices():
        dev = load_device(device_id)
        sup = spec.support(dev)
        if sup is None:
            continue
        matched += 1
        for name in set(sup.weights) | set(sup.activations) | set(sup.kv):
            assert dev.formats.status(name) != "unsupported", (engine_id, device_id, name)
    assert matched, f"{engine_id} matches no catalog device"


def test_vllm_facts_on_hopper_and_ampere():
    h100 = support("vllm", load_device("h100-sxm"))
    assert h100.runs("fp8-e4m3", "fp8-e4m3") and h100.runs("int4-g128", "bf16") and h100.runs("int8", "int8")
    assert "2:4" in h100.sparsity and "fp8-e4m3" in h100.kv and "int8" not in h100.kv
    assert not h100.runs("nvfp4", "nvfp4")  # W4A4 NVFP4 needs Blackwell
    a100 = support("vllm", load_device("a100-80gb-sxm"))
    assert not a100.runs("fp8-e4m3", "fp8-e4m3") and a100.runs("fp8-e4m3", "bf16")  # W8A16 Marlin only
    assert "2:4" not in a100.sparsity
    assert support("vllm", load_device("b200")).runs("nvfp4", "nvfp4")
    assert h100.runtime.memory_fraction == 0.9 and h100.runtime.kv_block_tokens == 16
    assert support("vllm", load_device("cpu-host")).runtime.graph_capture is False


def test_check_request_names_the_field_and_the_supported_set():
    sup = support("vllm", load_device("h100-sxm"))
    check_request(sup, weights="fp8-e4m3", activations="fp8-e4m3", kv="fp8-e4m3", sparsity="2:4",
                  layout={"tp": 4, "pp": 2})
    cases = [({"weights": "bfp8"}, "weights"), ({"weights": "int4-g128", "activations": "fp8-e4m3"}, "activations"),
             ({"kv": "int8"}, "kv"), ({"sparsity": "unstructured:0.5"}, "sparsity"), ({"layout": {"cp": 2}}, "cp")]
    for kwargs, field in cases:
        with pytest.raises(EngineSupportError) as info:
            check_request(sup, **kwargs)
        assert info.value.field == field
        assert f"--{field}" in info.value.render("cli") and f"'{field}'" in info.value.render("rest")
        assert "vllm on h100-sxm" in str(info.value)
    with pytest.raises(EngineSupportError) as info:
        support("vitis-ai", load_device("h100-sxm"))
    assert "vllm" in str(info.value)


def test_unknown_engine_suggests_close_ids():
    with pytest.raises(UnknownIdError) as info:
        load_engine("vlm")
    assert "vllm" in str(info.value) and info.value.kind == "not_found"


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("sources"), "sources"),
    (lambda d: d.update(kind="batch"), "kind"),
    (lambda d: d.update(exporter="onnx"), "exporter"),
    (lambda d: d.update(parallel=["tp", "zp"]), "parallel"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["targets"][0]["schemes"][0].update(weights=["int4-g999"]), "targets[0].schemes[0].weights"),
    (lambda d: d["targets"][0]["schemes"][0].update(weights=["fp8"]), "targets[0].schemes[0].weights"),
    (lambda d: d["targets"][0].update(source=["NOPE"]), "targets[0].source"),
    (lambda d: d["targets"][0]["match"].update({"class": "gpus"}), "targets[0].match.class"),
    (lambda d: d["targets"][0].update(sparsity=["3:8"]), "targets[0].sparsity"),
    (lambda d: d["runtime"].update(memory_fraction=1.5), "runtime.memory_fraction"),
    (lambda d: d["runtime"].update(chunk_tokens=0), "runtime.chunk_tokens"),
    (lambda d: d["runtime"].update(context_gib=-1), "runtime.context_gib"),
])
def test_bad_profiles_name_the_field(mutate, field):
    data = copy.deepcopy(_raw("vllm"))
    mutate(data)
    with pytest.raises(ProfileError) as info:
        load_engine_from_dict(data, "vllm-custom.yaml")
    assert field in str(info.value), str(info.value)


def test_a_custom_engine_is_one_yaml_file(tmp_path):
    data = _raw("vllm")
    data.update(id="my-engine", name="My engine", default_for=[])
    path = tmp_path / "my-engine.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_engine(str(path))
    assert spec.id == "my-engine" and spec.support(load_device("h100-sxm")) is not None


def test_docs_engines_python_example_runs(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "engines.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/engines.md", "exec"), {})
    assert "executorch" in capsys.readouterr().out
