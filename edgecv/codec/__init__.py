"""Deep-Compression file codec: pruned, weight-shared, Huffman-coded models in one file.

Implements the storage side of Deep Compression (Han, Mao & Dally, ICLR 2016,
arXiv:1510.00149): relative sparse indices with filler entries (Fig. 2), per-layer
float32 codebooks (Section 3) and canonical Huffman coding of value codes and index gaps
(Section 4). Byte-level spec: docs/format.md.

Public API::

    LayerCode                       # one compressed tensor (the stages -> codec contract)
    AffineCode                      # one integer-quantized tensor (int8 / N-bit, per-channel scales)
    encode_model(tensors, meta) -> bytes
    decode_model(data) -> (dict[str, torch.Tensor], meta)
    decode_codes(data) -> (dict[str, LayerCode | torch.Tensor], meta)
    write_file(path, tensors, meta) / read_file(path)
    inspect(data) -> size table (every byte accounted for)
    CodecError                      # any malformed / truncated / hostile input
"""
from edgecv.codec.base import MAX_BITS, MAX_NUMEL, AffineCode, CodecError, LayerCode
from edgecv.codec.container import (
                                    MAGIC,
                                    MAX_TOTAL_NUMEL,
                                    VERSION,
                                    decode_codes,
                                    decode_model,
                                    encode_model,
                                    read_file,
                                    write_file,
)
from edgecv.codec.report import inspect

__all__ = [
                                    "MAGIC",
                                    "MAX_BITS",
                                    "MAX_NUMEL",
                                    "MAX_TOTAL_NUMEL",
                                    "VERSION",
                                    "AffineCode",
                                    "CodecError",
                                    "LayerCode",
                                    "decode_codes",
                                    "decode_model",
                                    "encode_model",
                                    "inspect",
                                    "read_file",
                                    "write_file",
]
