"""Ascend `.om` models: handed to ais_bench unchanged (it writes the same file layout)."""
from __future__ import annotations

import argparse
import subprocess
import sys

from common.cli import UserError


def run_om_with_ais_bench(args: argparse.Namespace) -> int:
    """Hand an `.om` to ais_bench unchanged; it writes the same file layout."""
    import importlib.util
    if importlib.util.find_spec("ais_bench") is None:
        raise UserError(f"{args.model}: .om models run through ais_bench, which is not installed "
                        "(Ascend toolkit needed); run the .onnx model here instead")
    command = [sys.executable, "-m", "ais_bench", "--model", str(args.model), "--device", str(args.device),
               "--outfmt", args.outfmt, "--loop", str(args.loop)]
    for flag, value in (("--input", args.input), ("--output", args.output),
                        ("--output_dirname", args.output_dirname), ("--batchsize", args.batchsize)):
        if value is not None:
            command += [flag, str(value)]
    return subprocess.call(command)
