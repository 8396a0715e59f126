"""Guide step 3.1: RefineNet_910.pth.tar -> ONNX (opset 11, input `input` [batch,3,500,500],
output `output` [batch,21,125,125], dynamic batch)."""
from __future__ import annotations

import argparse

import torch

import model
from common.cli import script_entry
from common.onnx_tools import export_onnx
from common.validate import output_file_parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input-file", required=True, help="the .pth.tar checkpoint")
    parser.add_argument("--output-file", required=True, help="the .onnx to write")
    parser.add_argument("--size", type=int, default=model.INPUT_HW[0],
                        help="input height = width (500 in the guide; smaller for tests)")
    parser.add_argument("--static-batch", type=int, default=None,
                        help="fix the batch instead of a dynamic batch axis")
    args = parser.parse_args(argv)
    if args.size < 8 or (args.static_batch is not None and args.static_batch < 1):
        parser.error("--size must be >= 8 and --static-batch >= 1")
    return args


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.output_file)  # before the slow load, not after it
    network = model.load_pretrained(args.input_file)
    dummy = torch.randn(args.static_batch or 1, 3, args.size, args.size)
    exported = export_onnx(network, [dummy], args.output_file, input_names=["input"],
                           output_names=["output"], dynamic_batch=args.static_batch is None,
                           pack="RefineNet", model_options={})
    batch = "batch_size" if args.static_batch is None else args.static_batch
    out_hw = -(-args.size // model.OUTPUT_STRIDE)
    print(f"wrote {args.output_file}: input 'input' [{batch},3,{args.size},{args.size}] -> "
          f"output '{exported.graph.output[0].name}' [{batch},{model.NUM_CLASSES},{out_hw},{out_hw}]")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
