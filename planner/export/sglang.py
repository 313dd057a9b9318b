"""sglang target: SGLang server arguments (``ServerArgs`` of python/sglang/srt/server_args.py,
https://github.com/sgl-project/sglang; docs.sglang.io, "Server Arguments") and the
``python -m sglang.launch_server`` command.

Flag names and values follow ``ServerArgs`` (each field ``name_x`` is the flag ``--name-x``):
``--model-path``, ``--tp-size``, ``--pp-size``, ``--dp-size``, ``--ep-size``, ``--dtype``
(auto, half, float16, bfloat16, float, float32), ``--kv-cache-dtype`` (auto = the model's dtype,
fp8_e5m2, fp8_e4m3, …), ``--context-length``, ``--max-running-requests``,
``--chunked-prefill-size``, ``--mem-fraction-static`` and ``--quantization`` (QUANTIZATION_CHOICES:
fp8, compressed-tensors, modelopt_fp4, w8a8_fp8, …).
"""

from __future__ import annotations

import math
from typing import Any

from .common import KV_CACHE_DTYPE, server_export, server_memory, server_start
from .core import Export, ExportContext, ExportError, PlanView, register
from planner.engines import profile_ref

_GIB = 2**30

@register("sglang", "SGLang server arguments and `python -m sglang.launch_server` command")
def _export_sglang(v: PlanView, ctx: ExportContext) -> Export:
    v, kept, notes, acts, model, engine, quantization = server_start(
        v, ctx, "sglang", "SGLang", " (SGLang reads quant_method compressed-tensors from its config.json: no "
        "--quantization flag)")
    if v.ep > 1 and v.tp % v.ep:
        # SGLang's expert-parallel groups split the tensor-parallel group: moe_ep_rank =
        # tp_rank // (tp_size // ep_size) (python/sglang/srt/entrypoints/engine.py).
        # An --engine sglang plan keeps to it (runtime.ep_divides_tp); a plan made for another engine,
        # whose EP may span data-parallel replicas (ep divides tp × dp), may not.
        raise ExportError("layout.ep", f"SGLang's --ep-size splits the --tp-size group, so it must divide tp; the plan "
                          f"has ep={v.ep} with tp={v.tp}; re-plan with {{@engine}} sglang and {{@tp}} a multiple of "
                          f"{{@ep}} (e.g. {{@tp}} {math.lcm(v.tp, v.ep)} {{@ep}} {v.ep}) or {{@ep}} 1")
    args: dict[str, Any] = {"model_path": model, "tp_size": v.tp, "pp_size": v.pp}
    if v.dp > 1:
        args["dp_size"] = v.dp
    if v.ep > 1:
        args["ep_size"] = v.ep
    args["dtype"] = "float16" if acts == {"fp16"} else "bfloat16"
    args["kv_cache_dtype"] = KV_CACHE_DTYPE[v.kv]
    if v.kv == "fp8-e4m3" and quantization != "compressed-tensors":
        # ServerArgs.quantization_param_path: without a scales file an FP8 KV cache is scaled by 1.0.
        notes.append("KV cache fp8_e4m3 with no calibrated scales in a 16-bit checkpoint: SGLang scales K and V by 1.0 "
                     "unless --quantization-param-path gives a JSON file of KV-cache scaling factors (or serve the "
                     "compressed-tensors checkpoint, whose kv_cache_scheme carries them)")
    if quantization == "fp8":
        args["quantization"] = "fp8"
    args["context_length"] = max(1, v.prompt + v.gen)
    args["max_running_requests"] = v.batch
    # Weights the plan keeps in host memory are SGLang's --cpu-offload-gb, not GPU memory.
    per_pass, act_extra, _, offload, need = server_memory(v, ctx, kept, engine)
    if per_pass is not None:
        args["chunked_prefill_size"] = per_pass
    if need is not None:
        # SGLang sizes its KV pool as the memory free after loading the weights less
        # (1 - mem_fraction_static) of the device (model_runner ``profile_max_num_token``:
        # rest_memory = available_gpu_memory - total_gpu_memory * (1 - mem_fraction_static)); its
        # docs define mem_fraction_static = (model weights + KV cache pool) / GPU memory capacity
        # (docs.sglang.io, "Hyperparameter Tuning"). What the process already holds when the pool
        # is sized (CUDA context, NCCL buffers) is taken from that share too, so the fraction is
        # weights + the plan's KV cache + the engine context, per device; activations of a
        # chunked-prefill pass (and CUDA graphs) use the rest.
        act = float(v.predicted.get("activations_bytes") or 0.0) + act_extra
        static = need["plan"] - act + need["context"]
        frac = max(math.ceil(static / need["capacity"] * 100) / 100, 0.05)
        passes = f"a {per_pass}-token chunked-prefill pass" if per_pass is not None else "the batch's prompts"
        off = f" (less {offload / 1e9:.2f} GB of weights offloaded to host memory, cpu_offload_gb)" if offload > 0 else ""
        figures = (f"{(need['plan'] - act) / 1e9:.2f} GB weights + KV cache per device as exported{off} "
                   f"+ {need['context'] / 1e9:.2f} GB engine context, {profile_ref(engine)}")
        if need["total"] > need["capacity"] or frac > 1.0:
            raise ExportError(
                "predicted.per_device_bytes",
                f"the plan does not load under SGLang on {v.hardware}: it needs {need['total'] / 1e9:.2f} GB per device "
                f"({figures} + {act / 1e9:.2f} GB activations of {passes}), "
                f"{(need['total'] - need['capacity']) / 1e9:.2f} GB more than the {need['capacity'] / 1e9:.2f} GB of "
                "the device; re-plan with a smaller {@max_memory_per_device} or more {@devices}")
        args["mem_fraction_static"] = frac
        notes.append(f"mem_fraction_static {frac} = ({figures}) / {need['capacity'] / 1e9:.2f} GB; the other "
                     f"{need['capacity'] * (1 - frac) / 1e9:.2f} GB hold the activations of {passes} "
                     f"({act / 1e9:.2f} GB) and CUDA graphs")
    else:
        notes.append("no device capacity known: mem_fraction_static left at SGLang's default (chosen per GPU)")
    if offload > 0:
        # ServerArgs.cpu_offload_gb is a whole number of GiB: rounded up, SGLang offloads at least
        # what the plan keeps in host memory.
        args["cpu_offload_gb"] = math.ceil(offload / _GIB)
    return server_export("sglang", "SGLang", v, args, ["python", "-m", "sglang.launch_server"], notes)
