"""llamacpp target: ``llama-quantize`` with per-tensor ``--tensor-type NAME=TYPE`` overrides
(tools/quantize/quantize.cpp), GGUF tensor names from gguf-py's ``tensor_mapping.py``."""

from __future__ import annotations

import re
from collections import Counter

from .common import group_modules, host_offload_bytes, model_path, modules_of, shell_lines, shell_quote
from .core import FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, format_of, register, weights_of


# Hugging Face module name (inside a decoder layer) → GGUF tensor name
# (llama.cpp gguf-py/gguf/tensor_mapping.py, MODEL_TENSOR.* for LLaMA-style models).
_GGUF_LAYER = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "mlp.router": "ffn_gate_inp",
    "mlp.experts.gate_proj": "ffn_gate_exps",
    "mlp.experts.up_proj": "ffn_up_exps",
    "mlp.experts.down_proj": "ffn_down_exps",
}
_GGUF_GLOBAL = {"model.embed_tokens": "token_embd", "lm_head": "output"}

# Plan weight format → ggml type (ggml/include/ggml.h; block layouts in ggml-common.h):
# q8_0 = 32 int8 + fp16 scale; q4_0 = 32 int4 + fp16 scale; q4_1 adds an fp16 min;
# q4_k / q3_k / q2_k = 256-value super-blocks of 16/32-value sub-blocks; iq4_nl = 32
# values on a fixed non-linear 4-bit grid; mxfp4 = OCP MX blocks of 32.
_GGML = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "q8_0", "int4-g32": "q4_0", "int4-g32-zp": "q4_1",
         "nf4": "iq4_nl", "nf4-dq": "iq4_nl", "mxfp4": "mxfp4"}
# llama-quantize's positional type (an ftype name) for a base ggml type.
_FTYPE = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q4_k": "Q4_K_M", "q3_k": "Q3_K_M", "q2_k": "Q2_K",
          "iq4_nl": "IQ4_NL", "mxfp4": "MXFP4_MOE", "bf16": "BF16", "f16": "F16", "f32": "F32"}
_GGML_KV = {"bf16": "bf16", "fp16": "f16", "fp32": "f32", "int8": "q8_0", "int4-g32": "q4_0", "int4-g32-zp": "q4_1"}


def _ggml_type(name: str, field_name: str, notes: list[str]) -> str:
    if name in _GGML:
        return _GGML[name]
    f = format_of(name)
    if f.kind == "int" and f.element_bits in (2, 3, 4) and f.group_size:
        t = {4: "q4_k", 3: "q3_k", 2: "q2_k"}[f.element_bits]
        notes.append(f"{name}: llama.cpp has no {f.element_bits}-bit type with groups of {f.group_size}; "
                     f"{t} (256-value super-blocks) is the nearest")
        return t
    raise ExportError(field_name, f"llama.cpp (GGUF) has no tensor type for {name!r}; supported: bf16, fp16, fp32, int8, "
                      "int4/int3/int2 (group sizes map to q4_0/q4_1/q4_k/q3_k/q2_k), nf4 (iq4_nl), mxfp4")


def _gguf_name(module: str, field_name: str) -> str:
    if module in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[module]
    m = re.match(r"^model\.layers\.(\d+)\.(.+)$", module)
    if m and m.group(2) in _GGUF_LAYER:
        return f"blk.{m.group(1)}.{_GGUF_LAYER[m.group(2)]}"
    raise ExportError(field_name, f"no GGUF tensor name known for module {module!r}; the llama.cpp export covers "
                      "LLaMA-style decoders (q/k/v/o, gate/up/down, experts, embeddings, lm_head)")


@register("llamacpp", "llama-quantize command with per-tensor type overrides")
def _export_llamacpp(v: PlanView, ctx: ExportContext) -> Export:
    notes: list[str] = []
    # GGUF tensor kinds (attn_q, ffn_gate_exps, ...) follow the planner's canonical names, not
    # each checkpoint's module names.
    canon = group_modules(ctx.arch, canonical=True) if ctx.arch is not None else None
    per_tensor: dict[str, str] = {}
    token_type = output_type = None
    for g in v.choices:
        t = _ggml_type(weights_of(v, g), f"choices.{g}.weights", notes)
        if acts_of(v, g) not in FLOAT16:
            notes.append(f"{g}: llama.cpp picks compute precision per kernel; the plan's {acts_of(v, g)} activations are not set")
        for mod in (canon[g] if canon and g in canon else modules_of(g, ExportContext())):
            name = _gguf_name(mod, f"choices.{g}")
            if name == "token_embd":
                token_type = t
            elif name == "output":
                output_type = t
            else:
                per_tensor[name] = t
    notes = list(dict.fromkeys(notes))
    counts = Counter(per_tensor.values())
    quantized = [t for t, _ in counts.most_common() if t not in ("bf16", "f16", "f32")]
    base = quantized[0] if quantized else (counts.most_common(1)[0][0] if counts else "bf16")
    # One --tensor-type per (tensor kind, type): a regex over the layer indices.
    # Overrides apply only when the base type is a quantized one (llama-quant.cpp).
    by: dict[tuple[str, str], list[int]] = {}
    for name, t in per_tensor.items():
        _, idx, kind = name.split(".", 2)
        by.setdefault((kind, t), []).append(int(idx))
    overrides: list[str] = []
    if quantized:
        for (kind, t), idx in sorted(by.items(), key=lambda kv: (kv[0][0], min(kv[1]))):
            idx = sorted(idx)
            overrides.append(f"blk\\.({'|'.join(map(str, idx))})\\.{kind}\\.weight={t}")
    src = f"{v.model}-bf16.gguf"
    out = f"{v.model}-{_FTYPE[base].lower()}-tierwise.gguf"
    cmd = ["llama-quantize"]
    for o in overrides:
        cmd += ["--tensor-type", o]
    if token_type:
        cmd += ["--token-embedding-type", token_type]
    if output_type:
        cmd += ["--output-tensor-type", output_type]
    cmd += [src, out, _FTYPE[base]]
    if v.kv not in _GGML_KV:
        raise ExportError("kv", f"llama.cpp's KV cache types are f16, bf16, f32, q8_0, q4_0, q4_1; the plan's KV cache is {v.kv!r}")
    ctk = _GGML_KV[v.kv]
    server = ["llama-server", "-m", out, "-c", str(max(1, v.batch * (v.prompt + v.gen))), "--parallel", str(v.batch),
              "--cache-type-k", ctk, "--cache-type-v", ctk, "--n-gpu-layers", "999"]
    if v.tp > 1:
        server += ["--split-mode", "row"]
    if host_offload_bytes(v) > 0:
        notes.append("the plan streams some weights from host memory: lower --n-gpu-layers until the model fits")
    convert = ["python", "convert_hf_to_gguf.py", model_path(v, ctx), "--outtype", "bf16", "--outfile", src]
    script = "#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(shell_lines(c) for c in (convert, cmd, server)) + "\n"
    tensor_types = "".join(f"{o}\n" for o in overrides)
    return Export(
        format="llamacpp",
        files=(
            ExportFile(path="quantize.sh", content=script, media_type="text/x-shellscript"),
            ExportFile(path="tensor_types.txt", content=tensor_types, media_type="text/plain"),
        ),
        next_command=shell_quote(cmd),
        notes=tuple(notes),
    )
