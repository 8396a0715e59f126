"""What a checkpoint file declares, read before any tensor data is allocated.

Unpickling a checkpoint normally allocates whatever its pickle declares, before any name or
shape is looked at: numpy's `_reconstruct` makes an array of the declared shape, a legacy torch
file makes storages of the declared size, a deflated zip record is inflated to its declared
size, and a stride-0 view of one value becomes gigabytes once it is cast to float32.

Here the pickle is walked with stand-ins instead: a torch tensor becomes a `TensorRecord`
(storage key, dtype, shape, stride, offset), a numpy array an `ArrayRecord` (shape, dtype and
the bytes the file holds), and no storage is read. `scan_checkpoint` checks the records against
the file itself: each storage exists, is stored uncompressed and has the declared size, each
view stays inside its storage, each array's bytes are exactly what its shape needs, no tensor
is sparse, quantized, meta or nested. Only what passes is read for real (`materialise` for
pickles: arrays of the bytes already read; torch.load for torch files), so what is
allocated is bounded by what the file holds. The checks against a pack's manifest (names,
dtypes, how many bytes the weights may hold) are in common/weights/checkpoint.py.
"""
from __future__ import annotations

import functools
import io
import math
import pickle
import pickletools
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from common.cli import UserError

MAX_NESTING = 64  # containers inside containers; a checkpoint needs a handful


class MalformedCheckpoint(Exception):
    """The pickle is well formed as a pickle but does not describe weights the way torch or
    numpy write them (wrong argument types, a view past its storage, ...)."""


class RefusedGlobal(Exception):
    """The pickle names a global outside the allowlist: code, not weights."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class UnsupportedTensor(Exception):
    """A tensor torch knows how to store but that a weights file has no use for."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


# ---- records ------------------------------------------------------------------------------

@dataclass(eq=False)
class StorageRecord:
    key: str
    dtype: torch.dtype
    numel: int
    location: str
    base: "StorageRecord | None" = None  # legacy files: a storage that is a view of another
    base_offset: int = 0

    @property
    def nbytes(self) -> int:
        return self.numel * _element_size(self.dtype)


@dataclass(eq=False)
class TensorRecord:
    """A torch tensor as the pickle declares it; `kind` is "dense" for an ordinary tensor."""
    kind: str
    dtype: torch.dtype | None
    shape: tuple[int, ...]
    stride: tuple[int, ...] = ()
    offset: int = 0
    storage: StorageRecord | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def last_index(self) -> int:
        """Index of the last storage element the view reads (-1 for an empty view)."""
        if self.numel == 0:
            return -1
        return self.offset + sum((size - 1) * step for size, step in zip(self.shape, self.stride))

    def __setstate__(self, state) -> None:
        # torch's weights-only reader applies BUILD on a tensor as `tensor.set_(*state)`, so a
        # file can re-view a tensor after building it: follow it, or the check would miss it.
        if isinstance(state, tuple) and len(state) == 4:
            storage, offset, shape, stride = state
            self.storage = _require(storage, StorageRecord, "BUILD storage")
            self.dtype = self.storage.dtype
            self.offset, self.shape, self.stride = _view_arguments(offset, shape, stride)
        elif isinstance(state, tuple) and len(state) == 1 and isinstance(state[0], TensorRecord):
            source = state[0]
            self.kind, self.dtype, self.storage = source.kind, source.dtype, source.storage
            self.offset, self.shape, self.stride = source.offset, source.shape, source.stride
        elif not (isinstance(state, tuple) and len(state) == 3):  # (requires_grad, _, hooks)
            raise MalformedCheckpoint("a tensor is re-built from an unexpected state")


@dataclass(eq=False)
class ArrayRecord:
    """A numpy array as the pickle declares it, with the bytes the file holds for it."""
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool = False
    data: bytes | None = None
    has_state: bool = False
    object_values: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def declared_nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise MalformedCheckpoint("a numpy array has an unexpected state")
        shape, dtype, fortran_order, data = state[-4:]
        self.shape = _int_tuple(shape, "numpy array shape")
        self.dtype = _require(dtype, np.dtype, "numpy array dtype")
        self.fortran_order = bool(fortran_order)
        self.has_state = True
        if self.dtype.hasobject:
            self.object_values, self.data = True, None
        elif isinstance(data, (bytes, bytearray)):
            self.data = bytes(data)
        else:
            raise MalformedCheckpoint("a numpy array's data is not bytes")

    def materialise(self) -> np.ndarray:
        order = "F" if self.fortran_order else "C"
        # One writable copy owned by numpy (torch.from_numpy warns on read-only arrays); the
        # record lets go of its bytes, so at most one array exists twice.
        data, self.data = self.data, None
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape, order=order).copy(order="K")


QUANTIZED_DTYPES = frozenset({torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4})


def _element_size(dtype: torch.dtype) -> int:
    return torch._utils._element_size(dtype)


def _require(value, kind, what: str):
    if not isinstance(value, kind):
        raise MalformedCheckpoint(f"{what} is a {type(value).__name__}")
    return value


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise MalformedCheckpoint(f"{what} is not a tuple of integers")
    if any(v < 0 for v in value):
        raise MalformedCheckpoint(f"{what} {tuple(value)} has a negative entry")
    return tuple(value)


def _view_arguments(offset, shape, stride) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    if type(offset) is not int or offset < 0:
        raise MalformedCheckpoint("a tensor's storage offset is not an integer >= 0")
    shape, stride = _int_tuple(shape, "tensor shape"), _int_tuple(stride, "tensor stride")
    if len(shape) != len(stride):
        raise MalformedCheckpoint(f"tensor shape {shape} and stride {stride} differ in length")
    return offset, shape, stride


# ---- what the pickle may call ---------------------------------------------------------------

class _StorageClass:
    """Stand-in for `torch.FloatStorage` and friends: only its dtype matters."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __call__(self, *args):
        raise MalformedCheckpoint("a storage class is called")


class _NotCallable:
    """Stand-in for a class a weights pickle names but never calls (numpy.ndarray is only an
    argument of _reconstruct; torch.Tensor / Parameter only of _rebuild_from_type_v2)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise MalformedCheckpoint(f"the pickle calls {self.name} directly")


_NDARRAY = _NotCallable("numpy.ndarray")
_TENSOR_TYPES = {"torch.Tensor": _NotCallable("torch.Tensor"),
                 "torch.nn.parameter.Parameter": _NotCallable("torch.nn.parameter.Parameter")}


def _rebuild_tensor(storage, offset, shape, stride, *rest) -> TensorRecord:
    storage = _require(storage, StorageRecord, "a tensor's storage")
    offset, shape, stride = _view_arguments(offset, shape, stride)
    return TensorRecord("dense", storage.dtype, shape, stride, offset, storage)


def _rebuild_tensor_v3(storage, offset, shape, stride, requires_grad, hooks, dtype, *rest):
    record = _rebuild_tensor(storage, offset, shape, stride)
    record.dtype = _require(dtype, torch.dtype, "a tensor's dtype")
    if record.dtype != record.storage.dtype:
        raise MalformedCheckpoint(f"a tensor's dtype {dtype} differs from its storage's")
    return record


def _rebuild_parameter(data, *rest) -> TensorRecord:
    return _require(data, TensorRecord, "a parameter's data")


def _rebuild_from_type(function, new_type, args, state) -> TensorRecord:
    if new_type not in _TENSOR_TYPES.values():
        raise MalformedCheckpoint("a tensor of a subclass")
    if not callable(function) or not isinstance(args, tuple):
        raise MalformedCheckpoint("a tensor re-built by an unexpected function")
    return _require(function(*args), TensorRecord, "a re-built tensor")


def _unsupported(kind: str):
    def record(*args) -> TensorRecord:
        return TensorRecord(kind, None, ())
    return record


def _reconstruct(subtype, shape, typecode) -> ArrayRecord:
    if subtype is not _NDARRAY:
        raise MalformedCheckpoint("a numpy array of another class than ndarray")
    shape = _int_tuple(shape, "numpy _reconstruct shape")
    # numpy writes (0,) here and the real size in __setstate__; anything else would make
    # numpy allocate the declared shape before a single byte of data is seen.
    if math.prod(shape) != 0:
        raise MalformedCheckpoint(f"numpy _reconstruct declares {math.prod(shape)} values before "
                                  "any data (numpy writes an empty array here)")
    return ArrayRecord(shape, np.dtype(np.uint8))


def _frombuffer(buffer, dtype, shape, order) -> ArrayRecord:
    # numpy's pickle protocol 5 form: the bytes come first, so only their length is checked.
    buffer = bytes(_require(buffer, (bytes, bytearray, memoryview), "numpy _frombuffer data"))
    record = ArrayRecord(_int_tuple(shape, "numpy _frombuffer shape"),
                         _require(dtype, np.dtype, "numpy _frombuffer dtype"),
                         order == "F", buffer, has_state=True)
    if record.dtype.hasobject:
        record.object_values, record.data = True, None
    return record


def _numpy_scalar(dtype, data=None):
    dtype = _require(dtype, np.dtype, "numpy scalar dtype")
    if dtype.hasobject:
        raise UnsupportedTensor("a numpy object scalar")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise MalformedCheckpoint(f"a numpy {dtype} scalar without its {dtype.itemsize} bytes")
    return np.frombuffer(data, dtype=dtype)[0]


_TEXT_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"}


def _codecs_encode(text, encoding="utf-8", *rest):
    # Protocol-2 pickles store bytes as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or str(encoding).lower() not in _TEXT_ENCODINGS:
        raise MalformedCheckpoint("_codecs.encode with something other than text")
    return text.encode(encoding)


def _bytes_like(kind):
    def build(source=b"", encoding=None, *rest):
        # bytes(10**9) / bytearray(10**9) would allocate from a number in the file.
        if isinstance(source, int):
            raise MalformedCheckpoint(f"{kind.__name__}() of a size instead of data")
        if isinstance(source, str):
            return kind(_codecs_encode(source, encoding or "utf-8"))
        return kind(source)
    return build


@functools.lru_cache(maxsize=2)
def _allowed_globals(torch_file: bool) -> dict[tuple[str, str], object]:
    import collections

    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "Counter"): collections.Counter,  # MultiStepLR milestones in training files
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice, ("builtins", "complex"): complex,
        ("builtins", "bytes"): _bytes_like(bytes), ("builtins", "bytearray"): _bytes_like(bytearray),
        ("_codecs", "encode"): _codecs_encode,
        ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): np.dtype,
    }
    # numpy moved its core to numpy._core in 2.0; files pickled under either name occur.
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = _numpy_scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    for code in "?bBhHiIlLqQefdgFDG":
        dtype_class = type(np.dtype(code))
        allowed[("numpy.dtypes", dtype_class.__name__)] = dtype_class
    if torch_file:
        allowed.update(_torch_globals())
    return allowed


def _torch_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch._utils", "_rebuild_sparse_tensor"): _unsupported("sparse"),
        ("torch._utils", "_rebuild_qtensor"): _unsupported("quantized"),
        ("torch._utils", "_rebuild_meta_tensor_no_storage"): _unsupported("meta"),
        ("torch._utils", "_rebuild_nested_tensor"): _unsupported("nested"),
        ("torch", "Size"): torch.Size, ("torch", "device"): torch.device,
        ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
        ("torch.storage", "UntypedStorage"): _StorageClass(torch.uint8),
        ("torch", "UntypedStorage"): _StorageClass(torch.uint8),
    }
    for full_name, stand_in in _TENSOR_TYPES.items():
        module_name, _, name = full_name.rpartition(".")
        allowed[(module_name, name)] = stand_in
    with warnings.catch_warnings():  # reading a legacy storage class's dtype warns
        warnings.simplefilter("ignore")
        for storage_class in torch._storage_classes:
            if storage_class.__name__ not in ("UntypedStorage", "TypedStorage"):
                allowed[(storage_class.__module__, storage_class.__name__)] = \
                    _StorageClass(storage_class.dtype)
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, (torch.dtype, torch.qscheme, torch.layout, torch.memory_format)):
            allowed[("torch", name)] = value
    return allowed


_MODULE_RENAMES = {"__builtin__": "builtins", "copy_reg": "copyreg", "torch.tensor": "torch._tensor"}


class _ScanUnpickler(pickle.Unpickler):
    """Builds the container tree with records where tensors and arrays would be."""

    def __init__(self, handle, *, torch_file: bool, legacy: bool = False):
        super().__init__(handle, encoding="latin1")
        self._allowed = _allowed_globals(torch_file)
        self._torch_file = torch_file
        self._legacy = legacy
        self.storages: dict[str, StorageRecord] = {}

    def find_class(self, module: str, name: str):
        module = _MODULE_RENAMES.get(module, module)
        found = self._allowed.get((module, name))
        if found is None:
            if module.split(".")[0] == "torch" and not self._torch_file:
                raise MalformedCheckpoint(f"it names {module}.{name}: the pickle of a torch file "
                                          "without its tensor data")
            if module.split(".")[0] == "torch" and name.startswith("_rebuild"):
                raise UnsupportedTensor(f"a tensor written by {module}.{name}")
            raise RefusedGlobal(f"{module}.{name}")
        return found

    def persistent_load(self, saved_id):
        if not self._torch_file:
            raise MalformedCheckpoint("a persistent id in a plain pickle")
        if not isinstance(saved_id, tuple) or not saved_id:
            raise MalformedCheckpoint("a persistent id that is not a tuple")
        kind = saved_id[0].decode("ascii") if isinstance(saved_id[0], bytes) else saved_id[0]
        if kind == "module":
            raise RefusedGlobal("a pickled nn.Module class")
        if kind != "storage":
            raise MalformedCheckpoint(f"a persistent id of kind {kind!r}")
        if self._legacy:
            if len(saved_id) != 6:
                raise MalformedCheckpoint("a legacy storage id without 6 fields")
            return self._legacy_storage(*saved_id[1:])
        if len(saved_id) != 5:
            raise MalformedCheckpoint("a storage id without 5 fields")
        return self._storage(*saved_id[1:])

    def _storage(self, storage_class, key, location, numel) -> StorageRecord:
        storage_class = _require(storage_class, _StorageClass, "a storage's type")
        if not isinstance(key, str) or not isinstance(location, (str, bytes)):
            raise MalformedCheckpoint("a storage key or location that is not text")
        if type(numel) is not int or numel < 0:
            raise MalformedCheckpoint(f"storage '{key}' has a size that is not an integer >= 0")
        if key not in self.storages:  # torch reuses the first storage of a key
            location = location.decode("ascii", "replace") if isinstance(location, bytes) else location
            self.storages[key] = StorageRecord(key, storage_class.dtype, numel, location)
        return self.storages[key]

    def _legacy_storage(self, storage_class, root_key, location, numel, view) -> StorageRecord:
        root = self._storage(storage_class, root_key, location, numel)
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and all(type(v) is int and v >= 0 for v in view[1:])):
            raise MalformedCheckpoint("a legacy storage view that is not (key, offset, size)")
        view_key, offset, size = view
        if offset + size > root.numel:
            raise MalformedCheckpoint(f"legacy storage view '{view_key}' ends past storage '{root_key}'")
        if view_key not in self.storages:
            self.storages[view_key] = StorageRecord(view_key, root.dtype, size, root.location, root, offset)
        return self.storages[view_key]


# Exceptions a damaged pickle raises from inside Unpickler.load() (the C unpickler reports bad
# opcodes, short reads, wrong stack contents and bad argument counts with these).
PICKLE_DATA_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                      IndexError, AttributeError, OverflowError, UnicodeDecodeError,
                      struct.error, MemoryError, RecursionError)


# ---- reading each format --------------------------------------------------------------------

@dataclass
class ScannedCheckpoint:
    """The container tree with records as leaves, and what the file holds for them."""
    tree: object
    file_format: str  # "torch-zip", "torch-legacy" or "pickle"
    storages: dict[str, StorageRecord] = field(default_factory=dict)
    file_bytes: int = 0


def scan_checkpoint(path: Path, file_format: str) -> ScannedCheckpoint:
    """Parse the structure of a checkpoint without reading its tensor data; raise UserError
    (one line naming the file and the tensor) for anything that is not plain weights."""
    size = path.stat().st_size
    if file_format == "torch-zip":
        scanned = _scan_zip(path)
    elif file_format == "torch-legacy":
        scanned = _scan_legacy(path)
    else:
        with open(path, "rb") as handle:
            tree = _unpickle(handle, path, torch_file=False)
        scanned = ScannedCheckpoint(tree.load_result, "pickle")
    scanned.file_bytes = size
    check_records(scanned, path)
    return scanned


class _Unpickled:
    def __init__(self, load_result, storages):
        self.load_result, self.storages = load_result, storages


def _unpickle(handle, path: Path, *, torch_file: bool, legacy: bool = False) -> _Unpickled:
    unpickler = _ScanUnpickler(handle, torch_file=torch_file, legacy=legacy)
    try:
        _check_opcodes(handle)
        result = unpickler.load()
    except RefusedGlobal as err:
        raise UserError(f"{path}: refused to load: unpickling it would call {err.name} (code, not "
                        "weights); only plain weight containers are read") from None
    except UnsupportedTensor as err:
        raise UserError(f"{path}: holds {err.what}, which is not a plain weight tensor") from None
    except MalformedCheckpoint as err:
        raise UserError(f"{path}: not a readable checkpoint (damaged: {err})") from None
    except PICKLE_DATA_ERRORS as err:
        kind = "torch checkpoint" if torch_file else "checkpoint: neither a torch file nor a weights pickle"
        raise UserError(f"{path}: not a readable {kind} ({type(err).__name__}: "
                        f"{_first_line(err)[:120]})") from None
    return _Unpickled(result, unpickler.storages)


_OPCODES = {op.code.encode("latin1"): op for op in pickletools.opcodes}
_COUNT_FORMATS = {pickletools.TAKEN_FROM_ARGUMENT1: "<B", pickletools.TAKEN_FROM_ARGUMENT4: "<i",
                  pickletools.TAKEN_FROM_ARGUMENT4U: "<I", pickletools.TAKEN_FROM_ARGUMENT8U: "<Q"}


def _check_opcodes(handle) -> None:
    """Walk the opcodes once, skipping their data: a length field longer than what is left of
    the file is an error here, where the C unpickler would first try to allocate it (and
    CPython prints a stray SystemError when that fails)."""
    start = handle.tell()
    end = handle.seek(0, io.SEEK_END)
    handle.seek(start)
    while True:
        code = handle.read(1)
        if not code:
            raise EOFError("pickle data was truncated")
        op = _OPCODES.get(code)
        if op is None:
            raise pickle.UnpicklingError(f"invalid load key, {code!r}")
        argument = op.arg
        if argument is None:
            pass
        elif argument.n >= 0:
            handle.seek(argument.n, io.SEEK_CUR)
        elif argument.n == pickletools.UP_TO_NEWLINE:
            for _ in range(2 if argument.name == "stringnl_noescape_pair" else 1):
                if not handle.readline().endswith(b"\n"):
                    raise EOFError("pickle data was truncated")
        else:
            count_format = _COUNT_FORMATS[argument.n]
            field = handle.read(struct.calcsize(count_format))
            (count,) = struct.unpack(count_format, field)  # struct.error if cut short
            left = end - handle.tell()
            if count < 0 or count > left:
                raise pickle.UnpicklingError(f"{op.name} declares {count} bytes, {max(left, 0)} are left")
            handle.seek(count, io.SEEK_CUR)
        if handle.tell() > end:
            raise EOFError("pickle data was truncated")
        if op.name == "STOP":
            break
    handle.seek(start)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# What zipfile raises on a damaged archive: a bad or cut directory, a header that disagrees
# with it, a name that is not UTF-8, an unknown zip version or compression method, a bad CRC.
ZIP_DATA_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                   NotImplementedError, UnicodeDecodeError, struct.error)


def _scan_zip(path: Path) -> ScannedCheckpoint:
    try:
        with zipfile.ZipFile(path) as archive:
            records = _zip_records(archive, path)
            prefix = next(iter(records)).split("/")[0]
            pickle_name = f"{prefix}/data.pkl"
            if pickle_name not in records:
                raise UserError(f"{path}: not a torch checkpoint: the zip has no {pickle_name}")
            pickle_bytes = archive.read(pickle_name)
            byteorder = records.get(f"{prefix}/byteorder")
            if byteorder is not None and archive.read(byteorder.filename).strip() not in (b"little", b"big"):
                raise UserError(f"{path}: not a readable torch checkpoint (byteorder record is "
                                "neither 'little' nor 'big')")
    except ZIP_DATA_ERRORS as err:
        detail = _first_line(err)[:120]
        if detail == "File is not a zip file":  # it starts like one: the end is what is missing
            detail = "it starts as a zip but has no zip directory at its end"
        raise UserError(f"{path}: not a readable torch checkpoint (cut short or corrupted: "
                        f"{detail})") from None
    unpickled = _unpickle(io.BytesIO(pickle_bytes), path, torch_file=True)
    for storage in unpickled.storages.values():
        record = records.get(f"{prefix}/data/{storage.key}")
        if record is None:
            raise UserError(f"{path}: storage record {prefix}/data/{storage.key} is missing (cut short?)")
        if record.file_size != storage.nbytes:
            raise UserError(f"{path}: storage record {record.filename} holds {record.file_size} bytes, "
                            f"its tensors declare {storage.numel} {_dtype_name(storage.dtype)} values "
                            f"({storage.nbytes} bytes)")
    return ScannedCheckpoint(unpickled.load_result, "torch-zip", unpickled.storages)


_CHECKSUM_CHUNK = 16 << 20


def verify_zip_checksums(path: Path) -> None:
    """Read every record once, in chunks, so zipfile compares its CRC-32 (torch.load does
    not: a flipped bit in a storage would load as a silently different weight). Run after the
    structure passed, so a record's declared size is known to be bounded."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as record:
                    while record.read(_CHECKSUM_CHUNK):
                        pass
    except ZIP_DATA_ERRORS as err:
        raise UserError(f"{path}: not a readable torch checkpoint (corrupted: {_first_line(err)[:120]})") from None


def _zip_records(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    records: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.filename in records:
            raise UserError(f"{path}: the zip holds two records named {info.filename}")
        if info.flag_bits & 0x1:
            raise UserError(f"{path}: zip record {info.filename} is encrypted; torch.save writes "
                            "plain records")
        if info.compress_type != zipfile.ZIP_STORED:
            # torch.save stores every record as is; torch.load would inflate a compressed one to
            # whatever size its header declares.
            raise UserError(f"{path}: zip record {info.filename} is compressed (declared "
                            f"{info.file_size} bytes unpacked); torch.save writes records "
                            "uncompressed: re-save the weights with torch.save")
        records[info.filename] = info
    if not records:
        raise UserError(f"{path}: not a torch checkpoint: the zip is empty")
    return records


# The first record of a legacy (pre-1.6, non-zip) torch.save file: protocol-2 pickle of the
# integer 0x1950a86a20f9469cfc6c, torch's magic number; then the protocol version 1001.
LEGACY_TORCH_HEAD = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_LEGACY_PROTOCOL = 1001
_LEGACY_SIZE_HEADER = 8  # int64 element count written before each storage's bytes


def _scan_legacy(path: Path) -> ScannedCheckpoint:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        magic = _unpickle(handle, path, torch_file=False).load_result
        protocol = _unpickle(handle, path, torch_file=False).load_result
        if magic != 0x1950A86A20F9469CFC6C or protocol != _LEGACY_PROTOCOL:
            raise UserError(f"{path}: not a readable torch checkpoint (legacy header damaged)")
        _unpickle(handle, path, torch_file=False)  # system info: endianness, type sizes
        unpickled = _unpickle(handle, path, torch_file=True, legacy=True)
        keys = _unpickle(handle, path, torch_file=False).load_result
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise UserError(f"{path}: not a readable torch checkpoint (legacy storage list damaged)")
        _check_legacy_data(handle, path, size, unpickled.storages, keys)
    return ScannedCheckpoint(unpickled.load_result, "torch-legacy", unpickled.storages)


def _check_legacy_data(handle, path: Path, size: int, storages: dict[str, StorageRecord],
                       keys: list[str]) -> None:
    """Walk the data section: each storage is an element count, then its bytes."""
    roots = {key: s for key, s in storages.items() if s.base is None}
    if set(keys) != set(roots):
        missing = sorted(set(roots) - set(keys))
        raise UserError(f"{path}: not a readable torch checkpoint (legacy storage list does not "
                        f"match the tensors: {len(missing)} storage(s) without data)")
    position = handle.tell()
    for key in keys:
        storage = roots[key]
        handle.seek(position)
        header = handle.read(_LEGACY_SIZE_HEADER)
        if len(header) < _LEGACY_SIZE_HEADER:
            raise UserError(f"{path}: storage {key} is missing: the file ends at byte {size} (cut short?)")
        (count,) = struct.unpack("<q", header)
        if count != storage.numel:
            raise UserError(f"{path}: storage {key} holds {count} values, its tensors declare "
                            f"{storage.numel} {_dtype_name(storage.dtype)} values")
        position += _LEGACY_SIZE_HEADER + storage.nbytes
        if position > size:
            raise UserError(f"{path}: storage {key} declares {storage.numel} "
                            f"{_dtype_name(storage.dtype)} values ({storage.nbytes} bytes); the file has "
                            f"{size - (position - storage.nbytes)} bytes left (cut short or damaged)")


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


# ---- checks on the records ------------------------------------------------------------------

def iter_records(tree) -> Iterator[tuple[str, TensorRecord | ArrayRecord]]:
    """(key path joined by '/', record) for every tensor or array in the tree."""
    stack = [(tree, "", 0)]
    seen: set[int] = set()
    while stack:
        node, name, depth = stack.pop()
        if isinstance(node, (TensorRecord, ArrayRecord)):
            yield name, node
            continue
        if not isinstance(node, (dict, list, tuple, set, frozenset)) or id(node) in seen:
            continue
        if depth >= MAX_NESTING:
            raise MalformedCheckpoint(f"containers nested more than {MAX_NESTING} deep (under "
                                      f"'{name.split('/')[0]}')")
        seen.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        children = [(value, f"{name}/{_key_text(key)}" if name else _key_text(key), depth + 1)
                    for key, value in items]
        stack.extend(reversed(children))


def _key_text(key) -> str:
    return key if isinstance(key, str) else repr(key)


def check_records(scanned: ScannedCheckpoint, path: Path) -> None:
    """File-level checks on every tensor and array, before anything is allocated."""
    try:
        records = list(iter_records(scanned.tree))
    except MalformedCheckpoint as err:
        raise UserError(f"{path}: not a readable checkpoint (damaged: {err})") from None
    for name, record in records:
        if isinstance(record, ArrayRecord):
            _check_array(record, name, path)
        else:
            _check_tensor(record, name, path)


def _check_array(record: ArrayRecord, name: str, path: Path) -> None:
    if record.object_values:
        raise UserError(f"{path}: tensor '{name}' is a numpy object array (Python objects, not numbers)")
    if not record.has_state:
        raise UserError(f"{path}: tensor '{name}' is a numpy array without data")
    held = len(record.data)
    if held != record.declared_nbytes:
        raise UserError(f"{path}: tensor '{name}' declares {list(record.shape)} {record.dtype} "
                        f"({record.declared_nbytes} bytes); the file holds {held} bytes for it")


_KIND_TEXT = {"sparse": "a sparse tensor", "quantized": "a quantized tensor",
              "meta": "a meta tensor (a shape without values)", "nested": "a nested tensor"}


def _check_tensor(record: TensorRecord, name: str, path: Path) -> None:
    if record.kind != "dense":
        raise UserError(f"{path}: tensor '{name}' is {_KIND_TEXT[record.kind]}; weights are plain "
                        "dense tensors")
    if record.dtype in QUANTIZED_DTYPES:
        raise UserError(f"{path}: tensor '{name}' is a quantized tensor ({_dtype_name(record.dtype)}); "
                        "weights are plain dense tensors")
    if record.last_index() >= record.storage.numel:
        raise UserError(f"{path}: tensor '{name}' {list(record.shape)} (stride {list(record.stride)}, "
                        f"offset {record.offset}) reads past the end of its storage of "
                        f"{record.storage.numel} values")


def overlapping_view(record: TensorRecord) -> bool:
    """True when the view shows more values than its storage holds (a stride-0 or overlapping
    view): casting or copying it allocates its full shape from a few stored bytes."""
    return record.numel > record.storage.numel


def materialise(tree):
    """The tree with every ArrayRecord replaced by a numpy array over its bytes."""
    memo: dict[int, object] = {}

    def convert(node, depth):
        if isinstance(node, ArrayRecord):
            if id(node) not in memo:  # a record the pickle shares between two places
                memo[id(node)] = node.materialise()
            return memo[id(node)]
        if depth > MAX_NESTING or id(node) in memo:
            return memo.get(id(node), node)
        if isinstance(node, dict):
            memo[id(node)] = node
            for key in list(node):
                node[key] = convert(node[key], depth + 1)
            return node
        if isinstance(node, list):
            memo[id(node)] = node
            node[:] = [convert(item, depth + 1) for item in node]
            return node
        if isinstance(node, tuple):
            memo[id(node)] = node
            rebuilt = tuple(convert(item, depth + 1) for item in node)
            memo[id(node)] = rebuilt
            return rebuilt
        return node

    return convert(tree, 0)
