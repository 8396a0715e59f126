"""Legacy benchmark `.info` files: one `<index> <path> <width> <height>` line per sample."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from common.cli import UserError
from common.data.lists import read_text_lines
from common.files.atomic import write_text_atomic


def format_info_lines(paths: Sequence[str | os.PathLike], sizes_wh: Sequence[tuple[int, int]]) -> str:
    for path in paths:
        if any(c in str(path) for c in "\n\r\t"):
            raise UserError(f"{path}: a line break or tab in the name cannot be written to an .info line")
    return "".join(f"{i} {p} {w} {h}\n" for i, (p, (w, h)) in enumerate(zip(paths, sizes_wh)))


def write_info(path: str | os.PathLike, paths: Sequence, sizes_wh: Sequence[tuple[int, int]]) -> None:
    write_text_atomic(path, format_info_lines(paths, sizes_wh))


def parse_info(path: str | os.PathLike) -> list[tuple[int, str, int, int]]:
    """Read an `.info` file into (index, path, width, height) rows; a bad line names its number."""
    path = Path(path)
    rows = []
    for line_no, line in read_text_lines(path, "info file"):
        # index first, width and height last: the path between them may hold spaces
        head = line.split(None, 1)
        fields = head[:1] + (head[1].rsplit(None, 2) if len(head) == 2 else [])
        if len(fields) != 4:
            raise UserError(f"{path}:{line_no}: expected 'index path width height', got {len(fields)} fields")
        try:
            index, width, height = int(fields[0]), int(fields[2]), int(fields[3])
        except ValueError:
            raise UserError(f"{path}:{line_no}: index, width and height must be integers") from None
        if width <= 0 or height <= 0 or index < 0:
            raise UserError(f"{path}:{line_no}: index must be >= 0 and width, height > 0")
        rows.append((index, fields[1], width, height))
    if not rows:  # e.g. cut to nothing by an interrupted writer: never a valid dataset list
        raise UserError(f"{path}: no entries")
    return rows
