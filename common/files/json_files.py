"""JSON files the steps hand each other (metrics, summaries): read with one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

from common.cli import UserError


def read_json(path: Path) -> dict:
    """A JSON object from a file; anything else (absent, cut, a list) is a one-line error."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found (did the step before it run?)") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise UserError(f"{path}: not valid JSON (cut short by an interrupted run?)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(values).__name__}")
    return values


def lookup_number(values: dict, dotted_key: str, path: Path) -> float:
    value = lookup(values, dotted_key, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{path}: '{dotted_key}' is {value!r:.40}, not a number")
    return float(value)


def lookup(values: dict, dotted_key: str, path: Path):
    for part in dotted_key.split("."):
        if not isinstance(values, dict) or part not in values:
            raise UserError(f"{path}: no '{dotted_key}' value")
        values = values[part]
    return values
