"""Output folders and files, checked before the work starts (a bad path costs seconds, not an hour)."""
from __future__ import annotations

import os
from pathlib import Path

from common.cli import UserError


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
