"""vllm target: vLLM engine arguments (docs.vllm.ai, "Engine Arguments") and the
``vllm serve`` command."""

from __future__ import annotations

import math
from typing import Any

from .common import host_offload_bytes, memory_fraction, model_path, shell_lines, shell_quote, to_json
from .core import FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, register, sparsity_of, weights_of
from .schemes import ct_quantization_config


#: vLLM's ``cpu_offload_gb`` is in GiB (vLLM engine arguments: "The space in GiB to
#: offload to CPU, per GPU"); the only binary unit of the exporters.
_GIB = 2**30

_VLLM_KV = {"bf16": "auto", "fp16": "auto", "fp32": "auto", "fp8-e4m3": "fp8_e4m3", "fp8-e5m2": "fp8_e5m2"}


@register("vllm", "vLLM engine arguments and `vllm serve` command")
def _export_vllm(v: PlanView, ctx: ExportContext) -> Export:
    notes: list[str] = []
    weights = {weights_of(v, g) for g in v.choices}
    acts = {acts_of(v, g) for g in v.choices}
    sparse = any(sparsity_of(v, g) not in ("dense", "") for g in v.choices)
    model = model_path(v, ctx)
    if weights <= FLOAT16 and acts <= FLOAT16 and not sparse:
        quantization = None
    elif weights <= FLOAT16 | {"fp8-e4m3"} and acts <= FLOAT16 | {"fp8-e4m3"} and not sparse and weights & {"fp8-e4m3"} \
            and all(weights_of(v, g) == "fp8-e4m3" or acts_of(v, g) in FLOAT16 for g in v.choices):
        # vLLM quantizes a 16-bit checkpoint to FP8 when it loads it (per-tensor weights,
        # dynamic per-token activations); groups left in 16 bit need a checkpoint instead.
        if any(weights_of(v, g) in FLOAT16 for g in v.choices):
            quantization = "compressed-tensors"
        else:
            quantization = "fp8"
    else:
        quantization = "compressed-tensors"
    if quantization == "compressed-tensors":
        ct_quantization_config(v, ctx)  # raises ExportError for formats vLLM cannot load
        model = f"{v.model}-tierwise"
        notes.append(f"serve the compressed-tensors checkpoint: run `tierwise export PLAN --format compressed-tensors` "
                     f"and its oneshot.py first; it writes {model}/")
    if v.kv not in _VLLM_KV:
        raise ExportError("kv", f"vLLM's --kv-cache-dtype supports auto (16-bit), fp8_e4m3 and fp8_e5m2; the plan's KV cache is {v.kv!r}")
    args: dict[str, Any] = {
        "model": model,
        "tensor_parallel_size": v.tp,
        "pipeline_parallel_size": v.pp,
    }
    if v.dp > 1:
        args["data_parallel_size"] = v.dp
    if v.ep > 1:
        args["enable_expert_parallel"] = True
    if quantization:
        args["quantization"] = quantization
    args["dtype"] = "float16" if acts == {"fp16"} else "bfloat16"
    args["kv_cache_dtype"] = _VLLM_KV[v.kv]
    args["max_model_len"] = max(1, v.prompt + v.gen)
    args["max_num_seqs"] = v.batch
    frac = memory_fraction(v, ctx)
    if frac is not None:
        args["gpu_memory_utilization"] = frac
    else:
        notes.append("no device capacity known: gpu_memory_utilization left at vLLM's default (0.9)")
    offload = host_offload_bytes(v)
    if offload > 0:
        args["cpu_offload_gb"] = math.ceil(offload / _GIB * 100) / 100
    cli = ["vllm", "serve", args["model"]]
    for k, val in args.items():
        if k == "model":
            continue
        flag = "--" + k.replace("_", "-")
        if val is True:
            cli.append(flag)
        else:
            cli += [flag, str(val)]
    script = "#!/usr/bin/env bash\n# vLLM server for plan of " + v.model + " on " + v.hardware + "\nset -euo pipefail\n" + shell_lines(cli) + "\n"
    return Export(
        format="vllm",
        files=(
            ExportFile(path="vllm_args.json", content=to_json(args), media_type="application/json"),
            ExportFile(path="serve.sh", content=script, media_type="text/x-shellscript"),
        ),
        next_command=shell_quote(cli),
        notes=tuple(notes),
    )
