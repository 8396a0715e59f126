"""Output folders and files, checked before the work starts (a bad path costs seconds, not an hour).

Both also remove what a killed earlier run left there (hidden temporary files of atomic_path
whose writer is gone): a folder the command owns loses all of them, a file's folder only those
of that file.
"""
from __future__ import annotations

import os
from pathlib import Path

from common.cli import UserError
from common.files.atomic import remove_stale_temps, remove_stale_temps_of


def output_folder(path: str | os.PathLike) -> Path:
    """Create a folder this command owns for its outputs (and its parents); a file in the way
    is a one-line error. Temporary files a killed run left in it are removed."""
    path = _make_folder(path)
    remove_stale_temps(path)
    return path


def output_folders(*paths: str | os.PathLike | None) -> None:
    """output_folder for each folder given (None: an optional output not asked for)."""
    for path in paths:
        if path is not None:
            output_folder(path)


def output_file_parent(path: str | os.PathLike) -> Path:
    """Check an output file path before hours of work: not a folder, its folder creatable.
    Temporary files a killed run left while writing this file are removed."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a file name")
    _make_folder(path.parent if str(path.parent) else Path("."))
    remove_stale_temps_of(path)
    return path


def _make_folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: exists and is not a folder") from None
    except OSError as err:
        raise UserError(f"{path}: cannot create the folder ({err.strerror})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{path}: folder is not writable ({_why_not_writable(path)})")
    return path


def _why_not_writable(path: Path) -> str:
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"
