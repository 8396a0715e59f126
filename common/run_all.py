"""The main job: every pack end to end, then one summary: `bash run_all.sh [options]`.

Each pack runs `python3 -m common.run_pack PACK results/PACK ...` (its README's commands and the
PyTorch reference on the same bins); its output goes to the terminal and to results/PACK.log.
The rows are collected into results/summary.{json,md}.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common.cli import interrupted_child, script_entry, wait_for_child
from common.collect_summary import collect
from common.files.atomic import atomic_path
from common.pipeline.packs import PACK_NAMES, REPO_ROOT
from common.runtime.backend import BACKENDS
from common.runtime.precision import DEFAULT_PRECISION, PRECISIONS


def run_logged(command: list[str], log_path: Path) -> int:
    """Run a command, its output to the terminal and to the log as it comes (the log is renamed
    into place when the command ends, as every file here; `tail -f` its hidden temporary)."""
    with atomic_path(log_path) as tmp, open(tmp, "a", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1, errors="replace")
        try:
            _copy_lines(process.stdout, log)
            return process.wait()
        except KeyboardInterrupt:  # the pack got the Ctrl-C too: show its last lines, it says why
            code = wait_for_child(process)
            _copy_lines(process.stdout, log)
            raise interrupted_child(code) from None


def _copy_lines(stream, log) -> None:
    for line in stream:
        sys.stdout.write(line)
        log.write(line)
        log.flush()


def pack_arguments(args: argparse.Namespace) -> list[str]:
    extra = ["--quick"] if args.quick else []
    for flag, value in (("--data-root", args.data_root), ("--weights-dir", args.weights_dir), ("--count", args.count)):
        if value is not None:
            extra += [flag, str(value)]
    extra += ["--backend", args.backend, "--precision", args.precision]
    return extra + (["--skip-pytorch"] if args.skip_pytorch else [])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bash run_all.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small input sizes and a few images (minutes)")
    parser.add_argument("--data-root", type=Path, help="real data: holds VOCdevkit/, cityscapes/ and coco/")
    parser.add_argument("--weights-dir", type=Path, help="real weights: the published checkpoint files")
    parser.add_argument("--packs", default=" ".join(PACK_NAMES), help=f"space-separated subset of: {' '.join(PACK_NAMES)}")
    parser.add_argument("--count", type=int, help="images per pack")
    parser.add_argument("--skip-pytorch", action="store_true", help="no PyTorch reference runs")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS, help="engine of every pack's run")
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                        help="compute precision of the backend (default fp32)")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results", help="where results go")
    args = parser.parse_args(argv)
    args.packs = args.packs.split()
    unknown = [p for p in args.packs if p not in PACK_NAMES]
    if unknown:
        parser.error(f"--packs: unknown pack {unknown[0]} (known: {' '.join(PACK_NAMES)})")
    for name in ("data_root", "weights_dir"):
        folder = getattr(args, name)
        if folder is not None:
            if not folder.is_dir():
                parser.error(f"--{name.replace('_', '-')} {folder}: folder not found")
            setattr(args, name, folder.resolve())
    return args


def main(args: argparse.Namespace) -> int:
    results = args.results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    for pack in args.packs:
        (results / pack / "summary_row.json").unlink(missing_ok=True)
        start = time.monotonic()
        command = [sys.executable, "-m", "common.run_pack", pack, str(results / pack), *pack_arguments(args)]
        status = run_logged(command, results / f"{pack}.log")
        print(f"== {pack}: exit {status} after {time.monotonic() - start:.0f} s (log: {results / pack}.log)")
    status = collect(results, args.packs)
    # The page is written whatever the packs gave: it shows which have no result, too.
    report_status = subprocess.call([sys.executable, "-m", "common.html_report", str(results)])
    return status or report_status


if __name__ == "__main__":
    script_entry(main, parse_args)
