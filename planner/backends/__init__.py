"""Apply compression choices to real torch tensors: quantise, prune, factorise, measure."""

from planner.backends.lowrank import low_rank
from planner.backends.packing import pack_bits, packed_nbytes, unpack_bits
from planner.backends.quantize import HANDLERS, KindHandler, QuantizedTensor, dequantize, quantize_tensor, sqnr_db
from planner.backends.sparse import SparseTensor, prune_2_4, prune_unstructured

__all__ = [
    "HANDLERS",
    "KindHandler",
    "QuantizedTensor",
    "SparseTensor",
    "dequantize",
    "low_rank",
    "pack_bits",
    "packed_nbytes",
    "prune_2_4",
    "prune_unstructured",
    "quantize_tensor",
    "sqnr_db",
    "unpack_bits",
]
