"""`--show-dir DIR` for the segmentation postprocesses: per image, the pictures of what was scored.

A postprocess adds the flag with `add_show_dir_argument(parser)` and, per image, calls
`write_show_pictures(show_dir, stem, class_map, palette, image_path)` with the class map it
scores. Per image stem it writes:

    <stem>_colour.png    the prediction in the dataset's colours (lossless)
    <stem>_overlay.jpg   the colours blended over the input image, legend of the classes present
    <stem>_classes.png   the class ids themselves (grey PNG, lossless): what the disagreement
                         command and the HTML report compare between two runs
    <stem>_show.json     which image and palette belong to it

The pictures are extra files in their own folder: the guide's outputs are not touched.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from common.cli import UserError
from common.data.images import read_image_rgb
from common.files.atomic import is_temp_name, write_json_atomic
from common.viz.draw import as_rgb, check_class_map, colourize, overlay, read_class_png, save_jpeg, save_png
from common.viz.palettes import Palette, palette_named

CLASSES_SUFFIX = "_classes.png"
COLOUR_SUFFIX = "_colour.png"
OVERLAY_SUFFIX = "_overlay.jpg"
RECORD_SUFFIX = "_show.json"


def add_show_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show-dir", dest="show_dir", type=Path, default=None, metavar="DIR",
                        help="also write per image the prediction in the dataset's colours, an overlay on "
                             "the input image with a legend, and the class ids as PNG (for common.disagreement)")


def image_for(class_map_hw: tuple[int, int], image_path: Path) -> np.ndarray:
    """The input image at the class map's size. A map at another size (RefineNet scores on the
    resized image) must have the image's aspect ratio to within a pixel: then it is the image
    resized as the preprocess did; anything else means the wrong image."""
    rgb = read_image_rgb(image_path)
    height, width = rgb.shape[:2]
    map_h, map_w = class_map_hw
    if (height, width) == (map_h, map_w):
        return rgb
    if abs(height * map_w / width - map_h) > 1 and abs(width * map_h / height - map_w) > 1:
        raise UserError(f"{image_path}: image is {height}x{width}, the prediction {map_h}x{map_w}: "
                        "not the image of this prediction")
    return cv2.resize(rgb, (map_w, map_h), interpolation=cv2.INTER_LINEAR)


def write_show_pictures(show_dir: str | Path, stem: str, class_map: np.ndarray, palette: Palette | str,
                        image_path: str | Path) -> None:
    """The colour map, the overlay with its legend, the class-id PNG and the record of one image."""
    show_dir = Path(show_dir)
    palette = palette_named(palette) if isinstance(palette, str) else palette
    class_map = check_class_map(class_map)
    image_path = Path(image_path)
    rgb = image_for(class_map.shape, image_path)
    save_png(show_dir / f"{stem}{CLASSES_SUFFIX}", class_map)
    save_png(show_dir / f"{stem}{COLOUR_SUFFIX}", colourize(class_map, palette))
    save_jpeg(show_dir / f"{stem}{OVERLAY_SUFFIX}", overlay(rgb, class_map, palette), quality=90)
    write_json_atomic(show_dir / f"{stem}{RECORD_SUFFIX}", {
        "stem": stem, "image": str(image_path.resolve()), "palette": palette.name,
        "classes_png": f"{stem}{CLASSES_SUFFIX}", "class_map_hw": list(class_map.shape)})


# ---- reading a show folder back -----------------------------------------------------------------

class ShowRecord(NamedTuple):
    stem: str
    image_path: Path
    palette: Palette
    classes_path: Path

    def class_map(self) -> np.ndarray:
        try:
            return read_class_png(self.classes_path)
        except (OSError, ValueError) as err:
            raise UserError(f"{self.classes_path}: unreadable class-id PNG ({err})") from None

    def image(self, class_map_hw: tuple[int, int]) -> np.ndarray:
        """The input image at the class map's size; mid grey when the image is gone."""
        if not self.image_path.is_file():
            return as_rgb(np.full(tuple(class_map_hw), 128, np.uint8))
        return image_for(class_map_hw, self.image_path)


def read_show_record(path: Path) -> ShowRecord:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return ShowRecord(str(record["stem"]), Path(record["image"]), palette_named(record["palette"]),
                          path.parent / record["classes_png"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a show record written by --show-dir") from None


def list_show_records(show_dir: str | Path) -> dict[str, ShowRecord]:
    """{stem: record} of a show folder (hidden temporary files of a killed run skipped)."""
    show_dir = Path(show_dir)
    if not show_dir.is_dir():
        raise UserError(f"{show_dir}: show folder not found (was the postprocess run with --show-dir?)")
    records = {}
    for path in sorted(show_dir.glob(f"*{RECORD_SUFFIX}")):
        if not path.name.startswith(".") and not is_temp_name(path.name):
            record = read_show_record(path)
            records[record.stem] = record
    return records
