"""Reading images and labels where they enter: headers first, one-line errors naming the file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from common.cli import UserError


def image_sizes(paths: Sequence[str | os.PathLike], kind: str = "image",
                modes: Iterable[str] | None = None) -> list[tuple[int, int]]:
    """(width, height) of every image from its header; a missing or unreadable file is an error.

    Only headers are read (fast on a full dataset); a file cut short inside its pixel data is
    caught when it is decoded. `modes` restricts the PIL modes accepted (labels: "P", "L").
    """
    allowed = set(modes) if modes is not None else None
    sizes = []
    for path in map(Path, paths):
        try:
            with Image.open(path) as image:
                size, mode = image.size, image.mode
        except FileNotFoundError:
            raise UserError(f"{path}: {kind} not found") from None
        except (UnidentifiedImageError, OSError, ValueError) as err:
            reason = "not an image file" if isinstance(err, UnidentifiedImageError) else str(err)
            raise UserError(f"{path}: unreadable {kind} ({reason})") from None
        if allowed is not None and mode not in allowed:
            raise UserError(f"{path}: {kind} has mode {mode}, expected {' or '.join(sorted(allowed))}")
        if size[0] <= 0 or size[1] <= 0:
            raise UserError(f"{path}: {kind} has size {size}")
        sizes.append(size)
    return sizes


def read_image_rgb(path: str | Path) -> np.ndarray:
    """HWC uint8 RGB, decoded with PIL (the guides' decoder); unreadable files are a UserError."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except OSError as err:
        raise UserError(f"{path}: unreadable image ({err})") from None


def read_palette_label(path: str | Path) -> np.ndarray:
    """Class-index label from a palette (or grey) PNG, HW uint8; never converted to RGB."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise UserError(f"{path}: label PNG has mode {image.mode}, expected palette or grey")
            return np.asarray(image)
    except FileNotFoundError:
        raise UserError(f"{path}: label not found") from None
    except UserError:
        raise
    except OSError as err:
        raise UserError(f"{path}: unreadable label ({err})") from None


def read_image_bgr(path: str | Path) -> np.ndarray:
    """HWC uint8 BGR through OpenCV's IMREAD_COLOR (the decoder of the HRNet/detectron2 code)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: unreadable image")
    return image
