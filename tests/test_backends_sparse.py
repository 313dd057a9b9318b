"""Pruning (2:4, unstructured), low-rank factorisation and bit packing on real tensors.

Measured bytes are checked against the sparsity prices of planner.formats
(Mishra et al., arXiv:2104.08378: 2:4 = 0.5·b + 1 bits; bitmap = 1 + (1 − s)·b).
"""

from __future__ import annotations

import math

import pytest
import torch

from planner.backends import low_rank, pack_bits, packed_nbytes, prune_2_4, prune_unstructured, unpack_bits
from planner.formats import SparsityError, parse_sparsity


@pytest.fixture(scope="module")
def weight() -> torch.Tensor:
    return torch.randn(256, 1024, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)


# -- packing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_round_trip_and_size(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    for count in (1, 7, 8, 1001):
        codes = torch.randint(0, 2**bits, (count,), generator=gen, dtype=torch.int64).to(torch.uint8)
        packed = pack_bits(codes, bits)
        assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(count * bits / 8)
        assert packed.numel() == packed_nbytes(count, bits)
        assert torch.equal(unpack_bits(packed, bits, count), codes)


def test_pack_layout_is_lsb_first() -> None:
    # Two 4-bit codes 0x3, 0xA → one byte 0xA3.
    assert pack_bits(torch.tensor([3, 10]), 4).tolist() == [0xA3]


def test_pack_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        pack_bits(torch.tensor([16]), 4)
    with pytest.raises(ValueError, match="'bits' parameter"):
        pack_bits(torch.tensor([1]), 9)
    with pytest.raises(ValueError, match="need 1 bytes"):
        unpack_bits(torch.zeros(3, dtype=torch.uint8), 4, 2)


# -- 2:4 ----------------------------------------------------------------------------------------


def test_2_4_keeps_the_two_largest_of_every_four(weight: torch.Tensor) -> None:
    sp = prune_2_4(weight)
    dense = sp.to_dense()
    assert dense.dtype == weight.dtype and dense.shape == weight.shape
    kept = sp.mask().reshape(256, 256, 4)
    assert bool((kept.sum(dim=-1) == 2).all())
    groups = weight.reshape(256, 256, 4).abs().float()
    smallest_kept = torch.where(kept, groups, torch.full_like(groups, math.inf)).amin(dim=-1)
    largest_dropped = torch.where(kept, torch.full_like(groups, -math.inf), groups).amax(dim=-1)
    assert bool((smallest_kept >= largest_dropped).all())
    # Kept values are the originals, bit for bit.
    assert torch.equal(dense, torch.where(sp.mask(), weight, torch.zeros_like(weight)))
    assert sp.density == 0.5


def test_2_4_storage_is_half_the_values_plus_two_bit_indices(weight: torch.Tensor) -> None:
    # 2:4 on bf16 = 0.5·16 + 1 = 9 bits per dense weight (56.25 % of dense; arXiv:2104.08378).
    n = weight.numel()
    sp = prune_2_4(weight)
    assert sp.nbytes() == n * 9 // 8
    assert sp.nbytes() == math.ceil(n * parse_sparsity("2:4").bits_per_weight(16) / 8)
    fp32 = prune_2_4(weight.float())
    assert fp32.nbytes() == n * (0.5 * 32 + 1) / 8


def test_2_4_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        prune_2_4(torch.randn(4, 6))
    with pytest.raises(ValueError, match="2-D"):
        prune_2_4(torch.randn(8))


# -- unstructured -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "encoding"),
    [(0.03, "dense"), (0.5, "bitmap"), (0.7, "bitmap"), (0.95, "csr16")],
)
def test_unstructured_magnitude_pruning(weight: torch.Tensor, s: float, encoding: str) -> None:
    n = weight.numel()
    sp = prune_unstructured(weight, s)
    assert sp.encoding == encoding == parse_sparsity(f"unstructured:{s}").encoding(16, 256, 1024)
    keep = n - round(s * n)
    mask = sp.mask()
    assert sp.nnz == keep == int(mask.sum())
    dense = sp.to_dense()
    assert torch.equal(dense, torch.where(mask, weight, torch.zeros_like(weight)))
    mags = weight.abs().float()
    assert float(mags[mask].min()) >= float(mags[~mask].max())
    # Measured storage follows Sparsity.bits_per_weight (nnz is rounded to whole weights: ±2 bytes).
    predicted = math.ceil(n * parse_sparsity(f"unstructured:{s}").bits_per_weight(16, 256, 1024) / 8)
    assert abs(sp.nbytes() - predicted) <= 2


def test_bitmap_at_70_percent_is_5_8_bits(weight: torch.Tensor) -> None:
    # Bitmap sparsity on bf16 at s = 0.7 → 1 + 0.3·16 = 5.8 bits per weight (one mask bit per position).
    sp = prune_unstructured(weight, "unstructured:0.7")
    assert sp.nbytes() * 8 / weight.numel() == pytest.approx(5.8, abs=1e-4)


def test_csr_handles_wide_rows() -> None:
    # Column indices above 32767 must survive the unsigned-16-bit storage.
    w = torch.randn(2, 40000, generator=torch.Generator().manual_seed(4))
    sp = prune_unstructured(w, 0.99)
    assert sp.encoding == "csr16"
    assert torch.equal(sp.to_dense(), torch.where(sp.mask(), w, torch.zeros_like(w)))
    assert int(sp.mask().nonzero()[:, 1].max()) > 32767


def test_unstructured_rejects_bad_sparsity(weight: torch.Tensor) -> None:
    with pytest.raises(SparsityError, match=r"\[0, 1\)"):
        prune_unstructured(weight, 1.5)
    with pytest.raises(SparsityError, match="use prune_2_4"):
        prune_unstructured(weight, "2:4")
    with pytest.raises(SparsityError, match="unknown sparsity"):
        prune_unstructured(weight, "foo")


# -- low rank -----------------------------------------------------------------------------------


def test_low_rank_is_the_eckart_young_optimum() -> None:
    # Eckart–Young–Mirsky: ‖W − B·A‖_F² = Σ_{i > r} σ_i² for the truncated SVD.
    w = torch.randn(96, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    sigma = torch.linalg.svdvals(w)
    errors = []
    for rank in (1, 8, 32, 64):
        a, b = low_rank(w, rank)
        assert a.shape == (rank, 64) and b.shape == (96, rank) and a.dtype == w.dtype
        err = float(((w - b @ a) ** 2).sum())
        assert err == pytest.approx(float((sigma[rank:] ** 2).sum()), rel=1e-9, abs=1e-9)
        errors.append(err)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-18


def test_low_rank_rejects_bad_rank() -> None:
    with pytest.raises(ValueError, match=r"'rank' parameter of low_rank must be an int in \[1, 4\]"):
        low_rank(torch.randn(4, 8), 5)
    with pytest.raises(ValueError, match="'rank' parameter"):
        low_rank(torch.randn(4, 8), 0)
