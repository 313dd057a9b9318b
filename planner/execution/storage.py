"""Packed storage of one weight under a (format, sparsity) choice: only what a kernel stores.

:func:`pack_weight` prunes (2:4 or unstructured magnitude), quantises with
:func:`planner.backends.quantize_tensor`, and — for sparse weights — keeps only the element
codes of the kept positions plus the sparse metadata, exactly as
:func:`planner.formats.combined_bits_per_weight` prices it:

* 2:4: kept codes (half the positions) + a 2-bit position index per kept value
  (``0.5·b + 1`` bits per dense position) + the format's scales per dense group;
* unstructured: the encoding :meth:`Sparsity.encoding` picks for ``b``-bit elements — codes of
  every position (``dense``), a 1-bit bitmap plus kept codes (``bitmap``), or CSR with 16/32-bit
  column indices and int32 row pointers.

Scales, zero-points and look-up tables stay per dense group (Sparse-Marlin layout,
github.com/IST-DASLab/Sparse-Marlin). :meth:`PackedWeight.nbytes` sums the real tensor sizes, so
measured bytes can be compared with the registry's prediction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from planner.backends import (
    QuantizedTensor,
    SparseTensor,
    pack_bits,
    prune_2_4,
    prune_unstructured,
    quantize_tensor,
    unpack_bits,
)
from planner.backends.packing import packed_nbytes
from planner.backends.quantize import check_weight
from planner.formats import Format, Sparsity, combined_bits_per_weight, get_format, parse_sparsity

__all__ = ["PackedWeight", "pack_weight", "predicted_nbytes"]

_Q = "q."  # payload prefix of the quantised tensors
_S = "s."  # payload prefix of the sparse metadata


def predicted_nbytes(fmt: Format | str, sparsity: Sparsity | str, rows: int, cols: int) -> int:
    """Bytes the format registry predicts for a ``rows × cols`` weight: ``ceil(n · bits / 8)``
    with ``bits = combined_bits_per_weight(fmt, sparsity, rows, cols)``."""
    spec = get_format(fmt)
    sp = parse_sparsity(sparsity)
    if sp.name == "dense":
        return spec.nbytes(rows * cols, rows, cols)
    bits = combined_bits_per_weight(spec, sp, rows, cols)
    # The registry prices in exact fractions and returns a float; the tolerance only undoes the
    # float's last-bit rounding before the ceiling.
    return math.ceil(rows * cols * bits / 8 - 1e-9)


def _element_key(payload: Mapping[str, torch.Tensor]) -> str:
    return "codes" if "codes" in payload else "values"


@dataclass(frozen=True, slots=True, kw_only=True)
class PackedWeight:
    """A ``[out, in]`` weight stored in ``format`` with ``sparsity``.

    ``encoding`` is ``dense`` (codes for every position, pruned positions coded as zero) or the
    sparse metadata layout (``2:4``, ``bitmap``, ``csr16``, ``csr32``); ``payload`` holds every
    stored tensor under ``q.<name>`` (quantised codes, scales, tables) and ``s.<name>`` (sparse
    metadata); ``packed_elements`` says whether the kept codes are a bit-packed ``uint8`` stream.
    """

    format: str
    sparsity: str
    encoding: str
    shape: tuple[int, int]
    nnz: int
    packed_elements: bool
    payload: Mapping[str, torch.Tensor]

    def nbytes(self) -> int:
        """Stored bytes: ``numel × element_size`` over every payload tensor."""
        return sum(t.numel() * t.element_size() for t in self.payload.values())

    def predicted_nbytes(self) -> int:
        return predicted_nbytes(self.format, self.sparsity, *self.shape)

    def with_payload(self, payload: Mapping[str, torch.Tensor]) -> "PackedWeight":
        return dataclasses.replace(self, payload=dict(payload))

    def quantized(self) -> QuantizedTensor:
        """The quantised payload (element codes of the kept positions only, when sparse)."""
        q = {k[len(_Q):]: v for k, v in self.payload.items() if k.startswith(_Q)}
        return QuantizedTensor(format=self.format, shape=self.shape, payload=q)

    def mask(self) -> torch.Tensor | None:
        """Boolean ``[out, in]`` keep-mask, or None for dense storage."""
        if self.encoding == "dense":
            return None
        meta = {k[len(_S):]: v for k, v in self.payload.items() if k.startswith(_S)}
        return SparseTensor(encoding=self.encoding, shape=self.shape, dtype=torch.float32, nnz=self.nnz,
                            payload=meta).mask()

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense ``[out, in]`` weight this storage represents."""
        qt = self.quantized()
        mask = self.mask()
        if mask is None:
            return qt.dequantize(dtype)
        rows, cols = self.shape
        n = rows * cols
        key = _element_key(qt.payload)
        kept = qt.payload[key]
        flat_mask = mask.reshape(-1)
        bits = get_format(self.format).element_bits
        if self.packed_elements:
            full = torch.zeros(n, dtype=torch.uint8, device=kept.device)
            full[flat_mask] = unpack_bits(kept, bits, self.nnz)
            stored = pack_bits(full, bits)
        else:
            # Unpacked elements (int8 codes, fp8/fp16/fp32 values) are [out, in] tensors.
            full = torch.zeros(n, dtype=kept.dtype, device=kept.device)
            full[flat_mask] = kept
            stored = full.reshape(rows, cols)
        payload = dict(qt.payload)
        payload[key] = stored
        dense = QuantizedTensor(format=self.format, shape=self.shape, payload=payload).dequantize(dtype)
        # Positions that are not stored are zero, whatever code the filler decodes to.
        return dense * mask.to(dtype)


def _split_elements(qt: QuantizedTensor, mask: torch.Tensor, bits: int) -> tuple[str, torch.Tensor, bool]:
    """(payload key, kept elements, bit-packed?) of a quantised tensor at the ``mask`` positions."""
    key = _element_key(qt.payload)
    elements = qt.payload[key]
    n = mask.numel()
    flat_mask = mask.reshape(-1)
    if elements.dtype == torch.uint8 and elements.dim() == 1 and elements.numel() == packed_nbytes(n, bits):
        codes = unpack_bits(elements, bits, n)
        return key, pack_bits(codes[flat_mask], bits), True
    if elements.numel() != n:
        raise ValueError(f"format {qt.format!r}: cannot locate one stored element per weight in payload "
                         f"{key!r} (shape {tuple(elements.shape)} for {n} weights)")
    return key, elements.reshape(-1)[flat_mask].clone(), False


def pack_weight(w: torch.Tensor, fmt: Format | str, sparsity: Sparsity | str = "dense") -> PackedWeight:
    """Prune ``w`` (``[out, in]``) to ``sparsity`` by magnitude, quantise it to ``fmt`` and keep
    only the stored representation."""
    spec = get_format(fmt)
    sp = parse_sparsity(sparsity)
    w32 = check_weight(w, f"pack_weight(format={spec.name!r}, sparsity={sp.name!r})")
    rows, cols = w32.shape
    if sp.name == "dense" or sp.density >= 1.0:
        qt = quantize_tensor(w32, spec)
        return PackedWeight(format=spec.name, sparsity="dense", encoding="dense", shape=(rows, cols),
                            nnz=rows * cols, packed_elements=False,
                            payload={_Q + k: v for k, v in qt.payload.items()})
    if sp.structured:
        pruned = prune_2_4(w32)
        meta = {"indices": pruned.payload["indices"]}
        encoding = "2:4"
    else:
        pruned = prune_unstructured(w32, sp)
        encoding = sp.encoding(spec.element_bits, rows, cols)
        meta = {}
    mask = pruned.mask()
    qt = quantize_tensor(w32 * mask, spec)
    nnz = int(mask.sum())
    if encoding == "dense":
        return PackedWeight(format=spec.name, sparsity=sp.name, encoding="dense", shape=(rows, cols), nnz=nnz,
                            packed_elements=False, payload={_Q + k: v for k, v in qt.payload.items()})
    if encoding == "bitmap":
        meta = {"bitmap": pack_bits(mask.reshape(-1), 1)}
    elif encoding in ("csr16", "csr32"):
        col_idx = mask.nonzero()[:, 1]
        row_ptr = torch.zeros(rows + 1, dtype=torch.int32)
        row_ptr[1:] = mask.sum(dim=1).cumsum(0).to(torch.int32)
        if encoding == "csr16":  # unsigned 16-bit indices in int16's bit pattern (as planner.backends.sparse)
            col_idx = torch.where(col_idx >= 32768, col_idx - 65536, col_idx).to(torch.int16)
        else:
            col_idx = col_idx.to(torch.int32)
        meta = {"col_idx": col_idx, "row_ptr": row_ptr}
    key, kept, packed = _split_elements(qt, mask, spec.element_bits)
    payload = {_Q + k: v for k, v in qt.payload.items() if k != key}
    payload[_Q + key] = kept
    payload.update({_S + k: v for k, v in meta.items()})
    return PackedWeight(format=spec.name, sparsity=sp.name, encoding=encoding, shape=(rows, cols), nnz=nnz,
                        packed_elements=packed, payload=payload)
