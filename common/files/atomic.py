"""Atomic file writes: write to a temporary name in the same folder, then rename.

An interrupted run therefore never leaves a half-written file under the final name that a
later step (or `--resume`) would trust.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
# The names atomic_path gives its temporary files: `.<final name>.<random>.tmp<suffix>`.
# The leading dot hides them from list_bins and from `*` globs, so a half-written file left
# by a killed run is never read as a result.
TEMP_NAME = re.compile(r"^\..+\.tmp(\.[^./]*)?$")


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; rename it into place only on success.

    `suffix` keeps the extension some writers need to pick a format (cv2.imwrite, torch.save).
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = final_path.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=f".tmp{suffix}",
                                    dir=final_path.parent)
    os.close(fd)
    # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus umask)
    # so results stay readable by the colleagues the user shares them with.
    os.chmod(tmp_name, 0o666 & ~_UMASK)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.replace(tmp_path, final_path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    # numpy scalars and arrays show up in metric dicts; JSON needs plain Python numbers.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_temp_name(name: str) -> bool:
    """True for the name of an atomic_path temporary file (finished files never match)."""
    return bool(TEMP_NAME.match(name))


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files a killed run left in `folder` (top level); return how many.

    Only for a folder this run owns (`--resume`): another run writing into the same folder at
    the same time would lose its temporary file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and is_temp_name(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
