"""The skeleton every preprocess and postprocess shares, so a pack script holds only its own transform.

A preprocess: check every input first (headers, lists), then make one bin per item in worker
processes (skipping finished bins on `--resume`, after removing a killed run's temporary
files), then write the metadata the postprocess needs beside the bins. A postprocess finds
that metadata through the inference run's summary, or is told where it is.
"""
from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from common.cli import UserError
from common.files.atomic import write_json_atomic
from common.files.folders import output_folder
from common.files.outputs import input_folder_of
from common.pipeline.parallel import map_with_progress

META_NAME = "preprocess_meta.json"
Job = TypeVar("Job")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--workers and --resume, as every preprocess takes them."""
    add_workers_argument(parser)
    parser.add_argument("--resume", action="store_true",
                        help="keep finished outputs of the right size (after an interrupted run)")


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=_positive_int, default=1, help="parallel processes (default 1)")


def add_allow_missing_argument(parser: argparse.ArgumentParser) -> None:
    """The one spelling of the flag that the result-matching errors name."""
    parser.add_argument("--allow-missing", action="store_true",
                        help="score the images that have outputs; the metric JSON says how many were left out")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """--workers and --allow-missing, as every postprocess that scores a dataset takes them."""
    add_workers_argument(parser)
    add_allow_missing_argument(parser)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def preprocess_all(process_one: Callable[..., tuple[str, object]], jobs: Sequence[Job], out_dir: str | Path, *,
                   resume: bool, workers: int) -> tuple[Path, dict]:
    """Run `process_one(job, out_dir=folder)` over every job; returns (folder, {name: result}).

    Only for a folder this run owns: temporary files a killed run left there are removed
    (output_folder; those of a writer still running are kept)."""
    folder = output_folder(out_dir)
    results = dict(map_with_progress(partial(process_one, out_dir=folder), jobs, workers, desc="Preprocess"))
    return folder, results


def write_meta(folder: Path, meta: Mapping, name: str = META_NAME) -> Path:
    path = folder / name
    write_json_atomic(path, dict(meta))
    return path


def find_meta(result_dir: str | Path, explicit: str | Path | None, name: str = META_NAME,
              also: Iterable[Path] = (), required: bool = True) -> Path | None:
    """The preprocess metadata of a result folder: `explicit` when given, else `<inputs>/<name>`
    for the input folder the inference summary records, else the first of `also` that exists.
    Not found is a one-line error saying what to pass (None when not `required`)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise UserError(f"{path}: preprocess metadata not found")
        return path
    inputs = input_folder_of(result_dir)
    candidates = ([inputs / name] if inputs else []) + list(also)
    for path in candidates:
        if path.is_file():
            return path
    if not required:
        return None
    where = f"beside the input bins {inputs}" if inputs else "through the inference summary"
    raise UserError(f"{result_dir}: no {name} found {where}; pass --meta <the preprocess output folder>/{name}")


def read_meta(path: Path, required: Sequence[str], writer: str) -> dict:
    """A metadata JSON object holding every `required` key, else a one-line error naming the file."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise UserError(f"{path}: not preprocess metadata written by {writer} (unreadable or cut short)") from None
    missing = [key for key in required if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise UserError(f"{path}: not preprocess metadata written by {writer} (no '{missing[0]}')")
    return meta
