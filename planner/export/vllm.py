"""vllm target: vLLM engine arguments (docs.vllm.ai, "Engine Arguments") and the
``vllm serve`` command."""

from __future__ import annotations

import math
from typing import Any

from .common import KV_CACHE_DTYPE, max_sequence, memory_fraction, server_export, server_memory, server_start
from .core import Export, ExportContext, ExportError, PlanView, register
from planner.engines import profile_ref


#: vLLM's ``cpu_offload_gb`` is in GiB (vLLM engine arguments: "The space in GiB to
#: offload to CPU, per GPU"); the only binary unit of the exporters.
_GIB = 2**30

@register("vllm", "vLLM engine arguments and `vllm serve` command")
def _export_vllm(v: PlanView, ctx: ExportContext) -> Export:
    v, kept, notes, acts, model, engine, quantization = server_start(v, ctx, "vllm", "vLLM")
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
    args["kv_cache_dtype"] = KV_CACHE_DTYPE[v.kv]
    args["max_model_len"] = max_sequence(v, ctx)
    args["max_num_seqs"] = v.batch
    # Weights the plan keeps in host memory are vLLM's cpu_offload_gb, not GPU memory.
    per_pass, act_extra, extra, offload, need = server_memory(v, ctx, kept, engine)
    if per_pass is not None:
        args["max_num_batched_tokens"] = per_pass
    frac = memory_fraction(v, ctx, extra_weight_bytes=extra, engine=engine, extra_device_bytes=act_extra,
                           off_device_bytes=offload)
    if frac is not None and need is not None:
        chunk = (f", activations of a {per_pass}-token pass (max_num_batched_tokens, chunked prefill)"
                 if per_pass is not None else "")
        off = f", less {offload / 1e9:.2f} GB of weights offloaded to host memory (cpu_offload_gb)" if offload > 0 else ""
        figures = (f"{need['plan'] / 1e9:.2f} GB per device: the plan's footprint with weights as exported{chunk}{off} "
                   f"+ {need['context'] / 1e9:.2f} GB engine context, {profile_ref(engine)}")
        if frac > 1.0:
            # vLLM takes a gpu_memory_utilization in (0, 1] (docs.vllm.ai, "Engine Arguments"): the
            # whole device is the most it can be given; a smaller share would run out of memory.
            raise ExportError(
                "predicted.per_device_bytes",
                f"the plan does not load under vLLM on {v.hardware}: it needs {need['total'] / 1e9:.2f} GB per device "
                f"({figures}), {(need['total'] - need['capacity']) / 1e9:.2f} GB more than the "
                f"{need['capacity'] / 1e9:.2f} GB gpu_memory_utilization 1.0 can give; re-plan with a smaller "
                "{@max_memory_per_device} or more {@devices}")
        args["gpu_memory_utilization"] = frac
        notes.append(f"gpu_memory_utilization {frac} = ({figures}) / {need['capacity'] / 1e9:.2f} GB")
    else:
        notes.append("no device capacity known: gpu_memory_utilization left at vLLM's default (0.9)")
    if offload > 0:
        args["cpu_offload_gb"] = math.ceil(offload / _GIB * 100) / 100
    return server_export("vllm", "vLLM", v, args, ["vllm", "serve"], notes, positional="model")
