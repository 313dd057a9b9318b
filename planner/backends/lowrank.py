"""Low-rank factorisation by truncated SVD (Eckart–Young: the best rank-r approximation in
Frobenius norm keeps the r largest singular values)."""

from __future__ import annotations

import torch

from planner.backends.quantize import check_weight

__all__ = ["low_rank"]


def low_rank(w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``A: [rank, in]`` and ``B: [out, rank]`` such that ``B @ A ≈ w``.

    The singular values are split evenly (``B = U·√S``, ``A = √S·Vᵀ``) so both factors
    have similar ranges for later quantisation. Factors come back in ``w``'s dtype.
    """
    check_weight(w, "low_rank")
    limit = min(w.shape)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= limit:
        raise ValueError(f"The 'rank' parameter of low_rank must be an int in [1, {limit}] for a weight of shape "
                         f"{tuple(w.shape)}. Got {rank!r} instead.")
    u, s, vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
    root = s[:rank].sqrt()
    b = u[:, :rank] * root
    a = root.unsqueeze(1) * vh[:rank]
    return a.to(w.dtype), b.to(w.dtype)
