"""Drawing shared by every synthetic dataset: photo-like backgrounds, labelled shapes, image files."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from common.files.atomic import atomic_path


def smooth_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-frequency RGB field (uint8): upsampled noise looks more like a photo than noise."""
    coarse = rng.uniform(0, 255, size=(max(2, height // 32), max(2, width // 32), 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def draw_random_shapes(rng: np.random.Generator, image: np.ndarray, label: np.ndarray,
                       class_ids: Sequence[int], count: int) -> None:
    """Paint filled ellipses/rectangles of random classes into image (colour) and label (id)."""
    height, width = label.shape
    for _ in range(count):
        class_id = int(rng.choice(class_ids))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 10 + 1, width // 3 + 2)), int(rng.integers(height // 10 + 1, height // 3 + 2)))
        if rng.random() < 0.5:
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(image, centre, axes, angle, 0, 360, colour, -1)
            cv2.ellipse(label, centre, axes, angle, 0, 360, class_id, -1)
        else:
            corner = (centre[0] + axes[0], centre[1] + axes[1])
            cv2.rectangle(image, centre, corner, colour, -1)
            cv2.rectangle(label, centre, corner, int(class_id), -1)


def save_png(path: Path, array: np.ndarray, palette: Sequence[int] | None = None) -> None:
    image = Image.fromarray(array)
    if palette is not None:
        image = image.convert("P") if image.mode != "P" else image
        image.putpalette(list(palette))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_jpeg(path: Path, rgb: np.ndarray, quality: int = 90, grayscale: bool = False) -> None:
    """`grayscale`: a one-channel JPEG (mode L), as real photo collections hold a few of."""
    image = Image.fromarray(rgb)
    with atomic_path(path) as tmp:
        (image.convert("L") if grayscale else image).save(tmp, format="JPEG", quality=quality)
