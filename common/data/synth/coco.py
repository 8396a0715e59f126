"""A synthetic COCO val2017: images and an instances json with polygons, RLEs and crowd regions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from common.data.coco import COCO_CATEGORY_IDS, COCO_CLASSES
from common.data.synth.drawing import save_jpeg, smooth_background
from common.files.atomic import write_text_atomic

# Real val2017 sizes are around 640x480; the defaults are smaller so tests stay fast, and vary
# in orientation and aspect ratio so both the resize and the centred padding are exercised.
COCO_DEFAULT_SIZES_HW = ((120, 160), (160, 112), (96, 200), (128, 128), (150, 100))
# A spread of real category ids including ones after the gaps of the id list (12, 26, 29...).
COCO_SYNTH_CATEGORY_IDS = (1, 3, 18, 27, 44, 62, 67, 90)


def _coco_categories() -> list[dict]:
    return [{"id": cat_id, "name": name, "supercategory": "synthetic"}
            for cat_id, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES)]


def _random_polygon(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A star-shaped polygon (float xy vertices) inside the image."""
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    radius = rng.uniform(0.12, 0.3) * min(height, width)
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(5, 9))))
    radii = radius * rng.uniform(0.6, 1.0, size=angles.size)
    xs = np.clip(cx + radii * np.cos(angles), 0, width - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, height - 1)
    return np.stack([xs, ys], axis=1)


def _random_ellipse_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    centre = (int(rng.integers(width // 5, 4 * width // 5)), int(rng.integers(height // 5, 4 * height // 5)))
    axes = (int(rng.integers(width // 10 + 2, width // 4 + 3)), int(rng.integers(height // 10 + 2, height // 4 + 3)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: column-major run lengths starting with a run of zeros."""
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _annotation(ann_id: int, image_id: int, category_id: int, segmentation, mask: np.ndarray,
                iscrowd: int) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"id": ann_id, "image_id": image_id, "category_id": int(category_id),
            "segmentation": segmentation, "area": float(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": iscrowd}


def _image_objects(rng: np.random.Generator, image: np.ndarray, image_id: int, first_ann_id: int,
                   with_crowd: bool) -> list[dict]:
    """Paint 2-4 objects (polygons, one compressed-RLE object) and maybe a crowd region."""
    from pycocotools import mask as mask_utils
    height, width = image.shape[:2]
    annotations = []
    kinds = ["polygon"] * int(rng.integers(1, 4)) + ["rle"] + (["crowd"] if with_crowd else [])
    for offset, kind in enumerate(kinds):
        category_id = int(rng.choice(COCO_SYNTH_CATEGORY_IDS))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if kind == "polygon":
            polygon = _random_polygon(rng, height, width)
            segmentation = [[round(float(v), 2) for v in polygon.reshape(-1)]]
            # pycocotools' own rasterisation, so image, area and evaluation all agree
            mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)))
            crowd = 0
        else:
            mask = _random_ellipse_mask(rng, height, width)
            crowd = int(kind == "crowd")
            if crowd:
                segmentation = _uncompressed_rle(mask)
            else:
                encoded = mask_utils.encode(np.asfortranarray(mask))
                segmentation = {"counts": encoded["counts"].decode("ascii"), "size": list(encoded["size"])}
        if mask.sum() == 0:
            continue
        image[mask > 0] = colour
        annotations.append(_annotation(first_ann_id + offset, image_id, category_id, segmentation, mask, crowd))
    return annotations


def write_synthetic_coco(root: str | Path, count: int = 5, seed: int = 0,
                         sizes_hw: Sequence[tuple[int, int]] = COCO_DEFAULT_SIZES_HW,
                         grayscale: Sequence[int] = ()) -> Path:
    """Write `<root>/val2017/<12-digit id>.jpg` and `<root>/annotations/instances_val2017.json`.

    Objects use real (non-contiguous) category ids with polygon masks and one compressed-RLE
    mask per image; every second image also has a crowd region (iscrowd=1, uncompressed RLE);
    the last image has no annotation at all. Image ids are not in file-name order. The images at
    the indices `grayscale` are one-channel JPEGs, as COCO holds a few (off by default: the
    default sets keep their bytes). Returns root.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    images, annotations = [], []
    for index in range(count):
        image_id = 397133 + 7919 * (count - index)  # 12-digit file names, descending ids
        height, width = sizes_hw[index % len(sizes_hw)]
        rgb = smooth_background(rng, height, width)
        if index < count - 1 or count == 1:
            annotations += _image_objects(rng, rgb, image_id, len(annotations) + 1, with_crowd=index % 2 == 1)
        file_name = f"{image_id:012d}.jpg"
        save_jpeg(root / "val2017" / file_name, rgb, quality=95, grayscale=index in grayscale)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
    dataset = {"info": {"description": "synthetic COCO val2017 layout (segzoo tests)"}, "licenses": [],
               "images": images, "annotations": annotations, "categories": _coco_categories()}
    write_text_atomic(root / "annotations" / "instances_val2017.json", json.dumps(dataset))
    return root
