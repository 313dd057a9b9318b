"""yaml and json targets: the plan itself."""

from __future__ import annotations

import yaml

from .common import to_json
from .core import Export, ExportContext, ExportFile, PlanView, register


@register("yaml", "the plan as YAML")
def _export_yaml(v: PlanView, ctx: ExportContext) -> Export:
    text = yaml.safe_dump(v.raw, sort_keys=False, allow_unicode=True)
    return Export(format="yaml", files=(ExportFile(path="plan.yaml", content=text, media_type="application/yaml"),),
                  next_command="tierwise export plan.yaml --format vllm --out deploy")


@register("json", "the plan as JSON")
def _export_json(v: PlanView, ctx: ExportContext) -> Export:
    return Export(format="json", files=(ExportFile(path="plan.json", content=to_json(v.raw), media_type="application/json"),),
                  next_command="tierwise export plan.json --format vllm --out deploy")

