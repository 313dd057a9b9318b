"""Decision groups and the options the planner may give each of them on a device.

An :class:`Option` is what one decision group can be set to: a weight format, a sparsity
pattern and an activation (compute) format. Its *key* is a short, hardware-independent
spelling used by pins and sensitivity files:

    weights[+sparsity][/activations]      e.g.  int4-g128   bf16+2:4   int8/int8   fp8-e4m3/fp8-e4m3

(``/activations`` is left out for weight-only options, whose compute runs in a 16- or
32-bit float format.)

Hardware support is explicit, from the profile (``DeviceSpec.supports``): an option whose
weight or activation format is ``unsupported`` is never offered; ``emulated`` options are
offered and priced by the cost model as it prices them (bytes saved, compute not).

:class:`GroupInfo` describes one decision group instance (FQN, role, layer index, pipeline
stage, parameters) for the sensitivity models and the ILP builder.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hwmodels import DeviceSpec
from planner.formats import FormatError, SparsityError, get_format, parse_sparsity
from planner.workload import CONV, EMBEDDING, LM_HEAD, ROUTER, OpShape, Workload

__all__ = [
    "DEFAULT_WEIGHT_FORMATS",
    "HIGH_PRECISION_COMPUTE",
    "MIN_DEFAULT_BITS",
    "ROLES",
    "GroupInfo",
    "Option",
    "OptionError",
    "base_activation_format",
    "candidate_options",
    "decision_groups",
    "group_role",
    "option_key",
    "options_for_group",
    "parse_option_key",
    "support_status",
]

#: Compute formats after which a weight-only option's key omits ``/activations``.
HIGH_PRECISION_COMPUTE = frozenset({"bf16", "fp16", "fp32"})

#: Weight formats offered when the user does not list any (``--formats``), before the
#: device filter. One 16-bit format (the device's native one) is added in front.
#: fp8-e5m2 is left out because e4m3 stores the same bytes with a finer mantissa;
#: asymmetric ``-zp`` variants and ``nf4-dq`` are opt-in.
DEFAULT_WEIGHT_FORMATS = (
    "fp8-e4m3", "int8", "mxfp8", "bfp8", "fp6-e3m2", "mxfp6",
    "int4-g32", "int4-g64", "int4-g128", "nf4", "mxfp4", "nvfp4", "fp4-e2m1", "bfp4", "cb4",
    "int3-g64", "int3-g128", "cb3",
)
#: Element width below which formats are opt-in: round-to-nearest 2-bit weights make LLMs
#: unusable without rotation or learned codebooks (Chee et al., "QuIP", NeurIPS 2023;
#: Egiazarian et al., "AQLM", ICML 2024 — both motivate their methods by the collapse of
#: plain 2-bit rounding), which this planner does not model.
MIN_DEFAULT_BITS = 3

#: Roles of decision groups (used by the sensitivity prior).
ROLES = ("embedding", "attn_qkv", "attn_out", "mlp_in", "mlp_out", "experts", "router", "lm_head", "head", "conv")


class OptionError(ValueError):
    """A bad option key, pin or format list (``field`` names the input)."""

    user_facing = True

    def __init__(self, message: str, field: str = "formats"):
        super().__init__(message)
        self.message = message
        self.field = field


def option_key(weights: str, sparsity: str = "dense", activations: str = "bf16") -> str:
    """``weights[+sparsity][/activations]`` with canonical names (see the module docstring)."""
    w = get_format(weights).name
    sp = parse_sparsity(sparsity).name
    a = get_format(activations).name
    key = w if sp == "dense" else f"{w}+{sp}"
    if a not in HIGH_PRECISION_COMPUTE:
        key += f"/{a}"
    return key


def parse_option_key(key: str) -> tuple[str, str, str | None]:
    """``'int8/int8'`` → ``('int8', 'dense', 'int8')``; activations ``None`` for a
    weight-only key (the device's base compute format applies)."""
    if not isinstance(key, str) or not key.strip():
        raise OptionError(f"an option key must be a non-empty string like 'int4-g128', 'bf16+2:4' or 'int8/int8'; "
                          f"got {key!r}", field="option")
    text = key.strip().lower()
    acts = None
    if "/" in text:
        text, acts = text.split("/", 1)
    sp = "dense"
    if "+" in text:
        text, sp = text.split("+", 1)
    try:
        w = get_format(text).name
        if acts is not None:
            a = get_format(acts)
            if not a.is_activation:
                raise OptionError(f"option {key!r}: {a.name!r} is not an activation format", field="option")
            acts = a.name
        sp = parse_sparsity(sp).name
    except (FormatError, SparsityError) as exc:
        raise OptionError(f"option {key!r}: {exc}", field="option") from None
    if not get_format(w).is_weight:
        raise OptionError(f"option {key!r}: {w!r} is not a weight format", field="option")
    return w, sp, acts


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One setting of a decision group (canonical format names)."""

    weights: str
    sparsity: str = "dense"
    activations: str = "bf16"

    def __post_init__(self) -> None:
        try:
            w = get_format(self.weights)
            a = get_format(self.activations)
            sp = parse_sparsity(self.sparsity)
        except (FormatError, SparsityError) as exc:
            raise OptionError(str(exc), field="option") from None
        if not w.is_weight:
            raise OptionError(f"{w.name!r} is not a weight format", field="option")
        if not a.is_activation:
            raise OptionError(f"{a.name!r} is not an activation format", field="option")
        object.__setattr__(self, "weights", w.name)
        object.__setattr__(self, "activations", a.name)
        object.__setattr__(self, "sparsity", sp.name)

    @property
    def key(self) -> str:
        return option_key(self.weights, self.sparsity, self.activations)

    @property
    def weight_only(self) -> bool:
        return self.activations in HIGH_PRECISION_COMPUTE


def support_status(device: DeviceSpec, option: Option) -> str:
    """``native`` when weights and activations are native, ``unsupported`` when either is
    unsupported, ``emulated`` otherwise."""
    s = {device.supports(option.weights), device.supports(option.activations)}
    if "unsupported" in s:
        return "unsupported"
    return "native" if s == {"native"} else "emulated"


def base_activation_format(device: DeviceSpec) -> str:
    """The 16-bit float the device computes in natively: bf16, else fp16, else fp32
    (a T4 has fp16 tensor cores and no bf16)."""
    for name in ("bf16", "fp16", "fp32"):
        if device.supports(name) == "native":
            return name
    for name in ("bf16", "fp16", "fp32"):
        if device.supports(name) != "unsupported":
            return name
    raise OptionError(f"{device.id} supports none of bf16, fp16, fp32 as a compute format", field="hardware")


def _sparse_2to4_accelerated(device: DeviceSpec) -> bool:
    return bool(device.compute_units) and device.compute_units[0].sparse_2to4_speedup > 1.0


def candidate_options(
    device: DeviceSpec,
    *,
    formats: Sequence[str] | None = None,
    sparsity: Sequence[str] | None = None,
    low_precision_compute: bool = True,
    base_activations: str | None = None,
) -> tuple[Option, ...]:
    """Options a decision group may take on ``device``, before per-group restrictions.

    * ``formats``: weight formats (names or aliases); default :data:`DEFAULT_WEIGHT_FORMATS`
      plus the device's 16-bit format. Unsupported formats are dropped; naming one
      explicitly is an error.
    * ``sparsity``: patterns combined with the 16- and 8-bit formats; default ``2:4`` only
      where the device has 2:4 sparse tensor cores (peers_compression.md §0.6: it pays
      only there, and only in some regimes — the cost model decides).
    * ``low_precision_compute``: add W8A8 (int8/int8), FP8 (fp8/fp8) and W4A8
      (int4-g128/int8) options where both formats are native.
    """
    base = base_activations or base_activation_format(device)
    explicit = formats is not None
    names: list[str] = []
    if explicit:
        for raw in formats:
            try:
                fmt = get_format(raw)
            except FormatError as exc:
                raise OptionError(f"--formats: {exc}") from None
            if not fmt.is_weight:
                raise OptionError(f"--formats: {fmt.name!r} is not a weight format")
            if device.supports(fmt.name) == "unsupported":
                raise OptionError(f"--formats: {fmt.name!r} is not supported on {device.id} "
                                  f"(native: {', '.join(sorted(device.formats.native))}; "
                                  f"emulated: {', '.join(sorted(device.formats.emulated))})")
            if fmt.name not in names:
                names.append(fmt.name)
    else:
        names.append(base)
        for raw in DEFAULT_WEIGHT_FORMATS:
            fmt = get_format(raw)
            if fmt.element_bits >= MIN_DEFAULT_BITS and device.supports(fmt.name) != "unsupported" \
                    and fmt.name not in names:
                names.append(fmt.name)
    out: list[Option] = []

    def add(opt: Option) -> None:
        if support_status(device, opt) != "unsupported" and opt not in out:
            out.append(opt)

    for w in names:
        add(Option(weights=w, activations=base))
    if low_precision_compute:
        for w, a in (("int8", "int8"), ("fp8-e4m3", "fp8-e4m3"), ("int4-g128", "int8")):
            # W4A8 unpacks int4 codes to int8 on the fly, so only the int8 units must be native.
            if w in names and device.supports(a) == "native" and (device.supports(w) == "native" or w.startswith("int4")):
                add(Option(weights=w, activations=a))
    patterns = list(sparsity) if sparsity is not None else (["2:4"] if _sparse_2to4_accelerated(device) else [])
    for raw in patterns:
        try:
            sp = parse_sparsity(raw).name
        except SparsityError as exc:
            raise OptionError(f"--sparsity: {exc}", field="sparsity") from None
        if sp == "dense":
            continue
        for w in names:
            fmt = get_format(w)
            # Sparse tensor cores take 16-bit, fp8 and int8 operands; with 4-bit elements the
            # index bits eat most of the saving (2:4 on int4: 0.5·4 + 1 = 3 bits for half the
            # weights removed).
            if (fmt.kind == "float" or fmt.name == "int8") and fmt.element_bits >= 8:
                add(Option(weights=w, sparsity=sp, activations=base))
    if not out:
        raise OptionError(f"no weight format is available on {device.id}")
    return tuple(out)


# ---------------------------------------------------------------------------
# Decision groups
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupInfo:
    """One decision group instance.

    ``block`` is the block prefix and ``name`` the group's name inside the block
    (``model.layers`` / ``mlp.gate_up``); ``layer`` is the index of the repeated layer
    across all repeated blocks (``None`` for the embedding / head groups), ``position`` is
    the relative depth in [0, 1] (0 = input side), ``stage`` the pipeline stage holding it.
    """

    fqn: str
    block: str
    name: str
    repeated: bool
    layer: int | None
    position: float
    stage: int
    role: str
    params: int
    members: tuple[OpShape, ...]

    @property
    def member_fqns(self) -> tuple[str, ...]:
        """FQNs of the member modules (``model.layers.3.self_attn.q_proj`` ...)."""
        prefix = self.fqn[: len(self.fqn) - len(self.name)]
        return tuple(prefix + op.name for op in self.members)


def group_role(name: str, members: Sequence[OpShape]) -> str:
    """Role of a decision group from its member operators and its name."""
    kinds = {op.kind for op in members}
    if EMBEDDING in kinds:
        return "embedding"
    if LM_HEAD in kinds:
        return "lm_head"
    if ROUTER in kinds:
        return "router"
    if CONV in kinds:
        return "conv"
    if any(op.experts for op in members):
        return "experts"
    leaf = name.lower()
    if any(t in leaf for t in ("qkv", "q_proj", "query", "key", "value")):
        return "attn_qkv"
    if any(t in leaf for t in ("o_proj", "attention.output", "out_proj")):
        return "attn_out"
    if any(t in leaf for t in ("gate_up", "fc1", "intermediate", "wi", "up_proj", "gate_proj")):
        return "mlp_in"
    if any(t in leaf for t in ("down_proj", "fc2", "output.dense", "wo")):
        return "mlp_out"
    if any(t in leaf for t in ("classifier", "pooler", "head")):
        return "head"
    return "mlp_in"


def decision_groups(work: Workload, pp: int = 1) -> tuple[GroupInfo, ...]:
    """Every decision group of ``work`` in model order, with its pipeline stage under
    ``pp`` stages (layers split evenly, the embedding on the first stage and the head on
    the last — as :func:`planner.costmodel.memory_report` places them)."""
    if not isinstance(pp, int) or pp < 1:
        raise ValueError(f"The 'pp' parameter of decision_groups must be an int in [1, inf). Got {pp!r} instead.")
    n_layers = sum(b.count for b in work.blocks if b.repeated)
    out: list[GroupInfo] = []
    seen: dict[str, int] = {}
    layer_base = 0
    cnn = n_layers == 0
    total_cnn = sum(1 for b in work.blocks for op in b.ops if op.is_weighted) if cnn else 0
    cnn_index = 0
    for b in work.blocks:
        order: dict[str, list[OpShape]] = {}
        for op in b.ops:
            if op.is_weighted:
                order.setdefault(op.group, []).append(op)
        for i in range(b.count):
            for g, members in order.items():
                fqn = f"{b.prefix}.{i}.{g}" if b.repeated else f"{b.prefix}.{g}"
                if b.repeated:
                    layer = layer_base + i
                    position = layer / max(n_layers - 1, 1)
                    stage = next(s for s in range(pp) if (n_layers * s) // pp <= layer < (n_layers * (s + 1)) // pp)
                elif cnn:
                    layer = None
                    position = cnn_index / max(total_cnn - 1, 1)
                    cnn_index += 1
                    stage = 0
                else:
                    layer = None
                    position = 0.0 if b.stage == "pre" else 1.0
                    stage = 0 if b.stage == "pre" else pp - 1
                info = GroupInfo(fqn=fqn, block=b.prefix, name=g, repeated=b.repeated, layer=layer,
                                 position=position, stage=stage, role=group_role(g, members),
                                 params=sum(m.weight_params for m in members), members=tuple(members))
                if fqn in seen:  # a tied head shares its embedding's group
                    continue
                seen[fqn] = len(out)
                out.append(info)
        if b.repeated:
            layer_base += b.count
    return tuple(out)


def options_for_group(group: GroupInfo, options: Sequence[Option], *, base_activations: str) -> tuple[Option, ...]:
    """The subset of ``options`` that make sense for ``group``: embeddings and routers are
    gathers / tiny GEMMs whose compute precision does not matter, so they take dense
    weight-only options."""
    if group.role in ("embedding", "router"):
        keep = [o for o in options if o.sparsity == "dense" and o.weight_only]
        return tuple(keep) if keep else (Option(weights=base_activations, activations=base_activations),)
    return tuple(options)


def apply_pins(groups: Sequence[GroupInfo], per_group: Sequence[Sequence[Option]], pins: Mapping[str, str],
               device: DeviceSpec, base_activations: str) -> list[tuple[Option, ...]]:
    """Restrict the pinned groups to their pinned option. A pin is a group FQN or a glob
    pattern (``model.layers.*.mlp.down_proj``) → option key; a pin that matches no group or
    names an option the device cannot run is an error."""
    out = [tuple(opts) for opts in per_group]
    for pattern, key in pins.items():
        w, sp, a = parse_option_key(key)
        opt = Option(weights=w, sparsity=sp, activations=a or base_activations)
        if support_status(device, opt) == "unsupported":
            raise OptionError(f"--pin {pattern}={key}: not supported on {device.id}", field="pin")
        hits = [i for i, g in enumerate(groups) if fnmatch.fnmatchcase(g.fqn, pattern)]
        if not hits:
            sample = ", ".join(g.fqn for g in groups[:3])
            raise OptionError(f"--pin {pattern}={key}: no decision group matches {pattern!r} (groups look like "
                              f"{sample}, ...)", field="pin")
        for i in hits:
            out[i] = (opt,)
    return out


def unique_formats(options: Iterable[Option]) -> list[str]:
    seen: list[str] = []
    for o in options:
        if o.weights not in seen:
            seen.append(o.weights)
    return seen
