"""Guide step "导出onnx文件" (export the ONNX): hrnet.pth -> hrnet.onnx.

Opset 11, input `image` [batch,3,1024,2048], outputs `output1` (aux head) and `output2` (OCR
head, the one scored), both [batch,19,256,512], dynamic batch. The checkpoint is loaded
strictly: a missing, extra or wrong-shape key is refused by name (the ModelZoo script skipped
that check, so a wrongly wrapped file exported random weights without a word).
"""
from __future__ import annotations

import argparse

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import torch

from common.files.config_reader import check_flag
from common.files.folders import output_file_parent
from common.pipeline.sizes import check_run_size
from common.runtime.export import export_onnx
from hrnet3d import model
from hrnet3d.config import INPUT_HW, PACK


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pth", default="hrnet.pth", help="the published checkpoint (hrnet.pth)")
    parser.add_argument("--save_path", default="hrnet.onnx", help="the .onnx to write")
    parser.add_argument("--input-hw", type=int, nargs=2, default=list(INPUT_HW),
                        metavar=("H", "W"), help="input height and width (1024 2048 for Cityscapes; "
                                                  "smaller for tests, e.g. 64 128)")
    parser.add_argument("--static-batch", type=int, default=None,
                        help="fix the batch instead of a dynamic batch axis")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    output_file_parent(args.save_path)  # before the slow load and export, not after them
    if args.static_batch is not None:
        check_flag("--static-batch", args.static_batch, minimum=1)
    height, width = args.input_hw
    if height < 32 or width < 32:
        # below 32 pixels the 1/32 branch would be a single pixel or less
        raise UserError(f"--input-hw {height} {width}: both sides must be at least 32")
    check_run_size(f"--input-hw {height} {width}", (height, width), output_shapes=PACK.output_shapes)
    torch.set_grad_enabled(False)
    network = model.load_pretrained(args.pth)
    dummy = torch.randn(args.static_batch or 1, 3, height, width)
    exported = export_onnx(network, [dummy], args.save_path, input_names=[t.name for t in PACK.inputs],
                           output_names=[t.name for t in PACK.outputs], dynamic_batch=args.static_batch is None,
                           pack=PACK.name, model_options={})
    for value in list(exported.graph.input) + list(exported.graph.output):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        print(f"  {value.name}: {dims}")
    print(f"wrote {args.save_path} (opset 11)")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
