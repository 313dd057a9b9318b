"""Optional backend: the same plan applied with torchao's kernels (``pip install torchao``).

The plan's per-group choices become torchao's per-FQN configuration (``FqnToConfig``) and one
call to ``torchao.quantization.quantize_`` (torchao's own pattern: config → one verb → handler
registry). Mapped choices, dense weights on ``nn.Linear`` layers:

* ``int8`` weights: ``Int8WeightOnlyConfig``; with ``int8`` activations
  ``Int8DynamicActivationInt8WeightConfig`` (per-token dynamic activation scales);
* ``int2``/``int3``/``int4``/``int8`` with a group size ``-gN`` (symmetric):
  ``IntxWeightOnlyConfig(weight_dtype=torch.intB, granularity=PerGroup(N))``;
* ``fp32`` weights with fp32/bf16 activations: left as they are.

Anything else (sparsity, low rank, minifloats, codebooks, embeddings) is refused with a
message pointing to :func:`planner.execution.apply.apply_plan`, which implements every format.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from planner.arch import ArchSpec
from planner.execution.apply import LayerOption, _resolve, plan_targets, smoothed_targets
from planner.execution.errors import PlanApplyError

__all__ = ["apply_plan_torchao", "torchao_available", "torchao_config"]

_GROUPED_INT = re.compile(r"^int([2348])-g(\d+)$")


def torchao_available() -> bool:
    """True when the ``torchao`` package is installed."""
    return importlib.util.find_spec("torchao") is not None


def _require() -> None:
    if not torchao_available():
        raise PlanApplyError("the torchao backend needs the torchao package (pip install torchao); the built-in "
                             "backend (apply_plan) needs nothing extra", field="backend")


def torchao_config(opt: LayerOption, fqn: str = "") -> Any:
    """The torchao config for one choice, ``None`` for "leave as is"."""
    _require()
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, \
        IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    where = f"layer {fqn!r}: " if fqn else ""
    if opt.sparsity != "dense" or opt.low_rank is not None:
        raise PlanApplyError(f"{where}the torchao backend maps dense weights only; use apply_plan for "
                             f"sparsity {opt.sparsity!r} / low rank", field=fqn or "sparsity")
    if opt.weights == "fp32" and opt.activations in ("fp32", "bf16"):
        return None
    if opt.weights == "int8":
        if opt.activations == "int8":
            return Int8DynamicActivationInt8WeightConfig()
        return Int8WeightOnlyConfig()
    m = _GROUPED_INT.match(opt.weights)
    if m and opt.activations != "int8":
        bits, group = int(m.group(1)), int(m.group(2))
        return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=PerGroup(group))
    raise PlanApplyError(f"{where}no torchao mapping for weights {opt.weights!r} with activations "
                         f"{opt.activations!r}; torchao here covers int8, int8/int8 and intB-gN — use apply_plan "
                         "for every registered format", field=fqn or "weights")


def apply_plan_torchao(model: nn.Module, plan: Any, *, arch: ArchSpec | None = None) -> nn.Module:
    """A copy of ``model`` quantised by torchao following ``plan``; ``model`` is not modified."""
    _require()
    from torchao.quantization import FqnToConfig, quantize_

    targets = plan_targets(model, plan, arch)
    smoothed = smoothed_targets(model, plan, arch)
    if smoothed:
        raise PlanApplyError(f"the plan's engine runs SmoothQuant before quantizing int8 activations ({len(smoothed)} "
                             f"layer(s), first {next(iter(smoothed))!r}); torchao's Int8DynamicActivationInt8WeightConfig "
                             "quantizes them as they come — use apply_plan with calibrate=", field="engine")
    mapping: OrderedDict[str, Any] = OrderedDict()
    for fqn, (_group, opt) in targets.items():
        module = _resolve(model, fqn)
        if not isinstance(module, nn.Linear):
            raise PlanApplyError(f"layer {fqn!r} is a {type(module).__name__}; the torchao backend maps nn.Linear "
                                 "layers only (use apply_plan)", field=fqn)
        cfg = torchao_config(opt, fqn)
        if cfg is not None:
            path = fqn if fqn in dict(model.named_modules()) else fqn[len("model."):]
            mapping[path] = cfg
    compressed = copy.deepcopy(model)
    if mapping:
        quantize_(compressed, FqnToConfig(fqn_to_config=mapping), filter_fn=None)
    return compressed.eval()
