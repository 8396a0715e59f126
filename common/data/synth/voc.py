"""A synthetic VOC2012 segmentation val set: JPEG images, palette labels with 255 borders, the id list."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from common.data.synth.drawing import draw_random_shapes, save_jpeg, save_png, smooth_background
from common.data.voc import voc_palette
from common.files.atomic import write_text_atomic

# Mostly the real val set's sizes (long side 500), plus a few whose long side is not 500 so
# the LongestMaxSize resize path of the preprocess is exercised too.
VOC_DEFAULT_SIZES_HW = ((375, 500), (240, 320), (500, 375), (480, 640), (333, 500), (500, 334), (281, 500))



def write_synthetic_voc(root: str | Path, count: int = 6, seed: int = 0,
                        sizes_hw: Sequence[tuple[int, int]] = VOC_DEFAULT_SIZES_HW,
                        num_classes: int = 21, split: str = "val", grayscale: Sequence[int] = ()) -> Path:
    """Write `<root>/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}`.

    Labels have background, several object classes and a 255 void border around each object,
    as VOC does. The images at the indices `grayscale` are one-channel JPEGs (off by default:
    the default sets keep their bytes). Returns the VOC2012 folder.
    """
    rng = np.random.default_rng(seed)
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    ids = []
    for index in range(count):
        image_id = f"2007_{index:06d}"
        height, width = sizes_hw[index % len(sizes_hw)]
        image = smooth_background(rng, height, width)
        label = np.zeros((height, width), dtype=np.uint8)
        draw_random_shapes(rng, image, label, range(1, num_classes), count=int(rng.integers(2, 5)))
        edges = cv2.morphologyEx(label, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        label[edges] = 255
        save_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", image, grayscale=index in grayscale)
        save_png(voc / "SegmentationClass" / f"{image_id}.png", label, palette=voc_palette())
        ids.append(image_id)
    write_text_atomic(voc / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
    return voc
