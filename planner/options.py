"""Decision groups and the options the planner may give each of them on a device.

An :class:`Option` is what one decision group can be set to: a weight format, a sparsity
pattern, an activation (compute) format and optionally a low-rank factorisation. Its *key*
is a short, hardware-independent spelling used by pins, sensitivity files and plans:

    weights[+sparsity][@rRANK][/activations]
    e.g.  int4-g128   bf16+2:4   int8/int8   fp8-e4m3/fp8-e4m3   int8@r512   bf16@r256

(``/activations`` is left out for weight-only options, whose compute runs in a 16- or
32-bit float format.) ``@rRANK`` factors every linear layer ``k → n`` of the group into
``k → RANK → n`` (truncated SVD, the two factors stored in ``weights``): it stores
``RANK·(k + n)`` weights instead of ``k·n`` and does that many fewer multiply-adds
(Greenformers, Winata et al., 2020). Low rank and sparsity are not combined on one group.
Ranks are absolute (not fractions of the layer width) so that a key means the same
factorisation wherever it appears; a rank is offered to a group only where it compresses
every member (``RANK·(k + n) < k·n``), see :func:`low_rank_fits`.

Hardware support is explicit, from the profile (``DeviceSpec.supports``): an option whose
weight or activation format is ``unsupported`` is never offered; ``emulated`` options are
offered and priced by the cost model as it prices them (bytes saved, compute not).

:class:`GroupInfo` describes one decision group instance (FQN, role, layer index, pipeline
stage, parameters) for the sensitivity models and the ILP builder.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hwmodels import DeviceSpec
from hwmodels.errors import TierwiseError, echo_value
from planner.formats import FormatError, SparsityError, get_format, parse_sparsity
from planner.numerics import HIGH_PRECISION_COMPUTE, Numerics, numerics_key
from planner.workload import CONV, EMBEDDING, LINEAR, LM_HEAD, ROUTER, OpShape, Workload

__all__ = [
    "DEFAULT_WEIGHT_FORMATS",
    "HIGH_PRECISION_COMPUTE",
    "LOW_RANK_FORMATS",
    "MIN_DEFAULT_BITS",
    "ROLES",
    "GroupInfo",
    "Option",
    "OptionError",
    "base_activation_format",
    "candidate_options",
    "decision_groups",
    "group_role",
    "low_rank_fits",
    "max_low_rank",
    "option_key",
    "options_for_group",
    "parse_low_ranks",
    "parse_option_key",
    "support_status",
]

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

#: Weight formats the factors of a low-rank option are stored in, besides the device's 16-bit
#: format: each rank costs one option per format, and the ILP's size grows with the options
#: (docs/planner.md, solver speed), so the set stays small. int8 per channel adds ~5e-5
#: relative noise on the rank-128 factors of a 512 × 1024 Gaussian matrix (measured with
#: WeightsSensitivity) — negligible next to any truncation error — and halves their bytes.
LOW_RANK_FORMATS = ("int8",)

#: Roles of decision groups (used by the sensitivity prior).
ROLES = ("embedding", "attn_qkv", "attn_out", "mlp_in", "mlp_out", "experts", "router", "lm_head", "head", "conv")


class OptionError(TierwiseError, ValueError):
    """A bad option key, pin or format list (``field`` names the input)."""

    def __init__(self, message: str, field: str = "formats"):
        TierwiseError.__init__(self, message, field=field)


def _check_rank(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{where}: a low rank must be an integer >= 1; got {value!r}", field="low_rank")
    return int(value)


def option_key(weights: str, sparsity: str = "dense", activations: str = "bf16", low_rank: int | None = None) -> str:
    """``weights[+sparsity][@rRANK][/activations]`` with canonical names (see the module docstring)."""
    return numerics_key(weights, sparsity, activations, None if low_rank is None else _check_rank(low_rank, "option key"))


_RANK = re.compile(r"^r([0-9]+)$")


def parse_option_key(key: str) -> tuple[str, str, str | None, int | None]:
    """``'int8/int8'`` → ``('int8', 'dense', 'int8', None)``; ``'int8@r512'`` →
    ``('int8', 'dense', None, 512)``. Activations are ``None`` for a weight-only key (the
    device's base compute format applies), the rank ``None`` without ``@rRANK``."""
    if not isinstance(key, str) or not key.strip():
        raise OptionError(f"an option key must be a non-empty string like 'int4-g128', 'bf16+2:4', 'int8/int8' or "
                          f"'int8@r512'; got {key!r}", field="option")
    text = key.strip().lower()
    acts = None
    if "/" in text:
        text, acts = text.split("/", 1)
    rank = None
    if "@" in text:
        text, suffix = text.split("@", 1)
        m = _RANK.match(suffix.strip())
        if not m:
            raise OptionError(f"option {key!r}: the low rank must be written '@r' followed by an integer >= 1, "
                              f"e.g. 'int8@r512'; got '@{suffix}'", field="low_rank")
        rank = int(m.group(1))
        if rank < 1:
            raise OptionError(f"option {key!r}: a low rank must be an integer >= 1; got {rank}", field="low_rank")
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
    if rank is not None and sp != "dense":
        raise OptionError(f"option {key!r}: low rank and sparsity cannot be combined on one group (the factors "
                          f"are dense); drop '+{sp}' or '@r{rank}'", field="low_rank")
    return w, sp, acts, rank


def parse_low_ranks(values: Sequence[object] | str | None) -> tuple[int, ...] | None:
    """``--low-rank 256,512`` (or a sequence of ints) → sorted, de-duplicated ranks; ``None``
    or an empty list → ``None`` (low rank off). Ranks are absolute: fractions are refused."""
    if values is None:
        return None
    items = [x.strip() for x in values.split(",") if x.strip()] if isinstance(values, str) else list(values)
    out: set[int] = set()
    for v in items:
        if isinstance(v, str):
            if not re.fullmatch(r"[0-9]+", v):
                raise OptionError(f"--low-rank takes ranks as integers >= 1 separated by commas, e.g. 256,512; got "
                                  f"{echo_value(v)}", field="low_rank")
            v = int(v)
        out.add(_check_rank(v, "--low-rank"))
    return tuple(sorted(out)) or None


@dataclass(frozen=True, slots=True, kw_only=True)
class Option(Numerics):
    """One setting of a decision group (a :class:`~planner.numerics.Numerics` validated
    strictly, canonical format names); ``low_rank`` is the rank of a factorisation of the
    group's linear layers (``None``: not factored)."""

    weights: str

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
        if self.low_rank is not None:
            _check_rank(self.low_rank, f"option {w.name}")
            if sp.name != "dense":
                raise OptionError(f"option {w.name}: low rank {self.low_rank} and sparsity {sp.name} cannot be "
                                  "combined on one group (the factors are dense)", field="low_rank")
        object.__setattr__(self, "weights", w.name)
        object.__setattr__(self, "activations", a.name)
        object.__setattr__(self, "sparsity", sp.name)


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
    low_rank: Sequence[int] | None = None,
) -> tuple[Option, ...]:
    """Options a decision group may take on ``device``, before per-group restrictions.

    * ``formats``: weight formats (names or aliases); default :data:`DEFAULT_WEIGHT_FORMATS`
      plus the device's 16-bit format. Unsupported formats are dropped; naming one
      explicitly is an error.
    * ``sparsity``: patterns combined with the 16- and 8-bit formats; default ``2:4`` only
      where the device has 2:4 sparse tensor cores (Mishra et al., arXiv:2104.08378: it pays
      only there, and only in some regimes — the cost model decides).
    * ``low_precision_compute``: add W8A8 (int8/int8), FP8 (fp8/fp8), W4A8
      (int4-g128/int8) and W4A4 NVFP4 (nvfp4/nvfp4, Blackwell) options where both formats
      are native.
    * ``low_rank``: ranks to offer (off when ``None`` or empty). Each rank combines with the
      device's 16-bit format and with :data:`LOW_RANK_FORMATS` that are among the weight
      formats offered (with the first offered format when none of them is), weight-only and
      dense. Which groups a rank fits is decided per group (:func:`options_for_group`).
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
        for w, a in (("int8", "int8"), ("fp8-e4m3", "fp8-e4m3"), ("int4-g128", "int8"), ("nvfp4", "nvfp4")):
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
    ranks = parse_low_ranks(low_rank) if low_rank is not None else None
    if ranks:
        factor_formats = [w for w in (base, *LOW_RANK_FORMATS) if w in names] or names[:1]
        for r in ranks:
            for w in factor_formats:
                add(Option(weights=w, activations=base, low_rank=r))
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
    # The group's input is a normalization's output that no other group reads, so that SmoothQuant folds
    # its 1/s into that norm (planner.smoothing_map.smoothing_norm: q/k/v and the MLP's first projection
    # of the pre-norm decoders it lists; not a parallel-attention block's one norm feeding two groups,
    # nor a post-norm encoder's norm that also feeds the residual).
    reads_norm: bool = False

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
    from planner.smoothing_map import smoothing_norm

    for b in work.blocks:
        order: dict[str, list[OpShape]] = {}
        for op in b.ops:
            if op.is_weighted:
                order.setdefault(op.group, []).append(op)
        after_norm = {g for g in order if b.repeated and smoothing_norm(work.arch, g) is not None}
        for i in range(b.count):
            for g, members in order.items():
                fqn = f"{b.prefix}.{b.first + i}.{g}" if b.repeated else f"{b.prefix}.{g}"
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
                                 params=sum(m.weight_params for m in members), members=tuple(members),
                                 reads_norm=g in after_norm)
                if fqn in seen:  # a tied head shares its embedding's group
                    continue
                seen[fqn] = len(out)
                out.append(info)
        if b.repeated:
            layer_base += b.count
    return tuple(out)


def low_rank_fits(group: GroupInfo, rank: int) -> bool:
    """Whether a rank-``rank`` factorisation compresses every member of ``group``: all are
    linear layers (the cost model factors only those) and ``rank·(k + n) < k·n`` for each —
    which also keeps ``rank < min(k, n)``, what a truncated SVD can give."""
    if not group.members:
        return False
    for m in group.members:
        if m.kind != LINEAR or not m.in_features or not m.out_features:
            return False
        k, n = m.in_features, m.out_features
        if rank * (k + n) >= k * n:
            return False
    return True


def max_low_rank(group: GroupInfo) -> int:
    """The largest rank that still compresses every member of ``group`` (0 when none does)."""
    if not group.members or any(m.kind != LINEAR or not m.in_features or not m.out_features for m in group.members):
        return 0
    return min((m.in_features * m.out_features - 1) // (m.in_features + m.out_features) for m in group.members)


def options_for_group(group: GroupInfo, options: Sequence[Option], *, base_activations: str,
                      conv: Sequence[str] = ()) -> tuple[Option, ...]:
    """The subset of ``options`` that make sense for ``group``: embeddings and routers are
    gathers / tiny GEMMs whose compute precision does not matter, so they take dense
    weight-only options; low-rank options only where the rank compresses every member
    (:func:`low_rank_fits`); a convolution only the weight formats in ``conv`` when given (the
    engine's profile: those its exporter can write for one). Nothing left: the base format."""
    base = (Option(weights=base_activations, activations=base_activations),)
    if group.role in ("embedding", "router"):
        keep = [o for o in options if o.sparsity == "dense" and o.weight_only and o.low_rank is None]
        return tuple(keep) if keep else base
    if group.role == "conv" and conv:
        return tuple(o for o in options if o.weights in conv) or base
    return tuple(o for o in options if o.low_rank is None or low_rank_fits(group, o.low_rank))


def apply_pins(groups: Sequence[GroupInfo], per_group: Sequence[Sequence[Option]], pins: Mapping[str, str],
               device: DeviceSpec, base_activations: str) -> list[tuple[Option, ...]]:
    """Restrict the pinned groups to their pinned option. A pin is a group FQN or a glob
    pattern (``model.layers.*.mlp.down_proj``) → option key; a pin that matches no group or
    names an option the device cannot run is an error."""
    out = [tuple(opts) for opts in per_group]
    for pattern, key in pins.items():
        try:
            w, sp, a, r = parse_option_key(key)
        except OptionError as exc:
            raise OptionError(f"{{@pins}} {pattern}={key}: {exc.message}", field="pins") from None
        opt = Option(weights=w, sparsity=sp, activations=a or base_activations, low_rank=r)
        if support_status(device, opt) == "unsupported":
            raise OptionError(f"{{@pins}} {pattern}={key}: not supported on {device.id}", field="pins")
        hits = [i for i, g in enumerate(groups) if fnmatch.fnmatchcase(g.fqn, pattern)]
        if not hits:
            sample = ", ".join(g.fqn for g in groups[:3])
            raise OptionError(f"{{@pins}} {pattern}={key}: no decision group matches {pattern!r} (groups look like "
                              f"{sample}, ...)", field="pins")
        if r is not None:
            misfit = [groups[i] for i in hits if not low_rank_fits(groups[i], r)]
            if misfit:
                g = misfit[0]
                limit = max_low_rank(g)
                why = (f"the largest rank that compresses all its members is {limit}" if limit else
                       "low rank applies to linear layers only")
                raise OptionError(f"{{@pins}} {pattern}={key}: rank {r} does not compress {g.fqn} ({why})", field="pins")
        for i in hits:
            out[i] = (opt,)
    return out


def unique_formats(options: Iterable[Option]) -> list[str]:
    seen: list[str] = []
    for o in options:
        if o.weights not in seen:
            seen.append(o.weights)
    return seen
