"""Builders for hostile checkpoint files: what a torch zip, a legacy torch file or a numpy
pickle can declare, written without allocating what they declare.

`write_torch_zip` writes the zip by hand (local headers, central directory) so a record can be
deflated from a repeated compressed segment (a 1 GiB record in ~1 MB, built in milliseconds) or
left as a hole in a sparse file (1 GiB declared, nothing on disk).
"""
from __future__ import annotations

import io
import math
import pickle
import struct
import zlib
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

MIB = 1 << 20


class FakeStorage:
    """Pickled as torch's persistent storage id: ('storage', class, key, location, numel)."""

    def __init__(self, key: str, storage_class=torch.FloatStorage, numel: int = 1):
        self.key, self.storage_class, self.numel = key, storage_class, numel


class FakeTensor:
    """Pickled as torch's `_rebuild_tensor_v2(storage, offset, shape, stride, ...)`."""

    def __init__(self, storage: FakeStorage, shape, stride=None, offset: int = 0):
        self.storage, self.shape, self.offset = storage, tuple(shape), offset
        self.stride = tuple(stride) if stride is not None else contiguous_stride(self.shape)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, self.shape, self.stride, False, OrderedDict()))


def contiguous_stride(shape) -> tuple[int, ...]:
    stride, step = [], 1
    for size in reversed(shape):
        stride.insert(0, step)
        step *= size
    return tuple(stride)


class Reduce:
    """Anything as (callable, args[, state]) in the pickle."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        if self.state is None:
            return (self.function, self.args)
        return (self.function, self.args, self.state)


class _TorchPickler(pickle.Pickler):
    def __init__(self, handle, legacy: bool = False):
        super().__init__(handle, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            fields = ("storage", obj.storage_class, obj.key, "cpu", obj.numel)
            return fields + (None,) if self.legacy else fields
        return None


def torch_pickle(tree, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    _TorchPickler(buffer, legacy).dump(tree)
    return buffer.getvalue()


# ---- zip by hand ----------------------------------------------------------------------------

class Deflated:
    """A record of `size` zero bytes, deflated (repeated full-flush segments of 1 MiB)."""

    def __init__(self, size: int):
        self.size = size


class Hole:
    """A stored record of `size` zero bytes left as a hole in a sparse file."""

    def __init__(self, size: int):
        self.size = size


@lru_cache(maxsize=None)
def _zero_segment() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)


@lru_cache(maxsize=None)
def zeros_crc(size: int) -> int:
    crc, chunk = 0, bytes(16 * MIB)
    for start in range(0, size, len(chunk)):
        crc = zlib.crc32(chunk[: min(len(chunk), size - start)], crc)
    return crc


def write_torch_zip(path: Path, tree, records: dict, *, archive: str = "archive",
                    byteorder: bytes = b"little", extra_entries=()) -> Path:
    """A torch.save-like zip: data.pkl from `tree`, data/<key> from `records` (bytes, Deflated
    or Hole), byteorder and version; `extra_entries` are (name, bytes) appended as they are."""
    entries = [(f"{archive}/data.pkl", torch_pickle(tree)), (f"{archive}/byteorder", byteorder)]
    entries += [(f"{archive}/data/{key}", content) for key, content in records.items()]
    entries += [(f"{archive}/version", b"3\n")] + list(extra_entries)
    with open(path, "wb") as handle:
        central = [_write_local(handle, name, content) for name, content in entries]
        directory_start = handle.tell()
        for record in central:
            handle.write(record)
        directory_size = handle.tell() - directory_start
        handle.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                                 directory_size, directory_start, 0))
    return path


def _write_local(handle, name: str, content) -> bytes:
    encoded = name.encode()
    offset = handle.tell()
    if isinstance(content, Deflated):
        segments = content.size // MIB
        payload_size = segments * len(_zero_segment()) + 2
        method, size, crc = 8, content.size, zeros_crc(content.size)
    elif isinstance(content, Hole):
        method, size, crc, payload_size = 0, content.size, zeros_crc(content.size), content.size
    else:
        method, size, crc, payload_size = 0, len(content), zlib.crc32(content), len(content)
    handle.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, payload_size,
                             size, len(encoded), 0) + encoded)
    if isinstance(content, Deflated):
        segment = _zero_segment()
        for _ in range(segments):
            handle.write(segment)
        handle.write(b"\x03\x00")  # a final, empty fixed-Huffman block
    elif isinstance(content, Hole):
        handle.seek(content.size, 1)
        handle.truncate()
    else:
        handle.write(content)
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, payload_size,
                       size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded


# ---- legacy (pre-1.6) torch files -----------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def write_legacy_torch(path: Path, tree, storages: dict[str, tuple[int, bytes]], keys=None) -> Path:
    """magic, protocol 1001, system info, the tree, the storage keys, then per storage its
    element count (as `storages[key][0]` says, whatever the pickle declared) and bytes."""
    keys = list(storages) if keys is None else keys
    with open(path, "wb") as handle:
        for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                                           "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, handle, protocol=2)
        handle.write(torch_pickle(tree, legacy=True))
        pickle.dump(keys, handle, protocol=2)
        for key in keys:
            count, data = storages[key]
            handle.write(struct.pack("<q", count) + data)
    return path


# ---- numpy pickles ----------------------------------------------------------------------------

def numpy_reconstruct(shape, dtype="f8", state_shape=None, data: bytes | None = b"") -> Reduce:
    """numpy's array pickle, `_reconstruct(ndarray, shape, b'b')` then __setstate__."""
    state = None
    if data is not None:
        state = (1, tuple(state_shape if state_shape is not None else shape), np.dtype(dtype), False, data)
    return Reduce(np._core.multiarray._reconstruct, (np.ndarray, tuple(shape), b"b"), state)


def write_pickle(path: Path, tree) -> Path:
    path.write_bytes(pickle.dumps(tree, protocol=2))
    return path


def float_bytes(values, dtype="<f4") -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


def numel(shape) -> int:
    return math.prod(shape)
