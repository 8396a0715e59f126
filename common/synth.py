"""Write a synthetic dataset in its real on-disk layout: `python3 -m common.synth voc|cityscapes|coco
--out DIR --count N` (tests and the demo run use these instead of the real datasets)."""
from __future__ import annotations

import argparse
from typing import Callable

from common.cli import script_entry
from common.data.images import MAX_IMAGE_PIXELS
from common.data.synth.cityscapes import write_synthetic_cityscapes
from common.data.synth.coco import COCO_DEFAULT_SIZES_HW, write_synthetic_coco
from common.data.synth.voc import VOC_DEFAULT_SIZES_HW, write_synthetic_voc


def _voc_command(args: argparse.Namespace) -> None:
    sizes = VOC_DEFAULT_SIZES_HW if args.height is None else ((args.height, args.width or args.height),)
    voc = write_synthetic_voc(args.out, count=args.count, seed=args.seed, sizes_hw=sizes)
    print(f"synthetic VOC2012 with {args.count} images: {voc}")


def _cityscapes_command(args: argparse.Namespace) -> None:
    size_hw = (args.height or 1024, args.width or 2 * (args.height or 1024))
    base = write_synthetic_cityscapes(args.out, count=args.count, size_hw=size_hw, seed=args.seed)
    print(f"synthetic Cityscapes with {args.count} images of {size_hw[0]}x{size_hw[1]}: {base}")


def _coco_command(args: argparse.Namespace) -> None:
    sizes = COCO_DEFAULT_SIZES_HW if args.height is None else ((args.height, args.width or args.height),)
    root = write_synthetic_coco(args.out, count=args.count, seed=args.seed, sizes_hw=sizes)
    print(f"synthetic COCO val2017 with {args.count} images: {root}")


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
    args = parser.parse_args(argv)
    height, width = args.height or 1, args.width or args.height or 1
    if height <= 0 or width <= 0 or args.count < 1:
        parser.error("--height, --width and --count must be positive")
    if height * width > MAX_IMAGE_PIXELS:  # the readers would refuse such images anyway
        parser.error(f"--height {height} --width {width}: more than the {MAX_IMAGE_PIXELS // 10**6} megapixels "
                     "the image readers accept")
    return args


def main(args: argparse.Namespace) -> None:
    SUBCOMMANDS[args.dataset][1](args)



if __name__ == "__main__":
    script_entry(main, parse_args)
