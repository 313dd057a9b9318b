"""The core of the exporters: the types an exporter returns, the registry it joins,
the checked view of a plan every exporter reads, and the two verbs (:func:`export_plan`,
:func:`write_export`).

An exporter is a pure function ``(PlanView, ExportContext) -> Export`` that joins
:data:`EXPORTERS` with the :func:`register` decorator. A choice the target cannot express
raises :class:`ExportError` naming the plan field (``choices.<group>.weights``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwmodels.errors import TierwiseError
from hwmodels.ids import ID_EXPECTED, is_id

__all__ = [
    "EXPORTERS",
    "FLOAT16",
    "Export",
    "ExportContext",
    "ExportError",
    "ExportFile",
    "Exporter",
    "PlanView",
    "UnsupportedModelError",
    "acts_of",
    "canonical",
    "export_formats",
    "export_plan",
    "format_of",
    "plan_view",
    "register",
    "sparsity_of",
    "weights_of",
    "write_export",
]


class ExportError(TierwiseError, ValueError):
    """A plan that a target cannot express. ``field`` names the plan field."""

    code = "export_unsupported"

    def __init__(self, field: str, message: str) -> None:
        TierwiseError.__init__(self, message, field=field)


class UnsupportedModelError(ExportError):
    """The target's tool does not build the plan's architecture (``field``: ``model``; the REST
    code stays ``export_unsupported``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportFile:
    """One file of an export: ``path`` relative to the output folder."""

    path: str
    content: str
    media_type: str = "text/plain"

    def __post_init__(self) -> None:
        p = Path(self.path)
        if p.is_absolute() or ".." in p.parts or not self.path:
            raise ExportError("path", f"export file paths must be relative and stay inside the output folder; got {self.path!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Export:
    """What an exporter produced: files, the next command, and notes for the user."""

    format: str
    files: tuple[ExportFile, ...]
    next_command: str
    notes: tuple[str, ...] = ()

    def file(self, path: str) -> ExportFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "files": [{"path": f.path, "media_type": f.media_type, "content": f.content} for f in self.files],
            "next_command": self.next_command,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportContext:
    """What an exporter may know beyond the plan.

    ``modules`` maps a decision-group FQN to the module names it covers (from
    :func:`group_modules`); without it, groups are expanded by name (``.qkv`` →
    q/k/v projections, ``.gate_up`` → gate/up). ``device_capacity_bytes`` is the
    device tier of one accelerator; ``devices_per_node`` sizes ``torchrun``.
    ``model_path`` is what the commands load (a Hugging Face repo id or a folder).
    ``engine`` is the engine the export is checked against and sized for (set by
    :func:`export_plan`).
    """

    model_path: str | None = None
    modules: Mapping[str, tuple[str, ...]] | None = None
    # the memory tiers of the plan's hardware (names), when this installation knows the profile
    tiers: tuple[str, ...] | None = None
    arch: Any = None
    device_capacity_bytes: float | None = None
    devices_per_node: int | None = None
    engine: str | None = None  # the engine the files are for (``--engine``, else the plan's); see export_plan


@dataclass(frozen=True, slots=True, kw_only=True)
class Exporter:
    name: str
    description: str
    func: Callable[["PlanView", ExportContext], Export]
    #: The formats the exporter can write for a model, where fewer than its engine runs: architecture →
    #: {"kv": KV-cache formats, "weights": weight formats} (Optimum ExecuTorch keeps a float cache and
    #: groups int4 weights by 32), or None for every one. A plan made for the engine searches only those
    #: (planner.request.plan). "weight_only": integer weight formats it writes weight-only for the model
    #: where the engine would otherwise quantize their float activations at run time
    #: (planner.engines.Runtime.dynamic_act_quant; export_llama's int8 mode).
    limits: Callable[[Any], Mapping[str, tuple[str, ...]] | None] | None = None


#: Target name → exporter, in the order targets registered (see ``planner.export``).
EXPORTERS: dict[str, Exporter] = {}


def register(name: str, description: str, *, limits: Callable[[Any], Mapping[str, tuple[str, ...]] | None] | None = None
             ) -> Callable[[Callable[[PlanView, ExportContext], Export]], Callable]:
    """Decorator that adds an exporter function to :data:`EXPORTERS` under ``name`` (``limits``:
    see :class:`Exporter`)."""

    def add(func: Callable[[PlanView, ExportContext], Export]) -> Callable[[PlanView, ExportContext], Export]:
        if name in EXPORTERS:
            raise ValueError(f"export target {name!r} is registered twice")
        EXPORTERS[name] = Exporter(name=name, description=description, func=func, limits=limits)
        return func

    return add


# ---------------------------------------------------------------------------
# Plan access
# ---------------------------------------------------------------------------


def _plan_dict(plan: Any) -> dict:
    if isinstance(plan, Mapping):
        return dict(plan)
    from planner.plan import plan_to_dict  # a Plan object

    return plan_to_dict(plan)


def _need(d: Mapping, key: str, where: str = "") -> Any:
    if not isinstance(d, Mapping) or key not in d or d[key] is None:
        name = f"{where}.{key}" if where else key
        raise ExportError(name, f"the plan has no '{name}'; export needs a complete plan (see {{!plan}})")
    return d[key]


def _int(d: Mapping, key: str, where: str, default: int | None = None) -> int:
    v = d.get(key, default) if isinstance(d, Mapping) else default
    if v is None:
        return _need(d, key, where)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
        raise ExportError(f"{where}.{key}", f"plan field '{where}.{key}' must be a non-negative integer; got {v!r}")
    return int(v)


@dataclass(frozen=True, slots=True)
class PlanView:
    """The parts of a plan every exporter reads, checked once."""

    model: str
    hardware: str
    tp: int
    pp: int
    dp: int
    ep: int
    batch: int
    prompt: int
    gen: int
    kv: str
    choices: dict[str, dict]
    predicted: dict
    raw: dict

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp


def plan_view(plan: Any) -> PlanView:
    d = _plan_dict(plan)
    layout = _need(d, "layout")
    workload = _need(d, "workload")
    choices = _need(d, "choices")
    if not isinstance(choices, Mapping):
        raise ExportError("choices", f"plan field 'choices' must map group names to choices; got {type(choices).__name__}")
    for g, c in choices.items():
        if not isinstance(c, Mapping):
            raise ExportError(f"choices.{g}", f"choice for group {g!r} must be a mapping; got {type(c).__name__}")
    kv = d.get("kv") or "bf16"
    for key in ("model", "hardware"):
        # ids become file names and lines of the scripts an export writes: never a path or a second line
        if not is_id(_need(d, key)):
            raise ExportError(key, f"plan field '{key}' must be {ID_EXPECTED}; got {d[key]!r}")
    return PlanView(
        model=str(_need(d, "model")),
        hardware=str(_need(d, "hardware")),
        tp=max(1, _int(layout, "tp", "layout", 1)),
        pp=max(1, _int(layout, "pp", "layout", 1)),
        dp=max(1, _int(layout, "dp", "layout", 1)),
        ep=max(1, _int(layout, "ep", "layout", 1)),
        batch=max(1, _int(workload, "batch", "workload", 1)),
        prompt=_int(workload, "prompt", "workload", 0),
        gen=_int(workload, "gen", "workload", 0),
        kv=canonical(str(kv), "kv"),
        choices={str(g): dict(c) for g, c in choices.items()},
        predicted=dict(d.get("predicted") or {}),
        raw=d,
    )


def canonical(name: str, field_name: str) -> str:
    from planner.formats import FormatError, get_format

    try:
        return get_format(name).name
    except FormatError as e:
        raise ExportError(field_name, f"plan field '{field_name}': {e}") from None


def format_of(name: str):
    from planner.formats import get_format

    return get_format(name)


FLOAT16 = frozenset({"bf16", "fp16", "fp32"})


def weights_of(v: PlanView, group: str) -> str:
    return canonical(str(v.choices[group].get("weights") or "bf16"), f"choices.{group}.weights")


def acts_of(v: PlanView, group: str) -> str:
    return canonical(str(v.choices[group].get("activations") or "bf16"), f"choices.{group}.activations")


def sparsity_of(v: PlanView, group: str) -> str:
    s = v.choices[group].get("sparsity") or "dense"
    return str(s)

def export_formats() -> tuple[str, ...]:
    return tuple(EXPORTERS)


def export_plan(plan: Any, fmt: str | None = None, context: ExportContext | None = None, *,
                engine: str | None = None) -> Export:
    """Export ``plan`` (a Plan or its dict) for target ``fmt``; see :data:`EXPORTERS`.

    ``fmt`` left out: the exporter of ``engine``, else of the engine the plan records.
    ``engine`` (``tierwise export --engine``) is the engine the files are for; left out, the
    plan's engine when ``fmt`` writes files for it, else the target's own. Before writing,
    every group, the KV cache and the layout are checked against what that engine runs on the
    plan's hardware: a plan made for another engine that this one cannot run is refused with
    the groups and formats at fault and the ``tierwise plan ... --engine E`` command (plans
    that record no engine and no ``engine`` given: the target's own checks only)."""
    from .rules import engine_runs, resolve_target

    d = _plan_dict(plan)
    plan_engine = d.get("engine") if isinstance(d.get("engine"), str) else None
    key = None if fmt is None else str(fmt).strip().lower()
    recorded: tuple[str, ...] = ()
    if engine is None and plan_engine is not None and key not in ("yaml", "json"):
        plan_engine, recorded = _recorded_engine(d, plan_engine)
    if key is not None and key not in EXPORTERS:
        raise ExportError("format", f"unknown export format {fmt!r}; expected one of: {', '.join(EXPORTERS)}")
    if engine is not None and (not isinstance(engine, str) or not engine.strip()):
        raise ExportError("engine", f"{{@engine}} must be an engine id such as 'vllm'; got {engine!r}")
    key, checked = resolve_target(plan_engine, key, engine.strip() if engine else None)
    ctx = replace(context or ExportContext(), engine=checked)
    view = plan_view(d)
    if ctx.modules is not None:
        foreign = [g for g in view.choices if g not in ctx.modules]
        if foreign:
            shown = ", ".join(repr(g) for g in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ExportError("choices", f"the plan's groups {shown} are not decision groups of {view.model} (the plan "
                              "file was edited, or made for another version of the model); re-plan it")
        missing = [g for g in ctx.modules if g not in view.choices]
        if missing:
            shown = ", ".join(repr(g) for g in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise ExportError("choices", f"the plan has no choice for {shown}, decision group(s) of {view.model} that "
                              "every plan of it covers (the plan file was edited); re-plan it")
    if ctx.tiers is not None:
        bad = sorted({c.get("tier") for c in view.choices.values() if isinstance(c, Mapping)} - set(ctx.tiers) - {None})
        if bad:
            raise ExportError("choices", f"the plan puts weights in {', '.join(repr(t) for t in bad)}, which "
                              f"{view.hardware} does not have (its memory tiers: {', '.join(ctx.tiers)}); the plan "
                              "file was edited or made for another profile: re-plan it")
    if engine is not None or (key not in ("yaml", "json") and plan_engine is not None):
        # A plan that records no engine (written before plans did) keeps the target's own checks;
        # an engine asked for is checked whatever it exports (the plan file of vitis-ai for an
        # H100 plan is refused like vllm's files for a phone plan).
        # The engine of the format asked for (not the plan's, none named): a refusal names the format.
        engine_runs(view, key, checked, field="engine" if engine is not None or checked == plan_engine else "format",
                    ctx=ctx)
    out = EXPORTERS[key].func(view, ctx)
    return replace(out, notes=(*recorded, *out.notes)) if recorded and checked == plan_engine else out


def _recorded_engine(d: Mapping[str, Any], engine_id: str) -> tuple[str, tuple[str, ...]]:
    """(engine reference, notes) for exporting a plan with no ``--engine``: the profile file the
    plan was made with (``engine_profile``) when it recorded one — read again and checked
    against ``engine_hash``, so a missing or changed file is an error naming ``engine`` rather
    than a catalog engine of the same id put in its place — else the catalog id, with a note
    when the catalog's profile has changed since the plan was made."""
    from planner.engines import load_engine

    profile, digest = d.get("engine_profile"), d.get("engine_hash")
    if isinstance(profile, str) and profile:
        from hwmodels.loader import is_file

        if not is_file(Path(profile)):
            where = "" if Path(profile).is_absolute() else " (a relative path is read from the current folder)"
            raise ExportError("engine", f"the plan was made with the engine profile {profile!r}, which is not a file "
                              f"here{where}; pass {{@engine}} with that profile")
        try:
            spec = load_engine(profile)
        except TierwiseError as exc:
            raise ExportError("engine", f"the plan was made with the engine profile {profile!r}, which no longer reads "
                              f"as one ({exc.render('python')}); pass {{@engine}} with a profile") from None
        if spec.id != engine_id:
            raise ExportError("engine", f"the plan's engine is {engine_id!r} but its engine_profile {profile!r} is a "
                              f"profile of {spec.id!r}; pass {{@engine}} with the profile to export for")
        if isinstance(digest, str) and digest != f"sha256:{spec.content_hash}":
            raise ExportError("engine", f"the engine profile {profile!r} has changed since the plan was made (its "
                              "sha256 differs from the plan's engine_hash); re-plan with it, or pass {@engine} "
                              f"{profile} to export for the profile as it is now")
        return profile, ()
    try:
        spec = load_engine(engine_id)
    except TierwiseError:
        return engine_id, ()
    if isinstance(digest, str) and digest != f"sha256:{spec.content_hash}":
        return engine_id, (f"the catalog's {engine_id} profile has changed since this plan was made (engine_hash "
                           "differs): the files follow the profile as it is now",)
    return engine_id, ()


def write_export(export: Export, out_dir: str | os.PathLike) -> list[Path]:
    """Write every file of ``export`` under ``out_dir`` — all of them or none.

    Files are first written into a temporary folder beside ``out_dir`` and then moved
    in, so a failure leaves no half-written export. Shell scripts are made executable.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tierwise-export-", dir=out))
    written: list[Path] = []
    try:
        staged = []
        for f in export.files:
            p = tmp / f.path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f.content, encoding="utf-8")
            if f.path.endswith(".sh"):
                p.chmod(0o755)
            staged.append((p, out / f.path))
        for src, dst in staged:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            written.append(dst)
    finally:
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        tmp.rmdir()
    return written
