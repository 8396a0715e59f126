"""The PyTorch reference run, with the backend's file contract.

`python3 -m common.torch_infer --model X.onnx --checkpoint W --input DIR --output OUT
--output_dirname torch` rebuilds the exact module that was exported (pack and model options
are recorded in the ONNX metadata), runs it eagerly on the same bins and writes
`<stem>_<k>.bin` like `common.infer`. The pack's postprocess then scores both folders, which
is how the summary compares "metric (PyTorch)" with "metric (backend)".

`--precision bf16` (or fp16) runs the module under `torch.autocast("cpu", dtype=...)` with
weights and inputs in channels_last memory format (oneDNN's blocked kernels want NHWC; see
bench/RESULTS.md for what it buys), where the CPU computes that type natively; outputs are
returned as float32. The reference of every comparison stays fp32.
"""
from __future__ import annotations

import argparse
import sys

from common.cli import script_entry
from common.runtime.runner import print_summary, run_inference
from common.runtime.precision import DEFAULT_PRECISION, PRECISIONS
from common.runtime.torch_backend import TorchBackend


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.torch_infer", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the exported .onnx (its metadata names the pack)")
    parser.add_argument("--checkpoint", required=True, help="the original checkpoint file")
    parser.add_argument("--input", required=True, help="folder(s) of input bins, comma-separated")
    parser.add_argument("--output", required=True)
    parser.add_argument("--output_dirname", "--output-dirname", default="pytorch")
    parser.add_argument("--batchsize", type=int, default=None)
    parser.add_argument("--loop", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                        help="fp32 (default, the reference) or bf16/fp16 autocast where the CPU runs it natively")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--warmup_count", type=int, default=0,
                        help="untimed runs first (default 0: eager PyTorch needs no graph build, and at "
                             "full size one extra run costs a minute)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    backend = TorchBackend(args.model, args.checkpoint, threads=args.threads, precision=args.precision)
    summary = run_inference(backend, args.input, args.output, args.output_dirname, args.batchsize,
                            "BIN", args.loop, args.warmup_count, args.resume, argv=sys.argv)
    print_summary(summary)
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
