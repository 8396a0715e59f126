"""ATC (ONNX -> Ascend .om) command lines: `python3 -m common.atc --model X.onnx --output X_bs1 ...`.

Builds the command the guides write by hand (framework 5, NCHW, input shape, soc version read
from `npu-smi info`, optional out nodes), runs it where `atc` exists, and otherwise says in
one line that ATC is absent and the ONNX model runs on ONNX Runtime instead.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess

from common.cli import UserError, script_entry
from common.runtime.graph import atc_out_nodes, load_onnx
from common.runtime.atc import (LOG_LEVELS, PRECISION_MODES, atc_command, check_keep_dtype,
                                check_shapes_against_model, detect_soc_version, parse_shape_arg)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.atc", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the .onnx to convert")
    parser.add_argument("--output", required=True, help="output prefix (ATC appends .om)")
    parser.add_argument("--input_shape", required=True, help='e.g. "input:1,3,500,500"')
    parser.add_argument("--soc_version", default=None, help="default: read from `npu-smi info`")
    parser.add_argument("--out_nodes", default="", help='";"-separated output nodes, e.g. "Conv_1:0;Conv_2:0"')
    parser.add_argument("--out-nodes-from-outputs", action="store_true",
                        help="--out_nodes = the nodes producing the graph outputs, in output order")
    parser.add_argument("--log", default="error", choices=LOG_LEVELS)
    parser.add_argument("--input_format", default="NCHW")
    parser.add_argument("--precision_mode", default=None, choices=PRECISION_MODES,
                        help="not given: ATC's default (force_fp16); `python3 -m common.precision` predicts its cost")
    parser.add_argument("--keep_dtype", default=None,
                        help="file of nodes (or OpType::<Ascend IR type>) kept at the original precision")
    parser.add_argument("--print-only", action="store_true", help="print the command, do not run it")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    if args.keep_dtype:
        check_keep_dtype(args.model, args.keep_dtype, args.precision_mode)
    soc = args.soc_version or detect_soc_version() or "Ascend${chip_name}"
    out_nodes = [n for n in args.out_nodes.split(";") if n]
    if args.out_nodes_from_outputs:
        out_nodes = atc_out_nodes(load_onnx(args.model, load_weights=False))
    command = atc_command(args.model, args.output, parse_shape_arg(args.input_shape), soc,
                          out_nodes, args.log, args.input_format,
                          precision_mode=args.precision_mode, keep_dtype=args.keep_dtype)
    print(shlex.join(command))
    if args.print_only:
        return 0
    check_shapes_against_model(args.model, parse_shape_arg(args.input_shape))
    if shutil.which("atc") is None:
        print("ATC is absent on this machine (no Ascend toolkit): nothing converted; "
              f"the ONNX model {args.model} runs on ONNX Runtime with `python3 -m common.infer`.")
        return 0
    if "${chip_name}" in soc:
        raise UserError("npu-smi gave no chip name: pass --soc_version (e.g. Ascend310P3)")
    return subprocess.call(command)



if __name__ == "__main__":
    script_entry(main, parse_args)
