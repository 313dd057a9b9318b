"""executorch target for encoders, ViTs and CNNs: a Python script that lowers the Hugging Face
model to ExecuTorch's XNNPACK delegate and writes the ``.pte`` program, quantized as the plan says.

ExecuTorch's Llama recipe (:mod:`.executorch`) builds decoders only. Other models go through
ExecuTorch's generic flow, as its XNNPACK backend documents it
(https://docs.pytorch.org/executorch/1.0/backends/xnnpack/xnnpack-quantization.html and
docs/source/backends/xnnpack/xnnpack-quantization.md in github.com/pytorch/executorch):

- ``torch.export.export`` of the model at the plan's shapes (static: ExecuTorch plans memory for
  them), then ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()],
  transform_passes=get_transform_passes())`` and ``.to_executorch()``;
- 8-bit weights through the PT2E flow: ``XNNPACKQuantizer`` with
  ``get_symmetric_quantization_config(is_per_channel=True, is_dynamic=...)`` set per module
  (``set_module_name``), ``prepare_pt2e``, calibration on representative samples (static
  activations), ``convert_pt2e`` (``torchao.quantization.pt2e.quantize_pt2e``). XNNPACK has no
  weight-only int8: a plan with int8 weights and 16-bit activations gets dynamic int8 activations;
- 4-bit grouped weights of Linear layers through torchao's ``quantize_`` with
  ``Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(g))``
  ("8da4w"), and embeddings with ``IntxWeightOnlyConfig`` (int8 per row or int4 per group).
  ``quantize_`` converts ``nn.Linear`` and (with its filter) ``nn.Embedding`` only: 4-bit
  convolutions are refused.

The model class is the checkpoint's own (its config's ``architectures``: ``BertModel`` for
sentence-embedding checkpoints, ``BertForMaskedLM``, ``ResNetForImageClassification``), else
the family's Auto class. The script checks that every module the plan quantizes exists in the
loaded model before it changes anything, and ``--check`` runs the ``torch.export`` step alone
(no ExecuTorch needed), writing the exported program with ``torch.export.save``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .common import arch_family, group_kinds, group_modules, model_path, modules_of, plan_arch, quantized_convs
from .core import FLOAT16, Export, ExportContext, ExportError, ExportFile, PlanView, acts_of, format_of, weights_of
from .rules import dense_only, one_format_replan, replan_hint

#: The families this flow exports (what profiles/engines/executorch.yaml runs, decoders aside).
FAMILIES = ("encoder", "cnn", "vit")

_AUTO = {"encoder": "AutoModel", "cnn": "AutoModelForImageClassification", "vit": "AutoModelForImageClassification"}
_TORCH_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _model_class(arch: Any, family: str) -> str:
    """The class the script loads: an encoder's bare model (``AutoModel``: BertModel, its pooler
    included, as the plan prices it, not the masked-LM head of a ``BertForMaskedLM`` checkpoint),
    else the checkpoint's own class (its config's ``architectures``) or the family's Auto class."""
    from .names import architectures_of

    if family == "encoder":
        return "AutoModel"
    archs = architectures_of(arch) if arch is not None else ()
    return archs[0] if archs else _AUTO[family]


def _modules(arch: Any, family: str, ctx: ExportContext) -> Mapping[str, tuple[str, ...]] | None:
    """Decision group → module names of the class :func:`_model_class` loads."""
    if arch is not None and family == "encoder" and getattr(arch, "model_type", "") == "bert":
        return group_modules(arch, ("BertModel",))  # BertModel's names: no "bert." prefix, its own pooler
    if ctx.modules is not None:
        return ctx.modules
    return group_modules(arch) if arch is not None else None


def _scheme(v: PlanView, g: str, kind: str, notes: list[str], ctx: ExportContext) -> str | None:
    """The script's quantization of one group: None (the float dtype), ``int8`` (static PT2E),
    ``int8-dynamic`` (PT2E, dynamic activations), ``8da4w-gN`` (torchao), ``emb-int8`` /
    ``emb-int4-gN`` (torchao weight-only embedding)."""
    w, a = weights_of(v, g), acts_of(v, g)
    if w in FLOAT16 or w == "fp32":
        return None
    f = format_of(w)
    field = f"choices.{g}.weights"
    if kind == "embedding":
        if w == "int8":
            return "emb-int8"
        if f.kind == "int" and f.element_bits == 4 and f.group_size:
            return f"emb-int4-g{f.group_size}"
        raise ExportError(field, f"ExecuTorch quantizes an embedding table to int8 per row or int4 in groups "
                          f"(torchao IntxWeightOnlyConfig); the plan gives {g} {w!r}; {replan_hint(v, 'executorch', ctx.engine)}")
    if w == "int8":
        if a == "int8":
            return "int8"
        if kind == "conv":  # XNNPACK's dynamic quantization skips depthwise convolutions (gemm_configs.py)
            notes.append(f"int8 convolutions with {a} activations: XNNPACK runs quantized convolutions with static "
                         "int8 activations (its dynamic quantization does not cover depthwise ones), so they take "
                         "calibrated int8 inputs")
            return "int8"
        notes.append(f"int8 weights with {a} activations: XNNPACK has no weight-only int8, so those layers quantize "
                     "their inputs to int8 at run time (dynamic activations)")
        return "int8-dynamic"
    if f.kind == "int" and f.element_bits == 4 and f.group_size:
        if a != "int8":
            notes.append(f"{w} weights: XNNPACK's 8da4w quantizes activations to int8 per token at run time (the "
                         f"plan's {a} activations become dynamic int8)")
        return f"8da4w-g{f.group_size}"
    raise ExportError(field, f"ExecuTorch's XNNPACK flow writes fp32/fp16/bf16, int8 (PT2E, per output channel) and "
                      f"int4 in groups (8da4w); the plan gives {g} {w!r}; {replan_hint(v, 'executorch', ctx.engine)}")


def _refuse_4bit_convs(v: PlanView, kinds: dict[str, str]) -> None:
    """torchao's 4-bit configs convert ``nn.Linear`` only; XNNPACK quantizes convolutions to int8
    (PT2E). A plan with 4-bit convolutions (a CNN's, a ViT's patch projection) is refused with the
    re-plan in int8: the profile lets a plan for this engine use one quantized format (``exclusive``)."""
    convs = [g for g in quantized_convs(v, kinds) if format_of(weights_of(v, g)).element_bits == 4]
    if not convs:
        return
    fix = one_format_replan(v, "executorch", "int8")
    more = f" and {len(convs) - 1} more" if len(convs) > 1 else ""
    raise ExportError(f"choices.{convs[0]}.weights", f"ExecuTorch's 4-bit weights (torchao "
                      f"Int8DynamicActivationIntxWeightConfig) apply to Linear layers only; {convs[0]}{more} "
                      f"{'is a convolution' if len(convs) == 1 else 'are convolutions'}, which XNNPACK quantizes to "
                      f"int8 (PT2E). Re-plan with int8 convolutions: {fix}")


def _module_of(name: str, kind: str) -> str:
    """A CNN convolution is quantized with the layer that holds it (``ResNetConvLayer``,
    ``MobileNetV2ConvLayer``: convolution, batch norm, activation), so XNNPACKQuantizer's
    conv-bn-relu pattern applies, as in ExecuTorch's own CNN examples."""
    if kind == "conv" and name.endswith(".convolution"):
        return name.rsplit(".", 1)[0]
    return name


def export_program(v: PlanView, ctx: ExportContext) -> Export:
    """The export script for an encoder, ViT or CNN plan."""
    arch = plan_arch(v, ctx)
    family = arch_family(arch)
    dense_only(v, "executorch", "ExecuTorch's XNNPACK flow")
    modules = _modules(arch, family, ctx)
    kinds = group_kinds(arch) if arch is not None else {}
    _refuse_4bit_convs(v, kinds)
    notes: list[str] = []
    quant: dict[str, str] = {}
    floats: set[str] = set()
    for g in v.choices:
        kind = kinds.get(g, "linear")
        s = _scheme(v, g, kind, notes, ctx)
        names = modules.get(g, ()) if modules is not None and g in modules else modules_of(g, ctx)
        if s is None:
            floats.add(acts_of(v, g) if acts_of(v, g) in _TORCH_DTYPE else "fp32")
            continue
        for n in names:
            quant[_module_of(n, kind)] = s
    if quant:
        dtype = "fp32"
        if floats - {"fp32"} or any(acts_of(v, g) in ("fp16", "bf16") for g in v.choices):
            notes.append("a quantized program keeps its float operators in fp32, as XNNPACK's quantization flows "
                         "do (the plan's 16-bit float tensors are written fp32)")
    else:
        dtype = sorted(floats)[0] if len(floats) == 1 else "fp32"
        if len(floats) > 1:
            notes.append(f"the plan mixes float formats ({', '.join(sorted(floats))}); one program has one float dtype: fp32")
    static = sorted(n for n, s in quant.items() if s == "int8")
    if family == "encoder":
        limit = int(getattr(arch, "max_position_embeddings", 0) or 0)
        seq = min(v.prompt, limit) if limit else v.prompt
        if limit and v.prompt > limit:
            notes.append(f"the plan's prompt ({v.prompt}) is beyond the model's {limit} positions; the program takes {limit}")
        inputs = {"kind": "tokens", "batch": v.batch, "seq": max(1, seq)}
    else:
        size = int(getattr(arch, "image_size", 0) or 224)
        inputs = {"kind": "image", "batch": v.batch, "channels": int(getattr(arch, "num_channels", 0) or 3),
                  "height": size, "width": size}
    pte = f"{v.model}.pte"
    script = _SCRIPT.format(
        model=v.model, hardware=v.hardware, path=json.dumps(model_path(v, ctx)),
        cls=json.dumps(_model_class(arch, family)), inputs=json.dumps(inputs), dtype=_TORCH_DTYPE[dtype],
        quant=_literal(quant), pte=json.dumps(pte))
    calib = " --calibration SAMPLES" if static else ""
    if static:
        what = "a text file, one sample per line" if family == "encoder" else "a folder of images"
        notes.append(f"{len(static)} module(s) take static int8 activations: calibrate them on representative inputs "
                     f"(--calibration SAMPLES: {what}); the script refuses to guess them")
    return Export(format="executorch",
                  files=(ExportFile(path="export_executorch.py", content=script, media_type="text/x-python"),),
                  next_command=f"pip install executorch transformers{' pillow' if static and family != 'encoder' else ''} "
                               f"&& python export_executorch.py{calib}",
                  notes=tuple(dict.fromkeys(notes)))


def _literal(d: dict[str, str]) -> str:
    if not d:
        return "{}"
    return "{\n" + "".join(f"    {json.dumps(k)}: {json.dumps(s)},\n" for k, s in d.items()) + "}"


_SCRIPT = '''\
#!/usr/bin/env python3
"""ExecuTorch export of {model} for {hardware}, as its Tierwise plan quantizes it.

Lowers the model to ExecuTorch's XNNPACK delegate and writes {pte}.
  pip install executorch transformers        (torchao comes with executorch)
  python export_executorch.py [--calibration SAMPLES] [--output FILE]
  python export_executorch.py --check        (torch.export only; no ExecuTorch needed)
MODEL=/path/to/checkpoint overrides the model it loads.
"""
import argparse
import os
import sys
from pathlib import Path

import torch
import transformers

MODEL = os.environ.get("MODEL", {path})
MODEL_CLASS = {cls}
INPUTS = {inputs}  # static shapes: ExecuTorch plans memory for them
DTYPE = torch.{dtype}
# module -> scheme: "int8" (8-bit weights per channel, static int8 activations), "int8-dynamic"
# (int8 activations at run time), "8da4w-gN" (4-bit weights in groups of N, dynamic int8
# activations), "emb-int8" / "emb-int4-gN" (embedding weights only); the rest stays DTYPE
QUANT = {quant}
OUTPUT = {pte}


class Exportable(torch.nn.Module):
    """The model with tensor outputs: logits, or an encoder's last hidden state (and its pooler's output)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        if INPUTS["kind"] == "tokens":
            out = self.model(input_ids=inputs[0], attention_mask=inputs[1])
            pooled = getattr(out, "pooler_output", None)
            return out.last_hidden_state if pooled is None else (out.last_hidden_state, pooled)
        return self.model(pixel_values=inputs[0])[0]


def example_inputs():
    b = INPUTS["batch"]
    if INPUTS["kind"] == "tokens":
        return (torch.ones(b, INPUTS["seq"], dtype=torch.long), torch.ones(b, INPUTS["seq"], dtype=torch.long))
    shape = (b, INPUTS["channels"], INPUTS["height"], INPUTS["width"])
    return (torch.zeros(shape, dtype=torch.float32 if QUANT else DTYPE),)


def calibration_batches(path, limit):
    """Representative inputs in batches of the program's shape: lines of text (encoders) or images."""
    b, p = INPUTS["batch"], Path(path)
    if INPUTS["kind"] == "tokens":
        lines = [x for x in p.read_text(encoding="utf-8").splitlines() if x.strip()][:limit]
        tok = transformers.AutoTokenizer.from_pretrained(MODEL)
        for i in range(0, len(lines) - b + 1, b):
            enc = tok(lines[i:i + b], padding="max_length", truncation=True, max_length=INPUTS["seq"], return_tensors="pt")
            yield (enc["input_ids"], enc["attention_mask"])
        return
    from PIL import Image

    files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))[:limit]
    proc = transformers.AutoImageProcessor.from_pretrained(MODEL)  # the model's own resize, crop and normalisation
    for i in range(0, len(files) - b + 1, b):
        images = [Image.open(f).convert("RGB") for f in files[i:i + b]]
        pixels = proc(images=images, return_tensors="pt")["pixel_values"]
        if tuple(pixels.shape[-2:]) != (INPUTS["height"], INPUTS["width"]):
            sys.exit(f"{{MODEL}}'s image processor makes {{tuple(pixels.shape[-2:])}} images; the program takes "
                     f"{{INPUTS['height']}}x{{INPUTS['width']}}")
        yield (pixels,)


def quantize(model, inputs, args):
    """The plan's quantization: torchao quantize_ for 4-bit Linear and embedding weights, then PT2E for int8."""
    import torch.nn as nn

    for m in model.modules():  # padding_idx only masks a gradient; the quantized embedding op takes none
        if isinstance(m, nn.Embedding):
            m.padding_idx = None
    ao = {{n: s for n, s in QUANT.items() if s.startswith(("8da4w", "emb-"))}}
    if ao:
        from torchao.quantization.granularity import PerAxis, PerGroup
        from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_

        for scheme in sorted(set(ao.values())):
            names = {{"model." + n for n, s in ao.items() if s == scheme}}
            if scheme.startswith("8da4w"):
                config = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(int(scheme.rsplit("g", 1)[1])))
                kind = nn.Linear
            else:
                bits = torch.int8 if scheme == "emb-int8" else torch.int4
                config = IntxWeightOnlyConfig(weight_dtype=bits, granularity=PerAxis(0) if scheme == "emb-int8" else PerGroup(int(scheme.rsplit("g", 1)[1])))
                kind = nn.Embedding
            quantize_(model, config, filter_fn=lambda m, fqn, names=names, kind=kind: isinstance(m, kind) and fqn in names)
        from torchao.utils import unwrap_tensor_subclass

        unwrap_tensor_subclass(model)  # plain tensors for torch.export, as Optimum ExecuTorch does
    pt2e = {{n: s for n, s in QUANT.items() if s in ("int8", "int8-dynamic")}}
    if not pt2e:
        return model
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    for name, scheme in pt2e.items():
        quantizer.set_module_name("model." + name, get_symmetric_quantization_config(is_per_channel=True, is_dynamic=scheme == "int8-dynamic"))
    prepared = prepare_pt2e(torch.export.export(model, inputs).module(), quantizer)
    if "int8" in pt2e.values():
        n = 0
        for batch in calibration_batches(args.calibration, args.samples):
            prepared(*batch)
            n += 1
        if n == 0:
            sys.exit(f"--calibration {{args.calibration}}: no batch of {{INPUTS['batch']}} samples in it")
        print(f"calibrated on {{n}} batch(es)")
    else:
        prepared(*inputs)
    return convert_pt2e(prepared)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", help="representative inputs for static int8 activations: a text file, one sample per line (text models), or a folder of images")
    ap.add_argument("--samples", type=int, default=256, help="most calibration samples to read (default 256)")
    ap.add_argument("--output", default=OUTPUT, help=f"program file to write (default {{OUTPUT}})")
    ap.add_argument("--check", action="store_true", help="run torch.export only and save the exported program (.pt2)")
    ap.add_argument("--allow-missing", action="store_true", help="export even if the checkpoint lacks weights of the "
                    "model (they would be random: a classifier head the checkpoint does not have)")
    args = ap.parse_args()
    if "int8" in QUANT.values() and not args.check and not args.calibration:
        ap.error("--calibration is required: the plan gives some layers static int8 activations, whose ranges "
                 "come from representative inputs")
    if args.calibration and not Path(args.calibration).exists():
        ap.error(f"--calibration {{args.calibration}}: no such file or folder")
    if (os.path.isabs(MODEL) or MODEL.startswith(".")) and not os.path.isdir(MODEL):
        sys.exit(f"MODEL={{MODEL}}: no such folder")
    try:
        model, info = getattr(transformers, MODEL_CLASS).from_pretrained(MODEL, torch_dtype=torch.float32,
                                                                         output_loading_info=True)
    except (OSError, ValueError) as exc:
        sys.exit(f"MODEL={{MODEL}}: cannot load a {{MODEL_CLASS}} checkpoint from it ({{exc}})")
    missing = list(info.get("missing_keys") or ())
    if missing and not args.allow_missing:
        sys.exit(f"{{MODEL}} has no weights for {{', '.join(missing[:4])}}{{' …' if len(missing) > 4 else ''}} "
                 f"({{len(missing)}} in all): the program would compute with random ones. Pass MODEL= a checkpoint "
                 "that has them (e.g. one fine-tuned with the plan's classifier head), or --allow-missing")
    model = model.eval()
    present = dict(model.named_modules())
    missing = [n for n in QUANT if n not in present]
    if missing:
        sys.exit(f"{{MODEL}} ({{MODEL_CLASS}}) has no module {{', '.join(missing[:5])}}: the plan was made for another "
                 "checkpoint layout")
    if not QUANT:
        model = model.to(DTYPE)
    wrapped = Exportable(model).eval()
    inputs = example_inputs()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if args.check:
            program = torch.export.export(wrapped, inputs)
            out = Path(args.output).with_suffix(".pt2")
            torch.export.save(program, out)
            print(f"torch.export: {{len(program.graph.nodes)}} nodes; wrote {{out}}")
            return
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
        except ImportError as exc:
            sys.exit(f"ExecuTorch is not installed ({{exc}}): pip install executorch")
        try:  # pre-partition rewrites that expose XNNPACK patterns; releases before it lower without
            from executorch.backends.xnnpack.utils.configs import get_transform_passes

            passes = {{"transform_passes": get_transform_passes()}}
        except ImportError:
            passes = {{}}
        wrapped = quantize(wrapped, inputs, args)
        # quant fusion turns torchao's dequantize + embedding into ExecuTorch's quantized embedding ops, as
        # export_llama (extension/llm/export/builder.py) and Optimum ExecuTorch's XNNPACK recipe do
        program = to_edge_transform_and_lower(torch.export.export(wrapped, inputs), partitioner=[XnnpackPartitioner()],
                                              **passes).to_executorch(
            config=ExecutorchBackendConfig(extract_delegate_segments=True, do_quant_fusion_and_const_prop=True))
    with open(args.output, "wb") as f:
        program.write_to_file(f)
    print(f"wrote {{args.output}} ({{Path(args.output).stat().st_size / 2**20:.1f}} MiB)")


if __name__ == "__main__":
    main()
'''
