"""Collect the packs' summary rows into results/summary.json and results/summary.md."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common.cli import script_entry
from common.pipeline.packs import PACK_NAMES
from common.summary.markdown import summary_markdown, write_summary


def read_row(path: Path) -> dict | None:
    """A pack's summary row, or None when the file is cut short or not a row."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="the results folder of run_all.sh")
    parser.add_argument("--packs", nargs="+", default=list(PACK_NAMES))
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    return collect(Path(args.results), args.packs)


def collect(results: Path, packs: list[str]) -> int:
    """Write the summary files of the packs' rows and print the table; 1 when a pack has none."""
    rows = []
    for pack in packs:
        row_path = results / pack / "summary_row.json"
        row = read_row(row_path) if row_path.is_file() else None
        if row is not None:
            row.setdefault("pack", pack)
            rows.append(row)
        elif row_path.is_file():
            rows.append({"pack": pack, "status": f"unreadable {row_path}"})
        else:
            log = results / f"{pack}.log"
            rows.append({"pack": pack, "status": "failed, see " + str(log) if log.is_file() else "not run"})
    write_summary(rows, results / "summary.json", results / "summary.md")
    print("\nSummary (the data and weights of each row are in its columns):")
    print(summary_markdown(rows), end="")
    print(f"written: {results / 'summary.json'}, {results / 'summary.md'}")
    print("\nVerdicts against PyTorch fp32 on the same bins:")
    for row in rows:
        print(f"  {row['pack']}: {row.get('verdict') or row.get('status')}")
    # The run fails when a pack gave no result, or its backend does not reproduce PyTorch
    # within the stated tolerances: a script can rely on the exit code.
    unsettled = [str(r["pack"]) for r in rows if r.get("verdict") != "agree"]
    if unsettled:
        print(f"not in agreement or without a result: {', '.join(unsettled)}")
    return 1 if unsettled else 0


if __name__ == "__main__":
    script_entry(main, parse_args)
