"""Synthetic datasets in the real on-disk layouts, for the tests and the demo run.

Images are smooth random colour fields with a few flat shapes; labels are drawn from the same
shapes so that a model (even with random weights) and the metric see realistic structure:
several classes per image, ignore regions, varied image sizes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from common.fsio import atomic_path, write_text_atomic


# ---- drawing shared by every generator ----------------------------------------------------

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


def save_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=quality)


# ---- PASCAL VOC 2012 ---------------------------------------------------------------------

# Mostly the real val set's sizes (long side 500), plus a few whose long side is not 500 so
# the LongestMaxSize resize path of the preprocess is exercised too.
VOC_DEFAULT_SIZES_HW = ((375, 500), (240, 320), (500, 375), (480, 640), (333, 500), (500, 334), (281, 500))


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved), 256 RGB entries flattened."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [red, green, blue]
    return palette


def write_synthetic_voc(root: str | Path, count: int = 6, seed: int = 0,
                        sizes_hw: Sequence[tuple[int, int]] = VOC_DEFAULT_SIZES_HW,
                        num_classes: int = 21, split: str = "val") -> Path:
    """Write `<root>/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}`.

    Labels have background, several object classes and a 255 void border around each object,
    as VOC does. Returns the VOC2012 folder.
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
        save_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", image)
        save_png(voc / "SegmentationClass" / f"{image_id}.png", label, palette=voc_palette())
        ids.append(image_id)
    write_text_atomic(voc / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
    return voc


# ---- Cityscapes (fine annotations) --------------------------------------------------------

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
    from common.datasets import CITYSCAPES_LABELS
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
    from common.datasets import CITYSCAPES_LABELS
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
    from common.datasets import CITYSCAPES_LABELS
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


def _cityscapes_command(args: argparse.Namespace) -> None:
    size_hw = (args.height or 1024, args.width or 2 * (args.height or 1024))
    base = write_synthetic_cityscapes(args.out, count=args.count, size_hw=size_hw, seed=args.seed)
    print(f"synthetic Cityscapes with {args.count} images of {size_hw[0]}x{size_hw[1]}: {base}")


# ---- COCO 2017 instances (val2017 + annotations/instances_val2017.json) ------------------

# Real val2017 sizes are around 640x480; the defaults are smaller so tests stay fast, and vary
# in orientation and aspect ratio so both the resize and the centred padding are exercised.
COCO_DEFAULT_SIZES_HW = ((120, 160), (160, 112), (96, 200), (128, 128), (150, 100))
# A spread of real category ids including ones after the gaps of the id list (12, 26, 29...).
COCO_SYNTH_CATEGORY_IDS = (1, 3, 18, 27, 44, 62, 67, 90)


def _coco_categories() -> list[dict]:
    from common.datasets import COCO_CATEGORY_IDS, COCO_CLASSES
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
                         sizes_hw: Sequence[tuple[int, int]] = COCO_DEFAULT_SIZES_HW) -> Path:
    """Write `<root>/val2017/<12-digit id>.jpg` and `<root>/annotations/instances_val2017.json`.

    Objects use real (non-contiguous) category ids with polygon masks and one compressed-RLE
    mask per image; every second image also has a crowd region (iscrowd=1, uncompressed RLE);
    the last image has no annotation at all. Image ids are not in file-name order. Returns root.
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
        save_jpeg(root / "val2017" / file_name, rgb, quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
    dataset = {"info": {"description": "synthetic COCO val2017 layout (segzoo tests)"}, "licenses": [],
               "images": images, "annotations": annotations, "categories": _coco_categories()}
    write_text_atomic(root / "annotations" / "instances_val2017.json", json.dumps(dataset))
    return root


def _coco_command(args: argparse.Namespace) -> None:
    sizes = COCO_DEFAULT_SIZES_HW if args.height is None else ((args.height, args.width or args.height),)
    root = write_synthetic_coco(args.out, count=args.count, seed=args.seed, sizes_hw=sizes)
    print(f"synthetic COCO val2017 with {args.count} images: {root}")


# ---- command line: python3 -m common.synth <dataset> --out DIR --count N -----------------

def _voc_command(args: argparse.Namespace) -> None:
    sizes = VOC_DEFAULT_SIZES_HW if args.height is None else ((args.height, args.width or args.height),)
    voc = write_synthetic_voc(args.out, count=args.count, seed=args.seed, sizes_hw=sizes)
    print(f"synthetic VOC2012 with {args.count} images: {voc}")


# Each generator registers a subcommand here: name -> (help, function(args)).
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], None]]] = {
    "voc": ("PASCAL VOC 2012 segmentation val layout", _voc_command),
    "cityscapes": ("Cityscapes fine val layout (default 1024x2048)", _cityscapes_command),
    "coco": ("COCO 2017 instances val layout (val2017 + annotations)", _coco_command),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Write a synthetic dataset in its real on-disk layout.")
    parser.add_argument("dataset", choices=sorted(SUBCOMMANDS), help="which dataset layout")
    parser.add_argument("--out", required=True, help="folder to write the dataset into")
    parser.add_argument("--count", type=int, default=6, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=None, help="image height (default: varied sizes)")
    parser.add_argument("--width", type=int, default=None, help="image width")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    SUBCOMMANDS[args.dataset][1](args)


if __name__ == "__main__":
    from common.cli import script_entry
    script_entry(main, parse_args)
