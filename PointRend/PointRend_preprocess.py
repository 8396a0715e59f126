"""Guide step "准备数据集 / 数据预处理": Cityscapes val images -> input bins.

    python3 PointRend_preprocess.py DATA_DIR SAVE_DIR [--input-size H W] [--split val] [--resume]

DATA_DIR holds `leftImg8bit/<split>/<city>/*_leftImg8bit.png` (or a `cityscapes/` folder that
does). Each image becomes `SAVE_DIR/<city>_<seq>_<frame>_leftImg8bit.bin`: float32 [3, H, W],
BGR, 0..255 minus the detectron2 pixel mean (103.53, 116.28, 123.675), std 1, no padding (the
ModelZoo's bins). Cityscapes images are 1024x2048, the model's size, so the test-time resize is
the identity; an image of another size is resized bilinearly to the input size and its
original size is kept in `SAVE_DIR/preprocess_meta.json` for the postprocess. Every image
header is read before the first bin is written; `--resume` keeps the finished bins of an
interrupted run.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import script_entry  # first: a Ctrl-C during the imports below is one line

import cv2
import numpy as np

from common.data.cityscapes import CityscapesFine
from common.data.images import image_sizes, read_image_bgr
from common.data.pixel_lut import PixelLUT
from common.files.bins import check_unique_stems, is_finished_bin, write_bin
from common.pipeline.preprocess import add_run_arguments, preprocess_all, write_meta
from common.pipeline.sizes import check_run_size
from pointrend import config


def subtract_mean_reference(image_bgr: np.ndarray) -> np.ndarray:
    """HWC uint8 BGR -> CHW float32 (x - mean) / std, detectron2's normalisation."""
    mean = np.asarray(config.PIXEL_MEAN_BGR, dtype=np.float32)
    std = np.asarray(config.PIXEL_STD_BGR, dtype=np.float32)
    normalised = (image_bgr.astype(np.float32) - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


# The same numbers from a table of the reference's 3 x 256 values (many times faster).
subtract_mean = PixelLUT(subtract_mean_reference, source_channels=(0, 1, 2))


def normalise_bgr(image_bgr: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """HWC uint8 BGR -> CHW float32 minus the pixel mean, at the model's input size."""
    height, width = input_hw
    if image_bgr.shape[:2] != (height, width):
        image_bgr = cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    return subtract_mean(image_bgr)


def bin_name(image_path: Path) -> str:
    """The ModelZoo's naming: the image file name up to its first dot, plus `.bin`."""
    return image_path.name.split(".", 1)[0] + ".bin"


def preprocess_one(job: tuple[Path, tuple[int, int]], out_dir: Path, input_hw: tuple[int, int],
                   resume: bool = False) -> tuple[str, list[int]]:
    image_path, original_hw = job  # (height, width) from the image header
    target = out_dir / bin_name(image_path)
    # Bins are renamed into place only once complete: one of the right size is finished.
    if resume and is_finished_bin(target, (3, *input_hw), np.float32):
        return target.stem, list(original_hw)
    image = read_image_bgr(image_path)
    write_bin(target, normalise_bgr(image, input_hw), np.float32)
    return target.stem, list(image.shape[:2])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="Cityscapes root (holds leftImg8bit/, or cityscapes/leftImg8bit/)")
    parser.add_argument("save_dir", help="folder for the input bins")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        default=list(config.DEFAULT_INPUT_HW),
                        help="model input height and width (default 1024 2048; smaller for tests)")
    parser.add_argument("--split", default="val", help="dataset split (default val)")
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    input_hw = config.check_input_hw(args.input_size)
    check_run_size(f"--input-size {input_hw[0]} {input_hw[1]}", input_hw, output_shapes=config.output_shapes)
    dataset = CityscapesFine(args.data_dir, args.split, require_labels=False)
    images = [sample.image_path for sample in dataset]
    check_unique_stems([(path, bin_name(path)) for path in images])
    # A broken image stops the run now, not an hour into it.
    sizes_wh = image_sizes(images)
    jobs = [(path, (height, width)) for path, (width, height) in zip(images, sizes_wh)]
    work = partial(preprocess_one, input_hw=input_hw, resume=args.resume)
    save_dir, original_sizes = preprocess_all(work, jobs, args.save_dir, resume=args.resume, workers=args.workers)
    resized = sum(1 for hw in original_sizes.values() if tuple(hw) != input_hw)
    write_meta(save_dir, {
        "dataset": "cityscapes", "split": args.split, "input_hw": list(input_hw),
        "layout": "float32 CHW BGR minus pixel mean", "pixel_mean_bgr": list(config.PIXEL_MEAN_BGR),
        "pixel_std_bgr": list(config.PIXEL_STD_BGR),
        "images": {stem: {"original_hw": hw} for stem, hw in original_sizes.items()},
    })
    note = f" ({resized} resized from another size)" if resized else ""
    print(f"wrote {len(original_sizes)} bins of float32 [3,{input_hw[0]},{input_hw[1]}] to {save_dir}{note}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
