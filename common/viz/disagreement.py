"""Where two class maps of the same image differ (PyTorch vs a backend, fp32 vs fp16), drawn.

The image is shown in dimmed grey; pixels of another class are pure red, and a yellow ring
around them keeps a single pixel findable in a thumbnail. The count is written in a strip
above the picture. Grey, red and yellow never coincide, so the red pixels of the image area
are exactly the differing ones.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from common.cli import UserError
from common.viz.draw import as_rgb, check_class_map, with_banner
from common.viz.show import ShowRecord, list_show_records

DIFFERENT = (255, 0, 0)
RING = (255, 255, 0)


class Disagreement(NamedTuple):
    picture: np.ndarray  # banner strip on top, then the image area
    count: int  # pixels whose class differs
    total: int  # pixels compared


def difference_mask(class_map_a: np.ndarray, class_map_b: np.ndarray) -> np.ndarray:
    class_map_a, class_map_b = check_class_map(class_map_a), check_class_map(class_map_b)
    if class_map_a.shape != class_map_b.shape:
        raise ValueError(f"class maps of sizes {class_map_a.shape} and {class_map_b.shape} cannot be compared")
    return class_map_a != class_map_b


def dimmed_grey(image_rgb: np.ndarray) -> np.ndarray:
    """The image as grey at 40..168 of 255: dark enough for red and yellow to stand out."""
    grey = cv2.cvtColor(as_rgb(image_rgb), cv2.COLOR_RGB2GRAY)
    grey = (40 + grey.astype(np.uint16) // 2).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def ring_width(hw: tuple[int, int]) -> int:
    return max(1, max(hw) // 160)


def draw_disagreement(image_rgb: np.ndarray, mask: np.ndarray, count: int, total: int,
                      title: str = "", font_px: int | None = None) -> np.ndarray:
    """Red where `mask`, a yellow ring around it, over the dimmed image; the count on top."""
    picture = dimmed_grey(image_rgb)
    mask = np.asarray(mask, dtype=bool)
    if picture.shape[:2] != mask.shape:
        raise ValueError(f"image is {picture.shape[:2]}, mask {mask.shape}: they must be the same size")
    if mask.any():
        side = 2 * ring_width(mask.shape) + 1
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((side, side), np.uint8)) > 0
        picture[grown & ~mask] = RING
        picture[mask] = DIFFERENT
    return with_banner(picture, ((title + ": ") if title else "") + count_text(count, total), font_px)


def count_text(count: int, total: int) -> str:
    if count == 0:
        return f"no pixel of another class (of {total:,})"
    return f"{count:,} of {total:,} pixels of another class ({100 * count / max(total, 1):.3g} %)"


def disagreement(image_rgb: np.ndarray, class_map_a: np.ndarray, class_map_b: np.ndarray,
                 title: str = "") -> Disagreement:
    """The picture of where the maps differ, and how many pixels do."""
    mask = difference_mask(class_map_a, class_map_b)
    count = int(mask.sum())
    return Disagreement(draw_disagreement(image_rgb, mask, count, mask.size, title), count, mask.size)


# ---- two show folders ------------------------------------------------------------------------

class ShowPair(NamedTuple):
    stem: str
    reference: ShowRecord
    candidate: ShowRecord


def pair_show_dirs(reference_dir, candidate_dir) -> tuple[list[ShowPair], list[str], list[str]]:
    """(images in both, stems only in the reference, stems only in the candidate), by stem."""
    reference, candidate = list_show_records(reference_dir), list_show_records(candidate_dir)
    pairs = [ShowPair(stem, reference[stem], candidate[stem]) for stem in reference if stem in candidate]
    return (pairs, [s for s in reference if s not in candidate], [s for s in candidate if s not in reference])


def compare_pair(pair: ShowPair) -> tuple[np.ndarray, np.ndarray]:
    """(reference class map, difference mask) of one image; sizes that differ are a UserError."""
    reference, candidate = pair.reference.class_map(), pair.candidate.class_map()
    if reference.shape != candidate.shape:
        raise UserError(f"{pair.candidate.classes_path}: {candidate.shape[0]}x{candidate.shape[1]}, "
                        f"{pair.reference.classes_path} is {reference.shape[0]}x{reference.shape[1]}")
    return reference, reference != candidate
