"""Real pruning into sparse storage: 2:4 semi-structured and unstructured (magnitude).

:class:`SparseTensor` holds only what is stored: kept values in the weight's dtype and
their metadata — 2-bit positions for 2:4 (NVIDIA sparse tensor cores), a packed
bitmap, or CSR column indices with int32 row pointers. The unstructured encoding is
the one :meth:`planner.formats.Sparsity.encoding` prices cheapest, so measured bytes
follow :meth:`~planner.formats.Sparsity.bits_per_weight`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from planner.backends.packing import pack_bits, unpack_bits
from planner.backends.quantize import check_weight
from planner.formats import Sparsity, SparsityError, parse_sparsity

__all__ = ["SparseTensor", "prune_2_4", "prune_unstructured"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SparseTensor:
    """A pruned ``[out, in]`` weight: ``encoding`` is ``'2:4'``, ``'bitmap'``, ``'csr16'``,
    ``'csr32'`` or ``'dense'`` (zeros stored explicitly); ``nnz`` values are kept."""

    encoding: str
    shape: tuple[int, int]
    dtype: torch.dtype
    nnz: int
    payload: Mapping[str, torch.Tensor]

    @property
    def density(self) -> float:
        return self.nnz / (self.shape[0] * self.shape[1])

    def nbytes(self) -> int:
        """Real storage: values plus metadata, ``numel × element_size`` summed."""
        return sum(t.numel() * t.element_size() for t in self.payload.values())

    def mask(self) -> torch.Tensor:
        """Boolean ``[out, in]`` tensor, True where a value is kept."""
        rows, cols = self.shape
        p = self.payload
        if self.encoding == "dense":
            return p["mask"] if "mask" in p else p["values"] != 0
        if self.encoding == "2:4":
            pos = unpack_bits(p["indices"], 2, rows * cols // 2).reshape(rows, cols // 4, 2).to(torch.int64)
            m = torch.zeros(rows, cols // 4, 4, dtype=torch.bool, device=pos.device)
            return m.scatter_(2, pos, True).reshape(rows, cols)
        if self.encoding == "bitmap":
            return unpack_bits(p["bitmap"], 1, rows * cols).reshape(rows, cols).bool()
        cols_idx = _decode_cols(p["col_idx"])
        row_of = torch.repeat_interleave(torch.arange(rows, device=cols_idx.device),
                                         torch.diff(p["row_ptr"].to(torch.int64)))
        m = torch.zeros(rows, cols, dtype=torch.bool, device=cols_idx.device)
        m[row_of, cols_idx] = True
        return m

    def to_dense(self) -> torch.Tensor:
        """The dense ``[out, in]`` tensor in the original dtype, zeros where pruned."""
        rows, cols = self.shape
        p = self.payload
        if self.encoding == "dense":
            return p["values"].clone()
        if self.encoding == "2:4":
            pos = unpack_bits(p["indices"], 2, rows * cols // 2).reshape(rows, cols // 4, 2).to(torch.int64)
            out = torch.zeros(rows, cols // 4, 4, dtype=self.dtype, device=pos.device)
            return out.scatter_(2, pos, p["values"].reshape(rows, cols // 4, 2)).reshape(rows, cols)
        out = torch.zeros(rows * cols, dtype=self.dtype, device=p["values"].device)
        # Bitmap and CSR both list kept values in row-major order.
        out[self.mask().reshape(-1)] = p["values"]
        return out.reshape(rows, cols)


def _decode_cols(col_idx: torch.Tensor) -> torch.Tensor:
    if col_idx.dtype == torch.int16:  # unsigned 16-bit indices stored in int16's bit pattern
        return col_idx.to(torch.int64) & 0xFFFF
    return col_idx.to(torch.int64)


def prune_2_4(w: torch.Tensor) -> SparseTensor:
    """Keep the 2 largest ``|w|`` of every 4 consecutive inputs (along ``in_features``)."""
    check_weight(w, "prune_2_4")
    rows, cols = w.shape
    if cols % 4:
        raise ValueError(f"prune_2_4 needs in_features divisible by 4 (groups of 4 along the input dim); "
                         f"got shape {tuple(w.shape)}")
    groups = w.detach().reshape(rows, cols // 4, 4)
    pos = groups.abs().to(torch.float32).topk(2, dim=-1).indices.sort(dim=-1).values
    values = groups.gather(2, pos)
    return SparseTensor(encoding="2:4", shape=(rows, cols), dtype=w.dtype, nnz=rows * cols // 2,
                        payload={"values": values.reshape(-1).clone(),
                                 "indices": pack_bits(pos.to(torch.uint8), 2)})


def _as_unstructured(sparsity: float | str | Sparsity) -> Sparsity:
    if isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool):
        if not 0.0 <= float(sparsity) < 1.0:
            raise SparsityError(f"The 'sparsity' parameter of prune_unstructured must be a fraction in [0, 1). "
                                f"Got {sparsity!r} instead.")
        return parse_sparsity(f"unstructured:{float(sparsity)!r}")
    sp = parse_sparsity(sparsity)  # type: ignore[arg-type]
    if sp.structured:
        raise SparsityError(f"prune_unstructured got the structured pattern {sp.name!r}; use prune_2_4")
    return sp


def prune_unstructured(w: torch.Tensor, sparsity: float | str | Sparsity) -> SparseTensor:
    """Zero the ``round(s·n)`` smallest ``|w|`` of the tensor and store the rest in the cheapest
    encoding for the weight's dtype (bitmap + packed values, CSR16/32, or dense)."""
    check_weight(w, "prune_unstructured")
    sp = _as_unstructured(sparsity)
    rows, cols = w.shape
    n = rows * cols
    keep = n - round(sp.sparsity * n)
    flat = w.detach().reshape(-1)
    mask = torch.zeros(n, dtype=torch.bool, device=w.device)
    if keep:
        mask[flat.abs().to(torch.float32).topk(keep, sorted=False).indices] = True
    encoding = sp.encoding(w.element_size() * 8, rows, cols)
    if encoding == "dense":
        values = torch.where(mask, flat, torch.zeros_like(flat)).reshape(rows, cols)
        payload = {"values": values}
        if keep and bool((flat[mask] == 0).any()):
            payload["mask"] = mask.reshape(rows, cols)  # kept zeros would be indistinguishable
        return SparseTensor(encoding="dense", shape=(rows, cols), dtype=w.dtype, nnz=keep, payload=payload)
    values = flat[mask].clone()
    if encoding == "bitmap":
        payload = {"values": values, "bitmap": pack_bits(mask, 1)}
    else:
        m2 = mask.reshape(rows, cols)
        col_idx = m2.nonzero()[:, 1]
        row_ptr = torch.zeros(rows + 1, dtype=torch.int32, device=w.device)
        row_ptr[1:] = m2.sum(dim=1).cumsum(0).to(torch.int32)
        if encoding == "csr16":
            col_idx = torch.where(col_idx >= 32768, col_idx - 65536, col_idx).to(torch.int16)
        else:
            col_idx = col_idx.to(torch.int32)
        payload = {"values": values, "col_idx": col_idx, "row_ptr": row_ptr}
    return SparseTensor(encoding=encoding, shape=(rows, cols), dtype=w.dtype, nnz=keep, payload=payload)
