"""A compression plan as data: versioned, strictly parsed, checksummed YAML/JSON.

A :class:`Plan` records what was asked (model, hardware, workload, constraints, objective,
content hashes of the profiles used), what was chosen (the parallel layout, the KV-cache
format and an ordered map from decision-group FQN to :class:`GroupChoice`), what the cost
model predicts for it, and how the solver got there: a plan is data, never code.

Serialisation rules:

* :func:`plan_to_dict` gives plain JSON types only; non-finite numbers become ``null``.
* :func:`plan_from_dict` accepts known keys and types only and names the offending field
  (``"plan.yaml: 'layout.tp' must be an int >= 1; got 0"``); a newer ``version`` than
  :data:`PLAN_VERSION` is refused, never guessed at.
* Files carry a ``checksum``: sha256 of the canonical JSON of everything else
  (``json.dumps(..., sort_keys=True, separators=(",", ":"))``). A file whose content no
  longer matches is refused, so a hand-edited plan cannot pass for a solved one.
* :func:`save_plan` writes YAML (``.yaml``/``.yml``) or JSON (``.json``) atomically
  (temporary file + rename); :func:`load_plan` parses with the safe YAML loader / ``json``
  only — no tags, no pickles — and refuses a key given twice in one mapping
  (:func:`planner.fileio.parse_document`).

Records support both attribute and item access (``plan.layout.tp`` and
``plan.layout["tp"]``) so that code written against the dictionary form keeps working.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from hwmodels.errors import per_front_end
from planner.errors import TierwiseError
from planner.fileio import DuplicateKeyError, atomic_write_text, parse_document
from planner.costmodel import Choice, Layout, Serving
from planner.formats import FormatError, NumericsError, get_format
from planner.numerics import Numerics, is_rank
from planner.results import PER_TOKEN_UNITS

__all__ = [
    "OBJECTIVES",
    "PLAN_VERSION",
    "GroupChoice",
    "LayerPrediction",
    "Plan",
    "PlanConstraints",
    "PlanError",
    "PlanLayout",
    "PlanWorkload",
    "Predicted",
    "SolverStats",
    "TierPrediction",
    "content_hash",
    "load_plan",
    "plan_checksum",
    "plan_from_dict",
    "plan_to_dict",
    "save_plan",
    "tool_version",
    "with_engine",
]

#: Version of the plan file layout written by this tierwise.
PLAN_VERSION = 1
OBJECTIVES = ("accuracy", "latency", "memory", "cost", "weighted")
SOLVER_STATUSES = ("optimal", "feasible", "time_limit")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_SOURCE = re.compile(r"^(prior|weights|data|file:.+)$")
_ENGINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class PlanError(TierwiseError, ValueError):
    """A plan that cannot be built, read or trusted. ``field`` is the dotted path of the
    offending entry (``None`` for whole-file problems)."""

    code = "invalid_plan"

    def __init__(self, message: str, field: str | None = None):
        TierwiseError.__init__(self, message, field=field)


def tool_version() -> str:
    """Installed tierwise version (``"unknown"`` when running from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tierwise")
    except PackageNotFoundError:
        return "unknown"


def _canonical(obj: Any) -> Any:
    """JSON-ready canonical form: dataclasses → dicts of fields, sets → sorted lists,
    mappings → dicts with string keys, non-finite floats → strings (hash input only)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted((_canonical(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True, default=str))
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _canonical(obj.item())
    return str(obj)


def content_hash(obj: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of a profile's content (a dataclass such as
    ``ArchSpec`` / ``DeviceSpec``, or a mapping)."""
    text = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


class _Record:
    """Item access on a frozen dataclass (``rec["tp"]`` is ``rec.tp``)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def __contains__(self, key: object) -> bool:
        return key in self.keys()


def _err(path: str, expected: str, got: Any) -> PlanError:
    try:
        shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    except ValueError:  # an int past Python's 4300-digit limit for text
        shown = "an int of more than 4300 digits"
    if len(shown) > 80:  # a huge value is named, not echoed
        shown = f"{shown[:60]}… ({len(shown)} characters)"
    return PlanError(f"'{path}' must be {expected}; got {shown}", field=path)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    """A number a float holds (an int past 1.8e308 does not: ``math.isfinite`` would raise on it)."""
    try:
        return _is_num(v) and math.isfinite(v)
    except OverflowError:
        return False


def _check_int(v: Any, path: str, lo: int = 0, hi: int | None = None) -> int:
    if not _is_int(v) or v < lo:
        raise _err(path, f"an int >= {lo}", v)
    if hi is not None and v > hi:
        raise _err(path, f"an int from {lo} to {hi} (what `tierwise plan` accepts)", v)
    return int(v)


def _check_float(v: Any, path: str, *, lo: float | None = 0.0, optional: bool = False, positive: bool = False) -> float | None:
    if v is None and optional:
        return None
    if not _finite(v):
        raise _err(path, "a finite number" + (" or null" if optional else ""), v)
    if positive and v <= 0:
        raise _err(path, "a number > 0" + (" or null" if optional else ""), v)
    if lo is not None and v < lo:
        raise _err(path, f"a number >= {lo:g}" + (" or null" if optional else ""), v)
    return float(v)


def _check_str(v: Any, path: str, *, empty: bool = False) -> str:
    if not isinstance(v, str) or (not empty and not v.strip()):
        raise _err(path, "a string" if empty else "a non-empty string", v)
    return v


def _check_bool(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise _err(path, "true or false", v)
    return v


def _finite_or_none(v: Any) -> float | None:
    return float(v) if _finite(v) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChoice(Numerics, _Record):
    """The choice for one decision group: its :class:`~planner.numerics.Numerics` (weight
    format, sparsity, activation (compute) format, optional low-rank factorisation) and the
    memory tier its weights live in."""

    tier: str

    def __post_init__(self) -> None:
        # Canonical names (aliases resolved) so that plans compare and round-trip exactly.
        try:
            w, sp, a = self.resolved()
        except NumericsError as exc:
            raise PlanError(str(exc), field=exc.field) from None
        if not isinstance(self.tier, str) or not self.tier.strip():
            raise _err("tier", "a memory tier name", self.tier)
        if self.low_rank is not None and not is_rank(self.low_rank):
            raise _err("low_rank", "an int >= 1 or null", self.low_rank)
        object.__setattr__(self, "weights", w.name)
        object.__setattr__(self, "sparsity", sp.name)
        object.__setattr__(self, "activations", a.name)

    def to_choice(self, kv: str) -> Choice:
        """The cost model's :class:`~planner.costmodel.Choice` for this group."""
        return Choice.of(self, kv=kv)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"weights": self.weights, "sparsity": self.sparsity, "activations": self.activations,
                             "tier": self.tier}
        if self.low_rank is not None:
            d["low_rank"] = self.low_rank
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanLayout(_Record):
    """Tensor, pipeline, data (replica) and expert parallel degrees."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "ep"):
            _check_int(getattr(self, name), name, 1, MAX_DEVICES)

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp

    def to_layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.ep)

    @classmethod
    def from_layout(cls, layout: Layout) -> PlanLayout:
        return cls(tp=layout.tp, pp=layout.pp, dp=layout.dp, ep=layout.ep)

    def to_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "pp": self.pp, "dp": self.dp, "ep": self.ep}


#: The largest batch and token counts a plan is made for (``tierwise plan`` refuses more).
MAX_BATCH = 1 << 24
MAX_DEVICES = 1 << 16  # as `tierwise plan --devices` / `--tp` accept
MAX_TOKENS = 1 << 26


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanWorkload(_Record):
    """Sequences per replica and tokens per request the plan was sized for."""

    batch: int = 1
    prompt: int = 512
    gen: int = 128

    def __post_init__(self) -> None:
        # the request layer's bounds (planner.request.plan checks with these): a hand-edited plan cannot carry more
        _check_int(self.batch, "batch", 1, MAX_BATCH)
        _check_int(self.prompt, "prompt", 0, MAX_TOKENS)
        _check_int(self.gen, "gen", 0, MAX_TOKENS)

    def to_serving(self) -> Serving:
        return Serving(batch=self.batch, prompt=self.prompt, gen=self.gen)

    def to_dict(self) -> dict[str, int]:
        return {"batch": self.batch, "prompt": self.prompt, "gen": self.gen}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanConstraints(_Record):
    """What the plan had to satisfy. ``pins`` maps a group FQN or glob pattern
    (``model.lm_head``, ``model.layers.*.mlp.down_proj``) to an option key."""

    max_memory_per_device_bytes: float | None = None
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None
    avg_bits: float | None = None
    allow_offload: bool = False
    pins: Mapping[str, str] = field(default_factory=dict)
    # tpot_slo_s came from the hardware's default (a phone's reading-speed limit), not from the request; false in
    # plans written before plans said.
    tpot_slo_default: bool = False

    def __post_init__(self) -> None:
        for name in ("max_memory_per_device_bytes", "ttft_slo_s", "tpot_slo_s", "avg_bits"):
            v = _check_float(getattr(self, name), name, optional=True, positive=True)
            object.__setattr__(self, name, v)
        _check_bool(self.allow_offload, "allow_offload")
        _check_bool(self.tpot_slo_default, "tpot_slo_default")
        if self.tpot_slo_default and self.tpot_slo_s is None:
            raise _err("tpot_slo_default", "false when there is no tpot_slo_s", self.tpot_slo_default)
        if not isinstance(self.pins, Mapping):
            raise _err("pins", "a mapping of group pattern → option key", self.pins)
        pins = {}
        for k, v in self.pins.items():
            _check_str(k, "pins")
            pins[k] = _check_str(v, f"pins.{k}")
        object.__setattr__(self, "pins", MappingProxyType(pins))

    def to_dict(self) -> dict[str, Any]:
        return {"max_memory_per_device_bytes": self.max_memory_per_device_bytes, "ttft_slo_s": self.ttft_slo_s,
                "tpot_slo_s": self.tpot_slo_s, "avg_bits": self.avg_bits, "allow_offload": self.allow_offload,
                "pins": dict(self.pins), **({"tpot_slo_default": True} if self.tpot_slo_default else {})}


@dataclass(frozen=True, slots=True, kw_only=True)
class TierPrediction(_Record):
    """Predicted use of one memory tier of one device."""

    role: str
    capacity_bytes: float
    used_bytes: float
    weights_bytes: float
    kv_cache_bytes: float
    activations_bytes: float

    def __post_init__(self) -> None:
        _check_str(self.role, "role")
        for name in ("capacity_bytes", "used_bytes", "weights_bytes", "kv_cache_bytes", "activations_bytes"):
            object.__setattr__(self, name, _check_float(getattr(self, name), name))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.keys()}


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerPrediction(_Record):
    """Per repeated layer: weight bytes on one device, its share of a decode step, and the
    summed sensitivity of its groups' choices."""

    layer: str
    weights_bytes: float
    decode_s: float
    sensitivity: float

    def __post_init__(self) -> None:
        _check_str(self.layer, "layer")
        for name in ("weights_bytes", "decode_s", "sensitivity"):
            object.__setattr__(self, name, _check_float(getattr(self, name), name))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.keys()}


_PREDICTED_FLOATS = ("ttft_s", "tpot_s", "latency_s", "output_tokens_per_s", "decode_tokens_per_s",
                     "per_device_bytes", "weights_bytes", "kv_cache_bytes", "activations_bytes",
                     "offloaded_weights_bytes", "avg_weight_bits", "sensitivity")
_PREDICTED_OPTIONAL = ("energy_j_per_token", "usd_per_million_tokens")


@dataclass(frozen=True, slots=True, kw_only=True)
class Predicted(_Record):
    """What the cost model predicts for the plan (an independent re-evaluation of the
    chosen configuration, not the solver's linearisation). Bytes are per device unless
    the name says otherwise (``weights_bytes`` / ``kv_cache_bytes``: whole model)."""

    ttft_s: float
    tpot_s: float
    latency_s: float
    output_tokens_per_s: float
    decode_tokens_per_s: float
    per_device_bytes: float
    weights_bytes: float
    kv_cache_bytes: float
    activations_bytes: float
    offloaded_weights_bytes: float
    fits: bool
    tiers: Mapping[str, TierPrediction]
    avg_weight_bits: float
    sensitivity: float
    energy_j_per_token: float | None = None
    usd_per_million_tokens: float | None = None
    decode_bound: str = ""
    per_layer: tuple[LayerPrediction, ...] = ()
    notes: tuple[str, ...] = ()
    # Device memory of the engine's runtime context counted in per_device_bytes (plans priced with
    # their engine's runtime facts); None in plans written before plans counted it.
    runtime_context_bytes: float | None = None
    # What energy_j_per_token and usd_per_million_tokens count (planner.results.PER_TOKEN_UNITS:
    # output_tokens, prompt_tokens, images, image_patches); None in plans written before plans said.
    per_token_basis: str | None = None
    # Whether the model generates tokens and keeps a KV cache (ArchSpec.generative): false for an
    # encoder, a ViT or a CNN, whose tpot_s and output-token rates are 0; None in older plans.
    generative: bool | None = None
    # The p10–p90 error bars of the predicted times and rates (planner.uncertainty.Uncertainty), as an
    # estimate of the same configuration carries them; None in plans written before plans carried them.
    uncertainty: Any = None

    def __post_init__(self) -> None:
        for name in _PREDICTED_FLOATS:
            object.__setattr__(self, name, _check_float(getattr(self, name), name))
        if self.uncertainty is not None:
            from planner.uncertainty import Uncertainty

            if not isinstance(self.uncertainty, Uncertainty):
                raise _err("uncertainty", "an Uncertainty (planner.uncertainty)", self.uncertainty)
            for k, i in self.uncertainty.intervals.items():
                # each band brackets the figure the plan predicts, not another one
                if k in _PREDICTED_FLOATS and not math.isclose(i.value, getattr(self, k), rel_tol=1e-9, abs_tol=1e-300):
                    raise _err(f"uncertainty.intervals.{k}.value", f"{k}'s predicted value ({getattr(self, k):.6g})", i.value)
        object.__setattr__(self, "runtime_context_bytes",
                           _check_float(self.runtime_context_bytes, "runtime_context_bytes", optional=True))
        for name in _PREDICTED_OPTIONAL:
            object.__setattr__(self, name, _check_float(getattr(self, name), name, optional=True))
        _check_bool(self.fits, "fits")
        if self.generative is not None:
            _check_bool(self.generative, "generative")
        if not isinstance(self.tiers, Mapping) or not all(isinstance(t, TierPrediction) for t in self.tiers.values()):
            raise _err("tiers", "a mapping of tier name → TierPrediction", self.tiers)
        object.__setattr__(self, "tiers", MappingProxyType(dict(self.tiers)))
        _check_str(self.decode_bound, "decode_bound", empty=True)
        if self.per_token_basis is not None and self.per_token_basis not in PER_TOKEN_UNITS:
            raise _err("per_token_basis", f"one of {', '.join(PER_TOKEN_UNITS)}", self.per_token_basis)
        per_layer = tuple(self.per_layer)
        if not all(isinstance(p, LayerPrediction) for p in per_layer):
            raise _err("per_layer", "a list of LayerPrediction", self.per_layer)
        object.__setattr__(self, "per_layer", per_layer)
        notes = tuple(self.notes)
        for i, n in enumerate(notes):
            _check_str(n, f"notes[{i}]")
        object.__setattr__(self, "notes", notes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in _PREDICTED_FLOATS}
        d["fits"] = self.fits
        d["tiers"] = {k: t.to_dict() for k, t in self.tiers.items()}
        for k in _PREDICTED_OPTIONAL:
            d[k] = self.__getattribute__(k)
        d["decode_bound"] = self.decode_bound
        d["per_layer"] = [p.to_dict() for p in self.per_layer]
        d["notes"] = list(self.notes)
        if self.runtime_context_bytes is not None:
            d["runtime_context_bytes"] = self.runtime_context_bytes
        if self.per_token_basis is not None:
            d["per_token_basis"] = self.per_token_basis
        if self.generative is not None:
            d["generative"] = self.generative
        if self.uncertainty is not None:
            d["uncertainty"] = self.uncertainty.to_dict()
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class SolverStats(_Record):
    """How the plan was found: backend, status (``optimal`` within the gap, or ``feasible``
    when the time limit stopped it), objective, relative gap, wall time, model size, and the
    number of (layout, KV format) candidates whose ILP was solved."""

    backend: str
    status: str
    objective: float
    gap: float | None
    time_s: float
    variables: int
    constraints: int
    candidates_solved: int = 1

    def __post_init__(self) -> None:
        _check_str(self.backend, "backend")
        if self.status not in SOLVER_STATUSES:
            raise _err("status", f"one of {', '.join(SOLVER_STATUSES)}", self.status)
        object.__setattr__(self, "objective", _check_float(self.objective, "objective", lo=None))
        object.__setattr__(self, "gap", _check_float(self.gap, "gap", optional=True))
        object.__setattr__(self, "time_s", _check_float(self.time_s, "time_s"))
        _check_int(self.variables, "variables", 0)
        _check_int(self.constraints, "constraints", 0)
        _check_int(self.candidates_solved, "candidates_solved", 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.keys()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan(_Record):
    """A solved compression + parallelism plan (see the module docstring).

    ``choices`` is ordered in model order; ``kv`` is the KV-cache format of the whole model;
    ``activations`` is the compute format of the operators outside decision groups
    (attention core, norms).
    """

    version: int = PLAN_VERSION
    tool_version: str
    created_at: str
    model: str
    hardware: str
    model_hash: str
    hardware_hash: str
    layout: PlanLayout
    devices: int
    workload: PlanWorkload
    constraints: PlanConstraints
    objective: str
    kv: str
    activations: str = "bf16"
    choices: Mapping[str, GroupChoice]
    predicted: Predicted
    solver: SolverStats
    sensitivity_source: str
    engine: str | None = None
    # How the engine quantizes integer activations (planner.format_noise.ActivationRecipe: SmoothQuant's
    # strength, activation scale blocks per weight format), as its profile said when the plan was made;
    # export and validate follow it. None: not recorded (plans written before it was; see
    # plan_activation_recipe).
    activation_recipe: Any = None
    # The engine profile as the planner read it: ``engine_hash`` its content's sha256 (catalog and
    # files alike), ``engine_profile`` the absolute path of a profile file (None for the catalog), so
    # that export follows the profile the plan was priced with, not a catalog engine of the same id.
    engine_profile: str | None = None
    engine_hash: str | None = None

    def __post_init__(self) -> None:
        _check_int(self.version, "version", 1)
        if self.version > PLAN_VERSION:
            raise PlanError(f"'version' {self.version} is newer than this tierwise supports ({PLAN_VERSION})",
                            field="version")
        _check_str(self.tool_version, "tool_version")
        _check_created_at(self.created_at, "created_at")
        _check_str(self.model, "model")
        _check_str(self.hardware, "hardware")
        for name in ("model_hash", "hardware_hash"):
            v = getattr(self, name)
            if not isinstance(v, str) or not _HASH.match(v):
                raise _err(name, "'sha256:' followed by 64 lower-case hex digits", v)
        if not isinstance(self.layout, PlanLayout):
            raise _err("layout", "a PlanLayout", self.layout)
        _check_int(self.devices, "devices", 1, MAX_DEVICES)
        if self.devices != self.layout.devices:
            raise PlanError(f"'devices' ({self.devices}) must equal tp×pp×dp = {self.layout.devices}", field="devices")
        if not isinstance(self.workload, PlanWorkload):
            raise _err("workload", "a PlanWorkload", self.workload)
        if not isinstance(self.constraints, PlanConstraints):
            raise _err("constraints", "a PlanConstraints", self.constraints)
        if self.objective not in OBJECTIVES:
            raise _err("objective", f"one of {', '.join(OBJECTIVES)}", self.objective)
        for name, role in (("kv", "is_kv"), ("activations", "is_activation")):
            try:
                fmt = get_format(getattr(self, name))
            except FormatError as exc:
                raise PlanError(f"'{name}': {exc}", field=name) from None
            if not getattr(fmt, role):
                raise PlanError(f"'{name}' {fmt.name!r} is not a {'KV-cache' if name == 'kv' else 'activation'} format",
                                field=name)
            object.__setattr__(self, name, fmt.name)
        if not isinstance(self.choices, Mapping) or not self.choices:
            raise _err("choices", "a non-empty mapping of group FQN → GroupChoice", self.choices)
        for k, v in self.choices.items():
            _check_str(k, "choices")
            if not isinstance(v, GroupChoice):
                raise _err(f"choices.{k}", "a GroupChoice", v)
        object.__setattr__(self, "choices", MappingProxyType(dict(self.choices)))
        if not isinstance(self.predicted, Predicted):
            raise _err("predicted", "a Predicted", self.predicted)
        if not isinstance(self.solver, SolverStats):
            raise _err("solver", "a SolverStats", self.solver)
        if not isinstance(self.sensitivity_source, str) or not _SOURCE.match(self.sensitivity_source):
            raise _err("sensitivity_source", "'prior', 'weights', 'data' or 'file:<name>'", self.sensitivity_source)
        if self.engine is not None and (not isinstance(self.engine, str) or not _ENGINE.match(self.engine)):
            raise _err("engine", "an engine id such as 'vllm' (profiles/engines) or null", self.engine)
        if self.activation_recipe is not None:
            from planner.format_noise import ActivationRecipe

            if not isinstance(self.activation_recipe, ActivationRecipe):
                raise _err("activation_recipe", "an ActivationRecipe or null", self.activation_recipe)
            if self.engine is None:
                raise PlanError("'activation_recipe' is an engine's recipe; the plan records no 'engine'",
                                field="activation_recipe")
            _recipe_from_dict(self.activation_recipe.to_dict())
        if self.engine_hash is not None and (not isinstance(self.engine_hash, str) or not _HASH.match(self.engine_hash)):
            raise _err("engine_hash", "'sha256:' followed by 64 lower-case hex digits", self.engine_hash)
        if self.engine_profile is not None and (not isinstance(self.engine_profile, str) or not self.engine_profile.strip()
                                                or len(self.engine_profile) > 4096 or "\x00" in self.engine_profile):
            raise _err("engine_profile", "the path of an engine profile file (text of at most 4096 characters)",
                       self.engine_profile)
        for name in ("engine_profile", "engine_hash"):
            if getattr(self, name) is not None and self.engine is None:
                raise PlanError(f"'{name}' describes the plan's engine; the plan records no 'engine'", field=name)
        if self.engine_profile is not None and self.engine_hash is None:
            raise PlanError("'engine_profile' needs the profile's 'engine_hash' beside it (export checks the file "
                            "against it)", field="engine_hash")

    def to_dict(self) -> dict[str, Any]:
        """The plan's JSON-safe dict with its checksum, as ``plan_to_dict`` (and the plan file) has it."""
        return plan_to_dict(self)

    # -- views for the cost model ----------------------------------------------------------

    def overrides(self) -> dict[str, Choice]:
        """Group FQN → cost-model :class:`~planner.costmodel.Choice` (for ``estimate_inference``)."""
        return {k: c.to_choice(self.kv) for k, c in self.choices.items()}

    def default_choice(self) -> Choice:
        """The choice of operators outside the decision groups (attention core, norms)."""
        return Choice(weights="bf16", activations=self.activations, kv=self.kv, sparsity="dense")

    def placement(self) -> dict[str, float] | None:
        """Fraction of one device's weights per tier, or ``None`` when every weight is on
        the device tier (the cost model then places them itself)."""
        w = {k: t.weights_bytes for k, t in self.predicted.tiers.items() if t.weights_bytes > 0}
        total = sum(w.values())
        tiers = {c.tier for c in self.choices.values()}
        if total <= 0 or len(tiers) <= 1 and len(w) <= 1:
            return None
        return {k: v / total for k, v in w.items()}


def with_engine(plan: Plan, engine: Any) -> Plan:
    """``plan`` recording the engine it was made for (an engine id, an ``EngineSpec`` or the
    ``Support`` the planner searched) and that engine's recipe for integer activations, as the
    profile the planner read states it (a profile file given by path included); ``None`` leaves it
    as it is."""
    eid = getattr(engine, "engine", None) or getattr(engine, "id", None) or engine
    if eid is None or not isinstance(plan, Plan):
        return plan
    runtime = getattr(engine, "runtime", None)
    if runtime is None:
        from planner.engines import load_engine

        try:
            runtime = load_engine(str(eid)).runtime
        except TierwiseError:  # an id this installation lacks: nothing to record
            runtime = None
    from planner.format_noise import recipe_of

    recipe = recipe_of(runtime) if runtime is not None else None
    digest = getattr(engine, "content_hash", "") or None
    # A profile file is recorded by its absolute path: export from another folder finds it.
    profile = getattr(engine, "profile", "") or None
    return dataclasses.replace(plan, engine=str(eid), activation_recipe=recipe,
                               engine_profile=os.path.abspath(profile) if profile else None,
                               engine_hash=f"sha256:{digest}" if digest else None)


def _recipe_from_dict(v: Any, path: str = "activation_recipe"):
    from planner.format_noise import recipe_from_dict

    return recipe_from_dict(v, path, _err)


def plan_activation_recipe(plan: Any) -> tuple[str | None, Any]:
    """(engine id, :class:`planner.format_noise.ActivationRecipe`) that the plan's integer activations
    follow when it is exported, applied or validated: the recipe the plan recorded when it was made; for a
    plan that records none (written before recipes were), its engine's catalog profile; ``(id, None)``
    for an engine this installation lacks, ``(None, None)`` for a plan without an engine. ``plan``: a
    :class:`Plan` or its dict form."""
    get = plan.get if isinstance(plan, Mapping) else (lambda k, default=None: getattr(plan, k, default))
    engine = get("engine")
    recorded = get("activation_recipe")
    if not isinstance(engine, str) or not engine:
        if recorded is not None:
            raise PlanError("'activation_recipe' is an engine's recipe; the plan records no 'engine'",
                            field="activation_recipe")
        return None, None
    from planner.engines import load_engine
    from planner.format_noise import ActivationRecipe, recipe_of

    if isinstance(recorded, ActivationRecipe):
        return engine, recorded
    if recorded is not None:
        return engine, _recipe_from_dict(recorded)

    try:
        return engine, recipe_of(load_engine(engine).runtime)
    except TierwiseError:
        return engine, None


def _check_created_at(v: Any, path: str) -> str:
    _check_str(v, path)
    try:
        t = _dt.datetime.fromisoformat(v)
    except ValueError:
        raise _err(path, "an ISO 8601 UTC timestamp such as 2026-01-31T12:00:00Z", v) from None
    if t.tzinfo is None or t.utcoffset() != _dt.timedelta(0):
        raise _err(path, "an ISO 8601 timestamp in UTC (ending in Z or +00:00)", v)
    return v


def utc_now() -> str:
    """Current time as ISO 8601 UTC with a ``Z`` suffix, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------
# Dict form
# ---------------------------------------------------------------------------


def _content_dict(plan: Plan) -> dict[str, Any]:
    return {
        "version": plan.version,
        "tool_version": plan.tool_version,
        "created_at": plan.created_at,
        "model": plan.model,
        "hardware": plan.hardware,
        "model_hash": plan.model_hash,
        "hardware_hash": plan.hardware_hash,
        "layout": plan.layout.to_dict(),
        "devices": plan.devices,
        "workload": plan.workload.to_dict(),
        "constraints": plan.constraints.to_dict(),
        "objective": plan.objective,
        "kv": plan.kv,
        "activations": plan.activations,
        "sensitivity_source": plan.sensitivity_source,
        "solver": plan.solver.to_dict(),
        "predicted": plan.predicted.to_dict(),
        "choices": {k: c.to_dict() for k, c in plan.choices.items()},
        # The engine the plan was made for (docs/engines.md); plans written before engines
        # were recorded have none and load as ``engine=None``.
        **({"engine": plan.engine} if plan.engine is not None else {}),
        # Its recipe for integer activations as the engine's profile stated it (with_engine).
        **({"activation_recipe": plan.activation_recipe.to_dict()} if plan.activation_recipe is not None else {}),
        # The profile it was read from (a file's path as given) and its content hash (with_engine).
        **({"engine_profile": plan.engine_profile} if plan.engine_profile is not None else {}),
        **({"engine_hash": plan.engine_hash} if plan.engine_hash is not None else {}),
    }


def _checksum_of(content: Mapping[str, Any]) -> str:
    body = {k: v for k, v in content.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_checksum(plan: Plan) -> str:
    """The checksum :func:`plan_to_dict` stores for ``plan``."""
    return _checksum_of(_content_dict(plan))


def _check_path(path: Any) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise PlanError(f"'path' must be the path of a plan file (.yaml, .yml or .json); got "
                        f"{type(path).__name__} {path!r}"[:300], field="path")
    return Path(path)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """JSON-safe dict of ``plan`` with its ``checksum`` (round-trips through
    :func:`plan_from_dict` to an equal plan)."""
    if not isinstance(plan, Plan):
        raise PlanError(f"'plan' must be a Plan (planner.plan / load_plan); got {type(plan).__name__}"
                        + (" (plan_from_dict reads a plan's dict)" if isinstance(plan, Mapping) else ""), field="plan")
    d = _content_dict(plan)
    d["checksum"] = _checksum_of(d)
    return d


_TOP_REQUIRED = ("version", "tool_version", "created_at", "model", "hardware", "model_hash", "hardware_hash",
                 "layout", "devices", "workload", "constraints", "objective", "kv", "choices", "predicted", "solver",
                 "sensitivity_source")
_TOP_OPTIONAL = ("activations", "checksum", "engine", "activation_recipe", "engine_profile", "engine_hash")


def _mapping(v: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise _err(path, "a mapping", v)
    return v


def _keys(d: Mapping[str, Any], path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    prefix = f"{path}." if path else ""
    for k in d:
        if not isinstance(k, str) or (k not in required and k not in optional):
            known = ", ".join(required + optional)
            raise PlanError(f"unknown key '{prefix}{k}' (known: {known})", field=f"{prefix}{k}")
    for k in required:
        if k not in d:
            raise PlanError(f"missing key '{prefix}{k}'", field=f"{prefix}{k}")


def _build(cls: type, path: str, kwargs: dict[str, Any]) -> Any:
    """Construct a record, prefixing the field path of its own validation errors."""
    try:
        return cls(**kwargs)
    except PlanError as exc:
        sub = f"{path}.{exc.field}" if exc.field else path
        msg = exc.message
        if exc.field and f"'{exc.field}'" in msg:
            msg = msg.replace(f"'{exc.field}'", f"'{sub}'", 1)
        else:
            msg = f"'{sub}': {msg}"
        raise PlanError(msg, field=sub) from None


def _check_version(d: Mapping[str, Any]) -> int:
    if "version" not in d:
        raise PlanError("missing key 'version' (is this a tierwise plan?)", field="version")
    v = d["version"]
    if not _is_int(v) or v < 1:
        raise _err("version", "an int >= 1", v)
    if v > PLAN_VERSION:
        raise PlanError(f"'version' {v if v < 10**6 else 'of over 6 digits'} is newer than this tierwise supports ({PLAN_VERSION}); "
                        "upgrade tierwise to read it", field="version")
    return v


def plan_from_dict(d: Mapping[str, Any], *, require_checksum: bool = False) -> Plan:
    """Strictly parse a plan dict (unknown keys, wrong types, unknown formats and newer
    versions raise :class:`PlanError` naming the field). A ``checksum``, when present (or
    required), must match the content."""
    d = _mapping(d, "plan")
    _check_version(d)
    _keys(d, "", _TOP_REQUIRED, _TOP_OPTIONAL)
    if "checksum" in d:
        try:
            expected = _checksum_of(d)
        except (TypeError, ValueError, RecursionError):  # NaN, non-string keys, absurd nesting: not what save_plan writes
            raise PlanError("was modified after it was written: its content (a NaN, a non-string key or a too deeply "
                            "nested value) cannot be what save_plan wrote, so no checksum matches it",
                            field="checksum") from None
        if d["checksum"] != expected:
            raise PlanError("was modified after it was written: checksum mismatch", field="checksum")
    elif require_checksum:
        raise PlanError("has no 'checksum'; plans are written with their checksum by `tierwise plan --out` or "
                        "save_plan()", field="checksum")

    lay = _mapping(d["layout"], "layout")
    _keys(lay, "layout", ("tp", "pp", "dp", "ep"))
    layout = _build(PlanLayout, "layout", dict(lay))
    wl = _mapping(d["workload"], "workload")
    _keys(wl, "workload", ("batch", "prompt", "gen"))
    workload = _build(PlanWorkload, "workload", dict(wl))
    co = _mapping(d["constraints"], "constraints")
    _keys(co, "constraints", ("max_memory_per_device_bytes", "ttft_slo_s", "tpot_slo_s", "avg_bits", "allow_offload",
                              "pins"), ("tpot_slo_default",))
    constraints = _build(PlanConstraints, "constraints", {**co, "pins": _mapping(co["pins"], "constraints.pins")})

    so = _mapping(d["solver"], "solver")
    _keys(so, "solver", ("backend", "status", "objective", "gap", "time_s", "variables", "constraints"),
          ("candidates_solved",))
    solver = _build(SolverStats, "solver", dict(so))

    pr = _mapping(d["predicted"], "predicted")
    _keys(pr, "predicted", _PREDICTED_FLOATS + ("fits", "tiers"),
          _PREDICTED_OPTIONAL + ("decode_bound", "per_layer", "notes", "runtime_context_bytes", "per_token_basis",
                                 "generative", "uncertainty"))
    tiers = {}
    for name, t in _mapping(pr["tiers"], "predicted.tiers").items():
        path = f"predicted.tiers.{name}"
        t = _mapping(t, path)
        _keys(t, path, ("role", "capacity_bytes", "used_bytes", "weights_bytes", "kv_cache_bytes", "activations_bytes"))
        tiers[_check_str(name, "predicted.tiers")] = _build(TierPrediction, path, dict(t))
    per_layer = []
    raw_layers = pr.get("per_layer", [])
    if not isinstance(raw_layers, list):
        raise _err("predicted.per_layer", "a list", raw_layers)
    for i, p in enumerate(raw_layers):
        path = f"predicted.per_layer[{i}]"
        p = _mapping(p, path)
        _keys(p, path, ("layer", "weights_bytes", "decode_s", "sensitivity"))
        per_layer.append(_build(LayerPrediction, path, dict(p)))
    notes = pr.get("notes", [])
    if not isinstance(notes, list):
        raise _err("predicted.notes", "a list of strings", notes)
    pkw = {k: pr[k] for k in _PREDICTED_FLOATS + ("fits",)}
    pkw.update({k: pr[k] for k in _PREDICTED_OPTIONAL + ("decode_bound", "runtime_context_bytes", "per_token_basis",
                                                         "generative") if k in pr})
    if pr.get("uncertainty") is not None:  # absent or null: a plan written before plans carried them
        from planner.uncertainty import INFERENCE_QUANTITIES, uncertainty_from_dict

        pkw["uncertainty"] = uncertainty_from_dict(pr["uncertainty"], "predicted.uncertainty", _err, INFERENCE_QUANTITIES)
    predicted = _build(Predicted, "predicted", {**pkw, "tiers": tiers, "per_layer": tuple(per_layer),
                                                "notes": tuple(notes)})

    ch = _mapping(d["choices"], "choices")
    choices = {}
    for name, c in ch.items():
        path = f"choices.{name}"
        _check_str(name, "choices")
        c = _mapping(c, path)
        _keys(c, path, ("weights", "tier"), ("sparsity", "activations", "low_rank"))
        choices[name] = _build(GroupChoice, path, dict(c))

    top = {k: d[k] for k in ("version", "tool_version", "created_at", "model", "hardware", "model_hash",
                             "hardware_hash", "devices", "objective", "kv", "sensitivity_source")}
    for key in ("activations", "engine", "engine_profile", "engine_hash"):
        if key in d:
            top[key] = d[key]
    if d.get("activation_recipe") is not None:
        top["activation_recipe"] = _recipe_from_dict(d["activation_recipe"])
    return Plan(**top, layout=layout, workload=workload, constraints=constraints, choices=choices,
                predicted=predicted, solver=solver)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    if path.is_dir():
        raise PlanError(f"{str(path)!r} is a folder; expected a plan file (.yaml, .yml or .json)", field="path")
    raise PlanError(f"{path.name or str(path)}: plan files end in .yaml, .yml or .json; got "
                    f"{suffix or 'no suffix'!r}", field="path")


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> Path:
    """Write ``plan`` as YAML or JSON (by suffix), atomically: a temporary file in the same
    directory is written, flushed and renamed over ``path``, so a reader never sees half a
    plan and a failed write leaves any previous file intact."""
    p = _check_path(path)
    if not isinstance(plan, Plan):
        plan_to_dict(plan)  # the error naming 'plan
    kind = _file_format(p)
    d = plan_to_dict(plan)
    if kind == "json":
        text = json.dumps(d, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    else:
        text = yaml.safe_dump(d, sort_keys=False, default_flow_style=None, allow_unicode=True, width=120)
    return atomic_write_text(p, text)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read a plan written by :func:`save_plan`; refuses malformed files, unknown keys or
    types, newer versions and files whose content no longer matches their checksum."""
    p = _check_path(path)
    kind = _file_format(p)
    from hwmodels.loader import exists, is_dir, is_file

    if exists(p) and not is_dir(p) and not is_file(p):  # a FIFO or device would block the read or never end
        raise PlanError(f"{per_front_end(str(p), str(p))}: not a regular file", field="path")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{per_front_end(str(p), str(p))}: no such plan file", field="path") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the name
        raise PlanError(f"{per_front_end(str(p), str(p))}: cannot read the plan file ({exc})", field="path") from None
    try:
        data = parse_document(text, kind)
    except DuplicateKeyError as exc:
        raise PlanError(f"{p.name}: {exc.message}", field="path") from None
    except RecursionError:
        raise PlanError(f"{p.name}: nested too deeply to be a plan file", field="path") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{p.name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                        field="path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PlanError(f"{p.name} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}",
                        field="path") from None
    except ValueError:  # an integer past Python's 4300 digits for text (sys.set_int_max_str_digits)
        raise PlanError(f"{p.name}: holds an integer of more than 4300 digits; no plan file does", field="path") from None
    if not isinstance(data, Mapping):
        raise PlanError(f"{p.name}: a plan file holds one mapping; got {type(data).__name__}", field="path")
    try:
        return plan_from_dict(data, require_checksum=True)
    except PlanError as exc:
        sep = " " if exc.message.startswith("was ") or exc.message.startswith("has ") else ": "
        raise PlanError(f"{p.name}{sep}{exc.message}", field=exc.field) from None
