"""The exporter package: one module per target, each registering itself."""

from __future__ import annotations

import pkgutil

import pytest

import planner.export as export_pkg
from planner.export import EXPORTERS, Export, ExportError, ExportFile, export_formats, export_plan, register

# shared helpers, and executorch_program: the executorch target's flow for encoders, ViTs and CNNs,
# which executorch.py (the target's one registered exporter) hands those plans to
_SUPPORT = {"core", "common", "schemes", "names", "rules", "executorch_program"}


def _plan() -> dict:
    return {"model": "llama-3.2-1b", "hardware": "l4", "layout": {"tp": 1, "pp": 1, "dp": 1, "ep": 1},
            "workload": {"batch": 1, "prompt": 8, "gen": 8}, "kv": "bf16",
            "choices": {"model.layers.0.mlp.down_proj": {"weights": "int8", "activations": "bf16"}}}


def test_every_target_module_registers_an_exporter_and_the_order_is_stable():
    modules = {m.name for m in pkgutil.iter_modules(export_pkg.__path__)} - _SUPPORT
    owners = {e.func.__module__.rsplit(".", 1)[1] for e in EXPORTERS.values()}
    assert owners == modules
    assert export_formats()[:3] == ("vllm", "compressed-tensors", "hf")
    assert set(export_formats()) == {"vllm", "compressed-tensors", "hf", "modelopt-mixed", "trtllm", "llamacpp",
                                     "megatron", "yaml", "json", "executorch", "mlc", "sglang"}


def test_a_registered_function_is_an_export_target_and_names_are_unique():
    @register("test-target", "a target defined by this test")
    def _export(v, ctx):
        return Export(format="test-target", files=(ExportFile(path="x.txt", content=v.model),), next_command="true")

    try:
        out = export_plan(_plan(), "TEST-TARGET")
        assert out.file("x.txt").content == "llama-3.2-1b" and "test-target" in export_formats()
        with pytest.raises(ValueError, match="registered twice"):
            register("test-target", "again")(_export)
    finally:
        EXPORTERS.pop("test-target", None)
    with pytest.raises(ExportError) as info:
        export_plan(_plan(), "test-target")
    assert info.value.field == "format" and "vllm" in str(info.value)
