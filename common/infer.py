"""ais_bench-compatible offline inference: `python3 -m common.infer --model X.onnx --input DIR ...`.

Same flags and the same on-disk contract as `python3 -m ais_bench` in the guides:
`<output>/<output_dirname>/<stem>_<k>.bin` per sample and output, and
`<output>/<output_dirname>_summary.json` beside that folder. `.onnx` runs on ONNX Runtime
(CPU, or CUDA when present; the default) or, with `--backend openvino`, on OpenVINO's CPU
plugin; `--precision bf16|fp16` asks for reduced-precision compute where the engine and the
CPU can do it natively (refused in one line otherwise). `.om` is handed to ais_bench when it
is installed.

Differences from ais_bench, on purpose: the inputs of a multi-input model are paired by file
stem, not by sorted position; every bin's size is checked against the model input before any
work starts; `--resume` skips samples whose outputs all exist (files are renamed into place
only when complete, so an existing file is a finished one).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import UserError, script_entry
from common.runtime.ais_bench import run_om_with_ais_bench
from common.runtime.backend import BACKENDS, make_backend
from common.runtime.precision import DEFAULT_PRECISION, PRECISIONS
from common.runtime.runner import print_summary, run_inference


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.infer", description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", required=True, help=".onnx (ONNX Runtime) or .om (ais_bench)")
    parser.add_argument("--input", "-i", default=None,
                        help="folder(s) of input bins, comma-separated, one per model input")
    parser.add_argument("--output", "-o", default=None, help="root folder for results")
    parser.add_argument("--output_dirname", "--output-dirname", default=None,
                        help="result sub-folder (default: a timestamp)")
    parser.add_argument("--outfmt", default="BIN", type=str.upper, choices=("BIN", "NPY", "TXT"))
    parser.add_argument("--batchsize", "--batch-size", type=int, default=None,
                        help="batch for dynamic-batch models (static models use their own)")
    parser.add_argument("--loop", "-l", type=int, default=1, help="executions of each batch, each timed")
    parser.add_argument("--warmup_count", type=int, default=1)
    parser.add_argument("--device", "-d", default="0", help="NPU id for .om; 'cuda' selects CUDA for .onnx")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of the backend")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="engine for .onnx models (default onnxruntime; see README: when to pick which)")
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                        help="compute precision (default fp32; bf16/fp16 only where the engine and the CPU "
                             "run them natively, refused otherwise)")
    parser.add_argument("--resume", action="store_true",
                        help="skip samples whose outputs already exist (finished files only)")
    args = parser.parse_args(argv)
    if args.output_dirname and not args.output:
        parser.error("--output_dirname needs --output")
    if args.loop < 1 or args.warmup_count < 0 or (args.batchsize is not None and args.batchsize < 1):
        parser.error("--loop and --batchsize must be >= 1, --warmup_count >= 0")
    return args


def main(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if model.suffix == ".om":
        if args.backend != "onnxruntime" or args.precision != DEFAULT_PRECISION:
            raise UserError(f"{model}: an .om runs on the NPU through ais_bench, its precision fixed by ATC; "
                            "--backend and --precision apply to .onnx models")
        return run_om_with_ais_bench(args)
    if not model.is_file():
        raise UserError(f"{model}: model file not found")
    if not args.input or not args.output:
        raise UserError("--input and --output are needed for a dataset run")
    backend = make_backend(model, args.backend, args.precision, threads=args.threads,
                           device="cuda" if args.device == "cuda" else "cpu")
    summary = run_inference(backend, args.input, args.output, args.output_dirname, args.batchsize,
                            args.outfmt, args.loop, args.warmup_count, args.resume, argv=sys.argv)
    print_summary(summary)
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
