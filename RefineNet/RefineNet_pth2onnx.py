"""Guide step 3.1: RefineNet_910.pth.tar -> ONNX (opset 11, input `input` [batch,3,500,500],
output `output` [batch,21,125,125], dynamic batch)."""
from __future__ import annotations

import argparse

from common.cli import script_entry  # first: a Ctrl-C during the imports below is one line

import torch

from common.files.folders import output_file_parent
from common.runtime.export import export_onnx
from refinenet import model
from refinenet.config import INPUT_SIZE, PACK, output_shapes
from common.pipeline.sizes import check_run_size


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input-file", required=True, help="the .pth.tar checkpoint")
    parser.add_argument("--output-file", required=True, help="the .onnx to write")
    parser.add_argument("--size", type=int, default=INPUT_SIZE,
                        help="input height = width (500 in the guide; smaller for tests)")
    parser.add_argument("--static-batch", type=int, default=None,
                        help="fix the batch instead of a dynamic batch axis")
    args = parser.parse_args(argv)
    if args.size < 8 or (args.static_batch is not None and args.static_batch < 1):
        parser.error("--size must be >= 8 and --static-batch >= 1")
    return args


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.output_file)  # before the slow load, not after it
    check_run_size(f"--size {args.size}", (args.size, args.size), output_shapes=output_shapes)
    network = model.load_pretrained(args.input_file)
    dummy = torch.randn(args.static_batch or 1, 3, args.size, args.size)
    export_onnx(network, [dummy], args.output_file, input_names=[t.name for t in PACK.inputs],
                output_names=[t.name for t in PACK.outputs], dynamic_batch=args.static_batch is None,
                pack=PACK.name, model_options={})
    batch = "batch_size" if args.static_batch is None else args.static_batch
    shape = ",".join(map(str, output_shapes((args.size, args.size))[0]))
    print(f"wrote {args.output_file}: input 'input' [{batch},3,{args.size},{args.size}] -> "
          f"output 'output' [{batch},{shape}]")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
