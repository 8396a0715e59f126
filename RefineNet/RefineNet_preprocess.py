"""Guide step 4.2: VOC2012 val images -> `<id>.bin` (float32, 3x500x500, RGB, normalised).

Exactly the ModelZoo transform chain (docs/specs/RefineNet.md §3): PIL RGB decode, cast to float32,
LongestMaxSize(500) only when the long side differs (bilinear on floats), centred pad with the
mean colour (0 after normalisation), ImageNet normalisation, HWC -> CHW. The geometry of every
image is written to `preprocess_meta.json` beside the bins for the postprocess.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import script_entry  # first: a Ctrl-C during the imports below is one line

import cv2
import numpy as np

from common.data.geometry import Letterbox, letterbox
from common.data.images import image_sizes, read_image_rgb
from common.data.pixel_lut import PixelLUT
from common.data.voc import VOCSegmentation
from common.files.bins import check_unique_stems, is_finished_bin, write_bin
from common.pipeline.preprocess import add_run_arguments, preprocess_all, write_meta
from common.pipeline.sizes import check_run_size
from refinenet import config

MEAN_RGB = np.array(config.MEAN_RGB, dtype=np.float32)
STD_RGB = np.array(config.STD_RGB, dtype=np.float32)


def normalise(image_hwc: np.ndarray) -> np.ndarray:
    """albumentations Normalize: (x - mean*255) * (1 / (std*255)), in float32, HWC."""
    return (image_hwc.astype(np.float32) - MEAN_RGB * 255.0) * (np.float32(1.0) / (STD_RGB * np.float32(255.0)))


# For an image that is not resized, the same numbers from a table of its 3 x 256 values.
normalise_uint8 = PixelLUT(lambda rgb: np.ascontiguousarray(normalise(rgb).transpose(2, 0, 1)), (0, 1, 2))


def preprocess_image(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    box = letterbox(rgb.shape[:2], size)
    if box.resized_hw == box.original_hw:
        chw = normalise_uint8(rgb)
    else:  # resized on floats, as the guide's chain, then normalised
        resized = cv2.resize(rgb.astype(np.float32), box.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
        chw = normalise(resized).transpose(2, 0, 1)
    # The pad is the mean colour, exactly 0 once normalised ((m - m) * k == +0.0).
    return box.on_canvas(chw.astype(np.float32, copy=False)), box


def _process_one(job: tuple[str, tuple[int, int]], dataset: VOCSegmentation, out_dir: Path, size: int,
                 resume: bool) -> tuple[str, dict]:
    image_id, original_hw = job  # (id, (height, width) from the image header)
    out_path = out_dir / f"{image_id}.bin"
    if resume and is_finished_bin(out_path, (3, size, size), np.float32):
        # A bin is renamed into place only once complete, so one of the right size is done;
        # its geometry follows from the image size read from the header.
        return image_id, letterbox(original_hw, size).to_dict()
    rgb = read_image_rgb(dataset.image_path(image_id))
    chw, box = preprocess_image(rgb, size)
    write_bin(out_path, chw, np.float32)
    return image_id, box.to_dict()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root-dir", required=True, help="the VOCdevkit/VOC2012 folder")
    parser.add_argument("--bin-dir", default="./prepare_dataset", help="where the bins go")
    parser.add_argument("--split", default="val", help="ImageSets/Segmentation/<split>.txt")
    parser.add_argument("--size", type=int, default=config.INPUT_SIZE, help="model input height = width")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error("--size must be >= 8")
    return args


def main(args: argparse.Namespace) -> int:
    check_run_size(f"--size {args.size}", (args.size, args.size), output_shapes=config.output_shapes)
    dataset = VOCSegmentation(args.root_dir, args.split)
    dataset.check_files(labels=False)
    check_unique_stems([(dataset.image_path(i), f"{i}.bin") for i in dataset.ids])
    # Every image header is read before the first bin is written: a broken file stops the
    # run now, not an hour into it.
    sizes_wh = image_sizes([dataset.image_path(i) for i in dataset.ids])
    jobs = [(image_id, (h, w)) for image_id, (w, h) in zip(dataset.ids, sizes_wh)]
    work = partial(_process_one, dataset=dataset, size=args.size, resume=args.resume)
    bin_dir, geometry = preprocess_all(work, jobs, args.bin_dir, resume=args.resume, workers=args.workers)
    write_meta(bin_dir, {"size": args.size, "images": geometry})
    print(f"{len(geometry)} bins of shape (3, {args.size}, {args.size}) float32 in {bin_dir}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
