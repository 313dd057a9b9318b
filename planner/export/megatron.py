"""megatron target: Megatron-LM training arguments (``megatron/training/arguments.py``)
and a ``torchrun`` launch script."""

from __future__ import annotations

import math
from typing import Any

from .common import shell_lines, shell_quote
from .core import FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, register, weights_of


def _architecture_args(a: Any, seq: int) -> list[str]:
    """Megatron's model-shape flags for a decoder architecture (empty for anything else)."""
    if a is None or getattr(a, "family", None) != "decoder":
        return []
    args = ["--num-layers", str(a.num_layers), "--hidden-size", str(a.hidden_size),
             "--ffn-hidden-size", str(a.intermediate_size), "--num-attention-heads", str(a.num_heads),
             "--max-position-embeddings", str(max(seq, a.max_position_embeddings))]
    if a.num_kv_heads != a.num_heads:
        args += ["--group-query-attention", "--num-query-groups", str(a.num_kv_heads)]
    if a.gated_mlp:
        args.append("--swiglu")
    if a.norm == "rmsnorm":
        args += ["--normalization", "RMSNorm"]
    if a.position_encoding == "rope":
        args += ["--position-embedding-type", "rope"]
    if not a.tie_word_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if not a.attn_bias and not a.mlp_bias:
        args.append("--disable-bias-linear")
    if a.num_experts:
        args += ["--num-experts", str(a.num_experts), "--moe-router-topk", str(a.experts_per_token)]
    return args


@register("megatron", "Megatron-LM training arguments")
def _export_megatron(v: PlanView, ctx: ExportContext) -> Export:
    notes: list[str] = []
    tr = v.raw.get("training") or {}
    micro = int(tr.get("micro_batch") or v.batch)
    global_batch = int(tr.get("global_batch") or micro * v.dp)
    seq = int(tr.get("seq") or max(1, v.prompt + v.gen))
    if global_batch % (micro * v.dp):
        raise ExportError("training.global_batch", f"Megatron needs the global batch ({global_batch}) to be a multiple of "
                          f"micro-batch × data-parallel size = {micro}×{v.dp}")
    args: list[str] = [
        "--tensor-model-parallel-size", str(v.tp),
        "--pipeline-model-parallel-size", str(v.pp),
    ]
    if v.ep > 1:
        args += ["--expert-model-parallel-size", str(v.ep)]
    args += ["--micro-batch-size", str(micro), "--global-batch-size", str(global_batch), "--seq-length", str(seq)]
    a = ctx.arch
    args += _architecture_args(a, seq)
    recompute = tr.get("recompute") or "none"
    if recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    elif recompute == "full":
        args += ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]
    elif recompute != "none":
        raise ExportError("training.recompute", f"recompute must be none, selective or full; got {recompute!r}")
    if tr.get("sequence_parallel") and v.tp > 1:
        args.append("--sequence-parallel")
    interleave = int(tr.get("interleave") or 1)
    if interleave > 1:
        layers = getattr(a, "num_layers", None)
        if not layers or layers % (v.pp * interleave):
            raise ExportError("training.interleave", f"interleave {interleave} needs the layer count to be a multiple of pp×interleave")
        args += ["--num-layers-per-virtual-pipeline-stage", str(layers // (v.pp * interleave))]
    if int(tr.get("zero") or 0) >= 1:
        args.append("--use-distributed-optimizer")
        if int(tr.get("zero")) >= 2:
            notes.append("Megatron's distributed optimizer shards optimizer state (ZeRO-1); ZeRO-2/3 sharding of gradients/weights needs Megatron FSDP")
    acts = {acts_of(v, g) for g in v.choices}
    weights = {weights_of(v, g) for g in v.choices}
    if acts & {"fp8-e4m3", "fp8-e5m2"} or weights & {"fp8-e4m3"}:
        # Transformer Engine FP8: e4m3 forward; 'hybrid' adds e5m2 gradients (Micikevicius et al. 2022).
        args += ["--bf16", "--fp8-format", "hybrid" if "fp8-e5m2" in acts else "e4m3"]
    elif acts == {"fp16"}:
        args.append("--fp16")
    else:
        args.append("--bf16")
    if weights - FLOAT16 - {"fp8-e4m3"}:
        notes.append("Megatron trains in bf16/fp16/fp8; the plan's low-bit weight formats apply after training (export to vllm or compressed-tensors)")
    per_node = ctx.devices_per_node or min(8, v.devices)
    nodes = max(1, math.ceil(v.devices / per_node))
    launch = ["torchrun", "--nproc_per_node", str(min(per_node, v.devices)), "--nnodes", str(nodes), "pretrain_gpt.py", *args]
    script = "#!/usr/bin/env bash\n# Megatron-LM launch for the plan of " + v.model + f" on {v.devices}× " + v.hardware + \
        "\n# data-parallel size = world size / (tp × pp) = " + str(v.dp) + "\nset -euo pipefail\n" + shell_lines(launch) + "\n"
    return Export(
        format="megatron",
        files=(
            ExportFile(path="megatron_args.txt", content="\n".join(
                (f"{a_}" if not a_.startswith("--") else f"\n{a_}") for a_ in args).strip() + "\n", media_type="text/plain"),
            ExportFile(path="train.sh", content=script, media_type="text/x-shellscript"),
        ),
        next_command=shell_quote(launch),
        notes=tuple(notes),
    )
