"""Write results/report.html from a run_all results folder: `python3 -m common.html_report RESULTS_DIR`.

The summary table and, per pack, thumbnails of the input, the prediction and where PyTorch and
the backend disagree (see common/summary/html_report.py). Opens from disk, no network needed.
"""
from __future__ import annotations

import argparse

from common.cli import script_entry
from common.summary.html_report import FILES_DIR, build_report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="the results folder of run_all.sh (holds summary.json)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    size = build_report(args.results)
    print(f"written: {size.page} ({size.page_bytes / 1024:.0f} KiB) and {size.files_count} pictures in "
          f"{size.page.parent / FILES_DIR} ({size.files_bytes / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
