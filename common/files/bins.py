"""Raw `.bin` tensors: write, read with a shape check, list in natural order.

A bin is the C-order bytes of one array, no header (the ais_bench / benchmark contract), so
the reader must be told the dtype and shape; a byte count that does not match is an error that
names the file, its size and the size expected.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from common.cli import UserError
from common.files.atomic import atomic_path

BIN_SUFFIXES = (".bin", ".BIN")


def write_bin(path: str | os.PathLike, array: np.ndarray, dtype=None) -> None:
    """Write the array's raw little-endian C-order bytes atomically."""
    array = np.ascontiguousarray(array, dtype=np.dtype(dtype or array.dtype).newbyteorder("<"))
    with atomic_path(path) as tmp:
        write_raw(tmp, array)


def write_raw(path: str | os.PathLike, array: np.ndarray) -> None:
    """The array's C-order bytes into `path` through a Python file: a full disk raises OSError
    with its errno (ndarray.tofile reports only "N requested and M written")."""
    array = np.ascontiguousarray(array)
    with open(path, "wb") as handle:
        handle.write(array.reshape(-1).view(np.uint8).data if array.size else b"")


def expected_nbytes(shape: Sequence[int], dtype) -> int:
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def read_bin(path: str | os.PathLike, shape: Sequence[int], dtype=np.float32) -> np.ndarray:
    """Read a bin as `shape`/`dtype`; a file of any other size is a UserError naming it."""
    path = Path(path)
    want = expected_nbytes(shape, dtype)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    if size != want:
        raise UserError(f"{path}: {size} bytes, expected {want} "
                        f"({np.dtype(dtype).name} {tuple(int(d) for d in shape)})")
    return np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def natural_key(name: str) -> list:
    """Sort key that orders digit runs numerically and text case-insensitively (ais_bench)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_bins(folder: str | os.PathLike, suffixes: Iterable[str] = BIN_SUFFIXES) -> list[Path]:
    """Top-level bin files of a folder in natural order; a missing or empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    suffixes = tuple(suffixes)
    named = [p for p in folder.iterdir() if p.name.endswith(suffixes) and not p.name.startswith(".")]
    for path in named:
        if not path.is_file():  # never skipped in silence: a sample would be missing from the run
            raise UserError(f"{path}: {_not_a_file(path)}")
    files = named
    if not files:
        raise UserError(f"{folder}: no {'/'.join(sorted(set(s.lower() for s in suffixes)))} files")
    return sorted(files, key=lambda p: natural_key(p.name))


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return f"dangling symlink (its target {os.readlink(path)} does not exist)"
    if path.is_dir():
        return "a folder with a bin name, not a file"
    return "not a regular file (a device, pipe or socket), cannot be read as a bin"


def bin_stem(path: str | os.PathLike) -> str:
    """ais_bench's sample name: the file name cut at its first dot."""
    return Path(path).name.split(".", 1)[0]


def is_finished_bin(path: str | os.PathLike, shape: Sequence[int], dtype) -> bool:
    """For `--resume`: a bin under its final name is complete (atomic writes), so it is done
    when it exists with the expected size; one of another size (another --size) is redone."""
    path = Path(path)
    return path.is_file() and path.stat().st_size == expected_nbytes(shape, dtype)


def require_finite(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """An output with NaN or Inf would turn into a silently wrong metric: stop, naming the file."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise UserError(f"{path}: output holds NaN or Inf values")
    return array


def check_unique_stems(names_by_source: Sequence[tuple[str | os.PathLike, str]]) -> None:
    """(source file, file name it gives) pairs: two names equal once cut at their first dot
    (ais_bench's sample name, from which every output name is made) would overwrite each
    other's outputs or be counted twice. Refused before any work, naming both sources."""
    seen: dict[str, tuple[str | os.PathLike, str]] = {}
    for source, name in names_by_source:
        stem = bin_stem(name)
        if stem in seen:
            other_source, other_name = seen[stem]
            if name == other_name:
                raise UserError(f"{source}: gives the file {name}, as {other_source} does: "
                                "their outputs would overwrite each other")
            same = "" if str(other_source) == str(source) else f" of {other_source}"
            raise UserError(f"{source}: {name} and {other_name}{same} have one sample name '{stem}' "
                            "(cut at the first dot, as ais_bench does): their outputs would overwrite each other")
        seen[stem] = (source, name)
