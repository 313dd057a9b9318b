"""yaml and json targets: the plan itself.

The next command follows the engine the files are for (``--engine``, else the one the plan was
made for, plan field ``engine``): the
``tierwise export`` line of that engine's own exporter (profiles/engines/<id>.yaml,
``exporter:``); for an engine whose exporter is the plan file itself (tvm, vitis-ai,
sambaflow) a line that says so and where its own tools take over (docs/engines.md); for a
plan that records no engine, ``tierwise export --engine`` with the engine to name.
"""

from __future__ import annotations

import yaml

from .common import to_json
from .core import Export, ExportContext, ExportFile, PlanView, register

_PLAN_FILES = ("yaml", "json")
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def next_command(v: PlanView, ctx: ExportContext, plan_file: str) -> str:
    """What a user runs after writing ``plan_file``, for the engine exported to (``ctx.engine``,
    else the plan's)."""
    engine = ctx.engine or (v.raw.get("engine") if isinstance(v.raw.get("engine"), str) else None)
    if not engine:
        return f"tierwise export {plan_file} --engine ENGINE --out deploy  # the plan records no engine; name the one to deploy with"
    try:
        from planner.engines import load_engine

        spec = load_engine(engine)
    except Exception:  # noqa: BLE001 - an engine this tierwise does not know (a user's profile file moved away)
        return (f"tierwise export {plan_file} --engine ENGINE --out deploy  # the plan's engine {engine!r} is not in "
                "this catalog; name an engine it knows")
    if spec.exporter not in _PLAN_FILES:
        return f"tierwise export {plan_file} --format {spec.exporter} --out deploy"
    return (f"# tierwise writes no {spec.name} files: apply {plan_file} (per-group weight formats under 'choices', "
            f"'kv', 'layout') with {spec.name}'s own tools; see docs/engines.md, {spec.id}")


@register("yaml", "the plan as YAML")
def _export_yaml(v: PlanView, ctx: ExportContext) -> Export:
    # libyaml's emitter where PyYAML has it (the same text as the pure-Python one, ~10x faster)
    text = yaml.dump(v.raw, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
    return Export(format="yaml", files=(ExportFile(path="plan.yaml", content=text, media_type="application/yaml"),),
                  next_command=next_command(v, ctx, "plan.yaml"))


@register("json", "the plan as JSON")
def _export_json(v: PlanView, ctx: ExportContext) -> Export:
    return Export(format="json", files=(ExportFile(path="plan.json", content=to_json(v.raw), media_type="application/json"),),
                  next_command=next_command(v, ctx, "plan.json"))
