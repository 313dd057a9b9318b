"""Reference noise of number formats: what the sensitivity prior charges per format.

Three measurements, each the real quantisation kernels of :mod:`planner.backends` applied
to a seeded reference tensor (see :mod:`planner.sensitivity` for why these tensors):

* :func:`weight_noise` — relative MSE ``‖W − Q(W)‖² / ‖W‖²`` of a 16 × 4096 N(0, 1) matrix
  (rounded to bf16 first) stored in a weight format after a sparsity pattern;
* :func:`activation_noise` — relative MSE on the ordinary channels of a 64 × 4096
  activation matrix whose 6 outlier channels are 100× larger (0 for 16/32-bit formats);
* :func:`kv_noise` — relative MSE of a 256 × 128 N(0, 1) KV-cache matrix;
* :func:`activation_noise` with an engine's recipe for integer activations — ``smoothing=α``: the
  same activation matrix quantized after SmoothQuant's migration of strength ``α``
  (:func:`planner.backends.smoothing.smoothing_scales`, against a 1024 × 4096 N(0, 1) weight), plus
  what the migration adds to that weight's int8 (per output row) noise, since the recipe moves the
  outliers' range into the weight columns they meet; ``block=B``: one scale per ``B`` features of a
  token (llama.cpp's Q8_0 / Q8_K blocks) rather than per token, so an outlier drowns its block only.

The results are the same in every run (seeded tensors, deterministic kernels), so they are
computed once and shipped as package data (``planner/data/format_noise.json``): a plan never
imports torch or quantises anything for the prior. Keys the table lacks (an
``unstructured:S`` sparsity with an unusual ``S``, a format added to the registry later)
are measured live, once per process. ``tests/test_format_noise.py`` checks the table
against the live computation; ``python -m planner.format_noise`` rewrites it.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from planner.formats import get_format, list_formats, parse_sparsity

__all__ = [
    "ActivationRecipe",
    "REFERENCE",
    "TABLE_PATH",
    "TABLE_SPARSITIES",
    "activation_noise",
    "build_table",
    "kv_noise",
    "measure_activation_noise",
    "activation_key",
    "smoothable",
    "table_recipes",
    "measure_kv_noise",
    "measure_weight_noise",
    "weight_noise",
]

_REF_ROWS, _REF_COLS = 16, 4096
_ACT_TOKENS, _ACT_OUTLIERS, _ACT_OUTLIER_SCALE = 64, 6, 100.0
_KV_ROWS, _KV_HEAD_DIM = 256, 128
# Output channels of the weight a smoothed activation meets: SmoothQuant's scale divides by each input
# channel's largest weight, which a 16-row reference would understate.
_SMOOTH_ROWS = 1024
_SEED = 0
#: The reference tensors' shapes and seed; a table measured on other ones is ignored.
REFERENCE = {"weight": [_REF_ROWS, _REF_COLS], "activation": [_ACT_TOKENS, _REF_COLS, _ACT_OUTLIERS,
                                                              _ACT_OUTLIER_SCALE],
             "kv": [_KV_ROWS, _KV_HEAD_DIM], "smoothing_weight": [_SMOOTH_ROWS, _REF_COLS], "seed": _SEED, "version": 2}
#: Sparsity patterns the shipped table covers for every weight format.
TABLE_SPARSITIES = ("dense", "2:4", "unstructured:0.5")
TABLE_PATH = Path(__file__).with_name("data") / "format_noise.json"
#: Formats whose noise is 0 by construction (the reference is stored in 16 bits).
_HIGH_PRECISION = frozenset({"bf16", "fp16", "fp32"})


def _torch():
    import torch

    return torch


@functools.lru_cache(maxsize=1)
def _reference_weight():
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED)
    return torch.randn(_REF_ROWS, _REF_COLS, generator=g).to(torch.bfloat16).to(torch.float32)


def _relative_mse(ref, approx) -> float:
    num = float(((ref.double() - approx.double()) ** 2).sum())
    den = float((ref.double() ** 2).sum())
    return num / den if den > 0 else 0.0


def _apply(w, weights: str, sparsity: str):
    """Prune (magnitude) then quantise a 2-D tensor with the real backends."""
    from planner.backends import prune_2_4, prune_unstructured, quantize_tensor

    sp = parse_sparsity(sparsity)
    x = w
    if sp.name == "2:4":
        x = prune_2_4(x).to_dense().to(w.dtype)
    elif sp.name != "dense":
        x = prune_unstructured(x, sp).to_dense().to(w.dtype)
    fmt = get_format(weights)
    if fmt.kind == "float" and fmt.element_bits >= 16:
        torch = _torch()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[fmt.name]
        return x.to(dtype).to(w.dtype)
    return quantize_tensor(x, fmt).dequantize(w.dtype)


def measure_weight_noise(weights: str, sparsity: str = "dense") -> float:
    """:func:`weight_noise` computed now, by quantising the reference matrix."""
    ref = _reference_weight()
    return _relative_mse(ref, _apply(ref, weights, sparsity))


@functools.lru_cache(maxsize=1)
def _reference_activations():
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED + 1)
    x = torch.randn(_ACT_TOKENS, _REF_COLS, generator=g)
    idx = torch.randperm(_REF_COLS, generator=g)[:_ACT_OUTLIERS]
    x[:, idx] *= _ACT_OUTLIER_SCALE
    mask = torch.ones(_REF_COLS, dtype=torch.bool)
    mask[idx] = False
    return x.to(torch.bfloat16).to(torch.float32), mask


@dataclass(frozen=True, slots=True)
class ActivationRecipe:
    """How an engine quantizes integer activations, beyond per token as they come (its profile's
    ``activation_smoothing`` and ``activation_blocks``): SmoothQuant's migration strength on the
    groups that read a norm, and per weight format the features one activation scale covers.
    ``dynamic``: the format an engine quantizes the float activations of integer-weight linear
    layers to at run time (its runtime's ``dynamic_act_quant``: XNNPACK's 8da4w / 8da8w), per token;
    it says which activations become integer, not how a table measured them, so it is not part of
    the dict form."""

    smoothing: float | None = None
    blocks: tuple[tuple[str, int], ...] = ()
    dynamic: str | None = None
    weight_only: tuple[str, ...] = ()   # integer weight formats exported weight-only: ``dynamic`` skips them

    def block_for(self, weights: str) -> int | None:
        return next((b for f, b in self.blocks if f == weights), None)

    @property
    def empty(self) -> bool:
        return self.smoothing is None and not self.blocks and self.dynamic is None

    def to_dict(self) -> dict:
        """``{"smoothing_alpha": strength or None, "blocks": {weight format: values per scale}}``."""
        return {"smoothing_alpha": self.smoothing, "blocks": dict(self.blocks)}

    def same_as(self, other: ActivationRecipe | None) -> bool:
        """Whether ``other`` (None: per token) quantizes integer activations the same way."""
        other = other or ActivationRecipe()
        return self.smoothing == other.smoothing and dict(self.blocks) == dict(other.blocks)

    def describe(self) -> str:
        """``after SmoothQuant (strength 0.8)``, ``with one scale per 32 or 256 features``, ``per token``."""
        parts = []
        if self.smoothing is not None:
            parts.append(f"after SmoothQuant (strength {self.smoothing:g})")
        if self.blocks:
            parts.append(f"with one scale per {' or '.join(str(b) for b in sorted({b for _, b in self.blocks}))} features")
        return " and ".join(parts) or "per token, as they come"


def dynamic_applies(weights: str, activations: str, weight_only: tuple[str, ...] = ()) -> bool:
    """Whether an engine that quantizes float activations at run time (ActivationRecipe.dynamic,
    planner.opcost.dynamic_activations) does so for this linear layer's scheme: integer weights of
    at most 8 bits with 16- or 32-bit float activations (8da4w / 8da8w), unless the exporter writes
    those weights weight-only for the model (``weight_only``: export_llama's int8 mode)."""
    w, a = get_format(weights), get_format(activations)
    return (w.kind == "int" and w.element_bits <= 8 and a.kind in ("float", "minifloat") and a.element_bits >= 16
            and w.name not in weight_only)


def recipe_of(runtime) -> ActivationRecipe:
    """The recipe an engine profile's runtime block states (:class:`planner.engines.Runtime`:
    ``smoothing_alpha``, ``activation_blocks``)."""
    return ActivationRecipe(smoothing=runtime.smoothing_alpha, blocks=tuple(runtime.activation_blocks),
                            dynamic=runtime.dynamic_act_quant, weight_only=tuple(runtime.weight_only_formats))


def recipe_from_dict(value, path: str, error) -> ActivationRecipe:
    """An :class:`ActivationRecipe` from its dict form (:meth:`ActivationRecipe.to_dict`), checked as the
    engine loader checks a profile: a strength in (0, 1] or null, blocks a power of two from 8 to 4096
    keyed by canonical weight formats. ``error(field, expected, got)`` builds the exception raised,
    ``field`` a dotted path under ``path``."""
    from collections.abc import Mapping

    from planner.formats import FormatError

    if not isinstance(value, Mapping):
        raise error(path, "a mapping with smoothing_alpha and blocks", value)
    for key in value:
        if key not in ("smoothing_alpha", "blocks"):
            raise error(f"{path}.{key}", "left out: the known keys are smoothing_alpha and blocks", key)
    for key, none in (("smoothing_alpha", "null"), ("blocks", "{}")):  # both stated, as written: not "per token" by omission
        if key not in value:
            raise error(f"{path}.{key}", f"given ({none} for none)", "nothing")
    alpha, blocks = value["smoothing_alpha"], value["blocks"]
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                              or not 0.0 < alpha <= 1.0):
        raise error(f"{path}.smoothing_alpha", "SmoothQuant's migration strength, a number in (0, 1], or null", alpha)
    if not isinstance(blocks, Mapping):
        raise error(f"{path}.blocks", "a mapping of weight format -> values per activation scale", blocks)
    for fmt, block in blocks.items():
        try:
            canonical = get_format(fmt).name if isinstance(fmt, str) else None
        except FormatError:
            canonical = None
        if canonical is None or canonical != fmt or not get_format(fmt).is_weight:
            raise error(f"{path}.blocks", "weight formats by their canonical names (docs/formats.md)", fmt)
        if isinstance(block, bool) or not isinstance(block, int) or not 8 <= block <= 4096 or block & (block - 1):
            raise error(f"{path}.blocks.{fmt}", "a power of two from 8 to 4096 (values per activation scale)", block)
    return ActivationRecipe(smoothing=None if alpha is None else float(alpha), blocks=tuple(blocks.items()))


def smoothable(activations: str) -> bool:
    """Whether an engine's activation recipe (SmoothQuant's migration, scale blocks) applies to
    ``activations``: an integer format (int8, W8A8); float formats carry their own exponent."""
    return get_format(activations).kind == "int"


@functools.lru_cache(maxsize=1)
def _smoothing_weight():
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED + 3)
    return torch.randn(_SMOOTH_ROWS, _REF_COLS, generator=g).to(torch.bfloat16).to(torch.float32)


def _quantize_blocks(x, fmt: str, block: int | None):
    """``x`` quantized to ``fmt`` with one scale per ``block`` consecutive features (None: per token)."""
    from planner.backends import quantize_tensor

    if block is None:
        return quantize_tensor(x, fmt).dequantize(x.dtype)
    if block < 1 or x.shape[-1] % block:
        raise ValueError(f"an activation block must divide the {x.shape[-1]} reference features; got {block!r}")
    rows = x.reshape(-1, block)
    return quantize_tensor(rows, fmt).dequantize(x.dtype).reshape(x.shape)


def measure_activation_noise(activations: str, smoothing: float | None = None, block: int | None = None) -> float:
    """:func:`activation_noise` computed now. With ``smoothing`` (integer formats), SmoothQuant's
    migration of that strength runs first: the activation noise on the ordinary channels is mapped back
    through the scales, and the rise in the int8 weight noise of those channels' columns is added (the
    migrated weight ``W·diag(s)`` quantized per output row and mapped back by ``1/s``, against ``W``
    quantized as is). With ``block`` (integer formats), one scale covers ``block`` consecutive features
    of a token instead of the whole token (llama.cpp's Q8_0 / Q8_K activation blocks)."""
    fmt = get_format(activations)
    if fmt.name in _HIGH_PRECISION:
        return 0.0
    if not smoothable(fmt.name):
        smoothing = block = None
    x, mask = _reference_activations()
    if smoothing is None:
        q = _quantize_blocks(x, fmt.name, block)
        return _relative_mse(x[:, mask], q[:, mask])
    from planner.backends import quantize_tensor
    from planner.backends.smoothing import smoothing_scales

    w = _smoothing_weight()
    s = smoothing_scales(x.abs().amax(dim=0), w, smoothing)
    act = _relative_mse(x[:, mask], (_quantize_blocks(x / s, fmt.name, block) * s)[:, mask])
    migrated = quantize_tensor(w * s, "int8").dequantize(w.dtype) / s
    plain = quantize_tensor(w, "int8").dequantize(w.dtype)
    rise = _relative_mse(w[:, mask], migrated[:, mask]) - _relative_mse(w[:, mask], plain[:, mask])
    return act + max(rise, 0.0)


def activation_key(activations: str, smoothing: float | None = None, block: int | None = None) -> str:
    """The shipped table's key of an activation noise: ``int8``, ``int8|sq0.8``, ``int8|b32``."""
    name = get_format(activations).name
    if not smoothable(name):
        return name
    return name + (f"|sq{smoothing:g}" if smoothing is not None else "") + (f"|b{block}" if block is not None else "")


def measure_kv_noise(kv: str) -> float:
    """:func:`kv_noise` computed now (``kv`` must be a KV-cache format)."""
    torch = _torch()
    g = torch.Generator().manual_seed(_SEED + 2)
    ref = torch.randn(_KV_ROWS, _KV_HEAD_DIM, generator=g).to(torch.bfloat16).to(torch.float32)
    return _relative_mse(ref, _apply(ref, get_format(kv).name, "dense"))


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, float]]:
    """The shipped table, or an empty one when it is missing or was measured differently."""
    try:
        data = json.loads(TABLE_PATH.read_text())
    except (OSError, ValueError):
        return {"weight": {}, "activation": {}, "kv": {}}
    if data.get("reference") != REFERENCE:
        return {"weight": {}, "activation": {}, "kv": {}}
    return {k: dict(data.get(k, {})) for k in ("weight", "activation", "kv")}


@functools.lru_cache(maxsize=512)
def weight_noise(weights: str, sparsity: str = "dense") -> float:
    """Relative MSE of storing the N(0, 1) reference matrix in ``weights`` with
    ``sparsity`` (the shipped table, else measured)."""
    name, sp = get_format(weights).name, parse_sparsity(sparsity).name
    hit = _table()["weight"].get(f"{name}|{sp}")
    return float(hit) if hit is not None else measure_weight_noise(name, sp)


@functools.lru_cache(maxsize=256)
def activation_noise(activations: str, smoothing: float | None = None, block: int | None = None) -> float:
    """Noise power on the ordinary channels, relative to their power, when activations
    are quantised to ``activations`` per token (int8) or per tensor (fp8); 0 for 16/32-bit.
    An engine's recipe for integer formats: ``smoothing``, SmoothQuant's migration strength applied
    first; ``block``, features per scale instead of a whole token (:func:`measure_activation_noise`)."""
    key = activation_key(activations, smoothing, block)
    hit = _table()["activation"].get(key)
    if hit is not None:
        return float(hit)
    name = get_format(activations).name
    return measure_activation_noise(name, smoothing if smoothable(name) else None, block if smoothable(name) else None)


@functools.lru_cache(maxsize=64)
def kv_noise(kv: str) -> float:
    """Relative MSE of a KV-cache format on a (tokens·heads × head_dim) N(0, 1) matrix;
    scales run per token and head (int8) or per group along head_dim."""
    fmt = get_format(kv)
    if not fmt.is_kv:
        from planner.errors import SensitivityError

        raise SensitivityError(f"{fmt.name!r} is not a KV-cache format", field="kv")
    hit = _table()["kv"].get(fmt.name)
    return float(hit) if hit is not None else measure_kv_noise(fmt.name)


def table_recipes() -> tuple[tuple[float | None, int | None], ...]:
    """The (SmoothQuant strength, activation block) pairs the shipped engine profiles price integer
    activations with, beyond per token as they come (``activation_smoothing``, ``activation_blocks``)."""
    from planner.engines import list_engines, load_engine

    out: set[tuple[float | None, int | None]] = set()
    for e in list_engines():
        rt = load_engine(e).runtime
        blocks = {b for _, b in rt.activation_blocks} or {None}
        out |= {(rt.smoothing_alpha, b) for b in blocks}
    out.discard((None, None))
    return tuple(sorted(out, key=lambda r: (r[0] or 0.0, r[1] or 0)))


def build_table() -> dict:
    """Measure every registry format (weights × :data:`TABLE_SPARSITIES`, activations — also with
    each shipped engine's recipe for integer ones — and KV)."""
    weight = {f"{f.name}|{parse_sparsity(sp).name}": measure_weight_noise(f.name, sp)
              for f in list_formats(role="weight") for sp in TABLE_SPARSITIES}
    act = {f.name: measure_activation_noise(f.name) for f in list_formats(role="activation")}
    act.update({activation_key(f.name, sm, b): measure_activation_noise(f.name, sm, b)
                for sm, b in table_recipes() for f in list_formats(role="activation") if smoothable(f.name)})
    kv = {f.name: measure_kv_noise(f.name) for f in list_formats() if f.is_kv}
    return {"reference": REFERENCE, "weight": weight, "activation": act, "kv": kv}


def main(argv: list[str] | None = None) -> int:
    """``python -m planner.format_noise [PATH]``: rewrite the shipped table."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else TABLE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
