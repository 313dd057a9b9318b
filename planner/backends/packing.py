"""Bit packing of small unsigned codes into bytes (the real storage of sub-byte formats).

Codes are packed little-endian, least significant bit first, into one contiguous
``uint8`` stream: ``n`` codes of ``bits`` bits take exactly ``ceil(n · bits / 8)``
bytes, so measured storage equals the formula in :mod:`planner.formats`.
"""

from __future__ import annotations

import torch

__all__ = ["pack_bits", "packed_nbytes", "unpack_bits"]


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes holding ``count`` codes of ``bits`` bits: ``ceil(count · bits / 8)``."""
    return (count * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"The 'bits' parameter of pack_bits must be an int in [1, 8]. Got {bits!r} instead.")


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer ``codes`` (any shape, values in ``[0, 2**bits)``) into a 1-D ``uint8`` tensor."""
    _check_bits(bits)
    flat = codes.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    if flat.is_floating_point():
        raise TypeError(f"pack_bits needs integer codes; got dtype {flat.dtype}")
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 2**bits):
        raise ValueError(f"pack_bits: codes must lie in [0, {2**bits - 1}] for {bits} bits; "
                         f"got range [{int(flat.min())}, {int(flat.max())}]")
    flat = flat.to(torch.uint8)
    if bits == 8:
        return flat.clone()
    n = flat.numel()
    shifts = torch.arange(bits, dtype=torch.uint8, device=flat.device)
    stream = ((flat.unsqueeze(-1) >> shifts) & 1).reshape(-1)  # n·bits bits, LSB first
    pad = (-stream.numel()) % 8
    if pad:
        stream = torch.cat([stream, stream.new_zeros(pad)])
    weights = (1 << torch.arange(8, dtype=torch.int32, device=flat.device))
    packed = (stream.reshape(-1, 8).to(torch.int32) * weights).sum(dim=-1).to(torch.uint8)
    assert packed.numel() == packed_nbytes(n, bits)
    return packed


def unpack_bits(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` codes as a 1-D ``uint8`` tensor."""
    _check_bits(bits)
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise TypeError(f"unpack_bits needs a 1-D uint8 tensor; got {packed.dtype} of shape {tuple(packed.shape)}")
    if packed.numel() != packed_nbytes(count, bits):
        raise ValueError(f"unpack_bits: {count} codes of {bits} bits need {packed_nbytes(count, bits)} bytes; "
                         f"got {packed.numel()}")
    if bits == 8:
        return packed.clone()
    byte_shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    stream = ((packed.unsqueeze(-1) >> byte_shifts) & 1).reshape(-1)[: count * bits]
    weights = (1 << torch.arange(bits, dtype=torch.int32, device=packed.device))
    return (stream.reshape(count, bits).to(torch.int32) * weights).sum(dim=-1).to(torch.uint8)
