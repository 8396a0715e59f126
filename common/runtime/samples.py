"""Input files into samples: pairing by stem, size checks before any work, loading."""
from __future__ import annotations

import math
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
        if not path.is_file():
            raise UserError(f"{path}: input folder or file not found")
    if len(files) % len(specs):
        raise UserError(f"--input lists {len(files)} files, not a multiple of the model's "
                        f"{len(specs)} inputs")
    group = len(files) // len(specs)
    for k in range(len(specs)):
        check_unique_stems([(path.parent, path.name) for path in files[k * group:(k + 1) * group]])
    return [[files[k * group + i] for k in range(len(specs))] for i in range(group)]


def check_sample_sizes(samples: list[list[Path]], specs: Sequence[TensorSpec], model_name: str = "") -> None:
    """Every file must hold exactly one sample of its input: checked before any inference."""
    for index, spec in enumerate(specs):
        want = expected_nbytes(spec.sample_shape(), spec.dtype)
        for sample in samples:
            path = sample[index]
            if path.suffix.lower() == ".npy":
                continue  # checked when loaded: the header carries shape and dtype
            size = path.stat().st_size
            if size != want:
                model = f" of {model_name}" if model_name else ""
                raise UserError(f"{path}: {size} bytes, expected {want} for input '{spec.name}'{model} "
                                f"({spec.dtype.name} {spec.sample_shape()}){_size_hint(size, spec)}")


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


def load_sample(path: Path, spec: TensorSpec) -> np.ndarray:
    shape = spec.sample_shape()
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.size != math.prod(shape):
            raise UserError(f"{path}: {array.size} values, expected {math.prod(shape)} for '{spec.name}'")
        return array.astype(spec.dtype, copy=False).reshape(shape)
    return np.fromfile(path, dtype=spec.dtype).reshape(shape)
