"""Guide step "数据预处理": COCO val2017 images -> `<stem>.bin` (float32, 3 x H x W, RGB, normalised).

    python3 mmdet_preprocess.py --image_src_path=data/coco/val2017 --bin_file_path=val2017_bin \
        --model_input_height=1216 --model_input_width=1216

The ModelZoo transform (docs/specs/MaskRCNN_mmdet.md §3.2): cv2 decode (BGR, EXIF-rotated as mmcv
does), keep-ratio resize to fit the canvas with ratio = min(W/w, H/h) and FLOORED sizes,
cv2 bilinear, mmdet normalisation (RGB, mean 123.675/116.28/103.53, std 58.395/57.12/57.375),
then CENTRED zero padding. Every image's geometry goes to `preprocess_meta.json` beside the
bins, which the postprocess reads to map boxes and masks back.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import cv2
import numpy as np

from common.data.geometry import Letterbox
from common.data.images import image_sizes, read_image_bgr
from common.files.bins import check_unique_stems, is_finished_bin, list_bins, write_bin
from common.data.pixel_lut import PixelLUT
from common.pipeline.preprocess import add_run_arguments, preprocess_all, write_meta
from common.pipeline.sizes import check_run_size
from maskrcnn_mmdet import config

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG")
# mmdet 2.8 Normalize keeps mean and std as float32 arrays and passes them to mmcv.imnormalize.
MEAN_RGB = np.array(config.PIXEL_MEAN_RGB, dtype=np.float32)
STD_RGB = np.array(config.PIXEL_STD_RGB, dtype=np.float32)


def normalise_reference(bgr: np.ndarray) -> np.ndarray:
    """HWC uint8 BGR -> CHW float32 RGB with the arithmetic of mmcv 1.2 `imnormalize(img, mean, std,
    to_rgb=True)`: float32 image, BGR -> RGB, `cv2.subtract(img, float64(mean), img)`, then
    `cv2.multiply(img, 1 / float64(std), img)`.

    OpenCV (arithm_op, 4.x as mmcv used it, and the 5.0 installed here) subtracts a float64
    scalar from a float32 image in float32 (the scalar is taken as float32: the float32 mean
    itself), but multiplies in float64 and rounds the product to float32 once. So the
    reciprocal of the std is never rounded to float32, as `(x - mean) * float32(1 / std)` would.
    """
    rgb = bgr[..., ::-1].astype(np.float32)
    centred = rgb - MEAN_RGB
    inverse_std = 1 / STD_RGB.astype(np.float64)
    normalised = (centred.astype(np.float64) * inverse_std).astype(np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


# The same bytes from a table of the reference's 3 x 256 values (RGB out from BGR in).
normalise = PixelLUT(normalise_reference, source_channels=(2, 1, 0))


def fit_in_canvas(original_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> Letterbox:
    """ModelZoo geometry: ratio = min(W/w, H/h), sizes floored, padding centred (floor half top/left)."""
    height, width = original_hw
    canvas_h, canvas_w = canvas_hw
    ratio = min(canvas_w / width, canvas_h / height)
    resized_h, resized_w = max(1, int(height * ratio)), max(1, int(width * ratio))
    return Letterbox((height, width), (resized_h, resized_w), (canvas_h, canvas_w),
                     (canvas_h - resized_h) // 2, (canvas_w - resized_w) // 2)


def preprocess_image(bgr: np.ndarray, box: Letterbox) -> np.ndarray:
    """The keep-ratio resize (cv2 bilinear), mmdet's normalisation, zero padding around it."""
    resized = cv2.resize(bgr, box.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    return box.on_canvas(normalise(resized))


def _process_one(path: Path, out_dir: Path, canvas_hw: tuple[int, int], resume: bool) -> tuple[str, dict]:
    bgr = read_image_bgr(path)  # also on resume: the geometry needs the EXIF-rotated size
    box = fit_in_canvas(bgr.shape[:2], canvas_hw)
    out_path = out_dir / f"{path.name.split('.', 1)[0]}.bin"
    # Bins are renamed into place only once complete: one of the right size is finished.
    if not (resume and is_finished_bin(out_path, (3, *canvas_hw), np.float32)):
        write_bin(out_path, preprocess_image(bgr, box), np.float32)
    return out_path.stem, box.to_dict()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_src_path", required=True, help="folder of images (data/coco/val2017)")
    parser.add_argument("--bin_file_path", default="val2017_bin", help="where the bins go")
    parser.add_argument("--model_input_height", type=int, default=1216)
    parser.add_argument("--model_input_width", type=int, default=1216)
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    canvas_hw = (args.model_input_height, args.model_input_width)
    if min(canvas_hw) <= 0 or canvas_hw[0] % config.SIZE_DIVISOR or canvas_hw[1] % config.SIZE_DIVISOR:
        raise UserError(f"model input {canvas_hw[0]}x{canvas_hw[1]}: height and width must be positive "
                        f"multiples of {config.SIZE_DIVISOR}")
    check_run_size(f"--model_input_height {canvas_hw[0]} --model_input_width {canvas_hw[1]}", canvas_hw,
                   output_shapes=config.output_shapes)
    images = list_bins(args.image_src_path, IMAGE_SUFFIXES)
    check_unique_stems([(path.parent, path.name) for path in images])  # a.jpg and a.png: one a.bin
    image_sizes(images)  # a broken image stops the run now, not an hour into it
    work = partial(_process_one, canvas_hw=canvas_hw, resume=args.resume)
    bin_dir, geometry = preprocess_all(work, images, args.bin_file_path, resume=args.resume, workers=args.workers)
    write_meta(bin_dir, {"canvas_hw": list(canvas_hw), "images": geometry})
    print(f"{len(geometry)} bins of shape (3, {canvas_hw[0]}, {canvas_hw[1]}) float32 in {bin_dir}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
