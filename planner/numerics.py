"""One numeric choice: weight format, activation (compute) format, sparsity, low rank.

:class:`Numerics` is the single type for "how one operator or decision group computes";
every place that carries such a choice is a :class:`Numerics`:

* :class:`planner.costmodel.Choice` adds the KV-cache format the cost model prices;
* :class:`planner.options.Option` is a candidate the planner may pick (validated strictly);
* :class:`planner.plan.GroupChoice` adds the memory tier a group's weights live in;
* :class:`planner.execution.apply.LayerOption` is what the torch handlers apply to one module.

Names are format names of :mod:`planner.formats` (aliases allowed on input; the validating
subclasses store canonical names).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.formats import Format, Sparsity, resolve_numerics

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
        from planner.options import option_key

        return option_key(self.weights, self.sparsity, self.activations, self.low_rank)

    @property
    def weight_only(self) -> bool:
        """True when the activations stay in high precision (only the weights are compressed)."""
        return self.activations in HIGH_PRECISION_COMPUTE


def is_rank(v: object) -> bool:
    """True for a valid low-rank rank: an int >= 1 (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1
