"""Demo weights for a pack: `python3 -m common.demo_weights PACK OUT_FILE`.

Random values in the ORIGINAL checkpoint's file format, names and shapes (from the key
manifest), so that every step of a pack's README can be followed without the published file.
They predict noise: a run with them checks the pipeline and the backends' parity, not accuracy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import script_entry
from common.files.folders import output_file_parent
from common.pipeline.packs import PACK_NAMES, pack_config, pack_module


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.demo_weights", description=__doc__.split("\n")[0])
    parser.add_argument("pack", choices=PACK_NAMES)
    parser.add_argument("out_file", nargs="?", default=None,
                        help="checkpoint to write (default: the published file name, here)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    config = pack_config(args.pack)
    path = output_file_parent(args.out_file or config.weights_file)
    pack_module(args.pack, "model").write_demo_checkpoint(Path(path), seed=args.seed)
    print(f"wrote {path}: demo weights for {args.pack} (random values in the format of {config.weights_file}; "
          "they predict noise)")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
