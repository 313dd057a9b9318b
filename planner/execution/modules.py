"""Modules that hold packed weights and compute with them.

Each module registers the payload tensors of its :class:`~planner.execution.storage.PackedWeight`
as buffers — the only copy of the weight it keeps — and dequantises per call on CPU. Where
a native kernel exists it is used instead:

* W8A8 (int8 weights and activations): ``torch._int_mm`` (int8 × int8 → int32) with the
  per-token and per-channel scales applied to the int32 result (Dettmers et al. 2022,
  LLM.int8() vector-wise quantisation; SmoothQuant's W8A8 GEMM);
* on CUDA, fp8-e4m3 weights with fp8 activations: ``torch._scaled_mm``; 2:4-sparse 16-bit
  weights: ``torch.sparse.to_sparse_semi_structured`` (cuSPARSELt / CUTLASS).

Activations in a format other than fp32 are quantised per token (one row of the
activation matrix per token, the activation format's groups along the features) with
:func:`planner.backends.quantize_tensor` and dequantised before the float GEMM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from planner.backends import quantize_tensor
from planner.execution.storage import PackedWeight

__all__ = ["LowRankLinear", "PackedConv2d", "PackedEmbedding", "PackedLinear", "PackedModule", "quantize_activation"]

_FLOAT_PASS = ("fp32",)


def quantize_activation(x: torch.Tensor, fmt: str, block: int | None = None) -> torch.Tensor:
    """``x`` (``[..., features]``) quantised per token to ``fmt`` and back to ``x.dtype``; with
    ``block``, one scale per ``block`` consecutive features of a token (llama.cpp's Q8_0 / Q8_K)."""
    if fmt in _FLOAT_PASS:
        return x
    width = block if block is not None and x.shape[-1] % block == 0 else x.shape[-1]
    rows = x.reshape(-1, width)
    return quantize_tensor(rows, fmt).dequantize(x.dtype).reshape(x.shape)


def _buffer_name(key: str) -> str:
    return "packed__" + key.replace(".", "__")


class _PackedStore(nn.Module):
    """Registers a PackedWeight's payload as buffers and rebuilds it on demand."""

    def __init__(self, packed: PackedWeight) -> None:
        super().__init__()
        self._meta = packed.with_payload({})
        self._keys = tuple(packed.payload)
        for key, tensor in packed.payload.items():
            self.register_buffer(_buffer_name(key), tensor)

    def packed(self) -> PackedWeight:
        return self._meta.with_payload({k: getattr(self, _buffer_name(k)) for k in self._keys})

    def nbytes(self) -> int:
        return self.packed().nbytes()


class PackedModule(nn.Module):
    """Common interface of compressed layers: stored bytes, prediction, dense weight."""

    option: str = ""
    activations: str = "fp32"

    def weight_nbytes(self) -> int:
        raise NotImplementedError

    def predicted_weight_nbytes(self) -> int:
        raise NotImplementedError

    def dense_weight(self) -> torch.Tensor:
        """The weight this module computes with, in the original module's weight shape."""
        raise NotImplementedError


class PackedLinear(PackedModule):
    """``y = x · Wᵀ + b`` with ``W`` stored packed (any registered format and sparsity)."""

    def __init__(self, packed: PackedWeight | _PackedStore, bias: torch.Tensor | None, *, activations: str = "fp32",
                 option: str = "quantize") -> None:
        super().__init__()
        # A store passed in is shared (an lm_head tied to a packed embedding table).
        self.store = packed if isinstance(packed, _PackedStore) else _PackedStore(packed)
        packed = self.store.packed()
        self.in_features, self.out_features = packed.shape[1], packed.shape[0]
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.activations = activations
        self.option = option
        # W8A8 runs the integer GEMM: int8 codes with per-row scales, no sparsity.
        self._int8_gemm = packed.format == "int8" and packed.encoding == "dense" and activations == "int8"
        # SmoothQuant's scales (one per input channel) when the stored weight is W·diag(s): the input is
        # divided by them before it is quantized (planner.execution.apply).
        self.register_buffer("smooth", None)
        # Features per activation scale where the plan's engine quantizes int8 activations in blocks
        # (llama.cpp's CPU matmul); None: per token.
        self.activation_block: int | None = None
        # A dict: keep the dequantized weight by dtype instead of unpacking it on every call (what a
        # measurement that runs one packed layer many times sets; the values are the same).
        self.dense_cache: dict | None = None

    def set_smoothing(self, scales: torch.Tensor) -> None:
        """The stored weight is ``W·diag(scales)``; divide the input by ``scales`` before quantizing it."""
        if scales.shape != (self.in_features,):
            raise ValueError(f"need one smoothing scale per input channel ({self.in_features}); got {tuple(scales.shape)}")
        self.smooth = scales.detach().to(torch.float32).clone()

    def weight_nbytes(self) -> int:
        return self.store.nbytes()

    def predicted_weight_nbytes(self) -> int:
        return self.store.packed().predicted_nbytes()

    def dense_weight(self) -> torch.Tensor:
        w = self.store.packed().dequantize()
        return w if self.smooth is None else w / self.smooth.to(w.dtype)

    def extra_repr(self) -> str:
        p = self.store._meta
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={p.format}, "
                f"sparsity={p.sparsity}, activations={self.activations}" + (", smoothquant" if self.smooth is not None else ""))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.store.packed()
        if self.smooth is not None:
            x = x / self.smooth.to(x.dtype)
        if self._int8_gemm:
            return self._int8_forward(x, packed)
        if x.is_cuda:
            native = _cuda_native(x, packed, self.activations, self.bias)
            if native is not None:
                return native
        x = quantize_activation(x, self.activations, self.activation_block)
        if self.dense_cache is None:
            return F.linear(x, packed.dequantize(x.dtype), self.bias)
        w = self.dense_cache.get(x.dtype)
        if w is None:
            w = self.dense_cache[x.dtype] = packed.dequantize(x.dtype)
        return F.linear(x, w, self.bias)

    def _int8_forward(self, x: torch.Tensor, packed: PackedWeight) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).to(torch.float32)
        qx = quantize_tensor(rows, "int8").payload
        w_codes = packed.payload["q.codes"]
        w_scales = packed.payload["q.scales"].to(torch.float32).reshape(1, -1)
        acc = torch._int_mm(qx["codes"], w_codes.t())  # int32 [tokens, out]
        y = acc.to(torch.float32) * qx["scales"].to(torch.float32).reshape(-1, 1) * w_scales
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


def _cuda_native(x: torch.Tensor, packed: PackedWeight, activations: str,
                 bias: torch.Tensor | None) -> torch.Tensor | None:
    """Native CUDA kernels for fp8 × fp8 (``torch._scaled_mm``) and 2:4-sparse 16-bit weights."""
    rows, cols = packed.shape
    if packed.format == "fp8-e4m3" and packed.encoding == "dense" and activations == "fp8-e4m3" \
            and rows % 16 == 0 and cols % 16 == 0:
        flat = x.reshape(-1, cols)
        sx = (flat.abs().amax().float() / 448.0).clamp(min=1e-12)
        xq = (flat.float() / sx).clamp(-448, 448).to(torch.float8_e4m3fn)
        w = packed.payload["q.values"]
        sw = packed.payload["q.tensor_scale"].float().reshape(())
        y = torch._scaled_mm(xq, w.t(), scale_a=sx.reshape(()), scale_b=sw, out_dtype=torch.bfloat16)
        y = y.to(x.dtype)
        if bias is not None:
            y = y + bias
        return y.reshape(*x.shape[:-1], rows)
    if packed.encoding == "2:4" and packed.format in ("fp16", "bf16") and activations in ("fp16", "bf16", "fp32"):
        from torch.sparse import to_sparse_semi_structured

        dtype = torch.float16 if packed.format == "fp16" else torch.bfloat16
        w = to_sparse_semi_structured(packed.dequantize(dtype))
        y = F.linear(x.reshape(-1, cols).to(dtype), w).to(x.dtype)
        if bias is not None:
            y = y + bias
        return y.reshape(*x.shape[:-1], rows)
    return None


class PackedEmbedding(PackedModule):
    """An embedding table stored packed, one row per token id.

    The whole table is dequantised per call: quantised payloads are not row-addressable in
    general (per-tensor scales, look-up tables), so a gather of single rows needs format
    knowledge this module does not assume.
    """

    def __init__(self, packed: PackedWeight, embedding: nn.Embedding, *, option: str = "quantize") -> None:
        super().__init__()
        self.store = _PackedStore(packed)
        self.num_embeddings, self.embedding_dim = packed.shape
        self.padding_idx = embedding.padding_idx
        self.option = option

    def weight_nbytes(self) -> int:
        return self.store.nbytes()

    def predicted_weight_nbytes(self) -> int:
        return self.store.packed().predicted_nbytes()

    def dense_weight(self) -> torch.Tensor:
        return self.store.packed().dequantize()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.store.packed().dequantize(), self.padding_idx)


class PackedConv2d(PackedModule):
    """A convolution whose ``[out, in/groups, kh, kw]`` kernel is stored packed as
    ``[out, in/groups · kh · kw]`` rows (one output channel per row)."""

    def __init__(self, packed: PackedWeight, conv: nn.Conv2d, *, activations: str = "fp32",
                 option: str = "quantize") -> None:
        super().__init__()
        self.store = _PackedStore(packed)
        self.kernel_shape = tuple(conv.weight.shape)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.activations = activations
        self.option = option

    def weight_nbytes(self) -> int:
        return self.store.nbytes()

    def predicted_weight_nbytes(self) -> int:
        return self.store.packed().predicted_nbytes()

    def dense_weight(self) -> torch.Tensor:
        return self.store.packed().dequantize().reshape(self.kernel_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activations not in _FLOAT_PASS:
            # One "token" per pixel: its channel vector is quantised like a row of a linear input.
            x = quantize_activation(x.permute(0, 2, 3, 1), self.activations).permute(0, 3, 1, 2)
        w = self.store.packed().dequantize(x.dtype).reshape(self.kernel_shape)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class LowRankLinear(PackedModule):
    """``y = (x · Aᵀ) · Bᵀ + b`` with ``W ≈ B·A`` (truncated SVD), both factors stored packed."""

    def __init__(self, a: PackedWeight, b: PackedWeight, bias: torch.Tensor | None, *,
                 activations: str = "fp32") -> None:
        super().__init__()
        self.a = _PackedStore(a)
        self.b = _PackedStore(b)
        self.rank = a.shape[0]
        self.in_features, self.out_features = a.shape[1], b.shape[0]
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.activations = activations
        self.option = "low-rank"

    def weight_nbytes(self) -> int:
        return self.a.nbytes() + self.b.nbytes()

    def predicted_weight_nbytes(self) -> int:
        return self.a.packed().predicted_nbytes() + self.b.packed().predicted_nbytes()

    def dense_weight(self) -> torch.Tensor:
        return self.b.packed().dequantize() @ self.a.packed().dequantize()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, " \
               f"format={self.a._meta.format}, activations={self.activations}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_activation(x, self.activations)
        h = F.linear(x, self.a.packed().dequantize(x.dtype))
        return F.linear(h, self.b.packed().dequantize(x.dtype), self.bias)
