"""Read an MXNet NDArray list file (``mx.nd.save`` / a model's ``.params``) with numpy; no MXNet needed.

The layout is MXNet's ``NDArray::Save`` (src/ndarray/ndarray.cc), little-endian:

- file: uint64 magic ``0x112``, uint64 reserved; uint64 array count, the arrays; uint64 name count,
  then per name uint64 length + bytes (``arg:`` / ``aux:`` prefixed in a model checkpoint);
- array, version 2: uint32 magic ``0xF993FAC9``, int32 storage type (0 = dense), shape (uint32 ndim +
  int64 dims), context (int32 dev_type, int32 dev_id), int32 type flag, the raw C-order data;
- array, version 3 (``0xF993FACA``, NumPy shape semantics): laid out as version 2;
- array, version 1: uint32 magic ``0xF993FAC8``, then as version 2 without the storage type;
- array, legacy (no magic): the first uint32 is ndim, dims are uint32, then as version 1.

A shape of ndim 0 is an empty ("none") array and ends there; :func:`load_params` refuses one (no weight). Sparse
arrays are refused.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
# mshadow type flags
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.source}: truncated MXNet .params file (wanted {n} bytes at offset {self.pos}, "
                             f"file has {len(self.data)})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str) -> int:
        dt = np.dtype(fmt)
        return int(np.frombuffer(self.take(dt.itemsize), dt)[0])

    def array(self) -> np.ndarray | None:
        magic = self.scalar("<u4")
        if magic in (V2_MAGIC, V3_MAGIC):
            stype = self.scalar("<i4")
            if stype != 0:
                raise ValueError(f"{self.source}: sparse NDArray (storage type {stype}) is not supported")
        if magic in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
            ndim = self.scalar("<u4")
            shape = tuple(np.frombuffer(self.take(8 * ndim), "<i8").tolist())
        else:                                      # legacy: the magic is ndim
            ndim = magic
            shape = tuple(np.frombuffer(self.take(4 * ndim), "<u4").tolist())
        if ndim == 0:
            return None
        self.take(8)                               # context: dev_type, dev_id (loaded on CPU regardless)
        flag = self.scalar("<i4")
        if flag not in DTYPES:
            raise ValueError(f"{self.source}: unknown NDArray type flag {flag}")
        dt = np.dtype(DTYPES[flag]).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.take(count * dt.itemsize), dt).reshape(shape).copy()


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All named arrays of the NDArray list file ``path``: {name (e.g. ``arg:conv1a_weight``): array}."""
    path = Path(path)
    r = _Reader(path.read_bytes(), str(path))
    if r.scalar("<u8") != LIST_MAGIC:
        raise ValueError(f"{path}: not an MXNet NDArray file (magic is not 0x112)")
    r.take(8)                                      # reserved
    arrays = [r.array() for _ in range(r.scalar("<u8"))]
    names = [r.take(r.scalar("<u8")).decode("utf-8") for _ in range(r.scalar("<u8"))]
    if len(names) != len(arrays):
        raise ValueError(f"{path}: {len(arrays)} arrays but {len(names)} names")
    if r.pos != len(r.data):
        raise ValueError(f"{path}: {len(r.data) - r.pos} trailing bytes after the names")
    # A "none" array is no weight: handed on as None it failed later in torch.as_tensor without naming the key.
    empty = [n for n, a in zip(names, arrays) if a is None]
    if empty:
        raise ValueError(f"{path}: {len(empty)} entr{'y' if len(empty) == 1 else 'ies'} without data (MXNet 'none' "
                         f"arrays, ndim 0), e.g. {empty[:3]}; not a model's weights")
    return {n: a for n, a in zip(names, arrays) if a is not None}


def is_params_file(path: str | os.PathLike) -> bool:
    """True when ``path`` starts with the NDArray list magic (an MXNet ``.params`` file)."""
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and int(np.frombuffer(head, "<u8")[0]) == LIST_MAGIC
