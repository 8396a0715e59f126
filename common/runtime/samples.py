"""Input files into samples: pairing by stem, size checks before any work, loading.

The contract of an input file: a raw `.bin` holds exactly one sample (the model input's shape
without its batch axis, in its dtype); a `.npy` holds an array of that shape, or of that shape
with a leading batch axis of 1, in a dtype that converts to the input's without loss.
Everything else is a one-line error naming the file before the first inference.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from common.cli import UserError
from common.files.bins import bin_stem, check_unique_stems, expected_nbytes, list_bins
from common.runtime.backend import TensorSpec

INPUT_SUFFIXES = (".bin", ".BIN", ".npy", ".NPY")


def collect_samples(input_arg: str, specs: Sequence[TensorSpec]) -> list[list[Path]]:
    """One list of files (one per model input) per sample, in natural order of input 0.

    `input_arg` is a comma-separated list of folders (one per model input, paired by stem) or
    of files (cut into one contiguous group per input, as ais_bench does).
    """
    entries = [Path(p) for p in input_arg.split(",") if p.strip()]
    if not entries:
        raise UserError("--input is empty")
    if entries[0].is_dir():
        return _samples_from_folders(entries, specs)
    return _samples_from_files(entries, specs)


def _samples_from_folders(folders: list[Path], specs: Sequence[TensorSpec]) -> list[list[Path]]:
    if len(folders) != len(specs):
        raise UserError(f"--input names {len(folders)} folder(s) but the model has {len(specs)} "
                        f"input(s): {', '.join(s.name for s in specs)}")
    per_input = [list_bins(folder, INPUT_SUFFIXES) for folder in folders]
    for folder, files in zip(folders, per_input):  # x.bin and x.npy, img.a.bin and img.b.bin
        check_unique_stems([(folder, path.name) for path in files])
    first = per_input[0]
    samples = [[path] for path in first]
    for folder, files in zip(folders[1:], per_input[1:]):
        by_stem = {bin_stem(p): p for p in files}
        missing = [bin_stem(s[0]) for s in samples if bin_stem(s[0]) not in by_stem]
        if missing:
            raise UserError(f"{folder}: no file for {len(missing)} sample(s) of {folders[0]} "
                            f"(first: {', '.join(missing[:3])})")
        for sample in samples:
            sample.append(by_stem[bin_stem(sample[0])])
    return samples


def _samples_from_files(files: list[Path], specs: Sequence[TensorSpec]) -> list[list[Path]]:
    for path in files:
        if path.is_symlink() and not path.exists():
            raise UserError(f"{path}: dangling symlink (its target {os.readlink(path)} does not exist)")
        if not path.is_file():
            raise UserError(f"{path}: input folder or file not found")
    if len(files) % len(specs):
        raise UserError(f"--input lists {len(files)} files, not a multiple of the model's "
                        f"{len(specs)} inputs")
    group = len(files) // len(specs)
    for k in range(len(specs)):
        check_unique_stems([(path.parent, path.name) for path in files[k * group:(k + 1) * group]])
    return [[files[k * group + i] for k in range(len(specs))] for i in range(group)]


def check_input_specs(specs: Sequence[TensorSpec], model: str = "the model") -> None:
    """Each model input needs a batch axis first and a fixed shape after it (one bin = one sample)."""
    for spec in specs:
        if not spec.shape:
            raise UserError(f"{model}: input '{spec.name}' is a scalar (shape ()): the runner feeds a batch "
                            "axis first, one file per sample along it")
        if not all(isinstance(d, int) for d in spec.shape[1:]):
            dims = ",".join("?" if d is None else str(d) for d in spec.shape)
            raise UserError(f"{model}: input '{spec.name}' has dynamic axes beyond the batch ({dims}): "
                            "raw bins need a fixed sample shape")


def check_sample_sizes(samples: list[list[Path]], specs: Sequence[TensorSpec], model_name: str = "") -> list[str]:
    """Every file must hold exactly one sample of its input: checked before any inference.

    Returns notes for valid but unusual inputs (an .npy in a dtype that is converted)."""
    notes = []
    for index, spec in enumerate(specs):
        want = expected_nbytes(spec.sample_shape(), spec.dtype)
        cast_from: dict[str, list[Path]] = {}
        for sample in samples:
            path = sample[index]
            if path.suffix.lower() == ".npy":
                dtype = check_npy(path, spec, model_name)
                if dtype != spec.dtype:
                    cast_from.setdefault(dtype.name, []).append(path)
                continue
            size = _file_size(path)
            if size != want:
                model = f" of {model_name}" if model_name else ""
                raise UserError(f"{path}: {size} bytes, expected {want} for input '{spec.name}'{model} "
                                f"({spec.dtype.name} {spec.sample_shape()}){_size_hint(size, spec)}")
        for dtype_name, paths in cast_from.items():
            notes.append(f"{len(paths)} .npy input(s) hold {dtype_name}, converted without loss to "
                         f"{spec.dtype.name} for input '{spec.name}' (first: {paths[0]})")
    return notes


def _file_size(path: Path) -> int:
    """The size of an input file, opened for reading: an unreadable one is named before any work."""
    try:
        with open(path, "rb") as handle:
            return os.fstat(handle.fileno()).st_size
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


def _size_hint(size: int, spec: TensorSpec) -> str:
    """Say what the file would fit: the usual cause is bins made for another input size."""
    shape, itemsize = spec.sample_shape(), spec.dtype.itemsize
    if size == 0:
        return ": the file is empty"
    elements = math.prod(shape)
    for other in (1, 2, 4, 8):
        if other != itemsize and size == elements * other:
            return (f": the file holds {elements} values of {other} byte(s) each, the model wants "
                    f"{spec.dtype.name}: bins written with another dtype")
    if len(shape) == 3 and size % (itemsize * shape[0]) == 0:
        side = math.isqrt(size // (itemsize * shape[0]))
        if side * side * itemsize * shape[0] == size:
            return (f": the file fits {spec.dtype.name} {(shape[0], side, side)}, so the model input "
                    "shape does not match the bins (preprocess --size and export --size must agree)")
    return ": the model input shape does not match the bins (wrong size, dtype or a cut file)"


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npy file from its header (the data is not read)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    except (ValueError, EOFError) as err:  # bad magic, cut header or data, object arrays
        reason = str(err).splitlines()[0] if str(err) else "cut short"
        if "Python objects" in reason or "allow_pickle" in reason:
            reason = "an array of Python objects, not numbers"
        raise UserError(f"{path}: not a readable .npy file ({reason})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
        raise UserError(f"{path}: not an .npy array file (an .npz archive?)")
    return tuple(array.shape), array.dtype


def check_npy(path: Path, spec: TensorSpec, model_name: str = "") -> np.dtype:
    """An .npy input: the sample shape (or 1 x the sample shape) in a dtype that converts
    without loss; returns the file's dtype."""
    shape, dtype = npy_header(path)
    want = spec.sample_shape()
    of_model = f" of {model_name}" if model_name else ""
    if shape not in (want, (1, *want)):
        same_count = math.prod(shape) == math.prod(want)
        hint = (": the same number of values in another layout (HWC for CHW?); save it in the model's layout"
                if same_count else "")
        raise UserError(f"{path}: array of shape {shape}, input '{spec.name}'{of_model} takes {want} "
                        f"(or {(1, *want)}){hint}")
    if not np.can_cast(dtype, spec.dtype, casting="safe"):
        raise UserError(f"{path}: array of {dtype.name}, input '{spec.name}'{of_model} takes {spec.dtype.name}: "
                        "the conversion would lose values; save the array as "
                        f"{spec.dtype.name}")
    return dtype


def load_sample(path: Path, spec: TensorSpec) -> np.ndarray:
    """One sample of `spec` from its file (checked by check_sample_sizes before)."""
    shape = spec.sample_shape()
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
            return array.astype(spec.dtype, copy=False).reshape(shape)
        return np.fromfile(path, dtype=spec.dtype).reshape(shape)
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError:  # the file changed since it was checked (another program writing into it)
        raise UserError(f"{path}: no longer holds one sample of input '{spec.name}' (changed during the run?)") from None
