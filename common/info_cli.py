"""The legacy benchmark tool's dataset list: `get_info.py bin|jpg DIR OUT.info [WIDTH HEIGHT]`.

`bin` lists the bins of DIR with the model input size given on the command line; `jpg` lists
the images of DIR with their real sizes. Lines are `index path width height` in natural order
(the old helper used unsorted glob order; a sorted list is reproducible).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.files.bins import list_bins
from common.files.info import write_info
from common.cli import UserError
from common.data.images import image_sizes
from common.files.folders import output_file_parent

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file_type", choices=("bin", "jpg"), help="what DIR holds")
    parser.add_argument("file_path", help="folder of bins or images")
    parser.add_argument("info_name", help="the .info file to write")
    parser.add_argument("width", nargs="?", type=int, help="model input width (bin mode)")
    parser.add_argument("height", nargs="?", type=int, help="model input height (bin mode)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.info_name)
    if args.file_type == "bin":
        if not args.width or not args.height or args.width < 0 or args.height < 0:
            raise UserError("bin mode needs positive WIDTH and HEIGHT after the info file name")
        paths = list_bins(args.file_path)
        sizes = [(args.width, args.height)] * len(paths)
    else:
        paths = list_bins(args.file_path, IMAGE_SUFFIXES)
        sizes = image_sizes(paths)  # from the headers: the same (width, height), no decoding
    write_info(args.info_name, [str(p) for p in paths], sizes)
    print(f"{len(paths)} entries written to {Path(args.info_name)}")
    return 0
