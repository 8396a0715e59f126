"""Text lists where they enter (VOC id lists, upstream two-path lists, legacy .info files).

One reader for all of them: UTF-8 decoded strictly (a bad byte is named by its line), a
byte-order mark and Windows line ends accepted, blank lines skipped, every line split at
whitespace into fields with its line number kept for the messages.
"""
from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Iterable

from common.cli import UserError


def read_list_lines(path: str | os.PathLike, kind: str = "list") -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line of a UTF-8 text list."""
    return [(line_no, line.split()) for line_no, line in read_text_lines(path, kind)]


def read_text_lines(path: str | os.PathLike, kind: str = "list") -> list[tuple[int, str]]:
    """(line number, line without its end and outer blanks) of every non-blank line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: {kind} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a {kind} file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the {kind} ({err.strerror})") from None
    if data.startswith(codecs.BOM_UTF8):  # written by Windows editors; not part of the first id
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = data.count(b"\n", 0, err.start) + 1
        raise UserError(f"{path}:{line_no}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                        f"{err.start}); is this the right file?") from None
    if "\0" in text:
        line_no = text.count("\n", 0, text.index("\0")) + 1
        raise UserError(f"{path}:{line_no}: holds a NUL byte: not a text {kind}")
    # str.splitlines would also split at \x0b, \x1c, U+2028...: only real line ends count here.
    return [(line_no, line.strip()) for line_no, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1)
            if line.strip()]


def refuse_duplicates(path: str | os.PathLike, keyed: Iterable[tuple[int, str]], what: str = "id") -> None:
    """(line number, key) rows: a key on two lines would be scored twice; name both lines."""
    first_line: dict[str, int] = {}
    for line_no, key in keyed:
        if key in first_line:
            raise UserError(f"{path}:{line_no}: {what} {key} is listed twice (first on line {first_line[key]}); "
                            "it would be counted twice")
        first_line[key] = line_no
