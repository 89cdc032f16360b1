"""Weight statistics read back from an artifact: sparsity and distinct values per tensor.

Readers live next to each converter (``read_weights`` in edgekit/convert/<format>.py) and
return the weight tensors of a file with quantized values shifted by their zero point, so
that a pruned weight reads as 0 in every format and precision.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterable

import numpy as np


def summarize(tensors: Iterable[np.ndarray]) -> dict:
    """Sparsity and distinct values over kernels (tensors of rank >= 2; biases and scales are left out)."""
    kernels = [np.asarray(t) for t in tensors if np.ndim(t) >= 2]
    if not kernels:
        return {"tensors": 0, "parameters": 0, "sparsity": None, "max_unique_per_tensor": None}
    zeros = sum(int(np.count_nonzero(k == 0)) for k in kernels)
    total = sum(k.size for k in kernels)
    return {
        "tensors": len(kernels),
        "parameters": int(total),
        "sparsity": zeros / total,
        "max_unique_per_tensor": max(int(np.unique(k).size) for k in kernels),
    }


def gzip_size(files: Iterable[Path]) -> int:
    """Bytes of the files gzip-compressed at level 9: what a sparse or clustered model really weighs.

    Streamed, so a large artifact is never held in memory (wbits 31 = a gzip container).
    """
    total = 0
    for path in files:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        with Path(path).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                total += len(packer.compress(chunk))
        total += len(packer.flush())
    return total


def zero_point_shifted(values: np.ndarray, zero_points, axis: int) -> np.ndarray:
    """Quantized integers minus their zero point(s), broadcast along the quantized axis."""
    zp = np.asarray(zero_points if zero_points is not None else 0)
    if values.dtype.kind not in "iu" or zp.size == 0 or not zp.any():
        return values
    if zp.size == 1:
        return values.astype(np.int32) - int(zp.reshape(-1)[0])
    shape = [1] * values.ndim
    shape[axis] = zp.size
    return values.astype(np.int32) - zp.reshape(shape)
