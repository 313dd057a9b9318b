"""modelopt-mixed target: ModelOpt's unified checkpoint ``hf_quant_config.json`` with a
per-layer ``quantized_layers`` map (``quant_algo: MIXED_PRECISION``)."""

from __future__ import annotations

import shlex

from .common import to_json
from .core import Export, ExportContext, ExportFile, PlanView, register
from .rules import as_exported
from .schemes import modelopt_layers, trt_kv_algo


def _tool_version(v: PlanView) -> str:
    return str(v.raw.get("tool_version") or "unknown")


@register("modelopt-mixed", "ModelOpt hf_quant_config.json with per-layer quantized_layers")
def _export_modelopt(v: PlanView, ctx: ExportContext) -> Export:
    v, _, notes = as_exported(v, "modelopt-mixed")
    layers, exclude, _ = modelopt_layers(v, ctx, "modelopt-mixed")
    cfg = {
        "producer": {"name": "tierwise", "version": _tool_version(v)},
        "quantization": {
            "quant_algo": "MIXED_PRECISION",
            "kv_cache_quant_algo": trt_kv_algo(v),
            "quantized_layers": layers,
            "exclude_modules": exclude,
        },
    }
    model = f"{v.model}-tierwise"
    return Export(
        format="modelopt-mixed",
        files=(ExportFile(path="hf_quant_config.json", content=to_json(cfg), media_type="application/json"),),
        next_command=f"vllm serve {shlex.quote(model)} --quantization modelopt_mixed --tensor-parallel-size {v.tp}",
        notes=(*notes, f"place hf_quant_config.json in {model}/ beside weights quantized per layer as listed (ModelOpt `mtq.quantize` "
               "with a per-module quant_cfg writes such a checkpoint)",),
    )
