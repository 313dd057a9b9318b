"""Deployment export: turn a Plan into the configuration files of a serving or training engine.

One registry (:data:`EXPORTERS`) maps a target name to a pure function
``(PlanView, ExportContext) -> Export``; :func:`export_plan` is the one verb. An
:class:`Export` is data: the files to write (relative path, text) and the command a
user runs next. Nothing touches the disk until :func:`write_export`, which writes
every file or none.

Targets and the published names each one follows (tests check them against the
target's own package where one is pip-installable, else against these documents):

* ``vllm`` — vLLM engine arguments (docs.vllm.ai, "Engine Arguments"; ``vllm serve``).
* ``sglang`` — SGLang server arguments (``ServerArgs``, python/sglang/srt/server_args.py;
  ``python -m sglang.launch_server``).
* ``compressed-tensors`` — llm-compressor recipe (``QuantizationModifier`` with
  ``config_groups`` targeting module names, ``SparseGPTModifier``) and the
  compressed-tensors ``QuantizationConfig`` written into the checkpoint's config.json.
* ``hf`` — a transformers ``quantization_config`` (bitsandbytes, fine-grained FP8, or
  compressed-tensors for per-layer mixtures).
* ``modelopt-mixed`` — ModelOpt's unified checkpoint ``hf_quant_config.json`` with a
  per-layer ``quantized_layers`` map (``quant_algo: MIXED_PRECISION``).
* ``trtllm`` — TensorRT-LLM ``QuantConfig`` (``QuantAlgo`` names from
  ``tensorrt_llm/quantization/mode.py``), parallel sizes and ``trtllm-serve`` flags.
* ``llamacpp`` — ``llama-quantize`` with per-tensor ``--tensor-type NAME=TYPE``
  overrides (tools/quantize/quantize.cpp), GGUF tensor names from gguf-py's
  ``tensor_mapping.py``.
* ``megatron`` — Megatron-LM training arguments (``megatron/training/arguments.py``).
* ``yaml`` / ``json`` — the plan itself.

A choice the target cannot express raises :class:`ExportError` naming the plan field
(``choices.<group>.weights``) instead of writing a configuration that silently differs
from the plan. Approximations a target forces (llama.cpp's 256-value super-blocks for
int4 with group 128, say) are written and reported in ``Export.notes``.

Layout: :mod:`.core` (types, registry, plan view, the verbs), :mod:`.common` (module
names, shell text, memory sizing), :mod:`.schemes` (quantization schemes shared by several
targets) and one module per target, which registers itself with
``@register("name", "description")``. Every other module of this package is imported
here, so adding a target is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil

from .common import group_modules
from .core import (
    EXPORTERS,
    Export,
    ExportContext,
    ExportError,
    ExportFile,
    Exporter,
    export_formats,
    export_plan,
    register,
    write_export,
)

__all__ = [
    "EXPORTERS",
    "Export",
    "ExportContext",
    "ExportError",
    "ExportFile",
    "Exporter",
    "export_formats",
    "export_plan",
    "group_modules",
    "register",
    "write_export",
]

# Bundled targets in the order they are listed (vllm first); any further module of this
# package is a target too and registers itself when imported.
_BUNDLED = ("vllm", "compressed_tensors", "hf", "modelopt_mixed", "trtllm", "sglang", "llamacpp", "megatron", "plan_files")
_SUPPORT = frozenset({"core", "common", "schemes", "names", "rules"})


def _load_targets() -> None:
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _SUPPORT)
    for name in (*_BUNDLED, *(n for n in found if n not in _BUNDLED)):
        importlib.import_module(f"{__name__}.{name}")


_load_targets()
