"""trtllm target: TensorRT-LLM ``QuantConfig`` (``QuantAlgo`` names from
``tensorrt_llm/quantization/mode.py``), parallel sizes and ``trtllm-serve`` flags."""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from .common import (HEADROOM_FRACTION, device_capacity, max_sequence, memory_fraction, model_path, shell_lines, shell_quote,
                     to_json)
from .core import FLOAT16, Export, ExportContext, ExportFile, PlanView, register, weights_of
from .rules import as_exported, kept_extra_bytes, role_of
from .schemes import modelopt_layers, trt_kv_algo


_QFORMAT = {  # TensorRT-LLM examples/quantization/quantize.py --qformat per QuantAlgo
    "FP8": "fp8", "NVFP4": "nvfp4", "W4A16_AWQ": "int4_awq", "W4A8_AWQ": "w4a8_awq", "W8A16": "int8_wo",
    "W4A16": "int4_wo", "W8A8_SQ_PER_CHANNEL": "int8_sq", "W4A16_MXFP4": "w4a16_mxfp4", "W4A8_MXFP4_FP8": "w4a8_mxfp4_fp8",
    "W4A8_NVFP4_FP8": "w4a8_nvfp4_fp8",
}
_QFORMAT_KV = {"FP8": "fp8", "INT8": "int8", "NVFP4": "nvfp4"}


def _uniform(v: PlanView, ctx: ExportContext) -> bool:
    """True when one ``--qformat`` reproduces the plan: quantize.py quantizes every linear
    layer except the LM head, so every linear group must be quantized and the head must not."""
    for g in v.choices:
        quantized = weights_of(v, g) not in FLOAT16
        role = role_of(g)
        if (role == "linear" and not quantized) or (role == "lm_head" and quantized):
            return False
    return True


@register("trtllm", "TensorRT-LLM quant_config, parallel sizes and trtllm-serve flags")
def _export_trtllm(v: PlanView, ctx: ExportContext) -> Export:
    v, kept, notes = as_exported(v, "trtllm")
    layers, exclude, algos = modelopt_layers(v, ctx, "trtllm")
    kv = trt_kv_algo(v)
    files: list[ExportFile] = []
    if not layers:
        quant: dict[str, Any] = {"quant_algo": None, "kv_cache_quant_algo": kv}
        qformat = "full_prec"
    elif len(algos) == 1 and _uniform(v, ctx):
        one = json.loads(next(iter(algos)))
        quant = {"quant_algo": one["quant_algo"], "kv_cache_quant_algo": kv}
        if "group_size" in one:
            quant["group_size"] = one["group_size"]
        if one.get("has_zero_point"):
            quant["has_zero_point"] = True
        # TensorRT-LLM matches exclude_modules by name (wildcards, not "re:" patterns): list them.
        quant["exclude_modules"] = exclude or None
        qformat = _QFORMAT[one["quant_algo"]]
    else:
        quant = {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": kv}
        qformat = None
        files.append(ExportFile(path="quant_cfg.json", media_type="application/json", content=to_json(
            {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": kv, "quantized_layers": layers, "exclude_modules": exclude})))
        notes.append("per-layer QuantAlgos (quantize.py's one --qformat would quantize every linear layer alike): TensorRT-LLM reads them from quant_cfg.json (MIXED_PRECISION) in the quantized checkpoint")
    frac = memory_fraction(v, ctx, extra_weight_bytes=kept_extra_bytes(v, ctx, kept), engine="trtllm")
    max_seq = max_sequence(v, ctx)
    kv_frac = None
    if frac is not None:
        # trtllm-serve's KV fraction is of the memory left after weights are loaded.
        cap = device_capacity(v, ctx) or 0.0
        weights_dev = (float(v.predicted.get("weights_bytes") or 0.0) + kept_extra_bytes(v, ctx, kept)) / max(1, v.tp * v.pp)
        free = cap - weights_dev
        kv_need = float(v.predicted.get("kv_cache_bytes") or 0.0) / max(1, v.tp * v.pp)
        if free > 0 and kv_need > 0:
            kv_frac = min(0.95, math.ceil((kv_need / free + HEADROOM_FRACTION) * 100) / 100)
    llm_args: dict[str, Any] = {
        "tensor_parallel_size": v.tp,
        "pipeline_parallel_size": v.pp,
        "max_batch_size": v.batch,
        "max_seq_len": max_seq,
        "quant_config": {k: val for k, val in quant.items() if val is not None},
    }
    if v.ep > 1:
        llm_args["moe_expert_parallel_size"] = v.ep
    if kv_frac is not None:
        llm_args["kv_cache_config"] = {"free_gpu_memory_fraction": kv_frac}
    ckpt = f"{v.model}-tierwise-trtllm"
    src = model_path(v, ctx)
    cmds = []
    if qformat and qformat != "full_prec":
        q = ["python", "examples/quantization/quantize.py", "--model_dir", src, "--qformat", qformat,
             "--output_dir", ckpt, "--tp_size", str(v.tp), "--pp_size", str(v.pp)]
        if kv:
            q += ["--kv_cache_dtype", _QFORMAT_KV[kv]]
        cmds.append(q)
        serve_model = ckpt
    else:
        serve_model = src if not layers else ckpt
    serve = ["trtllm-serve", serve_model, "--tp_size", str(v.tp), "--pp_size", str(v.pp),
             "--max_batch_size", str(v.batch), "--max_seq_len", str(max_seq)]
    if v.ep > 1:
        serve += ["--ep_size", str(v.ep)]
    if kv_frac is not None:
        serve += ["--kv_cache_free_gpu_memory_fraction", str(kv_frac)]
    serve += ["--extra_llm_api_options", "extra_llm_api_options.yaml"]
    cmds.append(serve)
    script = "#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(shell_lines(c) for c in cmds) + "\n"
    files = [
        ExportFile(path="extra_llm_api_options.yaml", content=yaml.safe_dump(llm_args, sort_keys=False), media_type="application/yaml"),
        ExportFile(path="trtllm.sh", content=script, media_type="text/x-shellscript"),
        *files,
    ]
    return Export(format="trtllm", files=tuple(files), next_command=shell_quote(cmds[0]), notes=tuple(notes))
