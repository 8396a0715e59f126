"""Checks a script runs before any work starts, so a bad input costs seconds, not an hour.

Each raises common.cli.UserError with one line naming the file and what is wrong.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

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


def output_folder(path: str | os.PathLike) -> Path:
    """Create a folder for outputs (and its parents); a file in the way is a one-line error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: exists and is not a folder") from None
    except OSError as err:
        raise UserError(f"{path}: cannot create the folder ({err.strerror})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{path}: folder is not writable")
    return path


def output_file_parent(path: str | os.PathLike) -> Path:
    """Check an output file path before hours of work: not a folder, its folder creatable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a file name")
    output_folder(path.parent if str(path.parent) else Path("."))
    return path
