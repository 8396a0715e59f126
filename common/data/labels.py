"""Label ids where labels enter: ids outside the dataset's label set are named, not dropped.

A label pixel whose id is not one of the dataset's classes or its void id would otherwise be
dropped like void (the confusion matrix skips it) and the score would change without a word.
Such a label is refused in one line naming the file, the ids and their pixel counts, unless
the user asks for them to count as void (`--unknown-ids-as-void`), which is then said with the
count (the metric JSON records it too).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.cli import UserError

UNKNOWN_IDS_FLAG = "--unknown-ids-as-void"
SHOW_IDS = 4


@dataclass(frozen=True)
class LabelSet:
    """The ids a dataset's label files may hold (uint8 labels)."""

    dataset: str
    valid_ids: tuple[int, ...]
    description: str  # e.g. "0..20 and 255 (void)"

    def valid_lut(self) -> np.ndarray:
        lut = np.zeros(256, dtype=bool)
        lut[list(self.valid_ids)] = True
        return lut


def add_unknown_ids_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(UNKNOWN_IDS_FLAG, dest="unknown_ids_as_void", action="store_true",
                        help="count label pixels whose id is outside the dataset's label set as void "
                             "(default: refuse the label, naming the ids)")


def unknown_id_pixels(label: np.ndarray, label_set: LabelSet, path: str | Path,
                      as_void: bool = False) -> int:
    """How many pixels of a uint8 label hold ids outside `label_set` (0 for a clean label).

    Without `as_void` any such pixel is a UserError naming the file, the ids and their counts.
    The caller's lookup (or its ignore index) already treats those ids as void, so counting
    is all `as_void` needs."""
    label = np.asarray(label)
    if label.dtype != np.uint8:
        raise UserError(f"{path}: label holds {label.dtype} values, expected 8-bit class ids")
    counts = np.bincount(label.ravel(), minlength=256)
    unknown = np.flatnonzero((counts > 0) & ~label_set.valid_lut())
    if unknown.size == 0:
        return 0
    total = int(counts[unknown].sum())
    if not as_void:
        listed = ", ".join(f"{int(i)} ({int(counts[i])} px)" for i in unknown[:SHOW_IDS])
        more = f" and {unknown.size - SHOW_IDS} more" if unknown.size > SHOW_IDS else ""
        raise UserError(f"{path}: label ids outside the {label_set.dataset} label set "
                        f"({label_set.description}): {listed}{more}; pass {UNKNOWN_IDS_FLAG} to count "
                        "them as void")
    return total


def warn_unknown_as_void(pixels: int, images: int, label_set: LabelSet) -> None:
    """With --unknown-ids-as-void: say how many pixels were counted as void (stderr)."""
    if pixels:
        print(f"[WARNING] {pixels} label pixel(s) in {images} image(s) hold ids outside the "
              f"{label_set.dataset} label set ({label_set.description}); counted as void "
              f"({UNKNOWN_IDS_FLAG})", file=sys.stderr)
