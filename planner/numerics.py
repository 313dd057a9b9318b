"""One numeric choice: weight format, activation (compute) format, sparsity, low rank.

:class:`Numerics` is the single type for "how one operator or decision group computes";
every place that carries such a choice is a :class:`Numerics`:

* :class:`Choice` adds the KV-cache format the cost model prices;
* :class:`planner.options.Option` is a candidate the planner may pick (validated strictly);
* :class:`planner.plan.GroupChoice` adds the memory tier a group's weights live in;
* :class:`planner.execution.apply.LayerOption` is what the torch handlers apply to one module.

Names are format names of :mod:`planner.formats` (aliases allowed on input; the validating
subclasses store canonical names).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import EstimateError
from planner.formats import Format, Sparsity, get_format, parse_sparsity, resolve_numerics

#: Compute formats after which a weight-only option's key omits ``/activations``.
HIGH_PRECISION_COMPUTE = frozenset({"bf16", "fp16", "fp32"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Numerics:
    """Weight format, activation format, sparsity pattern and optional rank of a low-rank
    factorisation (each linear ``k→n`` becomes ``k→r→n``; ``None``: not factored)."""

    weights: str = "bf16"
    activations: str = "bf16"
    sparsity: str = "dense"
    low_rank: int | None = None

    def resolved(self) -> tuple[Format, Sparsity, Format]:
        """(weight format, sparsity, activation format), roles checked; NumericsError naming
        the field on a bad name."""
        return resolve_numerics(self.weights, self.sparsity, self.activations)

    @property
    def key(self) -> str:
        """Option key ``weights[+sparsity][@rRANK][/activations]`` (see :mod:`planner.options`)."""
        return numerics_key(self.weights, self.sparsity, self.activations, self.low_rank)

    @property
    def weight_only(self) -> bool:
        """True when the activations stay in high precision (only the weights are compressed)."""
        return self.activations in HIGH_PRECISION_COMPUTE


def is_rank(v: object) -> bool:
    """True for a valid low-rank rank: an int >= 1 (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def numerics_key(weights: str, sparsity: str = "dense", activations: str = "bf16", low_rank: int | None = None) -> str:
    """``weights[+sparsity][@rRANK][/activations]`` with canonical names (the option key of
    :mod:`planner.options`; ``low_rank`` already checked)."""
    w = get_format(weights).name
    sp = parse_sparsity(sparsity).name
    a = get_format(activations).name
    key = w if sp == "dense" else f"{w}+{sp}"
    if low_rank is not None:
        key += f"@r{low_rank}"
    if a not in HIGH_PRECISION_COMPUTE:
        key += f"/{a}"
    return key


def resolve_format(name: str, field: str) -> Format:
    """The registered format ``name``; an unknown one is an EstimateError naming ``field``."""
    try:
        return get_format(name)
    except ValueError as exc:
        raise EstimateError(field, str(exc)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice(Numerics):
    """The numerics the cost model prices for one operator or decision group: a
    :class:`~planner.numerics.Numerics` plus the KV-cache format. Names are checked when
    priced (an unknown or unsupported format is an EstimateError naming its field)."""

    kv: str = "bf16"

    def __post_init__(self) -> None:
        if self.low_rank is not None and not is_rank(self.low_rank):
            raise EstimateError("low_rank", f"low_rank must be a positive integer or null; got {self.low_rank!r}")

    @classmethod
    def of(cls, numerics: Numerics, kv: str) -> Choice:
        """The choice pricing ``numerics`` with the KV cache at ``kv``."""
        return cls(weights=numerics.weights, activations=numerics.activations, sparsity=numerics.sparsity,
                   low_rank=numerics.low_rank, kv=kv)
