"""A synthetic Cityscapes fine split: street-like layouts, every gtFine file, void ids included."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.data.cityscapes import CITYSCAPES_LABELS
from common.data.synth.drawing import draw_random_shapes, save_png, smooth_background

CITYSCAPES_SYNTH_CITIES = ("frankfurt", "lindau", "munster")  # the real val split's cities
# Label ids a street scene holds besides its layout bands, void ones (0-6, 9, 10, 14-16, 18,
# 29, 30) included so the id -> trainId remap and the ignore handling are exercised.
_CITYSCAPES_SHAPE_IDS = tuple(range(0, 34))


def _cityscapes_layout(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Label ids of a crude street: sky, buildings/vegetation, sidewalk, road, ego vehicle."""
    label = np.empty((height, width), dtype=np.uint8)
    sky_end = int(height * rng.uniform(0.15, 0.35))
    road_start = int(height * rng.uniform(0.55, 0.7))
    label[:sky_end] = 23  # sky
    label[sky_end:road_start] = 11 if rng.random() < 0.6 else 21  # building / vegetation
    label[road_start:] = 7  # road
    curb = max(1, (height - road_start) // 4)
    label[road_start:road_start + curb, : width // 3] = 8  # sidewalk
    label[height - max(1, height // 12):] = 1  # ego vehicle (void)
    label[:, : max(1, width // 64)] = 2  # rectification border (void)
    return label


def _cityscapes_instance_ids(label_ids: np.ndarray) -> np.ndarray:
    """instanceIds as the dataset stores them: id * 1000 + k for each connected region of a
    class with instances, the plain label id elsewhere (uint16)."""
    instance_ids = label_ids.astype(np.uint16)
    for label in CITYSCAPES_LABELS:
        if not label.has_instances:
            continue
        mask = (label_ids == label.label_id).astype(np.uint8)
        if mask.any():
            count, regions = cv2.connectedComponents(mask, connectivity=8)
            for k in range(1, count):
                instance_ids[regions == k] = label.label_id * 1000 + (k - 1)
    return instance_ids


def _cityscapes_colors(label_ids: np.ndarray) -> np.ndarray:
    """RGBA colour rendering of label ids (gtFine_color.png is RGBA in the real dataset)."""
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 3] = 255
    for label in CITYSCAPES_LABELS:
        palette[label.label_id, :3] = label.color_rgb
    return palette[label_ids]


def write_synthetic_cityscapes(root: str | Path, count: int = 6, size_hw: tuple[int, int] = (64, 128),
                               seed: int = 0, split: str = "val", write_color: bool = True) -> Path:
    """Write `<root>/cityscapes/{leftImg8bit,gtFine}/<split>/<city>/...` for `count` images.

    Per image: `<name>_leftImg8bit.png` (RGB), `<name>_gtFine_labelIds.png` (uint8 ids 0..33,
    void ids included), `<name>_gtFine_instanceIds.png` (uint16) and optionally
    `<name>_gtFine_color.png` (RGBA), with `<name>` = `<city>_<seq:06d>_<frame:06d>` over several
    cities. Image colours follow the labels' colours plus a smooth random field, so images and
    labels share their structure. All images have `size_hw` (the models take one fixed size).
    Returns the `cityscapes` folder.
    """
    height, width = (int(v) for v in size_hw)
    rng = np.random.default_rng(seed)
    base = Path(root) / "cityscapes"
    class_rgb = np.zeros((256, 3), dtype=np.float32)
    for label in CITYSCAPES_LABELS:
        class_rgb[label.label_id] = label.color_rgb
    for index in range(count):
        city = CITYSCAPES_SYNTH_CITIES[index % len(CITYSCAPES_SYNTH_CITIES)]
        name = f"{city}_{index // len(CITYSCAPES_SYNTH_CITIES):06d}_{19 + 20 * index:06d}"
        label_ids = _cityscapes_layout(rng, height, width)
        scratch = np.zeros((height, width, 3), dtype=np.uint8)
        draw_random_shapes(rng, scratch, label_ids, _CITYSCAPES_SHAPE_IDS, count=int(rng.integers(3, 8)))
        texture = smooth_background(rng, height, width).astype(np.float32)
        rgb = np.clip(0.65 * class_rgb[label_ids] + 0.35 * texture, 0, 255).astype(np.uint8)
        image_dir = base / "leftImg8bit" / split / city
        label_dir = base / "gtFine" / split / city
        save_png(image_dir / f"{name}_leftImg8bit.png", rgb)
        save_png(label_dir / f"{name}_gtFine_labelIds.png", label_ids)
        save_png(label_dir / f"{name}_gtFine_instanceIds.png", _cityscapes_instance_ids(label_ids))
        if write_color:
            save_png(label_dir / f"{name}_gtFine_color.png", _cityscapes_colors(label_ids))
    return base
