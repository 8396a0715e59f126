"""Resize-and-pad geometry used by the preprocesses and undone by the postprocesses."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """Where an image of `original_hw` sits inside a padded canvas of `canvas_hw`."""

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    pad_top: int
    pad_left: int

    def to_dict(self) -> dict:
        return asdict(self)

    def on_canvas(self, chw: np.ndarray) -> np.ndarray:
        """The (C, resized h, resized w) image placed on a zero canvas of (C, *canvas_hw): zero is
        the pad after normalisation in every pack that letterboxes (mean colour, or 0 itself)."""
        canvas = np.zeros((chw.shape[0], *self.canvas_hw), dtype=chw.dtype)
        canvas[:, self.pad_top:self.pad_top + self.resized_hw[0], self.pad_left:self.pad_left + self.resized_hw[1]] = chw
        return canvas

    def unpadded(self, canvas):
        """The image area of an array laid out like the canvas (rows and columns first)."""
        return canvas[self.pad_top:self.pad_top + self.resized_hw[0], self.pad_left:self.pad_left + self.resized_hw[1]]

    @classmethod
    def from_dict(cls, values: dict) -> "Letterbox":
        return cls(tuple(values["original_hw"]), tuple(values["resized_hw"]), tuple(values["canvas_hw"]),
                   int(values["pad_top"]), int(values["pad_left"]))


def longest_side_resize_hw(height: int, width: int, max_size: int) -> tuple[int, int]:
    """albumentations LongestMaxSize: scale so the long side is `max_size`; Python 3 round
    (half to even) on each side; no change at all when the long side already equals it."""
    scale = max_size / max(height, width)
    if scale == 1.0:
        return height, width
    return int(round(height * scale)), int(round(width * scale))


def centred_pad(height: int, width: int, canvas_h: int, canvas_w: int) -> tuple[int, int]:
    """(top, left) of a centred pad: the floor half goes on top/left (PadIfNeeded)."""
    return max(0, (canvas_h - height) // 2), max(0, (canvas_w - width) // 2)


def letterbox(original_hw: tuple[int, int], size: int) -> Letterbox:
    resized = longest_side_resize_hw(*original_hw, size)
    top, left = centred_pad(*resized, size, size)
    return Letterbox(tuple(original_hw), resized, (size, size), top, left)


def letterbox_from_meta(record, meta_path, key: str) -> Letterbox:
    """A Letterbox read back from preprocess metadata, checked: positive integer sizes, and the
    resized image with its pads inside the canvas; anything else is one line naming the key."""
    from common.cli import UserError
    try:
        box = Letterbox.from_dict(record)
    except (KeyError, TypeError, ValueError, AttributeError):
        box = None
    if box is None or not _plausible(box):
        raise UserError(f"{meta_path}: the geometry of '{key}' is not a letterbox record")
    return box


def _plausible(box: Letterbox) -> bool:
    pairs = (box.original_hw, box.resized_hw, box.canvas_hw)
    if not all(len(pair) == 2 and all(type(v) is int and v > 0 for v in pair) for pair in pairs):
        return False
    return (box.pad_top >= 0 and box.pad_left >= 0 and box.pad_top + box.resized_hw[0] <= box.canvas_hw[0]
            and box.pad_left + box.resized_hw[1] <= box.canvas_hw[1])
