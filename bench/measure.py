"""Run one pack script in this (child) process and report its time and peak memory as JSON.

`python3 -m bench.measure --pack RefineNet --script RefineNet_preprocess --json out.json -- ARGS`

The script is imported as a module of its pack's package (so worker processes can import it
too), then `main(parse_args(ARGS))` is timed: start-up (imports) is excluded, as in the guides' per-image
figures. Peak memory is this process's VmHWM (the high-water resident set of its own address
space; `ru_maxrss` would not do: Linux carries the parent's peak over fork+exec, so a child
of a big benchmark process would report the parent's size). Worker processes (`--workers`)
are reported apart, as the largest `ru_maxrss` among them (memory shared with the parent
after fork is counted in it too).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from common.pipeline.packs import pack_module


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # the value is in kB
    return 0.0


def _max_rss_mib() -> tuple[float, float]:
    own = _status_mib("VmHWM")
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    return own, workers


def run(pack: str, script: str, argv: list[str]) -> dict:
    module = pack_module(pack, script)
    args = module.parse_args(argv)
    rss_before, _ = _max_rss_mib()
    start = time.perf_counter()
    status = module.main(args)
    seconds = time.perf_counter() - start
    own, workers = _max_rss_mib()
    return {"script": script, "argv": argv, "exit": int(status or 0), "seconds": seconds,
            "rss_after_imports_mib": rss_before, "peak_rss_mib": own, "peak_rss_workers_mib": workers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", required=True)
    parser.add_argument("--script", required=True, help="file name in the pack folder, without .py")
    parser.add_argument("--json", required=True, help="where the measurement goes")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the script's arguments")
    options = parser.parse_args()
    argv = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
    result = run(options.pack, options.script, argv)
    Path(options.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result["exit"]


if __name__ == "__main__":
    sys.exit(main())
