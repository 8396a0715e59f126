"""Guide step 4.2: VOC2012 val images -> `<id>.bin` (float32, 3x500x500, RGB, normalised).

Exactly the ModelZoo transform chain (spec RefineNet.md §3): PIL RGB decode, cast to float32,
LongestMaxSize(500) only when the long side differs (bilinear on floats), centred pad with the
mean colour (0 after normalisation), ImageNet normalisation, HWC -> CHW. The geometry of every
image is written to `preprocess_meta.json` beside the bins for the postprocess.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from common.binio import write_bin
from common.cli import script_entry
from common.datasets import VOCSegmentation, read_image_rgb
from common.fsio import write_json_atomic
from common.geometry import Letterbox, letterbox
from common.parallel import map_with_progress

MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)
META_NAME = "preprocess_meta.json"


def preprocess_image(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    box = letterbox(rgb.shape[:2], size)
    image = rgb.astype(np.float32)
    if box.resized_hw != box.original_hw:
        image = cv2.resize(image, box.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[...] = MEAN_RGB * 255.0  # the pad value: exactly 0 once normalised
    top, left = box.pad_top, box.pad_left
    canvas[top:top + box.resized_hw[0], left:left + box.resized_hw[1]] = image
    # albumentations computes (x - mean*255) * (1 / (std*255)) in float32
    normalised = (canvas - MEAN_RGB * 255.0) * (np.float32(1.0) / (STD_RGB * np.float32(255.0)))
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32), box


def _process_one(image_id: str, dataset: VOCSegmentation, bin_dir: Path, size: int, resume: bool) -> tuple[str, dict]:
    out_path = bin_dir / f"{image_id}.bin"
    rgb = read_image_rgb(dataset.image_path(image_id))
    if resume and out_path.is_file():
        return image_id, letterbox(rgb.shape[:2], size).to_dict()
    chw, box = preprocess_image(rgb, size)
    write_bin(out_path, chw, np.float32)
    return image_id, box.to_dict()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root-dir", required=True, help="the VOCdevkit/VOC2012 folder")
    parser.add_argument("--bin-dir", default="./prepare_dataset", help="where the bins go")
    parser.add_argument("--split", default="val", help="ImageSets/Segmentation/<split>.txt")
    parser.add_argument("--size", type=int, default=500, help="model input height = width")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    parser.add_argument("--resume", action="store_true", help="keep bins that already exist")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    dataset = VOCSegmentation(args.root_dir, args.split)
    dataset.check_files(labels=False)
    bin_dir = Path(args.bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    work = partial(_process_one, dataset=dataset, bin_dir=bin_dir, size=args.size, resume=args.resume)
    geometry = dict(map_with_progress(work, dataset.ids, args.workers, desc="Preprocess"))
    write_json_atomic(bin_dir / META_NAME, {"size": args.size, "images": geometry})
    print(f"{len(geometry)} bins of shape (3, {args.size}, {args.size}) float32 in {bin_dir}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
