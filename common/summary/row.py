"""Comparing the PyTorch run with a backend run, output folder against output folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.cli import UserError
from common.eval.parity import Difference, compare_arrays, merge
from common.files.bins import list_bins
from common.files.outputs import split_output_name


def compare_output_folders(reference: Path, candidate: Path, dtypes: list[str],
                           classes: list[int | None] | None = None) -> Difference:
    """Compare `<stem>_<k>.bin` pairs; output k is read with dtypes[k] (last one repeats).

    `classes[k]` (last one repeats; None: not a class output) marks output k as per-class
    scores, class axis first, when its dtype is a float, or as a class map when it is an
    integer: the result then also holds the fraction of positions whose class differs, which
    says more than the largest value difference when one near-tie flips (PointRend)."""
    classes = classes or [None]
    differences = []
    # list_bins, not Path.glob: pathlib's `*` also matches the hidden temporary files that a
    # killed run leaves behind.
    for ref_path in list_bins(reference):
        cand_path = candidate / ref_path.name
        if not cand_path.is_file():
            raise UserError(f"{cand_path}: missing, the PyTorch run has it")
        _, index = split_output_name(ref_path)
        dtype = np.dtype(dtypes[min(index, len(dtypes) - 1)])
        ref, cand = np.fromfile(ref_path, dtype), np.fromfile(cand_path, dtype)
        if ref.shape != cand.shape:
            raise UserError(f"{cand_path}: {cand_path.stat().st_size} bytes, the PyTorch output has "
                            f"{ref_path.stat().st_size}")
        differences.append(compare_classes(ref, cand, classes[min(index, len(classes) - 1)], cand_path))
    if not differences:
        raise UserError(f"{reference}: no output bins to compare")
    return merge(differences)


def compare_classes(ref: np.ndarray, cand: np.ndarray, num_classes: int | None, path: Path) -> Difference:
    if num_classes is None:
        return compare_arrays(ref, cand)
    if np.issubdtype(ref.dtype, np.integer):  # a class map: compare the ids themselves
        difference = compare_arrays(ref, cand)
        difference.argmax_mismatch = float(np.mean(ref != cand)) if ref.size else 0.0
        return difference
    if ref.size % num_classes:
        raise UserError(f"{path}: {ref.size} values do not split into {num_classes} class planes")
    return compare_arrays(ref.reshape(num_classes, -1), cand.reshape(num_classes, -1), class_axis=0)
