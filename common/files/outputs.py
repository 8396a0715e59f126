"""Matching a result folder's output files to the samples they belong to, by name.

A metric is computed only over a complete, name-matched set: a missing output (or an
output with no sample) stops the run with the count and the first few names, unless the
user asks for `--allow-missing`, in which case the summary says how many were left out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from common.files.bins import bin_stem, list_bins
from common.cli import UserError

SHOW_FIRST = 3


def output_file(result_dir: Path, stem: str, index: int = 0, ext: str = "bin") -> Path:
    return Path(result_dir) / f"{stem}_{index}.{ext}"


def split_output_name(path: str | Path) -> tuple[str, int]:
    """(`<stem>`, k) of an output file `<stem>_<k>.bin` (name cut at its first dot, as ais_bench);
    any other name does not belong in a result folder."""
    path = Path(path)
    stem, _, index = path.name.split(".", 1)[0].rpartition("_")
    if not stem or not index.isdigit():
        raise UserError(f"{path}: not an output file name (<input stem>_<output index>.bin)")
    return stem, int(index)


def match_outputs(result_dir: str | Path, stems: Sequence[str], num_outputs: int = 1,
                  allow_missing: bool = False, allow_extra: bool = False) -> tuple[list[str], list[str]]:
    """Return (stems with every output present, stems left out); raise on any mismatch.

    Output files are `<stem>_<k>.bin` for k < num_outputs (ais_bench naming).
    """
    result_dir = Path(result_dir)
    present = {p.name for p in list_bins(result_dir)}
    complete, missing = [], []
    for stem in stems:
        names = [output_file(result_dir, stem, k).name for k in range(num_outputs)]
        (complete if all(n in present for n in names) else missing).append(stem)
    if missing and not allow_missing:
        raise UserError(f"{result_dir}: outputs missing for {len(missing)} of {len(stems)} samples "
                        f"(first: {', '.join(missing[:SHOW_FIRST])}); pass --allow-missing to score the rest")
    known = {output_file(result_dir, s, k).name for s in stems for k in range(num_outputs)}
    extra = sorted(n for n in present if n not in known)
    if extra and not allow_extra:
        raise UserError(f"{result_dir}: {len(extra)} output file(s) match no sample of the list "
                        f"(first: {', '.join(extra[:SHOW_FIRST])}): wrong result folder or list?")
    if not complete:
        raise UserError(f"{result_dir}: no sample has its outputs: nothing to score")
    return complete, missing


def warn_left_out(missing: Sequence[str], total: int, unit: str = "images") -> None:
    """With --allow-missing: say on stderr how many were left out (the metric JSON records it too)."""
    if missing:
        import sys
        print(f"[WARNING] {len(missing)} of {total} {unit} left out (no outputs, --allow-missing): "
              f"first {', '.join(missing[:SHOW_FIRST])}", file=sys.stderr)


def input_folder_of(result_dir: str | Path) -> Path | None:
    """The input bin folder recorded in the run's `<result_dir>_summary.json`, if any.

    Only a hint (the postprocess finds the preprocess metadata through it): a missing,
    truncated or foreign summary gives None, never an exception.
    """
    import json
    summary = Path(str(Path(result_dir)).rstrip("/") + "_summary.json")
    try:
        files_info = json.loads(summary.read_text(encoding="utf-8"))["filesinfo"]
        first = next(iter(files_info.values()))
        infile = first["infiles"][0]
    except (OSError, ValueError, KeyError, StopIteration, IndexError, TypeError, AttributeError,
            RecursionError):
        return None
    if not isinstance(infile, str) or not infile.strip() or "\0" in infile:
        return None
    return Path(infile).parent


__all__ = ["match_outputs", "output_file", "input_folder_of", "warn_left_out", "bin_stem"]
