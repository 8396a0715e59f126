"""The datasets' colours and class names, gathered from where they already live.

VOC: the standard 256-entry bit-interleaved colour map (common.synth writes its labels with
it; entry 255, the void colour of VOC's borders, is (224, 224, 192)). Cityscapes: the trainId
colours of common.data.cityscapes' label table (trainId 255, ignore, is black).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_IGNORE, cityscapes_train_id_colors
from common.data.voc import VOC_CLASSES, VOC_IGNORE
from common.data.voc import voc_palette

PALETTE_SIZE = 256


@dataclass(frozen=True)
class Palette:
    """Colours of class ids 0..255 (RGB, uint8) and the names of the dataset's classes."""

    name: str
    colours: np.ndarray  # (256, 3) uint8, indexed by class id
    class_names: tuple[str, ...]
    ignore_index: int = 255

    def class_name(self, class_id: int) -> str:
        if class_id == self.ignore_index:
            return "void"
        return self.class_names[class_id] if class_id < len(self.class_names) else f"class {class_id}"

    def colour(self, class_id: int) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.colours[class_id])


def _frozen(colours) -> np.ndarray:
    array = np.asarray(colours, dtype=np.uint8).reshape(PALETTE_SIZE, 3).copy()
    array.setflags(write=False)
    return array


VOC = Palette("voc", _frozen(voc_palette()), tuple(VOC_CLASSES), VOC_IGNORE)
CITYSCAPES = Palette("cityscapes", _frozen(cityscapes_train_id_colors()), tuple(CITYSCAPES_CLASSES),
                     CITYSCAPES_IGNORE)
PALETTES = {palette.name: palette for palette in (VOC, CITYSCAPES)}


def palette_named(name: str) -> Palette:
    if name not in PALETTES:
        raise KeyError(f"unknown palette '{name}' (known: {', '.join(PALETTES)})")
    return PALETTES[name]
