"""Guide step "数据预处理" (preprocess): Cityscapes val images -> float32 input bins.

`python3 HRNet_preprocess.py --src_path=./data --save_path=./prep_dataset`, where `./data`
holds `cityscapes/`. As upstream `Cityscapes.__getitem__` on the test path
(docs/specs/3D_HRNet.md section 3): OpenCV BGR decode, no resize, crop or pad; float32, BGR -> RGB, / 255,
minus the ImageNet mean, divided by the std, HWC -> CHW. One bin per image,
`<city>_<seq>_<frame>_leftImg8bit.bin` (named after the image; the ModelZoo script named them
after the label, `..._gtFine_labelIds.bin`: the postprocess reads both), and
`preprocess_meta.json` beside the bins listing each bin's image, label and size.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import numpy as np

from common.data.cityscapes import CityscapesFine, CityscapesSample
from common.data.images import image_sizes, read_image_bgr
from common.data.pixel_lut import PixelLUT
from common.files.bins import check_unique_stems, is_finished_bin, write_bin
from common.pipeline.preprocess import add_run_arguments, preprocess_all, write_meta
from common.pipeline.sizes import check_run_size
from hrnet3d.config import MEAN_RGB, STD_RGB, output_shapes

BIN_SUFFIX = "_leftImg8bit"


def normalise_bgr_reference(bgr: np.ndarray) -> np.ndarray:
    """HWC uint8 BGR -> CHW float32 normalised RGB (upstream `input_transform` + transpose)."""
    image = bgr.astype(np.float32)[:, :, ::-1]
    image = image / 255.0
    image -= MEAN_RGB
    image /= STD_RGB
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


# The same numbers from a table of the reference's 3 x 256 values: ~25x faster at 1024x2048.
normalise_bgr = PixelLUT(normalise_bgr_reference, source_channels=(2, 1, 0))  # RGB out from BGR in


def bin_name(sample: CityscapesSample) -> str:
    return f"{sample.name}{BIN_SUFFIX}.bin"


def _process_one(sample: CityscapesSample, out_dir: Path, size_hw: list[int], resume: bool) -> tuple[str, dict]:
    out_path = out_dir / bin_name(sample)
    entry = {"image": str(sample.image_path), "label": str(sample.label_path), "size_hw": size_hw}
    # A bin is renamed into place only once complete, so one of the right size is finished;
    # one of another size (an earlier run on other images) is redone.
    if not (resume and is_finished_bin(out_path, (3, *size_hw), np.float32)):
        bgr = read_image_bgr(sample.image_path)
        if list(bgr.shape[:2]) != size_hw:
            raise UserError(f"{sample.image_path}: decoded size {list(bgr.shape[:2])} differs from its header {size_hw}")
        write_bin(out_path, normalise_bgr(bgr), np.float32)
    return out_path.stem, entry


def check_one_size(samples: list[CityscapesSample]) -> list[int]:
    """The exported model takes one fixed H x W: every image must have the same size.
    Checked from the image headers before any bin is written."""
    sizes_wh = image_sizes([sample.image_path for sample in samples])
    for sample, size_wh in zip(samples, sizes_wh):
        if size_wh != sizes_wh[0]:
            raise UserError(f"{sample.image_path}: size {size_wh[1]}x{size_wh[0]} differs from "
                            f"{samples[0].image_path.name} {sizes_wh[0][1]}x{sizes_wh[0][0]}; "
                            "the model input has one fixed size")
    return [sizes_wh[0][1], sizes_wh[0][0]]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src_path", default="./data", help="folder holding cityscapes/ (or cityscapes/ itself)")
    parser.add_argument("--save_path", default="./prep_dataset", help="where the bins go")
    parser.add_argument("--split", default="val", help="leftImg8bit/<split> (the guide scores val)")
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    # Labels are not needed to make bins, but a missing one would only surface at scoring time.
    dataset = CityscapesFine(args.src_path, args.split, require_labels=args.split != "test")
    size_hw = check_one_size(dataset.samples)
    # the images are the model input as they are: their size is the run's size
    check_run_size(f"{dataset.samples[0].image_path}: images of {size_hw[1]}x{size_hw[0]}", size_hw,
                   output_shapes=output_shapes)
    check_unique_stems([(sample.image_path, bin_name(sample)) for sample in dataset.samples])
    work = partial(_process_one, size_hw=size_hw, resume=args.resume)
    save_dir, images = preprocess_all(work, dataset.samples, args.save_path, resume=args.resume, workers=args.workers)
    write_meta(save_dir, {"dataset": "cityscapes", "split": args.split, "input_hw": size_hw, "images": images})
    print(f"{len(images)} bins of shape (3, {size_hw[0]}, {size_hw[1]}) float32 in {save_dir}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
