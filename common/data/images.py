"""Reading images and labels where they enter: headers first, one-line errors naming the file.

Every image read of the project (PIL and OpenCV, headers and decodes) goes through this module,
so one bound protects all of them: a file whose header declares more than MAX_IMAGE_PIXELS
pixels is refused from its header, before any decoding (a decompression bomb is a few KB on
disk and gigabytes in memory). The datasets stay far below it: Cityscapes frames are 2 MP,
COCO val2017 images below 1 MP, VOC images below 0.3 MP.

Valid images in other modes are converted as the upstream decoders do: PIL `convert("RGB")`
for the PIL packs (grey, palette, RGBA, CMYK all become RGB), OpenCV `IMREAD_COLOR` for the
others (grey replicated, alpha dropped, CMYK converted). Images of more than 8 bits per
channel are refused: PIL would clip them to 255 and OpenCV scale them down, so the model would
see another image than the file holds.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from common.cli import UserError

MAX_IMAGE_PIXELS = 100_000_000
# PIL's own check warns above 89 MP and raises inside Image.open above 179 MP, without the
# size; the bound above, checked in open_image before any decode, replaces it.
Image.MAX_IMAGE_PIXELS = None
# PIL modes of more than 8 bits per channel (I;16 PNGs, 32-bit integer and float images).
HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


@contextlib.contextmanager
def open_image(path: str | os.PathLike, kind: str = "image") -> Iterator[Image.Image]:
    """The PIL image of `path`, header read and checked (size, pixel bound); not yet decoded.

    Missing, unidentifiable and damaged files are one-line UserErrors naming the file;
    errors raised while the caller decodes inside the block are turned into the same lines.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            check_header(path, image.size, kind)
            yield image
    except FileNotFoundError:
        raise UserError(f"{path}: {kind} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected an {kind} file") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: unreadable {kind} (not an image file)") from None
    except (OSError, ValueError, SyntaxError) as err:  # PIL reports damaged data as these
        raise UserError(f"{path}: unreadable {kind} ({err})") from None


def check_header(path: Path, size_wh: tuple[int, int], kind: str = "image") -> None:
    width, height = size_wh
    if width <= 0 or height <= 0:
        raise UserError(f"{path}: {kind} has size {width}x{height}")
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(f"{path}: {kind} header declares {width}x{height} pixels "
                        f"({width * height / 1e6:.0f} megapixels), more than the bound of "
                        f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels (a decompression bomb?); not decoded")


def _check_depth(path: Path, image: Image.Image, kind: str) -> None:
    if image.mode in HIGH_DEPTH_MODES:
        raise UserError(f"{path}: {kind} has mode {image.mode} (more than 8 bits per channel); "
                        "the datasets' images are 8-bit: convert it first")


def image_sizes(paths: Sequence[str | os.PathLike], kind: str = "image",
                modes: Iterable[str] | None = None) -> list[tuple[int, int]]:
    """(width, height) of every image from its header; a missing or unreadable file is an error.

    Only headers are read (fast on a full dataset); a file cut short inside its pixel data is
    caught when it is decoded. `modes` restricts the PIL modes accepted (labels: "P", "L").
    """
    allowed = set(modes) if modes is not None else None
    sizes = []
    for path in map(Path, paths):
        with open_image(path, kind) as image:
            size, mode = image.size, image.mode
            if allowed is None:
                _check_depth(path, image, kind)
        if allowed is not None and mode not in allowed:
            raise UserError(f"{path}: {kind} has mode {mode}, expected {' or '.join(sorted(allowed))}")
        sizes.append(size)
    return sizes


def load_image_rgb(path: str | Path) -> Image.Image:
    """The decoded PIL image in RGB, as the guides' PIL code converts it (grey, palette, RGBA,
    CMYK -> RGB)."""
    path = Path(path)
    with open_image(path) as image:
        _check_depth(path, image, "image")
        rgb = image.convert("RGB")
        rgb.load()
    return rgb


def read_image_rgb(path: str | Path) -> np.ndarray:
    """HWC uint8 RGB, decoded with PIL (the guides' decoder); unreadable files are a UserError."""
    return np.asarray(load_image_rgb(path))


def read_palette_label(path: str | Path) -> np.ndarray:
    """Class-index label from a palette (or grey) PNG, HW uint8; never converted to RGB."""
    path = Path(path)
    with open_image(path, "label") as image:
        if image.mode not in ("P", "L"):
            raise UserError(f"{path}: label PNG has mode {image.mode}, expected palette or grey")
        return np.asarray(image)


def read_class_map_png(path: str | Path, kind: str = "mask") -> np.ndarray:
    """A class-index PNG the project wrote (grey or palette) as HW uint8; other modes are refused."""
    path = Path(path)
    with open_image(path, kind) as image:
        if image.mode not in ("P", "L"):
            raise UserError(f"{path}: {kind} PNG has mode {image.mode}, expected a grey or palette class map")
        return np.asarray(image)


def read_image_bgr(path: str | Path) -> np.ndarray:
    """HWC uint8 BGR through OpenCV's IMREAD_COLOR (the decoder of the HRNet/detectron2/mmcv
    code), after the header check: OpenCV's own limit (2^30 pixels) would decode a bomb."""
    path = Path(path)
    with open_image(path) as image:
        _check_depth(path, image, "image")
    data = np.fromfile(path, dtype=np.uint8)  # imdecode: non-ASCII names work on every platform
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise UserError(f"{path}: unreadable image (OpenCV cannot decode it)")
    return bgr


def check_label_sizes(pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
                      label_modes: Iterable[str] = ("P", "L")) -> None:
    """Every (image, label) pair has one size, from the headers, before any scoring: a label of
    another size would be resized and scored, or a correct output blamed for it. Labels must
    be class-index images (`label_modes`)."""
    for image_path, label_path in pairs:
        (label_wh,) = image_sizes([label_path], kind="label", modes=label_modes)
        (image_wh,) = image_sizes([image_path])
        if image_wh != label_wh:
            raise UserError(f"{label_path}: label is {label_wh[0]}x{label_wh[1]}, its image {image_path} is "
                            f"{image_wh[0]}x{image_wh[1]} (width x height)")
