"""Synthetic datasets in the real on-disk layouts, for the tests and the demo run.

Images are smooth random colour fields with a few flat shapes; labels are drawn from the same
shapes so that a model (even with random weights) and the metric see realistic structure:
several classes per image, ignore regions, varied image sizes.
"""
from __future__ import annotations

import argparse
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


# ---- command line: python3 -m common.synth <dataset> --out DIR --count N -----------------

def _voc_command(args: argparse.Namespace) -> None:
    sizes = VOC_DEFAULT_SIZES_HW if args.height is None else ((args.height, args.width or args.height),)
    voc = write_synthetic_voc(args.out, count=args.count, seed=args.seed, sizes_hw=sizes)
    print(f"synthetic VOC2012 with {args.count} images: {voc}")


# Each generator registers a subcommand here: name -> (help, function(args)).
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], None]]] = {
    "voc": ("PASCAL VOC 2012 segmentation val layout", _voc_command),
    "cityscapes": ("Cityscapes fine val layout (default 1024x2048)", _cityscapes_command),
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
