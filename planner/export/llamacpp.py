"""llamacpp target: ``llama-quantize`` with per-tensor ``--tensor-type NAME=TYPE`` overrides
(tools/quantize/quantize.cpp), GGUF tensor names from gguf-py's ``tensor_mapping.py``."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from .common import host_offload_bytes, max_sequence, model_path, modules_of, plan_family, shell_lines, shell_quote
from .core import FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, format_of, register, weights_of


# Hugging Face checkpoint module name → GGUF tensor name, as convert_hf_to_gguf.py writes
# them (gguf-py/gguf/tensor_mapping.py, TensorNameMap): per-layer modules become
# ``blk.N.<kind>``. Fused projections keep one tensor: Phi-3's ``qkv_proj``, Falcon / BLOOM
# ``query_key_value``, GPT-NeoX, GPT-2 ``c_attn`` and MPT ``Wqkv`` are ATTN_QKV (``attn_qkv``);
# Phi-3's ``gate_up_proj`` is FFN_UP (``ffn_up``). Mixtral's experts are merged into one 3-D
# tensor per kind (FFN_GATE_EXP ``ffn_gate_exps`` ← w1, FFN_UP_EXP ``ffn_up_exps`` ← w3,
# FFN_DOWN_EXP ``ffn_down_exps`` ← w2).
_LAYER_PREFIX = re.compile(r"^(?:model\.layers|model\.decoder\.layers|gpt_neox\.layers|transformer\.h|transformer\.blocks|h|"
                           r"encoder\.layer|bert\.encoder\.layer)\.(\d+)\.(.+)$")
_GGUF_LAYER = {
    "attn_q": ("self_attn.q_proj", "attn.q_proj", "attention.self.query"),
    "attn_k": ("self_attn.k_proj", "attn.k_proj", "attention.self.key"),
    "attn_v": ("self_attn.v_proj", "attn.v_proj", "attention.self.value"),
    "attn_qkv": ("self_attn.qkv_proj", "attention.query_key_value", "self_attention.query_key_value", "attn.c_attn",
                 "attn.Wqkv"),
    "attn_output": ("self_attn.o_proj", "attention.dense", "self_attention.dense", "attn.c_proj", "attn.out_proj",
                    "attention.output.dense"),
    "ffn_gate": ("mlp.gate_proj",),
    "ffn_up": ("mlp.up_proj", "mlp.gate_up_proj", "mlp.dense_h_to_4h", "mlp.c_fc", "ffn.up_proj", "intermediate.dense",
               "mlp.fc_in"),
    "ffn_down": ("mlp.down_proj", "mlp.dense_4h_to_h", "mlp.c_proj", "ffn.down_proj", "output.dense", "mlp.fc_out"),
    "ffn_gate_inp": ("block_sparse_moe.gate", "mlp.router", "mlp.gate"),
    "ffn_gate_exps": ("mlp.experts.gate_proj",),
    "ffn_up_exps": ("mlp.experts.up_proj",),
    "ffn_down_exps": ("mlp.experts.down_proj",),
}
_GGUF_KIND = {hf: kind for kind, names in _GGUF_LAYER.items() for hf in names}
_EXPERT = re.compile(r"^block_sparse_moe\.experts\.\d+\.(w1|w2|w3)$")
_EXPERT_KIND = {"w1": "ffn_gate_exps", "w3": "ffn_up_exps", "w2": "ffn_down_exps"}
_GGUF_GLOBAL = {
    "model.embed_tokens": "token_embd", "transformer.wte": "token_embd", "transformer.word_embeddings": "token_embd",
    "word_embeddings": "token_embd", "gpt_neox.embed_in": "token_embd", "embeddings.word_embeddings": "token_embd",
    "bert.embeddings.word_embeddings": "token_embd",
    "lm_head": "output", "embed_out": "output",
    # llama-quantize keeps these as converted (src/llama-quant.cpp: positional embeddings and
    # BERT's token types are never quantized).
    "embeddings.position_embeddings": "position_embd", "bert.embeddings.position_embeddings": "position_embd",
    "transformer.wpe": "position_embd",
    "embeddings.token_type_embeddings": "token_types", "bert.embeddings.token_type_embeddings": "token_types",
}
# Modules convert_hf_to_gguf.py does not write (its BERT model drops the pooler and the MLM and
# NSP heads, "cls.predictions" / "cls.seq_relationship": GGUF BERT models are embedding models).
_NOT_CONVERTED = re.compile(r"^(bert\.)?pooler\.dense$|^cls\.(predictions|seq_relationship)\.")
_UNQUANTIZED = ("position_embd", "token_types")

# Plan weight format → ggml type (ggml/include/ggml.h; block layouts in ggml-common.h):
# q8_0 = 32 int8 + fp16 scale; q4_0 = 32 int4 + fp16 scale; q4_1 adds an fp16 min;
# q4_k / q3_k / q2_k = 256-value super-blocks of 16/32-value sub-blocks; iq4_nl = 32
# values on a fixed non-linear 4-bit grid; mxfp4 = OCP MX blocks of 32.
_GGML = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8-g32": "q8_0", "int8": "q8_0", "int4-g32": "q4_0",
         "int4-g32-zp": "q4_1",
         "nf4": "iq4_nl", "nf4-dq": "iq4_nl", "mxfp4": "mxfp4"}
# llama-quantize's positional type (an ftype name) for a base ggml type.
_FTYPE = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q4_k": "Q4_K_M", "q3_k": "Q3_K_M", "q2_k": "Q2_K",
          "iq4_nl": "IQ4_NL", "mxfp4": "MXFP4_MOE", "bf16": "BF16", "f16": "F16", "f32": "F32"}
# --cache-type-k / --cache-type-v (tools/server/README.md): q8_0 is int8-g32, the format plans made
# for llama.cpp carry (profiles/engines/llamacpp.yaml); per-head int8 maps to it too.
_QUANTIZED_KV = ("q8_0", "q4_0", "q4_1")
_GGML_KV = {"bf16": "bf16", "fp16": "f16", "fp32": "f32", "int8-g32": "q8_0", "int8": "q8_0", "int4-g32": "q4_0",
            "int4-g32-zp": "q4_1"}


def _ggml_bits() -> dict[str, float]:
    """Bits per value of the ggml types the llama.cpp profile states (its ``storage.types``, from
    ggml-common.h's block structs)."""
    from planner.engines import load_engine

    return {t: 8.0 * nbytes / values for _, chain in load_engine("llamacpp").runtime.storage
            for t, values, nbytes in chain}


def _size_notes(v: PlanView, written: dict[str, str], arch: Any = None) -> list[str]:
    """A note for every planned format whose ggml type stores other than the catalog's bits, when
    the plan was not priced for llama.cpp (a plan made for it prices the ggml type's bytes), and
    for the model's tensors whose rows llama-quantize writes as a fallback type (``arch``)."""
    if v.raw.get("engine") == "llamacpp":
        return []
    bits = _ggml_bits()
    out = []
    for fmt, t in written.items():
        catalog = format_of(fmt).bits_per_value()
        fell = _fallback_text(arch, fmt, t, catalog)
        if t in bits and (abs(bits[t] - catalog) > 1e-9 or fell):
            out.append(f"{fmt}: ggml {t} stores {bits[t]:g} bits per value, the plan priced {catalog:g} "
                       f"({bits[t] / catalog - 1:+.1%} for those tensors){fell}; `tierwise plan ... --engine llamacpp` "
                       "prices what llama.cpp stores")
    return out


def _fallback_text(arch: Any, fmt: str, t: str, catalog: float) -> str:
    """``, and …`` naming the row widths of ``arch``'s weights that ``t``'s blocks do not tile and
    the type llama-quantize writes them as instead (tensor_type_fallback; the profile's
    ``storage`` chain), or '' (no arch, no chain, every row tiled)."""
    from planner.engines import load_engine
    from planner.opcost import stored_row
    from planner.workload import NORM, build_workload

    chain = dict(load_engine("llamacpp").runtime.storage).get(fmt)
    if arch is None or not chain or chain[0][0] != t:
        return ""
    fell: dict[str, set[int]] = {}
    for block in build_workload(arch).blocks:
        for op in block.ops:
            row = stored_row(op)
            if op.weight_params and op.kind != NORM and row % chain[0][1]:
                alt = next((c for c in chain if row % c[1] == 0), chain[0])
                if alt[0] != t:
                    fell.setdefault(alt[0], set()).add(row)
    types = {c[0]: 8.0 * c[2] / c[1] for c in chain}
    return "".join(f", and llama-quantize writes the model's tensors with rows of {', '.join(map(str, sorted(rows)))} "
                   f"values (no whole number of {t}'s {chain[0][1]}-value blocks) as {alt}, {types[alt]:g} bits ({types[alt] / catalog - 1:+.1%})"
                   for alt, rows in fell.items())


def _ggml_type(name: str, field_name: str, notes: list[str]) -> str:
    if name == "int8":
        notes.append("int8 (one scale per output channel): llama.cpp's q8_0 keeps one scale per 32 values "
                     "(int8-g32; plans made for llama.cpp use it)")
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


# T5 (convert_hf_to_gguf.py's T5 model; gguf-py tensor_mapping.py ENC_* / DEC_*): encoder blocks
# become ``enc.blk.N.kind``, decoder blocks ``dec.blk.N.kind``, the shared embedding ``token_embd``;
# the feed-forward's wi (or gated wi_1) is ffn_up, wi_0 ffn_gate, wo ffn_down.
_T5_LAYER = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.layer\.\d+\.(SelfAttention|EncDecAttention|DenseReluDense)"
                       r"\.(q|k|v|o|wi|wi_0|wi_1|wo)$")
_T5_FFN = {"wi": "ffn_up", "wi_1": "ffn_up", "wi_0": "ffn_gate", "wo": "ffn_down"}
_PER_LAYER = re.compile(r"^(enc\.|dec\.)?blk\.(\d+)\.(.+)$")  # a layer's tensor: [stack.]blk.N.kind


def _t5_name(module: str) -> str | None:
    m = _T5_LAYER.match(module)
    if m is None:
        return "token_embd" if module == "shared" else None
    stack, n, part, w = m.groups()
    where = f"{stack[:3]}.blk.{n}"
    if part == "DenseReluDense":
        return f"{where}.{_T5_FFN[w]}" if w in _T5_FFN else None
    if w not in ("q", "k", "v", "o"):
        return None
    return f"{where}.{'cross_' if part == 'EncDecAttention' else ''}attn_{w}"


def _gguf_name(module: str, field_name: str) -> str | None:
    """The GGUF tensor (``blk.N.kind`` or a global name) of a checkpoint module; ``None`` for
    a module the conversion does not write."""
    if module in _GGUF_GLOBAL:
        return _GGUF_GLOBAL[module]
    if _NOT_CONVERTED.match(module):
        return None
    t5 = _t5_name(module)
    if t5 is not None:
        return t5
    m = _LAYER_PREFIX.match(module)
    if m:
        rest = m.group(2)
        e = _EXPERT.match(rest)
        kind = _EXPERT_KIND[e.group(1)] if e else _GGUF_KIND.get(rest)
        if kind:
            return f"blk.{m.group(1)}.{kind}"
    raise ExportError(field_name, f"no GGUF tensor name known for module {module!r}; the llama.cpp export covers the "
                      "architectures of convert_hf_to_gguf.py in the catalog (Llama, Mistral, Mixtral, Qwen2, Gemma, "
                      "Phi-3, Falcon, BLOOM, GPT-NeoX, GPT-2, GPT-J, MPT, BERT, T5)")


def _tensor_types(v: PlanView, ctx: ExportContext, notes: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({blk.N.kind: ggml type}, {global tensor: ggml type}) of the plan. Each GGUF tensor
    gets one type; two groups that share one tensor with different types are refused."""
    per_tensor: dict[str, str] = {}
    globals_: dict[str, str] = {}
    owner: dict[str, str] = {}
    written: dict[str, str] = {}
    for g in v.choices:
        t = _ggml_type(weights_of(v, g), f"choices.{g}.weights", notes)
        written[weights_of(v, g)] = t
        if acts_of(v, g) not in FLOAT16 and not (acts_of(v, g) == "int8" and t not in ("bf16", "f16", "f32")):
            # int8 activations with a quantized type are what ggml's CPU matmul does by itself
            # (activations quantized to the type's vec_dot_type): nothing to set, nothing to note.
            notes.append(f"{g}: llama.cpp picks compute precision per kernel; the plan's {acts_of(v, g)} activations are not set")
        for mod in modules_of(g, ctx):
            name = _gguf_name(mod, f"choices.{g}")
            if name is None:
                notes.append(f"{g}: convert_hf_to_gguf.py does not write {mod} (unused by llama.cpp); its planned "
                             f"{weights_of(v, g)} has no tensor")
                continue
            if name in _UNQUANTIZED:
                if t not in ("bf16", "f16", "f32"):
                    notes.append(f"{g}: llama-quantize never quantizes {name}; it stays as converted (bf16)")
                continue
            if owner.get(name, g) != g and (per_tensor.get(name) or globals_.get(name)) != t:
                raise ExportError(f"choices.{g}.weights", f"GGUF tensor {name} holds both {owner[name]} and {g}, "
                                  f"planned as {per_tensor.get(name) or globals_.get(name)} and {t}; llama.cpp stores "
                                  "one type per tensor")
            owner[name] = g
            (per_tensor if _PER_LAYER.match(name) else globals_)[name] = t
    if v.kv in _GGML_KV:
        written.setdefault(v.kv, _GGML_KV[v.kv])
    notes.extend(_size_notes(v, written, ctx.arch))
    return per_tensor, globals_


@register("llamacpp", "llama-quantize command with per-tensor type overrides")
def _export_llamacpp(v: PlanView, ctx: ExportContext) -> Export:
    notes: list[str] = []
    per_tensor, globals_ = _tensor_types(v, ctx, notes)
    token_type, output_type = globals_.get("token_embd"), globals_.get("output")
    notes = list(dict.fromkeys(notes))
    counts = Counter(per_tensor.values())
    quantized = [t for t, _ in counts.most_common() if t not in ("bf16", "f16", "f32")]
    base = quantized[0] if quantized else (counts.most_common(1)[0][0] if counts else "bf16")
    # One --tensor-type per (tensor kind, type): a regex over the layer indices.
    # Overrides apply only when the base type is a quantized one (llama-quant.cpp).
    # (T5's tensors are enc.blk.N.kind / dec.blk.N.kind: the stack is part of the pattern.)
    by: dict[tuple[str, str, str], list[int]] = {}
    for name, t in per_tensor.items():
        stack, idx, kind = _PER_LAYER.match(name).groups()
        by.setdefault((stack or "", kind, t), []).append(int(idx))
    overrides: list[str] = []
    if quantized:
        for (stack, kind, t), idx in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], min(kv[1]))):
            idx = sorted(idx)
            overrides.append(f"{re.escape(stack)}blk\\.({'|'.join(map(str, idx))})\\.{kind}\\.weight={t}")
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
    server = ["llama-server", "-m", out, "-c", str(v.batch * max_sequence(v, ctx)), "--parallel", str(v.batch),
              "--cache-type-k", ctk, "--cache-type-v", ctk, "--n-gpu-layers", "999"]
    if plan_family(v, ctx) == "encoder":
        # A BERT GGUF is an embedding model: llama-server serves it with --embeddings ("restrict to
        # only support embedding use case; use only with dedicated embedding models", common/arg.cpp).
        server += ["--embeddings"]
    if ctk in _QUANTIZED_KV:
        # llama.cpp builds a context with a quantized V cache only with flash attention (profile source
        # L-KV: "quantized V cache needs flash attention"); without the flag llama-server stops at load.
        server += ["--flash-attn"]
        notes.append(f"--cache-type-v {ctk}: llama-server runs a quantized V cache only with flash attention, so "
                     "the command sets --flash-attn; the plan priced llama.cpp's default attention without it "
                     "(profiles/engines/llamacpp.yaml runtime.fused_attention: false): attention may run faster "
                     "than predicted")
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
